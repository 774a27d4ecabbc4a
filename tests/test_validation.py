"""``python -m paperlib.validation``: the ci profile's grid on the validation split, its CSVs."""
from __future__ import annotations

import json

import pytest
import torch

from paperlib import paths, validation
from paperlib.config import load_profile
from paperlib.data.brain import load_split
from paperlib.data.crystals import stem_dataset
from paperlib.experiments.mri import mri_cases
from paperlib.experiments.runner import run_cases
from paperlib.experiments.priors import prior_weights
from paperlib.tables import read_cases, read_csv_rows


@pytest.fixture(scope="module")
def ci():
    return load_profile("ci")


@pytest.fixture(scope="module")
def written(ci, tmp_path_factory):
    """The whole ci grid (both modalities) run once through the command line into a temp folder."""
    out = tmp_path_factory.mktemp("validation")
    assert validation.main(["--profile", "ci", "--out", str(out), "--threads", "1"]) == 0
    return out


@pytest.mark.parametrize("modality", ["mri", "stem"])
def test_rows_cover_the_grid_on_the_validation_split(ci, written, modality):
    grid = getattr(ci.validation, modality)
    rows = read_cases(written / f"validation_{modality}_ci.csv")
    expected = [(m, ";".join(f"{k}={v}" for k, v in p.items())) for m in grid.methods for p in grid.points(m)]
    assert [(r["method"], r["overrides"]) for r in rows] == expected  # 1 case, seed 0 (every method here)
    assert {r["split"] for r in rows} == {"val"} and {r["profile"] for r in rows} == {"ci"}
    if modality == "mri":
        val_ids = load_split(ci.mri, "val").ids[:grid.n_volumes]
        test_ids = set(load_split(ci.mri, "test").ids)
    else:
        val_ids = [s.case_id for s in stem_dataset(ci.stem, "val", grid.n_volumes)]
        test_ids = {s.case_id for s in stem_dataset(ci.stem, "test", ci.stem_eval.n_test)}
    assert [r["case"] for r in rows] == list(val_ids) * len(expected)
    assert not test_ids & {r["case"] for r in rows}


def test_override_columns_hold_the_values_run(written):
    rows = read_csv_rows(written / "validation_stem_ci.csv")
    by = {(r["method"], r["overrides"]): r for r in rows}
    assert by[("three_pie", "alpha=0.25")]["alpha"] == 0.25 and by[("three_pie", "alpha=0.5")]["alpha"] == 0.5
    assert by[("drift", "vacuum_threshold=None")]["vacuum_threshold"] is None
    assert by[("drift", "vacuum_threshold=5.0")]["vacuum_threshold"] == 5.0
    assert by[("three_pie", "alpha=0.25")]["vacuum_threshold"] is None  # not a 3PIE setting
    # the override reached the reconstruction: different alphas give different scores
    assert by[("three_pie", "alpha=0.25")]["ssim_slice_mean"] != by[("three_pie", "alpha=0.5")]["ssim_slice_mean"]


def test_prior_rows_carry_the_manifest_sha256(ci, written):
    for modality, checkpoint in (("mri", ci.prior.checkpoint), ("stem", ci.stem_prior.checkpoint)):
        shas = ";".join(json.loads(w.with_suffix(".json").read_text())["sha256"] for w in prior_weights(checkpoint))
        assert len(shas) == 2 * 64 + 1  # two slice groups
        for r in read_csv_rows(written / f"validation_{modality}_ci.csv"):
            uses_prior = r["method"] in ("dart", "drift", "projection")
            assert r["prior_sha256"] == (shas if uses_prior else None), r
            assert r["prior_checkpoint"] == (checkpoint if uses_prior else None)


def test_a_grid_row_equals_the_runner_on_a_profile_with_that_setting(ci, written, tmp_path):
    """TV at weight 0.005 through the grid == the runner on a profile file that says 0.005."""
    text = (paths.params_dir() / "ci.yaml").read_text()
    first = text.index("tv_weight: 0.002\n")  # mri_baselines' (real_mri.baselines has its own, later)
    assert text.index("\nmri_baselines:") < first < text.index("\nreal_mri:")
    edited = tmp_path / "ci_tv.yaml"
    edited.write_text(text.replace("tv_weight: 0.002\n", "tv_weight: 0.005\n", 1))
    profile = load_profile(edited)
    direct, _ = run_cases(profile, "mri", mri_cases(profile, split="val", n=1), ["tv"], progress=False)
    grid_row = next(r for r in read_cases(written / "validation_mri_ci.csv") if r["overrides"] == "tv_weight=0.005")
    assert f"{direct[0]['ssim_whole']:.6g}" == f"{grid_row['ssim_whole']:.6g}"
    assert f"{direct[0]['psnr_volume']:.6g}" == f"{grid_row['psnr_volume']:.6g}"


