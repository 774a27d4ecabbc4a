"""DRIFT — Diffusion-Refined Initialization for Multi-slice Reconstruction (Algorithm 1, second branch).

1. Draw ``n_candidates`` unconditional volumes from the partitioned prior (one batch).
2. Per slice group, keep the candidate whose *measurement image* is most similar (SSIM) to the
   measured one: the zero-filled magnitude per slice for MRI, the bright-field image for
   4D-STEM (paper Sec. 3). The candidate's image is computed the same way from its simulated
   measurement, ``operator.measurement_image(operator.forward(candidate))``, so both sides carry
   the same aliasing (MRI) or the same probe blur (4D-STEM): compare like with like.
3. Run ``K`` physics steps (Eq. 4 / Eq. 5) from the assembled volume. Optionally (ours,
   ``vacuum_threshold``) the slices the selected sample leaves empty stay empty: unconstrained,
   the 4D-STEM steps spread potential over every slice, because the data barely fix depth when
   the depth of field (~60 Å at 200 kV, 20 mrad) exceeds the specimen; the prior's sample is then
   what decides where matter is, and the steps fit the data within it.

Selection per slice group. With slice-local physics (MRI) the groups' scores are independent
and each group takes its own best candidate exactly. With physics that couples the slices
(multislice 4D-STEM: one bright-field image for the whole object) a group cannot be scored on
its own; we start from the best whole candidate and then, group by group, keep the candidate
whose group raises the whole-object score (one pass of coordinate ascent; ``N + N G`` forward
simulations). Nothing here sees the ground truth.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from ..diffusion.partition import PartitionedPrior, group_slices
from ..diffusion.tiling import TiledPrior
from ..io import InputValidationError
from ..metrics.image import ssim_images
from ..physics.base import Operator
from .dart import check_prior_fits, check_sampling_args, physics_callback

logger = logging.getLogger(__name__)

__all__ = ["DriftResult", "align_translations", "drift", "image_ssim", "select_per_group", "selection_groups"]


@dataclass(frozen=True)
class DriftResult:
    """What :func:`drift` did: the reconstruction, the chosen candidate per group and all scores.

    Attributes
    ----------
    volume : (D, H, W) float32 reconstruction (physical units).
    choice : (G,) int64, the candidate taken for each slice group.
    scores : (N, G) float32 SSIM of each candidate's measurement image per group (slice-local
        operators) or (N, 1) whole-object scores (coupled operators).
    initial : (D, H, W) the assembled selection before the physics steps.
    """

    volume: Tensor
    choice: Tensor
    scores: Tensor
    initial: Tensor


def image_ssim(images: Tensor, reference: Tensor) -> Tensor:
    """SSIM of each of ``images`` (N, ..., H, W) against ``reference`` (..., H, W).

    Every leading index after ``N`` is one 2D image (a slice); returns (N, ...) float32. The
    score is :func:`paperlib.metrics.image.ssim_images`, the whole-image SSIM of the tables:
    Gaussian window sigma 1.5 (11 px, or the largest odd size that fits small images such as a
    16 x 16 bright-field scan), data range of the reference, complex images by magnitude.

    >>> ref = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> image_ssim(torch.stack([ref, 1 - ref]), ref)[:, 0].tolist()[0]
    1.0
    """
    if images.shape[1:] != reference.shape or reference.ndim < 2:
        raise InputValidationError(
            f"images: expected (N, *{tuple(reference.shape)}) for a reference of that shape, got {tuple(images.shape)}")
    return ssim_images(images, reference)


def _selection_images(operator: Operator, volumes: Tensor, scale: float) -> Tensor:
    """The measurement image of each (N, D, H, W) volume's simulated measurement."""
    with torch.no_grad():
        if operator.slice_local:  # slice-local operators broadcast over the candidates
            return operator.measurement_image(operator.forward(volumes * scale))
        return torch.stack([operator.measurement_image(operator.forward(v * scale)) for v in volumes])


