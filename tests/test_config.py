import pytest
import yaml

from paperlib import paths
from paperlib.config import ConfigError, load_profile


@pytest.mark.parametrize("name", ["ci", "default", "paper"])
def test_shipped_profiles_validate(name):
    cfg = load_profile(name)
    assert cfg.name == name
    assert cfg.tab1.n_volumes <= cfg.mri.n_test
    assert all(0 <= s < cfg.mri.shape[0] for s in cfg.fig3.slices)
    assert len(cfg.digest()) == 16


def _write(tmp_path, data):
    path = tmp_path / "custom.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _ci_dict():
    return yaml.safe_load((paths.params_dir() / "ci.yaml").read_text())


def test_unknown_key_names_key_and_file(tmp_path):
    data = _ci_dict()
    data["mri_baselines"]["tv_wieght"] = 0.1  # typo
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError, match=r"custom\.yaml.*unknown key 'mri_baselines\.tv_wieght'"):
        load_profile(path)


def test_unknown_top_level_section(tmp_path):
    data = _ci_dict()
    data["mir"] = {}
    with pytest.raises(ConfigError, match=r"unknown key 'mir'"):
        load_profile(_write(tmp_path, data))


def test_wrong_type_and_missing_key(tmp_path):
    data = _ci_dict()
    data["mri"]["shape"] = [8, "big", 32]
    del data["tab1"]
    with pytest.raises(ConfigError) as info:
        load_profile(_write(tmp_path, data))
    assert "mri.shape" in str(info.value) and "missing key 'tab1'" in str(info.value)


def test_bad_values_rejected(tmp_path):
    data = _ci_dict()
    data["mri_physics"]["acceleration"] = 0.5
    with pytest.raises(ConfigError, match="mri_physics.acceleration"):
        load_profile(_write(tmp_path, data))


def test_unknown_profile_name_lists_known():
    with pytest.raises(ConfigError, match=r"no file .*known profiles: \[.*'ci'"):
        load_profile("nonexistent")


def test_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_profile(path)


def test_digest_changes_with_content(tmp_path):
    data = _ci_dict()
    a = load_profile(_write(tmp_path, data)).digest()
    data["mri_baselines"]["tv_iters"] += 1
    b = load_profile(_write(tmp_path, data)).digest()
    assert a != b


# --- the optional validation section ------------------------------------------------------------

def test_validation_grid_points_and_overrides():
    cfg = load_profile("ci")
    grid = cfg.validation.mri
    assert grid.points("dart") == [{"start": 0.5}, {"start": 1.0}]
    tuned = cfg.with_overrides("mri", "dart", {"start": 1.0, "steps": 7})
    assert (tuned.mri_diffusion.dart.start, tuned.mri_diffusion.dart.steps) == (1.0, 7)
    assert tuned.mri_diffusion.drift == cfg.mri_diffusion.drift and tuned.tab1 == cfg.tab1
    assert cfg.mri_diffusion.dart.start == 0.5  # the original is untouched
    assert cfg.with_overrides("stem", "three_pie", {"alpha": 0.25}).stem_baselines.three_pie.alpha == 0.25
    assert cfg.with_overrides("stem", "three_pie_thickness", {"steps": 3}).stem_baselines.thickness.steps == 3
    assert cfg.with_overrides("mri", "tv", {"tv_weight": 0.01}).mri_baselines.tv_weight == 0.01
    assert cfg.with_overrides("mri", "zero_filled", {}) is cfg


def test_validation_grid_is_a_product_of_each_grid_and_a_union_of_grids(tmp_path):
    data = _ci_dict()
    data["validation"]["mri"]["methods"] = {
        "dart": [{"start": [0.3, 1.0], "steps": [2, 4]}, {"start": [0.3], "steps": [2, 8]}],
        "zero_filled": []}
    grid = load_profile(_write(tmp_path, data)).validation.mri
    assert grid.points("dart") == [{"start": 0.3, "steps": 2}, {"start": 0.3, "steps": 4},
                                   {"start": 1.0, "steps": 2}, {"start": 1.0, "steps": 4},
                                   {"start": 0.3, "steps": 8}]
    assert grid.points("zero_filled") == [{}]


