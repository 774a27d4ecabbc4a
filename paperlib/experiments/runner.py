"""One experiment runner for both modalities: cases, the run loop and the per-case rows.

A *case* is one volume to reconstruct (:class:`Case`: an id, the ground truth, the operator that
made the measurement, and the measurement). A *modality* is data (:class:`Modality`): its method
registry, how cases are built from a split of a profile, how one reconstruction is scored into
columns, and the names of those columns. :func:`run_cases` reconstructs every case with every
method (every seed for the stochastic ones), measures wall time and peak memory, and returns one
row per (case, method, seed).

Columns of a row, in this order: :data:`ID_COLUMNS`, the modality's score columns
(:attr:`Modality.columns`), :data:`COST_COLUMNS`, then the modality's case descriptors
(:attr:`Modality.descriptors`). Per modality:

========== =================================================================================
MRI        ``ssim_whole`` (whole-image SSIM, mean over slices; the paper's convention),
           ``ssim_head`` (SSIM inside the head / pot mask, mean over slices),
           ``psnr_volume`` (PSNR of the whole volume in dB; :func:`paperlib.metrics.image.
           volume_scores`)
4D-STEM    ``ssim_slice_mean``, ``psnr_slice_mean`` (per-slice SSIM and PSNR in dB, mean over
           slices), ``ssim_projected``, ``psnr_projected`` (of the phase projection, the
           paper's Table 1 number), ``ssim_depth_blind`` (per-slice SSIM of the depth-blind
           reference), ``ssim_slices`` (per-slice SSIMs joined by ``;``); descriptors
           ``material``, ``zone_axis``. All after one registration and affine fit
           (:func:`paperlib.metrics.stem.stem_scores`).
========== =================================================================================

>>> sorted(MODALITIES)
['mri', 'stem']
>>> MODALITIES["mri"].columns
('ssim_whole', 'ssim_head', 'psnr_volume')
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import torch
from tqdm.auto import tqdm

from ..config import Profile
from ..measure import measure
from ..metrics.image import volume_scores
from ..metrics.stem import stem_scores
from . import mri, stem
from .registry import Registry

logger = logging.getLogger(__name__)

#: Columns of every row that say which reconstruction it is.
ID_COLUMNS = ("modality", "dataset", "case", "method", "seed")
#: Columns of every row that say what the reconstruction cost (seconds; bytes of resident memory).
COST_COLUMNS = ("wall_time_s", "peak_rss_bytes")


class Case(Protocol):
    """What the runner needs of a case (:class:`~paperlib.experiments.mri.MRICase`,
    :class:`~paperlib.experiments.stem.STEMCase`)."""

    case_id: str
    operator: Any

    @property
    def truth(self) -> torch.Tensor:
        """(D, H, W) float32 ground truth."""

    @property
    def measurement(self) -> torch.Tensor:
        """The measured data the methods get (k-space, 4D-STEM intensities)."""


@dataclass(frozen=True)
class Modality:
    """One modality as data: methods, case builder, scoring and its columns.

    Attributes
    ----------
    name : the ``modality`` column (``"mri"``, ``"stem"``).
    label : for progress bars and messages (``"MRI"``, ``"4D-STEM"``).
    methods : the registry of its reconstructions, ``(operator, measurement, profile, generator)
        -> (D, H, W)``.
    cases : ``(profile, split, n, progress) -> list[Case]``, the first ``n`` cases of a split.
    score : ``(recon (D, H, W) float32, case) -> {column: value}`` over :attr:`columns` and
        :attr:`descriptors`.
    columns : the score columns, in CSV order.
    descriptors : columns that describe the case, not the reconstruction.
    dataset : the default ``dataset`` column.
    """

    name: str
    label: str
    methods: Registry
    cases: Callable[..., list]
    score: Callable[[torch.Tensor, Any], dict[str, Any]]
    columns: tuple[str, ...]
    descriptors: tuple[str, ...] = ()
    dataset: str = ""

    def row_columns(self) -> tuple[str, ...]:
        """Every column of this modality's rows, in CSV order."""
        return ID_COLUMNS + self.columns + COST_COLUMNS + self.descriptors


def _score_mri(recon: torch.Tensor, case: mri.MRICase) -> dict[str, float]:
    s = volume_scores(recon, case.image, head_mask=case.head_mask)
    return {"ssim_whole": s["ssim"], "ssim_head": s["ssim_head"], "psnr_volume": s["psnr"]}


