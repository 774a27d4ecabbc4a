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
4. py4DSTEM 0.14.18 (``MultislicePtychography``) against our 3PIE on the profile's test crystals
   (``stem_dataset(profile.stem, "test", --peer-crystals)``: 64 x 64 at 0.2 Å, 8 slices of
   2 Å, 200 kV, 20 mrad, 30 Å defocus, 16 x 16 scan, 48 x 48 detector): py4DSTEM pins numpy
   1.26, so it runs in its own venv ``.venv-py4dstem`` (``make bench`` creates it) through
   ``benchmarks/py4dstem_peer.py``, with arrays exchanged through ``.npz`` files; without that
   venv this part says how to create it and is skipped. Both get the same known probe (the
   simulation's), fixed positions, the right slices, and the same iteration budget: the
   profile's 3PIE epochs (``stem_baselines.three_pie``) and batch size; py4DSTEM's gradient
   descent at its default step 0.5 (``--peer-step``), regularisers off. First a single-slice
   sanity case (crystal 0's projected potential as one slice), where py4DSTEM must recover
   ``sigma V`` (fitted scale ~ 1 / sigma, shift 0), then the 8-slice crystals: time per crystal
   (py4DSTEM: ``preprocess`` + ``reconstruct`` in its process; ours: ``three_pie``), per-slice
   and projected SSIM (:func:`paperlib.metrics.stem.stem_scores`), the depth-blind reference,
   and the ratios. The conventions matched are listed in ``benchmarks/py4dstem_peer.py``; the
   one that made the earlier trial fail is py4DSTEM's real-space pixel ``1 / (n dk)`` for
   ``n``-pixel patterns (our 48-px crop of a 64-px grid gave it 0.267 Å pixels, not 0.2 Å), so
   the patterns are zero-padded back to the grid.

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
    p.add_argument("--pie-alpha", type=float, default=0.5, help="3PIE object step (tuned)")
    p.add_argument("--seed", type=int, default=0, help="seed of 3PIE's position order")
    p.add_argument("--profile", default="default", help="profile of the py4DSTEM comparison")
    p.add_argument("--peer-crystals", type=int, default=4,
                   help="test crystals for py4DSTEM vs 3PIE")
    p.add_argument("--peer-iter", type=int, default=None,
                   help="epochs of both in the py4DSTEM comparison (default: the profile's 3PIE)")
    p.add_argument("--peer-step", type=float, default=0.5, help="py4DSTEM's step size (default)")
    p.add_argument("--peer-probe", choices=("ours", "py4dstem"), default="ours",
                   help="py4DSTEM's known probe: the simulation's array, or its ComplexProbe "
                        "from semiangle and defocus (hard edge)")
    p.add_argument("--peers-only", action="store_true",
                   help="skip the abTEM timing and the SrTiO3 3PIE; only the py4DSTEM part")
    p.add_argument("--quick", action="store_true",
                   help="small case: 2 x 2 x 2 cells, 32 px, 4 slices, 8 x 8 scan, 32 px detector")
    args = p.parse_args(argv)
    if args.quick:
        args.cells, args.gpts, args.n_slices, args.scan, args.detector = (2, 2, 2), 32, 4, 8, 32
        args.repeats, args.pie_iter, args.pie_batch = 2, 10, 16
        args.peer_crystals, args.peer_iter = 1, 5
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


PY4DSTEM_PYTHON = os.path.join(".venv-py4dstem", "bin", "python")
PY4DSTEM_SETUP = ("python3 -m venv .venv-py4dstem && .venv-py4dstem/bin/pip install "
                  "'numpy==1.26.*' 'py4DSTEM==0.14.18'")


def _run_py4dstem(intensities, sample, op, *, n_slices, n_iter, batch_size, step, probe, seed=0):
    """Write the exchange file, run ``benchmarks/py4dstem_peer.py`` in the py4DSTEM venv,
    read its result: ``(phase (N, D, H, W), seconds (N,))``."""
    import subprocess
    import tempfile

    import numpy as np
    import torch

    from paperlib.physics.multislice import antialias_aperture

    aa = torch.fft.fftshift(antialias_aperture(op.gpts, op.sampling))[op.detector_crop] > 0
    extra = {"probe": torch.fft.ifft2(op._probe_k).numpy()} if probe == "ours" else {}
    here = os.path.dirname(os.path.abspath(__file__))
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = os.path.join(tmp, "in.npz"), os.path.join(tmp, "out.npz")
        np.savez(src, intensities=np.stack([np.asarray(i, np.float32) for i in intensities]),
                 positions=sample.scan_positions, detector_mask=aa.numpy(), gpts=op.gpts[0],
                 sampling=op.sampling[0], energy=op.energy, semiangle=op.semiangle,
                 defocus=op.defocus, slice_thickness=op.slice_thickness[0], n_slices=n_slices,
                 n_iter=n_iter, batch_size=batch_size or 0, step_size=step, seed=seed, **extra)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
               "OPENBLAS_NUM_THREADS": "1"}
        subprocess.run([PY4DSTEM_PYTHON, os.path.join(here, "py4dstem_peer.py"), src, dst],
                       check=True, env=env)
        out = np.load(dst)
        return out["phase"], out["seconds"], str(out["version"])


def _py4dstem_compare(args) -> None:
    """py4DSTEM's multislice ptychography against our 3PIE on the same data (see item 4)."""
    if not os.path.exists(PY4DSTEM_PYTHON):
        print(f"\npy4DSTEM: skipped ({PY4DSTEM_PYTHON} missing). It pins numpy 1.26, so it has "
              f"its own venv (``make bench`` creates it):\n  {PY4DSTEM_SETUP}")
        return
    import numpy as np
    import torch

    from paperlib.config import load_profile
    from paperlib.data.crystals import stem_dataset
    from paperlib.metrics.stem import stem_scores
    from paperlib.physics.multislice import MultisliceOperator
    from paperlib.recon.stem_baselines import three_pie

    profile = load_profile(args.profile)
    pie = profile.stem_baselines.three_pie.model_dump()
    if args.peer_iter is not None:
        pie["n_iter"] = args.peer_iter
    samples = stem_dataset(profile.stem, "test", args.peer_crystals)
    s0 = samples[0]
    p = profile.stem
    print(f"\npy4DSTEM vs our 3PIE, profile {args.profile!r}: {len(samples)} test crystal(s), "
          f"{p.gpts}^2 at {p.sampling:g} Å, {p.n_slices} slices of {p.slice_thickness:g} Å, "
          f"{p.energy:g} kV, {p.semiangle:g} mrad, defocus {p.defocus:g} Å, scan "
          f"{p.scan_gpts}^2, detector {p.detector_gpts}^2; both: known probe ({args.peer_probe}), "
          f"fixed positions, {pie['n_iter']} epochs in batches of {pie['batch_size']} positions "
          f"(3PIE alpha {pie['alpha']:g}, py4DSTEM gradient descent step {args.peer_step:g}, "
          f"regularisers off), from vacuum, one thread")

    def ours(op, intensities):
        start = time.perf_counter()
        rec = three_pie(op, intensities, generator=torch.Generator().manual_seed(args.seed), **pie)
        return rec, time.perf_counter() - start

    # single-slice sanity case: the projected potential of crystal 0 as one thin slice
    V1 = s0.potential.sum(0, keepdim=True)
    op1 = MultisliceOperator(gpts=p.gpts, sampling=p.sampling, energy=p.energy,
                             semiangle=p.semiangle, defocus=p.defocus,
                             slice_thickness=p.slice_thickness, n_slices=1,
                             scan_positions=s0.scan_positions, window=p.window,
                             detector_shape=s0.intensities.shape[-2:])
    with torch.no_grad():
        I1 = op1.forward(V1)
    ph1, sec1, version = _run_py4dstem([I1.numpy()], s0, op1, n_slices=1, n_iter=pie["n_iter"],
                                       batch_size=pie["batch_size"], step=args.peer_step,
                                       probe=args.peer_probe)
    sc_p = stem_scores(torch.from_numpy(ph1[0]), V1)
    rec1, t1 = ours(op1, I1)
    sc_o = stem_scores(rec1, V1)
    print(f"single-slice sanity ({s0.material} [{s0.zone_axis}] projected, max sigma*V "
          f"{float(V1.max()) * op1.sigma:.2f} rad): SSIM py4DSTEM {version} "
          f"{sc_p['ssim_projection']:.4f} ({sec1[0]:.1f} s, shift {sc_p['shift']}, fitted scale "
          f"{sc_p['scale']:.0f} vs 1/sigma {1 / op1.sigma:.0f}), 3PIE "
          f"{sc_o['ssim_projection']:.4f} ({t1:.1f} s, scale {sc_o['scale']:.3f} vs 1)")

    phases, secs, _ = _run_py4dstem([s.intensities.numpy() for s in samples], s0, s0.operator(),
                                    n_slices=p.n_slices, n_iter=pie["n_iter"],
                                    batch_size=pie["batch_size"], step=args.peer_step,
                                    probe=args.peer_probe)
    rows = []
    for s, ph, sec in zip(samples, phases, secs):
        rec, t = ours(s.operator(), s.intensities)
        a, b = stem_scores(torch.from_numpy(ph), s.potential), stem_scores(rec, s.potential)
        rows.append((s, float(sec), a, t, b))
    print(f"{'crystal':<22}{'method':<10}{'time s':>8}{'slice SSIM':>12}{'proj SSIM':>11}"
          f"{'depth-blind':>13}")
    for s, tp, a, to, b in rows:
        name = f"{s.material} [{s.zone_axis}] {s.thickness:.0f} Å"
        for meth, t, sc in (("py4DSTEM", tp, a), ("3PIE", to, b)):
            print(f"{name:<22}{meth:<10}{t:>8.1f}{sc['ssim_slices_mean']:>12.4f}"
                  f"{sc['ssim_projection']:>11.4f}{sc['ssim_depth_blind']:>13.4f}")
            name = ""
    mean = lambda f: float(np.mean([f(r) for r in rows]))  # noqa: E731
    tp, to = mean(lambda r: r[1]), mean(lambda r: r[3])
    sp, so = mean(lambda r: r[2]["ssim_slices_mean"]), mean(lambda r: r[4]["ssim_slices_mean"])
    pp, po = mean(lambda r: r[2]["ssim_projection"]), mean(lambda r: r[4]["ssim_projection"])
    db = mean(lambda r: r[2]["ssim_depth_blind"])
    print(f"{'mean':<22}{'py4DSTEM':<10}{tp:>8.1f}{sp:>12.4f}{pp:>11.4f}{db:>13.4f}")
    print(f"{'':<22}{'3PIE':<10}{to:>8.1f}{so:>12.4f}{po:>11.4f}{db:>13.4f}")
    print(f"ratios: time py4DSTEM / 3PIE {tp / to:.2f}x (> 1: ours is faster); per-slice SSIM "
          f"3PIE - py4DSTEM {so - sp:+.4f} (ratio {so / sp:.3f}); projected SSIM 3PIE - py4DSTEM "
          f"{po - pp:+.4f}; per-slice SSIM minus depth-blind: py4DSTEM {sp - db:+.4f}, "
          f"3PIE {so - db:+.4f}")


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
    if args.peers_only:
        _py4dstem_compare(args)
        return 0
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
                            defocus=args.defocus, detector_shape=detector,
                            fftw_planning=None)  # abTEM timed at its own FFTW setting (FFTW_MEASURE)

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

    _py4dstem_compare(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
