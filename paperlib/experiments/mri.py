"""MRI experiments: test cases and the method registry (run and scored by
:func:`paperlib.experiments.runner.run_cases`).

A *case* is one test volume with its own per-slice undersampling masks (seeded), the
operator ``y_s = M_s F x_s`` (paper Eq. 3) and the measured k-space. A *method* is any
callable ``(operator, y, profile, generator) -> (D, H, W) image`` registered under a name;
the baselines are registered here, and DART, DRIFT and the projection-based method register
themselves the same way, so they join Table 1 and Figure 3 as further rows, not a rewrite.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal, Sequence

import torch

from ..config import Profile
from ..data.brain import load_split
from ..physics.mri import MRIOperator, make_mask
from ..recon import mri_baselines
from ..recon.projection import projection_sampling
from .priors import GuidedSetup, register_guided, run_dart
from .registry import Registry

#: The MRI reconstructions under their table names (``(operator, kspace, profile, generator) -> image``).
MRI_METHODS = Registry("MRI")
register_mri_method = MRI_METHODS.register


@register_mri_method("zero_filled")
def _zero_filled(op, y, profile, generator):
    return mri_baselines.zero_filled(op, y)


@register_mri_method("cs_mri")
def _cs_mri(op, y, profile, generator):
    b = profile.mri_baselines
    return mri_baselines.cs_wavelet(op, y, weight=b.cs_weight, iters=b.cs_iters, levels=b.cs_levels,
                                    wavelet=b.cs_wavelet)


@register_mri_method("tv")
def _tv(op, y, profile, generator):
    b = profile.mri_baselines
    return mri_baselines.total_variation(op, y, weight=b.tv_weight, iters=b.tv_iters)


#: Where the MRI DART / DRIFT / projection settings live: ``mri_diffusion``, the prior of
#: ``prior.checkpoint`` in [0, 1] image units, started from the zero-filled image.
MRI_GUIDED = GuidedSetup("mri_diffusion", "prior", init=lambda op, y: op.zero_filled(y).real)
register_guided(MRI_METHODS, MRI_GUIDED)
#: The paper's "vanilla video diffusion" (Figure 5): DART's loop and settings with ONE network over
#: the whole depth (``prior.single_checkpoint``) instead of the partitioned stack.
MRI_WHOLE_DEPTH = replace(MRI_GUIDED, checkpoint="single_checkpoint")


@register_mri_method("video_diffusion", stochastic=True)
def _video_diffusion(op, y, profile, generator):
    return run_dart(MRI_WHOLE_DEPTH, op, y, profile, generator)


@register_mri_method("projection", stochastic=True)
def _projection(op, y, profile, generator):
    p = profile.mri_diffusion.projection
    if p is None:
        raise ValueError(f"profile {profile.name}: mri_diffusion.projection is not configured")
    return projection_sampling(MRI_GUIDED.load(profile), op, y, generator=generator,
                               num_steps=p.steps, start=p.start, init=MRI_GUIDED.initial(op, y))


@dataclass(frozen=True)
class MRICase:
    """One volume to reconstruct: ground truth, head mask, operator and measurement."""

    case_id: str
    image: torch.Tensor  # (D, H, W) float32 in [0, 1]
    head_mask: torch.Tensor  # (D, H, W) bool
    operator: MRIOperator
    kspace: torch.Tensor  # (D, H, W) complex64, zero where not sampled

    #: :class:`~paperlib.experiments.runner.Case`'s names: the ground truth and what the methods get
    truth = property(lambda self: self.image)
    measurement = property(lambda self: self.kspace)


def slice_masks(
    kind: str, shape: tuple[int, int, int], acceleration: float, center_fraction: float, seed: int
) -> torch.Tensor:
    """Independent seeded masks for each slice of a (D, H, W) volume: (D, H, W) bool."""
    gen = torch.Generator().manual_seed(seed)
    depth, height, width = shape
    return torch.stack(
        [make_mask(kind, (height, width), acceleration, center_fraction, generator=gen) for _ in range(depth)]
    )


def mri_cases(
    profile: Profile,
    *,
    split: Literal["train", "val", "test"] = "test",
    mask_kind: str | None = None,
    n: int | None = None,
    progress: bool = False,
) -> list[MRICase]:
    """The first ``n`` volumes of a split with their masks and measured k-space.

    The mask of volume ``i`` is seeded with ``mri_physics.mask_seed + i`` (plus 1000 for the
    validation split, so that validation and test masks differ too).
    """
    phys = profile.mri_physics
    vols = load_split(profile.mri, split, progress=progress)
    count = len(vols) if n is None else min(n, len(vols))
    offset = {"train": 2000, "val": 1000, "test": 0}[split]
    return cases_from_volumes(profile, vols.images[:count], vols.head_masks[:count], vols.ids[:count],
                              mask_kind=mask_kind or phys.table1_mask, seed=phys.mask_seed + offset)


def root_cases(profile: Profile, n: int | None = None, *, progress: bool = False) -> list[MRICase]:
    """The out-of-distribution plant-root cases of Table 2 (and Figure 4): the first ``n`` (default
    ``tab2.n_volumes``) root volumes of :func:`paperlib.data.roots.load_roots` with the profile's
    Table 2 mask, volume ``i`` masked with seed ``mri_physics.mask_seed + 3000 + i``."""
    from ..data.roots import load_roots

    tab2, phys = profile.tab2, profile.mri_physics
    count = tab2.n_volumes if n is None else n
    if not 1 <= count <= tab2.n_volumes:
        raise ValueError(f"n: expected 1..tab2.n_volumes = {tab2.n_volumes}, got {count}")
    # all tab2.n_volumes are loaded (one cached stack), so case i is the same whatever n is
    roots = load_roots(tuple(profile.mri.shape), tab2.n_volumes, seed=tab2.roots_seed, noise_std=tab2.noise_std,
                       progress=progress)
    return cases_from_volumes(profile, roots.images[:count], roots.head_masks[:count], roots.ids[:count],
                              mask_kind=phys.table2_mask, seed=phys.mask_seed + 3000)


def cases_from_volumes(
    profile: Profile,
    images: torch.Tensor,
    support: torch.Tensor,
    ids: Sequence[str],
    *,
    mask_kind: str,
    seed: int,
) -> list[MRICase]:
    """Cases from any (N, D, H, W) volumes in [0, 1] (brains, or the out-of-distribution roots):
    volume ``i`` gets its own per-slice masks seeded with ``seed + i`` and the profile's
    acceleration and centre fraction; ``support`` (N, D, H, W) bool is the region of the
    "inside" SSIM (head mask, pot interior)."""
    phys = profile.mri_physics
    if images.ndim != 4 or support.shape != images.shape or len(ids) != images.shape[0]:
        raise ValueError(f"images, support, ids: expected (N, D, H, W) volumes, masks of that shape and N ids; "
                         f"got {tuple(images.shape)}, {tuple(support.shape)}, {len(ids)}")
    cases = []
    for i, (image, inside, case_id) in enumerate(zip(images, support, ids)):
        masks = slice_masks(mask_kind, tuple(image.shape), phys.acceleration, phys.center_fraction, seed + i)
        op = MRIOperator(masks)
        cases.append(MRICase(case_id, image, inside, op, op.forward(image)))
    return cases

