"""4D-STEM experiments: test crystals and the method registry (run and scored by
:func:`paperlib.experiments.runner.run_cases`).

A *case* is one crystal of a split of the profile's ``stem`` data (:func:`paperlib.data.crystals.
stem_dataset`): its ground-truth potential ``(D, H, W)`` in V·Å, the
:class:`~paperlib.physics.multislice.MultisliceOperator` that simulated it and the measured
intensities ``(Sy, Sx, Ky, Kx)``. A *method* is any callable
``(operator, intensities, profile, generator) -> (D, H, W) potential`` registered under a name
with :func:`register_stem_method`; the physics-only baselines are registered here with the
profile's ``stem_baselines`` values, and DART and DRIFT register themselves the same way, so
they join Table 1 and Figure 4 as further rows.

Scores come from :func:`paperlib.metrics.stem.stem_scores` (registration and one affine fit per
volume first): ``ssim_slice_mean`` is the mean per-slice SSIM, ``ssim_projected`` the SSIM of the
phase projection (the paper's Table 1 number) and ``ssim_depth_blind`` the per-slice SSIM of the
depth-blind reference (every slice = projection / D), a column of every row rather than a
pseudo-method (see :mod:`paperlib.experiments.runner`).

>>> sorted(STEM_METHODS)
['dart', 'drift', 'sparse', 'three_pie', 'three_pie_thickness', 'torchslice']
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..config import Profile
from ..data.crystals import stem_dataset
from ..physics.multislice import MultisliceOperator
from ..recon import stem_baselines
from .priors import GuidedSetup, register_guided
from .registry import Registry

#: The 4D-STEM reconstructions under their table names.
STEM_METHODS = Registry("4D-STEM")
register_stem_method = STEM_METHODS.register


@register_stem_method("three_pie")
def _three_pie(op, intensities, profile, generator):
    # the generator only orders the positions: a deterministic baseline for a fixed seed
    return stem_baselines.three_pie(op, intensities, generator=generator,
                                    **profile.stem_baselines.three_pie.model_dump())


@register_stem_method("three_pie_thickness")
def _three_pie_thickness(op, intensities, profile, generator):
    start = _three_pie(op, intensities, profile, generator)
    return stem_baselines.thickness_search(op, intensities, start,
                                           **profile.stem_baselines.thickness.model_dump()).volume


@register_stem_method("torchslice")
def _torchslice(op, intensities, profile, generator):
    return stem_baselines.torchslice(op, intensities, generator=generator,
                                     **profile.stem_baselines.torchslice.model_dump())


@register_stem_method("sparse")
def _sparse(op, intensities, profile, generator):
    return stem_baselines.sparse_decomposition(op, intensities, generator=generator,
                                               **profile.stem_baselines.sparse.model_dump())


#: Where the 4D-STEM DART / DRIFT settings live: ``stem_diffusion``, the prior of
#: ``stem_prior.checkpoint`` trained on potentials divided by ``stem_prior.data_scale`` (V·Å).
STEM_GUIDED = GuidedSetup("stem_diffusion", "stem_prior", scaled=True)
register_guided(STEM_METHODS, STEM_GUIDED)


def _stem_prior(profile: Profile):
    """The profile's 4D-STEM prior (kept for callers of this name)."""
    return STEM_GUIDED.load(profile)


@dataclass(frozen=True)
class STEMCase:
    """One crystal to reconstruct: ground truth, operator and measurement."""

    case_id: str
    potential: torch.Tensor  # (D, H, W) float32, V·Å
    operator: MultisliceOperator
    intensities: torch.Tensor  # (Sy, Sx, Ky, Kx) float32
    material: str
    zone_axis: str

    #: :class:`~paperlib.experiments.runner.Case`'s names: the ground truth and what the methods get
    truth = property(lambda self: self.potential)
    measurement = property(lambda self: self.intensities)


def stem_cases(
    profile: Profile,
    split: Literal["train", "val", "test", "ood"] = "test",
    n: int | None = None,
    *,
    progress: bool = False,
) -> list[STEMCase]:
    """The first ``n`` crystals of a split (default: the profile's ``stem_eval.n_<split>``).

    ``train``/``val``/``test`` are cubic crystals, ``ood`` the hexagonal family (Table 2).
    Samples are generated once and cached (see :func:`paperlib.data.crystals.stem_dataset`).
    """
    counts = {"train": profile.stem_eval.n_train, "val": profile.stem_eval.n_val,
              "test": profile.stem_eval.n_test, "ood": profile.stem_eval.n_ood}
    if split not in counts:
        raise ValueError(f"split: expected one of {sorted(counts)}, got {split!r}")
    count = counts[split] if n is None else int(n)
    if count < 1:
        raise ValueError(f"n: expected >= 1, got {count}")
    samples = stem_dataset(profile.stem, split, count, progress=progress)
    return [STEMCase(s.case_id, s.potential, s.operator(), s.intensities, s.material, s.zone_axis)
            for s in samples]

