"""One benchmark report against every peer: ``figures/benchmarks.md`` and ``figures/benchmarks.csv``.

``make bench`` runs this script. Every row compares one component of ours with one peer, both
measured in this run, on the same data, on this machine; the header describes the machine (CPU
model, cores, threads, library and peer versions, date, git commit). A ratio is never quoted
without the accuracy it was measured at: each row carries the accuracy of both sides (SSIM or
relative L2). Ratios of times are ``peer time / our time`` (> 1: ours is faster); other ratios
say their direction in the row.

Sections (``--sections``; each writes its rows, a missing peer gives rows marked ``skipped`` with
the reason and no numbers):

``mri_dc``
    Paper Eq. 4 (:meth:`paperlib.physics.mri.MRIOperator.data_consistency`) on the profile's test
    volumes against the same formula with sigpy's centred orthonormal FFT (``sigpy.fft``) and with
    numpy's; accuracy: relative L2 from a float64 numpy reference. Ours is timed as
    ``data_consistency(x, y)`` (``A^H y`` computed at every call) and, in a third row, as the step
    bound to ``y`` (``bind_physics_step``: ``A^H y`` computed once, what DART's steps do).
``mri_solvers``
    CS-MRI (L1 wavelet, db4) and TV against sigpy's ``L1WaveletRecon`` and ``TotalVariationRecon``.
    **Each solver's relative weight is chosen for itself** on the profile's validation volumes (best
    mean SSIM inside the head over ``--grid``), then every solver reconstructs the test volumes with
    the same iteration count. sigpy solves over complex images, so ours is run on the complex
    problem (same problem) and on the real one (the library default); sigpy's TV is anisotropic,
    so ours is run anisotropic (same variant) and isotropic (the library default).
``multislice``
    Our multislice forward model (paper Eq. 1) against abTEM's on SrTiO3 [001] (the set-up of
    ``benchmarks/stem_peers.py``). abTEM has no gradient: our autograd gradient of the Eq. 2 loss is
    timed against two abTEM forwards (the cost of ONE central finite-difference directional
    derivative with the peer) and against our own forward; its accuracy is a float64 check of a
    directional derivative against a central finite difference.
``ptycho``
    3PIE against py4DSTEM's multislice ptychography on the profile's test crystals (in
    ``.venv-py4dstem``, through ``benchmarks/py4dstem_peer.py``; see ``stem_peers.py``).
``guided``
    DART and DRIFT time per volume against TV on the same MRI validation volumes
    (:func:`paperlib.experiments.runner.run_cases`, the profile's settings); plus the before/after
    rows of ``benchmarks/guided_speed.py`` read from its latest results
    (``benchmarks/results/guided_speed.csv``, marked ``read``).
``denoiser``
    The denoiser step's throughput (FLOPs of one UNet3D forward counted by
    ``torch.utils.flop_counter.FlopCounterMode``, divided by its time) as a fraction of this
    CPU's measured peak: a large matmul and a 3x3 conv2d, fp32 and bf16.
``memory``
    Peak memory per rank against P, read from ``benchmarks/results/scaling_*.csv``
    (``benchmarks/scaling.py``, which needs P processes and minutes per P; marked ``read``).

``--quick`` runs every section on tiny sizes (the ``ci`` profile, few iterations, a 3-weight grid)
to check the machinery in about a minute; its numbers are not benchmarks. ``--read SECTION...``
takes those sections' rows from the previous report's CSV instead of running them.

    python benchmarks/report.py                      # full: default profile, 2 threads (20-40 min)
    python benchmarks/report.py --quick --out-dir /tmp/bench
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:  # the sibling benchmarks (stem_peers) import as modules
    sys.path.insert(0, str(HERE))

SECTIONS = ("mri_dc", "mri_solvers", "multislice", "ptycho", "guided", "denoiser", "memory")
TIME_RATIO = "peer/ours time (>1: ours faster)"
#: the Makefile's validation grid (TUNE_GRID) of relative weights
FULL_GRID = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02)
QUICK_GRID = (0.0005, 0.005, 0.05)


@dataclass
class Row:
    """One comparison: our value, the peer's, their ratio and the accuracy each was measured at."""

    section: str
    component: str
    ours: str
    peer: str
    data: str
    metric: str
    ours_value: float | None = None
    peer_value: float | None = None
    ratio: float | None = None
    direction: str = TIME_RATIO
    accuracy_metric: str = ""
    ours_accuracy: float | None = None
    peer_accuracy: float | None = None
    status: str = "measured"  # measured | read | skipped | error
    note: str = ""
    measured_utc: str = ""


COLUMNS = tuple(f.name for f in fields(Row))
FLOAT_COLUMNS = ("ours_value", "peer_value", "ratio", "ours_accuracy", "peer_accuracy")


