"""The project's 3D feature encoder: shipped weights verified, corrupt files refused, seeded training, and
trained features that tell a data set's volumes from noised or slice-shuffled ones."""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from paperlib.diffusion.checkpoints import CheckpointError
from paperlib.io import sha256_file
from paperlib.metrics.encoder import (MANIFEST_NAME, MODALITY_TRAINING, WEIGHTS_NAME, EncoderConfig,
                                      EncoderTrainConfig, VolumeEncoder, info_nce, load_encoder, save_encoder,
                                      train_encoder)
from paperlib.metrics.video import FewSamplesWarning, frechet_distance, jedi, load_extractor, volume_features
from paperlib.paths import repo_root

SHIPPED = {m: repo_root() / "checkpoints" / f"encoder_{m}_default" for m in ("mri", "stem")}


@pytest.mark.parametrize("modality", ["mri", "stem"])
def test_shipped_encoder_loads_and_matches_its_manifest(modality):
    encoder, manifest = load_encoder(SHIPPED[modality])
    weights = SHIPPED[modality] / WEIGHTS_NAME
    assert manifest["sha256"] == sha256_file(weights)
    assert manifest["size_bytes"] == weights.stat().st_size <= 16 * 2 ** 20
    assert manifest["dataset"]["modality"] == modality and len(manifest["dataset"]["fingerprint"]) == 16
    assert manifest["training"]["steps"] == MODALITY_TRAINING[modality].steps
    # constant features: InfoNCE over 2B - 1 other views + B negatives, classifier at the labels' entropy
    chance = np.log(3 * manifest["training"]["batch_size"] - 1) + 2 / 3 * np.log(1.5) + np.log(9) / 3
    assert manifest["training"]["chance_loss"] == pytest.approx(chance)
    assert manifest["training"]["final_loss"] < 0.5 * chance
    assert not encoder.training
    extractor = load_extractor(f"project-{modality}")
    assert extractor.name == f"project-{modality}" and extractor.sha256 == manifest["sha256"]


def test_corrupt_or_mismatched_files_are_refused(tmp_path):
    folder = tmp_path / "enc"
    shutil.copytree(SHIPPED["mri"], folder)
    weights = folder / WEIGHTS_NAME
    blob = bytearray(weights.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    weights.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"encoder.safetensors: corrupt or replaced"):
        load_encoder(folder)
    with pytest.raises(CheckpointError, match="corrupt or replaced"):
        load_extractor(folder)
    shutil.copyfile(SHIPPED["mri"] / WEIGHTS_NAME, weights)
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    manifest["config"]["feature_dim"] += 1
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="differs from the manifest"):
        load_encoder(folder)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(CheckpointError, match="encoder manifest not found"):
        load_encoder(folder)
    weights.unlink()
    (folder / MANIFEST_NAME).write_text((SHIPPED["mri"] / MANIFEST_NAME).read_text())
    with pytest.raises(CheckpointError, match="encoder weights unreadable"):
        load_encoder(folder)


