"""Multislice 4D-STEM forward model in torch, its intensity loss (paper Eq. 2) and physics step
(paper Eq. 5).

The model (paper Sec. "Physics of MRI and 4D-STEM"; Kirkland, *Advanced Computing in Electron
Microscopy*, ch. 6): for every scan position ``r_j``

.. math::

    \\psi_1^j = P(r - r_j), \\qquad
    \\psi_{n+1}^j = \\mathcal{F}_{\\Delta z_n}\\big[\\psi_n^j \\, t_n\\big], \\qquad
    t_n = \\mathcal{B}\\big[\\exp(i \\sigma V_n)\\big], \\qquad
    I_j = |F \\psi_{N+1}^j|^2,

with ``V_n`` the projected potential of slice ``n`` in V·Å, ``sigma`` the relativistic
interaction constant (rad / (V·Å)), ``B`` the antialiasing band limit and ``F_dz`` the Fresnel
propagator ``exp(-i pi lambda dz k^2)`` (also band limited). Every slice is transmitted and then
propagated by its own thickness, the last one included. This follows abTEM 1.0.11's
conventions exactly (see ``RECIPES.md`` §8), so on the full grid our intensities agree with
``abtem.Probe.scan(..., detectors=PixelatedDetector(max_angle=None))`` to float rounding.

Conventions
-----------
* Arrays: potential ``(D, H, W)`` float32 in V·Å (slices first, ``H`` rows, ``W`` columns);
  4D-STEM intensities ``(Sy, Sx, Ky, Kx)`` (scan rows, scan columns, detector rows, detector
  columns), each pattern ``fftshift``-ed so zero frequency sits at ``(Ky // 2, Kx // 2)``.
* Lengths in Å, energies in keV, angles in mrad. Scan positions are ``(Sy, Sx, 2)`` in Å,
  ``[..., 0]`` along the rows (axis ``H``; abTEM calls this axis *x*) and ``[..., 1]`` along the
  columns. Position ``(0, 0)`` is the centre of pixel ``[0, 0]``.
* Normalisation: the probe has ``sum |Psi(k)|^2 = 1`` with the unnormalised FFT, so a pattern
  sums to about 1 (the fraction of the beam inside the antialiasing aperture).

Speed
-----
Scan positions go through the slices in batches (``batch_size`` positions per batched 2D FFT;
no Python loop over positions). The forward simulation (no autograd) keeps the probes and
propagators cached, works in place and uses FFTW (pyfftw, which abTEM depends on; ~2x faster
than ``torch.fft``'s MKL transforms on 64 x 64 windows) on CPU, and so do the gradient and the
physics step (the adjoint written out, :meth:`MultisliceOperator.gradient`); only the autograd
path (:meth:`MultisliceOperator.loss` of a ``V`` that requires grad) uses ``torch.fft``.
``benchmarks/stem_peers.py`` measures it against
abTEM on the same potential and grid: on SrTiO3 (64 x 64, 8 slices, 16 x 16 scan, one thread)
ours took ~40 ms, abTEM ~170 ms (torch.fft backend: ~85 ms). With
``window`` smaller than the grid the operator propagates, for each position, only a
probe-sized window of the object centred on it (the windows are gathered from the periodic
object with one indexing call, as ptychography codes do); the detector is then the window's
reciprocal grid (``(Kx, Ky) = window``, angular sampling ``lambda / (window * sampling)``).
``window=None`` (the full grid) reproduces abTEM exactly. A window is a *different
discretisation*, not a bit-exact shortcut: the detector is coarser (so the soft edge of the
probe aperture, one Fourier pixel wide as in abTEM, is wider), and the exit wave is truncated to
the window rather than periodised over the grid. On our 64 x 64, 0.2 Å crystals (20 mrad, 30 Å
defocus) the windowed patterns differ from the full-grid ones, compared on the common
reciprocal-space points, by about 6.5 % (relative L2) for a 32-px window and 20 % for 16 px;
about 6.3 % of the 6.5 % is already there for vacuum, i.e. comes from the probe discretisation.
Use the same window for simulation and reconstruction, or the full grid.

>>> op = MultisliceOperator(gpts=16, sampling=0.25, energy=200.0, semiangle=20.0,
...                         slice_thickness=2.0, n_slices=2,
...                         scan_positions=grid_scan((0.0, 0.0), (4.0, 4.0), (2, 2)))
>>> V = torch.zeros(op.shape)
>>> I = op.forward(V)
>>> tuple(I.shape), round(float(I[0, 0].sum()), 4)
((2, 2, 16, 16), 1.0)
>>> float(op.loss(V, I)) < 1e-10
True
"""
from __future__ import annotations

import functools
import logging
import math
import numbers
from typing import Sequence

import numpy as np
import torch
from ase import units

from ..io import InputValidationError
from .base import finite_result
from ..recon.solvers import soft_threshold  # the proximal map of Eq. 5; re-exported here

logger = logging.getLogger(__name__)

__all__ = [
    "wavelength",
    "interaction_constant",
    "spatial_frequencies",
    "antialias_aperture",
    "fresnel_propagator",
    "probe_fourier",
    "grid_scan",
    "soft_threshold",
    "MultisliceOperator",
]

#: abTEM's antialiasing band limit: a fraction of the Nyquist frequency, and the width of its
#: cosine taper (times 1 / sampling, in 1/Å).
ANTIALIAS_CUTOFF = 0.6666666  # abTEM 1.0.11 config value (not exactly 2/3)
ANTIALIAS_TAPER = 0.01

#: The data terms of :meth:`MultisliceOperator.loss` (``likelihood=``).
LIKELIHOODS = ("amplitude", "poisson")
#: Default offset ``b`` of the Poisson data term, as a fraction of the mean measured intensity per
#: detector pixel (see :meth:`MultisliceOperator.loss`).
POISSON_OFFSET_FRACTION = 0.01


# --------------------------------------------------------------------------- constants
#: SI constants of the CODATA release ase uses (abTEM's, so both agree to the last digit), read from
#: ase's public CODATA table rather than its private module attributes.
_CODATA = units.CODATA[units.__codata_version__]
_C, _H, _E, _ME = (_CODATA[k] for k in ("_c", "_hplanck", "_e", "_me"))