@dataclass(frozen=True)
class Settings:
    """Sizes of one run (:func:`settings`); ``quick`` shrinks all of them."""

    quick: bool
    profile: str
    threads: int
    repeats: int
    n_val: int | None  # None: the profile's split sizes
    n_test: int | None
    grid: tuple[float, ...]
    iters: int | None  # None: the profile's CS/TV iterations
    cells: tuple[int, int, int]
    gpts: int
    n_slices: int
    scan: int
    detector: int
    peer_crystals: int
    peer_iter: int | None  # None: the profile's 3PIE epochs
    guided_cases: int
    matmul_n: int
    conv_shape: tuple[int, int, int, int]  # (N, C, H, W), C -> C channels, 3x3
    unet_preset: str
    unet_shape: tuple[int, int, int, int, int]
    scaling: tuple[str, ...] = ("default", "paper")


def settings(quick: bool, threads: int, profile: str | None = None) -> Settings:
    if quick:
        return Settings(True, profile or "ci", threads, 2, 1, 1, QUICK_GRID, 10, (2, 2, 2), 32, 4, 8, 32,
                        1, 2, 1, 256, (1, 16, 32, 32), "ci", (1, 1, 4, 32, 32))
    return Settings(False, profile or "default", threads, 5, None, None, FULL_GRID, None, (3, 3, 4), 64, 8, 16, 64,
                    4, None, 2, 2048, (8, 64, 64, 64), "default", (1, 1, 8, 64, 64))


def now_utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")


def best_of(fns: dict, repeats: int) -> dict:
    """``{name: (best wall s, result)}``, calls interleaved after one warm-up each
    (``stem_peers._best_of``)."""
    from stem_peers import _best_of

    return {k: (v[0], v[3]) for k, v in _best_of(fns, repeats).items()}


def rel_l2(a, b) -> float:
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def skipped(section: str, comparisons: list[tuple[str, str, str]], reason: str) -> list[Row]:
    """Rows of ``(component, ours, peer)`` that were not measured, with the reason."""
    return [Row(section, c, o, p, "", "", status="skipped", note=reason, direction="")
            for c, o, p in comparisons]


def sigpy_or_reason():
    try:
        import sigpy  # noqa: F401
        import sigpy.mri.app  # noqa: F401
    except ImportError as err:
        return None, f"sigpy not installed ({err}); `make bench` installs the bench extra"
    return sigpy, ""


# ----------------------------------------------------------------------------------- MRI Eq. 4
def _stack_cases(cases):
    """Test volumes as one stack of slices: image (N, H, W), k-space, per-slice masks."""
    import torch

    image = torch.cat([c.image for c in cases])
    kspace = torch.cat([c.kspace for c in cases])
    masks = torch.cat([c.operator.mask.expand(c.image.shape) for c in cases])
    return image, kspace, masks


def section_mri_dc(s: Settings) -> list[Row]:
    import numpy as np
    import torch

    from paperlib.config import load_profile
    from paperlib.experiments.mri import mri_cases
    from paperlib.physics.mri import MRIOperator

    profile = load_profile(s.profile)
    cases = mri_cases(profile, split="test", n=s.n_test)
    image, y, masks = _stack_cases(cases)
    op = MRIOperator(masks)
    # Eq. 4 acts on a prior's estimate: the truth plus seeded noise, complex (as sigpy's images)
    noise = torch.randn(image.shape, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    x = image.to(torch.complex64) + 0.05 * noise
    xn, yn, mn = x.numpy(), y.numpy(), masks.numpy()
    data = f"{len(cases)} test volume(s) of profile {s.profile!r}: {tuple(x.shape)} slices, complex64"
    axes = (-2, -1)

    def np_fft(a):
        return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(a, axes=axes), norm="ortho"), axes=axes)

    def np_ifft(a):
        return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(a, axes=axes), norm="ortho"), axes=axes)

    def eq4(fft, ifft, xa, ya, ma):
        k = fft(xa)
        return ifft(k - ma * (k - ya))

    reference = eq4(np_fft, np_ifft, xn.astype(np.complex128), yn.astype(np.complex128), mn)
    bound = op.bind_physics_step(y)  # A^H y computed once, as DART's steps do

    fns = {"ours": lambda: op.data_consistency(x, y).numpy(), "ours_reused": lambda: bound(x).numpy(),
           "numpy": lambda: eq4(np_fft, np_ifft, xn, yn, mn)}
    sp, reason = sigpy_or_reason()
    if sp is not None:
        fns["sigpy"] = lambda: eq4(lambda a: sp.fft(a, axes=axes), lambda a: sp.ifft(a, axes=axes), xn, yn, mn)
    times = best_of(fns, s.repeats)
    rows = []
    ours_t, ours_out = times["ours"]
    for peer, label in (("sigpy", "sigpy.fft/ifft (centred, ortho), same formula"),
                        ("numpy", "numpy.fft with fftshift, same formula"),
                        ("numpy_reused", "numpy.fft with fftshift, same formula; ours bound to y "
                                         "(bind_physics_step: A^H y once, as DART's steps)")):
        if peer == "numpy_reused":
            (ours_t, ours_out), peer = times["ours_reused"], "numpy"
        if peer not in times:
            rows += skipped("mri_dc", [("MRI data consistency (Eq. 4)", "MRIOperator.data_consistency", label)],
                            reason)
            continue
        t, out = times[peer]
        rows.append(Row("mri_dc", "MRI data consistency (Eq. 4)", "MRIOperator.data_consistency", label, data,
                        f"s per stack (best of {s.repeats})", ours_t, t, t / ours_t,
                        accuracy_metric="relative L2 from float64 numpy", ours_accuracy=rel_l2(ours_out, reference),
                        peer_accuracy=rel_l2(out, reference)))
    return rows


