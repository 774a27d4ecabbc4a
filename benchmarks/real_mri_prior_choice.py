"""Which general MRI prior for the real scans? DART with each candidate prior on the *tuning* scans.

DART on real scans runs in its plug-and-play form (``real_mri.diffusion.dart``: from the TV image,
denoising steps from σ 0.03 to 0.005, i.e. the lowest 13 timesteps of the cosine schedule). The
committed results were run with the profile's setting of that day (60 steps, no self-ensemble);
the validation grid (``validation.real_mri.checkpoints``) compares the two shipped priors at every
setting since, the self-ensemble's included.
``checkpoints/mri_general`` was trained with timesteps uniform over the schedule, so those levels
were 1.3 % of its training samples; ``checkpoints/mri_general_lownoise`` is it fine-tuned with
three quarters of every batch at ``t < 32`` (preset ``mri_general_lownoise``). This script runs
DART with every prior of ``--checkpoints`` (the profile's DART settings, chosen with
``mri_general``, are not re-tuned) and TV once, on the tuning scans at every acceleration of the
``real_mri`` section (the cases of ``python -m paperlib.validation --modality real_mri``), and
reports per case and the mean, with the criterion of the ``tuned_on`` texts (the mean of
whole-image and head SSIM). The held-out scans are never touched.

Writes ``benchmarks/results/real_mri_prior_choice.{csv,md}``. The committed results compare the
two shipped priors and two variants that were not shipped, made (and deleted after the run) with::

    python -m paperlib train --modality mri --profile default --preset mri_general_lownoise \
        --steps 1600 --out checkpoints/mri_general_lownoise_1600
    python -c "import torch; from paperlib.data.randomized import randomized_set; \
        torch.save(randomized_set(1536, (8, 64, 64), seed=0), '/tmp/slabs1536.pt')"
    python -m paperlib train --modality mri --preset mri_general_lownoise --data /tmp/slabs1536.pt \
        --init-from checkpoints/mri_general --out checkpoints/mri_general_lownoise_1536slabs
    python benchmarks/real_mri_prior_choice.py --profile default --checkpoints checkpoints/mri_general \
        checkpoints/mri_general_lownoise checkpoints/mri_general_lownoise_1600 \
        checkpoints/mri_general_lownoise_1536slabs

The comparison with the wider synthetic anatomy (``benchmarks/results/real_mri_prior_anatomy.md``,
run with the profile's DART setting since 2026-12-03: 90 steps with the self-ensemble; the prior
deleted after the run, its sha256 in the CSV)::

    python -m paperlib train --modality mri --profile default --preset mri_general_wide
    python benchmarks/real_mri_prior_choice.py --profile default --checkpoints \
        checkpoints/mri_general_lownoise checkpoints/mri_general_wide \
        --out benchmarks/results/real_mri_prior_anatomy.csv

The GPU candidates (``benchmarks/results/real_mri_prior_gpu.md``; presets mri_general_gpu,
mri_general_gpu_w24, mri_general_gpu_w32, trained on one H200 by
``scripts/train_real_mri_prior_gpu.sh``, whose header gives the commands, and copied back to
``build/gpu_priors/``; the chosen one is shipped as ``checkpoints/mri_general_gpu_w24``, the same
weights)::

    python benchmarks/real_mri_prior_choice.py --profile default --checkpoints checkpoints/mri_general_lownoise \
        build/gpu_priors/mri_general_gpu build/gpu_priors/mri_general_gpu_w24 build/gpu_priors/mri_general_gpu_w32 \
        --out benchmarks/results/real_mri_prior_gpu.csv

The choice (:func:`chosen`): the best criterion, except that priors within :data:`LEVEL` of it
count as level, and of those the smallest network is shipped (it costs least in every notebook and
CLI call). ``--report-only`` re-renders the report from the CSV; every run also writes the means
per prior to ``<out>_summary.csv`` (what the profile's ``tuned_on`` text quotes).
"""
from __future__ import annotations


from paperlib import tables
from paperlib.config import load_profile
from paperlib.experiments.priors import prior_manifest
from paperlib.provenance import git_commit
from paperlib.validation import validation_rows
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)

