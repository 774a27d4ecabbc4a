"""Synthetic BraTS-like volumes and the BraTS2020 loader (paperlib.data.brain)."""
from __future__ import annotations

import importlib.util

import nibabel as nib
import numpy as np
import pytest
import torch

from paperlib.config import MRIDataConfig
from paperlib.data import brain
from paperlib.io import InputValidationError

TINY = (8, 32, 32)
SMALL = (16, 64, 64)
# BraTS2020 files are (240, 240, 155) arrays in (x, y, z) with this affine (L, P, S voxel axes)
BRATS_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def _cfg(**kw) -> MRIDataConfig:
    base = dict(shape=TINY, n_train=2, n_val=1, n_test=1, modality="flair", noise_std=0.01)
    base.update(kw)
    return MRIDataConfig(**base)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------------------------
# synthetic subjects
# --------------------------------------------------------------------------------------------
def test_same_seed_gives_identical_subject():
    a, b = brain.synthetic_subject(7, TINY), brain.synthetic_subject(7, TINY)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_different_seeds_differ():
    a, b = brain.synthetic_subject(1, TINY), brain.synthetic_subject(2, TINY)
    for key in brain.MODALITIES:
        assert np.abs(a[key] - b[key]).mean() > 0.01, key


def test_shapes_dtypes_range_and_zero_background():
    s = brain.synthetic_subject(0, TINY)
    assert sorted(s) == sorted((*brain.MODALITIES, "seg", "brain_mask"))
    mask = s["brain_mask"]
    assert mask.shape == TINY and mask.dtype == bool
    assert 0.05 < mask.mean() < 0.5  # BraTS-like field of view: brain plus a background margin
    for key in brain.MODALITIES:
        vol = s[key]
        assert vol.shape == TINY and vol.dtype == np.float32
        assert vol.min() >= 0.0 and vol.max() <= 1.0
        assert np.all(vol[~mask] == 0.0), key
        assert vol[mask].mean() > 0.2, key
    assert s["seg"].dtype == np.uint8 and np.all(s["seg"][~mask] == 0)


def test_lesion_labels_follow_brats_convention():
    found = set()
    for seed in range(4):
        seg = brain.synthetic_subject(seed, TINY)["seg"]
        labels = set(np.unique(seg).tolist())
        assert labels <= {0, 1, 2, 4}
        assert {2, 4} <= labels, (seed, labels)
        found |= labels
    assert 1 in found  # necrotic cores exist (not every tumour has a visible one at 19 mm slices)


def test_one_modality_matches_the_full_subject():
    full = brain.synthetic_subject(11, TINY)
    single = brain._simulate(11, TINY, 0.01, ("t2",))
    assert set(single) == {"t2", "seg", "brain_mask"}
    np.testing.assert_array_equal(single["t2"], full["t2"])


def test_modality_contrasts_on_average():
    means = {}
    for seed in range(3):
        s = brain._simulate(seed, SMALL, 0.0, tissues=True)
        tissue = s["tissues"]
        regions = {
            "csf": tissue[0] > 0.8, "wm": tissue[2] > 0.8, "oedema": s["seg"] == 2, "enhancing": s["seg"] == 4
        }
        for name, region in regions.items():
            assert region.sum() > 5, (seed, name)
            for m in brain.MODALITIES:
                means.setdefault((m, name), []).append(float(s[m][region].mean()))
    mean = {k: np.mean(v) for k, v in means.items()}
    assert mean["flair", "csf"] < mean["flair", "wm"]
    assert mean["t1", "csf"] < mean["t1", "wm"]
    assert mean["t2", "csf"] > mean["t2", "wm"]
    assert mean["flair", "oedema"] > mean["flair", "wm"] + 0.1
    assert mean["t1ce", "enhancing"] > mean["t1", "enhancing"] + 0.1


def test_anatomy_differs_between_subjects():
    a = brain.synthetic_subject(0, SMALL)["brain_mask"]
    b = brain.synthetic_subject(1, SMALL)["brain_mask"]
    assert (a ^ b).sum() / (a | b).sum() > 0.05


def test_noise_only_inside_the_brain():
    clean = brain._simulate(4, TINY, 0.0, ("t1",))
    noisy = brain._simulate(4, TINY, 0.05, ("t1",))
    np.testing.assert_array_equal(clean["brain_mask"], noisy["brain_mask"])
    inside = clean["brain_mask"]
    assert np.all(noisy["t1"][~inside] == 0)
    assert 0.01 < np.abs(noisy["t1"] - clean["t1"])[inside].mean() < 0.1


def test_invalid_arguments():
    with pytest.raises(ValueError, match="shape"):
        brain.synthetic_subject(0, (8, 32))
    with pytest.raises(ValueError, match="noise_std"):
        brain.synthetic_subject(0, TINY, noise_std=-1.0)


def test_missing_nilearn_is_a_clear_import_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ImportError, match=r"pip install 'paperlib\[data\]'"):
        brain.template_folder()


