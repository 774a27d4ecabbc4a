"""benchmarks/figures_diff.py: two runs' per-case rows, paired and differenced."""
from __future__ import annotations

import pytest
from _bench import load_benchmark  # tests/

from paperlib import tables

HEADER = "case,method,seed,ssim_whole,psnr_volume,wall_time_s\n"


def _write(folder, name, text):
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(HEADER + text)


def test_figures_diff_pairs_rows_and_reports_largest_and_mean_differences(tmp_path, capsys):
    bench = load_benchmark("figures_diff")
    base, other, out = tmp_path / "base", tmp_path / "other", tmp_path / "figures_diff.csv"
    _write(base, "t_cases.csv", "a,dart,0,0.90,30.0,2.0\nb,dart,0,0.80,28.0,2.0\na,tv,0,0.70,25.0,1.0\n")
    _write(other, "t_cases.csv", "a,dart,0,0.91,30.0,4.0\nb,dart,0,0.78,28.5,4.0\na,tv,0,0.70,25.0,1.0\n")
    _write(base, "same_cases.csv", "a,tv,0,0.5,20.0,1.0\n")
    _write(other, "same_cases.csv", "a,tv,0,0.5,20.0,1.0\n")
    _write(other, "new_cases.csv", "a,tv,0,0.5,20.0,1.0\n")
    assert bench.main(["--other", str(other), "--base", str(base), "--out", str(out), "--label", "x"]) == 0
    rows = {(r["method"], r["column"]): r for r in tables.read_csv_rows(out)}
    dart = rows[("dart", "ssim_whole")]
    assert dart["n"] == 2 and dart["max_abs_case_diff"] == pytest.approx(0.02)
    assert dart["mean_diff"] == pytest.approx(-0.005) and dart["time_ratio"] == pytest.approx(2.0)
    assert rows[("dart", "psnr_volume")]["mean_diff"] == pytest.approx(0.25)
    assert rows[("tv", "ssim_whole")]["max_abs_case_diff"] == 0
    md = (tmp_path / "figures_diff.md").read_text()
    assert "| t_cases.csv | dart | - | ssim_whole | 2 | 0.020000 | -0.005000 | 2.00x |" in md
    assert "Wall time per notebook" not in md  # no timing files in either run
    assert "- same_cases.csv: identical to the base" in md and "- new_cases.csv: only in the other run" in md
    capsys.readouterr()
    _write(other, "t_cases.csv", "b,dart,0,0.91,30.0,4.0\na,dart,0,0.78,28.5,4.0\na,tv,0,0.70,25.0,1.0\n")
    with pytest.raises(ValueError, match="t_cases.csv: the two runs list other rows"):
        bench.main(["--other", str(other), "--base", str(base), "--out", str(out)])
    with pytest.raises(SystemExit):
        bench.main(["--other", str(tmp_path / "missing"), "--out", str(out)])
    assert "--other: expected the figures/ folder of another run" in capsys.readouterr().err


def test_figures_diff_groups_by_role_and_acceleration_and_compares_notebook_times(tmp_path):
    bench = load_benchmark("figures_diff")
    base, other, out = tmp_path / "base", tmp_path / "other", tmp_path / "figures_diff.csv"
    head = "case,method,seed,role,acceleration,ssim_head,wall_time_s\n"
    for folder, held_8x in ((base, "0.60"), (other, "0.63")):
        folder.mkdir()
        (folder / "r_cases.csv").write_text(head + "a@4x,dart,0,tuning,4,0.90,1\na@8x,dart,0,tuning,8,0.70,1\n"
                                            f"b@8x,dart,0,held_out,8,{held_8x},1\nb@8x,tv,0,held_out,8,0.58,1\n")
    (base / "make_figures_default.csv").write_text("notebook,seconds,finished_utc\nt1,100,x\nt2,50,x\nonly_base,9,x\n")
    (other / "make_figures_default.csv").write_text("notebook,seconds,finished_utc\nt1,250,x\nt2,50,x\n")
    assert bench.main(["--other", str(other), "--base", str(base), "--out", str(out)]) == 0
    rows = {(r["method"], r["group"]): r for r in tables.read_csv_rows(out)}
    assert set(rows) == {("dart", "role tuning, acceleration 4"), ("dart", "role tuning, acceleration 8"),
                         ("dart", "role held_out, acceleration 8"), ("tv", "role held_out, acceleration 8")}
    assert rows[("dart", "role held_out, acceleration 8")]["mean_diff"] == pytest.approx(0.03)
    assert rows[("dart", "role tuning, acceleration 8")]["max_abs_case_diff"] == 0
    times = {r["notebook"]: r for r in tables.read_csv_rows(tmp_path / "figures_diff_notebooks.csv")}
    assert set(times) == {"t1", "t2", "all"}  # only_base is in one run only
    assert times["t1"]["ratio"] == pytest.approx(2.5) and times["all"]["other_s"] == 300
    assert times["all"]["ratio"] == pytest.approx(2.0)
    md = (tmp_path / "figures_diff.md").read_text()
    assert "| **all** | 150 (2.5 min) | 300 (5.0 min) | 2.00x |" in md
