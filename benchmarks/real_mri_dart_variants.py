"""Is DART's plug-and-play form on real scans limited by its loop or by its prior? Variants of the loop and its start on the *tuning* scans.

DART on real scans (``real_mri.diffusion.dart``) is the plug-and-play form from the TV image with
DPIR's periodical self-ensemble and a hard data-consistency step (Eq. 4, step size 1) after every
denoising step; the reconstruction is the output of the last physics step. Issue 15 asks for the
data-consistency weight and the last step to be chosen on validation data: the validation grid
chose them for the paper's noisy chain only (``tuned_on``: step size 0.7 there). This script runs
the profile's setting and variants of the loop around the same prior, on the tuning scans at every
acceleration of the ``real_mri`` section (the cases of ``python -m paperlib.validation --modality
real_mri``; the held-out scans are never touched):

* ``profile``: the profile's DART (:func:`paperlib.recon.dart.dart`, as ``tab_real_mri`` runs it; step size 1);
* ``step size 0.8`` / ``step size 0.6``: soft data consistency ``x0 + λ A^H (y - A x0)`` at every step;
* ``last step: denoiser output``: the profile's run, returning the last denoised estimate instead
  of its data-consistent correction;
* ``mean of the last 8 iterates``: the profile's run, the mean of its last 8 corrected estimates
  (one per in-plane orientation of the self-ensemble: the whole group instead of the last element);
* ``16 orientations (depth flip)``: the self-ensemble's 8 in-plane orientations, each also with the
  depth reversed on every second cycle (which also moves the depth windows' seams);
* ``non-negative after each physics step``: the corrected estimate projected onto ``x >= 0`` every
  step (the final output is clamped in every variant, :func:`paperlib.experiments.real_mri.valid_magnitude`);
* ``start: TV weight 0.001`` / ``0.005``: the start, the TV image, at another weight than the TV
  baseline's (``real_mri.baselines.tv_weight``, 0.002, which the start has used untuned).

Every variant uses the library's :func:`~paperlib.recon.dart.dart` unchanged; the last four observe
or wrap its operator and prior (:class:`Recorder`, :func:`depth_flipping`). Reported per case and as
the mean over the cases with the criterion of the ``tuned_on`` texts (mean of whole-image and head
SSIM), each variant minus the profile. Writes ``benchmarks/results/real_mri_dart_variants.{csv,md}``::

    python benchmarks/real_mri_dart_variants.py --profile default

(``--report-only`` re-renders the report from the CSV.)
"""
from __future__ import annotations

import itertools
import time

import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.experiments.real_mri import (REAL_MRI, dart_init, general_prior, real_cases, scaled_measurement,
                                           valid_magnitude)
from paperlib.provenance import git_commit
from paperlib.recon.dart import dart
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)

PROFILE = "profile"
#: variant -> (data-consistency step size, ``None`` = the profile's; depth flip; non-negative after each step;
#: the TV weight of the start, ``None`` = the profile's)
RUNS = {PROFILE: (None, False, False, None), "step size 0.8": (0.8, False, False, None),
        "step size 0.6": (0.6, False, False, None), "16 orientations (depth flip)": (1.0, True, False, None),
        "non-negative after each physics step": (1.0, False, True, None),
        "start: TV weight 0.001": (None, False, False, 0.001), "start: TV weight 0.005": (None, False, False, 0.005)}
#: variants read off the profile's run (:class:`Recorder`)
OBSERVED = ("last step: denoiser output", "mean of the last 8 iterates")
#: in-plane orientations of DART's self-ensemble (:func:`paperlib.recon.dart.in_plane_transform`)
ORIENTATIONS = 8


class Recorder:
    """``operator`` as DART sees it, keeping the last ``keep`` inputs (denoised estimates) and outputs
    (corrected estimates) of its bound physics step; ``nonnegative`` projects each output onto ``x >= 0``.
    Everything else is the operator's own (attribute access is delegated)."""

    def __init__(self, operator, keep: int = ORIENTATIONS, nonnegative: bool = False) -> None:
        self._operator, self.keep, self.nonnegative = operator, keep, nonnegative
        self.inputs: list[torch.Tensor] = []
        self.outputs: list[torch.Tensor] = []

    def __getattr__(self, name: str):  # only for names the recorder does not have itself
        if name == "_operator":  # not set yet (e.g. while copying): no recursion
            raise AttributeError(name)
        return getattr(self._operator, name)

    def bind_physics_step(self, y, **kwargs):
        step = self._operator.bind_physics_step(y, **kwargs)

        def recorded(x: torch.Tensor) -> torch.Tensor:
            out = step(x)
            if self.nonnegative:
                out = out.clamp_min(0)
            self.inputs = [*self.inputs, x][-self.keep:]
            self.outputs = [*self.outputs, out][-self.keep:]
            return out

        return recorded


