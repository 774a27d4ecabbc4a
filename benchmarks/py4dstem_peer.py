"""py4DSTEM's multislice ptychography on paperlib's 4D-STEM data (runs in ``.venv-py4dstem``).

``python benchmarks/py4dstem_peer.py IN.npz OUT.npz`` -- imports no paperlib: py4DSTEM 0.14.18
pins numpy 1.26, so it lives in its own venv and ``benchmarks/stem_peers.py`` (main venv)
exchanges arrays with it through ``.npz`` files.

Input (one file, any number of crystals ``N``)
    ``intensities`` (N, Sy, Sx, K, K) float32, each pattern fftshifted (zero frequency at
    ``(K // 2, K // 2)``), a centre crop of a ``gpts``-pixel far field; ``positions`` (Sy, Sx, 2)
    Å, ``[..., 0]`` along the rows, ``(0, 0)`` = centre of object pixel ``[0, 0]``;
    ``detector_mask`` (K, K) bool, the pixels the simulation can populate (inside its
    antialiasing band limit); scalars ``gpts``, ``sampling`` (Å), ``energy`` (keV),
    ``semiangle`` (mrad), ``defocus`` (Å, positive = underfocus), ``slice_thickness`` (Å),
    ``n_slices``, ``n_iter``, ``batch_size`` (0 = all positions), ``step_size``, ``seed``;
    optional ``probe`` (G, G) complex, the corner-centred real-space probe, and ``use_mask``
    (default True).
Output
    ``phase`` (N, D, gpts, gpts) float32: py4DSTEM's object (``object_type="potential"``, i.e.
    the phase ``sigma V`` in rad per slice) on *our* grid: same pixels, same origin, no crop
    needed; ``seconds`` (N,) wall time of each ``preprocess`` + ``reconstruct``; ``error`` (N,)
    py4DSTEM's final normalised error; ``version``.

Conventions matched (py4DSTEM 0.14.18 source, ``py4DSTEM/process/phase/``)
    * real-space pixel: ``phase_base_class.py`` ``sampling`` = ``lambda / angular_sampling / n``
      with ``n`` the pattern size, i.e. ``1 / (n dk)``. Our crop (48 of 64 px) would give
      0.267 Å instead of 0.2 Å (a 4/3 magnified object), so the patterns are zero-padded back
      to ``gpts`` here (the crop only removed pixels outside the band limit, which are 0).
    * reciprocal calibration: ``force_reciprocal_sampling = 1 / (gpts sampling)`` Å^-1.
    * scan positions: ``initial_scan_positions`` in Å, (J, 2) row-major like the patterns;
      ``_calculate_scan_positions_in_pixels`` divides by ``sampling`` and adds
      ``object_padding_px``: with padding 0, ``force_com_rotation=0``,
      ``force_com_transpose=False`` and ``center_positions_in_fov=False`` the probe centre
      sits at our pixel coordinates exactly. ``_extract_vectorized_patch_indices`` takes the
      object patches modulo the object shape, so an initial object of exactly (D, gpts, gpts)
      makes py4DSTEM's object periodic over our field of view, as our simulation is.
    * pattern centring: ``_normalize_diffraction_intensities`` shifts each pattern by
      ``-com_fitted`` (``mode="grid-wrap"``) to corner-centre it; ``force_com_shifts =
      (gpts // 2, gpts // 2)`` makes that an exact ``ifftshift`` (else the fitted CoM plane of
      a crystal's patterns would shift them by fractions of a pixel).
    * defocus: ``_set_polar_parameters`` maps ``defocus`` to ``C10 = -defocus`` and
      ``ComplexProbe`` multiplies by ``exp(-i chi)``, ``chi = pi alpha^2 C10 / lambda``; that
      is our ``exp(+i pi lambda df k^2)`` for ``defocus = df`` (both: positive = underfocus).
    * probe (kept fixed): ``ComplexProbe.build`` is the corner-centred ``ifft2`` of the
      aperture, like ours, normalised by ``_initialize_probe`` to the mean pattern sum; an
      ``initial_probe_guess`` array is used as given, so it is scaled the same way here. With
      ``probe`` in the input (``stem_peers.py``'s default) py4DSTEM gets the simulation's own
      probe; without it, ``ComplexProbe`` from semiangle and defocus with ``rolloff=0``: its hard
      edge differs from our one-Fourier-pixel (1.96 mrad) linear ramp, and on the single-slice
      sanity case that costs py4DSTEM ~0.03-0.1 SSIM and makes it drift with more iterations.
    * object: ``object_type="potential"`` transmits ``exp(1j * object)``
      (``Object2p5DProbeMethodsMixin._overlap_projection``), our ``exp(i sigma V)``; slices are
      propagated by ``exp(-i pi lambda dz k^2)`` (``_precompute_propagator_arrays``), ours too;
      py4DSTEM takes ``num_slices - 1`` thicknesses (no propagation after the last slice,
      which does not change intensities).
    * band limit: our model band-limits transmission and propagation to 2/3 Nyquist, py4DSTEM
      does not; ``detector_fourier_mask`` (FFT order) restricts its data term to the pixels the
      simulation can populate, instead of fitting the exact zeros outside them.
    * regularisers off (defaults that only act with a parameter set), ``object_positivity``
      kept (V >= 0 holds), ``fix_potential_baseline=False``, ``object_fov_mask=True``.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402


def reconstruct_one(I, cfg, mask_full):
    """py4DSTEM reconstruction of one crystal: (phase (D, G, G), seconds, error)."""
    import py4DSTEM
    from py4DSTEM.process.phase import MultislicePtychography

    G, K = int(cfg["gpts"]), I.shape[-1]
    lo = G // 2 - K // 2
    data = np.zeros(I.shape[:2] + (G, G), dtype=np.float32)
    data[..., lo:lo + K, lo:lo + K] = I
    dk = 1.0 / (G * float(cfg["sampling"]))
    D = int(cfg["n_slices"])
    pos = np.asarray(cfg["positions"], dtype=np.float64).reshape(-1, 2).copy()
    # the scan step only calibrates the datacube; the positions themselves are passed in Å
    grid = np.asarray(cfg["positions"])
    step = float(np.linalg.norm(grid[1, 0] - grid[0, 0])) if grid.shape[0] > 1 else 1.0

    probe = None
    if "probe" in cfg:  # the simulation's own probe (corner-centred, real space), scaled
        probe = np.asarray(cfg["probe"], dtype=np.complex64)  # like ComplexProbe's below
        mean = float(data.sum(axis=(-2, -1)).mean())
        probe = probe * np.sqrt(mean / np.sum(np.abs(np.fft.fft2(probe)) ** 2))

    start = time.perf_counter()
    dc = py4DSTEM.DataCube(data=data)
    ptycho = MultislicePtychography(
        datacube=dc, energy=float(cfg["energy"]) * 1e3, num_slices=D,
        slice_thicknesses=float(cfg["slice_thickness"]),
        semiangle_cutoff=float(cfg["semiangle"]), rolloff=0.0,
        defocus=float(cfg["defocus"]),
        object_padding_px=(0, 0), initial_object_guess=np.zeros((D, G, G), np.float32),
        initial_probe_guess=probe,
        initial_scan_positions=pos, object_type="potential", verbose=False, device="cpu",
    )
    ptycho.preprocess(
        force_scan_sampling=step, force_reciprocal_sampling=dk,
        force_com_rotation=0.0, force_com_transpose=False,
        force_com_shifts=(float(G // 2), float(G // 2)),
        center_positions_in_fov=False, object_fov_mask=True,
        plot_center_of_mass=False, plot_rotation=False, plot_probe_overlaps=False,
    )
    assert np.allclose(ptycho.sampling, cfg["sampling"], rtol=1e-5), ptycho.sampling
    assert np.allclose(np.asarray(ptycho._positions_px) * cfg["sampling"], pos, atol=1e-3)
    bs = int(cfg["batch_size"])
    ptycho.reconstruct(
        num_iter=int(cfg["n_iter"]), reconstruction_method="gradient-descent",
        step_size=float(cfg["step_size"]), max_batch_size=bs if bs > 0 else None,
        seed_random=int(cfg["seed"]), fix_probe=True, fix_positions=True,
        object_positivity=True, fix_potential_baseline=False,
        detector_fourier_mask=np.fft.ifftshift(mask_full) if mask_full is not None else None,
        progress_bar=False,
    )
    seconds = time.perf_counter() - start
    return np.asarray(ptycho.object, dtype=np.float32), seconds, float(ptycho.error)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1])
        return 2
    import py4DSTEM

    warnings.filterwarnings("ignore")
    src = np.load(argv[0])
    cfg = {k: src[k] for k in src.files if k not in ("intensities",)}
    intensities = src["intensities"]
    G, K = int(cfg["gpts"]), intensities.shape[-1]
    mask_full = None
    if "detector_mask" in cfg and bool(cfg.get("use_mask", True)):
        lo = G // 2 - K // 2
        mask_full = np.zeros((G, G), dtype=np.float32)
        mask_full[lo:lo + K, lo:lo + K] = cfg["detector_mask"]
    phases, secs, errs = [], [], []
    for i, I in enumerate(intensities):
        ph, s, e = reconstruct_one(I, cfg, mask_full)
        print(f"py4DSTEM crystal {i}: {s:.1f} s, error {e:.4g}", flush=True)
        phases.append(ph)
        secs.append(s)
        errs.append(e)
    np.savez(argv[1], phase=np.stack(phases), seconds=np.asarray(secs),
             error=np.asarray(errs), version=py4DSTEM.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
