"""4D-STEM experiments: test crystals, the method registry, and per-case scoring.

A *case* is one crystal of a split of the profile's ``stem`` data (:func:`paperlib.data.crystals.
stem_dataset`): its ground-truth potential ``(D, H, W)`` in V·Å, the
:class:`~paperlib.physics.multislice.MultisliceOperator` that simulated it and the measured
intensities ``(Sy, Sx, Ky, Kx)``. A *method* is any callable
``(operator, intensities, profile, generator) -> (D, H, W) potential`` registered under a name
with :func:`register_stem_method`; the physics-only baselines are registered here with the
profile's ``stem_baselines`` values, and DART and DRIFT register themselves the same way, so
they join Table 1 and Figure 4 as further rows.

Scores come from :func:`paperlib.metrics.stem.stem_scores` (registration and one affine fit per
volume first): ``ssim`` is the mean per-slice SSIM, ``ssim_projected`` the SSIM of the phase
projection (the paper's Table 1 number) and ``ssim_depth_blind`` the per-slice SSIM of the
depth-blind reference (every slice = projection / D), a column of every row rather than a
pseudo-method.

>>> sorted(STEM_METHODS)
['dart', 'drift', 'sparse', 'three_pie', 'three_pie_thickness', 'torchslice']
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from tqdm.auto import tqdm

from ..config import Profile
from ..data.crystals import stem_dataset
from ..measure import measure
from ..metrics.stem import stem_scores
from ..physics.multislice import MultisliceOperator
from ..recon import stem_baselines
from ..recon.dart import dart
from ..recon.drift import drift
from .registry import Registry
from .priors import guided_prior

logger = logging.getLogger(__name__)

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


def _stem_prior(profile: Profile):
    return guided_prior(profile.stem_diffusion, profile.stem_prior.checkpoint,
                        data_scale=profile.stem_prior.data_scale)


@register_stem_method("dart", stochastic=True)
def _dart(op, intensities, profile, generator):
    d = profile.stem_diffusion
    return dart(_stem_prior(profile), op, intensities, generator=generator, num_steps=d.dart.steps,
                start=d.dart.start, physics_steps=d.dart.physics_steps, step_kwargs=d.dart.step_kwargs(),
                scale=profile.stem_prior.data_scale)


@register_stem_method("drift", stochastic=True)
def _drift(op, intensities, profile, generator):
    d = profile.stem_diffusion
    return drift(_stem_prior(profile), op, intensities, generator=generator, n_candidates=d.drift.candidates,
                 num_steps=d.drift.steps, physics_steps=d.drift.physics_steps, step_kwargs=d.drift.step_kwargs(),
                 scale=profile.stem_prior.data_scale, translate=d.drift.translate,
                 vacuum_threshold=d.drift.vacuum_threshold).volume


@dataclass(frozen=True)
class STEMCase:
    """One crystal to reconstruct: ground truth, operator and measurement."""

    case_id: str
    potential: torch.Tensor  # (D, H, W) float32, V·Å
    operator: MultisliceOperator
    intensities: torch.Tensor  # (Sy, Sx, Ky, Kx) float32
    material: str
    zone_axis: str


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


def run_stem_methods(
    profile: Profile,
    cases: Sequence[STEMCase],
    methods: Sequence[str],
    *,
    seeds: Sequence[int] = (0,),
    dataset: Literal["cubic", "hexagonal"] = "cubic",
    keep: bool = False,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Reconstruct every case with every method (and seed, for stochastic methods) and score it.

    Returns
    -------
    rows : per-case dicts with the columns of :data:`paperlib.tables.CASE_COLUMNS` (``ssim`` =
        mean per-slice SSIM, ``psnr`` = mean per-slice PSNR in dB, ``ssim_head`` NaN) plus
        ``ssim_projected``, ``psnr_projected``, ``ssim_depth_blind``, ``ssim_slices``
        (per-slice SSIMs joined by ``;``), ``material`` and ``zone_axis``.
    recons : ``{(case_id, method, seed): (D, H, W) tensor}`` (unregistered, as reconstructed)
        when ``keep`` else ``{}``.
    """
    jobs = STEM_METHODS.jobs(cases, methods, seeds)
    rows, recons = [], {}
    for case, method, seed in tqdm(jobs, desc="4D-STEM reconstructions", disable=not progress):
        gen = torch.Generator().manual_seed(int(seed))
        m = measure(lambda: method.fn(case.operator, case.intensities, profile, gen))
        recon = m.result.detach().float()
        s = stem_scores(recon, case.potential)
        rows.append({
            "modality": "stem", "dataset": dataset, "case": case.case_id, "method": method.name,
            "seed": seed, "ssim": s["ssim_slices_mean"], "ssim_head": math.nan, "psnr": s["psnr_slices_mean"],
            "wall_time_s": m.wall_time_s, "peak_rss_bytes": m.peak_rss_bytes,
            "ssim_projected": s["ssim_projection"], "psnr_projected": s["psnr_projection"],
            "ssim_depth_blind": s["ssim_depth_blind"],
            "ssim_slices": ";".join(f"{v:.4f}" for v in s["ssim_slices"]),
            "material": case.material, "zone_axis": case.zone_axis,
        })
        logger.info("%s %s seed %d: SSIM per slice %.4f, projection %.4f (depth-blind %.4f)",
                    case.case_id, method.name, seed, s["ssim_slices_mean"], s["ssim_projection"],
                    s["ssim_depth_blind"])
        if keep:
            recons[(case.case_id, method.name, seed)] = recon
    return rows, recons
