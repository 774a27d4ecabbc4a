"""Command line: ``python -m paperlib COMMAND``.

Commands
--------
data            generate (or load) and cache the MRI splits of a profile
tune-baselines  choose the CS-MRI and TV weights on the *validation* split of a profile and
                print the values to record in ``notebooks/params/<profile>.yaml``
reconstruct     DART, DRIFT or a baseline on your own data (NIfTI for MRI, .npy/HDF5 for
                4D-STEM; see ``python -m paperlib reconstruct --help``)
train           train the partitioned diffusion prior (``train --modality mri --profile NAME``;
                see ``python -m paperlib train --help``); rerunning after a kill resumes
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
    torch.set_num_threads(args.threads or cfg.threads)
    source = f"validation split ({cfg.mri.source})"
    if args.synthetic_proxy:
        # no real data here: tune on synthetic validation volumes of the profile's in-plane size
        depth, n_val = args.synthetic_proxy
        mri = cfg.mri.model_copy(update={"source": "synthetic", "shape": (depth, *cfg.mri.shape[1:]),
                                         "n_val": n_val, "noise_std": 0.01})
        cfg = cfg.model_copy(update={"mri": mri})
        source = f"synthetic proxy of the validation split ({n_val} volumes of {depth}x{mri.shape[1]}x{mri.shape[2]})"
    cases = mri_exp.mri_cases(cfg, split="val", mask_kind=cfg.mri_physics.table1_mask, progress=True)
    ops = [c.operator for c in cases]
    ys = [c.kspace for c in cases]
    targets = [c.image for c in cases]
    head_masks = [c.head_mask for c in cases] if args.criterion == "ssim_head" else None
    b = cfg.mri_baselines
    grid = [float(g) for g in args.grid]
    runs = [("tv", None, mri_baselines.total_variation, {"iters": b.tv_iters})] + [
        ("cs_mri", wavelet, mri_baselines.cs_wavelet, {"iters": b.cs_iters, "levels": b.cs_levels, "wavelet": wavelet})
        for wavelet in args.wavelets
    ]
    results = {}
    for name, wavelet, fn, kwargs in runs:
        best, scores = mri_baselines.tune_weight(fn, ops, ys, targets, grid, head_masks=head_masks, **kwargs)
        results[(name, wavelet)] = (best, scores)
        label = name + (f" ({wavelet})" if wavelet else "")
        print(f"{label}: " + ", ".join(f"{w:g} -> {s:.4f}" for w, s in scores) + f"  => best {best:g}")
    best_cs = max((k for k in results if k[0] == "cs_mri"), key=lambda k: max(s for _, s in results[k][1]))
    print("\nrecord in notebooks/params/%s.yaml, section mri_baselines:" % cfg.name)
    print(f"  cs_weight: {results[best_cs][0]:g}\n  cs_wavelet: {best_cs[1]}\n  tv_weight: {results[('tv', None)][0]:g}")
    print(f"  tuned_on: \"{source}, {len(cases)} volumes, weights {grid}, wavelets "
          f"{list(args.wavelets)}, best mean {'SSIM inside the head' if head_masks else 'whole-image SSIM'}\"")
    if args.out:
        rows = [
            {"modality": "mri", "dataset": "val", "case": "mean",
             "method": name + (f"_{wavelet}" if wavelet else ""), "seed": 0,
             "ssim": s, "ssim_head": float("nan"), "psnr": float("nan"), "wall_time_s": float("nan"),
             "peak_rss_bytes": float("nan"), "weight": w}
            for (name, wavelet), (_, scores) in results.items() for w, s in scores
        ]
        write_cases(rows, args.out)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from .diffusion.train import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["reconstruct"]:
        from .reconstruct import main as reconstruct_main

        return reconstruct_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m paperlib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("data", help="generate and cache the MRI splits of a profile")
    p.add_argument("--profile", default="default")
    p.set_defaults(func=_cmd_data)
    p = sub.add_parser("tune-baselines", help="choose CS-MRI/TV weights on the validation split")
    p.add_argument("--profile", default="default")
    p.add_argument("--grid", nargs="+", default=["0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5"])
    p.add_argument("--wavelets", nargs="+", default=["haar", "db2", "db4"], help="CS-MRI wavelets to try")
    p.add_argument("--criterion", choices=["ssim_head", "ssim"], default="ssim_head",
                   help="mean SSIM inside the head (default; whole-image SSIM rewards over-smoothing) or whole image")
    p.add_argument("--threads", type=int, help="torch threads (default: the profile's)")
    p.add_argument("--synthetic-proxy", nargs=2, type=int, metavar=("DEPTH", "N"),
                   help="tune on N synthetic validation volumes of DEPTH slices at the profile's "
                        "in-plane size (for profiles whose real data is not available)")
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