CANDIDATES = ("checkpoints/mri_general_lownoise", "checkpoints/mri_general_gpu_w24")
#: said under the table for each of these candidates in it: the variants tried and not shipped
#: (copies of their folders were passed with ``--checkpoints``): the fine-tune run on to 1600 steps
#: (resumed from 800; a straight run equals it), and the same 800 steps on 4x the slabs
#: (``randomized_set(1536, ...)``, passed with ``train --data``)
NOTES = {
    "checkpoints/mri_general_lownoise_1600": "Not shipped: mri_general_lownoise_1600, the fine-tune run on to 1600 "
    "steps (level with 800 steps, so the preset stops at 800).",
    "checkpoints/mri_general_lownoise_1536slabs": "Not shipped: mri_general_lownoise_1536slabs, the same 800 steps "
    "on 4x the slabs (the first 384 and 1152 more of the same generator; lower: more slabs of the same anatomy do "
    "not help here).",
    "checkpoints/mri_general_wide": "Not shipped: mri_general_wide (preset mri_general_wide), mri_general_lownoise "
    "trained 800 more steps with the same recipe on slabs of the same seeds whose heads stray further from the "
    "template (paperlib.data.brain.ANATOMY_SPREADS['wide']: tilts up to 15 degrees, scale 0.85-1.10, 5 mm of "
    "deformation); lower in every case: a wider spread of the one template's anatomy is not what is missing either.",
    "checkpoints/mri_general_lownoise_400": "Not shipped: mri_general_lownoise_400, the shipped prior fine-tuned 400 "
    "more steps with its own recipe on its own slabs (the control of the capacity test, "
    "benchmarks/real_mri_prior_depth.py).",
    "checkpoints/mri_general_deep_400": "Not shipped: mri_general_deep_400, the shipped prior deepened to two residual "
    "blocks per level (1.66 M parameters, the same function before training) and fine-tuned as the control; level "
    "with the control and both below the shipped prior: at this budget neither more capacity nor more steps raises "
    "DART, though both raise the network's denoising PSNR a little (benchmarks/results/real_mri_prior_depth_fit.md).",
    "build/gpu_priors/mri_general_gpu": "Not shipped: mri_general_gpu (preset), the shipped 1.1 M-parameter network "
    "fine-tuned from mri_general_lownoise on an H200 with batch 32 on 768 slabs of the same generator "
    "(scripts/export_real_mri_data.py): batch and steps alone raise DART less than width does.",
    "build/gpu_priors/mri_general_gpu_w24": "Shipped as checkpoints/mri_general_gpu_w24 (the same weights, sha256 in "
    "the CSV): preset mri_general_gpu_w24, 2.5 M parameters trained from scratch on the H200, batch 32, the same "
    "768 slabs, half of every batch at t < 32.",
    "build/gpu_priors/mri_general_gpu_w32": "Not shipped: mri_general_gpu_w32, the same recipe at 4.4 M parameters "
    "(fewer steps in the same time): level with w24 by the rule, at 1.8 times its parameters and 1.5 times its time.",
}


def run(profile_name: str, checkpoints: tuple[str, ...] = CANDIDATES, progress: bool = True) -> list[dict]:
    """Per-case rows: TV once, DART once per prior. The profile's own ``validation.real_mri`` grid
    (its cases and seeds) with its methods replaced by DART and TV at the profile's settings and its
    ``checkpoints`` by ``checkpoints``, run by :func:`paperlib.validation.validation_rows` (which
    records ``prior_checkpoint`` and ``prior_sha256``); ``prior_steps`` and ``prior_parameters`` are added from each manifest."""
    profile = load_profile(profile_name)
    grid = profile.validation.real_mri if profile.validation is not None else None
    if grid is None:
        raise SystemExit(f"profile {profile_name}: no validation.real_mri grid (its n_volumes and seeds)")
    grid = grid.model_copy(update={"methods": {"tv": ({},), "dart": ({},)}, "checkpoints": tuple(checkpoints)})
    profile = profile.model_copy(update={"validation": profile.validation.model_copy(update={"real_mri": grid})})
    manifests = {c: prior_manifest(c) for c in checkpoints}
    commit = git_commit()
    return [{**r, "prior_steps": manifests[r["prior_checkpoint"]]["steps"] if r["prior_checkpoint"] else "",
             "prior_parameters": manifests[r["prior_checkpoint"]]["num_parameters"] if r["prior_checkpoint"] else "",
             "git_commit": commit}
            for r in validation_rows(profile, "real_mri", progress=progress)]


def _label(row: dict) -> str:
    return "TV" if row["method"] == "tv" else f"DART, {row['prior_checkpoint']} ({int(row['prior_steps'])} steps)"


#: Candidates whose criterion is within this of the best count as level: the choice is then the
#: smallest network (``prior_parameters``; a CSV without that column, from before 2026-12-04, counts
#: them all as one size), and of equal sizes the best criterion. Reruns move the criterion by less:
#: the AVX2-only CPU's float32 networks moved the held-out DART by at most 0.000543 head SSIM per case.
LEVEL = 0.001


