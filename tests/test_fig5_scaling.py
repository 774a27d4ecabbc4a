"""Figure 5's scaling measurement (benchmarks/scaling.py) on the tiny ci setting, its cost model and
ratios, and the committed measurements the default profile's notebook reads."""
from __future__ import annotations

import sys

import pytest

from paperlib import tables
from paperlib.io import InputValidationError
from paperlib.paths import repo_root

sys.path.insert(0, str(repo_root()))
from benchmarks import scaling  # noqa: E402

MiB = 2**20
COLUMNS = {"setting", "kind", "shape", "P", "rank", "groups_held", "params_held", "fixed_mib", "divided_mib",
           "workspace_mib", "peak_rss_mib", "memory_source", "step_s", "step_source", "volume_s", "volume_source",
           "equals_dart", "cpu_s", "peak_reset", "cores", "cpu_model", "torch", "threads", "date_utc", "loadavg_1min", "all_ranks_peak_GiB",
           "all_ranks_fit_machine"}


@pytest.fixture(scope="module")
def ci_rows(tmp_path_factory):
    rows = scaling.run_setting(scaling.SETTINGS["ci"], seed=0, log=lambda _: None)
    path = scaling.write(rows, "ci", [], tmp_path_factory.mktemp("results"))
    return tables.read_csv_rows(path)


def test_ci_measurement_columns_and_split(ci_rows):
    assert COLUMNS <= set(ci_rows[0])
    assert sorted((int(r["P"]), int(r["rank"])) for r in ci_rows) == [(1, 0), (2, 0), (2, 1)]
    for r in ci_rows:
        assert r["memory_source"] == "measured" and r["volume_source"] == "measured"
        assert r["equals_dart"] == "True", "the distributed DART must equal dart() in one process"
        assert r["peak_valid"] == "True" and r["peak_reset"] == "True"
        assert r["fixed_mib"] > 100 and r["workspace_mib"] >= 0 and r["volume_s"] > 0
        total = r["fixed_mib"] + r["divided_mib"] + r["workspace_mib"]
        assert total == pytest.approx(r["peak_rss_mib"], abs=0.01)
    one = [r for r in ci_rows if r["P"] == 1][0]
    two = [r for r in ci_rows if r["P"] == 2]
    assert one["divided_mib"] > 0 and all(0 < r["divided_mib"] < one["divided_mib"] for r in two)
    assert all(0.25 < r["divided_mib"] / one["divided_mib"] < 0.75 for r in two)  # ~1/2, RSS pages are coarse
    assert one["divided_mib"] * MiB >= 4 * one["params_held"]  # the float32 networks are in it
    assert one["params_held"] == sum(r["params_held"] for r in two)


def test_ratios_and_cost_model_on_known_rows():
    rows = [{"setting": "s", "P": p, "rank": 0, "peak_rss_mib": 300 + 40 + 800 / p, "divided_mib": 800 / p,
             "volume_s": 9 + 60 / p, "cpu_s": 5 + 60 / p} for p in (1, 2, 4)]
    rows.append({"setting": "s", "P": 4, "rank": 1, "peak_rss_mib": 10.0, "divided_mib": 1.0, "volume_s": 1.0,
                 "cpu_s": 1.0})
    ratios = scaling.divided_ratios(rows)
    assert [x["ratio"] for x in ratios] == pytest.approx([1, 0.5, 0.25])
    assert all(x["within_20pct"] for x in ratios)
    model = scaling.cost_model(rows)
    assert model["memory"] == pytest.approx((340, 800))
    assert model["time"] == pytest.approx((5, 60)) and model["wall"] == pytest.approx((9, 60))
    off = [dict(r, divided_mib=r["divided_mib"] * (1.5 if r["P"] == 4 else 1)) for r in rows[:3]]
    assert not scaling.divided_ratios(off)[-1]["within_20pct"]


def test_bad_setting_is_named():
    bad = scaling.Setting("bad", "ci", "ci", 2, (1, 4), "gloo")
    with pytest.raises(InputValidationError, match="ranks"):
        scaling.run_setting(bad)
    with pytest.raises(InputValidationError, match="kind"):
        scaling.Setting("bad", "ci", "ci", 2, (1,), "mpi").check()


@pytest.mark.parametrize("name", ["default", "paper"])
def test_committed_measurements(name):
    """The committed CSVs that the default profile's notebook reads: the divided part falls as 1/P
    within 20 % (the must-show), memory measured, and the paper-shape times marked extrapolated."""
    rows = tables.read_csv_rows(scaling.RESULTS / f"scaling_{name}.csv")
    assert COLUMNS <= set(rows[0])
    for setting in {r["setting"] for r in rows}:
        sel = [r for r in rows if r["setting"] == setting]
        assert all(x["within_20pct"] for x in scaling.divided_ratios(sel)), setting
        assert {r["memory_source"] for r in sel} == {"measured"}
        if sel[0]["kind"] == "probe":
            assert {r["volume_source"] for r in sel} == {"extrapolated"}
        else:
            assert {r["equals_dart"] for r in sel} == {"True"}


def _own_peak(rank: int, world: int) -> int:
    from paperlib.diffusion.distributed import peak_rss_bytes
    return peak_rss_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_peak_rss_is_the_process_own_and_resettable():
    """A spawned rank's peak is its own, not the parent's size at the fork (``ru_maxrss`` is), and
    :func:`reset_peak_rss` restarts it."""
    import torch

    from paperlib.diffusion.distributed import peak_rss_bytes, reset_peak_rss, spawn

    big = torch.ones(384 * 2**20 // 4)  # 384 MiB resident in this (parent) process
    parent = scaling.current_rss_bytes()
    child = spawn(_own_peak, 1)[0]
    assert child < parent - 300 * 2**20, (child, parent)
    del big
    assert reset_peak_rss()
    assert peak_rss_bytes() < parent - 300 * 2**20
