"""Where DART and DRIFT put the potential in depth, against where the crystal is (issue 16).

On the test tables' data (``stem_eval.data``: crystals at a random depth) the per-slice SSIM of
DART beats the depth-blind reference on some crystals and loses on others. DART and DRIFT sample
the profile's ``stem_prior.guided_checkpoint`` (default profile: ``checkpoints/stem_anydepth``,
trained on crystals at any depth; before it, a prior of crystals at the entrance surface). This
script measures, per test crystal,
the true occupied slices (mass per slice of the ground truth above 5 % of its largest) and each
method's *mass centre in depth* (slice index weighted by the reconstruction's potential summed
over each slice; lateral registration does not move it) against the truth's, with the per-slice
SSIM and the depth-blind reference, so that a loss can be traced to a misplaced slab. It also
records the potential's strength: the *mass ratio* (total potential of the reconstruction over
the truth's; 1 = the right strength) and the metric's fitted scale ``a``
(:func:`paperlib.metrics.stem.align`: truth ~ a * recon + b), which is what the user report in
issue 16 quoted (DART ``a`` = 0.32) but mixes strength with correlation
(``a = corr * std(truth) / std(recon)``: a misplaced potential of the right strength also has a
small ``a``).

    python benchmarks/stem_depth_placement.py --profile default --out benchmarks/results/stem_depth_placement.csv

Writes the CSV (one row per crystal and method) and a Markdown summary next to it.
"""
from __future__ import annotations

import sys

import torch

from paperlib import tables
from paperlib.config import load_profile
from paperlib.experiments import stem as stem_exp
from paperlib.experiments.runner import run_cases
from paperlib.metrics.stem import align
from paperlib.provenance import git_commit
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)


def depth_centre(volume: torch.Tensor) -> float:
    """Slice index weighted by the (non-negative part of the) potential summed over each slice."""
    mass = volume.double().clamp_min(0).sum(dim=(1, 2))
    return float((mass * torch.arange(len(mass), dtype=torch.float64)).sum() / mass.sum())


def occupied(volume: torch.Tensor, fraction: float = 0.05) -> tuple[int, int]:
    """First and last slice whose summed potential exceeds ``fraction`` of the largest slice's."""
    mass = volume.double().sum(dim=(1, 2))
    idx = torch.nonzero(mass > fraction * mass.max()).flatten()
    return int(idx[0]), int(idx[-1])


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--methods", nargs="+", default=["dart", "drift", "three_pie_thickness"])
    args = parse_args(p, argv)
    cfg = load_profile(args.profile)
    cases = stem_exp.eval_cases(cfg, "test", progress=True)
    got, recons = run_cases(cfg, "stem", cases, args.methods, seeds=cfg.stem_eval.seeds[:1], keep=True)
    seed = cfg.stem_eval.seeds[0]
    rows = []
    for case in cases:
        first, last = occupied(case.potential)
        truth_centre = depth_centre(case.potential)
        for r in (r for r in got if r["case"] == case.case_id):
            recon = recons[(case.case_id, r["method"], seed)]
            scale = float(align(recon, case.potential)[2])
            mass = float(recon.double().sum() / case.potential.double().sum())
            rows.append({"case": case.case_id, "method": r["method"], "true_first_slice": first,
                         "true_last_slice": last, "true_centre": truth_centre, "centre": depth_centre(recon),
                         "centre_error": depth_centre(recon) - truth_centre, "mass_ratio": mass, "fitted_scale": scale,
                         "ssim_slice_mean": r["ssim_slice_mean"], "ssim_depth_blind": r["ssim_depth_blind"]})
    tables.write_csv_rows(rows, args.out)
    body = [[r["case"], r["method"], f"{r['true_first_slice']}-{r['true_last_slice']}", f"{r['true_centre']:.2f}",
             f"{r['centre']:.2f}", f"{r['centre_error']:+.2f}", f"{r['mass_ratio']:.2f}", f"{r['fitted_scale']:.2f}",
             f"{r['ssim_slice_mean']:.3f}",
             f"{r['ssim_depth_blind']:.3f}"] for r in rows]
    text = "\n".join([
        f"# Depth placement on the test tables' 4D-STEM data (profile {args.profile})", "",
        tables.markdown_table(["Crystal", "Method", "True slices", "True centre", "Centre", "Error (slices)",
                               "Mass ratio", "Fitted scale a",
                               "SSIM per slice", "Depth-blind reference"], body).rstrip("\n"), "",
        f"- {stem_exp.data_note(cfg)}",
        "- Centre: slice index (0 = entrance) weighted by the potential (its positive part) summed over each "
        "slice; true slices: those holding > 5 % of the largest slice's potential. Mass ratio: total potential "
        "of the reconstruction / the truth's (1: the truth's strength). Fitted scale: the metric's truth ~ a * "
        "reconstruction + b, a = corr * std(truth) / std(reconstruction) (small for a misplaced potential too).",
        f"- Seed {seed}; code {git_commit()[:10]}, {args.threads} thread(s).", ""])
    write_summary(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