def test_features_deterministic_and_batch_independent():
    extractor = load_extractor("project-mri")
    vols = torch.rand(3, 16, 64, 64, generator=torch.Generator().manual_seed(0)) * 0.5
    together = volume_features(vols, extractor, batch_size=3)
    one_by_one = volume_features(list(vols), extractor, batch_size=1)
    assert together.shape == (3, extractor.encoder.cfg.feature_dim) and together.dtype == np.float64
    np.testing.assert_allclose(one_by_one, together, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(volume_features(vols, extractor, batch_size=3), together)
    # another shape is resampled (trilinear) to the training shape: each voxel repeated 2 x 2 x 2 comes back
    fine = torch.nn.functional.interpolate(vols[:1, None], scale_factor=2, mode="nearest")[:, 0]
    np.testing.assert_allclose(volume_features(fine, extractor), together[:1], rtol=1e-4, atol=1e-4)


def test_training_is_seeded_and_leaves_the_callers_rng_alone(tmp_path):
    data = torch.rand(6, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    cfg = EncoderTrainConfig(steps=3, batch_size=4, seed=7)
    small = EncoderConfig(input_shape=(4, 16, 16), widths=(4, 8), feature_dim=4, projection_dim=8)
    state = torch.random.get_rng_state()
    first, record = train_encoder(data, cfg, encoder_cfg=small, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    second, _ = train_encoder(data, cfg, encoder_cfg=small, progress=False)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key
    other, _ = train_encoder(data, replace(cfg, seed=8), encoder_cfg=small, progress=False)
    assert not torch.equal(other.to_features.weight, first.to_features.weight)
    assert record["steps"] == 3 and np.isfinite(record["final_loss"])
    save_encoder(tmp_path, first, training=record, dataset={"modality": "test"})
    loaded, manifest = load_encoder(tmp_path / MANIFEST_NAME)
    with torch.no_grad():
        torch.testing.assert_close(loaded(data), first(data))
    assert manifest["config"]["widths"] == [4, 8]


def test_info_nce_prefers_matching_views_over_negatives():
    z = torch.randn(8, 5, generator=torch.Generator().manual_seed(2))
    matched = info_nce(z, z + 0.01, temperature=0.1)
    shuffled = info_nce(z, z.roll(1, dims=0), temperature=0.1)
    assert matched < 0.1 < shuffled
    far = info_nce(z, z + 0.01, temperature=0.1, negatives=-z)
    assert matched <= far < 0.1      # negatives opposite to the anchors add little
    # a degraded copy as close as the positive view: the anchor cannot tell them apart (loss >= log 2)
    assert info_nce(z, z + 0.01, temperature=0.1, negatives=z + 0.01) > 0.65
    constant = torch.ones(8, 5)
    assert float(info_nce(constant, constant, 0.1, negatives=constant)) == pytest.approx(np.log(3 * 8 - 1))


def test_degrade_makes_noisy_shuffled_or_blurred_copies():
    from paperlib.metrics.encoder import DEGRADATIONS, degrade

    volumes = torch.rand(12, 6, 16, 16, generator=torch.Generator().manual_seed(3))
    cfg = EncoderTrainConfig(max_shift=0, intensity=0.0, flip_axes=())
    out, kinds = degrade(volumes, cfg, 0.2, torch.Generator().manual_seed(4))
    again, same_kinds = degrade(volumes, cfg, 0.2, torch.Generator().manual_seed(4))
    assert torch.equal(out, again) and torch.equal(kinds, same_kinds) and out.shape == volumes.shape
    assert {DEGRADATIONS[k] for k in kinds.tolist()} == {"noise", "slice_shuffle", "blur"}
    for original, copy, kind in zip(volumes, out, kinds.tolist()):
        residual = float((copy - original).std())
        if DEGRADATIONS[kind] == "noise":         # sigma = 0.2 x U(0.1, 0.75)
            assert 0.015 < residual < 0.16
        elif DEGRADATIONS[kind] == "slice_shuffle":
            assert torch.equal(torch.sort(original.flatten())[0], torch.sort(copy.flatten())[0])
            assert residual > 0.1
        else:                                      # a box blur lowers the spread of the values
            assert float(copy.std()) < 0.7 * float(original.std())


def test_untrained_config_rejects_bad_shapes():
    with pytest.raises(ValueError, match="input_shape"):
        EncoderConfig(input_shape=(16, 64))
    with pytest.raises(ValueError, match="flip_axes"):
        EncoderTrainConfig(flip_axes=(3,))
    assert VolumeEncoder(EncoderConfig(input_shape=(4, 8, 8), widths=(4,), feature_dim=2))(
        torch.zeros(1, 4, 8, 8)).shape == (1, 2)


@pytest.mark.parametrize("modality, noise", [("mri", 0.25), ("stem", 0.5)])
def test_trained_encoder_separates_real_from_degraded_volumes(modality, noise):
    """Two halves of the training set are closer than one half and the other half degraded: noised (``noise`` x
    the data's standard deviation), slices shuffled along the depth, or blurred in-plane.

    Measured with the shipped encoders (Frechet distance, halves of 32 / 48 volumes): MRI halves 5.6, noise
    0.1 / 0.25 std 16 / 376, shuffled 1167, blurred 92; 4D-STEM halves 55, noise 0.25 / 0.5 std 87 / 200,
    shuffled 254, blurred 171: weaker noise than tested here is not told from sampling variation."""
    from paperlib.data.training import load_training_data

    data, _ = load_training_data(modality, "default")
    extractor = load_extractor(f"project-{modality}")
    generator = torch.Generator().manual_seed(0)
    half_a, half_b = data[0::2], data[1::2]
    degraded = {
        "noised": half_b + noise * float(data.std()) * torch.randn(half_b.shape, generator=generator),
        "shuffled": half_b[:, torch.randperm(half_b.shape[1], generator=generator)],
        "blurred": torch.nn.functional.avg_pool2d(half_b, 3, stride=1, padding=1, count_include_pad=False),
    }
    feats_a, feats_b = (volume_features(v, extractor, batch_size=16) for v in (half_a, half_b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)   # 32 / 48 volumes, 16 features: reported, as in Table 3
        same = frechet_distance(feats_a, feats_b)
        for name, volumes in degraded.items():
            feats = volume_features(volumes, extractor, batch_size=16)
            assert frechet_distance(feats_a, feats) > 2 * same, name
            assert jedi(feats_a, feats) > jedi(feats_a, feats_b), name
