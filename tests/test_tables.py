import math

import numpy as np
import pytest

from paperlib import tables
from paperlib.reference import METHOD_LABELS, PAPER_TABLE1, PAPER_TABLE2


def _rows():
    """MRI case rows: TV on 3 cases, CS-MRI on 1."""
    return [
        {"modality": "mri", "dataset": "brain", "case": f"c{i}", "method": m, "seed": 0,
         "ssim_whole": s, "ssim_head": s - 0.1, "psnr_volume": 30.0 + i, "wall_time_s": 0.5,
         "peak_rss_bytes": 1e9}
        for i, (m, s) in enumerate([("tv", 0.8), ("tv", 0.9), ("tv", 0.7), ("cs_mri", 0.7)])
    ]


def _stem_rows():
    return [
        {"modality": "stem", "dataset": "cubic", "case": f"c{i}", "method": m, "seed": 0,
         "ssim_slice_mean": 0.5 + 0.01 * i, "psnr_slice_mean": 24.0 + i, "ssim_projected": 0.9 - 0.01 * i,
         "psnr_projected": 30.0, "ssim_depth_blind": 0.45 + 0.01 * i, "wall_time_s": 2.0,
         "peak_rss_bytes": 1e9, "ssim_slices": "0.5;0.5", "material": "GaAs"}
        for i in range(3) for m in ("three_pie", "drift")
    ]


def test_cases_roundtrip_and_summary(tmp_path):
    path = tables.write_cases(_rows(), tmp_path / "x_cases.csv")
    back = tables.read_cases(path)
    assert len(back) == 4 and back[0]["ssim_whole"] == pytest.approx(0.8)
    summary = tables.summarise(back)
    tv = next(s for s in summary if s["method"] == "tv")
    assert tv["n"] == 3 and tv["n_cases"] == 3
    assert tv["ssim_whole_mean"] == pytest.approx(0.8)
    # sample standard deviation (ddof = 1): sqrt((0.01 + 0 + 0.01) / 2) = 0.1, not sqrt(0.02 / 3)
    assert tv["ssim_whole_std"] == pytest.approx(0.1) and tv["psnr_volume_std"] == pytest.approx(1.0)
    assert "ssim_projected_mean" not in tv  # 4D-STEM columns are absent from MRI rows


def test_stem_summary_has_only_stem_columns():
    summary = tables.summarise(_stem_rows())
    assert [s["method"] for s in summary] == ["three_pie", "drift"]
    for col in tables.SCORE_COLUMNS["stem"]:
        assert summary[0][f"{col}_mean"] == pytest.approx(np.mean([r[col] for r in _stem_rows()[::2]]))
    assert not any(k.startswith(("ssim_whole", "ssim_head", "psnr_volume")) for k in summary[0])


def test_non_finite_values_fail_loudly(tmp_path):
    rows = _rows()
    rows[1]["ssim_head"] = math.nan
    with pytest.raises(ValueError, match=r"column 'ssim_head' has 1 non-finite value.*3 rows of group "
                                         r"\{'modality': 'mri', 'dataset': 'brain', 'method': 'tv'"):
        tables.summarise(rows)
    rows = _rows()
    rows[0]["psnr_volume"], rows[2]["psnr_volume"] = math.inf, None
    with pytest.raises(ValueError, match="column 'psnr_volume' has 2 non-finite"):
        tables.summarise(rows)
    # an empty cell in a cases file is read back as NaN and refused as well
    path = tables.write_cases(_rows(), tmp_path / "c.csv")
    text = path.read_text().splitlines()
    header = text[0].split(",")
    cells = text[4].split(",")
    cells[header.index("ssim_whole")] = ""
    path.write_text("\n".join(text[:4] + [",".join(cells)]) + "\n")
    with pytest.raises(ValueError, match=r"'ssim_whole' has 1 non-finite value\(s\) .* in the 1 rows of group "
                                         r"\{'modality': 'mri', 'dataset': 'brain', 'method': 'cs_mri'\}"):
        tables.summarise(tables.read_cases(path))


