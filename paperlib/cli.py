"""Command line: ``python -m paperlib COMMAND``.

Commands
--------
data            generate (or load) and cache the MRI splits of a profile
tune-baselines  choose the CS-MRI and TV weights on the *validation* split of a profile and
                print the values to record in ``notebooks/params/<profile>.yaml``
"""
from __future__ import annotations

import argparse
import logging
import sys

import torch

from .config import ConfigError, load_profile


def _cmd_data(args) -> int:
    from .data.brain import load_split

    cfg = load_profile(args.profile)
    for split in ("train", "val", "test"):
        vols = load_split(cfg.mri, split, progress=True)
        print(f"{split}: {len(vols)} volumes of shape {tuple(vols.images.shape[1:])}")
    return 0


def _cmd_tune(args) -> int:
    from .experiments import mri as mri_exp
    from .recon import mri_baselines
    from .tables import write_cases

    cfg = load_profile(args.profile)
    torch.set_num_threads(cfg.threads)
    cases = mri_exp.mri_cases(cfg, split="val", mask_kind=cfg.mri_physics.table1_mask, progress=True)
    ops = [c.operator for c in cases]
    ys = [c.kspace for c in cases]
    targets = [c.image for c in cases]
    b = cfg.mri_baselines
    grid = [float(g) for g in args.grid]
    results = {}
    for name, fn, kwargs in (
        ("cs_mri", mri_baselines.cs_wavelet, {"iters": b.cs_iters, "levels": b.cs_levels}),
        ("tv", mri_baselines.total_variation, {"iters": b.tv_iters}),
    ):
        best, scores = mri_baselines.tune_weight(fn, ops, ys, targets, grid, **kwargs)
        results[name] = (best, scores)
        print(f"{name}: " + ", ".join(f"{w:g} -> {s:.4f}" for w, s in scores) + f"  => best {best:g}")
    print("\nrecord in notebooks/params/%s.yaml, section mri_baselines:" % cfg.name)
    print(f"  cs_weight: {results['cs_mri'][0]:g}\n  tv_weight: {results['tv'][0]:g}")
    print(f"  tuned_on: \"validation split ({len(cases)} volumes), grid {grid}, mean whole-image SSIM\"")
    if args.out:
        rows = [
            {"modality": "mri", "dataset": "val", "case": "mean", "method": name, "seed": 0,
             "ssim": s, "ssim_head": float("nan"), "psnr": float("nan"), "wall_time_s": float("nan"),
             "peak_rss_bytes": float("nan"), "weight": w}
            for name, (_, scores) in results.items() for w, s in scores
        ]
        write_cases(rows, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="generate and cache the MRI splits of a profile")
    p.add_argument("--profile", default="default")
    p.set_defaults(func=_cmd_data)
    p = sub.add_parser("tune-baselines", help="choose CS-MRI/TV weights on the validation split")
    p.add_argument("--profile", default="default")
    p.add_argument("--grid", nargs="+", default=["0.0005", "0.001", "0.002", "0.005", "0.01", "0.02", "0.05"])
    p.add_argument("--out", help="optional CSV with the grid scores")
    p.set_defaults(func=_cmd_tune)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