# --------------------------------------------------------------------------------------------
# splits and cache
# --------------------------------------------------------------------------------------------
def test_load_split_matches_subjects_and_is_cached(cache, monkeypatch):
    cfg = _cfg()
    first = brain.load_split(cfg, "train")
    assert isinstance(first, brain.BrainVolumes) and len(first) == 2
    assert first.images.shape == (2, *TINY) and first.images.dtype == torch.float32
    assert first.head_masks.dtype == torch.bool
    assert first.ids == ("synthetic-0", "synthetic-1")
    subject = brain.synthetic_subject(1, TINY, noise_std=cfg.noise_std)
    np.testing.assert_array_equal(first.images[1].numpy(), subject["flair"])
    np.testing.assert_array_equal(first.head_masks[1].numpy(), subject["brain_mask"])
    assert len(list((cache / "brain").glob("*.npz"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("the cached split was regenerated")

    monkeypatch.setattr(brain, "_simulate", boom)
    second = brain.load_split(cfg, "train")
    assert torch.equal(first.images, second.images) and torch.equal(first.head_masks, second.head_masks)
    assert second.ids == first.ids
    # another parameter -> another cache file (and generation)
    with pytest.raises(AssertionError, match="regenerated"):
        brain.load_split(cfg.model_copy(update={"noise_std": 0.02}), "train")


def test_corrupt_cache_is_regenerated(cache):
    cfg = _cfg()
    first = brain.load_split(cfg, "val")
    (path,) = (cache / "brain").glob("*.npz")
    path.write_bytes(b"not a zip file")
    again = brain.load_split(cfg, "val")
    assert torch.equal(first.images, again.images)
    assert path.stat().st_size > 100


def test_splits_have_disjoint_seeds(cache):
    cfg = _cfg()
    ids = {split: set(brain.load_split(cfg, split).ids) for split in ("train", "val", "test")}
    assert ids["train"].isdisjoint(ids["val"]) and ids["train"].isdisjoint(ids["test"])
    assert ids["val"].isdisjoint(ids["test"])
    assert ids["val"] == {"synthetic-10000"} and ids["test"] == {"synthetic-20000"}
    with pytest.raises(ValueError, match="overlap"):
        brain.load_split(_cfg(val_seed=1), "test")
    with pytest.raises(ValueError, match="split"):
        brain.load_split(cfg, "validation")


# --------------------------------------------------------------------------------------------
# real BraTS layout
# --------------------------------------------------------------------------------------------
def _brats_tree(root, n=3, size=(16, 16, 8), affine=BRATS_AFFINE):
    """``n`` BraTS-named subjects of (x, y, z) = ``size``: a brain block with a hole at (2, 3, 5)."""
    rng = np.random.default_rng(0)
    for i in range(1, n + 1):
        name = f"BraTS20_Training_{i:03d}"
        (root / name).mkdir(parents=True)
        for m in (*brain.MODALITIES, "seg"):
            data = np.zeros(size, np.float32)
            data[1:-1, 1:-1, 1:-1] = rng.uniform(100, 200, tuple(s - 2 for s in size))
            data[2, 3, 5] = 0.0
            nib.save(nib.Nifti1Image(data, affine), str(root / name / f"{name}_{m}.nii.gz"))
    return root


def _holes(mask: torch.Tensor) -> list[tuple[int, ...]]:
    inner = ~mask.numpy()[1:-1, 1:-1, 1:-1]
    return [tuple(int(i) + 1 for i in idx) for idx in np.argwhere(inner)]


def test_load_brats_orientation_range_and_masks(tmp_path):
    root = _brats_tree(tmp_path / "brats")
    vols = brain.load_brats(root, "t1ce")
    assert vols.ids == ("BraTS20_Training_001", "BraTS20_Training_002", "BraTS20_Training_003")
    assert vols.images.shape == (3, 8, 16, 16) and vols.images.dtype == torch.float32
    # (x, y, z) in L, P, S -> (D, H, W) = (z, y, x): a transpose, no flip
    assert _holes(vols.head_masks[0]) == [(5, 3, 2)]
    assert float(vols.images.min()) >= 0 and float(vols.images.max()) == 1.0
    assert torch.equal(vols.head_masks, vols.images > 0)
    assert int(vols.head_masks[0].sum()) == 6 * 14 * 14 - 1


def test_load_brats_reorients_other_affines_and_resamples(tmp_path):
    root = _brats_tree(tmp_path / "brats", n=1, affine=np.eye(4))  # R, A, S voxel axes
    vols = brain.load_brats(root, "flair")
    assert _holes(vols.head_masks[0]) == [(5, 16 - 1 - 3, 16 - 1 - 2)]  # y and x flipped
    small = brain.load_brats(root, "flair", shape=(4, 8, 8), subjects=["BraTS20_Training_001"])
    assert small.images.shape == (1, 4, 8, 8)
    assert float(small.images.max()) <= 1.0 and torch.equal(small.head_masks, small.images > 0)


def test_load_brats_missing_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nowhere: no such directory.*BraTS20_Training_XXX"):
        brain.load_brats(tmp_path / "nowhere", "flair")
    root = _brats_tree(tmp_path / "brats", n=1)
    with pytest.raises(FileNotFoundError, match=r"BraTS20_Training_009: no such directory"):
        brain.load_brats(root, "flair", subjects=["BraTS20_Training_009"])
    (root / "BraTS20_Training_001" / "BraTS20_Training_001_t2.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"BraTS20_Training_001_t2\.nii\.gz: no such file"):
        brain.load_brats(root, "t2")
    with pytest.raises(ValueError, match="modality"):
        brain.load_brats(root, "dwi")


def test_load_brats_nan_names_the_file(tmp_path):
    root = _brats_tree(tmp_path / "brats", n=2)
    path = root / "BraTS20_Training_002" / "BraTS20_Training_002_flair.nii.gz"
    data = np.ones((16, 16, 8), np.float32)
    data[4, 4, 4] = np.nan
    nib.save(nib.Nifti1Image(data, BRATS_AFFINE), str(path))
    with pytest.raises(InputValidationError, match=r"BraTS20_Training_002_flair\.nii\.gz: 1 non-finite"):
        brain.load_brats(root, "flair")


def test_load_split_brats(tmp_path, monkeypatch):
    root = _brats_tree(tmp_path / "brats", n=3)
    monkeypatch.setenv("PAPERLIB_DATA", str(root))
    cfg = _cfg(source="brats", shape=(4, 8, 8), n_train=1, n_val=1, n_test=1)
    ids = [brain.load_split(cfg, split).ids for split in ("train", "val", "test")]
    assert sorted(i for split in ids for i in split) == [f"BraTS20_Training_{i:03d}" for i in (1, 2, 3)]
    assert ids == [brain.load_split(cfg, split).ids for split in ("train", "val", "test")]
    assert brain.load_split(cfg, "val").images.shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match=r"3 subjects found.*asks for 4"):
        brain.load_split(cfg.model_copy(update={"n_train": 2}), "train")


def test_load_split_brats_needs_paperlib_data(monkeypatch):
    monkeypatch.delenv("PAPERLIB_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"\$PAPERLIB_DATA is not set.*BraTS20_Training_XXX"):
        brain.load_split(_cfg(source="brats"), "test")


# --------------------------------------------------------------------------------------------
# the steps of _simulate
# --------------------------------------------------------------------------------------------
def test_mass_effect_pushes_tissue_outwards_and_fades():
    lesion = brain._Lesion(centre=np.array([1.0, 2.0, 3.0]), radius=10.0, core=0.0, oedema=1.5, roughness=0.1,
                           mass=0.4)
    offsets = torch.tensor([0.0, 5.0, 13.0, 200.0])  # mm along x from the centre
    pos = torch.zeros(3, 1, 1, 4)
    pos[0, 0, 0] = 1.0 + offsets
    pos[1], pos[2] = 2.0, 3.0
    moved, distance = brain._mass_effect(pos.clone(), lesion)
    torch.testing.assert_close(distance[0, 0], offsets)  # before the move
    expected = offsets * (1 - 0.4 * torch.exp(-offsets**2 / (2 * 13.0**2)))
    torch.testing.assert_close(moved[0, 0, 0] - 1.0, expected)
    assert float(moved[0, 0, 0, 3]) == pytest.approx(201.0)  # far away: unchanged
    torch.testing.assert_close(moved[1:], pos[1:])  # only along the offset


def test_brain_voxels_gather_and_box():
    fraction = torch.zeros(4, 5, 6)
    fraction[1:3, 2, 1:4] = 0.9
    fraction[2, 4, 5] = 0.4  # below one half: outside
    voxels = brain._BrainVoxels.from_fraction(fraction)
    assert voxels.n == 6
    torch.testing.assert_close(voxels.gather(fraction), fraction[fraction > 0.5])
    assert voxels.gather(torch.stack([fraction, 2 * fraction])).shape == (2, 6)
    assert voxels.bounding_box() == (slice(1, 3), slice(2, 3), slice(1, 4))
    empty = brain._BrainVoxels.from_fraction(torch.zeros(2, 3, 4))
    assert empty.n == 0 and empty.bounding_box() == (slice(None),) * 3


def test_noisy_normalised_scales_to_the_percentile_and_keeps_the_background():
    fraction = torch.zeros(2, 4, 4)
    fraction[:, 1:3, 1:3] = 1.0
    voxels = brain._BrainVoxels.from_fraction(fraction)
    values = np.linspace(0.1, 2.0, voxels.n, dtype=np.float32)
    clean = brain._noisy_normalised(values, np.random.default_rng(0), 0.0, voxels)
    assert clean.dtype == np.float32 and np.all(clean[~voxels.mask.numpy()] == 0)
    np.testing.assert_allclose(clean[voxels.mask.numpy()], np.clip(values / np.percentile(values, 99.5), 0, 1))
    noisy = brain._noisy_normalised(values, np.random.default_rng(0), 0.1, voxels)
    assert np.all(noisy[~voxels.mask.numpy()] == 0) and not np.array_equal(noisy, clean)
