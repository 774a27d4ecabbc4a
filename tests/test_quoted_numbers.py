"""Numbers in the profiles' ``tuned_on`` texts are backed by the CSV files those texts name.

Every ``tuned_on`` text of every ``notebooks/params/*.yaml`` must name at least one
``figures/*.csv`` or ``benchmarks/results/*.csv`` (a committed benchmark's results), and every
decimal number it quotes (``0.518``, ``0.0002``, ``1.0``) must appear at its printed precision
in a cell of one of the files it names. A named file must exist, unless it is a validation CSV that ``python -m paperlib.validation`` writes for a profile whose
``validation`` section has that modality's grid (the text may then name it before it is
generated, but may not quote numbers from it until it is).
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest
import yaml

from paperlib import paths
from paperlib.config import load_profile

CSV_NAME = re.compile(r"(?:figures|benchmarks/results)/[A-Za-z0-9_.\-]+\.csv")
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")
VALIDATION_CSV = re.compile(r"figures/validation_(?P<modality>mri|stem|real_mri)_(?P<profile>[A-Za-z0-9\-]+)(?:_summary)?\.csv")
PARAMS = sorted(paths.params_dir().glob("*.yaml"))


def tuned_on_texts(path: Path) -> list[tuple[str, str]]:
    """``(dotted key, text)`` of every ``tuned_on`` key in a profile file, at any depth."""
    found = []

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                dotted = f"{prefix}.{key}" if prefix else str(key)
                if key == "tuned_on":
                    found.append((dotted, value))
                else:
                    walk(value, dotted)

    walk(yaml.safe_load(path.read_text()), "")
    return found


def producible(name: str, params_dir: Path) -> bool:
    """Whether ``name`` is a validation CSV of a profile in ``params_dir`` that has the grid for it."""
    match = VALIDATION_CSV.fullmatch(name)
    if match is None or not (params_dir / f"{match['profile']}.yaml").is_file():
        return False
    profile = load_profile(params_dir / f"{match['profile']}.yaml")
    return profile.validation is not None and getattr(profile.validation, match["modality"]) is not None


def _cells(path: Path) -> set[float]:
    values = set()
    with open(path, newline="") as f:
        for row in csv.reader(f):
            for cell in row:
                try:
                    values.add(float(cell))
                except ValueError:
                    pass
    return values


def quote_problems(text, root: Path, params_dir: Path) -> list[str]:
    """What is wrong with one ``tuned_on`` text (empty: nothing): no CSV named, a named CSV that
    neither exists under ``root`` nor is producible, decimal numbers found in none of the files."""
    if not isinstance(text, str):
        return [f"expected a text, got {text!r}"]
    names = sorted(set(CSV_NAME.findall(text)))
    if not names:
        return ["names no figures/*.csv or benchmarks/results/*.csv that backs it"]
    problems = [f"names {n}, which does not exist and is no validation CSV of a profile with that grid"
                for n in names if not (root / n).is_file() and not producible(n, params_dir)]
    cells = set().union(*(_cells(root / n) for n in names if (root / n).is_file()))
    prose = CSV_NAME.sub(" ", text)
    for number in dict.fromkeys(DECIMAL.findall(prose)):
        decimals = len(number.split(".")[1])
        if not any(f"{v:.{decimals}f}" == number for v in cells):
            problems.append(f"quotes {number}, found (at {decimals} decimals) in none of {names}")
    return problems


# --- the checker on a small example ------------------------------------------------------------

def test_checker_flags_unbacked_numbers_and_missing_files(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "scores.csv").write_text("method,ssim,weight\ntv,0.884058,0.002\ncs,nan,0.5\n")
    params = paths.params_dir()
    ok = "TV weight 0.002 (SSIM 0.884, 0.88), grid up to 0.5 in figures/scores.csv"
    assert quote_problems(ok, tmp_path, params) == []
    assert quote_problems("SSIM 0.885 in figures/scores.csv", tmp_path, params) == [
        "quotes 0.885, found (at 3 decimals) in none of ['figures/scores.csv']"]
    assert quote_problems("SSIM 0.884 on the validation split", tmp_path, params) == [
        "names no figures/*.csv or benchmarks/results/*.csv that backs it"]
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "choice.csv").write_text("prior,criterion\na,0.850536\n")
    assert quote_problems("criterion 0.850536 (benchmarks/results/choice.csv)", tmp_path, params) == []
    assert quote_problems("criterion 0.850537 (benchmarks/results/choice.csv)", tmp_path, params) == [
        "quotes 0.850537, found (at 6 decimals) in none of ['benchmarks/results/choice.csv']"]
    assert quote_problems("see figures/missing.csv", tmp_path, params) == [
        "names figures/missing.csv, which does not exist and is no validation CSV of a profile with that grid"]
    # a validation CSV not generated yet may be named (ci has a grid) but no number taken from it
    assert quote_problems("grid in figures/validation_stem_ci_summary.csv", tmp_path, params) == []
    assert quote_problems("best 0.5 in figures/validation_stem_ci_summary.csv", tmp_path, params) == [
        "quotes 0.5, found (at 1 decimals) in none of ['figures/validation_stem_ci_summary.csv']"]
    assert quote_problems("figures/validation_stem_paper.csv", tmp_path, params)  # paper has no grid


# --- the shipped profiles -----------------------------------------------------------------------

@pytest.mark.parametrize("path", PARAMS, ids=[p.name for p in PARAMS])
def test_tuned_on_numbers_are_in_the_csvs_they_name(path):
    texts = tuned_on_texts(path)
    assert texts, f"{path.name}: no tuned_on texts found"
    failures = [f"{path.name}: {key}: {problem}" for key, text in texts
                for problem in quote_problems(text, paths.repo_root(), path.parent)]
    if failures:
        pytest.fail("\n".join(failures), pytrace=False)
