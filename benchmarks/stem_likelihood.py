"""4D-STEM DART and DRIFT with the amplitude or the Poisson data term, at each dose, on validation crystals.

Issue 16 asks for a Poisson (or amplitude) data term where the dose is finite. Every physics step
minimises the amplitude form of Eq. 2 by default (the Gaussian approximation of Poisson noise after the
square root); ``MultisliceOperator.loss(likelihood="poisson")`` is the Poisson deviance itself (with a
small offset, see its docstring). This script runs the profile's DART and DRIFT with each data term
(``stem_diffusion.<method>.likelihood``) on the first ``--n`` **validation** crystals made as the test
tables' are (``paperlib.experiments.stem.eval_cases(split="val")``: abTEM, frozen phonons, random depth,
tilt; never a test crystal) at each dose of ``--doses`` (e-/Å²; the profile's table dose is the middle
one), and pairs the two per crystal: Poisson minus amplitude, mean [95 % bootstrap interval over the
crystals] (:func:`paperlib.tables.paired_differences`), for per-slice and projection SSIM.

Writes ``benchmarks/results/stem_likelihood.csv`` (one row per dose, crystal, method and data term) and
``stem_likelihood.md`` (the summary; a README block copies it).

    python benchmarks/stem_likelihood.py --profile default --n 4 --doses 1e4 1e5 1e6
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from paperlib import tables
from paperlib.config import load_profile
from paperlib.experiments.runner import run_cases
from paperlib.experiments.stem import eval_cases
from paperlib.io import atomic_write_text
from paperlib.provenance import git_commit
from _cli import bench_parser, parse_args  # a sibling script (benchmarks/)

LIKELIHOODS = ("amplitude", "poisson")
METHODS = ("dart", "drift")
SCORES = ("ssim_slice_mean", "ssim_projected")


def with_likelihood(profile, likelihood: str):
    """``profile`` with DART's and DRIFT's physics steps on the data term ``likelihood``."""
    sec = profile.stem_diffusion
    update = {m: getattr(sec, m).model_copy(update={"likelihood": likelihood}) for m in METHODS}
    return profile.model_copy(update={"stem_diffusion": sec.model_copy(update=update)})


def run(profile_name: str, n: int, doses: list[float], seed: int = 0) -> list[dict]:
    profile = load_profile(profile_name)
    rows = []
    for dose in doses:
        cases = eval_cases(profile, "val", n, dose=dose, progress=True)
        for likelihood in LIKELIHOODS:
            got, _ = run_cases(with_likelihood(profile, likelihood), "stem", cases, list(METHODS), seeds=(seed,))
            rows += [{"dose": dose, "likelihood": likelihood, **r} for r in got]
    return rows


def code_label() -> str:
    """The checkout's commit, short, with ``-dirty`` kept."""
    commit = git_commit()
    return commit[:10] + ("-dirty" if commit.endswith("-dirty") else "")


def base_parser(doc: str, script: str) -> argparse.ArgumentParser:
    """The options of the validation-crystal scripts (this one, ``stem_dart_steps.py`` and
    ``stem_momentum.py``): :func:`_cli.bench_parser`'s and ``--n``."""
    p = bench_parser(doc, script)
    p.add_argument("--n", type=int, default=4, help="validation crystals")
    return p


def paired_cell(diff: dict, column: str) -> str:
    """``+mean [+low, +high]`` of ``column`` in a :func:`paperlib.tables.paired_differences` entry, 4 decimals."""
    return f"{diff[column + '_mean']:+.4f} [{diff[column + '_ci_low']:+.4f}, {diff[column + '_ci_high']:+.4f}]"


def write_results(rows: list[dict], out: Path, text: str) -> None:
    """The per-crystal CSV ``out`` and its summary ``out.md`` (atomically); the summary printed."""
    tables.write_csv_rows(rows, out)
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


def report(rows: list[dict], profile_name: str, threads: int) -> str:
    doses = sorted({float(r["dose"]) for r in rows})
    lines = ["| Dose e-/Å² | Method | n | Per-slice SSIM amplitude | Per-slice SSIM Poisson | Poisson - amplitude, "
             "per slice | Projection SSIM amplitude | Projection SSIM Poisson | Poisson - amplitude, projection | "
             "s per crystal amplitude / Poisson |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for dose in doses:
        for method in METHODS:
            pick = [dict(r, method=f"{r['likelihood']}") for r in rows
                    if float(r["dose"]) == dose and r["method"] == method]
            if not pick:
                continue
            means = {lk: {c: sum(float(r[c]) for r in pick if r["method"] == lk) /
                          sum(r["method"] == lk for r in pick) for c in (*SCORES, "wall_time_s")}
                     for lk in LIKELIHOODS}
            (d,) = tables.paired_differences(pick, "poisson", "amplitude", list(SCORES), by=())
            cells = []
            for c in SCORES:
                cells += [f"{means['amplitude'][c]:.4f}", f"{means['poisson'][c]:.4f}",
                          paired_cell(d, c)]
            lines.append(f"| {dose:g} | {method.upper()} | {d['n_cases']} | " + " | ".join(cells) +
                         f" | {means['amplitude']['wall_time_s']:.1f} / {means['poisson']['wall_time_s']:.1f} |")
    blind = sum(float(r["ssim_depth_blind"]) for r in rows) / len(rows)
    lines += ["", f"- Validation crystals made as the test tables' are (abTEM, frozen phonons, random depth, tilt), "
              f"profile {profile_name}, the profile's DART and DRIFT settings and prior, seed 0, {threads} threads; "
              f"only the physics step's data term differs. Depth-blind reference per slice over these rows: "
              f"{blind:.4f}. Differences paired per crystal, mean [95 % bootstrap interval over the crystals]; "
              f"code {code_label()}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__, __file__)
    p.add_argument("--doses", type=float, nargs="+", default=[1e4, 1e5, 1e6])
    args = parse_args(p, argv)
    rows = run(args.profile, args.n, args.doses)
    write_results(rows, args.out, report(rows, args.profile, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