def test_summary_has_one_row_per_grid_point(ci, written):
    for modality in ("mri", "stem"):
        cases = read_cases(written / f"validation_{modality}_ci.csv")
        summary = read_csv_rows(written / f"validation_{modality}_ci_summary.csv")
        assert [(s["method"], s["overrides"] or "") for s in summary] == [(r["method"], r["overrides"]) for r in cases]
        column = "ssim_whole" if modality == "mri" else "ssim_slice_mean"
        assert [s[f"{column}_mean"] for s in summary] == [float(f"{r[column]:.6g}") for r in cases]
    assert not list(written.glob(".*"))  # no temporary files left by the atomic writes


def test_profile_without_a_grid_is_an_error_naming_the_section(capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        validation.main(["--profile", "paper", "--modality", "mri", "--out", str(tmp_path)])
    assert info.value.code == 2
    assert "profile 'paper': no validation.mri section" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_stem_eval_cases_are_the_validation_crystals_as_the_test_tables_make_them(ci, written):
    """``validation.stem_eval``: the validation seeds, simulated as ``stem_eval.data`` says (abTEM,
    phonons, dose, random depth), not our operator's noiseless entrance-placed crystals."""
    from paperlib.experiments.stem import eval_cases, stem_cases

    grid = ci.validation.stem_eval
    cases = validation.validation_cases(ci, "stem_eval", grid.n_volumes)
    made = eval_cases(ci, "val", grid.n_volumes)
    assert [c.case_id for c in cases] == [c.case_id for c in made]
    assert torch.equal(cases[0].intensities, made[0].intensities)
    assert not torch.equal(cases[0].potential, stem_cases(ci, "val", 1)[0].potential)  # placed at another depth
    rows = read_cases(written / "validation_stem_eval_ci.csv")
    assert [(r["method"], r["case"]) for r in rows] == [(m, c.case_id) for m in grid.methods for c in cases]
    test_ids = {c.case_id for c in eval_cases(ci, "test")}
    assert {r["split"] for r in rows} == {"val"} and not test_ids & {r["case"] for r in rows}


def test_grid_checkpoints_run_each_prior_method_once_per_prior(ci, monkeypatch):
    """``checkpoints``: every point of DART runs with each prior (its folder and hashes in the row,
    ``checkpoint=`` in the overrides); a baseline runs once, without a prior."""
    from paperlib.config import ValidationConfig, ValidationGrid

    folders = ("checkpoints/stem_ci", "checkpoints/stem_default_l2")
    grid = ValidationGrid(n_volumes=1, checkpoints=folders,
                          methods={"dart": {"physics_steps": [1, 2]}, "three_pie": []})
    profile = ci.model_copy(update={"validation": ValidationConfig(stem_eval=grid)})
    ran = []

    def fake_score(tuned, modality, cases, methods, *, seeds, progress):
        ran.append((methods[0], tuned.stem_prior.guided_checkpoint, tuned.stem_diffusion.dart.physics_steps))
        return [{"method": methods[0], "case": cases[0]}]

    monkeypatch.setattr(validation, "validation_cases", lambda profile, modality, n: ["crystal"])
    monkeypatch.setattr(validation, "score_cases", fake_score)
    rows = validation.validation_rows(profile, "stem_eval")
    assert ran == [("dart", f, s) for s in (1, 2) for f in folders] + [("three_pie", ci.stem_prior.guided_checkpoint, 1)]
    for r, (method, folder, steps) in zip(rows, ran):
        if method == "dart":
            assert r["overrides"] == f"physics_steps={steps};checkpoint={folder}"
            assert r["prior_checkpoint"] == folder and r["prior_sha256"] == validation.prior_sha256(folder)
        else:
            assert r["overrides"] == "" and r["prior_checkpoint"] is None and r["prior_sha256"] is None
    with pytest.raises(ValueError, match=r"validation.stem_eval.n_volumes: expected <= stem_eval.n_val = 2"):
        type(ci).model_validate({**ci.model_dump(), "validation": {"stem_eval": {
            "n_volumes": 3, "methods": {"dart": []}}}})


def test_recon_checkpoint_is_the_prior_dart_and_drift_sample(ci):
    """``stem_prior.recon_checkpoint`` (the reconstructions' prior) wins over ``checkpoint`` (the
    generation experiments'); unset, both are ``checkpoint``."""
    from paperlib.experiments.stem import STEM_GUIDED

    assert ci.stem_prior.recon_checkpoint is None and validation.prior_checkpoint(ci, "stem") == ci.stem_prior.checkpoint
    moved = validation.with_checkpoint(ci, "stem_eval", "checkpoints/stem_single_ci")
    assert moved.stem_prior.checkpoint == ci.stem_prior.checkpoint  # Table 3's prior unchanged
    assert validation.prior_checkpoint(moved, "stem") == "checkpoints/stem_single_ci"
    assert len(STEM_GUIDED.load(moved).models) == 1 and len(STEM_GUIDED.load(ci).models) == 2
