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

__all__ = ["training_slices", "ORIENTATIONS", "prior_slice_set", "subject_shape", "FIXED_VOXEL_MM",
           "DIVERSE_VOXEL_MM", "SLICE_IMAGE_SIZE", "SLICE_PRIOR_SEED"]

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


# --------------------------------------------------------------------------------------------
# the training sets of the two shipped 2D priors (issue 18)
# --------------------------------------------------------------------------------------------
#: Voxel size (mm, isotropic in-plane) of the **fixed-voxel** prior's training slices: synthetic
#: subjects on a (41, 64, 64) grid (``FOV_MM / shape`` = 3.78 x 3.75 x 3.75 mm), resampled to
#: square 3.75 mm pixels.
FIXED_VOXEL_MM = 3.75

#: Voxel sizes (mm) of the **diverse-voxel** prior's training slices: the fixed voxel and its 2x
#: and 4x multiples (subjects on (41, 64, 64), (21, 32, 32) and (10, 16, 16) grids), each slice
#: at its own voxel size, i.e. the coarse heads occupy fewer pixels of the common image.
DIVERSE_VOXEL_MM = (3.75, 7.5, 15.0)

#: Side (pixels) of the training images of both priors: a 240 mm field of view at the fixed voxel.
SLICE_IMAGE_SIZE = 64

#: Synthetic-subject seeds of the prior training sets start here (apart from the profiles'
#: train/val/test seeds 0, 10 000 and 20 000 and from the notebook's evaluation subjects).
SLICE_PRIOR_SEED = 30_000


def subject_shape(voxel_mm: float) -> tuple[int, int, int]:
    """Grid ``round(FOV_MM / voxel_mm)`` of a synthetic subject at an (about) isotropic voxel size."""
    from .brain import FOV_MM

    return tuple(max(4, round(f / float(voxel_mm))) for f in FOV_MM)


def prior_slice_set(
    voxel_sizes_mm: Sequence[float],
    n_subjects: int,
    *,
    modality: str = "flair",
    size: int = SLICE_IMAGE_SIZE,
    seed: int = SLICE_PRIOR_SEED,
    step: int = 1,
    progress: bool = False,
) -> tuple[Tensor, dict]:
    """Training slices of a 2D prior: ``n_subjects`` synthetic subjects at every voxel size.

    Subject ``seed + i`` is drawn at each voxel size of ``voxel_sizes_mm`` (the same anatomy at
    several resolutions: the resolution, not the anatomy, is what differs between the two priors),
    on the grid :func:`subject_shape`, and cut by :func:`training_slices` into axial, coronal and
    sagittal slices with ``pixel_size`` equal to that voxel size. Slices with no brain pixel above
    5 % of the maximum are dropped (the empty ends of the coronal and sagittal stacks).

    Parameters
    ----------
    voxel_sizes_mm : one voxel size (the fixed-voxel set, e.g. ``[FIXED_VOXEL_MM]``) or several
        (the diverse set, :data:`DIVERSE_VOXEL_MM`), mm.
    n_subjects : subjects per voxel size.
    modality : the contrast (:func:`paperlib.data.brain.synthetic_subject`), images in [0, 1].
    size : side of the images (pixels).
    seed : first subject seed.
    step : keep every ``step``-th slice along each axis.

    Returns
    -------
    data : (N, 1, size, size) float32, the trainer's ``(N, D, H, W)`` with one slice per sample.
    record : the ``dataset`` record of the prior manifest (voxel sizes, subjects, counts per voxel size).
    """
    from tqdm.auto import tqdm

    from .brain import MODALITIES, synthetic_subject

    sizes = [float(v) for v in voxel_sizes_mm]
    if not sizes or any(not (math.isfinite(v) and v > 0) for v in sizes):
        raise InputValidationError(f"voxel_sizes_mm: expected positive voxel sizes in mm, got {voxel_sizes_mm!r}")
    if not isinstance(n_subjects, int) or n_subjects < 1:
        raise InputValidationError(f"n_subjects: expected an integer >= 1, got {n_subjects!r}")
    if modality not in MODALITIES:
        raise InputValidationError(f"modality: expected one of {MODALITIES}, got {modality!r}")
    parts, counts = [], {}
    jobs = [(v, i) for v in sizes for i in range(n_subjects)]
    for voxel, i in tqdm(jobs, desc="2D prior slices", disable=not progress):
        shape = subject_shape(voxel)
        volume = torch.from_numpy(synthetic_subject(seed + i, shape)[modality])
        slices, _ = training_slices(volume[None], [f / s for f, s in zip(_fov(), shape)], size,
                                    pixel_size=voxel, step=step)
        keep = slices.flatten(1).amax(1) > 0.05
        parts.append(slices[keep])
        counts[str(voxel)] = counts.get(str(voxel), 0) + int(keep.sum())
    data = torch.cat(parts)[:, None].contiguous()
    record = {"source": "synthetic slices", "modality": modality, "voxel_sizes_mm": sizes,
              "subject_shapes": [list(subject_shape(v)) for v in sizes], "n_subjects": n_subjects,
              "subject_seed": seed, "slice_step": step, "size": size, "orientations": list(ORIENTATIONS.values()),
              "slices_per_voxel_size": counts}
    return data, record


def _fov() -> tuple[float, float, float]:
    from .brain import FOV_MM

    return tuple(float(f) for f in FOV_MM)