# ----------------------------------------------------------------------------- CS-MRI and TV
def _sigpy_recon(kind: str, case, lam: float, iters: int):
    """sigpy's app on every slice of one case (one coil of ones, its mask as weights), magnitude."""
    import numpy as np
    import sigpy.mri.app as app
    import torch

    masks = case.operator.mask.expand(case.image.shape).numpy().astype(np.float32)
    out = []
    for y_s, m_s in zip(case.kspace.numpy(), masks):
        mps = np.ones((1, *y_s.shape), dtype=np.complex64)
        App = app.L1WaveletRecon if kind == "cs" else app.TotalVariationRecon
        extra = {"wave_name": "db4"} if kind == "cs" else {}
        out.append(np.abs(App(y_s[None], mps, lam, weights=m_s, max_iter=iters, show_pbar=False, **extra).run()))
    return torch.from_numpy(np.stack(out)).float()


def section_mri_solvers(s: Settings) -> list[Row]:
    import torch
    from tqdm.auto import tqdm

    from paperlib.config import load_profile
    from paperlib.experiments.mri import mri_cases
    from paperlib.metrics.image import volume_scores
    from paperlib.recon import mri_baselines as mb

    profile = load_profile(s.profile)
    b = profile.mri_baselines
    cs_iters, tv_iters = (s.iters, s.iters) if s.iters else (b.cs_iters, b.tv_iters)
    comparisons = [  # (component, our solver, peer solver, what differs)
        ("CS-MRI, complex problem", "cs_complex", "sigpy_cs", "same problem; wavelet db4: ours periodised, "
         f"{b.cs_levels} levels; sigpy zero-padded, all levels"),
        ("CS-MRI, real problem", "cs_real", "sigpy_cs", "ours over real images (library default); sigpy has "
         "no real-image constraint (complex)"),
        ("TV anisotropic, complex problem", "tv_aniso_complex", "sigpy_tv", "same variant, same problem"),
        ("TV anisotropic, real problem", "tv_aniso_real", "sigpy_tv", "ours over real images; sigpy complex"),
        ("TV isotropic, complex problem", "tv_iso_complex", "sigpy_tv", "ours isotropic (library default); "
         "sigpy has only anisotropic TV"),
        ("TV isotropic, real problem", "tv_iso_real", "sigpy_tv", "ours isotropic, real images (the tables' "
         "TV); sigpy anisotropic, complex"),
    ]
    labels = {"cs_complex": "cs_wavelet(real=False, db4)", "cs_real": "cs_wavelet(real=True, db4)",
              "tv_aniso_complex": "total_variation(real=False, isotropic=False)",
              "tv_aniso_real": "total_variation(real=True, isotropic=False)",
              "tv_iso_complex": "total_variation(real=False)", "tv_iso_real": "total_variation(real=True)",
              "sigpy_cs": "sigpy L1WaveletRecon (db4)", "sigpy_tv": "sigpy TotalVariationRecon"}
    sp, reason = sigpy_or_reason()
    if sp is None:
        return skipped("mri_solvers", [(c, labels[o], labels[p]) for c, o, p, _ in comparisons], reason)

    def run(name: str, case, weight: float):
        op, y = case.operator, case.kspace
        if name.startswith("sigpy"):
            kind = name.split("_")[1]
            lam = mb.absolute_weight(op.zero_filled(y), weight)  # the same absolute λ convention
            return _sigpy_recon(kind, case, lam, cs_iters if kind == "cs" else tv_iters)
        real = name.endswith("_real")
        if name.startswith("cs"):
            return mb.cs_wavelet(op, y, weight=weight, iters=cs_iters, levels=b.cs_levels, wavelet="db4", real=real)
        return mb.total_variation(op, y, weight=weight, iters=tv_iters, real=real, isotropic="_iso_" in name)

    def mean_ssim(name, cases, weight):
        scores = [volume_scores(run(name, c, weight), c.image, head_mask=c.head_mask)["ssim_head"] for c in cases]
        return sum(scores) / len(scores)

    torch.set_num_threads(s.threads)
    val = mri_cases(profile, split="val", n=s.n_val)
    test = mri_cases(profile, split="test", n=s.n_test)
    tuned, results = {}, {}
    bar = tqdm(total=len(labels) * (len(s.grid) + 1), desc="CS-MRI/TV vs sigpy (tune, test)", disable=s.quick)
    for name in labels:  # each solver's weight by its own best validation SSIM

        def score(w: float) -> float:
            value = mean_ssim(name, val, w)
            bar.update()
            return value

        tuned[name] = max(s.grid, key=score)
        start = time.perf_counter()
        recons = [run(name, c, tuned[name]) for c in test]
        seconds = (time.perf_counter() - start) / len(test)
        ssim = [volume_scores(r, c.image, head_mask=c.head_mask)["ssim_head"] for r, c in zip(recons, test)]
        results[name] = (seconds, sum(ssim) / len(ssim))
        bar.update()
    bar.close()
    shape = tuple(test[0].image.shape)
    data = (f"{len(test)} test volume(s) {shape} of profile {s.profile!r}, weights tuned on {len(val)} validation "
            f"volume(s) over {len(s.grid)} weights")
    edge = lambda w: f"{w:g}" + (" (at the grid's edge)" if w in (min(s.grid), max(s.grid)) else "")  # noqa: E731
    rows = []
    for component, ours, peer, note in comparisons:
        (t_o, a_o), (t_p, a_p) = results[ours], results[peer]
        iters = cs_iters if ours.startswith("cs") else tv_iters
        rows.append(Row("mri_solvers", component, labels[ours], labels[peer], data,
                        f"s per volume, {iters} iterations each", t_o, t_p, t_p / t_o,
                        accuracy_metric="test SSIM in head", ours_accuracy=a_o, peer_accuracy=a_p,
                        note=f"{note}; weight ours {edge(tuned[ours])}, sigpy {edge(tuned[peer])}; ours: the "
                             "volume in one batched call, sigpy: one slice per call (its apps take one slice)"))
    return rows


