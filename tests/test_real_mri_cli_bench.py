"""benchmarks/real_mri_cli.py: the command line, run as a user would, scores what the library scores.

The script runs ``python -m paperlib reconstruct`` in subprocesses; its rows for a registered scan
must equal the notebook's (the runner's) rows for the same case, mask and method, up to the NIfTI
round trip, and its report must give every row and the paired DART - TV summary.
"""
from __future__ import annotations

import csv
import sys

import pytest
from _bench import load_benchmark  # tests/

from paperlib.config import load_profile
from paperlib.experiments.real_mri import REAL_MRI, real_cases
from paperlib.experiments.runner import run_cases
from paperlib.io import InputValidationError


@pytest.fixture(scope="module")
def bench():
    module = load_benchmark("real_mri_cli")
    yield module
    sys.modules.pop(module.__name__, None)


def test_cli_rows_equal_the_runners_rows(bench, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    assert bench.main(["--profile", "ci", "--scans", "nib_anatomical", "--methods", "tv", "zero_filled",
                       "--threads", "1", "--out", str(out)]) == 0
    with open(out, newline="") as f:
        cli = {(r["case"], r["method"]): r for r in csv.DictReader(f)}
    ci = load_profile("ci")
    cases = [c for c in real_cases(ci) if c.scan == "nib_anatomical"]
    rows, _ = run_cases(ci, REAL_MRI, cases, ["tv", "zero_filled"], seeds=(0,), progress=False)
    assert len(cli) == len(rows) == 2 * len(ci.real_mri.accelerations)
    for row in rows:
        got = cli[(row["case"], row["method"])]
        for column in ("ssim_whole", "ssim_head", "psnr_volume"):
            assert float(got[column]) == pytest.approx(float(row[column]), abs=2e-4), (row["case"], column)
        assert float(got["negative_fraction"]) == 0.0 and float(got["max_ratio"]) <= 1.0
    md = out.with_suffix(".md").read_text()
    assert md.count("| nib_anatomical | held_out |") == 2 * len(ci.real_mri.accelerations)
    assert "DART - TV" not in md  # no DART rows: no paired summary claimed
    assert "nib_anatomical" in capsys.readouterr().out


def test_user_images_and_the_paired_summary(bench, tmp_path):
    from paperlib.data.real_mri import load_real_scan
    from paperlib.io import save_nifti
    from paperlib.reconstruct import from_dhw

    scan = load_real_scan("nib_anatomical")
    image = tmp_path / "mine.nii.gz"
    save_nifti(image, from_dhw(scan.image[:6].numpy()), scan.affine)
    rows = bench.run("ci", [], [image], ("dart", "tv"), threads=1, progress=False)
    assert {(r["scan"], r["role"], r["method"]) for r in rows} == {("mine.nii.gz", "user", m) for m in ("dart", "tv")}
    md = bench.report(rows, "ci")
    assert "## DART - TV, paired per scan" in md and "| user | 4x | 1 |" in md
    # two files of the same name are two scans, not one
    (tmp_path / "b").mkdir()
    other = tmp_path / "b" / "mine.nii.gz"
    save_nifti(other, from_dhw(scan.image[6:12].numpy()), scan.affine)
    rows = bench.run("ci", [], [image, other], ("tv",), threads=1, progress=False)
    assert sorted(r["scan"] for r in rows) == sorted([str(image), str(other)])


def test_unknown_scan_is_refused_before_any_work(bench, tmp_path):
    with pytest.raises(InputValidationError, match="--scans: unknown.*brats"):
        bench.run("ci", ["brats"], [], progress=False)