def test_column_missing_in_some_rows_of_a_group_fails():
    rows = _rows()
    del rows[2]["ssim_head"]
    with pytest.raises(ValueError, match=r"column 'ssim_head' is missing in 1 of 3 rows of group .*'tv'"):
        tables.summarise(rows)


def test_bootstrap_interval_two_cases_is_their_range():
    """With 2 cases the resampled mean is a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4, so
    the 2.5th and 97.5th percentiles are a and b."""
    rows = [{"method": "m", "case": "c0", "ssim_whole": 0.3}, {"method": "m", "case": "c1", "ssim_whole": 0.9}]
    s, = tables.summarise(rows, by=("method",))
    assert (s["ssim_whole_ci_low"], s["ssim_whole_ci_high"]) == (0.3, 0.9)


def test_bootstrap_interval_matches_normal_theory():
    """For 60 normal cases the percentile interval is close to mean +- 1.96 sd / sqrt(n)."""
    values = np.random.default_rng(7).normal(0.8, 0.05, 60)
    rows = [{"method": "m", "case": f"c{i}", "ssim_whole": float(v)} for i, v in enumerate(values)]
    s, = tables.summarise(rows, by=("method",))
    half = 1.96 * values.std(ddof=1) / np.sqrt(len(values))
    assert s["ssim_whole_ci_low"] == pytest.approx(values.mean() - half, abs=0.15 * half)
    assert s["ssim_whole_ci_high"] == pytest.approx(values.mean() + half, abs=0.15 * half)
    again, = tables.summarise(rows, by=("method",))
    assert again == s  # seeded: the same interval every time
    other, = tables.summarise(rows, by=("method",), seed=1)
    assert other["ssim_whole_ci_low"] != s["ssim_whole_ci_low"]


def test_bootstrap_resamples_cases_not_rows():
    """Seeds of one case are not independent samples: repeating every case's row for a second
    seed leaves the interval unchanged (resampling rows would narrow it)."""
    values = [0.61, 0.75, 0.68, 0.9, 0.55]
    one = [{"method": "m", "case": f"c{i}", "seed": 0, "ssim_whole": v} for i, v in enumerate(values)]
    two = one + [{**r, "seed": 1} for r in one]
    s1, = tables.summarise(one, by=("method",))
    s2, = tables.summarise(two, by=("method",))
    assert s2["n"] == 10 and s2["n_cases"] == 5
    assert (s2["ssim_whole_ci_low"], s2["ssim_whole_ci_high"]) == pytest.approx(
        (s1["ssim_whole_ci_low"], s1["ssim_whole_ci_high"]), abs=1e-12)


def test_one_row_or_one_case_has_no_spread():
    rows = _rows()
    cs = tables.summarise(rows)[1]
    assert cs["n"] == 1 and math.isnan(cs["ssim_whole_std"]) and math.isnan(cs["ssim_whole_ci_low"])
    assert tables.mean_std_ci(cs, "ssim_whole") == "0.700 ± – [–]"
    seeds = [{"method": "m", "case": "c0", "seed": k, "ssim_whole": v} for k, v in enumerate([0.5, 0.7])]
    s, = tables.summarise(seeds, by=("method",))
    assert s["ssim_whole_std"] == pytest.approx(math.sqrt(0.02)) and math.isnan(s["ssim_whole_ci_high"])


