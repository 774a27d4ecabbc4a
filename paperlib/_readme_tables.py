"""Copy the generated tables into README.md, so the README never quotes a number by hand.

README.md holds blocks of the form::

    <!-- BEGIN figures/tab1_ssim.md -->
    ... (generated: the table and its notes, without the provenance line)
    <!-- END figures/tab1_ssim.md -->

``python -m paperlib._readme_tables`` rewrites every block from the named file (``make figures``
runs it last); ``python -m paperlib._readme_tables --check`` exits 1 and names the stale blocks
instead. ``tests/test_readme_numbers.py`` runs the check, and checks that every other decimal
number the README quotes stands in a generated file (figures/, benchmarks/results/, the params
files or a checkpoint manifest).
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .io import atomic_write_text
from .paths import REPO_ROOT

BLOCK = re.compile(r"(<!-- BEGIN (?P<name>[^ ]+) -->\n)(?P<body>.*?)(<!-- END (?P=name) -->)", re.S)


def table_excerpt(path: Path) -> str:
    """The Markdown table of ``path`` and its notes: every line but the title and provenance."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: named by a README block but missing; run `make figures` first")
    keep = [line for line in path.read_text().splitlines()
            if not line.startswith("# ") and not line.startswith("Provenance:")]
    while keep and not keep[0].strip():
        keep.pop(0)
    while keep and not keep[-1].strip():
        keep.pop()
    return "\n".join(keep) + "\n"


def render(readme: str, root: Path = REPO_ROOT) -> tuple[str, list[str]]:
    """``readme`` with every block regenerated, and the names of the blocks that changed."""
    changed: list[str] = []

    def fill(match: re.Match) -> str:
        body = table_excerpt(root / match["name"])
        if body != match["body"]:
            changed.append(match["name"])
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fill, readme), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib._readme_tables", description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    parser.add_argument("--check", action="store_true", help="exit 1 if a block is stale; write nothing")
    args = parser.parse_args(argv)
    text, changed = render(args.readme.read_text(), args.readme.resolve().parent)
    if args.check:
        if changed:
            print(f"{args.readme}: stale blocks {changed}; run `python -m paperlib._readme_tables`", file=sys.stderr)
            return 1
        return 0
    if changed:
        atomic_write_text(args.readme, text)
        print(f"{args.readme}: regenerated {changed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
