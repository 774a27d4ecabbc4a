import math

import pytest

from paperlib import tables


def _rows():
    return [
        {"modality": "mri", "dataset": "brain", "case": f"c{i}", "method": m, "seed": 0,
         "ssim": s, "ssim_head": s - 0.1, "psnr": 30.0 + i, "wall_time_s": 0.5, "peak_rss_bytes": 1e9}
        for i, (m, s) in enumerate([("tv", 0.8), ("tv", 0.9), ("cs_mri", 0.7)])
    ]


def test_cases_roundtrip_and_summary(tmp_path):
    path = tables.write_cases(_rows(), tmp_path / "x_cases.csv")
    back = tables.read_cases(path)
    assert len(back) == 3 and back[0]["ssim"] == pytest.approx(0.8)
    summary = tables.summarise(back)
    tv = next(s for s in summary if s["method"] == "tv")
    assert tv["n"] == 2
    assert tv["ssim_mean"] == pytest.approx(0.85) and tv["ssim_std"] == pytest.approx(0.05)


def test_table_has_paper_column(tmp_path):
    summary = tables.summarise(_rows())
    header, rows = tables.ssim_table_rows(summary, {("mri", "tv"): (0.803, 0.024)}, {"tv": "TV"})
    assert header[-1] == "SSIM reported in paper"
    assert rows[0][1] == "TV" and rows[0][-1] == "0.803 ± 0.024"
    assert rows[1][-1] == "not in paper"
    md, csv = tables.write_table(tmp_path / "t", header, rows, title="T", provenance={"git_commit": "abc"})
    assert "0.850 ± 0.050" in md.read_text() and "abc" in md.read_text()
    assert csv.read_text().splitlines()[0].startswith("Modality,Method")


def test_missing_columns_and_files(tmp_path):
    with pytest.raises(ValueError, match="lack columns"):
        tables.write_cases([{"method": "tv"}], tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        tables.read_cases(tmp_path / "none.csv")


def test_nan_values_are_skipped():
    rows = _rows()
    rows[0]["ssim_head"] = math.nan
    tv = tables.summarise(rows)[0]
    assert tv["ssim_head_mean"] == pytest.approx(0.8)
