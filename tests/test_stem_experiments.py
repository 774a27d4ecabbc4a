"""The 4D-STEM experiment path: profile sections, test crystals, the method registry and its
rows, the per-case CSV -> table round trip, and the prior's training data (ci profile)."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from paperlib import paths, tables
from paperlib.config import ConfigError, load_profile
from paperlib.data.crystals import STEMDataParams
from paperlib.metrics.stem import stem_scores
from paperlib.experiments import stem as stem_exp
from paperlib.experiments.runner import MODALITIES, run_cases
from paperlib.recon.stem_baselines import sparse_decomposition, three_pie, torchslice
from paperlib.reference import METHOD_LABELS, PAPER_TABLE1


@pytest.fixture(scope="module")
def ci():
    return load_profile("ci")


@pytest.mark.parametrize("name", ["ci", "default", "paper"])
def test_stem_sections_validate(name):
    cfg = load_profile(name)
    assert isinstance(cfg.stem, STEMDataParams)
    ev = cfg.stem_eval
    assert ev.fig4.case < ev.n_test
    assert ev.fig4.slices == "all" or all(0 <= s < cfg.stem.n_slices for s in ev.fig4.slices)
    assert set(ev.methods) <= set(stem_exp.STEM_METHODS)
    assert cfg.stem.n_slices % 2 == 0  # two slice groups of the prior
    assert cfg.stem_prior.data_scale > 0 and cfg.stem_baselines.tuned_on


def test_baseline_sections_match_the_function_keywords(ci):
    import inspect

    for section, fn in ((ci.stem_baselines.three_pie, three_pie), (ci.stem_baselines.torchslice, torchslice),
                        (ci.stem_baselines.sparse, sparse_decomposition)):
        assert set(section.model_dump()) <= set(inspect.signature(fn).parameters)


def _ci_dict():
    return yaml.safe_load((paths.params_dir() / "ci.yaml").read_text())


@pytest.mark.parametrize("section, key", [("stem", "gpts_typo"), ("stem_eval", "n_tset"),
                                          ("stem_prior", "scale"), ("stem_baselines", "epie")])
def test_unknown_stem_keys_are_rejected(tmp_path, section, key):
    data = _ci_dict()
    data[section][key] = 1
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=rf"unknown key '{section}\.{key}'"):
        load_profile(path)


def test_nested_and_inconsistent_stem_values_are_rejected(tmp_path):
    data = _ci_dict()
    data["stem_baselines"]["three_pie"]["batch"] = 8  # the keyword is batch_size
    data["stem"]["detector_gpts"] = 64  # larger than the 32 px grid
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_profile(path)
    assert "stem_baselines.three_pie.batch" in str(info.value) and "detector_gpts" in str(info.value)
    del data["stem_prior"]
    data["stem_baselines"]["three_pie"].pop("batch")
    data["stem"]["detector_gpts"] = 24
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="missing key 'stem_prior'"):
        load_profile(path)


def test_stem_cases_on_ci(ci, one_thread):
    cases = stem_exp.stem_cases(ci)
    assert len(cases) == ci.stem_eval.n_test
    p = ci.stem
    for case in cases:
        assert case.potential.shape == (p.n_slices, p.gpts, p.gpts) and case.potential.dtype == torch.float32
        assert case.intensities.shape == (p.scan_gpts, p.scan_gpts, p.detector_gpts, p.detector_gpts)
        assert case.operator.shape == tuple(case.potential.shape)
        assert case.case_id.startswith("test") and case.material in p.cubic_materials
    ood = stem_exp.stem_cases(ci, "ood", n=1)
    assert ood[0].material == "WSe2"
    with pytest.raises(ValueError, match="split"):
        stem_exp.stem_cases(ci, "tset")


def test_eval_cases_follow_the_profiles_data(ci, one_thread):
    """The test tables' crystals (issue 16): the fresh splits, abTEM with the profile's options;
    the same crystals at every dose, only the noise differs; the notes say what the data are."""
    data = ci.stem_eval.data
    assert data.simulator == "abtem" and data.fresh and data.dose is not None  # what the ci tables run on
    table = stem_exp.eval_cases(ci, "test", n=1)[0]
    loud = stem_exp.eval_cases(ci, "test", n=1, dose=data.sweep_doses[0])[0]
    clean = stem_exp.eval_cases(ci, "test", n=1, dose=None)[0]
    assert table.case_id.startswith("test_fresh000") and table.case_id == loud.case_id == clean.case_id
    assert torch.equal(table.potential, loud.potential) and torch.equal(table.potential, clean.potential)
    assert not torch.equal(table.intensities, loud.intensities)
    # noise around the same noiseless data; more noise at the lower dose
    err = [float((c.intensities - clean.intensities).abs().mean()) for c in (table, loud)]
    assert 0 < err[0] < err[1], err
    plain = stem_exp.stem_cases(ci, "test", n=1)[0]
    assert not torch.equal(plain.potential, table.potential)  # other seeds than the test split's
    ood = stem_exp.eval_cases(ci, "ood", n=1)[0]
    assert ood.material == "WSe2" and ood.case_id.startswith("ood_fresh000")
    note = stem_exp.data_note(ci)
    assert "abTEM" in note and "2 frozen-phonon" in note and "100000 e-/Å²" in note and "random depth" in note
    assert "(validation.stem_eval, never a test crystal)" in note and "sample checkpoints/stem_ci." in note
    no_grid = ci.model_copy(update={"validation": ci.validation.model_copy(update={"stem_eval": None})})
    assert "nothing was tuned" in stem_exp.data_note(no_grid) and "validation.stem_eval" not in stem_exp.data_note(no_grid)
    val = stem_exp.eval_cases(ci, "val", n=1)[0]  # the validation seeds, made as the test tables' crystals
    assert val.case_id.startswith("val000") and not torch.equal(val.potential, stem_exp.stem_cases(ci, "val", 1)[0].potential)
    plain_cfg = ci.model_copy(update={"stem_eval": ci.stem_eval.model_copy(
        update={"data": type(data)()})})
    assert stem_exp.eval_params(plain_cfg) == ci.stem  # default data: the prior's own, same cache
    assert "nothing was tuned" not in stem_exp.data_note(plain_cfg)
    with pytest.raises(ValueError, match="split"):
        stem_exp.eval_cases(ci, "train")
    with pytest.raises(ValueError, match="dose"):
        stem_exp.eval_params(ci, "high")


@pytest.mark.parametrize("data, match", [
    ({"tilt_mrad": 1.0}, "tilt_mrad"),
    ({"simulator": "abtem", "dose": 1e5, "sweep_doses": [1e5]}, "already the tables' dose"),
    ({"sweep_doses": [-1.0]}, "sweep_doses"),
    ({"sweep_noiseless": True}, "noiseless already"),
    ({"simulator": "abtem", "dose": 1e5, "sweep_doses": [1e4], "sweep_n": 9}, "sweep_n"),
    ({"dose": 1e5, "frozen_phonon": 2}, "frozen_phonon"),
])
def test_eval_data_section_rejects_bad_values(tmp_path, data, match):
    raw = _ci_dict()
    raw["stem_eval"]["data"] = data
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match):
        load_profile(path)


def test_run_cases_stem_rows_and_table(ci, one_thread, tmp_path):
    fast = ci.stem_baselines.model_copy(update={
        "three_pie": ci.stem_baselines.three_pie.model_copy(update={"n_iter": 1}),
        "torchslice": ci.stem_baselines.torchslice.model_copy(update={"n_iter": 2}),
        "sparse": ci.stem_baselines.sparse.model_copy(update={"n_iter": 2}),
    })
    cfg = ci.model_copy(update={"stem_baselines": fast})
    case = stem_exp.stem_cases(cfg, n=1)[0]
    calls = []

    @stem_exp.register_stem_method("_test_noisy_truth", stochastic=True)
    def _noisy(op, intensities, profile, generator):
        calls.append(int(generator.initial_seed()))
        return case.potential + torch.randn(case.potential.shape, generator=generator)

    try:
        rows, recons = run_cases(
            cfg, "stem", [case], ["three_pie", "torchslice", "sparse", "_test_noisy_truth"], seeds=(0, 1),
            keep=True, progress=False)
    finally:
        del stem_exp.STEM_METHODS["_test_noisy_truth"]
    assert [r["method"] for r in rows] == ["three_pie", "torchslice", "sparse", "_test_noisy_truth",
                                           "_test_noisy_truth"]
    assert calls == [0, 1]  # stochastic methods once per seed, deterministic ones once
    scores = {}
    for r in rows:
        assert tuple(r) == MODALITIES["stem"].row_columns()  # no ssim_head: that is an MRI column
        assert r["modality"] == "stem" and r["dataset"] == "cubic"
        assert (r["material"], r["zone_axis"]) == (case.material, case.zone_axis)
        assert r["wall_time_s"] > 0 and r["peak_rss_bytes"] > 0
        recon = recons[(case.case_id, r["method"], r["seed"])]
        assert recon.shape == case.potential.shape
        # every column is the score its name says, of this reconstruction
        s = scores[(r["method"], r["seed"])] = stem_scores(recon, case.potential)
        assert (r["ssim_slice_mean"], r["psnr_slice_mean"]) == (s["ssim_slices_mean"], s["psnr_slices_mean"])
        assert (r["ssim_projected"], r["psnr_projected"]) == (s["ssim_projection"], s["psnr_projection"])
        slices = [float(v) for v in r["ssim_slices"].split(";")]
        assert len(slices) == ci.stem.n_slices and abs(sum(slices) / len(slices) - r["ssim_slice_mean"]) < 1e-4
    assert len({r["ssim_depth_blind"] for r in rows}) == 1  # a property of the case, not the method
    noisy = [r for r in rows if r["method"] == "_test_noisy_truth"]
    # truth + 1 V*Angstrom noise: well above the depth-blind reference per slice, projection near exact
    assert all(r["ssim_slice_mean"] > 0.9 > r["ssim_depth_blind"] and r["ssim_projected"] > 0.95 for r in noisy)
    assert noisy[0]["ssim_slice_mean"] != noisy[1]["ssim_slice_mean"]  # two seeds, two noise draws
    with pytest.raises(ValueError, match=r"methods: unknown 4D-STEM methods \['epie'\]"):
        run_cases(cfg, "stem", [case], ["epie"], progress=False)

    path = tables.write_cases(rows[:3], tmp_path / "stem_cases.csv")
    summary = tables.summarise(tables.read_cases(path))
    assert [s["method"] for s in summary] == ["three_pie", "torchslice", "sparse"]
    header, body = tables.stem_table_rows(summary, PAPER_TABLE1, METHOD_LABELS)
    assert len(body) == 3 and len(header) == len(body[0])
    paper_col = header.index("SSIM projection reported in paper")
    assert header[paper_col - 1] == "SSIM projection (ours)"
    assert body[0][paper_col] == tables.mean_std(*PAPER_TABLE1[("stem", "three_pie")]) and body[0][1].startswith("3PIE")


def test_dose_summary_needs_the_dose_column_and_sorts_by_dose():
    from paperlib.experiments.stem_dose import dose_summary, ordering_notes

    rows = [{"case": f"c{i}", "method": m, "dose": d, "ssim_slice_mean": v, "ssim_projected": v + 0.4,
             "ssim_depth_blind": 0.5}
            for d, base in (("1e6", 0.6), ("1e4", 0.3)) for m, off in (("dart", 0.1), ("three_pie", 0.0))
            for i, v in enumerate((base + off, base + off + 0.02))]
    summary = dose_summary(rows)
    assert [(e["dose"], e["method"]) for e in summary] == [(1e4, "dart"), (1e4, "three_pie"),
                                                           (1e6, "dart"), (1e6, "three_pie")]
    notes = ordering_notes(summary, {"dart": "DART"})
    assert notes[0].startswith("10000 e-/Å², projection SSIM: highest mean DART")
    assert "no other method's interval reaches its interval" in notes[0]
    with pytest.raises(ValueError, match="'dose' column"):
        dose_summary([{k: v for k, v in rows[0].items() if k != "dose"}])


def test_dose_figure_sets_the_noiseless_reference_apart(tmp_path):
    """Noiseless rows (dose inf) sort last, read "noiseless" in the table, the notes and the json,
    and the figure is written (the finite doses as lines, the noiseless point apart)."""
    from paperlib.experiments.stem_dose import NOISELESS, dose_label, write_dose_figure

    rows = [{"modality": "stem", "dataset": "d", "case": f"c{i}", "method": m, "seed": 0, "dose": d,
             "wall_time_s": 1.0, "peak_rss_bytes": 1, "ssim_slice_mean": base + off + 0.01 * i,
             "ssim_projected": base + off + 0.4 + 0.01 * i, "ssim_depth_blind": 0.5}
            for d, base in ((1e4, 0.3), (NOISELESS, 0.5), (1e6, 0.45))
            for m, off in (("dart", 0.1), ("three_pie", 0.0)) for i in range(2)]
    tables.write_cases(rows, tmp_path / "fig_stem_dose_cases.csv")
    summary = write_dose_figure(tmp_path, {"dart": "DART"}, notes=["n"], provenance={"p": 1})
    assert [e["dose"] for e in summary][-2:] == [NOISELESS, NOISELESS]
    md = (tmp_path / "fig_stem_dose.md").read_text()
    assert "| noiseless | DART |" in md and "- noiseless, projection SSIM: highest mean DART" in md
    assert json.loads((tmp_path / "fig_stem_dose.json").read_text())["doses"] == [1e4, 1e6, "noiseless"]
    assert (tmp_path / "fig_stem_dose.png").stat().st_size > 1000
    assert dose_label(NOISELESS) == "noiseless" and dose_label(1e5) == "100000 e-/Å²"
