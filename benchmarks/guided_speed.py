"""DART, DRIFT and the projection method per volume: before / after the sampling speed-up, at equal SSIM.

"Before" is how DART and DRIFT ran until 2026-12: float32 arithmetic, the MRI DART sampler at 80 steps
(70 since 2026-12-02, :data:`BEFORE_SETTINGS`), contiguous (N, C, H, W)
activations, the group networks one after the other, the 4D-STEM physics step with its gradient by
autograd through :meth:`~paperlib.physics.multislice.MultisliceOperator.loss` and the intensities
checked at every step (:func:`autograd_physics_step`), its steps one after the other (DRIFT: K = 100;
DART: 20 diffusion steps), and glibc's default allocator. "After" is
now: the profile's ``precision`` (``bfloat16`` weights and activations in the default profile),
channels-last activations (:attr:`paperlib.diffusion.unet3d.UNet3D.channels_last`), the group
networks side by side (:attr:`paperlib.diffusion.partition.PartitionedPrior.parallel_groups`), the
hand-written adjoint of the multislice model bound to the measurement
(:meth:`~paperlib.physics.multislice.MultisliceOperator.bind_physics_step`), the 4D-STEM physics
steps with momentum (DRIFT: K = 40; DART: 18 diffusion steps;
:func:`paperlib.recon.dart.accelerated_steps`) and the allocator
thresholds that ``import paperlib`` sets (:mod:`paperlib._malloc`). Each case and setting runs in a process
of its own (the allocator is per process: ``PAPERLIB_MALLOC=default`` for "before"), which first
runs the suite's first method once untimed (warm-up: kernels, FFT plans, bfloat16 copies); the two
settings reconstruct the same cases with the same seeds, alternately case by case (so that a
change in machine load hits both), on splits that no reported table uses: the MRI validation
volumes, the 4D-STEM validation crystals and the real-scan tuning scans. Each row is one
reconstruction (its SSIM, wall time and the seconds spent in the operator's physics step); the
summary gives, per method, the mean time of each setting, the ratio, the physics step's share of
the time after, and the largest SSIM change over the cases.

This machine's speed varies from run to run by more than 10 % (the same 4D-STEM code gave 2.36x and
2.02x in two runs), so ``--repeats R`` measures every case and setting ``R`` times, alternating
before / after; a case's time in a setting is the median of its repeats (:func:`case_times`), and the
summary also gives the speed-up of each repeat alone (mean time before / mean time after over the
cases), whose minimum is the speed-up that every repeat reached. ``--suites`` with ``--keep`` reruns
some suites and keeps the other suites' rows of the existing CSV (each row records when it was measured).

    python benchmarks/guided_speed.py --profile default --threads 2 --repeats 3 --out benchmarks/results/guided_speed.csv

Results of the committed run: ``benchmarks/results/guided_speed.csv`` and its summary ``guided_speed.md``
(a README block copies it).
"""
from __future__ import annotations

import csv
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from paperlib.config import load_profile
from paperlib.diffusion.partition import PartitionedPrior
from paperlib.diffusion.unet3d import UNet3D
from paperlib.physics.multislice import MultisliceOperator, soft_threshold
from paperlib.experiments.runner import MODALITIES, run_cases
from paperlib.io import atomic_write_text
from paperlib.tables import write_csv_rows
from _cli import bench_parser  # a sibling script (benchmarks/)

SETTINGS = ("before", "after")
#: (label, modality, profile section of the guided methods, methods)
SUITES = (
    ("mri", "mri", "mri_diffusion", ("dart", "drift", "projection")),
    ("stem", "stem", "stem_diffusion", ("dart", "drift")),
    ("real_mri", "real_mri", None, ("dart",)),
)


#: settings per method that differ "before": the MRI DART sampler took 80 steps until 2026-12-02 (70 since,
#: chosen on the validation split: ``mri_diffusion.tuned_on`` of the default profile); the 4D-STEM physics
#: steps ran one after the other until 2026-12-02 and DRIFT took K = 100 of them (since: with momentum, K = 40,
#: chosen on validation crystals by ``benchmarks/stem_momentum.py``), and the 4D-STEM DART took 20 diffusion
#: steps (18 since 2026-12-02, with momentum, chosen by the same script)
BEFORE_SETTINGS = {"mri_diffusion": {"dart": {"steps": 80}},
                   "stem_diffusion": {"dart": {"momentum": None, "steps": 20},
                                      "drift": {"momentum": None, "physics_steps": 100}}}


