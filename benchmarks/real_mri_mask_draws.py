"""Does the held-out verdict depend on the k-space mask draw? DART and TV on every held-out scan under several mask draws.

Each registered scan is undersampled with masks seeded from its registry index
(:func:`paperlib.experiments.real_mri.scan_mask_seed`); the table (``notebooks/tab_real_mri.py``)
has one draw per scan, draw 0. Here every held-out scan is reconstructed by DART and TV (the
table's settings and prior) under draws ``0 .. K-1`` of the same mask kind, acceleration and
centre fraction; draw 0's rows are the table's. Reported: DART - TV per scan, acceleration and
draw, its mean over the draws, and per acceleration the mean over scans and draws with its 95 %
bootstrap interval over the *scans* (the draws of one scan resampled together:
:func:`paperlib.tables.summarise` resamples cases), beside draw 0 alone (the table's summary).
A measurement of held-out rows after every choice was made: nothing is chosen from it.

Writes ``benchmarks/results/real_mri_mask_draws.{csv,md}``::

    python benchmarks/real_mri_mask_draws.py --profile default --draws 4
"""
from __future__ import annotations

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.real_mri import REAL_SCANS, load_real_scan
from paperlib.experiments.real_mri import RealMRICase, real_case
from paperlib.provenance import git_commit
from real_mri_fov import run_dart_tv  # a sibling script (benchmarks/)
from _cli import bench_parser, parse_args  # a sibling script (benchmarks/)

COLUMNS = ("ssim_whole", "ssim_head")


def cases(profile, draws: int, role: str = "held_out") -> list[RealMRICase]:
    """Every scan of ``role`` at every acceleration of ``profile.real_mri`` under mask draws
    ``0 .. draws-1``; case ids ``<scan>@<acc>x#<draw>``."""
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws: expected an integer >= 1, got {draws!r}")
    out = []
    for name, source in REAL_SCANS.items():
        if source.role != role:
            continue
        scan = load_real_scan(name)
        out += [real_case(profile, name, f"{name}@{acc:g}x#{draw}", name, source.role, acc, scan.image,
                          scan.head_mask, draw=draw)
                for acc in profile.real_mri.accelerations for draw in range(draws)]
    return out


def draw_differences(rows: list[dict]) -> list[dict]:
    """DART - TV per case (scan, acceleration, draw), with ``case`` set to the scan (so that a
    summary resamples scans, each with all its draws) and ``draw`` read from the case id."""
    diffs = tables.case_differences(rows, "dart", "tv", COLUMNS, by=("scan", "acceleration"))
    for d in diffs:
        d["draw"] = int(str(d["case"]).rsplit("#", 1)[1])
        d["case"] = d["scan"]
    return diffs


def report(rows: list[dict], profile: str) -> str:
    """Markdown: per scan and acceleration the difference of every draw and their mean; per
    acceleration the mean over scans and draws against draw 0's alone."""
    diffs = draw_differences(rows)
    draws = sorted({d["draw"] for d in diffs})
    lines = [f"# DART - TV on the held-out scans under {len(draws)} k-space mask draws (profile `{profile}`)", "",
             f"Commit {git_commit()}; prior {load_profile(profile).real_mri.checkpoint}; the table's settings; "
             "draw 0 is the table's masks. SSIM whole image / in the head mask.", "",
             "**Per scan**", "",
             "| Scan | Acceleration | " + " | ".join(f"draw {k}: whole / head" for k in draws)
             + " | mean over draws: whole / head |",
             "|---|---|" + "---|" * (len(draws) + 1)]
    for scan_acc in dict.fromkeys((d["scan"], d["acceleration"]) for d in diffs):
        mine = {d["draw"]: d for d in diffs if (d["scan"], d["acceleration"]) == scan_acc}
        cells = [f"{mine[k]['ssim_whole']:+.4f} / {mine[k]['ssim_head']:+.4f}" for k in draws]
        means = [sum(mine[k][c] for k in draws) / len(draws) for c in COLUMNS]
        lines.append(f"| {scan_acc[0]} | {float(scan_acc[1]):g}x | " + " | ".join(cells)
                     + f" | {means[0]:+.4f} / {means[1]:+.4f} |")
    lines += ["", "**Over the held-out scans**", "",
              "| Acceleration | Draws | n scans | DART - TV, whole image | whole >= +0.02 | DART - TV, head | head >= +0.02 |",
              "|---|---|---|---|---|---|---|"]
    for label, chosen in (("0 (the table's)", [d for d in diffs if d["draw"] == 0]), (f"0-{draws[-1]}", diffs)):
        for s in tables.summarise(chosen, by=("acceleration",)):
            verdict = ["yes" if s[f"{c}_mean"] >= 0.02 else "NO" for c in COLUMNS]
            lines.append(f"| {float(s['acceleration']):g}x | {label} | {s['n_cases']} | "
                         f"{tables.mean_std_ci(s, 'ssim_whole')} | {verdict[0]} | "
                         f"{tables.mean_std_ci(s, 'ssim_head')} | {verdict[1]} |")
    lines += ["", "- Mean ± sample std over the rows (scans x draws) [95 % bootstrap interval, resampling scans "
              "with all their draws]; 'NO' where the mean misses +0.02."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--draws", type=int, default=4, help="mask draws per scan and acceleration (0 = the table's)")
    args = parse_args(p, argv)
    profile = load_profile(args.profile)
    run_dart_tv(profile, cases(profile, args.draws), args.out, lambda rows: report(rows, args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
