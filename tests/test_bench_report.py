"""The benchmark report's machinery (benchmarks/report.py) on tiny sizes (``--quick``).

Peers that are not installed must give ``skipped`` rows with a reason and no numbers; measured
rows must carry a ratio consistent with their two values and the accuracy of both sides. No timed
assertions: the numbers of a quick run are not benchmarks.
"""
from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import pytest
from _bench import load_benchmark  # tests/


@pytest.fixture(scope="module")
def report():
    module = load_benchmark("report")
    yield module
    sys.modules.pop(module.__name__, None)


@pytest.fixture(scope="module")
def quick_run(report, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    assert report.main(["--quick", "--strict", "--out-dir", str(out)]) == 0
    return out


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_quick_report_has_every_section_and_consistent_rows(report, quick_run):
    rows = read_rows(quick_run / "benchmarks.csv")
    assert list(rows[0]) == list(report.COLUMNS)
    assert {r["section"] for r in rows} == set(report.SECTIONS)
    for r in rows:
        values = [r[k] for k in ("ours_value", "peer_value", "ratio")]
        if r["status"] == "skipped":  # a missing peer: the reason, never a number
            assert r["note"] and values == ["", "", ""], r
            continue
        assert r["status"] in ("measured", "read"), r
        ours, peer, ratio = map(float, values)
        assert all(math.isfinite(v) and v > 0 for v in (ours, peer, ratio)), r
        if r["direction"] == report.TIME_RATIO or r["direction"].startswith("before/after"):
            assert ratio == pytest.approx(peer / ours, rel=1e-9), r
        elif r["direction"].startswith(("ours/peak", "peak(P=1)/peak(P)")):
            assert ratio == pytest.approx(ours / peer if r["direction"].startswith("ours") else peer / ours), r
        assert r["direction"] and r["data"] and r["metric"] and r["measured_utc"], r
        if r["section"] != "memory":  # every speed ratio comes with the accuracy it was measured at
            assert r["accuracy_metric"] and math.isfinite(float(r["ours_accuracy"])), r


def test_quick_report_accuracies_are_meaningful(quick_run):
    rows = read_rows(quick_run / "benchmarks.csv")
    measured = {(r["section"], r["component"], r["peer"]): r for r in rows if r["status"] == "measured"}
    for (section, component, _), r in measured.items():
        if section == "mri_dc":  # Eq. 4 in complex64 agrees with the float64 reference to rounding
            assert float(r["ours_accuracy"]) < 1e-5 and float(r["peer_accuracy"]) < 1e-5
        if section == "multislice" and "forward (Eq. 1)" in component:  # abTEM agreement (float32)
            assert float(r["ours_accuracy"]) < 1e-4
        if section == "multislice" and "gradient" in component:  # autograd vs central difference
            assert float(r["ours_accuracy"]) < 1e-3
        if section == "mri_solvers":
            assert 0 < float(r["ours_accuracy"]) <= 1 and 0 < float(r["peer_accuracy"]) <= 1


def test_markdown_describes_the_machine_and_every_row(quick_run):
    md = (quick_run / "benchmarks.md").read_text()
    for key in ("| CPU |", "| cores |", "| threads used |", "| python / torch / numpy |", "| peers |",
                "| date (UTC) |", "| git commit |", "--quick"):
        assert key in md
    for r in read_rows(quick_run / "benchmarks.csv"):
        assert r["component"].replace("|", "\\|") in md


def test_a_missing_peer_gives_skipped_rows_with_the_reason(report, tmp_path, monkeypatch):
    monkeypatch.setattr(report, "sigpy_or_reason", lambda: (None, "sigpy not installed (test)"))
    assert report.main(["--quick", "--strict", "--out-dir", str(tmp_path), "--sections", "mri_solvers",
                        "mri_dc"]) == 0
    rows = read_rows(tmp_path / "benchmarks.csv")
    solvers = [r for r in rows if r["section"] == "mri_solvers"]
    assert len(solvers) == 6 and all(r["status"] == "skipped" and "sigpy not installed" in r["note"]
                                     and r["ratio"] == "" for r in solvers)
    dc = {r["peer"].split()[0]: r for r in rows if r["section"] == "mri_dc"}
    assert dc["sigpy.fft/ifft"]["status"] == "skipped" and dc["numpy.fft"]["status"] == "measured"


def test_read_reuses_the_previous_rows(report, quick_run, tmp_path):
    (tmp_path / "benchmarks.csv").write_text((quick_run / "benchmarks.csv").read_text())
    assert report.main(["--quick", "--out-dir", str(tmp_path), "--read", *report.SECTIONS]) == 0
    before, after = read_rows(quick_run / "benchmarks.csv"), read_rows(tmp_path / "benchmarks.csv")
    assert [r["ratio"] for r in after] == [r["ratio"] for r in before]
    assert {r["status"] for r in after} <= {"read", "skipped"}


def test_a_failing_section_is_recorded_and_the_exit_status_is_1(report, tmp_path, monkeypatch):
    def broken(settings):
        raise RuntimeError("boom")

    monkeypatch.setitem(report.SECTION_FUNCTIONS, "memory", broken)
    assert report.main(["--quick", "--out-dir", str(tmp_path), "--sections", "memory"]) == 1
    (row,) = read_rows(tmp_path / "benchmarks.csv")
    assert row["status"] == "error" and "RuntimeError: boom" in row["note"]
    with pytest.raises(RuntimeError, match="boom"):
        report.main(["--quick", "--strict", "--out-dir", str(tmp_path / "strict"), "--sections", "memory"])
    assert not (tmp_path / "strict" / "benchmarks.csv").exists()  # nothing half-written


def test_bad_arguments_are_clear_errors(report, tmp_path, capsys):
    with pytest.raises(SystemExit):
        report.main(["--threads", "0"])
    assert "--threads: expected an integer >= 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        report.main(["--sections", "nonsense"])
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no previous report"):
        report.main(["--quick", "--out-dir", str(tmp_path), "--read", "memory"])
