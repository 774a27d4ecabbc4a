"""SSIM and PSNR of :mod:`paperlib.metrics.image` against an independent implementation.

scikit-image's ``structural_similarity`` (Gaussian weights, sigma 1.5, population covariance,
the data range we use) and ``peak_signal_noise_ratio``, in float64 with scipy filters, on
random and structured images. scikit-image pads by half-sample reflection and averages only the
pixels at least ``(window - 1) / 2`` from the border, we pad by whole-sample reflection and
average every pixel: the interiors of the two maps must agree pixel by pixel, and our
whole-image score equals scikit-image's on images padded as we pad them.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from paperlib.io import InputValidationError
from paperlib.metrics.image import (data_range_of, psnr_slices, psnr_volume, ssim_images, ssim_maps,
                                    ssim_slices, ssim_window, volume_scores)
from paperlib.recon.drift import image_ssim

SSIM_TOL = 1e-4  # scores: float32 (ours) against float64 (scikit-image)
#: single pixels of the map: in flat regions the float32 variance ``w*(x^2) - (w*x)^2`` cancels
#: (measured up to 2.6e-4 here; the same computation in float64 agrees to 1e-12)
SSIM_PIXEL_TOL = 1e-3
PSNR_TOL = 1e-6  # dB


def _structured(shape, seed: int) -> torch.Tensor:
    """Head-like volume: a bright ellipse with an edge, a smooth ramp, a dark disc, texture, and
    an empty first slice (the near-empty slices of a head's top)."""
    d, h, w = shape
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    vol = torch.zeros(shape)
    for k in range(1, d):
        r = 0.5 + 0.4 * k / d
        ellipse = ((xx / r) ** 2 + (yy / (0.8 * r)) ** 2 < 1).float()
        disc = ((xx - 0.2) ** 2 + (yy + 0.1) ** 2 < 0.05).float()
        vol[k] = ellipse * (0.6 + 0.3 * xx) - 0.4 * disc + 0.05 * torch.rand((h, w), generator=g)
    return vol


def _cases():
    g = torch.Generator().manual_seed(0)
    rand_t = torch.rand(3, 40, 36, generator=g)
    yield "random", rand_t + 0.2 * torch.randn(rand_t.shape, generator=g), rand_t
    head = _structured((4, 48, 44), 1)
    yield "structured", head + 0.03 * torch.randn(head.shape, generator=g), head
    # potentials in V*Angstrom: a large offset and range, a vacuum slice
    pot = 300.0 * _structured((3, 32, 32), 2).flip(0) + 20.0
    yield "potential", pot.roll(2, dims=-1) * 0.9 + 5.0, pot
    yield "blurred", head.roll(1, dims=-2), head


CASES = list(_cases())
IDS = [c[0] for c in CASES]


def _skimage_map(pred: np.ndarray, target: np.ndarray, data_range: float, window: int = 11) -> np.ndarray:
    _, full = structural_similarity(target.astype(np.float64), pred.astype(np.float64), gaussian_weights=True,
                                    sigma=1.5 * window / 11, use_sample_covariance=False,
                                    data_range=data_range, full=True)
    return full


@pytest.mark.parametrize("name, pred, target", CASES, ids=IDS)
def test_ssim_map_interior_and_skimage_score(name, pred, target):
    rng = data_range_of(target)
    ours = ssim_maps(pred, target).numpy()
    for d in range(target.shape[0]):
        p, t = pred[d].numpy(), target[d].numpy()
        ref = _skimage_map(p, t, rng)
        np.testing.assert_allclose(ours[d, 5:-5, 5:-5], ref[5:-5, 5:-5], rtol=0, atol=SSIM_PIXEL_TOL)
        mssim = structural_similarity(t.astype(np.float64), p.astype(np.float64), gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=rng)
        assert float(ours[d, 5:-5, 5:-5].mean()) == pytest.approx(mssim, abs=SSIM_TOL)


@pytest.mark.parametrize("name, pred, target", CASES, ids=IDS)
def test_whole_image_and_masked_ssim_equal_skimage_on_reflect_padded_images(name, pred, target):
    rng = data_range_of(target)
    mask = torch.zeros(target.shape, dtype=torch.bool)
    mask[:, 6:-9, 3:-12] = True
    whole, inside = ssim_slices(pred, target), ssim_slices(pred, target, mask=mask)
    for d in range(target.shape[0]):
        pad = lambda a: np.pad(a.numpy(), 5, mode="reflect")  # noqa: E731  torch's "reflect": d c b | a b c d
        ref = _skimage_map(pad(pred[d]), pad(target[d]), rng)[5:-5, 5:-5]
        assert float(whole[d]) == pytest.approx(ref.mean(), abs=SSIM_TOL)
        assert float(inside[d]) == pytest.approx(ref[mask[d].numpy()].mean(), abs=SSIM_TOL)
    assert volume_scores(pred, target)["ssim"] == pytest.approx(float(whole.mean()), abs=1e-7)


@pytest.mark.parametrize("size, window", [((16, 16), 11), ((12, 10), 9), ((8, 9), 7), ((5, 7), 5)])
def test_small_images_use_a_smaller_window_like_skimage(size, window):
    """The largest odd window up to 11 px that fits, sigma 1.5 * window / 11."""
    g = torch.Generator().manual_seed(3)
    target = torch.rand(2, *size, generator=g)
    pred = target + 0.3 * torch.rand(2, *size, generator=g)
    assert ssim_window(*size) == window
    half = (window - 1) // 2
    ours = ssim_images(pred, target)
    for d in range(2):
        pad = lambda a: np.pad(a.numpy(), half, mode="reflect")  # noqa: E731
        ref = _skimage_map(pad(pred[d]), pad(target[d]), data_range_of(target), window)
        assert float(ours[d]) == pytest.approx(ref[half:-half, half:-half].mean(), abs=SSIM_TOL)


def test_drift_image_ssim_is_the_metric_and_agrees_with_skimage():
    """DRIFT's selection score: N candidates (N, D, H, W) against one measured (D, H, W)."""
    _, pred, target = CASES[1]
    candidates = torch.stack([pred, target, target.flip(-1)])
    scores = image_ssim(candidates, target)
    assert scores.shape == (3, target.shape[0])
    assert torch.equal(scores, ssim_images(candidates, target))
    assert torch.equal(scores[0], ssim_slices(pred, target))
    rng = data_range_of(target)
    for n in range(3):
        for d in range(target.shape[0]):
            pad = lambda a: np.pad(a.numpy(), 5, mode="reflect")  # noqa: E731
            ref = _skimage_map(pad(candidates[n, d]), pad(target[d]), rng)[5:-5, 5:-5].mean()
            assert float(scores[n, d]) == pytest.approx(ref, abs=SSIM_TOL)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # scikit-image: an exact slice, inf dB
@pytest.mark.parametrize("name, pred, target", CASES, ids=IDS)
def test_psnr_per_slice_and_per_volume_equal_skimage(name, pred, target):
    rng = data_range_of(target)
    per_slice = psnr_slices(pred, target)
    for d in range(target.shape[0]):
        ref = peak_signal_noise_ratio(target[d].numpy().astype(np.float64), pred[d].numpy().astype(np.float64),
                                      data_range=rng)
        assert float(per_slice[d]) == pytest.approx(ref, abs=PSNR_TOL)
    ref = peak_signal_noise_ratio(target.numpy().astype(np.float64), pred.numpy().astype(np.float64), data_range=rng)
    assert psnr_volume(pred, target) == pytest.approx(ref, abs=PSNR_TOL)
    assert volume_scores(pred, target)["psnr"] == pytest.approx(ref, abs=PSNR_TOL)


def test_volume_psnr_is_not_dominated_by_nearly_empty_slices():
    """The reason for a per-volume PSNR: a nearly empty slice (tiny error) has a per-slice PSNR far
    above the others and drags a per-slice mean up; the volume's MSE weighs it by its error."""
    _, pred, target = CASES[1]  # slice 0 of the target is empty
    pred = pred.clone()
    pred[0] = 1e-4
    per_slice = psnr_slices(pred, target)
    assert float(per_slice[0]) > float(per_slice[1:].max()) + 30
    whole = volume_scores(pred, target)["psnr"]
    mse_rest = float(((pred[1:].double() - target[1:].double()) ** 2).mean())
    expected = 10 * np.log10(data_range_of(target) ** 2 / (mse_rest * 3 / 4))  # slice 0 adds ~nothing
    assert whole == pytest.approx(expected, abs=1e-3)
    assert float(per_slice.mean()) > whole + 5


def test_exact_reconstruction_has_infinite_psnr_and_non_finite_inputs_fail():
    _, _, target = CASES[0]
    assert psnr_volume(target, target) == float("inf")
    assert torch.isinf(psnr_slices(target, target)).all()
    bad = target.clone()
    bad[1, 2, 3] = float("nan")
    for fn in (ssim_slices, psnr_slices, psnr_volume, volume_scores):
        with pytest.raises(InputValidationError, match="pred: expected finite values, got 1 NaN/inf"):
            fn(bad, target)
        with pytest.raises(InputValidationError, match="target: expected finite values"):
            fn(target, bad)
    with pytest.raises(InputValidationError, match=r"pred \(\.\.\., \*\(3, 40, 36\)\).*got \(3, 40, 35\)"):
        ssim_maps(target[..., :35], target)
    with pytest.raises(InputValidationError, match="2x5 px are too small"):
        ssim_images(torch.rand(3, 2, 5), torch.rand(3, 2, 5))
