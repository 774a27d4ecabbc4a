"""The wall time of each notebook of the last ``make figures`` runs, as a table for the README.

``make figures`` writes ``$(BUILD)/<notebook>.seconds`` (the seconds it took, measured by the
Makefile around ``paperlib._run_notebook``) next to each executed notebook;
``python -m paperlib._timings BUILD OUT`` writes ``OUT.md`` and ``OUT.csv`` (atomically): one row per
notebook with its time and when it finished (the file's modification time, UTC), and the sum.
Notebooks not re-executed keep their last time, so the sum is that of the latest run of each.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import sys
from pathlib import Path

from .io import atomic_write_text


def timings(build: Path) -> list[dict]:
    """``[{"notebook", "seconds", "finished_utc"}]`` from ``build/*.seconds``, by notebook name."""
    rows = []
    for path in sorted(Path(build).glob("*.seconds")):
        text = path.read_text().strip()
        try:
            seconds = int(text)
        except ValueError:
            raise ValueError(f"{path}: expected a whole number of seconds, got {text!r}") from None
        finished = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")
        rows.append({"notebook": path.stem, "seconds": seconds, "finished_utc": finished})
    return rows


def write(build: Path, out: Path) -> bool:
    """Write ``out.md`` and ``out.csv``; ``False`` (nothing written) where ``build`` holds no timings
    (notebooks executed before the Makefile recorded them)."""
    rows = timings(build)
    if not rows:
        return False
    total = sum(r["seconds"] for r in rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["notebook", "seconds", "finished_utc"], lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(out.with_suffix(".csv"), buf.getvalue())
    lines = ["# make figures: wall time per notebook", "", "| Notebook | Seconds | Finished (UTC) |", "|---|---|---|"]
    lines += [f"| {r['notebook']} | {r['seconds']} | {r['finished_utc']} |" for r in rows]
    lines += [f"| **all** | **{total}** ({total / 60:.1f} min) | |", "",
              "- Measured by the Makefile around each notebook's execution (`$(BUILD)/<notebook>.seconds`); the sum "
              "adds the latest run of each notebook. Data generation and caching happen inside the notebooks and "
              "are included.", ""]
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines))
    return True


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m paperlib._timings BUILD_DIR OUT (writes OUT.md and OUT.csv)", file=sys.stderr)
        return 2
    if not write(Path(args[0]), Path(args[1])):
        print(f"{args[0]}: no notebook timings (*.seconds) yet; {args[1]}.md not written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
