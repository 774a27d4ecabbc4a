"""What a real-scan prior costs per network call, side by side: one denoiser step on every real scan.

The real-scan table's time is almost all network calls (DART's 90 steps, DRIFT's and the projection
method's): how much a wider prior adds to ``make figures`` is its time per call against the
previous prior's, measured in one process at the same moment (this machine's speed varies from run
to run by 10 % and more, so times of separate runs do not compare). For each prior of
``--checkpoints`` (default: the previous and the current real-scan prior), tiled as the notebook
tiles it (the profile's ``real_mri.overlap``, ``diffusion.precision``), and each registered real
scan at its own shape (``paperlib.data.real_mri.load_real_scans``), the median of ``--repeats``
timed ``denoise`` calls at timestep 10 after one untimed warm-up (``precision_speed.time_step``),
and each prior's time over the first prior's. Writes ``benchmarks/results/real_mri_prior_cost.csv``
and ``.md``.

    python benchmarks/real_mri_prior_cost.py --profile default
"""
from __future__ import annotations

import platform
import statistics

import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.real_mri import load_real_scans
from paperlib.diffusion.partition import resolve_precision
from paperlib.diffusion.tiling import tiled
from paperlib.experiments.priors import guided_prior, prior_manifest
from paperlib.provenance import git_commit
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)
from precision_speed import time_step  # a sibling script (benchmarks/)

CANDIDATES = ("checkpoints/mri_general_lownoise", "checkpoints/mri_general_gpu_w24")


def run(profile_name: str, checkpoints: tuple[str, ...], repeats: int, timestep: int = 10) -> list[dict]:
    """One row per (scan, prior): its shape, seconds per call, the ratio to the first prior's."""
    profile = load_profile(profile_name)
    real = profile.real_mri
    if real is None:
        raise SystemExit(f"profile {profile_name}: no real_mri section")
    priors = {c: tiled(guided_prior(real.diffusion, c), overlap=real.overlap) for c in checkpoints}
    params = {c: prior_manifest(c)["num_parameters"] for c in checkpoints}
    gen = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for scan in tqdm(load_real_scans(), desc="real scans"):
            x = torch.rand(tuple(scan.image.shape), generator=gen)
            first = None
            for c in checkpoints:
                seconds, _ = time_step(priors[c], x, timestep, repeats)
                first = seconds if first is None else first
                rows.append({"scan": scan.name, "role": scan.role, "shape": "x".join(map(str, scan.image.shape)),
                             "prior": c, "parameters": params[c], "seconds_per_call": round(seconds, 4),
                             "ratio_to_first": round(seconds / first, 3), "repeats": repeats,
                             "precision": resolve_precision(real.diffusion.precision),
                             "threads": torch.get_num_threads(), "git_commit": git_commit()})
    return rows


def report(rows: list[dict]) -> str:
    """Markdown: seconds per call per scan and prior, the ratio to the first prior, and the means."""
    priors = list(dict.fromkeys(r["prior"] for r in rows))
    scans = list(dict.fromkeys(r["scan"] for r in rows))
    by = {(r["scan"], r["prior"]): r for r in rows}
    r0 = rows[0]
    lines = ["# One denoiser step of each real-scan prior on every real scan", "",
             f"{platform.machine()}, {int(r0['threads'])} thread(s), networks in {r0['precision']}; the median of "
             f"{int(r0['repeats'])} calls after a warm-up, all in one process; code {str(r0['git_commit'])[:10]}.", "",
             "| Scan | Shape (D x H x W) | " + " | ".join(f"{p} s" for p in priors) + " | "
             + " | ".join(f"{p} / {priors[0]}" for p in priors[1:]) + " |",
             "|---|---|" + "---|" * (2 * len(priors) - 1)]
    for s in scans:
        lines.append(f"| {s} | {by[s, priors[0]]['shape']} | "
                     + " | ".join(f"{float(by[s, p]['seconds_per_call']):.3f}" for p in priors) + " | "
                     + " | ".join(f"{float(by[s, p]['ratio_to_first']):.2f}x" for p in priors[1:]) + " |")
    lines += ["", "| Prior | parameters | seconds per call, sum over the scans | ratio of the sums | "
              "per-scan ratio, mean (min - max) |", "|---|---|---|---|---|"]
    total0 = sum(float(by[s, priors[0]]["seconds_per_call"]) for s in scans)
    for p in priors:
        total = sum(float(by[s, p]["seconds_per_call"]) for s in scans)
        ratios = [float(by[s, p]["ratio_to_first"]) for s in scans]
        lines.append(f"| {p} | {int(by[scans[0], p]['parameters'])} | {total:.3f} | {total / total0:.2f}x | "
                     f"{statistics.mean(ratios):.2f}x ({min(ratios):.2f}x - {max(ratios):.2f}x) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--checkpoints", nargs="+", default=list(CANDIDATES), help="prior folders (the first is the reference)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per scan and prior (median)")
    p.add_argument("--report-only", action="store_true", help="re-render the report from --out's CSV, run nothing")
    args = parse_args(p, argv)
    if args.repeats < 1:
        p.error(f"--repeats: expected >= 1, got {args.repeats}")
    if not args.report_only:
        tables.write_csv_rows(run(args.profile, tuple(args.checkpoints), args.repeats), args.out)
    write_summary(args.out, report(tables.read_csv_rows(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
