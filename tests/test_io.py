import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from paperlib.io import InputValidationError, atomic_path, atomic_write_text, load_nifti, save_nifti


def _nifti(path, data, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(data), np.eye(4) if affine is None else affine), str(path))
    return path


def test_roundtrip_keeps_affine(tmp_path):
    data = np.random.default_rng(0).random((8, 9, 10)).astype(np.float32)
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    save_nifti(tmp_path / "v.nii.gz", data, affine)
    got, aff, zooms = load_nifti(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(got, data)
    np.testing.assert_array_equal(aff, affine)
    assert zooms == (1.0, 2.0, 3.0)


def test_nan_rejected_with_file_name(tmp_path):
    data = np.ones((8, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    path = _nifti(tmp_path / "nan.nii.gz", data)
    with pytest.raises(InputValidationError, match=r"nan\.nii\.gz: 1 non-finite voxels"):
        load_nifti(path)
    assert np.isnan(load_nifti(path, allow_nonfinite=True)[0]).sum() == 1


def test_wrong_dimensionality(tmp_path):
    path = _nifti(tmp_path / "four.nii.gz", np.zeros((4, 4, 4, 2), np.float32))
    with pytest.raises(InputValidationError, match=r"four\.nii\.gz: expected a 3D volume, got shape \(4, 4, 4, 2\)"):
        load_nifti(path)


def test_trailing_singleton_axis_is_dropped(tmp_path):
    path = _nifti(tmp_path / "single.nii.gz", np.zeros((4, 5, 6, 1), np.float32))
    assert load_nifti(path)[0].shape == (4, 5, 6)


def test_empty_and_garbage_and_missing(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(InputValidationError, match=r"empty\.nii\.gz: the file is empty"):
        load_nifti(tmp_path / "empty.nii.gz")
    (tmp_path / "junk.nii.gz").write_bytes(gzip.compress(b"not a nifti" * 10))
    with pytest.raises(InputValidationError, match=r"junk\.nii\.gz: not a readable NIfTI"):
        load_nifti(tmp_path / "junk.nii.gz")
    with pytest.raises(FileNotFoundError, match="missing.nii.gz"):
        load_nifti(tmp_path / "missing.nii.gz")
    (tmp_path / "vol.npy").write_bytes(b"x")
    with pytest.raises(InputValidationError, match="expected a .nii or .nii.gz"):
        load_nifti(tmp_path / "vol.npy")


def test_truncated_data(tmp_path):
    path = _nifti(tmp_path / "trunc.nii", np.ones((16, 16, 16), np.float32))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(InputValidationError, match=r"trunc\.nii: image data unreadable or truncated"):
        load_nifti(path)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.txt"]


def test_load_volume_reads_other_formats_with_the_same_checks(tmp_path):
    """load_volume: nibabel's other formats (an AFNI dataset here) through load_nifti's checks."""
    import importlib.util
    from pathlib import Path

    from paperlib.io import load_volume

    folder = Path(importlib.util.find_spec("nibabel").submodule_search_locations[0]) / "tests" / "data"
    head = folder / "example4d+orig.HEAD"
    data, affine, zooms = load_volume(head, expected_ndim=4, kind="AFNI dataset")
    np.testing.assert_array_equal(data, np.asarray(nib.load(str(head)).dataobj, dtype=np.float32))
    assert affine.shape == (4, 4) and zooms == (3.0, 3.0, 3.0, 3.0)
    with pytest.raises(InputValidationError, match=r"example4d\+orig\.HEAD: expected a 3D volume, got shape \(33, 41, 25, 3\)"):
        load_volume(head, expected_ndim=3, kind="AFNI dataset")
    (tmp_path / "empty+orig.HEAD").write_bytes(b"")
    with pytest.raises(InputValidationError, match=r"empty\+orig\.HEAD: the file is empty \(0 bytes\), expected a volume \(AFNI dataset\)"):
        load_volume(tmp_path / "empty+orig.HEAD", kind="AFNI dataset")
    with pytest.raises(FileNotFoundError, match=r"missing\+orig\.HEAD: no such AFNI dataset"):
        load_volume(tmp_path / "missing+orig.HEAD", kind="AFNI dataset")
    # a NIfTI file reads the same through either function
    path = _nifti(tmp_path / "v.nii.gz", np.arange(60, dtype=np.float32).reshape(3, 4, 5))
    for got, want in zip(load_volume(path), load_nifti(path)):
        np.testing.assert_array_equal(got, want)
