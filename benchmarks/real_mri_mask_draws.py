"""Does the held-out verdict depend on the k-space mask draw? DART and TV on every held-out scan under several mask draws.

Each registered scan is undersampled with masks seeded from its registry index
(:func:`paperlib.experiments.real_mri.scan_mask_seed`); the table (``notebooks/tab_real_mri.py``)
has one draw per scan, draw 0. Here every held-out scan is reconstructed by DART and TV (the
table's settings and prior) under draws ``0 .. K-1`` of the same mask kind, acceleration and
centre fraction; draw 0's rows are the table's. Reported: DART - TV per scan, acceleration and
draw, its mean over the draws, and per acceleration the mean over scans and draws with its 95 %
bootstrap interval over the *scans* (the draws of one scan resampled together:
:func:`paperlib.tables.summarise` resamples cases), beside draw 0 alone (the table's summary);
then the same means as the held-out set grew (the scans of the first k registry searches,
:data:`paperlib.data.real_mri.BATCHES`), and with the scans of one subject averaged first.
A measurement of held-out rows after every choice was made: nothing is chosen from it.

Writes ``benchmarks/results/real_mri_mask_draws.{csv,md}``::

    python benchmarks/real_mri_mask_draws.py --profile default --draws 4

(``--report-only`` re-renders the report from the CSV.)
"""
from __future__ import annotations

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.real_mri import REAL_SCANS, load_real_scan
from paperlib.experiments.real_mri import RealMRICase, margin_verdicts, real_case
from paperlib.provenance import git_commit
from real_mri_fov import run_dart_tv  # a sibling script (benchmarks/)
from _cli import bench_parser, parse_args, rows_prior, write_summary  # a sibling script (benchmarks/)

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
             f"Commit {git_commit()}; prior {rows_prior(rows)}; the table's settings; "
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
            verdict = margin_verdicts(s, COLUMNS)
            lines.append(f"| {float(s['acceleration']):g}x | {label} | {s['n_cases']} | "
                         f"{tables.mean_std_ci(s, 'ssim_whole')} | {verdict[0]} | "
                         f"{tables.mean_std_ci(s, 'ssim_head')} | {verdict[1]} |")
    lines += ["", "- Mean ± sample std over the rows (scans x draws) [95 % bootstrap interval, resampling scans "
              "with all their draws]; 'NO' where the mean misses +0.02.", ""]
    return "\n".join(lines + growth_lines(diffs, draws)) + "\n"


def _mean_by_subject(diffs: list[dict], column: str) -> float:
    """Mean over subjects of the mean over each subject's rows (scans x draws)."""
    by: dict[str, list[float]] = {}
    for d in diffs:
        by.setdefault(REAL_SCANS[d["scan"]].subject_key, []).append(float(d[column]))
    return sum(sum(v) / len(v) for v in by.values()) / len(by)


def growth_lines(diffs: list[dict], draws: list[int]) -> list[str]:
    """Markdown: the mean DART - TV over the held-out scans registered by each search (cumulative,
    :data:`paperlib.data.real_mri.BATCHES`), for draw 0 and for all draws; and over every held-out
    scan with the scans of one subject averaged first."""
    batches = sorted({REAL_SCANS[d["scan"]].batch for d in diffs})
    accelerations = sorted({float(d["acceleration"]) for d in diffs})
    lines = ["**As the held-out set grew** (the held-out scans registered by searches 1..k of "
             "`paperlib.data.real_mri.BATCHES`; the last rows are every held-out scan, as above, then the same "
             "with the scans of one subject averaged first)", "",
             f"| Held-out scans | n | Acceleration | draw 0: whole / head | draws 0-{draws[-1]}: whole / head |",
             "|---|---|---|---|---|"]
    groups = [(f"searches 1-{k}" if k > batches[0] else f"search {k}",
               [d for d in diffs if REAL_SCANS[d["scan"]].batch <= k], False) for k in batches]
    groups.append(("per subject, all searches", diffs, True))
    for label, chosen, per_subject in groups:
        for acc in accelerations:
            mine = [d for d in chosen if float(d["acceleration"]) == acc]
            if not mine:
                continue
            first = [d for d in mine if d["draw"] == 0]
            cells = []
            for subset in (first, mine):
                if per_subject:
                    means = [_mean_by_subject(subset, c) for c in COLUMNS]
                else:
                    means = [sum(float(d[c]) for d in subset) / len(subset) for c in COLUMNS]
                cells.append(f"{means[0]:+.4f} / {means[1]:+.4f}")
            n = len({REAL_SCANS[d["scan"]].subject_key if per_subject else d["scan"] for d in mine})
            lines.append(f"| {label} | {n}{' subjects' if per_subject else ' scans'} | {acc:g}x | {cells[0]} | {cells[1]} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--draws", type=int, default=4, help="mask draws per scan and acceleration (0 = the table's)")
    p.add_argument("--report-only", action="store_true", help="re-render the report from --out's CSV, run nothing")
    args = parse_args(p, argv)
    if args.report_only:
        text = report(tables.read_csv_rows(args.out), args.profile)
        write_summary(args.out, text)
        return 0
    profile = load_profile(args.profile)
    run_dart_tv(profile, cases(profile, args.draws), args.out, lambda rows: report(rows, args.profile))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
