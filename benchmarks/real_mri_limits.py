"""What limits DART on real scans? Variants of DART on the *tuning* scans, each against TV.

On the real scans (notebook ``tab_real_mri``) DART with the paper's chain stayed below TV. This script separates the
candidate causes on the **tuning** scans only (the held-out scans are never touched), with the
profile's general prior and ``real_mri`` settings, one DART variant per row:

* ``profile``: DART as the table ran it until 2026-12-02 (:data:`CHAIN`: the paper's noisy chain from the
  zero-filled image; the table now runs the plug-and-play form from the TV image, which these
  rows led to) (``--steps`` sets the steps per sample of this row and of
  every row that does not set its own);
* ``prior=…``: the profile's DART with another prior, tiled like the general one (group 0 of
  ``checkpoints/mri_default``: the synthetic-brain prior the general one was fine-tuned from, so
  the row measures what the domain-randomised fine-tuning gave);
* ``oracle_scale``: the measurement divided by the intensity scale of the *true* image instead of
  the zero-filled one (the zero-filled image underestimates it: its column ``scale_ratio``), so
  the prior sees the intensities it was trained on — is the normalisation at fault?
* ``start=…``: other starting points of the chain (1.0 = pure noise, no zero-filled image);
* ``steps=20``: 20 steps per sample (twice the 10 of the stored run);
* ``stop=…``: the chain ended early, returning the corrected denoised estimate (``dart(stop=)``);
* ``tv_init=…``: DART started from the TV reconstruction noised to that fraction of the schedule
  — what the prior adds *on top of* TV (if the prior knew real brains better than TV's piecewise
  constancy, this would rise above TV);
* ``tv_anchor=ρ``: the other way round, TV at the profile's weight with ``ρ / 2 ||x - x_DART||^2`` added
  (``total_variation(anchor=, anchor_weight=)``, anchored at the ``profile`` row's estimate; its time
  includes that DART run): does DART's estimate carry what TV lacks?
* ``mean(profile, tv)``: the voxel-wise mean of the two reconstructions.

Each variant's whole-image and head SSIM (the table's metrics) is paired per case with TV at the
profile's weight. Writes ``benchmarks/results/real_mri_limits.csv`` (per case) and
``real_mri_limits.md`` (means over the cases, the difference to TV with a 95 % bootstrap
interval over the cases, and the wall time).

    python benchmarks/real_mri_limits.py --profile default [--steps 10]
"""
from __future__ import annotations

import sys
import time

import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.intensity import intensity_scale
from paperlib.diffusion.tiling import tiled
from paperlib.experiments import real_mri
from paperlib.experiments.priors import guided_prior
from paperlib.provenance import git_commit
from paperlib.metrics.image import volume_scores
from paperlib.recon import mri_baselines
from paperlib.recon.dart import dart
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)

#: (label, dart keyword overrides, special) — special: "oracle_scale", "tv_init" or "prior:<checkpoint>"
VARIANTS = (
    ("profile", {}, None),
    ("prior=mri_default", {}, "prior:checkpoints/mri_default"),
    ("oracle_scale", {}, "oracle_scale"),
    ("start=1.0", {"start": 1.0}, None),
    ("start=0.3", {"start": 0.3}, None),
    ("steps=20", {"num_steps": 20}, None),
    ("stop=0.05", {"stop": 0.05}, None),
    ("stop=0.1", {"stop": 0.1}, None),
    ("tv_init=0.15", {"start": 0.15}, "tv_init"),
    ("tv_init=0.3", {"start": 0.3}, "tv_init"),
)
#: The chain every row varies: the paper's noisy DDIM chain from the zero-filled image as the real-scan table ran
#: it until 2026-12-02 (start 0.5, mean of 4 samples; 10 steps unless ``--steps``). The table's DART now takes
#: the plug-and-play form from the TV image (``real_mri.diffusion.dart``), which these rows led to.
CHAIN = {"num_steps": 10, "start": 0.5, "samples": 4, "stop": 0.0}
#: ρ of the ``tv_anchor`` rows (relative to the data term, whose curvature is 1 on sampled frequencies)
ANCHOR_WEIGHTS = (0.1, 0.3, 1.0)