@pytest.mark.parametrize("change, message", [
    (lambda v: v["mri"]["methods"].update(dartt={"start": [0.5]}),
     r"validation\.mri\.methods: unknown method 'dartt'; known: \['cs_mri', 'dart', "),
    (lambda v: v["mri"]["methods"].update(dart={"strat": [0.5]}), r"unknown settings \['strat'\]"),
    (lambda v: v["mri"]["methods"].update(dart={"start": [0.5, 0.0]}),
     r"validation\.mri\.methods\.dart: start: Input should be greater than 0 \(got 0\.0\)"),
    (lambda v: v["stem"]["methods"].update(three_pie={"alpha": ["big"]}),
     r"validation\.stem\.methods\.three_pie: alpha: .*\(got 'big'\)"),
    (lambda v: v["mri"]["methods"].update(dart={"start": []}), r"\['start'\] have no values"),
    (lambda v: v["mri"]["methods"].update(zero_filled={"weight": [1.0]}), r"zero_filled: has no settings"),
    (lambda v: v["mri"].update(n_volumes=3), r"validation.mri.n_volumes: expected <= mri.n_val = 2, got 3"),
    (lambda v: v["stem"].update(n_volume=1), r"unknown key 'validation.stem.n_volume'"),
    (lambda v: v.update(ct={}), r"unknown key 'validation.ct'"),
])
def test_validation_section_is_strict(tmp_path, change, message):
    data = _ci_dict()
    change(data["validation"])
    with pytest.raises(ConfigError, match=r"custom\.yaml.*" + message):
        load_profile(_write(tmp_path, data))


def test_validation_section_is_optional(tmp_path):
    data = _ci_dict()
    del data["validation"]
    assert load_profile(_write(tmp_path, data)).validation is None
    with pytest.raises(ValueError, match=r"method: expected one of .*'three_pie'.*got 'dart3'"):
        load_profile("ci").with_overrides("stem", "dart3", {})


def test_likelihood_is_a_4dstem_setting(tmp_path):
    """``likelihood`` reaches the 4D-STEM physics step's keyword arguments; an MRI section refuses it by name."""
    data = _ci_dict()
    data["stem_diffusion"]["dart"]["likelihood"] = "poisson"
    data["stem_diffusion"]["drift"].pop("likelihood", None)  # unset: the operator's default (amplitude)
    cfg = load_profile(_write(tmp_path, data))
    assert cfg.stem_diffusion.dart.step_kwargs()["likelihood"] == "poisson"
    assert "likelihood" not in cfg.stem_diffusion.drift.step_kwargs()
    data["mri_diffusion"]["dart"]["likelihood"] = "poisson"
    with pytest.raises(ConfigError, match="mri_diffusion.dart.likelihood: a 4D-STEM setting"):
        load_profile(_write(tmp_path, data))
    data["mri_diffusion"]["dart"]["likelihood"] = "gaussian"
    with pytest.raises(ConfigError, match="mri_diffusion.dart.likelihood"):
        load_profile(_write(tmp_path, data))


def test_momentum_reaches_the_physics_callback(tmp_path):
    """``momentum`` is passed with the physics step's keyword arguments (the callback takes it) when set;
    a value that is not a bool names the setting."""
    data = _ci_dict()
    data["stem_diffusion"]["drift"]["momentum"] = True
    data["stem_diffusion"]["dart"].pop("momentum", None)
    cfg = load_profile(_write(tmp_path, data))
    assert cfg.stem_diffusion.drift.step_kwargs()["momentum"] is True
    assert "momentum" not in cfg.stem_diffusion.dart.step_kwargs()
    data["stem_diffusion"]["drift"]["momentum"] = "often"
    with pytest.raises(ConfigError, match="stem_diffusion.drift.momentum"):
        load_profile(_write(tmp_path, data))
