#!/bin/bash
# Train the shipped default priors (checkpoints/{mri,stem}_default) on one GPU: one process per
# (modality, slice group), all four on cuda:0 (the 1.1 M-parameter networks are launch-bound, so
# four processes keep one card busier than one). How the shipped ones were made (H200, 2026-11-26):
#
#   # here (CPU, the profile's data; needs the [data] extras for the crystals):
#   python -m paperlib train --modality mri  --profile default --export-data build/train_data/mri_default_train.pt
#   python -m paperlib train --modality stem --profile default --export-data build/train_data/stem_default_train.pt
#   # on the GPU machine (torch, safetensors, scipy, tqdm; carry build/train_data):
#   STEPS=9000 bash scripts/train_priors_gpu.sh      # priors in $RESULTS/{mri,stem}_default
#
# Without STEPS it first times CAL steps of all four processes together and picks the largest
# multiple of ROUND steps that fits BUDGET seconds. A run cut off by its time limit exports what
# its last resumable checkpoint reached (the manifest records the steps).
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${THREADS:-2}
DATA=${DATA:-build/train_data}; W=${RESULTS:-/tmp/paperlib_train}
BUDGET=${BUDGET:-450}; CAL=${CAL:-60}; MAXSTEPS=${MAXSTEPS:-30000}; ROUND=${ROUND:-500}
mkdir -p "$W"
for m in mri stem; do
  [ -f "$DATA/${m}_default_train.pt" ] || { echo "missing $DATA/${m}_default_train.pt (see the header)" >&2; exit 2; }
done
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
run() {  # modality group steps outdir tag
  timeout "${TMO:-1000000}" python3 -m paperlib train --modality "$1" --profile default \
    --data "$DATA/$1_default_train.pt" --groups "$2" --steps "$3" --out "$4" --no-progress > "$W/log_$5_$1_$2.txt" 2>&1
  echo "$5 $1 group $2: exit $? after $SECONDS s"
}
if [ -z "${STEPS:-}" ]; then
  rm -rf "$W"/cal_*
  for m in mri stem; do for g in 0 1; do run $m $g "$CAL" "$W/cal_$m" cal & done; done; wait
  STEPS=$(python3 - "$W" "$CAL" "$BUDGET" "$MAXSTEPS" "$ROUND" <<'PY'
import glob, json, statistics, sys
w, cal, budget, maxsteps, rnd = sys.argv[1], *map(int, sys.argv[2:])
worst = 0.0
for f in sorted(glob.glob(f"{w}/cal_*/loss_group*.jsonl")):
    t = statistics.median(json.loads(line)["time_s"] for line in list(open(f))[cal // 5:])
    print(f, "median step", t, "s", file=sys.stderr)
    worst = max(worst, t)
print(max(rnd, min(maxsteps, int(budget / (1.1 * worst)) // rnd * rnd)))
PY
)
  TMO=$((BUDGET + 60))
fi
echo "training $STEPS steps per group"
S0=$SECONDS
for m in mri stem; do for g in 0 1; do TMO=${TMO:-1000000} run $m $g "$STEPS" "$W/${m}_default" main & done; done; wait
echo "training took $((SECONDS - S0)) s"
for m in mri stem; do for g in 0 1; do
  if [ ! -f "$W/${m}_default/prior_group$g.safetensors" ]; then
    s=$(python3 -c "import torch; print(torch.load('$W/${m}_default/train_state_group$g.pt', weights_only=True)['step'])")
    echo "$m group $g cut off at step $s: exporting that"; TMO=600 run $m $g "$s" "$W/${m}_default" fin
  fi
done; done
for f in "$W"/log_main_*; do tail -n 2 "$f"; done
