"""Real brain scans: cases, the methods with the general prior, and the ``real_mri`` modality.

The evaluation of issue 15 (notebooks/tab_real_mri.py): real magnitude scans that ship inside pip
packages (:mod:`paperlib.data.real_mri`), each at its own shape and voxel size, undersampled
retrospectively slice by slice (paper Eq. 3) at every acceleration of the profile's ``real_mri``
section. The scans' roles are fixed there: *tuning* scans may inform choices (generator design,
weights, steps); *held-out* scans are reported apart and must not.

Methods (:data:`REAL_MRI_METHODS`, ``(operator, kspace, profile, generator, progress=False) ->
(D, H, W)`` in the scan's units; ``progress`` shows the sampler's progress bar):

* ``zero_filled``, ``cs_mri``, ``tv``: :mod:`paperlib.recon.mri_baselines` with the section's
  ``baselines`` weights (relative to the zero-filled maximum, so unit-free);
* ``dart``, ``drift``, ``projection``: the general prior (``real_mri.checkpoint``), tiled over the
  volume's depth and padded in-plane (:class:`paperlib.diffusion.tiling.TiledPrior`). The
  measurement is divided by the :func:`~paperlib.data.intensity.intensity_scale` of its
  zero-filled magnitude (a statistic of the data, not of the unknown image), the method runs in
  those units, and the result is multiplied back and made a valid magnitude image
  (:func:`valid_magnitude`: no negative voxel).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from torch import Tensor

from ..config import Profile
from ..data.intensity import PRIOR_MAX, intensity_scale
from ..io import InputValidationError
from ..metrics.image import volume_scores
from ..physics.mri import MRIOperator
from ..recon import mri_baselines
from ..recon.dart import dart
from ..recon.drift import drift
from ..recon.projection import projection_sampling
from .mri import slice_masks
from .priors import guided_prior
from .registry import Registry

__all__ = ["REAL_MRI_METHODS", "RealMRICase", "real_cases", "real_case", "scan_mask_seed", "MARGIN_TARGET", "margin_verdicts", "general_prior", "valid_magnitude", "scaled_measurement",
           "dart_init", "dart_form",
           "REAL_MRI"]

#: The reconstructions of real scans under their table names.
REAL_MRI_METHODS = Registry("real MRI")


def _section(profile: Profile):
    if profile.real_mri is None:
        raise ValueError(f"profile {profile.name}: no real_mri section (the general prior and its settings)")
    return profile.real_mri


def general_prior(profile: Profile):
    """The general prior of ``profile.real_mri`` with its sampler, tiled for volumes of any shape."""
    from ..diffusion.tiling import tiled

    section = _section(profile)
    return tiled(guided_prior(section.diffusion, section.checkpoint), overlap=section.overlap)


def valid_magnitude(x: Tensor, scale: float) -> Tensor:
    """``x`` (prior units) back in the scan's units as a magnitude image: ``clamp(x, 0, PRIOR_MAX) * scale``.

    Negative voxels (the real part after a data-consistency step can dip below 0) are set to 0,
    the projection onto the magnitude images; the top is the sampler's own clip.
    """
    return (x.float().clamp(0.0, PRIOR_MAX) * scale).float()


def scaled_measurement(op: MRIOperator, y: Tensor) -> tuple[Tensor, float]:
    """The measurement in prior units and the factor back: ``y / s`` with ``s`` the intensity
    scale of the zero-filled magnitude."""
    s = intensity_scale(op.zero_filled(y).abs(), name="zero-filled image")
    return y / s, s


@REAL_MRI_METHODS.register("zero_filled")
def _zero_filled(op, y, profile, generator, progress=False):
    return mri_baselines.zero_filled(op, y)


@REAL_MRI_METHODS.register("cs_mri")
def _cs_mri(op, y, profile, generator, progress=False):
    b = _section(profile).baselines
    return mri_baselines.cs_wavelet(op, y, weight=b.cs_weight, iters=b.cs_iters, levels=b.cs_levels,
                                    wavelet=b.cs_wavelet).clamp_min(0)


@REAL_MRI_METHODS.register("tv")
def _tv(op, y, profile, generator, progress=False):
    return _tv_image(op, y, profile)


def _tv_image(op: MRIOperator, y: Tensor, profile: Profile, weight: float | None = None) -> Tensor:
    """The TV reconstruction at ``real_mri.baselines``' iterations and weight (or ``weight``), clamped at 0."""
    b = _section(profile).baselines
    return mri_baselines.total_variation(op, y, weight=b.tv_weight if weight is None else weight,
                                         iters=b.tv_iters).clamp_min(0)


