"""SSIM and PSNR of images, slices and volumes, and the conventions they follow.

Conventions (fixed here, used by every table and by DRIFT's candidate selection)
--------------------------------------------------------------------------------
* Inputs are volumes ``(D, H, W)`` (slices first) or stacks ``(..., H, W)`` of 2D images;
  complex inputs are compared by magnitude. Non-finite inputs (NaN, inf) are an error.
* **Data range** ``L`` comes from the ground truth: ``max(target) - min(target)`` over the whole
  target (all of its slices), the same number for every slice; 1.0 for a constant target. It
  is never taken from the prediction.
* **SSIM map** (Wang et al. 2004, Eq. 13), per 2D image, with local statistics from a Gaussian
  window ``w`` (sigma 1.5, 11 x 11, normalised; population (co)variances, i.e.
  ``sigma_xy = w * (x y) - (w * x)(w * y)``), ``k1 = 0.01``, ``k2 = 0.03``::

      SSIM(p) = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2))
      C1 = (k1 L)^2,  C2 = (k2 L)^2

  computed by torchmetrics on the image padded by reflection (``d c b | a b c d``), so the map
  has one value per pixel, border pixels included. Images smaller than 11 px take the largest
  odd window that fits (at least 3) with sigma scaled alike, ``1.5 * window / 11``.
* **Whole-image SSIM** (the paper's; :func:`ssim_images`, :func:`ssim_slices` without a mask)
  is the mean of the map over every pixel. (scikit-image's ``structural_similarity`` averages
  only the pixels at least 5 px from the border; tests/test_metrics_reference.py checks both
  conventions against it.)
* **Head SSIM** (:func:`ssim_slices` with a mask) averages the same map only over the pixels
  inside a mask (the head). The whole-image score is dominated by the empty background, which
  any method gets nearly right, so the head score separates methods better; both are reported.
* **PSNR** ``= 10 log10(L^2 / MSE)`` dB with the same ``L``; the MSE is computed in float64.
  :func:`volume_scores` reports the PSNR of the **whole volume** (MSE over all voxels), not a
  mean of per-slice PSNRs: near-empty slices at the top and bottom of a head have tiny MSE and
  per-slice PSNRs far above the others, so a per-slice mean is dominated by them.
  An exact reconstruction (MSE = 0) has PSNR ``+inf``; nothing is clamped.
* A table's entry is the mean, the sample standard deviation and a bootstrap interval of such
  volume scores over test cases and seeds (:func:`paperlib.tables.summarise`).
"""
from __future__ import annotations

import torch

from ..io import InputValidationError

__all__ = ["data_range_of", "ssim_window", "ssim_maps", "ssim_images", "ssim_slices", "psnr_slices",
           "psnr_volume", "volume_scores"]