def wavelength(energy: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage ``energy`` in keV.

    ``lambda = h c / sqrt(E (2 m c^2 + E))`` with ``E = e U``; CODATA constants from
    ``ase.units`` (the ones abTEM uses, so both agree to the last digit).

    >>> round(wavelength(200.0), 7)
    0.0250793
    """
    energy_ev = float(energy) * 1e3
    return float(
        _H * _C / math.sqrt(energy_ev * (2 * _ME * _C**2 / _E + energy_ev)) / _E * 1e10
    )


def interaction_constant(energy: float) -> float:
    """Interaction constant ``sigma = 2 pi m e lambda / h^2`` in rad / (V·Å), ``m`` the
    relativistic electron mass, for an acceleration voltage ``energy`` in keV.

    A slice of projected potential ``V`` (V·Å) shifts the phase of the wave by ``sigma V``.

    >>> round(interaction_constant(200.0) * 1e4, 4)
    7.2884
    """
    energy_ev = float(energy) * 1e3
    mass = (1 + _E * energy_ev / (_ME * _C**2)) * _ME  # kg
    lam_m = wavelength(energy) * 1e-10
    sigma_per_v_m = 2 * math.pi * mass * _E * lam_m / _H**2  # 1 / (V m)
    return float(sigma_per_v_m * 1e-10)


# --------------------------------------------------------------------------- grids
def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _pair(value, name: str, kind=float) -> tuple:
    if isinstance(value, (int, float, np.integer, np.floating)):
        return (kind(value), kind(value))
    try:
        out = tuple(kind(v) for v in value)
    except TypeError as exc:
        raise InputValidationError(f"{name}: expected a number or a pair, got {value!r}") from exc
    if len(out) != 2:
        raise InputValidationError(f"{name}: expected a number or a pair, got {value!r}")
    return out


def spatial_frequencies(
    gpts: tuple[int, int], sampling: tuple[float, float], *, dtype=torch.float64
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequencies (1/Å) of an FFT grid, unshifted (``fftfreq`` order): ``(H,)`` and ``(W,)``."""
    k0 = torch.fft.fftfreq(gpts[0], d=sampling[0], dtype=dtype)
    k1 = torch.fft.fftfreq(gpts[1], d=sampling[1], dtype=dtype)
    return k0, k1


def antialias_aperture(
    gpts: tuple[int, int], sampling: tuple[float, float], *, dtype=torch.float64
) -> torch.Tensor:
    """abTEM's antialiasing aperture: 1 below ``2/3`` of the Nyquist frequency minus a taper,
    a raised-cosine taper of width ``0.01 / max(sampling)`` (1/Å), 0 above the cutoff.

    Returns ``(H, W)`` real tensor in FFT order.
    """
    dmax = max(sampling)
    cutoff = ANTIALIAS_CUTOFF / dmax / 2
    taper = ANTIALIAS_TAPER / dmax
    k0, k1 = spatial_frequencies(gpts, sampling, dtype=dtype)
    k = torch.sqrt(k0[:, None] ** 2 + k1[None, :] ** 2)
    ramp = 0.5 * (1 + torch.cos(math.pi * (k - cutoff + taper) / taper))
    out = torch.where(k > cutoff - taper, ramp, torch.ones_like(k))
    return torch.where(k > cutoff, torch.zeros_like(k), out)


def fresnel_propagator(
    gpts: tuple[int, int], sampling: tuple[float, float], energy: float, thickness: float,
    *, dtype=torch.float64,
) -> torch.Tensor:
    """Band-limited Fresnel propagator ``exp(-i pi lambda dz k^2) * antialias`` for a distance
    ``thickness`` (Å) at ``energy`` (keV): ``(H, W)`` complex tensor in FFT order."""
    k0, k1 = spatial_frequencies(gpts, sampling, dtype=dtype)
    k2 = k0[:, None] ** 2 + k1[None, :] ** 2
    phase = -math.pi * wavelength(energy) * float(thickness) * k2
    return torch.polar(antialias_aperture(gpts, sampling, dtype=dtype), phase)


def probe_fourier(
    gpts: tuple[int, int], sampling: tuple[float, float], energy: float, semiangle: float,
    defocus: float = 0.0, *, dtype=torch.float64,
) -> torch.Tensor:
    """Probe in reciprocal space (FFT order), normalised so that ``sum |Psi(k)|^2 = 1``.

    The condenser aperture has abTEM's soft edge: ``clip((alpha_c - alpha) / d_alpha + 1/2,
    0, 1)`` with ``d_alpha`` the angular pixel size along the direction of ``k`` (a linear ramp
    one Fourier pixel wide). Defocus ``df`` (Å, positive = underfocus as in abTEM, i.e.
    ``C10 = -df``) multiplies by ``exp(i pi lambda df k^2)``.

    Parameters
    ----------
    gpts, sampling : grid ``(H, W)`` and its sampling in Å.
    energy : keV.  semiangle : convergence semi-angle in mrad.  defocus : Å.

    Returns
    -------
    (H, W) complex tensor.
    """
    lam = wavelength(energy)
    k0, k1 = spatial_frequencies(gpts, sampling, dtype=dtype)
    kk0, kk1 = k0[:, None].expand(gpts[0], gpts[1]), k1[None, :].expand(gpts[0], gpts[1])
    k = torch.sqrt(kk0**2 + kk1**2)
    phi = torch.atan2(kk1, kk0)
    dk0, dk1 = 1.0 / (gpts[0] * sampling[0]), 1.0 / (gpts[1] * sampling[1])
    denom = torch.sqrt((torch.cos(phi) * dk0) ** 2 + (torch.sin(phi) * dk1) ** 2)
    denom[0, 0] = 1.0
    kc = semiangle * 1e-3 / lam
    aperture = torch.clamp((kc - k) / denom + 0.5, 0.0, 1.0)
    aperture[0, 0] = 1.0
    chi = math.pi * lam * float(defocus) * k**2  # = -(2 pi / lam) * 1/2 alpha^2 C10
    psi = torch.polar(aperture, chi)
    return psi / torch.sqrt((psi.abs() ** 2).sum())


def grid_scan(
    start: Sequence[float], end: Sequence[float], gpts: Sequence[int] | int, *,
    endpoint: bool = False,
) -> np.ndarray:
    """Scan positions on a regular grid, like ``abtem.GridScan``: ``(Sy, Sx, 2)`` float64 in Å.

    >>> grid_scan((0, 0), (2, 2), 2)[..., 0].tolist()
    [[0.0, 0.0], [1.0, 1.0]]
    """
    n = _pair(gpts, "gpts", int)
    axes = [np.linspace(float(s), float(e), k, endpoint=endpoint) for s, e, k in zip(start, end, n)]
    g0, g1 = np.meshgrid(axes[0], axes[1], indexing="ij")
    return np.stack([g0, g1], axis=-1)


def _contiguous_runs(index: torch.Tensor) -> list[tuple[slice, slice]]:
    """``(destination, source)`` slice pairs copying ``x[index]`` run by run: an fftshifted
    crop of an FFT-order axis is at most two runs of consecutive indices."""
    values = index.tolist()
    runs, begin = [], 0
    for i in range(1, len(values) + 1):
        if i == len(values) or values[i] != values[i - 1] + 1:
            runs.append((slice(begin, i), slice(values[begin], values[i - 1] + 1)))
            begin = i
    return runs


class _FFTWPlans:
    """A real-space and a reciprocal-space buffer (SIMD-aligned, shared with torch without
    copies) and the FFTW plans of the batched 2D FFT between them, in both directions.

    Planned with ``FFTW_ESTIMATE``: instant, and the plan (hence the rounding) does not depend
    on timing measurements, so repeated runs give identical numbers; ``FFTW_MEASURE`` would
    be ~1.5x faster per FFT but may pick different algorithms from run to run. FFTW reuses
    wisdom of a higher rigour for an ``FFTW_ESTIMATE`` request, so a ``FFTW_MEASURE`` plan of the
    same problem made earlier in the process (abTEM's default) would be taken instead; paperlib's
    own abTEM calls leave none (:func:`paperlib.data.crystals.reproducible_fftw`)."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype, threads: int) -> None:
        import pyfftw

        np_dtype = {torch.complex64: np.complex64, torch.complex128: np.complex128}[dtype]
        real = pyfftw.empty_aligned(shape, dtype=np_dtype)
        recip = pyfftw.empty_aligned(shape, dtype=np_dtype)
        kw = dict(axes=(-2, -1), flags=("FFTW_ESTIMATE",), threads=int(threads))
        self.forward = pyfftw.FFTW(real, recip, direction="FFTW_FORWARD", **kw)
        self.backward = pyfftw.FFTW(recip, real, direction="FFTW_BACKWARD", **kw)
        self.real = torch.from_numpy(real)
        self.recip = torch.from_numpy(recip)
        self._recip_np, self._kw = recip, kw
        self._stack: tuple[torch.Tensor, list] | None = None

    def fft2(self, psi: torch.Tensor) -> torch.Tensor:
        """Unnormalised forward FFT of ``psi`` into the reciprocal buffer (returned); ``psi``
        is copied into the real-space buffer first unless it is that buffer."""
        if psi.data_ptr() != self.real.data_ptr():
            self.real.copy_(psi)
        self.forward.execute()
        return self.recip

    def ifft2(self, wave_k: torch.Tensor) -> torch.Tensor:
        """Unnormalised inverse FFT of the reciprocal buffer (``wave_k`` must be it) into the
        real-space buffer (returned): the ``1 / (wy wx)`` is left to the caller."""
        if wave_k.data_ptr() != self.recip.data_ptr():
            raise ValueError("wave_k: expected the plans' reciprocal-space buffer")
        self.backward.execute()
        return self.real

    def wave_stack(self, depth: int) -> tuple[torch.Tensor, list]:
        """An aligned ``(depth, *shape)`` buffer and, per entry ``n``, the inverse-FFT plan from the
        reciprocal buffer into ``stack[n]`` (the adjoint keeps the wave incident on every slice
        there without a copy); made on first use per depth."""
        if self._stack is None or self._stack[0].shape[0] != depth:
            import pyfftw

            stack = pyfftw.empty_aligned((depth, *self._recip_np.shape), dtype=self._recip_np.dtype)
            plans = [pyfftw.FFTW(self._recip_np, stack[n], direction="FFTW_BACKWARD", **self._kw)
                     for n in range(depth)]
            self._stack = (torch.from_numpy(stack), plans)
        return self._stack


def _fftw_available() -> bool:
    try:
        import pyfftw  # noqa: F401  (a dependency of abTEM)
    except ImportError:  # pragma: no cover - abTEM requires it
        return False
    return True


# --------------------------------------------------------------------------- operator
class MultisliceOperator:
    """4D-STEM multislice forward operator with loss (Eq. 2) and physics step (Eq. 5).

    The math is in the module docstring. ``slice_local = False``: the exit wave passes through
    every slice, so the physics step needs the whole object (see ``DESIGN.md``).

    Parameters
    ----------
    gpts : int or (H, W)
        Grid of the potential.
    sampling : float or (dy, dx)
        Pixel size in Å.
    energy : float
        Acceleration voltage in keV.
    semiangle : float
        Convergence semi-angle in mrad.
    slice_thickness : float or sequence of ``n_slices`` floats
        Thickness of each slice in Å (the propagation distance after it).
    n_slices : int
        ``D``, the number of slices.
    scan_positions : (Sy, Sx, 2) array of Å
        Probe positions (see the module conventions).
    defocus : float
        Å, positive = underfocus (abTEM's sign).
    window : int or (wy, wx), optional
        Propagate only a ``window``-pixel region of the object around each probe (faster).
        ``None`` (default) = the full grid, identical to abTEM.
    detector_shape : (Ky, Kx), optional
        Centre crop of each (fftshifted) pattern; defaults to the window (or the full grid).
    dtype : torch.float32 (default) or torch.float64
        Real precision; waves are complex64 / complex128.
    device : torch device.
    batch_size : int
        Scan positions per batched FFT call in the no-grad forward path (default 32: on one
        CPU thread batches of 16 to 64 windows of 64 x 64 run fastest, 256 at once is ~1.7x
        slower as the buffers leave the cache). Does not change the result.
    fft_backend : ``"auto"`` (default), ``"torch"`` or ``"fftw"``
        FFTs of the no-grad forward path. ``"auto"`` = FFTW (pyfftw, a dependency of abTEM)
        on CPU, ``torch.fft`` elsewhere; FFTW is ~2x faster than torch's MKL FFT on 64 x 64
        windows. The gradient and the physics step use it too; the autograd path (:meth:`loss`
        of a ``V`` that requires grad) always uses ``torch.fft``. The two agree to float rounding.

    Attributes
    ----------
    shape : (D, H, W) of the potential.   measurement_shape : (Sy, Sx, Ky, Kx).
    wavelength : Å.   sigma : rad / (V·Å).   default_step_size : V·Å per unit gradient
    (see :meth:`physics_step`).
    propagators : (D, wy, wx) complex Fresnel propagators ``F_dz`` of the slices, band
        limited, in FFT order (window grid).
    flat_index : (Sy Sx, wy, wx) long tensor, the flat grid pixel ``row * W + col`` of every
        window pixel of every position (periodic wrap), or None on the full grid.
    detector_crop : pair of slices, the detector's centre crop of the fftshifted far field.

    Declared capabilities (the :class:`~paperlib.physics.base.Operator` protocol):
    ``slice_local = False`` (the exit wave couples all slices), ``supports_support = True``
    (:meth:`physics_step` takes ``support=``), ``is_linear = False``, ``adjoint = None``, ``projects = False``
    (intensities are quadratic in the wave, the wave exponential in ``V``),
    :meth:`volume_shape` = :attr:`shape`, :meth:`periodic_scan_step` for DRIFT's alignment.

    Examples
    --------
    >>> pos = grid_scan((0.0, 0.0), (4.0, 4.0), (4, 4))
    >>> op = MultisliceOperator(gpts=32, sampling=0.25, energy=200.0, semiangle=20.0,
    ...                         slice_thickness=2.0, n_slices=3, scan_positions=pos, window=16)
    >>> op.shape, op.measurement_shape
    ((3, 32, 32), (4, 4, 16, 16))
    >>> V = torch.rand(op.shape, generator=torch.Generator().manual_seed(0)) * 20
    >>> I = op.forward(V)
    >>> tuple(op.bright_field(I).shape)
    (4, 4)
    >>> V2 = op.physics_step(torch.zeros(op.shape), I)
    >>> bool(op.loss(V2, I) < op.loss(torch.zeros(op.shape), I))
    True
    """

    slice_local = False
    supports_support = True
    is_linear = False
    projects = False
    adjoint = None
    #: probes of all positions are precomputed when they hold at most this many complex
    #: elements (128 MiB in complex64), else built per batch of positions
    PROBE_CACHE_ELEMENTS = 2**24

    def __init__(
        self,
        gpts: int | Sequence[int],
        sampling: float | Sequence[float],
        *,
        energy: float,
        semiangle: float,
        slice_thickness: float | Sequence[float],
        n_slices: int,
        scan_positions,
        defocus: float = 0.0,
        window: int | Sequence[int] | None = None,
        detector_shape: Sequence[int] | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        batch_size: int = 32,
        fft_backend: str = "auto",
    ) -> None:
        self.gpts = _pair(gpts, "gpts", int)
        self.sampling = _pair(sampling, "sampling", float)
        if min(self.gpts) < 2 or min(self.sampling) <= 0:
            raise InputValidationError(
                f"gpts, sampling: expected >= 2 points and a positive sampling (Å), got "
                f"{self.gpts}, {self.sampling}"
            )
        if not (energy > 0 and semiangle > 0):
            raise InputValidationError(
                f"energy, semiangle: expected positive keV and mrad, got {energy}, {semiangle}"
            )
        if int(n_slices) < 1:
            raise InputValidationError(f"n_slices: expected >= 1, got {n_slices}")
        self.n_slices = int(n_slices)
        if np.ndim(slice_thickness) not in (0, 1) or (
            np.ndim(slice_thickness) == 1 and len(slice_thickness) != self.n_slices
        ):
            raise InputValidationError(
                f"slice_thickness: expected a number or {self.n_slices} numbers (one per slice), "
                f"got {slice_thickness!r}"
            )
        dz = np.broadcast_to(np.asarray(slice_thickness, dtype=np.float64), (self.n_slices,))
        if not np.all(dz > 0):
            raise InputValidationError(f"slice_thickness: expected positive Å, got {slice_thickness!r}")
        self.slice_thickness = tuple(float(v) for v in dz)
        self.energy = float(energy)
        self.semiangle = float(semiangle)
        self.defocus = float(defocus)
        if dtype not in (torch.float32, torch.float64):
            raise InputValidationError(f"dtype: expected torch.float32 or torch.float64, got {dtype}")
        self.dtype = dtype
        self.cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.wavelength = wavelength(self.energy)
        self.sigma = interaction_constant(self.energy)

        pos = np.asarray(
            scan_positions.detach().cpu().numpy() if isinstance(scan_positions, torch.Tensor)
            else scan_positions, dtype=np.float64,
        )
        if pos.ndim != 3 or pos.shape[-1] != 2 or not np.all(np.isfinite(pos)):
            raise InputValidationError(
                f"scan_positions: expected a finite (Sy, Sx, 2) array of Å, got shape {pos.shape}"
            )
        self.scan_positions = pos
        self.scan_shape = (pos.shape[0], pos.shape[1])
        self.n_positions = pos.shape[0] * pos.shape[1]

        self.full = window is None or tuple(_pair(window, "window", int)) == self.gpts
        self.window = self.gpts if self.full else _pair(window, "window", int)
        if any(w > g or w < 2 for w, g in zip(self.window, self.gpts)):
            raise InputValidationError(
                f"window: expected between 2 and the grid {self.gpts} pixels, got {self.window}"
            )
        det = self.window if detector_shape is None else _pair(detector_shape, "detector_shape", int)
        if any(d > w or d < 1 for d, w in zip(det, self.window)):
            raise InputValidationError(
                f"detector_shape: expected at most the window {self.window} pixels, got {det}"
            )
        self.detector_shape = det
        if int(batch_size) < 1:
            raise InputValidationError(f"batch_size: expected >= 1 positions, got {batch_size}")
        self.batch_size = int(batch_size)
        if fft_backend not in ("auto", "torch", "fftw"):
            raise InputValidationError(
                f"fft_backend: expected 'auto', 'torch' or 'fftw', got {fft_backend!r}"
            )
        if fft_backend == "auto":
            fft_backend = "fftw" if self.device.type == "cpu" and _fftw_available() else "torch"
        elif fft_backend == "fftw" and (self.device.type != "cpu" or not _fftw_available()):
            raise InputValidationError(
                f"fft_backend: 'fftw' needs a CPU device and pyfftw (device {self.device})"
            )
        self.fft_backend = fft_backend
        self._fftw_cache: dict = {}
        self.shape = (self.n_slices, *self.gpts)
        self.measurement_shape = (*self.scan_shape, *self.detector_shape)
        self._build_buffers()

    # ------------------------------------------------------------------ setup
    def _build_buffers(self) -> None:
        f64 = torch.float64
        wgrid, s = self.window, self.sampling
        self._antialias_full = antialias_aperture(self.gpts, s, dtype=f64).to(self.device, self.dtype)
        unique = sorted(set(self.slice_thickness))
        props = {dz: fresnel_propagator(wgrid, s, self.energy, dz, dtype=f64) for dz in unique}
        self.propagators = torch.stack([props[dz] for dz in self.slice_thickness]).to(
            self.device, self.cdtype
        )
        # FFTW's inverse is unnormalised: fold 1 / (wy wx) into every propagator but the last
        scale = torch.full((self.n_slices, 1, 1), 1.0 / (wgrid[0] * wgrid[1]), dtype=f64)
        scale[-1] = 1.0
        self._propagators_fftw = (self.propagators * scale.to(self.device, self.dtype)).contiguous()
        # conjugates for the adjoint (gradient): materialised, multiplying by a conj view copies
        self._propagators_conj = self.propagators.conj().resolve_conj()
        self._propagators_fftw_conj = self._propagators_fftw.conj().resolve_conj()
        probe_k = probe_fourier(wgrid, s, self.energy, self.semiangle, self.defocus, dtype=f64)
        # integer pixel of every position, the window origin, and the sub-window probe offset
        pos = torch.as_tensor(self.scan_positions.reshape(-1, 2), dtype=f64)
        step = torch.tensor(s, dtype=f64)
        if self.full:
            local = pos  # probe at its true position on the full periodic grid
        else:
            pix = torch.round(pos / step).long()
            half = torch.tensor([w // 2 for w in wgrid], dtype=torch.long)
            origin = pix - half
            local = (pos / step - pix.to(f64) + half.to(f64)) * step
        k0, k1 = spatial_frequencies(wgrid, s, dtype=f64)
        # the shift phase ramp exp(-2 pi i k.r_j) factorises over the two axes: (B, wy), (B, wx)
        ramp0 = torch.exp(-2j * math.pi * k0[None, :] * local[:, 0, None])
        ramp1 = torch.exp(-2j * math.pi * k1[None, :] * local[:, 1, None])
        self._probe_k = probe_k.to(self.device, self.cdtype)
        self._ramp0 = ramp0.to(self.device, self.cdtype)
        self._ramp1 = ramp1.to(self.device, self.cdtype)
        self._probes = None  # built per batch by probe_batch (memory stays O(batch)) ...
        if self.n_positions * wgrid[0] * wgrid[1] <= self.PROBE_CACHE_ELEMENTS:
            self._probes = self.probe_batch()  # ... unless small enough to cache
        if not self.full:
            r = (origin[:, 0, None] + torch.arange(wgrid[0])[None]) % self.gpts[0]
            c = (origin[:, 1, None] + torch.arange(wgrid[1])[None]) % self.gpts[1]
            self.flat_index = (r[:, :, None] * self.gpts[1] + c[:, None, :]).to(self.device)
        else:
            self.flat_index = None
        # detector crop in the fftshifted pattern, as indices into the unshifted (FFT-order)
        # far field, and the bright-field disk on it
        self.detector_crop = tuple(
            slice(w // 2 - d // 2, w // 2 - d // 2 + d) for w, d in zip(wgrid, self.detector_shape)
        )
        self._det_rows = torch.fft.fftshift(torch.arange(wgrid[0]))[self.detector_crop[0]].to(self.device)
        self._det_cols = torch.fft.fftshift(torch.arange(wgrid[1]))[self.detector_crop[1]].to(self.device)
        self._det_blocks = (_contiguous_runs(self._det_rows), _contiguous_runs(self._det_cols))
        # 1 where the detector sees on the far-field grid (FFT order), 0 elsewhere: the gradient's mask
        self._detector_seen = torch.zeros(wgrid, dtype=self.dtype, device=self.device)
        self._detector_seen[self._det_rows[:, None], self._det_cols[None, :]] = 1.0
        kk0 = torch.fft.fftshift(k0)[self.detector_crop[0]]
        kk1 = torch.fft.fftshift(k1)[self.detector_crop[1]]
        angle = torch.sqrt(kk0[:, None] ** 2 + kk1[None, :] ** 2) * self.wavelength * 1e3
        self.bright_field_mask = (angle <= self.semiangle).to(self.device)
        self.detector_angles = angle  # mrad, (Ky, Kx)

    @functools.cached_property
    def illumination(self) -> torch.Tensor:
        """Summed probe intensity ``sum_j |P_j(r)|^2`` on the grid: (H, W), computed on first
        use (only the physics step and 3PIE need it, not the forward simulation)."""
        total = torch.zeros(self.gpts[0] * self.gpts[1], dtype=torch.float64, device=self.device)
        for sel in torch.split(torch.arange(self.n_positions, device=self.device), self.batch_size):
            probes = self.probe_batch(sel)
            illum = (probes.real.square() + probes.imag.square()).to(torch.float64)
            if self.full:
                total += illum.sum(0).reshape(-1)
            else:
                total.index_add_(0, self.flat_index[sel].reshape(-1), illum.reshape(-1))
        return total.reshape(self.gpts).to(self.dtype)

    @functools.cached_property
    def default_step_size(self) -> float:
        """Gauss-Newton step of the amplitude loss in (V·Å)^2 per unit loss (see
        :meth:`physics_step`)."""
        n_window = self.window[0] * self.window[1]
        peak = float(self.illumination.double().max())
        return float(1.0 / (2 * n_window * self.n_slices * self.sigma**2 * peak))

    def probe_batch(self, index: torch.Tensor | None = None) -> torch.Tensor:
        """Incident probes ``(B, wy, wx)`` complex of the flat scan positions ``index`` (all
        when None), each at its position inside its window; from the cache when the operator
        holds one (``n_positions * wy * wx <= PROBE_CACHE_ELEMENTS``), else built here."""
        if self._probes is not None:
            return self._probes if index is None else self._probes[index]
        r0 = self._ramp0 if index is None else self._ramp0[index]
        r1 = self._ramp1 if index is None else self._ramp1[index]
        return torch.fft.ifft2(self._probe_k[None] * r0[:, :, None] * r1[:, None, :])

    def periodic_scan_step(self) -> tuple[int, int] | None:
        """``(py, px)``: the scan step in whole pixels when the scan is a regular grid that tiles the
        periodic field of view (full-grid propagation, step an integer number of pixels, ``Sy * py
        = H`` and ``Sx * px = W``), else ``None``.

        Then rolling a potential by ``(py, px)`` pixels rolls its 4D-STEM data, and its
        bright-field image, by exactly one scan position (DRIFT uses this to align candidates).
        """
        if not self.full:
            return None
        pos = self.scan_positions
        steps = []
        for axis, (n, g, s) in enumerate(zip(self.scan_shape, self.gpts, self.sampling)):
            coord = pos[..., axis]
            diffs = np.diff(coord, axis=axis)
            if n < 2 or diffs.size == 0 or not np.allclose(diffs, diffs.flat[0], atol=1e-6):
                return None
            other = np.diff(coord, axis=1 - axis)
            if other.size and not np.allclose(other, 0.0, atol=1e-6):
                return None
            step_px = diffs.flat[0] / s
            if abs(step_px - round(step_px)) > 1e-6 or round(step_px) * n != g:
                return None
            steps.append(int(round(step_px)))
        return steps[0], steps[1]

    @classmethod
    def from_sample(cls, sample, **overrides) -> "MultisliceOperator":
        """Operator matching a :class:`paperlib.data.crystals.STEMSample` (its grid, optics,
        scan and window); keyword ``overrides`` replace any constructor argument."""
        kwargs = dict(
            gpts=sample.potential.shape[-2:], sampling=sample.sampling, energy=sample.energy,
            semiangle=sample.semiangle, defocus=sample.defocus,
            slice_thickness=sample.slice_thickness, n_slices=sample.potential.shape[0],
            scan_positions=sample.scan_positions, window=sample.window,
            detector_shape=tuple(sample.intensities.shape[-2:]),
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ validation
    def check_potential(self, V, sampling=None) -> torch.Tensor:
        """Validate a potential and return it as a tensor of the operator's dtype and device.

        Parameters
        ----------
        V : (D, H, W) real tensor or array, V·Å (``D, H, W`` = :attr:`shape`).
        sampling : optional float or pair, Å; when given it must equal the operator's.

        Raises
        ------
        InputValidationError (a ValueError)
            Naming ``V`` (type, shape, complex or integer dtype, NaN/Inf) or ``sampling``.
        """
        if isinstance(V, np.ndarray):
            V = torch.from_numpy(V)
        if not isinstance(V, torch.Tensor):
            raise InputValidationError(f"V: expected a (D, H, W) tensor of V·Å, got {type(V).__name__}")
        if tuple(V.shape) != self.shape:
            raise InputValidationError(
                f"V: expected a potential of shape (D, H, W) = {self.shape} (the operator's "
                f"n_slices and gpts), got {tuple(V.shape)}"
            )
        if V.is_complex() or not V.is_floating_point():
            raise InputValidationError(f"V: expected a real floating-point potential, got {V.dtype}")
        if sampling is not None:
            got = _pair(sampling, "sampling", float)
            if not np.allclose(got, self.sampling, rtol=1e-6, atol=0):
                raise InputValidationError(
                    f"sampling: the potential's sampling {got} Å does not match the operator's "
                    f"{self.sampling} Å"
                )
        if not bool(torch.isfinite(V).all()):
            n = int((~torch.isfinite(V)).sum())
            raise InputValidationError(f"V: {n} non-finite values (NaN/Inf) of {V.numel()}")
        converted = V.to(self.device, self.dtype)
        if not bool(torch.isfinite(converted).all()):
            raise InputValidationError(f"V: values up to {float(V.abs().max()):.3g} V·Å overflow the operator's "
                                       f"{self.dtype}; expected a potential of physical size")
        return converted

    def check_intensities(self, intensities) -> torch.Tensor:
        """Validate measured intensities and return them in the operator's dtype and device.

        Parameters
        ----------
        intensities : (Sy, Sx, Ky, Kx) real tensor or array, >= 0 (= :attr:`measurement_shape`).

        Raises
        ------
        InputValidationError (a ValueError)
            Naming ``intensities`` (type, shape, complex dtype, NaN/Inf, negative values).
        """
        if isinstance(intensities, np.ndarray):
            intensities = torch.from_numpy(intensities)
        if not isinstance(intensities, torch.Tensor):
            raise InputValidationError(
                f"intensities: expected a (Sy, Sx, Ky, Kx) tensor, got {type(intensities).__name__}"
            )
        shape = tuple(intensities.shape)
        if shape != self.measurement_shape:
            raise InputValidationError(
                f"intensities: expected shape (Sy, Sx, Ky, Kx) = {self.measurement_shape} (scan "
                f"grid {self.scan_shape}, detector {self.detector_shape}), got {shape}"
            )
        if intensities.is_complex():
            raise InputValidationError(f"intensities: expected real values, got {intensities.dtype}")
        finite = torch.isfinite(intensities)
        if not bool(finite.all()):
            raise InputValidationError(
                f"intensities: {int((~finite).sum())} non-finite values (NaN/Inf) of "
                f"{intensities.numel()}"
            )
        converted = intensities.to(self.device, self.dtype)
        if not bool(torch.isfinite(converted).all()):
            raise InputValidationError(f"intensities: values up to {float(intensities.abs().max()):.3g} overflow the "
                                       f"operator's {self.dtype}; expected counts or probabilities")
        intensities = converted
        if bool((intensities < 0).any()):
            raise InputValidationError(
                f"intensities: {int((intensities < 0).sum())} negative values (min "
                f"{float(intensities.min()):.3g}); intensities are counts or probabilities, >= 0"
            )
        return intensities

    # ------------------------------------------------------------------ model
    def band_limit(self, field: torch.Tensor) -> torch.Tensor:
        """The antialiasing band limit ``B`` on the full grid: ``ifft2(fft2(field) * aperture)``
        with abTEM's aperture (:func:`antialias_aperture`).

        ``B`` is a real, symmetric Fourier filter, hence self-adjoint: 3PIE applies it to its
        transmission update as the adjoint of the band limit in :meth:`transmission`.

        Parameters
        ----------
        field : (..., H, W) complex tensor on the operator's grid.

        Returns
        -------
        (..., H, W) complex tensor.
        """
        return torch.fft.ifft2(torch.fft.fft2(field) * self._antialias_full)

    def transmission(self, V: torch.Tensor) -> torch.Tensor:
        """Band-limited transmission functions ``B[exp(i sigma V)]``: (D, H, W) complex."""
        return self.band_limit(torch.polar(torch.ones_like(V), self.sigma * V))

    def windows(self, t: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """Object windows seen by the probes at the flat scan positions ``index``.

        Parameters
        ----------
        t : (D, H, W) tensor on the grid (e.g. :meth:`transmission`).
        index : 1D long tensor of flat scan positions (row-major), or None for all.

        Returns
        -------
        (D, B, wy, wx) windows gathered from the periodic grid by :attr:`flat_index`; on the full
        grid (``window=None``) the view (D, 1, H, W), broadcast over the positions.
        """
        if self.full:
            return t[:, None]
        flat = self.flat_index if index is None else self.flat_index[index]
        return t.reshape(t.shape[0], -1)[:, flat]

    def scatter(self, windows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`windows`: sum per-position window arrays back onto the grid.

        Parameters
        ----------
        windows : (D, B, wy, wx) tensor, one window per position of ``index``.
        index : 1D long tensor of the ``B`` flat scan positions.

        Returns
        -------
        (D, H, W) tensor of the dtype of ``windows``; overlapping windows add up.
        """
        depth = windows.shape[0]
        if self.full:
            return windows.sum(1)
        flat = self.flat_index[index].reshape(-1)
        out = torch.zeros(depth, self.gpts[0] * self.gpts[1], dtype=windows.dtype, device=windows.device)
        out.index_add_(1, flat, windows.reshape(depth, -1))
        return out.reshape(depth, *self.gpts)

    def propagate(self, psi: torch.Tensor, t: torch.Tensor, *, incident: list | None = None,
                  fft2=torch.fft.fft2, ifft2=torch.fft.ifft2, propagators: torch.Tensor | None = None,
                  inplace: bool = False) -> torch.Tensor:
        """The multislice recursion (module docstring): transmit through every slice, propagate
        by its thickness, and return the far field ``F psi_{N+1}``.

        The one loop over slices of the package: :meth:`exit_waves` (autograd),
        :meth:`_intensities_fast` (in place, torch or FFTW transforms) and 3PIE
        (:func:`paperlib.recon.stem_baselines.three_pie`, which keeps the incident waves) all
        call it.

        Parameters
        ----------
        psi : (B, wy, wx) complex incident probes (:meth:`probe_batch`).
        t : (D, B or 1, wy, wx) complex transmission windows (:meth:`windows`).
        incident : optional list; the wave incident on each slice ``psi_n`` (before its
            transmission) is appended to it, slice by slice (keep ``inplace=False`` then).
        fft2, ifft2 : the 2D transforms (default ``torch.fft``); the FFTW path passes
            transforms between its preallocated buffers.
        propagators : (D, wy, wx) Fresnel propagators in FFT order; default
            :attr:`propagators`.
        inplace : multiply in place from the second slice on (no autograd; ``psi`` is not
            modified).

        Returns
        -------
        (B, wy, wx) complex far-field exit waves in FFT order, not cropped.
        """
        props = self.propagators if propagators is None else propagators
        wave_k = psi
        for n in range(self.n_slices):
            if incident is not None:
                incident.append(psi)
            psi = psi.mul_(t[n]) if inplace and n > 0 else psi * t[n]
            wave_k = fft2(psi)
            wave_k = wave_k.mul_(props[n]) if inplace else wave_k * props[n]
            if n + 1 < self.n_slices:
                psi = ifft2(wave_k)
        return wave_k

    def exit_waves(self, V: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Far-field exit waves ``F psi_{N+1}`` (FFT order, not cropped): (B, wy, wx) complex,
        ``B`` = all positions (row-major over the scan) or ``len(index)``. Differentiable
        (autograd keeps every slice's wave for the backward pass); no validation."""
        return self.propagate(self.probe_batch(index), self.windows(self.transmission(V), index))

    def _to_detector(self, wave_k: torch.Tensor) -> torch.Tensor:
        """Centre crop of the fftshifted far field (or of its intensity): (B, wy, wx) ->
        (B, Ky, Kx)."""
        return wave_k.index_select(-2, self._det_rows).index_select(-1, self._det_cols)

    @torch.no_grad()
    def _intensities_fast(self, V: torch.Tensor, index: torch.Tensor | None) -> torch.Tensor:
        """The forward model without autograd: positions in batches of ``batch_size``, one
        batched 2D FFT per slice and batch, products in place. Small batches keep the waves
        in cache (on one CPU thread 32 windows of 64 x 64 per call run ~1.5x faster than all
        256 positions at once). With the FFTW backend the FFTs run between two preallocated
        aligned buffers (no allocation at all) and the inverse FFT's ``1 / (wy wx)`` is folded
        into the propagators. Same numbers as :meth:`exit_waves` up to float rounding."""
        t = self.transmission(V)
        n_out = self.n_positions if index is None else len(index)
        out = torch.empty(n_out, *self.detector_shape, dtype=self.dtype, device=self.device)
        fftw = self.fft_backend == "fftw"
        for start in range(0, n_out, self.batch_size):  # batches, not single positions
            stop = min(start + self.batch_size, n_out)
            sel = (torch.arange(start, stop, device=self.device) if index is None
                   else index[start:stop])
            t_sel = self.windows(t, sel)
            probes = (self._probes[start:stop] if index is None and self._probes is not None
                      else self.probe_batch(sel))  # a slice of the cache: no gather
            if fftw:
                plans = self._fftw_plans(stop - start)
                wave_k = self.propagate(probes, t_sel, fft2=plans.fft2, ifft2=plans.ifft2,
                                        propagators=self._propagators_fftw, inplace=True)
            else:
                wave_k = self.propagate(probes, t_sel, inplace=True)
            pattern = wave_k.real.square().add_(wave_k.imag.square())
            target = out[start:stop]
            for dst_r, src_r in self._det_blocks[0]:  # fftshift + crop as <= 4 block copies
                for dst_c, src_c in self._det_blocks[1]:
                    target[:, dst_r, dst_c] = pattern[:, src_r, src_c]
        return out

    def _fftw_plans(self, batch: int) -> "_FFTWPlans":
        """FFTW plans (and their buffers) for ``batch`` windows, made once per batch size and
        thread count (``torch.get_num_threads()``)."""
        key = (batch, torch.get_num_threads())
        if key not in self._fftw_cache:
            self._fftw_cache[key] = _FFTWPlans((batch, *self.window), self.cdtype, key[1])
        return self._fftw_cache[key]

    def __getstate__(self) -> dict:  # FFTW plans do not pickle; they are rebuilt on demand
        state = self.__dict__.copy()
        state["_fftw_cache"] = {}
        return state

    def intensities_at(self, V: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Diffraction patterns ``(B, Ky, Kx)`` of the flat positions ``index`` (all when
        None; no validation). Differentiable when ``V`` requires grad; otherwise the batched
        in-place path :meth:`_intensities_fast`."""
        if V.requires_grad and torch.is_grad_enabled():
            return self._to_detector(self.exit_waves(V, index)).abs() ** 2
        return self._intensities_fast(V, index)

    def forward(self, V, *, sampling: float | Sequence[float] | None = None) -> torch.Tensor:
        """4D-STEM intensities of a potential.

        Parameters
        ----------
        V : (D, H, W) real tensor, V·Å (float32, or float64 for a float64 operator).
        sampling : optional Å; when given it must equal the operator's sampling.

        Returns
        -------
        (Sy, Sx, Ky, Kx) tensor of the operator's real dtype; each pattern sums to <= 1.
        """
        V = self.check_potential(V, sampling)
        return self.intensities_at(V).reshape(self.measurement_shape)

    __call__ = forward
    # ------------------------------------------------------------------ loss and step
    def loss(self, V, intensities, *, index: torch.Tensor | None = None, likelihood: str = "amplitude",
             poisson_offset: float | None = None) -> torch.Tensor:
        """Paper Eq. 2 in amplitude form: ``sum_j || |F psi_N^j(V)| - sqrt(I_j) ||_F^2``, or (``likelihood=
        "poisson"``) the Poisson deviance of the intensities.

        We chose the amplitude form as the default (not ``|| |F psi|^2 - I ||^2``): its Gauss-Newton
        curvature does not depend on the dose, it is the Gaussian approximation of Poisson noise after
        the variance-stabilising square root, and it is what ePIE/3PIE minimise, so all methods
        share one objective. Summed over positions and detector pixels (not averaged).

        ``likelihood="poisson"``: half the Poisson deviance of intensities with a constant offset ``b``
        added to model and data, ``1/2 sum (m - y - y log(m / y))`` with ``m = |F psi|^2 + b`` and
        ``y = I + b`` (with ``b = 0``: the negative log-likelihood of the counts ``d I``, ``d`` electrons per
        pattern, divided by ``2 d`` up to a constant; so the dose need not be known). It is zero at
        ``|F psi|^2 = I``, and near there its Gauss-Newton curvature in ``|F psi|`` equals the amplitude
        form's (both gradients are ``~ 2 (|F psi| - sqrt(I)) sgn(F psi)``), so the physics step keeps its
        step size. The offset (Thibault & Guizar-Sicairos 2012 regularise the same way) bounds the
        gradient where the model is dark but a count was detected; ``poisson_offset`` in the units of
        ``intensities``, ``None`` = :data:`POISSON_OFFSET_FRACTION` x the mean measured intensity per
        detector pixel.

        Parameters
        ----------
        V : (D, H, W) potential, V·Å (autograd flows through it).
        intensities : (Sy, Sx, Ky, Kx) measured intensities, >= 0.
        index : optional 1D long tensor of flat scan positions (row-major) for a mini-batch.
        """
        V = self.check_potential(V)
        intensities = self.check_intensities(intensities)
        offset = self._likelihood_offset(likelihood, poisson_offset, intensities)
        meas = self._measured_values(intensities, offset)  # sqrt(I), or I + b
        if index is not None:
            meas = meas[index]
        amp = power = None
        if V.requires_grad and torch.is_grad_enabled():
            amp = self._to_detector(self.exit_waves(V, index)).abs()
        else:  # no graph needed: the batched in-place forward (a value, e.g. the thickness search's)
            power = self._intensities_fast(V, index)
        if offset is None:
            return (((power.sqrt_() if amp is None else amp) - meas) ** 2).sum()
        model = (amp.square() if power is None else power) + offset
        return (model - meas - meas * torch.log(model / meas)).sum() / 2

    def _likelihood_offset(self, likelihood: str, poisson_offset, intensities: torch.Tensor) -> float | None:
        """The Poisson offset ``b`` of :meth:`loss` for checked ``intensities`` (None: amplitude form);
        a bad ``likelihood`` or ``poisson_offset`` is named."""
        if likelihood not in LIKELIHOODS:
            raise InputValidationError(f"likelihood: expected one of {LIKELIHOODS}, got {likelihood!r}")
        if likelihood == "amplitude":
            if poisson_offset is not None:
                raise InputValidationError("poisson_offset: only with likelihood='poisson'")
            return None
        if poisson_offset is None:
            mean = float(intensities.double().mean())
            if not mean > 0:
                raise InputValidationError("intensities: all zero; the Poisson data term needs a detected electron "
                                           "(or give poisson_offset)")
            return POISSON_OFFSET_FRACTION * mean
        if not (_is_number(poisson_offset) and poisson_offset > 0):
            raise InputValidationError(f"poisson_offset: expected None or a finite number > 0 in the units of the "
                                       f"intensities, got {poisson_offset!r}")
        return float(poisson_offset)

    def gradient(self, V, intensities, *, index: torch.Tensor | None = None, likelihood: str = "amplitude",
                 poisson_offset: float | None = None):
        """``(loss, dloss/dV)`` of :meth:`loss` (same ``likelihood`` and ``poisson_offset``); the gradient
        is (D, H, W) in 1/(V·Å) units of loss.

        Computed by the hand-written adjoint of the multislice recursion
        (:meth:`_loss_and_gradient`: the same transforms as autograd, batched over positions,
        without autograd's graph; ~2x faster on CPU, same numbers up to float rounding, tested
        against autograd through :meth:`loss`)."""
        V = self.check_potential(V).detach()
        intensities = self.check_intensities(intensities)
        offset = self._likelihood_offset(likelihood, poisson_offset, intensities)
        meas = self._measured_values(intensities, offset)
        if index is not None:
            meas = meas[index]
        with torch.no_grad():
            return self._loss_and_gradient(V, meas, index, offset=offset)

    def _measured_values(self, intensities: torch.Tensor, offset: float | None) -> torch.Tensor:
        """What the far-field gradient compares with, from checked intensities: ``sqrt(I)`` (amplitude
        form, ``offset`` None) or ``I + b`` (Poisson); (Sy Sx, Ky, Kx)."""
        flat = intensities.reshape(-1, *self.detector_shape)
        return torch.sqrt(flat) if offset is None else flat + offset

    def _far_field_targets(self, meas: torch.Tensor, offset: float | None) -> torch.Tensor:
        """The measured values (B, Ky, Kx) of :meth:`_measured_values` as the far-field gradient takes them,
        on the far-field grid in FFT order (B, wy, wx), zero where the detector does not see: the inverse of
        the forward's fftshift and crop, as <= 4 block copies (``2 a`` for the amplitude form, ``offset``
        None; ``I + b`` for Poisson)."""
        scale = 2.0 if offset is None else 1.0
        out = torch.zeros(meas.shape[0], *self.window, dtype=meas.dtype, device=self.device)
        for dst_r, src_r in self._det_blocks[0]:
            for dst_c, src_c in self._det_blocks[1]:
                torch.mul(meas[:, dst_r, dst_c], scale, out=out[:, src_r, src_c])
        return out

    def _loss_and_gradient(self, V: torch.Tensor, meas: torch.Tensor, index: torch.Tensor | None, *,
                           targets: torch.Tensor | None = None, with_loss: bool = True,
                           offset: float | None = None) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Eq. 2 (amplitude form, or Poisson with ``offset``: :meth:`loss`) and its gradient by
        reverse-mode differentiation written out.

        Forward, per batch of positions (the incident waves ``psi_n`` kept): ``u_n = psi_n t_n``,
        ``k_n = F(u_n) P_n``, ``psi_{n+1} = F^-1 k_n``; far field ``Psi = crop(k_{D-1})``, loss
        ``sum (|Psi| - a)^2``. Backward, with ``g`` twice the Wirtinger derivative
        ``dL/d conj(z)``: ``g_Psi = 2 (|Psi| - a) sgn(Psi) = 2 (1 - a / |Psi|) Psi`` (zero
        outside the crop), then per slice from the last ``h = N F^-1(conj(P_n) g_k)``
        (``F^H = N F^-1``, ``N = wy wx``), ``g_t_n += conj(psi_n) h`` (summed over positions,
        scattered onto the grid) and ``g_k(n-1) = F(conj(t_n) h) / N``. Through the band limit
        ``B`` (real and symmetric, so self-adjoint) and ``e = exp(i sigma V)``:
        ``dL/dV = sigma Im(B[g_t] conj(e))``. On CPU the transforms run in FFTW's preallocated
        buffers like the forward model (:meth:`_intensities_fast`), with ``1 / N`` folded into the
        conjugate propagators, and the inverse transforms of the forward sweep write the incident
        waves in place (no copy).

        With the Poisson form only ``g_Psi`` changes: ``(1 - (I + b) / (|Psi|^2 + b)) Psi`` where the
        detector sees (:meth:`_far_field_gradient_poisson`).

        ``meas``: the positions' :meth:`_measured_values` (B, Ky, Kx); ``targets``: optionally
        their :meth:`_far_field_targets` already made (the bound physics step's). ``with_loss=False``
        skips the loss value (returned as None; the physics step needs only the gradient).
        """
        e = torch.polar(torch.ones_like(V), self.sigma * V)
        t = self.band_limit(e)
        t_conj = t.conj().resolve_conj()
        g_t = torch.zeros_like(t)
        loss = torch.zeros((), dtype=torch.float64, device=self.device) if with_loss else None
        if offset is None:
            seen, far_field = self._detector_seen * 2, self._far_field_gradient
        else:
            seen = self._detector_seen
            far_field = functools.partial(self._far_field_gradient_poisson, offset=offset)
        batch = self._adjoint_batch_fftw if self.fft_backend == "fftw" else self._adjoint_batch_torch
        n_out = self.n_positions if index is None else len(index)
        for start in range(0, n_out, self.batch_size):
            stop = min(start + self.batch_size, n_out)
            sel = torch.arange(start, stop, device=self.device) if index is None else index[start:stop]
            probes = (self._probes[start:stop] if index is None and self._probes is not None
                      else self.probe_batch(sel))
            target = (targets[start:stop] if targets is not None
                      else self._far_field_targets(meas[start:stop], offset))  # memory O(batch)
            value, g_win = batch(probes, self.windows(t, sel), self.windows(t_conj, sel),
                                 functools.partial(far_field, target=target, seen=seen, with_loss=with_loss))
            if with_loss:
                loss += value
            g_t += self.scatter(g_win, sel)
        grad = (self.band_limit(g_t) * e.conj()).imag.mul_(self.sigma)
        return (loss.to(V.dtype) if with_loss else None), grad

    @staticmethod
    def _far_field_gradient(wave_k: torch.Tensor, *, target: torch.Tensor, seen: torch.Tensor,
                            with_loss: bool) -> torch.Tensor | None:
        """``wave_k`` (the batch's far field ``Psi``, FFT order) := ``g_Psi`` of
        :meth:`_loss_and_gradient` in place, ``2 seen (1 - a / |Psi|) Psi`` with ``target = 2 a``
        (:meth:`_far_field_targets`) and ``seen`` twice the detector's mask; returns the batch's
        loss (float64) when ``with_loss``, else None.

        Written with ``|Psi|^2`` from the real and imaginary parts and one reciprocal square root:
        torch's complex ``abs`` and ``sgn`` (overflow-safe ``hypot``) take ~5x as long on CPU.
        ``|Psi|^2`` is clamped at the dtype's smallest normal number, so where ``Psi = 0`` the
        factor is finite and ``g_Psi = 0`` (autograd's ``sgn(0) = 0``)."""
        parts = torch.view_as_real(wave_k)
        power = parts[..., 0].square().addcmul_(parts[..., 1], parts[..., 1])
        value = None
        if with_loss:
            resid = power.sqrt().mul_(seen).sub_(target)  # 2 (|Psi| - a) where seen
            value = resid.double().square().sum() / 4
        factor = torch.addcmul(seen, target, power.clamp_min_(torch.finfo(power.dtype).tiny).rsqrt_(), value=-1)
        wave_k.mul_(factor)
        return value

    @staticmethod
    def _far_field_gradient_poisson(wave_k: torch.Tensor, *, target: torch.Tensor, seen: torch.Tensor,
                                    with_loss: bool, offset: float) -> torch.Tensor | None:
        """The Poisson form of :meth:`_far_field_gradient`: ``wave_k := seen (1 - y / m) Psi`` with
        ``m = |Psi|^2 + b`` and ``target = y = I + b`` where the detector sees (0 elsewhere); the
        batch's loss ``1/2 sum seen (m - y - y log(m / y))`` (float64) when ``with_loss``."""
        parts = torch.view_as_real(wave_k)
        model = parts[..., 0].square().addcmul_(parts[..., 1], parts[..., 1]).add_(offset)
        value = None
        if with_loss:
            m, y = model.double(), target.double()
            value = (seen.double() * (m - y - y * torch.log(m / y.clamp_min(offset)))).sum() / 2
        wave_k.mul_(seen - target / model)
        return value

    def _adjoint_batch_torch(self, probes, t_sel, t_conj, far_field):
        """One batch of :meth:`_loss_and_gradient` with ``torch.fft`` (``far_field(wave_k)`` turns the far
        field into ``g_Psi`` in place and returns the loss or None): (loss, (D, B, wy, wx) g_t)."""
        incident: list = []
        g = self.propagate(probes, t_sel, incident=incident)
        value = far_field(g)
        g_win = torch.empty((self.n_slices, *g.shape), dtype=g.dtype, device=self.device)
        n_pix = self.window[0] * self.window[1]
        for n in range(self.n_slices - 1, -1, -1):
            h = torch.fft.ifft2(g.mul_(self._propagators_conj[n])).mul_(n_pix)
            torch.mul(incident[n].conj(), h, out=g_win[n])
            if n > 0:
                g = torch.fft.fft2(h.mul_(t_conj[n])).div_(n_pix)
        return value, g_win

    def _adjoint_batch_fftw(self, probes, t_sel, t_conj, far_field):
        """One batch of :meth:`_loss_and_gradient` in FFTW's buffers (unnormalised transforms:
        the forward's ``1 / N`` sits in :attr:`_propagators_fftw`, the backward's in their
        conjugates). The incident waves and then ``g_t`` live in the plans' wave stack
        (:meth:`_FFTWPlans.wave_stack`): the returned ``g_win`` is valid until the next batch."""
        plans = self._fftw_plans(probes.shape[0])
        real, recip = plans.real, plans.recip
        incident, to_incident = plans.wave_stack(self.n_slices)
        props, props_conj = self._propagators_fftw, self._propagators_fftw_conj
        psi = probes
        for n in range(self.n_slices):
            torch.mul(psi, t_sel[n], out=real)
            plans.forward.execute()
            recip.mul_(props[n])
            if n + 1 < self.n_slices:
                to_incident[n + 1].execute()  # psi_{n+1} (1 / N in props[n])
                psi = incident[n + 1]
        incident[0].copy_(probes)
        value = far_field(recip)
        g_win = incident  # overwritten slice by slice from the last: psi_n is read before g_t_n lands
        for n in range(self.n_slices - 1, -1, -1):
            recip.mul_(props_conj[n])  # conj(P_n), with 1 / N except for the last slice
            plans.backward.execute()  # real = N F^-1(...) = h
            g_win[n].conj_physical_().mul_(real)
            if n > 0:
                real.mul_(t_conj[n])
                plans.forward.execute()  # N g_k(n-1); the 1 / N is in props[n-1]
        return value, g_win

    def physics_step(
        self,
        V,
        intensities,
        *,
        step_size: float | None = None,
        threshold: float = 0.0,
        nonnegative: bool = False,
        support=None,
        likelihood: str = "amplitude",
        poisson_offset: float | None = None,
    ) -> torch.Tensor:
        """Paper Eq. 5: ``V <- Prox_{tau R}(V - mu grad L(V))`` with ``L`` the Eq. 2 loss.

        One gradient step (:meth:`gradient`, in the operator's precision) followed by soft
        thresholding, the proximal map of ``R = tau ||V||_1`` (parikh2014proximal).

        Parameters
        ----------
        V : (D, H, W) potential, V·Å.
        intensities : (Sy, Sx, Ky, Kx) measured intensities.
        step_size : ``mu`` in (V·Å)^2 per unit loss. ``None`` uses :attr:`default_step_size`,
            the inverse Gauss-Newton curvature of the amplitude loss for a thin phase object,
            ``1 / (2 N_window D sigma^2 max_r sum_j |P_j(r)|^2)``: for one slice this is the
            step ePIE takes with ``alpha = 1``; the factor ``D`` is there because a change
            common to all ``D`` slices adds up in the phase (without it, gradient descent
            diverges after a few steps on our crystals). It needs no extra forward passes,
            unlike a line search (our choice; the paper points to Xu et al. 2018 for step-size
            rules).
        threshold : the soft threshold ``mu * tau`` in V·Å (0 = no proximal step).
        nonnegative : also project onto ``V >= 0`` (potentials are non-negative).
        support : optional (D,) bool, the slices that may hold potential; the others are set to
            0 (vacuum) after the step. With ``T`` free slices a change common to them adds up
            ``T`` times, not ``D``, so the default step is ``D / T`` times larger (an explicit
            ``step_size`` is used as given).
        likelihood, poisson_offset : the data term ``L`` (:meth:`loss`): the amplitude form (default)
            or the Poisson deviance, whose Gauss-Newton curvature near the data is the amplitude
            form's, so the same default step.

        Returns
        -------
        (D, H, W) tensor, detached, same dtype as the operator.
        """
        V = self.check_potential(V).detach()
        # the class's method, not an instance attribute that may wrap it (benchmarks time the bound step)
        return MultisliceOperator.bind_physics_step(self, intensities, step_size=step_size, threshold=threshold,
                                                    nonnegative=nonnegative, support=support, likelihood=likelihood,
                                                    poisson_offset=poisson_offset)(V)

    def bind_physics_step(
        self,
        intensities,
        *,
        step_size: float | None = None,
        threshold: float = 0.0,
        nonnegative: bool = False,
        support=None,
        likelihood: str = "amplitude",
        poisson_offset: float | None = None,
    ):
        """``step(V)`` = :meth:`physics_step` ``(V, intensities, ...)`` with the measurement and the
        settings bound (what DART's and DRIFT's callbacks call every step): the intensities are
        checked, their square roots taken and laid out on the far-field grid once (kept when they
        take at most :attr:`PROBE_CACHE_ELEMENTS` values, else per batch), and the loss value,
        which the step does not use, is not computed. Same numbers as :meth:`physics_step`.

        >>> pos = grid_scan((0.0, 0.0), (2.0, 2.0), (2, 2))
        >>> op = MultisliceOperator(gpts=16, sampling=0.25, energy=200.0, semiangle=20.0,
        ...                         slice_thickness=2.0, n_slices=2, scan_positions=pos)
        >>> I = op.forward(torch.full(op.shape, 5.0))
        >>> V = torch.zeros(op.shape)
        >>> bool(torch.equal(op.bind_physics_step(I, threshold=0.1)(V), op.physics_step(V, I, threshold=0.1)))
        True
        """
        if step_size is not None and not (_is_number(step_size) and step_size > 0):
            raise InputValidationError(f"step_size: expected None or a finite number > 0, got {step_size!r}")
        if not (_is_number(threshold) and threshold >= 0):
            raise InputValidationError(f"threshold: expected a finite number >= 0 (V·Å), got {threshold!r}")
        depth = self.n_slices
        if support is not None:
            support = torch.as_tensor(support)
            if support.shape != (depth,) or support.dtype != torch.bool or not bool(support.any()):
                got = "no True slice" if support.shape == (depth,) and support.dtype == torch.bool \
                    else f"{tuple(support.shape)} {support.dtype}"
                raise InputValidationError(
                    f"support: expected a ({depth},) bool tensor with at least one True slice, got {got}")
            vacuum = ~support.to(self.device)
        intensities = self.check_intensities(intensities)
        offset = self._likelihood_offset(likelihood, poisson_offset, intensities)
        meas = self._measured_values(intensities, offset)
        targets = (self._far_field_targets(meas, offset)
                   if self.n_positions * self.window[0] * self.window[1] <= self.PROBE_CACHE_ELEMENTS else None)
        if step_size is not None:
            mu = float(step_size)
        else:
            mu = self.default_step_size * (1.0 if support is None else depth / int(support.sum()))
        what = f"MultisliceOperator.physics_step(step_size={step_size!r})"

        def step(V) -> torch.Tensor:
            V = self.check_potential(V).detach()
            with torch.no_grad():
                _, grad = self._loss_and_gradient(V, meas, None, targets=targets, with_loss=False, offset=offset)
            V = soft_threshold(V - mu * grad, float(threshold), nonnegative=nonnegative)
            if support is not None:
                V[vacuum] = 0
            return finite_result(V, what)

        return step

    # ------------------------------------------------------------------ images
    def bright_field(self, intensities) -> torch.Tensor:
        """Bright-field image: each pattern summed inside the bright-field disk (scattering
        angle <= the convergence semi-angle): (Sy, Sx) tensor."""
        intensities = self.check_intensities(intensities)
        return (intensities * self.bright_field_mask).sum(dim=(-2, -1))

    def measurement_image(self, intensities) -> torch.Tensor:
        """DRIFT's selection image for 4D-STEM: the bright-field image, **2D** ``(Sy, Sx)``
        (one image of the whole object, unlike MRI's per-slice ``(D, H, W)`` zero-filled
        volume; the paper compares it by SSIM)."""
        return self.bright_field(intensities)

    def volume_shape(self, intensities) -> tuple[int, int, int]:
        """The ``(D, H, W)`` of the potentials this operator acts on (:attr:`shape`); the
        measurement must have :attr:`measurement_shape`, else an
        :class:`~paperlib.io.InputValidationError` names ``intensities``."""
        got = tuple(getattr(intensities, "shape", ()))
        if got != self.measurement_shape:
            raise InputValidationError(
                f"intensities: expected shape (Sy, Sx, Ky, Kx) = {self.measurement_shape}, got {got}")
        return self.shape

    def __repr__(self) -> str:
        return (
            f"MultisliceOperator(shape={self.shape}, sampling={self.sampling} Å, "
            f"energy={self.energy} keV, semiangle={self.semiangle} mrad, defocus={self.defocus} Å, "
            f"scan={self.scan_shape}, window={self.window}, detector={self.detector_shape}, "
            f"dtype={self.dtype})"
        )