def run(profile_name: str, seed: int = 0, progress: bool = True, steps: int | None = None) -> list[dict]:
    """One row per (tuning case, variant) plus TV's rows (``variant = "tv"``); ``steps``: DART's
    steps per sample where a variant does not set its own (default: :data:`CHAIN`'s 10)."""
    profile = load_profile(profile_name)
    section = profile.real_mri
    d = section.diffusion.dart
    steps = steps or CHAIN["num_steps"]
    prior = real_mri.general_prior(profile)
    others = {sp: tiled(guided_prior(section.diffusion, sp.split(":", 1)[1], groups=(0,)),
                        overlap=section.overlap)
              for _, _, sp in VARIANTS if sp and sp.startswith("prior:")}
    rows = []
    cases = real_mri.real_cases(profile, role="tuning")
    bar = tqdm(total=len(cases) * (len(VARIANTS) + 1 + len(ANCHOR_WEIGHTS)), desc="real-scan DART variants",
               disable=not progress)
    b = section.baselines
    for case in cases:
        op, y = case.operator, case.kspace
        ys, s = real_mri.scaled_measurement(op, y)
        truth_scale = intensity_scale(case.image, name=f"{case.scan} image")
        t0 = time.perf_counter()
        tv = real_mri.REAL_MRI_METHODS["tv"].fn(op, y, profile, None)
        runs = [("tv", tv, time.perf_counter() - t0)]
        bar.update()
        for label, overrides, special in VARIANTS:
            kw = dict(CHAIN, num_steps=steps, physics_steps=d.physics_steps, step_kwargs=d.step_kwargs())
            kw.update(overrides)
            scale, meas = (truth_scale, y / truth_scale) if special == "oracle_scale" else (s, ys)
            init = (tv / scale) if special == "tv_init" else op.zero_filled(meas).real
            t0 = time.perf_counter()
            x = dart(others.get(special, prior), op, meas, generator=torch.Generator().manual_seed(seed),
                     init=init, **kw)
            runs.append((label, real_mri.valid_magnitude(x, scale), time.perf_counter() - t0))
            bar.update()
        dart_recon = runs[1][1]  # the "profile" row, in the scan's units
        for rho in ANCHOR_WEIGHTS:
            t0 = time.perf_counter()
            x = mri_baselines.total_variation(op, y, weight=b.tv_weight, iters=b.tv_iters, anchor=dart_recon,
                                              anchor_weight=rho).clamp_min(0)
            runs.append((f"tv_anchor={rho:g}", x, time.perf_counter() - t0 + runs[1][2]))
            bar.update()
        runs.append(("mean(profile, tv)", (dart_recon + tv) / 2, runs[0][2] + runs[1][2]))
        for label, recon, seconds in runs:
            sc = volume_scores(recon, case.image, head_mask=case.head_mask)
            rows.append({"case": case.case_id, "scan": case.scan, "acceleration": case.acceleration,
                         "method": label, "seed": seed, "steps": steps, "ssim_whole": sc["ssim"],
                         "ssim_head": sc["ssim_head"], "psnr_volume": sc["psnr"], "wall_time_s": seconds,
                         "scale_ratio": s / truth_scale})
    bar.close()
    return rows


def report(rows: list[dict], profile_name: str, checkpoint: str, threads: int, steps: int) -> str:
    """The markdown summary: per variant the means and the paired difference to TV."""
    cases = sorted({r["case"] for r in rows})
    variants = list(dict.fromkeys(r["method"] for r in rows))
    means = {m["method"]: m for m in tables.summarise(rows, by=("method",))}
    lines = [f"# DART variants on the tuning real scans (profile {profile_name}, prior {checkpoint})", "",
             f"n = {len(cases)} cases ({', '.join(cases)}); differences paired per case with TV, "
             "mean [95 % bootstrap interval over the cases, paperlib.tables.paired_differences]; "
             f"DART takes {steps} steps per sample where the variant sets none; "
             f"seconds per case on {threads} thread(s); code {git_commit()[:10]}.", "",
             "| Variant | SSIM whole | SSIM head | minus TV, whole | minus TV, head | s per case |",
             "|---|---|---|---|---|---|"]
    for v in variants:
        m = means[v]
        cells = [f"{m['ssim_whole_mean']:.3f}", f"{m['ssim_head_mean']:.3f}"]
        if v == "tv":
            cells += ["–", "–"]
        else:
            d, = tables.paired_differences(rows, v, "tv", ("ssim_whole", "ssim_head"), by=())
            cells += [f"{d[k + '_mean']:+.3f} [{d[k + '_ci_low']:+.3f}, {d[k + '_ci_high']:+.3f}]"
                      for k in ("ssim_whole", "ssim_head")]
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {m['wall_time_s_mean']:.1f} |")
    ratio = {r["case"]: r["scale_ratio"] for r in rows}
    lines += ["", "Intensity scale of the zero-filled image / of the true image: "
              + ", ".join(f"{c} {ratio[c]:.2f}" for c in cases) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="DART steps per sample (default: CHAIN's 10)")
    args = parse_args(p, argv)
    section = load_profile(args.profile).real_mri
    steps = args.steps or CHAIN["num_steps"]
    rows = run(args.profile, args.seed, steps=steps)
    tables.write_csv_rows(rows, args.out)
    text = report(rows, args.profile, section.checkpoint, args.threads, steps)
    write_summary(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