def profile_for(profile, section: str | None, setting: str):
    """``profile`` as it ran ``before`` (the guided section's precision at float32, the settings of
    :data:`BEFORE_SETTINGS`), unchanged for ``after``."""
    if setting == "after":
        return profile
    if section is None:  # real scans: profile.real_mri.diffusion
        rm = profile.real_mri
        return profile.model_copy(update={"real_mri": rm.model_copy(update={
            "diffusion": rm.diffusion.model_copy(update={"precision": "float32"})})})
    sec = getattr(profile, section)
    update = {"precision": "float32"}
    for method, settings in BEFORE_SETTINGS.get(section, {}).items():
        update[method] = getattr(sec, method).model_copy(update=settings)
    return profile.model_copy(update={section: sec.model_copy(update=update)})


def suite_cases(profile, modality: str, n: int):
    if modality == "real_mri":
        from paperlib.experiments.real_mri import REAL_MRI, real_cases

        return REAL_MRI, real_cases(profile, "tuning", n)
    spec = MODALITIES[modality]
    return spec, spec.cases(profile, "val", n)


def autograd_gradient(op, V, intensities, *, index=None, likelihood="amplitude"):
    """``MultisliceOperator.gradient`` as it was before the hand-written adjoint: autograd through
    :meth:`~paperlib.physics.multislice.MultisliceOperator.loss` (the "before" setting)."""
    V = op.check_potential(V).detach().requires_grad_(True)
    with torch.enable_grad():
        value = op.loss(V, intensities, index=index, likelihood=likelihood)
        (grad,) = torch.autograd.grad(value, V)
    return value.detach(), grad


def autograd_physics_step(op, V, intensities, *, step_size=None, threshold=0.0, nonnegative=False, support=None,
                          likelihood="amplitude"):
    """``MultisliceOperator.physics_step`` as it was before the hand-written adjoint and the bound step
    (the "before" setting): intensities checked every step, the gradient by autograd
    (:func:`autograd_gradient`, on the same data term), then the same step size, soft threshold and
    support as now."""
    _, grad = autograd_gradient(op, V, intensities, likelihood=likelihood)
    free = V.shape[0] if support is None else int(torch.as_tensor(support).sum())
    mu = float(step_size) if step_size is not None else op.default_step_size * V.shape[0] / free
    V = soft_threshold(op.check_potential(V).detach() - mu * grad, float(threshold), nonnegative=nonnegative)
    if support is not None:
        V[~torch.as_tensor(support)] = 0
    return V


class PhysicsTimer:
    """Wraps ``operator.physics_step`` and, where the operator has one, the step that
    ``bind_physics_step`` returns (instance attributes shadowing the methods), and adds up the
    seconds spent in them: the physics share of a reconstruction's wall time."""

    def __init__(self, operator) -> None:
        self.operator, self.total = operator, 0.0
        self._step = operator.physics_step
        operator.physics_step = self
        self._bind = getattr(operator, "bind_physics_step", None)
        if self._bind is not None:
            operator.bind_physics_step = self._bound

    def _timed(self, step, *args, **kwargs):
        t0 = time.perf_counter()
        try:
            return step(*args, **kwargs)
        finally:
            self.total += time.perf_counter() - t0

    def __call__(self, *args, **kwargs):
        return self._timed(self._step, *args, **kwargs)

    def _bound(self, *args, **kwargs):
        step = self._bind(*args, **kwargs)
        return lambda x: self._timed(step, x)

    def remove(self) -> None:
        del self.operator.physics_step
        if self._bind is not None:
            del self.operator.bind_physics_step


def recorded_header(md: Path) -> str | None:
    """The machine and settings line of a written summary (its first note, up to ". Before:"), or None."""
    notes = [line for line in md.read_text().splitlines() if line.startswith("- ")] if md.is_file() else []
    return notes[0][2:].split(". Before:")[0] if notes else None


def case_times(rows: list[dict], suite: str, method: str, setting: str) -> dict[str, float]:
    """Per case, the median wall time of its repeats in ``setting`` (rows as written to the CSV; rows
    without a ``repeat`` column count as one repeat)."""
    times: dict[str, list[float]] = {}
    for r in rows:
        if (r["suite"], r["method"], r["setting"]) == (suite, method, setting):
            times.setdefault(r["case"], []).append(float(r["wall_time_s"]))
    return {case: statistics.median(v) for case, v in times.items()}


