"""Which arithmetic should the networks run in on this CPU? float32 against bfloat16, one denoiser step.

The profiles' ``precision: auto`` runs the networks in bfloat16 only where the device computes
bfloat16 natively (:func:`paperlib.diffusion.partition.native_bfloat16`: AVX-512 BF16 or AMX on a
CPU), else in float32. This script measures the reason on the machine it runs on: one denoiser
step of each MRI prior the notebooks sample (``denoise`` at a low timestep, the profile's
sampler), on a (16, 64, 64) volume (tiled where the prior's groups take another shape; for the
default profile's Table 1 prior the windows are exactly its 2 groups of 8 slices), in float32 and in bfloat16, the median of
``--repeats`` timed calls after one untimed warm-up, plus the relative L2 distance of the bfloat16
output from float32. Priors: the profile's ``prior.checkpoint`` (Table 1's partitioned prior, 2
groups x 8 slices) and ``real_mri.checkpoint`` tiled over the depth with the section's overlap (the
real-scan table and ``reconstruct``). Writes ``benchmarks/results/precision_speed.csv`` and ``.md``
(the CPU, its bfloat16 instructions and what ``auto`` chose are in the header).

    python benchmarks/precision_speed.py --profile default
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from paperlib import tables
from paperlib.config import load_profile
from paperlib.diffusion.partition import native_bfloat16, resolve_precision
from paperlib.diffusion.tiling import tiled
from paperlib.experiments.priors import guided_prior
from paperlib.provenance import git_commit
from isa_repro import cpu_name  # a sibling script (benchmarks/)
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)

PRECISIONS = ("float32", "bfloat16")


def priors(profile, precision: str) -> dict:
    """The profile's two MRI priors, as the notebooks load them, with the networks in ``precision``."""
    mri = profile.mri_diffusion.model_copy(update={"precision": precision})
    real = profile.real_mri
    general = real.diffusion.model_copy(update={"precision": precision})
    return {f"Table 1 prior ({profile.prior.checkpoint}, partitioned)":
                tiled(guided_prior(mri, profile.prior.checkpoint), overlap=0),
            f"real-scan prior ({real.checkpoint}, tiled, overlap {real.overlap})":
                tiled(guided_prior(general, real.checkpoint), overlap=real.overlap)}


def time_step(prior, x: torch.Tensor, t: int, repeats: int) -> tuple[float, torch.Tensor]:
    """Median seconds of ``prior.denoise(x, t)`` over ``repeats`` calls after one warm-up, and its output."""
    out = prior.denoise(x, t)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = prior.denoise(x, t)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, __file__)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per prior and precision (median)")
    ap.add_argument("--timestep", type=int, default=10, help="the timestep of the step (DART's are low)")
    args = parse_args(ap, argv)
    if args.repeats < 1:
        ap.error(f"--repeats: expected a positive integer, got {args.repeats}")
    profile = load_profile(args.profile)
    x = torch.rand((16, 64, 64), generator=torch.Generator().manual_seed(0))
    by_precision = {p: priors(profile, p) for p in PRECISIONS}
    rows = []
    for name in by_precision["float32"]:
        seconds, outputs = {}, {}
        for p in PRECISIONS:
            seconds[p], outputs[p] = time_step(by_precision[p][name], x, args.timestep, args.repeats)
        rel = float((outputs["bfloat16"] - outputs["float32"]).norm() / outputs["float32"].norm())
        rows.append({"prior": name, "shape": "16x64x64", "timestep": args.timestep, "repeats": args.repeats,
                     "float32_s": seconds["float32"], "bfloat16_s": seconds["bfloat16"],
                     "bfloat16_over_float32": seconds["bfloat16"] / seconds["float32"],
                     "bfloat16_rel_l2": rel, "threads": args.threads})
    tables.write_csv_rows(rows, args.out)
    native = native_bfloat16("cpu")
    lines = [f"{cpu_name()}, {args.threads} thread(s), torch {torch.__version__}; native bfloat16 (AVX-512 BF16 or "
             f"AMX-BF16 in its flags): {'yes' if native else 'no'}, so `precision: auto` runs {resolve_precision('auto', 'cpu')}; "
             f"one denoiser step on a (16, 64, 64) volume at timestep {args.timestep}, median of {args.repeats} "
             f"after a warm-up; code {git_commit()[:10]}.", "",
             "| Prior | float32 s | bfloat16 s | bfloat16 / float32 time | bfloat16 relative L2 from float32 |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['prior']} | {r['float32_s']:.3f} | {r['bfloat16_s']:.3f} | {r['bfloat16_over_float32']:.2f}x | "
              f"{r['bfloat16_rel_l2']:.4f} |" for r in rows]
    md = "\n".join(lines) + "\n"
    write_summary(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