def test_ssim_table_cells_show_mean_std_interval_and_n(tmp_path):
    summary = tables.summarise(_rows())
    header, rows = tables.ssim_table_rows(summary, {("mri", "tv"): (0.803, 0.024)}, {"tv": "TV"})
    assert header[2] == "n" and header[-1] == "SSIM reported in paper"
    tv = summary[0]
    assert rows[0][:3] == ["MRI", "TV", "3"]
    assert rows[0][3] == (f"0.800 ± 0.100 [{tv['ssim_whole_ci_low']:.3f}, {tv['ssim_whole_ci_high']:.3f}]")
    assert rows[0][5].startswith("31.00 ± 1.00 [")
    assert rows[0][-1] == "0.803 ± 0.024" and rows[1][-1] == "not in paper"
    assert rows[1][2] == "1" and rows[1][3] == "0.700 ± – [–]"
    md, csv = tables.write_table(tmp_path / "t", header, rows, title="T", provenance={"git_commit": "abc"})
    assert rows[0][3] in md.read_text() and "abc" in md.read_text()
    assert csv.read_text().splitlines()[0].startswith("Modality,Method,n,")


def test_table_of_rows_without_the_columns_fails_naming_them():
    stem = tables.summarise(_stem_rows())
    with pytest.raises(ValueError, match=r"no \['ssim_whole_mean'.*'three_pie'.*column 'ssim_whole'"):
        tables.ssim_table_rows(stem, {}, {})
    old = [{k.replace("ssim_whole", "ssim"): v for k, v in r.items()} for r in _rows()]  # old column name
    with pytest.raises(ValueError, match="column 'ssim_whole'"):
        tables.ssim_table_rows(tables.summarise(old), {}, {})


def test_stem_table_and_depth_notes():
    summary = tables.summarise(_stem_rows())
    header, body = tables.stem_table_rows(summary, PAPER_TABLE1, METHOD_LABELS)
    assert len(body) == 2 and len(header) == len(body[0])
    col = {h: i for i, h in enumerate(header)}
    assert body[0][col["SSIM per slice (ours)"]] == tables.mean_std_ci(summary[0], "ssim_slice_mean")
    assert body[0][col["PSNR per slice dB (ours)"]].startswith("25.00 ± 1.00 [")
    assert body[0][col["SSIM projection (ours)"]].startswith("0.890 ± 0.010 [")
    notes = tables.depth_notes(summary, {"drift": "DRIFT"})
    assert notes == ["Per-slice SSIM above the depth-blind reference (0.460): three_pie 0.510, DRIFT 0.510."]
    low = [dict(r, ssim_slice_mean=0.4) if r["method"] == "drift" else r for r in _stem_rows()]
    assert tables.depth_notes(tables.summarise(low), {}) == [
        "Per-slice SSIM above the depth-blind reference (0.460): three_pie 0.510. Not above it: drift 0.400."]


def test_depth_margin_notes_pair_each_crystal():
    """Differences are taken per crystal (not between means), crystals above are counted, and a baseline
    the rows lack is left out rather than invented."""
    rows = _stem_rows()  # drift 0.50, 0.51, 0.52 against depth-blind 0.45, 0.46, 0.47
    rows[1] = dict(rows[1], ssim_slice_mean=0.40)  # crystal c0 below its depth-blind reference
    rows += [dict(r, method="three_pie_thickness", ssim_slice_mean=0.505) for r in _stem_rows()
             if r["method"] == "drift"]
    (note,) = tables.depth_margin_notes(rows, {"drift": "DRIFT"}, methods=("drift", "dart"))
    assert "DRIFT - depth-blind reference +0.017 [" in note and "], 2 of 3" in note  # (-0.05 + 0.05 + 0.05) / 3
    assert "DRIFT - 3PIE + thickness search -0.028 [" in note  # (-0.105 + 0.005 + 0.015) / 3
    assert note.count("DRIFT - ") == 2 and "DART" not in note  # dart: no rows
    no_physics = [r for r in rows if r["method"] != "three_pie_thickness"]
    (note,) = tables.depth_margin_notes(no_physics, {}, methods=("drift",))
    assert "thickness" not in note
    assert tables.depth_margin_notes([r for r in rows if r["method"] == "three_pie"], {}) == []