def dart_init(op: MRIOperator, y: Tensor, profile: Profile, *, tv_weight: float | None = None) -> Tensor:
    """DART's starting image for the measurement ``y`` (in the units of ``y``'s zero-filled image):
    ``real_mri.diffusion.dart.init_from`` = ``"default"`` the real part of the zero-filled image,
    ``"tv"`` the TV reconstruction at ``real_mri.baselines``' weight and iterations (``tv_weight``
    replaces the weight: the start's variants in ``benchmarks/real_mri_dart_variants.py``)."""
    if _section(profile).diffusion.dart.init_from == "tv":
        return _tv_image(op, y, profile, tv_weight)
    if tv_weight is not None:
        raise InputValidationError("tv_weight: DART starts from the zero-filled image in this profile "
                                   "(real_mri.diffusion.dart.init_from is 'default'), not from a TV image")
    return op.zero_filled(y).real


def dart_form(d) -> str:
    """One sentence for a table's notes: which DART a ``real_mri.diffusion.dart`` section runs.

    >>> from paperlib.config import GuidedStepsConfig
    >>> dart_form(GuidedStepsConfig(steps=60, sigma_max=0.03, sigma_min=0.005, init_from="tv"))
    'DART: plug-and-play form (paperlib.recon.dart, levels): 60 denoising steps at noise levels from 0.03 down to 0.005 (prior units, geometric), each followed by 1 physics step(s) (Eq. 4, step size 1), from the TV reconstruction; deterministic.'
    >>> dart_form(GuidedStepsConfig(steps=20, start=0.5, samples=4))
    "DART: the paper's noisy chain, mean of 4 sample(s) of 20 steps each from the zero-filled image noised to 0.5 of the schedule, 1 physics step(s) (Eq. 4, step size 1) per step."
    """
    start = "the TV reconstruction" if d.init_from == "tv" else "the zero-filled image"
    physics = f"{d.physics_steps} physics step(s) (Eq. 4, step size {d.step_size:g})"
    if d.levels() is not None:
        ensemble = (", each in the next of the 8 in-plane orientations (self_ensemble, DPIR's periodical geometric "
                    "self-ensemble)" if d.self_ensemble else "")
        return (f"DART: plug-and-play form (paperlib.recon.dart, levels): {d.steps} denoising steps at noise levels "
                f"from {d.sigma_max:g} down to {d.sigma_min:g} (prior units, geometric){ensemble}, each followed by "
                f"{physics}, from {start}; deterministic.")
    origin = "pure noise" if d.start >= 1.0 else f"{start} noised to {d.start:g} of the schedule"
    return (f"DART: the paper's noisy chain, mean of {d.samples} sample(s) of {d.steps} steps each from {origin}, "
            f"{physics} per step.")


@REAL_MRI_METHODS.register("dart", stochastic=True)
def _dart(op, y, profile, generator, progress=False):
    d = _section(profile).diffusion.dart
    ys, s = scaled_measurement(op, y)
    x = dart(general_prior(profile), op, ys, generator=generator, num_steps=d.steps, start=d.start,
             init=dart_init(op, ys, profile), physics_steps=d.physics_steps, step_kwargs=d.step_kwargs(),
             samples=d.samples, stop=d.stop, levels=d.levels(), self_ensemble=d.self_ensemble, progress=progress)
    return valid_magnitude(x, s)


@REAL_MRI_METHODS.register("drift", stochastic=True)
def _drift(op, y, profile, generator, progress=False):
    d = _section(profile).diffusion.drift
    ys, s = scaled_measurement(op, y)
    x = drift(general_prior(profile), op, ys, generator=generator, n_candidates=d.candidates, num_steps=d.steps,
              physics_steps=d.physics_steps, step_kwargs=d.step_kwargs(), progress=progress).volume
    return valid_magnitude(x, s)


@REAL_MRI_METHODS.register("projection", stochastic=True)
def _projection(op, y, profile, generator, progress=False):
    p = _section(profile).diffusion.projection
    if p is None:
        raise ValueError(f"profile {profile.name}: real_mri.diffusion.projection is not configured")
    ys, s = scaled_measurement(op, y)
    x = projection_sampling(general_prior(profile), op, ys, generator=generator, num_steps=p.steps, start=p.start,
                            init=op.zero_filled(ys).real, progress=progress)
    return valid_magnitude(x, s)


