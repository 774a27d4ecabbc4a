"""Domain-randomised MRI slabs (paperlib.data.randomized) and the shared intensity scale."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from paperlib.data import randomized
from paperlib.data.intensity import intensity_scale
from paperlib.io import InputValidationError

SHAPE = (4, 32, 32)


def test_slab_is_a_function_of_its_seed_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, head_a = randomized.randomized_slab(5, SHAPE)
    assert torch.equal(torch.get_rng_state(), before)
    b, head_b = randomized.randomized_slab(5, SHAPE)
    c, _ = randomized.randomized_slab(6, SHAPE)
    assert torch.equal(a, b) and torch.equal(head_a, head_b)
    assert not torch.equal(a, c)


def test_slab_is_a_normalised_magnitude_image():
    image, head = randomized.randomized_slab(2, SHAPE)
    assert image.shape == SHAPE and image.dtype == torch.float32 and head.shape == SHAPE
    assert bool(torch.isfinite(image).all()) and float(image.min()) >= 0.0
    assert intensity_scale(image) == pytest.approx(1.0, rel=1e-5)  # divided by its own scale, not clipped


def test_labels_are_a_partition_of_unity_with_layers_outside_the_brain():
    rng = np.random.default_rng(0)
    tissues = np.zeros((6, 6, 20, 20), np.float32)
    tissues[2, 1:5, 6:14, 6:14] = 1.0  # a block of grey matter
    for _ in range(4):  # skull or not, both must partition
        labels = randomized._head_labels(rng, tissues, np.array([4.0, 2.0, 2.0]))
        assert labels.shape == (len(randomized.LABELS), 6, 20, 20)
        assert torch.allclose(labels.sum(0), torch.ones(6, 20, 20), atol=1e-5)
        assert float(labels[7:, 1:5, 6:14, 6:14].abs().max()) == 0.0  # no skull inside the brain


def test_contrasts_vary_across_slabs():
    """The point of the generator: the same tissue is bright in one slab and dark in another."""
    ratios = []
    for seed in range(8):
        image, head = randomized.randomized_slab(seed, SHAPE)
        inside = image[head]
        ratios.append(float(inside.std() / inside.mean()))
    assert max(ratios) > 1.5 * min(ratios)


def test_set_is_cached_and_stacks_the_seeds(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    data = randomized.randomized_set(2, SHAPE, seed=7, progress=False)
    assert data.shape == (2, *SHAPE)
    assert torch.equal(data[1], randomized.randomized_slab(8, SHAPE)[0])
    assert list(tmp_path.glob("randomized_*.pt"))
    assert torch.equal(randomized.randomized_set(2, SHAPE, seed=7, progress=False), data)


def test_intensity_scale_ignores_background_and_units():
    v = torch.zeros(4, 32, 32)
    v[:, 8:24, 8:24] = torch.linspace(100, 200, 16 * 16).reshape(16, 16)
    s = intensity_scale(v)
    assert 190 < s < 201
    padded = torch.zeros(4, 64, 64)
    padded[:, :32, :32] = v
    assert intensity_scale(padded) == pytest.approx(s, rel=1e-3)  # more background, same scale
    noisy = v + 0.5 * torch.rand(v.shape, generator=torch.Generator().manual_seed(0))  # background noise
    assert intensity_scale(noisy) == pytest.approx(s, rel=1e-2)
    assert intensity_scale(7.0 * v) == pytest.approx(7.0 * s, rel=1e-6)


@pytest.mark.parametrize("bad, match", [(torch.zeros(2, 8, 8), "all zeros"),
                                        (torch.full((2, 8, 8), float("nan")), "finite")])
def test_intensity_scale_rejects_bad_volumes(bad, match):
    with pytest.raises(InputValidationError, match=match):
        intensity_scale(bad, name="scan.nii")


def test_wide_anatomy_moves_the_same_subject_further_from_the_template():
    """``anatomy="wide"`` scales the same draws of the subject's pose and deformation
    (paperlib.data.brain.ANATOMY_SPREADS): the head's extent changes more across seeds than with the
    template's spread, tissue fractions stay partial volumes, and the default is the template."""
    from paperlib.data.brain import ANATOMY_SPREADS, synthetic_tissues

    grid = (12, 48, 48)
    default, voxel = synthetic_tissues(4, grid)
    template, _ = synthetic_tissues(4, grid, anatomy="template")
    wide, wide_voxel = synthetic_tissues(4, grid, anatomy="wide")
    assert np.array_equal(default, template) and np.array_equal(voxel, wide_voxel)
    assert not np.array_equal(template, wide)
    assert float(wide.min()) >= 0.0 and float(wide.sum(0).max()) <= 1 + 1e-5
    spread = lambda a: np.std([synthetic_tissues(s, grid, anatomy=a)[0].sum(0).sum() for s in range(6)])
    assert spread("wide") > 1.5 * spread("template")  # brain volumes vary more across subjects
    wide_spread, narrow = ANATOMY_SPREADS["wide"], ANATOMY_SPREADS["template"]
    assert min(wide_spread.degrees) > max(narrow.degrees) and wide_spread.deformation_mm > narrow.deformation_mm
    with pytest.raises(ValueError, match="anatomy: expected one of"):
        synthetic_tissues(4, grid, anatomy="broad")


def test_wide_slabs_are_cached_apart_and_the_template_cache_keeps_its_name(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    # the name of the shipped general prior's slab cache (real_mri: 384 slabs of 8 x 64 x 64, seed 0)
    assert randomized._cache_file(384, (8, 64, 64), 0).name == "randomized_1e4c558561031de6.pt"
    assert randomized._cache_file(384, (8, 64, 64), 0, "wide") != randomized._cache_file(384, (8, 64, 64), 0)
    wide = randomized.randomized_set(1, SHAPE, seed=3, anatomy="wide", progress=False)
    assert torch.equal(wide[0], randomized.randomized_slab(3, SHAPE, anatomy="wide")[0])
    assert not torch.equal(wide[0], randomized.randomized_slab(3, SHAPE)[0])
    assert len(list(tmp_path.glob("randomized_*.pt"))) == 1
    with pytest.raises(ValueError, match="anatomy"):
        randomized.randomized_set(1, SHAPE, anatomy="broad", progress=False)


def test_training_presets_get_the_slabs_of_their_anatomy(tmp_path, monkeypatch):
    """load_training_data: mri_general(_lownoise) train on the template's slabs, mri_general_wide on the
    same seeds' wide-anatomy slabs, and only the latter's dataset record names an anatomy."""
    import yaml

    from paperlib.config import profile_path
    from paperlib.data.training import load_training_data

    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    profile = yaml.safe_load(profile_path("ci").read_text())
    profile["real_mri"].update(n_slabs=2, slab=list(SHAPE), slab_seed=3)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(profile))
    got = {p: load_training_data("mri", str(path), preset=p) for p in ("mri_general", "mri_general_wide")}
    assert torch.equal(got["mri_general"][0], randomized.randomized_set(2, SHAPE, seed=3, progress=False))
    assert torch.equal(got["mri_general_wide"][0], randomized.randomized_set(2, SHAPE, seed=3, anatomy="wide",
                                                                              progress=False))
    assert "anatomy" not in got["mri_general"][1] and got["mri_general_wide"][1]["anatomy"] == "wide"
    assert got["mri_general_wide"][1]["shape"] == [2, *SHAPE]