# ------------------------------------------------------------------------------- multislice
def section_multislice(s: Settings) -> list[Row]:
    import abtem
    import dask
    import torch

    from paperlib.data.crystals import abtem_4dstem, crystal_potential, unit_cell
    from paperlib.physics.multislice import MultisliceOperator, grid_scan

    torch.set_num_threads(s.threads)
    dask.config.set(scheduler="synchronous" if s.threads == 1 else "threads", num_workers=s.threads)
    abtem.config.set({"fftw.threads": s.threads})
    atoms = unit_cell("SrTiO3") * tuple(s.cells)
    extent = float(atoms.cell[0, 0])
    dz = float(atoms.cell[2, 2]) / s.n_slices
    V = crystal_potential(atoms, gpts=s.gpts, n_slices=s.n_slices)
    sampling = extent / s.gpts
    geometry = dict(gpts=s.gpts, sampling=sampling, energy=200.0, semiangle=20.0, slice_thickness=dz,
                    n_slices=s.n_slices, scan_positions=grid_scan((0.0, 0.0), (extent, extent), s.scan),
                    detector_shape=(s.detector, s.detector))
    op = MultisliceOperator(**geometry)
    Vt = torch.from_numpy(V)
    data = (f"SrTiO3 [001] {'x'.join(map(str, s.cells))} cells, {s.gpts}^2 grid, {s.n_slices} slices, "
            f"{s.scan}x{s.scan} scan, {s.detector}^2 detector, 200 kV, float32")
    intensities = op.forward(Vt)
    start = 0.9 * Vt  # the gradient is taken away from the solution, where it is not ~0

    times = best_of({
        "abtem": lambda: abtem_4dstem(V, sampling=sampling, slice_thickness=dz, energy=200.0, semiangle=20.0,
                                      scan_positions=geometry["scan_positions"], defocus=0.0,
                                      detector_shape=geometry["detector_shape"],
                                      fftw_planning=None),  # abTEM timed at its own FFTW setting
        "forward": lambda: op.forward(Vt),
        "gradient": lambda: op.gradient(start, intensities),
    }, s.repeats)
    (t_a, I_a), (t_f, I_f), (t_g, _) = times["abtem"], times["forward"], times["gradient"]
    err = rel_l2(I_f.numpy(), I_a)

    # float64 check of the gradient: <grad, d> against a central finite difference of the loss
    op64 = MultisliceOperator(**geometry, dtype=torch.float64)
    V64, I64 = start.double(), intensities.double()
    d = torch.randn(V64.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, g = op64.gradient(V64, I64)
    h = 1e-4 * float(V64.abs().max())
    fd = (float(op64.loss(V64 + h * d, I64)) - float(op64.loss(V64 - h * d, I64))) / (2 * h)
    grad_err = abs(float((g * d).sum()) - fd) / abs(fd)

    version = abtem.__version__
    return [
        Row("multislice", "multislice forward (Eq. 1)", f"MultisliceOperator.forward ({op.fft_backend} FFT)",
            f"abTEM {version}", data,
            f"s per 4D-STEM data set (best of {s.repeats})", t_f, t_a, t_a / t_f,
            accuracy_metric="relative L2 from abTEM", ours_accuracy=err, peer_accuracy=0.0,
            note="abTEM is the reference of the accuracy column"),
        Row("multislice", "multislice gradient (Eq. 2 loss)", "MultisliceOperator.gradient (hand-written adjoint, FFTW)",
            f"2 x abTEM {version} forward (abTEM has no gradient: the cost of one central finite-difference "
            "directional derivative)", data, f"s (best of {s.repeats})", t_g, 2 * t_a, 2 * t_a / t_g,
            accuracy_metric="relative error of <grad, d> vs central finite difference (float64)",
            ours_accuracy=grad_err, note="our gradient is all D x H x W directional derivatives at once"),
        Row("multislice", "multislice gradient vs our forward", "MultisliceOperator.gradient (hand-written adjoint, FFTW)",
            "MultisliceOperator.forward (ours: abTEM has no gradient)", data, f"s (best of {s.repeats})",
            t_g, t_f, t_f / t_g, direction="forward/gradient time (the gradient's cost in forwards is 1/ratio)",
            accuracy_metric="as the two rows above", ours_accuracy=grad_err, peer_accuracy=err),
    ]


# ----------------------------------------------------------------------------- 3PIE vs py4DSTEM
def section_ptycho(s: Settings) -> list[Row]:
    import numpy as np
    import torch

    import stem_peers
    from paperlib.config import load_profile
    from paperlib.data.crystals import stem_dataset
    from paperlib.metrics.stem import stem_scores
    from paperlib.recon.stem_baselines import three_pie

    comparison = [("multislice ptychography", "3PIE (three_pie)", "py4DSTEM MultislicePtychography")]
    if not (REPO / stem_peers.PY4DSTEM_PYTHON).exists():
        return skipped("ptycho", comparison, f"{stem_peers.PY4DSTEM_PYTHON} missing (py4DSTEM pins numpy 1.26; "
                                             f"`make bench` creates it: {stem_peers.PY4DSTEM_SETUP})")
    torch.set_num_threads(1)  # py4DSTEM runs with one thread (stem_peers._run_py4dstem)
    profile = load_profile(s.profile)
    pie = profile.stem_baselines.three_pie.model_dump()
    if s.peer_iter is not None:
        pie["n_iter"] = s.peer_iter
    samples = stem_dataset(profile.stem, "test", s.peer_crystals)
    p = profile.stem
    with contextlib.chdir(REPO):  # stem_peers names the venv relative to the repository
        phases, secs, version = stem_peers._run_py4dstem(
            [x.intensities.numpy() for x in samples], samples[0], samples[0].operator(), n_slices=p.n_slices,
            n_iter=pie["n_iter"], batch_size=pie["batch_size"], step=0.5, probe="ours")
    ours_t, ours_s, peer_s, ours_p, peer_p = [], [], [], [], []
    for x, ph in zip(samples, phases):
        start = time.perf_counter()
        rec = three_pie(x.operator(), x.intensities, generator=torch.Generator().manual_seed(0), **pie)
        ours_t.append(time.perf_counter() - start)
        a, b = stem_scores(rec, x.potential), stem_scores(torch.from_numpy(ph), x.potential)
        ours_s.append(a["ssim_slices_mean"])
        peer_s.append(b["ssim_slices_mean"])
        ours_p.append(a["ssim_projection"])
        peer_p.append(b["ssim_projection"])
    t_o, t_p = float(np.mean(ours_t)), float(np.mean(secs))
    data = (f"{len(samples)} test crystal(s) of profile {s.profile!r}: {p.gpts}^2 grid, {p.n_slices} slices, "
            f"{p.scan_gpts}^2 scan, {p.detector_gpts}^2 detector")
    return [Row("ptycho", comparison[0][0], comparison[0][1], f"py4DSTEM {version} MultislicePtychography", data,
                f"s per crystal, {pie['n_iter']} epochs each, one thread", t_o, t_p, t_p / t_o,
                accuracy_metric="per-slice SSIM (mean)", ours_accuracy=float(np.mean(ours_s)),
                peer_accuracy=float(np.mean(peer_s)),
                note=f"known probe, fixed positions, from vacuum; projected SSIM ours {np.mean(ours_p):.4f}, "
                     f"py4DSTEM {np.mean(peer_p):.4f}")]


# ----------------------------------------------------------------------------- DART, DRIFT vs TV
def _guided_speed_rows() -> list[Row]:
    """The before/after rows of benchmarks/guided_speed.py, from its latest results (read, not run)."""
    path = HERE / "results" / "guided_speed.csv"
    if not path.exists():
        return skipped("guided", [("DART/DRIFT speed-up", "after", "before")], f"{path} missing: run "
                       "benchmarks/guided_speed.py")
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    from guided_speed import recorded_header, setting_means

    machine_line = recorded_header(path.with_suffix(".md")) or "machine not recorded"
    when = subprocess.run(["git", "log", "-1", "--format=%cI", "--", str(path)], cwd=REPO, capture_output=True,
                          text=True).stdout.strip() or "uncommitted"
    rows = []
    for suite, method in dict.fromkeys((r["suite"], r["method"]) for r in got):
        means = setting_means(got, suite, method)  # per case the median of its repeats, then the mean
        if means is None:
            continue
        pick = {k: [r for r in got if (r["suite"], r["method"], r["setting"]) == (suite, method, k)]
                for k in ("before", "after")}
        t = {k: means[k] for k in ("before", "after")}
        a = {k: means[f"ssim_{k}"] for k in ("before", "after")}
        steps = {("mri", "dart"): "; MRI DART 80 steps (70 after)",
                 ("stem", "dart"): "; 20 diffusion steps, physics steps one after the other (18, with momentum after)",
                 ("stem", "drift"): "; K = 100 physics steps one after the other (40 with momentum after)",
                 }.get((suite, method), "")
        rows.append(Row("guided", f"{method.upper()} sampling speed-up ({suite})",
                        "after: profile precision (bf16 weights and activations), channels-last, groups side by side, "
                        "multislice adjoint, paperlib's allocator thresholds", "before: float32, contiguous, groups "
                        f"one after the other, autograd gradient, glibc's default allocator{steps}",
                        f"{len({r['case'] for r in pick['after']})} validation case(s), {suite}",
                        "s per volume", t["after"], t["before"], t["before"] / t["after"],
                        direction="before/after time (>1: faster now)", accuracy_metric="SSIM",
                        ours_accuracy=a["after"], peer_accuracy=a["before"], status="read",
                        note=f"benchmarks/guided_speed.py (results/guided_speed.csv): {machine_line}",
                        measured_utc=when))
    return rows


def section_guided(s: Settings) -> list[Row]:
    import torch

    from paperlib.config import load_profile
    from paperlib.diffusion.partition import resolve_precision
    from paperlib.experiments.runner import MODALITIES, run_cases

    torch.set_num_threads(s.threads)
    profile = load_profile(s.profile)
    cases = MODALITIES["mri"].cases(profile, "val", s.guided_cases)
    got, _ = run_cases(profile, "mri", cases, ["tv", "dart", "drift"], seeds=(0,), progress=False)
    mean = {m: {k: sum(r[k] for r in got if r["method"] == m) / len(cases) for k in ("wall_time_s", "ssim_whole")}
            for m in ("tv", "dart", "drift")}
    d = profile.mri_diffusion
    data = f"{len(cases)} MRI validation volume(s) {tuple(cases[0].image.shape)} of profile {s.profile!r}"
    rows = [Row("guided", f"{m.upper()} per volume vs TV", f"{m.upper()} ({getattr(d, m).steps} steps, "
                f"{resolve_precision(d.precision)})", f"TV ({profile.mri_baselines.tv_iters} primal-dual iterations)", data,
                "s per volume", mean[m]["wall_time_s"], mean["tv"]["wall_time_s"],
                mean["tv"]["wall_time_s"] / mean[m]["wall_time_s"], accuracy_metric="whole-image SSIM",
                ours_accuracy=mean[m]["ssim_whole"], peer_accuracy=mean["tv"]["ssim_whole"],
                note="ratio < 1: the diffusion method takes longer than TV")
            for m in ("dart", "drift")]
    return rows + _guided_speed_rows()


# ------------------------------------------------------------------------------- denoiser
def _gflops(fn, flops: float, repeats: int) -> float:
    (seconds, _), = best_of({"f": fn}, repeats).values()
    return flops / seconds / 1e9


def _counted_flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def section_denoiser(s: Settings) -> list[Row]:
    import torch
    import torch.nn.functional as F

    from paperlib.diffusion.partition import run_network
    from paperlib.diffusion.unet3d import PRESETS, UNet3D

    torch.set_num_threads(s.threads)
    gen = torch.Generator().manual_seed(0)
    n = s.matmul_n
    a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
    N, C, H, W = s.conv_shape
    x = torch.randn(N, C, H, W, generator=gen)
    w = torch.randn(C, C, 3, 3, generator=gen) / (3 * C ** 0.5)
    peak = {}
    for dtype, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        a_, b_ = a.to(dtype), b.to(dtype)
        peak[f"matmul {name}"] = _gflops(lambda: a_ @ b_, 2.0 * n ** 3, s.repeats)
        x_ = x.to(dtype).contiguous(memory_format=torch.channels_last)
        w_ = w.to(dtype).contiguous(memory_format=torch.channels_last)
        conv = lambda: F.conv2d(x_, w_, padding=1)  # noqa: E731
        peak[f"conv2d {name}"] = _gflops(conv, _counted_flops(conv), s.repeats)

    model = UNet3D(PRESETS[s.unet_preset]).eval()
    inp = torch.randn(s.unet_shape, generator=gen)
    t = torch.full((s.unet_shape[0],), 500)

    def forward(channels_last: bool, bf16: bool):
        """One denoiser step as the samplers run it (run_network: bf16 is the network's bfloat16 copy)."""
        model.channels_last = channels_last
        with torch.no_grad():
            return run_network(model, inp[:, 0], int(t[0]), "bfloat16" if bf16 else "float32")[:, None]

    flops = _counted_flops(lambda: forward(False, False))
    reference = forward(False, False)
    data = (f"UNet3D preset {s.unet_preset!r}, input {'x'.join(map(str, s.unet_shape))}, t = 500, "
            f"{flops / 1e9:.3f} GFLOP per forward (convolutions, matmuls and attention, counted by FlopCounterMode; "
            "norms and activations not counted)")
    rows = []
    for label, channels_last, bf16, kind in (
            ("fp32, contiguous (before)", False, False, "fp32"),
            ("bf16 weights and activations, channels-last (the profiles)", True, True, "bf16")):
        (seconds, out), = best_of({"f": lambda: forward(channels_last, bf16)}, s.repeats).values()
        achieved = flops / seconds / 1e9
        for peak_name in (f"matmul {kind}", f"conv2d {kind}"):
            size = f"{n}x{n}x{n}" if peak_name.startswith("matmul") else f"{N}x{C}x{H}x{W}, {C}->{C}, 3x3"
            rows.append(Row("denoiser", f"denoiser step throughput, {label}", "UNet3D forward",
                            f"torch {peak_name} peak ({size})", data, "GFLOP/s", achieved, peak[peak_name],
                            achieved / peak[peak_name], direction="ours/peak throughput (1 = at this CPU's peak)",
                            accuracy_metric="relative L2 of the output from fp32",
                            ours_accuracy=rel_l2(out.numpy(), reference.numpy()),
                            note=f"forward {seconds * 1e3:.1f} ms (best of {s.repeats})"))
    model.channels_last = True
    return rows


# ------------------------------------------------------------------------------- memory
def section_memory(s: Settings) -> list[Row]:
    rows = []
    for setting in s.scaling:
        path = HERE / "results" / f"scaling_{setting}.csv"
        if not path.exists():
            rows += skipped("memory", [(f"peak memory per rank ({setting})", "P ranks", "P = 1")],
                            f"{path} missing: run benchmarks/scaling.py --setting {setting}")
            continue
        with open(path, newline="") as f:
            got = list(csv.DictReader(f))
        per_p = {}
        for r in got:
            per_p.setdefault(int(r["P"]), []).append(r)
        base = max(float(r["peak_rss_mib"]) for r in per_p[min(per_p)])
        for P, ranks in sorted(per_p.items()):
            peak = max(float(r["peak_rss_mib"]) for r in ranks)
            divided = max(float(r["divided_mib"]) for r in ranks)
            r0 = ranks[0]
            rows.append(Row("memory", f"peak memory per rank, P = {P} ({setting})", f"P = {P} ranks",
                            f"P = {min(per_p)}", f"{r0['shape']}, {r0['num_groups']} groups, preset {r0['preset']} "
                            f"({r0['kind']})", "peak RSS per rank, MiB", peak, base, base / peak,
                            direction="peak(P=1)/peak(P) (>1: less memory per rank)",
                            note=f"part partitioning divides: {divided:.0f} MiB; {r0['cpu_model']}, {r0['cores']} "
                                 f"cores; benchmarks/scaling.py (results/scaling_{setting}.csv)",
                            status="read", measured_utc=r0["date_utc"]))
    return rows


SECTION_FUNCTIONS = {"mri_dc": section_mri_dc, "mri_solvers": section_mri_solvers,
                     "multislice": section_multislice, "ptycho": section_ptycho, "guided": section_guided,
                     "denoiser": section_denoiser, "memory": section_memory}


# ------------------------------------------------------------------------------- machine, output
def _proc_field(path: str, name: str) -> str:
    try:
        with open(path) as f:
            for line in f:
                if line.split(":")[0].strip() == name:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def machine(s: Settings) -> dict[str, str]:
    """The header: CPU, cores, threads, versions of ours and the peers', date, git commit."""
    import numpy as np
    import torch

    from paperlib.provenance import git_commit

    def version(module: str) -> str:
        try:
            from importlib.metadata import version as v

            return v(module)
        except Exception:  # noqa: BLE001 - any failure means "not installed" here
            return "not installed"

    venv = REPO / ".venv-py4dstem" / "bin" / "python"
    py4dstem = "not installed (.venv-py4dstem missing)"
    if venv.exists():
        got = subprocess.run([str(venv), "-c", "import importlib.metadata as m; print(m.version('py4DSTEM'))"],
                             capture_output=True, text=True)
        py4dstem = got.stdout.strip() or f"unreadable ({got.stderr.strip()[-200:]})"
    flags = _proc_field("/proc/cpuinfo", "flags").split()
    return {
        "CPU": _proc_field("/proc/cpuinfo", "model name"),
        "cores": f"{os.cpu_count()} logical; bf16 instructions: "
                 f"{'yes (avx512_bf16)' if 'avx512_bf16' in flags else ('amx_bf16' if 'amx_bf16' in flags else 'no')}",
        "threads used": f"{s.threads} (torch.set_num_threads; OMP/MKL/OpenBLAS={os.environ.get('OMP_NUM_THREADS')}); "
                        "py4DSTEM and its 3PIE comparison: 1",
        "memory": _proc_field("/proc/meminfo", "MemTotal"),
        "load average at start": f"{os.getloadavg()[0]:.2f}",
        "python / torch / numpy": f"{platform.python_version()} / {torch.__version__} / {np.__version__}",
        "peers": f"sigpy {version('sigpy')}, abTEM {version('abtem')}, py4DSTEM {py4dstem}",
        "date (UTC)": now_utc(),
        "git commit": git_commit(),
        "mode": ("--quick: tiny sizes to check the machinery, NOT a benchmark" if s.quick else "full")
                + f", profile {s.profile!r}",
    }


def _fmt(v) -> str:
    if v is None or v == "":
        return ""
    v = float(v)
    if v == 0:
        return "0"
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2e}"
    return f"{v:.4g}"


