"""How far apart are two runs of the notebooks? Per-case SSIM / PSNR and time, figures/ against another run's.

Every notebook writes its per-case rows to ``figures/<name>_cases.csv``. This script pairs the rows
of each such file in ``--base`` (default: the committed ``figures/``, read from git at ``--rev``)
with the same file in ``--other`` (the ``figures/`` of another checkout, e.g. a ``make figures`` run
on another machine or with another ``precision``), row by row, after checking that both list the
same cases, methods and seeds in the same order, and reports per file and method: the largest
per-case difference of every SSIM / PSNR column, the difference of their means over the rows
(what a table's mean moves by), and the ratio of the mean wall time (other / base); where a file
also has ``role``, ``acceleration`` or ``dose`` columns (the real-scan table, the dose figure), per
method and each of those (so the held-out scans at 8x are a group of their own). Files present in
only one run are listed as such. Where both runs have ``make_figures_<profile>.csv`` (the Makefile's
wall time per notebook), the seconds of each notebook in both runs and their ratio, with the sums.
Writes ``benchmarks/results/figures_diff.csv`` (and ``figures_diff_notebooks.csv``) and ``.md``.

    python benchmarks/figures_diff.py --other /path/to/other/checkout/figures --label "float32, AVX2-only CPU"
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

from paperlib import tables
from paperlib.provenance import git_commit
from _cli import bench_parser, write_summary  # a sibling script (benchmarks/)

#: the columns that identify a row (those a file has)
KEYS = ("case", "method", "seed", "scan", "acceleration", "dose")
#: the columns a method's rows are grouped by (those a file has): one report row per method and group
GROUPS = ("method", "role", "acceleration", "dose")
ROOT = Path(__file__).resolve().parents[1]


def rows_of(text: str) -> list[dict]:
    """The rows of a CSV file's text, as strings (both runs are read alike, so equal files compare equal)."""
    return list(csv.DictReader(io.StringIO(text)))


def read_base(name: str, base: Path | None, rev: str) -> list[dict] | None:
    """Rows of ``figures/<name>`` from the folder ``base`` or, when ``base`` is None, from git at ``rev``."""
    if base is not None:
        path = base / name
        return rows_of(path.read_text()) if path.exists() else None
    got = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:figures/{name}"], capture_output=True, text=True)
    return rows_of(got.stdout) if got.returncode == 0 else None


def _float(value: str) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def compare(name: str, base: list[dict], other: list[dict]) -> list[dict]:
    """One row per method (and metric column) of the file ``name``; raises ``ValueError`` when the
    two runs do not list the same rows."""
    keys = [k for k in KEYS if base and k in base[0]]
    ident = lambda r: tuple(r.get(k) for k in keys)  # noqa: E731
    if [ident(r) for r in base] != [ident(r) for r in other]:
        raise ValueError(f"{name}: the two runs list other rows ({len(base)} against {len(other)}; keys {keys})")
    metrics = [c for c in base[0] if c.startswith(("ssim", "psnr")) and c in other[0]]
    by = [k for k in GROUPS if k in base[0]] or ["method"]
    group = lambda r: tuple(r.get(k, "") for k in by)  # noqa: E731
    out = []
    for key in dict.fromkeys(group(r) for r in base):
        pairs = [(a, b) for a, b in zip(base, other) if group(a) == key]
        labels = dict(zip(by, key))
        method = labels.pop("method", "")
        where = ", ".join(f"{k} {v}" for k, v in labels.items())
        times = [(_float(a.get("wall_time_s")), _float(b.get("wall_time_s"))) for a, b in pairs]
        times = [(a, b) for a, b in times if a and b is not None]
        ratio = (sum(b for _, b in times) / sum(a for a, _ in times)) if times else None
        for col in metrics:
            vals = [(_float(a[col]), _float(b[col])) for a, b in pairs]
            vals = [(a, b) for a, b in vals if a is not None and b is not None]
            if not vals:
                continue
            diffs = [b - a for a, b in vals]
            out.append({"file": name, "method": method, "group": where, "column": col, "n": len(vals),
                        "max_abs_case_diff": max(abs(d) for d in diffs), "mean_diff": sum(diffs) / len(diffs),
                        "time_ratio": ratio})
    return out


