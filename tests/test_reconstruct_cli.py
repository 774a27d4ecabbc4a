"""``python -m paperlib reconstruct`` on a user's NIfTI volume (ci prior, tiny volume)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from paperlib.cli import main
from paperlib.config import load_profile
from paperlib.data.brain import load_split
from paperlib.io import load_nifti, save_nifti
from paperlib.reconstruct import load_mask


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    """A ci test volume written as NIfTI in (i, j, k) = (W, H, D) order with an oblique-ish affine."""
    cfg = load_profile("ci")
    vol = load_split(cfg.mri, "test").images[0].numpy()  # (D, H, W) in [0, 1]
    data = 800.0 * vol.transpose(2, 1, 0)  # scanner units
    affine = np.array([[-1.2, 0, 0, 90], [0, 1.2, 0.1, -120], [0, 0, 2.5, -60], [0, 0, 0, 1]])
    path = tmp_path_factory.mktemp("nifti") / "subject.nii.gz"
    save_nifti(path, data, affine)
    return path, data, affine


def test_reconstruct_dart_writes_nifti_with_the_input_affine(nifti, tmp_path, capsys):
    path, data, affine = nifti
    out = tmp_path / "dart.nii.gz"
    torch.set_num_threads(1)
    rc = main(["reconstruct", "--profile", "ci", "--method", "dart", "--image", str(path), "--out", str(out),
               "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    recon, out_affine, _ = load_nifti(out)
    assert recon.shape == data.shape
    np.testing.assert_allclose(out_affine, affine, atol=1e-6)
    assert np.isfinite(recon).all()
    # in the input's units: same intensity scale as the image, and closer to it than an empty volume
    err = np.linalg.norm(recon - data) / np.linalg.norm(data)
    assert err < 0.6, err
    assert not list(tmp_path.glob("*.tmp*"))  # no temporary files left behind


def test_reconstruct_with_a_mask_file_matches_the_mask(nifti, tmp_path, capsys):
    """The mask file is the one used: the zero-filled output equals |F^-1 (M F x)| computed here
    with numpy's FFTs (centred, orthonormal), clamped to the input's range as the CLI does."""
    path, data, _ = nifti
    mask = np.zeros(data.shape[:2], dtype=np.uint8)  # (i, j): shared by all slices
    mask[:, 12:21] = 1  # phase-encoding lines (axis j = H) symmetric about the centre row 16
    mpath = tmp_path / "mask.npy"
    np.save(mpath, mask)
    loaded = load_mask(mpath, data.shape)
    assert loaded.shape == (data.shape[1], data.shape[0])  # (H, W)
    out = tmp_path / "zf.nii"
    assert main(["reconstruct", "--profile", "ci", "--method", "zero_filled", "--image", str(path),
                 "--mask", str(mpath), "--out", str(out), "--threads", "1"]) == 0
    recon, _, _ = load_nifti(out)
    x = data.transpose(2, 1, 0).astype(np.float64)  # (D, H, W)
    ax = (-2, -1)
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), norm="ortho"), axes=ax) * loaded.numpy()
    expected = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=ax), norm="ortho"), axes=ax))
    expected = np.clip(expected, 0, x.max())
    assert np.allclose(recon.transpose(2, 1, 0), expected, rtol=1e-4, atol=1e-4 * x.max())
    full = tmp_path / "full.npy"
    np.save(full, np.ones_like(mask))
    assert main(["reconstruct", "--profile", "ci", "--method", "zero_filled", "--image", str(path),
                 "--mask", str(full), "--out", str(tmp_path / "full.nii"), "--threads", "1"]) == 0
    assert not np.allclose(load_nifti(tmp_path / "full.nii")[0], recon, atol=1e-3 * x.max())  # the mask matters


@pytest.mark.parametrize("extra, message", [
    (["--mask", "MISSING.npy"], "no such mask file"),
    (["--mask", "BADSHAPE"], "does not fit the image"),
    (["--mask", "BADSHAPE", "--acceleration", "4"], "either a mask file or acceleration"),
])
def test_reconstruct_rejects_bad_masks(nifti, tmp_path, capsys, extra, message):
    path, data, _ = nifti
    bad = tmp_path / "bad.npy"
    np.save(bad, np.ones((5, 5)))
    extra = [str(bad) if e == "BADSHAPE" else str(tmp_path / e) if e.endswith(".npy") else e for e in extra]
    rc = main(["reconstruct", "--profile", "ci", "--method", "zero_filled", "--image", str(path),
               "--out", str(tmp_path / "o.nii.gz"), *extra])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o.nii.gz").exists()


def test_reconstruct_rejects_bad_arguments(nifti, tmp_path, capsys):
    path, _, _ = nifti
    assert main(["reconstruct", "--profile", "ci", "--image", str(path), "--out", str(tmp_path / "x.npy")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["reconstruct", "--profile", "ci", "--method", "nope", "--image", str(path),
                 "--out", str(tmp_path / "x.nii")]) == 2
    assert "unknown 'nope'" in capsys.readouterr().err
    assert main(["reconstruct", "--profile", "ci", "--out", str(tmp_path / "x.nii")]) == 2
    assert "--image" in capsys.readouterr().err
    # a prior folder that does not exist: the error names the flag
    assert main(["reconstruct", "--profile", "ci", "--method", "dart", "--image", str(path),
                 "--prior", str(tmp_path / "no_such_prior"), "--out", str(tmp_path / "x.nii")]) == 2
    assert "--prior" in capsys.readouterr().err
