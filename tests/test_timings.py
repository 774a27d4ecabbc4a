"""make figures' per-notebook timings table (paperlib._timings)."""
from __future__ import annotations

import csv

import pytest

from paperlib import _timings


def test_table_of_the_recorded_seconds_and_their_sum(tmp_path):
    (tmp_path / "tab1_ssim.seconds").write_text("727\n")
    (tmp_path / "fig3_mri_examples.seconds").write_text("22\n")
    assert _timings.write(tmp_path, tmp_path / "t")
    rows = list(csv.DictReader(open(tmp_path / "t.csv")))
    assert [(r["notebook"], r["seconds"]) for r in rows] == [("fig3_mri_examples", "22"), ("tab1_ssim", "727")]
    md = (tmp_path / "t.md").read_text()
    assert "| tab1_ssim | 727 |" in md and "**749** (12.5 min)" in md


def test_no_timings_writes_nothing_and_garbage_is_named(tmp_path):
    assert not _timings.write(tmp_path, tmp_path / "t") and not (tmp_path / "t.md").exists()
    assert _timings.main([str(tmp_path), str(tmp_path / "t")]) == 0
    (tmp_path / "x.seconds").write_text("soon")
    with pytest.raises(ValueError, match="x.seconds: expected a whole number of seconds"):
        _timings.write(tmp_path, tmp_path / "t")
