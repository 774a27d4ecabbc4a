"""Is a (partly) trained prior useful? Train some steps, then held-out denoising PSNR vs a tuned filter.

Trains the chosen slice groups of a training preset on the profile's MRI ``train`` split (resuming
whatever ``--out`` already holds, so a long run can be split into short sessions with the same
command), then scores the EMA weights with :func:`paperlib.diffusion.evaluate.denoising_psnr`
on the ``test`` split, the Gaussian filter being tuned on the ``val`` split. Only the slices of the
trained groups are scored.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_prior_quality.py --profile default --groups 0 \\
        --max-steps 100 --out /tmp/prior_default --threads 1

Prints a table and writes ``--json`` (atomically) if given.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from paperlib.config import load_profile
from paperlib.data.brain import load_split
from paperlib.diffusion.evaluate import denoising_psnr, summarize_psnr
from paperlib.diffusion.partition import PartitionedPrior, group_slices
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.train import TRAIN_PRESETS, train_prior
from paperlib.io import atomic_write_bytes
from _cli import parse_args  # a sibling script (benchmarks/)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--preset", help="training preset (default: the profile name)")
    p.add_argument("--groups", nargs="+", type=int, default=[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--max-steps", type=int, default=None, help="steps per group in this call")
    p.add_argument("--lr", type=float, help="override the preset's learning rate")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--noise-levels", nargs="+", type=float, default=[0.02, 0.05, 0.1, 0.2])
    p.add_argument("--n-test", type=int, default=None, help="score only the first n test volumes")
    p.add_argument("--json", type=Path)
    args = parse_args(p, argv)
    prof = load_profile(args.profile)
    cfg = TRAIN_PRESETS[args.preset or prof.name]
    if args.lr:
        cfg = replace(cfg, lr=args.lr)
    train = load_split(prof.mri, "train").images
    t0 = time.perf_counter()
    results = train_prior(cfg, train, args.out, groups=args.groups, max_steps=args.max_steps, progress=True)
    wall = time.perf_counter() - t0
    sl = group_slices(train.shape[1], cfg.num_groups)
    slices = torch.cat([torch.arange(train.shape[1])[sl[g]] for g in args.groups])
    test = load_split(prof.mri, "test").images[: args.n_test, slices]
    val = load_split(prof.mri, "val").images[:, slices]
    prior = PartitionedPrior([r.ema for r in results], Sampler(cfg.schedule, prediction=cfg.prediction),
                             train.shape[1] // cfg.num_groups, group_indices=args.groups)
    rows = denoising_psnr(prior, test, args.noise_levels, torch.Generator().manual_seed(0), tune_volumes=val,
                          progress=False)
    summary = summarize_psnr(rows)
    steps = [r.step for r in results]
    print(f"profile {prof.name}, preset {args.preset or prof.name}, lr {cfg.lr}, groups {args.groups}, "
          f"steps {steps}/{cfg.steps}, this call {wall:.0f} s, threads {args.threads}")
    print(f"{'noise':>6} {'noisy':>7} {'filter':>7} {'prior':>7}   (mean PSNR dB over {len(test)} test volumes)")
    for s in sorted({r["noise_level"] for r in rows}):
        noisy = sum(r["noisy_psnr"] for r in rows if r["noise_level"] == s and r["method"] == "prior") / len(test)
        by = {x["method"]: x["psnr_mean"] for x in summary if x["noise_level"] == s}
        print(f"{s:6.3f} {noisy:7.2f} {by['gaussian_filter']:7.2f} {by['prior']:7.2f}")
    if args.json:
        atomic_write_bytes(args.json, json.dumps({"steps": steps, "lr": cfg.lr, "wall_s": wall, "summary": summary,
                                                  "rows": rows}, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