def to_csv(rows: list[Row]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None else repr(v) if isinstance(v, float) else v) for k, v in asdict(r).items()})
    return buf.getvalue()


def read_csv(path: Path) -> list[Row]:
    with open(path, newline="") as f:
        got = list(csv.DictReader(f))
    if got and set(got[0]) != set(COLUMNS):
        raise ValueError(f"{path}: expected the columns {', '.join(COLUMNS)}, got {', '.join(got[0])}")
    return [Row(**{k: (float(v) if v != "" else None) if k in FLOAT_COLUMNS else v for k, v in r.items()})
            for r in got]


def to_markdown(rows: list[Row], header: dict[str, str], seconds: float) -> str:
    cell = lambda text: str(text).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["# Benchmarks against the peers", "",
             "Written by `make bench` (`benchmarks/report.py`); every `measured` row was measured in this run, "
             "ours and the peer on the same data on this machine. Time ratios are **peer time / our time** "
             "(> 1: ours is faster); other ratios state their direction. Each row gives the accuracy of both "
             "sides next to the ratio. `read` rows come from the named results file (their date in the CSV), "
             "`skipped` rows name what is missing. `read` rows may come from another machine: their note names it.",
             "", "## Machine", "",
             "| | |", "|---|---|"]
    lines += [f"| {k} | {cell(v)} |" for k, v in header.items()]
    lines += [f"| report run time | {seconds:.0f} s |", "", "## Results", "",
              "| component | ours | peer | data | metric | ours | peer | ratio | direction | accuracy | ours acc. "
              "| peer acc. | status | note |", "|" + "---|" * 14]
    for r in rows:
        lines.append("| " + " | ".join(cell(v) for v in (
            r.component, r.ours, r.peer, r.data, r.metric, _fmt(r.ours_value), _fmt(r.peer_value),
            f"**{_fmt(r.ratio)}**" if r.ratio is not None else "", r.direction, r.accuracy_metric,
            _fmt(r.ours_accuracy), _fmt(r.peer_accuracy),
            r.status + (f" {r.measured_utc}" if r.status == "read" and r.measured_utc else ""), r.note)) + " |")
    return "\n".join(lines) + "\n"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the machinery, not a benchmark")
    p.add_argument("--profile", default=None, help="profile of the data and settings (default: default; "
                   "--quick: ci)")
    p.add_argument("--threads", type=int, default=None, help="torch/BLAS threads (default 2; --quick 1)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), metavar="SECTION",
                   help=f"sections to run, of {', '.join(SECTIONS)}")
    p.add_argument("--read", nargs="+", choices=SECTIONS, default=[], metavar="SECTION",
                   help="take these sections' rows from the previous report's CSV (OUT_DIR/benchmarks.csv) "
                        "instead of running them (wins over --sections)")
    p.add_argument("--out-dir", type=Path, default=None, help="where benchmarks.md/.csv go (default: figures/)")
    p.add_argument("--strict", action="store_true", help="stop at the first section that fails (default: "
                   "record the error in its row, finish the others, exit 1)")
    args = p.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads: expected an integer >= 1, got {args.threads}")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    threads = args.threads or (1 if args.quick else 2)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import torch

    from paperlib.io import atomic_write_text
    from paperlib.paths import figures_dir

    out_dir = args.out_dir or figures_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    s = settings(args.quick, threads, args.profile)
    previous = []
    if args.read:
        path = out_dir / "benchmarks.csv"
        if not path.exists():
            raise SystemExit(f"--read {' '.join(args.read)}: no previous report at {path}")
        previous = read_csv(path)
    header = machine(s)
    started = time.perf_counter()
    rows, failed = [], []
    for name in SECTIONS:
        if name in args.read:
            got = [r for r in previous if r.section == name]
            if not got:
                raise SystemExit(f"--read {name}: {out_dir / 'benchmarks.csv'} has no rows of section {name}")
            rows += [replace(r, status="read" if r.status == "measured" else r.status,
                             note=(r.note + "; " if r.note else "") + "from the previous report") for r in got]
            continue
        if name not in args.sections:
            continue
        print(f"== {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        torch.set_num_threads(threads)  # sections that change it (py4DSTEM's one thread) do not leak it
        try:
            got = SECTION_FUNCTIONS[name](s)
        except Exception as err:  # noqa: BLE001 - recorded in the report, exit status 1
            if args.strict:
                raise
            traceback.print_exc()
            failed.append(name)
            got = [Row(name, name, "", "", "", "", status="error", direction="",
                       note=f"{type(err).__name__}: {err}"[:300])]
        stamp = now_utc()
        rows += [replace(r, measured_utc=r.measured_utc or stamp) for r in got]
        print(f"   {name}: {time.perf_counter() - t0:.1f} s, {len(got)} row(s)", file=sys.stderr, flush=True)
    header["load average at end"] = f"{os.getloadavg()[0]:.2f}"
    atomic_write_text(out_dir / "benchmarks.csv", to_csv(rows))
    atomic_write_text(out_dir / "benchmarks.md", to_markdown(rows, header, time.perf_counter() - started))
    print(f"wrote {out_dir / 'benchmarks.md'} and {out_dir / 'benchmarks.csv'} ({len(rows)} rows)", file=sys.stderr)
    if failed:
        print(f"sections that failed (their rows say why): {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
