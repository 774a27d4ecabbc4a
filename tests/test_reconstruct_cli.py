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
    path, data, _ = nifti
    mask = np.zeros(data.shape[:2], dtype=np.uint8)  # (i, j): shared by all slices
    mask[:, 12:21] = 1  # phase-encoding lines (axis j = H) symmetric about the centre row 16
    mpath = tmp_path / "mask.npy"
    np.save(mpath, mask)
    loaded = load_mask(mpath, data.shape)
    assert loaded.shape == (data.shape[1], data.shape[0])  # (H, W)
    out = tmp_path / "dart.nii"
    assert main(["reconstruct", "--profile", "ci", "--method", "dart", "--image", str(path),
                 "--mask", str(mpath), "--out", str(out), "--threads", "1"]) == 0
    recon, _, _ = load_nifti(out)
    k_in = np.fft.fft2(data.transpose(2, 1, 0))
    k_out = np.fft.fft2(recon.transpose(2, 1, 0))
    sampled = np.fft.ifftshift(loaded.numpy())  # masks are centred (zero frequency at H//2, W//2)
    # DART ends with Eq. 4 (lambda = 1): the sampled k-space is the measurement's (the band is
    # Hermitian-symmetric, so the real part keeps it), and the rest is filled in
    scale = np.abs(k_in).max()
    assert np.abs(k_out - k_in)[:, sampled].max() < 1e-4 * scale
    assert np.abs(k_out - k_in)[:, ~sampled].max() > 1e-3 * scale


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
    # a prior for another depth: the error names the depth and the prior's groups
    assert main(["reconstruct", "--profile", "ci", "--method", "dart", "--image", str(path),
                 "--prior", "checkpoints/mri_default", "--out", str(tmp_path / "x.nii")]) == 2
    assert "does not match the prior" in capsys.readouterr().err
