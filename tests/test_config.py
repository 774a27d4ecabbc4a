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
