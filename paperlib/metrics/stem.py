"""Scores for 4D-STEM reconstructions of multi-slice potentials.

Why register and fit first
--------------------------
Phase retrieval determines the potential only up to a global offset (a constant phase), a
scale (the reconstruction's ``sigma V`` absorbs errors in the assumed interaction constant and
partial coherence) and, when the scan origin is uncertain, a lateral shift. Before scoring we
therefore

1. **register**: one periodic integer shift for all slices, the argmax of the FFT
   cross-correlation of the mean-subtracted projections (sum over slices) of prediction and
   target (the object is periodic in our simulations);
2. **fit** ``target ~ a * pred + b`` by least squares over the whole volume (one ``a``, one
   ``b`` for all slices, so a method cannot rescale slices separately; ``a`` is clipped at 0 so
   an inverted reconstruction is not rewarded). The projection gets its own fit.

Scores (SSIM/PSNR conventions of :mod:`paperlib.metrics.image`: Gaussian window, data range of
the target)
-------------------------------------------------------------------------------------------
* ``ssim`` / ``ssim_projection``: SSIM of the **phase projection** (sum of the slices), the
  paper's Table 1 4D-STEM number ("the phase projection of materials is used to evaluate the
  SSIM").
* ``ssim_slices_mean`` and ``ssim_slices`` (per slice): depth-resolved quality, which the
  projection cannot show.
* ``ssim_depth_blind``: the per-slice SSIM of the *depth-blind reference*, every slice predicted
  as ``projection(target) / D``. A reconstruction resolves depth only where its per-slice SSIM
  exceeds this reference.
* ``psnr_projection`` (dB): PSNR of the fitted phase projection, data range of the target's
  projection.
* ``psnr_slices_mean`` (dB): the **mean over slices of the per-slice PSNR**, each slice scored
  with the data range of the whole target volume (:func:`~paperlib.metrics.image.psnr_slices`),
  the PSNR counterpart of ``ssim_slices_mean``. Nothing is clamped: a slice reproduced exactly
  has PSNR ``+inf`` and so has the mean (the tables then refuse it). In practice no slice comes
  near that, because the one offset ``b`` fitted to the whole volume leaves every slice, vacuum
  included, a non-zero error. Vacuum slices (target 0) do score higher than slices with atoms
  when a method leaves them nearly empty (on the ci test crystals, up to ~10 dB above the
  slices with atoms, lifting the mean ~2 dB above the whole volume's PSNR), which is why
  ``psnr_volume`` is given as well.
* ``psnr_volume`` (dB): PSNR of the whole registered and fitted volume (MSE over all voxels,
  :func:`~paperlib.metrics.image.psnr_volume`), the MRI tables' PSNR.
* the fitted ``shift``, ``scale``, ``offset``.

>>> g = torch.Generator().manual_seed(0)
>>> target = torch.rand(4, 32, 32, generator=g)
>>> pred = 3.0 * torch.roll(target, shifts=(5, -2), dims=(-2, -1)) + 7.0
>>> s = stem_scores(pred, target)
>>> round(s["ssim_projection"], 4), round(s["ssim_slices_mean"], 4), s["shift"]
(1.0, 1.0, (-5, 2))
>>> s["ssim_depth_blind"] < 1
True
"""
from __future__ import annotations

import logging

import torch

from ..io import InputValidationError
from .image import data_range_of, psnr_slices, psnr_volume, ssim_slices

logger = logging.getLogger(__name__)

__all__ = ["register_shift", "fit_affine", "align", "depth_blind", "stem_scores"]


