"""benchmarks/precision_speed.py: float32 against bfloat16 per prior, on the ci profile's priors."""
from __future__ import annotations

import pytest
from _bench import load_benchmark  # tests/

from paperlib import tables
from paperlib.diffusion.partition import resolve_precision


def test_precision_speed_times_both_precisions_of_each_prior_and_says_what_auto_runs(tmp_path, capsys):
    bench = load_benchmark("precision_speed")
    out = tmp_path / "precision_speed.csv"
    assert bench.main(["--profile", "ci", "--threads", "1", "--repeats", "1", "--out", str(out)]) == 0
    rows = tables.read_csv_rows(out)
    assert len(rows) == 2 and {"partitioned" in r["prior"] for r in rows} == {True, False}
    for r in rows:
        assert r["float32_s"] > 0 and r["bfloat16_s"] > 0
        assert r["bfloat16_over_float32"] == pytest.approx(r["bfloat16_s"] / r["float32_s"], rel=1e-4)  # CSV keeps 6 digits
        assert 0 < r["bfloat16_rel_l2"] < 0.05  # rounded, not another network
    md = (tmp_path / "precision_speed.md").read_text()
    assert f"`precision: auto` runs {resolve_precision('auto', 'cpu')}" in md
    assert md.count("\n| ") == 1 + 2 and "\n|---" in md  # header, one row per prior
    with pytest.raises(SystemExit):
        bench.main(["--repeats", "0", "--out", str(out)])
    assert "--repeats: expected a positive integer" in capsys.readouterr().err
