"""4D-STEM scores: registration, affine fit, depth-blind reference (paperlib.metrics.stem)."""
from __future__ import annotations

import math

import pytest
import torch

from paperlib.io import InputValidationError
from paperlib.metrics.image import psnr_slices, psnr_volume, ssim_slices
from paperlib.metrics.stem import align, depth_blind, fit_affine, register_shift, stem_scores


def _volume(seed: int, shape=(4, 24, 20)) -> torch.Tensor:
    """Smooth random volume with distinct slices (blurred noise, so SSIM is meaningful)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=torch.float64)
    k = torch.fft.fftfreq(shape[1])[:, None] ** 2 + torch.fft.fftfreq(shape[2])[None] ** 2
    return torch.fft.ifft2(torch.fft.fft2(x) * torch.exp(-k / 0.02)).real


# shifts are reported in (-n/2, n/2] per axis (24 x 20 images: 12 and 10 are the half periods)
@pytest.mark.parametrize("shift", [(0, 0), (5, -3), (-11, 9), (12, -9), (1, 10)])
def test_register_shift_recovers_periodic_shift(shift):
    target = _volume(0)
    moving = torch.roll(target, shifts=(-shift[0], -shift[1]), dims=(-2, -1))
    assert register_shift(moving.sum(0), target.sum(0)) == shift
    # noise and an affine change of the moving image do not move the peak
    noisy = 2.5 * moving - 1.0 + 0.01 * torch.randn(moving.shape, generator=torch.Generator().manual_seed(1),
                                                    dtype=torch.float64)
    assert register_shift(noisy.sum(0), target.sum(0)) == shift


def test_fit_affine_recovers_scale_and_offset_and_refuses_inversion():
    target = _volume(2)
    a, b = fit_affine((target - 4.0) / 3.0, target)
    assert a == pytest.approx(3.0, rel=1e-12) and b == pytest.approx(4.0, rel=1e-12)
    a, b = fit_affine(-target, target)
    assert a == 0.0 and b == pytest.approx(float(target.mean()), rel=1e-12)
    a, b = fit_affine(torch.zeros_like(target), target)
    assert a == 0.0 and b == pytest.approx(float(target.mean()), rel=1e-12)


def test_align_and_scores_undo_shift_scale_offset():
    target = _volume(3)
    pred = 0.5 * torch.roll(target, shifts=(3, -7), dims=(-2, -1)) + 11.0
    aligned, shift, a, b = align(pred, target)
    assert shift == (-3, 7)
    assert a == pytest.approx(2.0, rel=1e-10) and b == pytest.approx(-22.0, rel=1e-10)
    torch.testing.assert_close(aligned, target, rtol=0, atol=1e-10)
    s = stem_scores(pred.float(), target.float())
    assert s["shift"] == (-3, 7)
    assert s["ssim"] == s["ssim_projection"] == pytest.approx(1.0, abs=1e-5)
    assert s["ssim_slices_mean"] == pytest.approx(1.0, abs=1e-5)
    assert s["psnr_slices_mean"] > 60
    # without registration the shifted prediction scores clearly worse
    unregistered = stem_scores(pred, target, register=False)
    assert unregistered["shift"] == (0, 0) and unregistered["ssim_slices_mean"] < 0.9


def test_depth_blind_reference():
    target = _volume(4)
    blind = depth_blind(target)
    assert blind.shape == target.shape
    torch.testing.assert_close(blind.sum(0), target.sum(0))  # same projection ...
    torch.testing.assert_close(blind[0], blind[-1])  # ... and no depth information
    s = stem_scores(target, target)
    expected = float(ssim_slices(blind.float(), target.float()).mean())
    assert s["ssim_depth_blind"] == pytest.approx(expected, abs=1e-6)
    assert s["ssim_depth_blind"] < s["ssim_slices_mean"] == pytest.approx(1.0, abs=1e-5)
    # scoring the depth-blind volume itself gives exactly the reference (the affine fit of a
    # slice mean to the volume is the identity), and a perfect projection
    sb = stem_scores(blind, target)
    assert sb["ssim_slices_mean"] == pytest.approx(s["ssim_depth_blind"], abs=1e-6)
    assert sb["ssim_projection"] == pytest.approx(1.0, abs=1e-5)
    assert sb["scale"] == pytest.approx(1.0, rel=1e-9) and abs(sb["offset"]) < 1e-9
    # a depth-invariant object: the reference is the truth
    flat = target[:1].expand_as(target).clone()
    assert stem_scores(flat, flat)["ssim_depth_blind"] == pytest.approx(1.0, abs=1e-5)


def test_swapped_slices_keep_projection_but_lose_per_slice_score():
    """The projection cannot see depth: reversing the slice order keeps ``ssim_projection``
    at 1 while the per-slice score drops, which is why both are reported."""
    target = _volume(5)
    s = stem_scores(target.flip(0), target)
    assert s["ssim_projection"] == pytest.approx(1.0, abs=1e-5)
    assert s["ssim_slices_mean"] < 0.9


def test_bad_inputs():
    target = _volume(6)
    with pytest.raises(InputValidationError, match=r"same shape \(D, H, W\).*\(4, 24, 20\).*\(4, 24, 19\)"):
        stem_scores(target, target[..., :19])
    with pytest.raises(InputValidationError, match="expected torch tensors"):
        stem_scores(target.numpy(), target)
    bad = target.clone()
    bad[1, 2, 3] = float("nan")
    with pytest.raises(InputValidationError, match="pred: non-finite"):
        stem_scores(bad, target)
    with pytest.raises(InputValidationError, match="target: non-finite"):
        stem_scores(target, bad)


def test_psnr_per_slice_mean_and_per_volume():
    """``psnr_slices_mean`` is the mean over slices of the per-slice PSNR (the volume's data
    range for every slice); ``psnr_volume`` that of the whole aligned volume. A vacuum slice that
    a method leaves nearly empty scores far above the others and lifts the per-slice mean."""
    target = _volume(7).clone()
    target[-1] = 0.0  # vacuum below the crystal
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    pred = target + 0.05 * noise * (target != 0)  # errors only where there is matter ...
    pred[-1] = 1e-3 * noise[-1]  # ... and a nearly empty vacuum slice
    s = stem_scores(pred, target, register=False)
    aligned, *_ = align(pred, target, register=False)
    per_slice = psnr_slices(aligned.float(), target.float())
    assert s["psnr_slices_mean"] == pytest.approx(float(per_slice.mean()), abs=1e-9)
    assert s["psnr_volume"] == pytest.approx(psnr_volume(aligned.float(), target.float()), abs=1e-9)
    rng = float(target.float().max() - target.float().min())  # the scores are of float32 volumes
    mse = float(((aligned.float().double() - target.float().double()) ** 2).mean())
    assert s["psnr_volume"] == pytest.approx(10 * math.log10(rng**2 / mse), abs=1e-9)
    assert float(per_slice[-1]) > float(per_slice[:-1].max()) + 10
    assert s["psnr_slices_mean"] > s["psnr_volume"] + 1