def notebook_times(base: list[dict], other: list[dict]) -> list[dict]:
    """Per notebook in both timing files (``make_figures_<profile>.csv``: notebook, seconds): the
    seconds of each run and other / base, then a row ``all`` with the sums over those notebooks."""
    secs = lambda rows: {r["notebook"]: float(r["seconds"]) for r in rows}  # noqa: E731
    b, o = secs(base), secs(other)
    rows = [{"notebook": n, "base_s": b[n], "other_s": o[n], "ratio": o[n] / b[n] if b[n] else None}
            for n in b if n in o]
    tb, to = sum(r["base_s"] for r in rows), sum(r["other_s"] for r in rows)
    return rows + [{"notebook": "all", "base_s": tb, "other_s": to, "ratio": to / tb if tb else None}]


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, __file__)
    ap.add_argument("--other", type=Path, required=True, help="the other run's figures/ folder")
    ap.add_argument("--base", type=Path, default=None, help="a figures/ folder to compare against (default: git)")
    ap.add_argument("--rev", default="HEAD", help="git revision of the committed figures/ (default HEAD)")
    ap.add_argument("--label", default="", help="what the other run is (printed in the header)")
    args = ap.parse_args(argv)
    if not args.other.is_dir():
        ap.error(f"--other: expected the figures/ folder of another run, {args.other} is not a folder")
    rows, only = [], []
    for path in sorted(args.other.glob("*_cases.csv")):
        base = read_base(path.name, args.base, args.rev)
        other = rows_of(path.read_text())
        if base is None:
            only.append(f"{path.name}: only in the other run")
            continue
        if base == other:
            only.append(f"{path.name}: identical to the base (also where the other run did not rerun its notebook)")
            continue
        rows += compare(path.name, base, other)
    if not rows:
        ap.error(f"--other: no *_cases.csv in {args.other} differs from the base run")
    tables.write_csv_rows(rows, args.out)
    timing = f"make_figures_{args.profile}.csv"
    base_t, other_t = read_base(timing, args.base, args.rev), args.other / timing
    times = notebook_times(base_t, rows_of(other_t.read_text())) if base_t and other_t.exists() else []
    if times:
        tables.write_csv_rows(times, args.out.with_name(args.out.stem + "_notebooks.csv"))
    base_name = str(args.base) if args.base is not None else f"figures/ at {args.rev}"
    ratio = lambda r: "-" if r is None else format(r, ".2f") + "x"  # noqa: E731
    lines = [f"Other run: {args.other.name}/ ({args.label or 'unlabelled'}); base: {base_name}; code {git_commit()[:10]}. "
             "Per file and method (and role, acceleration, dose where the file has them): the largest per-case "
             "difference (other - base) and the difference of the means over the rows; time: mean wall time "
             "other / base.", "",
             tables.markdown_table(
                 ["File", "Method", "Group", "Column", "n", "max abs per-case diff", "mean diff", "time ratio"],
                 [[r["file"], r["method"], r["group"] or "-", r["column"], r["n"], f"{r['max_abs_case_diff']:.6f}",
                   f"{r['mean_diff']:+.6f}", ratio(r["time_ratio"])] for r in rows]).rstrip("\n")]
    if only:
        lines += ["", *(f"- {line}" for line in only)]
    if times:
        minutes = lambda r, k: f" ({r[k] / 60:.1f} min)" if r["notebook"] == "all" else ""  # noqa: E731
        lines += ["", f"Wall time per notebook ({timing}: the Makefile's, data generation included), seconds:", "",
                  tables.markdown_table(
                      ["Notebook", "base s", "other s", "other / base"],
                      [["**all**" if r["notebook"] == "all" else r["notebook"], f"{r['base_s']:.0f}{minutes(r, 'base_s')}",
                        f"{r['other_s']:.0f}{minutes(r, 'other_s')}", ratio(r["ratio"])] for r in times]).rstrip("\n")]
    write_summary(args.out, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
