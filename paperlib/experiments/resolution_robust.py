"""The second system's evaluation (issue 18, paper ``002``): resolution robustness of the
variational 3D reconstruction with a 2D diffusion prior (notebooks/resolution_robust.py).

Priors (:func:`load_slice_prior`): ``checkpoints/slice2d_fixed`` (training slices at
:data:`~paperlib.data.slices2d.FIXED_VOXEL_MM`) and ``checkpoints/slice2d_diverse`` (at
:data:`~paperlib.data.slices2d.DIVERSE_VOXEL_MM`), trained by ``make train``.

Cases (:func:`synthetic_cases`): synthetic subjects (:func:`paperlib.data.brain.synthetic_subject`,
seeds ``eval_seed + i``, never the training seeds) drawn at the reconstruction voxel
``shift * FIXED_VOXEL_MM`` for every shift of the profile's ``resolution_robust`` section, so the
*same anatomy* is reconstructed at every voxel size. The subjects are **magnitude** images: coils
and phase are simulated (:func:`paperlib.recon.variational2d.simulate_multicoil`: zero phase,
smooth coil maps, 3D Cartesian variable-density undersampling over the two phase-encoding axes).
Real scans (:func:`real_scan_cases`) are magnitude images as well and get the same simulated coils,
at their own voxel sizes.

Methods (:data:`METHODS`, ``(case, priors, section, generator) -> (D, H, W)``):

* ``variational_fixed`` / ``variational_diverse``: :func:`~paperlib.recon.variational2d.variational2d`
  with the fixed- or diverse-voxel prior, on the native grid (no resampling);
* ``variational_fixed_resampled``: the fixed prior with the trilinear resampling of the volume to the
  training voxel where the reconstruction voxel is larger (the paper's fix, finding 4);
* ``cs``: L1-wavelet compressive sensing; ``dps``: posterior sampling with the fixed prior;
  ``dds_tv_z``: slice-wise diffusion with a TV penalty across slices (both with the 2D prior);
  ``zero_filled``: ``A^H y``.

Findings (:func:`findings`): each of the paper's findings (1)-(4) as a sentence computed from the
per-case rows with paired differences (:func:`paperlib.tables.paired_differences`): the direction
is *reproduced* or *not reproduced*, never asserted.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..config import Profile, ResolutionRobustConfig
from ..data.slices2d import FIXED_VOXEL_MM, subject_shape
from ..io import InputValidationError
from ..measure import measure
from ..metrics.image import volume_scores
from ..physics.mri import MulticoilMRIOperator
from ..recon.mri_multicoil_baselines import cs_wavelet_multicoil, dds_tv_z, posterior_sampling
from ..recon.variational2d import SlicePrior, simulate_multicoil, variational2d

__all__ = ["load_slice_prior", "slice_priors", "section_of", "Case", "synthetic_cases", "real_scan_cases",
           "METHODS", "run_case", "findings", "PRIOR_NAMES"]

#: the two priors by their role, and the profile field naming each folder
PRIOR_NAMES = {"fixed": "fixed_prior", "diverse": "diverse_prior"}


def load_slice_prior(path: str | Path, *, precision: str = "float32") -> SlicePrior:
    """A shipped 2D prior (one-group checkpoint of the ``slice2d`` network) as a :class:`SlicePrior`.

    The prior's ``voxel_size`` is the **largest** voxel size (mm) of its training slices (the
    manifest's ``dataset.voxel_sizes_mm``): reconstructions on larger voxels are resampled to it
    (:func:`~paperlib.recon.variational2d.variational2d`, ``resample=True``); a diverse-voxel prior
    has seen every voxel up to it.

    Raises
    ------
    paperlib.diffusion.checkpoints.CheckpointError : missing or corrupted files, or a prior that is
        not a one-group 2D prior (more groups, group size > 1 or no training voxel sizes).
    """
    from ..diffusion.checkpoints import CheckpointError, load_prior
    from ..diffusion.sampler import Sampler
    from ..diffusion.schedules import ScheduleConfig

    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no prior folder; train it with `make train` (presets slice2d_fixed, "
                              "slice2d_diverse)")
    models, manifests = load_prior(path)
    m = manifests[0]
    voxels = (m.get("dataset") or {}).get("voxel_sizes_mm")
    if len(models) != 1 or m["group_size"] != 1 or not voxels:
        raise CheckpointError(f"{path}: expected a one-group 2D slice prior with dataset.voxel_sizes_mm in its "
                              f"manifest, got {len(models)} group(s) of {m['group_size']} slice(s), voxel sizes {voxels}")
    sampler = Sampler(ScheduleConfig(**m["schedule"]), prediction=m["prediction"])
    return SlicePrior(models[0], sampler, voxel_size=float(max(voxels)), precision=precision)


def section_of(profile: Profile) -> ResolutionRobustConfig:
    if profile.resolution_robust is None:
        raise ValueError(f"profile {profile.name}: no resolution_robust section")
    return profile.resolution_robust


def slice_priors(profile: Profile) -> dict[str, SlicePrior]:
    """The profile's fixed- and diverse-voxel priors, ``{"fixed": ..., "diverse": ...}``."""
    from ..paths import repo_root

    section = section_of(profile)
    return {role: load_slice_prior(repo_root() / getattr(section, field)) for role, field in PRIOR_NAMES.items()}


