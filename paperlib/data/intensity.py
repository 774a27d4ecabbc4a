"""The intensity normalisation shared by the general MRI prior's training slabs and every input it sees.

Real scans come in arbitrary units (int16 counts up to 4095, floats around 1, ...) and with
backgrounds that are exactly zero, noisy (magnitude noise) or absent (tightly cropped). The prior
works on images of order 1, so both the training slabs (:mod:`paperlib.data.randomized`) and the
volumes reconstructed with it are divided by :func:`intensity_scale` and multiplied back after:

``scale = P99(v[v > 0.1 * P99.9(v)])``

the 99th percentile of the *foreground*, the voxels above a tenth of the volume's 99.9th
percentile. The threshold leaves out air and background noise (so the scale does not depend on
how much background the field of view holds), the percentile leaves out a few hot voxels. Nothing
is clipped: voxels above the scale stay above 1 (the general prior's sampler clips its ``x0``
estimate at :data:`PRIOR_MAX`, far above).

>>> import torch
>>> v = torch.zeros(4, 16, 16); v[:, 4:12, 4:12] = 500.0
>>> intensity_scale(v)
500.0
>>> intensity_scale(v * 3 + 0.0) == 3 * intensity_scale(v)
True
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..io import InputValidationError

__all__ = ["intensity_scale", "FOREGROUND_FRACTION", "PRIOR_MAX"]

#: Foreground: voxels above this fraction of the volume's 99.9th percentile.
FOREGROUND_FRACTION = 0.1
#: Upper clamp of the general prior's ``x0`` estimate, in units of :func:`intensity_scale`.
PRIOR_MAX = 2.0


def intensity_scale(volume: Tensor, *, name: str = "volume") -> float:
    """The positive number the volume is divided by before the prior sees it (module docstring).

    Parameters
    ----------
    volume : (..., D, H, W) real tensor, non-negative magnitude (negative values are ignored).
    name : what the volume is called in an error message.

    Raises
    ------
    InputValidationError : the volume is not real, has non-finite values or no positive voxel.
    """
    if volume.is_complex() or not volume.is_floating_point():
        volume = volume.abs().float() if volume.is_complex() else volume.float()
    if not bool(torch.isfinite(volume).all()):
        raise InputValidationError(f"{name}: expected finite intensities, found NaN or inf")
    flat = volume.detach().reshape(-1).double().clamp_min(0)
    if not bool((flat > 0).any()):
        raise InputValidationError(f"{name}: expected a volume with positive intensities, got all zeros")
    top = float(torch.quantile(_sample(flat), 0.999))
    foreground = flat[flat > FOREGROUND_FRACTION * top]
    return float(torch.quantile(_sample(foreground), 0.99))


def _sample(values: Tensor, limit: int = 2**24 - 1) -> Tensor:
    """``values`` itself, or an evenly spaced subset when it exceeds torch.quantile's size limit."""
    if values.numel() <= limit:
        return values
    step = -(-values.numel() // limit)
    return values[::step]
