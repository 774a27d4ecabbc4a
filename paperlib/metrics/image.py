"""SSIM and PSNR per slice and per volume, and the conventions they follow.

Conventions (fixed here, used by every table)
---------------------------------------------
* Inputs are volumes ``(D, H, W)`` (slices first); complex inputs are compared by magnitude.
* **Data range** comes from the ground-truth volume: ``max(target) - min(target)`` over the
  whole volume, the same number for all of its slices. It is never taken from the prediction.
* **Whole-image SSIM** (``region="image"``) is the paper's: the mean of the SSIM map over every
  pixel, Gaussian window sigma 1.5 (size 11), k1 = 0.01, k2 = 0.03 (torchmetrics' defaults).
* **Head SSIM** (``region="mask"``) averages the same SSIM map only over the pixels inside a
  mask (the head). Whole-image SSIM is dominated by the empty background, which any method
  gets nearly right, so the head score separates methods better; both are reported.
* **PSNR** uses the same data range: ``10 log10(range^2 / MSE)`` per slice (whole image).
* A volume's score is the mean over its slices; a table's entry is the mean and standard
  deviation of volume scores over test cases (and seeds, for stochastic methods).
"""
from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

from ..io import InputValidationError

__all__ = ["ssim_slices", "psnr_slices", "volume_scores", "data_range_of"]


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise InputValidationError("pred and target: expected torch tensors")
    if pred.shape != target.shape or pred.ndim != 3:
        raise InputValidationError(
            f"pred and target: expected two volumes of the same shape (D, H, W), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.is_complex():
        pred = pred.abs()
    if target.is_complex():
        target = target.abs()
    return pred.float(), target.float()


def data_range_of(target: torch.Tensor) -> float:
    """Data range of a ground-truth volume: ``max - min`` (1.0 for a constant volume)."""
    rng = float(target.max() - target.min())
    return rng if rng > 0 else 1.0


def ssim_slices(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    data_range: float | None = None,
) -> torch.Tensor:
    """SSIM of every slice.

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
    rng = data_range_of(target) if data_range is None else float(data_range)
    _, ssim_map = structural_similarity_index_measure(
        pred[:, None], target[:, None], data_range=rng, reduction="none", return_full_image=True
    )
    ssim_map = ssim_map[:, 0]
    if mask is None:
        return ssim_map.mean(dim=(-2, -1))
    if mask.shape != pred.shape:
        raise InputValidationError(
            f"mask: expected shape {tuple(pred.shape)} like the volumes, got {tuple(mask.shape)}"
        )
    m = mask.to(ssim_map.dtype)
    return (ssim_map * m).sum(dim=(-2, -1)) / m.sum(dim=(-2, -1))


def psnr_slices(
    pred: torch.Tensor, target: torch.Tensor, *, data_range: float | None = None
) -> torch.Tensor:
    """PSNR (dB) of every slice with the ground-truth volume's data range; (D,) tensor."""
    pred, target = _check_pair(pred, target)
    rng = data_range_of(target) if data_range is None else float(data_range)
    mse = ((pred - target) ** 2).mean(dim=(-2, -1)).clamp_min(1e-20)
    return 10.0 * torch.log10(rng**2 / mse)


def volume_scores(
    pred: torch.Tensor, target: torch.Tensor, *, head_mask: torch.Tensor | None = None
) -> dict[str, float]:
    """Per-volume scores: ``ssim`` (whole image, the paper's), ``ssim_head`` (inside
    ``head_mask``, NaN when no mask is given) and ``psnr``, each the mean over slices
    (slices with an empty head mask are skipped for ``ssim_head``)."""
    out = {
        "ssim": float(ssim_slices(pred, target).mean()),
        "psnr": float(psnr_slices(pred, target).mean()),
        "ssim_head": float("nan"),
    }
    if head_mask is not None:
        s = ssim_slices(pred, target, mask=head_mask)
        s = s[torch.isfinite(s)]
        out["ssim_head"] = float(s.mean()) if s.numel() else float("nan")
    return out