@dataclass(frozen=True)
class Case:
    """One reconstruction problem: a magnitude volume with simulated coils.

    ``dataset`` names the group (``"synthetic"`` or ``"real"``), ``shift`` the reconstruction voxel
    over the fixed prior's training voxel (its largest axis for real scans), ``voxel_mm`` the
    (D, H, W) voxel in mm.
    """

    dataset: str
    case: str
    shift: float
    acceleration: float
    voxel_mm: tuple[float, float, float]
    truth: Tensor
    head_mask: Tensor
    op: MulticoilMRIOperator
    y: Tensor


def _simulate(truth: Tensor, section: ResolutionRobustConfig, acceleration: float, seed: int):
    return simulate_multicoil(truth, num_coils=section.num_coils, acceleration=acceleration,
                              center_fraction=min(section.center_fraction, 1.0 / acceleration),
                              noise_std=section.noise_std, generator=torch.Generator().manual_seed(seed))


def synthetic_cases(profile: Profile, *, shifts: Sequence[float] | None = None, n: int | None = None) -> list[Case]:
    """The synthetic cases: ``n_volumes`` subjects x shifts x accelerations (module docstring)."""
    from ..data.brain import FOV_MM, synthetic_subject

    section = section_of(profile)
    cases = []
    for k, shift in enumerate(section.shifts if shifts is None else shifts):
        shape = subject_shape(shift * FIXED_VOXEL_MM)
        voxel = tuple(float(f) / s for f, s in zip(FOV_MM, shape))
        for i in range(section.n_volumes if n is None else n):
            subject = synthetic_subject(section.eval_seed + i, shape, noise_std=profile.mri.noise_std)
            truth = torch.from_numpy(subject[profile.mri.modality]).float()
            mask = torch.from_numpy(subject["brain_mask"])
            for a in section.accelerations:
                op, y = _simulate(truth, section, a, section.mask_seed + 1000 * k + 100 * i + int(round(a)))
                cases.append(Case("synthetic", f"subject{i}", float(shift), float(a), voxel, truth, mask, op, y))
    return cases