def align_translations(operator: Operator, y: Tensor, candidates: Tensor, *,
                       scale: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Roll each candidate laterally to where its measurement image best matches (SSIM) the measured one.

    Only for operators whose scan tiles a periodic field of view in whole-pixel steps
    (``operator.periodic_scan_step()`` is ``(py, px)``; multislice 4D-STEM on a full grid): the
    prior's crystals sit at random lateral offsets, and a potential rolled by ``(a py, b px)``
    pixels has exactly the measurement image rolled by ``(a, b)`` scan positions, so every
    whole-step translation of every candidate is scored from one simulation per candidate
    (all ``Sy x Sx`` rolls in one batched SSIM). What remains is an offset below one scan step,
    left to the physics steps.

    Returns
    -------
    aligned : (N, D, H, W) the rolled candidates.
    shifts : (N, 2) int64 pixel shifts applied.
    images : (N, Sy, Sx) the aligned candidates' measurement images (the simulated ones rolled,
        exact by the periodicity above), for :func:`select_per_group` to reuse.
    """
    step = operator.periodic_scan_step()
    if step is None:
        raise InputValidationError(
            f"operator: {type(operator).__name__} has no periodic whole-pixel scan; translations cannot be searched")
    py, px = step
    reference = operator.measurement_image(y)
    images = _selection_images(operator, candidates, scale)  # (N, Sy, Sx)
    sy, sx = reference.shape[-2:]
    a = torch.arange(sy).repeat_interleave(sx)  # roll of every candidate: (a, b) scan positions
    b = torch.arange(sx).repeat(sy)
    rows = (torch.arange(sy)[None, :] - a[:, None]) % sy  # torch.roll(x, a)[i] = x[(i - a) % n]
    cols = (torch.arange(sx)[None, :] - b[:, None]) % sx
    rolled = images[:, rows[:, :, None], cols[:, None, :]]  # (N, Sy*Sx, Sy, Sx)
    scores = image_ssim(rolled.reshape(-1, sy, sx)[:, None], reference[None]).reshape(len(candidates), -1)
    best = scores.argmax(dim=1)
    shifts = torch.stack([a[best] * py, b[best] * px], dim=1)
    aligned = torch.stack([torch.roll(c, (int(dy), int(dx)), dims=(-2, -1)) for c, (dy, dx) in zip(candidates, shifts)])
    return aligned, shifts, rolled[torch.arange(len(candidates)), best]


def select_per_group(
    operator: Operator, y: Tensor, candidates: Tensor, num_groups: int | Sequence[Tensor], *,
    scale: float = 1.0, images: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Assemble one volume from ``candidates`` (N, D, H, W), choosing per slice group.

    ``num_groups``: the number G of equal contiguous slice groups, or the groups themselves as
    int64 index tensors along D (:func:`selection_groups`, for a tiled prior).
    ``images``: the candidates' measurement images when already computed (e.g. by
    :func:`align_translations`); simulated here otherwise.

    Returns
    -------
    volume : (D, H, W) the assembled selection (prior units, like ``candidates``).
    choice : (G,) int64 candidate index per group.
    scores : (N, G) per-group scores (slice-local) or (N, 1) whole-object scores.
    """
    if candidates.ndim != 4:
        raise InputValidationError(f"candidates: expected (N, D, H, W), got {tuple(candidates.shape)}")
    groups = group_slices(candidates.shape[1], num_groups) if isinstance(num_groups, int) else list(num_groups)
    reference = operator.measurement_image(y)
    if images is None:
        images = _selection_images(operator, candidates, scale)
    if operator.slice_local:
        per_slice = image_ssim(images, reference)  # (N, D)
        scores = torch.stack([per_slice[:, s].mean(dim=1) for s in groups], dim=1)  # (N, G)
        choice = scores.argmax(dim=0)
        volume = torch.cat([candidates[int(c), s] for c, s in zip(choice, groups)], dim=0)
        return volume, choice, scores
    whole = image_ssim(images, reference)  # (N,) one 2D measurement image per candidate
    whole = whole.reshape(whole.shape[0], -1).mean(dim=1)
    best = int(whole.argmax())
    choice = torch.full((len(groups),), best, dtype=torch.int64)
    volume = candidates[best].clone()
    current = float(whole[best])
    for g, s in enumerate(groups):
        trials = volume.expand(candidates.shape[0], -1, -1, -1).clone()
        trials[:, s] = candidates[:, s]
        trial_scores = image_ssim(_selection_images(operator, trials, scale), reference)
        trial_scores = trial_scores.reshape(trial_scores.shape[0], -1).mean(dim=1)
        k = int(trial_scores.argmax())
        if float(trial_scores[k]) > current:
            current, choice[g] = float(trial_scores[k]), k
            volume = trials[k]
    return volume, choice, whole[:, None]