@dataclass(frozen=True)
class RealMRICase:
    """One real scan at one acceleration (:class:`~paperlib.experiments.runner.Case`)."""

    case_id: str
    scan: str
    role: str
    acceleration: float
    image: Tensor  # (D, H, W) float32, the scan's units
    head_mask: Tensor  # (D, H, W) bool
    operator: MRIOperator
    kspace: Tensor  # (D, H, W) complex64

    truth = property(lambda self: self.image)
    measurement = property(lambda self: self.kspace)


#: Issue 15's target: on held-out scans DART's SSIM at least this far above TV's, whole image and head.
MARGIN_TARGET = 0.02


def margin_verdicts(summary: Mapping, columns: tuple[str, ...] = ("ssim_whole", "ssim_head")) -> list[str]:
    """``"yes"`` / ``"NO"`` per column: whether the mean of a DART - TV summary
    (:func:`paperlib.tables.paired_differences` or :func:`~paperlib.tables.summarise` of differences)
    reaches :data:`MARGIN_TARGET`.

    >>> margin_verdicts({"ssim_whole_mean": 0.025, "ssim_head_mean": 0.019})
    ['yes', 'NO']
    """
    return ["yes" if summary[f"{c}_mean"] >= MARGIN_TARGET else "NO" for c in columns]


#: Seed step between two mask draws of one scan (above any scan's ``100 i``).
MASK_DRAW_STEP = 10_000


def scan_mask_seed(profile: Profile, name: str, draw: int = 0) -> int:
    """Seed of the per-slice masks of registered scan ``name``: ``real_mri.mask_seed + 100 i`` for
    its registry index ``i`` (every method, and every derived volume of that scan, gets these masks).
    ``draw`` > 0 gives other masks of the same kind (``+ MASK_DRAW_STEP * draw``: the spread of a
    result over mask draws); draw 0 is the table's."""
    from ..data.real_mri import REAL_SCANS

    if name not in REAL_SCANS:
        raise ValueError(f"name: unknown real scan {name!r}; registered: {list(REAL_SCANS)}")
    if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
        raise ValueError(f"draw: expected an integer >= 0, got {draw!r}")
    return _section(profile).mask_seed + 100 * list(REAL_SCANS).index(name) + MASK_DRAW_STEP * draw


def real_case(profile: Profile, name: str, case_id: str, label: str, role: str, acceleration: float,
              image: Tensor, head_mask: Tensor, draw: int = 0) -> RealMRICase:
    """``image`` (registered scan ``name`` or a volume derived from it: cropped, noised) undersampled
    slice by slice at ``acceleration`` with the profile's mask settings and :func:`scan_mask_seed`
    (of mask draw ``draw``)."""
    section = _section(profile)
    op = MRIOperator(slice_masks(section.mask_kind, tuple(image.shape), acceleration, section.center_fraction,
                                 scan_mask_seed(profile, name, draw)))
    return RealMRICase(case_id, label, role, float(acceleration), image, head_mask, op, op.forward(image))


def real_cases(profile: Profile, role: str | None = None, n: int | None = None, progress: bool = False
               ) -> list[RealMRICase]:
    """Every registered scan of ``role`` (``"tuning"``, ``"held_out"``, ``None`` = all) at every
    acceleration of ``profile.real_mri`` (:func:`real_case`: the same masks for every method)."""
    from ..data.real_mri import REAL_SCANS, load_real_scan

    cases = []
    for entry in REAL_SCANS.values():
        if role is not None and entry.role != role:
            continue
        scan = load_real_scan(entry.name)
        cases += [real_case(profile, entry.name, f"{entry.name}@{acc:g}x", entry.name, entry.role, acc, scan.image,
                            scan.head_mask) for acc in _section(profile).accelerations]
    return cases[:n] if n is not None else cases


def _score(recon: Tensor, case: RealMRICase) -> dict:
    s = volume_scores(recon, case.image, head_mask=case.head_mask)
    return {"ssim_whole": s["ssim"], "ssim_head": s["ssim_head"], "psnr_volume": s["psnr"],
            "scan": case.scan, "role": case.role, "acceleration": case.acceleration,
            "negative_fraction": float((recon < 0).float().mean()),
            "max_ratio": float(recon.max() / case.image.max())}


def _modality():
    from .runner import Modality

    return Modality("real_mri", "real MRI", REAL_MRI_METHODS, real_cases, _score,
                    ("ssim_whole", "ssim_head", "psnr_volume"),
                    descriptors=("scan", "role", "acceleration", "negative_fraction", "max_ratio"),
                    dataset="real")


#: The real-scan modality for :func:`paperlib.experiments.runner.run_cases`.
REAL_MRI = _modality()