def _magnitude(name: str, value: torch.Tensor) -> torch.Tensor:
    """``value`` as float32 (magnitude if complex), refusing non-finite entries."""
    if not isinstance(value, torch.Tensor):
        raise InputValidationError(f"{name}: expected a torch tensor, got {type(value).__name__}")
    value = value.abs() if value.is_complex() else value
    if not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise InputValidationError(f"{name}: expected finite values, got {bad} NaN/inf of {value.numel()}")
    return value.float()


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two volumes ``(D, H, W)`` of one shape, as float32 magnitudes."""
    pred, target = _magnitude("pred", pred), _magnitude("target", target)
    if pred.shape != target.shape or pred.ndim != 3:
        raise InputValidationError(
            f"pred and target: expected two volumes of the same shape (D, H, W), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    return pred, target


def data_range_of(target: torch.Tensor) -> float:
    """Data range of a ground truth: ``max - min`` over all its elements (1.0 if constant).

    >>> data_range_of(torch.tensor([[0.5, 2.0], [1.0, 1.5]]))
    1.5
    """
    rng = float(target.max() - target.min())
    return rng if rng > 0 else 1.0


def ssim_window(height: int, width: int) -> int:
    """Side of the Gaussian SSIM window for ``height x width`` images: 11, or the largest odd
    size that fits smaller images (sigma is then ``1.5 * window / 11``).

    >>> ssim_window(64, 64), ssim_window(16, 10), ssim_window(8, 8)
    (11, 9, 7)
    """
    window = min(11, height - (height % 2 == 0), width - (width % 2 == 0))
    if window < 3:
        raise InputValidationError(
            f"pred and target: images of {height}x{width} px are too small for SSIM (need >= 3x3)")
    return window


def ssim_maps(pred: torch.Tensor, target: torch.Tensor, *, data_range: float | None = None) -> torch.Tensor:
    """SSIM map of every image of ``pred`` against the matching image of ``target``.

    Parameters
    ----------
    pred : (..., H, W) real or complex tensor, a stack of 2D images.
    target : (..., H, W) tensor whose shape is a trailing part of ``pred``'s: ``pred`` may carry
        extra leading axes (e.g. N candidates), over which ``target`` is repeated.
    data_range : ``L`` of the module docstring; defaults to :func:`data_range_of` ``(target)``.

    Returns
    -------
    (..., H, W) float32 tensor shaped like ``pred``: the SSIM of each pixel's neighbourhood.

    >>> x = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> ssim_maps(torch.stack([x, x]), x).shape
    torch.Size([2, 2, 16, 16])
    """
    pred, target = _magnitude("pred", pred), _magnitude("target", target)
    if target.ndim < 2 or pred.shape[pred.ndim - target.ndim:] != target.shape:
        raise InputValidationError(
            f"pred and target: expected pred (..., *{tuple(target.shape)}) for a target of that shape, "
            f"got {tuple(pred.shape)}")
    h, w = target.shape[-2:]
    window = ssim_window(h, w)
    rng = data_range_of(target) if data_range is None else float(data_range)
    flat = pred.reshape(-1, 1, h, w)
    flat_target = target.expand(pred.shape).reshape(-1, 1, h, w)
    # imported here: torchmetrics imports transformers (and so yaml) when it is installed, and the
    # training path (no yaml, no pydantic on a bare GPU machine) imports this module
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, full = structural_similarity_index_measure(
        flat, flat_target, data_range=rng, kernel_size=window, sigma=1.5 * window / 11,
        reduction="none", return_full_image=True)
    return full.reshape(pred.shape)


def ssim_images(pred: torch.Tensor, target: torch.Tensor, *, data_range: float | None = None) -> torch.Tensor:
    """Whole-image SSIM (mean of :func:`ssim_maps` over each image); arguments as there.

    Returns
    -------
    ``pred.shape[:-2]`` float32 tensor.

    >>> ref = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> ssim_images(torch.stack([ref, 1 - ref]), ref)[0].tolist()
    [1.0, 1.0, 1.0]
    """
    return ssim_maps(pred, target, data_range=data_range).mean(dim=(-2, -1))


def ssim_slices(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    data_range: float | None = None,
) -> torch.Tensor:
    """SSIM of every slice of a volume, over the whole slice or inside a mask.

    Parameters
    ----------
    pred, target : (D, H, W) real or complex tensors (complex compared by magnitude).
    mask : optional (D, H, W) bool tensor; when given the SSIM map is averaged inside it
        (slices whose mask is empty get NaN).
    data_range : defaults to :func:`data_range_of` ``(target)``.

    Returns
    -------
    (D,) float32 tensor.

    >>> x = torch.rand(2, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> ssim_slices(x, x).tolist()
    [1.0, 1.0]
    """
    pred, target = _check_pair(pred, target)
    ssim_map = ssim_maps(pred, target, data_range=data_range)
    if mask is None:
        return ssim_map.mean(dim=(-2, -1))
    if mask.shape != pred.shape:
        raise InputValidationError(
            f"mask: expected shape {tuple(pred.shape)} like the volumes, got {tuple(mask.shape)}"
        )
    m = mask.to(ssim_map.dtype)
    return (ssim_map * m).sum(dim=(-2, -1)) / m.sum(dim=(-2, -1))


def _psnr(squared_error: torch.Tensor, data_range: float, dims) -> torch.Tensor:
    """``10 log10(L^2 / mean(squared_error))`` in float64 over ``dims`` (``+inf`` where MSE = 0)."""
    return 10.0 * torch.log10(data_range**2 / squared_error.mean(dim=dims))


def psnr_slices(
    pred: torch.Tensor, target: torch.Tensor, *, data_range: float | None = None
) -> torch.Tensor:
    """PSNR (dB) of every slice, with the data range of the whole target volume.

    Parameters
    ----------
    pred, target : (D, H, W) real or complex tensors.
    data_range : defaults to :func:`data_range_of` ``(target)``.

    Returns
    -------
    (D,) float64 tensor, ``10 log10(L^2 / MSE_d)`` with ``MSE_d`` the mean squared error of
    slice ``d``; ``+inf`` for a slice reproduced exactly.

    >>> t = torch.zeros(2, 4, 4); t[0, 0, 0] = 1.0
    >>> p = t.clone(); p[1] += 0.5
    >>> [round(v, 4) for v in psnr_slices(p, t).tolist()]  # slice 1: MSE = 0.25
    [inf, 6.0206]
    """
    pred, target = _check_pair(pred, target)
    rng = data_range_of(target) if data_range is None else float(data_range)
    return _psnr((pred.double() - target.double()) ** 2, rng, (-2, -1))


def psnr_volume(pred: torch.Tensor, target: torch.Tensor, *, data_range: float | None = None) -> float:
    """PSNR (dB) of a whole volume: ``10 log10(L^2 / MSE)``, MSE over all ``D H W`` voxels.

    Unlike the mean of :func:`psnr_slices`, slices that are nearly empty in both volumes (tiny
    MSE, very high per-slice PSNR) weigh only by their share of the squared error.

    >>> t = torch.zeros(2, 4, 4); t[0, 0, 0] = 1.0
    >>> p = t.clone(); p[1] += 0.5
    >>> round(psnr_volume(p, t), 4)  # MSE = 0.25 / 2
    9.0309
    """
    pred, target = _check_pair(pred, target)
    rng = data_range_of(target) if data_range is None else float(data_range)
    return float(_psnr((pred.double() - target.double()) ** 2, rng, (-3, -2, -1)))


def volume_scores(
    pred: torch.Tensor, target: torch.Tensor, *, head_mask: torch.Tensor | None = None
) -> dict[str, float]:
    """Scores of one reconstructed volume (conventions in the module docstring).

    Parameters
    ----------
    pred, target : (D, H, W) tensors (complex compared by magnitude).
    head_mask : optional (D, H, W) bool tensor, the region of ``ssim_head``.

    Returns
    -------
    dict with ``ssim`` (whole-image SSIM, the paper's, mean over slices), ``ssim_head`` (SSIM
    map averaged inside ``head_mask`` per slice, then over the slices whose mask is not empty;
    NaN when no mask is given or every slice's mask is empty) and ``psnr`` (dB, of the whole
    volume: :func:`psnr_volume`).
    """
    out = {
        "ssim": float(ssim_slices(pred, target).mean()),
        "psnr": psnr_volume(pred, target),
        "ssim_head": float("nan"),
    }
    if head_mask is not None:
        s = ssim_slices(pred, target, mask=head_mask)
        s = s[torch.isfinite(s)]
        out["ssim_head"] = float(s.mean()) if s.numel() else float("nan")
    return out