def _centre_crop(volume: Tensor, side: int) -> Tensor:
    starts = [max(0, (n - side) // 2) for n in volume.shape]
    return volume[tuple(slice(s, s + min(n, side)) for s, n in zip(starts, volume.shape))]


def real_scan_cases(profile: Profile) -> list[Case]:
    """The section's real scans (:func:`paperlib.data.real_mri.load_real_scan`) at their own voxel
    sizes: centre-cropped to ``real_max_side`` voxels per side, divided by their maximum (the
    magnitude images then lie in [0, 1]), with simulated coils at every acceleration."""
    from ..data.real_mri import load_real_scan

    section = section_of(profile)
    cases = []
    for i, name in enumerate(section.real_scans):
        scan = load_real_scan(name)
        image = _centre_crop(scan.image, section.real_max_side)
        mask = _centre_crop(scan.head_mask, section.real_max_side)
        if min(image.shape[:2]) < 4:
            raise InputValidationError(f"resolution_robust.real_scans: {name} has shape {tuple(image.shape)}, "
                                       "expected at least 4 voxels along D and H (the phase-encoding axes)")
        truth = (image / image.max()).contiguous()
        shift = max(scan.voxel_mm) / FIXED_VOXEL_MM
        for a in section.accelerations:
            op, y = _simulate(truth, section, a, section.mask_seed + 100 * i + int(round(a)) + 50_000)
            cases.append(Case("real", name, float(shift), float(a), tuple(scan.voxel_mm), truth, mask, op, y))
    return cases


# ------------------------------------------------------------------------------------ methods
def _variational(role: str, resample: bool):
    def run(case: Case, priors: dict, section: ResolutionRobustConfig, generator: torch.Generator) -> Tensor:
        recon = variational2d(case.op, case.y, priors[role], weight=section.weight, generator=generator,
                              iters=section.iters, step_size=section.step_size,
                              slices_per_iter=section.slices_per_iter, t_max=section.t_max,
                              voxel_size=case.voxel_mm, resample=resample, real=section.real)
        return recon.abs() if recon.is_complex() else recon.clamp(min=0)
    return run


METHODS: dict[str, Callable[[Case, dict, ResolutionRobustConfig, torch.Generator], Tensor]] = {
    "zero_filled": lambda c, p, s, g: c.op.conjugate_transpose(c.y).abs(),
    "variational_fixed": _variational("fixed", False),
    "variational_diverse": _variational("diverse", False),
    "variational_fixed_resampled": _variational("fixed", True),
    "cs": lambda c, p, s, g: cs_wavelet_multicoil(c.op, c.y, weight=s.cs_weight, iters=s.cs_iters,
                                                  levels=s.cs_levels, wavelet="haar").abs(),
    "dps": lambda c, p, s, g: posterior_sampling(c.op, c.y, p["fixed"], generator=g, num_steps=s.dps_steps,
                                                 guidance=s.dps_guidance).clamp(min=0),
    "dds_tv_z": lambda c, p, s, g: dds_tv_z(c.op, c.y, p["fixed"], generator=g, weight=s.dds_weight,
                                            num_steps=s.dds_steps).clamp(min=0),
}
#: methods that draw random numbers (one row per seed); the others run once
STOCHASTIC = {"variational_fixed", "variational_diverse", "variational_fixed_resampled", "dps", "dds_tv_z"}


def run_case(case: Case, methods: Sequence[str], priors: dict, section: ResolutionRobustConfig,
             *, keep: dict | None = None) -> list[dict]:
    """Per-case rows (:data:`paperlib.tables.CASE_COLUMNS` plus shift, acceleration and the scores)
    of ``methods`` on ``case``; ``keep`` (optional dict) receives the first seed's reconstructions
    under ``(case.dataset, case.case, shift, acceleration, method)``."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputValidationError(f"methods: unknown {unknown}; expected some of {sorted(METHODS)}")
    rows = []
    for method in methods:
        for seed in (section.seeds if method in STOCHASTIC else section.seeds[:1]):
            generator = torch.Generator().manual_seed(int(seed))
            m = measure(lambda: METHODS[method](case, priors, section, generator))
            recon = m.result.float()
            scores = volume_scores(recon, case.truth, head_mask=case.head_mask)
            rows.append({"modality": "mri", "dataset": f"{case.dataset} x{case.shift:g} R{case.acceleration:g}",
                         "case": case.case, "method": method, "seed": int(seed), "wall_time_s": m.wall_time_s,
                         "peak_rss_bytes": m.peak_rss_bytes, "source": case.dataset, "shift": case.shift,
                         "acceleration": case.acceleration, "voxel_mm": "x".join(f"{v:.3g}" for v in case.voxel_mm),
                         "ssim_whole": scores["ssim"], "ssim_head": scores["ssim_head"],
                         "psnr_volume": scores["psnr"]})
            if keep is not None and seed == section.seeds[0]:
                keep[(case.dataset, case.case, case.shift, case.acceleration, method)] = recon
    return rows


# ------------------------------------------------------------------------------------ findings
def _diff(rows: Sequence[dict], method: str, baseline: str, column: str) -> dict | None:
    """Paired ``method - baseline`` of ``column`` over the cases of ``rows`` (None if either is absent)."""
    from ..tables import paired_differences

    present = {r["method"] for r in rows}
    if method not in present or baseline not in present:
        return None
    d, = paired_differences(rows, method, baseline, [column], by=())
    return {"mean": d[f"{column}_mean"], "low": d[f"{column}_ci_low"], "high": d[f"{column}_ci_high"], "n": d["n"]}


def _fmt(d: dict | None, unit: str) -> str:
    if d is None:
        return "not run"
    interval = (f" [{d['low']:+.3f}, {d['high']:+.3f}]" if math.isfinite(d["low"]) else " [no interval: one case]")
    return f"{d['mean']:+.3f}{unit}{interval} (n = {d['n']})"


def _select(rows, **where) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in where.items())]


def findings(rows: Sequence[dict], section: ResolutionRobustConfig) -> list[dict]:
    """The paper's findings (1)-(4) computed from the synthetic rows (module docstring).

    Every difference is paired over the cases (mean, 95 % bootstrap interval, n); PSNR in dB.
    Criteria (direction only): (1) the variational method (fixed prior, at ``methods_shift``) minus
    each of DPS, DDS + TV-z and CS is > 0 in PSNR at every acceleration; (2) the fixed prior's
    deficit against the diverse one, ``fixed - diverse`` at the shifts > 1, is < 0 and larger
    (more negative) at the largest shift than at the smallest and at the highest acceleration than
    at the lowest; (3) ``diverse - fixed`` at shift 1 is not below 0 beyond its interval (no cost
    at the training voxel) and > 0 at every shift > 1; (4) ``fixed_resampled - fixed`` > 0 at every
    shift > 1, and ``fixed_resampled - diverse`` is within 0.5 dB of 0 or above (the gap closed).

    Returns
    -------
    list of ``{"finding", "reproduced", "sentence", "numbers"}``.
    """
    rows = [r for r in rows if r["source"] == "synthetic"]
    accs = sorted({r["acceleration"] for r in rows})
    big = sorted(s for s in {r["shift"] for r in rows} if s > 1)
    col = "psnr_volume"
    out = []

    # (1) the method against posterior sampling, DDS + TV-z and compressive sensing
    numbers, ok = {}, True
    for a in accs:
        sel = _select(rows, shift=section.methods_shift, acceleration=a)
        for base in ("dps", "dds_tv_z", "cs"):
            d = _diff(sel, "variational_fixed", base, col)
            numbers[f"R{a:g} variational - {base}"] = d
            ok &= d is not None and d["mean"] > 0
    out.append({"finding": 1, "reproduced": ok, "numbers": numbers, "sentence": (
        f"(1) The variational method beats posterior sampling, DDS + TV-z and CS at shift x{section.methods_shift:g}: "
        f"{'REPRODUCED' if ok else 'NOT reproduced'} in direction (PSNR differences, method - baseline: "
        + "; ".join(f"{k} {_fmt(v, ' dB')}" for k, v in numbers.items()) + ").")})

    # (2) the fixed prior degrades off its voxel, more for larger shifts and higher accelerations
    numbers = {f"R{a:g} x{s:g} fixed - diverse": _diff(_select(rows, shift=s, acceleration=a), "variational_fixed",
                                                      "variational_diverse", col) for a in accs for s in big}
    vals = {k: v["mean"] for k, v in numbers.items() if v is not None}
    ok = bool(big) and len(vals) == len(numbers) and all(v < 0 for v in vals.values())
    if ok and len(big) > 1:
        ok &= all(vals[f"R{a:g} x{big[-1]:g} fixed - diverse"] < vals[f"R{a:g} x{big[0]:g} fixed - diverse"]
                  for a in accs)
    if ok and len(accs) > 1:
        ok &= all(vals[f"R{accs[-1]:g} x{s:g} fixed - diverse"] < vals[f"R{accs[0]:g} x{s:g} fixed - diverse"]
                  for s in big)
    out.append({"finding": 2, "reproduced": ok, "numbers": numbers, "sentence": (
        "(2) A prior trained at one voxel size degrades when the reconstruction voxel differs, more for larger "
        f"shifts and higher accelerations: {'REPRODUCED' if ok else 'NOT reproduced'} in direction (PSNR of the "
        "fixed-voxel prior minus the diverse-voxel prior on the same cases: "
        + "; ".join(f"{k} {_fmt(v, ' dB')}" for k, v in numbers.items()) + ").")})

    # (3) diverse training removes the drop without costing accuracy
    same = {f"R{a:g} x1 diverse - fixed": _diff(_select(rows, shift=1.0, acceleration=a), "variational_diverse",
                                                "variational_fixed", col) for a in accs}
    off = {f"R{a:g} x{s:g} diverse - fixed": _diff(_select(rows, shift=s, acceleration=a), "variational_diverse",
                                                  "variational_fixed", col) for a in accs for s in big}
    ok = (all(v is not None and (v["mean"] >= 0 or not (v["high"] < 0)) for v in same.values())
          and bool(off) and all(v is not None and v["mean"] > 0 for v in off.values()))
    out.append({"finding": 3, "reproduced": ok, "numbers": {**same, **off}, "sentence": (
        "(3) Training on diverse voxel sizes removes the drop without costing accuracy: "
        f"{'REPRODUCED' if ok else 'NOT reproduced'} in direction (PSNR, diverse - fixed, at the training voxel: "
        + "; ".join(f"{k} {_fmt(v, ' dB')}" for k, v in same.items()) + "; off it: "
        + "; ".join(f"{k} {_fmt(v, ' dB')}" for k, v in off.items()) + ").")})

    # (4) trilinear resampling closes the gap for larger reconstruction voxels
    gain = {f"R{a:g} x{s:g} resampled - fixed": _diff(_select(rows, shift=s, acceleration=a),
                                                      "variational_fixed_resampled", "variational_fixed", col)
            for a in accs for s in big}
    gap = {f"R{a:g} x{s:g} resampled - diverse": _diff(_select(rows, shift=s, acceleration=a),
                                                       "variational_fixed_resampled", "variational_diverse", col)
           for a in accs for s in big}
    ok = (bool(gain) and all(v is not None and v["mean"] > 0 for v in gain.values())
          and all(v is not None and v["mean"] > -0.5 for v in gap.values()))
    caveat = ("" if out[1]["reproduced"] else " Caveat: (2) found no degradation of the fixed prior to close, so a "
              "gain from resampling here is not evidence that a resolution gap was closed.")
    out.append({"finding": 4, "reproduced": ok, "numbers": {**gain, **gap}, "sentence": (
        "(4) For reconstruction voxels larger than the training voxel, trilinear resampling closes the gap: "
        f"{'REPRODUCED' if ok else 'NOT reproduced'} in direction (PSNR, fixed prior with resampling - without: "
        + "; ".join(f"{k} {_fmt(v, ' dB')}" for k, v in gain.items()) + "; with resampling - diverse prior "
        "(closed if > -0.5 dB): " + "; ".join(f"{k} {_fmt(v, ' dB')}" for k, v in gap.items()) + ")." + caveat)})
    return out
