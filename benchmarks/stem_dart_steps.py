"""4D-STEM DART at fewer diffusion steps: the time it would save and the accuracy it would lose.

Issue 19 asks DART to be 2x faster at equal SSIM; the 4D-STEM DART takes the profile's diffusion steps
(``stem_diffusion.dart.steps``: 20 when this ran with plain physics steps, 18 since they run with momentum,
``benchmarks/stem_momentum.py``), each with its physics steps. This script runs the profile's DART
at each of ``--steps`` on the first ``--n`` **validation** crystals made as the test tables' are
(``paperlib.experiments.stem.eval_cases(split="val")``: abTEM, frozen phonons, Poisson noise at the
profile's dose, random depth, tilt; never a test crystal), and reports per-slice and projection SSIM
and the wall time per crystal, each step count paired per crystal with the profile's (which runs
whether or not ``--steps`` names it).

Writes ``benchmarks/results/stem_dart_steps.csv`` (per crystal) and ``stem_dart_steps.md``.

    python benchmarks/stem_dart_steps.py --profile default --n 4 --steps 10 15 20
"""
from __future__ import annotations

import sys

from paperlib import tables
from paperlib.config import load_profile
from paperlib.experiments.runner import run_cases
from paperlib.experiments.stem import eval_cases
from stem_likelihood import SCORES, base_parser, code_label, paired_cell, write_results  # a sibling script
from _cli import parse_args  # a sibling script (benchmarks/)


def run(profile_name: str, n: int, steps: list[int], seed: int = 0) -> list[dict]:
    profile = load_profile(profile_name)
    cases = eval_cases(profile, "val", n, progress=True)
    sec = profile.stem_diffusion
    rows = []
    for k in steps:
        p = profile.model_copy(update={"stem_diffusion": sec.model_copy(
            update={"dart": sec.dart.model_copy(update={"steps": k})})})
        got, _ = run_cases(p, "stem", cases, ["dart"], seeds=(seed,))
        rows += [{"steps": k, **r} for r in got]
    return rows


def report(rows: list[dict], profile_name: str, ref: int, threads: int) -> str:
    """The summary table; ``ref``: the profile's step count, the one every other count is paired with."""
    lines = ["| DART steps | n | Per-slice SSIM | minus the profile's steps | Projection SSIM | "
             "minus the profile's steps | s per crystal |", "|---|---|---|---|---|---|---|"]
    for k in sorted({int(r["steps"]) for r in rows}):
        pick = [dict(r, method=str(int(r["steps"]))) for r in rows if int(r["steps"]) in (k, ref)]
        mine = [r for r in pick if r["method"] == str(k)]
        cells = []
        for c in SCORES:
            mean = sum(float(r[c]) for r in mine) / len(mine)
            if k == ref:
                cells += [f"{mean:.4f}", "–"]
                continue
            (d,) = tables.paired_differences(pick, str(k), str(ref), [c], by=())
            cells += [f"{mean:.4f}", paired_cell(d, c)]
        wall = sum(float(r["wall_time_s"]) for r in mine) / len(mine)
        lines.append(f"| {k} | {len(mine)} | " + " | ".join(cells) + f" | {wall:.2f} |")
    lines += ["", f"- Validation crystals made as the test tables' are (abTEM, frozen phonons, Poisson noise at the "
              f"profile's dose, random depth, tilt), profile {profile_name} (its DART: {ref} steps), seed 0, "
              f"{threads} threads. Differences paired per crystal, mean [95 % bootstrap interval over the crystals]; "
              f"code {code_label()}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__, __file__)
    p.add_argument("--steps", type=int, nargs="+", default=[10, 15, 20])
    args = parse_args(p, argv)
    ref = load_profile(args.profile).stem_diffusion.dart.steps
    rows = run(args.profile, args.n, sorted(set(args.steps) | {ref}))  # the reference always runs
    write_results(rows, args.out, report(rows, args.profile, ref, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
