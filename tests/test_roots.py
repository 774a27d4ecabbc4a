"""Root systems in soil (paperlib.data.roots): CPlantBox simulation, voxelisation, MRI contrast."""
import builtins
import math

import numpy as np
import pytest
import torch

import plantbox  # noqa: E402,F401  (cplantbox, pulled by the test extra: a broken install must fail, not skip)

from paperlib.data import roots  # noqa: E402
from paperlib.data.brain import BrainVolumes  # noqa: E402
from paperlib.io import InputValidationError  # noqa: E402

SHAPE = (8, 32, 32)  # the ci profile's mri.shape


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def volume():
    return roots.synthetic_roots(0, SHAPE)


def test_root_system_is_seeded():
    a, b, c = roots.root_system(3), roots.root_system(3), roots.root_system(4)
    for name in ("nodes", "segments", "radii", "orders"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.nodes.shape != c.nodes.shape or not np.array_equal(a.nodes, c.nodes)
    # the parameter jitter changes the plant beyond CPlantBox's own seed
    plain = roots.root_system(3, jitter=0.0)
    assert plain.nodes.shape != a.nodes.shape or not np.array_equal(plain.nodes, a.nodes)


def test_root_system_geometry():
    plant = roots.root_system(1)
    assert plant.nodes.dtype == np.float64 and plant.nodes.shape[1] == 3
    assert plant.segments.shape == (len(plant), 2) and plant.radii.shape == (len(plant),)
    assert plant.segments.max() < len(plant.nodes)
    # inside the pot: below the surface, within the wall (CPlantBox's container, small tolerance)
    assert plant.nodes[:, 2].max() <= 1e-6 and plant.nodes[:, 2].min() >= -roots.POT_DEPTH_CM - 1e-3
    assert np.hypot(plant.nodes[:, 0], plant.nodes[:, 1]).max() <= roots.POT_RADIUS_CM + 1e-3
    # faba bean: a taproot thicker than its laterals, radii of 0.1-1.5 mm
    assert 0.005 <= plant.radii.min() and plant.radii.max() <= 0.15
    assert plant.radii[plant.orders == 1].mean() > plant.radii[plant.orders > 1].mean()
    assert 500 < plant.length_cm < 5000  # metres of root after 20 days


def test_voxelise_conserves_root_volume():
    # a tilted root of radius 0.05 cm crossing the field of view: volume ~ pi r^2 L (+- sampling)
    start = np.array([0.13, -0.21, -0.5])
    end = start + 3.0 * np.array([math.sin(0.5), 0.3 * math.sin(0.5), -math.cos(0.5)])
    rod = roots.RootSegments(np.stack([start, end]), np.array([[0, 1]]), np.array([0.05]), np.array([2]))
    frac = roots.voxelise(rod, (16, 64, 64), fov_cm=(8.0, 9.0, 9.0))
    assert frac.shape == (16, 64, 64) and frac.dtype == torch.float32
    volume = float(frac.sum()) * (8 / 16) * (9 / 64) ** 2
    assert volume == pytest.approx(math.pi * 0.05**2 * 3.0, rel=0.1)
    assert 0 <= float(frac.min()) and float(frac.max()) <= 1
    # outside the field of view: nothing; no segments: nothing
    far = roots.RootSegments(rod.nodes + [20.0, 0, 0], rod.segments, rod.radii, rod.orders)
    assert float(roots.voxelise(far, SHAPE).sum()) == 0
    empty = roots.RootSegments(np.zeros((0, 3)), np.zeros((0, 2), np.int64), np.zeros(0), np.zeros(0, np.int64))
    assert float(roots.voxelise(empty, SHAPE).sum()) == 0


def test_volume_shape_range_and_roots(volume):
    image, support, fraction = volume["image"], volume["support"], volume["roots"]
    assert image.shape == support.shape == fraction.shape == SHAPE
    assert image.dtype == np.float32 and support.dtype == bool
    assert image.min() >= 0 and image.max() == 1.0
    assert (image[~support] == 0).all()
    assert support.mean() == pytest.approx(math.pi * 4.0**2 / 9.0**2, abs=0.03)
    # roots are bright and sparse, soil is dim
    bright = (image > 0.3)[support].mean()
    assert 0.002 < bright < 0.1
    assert 0.03 < np.median(image[support]) < 0.2
    assert image[fraction > 0.5].mean() > 3 * np.median(image[support])
    # the root system runs through the whole depth of the field of view
    slices_with_roots = int(((fraction > 0.2).sum((1, 2)) > 0).sum())
    assert slices_with_roots >= SHAPE[0] - 2


def test_volume_is_reproducible(volume):
    again = roots.synthetic_roots(0, SHAPE)
    for key in volume:
        np.testing.assert_array_equal(again[key], volume[key])
    other = roots.synthetic_roots(1, SHAPE)
    assert np.abs(other["image"] - volume["image"]).mean() > 0.01


def test_load_roots_cache_round_trip(cache):
    first = roots.load_roots(SHAPE, 2, seed=5, noise_std=0.01)
    assert isinstance(first, BrainVolumes)
    assert first.images.shape == (2, *SHAPE) and first.images.dtype == torch.float32
    assert first.head_masks.dtype == torch.bool and first.ids == ("roots-000", "roots-001")
    files = list((cache / "roots").glob("*.npz"))
    assert len(files) == 1
    again = roots.load_roots(SHAPE, 2, seed=5, noise_std=0.01)
    torch.testing.assert_close(again.images, first.images, rtol=0, atol=0)
    assert torch.equal(again.head_masks, first.head_masks) and again.ids == first.ids
    # a volume depends only on its seed: volume 1 of seed 5 is volume 0 of seed 6
    shifted = roots.load_roots(SHAPE, 1, seed=6, noise_std=0.01)
    torch.testing.assert_close(shifted.images[0], first.images[1], rtol=0, atol=0)
    assert len(list((cache / "roots").glob("*.npz"))) == 2
    # a corrupt cache file is regenerated
    files[0].write_bytes(b"not an npz")
    torch.testing.assert_close(roots.load_roots(SHAPE, 2, seed=5, noise_std=0.01).images, first.images)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(shape=(8, 32), n=1), "shape"),
        (dict(shape=(8, 32, 2), n=1), "shape"),
        (dict(shape=(8, 32, 32.5), n=1), "shape"),
        (dict(shape="abc", n=1), "shape"),
        (dict(shape=SHAPE, n=0), "n"),
        (dict(shape=SHAPE, n=1.5), "n"),
        (dict(shape=SHAPE, n=1, seed=-1), "seed"),
        (dict(shape=SHAPE, n=1, noise_std=-0.1), "noise_std"),
    ],
)
def test_bad_input_names_the_argument(cache, kwargs, name):
    with pytest.raises(InputValidationError, match=name):
        roots.load_roots(**kwargs)


def test_bad_root_system_arguments():
    with pytest.raises(InputValidationError, match="age_days"):
        roots.root_system(0, age_days=0)
    with pytest.raises(InputValidationError, match="parameter_file"):
        roots.root_system(0, parameter_file="no_such_plant.xml")
    with pytest.raises(InputValidationError, match="fov_cm"):
        roots.voxelise(roots.root_system(0, age_days=1), SHAPE, fov_cm=(1.0, 0.0, 1.0))


def test_missing_cplantbox_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_plantbox(name, *args, **kwargs):
        if name == "plantbox" or name.startswith("plantbox."):
            raise ImportError("No module named 'plantbox'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_plantbox)
    with pytest.raises(ImportError, match="pip install cplantbox"):
        roots.root_system(0)