def selection_groups(prior: PartitionedPrior | TiledPrior, depth: int) -> int | list[Tensor]:
    """DRIFT's slice groups for ``prior`` on ``depth`` slices (the ``num_groups`` of :func:`select_per_group`).

    A partitioned prior: its ``G`` groups. A tiled prior: ``ceil(D / group_size)`` contiguous chunks
    of about ``group_size`` slices (``torch.arange(D).tensor_split(...)``), the granularity at
    which its windows see a coherent slab.

    >>> from paperlib.diffusion.partition import PartitionedPrior
    >>> from paperlib.diffusion.sampler import Sampler
    >>> from paperlib.diffusion.schedules import ScheduleConfig
    >>> p = PartitionedPrior([torch.nn.Identity()] * 2, Sampler(ScheduleConfig("cosine", 10)), 4)
    >>> [g.tolist() for g in selection_groups(TiledPrior(p), 6)], selection_groups(p, 8)
    ([[0, 1, 2], [3, 4, 5]], 2)
    """
    if isinstance(prior, TiledPrior):
        return list(torch.arange(depth).tensor_split(-(-depth // prior.group_size)))
    return len(prior.models)


def drift(prior: PartitionedPrior | TiledPrior, operator: Operator, y: Tensor, *, generator: torch.Generator,
          n_candidates: int = 8, num_steps: int = 50, physics_steps: int = 10,
          step_kwargs: Mapping[str, Any] | None = None, scale: float = 1.0, translate: bool = False,
          vacuum_threshold: float | None = None, progress: bool = False) -> DriftResult:
    """Reconstruct by selecting prior samples per slice group and refining them (DRIFT).

    Parameters
    ----------
    prior : the partitioned prior; candidates are drawn with its sampler. A
        :class:`~paperlib.diffusion.tiling.TiledPrior` takes volumes of any shape; the selection
        is then per chunk of about ``group_size`` slices (:func:`selection_groups`).
    operator, y : the measurement model and the measurement.
    generator : seeds the candidates.
    n_candidates : N, prior samples drawn (one batch through each group's network).
    num_steps : diffusion steps per candidate.
    physics_steps : K, physics steps after the selection (paper: "K steps gradient update").
    step_kwargs : keyword arguments of ``operator.physics_step``.
    scale : the prior's training scale (physical units per prior unit).
    translate : first align every candidate laterally (:func:`align_translations`; operators
        with a periodic scan only). Our addition: the paper does not say how candidates at
        random lateral offsets are compared with the measurement.
    vacuum_threshold : physical units; slices of the selected volume whose mean is below it are
        vacuum and stay so during the physics steps (``operator.physics_step(..., support=)``,
        4D-STEM). ``None``: every slice is free (the paper's K steps).
    """
    if not isinstance(n_candidates, int) or n_candidates < 1:
        raise ValueError(f"n_candidates: expected a positive integer, got {n_candidates!r}")
    if vacuum_threshold is not None and not operator.supports_support:
        raise InputValidationError(f"vacuum_threshold: {type(operator).__name__}.physics_step takes no "
                                   "slice support (4D-STEM's MultisliceOperator does); leave it None")
    shape = operator.volume_shape(y)
    check_prior_fits(prior, shape)
    check_sampling_args(shape, generator=generator, num_steps=num_steps, scale=scale, physics_steps=physics_steps)
    candidates = prior.sample((n_candidates, *shape), num_steps=num_steps, generator=generator, progress=progress)
    if translate:
        candidates, _, images = align_translations(operator, y, candidates, scale=scale)
    else:
        images = None
    initial, choice, scores = select_per_group(operator, y, candidates, selection_groups(prior, shape[0]),
                                               scale=scale, images=images)
    logger.info("DRIFT: candidates per group %s (scores %s)", choice.tolist(), scores.max(dim=0).values.tolist())
    step_kwargs = dict(step_kwargs or {})
    if vacuum_threshold is not None:
        slice_means = (initial * scale).reshape(initial.shape[0], -1).mean(dim=1)
        support = slice_means >= vacuum_threshold
        if not bool(support.any()):
            raise InputValidationError(
                f"vacuum_threshold: {vacuum_threshold} leaves no slice of the selected sample occupied "
                f"(largest slice mean {float(slice_means.max()):.3g})")
        logger.info("DRIFT: occupied slices of the selection %s", support.int().tolist())
        step_kwargs["support"] = support
    refine = physics_callback(operator, y, scale=scale, steps=physics_steps, step_kwargs=step_kwargs)
    volume = refine(initial, 0) * scale
    return DriftResult(volume.float(), choice, scores, (initial * scale).float())
