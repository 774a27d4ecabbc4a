"""Is the variational 2D-prior method's loss to CS an iteration budget? (issue 18, finding 1)

In the notebook ``resolution_robust`` the variational method (100 Adam iterations) beats DPS and
DDS + TV-z but loses to CS (L1-wavelet, 100 FISTA iterations) by about 3 dB at 4x (level at 8x).
This script runs both longer on one **validation** subject (``synthetic_subject(--subject)``,
never an evaluation seed) at the fixed prior's own voxel (shift x1, no resolution question) and
acceleration ``--acceleration``, with every other setting of the profile's ``resolution_robust``
section: the variational method with the fixed-voxel prior at the section's weight, the same
optimiser without the prior (weight 0: least squares), and CS, each at every iteration count of
``--iters``. Writes ``benchmarks/results/variational_iters.csv`` (one row per method and count,
with the wall time) and ``variational_iters.md``.

    python benchmarks/variational_iters.py --profile default
"""
from __future__ import annotations

import sys

from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.slices2d import FIXED_VOXEL_MM
from paperlib.experiments.resolution_robust import run_case, section_of, slice_priors
from paperlib.provenance import git_commit
from tune_resolution_robust import validation_case  # benchmarks/, next to this script
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)

#: (label, method of paperlib.experiments.resolution_robust.METHODS, section field of the count, overrides)
ROWS = (("variational, fixed prior", "variational_fixed", "iters", {}),
        ("same optimiser, no prior (weight 0)", "variational_fixed", "iters", {"weight": 0.0}),
        ("CS (L1-wavelet)", "cs", "cs_iters", {}))


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, __file__)
    ap.add_argument("--subject", type=int, default=39_000, help="synthetic_subject seed (validation)")
    ap.add_argument("--acceleration", type=float, default=4.0)
    ap.add_argument("--iters", nargs="+", type=int, default=[100, 300, 1000])
    args = parse_args(ap, argv)
    profile = load_profile(args.profile)
    section = section_of(profile)
    case = validation_case(profile, args.subject, 1.0, args.acceleration)
    priors = slice_priors(profile)
    rows = []
    jobs = [(row, n) for row in ROWS for n in args.iters]
    for (label, method, field, overrides), n in tqdm(jobs, desc="iteration budget"):
        sec = section.model_copy(update={**overrides, field: n, "seeds": section.seeds[:1]})
        (r,) = run_case(case, [method], priors, sec)
        rows.append({**r, "variant": label, "iterations": n})
    tables.write_csv_rows(rows, args.out)
    lines = [f"# Iteration budget of the variational method and CS (profile {args.profile})", "",
             f"Validation subject {args.subject} at the fixed prior's voxel ({FIXED_VOXEL_MM} mm, shift x1), "
             f"R {args.acceleration:g}, simulated coils as in the notebook, seed {section.seeds[0]}, weight "
             f"{section.weight:g}, CS weight {section.cs_weight:g}; {args.threads} threads; code {git_commit()[:10]}.",
             "", "| Method | Iterations | PSNR dB | SSIM | SSIM head | s |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['variant']} | {r['iterations']} | {r['psnr_volume']:.2f} | {r['ssim_whole']:.4f} | "
              f"{r['ssim_head']:.4f} | {r['wall_time_s']:.1f} |" for r in rows]
    md = "\n".join(lines) + "\n"
    write_summary(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
