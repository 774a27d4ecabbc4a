"""4D-STEM DART and DRIFT with their physics steps one after the other or with momentum, on validation crystals.

Issue 19 asks DART and DRIFT to be 2x faster at equal SSIM. On the 4D-STEM crystals their time is mostly
physics steps (DART: 5 after each of 20 denoising steps; DRIFT: K = 100 after the selection), and the
steps are plain proximal-gradient steps at the operator's Gauss-Newton step size, which converge slowly
(a first look on validation crystals had DRIFT's SSIM still rising from K = 50 to 75 to 100). With momentum
(``stem_diffusion.<method>.momentum``, :func:`paperlib.recon.dart.accelerated_steps`: FISTA with
adaptive restart) the same data fit takes fewer steps. This script runs each ``--settings`` entry
``method:plain|momentum:physics_steps`` on the first ``--n`` **validation** crystals made as the test
tables' are (``paperlib.experiments.stem.eval_cases(split="val")``: abTEM, frozen phonons, Poisson noise
at the profile's dose, random depth, tilt; never a test crystal), everything else as the profile sets
it, and pairs every setting per crystal with the method's first setting (the reference: the profile's
plain steps until 2026-12-02), per-slice and projection SSIM, mean [95 % bootstrap interval over the
crystals] (:func:`paperlib.tables.paired_differences`), and the wall time per crystal.

Criterion, stated before the run: per method, the fewest physics steps with momentum whose mean
per-slice and mean projection SSIM differences to the reference are both >= 0; where none is, the
method keeps its steps.

Second question (DART, after the first): momentum put DART's 5 steps above the plain ones in both
scores, so the same DART may take fewer *diffusion* steps at equal SSIM (each diffusion step carries its
5 physics steps, 85 % of DART's time). A setting's optional fourth field sets them
(``dart:momentum:5:18``: 18 diffusion steps; without it the profile's). Criterion, the same: the fewest
diffusion steps with momentum x 5 whose mean per-slice and projection SSIM differences to the reference
(plain x 5 at the profile's 20 steps until then) are both >= 0. (A prototype of this run on the same 8
crystals, before this option, gave 18 steps +0.0006 / +0.0020 and 16 steps -0.0007 / +0.0011.)

Writes ``benchmarks/results/stem_momentum.csv`` (per crystal) and ``stem_momentum.md``.

    python benchmarks/stem_momentum.py --profile default --n 8 --settings dart:plain:5:20 dart:momentum:4:20 \\
        dart:momentum:5:20 dart:momentum:5:18 dart:momentum:5:16 drift:plain:100 drift:momentum:30 \\
        drift:momentum:40 drift:momentum:60
"""
from __future__ import annotations

import sys

import torch

from paperlib import tables
from paperlib.config import load_profile
from paperlib.experiments.runner import run_cases
from paperlib.experiments.stem import eval_cases
from stem_likelihood import SCORES, base_parser, code_label, paired_cell, write_results  # a sibling script

KINDS = {"plain": False, "momentum": True}


Setting = tuple[str, str, int, "int | None"]


def parse_setting(text: str) -> Setting:
    """``"drift:momentum:40"`` -> ``("drift", "momentum", 40, None)``; ``"dart:momentum:5:18"`` ->
    ``("dart", "momentum", 5, 18)`` (18 diffusion steps); a bad entry is named."""
    parts = text.split(":")
    if (len(parts) not in (3, 4) or parts[0] not in ("dart", "drift") or parts[1] not in KINDS
            or not all(p.isdigit() for p in parts[2:]) or (len(parts) == 4 and int(parts[3]) < 1)):
        raise SystemExit(f"--settings: expected method:plain|momentum:physics_steps[:diffusion_steps] with "
                         f"method dart or drift and diffusion_steps >= 1, got {text!r}")
    return parts[0], parts[1], int(parts[2]), (int(parts[3]) if len(parts) == 4 else None)


def label(kind: str, steps: int, diffusion_steps: int | None = None) -> str:
    return f"{kind} x {steps}" + ("" if diffusion_steps is None else f", {diffusion_steps} steps")


def run(profile_name: str, n: int, settings: list[Setting], seed: int = 0) -> list[dict]:
    profile = load_profile(profile_name)
    cases = eval_cases(profile, "val", n, progress=True)
    sec = profile.stem_diffusion
    rows = []
    for method, kind, steps, diffusion_steps in settings:
        update = {"physics_steps": steps, "momentum": KINDS[kind]}
        if diffusion_steps is not None:
            update["steps"] = diffusion_steps
        p = profile.model_copy(update={"stem_diffusion": sec.model_copy(
            update={method: getattr(sec, method).model_copy(update=update)})})
        got, _ = run_cases(p, "stem", cases, [method], seeds=(seed,))
        rows += [{"setting": label(kind, steps, diffusion_steps), "kind": kind, "physics_steps": steps,
                  "diffusion_steps": getattr(p.stem_diffusion, method).steps, **r} for r in got]
    return rows


def report(rows: list[dict], settings: list[Setting], profile_name: str, threads: int) -> str:
    lines = ["| Method | Physics steps | n | Per-slice SSIM | minus the reference | Projection SSIM | "
             "minus the reference | s per crystal |", "|---|---|---|---|---|---|---|---|"]
    for method in dict.fromkeys(m for m, *_ in settings):
        mine = [rest for m, *rest in settings if m == method]
        ref = label(*mine[0])
        for kind, steps, diffusion_steps in mine:
            name = label(kind, steps, diffusion_steps)
            pick = [dict(r, method=r["setting"]) for r in rows if r["method"] == method and r["setting"] in (name, ref)]
            own = [r for r in pick if r["method"] == name]
            cells = []
            for c in SCORES:
                mean = sum(float(r[c]) for r in own) / len(own)
                if name == ref:
                    cells += [f"{mean:.4f}", "reference"]
                    continue
                (d,) = tables.paired_differences(pick, name, ref, [c], by=())
                cells += [f"{mean:.4f}", paired_cell(d, c)]
            wall = sum(float(r["wall_time_s"]) for r in own) / len(own)
            lines.append(f"| {method} | {name} | {len(own)} | " + " | ".join(cells) + f" | {wall:.2f} |")
    lines += ["", f"- Validation crystals made as the test tables' are (abTEM, frozen phonons, Poisson noise at the "
              f"profile's dose, random depth, tilt), profile {profile_name} otherwise (', N steps': N diffusion "
              f"steps; else the profile's), seed 0, {threads} threads. "
              f"Differences paired per crystal with each method's first row, mean [95 % bootstrap interval over "
              f"the crystals]; momentum: FISTA with adaptive restart (paperlib.recon.dart.accelerated_steps); "
              f"code {code_label()}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__, __file__)
    p.add_argument("--settings", nargs="+", default=["dart:plain:5:20", "dart:momentum:4:20", "dart:momentum:5:20",
                                                     "dart:momentum:5:18", "dart:momentum:5:16", "drift:plain:100",
                                                     "drift:momentum:30", "drift:momentum:40", "drift:momentum:60"])
    args = p.parse_args(argv)
    settings = [parse_setting(s) for s in args.settings]
    torch.set_num_threads(args.threads)
    rows = run(args.profile, args.n, settings)
    write_results(rows, args.out, report(rows, settings, args.profile, args.threads))
    return 0


if __name__ == "__main__":
    sys.exit(main())