def depth_flipping(prior):
    """``prior`` whose ``denoise`` reverses the depth (and back) on every second cycle of
    :data:`ORIENTATIONS` calls: with DART's in-plane self-ensemble, 16 orientations in turn."""
    calls = itertools.count()
    denoise = prior.denoise

    def flipped(x_t: torch.Tensor, t: int) -> torch.Tensor:
        if (next(calls) // ORIENTATIONS) % 2 == 0:
            return denoise(x_t, t)
        return denoise(x_t.flip(-3), t).flip(-3)

    prior.denoise = flipped  # an instance attribute: this prior object only
    return prior


def run_case(profile, case, step_size: float | None, depth_flip: bool, nonnegative: bool,
             start_tv_weight: float | None = None) -> tuple[dict, float]:
    """The reconstructions of one run (scan units): ``{"x": volume}``, plus the :data:`OBSERVED`
    variants for the profile's setting (:data:`RUNS`), and the run's seconds."""
    d = profile.real_mri.diffusion.dart
    setting = (step_size, depth_flip, nonnegative, start_tv_weight)
    step_size = d.step_size if step_size is None else step_size
    ys, s = scaled_measurement(case.operator, case.kspace)
    op = Recorder(case.operator, nonnegative=nonnegative)
    prior = general_prior(profile)
    prior = depth_flipping(prior) if depth_flip else prior
    start = time.perf_counter()
    x = dart(prior, op, ys, generator=torch.Generator().manual_seed(0), num_steps=d.steps,
             init=dart_init(case.operator, ys, profile, tv_weight=start_tv_weight), physics_steps=d.physics_steps,
             step_kwargs={**d.step_kwargs(), "step_size": step_size}, levels=d.levels(),
             self_ensemble=d.self_ensemble)
    seconds = time.perf_counter() - start
    out = {"x": valid_magnitude(x, s)}
    if setting == RUNS[PROFILE]:
        out[OBSERVED[0]] = valid_magnitude(op.inputs[-1], s)
        out[OBSERVED[1]] = valid_magnitude(torch.stack(op.outputs).mean(0), s)
    return out, seconds


def run(profile_name: str, progress: bool = True) -> list[dict]:
    """One row per (tuning case, variant)."""
    profile = load_profile(profile_name)
    d = profile.real_mri.diffusion.dart
    if d.levels() is None or d.physics_steps != 1 or d.init_from != "tv":
        raise SystemExit(f"profile {profile_name}: real_mri.diffusion.dart is not the plug-and-play form from the TV "
                         f"image with one physics step per denoising step (levels {d.levels()}, physics_steps "
                         f"{d.physics_steps}, init_from {d.init_from!r}): the observed variants read off the recorded "
                         "steps, and the start's variants change the TV image's weight")
    cases = real_cases(profile, role="tuning")
    commit = git_commit()
    rows = []
    for case, (variant, setting) in tqdm(list(itertools.product(cases, RUNS.items())), desc="DART variants",
                                         disable=not progress):
        volumes, seconds = run_case(profile, case, *setting)
        for name, volume in volumes.items():
            score = REAL_MRI.score(volume, case)
            rows.append({"case": case.case_id, "variant": variant if name == "x" else name,
                         "ssim_whole": score["ssim_whole"], "ssim_head": score["ssim_head"],
                         "psnr_volume": score["psnr_volume"], "acceleration": case.acceleration,
                         "run_s": seconds, "checkpoint": profile.real_mri.checkpoint, "git_commit": commit})
    return rows


def report(rows: list[dict], profile: str, threads: int) -> str:
    """Markdown: SSIM (whole / head) per case and variant, then the means, the criterion and each
    variant minus the profile's setting (mean and the number of cases where it is lower)."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    cases = list(dict.fromkeys(r["case"] for r in rows))
    by = {(r["case"], r["variant"]): r for r in rows}
    first = rows[0]
    lines = [f"# DART's loop on the tuning real scans: the profile's setting and variants (profile `{profile}`)", "",
             f"Commit {first.get('git_commit') or git_commit()}; prior {first['checkpoint']}; {threads} thread(s); "
             "SSIM whole image / inside the head mask, as in tab_real_mri; criterion as in the tuned_on texts "
             "(mean of the two). Held-out scans never touched.", "",
             tables.markdown_table(["Case", *variants],
                                   [[case, *(f"{float(by[case, v]['ssim_whole']):.4f} / {float(by[case, v]['ssim_head']):.4f}"
                                             for v in variants)] for case in cases]).rstrip("\n")]

    def criterion(case: str, v: str) -> float:
        return (float(by[case, v]["ssim_whole"]) + float(by[case, v]["ssim_head"])) / 2

    table = []
    for v in variants:
        whole = sum(float(by[c, v]["ssim_whole"]) for c in cases) / len(cases)
        head = sum(float(by[c, v]["ssim_head"]) for c in cases) / len(cases)
        diffs = [criterion(c, v) - criterion(c, PROFILE) for c in cases]
        table.append([v, str(len(cases)), f"{whole:.6f}", f"{head:.6f}", f"{(whole + head) / 2:.6f}",
                      "–" if v == PROFILE else f"{sum(diffs) / len(diffs):+.6f}",
                      "–" if v == PROFILE else f"{sum(d < 0 for d in diffs)} of {len(cases)}"])
    lines += ["", tables.markdown_table(["Variant", "n cases", "whole SSIM", "head SSIM", "criterion",
                                         "criterion minus the profile's", "cases below the profile's"], table).rstrip("\n")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--report-only", action="store_true", help="re-render the report from --out's CSV, run nothing")
    args = parse_args(p, argv)
    if not args.report_only:
        tables.write_csv_rows(run(args.profile), args.out)
    rows = tables.read_csv_rows(args.out)  # the report from the CSV as written, so that it re-renders
    write_summary(args.out, report(rows, args.profile, args.threads))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
