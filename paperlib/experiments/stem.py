"""4D-STEM experiments: test crystals and the method registry (run and scored by
:func:`paperlib.experiments.runner.run_cases`).

A *case* is one crystal of a split of the profile's ``stem`` data (:func:`paperlib.data.crystals.
stem_dataset`; :func:`stem_cases` for the prior's own kind of data, :func:`eval_cases` for the
test tables' data as the profile's ``stem_eval.data`` makes them: abTEM, frozen phonons, dose,
random depth, tilt, fresh seeds): its ground-truth potential ``(D, H, W)`` in V·Å, the
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
from ..data.crystals import EVALUATION_OPTIONS, STEMDataParams, STEMSample, stem_dataset
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
#: ``stem_prior.guided_checkpoint`` (``recon_checkpoint``, else ``checkpoint``) trained on
#: potentials divided by ``stem_prior.data_scale`` (V·Å).
STEM_GUIDED = GuidedSetup("stem_diffusion", "stem_prior", scaled=True, checkpoint="guided_checkpoint")
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

    @classmethod
    def from_sample(cls, sample: STEMSample) -> "STEMCase":
        """The case of one generated crystal (its operator is the one that simulated it, minus
        what the data options add: phonons, tilt, noise)."""
        return cls(sample.case_id, sample.potential, sample.operator(), sample.intensities, sample.material,
                   sample.zone_axis)


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
    count = _split_count(profile, split, n, ("train", "val", "test", "ood"))
    return [STEMCase.from_sample(s) for s in stem_dataset(profile.stem, split, count, progress=progress)]


def _split_count(profile: Profile, split: str, n: int | None, splits: tuple[str, ...]) -> int:
    """``n``, or the profile's ``stem_eval.n_<split>`` when None; ``split`` one of ``splits``."""
    if split not in splits:
        raise ValueError(f"split: expected one of {sorted(splits)}, got {split!r}")
    count = getattr(profile.stem_eval, f"n_{split}") if n is None else int(n)
    if count < 1:
        raise ValueError(f"n: expected >= 1, got {count}")
    return count


#: ``eval_cases(dose=PROFILE_DOSE)``: the dose of the profile's ``stem_eval.data``
PROFILE_DOSE = "profile"


def eval_params(profile: Profile, dose: float | None | str = PROFILE_DOSE) -> STEMDataParams:
    """The generator parameters of the test tables' data: the profile's ``stem`` section with the
    evaluation options of ``stem_eval.data`` (simulator, frozen phonons, placement, tilt) at
    ``dose`` (e-/Å²; None = noiseless; default the profile's)."""
    data = profile.stem_eval.data
    if isinstance(dose, str) and dose != PROFILE_DOSE:
        raise ValueError(f"dose: expected e-/Å^2, None (noiseless) or {PROFILE_DOSE!r}, got {dose!r}")
    options = data.model_dump(include={"simulator", *EVALUATION_OPTIONS})
    options["dose"] = data.dose if dose == PROFILE_DOSE else dose
    if options["simulator"] == "abtem":
        options["window"] = None  # abTEM simulates the full grid
    return STEMDataParams(**{**profile.stem.model_dump(), **options})


def eval_cases(
    profile: Profile,
    split: Literal["val", "test", "ood"] = "test",
    n: int | None = None,
    *,
    dose: float | None | str = PROFILE_DOSE,
    progress: bool = False,
) -> list[STEMCase]:
    """The crystals of the test tables (Table 1: ``test``, cubic; Table 2: ``ood``, hexagonal) as
    ``stem_eval.data`` makes them (issue 16): by default the first ``stem_eval.n_test`` /
    ``n_ood`` crystals of the ``test_fresh`` / ``ood_fresh`` split when ``data.fresh``, simulated
    by ``data.simulator`` with its phonons, placement and tilt, at ``dose``.

    ``val``: the validation crystals (``stem_eval.n_val``, the seeds of the ``val`` split) made the
    same way, for tuning on this kind of data (``validation.stem_eval``); never fresh.

    The crystals do not depend on the dose (the noise is drawn last), so a dose sweep scores the
    same crystals at every dose.
    """
    count = _split_count(profile, split, n, ("val", "test", "ood"))
    name = f"{split}_fresh" if profile.stem_eval.data.fresh and split != "val" else split
    return [STEMCase.from_sample(s) for s in stem_dataset(eval_params(profile, dose), name, count, progress=progress)]


def data_note(profile: Profile, dose: float | None | str = PROFILE_DOSE, *, noise: str | None = None) -> str:
    """One sentence saying what the test tables' 4D-STEM data are (for the tables' notes);
    ``noise`` replaces the part about the dose (e.g. for a dose sweep)."""
    data, p = profile.stem_eval.data, eval_params(profile, dose)
    who = ("abTEM's multislice (not our operator)" if data.simulator == "abtem"
           else "our multislice operator (the model the reconstructions invert)")
    parts = [f"intensities simulated by {who}"]
    if data.frozen_phonons > 1:
        parts.append(f"averaged over {data.frozen_phonons} frozen-phonon configurations of {data.phonon_rms:g} Å rms "
                     "(the static potential is the ground truth)")
    parts.append("crystals at a random depth (vacuum above and below)" if data.placement == "random"
                 else "crystals at the entrance surface")
    if data.tilt_mrad > 0:
        parts.append(f"a random beam tilt of up to {data.tilt_mrad:g} mrad per axis, not told to the methods")
    parts.append(noise or ("noiseless" if p.dose is None else f"Poisson noise at {p.dose:g} e-/Å²"))
    split = ("fresh seeds (the test_fresh / ood_fresh splits) that no design choice has seen" if data.fresh
             else "the test / ood splits")
    text = "Data: " + "; ".join(parts) + f"; crystals from {split}."
    if p != profile.stem:  # not the prior's own kind of data
        text += " " + _tuning_note(profile)
    return text


def _tuning_note(profile: Profile) -> str:
    """What was chosen on validation crystals of the test tables' kind (``validation.stem_eval``)."""
    grid = None if profile.validation is None else profile.validation.stem_eval
    if grid is None:
        return ("Every method keeps the settings tuned on our operator's noiseless validation crystals: nothing "
                "was tuned on data of this kind.")
    tried = [f"{method} {setting}" for method in grid.methods for setting in grid.settings(method)]
    if grid.checkpoints:
        tried.insert(0, "the prior (" + ", ".join(grid.checkpoints) + ")")
    return (f"Checked on the first {grid.n_volumes} validation crystals made the same way (validation.stem_eval, "
            f"never a test crystal): {'; '.join(tried) or 'nothing'}; every other setting was tuned on our "
            f"operator's noiseless validation crystals. DART and DRIFT sample {profile.stem_prior.guided_checkpoint}.")