def per_repeat_speedups(rows: list[dict], suite: str, method: str) -> list[float]:
    """Each repeat's speed-up alone: mean time before / mean time after over the cases of that repeat."""
    out = []
    for rep in sorted({r.get("repeat") or "0" for r in rows}, key=int):
        pick = {s: [float(r["wall_time_s"]) for r in rows if (r["suite"], r["method"], r["setting"]) ==
                    (suite, method, s) and (r.get("repeat") or "0") == rep] for s in SETTINGS}
        if pick["before"] and pick["after"]:
            out.append((sum(pick["before"]) / len(pick["before"])) / (sum(pick["after"]) / len(pick["after"])))
    return out


def setting_means(rows: list[dict], suite: str, method: str) -> dict[str, float] | None:
    """Mean over the cases of each setting's per-case median time (:func:`case_times`) and of the mean
    SSIM, or None when a setting has no row."""
    out = {}
    for s in SETTINGS:
        times = case_times(rows, suite, method, s)
        if not times:
            return None
        ssim = [float(r["ssim"]) for r in rows if (r["suite"], r["method"], r["setting"]) == (suite, method, s)]
        out[s] = sum(times.values()) / len(times)
        out[f"ssim_{s}"] = sum(ssim) / len(ssim)
    return out


def summary(rows: list[dict], header: str) -> str:
    """Markdown: per suite and method, mean over the cases of the median time of each setting, the
    speed-up, the speed-ups of the cases and of the repeats alone, mean SSIM of each setting and the
    largest SSIM change of one case and repeat (rows as written to the CSV)."""
    lines = ["# DART, DRIFT and the projection method: before / after the sampling speed-up", "",
             "| Suite | Method | n cases | Repeats | Before s | After s | Speed-up | Per-case speed-up, min - max | "
             "Per-repeat speed-up, min - max | Physics share after | "
             "SSIM before | SSIM after | max abs SSIM change | Measured |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, _, _, methods in SUITES:
        for method in methods:
            means = setting_means(rows, label, method)
            if means is None:
                continue
            tb, ta = means["before"], means["after"]
            before, after = (case_times(rows, label, method, s) for s in SETTINGS)
            per_case = [before[c] / after[c] for c in after]
            per_rep = per_repeat_speedups(rows, label, method)
            pair = {s: [r for r in rows if (r["suite"], r["method"], r["setting"]) == (label, method, s)]
                    for s in SETTINGS}
            dmax = max(abs(float(a["ssim"]) - float(b["ssim"])) for a, b in zip(pair["after"], pair["before"]))
            phys = sum(float(r.get("physics_s") or "nan") for r in pair["after"]) / sum(
                float(r["wall_time_s"]) for r in pair["after"])
            when = ", ".join(sorted({r.get("measured") or "not recorded" for r in pair["after"]}))
            lines.append(f"| {label} | {method} | {len(after)} | {len(per_rep)} | {tb:.2f} | {ta:.2f} | "
                         f"{tb / ta:.2f}x | {min(per_case):.2f}x - {max(per_case):.2f}x | "
                         f"{min(per_rep):.2f}x - {max(per_rep):.2f}x | {phys:.2f} | {means['ssim_before']:.4f} | "
                         f"{means['ssim_after']:.4f} | {dmax:.4f} | {when} |")
    lines += ["", f"- {header}. Before: float32, MRI DART at 80 steps (70 after), contiguous activations, "
              "group networks one after the other, "
              "4D-STEM physics step by autograd (intensities checked every step), its steps one after the other "
              "(DRIFT: K = 100; DART: 20 diffusion steps), glibc's default allocator; after: the "
              "profile's precision (bfloat16 weights and activations), channels-last activations, group networks side "
              "by side, the hand-written multislice adjoint bound to its measurement, the 4D-STEM physics steps "
              "with momentum (DRIFT: K = 40; DART: 18 diffusion steps), the allocator thresholds of "
              "paperlib._malloc. Each case and setting in a "
              "process of its own, timed after one untimed warm-up run. SSIM: whole-image (MRI), projection (4D-STEM).",
              "- Times: per case the median of its repeats (before and after alternate within a repeat), then the "
              "mean over the cases; per-repeat speed-up: each repeat alone, mean time before / mean time after.",
              "- MRI suites: validation volumes / tuning scans; 4D-STEM: validation crystals (no test case).", ""]
    return "\n".join(lines)


def run_one(profile_name: str, label: str, index: int, setting: str, threads: int) -> list[dict]:
    """Every method of suite ``label`` on its case ``index`` in ``setting``, in this process (whose
    allocator the parent set: ``PAPERLIB_MALLOC``); the rows of the CSV."""
    import paperlib._malloc

    want = setting == "after"
    if paperlib._malloc.applied() is not want:
        raise RuntimeError(f"{setting}: expected the allocator tuned={want} (PAPERLIB_MALLOC), got the other")
    torch.set_num_threads(threads)
    profile = load_profile(profile_name)
    _, modality, section, methods = next(s for s in SUITES if s[0] == label)
    spec, cases = suite_cases(profile, modality, index + 1)
    case, rows = cases[index], []
    for i, method in enumerate((methods[0], *methods)):
        warm_up = i == 0  # warms this process up (kernels, FFT plans, the bfloat16 copies): not kept
        if not want and isinstance(case.operator, MultisliceOperator):
            # before: every physics step checks the intensities and takes its gradient by autograd
            case.operator.bind_physics_step = None
            case.operator.physics_step = functools.partial(autograd_physics_step, case.operator)
        timer = PhysicsTimer(case.operator)
        UNet3D.channels_last = PartitionedPrior.parallel_groups = want
        try:
            (r,), _ = run_cases(profile_for(profile, section, setting), spec, [case], [method],
                                seeds=(0,), progress=False)
        finally:
            UNet3D.channels_last = PartitionedPrior.parallel_groups = True
            timer.remove()
            vars(case.operator).pop("physics_step", None)
            vars(case.operator).pop("bind_physics_step", None)
        if warm_up:
            continue
        score = r.get("ssim_whole", r.get("ssim_projected"))
        rows.append({"suite": label, "setting": setting, "case": r["case"], "method": r["method"],
                     "ssim": score, "ssim_slice_mean": r.get("ssim_slice_mean", ""),
                     "wall_time_s": r["wall_time_s"], "physics_s": timer.total})
        print(f"{label:8s} {setting:6s} {r['case']:24s} {r['method']:10s} ssim {score:.4f} "
              f"{r['wall_time_s']:6.2f} s (physics {timer.total:.2f} s)", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, __file__)
    ap.add_argument("--n", type=int, default=2, help="cases per suite")
    ap.add_argument("--suites", nargs="+", default=[s[0] for s in SUITES])
    ap.add_argument("--repeats", type=int, default=3, help="runs of every case and setting (median per case)")
    ap.add_argument("--keep", action="store_true", help="keep the other suites' rows of the existing --out CSV")
    ap.add_argument("--summarise", action="store_true", help="only rewrite the .md summary from the CSV")
    ap.add_argument("--one", nargs=3, metavar=("SUITE", "INDEX", "SETTING"),
                    help="(internal) run one case and setting here, print its rows as JSON")
    args = ap.parse_args(argv)
    if args.one:
        label, index, setting = args.one
        print(json.dumps(run_one(args.profile, label, int(index), setting, args.threads)))
        return 0
    if args.summarise:
        rows = list(csv.DictReader(open(args.out)))
        md = args.out.with_suffix(".md")
        atomic_write_text(md, summary(rows, recorded_header(md) or f"profile {args.profile}"))
        return 0
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    rows = []
    if args.keep and args.out.exists():  # the other suites' rows of the existing CSV
        committed = subprocess.run(["git", "log", "-1", "--format=%cd", "--date=format:%Y-%m-%d %H:%M",
                                    "--", str(args.out)], capture_output=True, text=True).stdout.strip()
        rows = [{**r, "repeat": r.get("repeat") or 0, "measured": r.get("measured") or f"committed {committed}"}
                for r in csv.DictReader(open(args.out)) if r["suite"] not in args.suites]
    for label, *_ in SUITES:
        if label not in args.suites:
            continue
        for index in range(args.n):
            for repeat in range(args.repeats):
                for setting in SETTINGS:
                    env = dict(os.environ, PAPERLIB_MALLOC="tuned" if setting == "after" else "default")
                    got = subprocess.run([sys.executable, __file__, "--profile", args.profile, "--threads",
                                          str(args.threads), "--one", label, str(index), setting],
                                         env=env, stdout=subprocess.PIPE, text=True, check=True)
                    rows += [{**r, "repeat": repeat, "measured": measured}
                             for r in json.loads(got.stdout.strip().splitlines()[-1])]
    write_csv_rows(rows, args.out)
    header = (f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, "
              f"profile {args.profile}, {args.n} cases per suite, seed 0")
    md = summary(rows, header)
    print(md)
    atomic_write_text(args.out.with_suffix(".md"), md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