def summary(rows: list[dict]) -> list[dict]:
    """One row per label (TV, then each prior in order): the means over the cases of whole and head
    SSIM, the criterion (their mean), the criterion minus TV's and the seconds of all its cases."""
    labels = list(dict.fromkeys(_label(r) for r in rows))
    out = []
    for lab in labels:
        sel = [r for r in rows if _label(r) == lab]
        whole = sum(float(r["ssim_whole"]) for r in sel) / len(sel)
        head = sum(float(r["ssim_head"]) for r in sel) / len(sel)
        out.append({"label": lab, "method": sel[0]["method"], "prior_checkpoint": sel[0]["prior_checkpoint"],
                    "prior_sha256": sel[0]["prior_sha256"], "prior_steps": sel[0]["prior_steps"],
                    "prior_parameters": int(sel[0]["prior_parameters"]) if sel[0].get("prior_parameters") else None,
                    "n_cases": len(sel), "ssim_whole": round(whole, 6), "ssim_head": round(head, 6),
                    "criterion": round((whole + head) / 2, 6),
                    "seconds": round(sum(float(r["wall_time_s"]) for r in sel), 1)})
    tv = next(r["criterion"] for r in out if r["method"] == "tv")
    for r in out:
        r["minus_tv"] = round(r["criterion"] - tv, 6)
    return out


def chosen(summary_rows: list[dict], level: float = LEVEL) -> dict:
    """The prior to ship: of the DART rows within ``level`` of the best criterion, the smallest
    network, and of equal sizes the best criterion."""
    dart = [r for r in summary_rows if r["method"] == "dart"]
    best = max(float(r["criterion"]) for r in dart)
    level_with_best = [r for r in dart if float(r["criterion"]) >= best - level]
    return min(level_with_best, key=lambda r: (int(r.get("prior_parameters") or 0), -float(r["criterion"])))


def report(rows: list[dict], profile: str, threads: int) -> str:
    """Markdown: SSIM (whole, head) per case and label, then the means, the criterion and the time."""
    labels = list(dict.fromkeys(_label(r) for r in rows))
    cases = list(dict.fromkeys(r["case"] for r in rows))
    by = {(r["case"], _label(r)): r for r in rows}
    lines = [f"# DART on the tuning real scans with each candidate prior (profile `{profile}`)", "",
             f"Commit {rows[0].get('git_commit') or git_commit()}; {threads} thread(s); DART settings of real_mri.diffusion.dart (not re-tuned); "
             "SSIM whole image / inside the head mask, as in tab_real_mri. Held-out scans never touched.", "",
             "| Case | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for case in cases:
        cells = [f"{float(by[case, lab]['ssim_whole']):.4f} / {float(by[case, lab]['ssim_head']):.4f}"
                 for lab in labels]
        lines.append(f"| {case} | " + " | ".join(cells) + " |")
    lines += ["", "| Method | n cases | whole SSIM | head SSIM | criterion (mean of the two) | minus TV | seconds (all cases) |",
              "|---|---|---|---|---|---|---|"]
    summ = summary(rows)
    for r in summ:
        lines.append(f"| {r['label']} | {r['n_cases']} | {r['ssim_whole']:.6f} | {r['ssim_head']:.6f} | "
                     f"{r['criterion']:.6f} | {r['minus_tv']:+.6f} | {r['seconds']:.1f} |")
    pick = chosen(summ)
    lines += ["", f"Chosen by the rule (of the priors within {LEVEL} of the best criterion, the smallest network, "
              f"then the best criterion): {pick['prior_checkpoint']}."]
    notes = [NOTES[c] for c in dict.fromkeys(r["prior_checkpoint"] for r in rows) if c in NOTES]
    lines += ["", " ".join(notes)] if notes else []
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--checkpoints", nargs="+", default=list(CANDIDATES), help="prior folders to compare")
    p.add_argument("--report-only", action="store_true", help="re-render the report from --out's CSV, run nothing")
    args = parse_args(p, argv)
    if not args.report_only:
        tables.write_csv_rows(run(args.profile, tuple(args.checkpoints)), args.out)
    rows = tables.read_csv_rows(args.out)  # the report from the CSV as written, so that it re-renders
    tables.write_csv_rows(summary(rows), args.out.with_name(args.out.stem + "_summary.csv"))
    text = report(rows, args.profile, args.threads)
    write_summary(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