def _score_stem(recon: torch.Tensor, case: stem.STEMCase) -> dict[str, Any]:
    s = stem_scores(recon, case.potential)
    return {
        "ssim_slice_mean": s["ssim_slices_mean"], "psnr_slice_mean": s["psnr_slices_mean"],
        "ssim_projected": s["ssim_projection"], "psnr_projected": s["psnr_projection"],
        "ssim_depth_blind": s["ssim_depth_blind"], "ssim_slices": ";".join(f"{v:.4f}" for v in s["ssim_slices"]),
        "material": case.material, "zone_axis": case.zone_axis,
    }


def _mri_split(profile: Profile, split: str, n: int | None = None, progress: bool = False) -> list:
    return mri.mri_cases(profile, split=split, n=n, progress=progress)


#: The two modalities of the paper.
MODALITIES: dict[str, Modality] = {
    "mri": Modality("mri", "MRI", mri.MRI_METHODS, _mri_split, _score_mri,
                    ("ssim_whole", "ssim_head", "psnr_volume"), dataset="brain"),
    "stem": Modality("stem", "4D-STEM", stem.STEM_METHODS, stem.stem_cases, _score_stem,
                     ("ssim_slice_mean", "psnr_slice_mean", "ssim_projected", "psnr_projected",
                      "ssim_depth_blind", "ssim_slices"), descriptors=("material", "zone_axis"), dataset="cubic"),
}


def modality_of(modality: str | Modality) -> Modality:
    """The :class:`Modality` named ``modality`` (or ``modality`` itself); ``ValueError`` if unknown."""
    if isinstance(modality, Modality):
        return modality
    if modality not in MODALITIES:
        raise ValueError(f"modality: expected one of {sorted(MODALITIES)}, got {modality!r}")
    return MODALITIES[modality]


def run_cases(
    profile: Profile,
    modality: str | Modality,
    cases: Sequence[Case],
    methods: Sequence[str],
    *,
    seeds: Sequence[int] = (0,),
    dataset: str | None = None,
    keep: bool = False,
    progress: bool = True,
) -> tuple[list[dict], dict]:
    """Reconstruct every case with every method (and seed, for stochastic methods) and score it.

    Each job gets its own ``torch.Generator().manual_seed(seed)``; deterministic methods run
    once per case with the first seed.

    Parameters
    ----------
    profile : the settings of the methods.
    modality : ``"mri"``, ``"stem"`` or a :class:`Modality`.
    cases : the cases, built e.g. by ``MODALITIES[modality].cases``.
    methods : registered method names; an unknown one is a ``ValueError`` naming the registered ones.
    seeds : seeds of the stochastic methods (at least one).
    dataset : the ``dataset`` column (default: the modality's, ``"brain"`` / ``"cubic"``).
    keep : also return the reconstructions.
    progress : show a progress bar.

    Returns
    -------
    rows : one dict per (case, method, seed) with the columns of :meth:`Modality.row_columns`.
    recons : ``{(case_id, method, seed): (D, H, W) float32 tensor}`` (as reconstructed, before any
        registration) when ``keep``, else ``{}``.
    """
    spec = modality_of(modality)
    jobs = spec.methods.jobs(cases, methods, seeds)
    rows, recons = [], {}
    for case, method, seed in tqdm(jobs, desc=f"{spec.label} reconstructions", disable=not progress):
        generator = torch.Generator().manual_seed(seed)
        m = measure(lambda: method.fn(case.operator, case.measurement, profile, generator))
        recon = m.result.detach().float()
        scores = spec.score(recon, case)
        row = {"modality": spec.name, "dataset": spec.dataset if dataset is None else dataset,
               "case": case.case_id, "method": method.name, "seed": seed, **scores,
               "wall_time_s": m.wall_time_s, "peak_rss_bytes": m.peak_rss_bytes}
        rows.append({k: row[k] for k in spec.row_columns()})
        logger.info("%s %s seed %d: %s", case.case_id, method.name, seed,
                    ", ".join(f"{k} {scores[k]:.4f}" for k in spec.columns if isinstance(scores[k], float)))
        if keep:
            recons[(case.case_id, method.name, seed)] = recon
    return rows, recons

