"""Prior checkpoints: round trip, and every kind of bad file is a clear CheckpointError."""
from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import save as st_save

from paperlib.diffusion.checkpoints import (CheckpointError, load_partitioned_prior, load_prior, manifest_path,
                                            save_prior, weights_name)
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.unet3d import PRESETS, UNet3D, UNet3DConfig


pytestmark = pytest.mark.usefixtures("one_thread")


CFG = UNet3DConfig(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), heads=2, head_dim=4)
SCHEDULE = ScheduleConfig("cosine", 100)


def _model(seed: int = 0, cfg: UNet3DConfig = CFG) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(cfg)


def _save(folder, group=0, num_groups=1, model=None, **kw):
    return save_prior(folder / weights_name(group), model or _model(group), group=group, num_groups=num_groups,
                      group_size=4, schedule=SCHEDULE, dataset={"shape": [8, 16, 16]}, steps=10, final_loss=0.1, **kw)


def test_round_trip_float32_is_exact_and_writes_nothing_else(tmp_path):
    model = _model()
    manifest = _save(tmp_path, model=model, dtype=torch.float32)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prior_group0.json", "prior_group0.safetensors"]
    models, manifests = load_prior(tmp_path / "prior_group0.json")
    assert manifests == [manifest] and manifest["num_parameters"] == sum(p.numel() for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(models[0].state_dict()[k], v)
    assert not models[0].training


def test_float16_is_close_and_half_the_size(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    m16, m32 = _save(tmp_path / "a", dtype=torch.float16), _save(tmp_path / "b", dtype=torch.float32)
    assert m16["size_bytes"] < 0.6 * m32["size_bytes"]
    (loaded,), _ = load_prior(tmp_path / "a")
    for k, v in _model(0).state_dict().items():
        assert torch.allclose(loaded.state_dict()[k], v, atol=1e-3, rtol=1e-3)
        assert loaded.state_dict()[k].dtype == torch.float32


def test_folder_of_groups_and_partitioned_prior(tmp_path):
    for g in range(2):
        _save(tmp_path, group=g, num_groups=2)
    (tmp_path / "loss_group0.jsonl").write_text("{}\n")
    (tmp_path / "notes.json").write_text('{"unrelated": true}')  # other JSON files are ignored
    models, manifests = load_prior(tmp_path)
    assert [m["group"] for m in manifests] == [0, 1]
    _, only1 = load_prior(tmp_path, groups=[1])
    assert [m["group"] for m in only1] == [1]
    prior = load_partitioned_prior(tmp_path, method="ddpm")
    assert prior.group_size == 4 and prior.depth == 8 and prior.sampler.num_train_timesteps == 100
    x = prior.sample((8, 16, 16), num_steps=2, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, 16, 16)
    (tmp_path / "prior_group1.json").unlink()
    with pytest.raises(CheckpointError, match=r"groups \[0\] found, expected 0..1"):
        load_prior(tmp_path)


def test_flipped_byte_is_detected(tmp_path):
    _save(tmp_path)
    path = tmp_path / "prior_group0.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"prior_group0\.safetensors: SHA-256 mismatch"):
        load_prior(path)


def test_truncated_file_is_detected(tmp_path):
    _save(tmp_path)
    path = tmp_path / "prior_group0.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"prior_group0\.safetensors: truncated"):
        load_prior(tmp_path)
    # the same with a manifest edited to match: the safetensors reader fails, reported as such
    manifest = json.loads(manifest_path(path).read_text())
    blob = path.read_bytes()
    manifest.update(size_bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    manifest_path(path).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="unreadable safetensors file"):
        load_prior(path)


def test_config_mismatch_is_detected(tmp_path):
    _save(tmp_path)
    mpath = tmp_path / "prior_group0.json"
    manifest = json.loads(mpath.read_text())
    manifest["model_config"]["base_width"] = 16  # the manifest no longer describes the weights
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"prior_group0\.safetensors: config mismatch"):
        load_prior(mpath)
    # a change that leaves every tensor shape as it is: only the config stored in the weights header sees it
    manifest["model_config"]["base_width"] = CFG.base_width
    manifest["model_config"]["dropout"] = 0.3
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=r"prior_group0\.safetensors: config mismatch: the weights were saved"):
        load_prior(mpath)


def test_weights_not_fitting_their_config_are_detected(tmp_path):
    """A consistent manifest and header, but tensors of another architecture."""
    _save(tmp_path)
    path = tmp_path / "prior_group0.safetensors"
    other = _model(cfg=UNet3DConfig(**{**CFG.to_dict(), "base_width": 16}))
    header = json.loads(path.read_bytes()[8:8 + int.from_bytes(path.read_bytes()[:8], "little")])["__metadata__"]
    blob = st_save({k: v.contiguous() for k, v in other.state_dict().items()}, metadata=header)
    path.write_bytes(blob)
    manifest = json.loads(manifest_path(path).read_text())
    manifest.update(size_bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    manifest_path(path).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="config mismatch: weights do not fit model_config"):
        load_prior(path)


def test_expected_config_and_missing_files(tmp_path):
    _save(tmp_path)
    with pytest.raises(CheckpointError, match="config mismatch: checkpoint has"):
        load_prior(tmp_path, expected_config=PRESETS["ci"])
    with pytest.raises(CheckpointError, match=r"no checkpoint for groups \[3\]"):
        load_prior(tmp_path, groups=[3])
    (tmp_path / "prior_group0.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="manifest is not valid JSON"):
        load_prior(tmp_path / "prior_group0.safetensors")
    (tmp_path / "prior_group0.json").unlink()
    with pytest.raises(CheckpointError, match="manifest not found"):
        load_prior(tmp_path / "prior_group0.safetensors")
    with pytest.raises(CheckpointError, match="no prior manifests"):
        load_prior(tmp_path)
    assert issubclass(CheckpointError, ValueError)


def test_save_refuses_bad_input(tmp_path):
    model = _model()
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        _save(tmp_path, model=model)
    with pytest.raises(ValueError, match="group"):
        _save(tmp_path, group=2, num_groups=2)
    with pytest.raises(ValueError, match=".safetensors"):
        save_prior(tmp_path / "x.pt", _model(), group_size=4, schedule=SCHEDULE)


def test_default_prior_fits_16_mib(tmp_path):
    """All groups of the shipped default prior together, as trained (float16) and even in float32."""
    from paperlib.diffusion.train_config import TRAIN_PRESETS

    cfg = TRAIN_PRESETS["default"]
    model = UNet3D(cfg.model)
    for dtype in (torch.float16, torch.float32):
        m = save_prior(tmp_path / f"{dtype}.safetensors".replace("torch.", ""), model, group_size=8,
                       schedule=SCHEDULE, dtype=dtype)
        assert cfg.num_groups * m["size_bytes"] <= 16 * 2**20, (dtype, m["size_bytes"])
    assert cfg.weights_dtype == "float16"
