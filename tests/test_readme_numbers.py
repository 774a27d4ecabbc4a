"""README numbers come from generated files, never from memory.

The tables in README.md are copies of ``figures/*.md`` (``paperlib._readme_tables``); every other
decimal number with two or more decimals that the README quotes must stand, as printed, in a
generated file: a table or summary CSV in ``figures/`` (per-case ``*_cases.csv`` files are left
out: among thousands of values almost any number would match one), ``benchmarks/results/`` (and
its folders, such as a table frozen when its prior changed) or a checkpoint manifest. Quote a number as the file prints it.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from paperlib import _readme_tables
from paperlib.paths import REPO_ROOT

NUMBER = re.compile(r"(?<![\w.])-?\d+\.(\d{2,})(?![\w]|\.\d)")
SOURCES = ("figures/*.csv", "figures/*.md", "benchmarks/results/*", "benchmarks/results/*/*", "checkpoints/*/*.json")


def _source_tokens(root: Path) -> set[str]:
    tokens: set[str] = set()
    for pattern in SOURCES:
        for path in sorted(root.glob(pattern)):
            if path.is_file() and not path.name.endswith("_cases.csv"):
                tokens.update(re.findall(r"-?\d+(?:\.\d+)?", path.read_text(errors="replace")))
    return tokens


def unbacked_numbers(readme: str, root: Path) -> list[str]:
    """Numbers (>= 2 decimals) quoted outside the generated blocks that no source file holds."""
    prose = _readme_tables.BLOCK.sub("", readme)
    tokens = _source_tokens(root)
    missing = []
    for m in NUMBER.finditer(prose):
        if m.group(0) not in tokens:
            line = prose.count("\n", 0, m.start()) + 1
            missing.append(f"{m.group(0)} (README prose line {line}: {prose.splitlines()[line - 1][:100]!r})")
    return missing


def test_readme_tables_are_the_generated_ones():
    text = (REPO_ROOT / "README.md").read_text()
    blocks = [m["name"] for m in _readme_tables.BLOCK.finditer(text)]
    assert blocks, "README.md has no generated table blocks"
    _, stale = _readme_tables.render(text)
    assert not stale, f"README blocks differ from the generated files: {stale}; run python -m paperlib._readme_tables"


def test_every_number_the_readme_quotes_is_backed_by_a_generated_file():
    missing = unbacked_numbers((REPO_ROOT / "README.md").read_text(), REPO_ROOT)
    assert not missing, "README numbers found in no generated file:\n" + "\n".join(missing)


def test_the_checks_catch_a_typed_number_and_a_stale_block(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "t.md").write_text("# T\n\n| a |\n|---|\n| 0.9714 |\n\nProvenance: `{}`\n")
    (tmp_path / "figures" / "t.csv").write_text("a\n0.9714\n")
    (tmp_path / "figures" / "t_cases.csv").write_text("a\n0.972\n")
    readme = ("DART reaches 0.9714 here, and 0.972 there; torch 2.13.0 is ignored.\n"
              "<!-- BEGIN figures/t.md -->\n| a |\n|---|\n| 0.5 |\n<!-- END figures/t.md -->\n")
    assert [m.split()[0] for m in unbacked_numbers(readme, tmp_path)] == ["0.972"]
    fixed, stale = _readme_tables.render(readme, tmp_path)
    assert stale == ["figures/t.md"] and "| 0.9714 |" in fixed and "Provenance" not in fixed
    assert _readme_tables.render(fixed, tmp_path)[1] == []
    with pytest.raises(FileNotFoundError, match="missing.md"):
        _readme_tables.render("<!-- BEGIN figures/missing.md -->\n<!-- END figures/missing.md -->", tmp_path)