@pytest.mark.parametrize("paper", [PAPER_TABLE1, PAPER_TABLE2], ids=["table1", "table2"])
def test_paper_column_is_the_reference_and_nothing_else_uses_it(paper):
    """The paper's numbers fill only their own column: each equals the reference dict's entry,
    and every other cell is the same with the paper's numbers replaced by others."""
    mri = [dict(r, method=m) for r in _rows()[:3] for m in ("dart", "tv", "zero_filled")]
    summary = tables.summarise(mri)
    header, rows = tables.ssim_table_rows(summary, paper, METHOD_LABELS)
    paper_col = header.index("SSIM reported in paper")
    by_label = {METHOD_LABELS[m]: m for m in METHOD_LABELS}
    for row in rows:
        key = ("mri", by_label[row[1]])
        assert row[paper_col] == (tables.mean_std(*paper[key]) if key in paper else "not in paper")
    other = {k: (1.0 - v[0], 0.5) for k, v in paper.items()}
    _, rows_other = tables.ssim_table_rows(summary, other, METHOD_LABELS)
    for row, row_other in zip(rows, rows_other):
        assert row[:paper_col] + row[paper_col + 1:] == row_other[:paper_col] + row_other[paper_col + 1:]
    stem = [dict(r, method=m) for r in _stem_rows()[::2] for m in ("sparse", "three_pie_thickness")]
    s_summary = tables.summarise(stem)
    s_header, s_rows = tables.stem_table_rows(s_summary, paper, METHOD_LABELS)
    s_col = s_header.index("SSIM projection reported in paper")
    assert s_rows[0][s_col] == tables.mean_std(*paper[("stem", "sparse")]) and s_rows[1][s_col] == "not in paper"
    _, s_other = tables.stem_table_rows(s_summary, other, METHOD_LABELS)
    assert [r[:s_col] + r[s_col + 1:] for r in s_rows] == [r[:s_col] + r[s_col + 1:] for r in s_other]


def test_ordering_notes_use_our_means_and_the_papers():
    rows = [dict(r, method=m, ssim_whole=r["ssim_whole"] + d) for r in _rows()[:3]
            for m, d in (("dart", 0.0), ("tv", 0.1))]
    summary = tables.summarise(rows)
    notes = tables.ordering_notes(summary, PAPER_TABLE1, {"dart": "DART", "tv": "TV (ours: after Block)"})
    # ours: TV 0.900 > DART 0.800; the paper: TV 0.803 < DART 0.968
    assert len(notes) == 1 and notes[0].startswith(
        "Ordering differs from the paper (SSIM, MRI): TV 0.900 > DART 0.800 here; the paper has TV 0.803 < DART 0.968.")
    assert "overlap" in notes[0]  # 3 cases: the intervals of the two methods overlap
    agree = tables.ordering_notes(summary, {("mri", "dart"): (0.7, 0.1), ("mri", "tv"): (0.9, 0.1)}, {})
    assert agree == ["SSIM ordering of the 1 pair(s) of methods the paper also reports (MRI) agrees with the paper."]


def test_reimplementations_are_labelled_as_ours():
    for method, label in METHOD_LABELS.items():
        if method in ("zero_filled", "dart", "drift"):  # no method / this paper's methods
            continue
        assert "(ours" in label, label
    assert METHOD_LABELS["sparse"] == "Sparse decomposition (ours: FISTA-L1 after Bangun 2022)"
    assert {m for _, m in PAPER_TABLE1} <= set(METHOD_LABELS) and PAPER_TABLE1.keys() == PAPER_TABLE2.keys()


def test_missing_columns_and_files(tmp_path):
    with pytest.raises(ValueError, match=r"lack columns \['modality', 'dataset', 'case', 'seed'"):
        tables.write_cases([{"method": "tv"}], tmp_path / "bad.csv")
    rows = _rows()
    del rows[2]["wall_time_s"]
    with pytest.raises(ValueError, match=r"lack columns \['wall_time_s'\] \(row 2"):
        tables.write_cases(rows, tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="run the notebook"):
        tables.read_cases(tmp_path / "none.csv")
