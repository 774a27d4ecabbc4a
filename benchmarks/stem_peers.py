"""4D-STEM peers: our multislice forward model against abTEM's, and our 3PIE scores.

Run by ``make bench``; a script, not a test (CONVENTIONS: benchmarks report ratios measured in
one run, never timed asserts). What it does, on a perfect SrTiO3 [001] crystal (default
3 x 3 x 4 unit cells, 8 slices of 1.95 Å, 200 kV, 20 mrad, 16 x 16 scan over one 3 x 3 cell
field of view, 64 x 64 grid = 64 x 64 detector):

1. builds the projected potential once with abTEM (Lobato, infinite projection);
2. simulates the 4D-STEM data of that potential with abTEM (``Probe.scan`` with a
   ``PixelatedDetector(max_angle=None)``, dask's synchronous scheduler, FFTW with one thread)
   and with :class:`paperlib.physics.multislice.MultisliceOperator` (torch, float32, one
   thread; FFTW backend, and ``torch.fft`` for reference), ``--repeats`` times each,
   interleaved, after one warm-up call each (abTEM plans its FFTW transforms in the first
   call); prints the best wall and CPU times (best-of: the machine may be shared), the ratio
   abTEM / ours (> 1: ours is faster) and the relative L2 difference of the two data sets;
3. reconstructs the potential from our data with 3PIE from vacuum and prints its per-slice
   SSIM, projected SSIM and the depth-blind reference (:func:`paperlib.metrics.stem.stem_scores`);
4. py4DSTEM (optional): if ``import py4DSTEM`` fails, says it is skipped and how to get it
   (its own venv with numpy 1.26). A py4DSTEM reconstruction is not run yet: in a trial
   (py4DSTEM 0.14.18, ``MultislicePtychography``, known probe, fixed positions, no rotation,
   regularisers off) it did not recover a known single-slice object from our data, which
   points to a convention difference still to be found; its numbers would not be comparable.

``python benchmarks/stem_peers.py --quick`` runs a small case in seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--cells", type=int, nargs=3, default=(3, 3, 4), metavar=("NX", "NY", "NZ"),
                   help="SrTiO3 unit cells along the rows, columns and the beam")
    p.add_argument("--gpts", type=int, default=64, help="pixels of the (square) grid")
    p.add_argument("--n-slices", type=int, default=8, help="slices of the potential")
    p.add_argument("--scan", type=int, default=16, help="scan positions per axis")
    p.add_argument("--detector", type=int, default=64, help="detector pixels per axis (centre crop)")
    p.add_argument("--energy", type=float, default=200.0, help="keV")
    p.add_argument("--semiangle", type=float, default=20.0, help="mrad")
    p.add_argument("--defocus", type=float, default=0.0, help="Å, positive = underfocus")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of each simulator")
    p.add_argument("--threads", type=int, default=1, help="threads for torch, FFTW, BLAS")
    p.add_argument("--batch-size", type=int, default=32, help="positions per FFT call (ours)")
    p.add_argument("--pie-iter", type=int, default=20, help="3PIE epochs")
    p.add_argument("--pie-batch", type=int, default=64, help="3PIE positions per update (tuned)")
    p.add_argument("--pie-alpha", type=float, default=0.25, help="3PIE object step (tuned)")
    p.add_argument("--seed", type=int, default=0, help="seed of 3PIE's position order")
    p.add_argument("--quick", action="store_true",
                   help="small case: 2 x 2 x 2 cells, 32 px, 4 slices, 8 x 8 scan, 32 px detector")
    args = p.parse_args(argv)
    if args.quick:
        args.cells, args.gpts, args.n_slices, args.scan, args.detector = (2, 2, 2), 32, 4, 8, 32
        args.repeats, args.pie_iter, args.pie_batch = 2, 10, 16
    if args.detector > args.gpts:
        p.error(f"--detector {args.detector} exceeds --gpts {args.gpts}")
    return args


def _best_of(fns: dict, repeats: int) -> dict:
    """Interleaved timing: ``{name: (best wall s, best CPU s, first-call wall s, result)}``."""
    out = {}
    for name, fn in fns.items():  # warm-up (abTEM plans FFTW here), kept for the record
        start = time.perf_counter()
        result = fn()
        out[name] = [time.perf_counter() - start, [], [], result]
    for _ in range(repeats):
        for name, fn in fns.items():
            w, c = time.perf_counter(), time.process_time()
            fn()
            out[name][1].append(time.perf_counter() - w)
            out[name][2].append(time.process_time() - c)
    return {k: (min(v[1]), min(v[2]), v[0], v[3]) for k, v in out.items()}


def _py4dstem_note() -> None:
    """py4DSTEM is optional: say whether it is here, and how to get it."""
    try:
        import py4DSTEM
    except ImportError:
        print("\npy4DSTEM: skipped (not importable here). It needs numpy < 2, so give it its own "
              "venv:\n  python3 -m venv .venv-py4dstem && .venv-py4dstem/bin/pip install "
              "'numpy==1.26.*' 'py4DSTEM==0.14.18'")
        return
    print(f"\npy4DSTEM {py4DSTEM.__version__}: importable, but not compared: its "
          "MultislicePtychography did not yet reproduce a known single-slice object from our "
          "data (an unresolved convention difference), so no py4DSTEM numbers are reported.")


def main(argv=None) -> int:
    args = parse_args(argv)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)

    import dask
    import numpy as np
    import torch
    import abtem
    from ase.spacegroup import crystal

    from paperlib.data.crystals import abtem_4dstem, crystal_potential, unit_cell
    from paperlib.metrics.stem import stem_scores
    from paperlib.physics.multislice import MultisliceOperator, grid_scan
    from paperlib.recon.stem_baselines import three_pie

    torch.set_num_threads(args.threads)
    dask.config.set(scheduler="synchronous" if args.threads == 1 else "threads",
                    num_workers=args.threads)
    abtem.config.set({"fftw.threads": args.threads})

    atoms = unit_cell("SrTiO3") * tuple(args.cells)
    extent = float(atoms.cell[0, 0])
    dz = float(atoms.cell[2, 2]) / args.n_slices
    t0 = time.perf_counter()
    V = crystal_potential(atoms, gpts=args.gpts, n_slices=args.n_slices)
    t_pot = time.perf_counter() - t0
    sampling = extent / args.gpts
    positions = grid_scan((0.0, 0.0), (extent, extent), args.scan)
    detector = (args.detector, args.detector)
    print(f"SrTiO3 [001] {args.cells[0]}x{args.cells[1]}x{args.cells[2]} cells, grid "
          f"{args.gpts}^2 at {sampling:.4f} Å, {args.n_slices} slices of {dz:.4f} Å, "
          f"{args.energy:g} kV, {args.semiangle:g} mrad, defocus {args.defocus:g} Å, scan "
          f"{args.scan}x{args.scan}, detector {args.detector}^2, {args.threads} thread(s)")
    print(f"potential (abTEM, built once, shared): {t_pot:.2f} s, max {V.max():.1f} V·Å")

    t0 = time.perf_counter()
    op = MultisliceOperator(
        gpts=args.gpts, sampling=sampling, energy=args.energy, semiangle=args.semiangle,
        defocus=args.defocus, slice_thickness=dz, n_slices=args.n_slices,
        scan_positions=positions, detector_shape=detector, batch_size=args.batch_size,
    )
    t_setup = time.perf_counter() - t0
    op_torch_fft = MultisliceOperator(
        gpts=args.gpts, sampling=sampling, energy=args.energy, semiangle=args.semiangle,
        defocus=args.defocus, slice_thickness=dz, n_slices=args.n_slices,
        scan_positions=positions, detector_shape=detector, batch_size=args.batch_size,
        fft_backend="torch",
    )
    V_torch = torch.from_numpy(V)

    def run_abtem():
        return abtem_4dstem(V, sampling=sampling, slice_thickness=dz, energy=args.energy,
                            semiangle=args.semiangle, scan_positions=positions,
                            defocus=args.defocus, detector_shape=detector)

    def run_ours():
        return op.forward(V_torch)

    times = _best_of({"abtem": run_abtem, "ours": run_ours,
                      "ours_torch_fft": lambda: op_torch_fft.forward(V_torch)}, args.repeats)
    (wa, ca, fa, I_abtem), (wo, co, fo, I_ours) = times["abtem"], times["ours"]
    wt, ct, ft, I_torch_fft = times["ours_torch_fft"]
    I_ours = I_ours.numpy()
    rel = float(np.linalg.norm(I_ours - I_abtem) / np.linalg.norm(I_abtem))
    rel_t = float(np.linalg.norm(I_torch_fft.numpy() - I_abtem) / np.linalg.norm(I_abtem))
    print("\nforward 4D-STEM simulation, best of", args.repeats, "(first call in brackets)")
    print(f"  abTEM 1.0.11          : wall {wa * 1e3:8.1f} ms  cpu {ca * 1e3:8.1f} ms  "
          f"[{fa * 1e3:.0f} ms]")
    print(f"  paperlib (FFTW)       : wall {wo * 1e3:8.1f} ms  cpu {co * 1e3:8.1f} ms  "
          f"[{fo * 1e3:.0f} ms]  (+ operator setup {t_setup * 1e3:.0f} ms, once)")
    print(f"  paperlib (torch.fft)  : wall {wt * 1e3:8.1f} ms  cpu {ct * 1e3:8.1f} ms  "
          f"[{ft * 1e3:.0f} ms]")
    print(f"  ratio abTEM / paperlib (FFTW): wall {wa / wo:.2f}x  cpu {ca / co:.2f}x"
          f"  (setup included: {wa / (wo + t_setup):.2f}x)")
    print(f"  ratio abTEM / paperlib (torch.fft): wall {wa / wt:.2f}x  cpu {ca / ct:.2f}x")
    print(f"  relative L2 difference from abTEM: FFTW {rel:.2e}, torch.fft {rel_t:.2e}")

    t0 = time.perf_counter()
    recon = three_pie(op, I_ours, n_iter=args.pie_iter, batch_size=args.pie_batch,
                      alpha=args.pie_alpha, generator=torch.Generator().manual_seed(args.seed))
    t_pie = time.perf_counter() - t0
    scores = stem_scores(recon, V_torch)
    vacuum = stem_scores(torch.zeros_like(V_torch), V_torch)
    print(f"\n3PIE ({args.pie_iter} epochs, batches of {args.pie_batch}, alpha "
          f"{args.pie_alpha:g}, from vacuum): "
          f"{t_pie:.1f} s, loss {float(op.loss(torch.zeros_like(V_torch), I_ours)):.3g} -> "
          f"{float(op.loss(recon, I_ours)):.3g}")
    print(f"  per-slice SSIM mean {scores['ssim_slices_mean']:.4f}  "
          f"({', '.join(f'{v:.3f}' for v in scores['ssim_slices'])})")
    print(f"  projected SSIM      {scores['ssim_projection']:.4f}")
    print(f"  depth-blind reference (per-slice SSIM of projection / D): "
          f"{scores['ssim_depth_blind']:.4f}")
    print(f"  vacuum init: per-slice {vacuum['ssim_slices_mean']:.4f}, projected "
          f"{vacuum['ssim_projection']:.4f}")

    _py4dstem_note()
    return 0


if __name__ == "__main__":
    sys.exit(main())
