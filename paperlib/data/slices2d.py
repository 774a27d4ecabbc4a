"""Training slices of all three orientations for the 2D prior of issue 18
(:mod:`paperlib.recon.variational2d`; paper ``002``, randomised slicing).

A volume ``(D, H, W)`` with voxel size ``(v_D, v_H, v_W)`` mm gives axial ``(H, W)``, coronal
``(D, W)`` and sagittal ``(D, H)`` slices. Their pixels are square only when the voxels are
isotropic, and their fields of view differ, so every slice is resampled to **square pixels** and
placed in a common ``size x size`` image:

* the pixel size is ``pixel_size`` mm when given (every slice on one physical grid: the training
  voxel of the prior is then ``pixel_size``), else ``max(extent) / size`` for each slice (the
  slice's longer side fills the image);
* the slice is resampled bilinearly (antialiased when shrinking) to
  ``round(extent / pixel)`` pixels per side, then zero-padded (or centre-cropped, when larger) to
  ``size x size``, centred.

The voxel size of each volume is a parameter, so one function builds both training sets of the
paper's comparison: a *fixed-voxel* set (every volume at one voxel size, e.g.
:func:`paperlib.data.brain.synthetic_subject` at one shape, voxel ``FOV_MM / shape``) and a
*diverse-voxel* set (volumes at several voxel sizes, e.g. several shapes, or the slabs of
:mod:`paperlib.data.randomized` with their own voxel sizes). A coarse volume keeps its
blur: the resampling does not restore resolution, which is what makes the second set diverse.

>>> v = torch.rand(2, 4, 8, 6)
>>> slices, pixels = training_slices(v, (2.0, 1.0, 1.0), 8)
>>> slices.shape, pixels.shape            # 2 volumes x (4 axial + 8 coronal + 6 sagittal) slices
(torch.Size([36, 8, 8]), torch.Size([36]))
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import InputValidationError

__all__ = ["training_slices", "ORIENTATIONS"]

#: Slice orientations by the axis they cut: 0 axial (H, W), 1 coronal (D, W), 2 sagittal (D, H).
ORIENTATIONS = {0: "axial", 1: "coronal", 2: "sagittal"}


def _volumes(volumes: Tensor | Sequence[Tensor]) -> list[Tensor]:
    if isinstance(volumes, Tensor):
        if volumes.ndim != 4:
            raise InputValidationError(f"volumes: expected an (N, D, H, W) tensor or a list of (D, H, W), "
                                       f"got shape {tuple(volumes.shape)}")
        items = list(volumes)
    else:
        items = list(volumes)
    if not items:
        raise InputValidationError("volumes: expected at least one volume, got none")
    for i, v in enumerate(items):
        if not isinstance(v, Tensor) or v.ndim != 3 or v.is_complex() or not v.is_floating_point():
            got = f"{v.dtype} {tuple(v.shape)}" if isinstance(v, Tensor) else type(v).__name__
            raise InputValidationError(f"volumes[{i}]: expected a real floating-point (D, H, W) tensor, got {got}")
        if not bool(torch.isfinite(v).all()):
            raise InputValidationError(f"volumes[{i}]: expected finite values, got NaN/Inf")
    return items


def _voxels(voxel_sizes, n: int) -> list[tuple[float, float, float]]:
    sizes = torch.as_tensor(voxel_sizes, dtype=torch.float64)
    if sizes.shape == (3,):
        sizes = sizes.expand(n, 3)
    if sizes.shape != (n, 3) or not bool((torch.isfinite(sizes) & (sizes > 0)).all()):
        raise InputValidationError(f"voxel_sizes: expected positive (D, H, W) voxel sizes in mm, one (3,) for all "
                                   f"or ({n}, 3), got {voxel_sizes!r}")
    return [tuple(float(s) for s in row) for row in sizes]


def _fit(images: Tensor, size: int) -> Tensor:
    """Zero-pad or centre-crop (B, h, w) images to (B, size, size), centred."""
    out = images
    for dim in (-2, -1):
        n = out.shape[dim]
        if n > size:
            start = (n - size) // 2
            out = out.narrow(dim, start, size)
        elif n < size:
            before = (size - n) // 2
            pad = [0, 0, 0, 0]
            pad[0 if dim == -1 else 2] = before
            pad[1 if dim == -1 else 3] = size - n - before
            out = F.pad(out, pad)
    return out


def training_slices(
    volumes: Tensor | Sequence[Tensor],
    voxel_sizes: Sequence[float] | Sequence[Sequence[float]] | Tensor,
    size: int,
    *,
    pixel_size: float | None = None,
    axes: Sequence[int] = (0, 1, 2),
    step: int = 1,
) -> tuple[Tensor, Tensor]:
    """Slices of all three orientations, on square pixels, in a common ``size x size`` image.

    Parameters
    ----------
    volumes : (N, D, H, W) real tensor, or a list of (D, H, W) volumes (shapes may differ).
    voxel_sizes : (3,) mm for all volumes, or (N, 3): each volume's ``(v_D, v_H, v_W)``.
    size : side of the output images in pixels (a multiple of the prior's downsampling factor).
    pixel_size : output pixel size in mm for every slice; None: each slice's longer side fills the image.
    axes : the orientations to cut (:data:`ORIENTATIONS`).
    step : keep every ``step``-th slice along each axis.

    Returns
    -------
    slices : (M, size, size) float32, ordered by volume, then orientation, then position.
    pixel_sizes : (M,) float64, the pixel size (mm) of each slice: the voxel size the prior
        sees (:attr:`paperlib.recon.variational2d.SlicePrior.voxel_size`).
    """
    items = _volumes(volumes)
    voxels = _voxels(voxel_sizes, len(items))
    if not isinstance(size, int) or size < 1:
        raise InputValidationError(f"size: expected an integer >= 1, got {size!r}")
    if pixel_size is not None and not (isinstance(pixel_size, (int, float)) and math.isfinite(pixel_size)
                                       and pixel_size > 0):
        raise InputValidationError(f"pixel_size: expected a number of mm > 0 or None, got {pixel_size!r}")
    if not axes or any(a not in ORIENTATIONS for a in axes):
        raise InputValidationError(f"axes: expected a non-empty subset of {tuple(ORIENTATIONS)}, got {axes!r}")
    if not isinstance(step, int) or step < 1:
        raise InputValidationError(f"step: expected an integer >= 1, got {step!r}")
    out, pixels = [], []
    for volume, voxel in zip(items, voxels):
        for axis in axes:
            stack = volume.movedim(axis, 0)[::step].float()  # (n, a, b)
            spacing = [voxel[d] for d in range(3) if d != axis]
            extent = [n * s for n, s in zip(stack.shape[1:], spacing)]
            pixel = float(pixel_size) if pixel_size is not None else max(extent) / size
            shape = tuple(max(1, round(e / pixel)) for e in extent)
            shrink = any(s < n for s, n in zip(shape, stack.shape[1:]))
            resized = F.interpolate(stack[:, None], size=shape, mode="bilinear", align_corners=False,
                                    antialias=shrink)[:, 0]
            out.append(_fit(resized, size))
            pixels.append(torch.full((stack.shape[0],), pixel, dtype=torch.float64))
    return torch.cat(out), torch.cat(pixels)