def _check(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise InputValidationError("pred and target: expected torch tensors (D, H, W)")
    if pred.ndim != 3 or pred.shape != target.shape:
        raise InputValidationError(
            f"pred and target: expected two volumes of the same shape (D, H, W), got "
            f"{tuple(pred.shape)} and {tuple(target.shape)}"
        )
    for name, value in (("pred", pred), ("target", target)):
        if not bool(torch.isfinite(value).all()):
            n = int((~torch.isfinite(value)).sum())
            raise InputValidationError(f"{name}: non-finite values (NaN/Inf): {n} of {value.numel()}")
    return pred.detach().double(), target.detach().double()


def register_shift(moving: torch.Tensor, reference: torch.Tensor) -> tuple[int, int]:
    """Integer periodic shift ``s`` maximising the cross-correlation of two (H, W) images, so
    that ``torch.roll(moving, s, dims=(-2, -1))`` best matches ``reference``; each component in
    ``(-n/2, n/2]`` for an axis of ``n`` pixels."""
    m = moving - moving.mean()
    r = reference - reference.mean()
    corr = torch.fft.ifft2(torch.fft.fft2(r) * torch.conj(torch.fft.fft2(m))).real
    idx = int(torch.argmax(corr))
    h, w = corr.shape
    dy, dx = divmod(idx, w)
    dy = dy - h if dy > h // 2 else dy
    dx = dx - w if dx > w // 2 else dx
    return int(dy), int(dx)


def fit_affine(pred: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """Least-squares ``(a, b)`` with ``target ~ a * pred + b`` over all elements; ``a >= 0``."""
    p, t = pred.reshape(-1), target.reshape(-1)
    pc = p - p.mean()
    var = float((pc * pc).sum())
    a = max(float((pc * (t - t.mean())).sum()) / var, 0.0) if var > 0 else 0.0
    b = float(t.mean() - a * p.mean())
    return a, b


def align(pred: torch.Tensor, target: torch.Tensor, *, register: bool = True):
    """Registered and affinely fitted prediction: ``(aligned (D, H, W), shift, a, b)``."""
    pred, target = _check(pred, target)
    shift = register_shift(pred.sum(0), target.sum(0)) if register else (0, 0)
    moved = torch.roll(pred, shifts=shift, dims=(-2, -1))
    a, b = fit_affine(moved, target)
    return a * moved + b, shift, a, b


def depth_blind(target: torch.Tensor) -> torch.Tensor:
    """The depth-blind reference: every slice equal to ``projection(target) / D``."""
    return (target.sum(0, keepdim=True) / target.shape[0]).expand_as(target).clone()


def stem_scores(pred: torch.Tensor, target: torch.Tensor, *, register: bool = True) -> dict:
    """Scores of a reconstructed potential against the ground truth (see the module docstring).

    Parameters
    ----------
    pred, target : (D, H, W) real tensors (V·Å or any unit: an affine fit is applied).
    register : find and apply the lateral shift (default True).

    Returns
    -------
    dict with ``ssim`` (= ``ssim_projection``), ``ssim_projection``, ``ssim_slices_mean``,
    ``ssim_slices`` (list of D floats), ``ssim_depth_blind``, ``psnr`` (= ``psnr_projection``),
    ``psnr_projection``, ``psnr_slices_mean``, ``psnr_volume``, ``shift`` (dy, dx), ``scale``,
    ``offset`` (PSNRs in dB, definitions in the module docstring).
    """
    aligned, shift, a, b = align(pred, target, register=register)
    target = target.detach().double()
    proj_p = torch.roll(pred.detach().double(), shifts=shift, dims=(-2, -1)).sum(0)
    proj_t = target.sum(0)
    ap, bp = fit_affine(proj_p, proj_t)
    proj_fit = (ap * proj_p + bp)[None].float()
    proj_t = proj_t[None].float()
    per_slice = ssim_slices(aligned.float(), target.float(), data_range=data_range_of(target))
    blind = ssim_slices(depth_blind(target).float(), target.float(), data_range=data_range_of(target))
    ssim_proj = float(ssim_slices(proj_fit, proj_t)[0])
    psnr_proj = float(psnr_slices(proj_fit, proj_t)[0])
    return {
        "ssim": ssim_proj,
        "ssim_projection": ssim_proj,
        "ssim_slices_mean": float(per_slice.mean()),
        "ssim_slices": [float(v) for v in per_slice],
        "ssim_depth_blind": float(blind.mean()),
        "psnr": psnr_proj,
        "psnr_projection": psnr_proj,
        "psnr_slices_mean": float(psnr_slices(aligned.float(), target.float()).mean()),
        "psnr_volume": psnr_volume(aligned.float(), target.float()),
        "shift": shift,
        "scale": a,
        "offset": b,
    }
