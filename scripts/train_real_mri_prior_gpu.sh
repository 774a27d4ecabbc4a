#!/bin/bash
# Train the GPU candidates for the real-scan MRI prior (issue 15; presets mri_general_gpu,
# mri_general_gpu_w24, mri_general_gpu_w32 in paperlib.diffusion.train_config), all side by side
# on one card, for BUDGET seconds of wall clock each; a run cut off by the budget exports what its
# last resumable checkpoint reached (the manifest records the steps). How they were made:
#
#   # here (CPU; the generator's TorchIO transforms are not on the GPU machine):
#   python scripts/export_real_mri_data.py --n 768 --out build/train_data/real_mri_768.pt
#   # on the GPU machine (torch, safetensors, scipy, tqdm; carry build/train_data and
#   # checkpoints/mri_general_lownoise, the base of mri_general_gpu):
#   BUDGET=420 bash scripts/train_real_mri_prior_gpu.sh    # priors in $RESULTS/<preset>
#
# Then, back here, the tuning-scan comparison (held-out scans never touched):
#   python benchmarks/real_mri_prior_choice.py --profile default --checkpoints checkpoints/mri_general_lownoise \
#       <the trained folders> --out benchmarks/results/real_mri_prior_gpu.csv
#
# Run 2026-12-04 on one H200 (torch 2.11 + CUDA 13): BUDGET=480, then the same command again with
# BUDGET=250 after deleting the three exported priors (each run resumes its state): 4750, 3750 and
# 3250 steps (the presets' `steps` since), 0.14, 0.18 and 0.20 s per step side by side (GPU
# utilisation not measured; step time grew by less than the parameter count, 1.1 to 4.4 M, so the
# card was likely not the limit: try more threads per process, THREADS, before a longer budget).
set -u
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${THREADS:-2}
DATA=${DATA:-build/train_data/real_mri_768.pt}; W=${RESULTS:-/tmp/paperlib_train}
BUDGET=${BUDGET:-420}; PRESETS=${PRESETS:-mri_general_gpu mri_general_gpu_w24 mri_general_gpu_w32}
[ -f "$DATA" ] || { echo "missing $DATA (see the header)" >&2; exit 2; }
mkdir -p "$W"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
run() {  # preset steps timeout tag
  timeout "$3" python3 -m paperlib train --modality mri --profile default --preset "$1" \
    --data "$DATA" --steps "$2" --out "$W/$1" --no-progress > "$W/log_$4_$1.txt" 2>&1
  echo "$4 $1: exit $? after $SECONDS s"
}
S0=$SECONDS
for p in $PRESETS; do run "$p" 100000 "$BUDGET" main & done; wait
echo "training took $((SECONDS - S0)) s"
for p in $PRESETS; do
  if [ ! -f "$W/$p/prior_group0.safetensors" ]; then
    s=$(python3 -c "import torch; print(torch.load('$W/$p/train_state_group0.pt', weights_only=True)['step'])")
    echo "$p cut off at step $s: exporting that"; run "$p" "$s" 300 fin &
  fi
done; wait
for p in $PRESETS; do tail -n 3 "$W/log_main_$p.txt"; python3 -c "
import json; m = json.load(open('$W/$p/prior_group0.json'))
print('$p', m['steps'], 'steps, loss', m['final_loss'], m['num_parameters'], 'parameters')" ; done
