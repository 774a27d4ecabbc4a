"""Peer benchmark: our batched CS-MRI and TV against sigpy's L1WaveletRecon / TotalVariationRecon.

Run with ``make bench`` (installs the ``bench`` extra: sigpy, PyWavelets). Same slices, same
masks, same absolute regularisation weight λ (``weight * max |zero-filled|`` of the stack), same
centred orthonormal FFT convention. sigpy reconstructs one slice at a time (its apps take one
slice with a coil axis); ours reconstructs the whole stack in one batched call. Printed: SSIM
(whole image, data range from the ground truth, as in the tables), time per slice, and the
ratios, all measured in this one run.

Differences that remain (stated, not hidden): ours reconstructs real images by default (the
images are real magnitude images; ``ours-c`` rows solve the complex problem as sigpy does);
sigpy's L1WaveletRecon uses a zero-padded 'db4' pyramid, ours the profile's periodised
orthonormal wavelet (chosen on validation); sigpy's TotalVariationRecon is anisotropic TV,
ours isotropic. Both solve their problem with
the iteration counts given; sigpy is run at several counts so its best SSIM is the reference.

    python benchmarks/mri_peers.py --slices 16 --size 240 --threads 2
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from paperlib.config import load_profile
from paperlib.data.brain import synthetic_subject
from paperlib.metrics.image import ssim_slices
from paperlib.physics.mri import MRIOperator, make_mask
from paperlib.recon import mri_baselines
from _cli import parse_args  # a sibling script (benchmarks/)


def stack(slices: int, size: int, seed: int) -> torch.Tensor:
    """``slices`` central axial FLAIR slices of a synthetic subject at ``size`` x ``size``."""
    depth = max(slices + 8, int(round(slices * 2.5)))
    vol = synthetic_subject(seed, (depth, size, size))["flair"]
    start = (depth - slices) // 2
    return torch.from_numpy(np.ascontiguousarray(vol[start:start + slices])).float()


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def sigpy_recon(kind: str, y: torch.Tensor, masks: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    import sigpy.mri.app as app

    out = []
    for y_s, m_s in zip(y.numpy(), masks.numpy()):
        mps = np.ones((1, *y_s.shape), dtype=np.complex64)
        weights = m_s.astype(np.float32)
        if kind == "cs":
            rec = app.L1WaveletRecon(y_s[None], mps, lam, weights=weights, wave_name="db4",
                                     max_iter=iters, show_pbar=False).run()
        else:
            rec = app.TotalVariationRecon(y_s[None], mps, lam, weights=weights,
                                          max_iter=iters, show_pbar=False).run()
        out.append(np.abs(rec))
    return torch.from_numpy(np.stack(out)).float()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=16)
    parser.add_argument("--size", type=int, default=240)
    parser.add_argument("--acceleration", type=float, default=4.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", default="default", help="weights and iterations come from this profile")
    parser.add_argument("--sigpy-iters", type=int, nargs="+", default=[100, 300])
    parser.add_argument("--levels", type=int, default=None, help="wavelet levels (default: the profile's)")
    parser.add_argument("--seed", type=int, default=20_000)
    args = parse_args(parser, argv)
    cfg = load_profile(args.profile)
    b = cfg.mri_baselines

    x = stack(args.slices, args.size, args.seed)
    gen = torch.Generator().manual_seed(0)
    masks = torch.stack([make_mask("uniform1d", (args.size, args.size), args.acceleration,
                                   cfg.mri_physics.center_fraction, generator=gen) for _ in range(args.slices)])
    op = MRIOperator(masks)
    y = op.forward(x)
    zf = op.zero_filled(y)
    n = args.slices
    print(f"{n} slices {args.size}x{args.size}, {args.acceleration:g}x uniform 1D Cartesian, "
          f"torch threads {args.threads}; weights and iterations from profile {cfg.name!r}")
    print(f"zero-filled SSIM {float(ssim_slices(zf.abs(), x).mean()):.4f}\n")
    print(f"{'method':<8} {'code':<7} {'iters':>5} {'SSIM':>7} {'s/slice':>8}")

    levels = args.levels or b.cs_levels
    summary = []
    for kind, name, weight, iters, ours in (
        ("cs", "CS-MRI", b.cs_weight, b.cs_iters,
         lambda w, it, real: mri_baselines.cs_wavelet(op, y, weight=w, iters=it, levels=levels,
                                                      wavelet=b.cs_wavelet, real=real)),
        ("tv", "TV", b.tv_weight, b.tv_iters,
         lambda w, it, real: mri_baselines.total_variation(op, y, weight=w, iters=it, real=real)),
    ):
        lam = mri_baselines.absolute_weight(zf, weight)
        rec, t_c = timed(lambda: ours(weight, iters, False))
        print(f"{name:<8} {'ours-c':<7} {iters:>5} {float(ssim_slices(rec, x).mean()):>7.4f} {t_c / n:>8.3f}"
              "   (complex images, as sigpy)")
        rec, t_ours = timed(lambda: ours(weight, iters, True))
        s_ours = float(ssim_slices(rec, x).mean())
        print(f"{name:<8} {'ours':<7} {iters:>5} {s_ours:>7.4f} {t_ours / n:>8.3f}   (real images, the default)")
        peers = []
        for it in args.sigpy_iters:
            rec_p, t_p = timed(lambda: sigpy_recon(kind, y, masks, lam, it))
            s_p = float(ssim_slices(rec_p, x).mean())
            peers.append((s_p, t_p, it))
            print(f"{name:<8} {'sigpy':<7} {it:>5} {s_p:>7.4f} {t_p / n:>8.3f}")
        best = max(peers)
        # time to reach sigpy's best SSIM (within 0.01): ours with the fewest iterations that do
        match = None
        for it in sorted({10, 25, 50, 100, 200, iters}):
            rec_m, t_m = timed(lambda: ours(weight, it, True))
            s_m = float(ssim_slices(rec_m, x).mean())
            print(f"{name:<8} {'ours':<7} {it:>5} {s_m:>7.4f} {t_m / n:>8.3f}   (iterations to match sigpy)")
            if s_m >= best[0] - 0.01:
                match = (s_m, t_m, it)
                break
        summary.append((name, s_ours, t_ours, best, match))
    print("\nratios against sigpy's best-SSIM run (ours: real images):")
    for name, s_ours, t_ours, (s_p, t_p, it), match in summary:
        print(f"  {name}: profile iterations: SSIM ours {s_ours:.4f} vs sigpy {s_p:.4f} ({it} iters), "
              f"difference {s_ours - s_p:+.4f}; time per slice sigpy/ours = {t_p / t_ours:.1f}x")
        if match:
            print(f"  {name}: to reach sigpy's SSIM - 0.01: ours {match[2]} iters, SSIM {match[0]:.4f}, "
                  f"time per slice sigpy/ours = {t_p / match[1]:.1f}x")
        else:
            print(f"  {name}: ours did not reach sigpy's SSIM - 0.01 at any iteration count tried")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
