"""Single-coil Cartesian MRI: centred orthonormal FFTs, seeded sampling masks, and the
measurement operator with its data-consistency step (paper Eq. 3 and Eq. 4).

Model (paper Eq. 3): every axial slice ``x_s`` of a volume ``(D, H, W)`` is measured as

.. math::

    y_s = M_s \\odot F x_s,

with ``F`` the orthonormal, centred 2D DFT over ``(H, W)`` (:func:`fft2c`; zero frequency at
index ``(H // 2, W // 2)``) and ``M_s`` a bool sampling mask ``(H, W)``, one per slice or one
shared by all. Unsampled k-space entries of ``y`` are stored as exact zeros. Since ``F`` is
unitary, ``||M F|| <= 1`` and the adjoint is ``F^H (M \\odot y)`` (= the zero-filled image).

Conventions
-----------
* Images: ``(D, H, W)`` float32 magnitude images in [0, 1] (real), or complex64; k-space:
  complex64 ``(D, H, W)`` (float64 inputs give complex128, for gradient checks).
* Phase encoding runs along ``W``: :func:`uniform1d_mask` samples whole columns ``[:, j]``
  (every row of a sampled column, i.e. the readout along ``H`` is fully sampled).
* All operations are batched over the slices (and any further leading dimensions): one FFT
  call per volume, no Python loop over slices.

Multicoil 3D Cartesian MRI (issue 18, the system of paper ``002``) is at the end of the module:
:func:`fft3c`, simulated coil maps (:func:`coil_sensitivities`), 2D variable-density masks over
the two phase-encoding directions (:func:`multicoil_mask`) and :class:`MulticoilMRIOperator`,
``A x = M ⊙ F_3D(S_c x)``; none of the single-coil names above changes.

>>> g = torch.Generator().manual_seed(0)
>>> mask = make_mask("uniform1d", (32, 32), 4, 0.08, generator=g)
>>> op = MRIOperator(mask)
>>> x = torch.rand(2, 32, 32, generator=g)
>>> y = op.forward(x)
>>> y.dtype, round(float(mask.float().mean()), 3)
(torch.complex64, 0.25)
>>> bool(torch.allclose(op.forward(op.physics_step(x, y)), y, atol=1e-5))
True
"""
from __future__ import annotations

import math
from typing import Callable, Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from ..io import InputValidationError
from .base import finite_result

__all__ = [
    "fft2c",
    "ifft2c",
    "uniform1d_mask",
    "gaussian2d_mask",
    "make_mask",
    "hermitian_half",
    "MRIOperator",
    "MASK_KINDS",
    "fft3c",
    "ifft3c",
    "coil_sensitivities",
    "multicoil_mask",
    "MulticoilMRIOperator",
]

MASK_KINDS = ("uniform1d", "gaussian2d")
_DIMS = (-2, -1)


# --------------------------------------------------------------------------------------------
# centred orthonormal FFTs
# --------------------------------------------------------------------------------------------
def fft2c(x: Tensor) -> Tensor:
    """Centred orthonormal 2D DFT over the last two dimensions.

    ``fftshift(fft2(ifftshift(x), norm="ortho"))`` over dims ``(-2, -1)``, batched over any
    leading dimensions: unitary (Parseval holds), zero frequency at ``(H // 2, W // 2)``.

    Parameters
    ----------
    x : (..., H, W) real or complex tensor (image; pixel units).

    Returns
    -------
    (..., H, W) complex tensor: complex64 for float32/complex64 input, complex128 for
    float64/complex128.

    >>> x = torch.zeros(4, 4); x[2, 2] = 1.0       # a centred impulse has a flat spectrum
    >>> fft2c(x).real
    tensor([[0.2500, 0.2500, 0.2500, 0.2500],
            [0.2500, 0.2500, 0.2500, 0.2500],
            [0.2500, 0.2500, 0.2500, 0.2500],
            [0.2500, 0.2500, 0.2500, 0.2500]])
    """
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=_DIMS), norm="ortho"), dim=_DIMS)


def ifft2c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft2c` (centred orthonormal inverse DFT over the last two dims).

    Parameters
    ----------
    k : (..., H, W) complex (or real) k-space, zero frequency at ``(H // 2, W // 2)``.

    Returns
    -------
    (..., H, W) complex tensor (complex64 or complex128, as :func:`fft2c`).

    >>> x = torch.rand(3, 5, 6, dtype=torch.float64)
    >>> bool(torch.allclose(ifft2c(fft2c(x)).real, x))
    True
    """
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_DIMS), norm="ortho"), dim=_DIMS)


# --------------------------------------------------------------------------------------------
# sampling masks
# --------------------------------------------------------------------------------------------
def _check_mask_args(shape: Sequence[int], acceleration: float, center_fraction: float,
                     generator: torch.Generator | None) -> tuple[int, int]:
    try:
        height, width = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise ValueError(f"shape: expected (H, W), two integers, got {shape!r}") from None
    if height < 4 or width < 4:
        raise ValueError(f"shape: expected (H, W) with H, W >= 4, got {(height, width)}")
    if not isinstance(acceleration, (int, float)) or not math.isfinite(acceleration) or acceleration <= 1:
        raise ValueError(f"acceleration: expected a finite number > 1, got {acceleration!r}")
    if (not isinstance(center_fraction, (int, float)) or not math.isfinite(center_fraction)
            or not 0 < center_fraction <= 1.0 / acceleration):
        raise ValueError(
            f"center_fraction: expected 0 < center_fraction <= 1/acceleration = {1.0 / acceleration:.4g}, "
            f"got {center_fraction!r}"
        )
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator: expected a torch.Generator (explicit seeding), got {type(generator).__name__}")
    return height, width


def uniform1d_mask(
    shape: Sequence[int], acceleration: float, center_fraction: float, *, generator: torch.Generator
) -> Tensor:
    """1D Cartesian mask: a fully sampled central band of columns plus uniformly random columns.

    Phase encoding runs along ``W``: whole columns are sampled (fastMRI's ``RandomMaskFunc``
    design). The central band has ``max(1, round(center_fraction * W))`` adjacent columns
    around the zero-frequency column ``W // 2``; further columns are drawn uniformly without
    replacement from the rest until ``round(W / acceleration)`` columns are sampled, so the
    sampled fraction is ``1 / acceleration`` to within ``1 / (2 W)``.

    Parameters
    ----------
    shape : (H, W) of k-space, each >= 4.
    acceleration : float > 1, the undersampling factor (4 = a quarter of the columns).
    center_fraction : fraction of the columns in the central band, in ``(0, 1/acceleration]``.
    generator : torch.Generator, the only source of randomness.

    Returns
    -------
    (H, W) bool tensor, constant along ``H``.

    Raises
    ------
    ValueError
        Naming the offending argument.

    >>> m = uniform1d_mask((8, 16), 4, 0.125, generator=torch.Generator().manual_seed(0))
    >>> int(m[0].sum()), bool(m[:, 7:9].all()), bool((m == m[0]).all())
    (4, True, True)
    """
    height, width = _check_mask_args(shape, acceleration, center_fraction, generator)
    n_total = max(1, round(width / acceleration))
    n_center = min(max(1, round(center_fraction * width)), n_total)
    start = (width - n_center + 1) // 2
    cols = torch.zeros(width, dtype=torch.bool)
    cols[start:start + n_center] = True
    others = torch.nonzero(~cols).flatten()
    picks = torch.randperm(others.numel(), generator=generator)[: n_total - n_center]
    cols[others[picks]] = True
    return cols.expand(height, width).clone()


def _normalised_radius2(height: int, width: int, sigma: float = 1.0) -> Tensor:
    ky = (torch.arange(height, dtype=torch.float64) - height // 2) / (sigma * height)
    kx = (torch.arange(width, dtype=torch.float64) - width // 2) / (sigma * width)
    return ky[:, None] ** 2 + kx[None, :] ** 2


def gaussian2d_mask(
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    *,
    generator: torch.Generator,
    sigma: float = 0.2,
) -> Tensor:
    """2D variable-density mask: a fully sampled central ellipse plus Gaussian-weighted points.

    The central ellipse ``(ky / H)^2 + (kx / W)^2 <= center_fraction / pi`` (frequencies in
    samples from the centre ``(H // 2, W // 2)``) covers a fraction ``center_fraction`` of
    k-space, as the central band of :func:`uniform1d_mask` does. The remaining points, up to
    ``round(H W / acceleration)`` in total, are drawn without replacement from the rest of
    k-space with probability proportional to ``exp(-((ky / (sigma H))^2 + (kx / (sigma W))^2) / 2)``
    (:func:`torch.multinomial`), so the sampled fraction is ``1 / acceleration`` to within
    ``1 / (2 H W)``.

    Parameters
    ----------
    shape : (H, W) of k-space, each >= 4.
    acceleration : float > 1.
    center_fraction : fraction of k-space in the fully sampled ellipse, in ``(0, 1/acceleration]``.
    generator : torch.Generator, the only source of randomness.
    sigma : float > 0, standard deviation of the sampling density as a fraction of each side;
        the default 0.2 gives the density an effective area ``2 pi sigma^2 = 0.25`` of k-space,
        matched to 4x acceleration.

    Returns
    -------
    (H, W) bool tensor.

    >>> m = gaussian2d_mask((32, 32), 4, 0.08, generator=torch.Generator().manual_seed(0))
    >>> int(m.sum()), bool(m[16, 16])
    (256, True)
    """
    height, width = _check_mask_args(shape, acceleration, center_fraction, generator)
    if not isinstance(sigma, (int, float)) or not sigma > 0:
        raise ValueError(f"sigma: expected a number > 0, got {sigma!r}")
    n_total = max(1, round(height * width / acceleration))
    r2 = _normalised_radius2(height, width)
    center = r2 <= center_fraction / math.pi
    center[height // 2, width // 2] = True
    mask = center.clone().flatten()
    n_random = n_total - int(mask.sum())
    if n_random > 0:
        weights = torch.exp(-0.5 * r2 / sigma**2).flatten()
        weights[mask] = 0.0
        picks = torch.multinomial(weights, n_random, replacement=False, generator=generator)
        mask[picks] = True
    return mask.reshape(height, width)


def make_mask(
    kind: Literal["uniform1d", "gaussian2d"],
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    *,
    generator: torch.Generator,
) -> Tensor:
    """Sampling mask of the given kind: :func:`uniform1d_mask` or :func:`gaussian2d_mask`.

    Returns a (H, W) bool tensor; raises ``ValueError`` naming ``kind`` for an unknown kind.

    >>> make_mask("gaussian2d", (16, 16), 4, 0.1, generator=torch.Generator().manual_seed(1)).shape
    torch.Size([16, 16])
    """
    if kind == "uniform1d":
        return uniform1d_mask(shape, acceleration, center_fraction, generator=generator)
    if kind == "gaussian2d":
        return gaussian2d_mask(shape, acceleration, center_fraction, generator=generator)
    raise ValueError(f"kind: expected one of {MASK_KINDS}, got {kind!r}")


def hermitian_half(weight: Tensor) -> Tensor:
    """``(M(k) + M(-k)) / 2`` of an *uncentred* (FFT-order) mask, on the rfft half-plane.

    For a *real* image ``x``, ``Re(F^H M F x) = F^H M_sym F x`` with the symmetrised mask
    ``M_sym(k) = (M(k) + M(-k)) / 2`` (values 0, 1/2, 1), which is Hermitian, so the normal
    operator restricted to real images is ``irfft2(M_sym ⊙ rfft2(x))``: half the FFT work.

    Parameters
    ----------
    weight : (..., H, W) real tensor, the mask in FFT order (``k = 0`` at index ``(0, 0)``).

    Returns
    -------
    (..., H, W // 2 + 1) real tensor of the dtype of ``weight``.

    >>> m = torch.tensor([[1.0, 1.0, 0.0, 0.0]])
    >>> hermitian_half(m).tolist()
    [[1.0, 0.5, 0.0]]
    """
    flipped = torch.roll(torch.flip(weight, dims=(-2, -1)), shifts=(1, 1), dims=(-2, -1))  # M(-k)
    return (0.5 * (weight + flipped))[..., : weight.shape[-1] // 2 + 1]


# --------------------------------------------------------------------------------------------
# the operator
# --------------------------------------------------------------------------------------------
_FFT_DTYPES = (torch.float32, torch.float64, torch.complex64, torch.complex128)


def _cast_finite(t: Tensor, dtype: torch.dtype, name: str) -> Tensor:
    """``t.to(dtype)``; an :class:`~paperlib.io.InputValidationError` naming ``name`` where a
    finite value overflows the lower precision (a float64 measurement of 1e300 for a float32 image)."""
    out = t.to(dtype)
    if out.dtype != t.dtype and torch.finfo(out.dtype).max < torch.finfo(t.dtype).max:
        if not bool(torch.isfinite(out).all()):
            raise InputValidationError(f"{name}: values up to {float(t.abs().max()):.3g} overflow {dtype}, the "
                                       "precision of the computation; rescale them")
    return out


def _complex_dtype(t: Tensor) -> torch.dtype:
    return torch.complex128 if t.dtype in (torch.float64, torch.complex128) else torch.complex64


def _check_step_size(step_size) -> None:
    """Eq. 4's step size: a finite real number (a clear error, not a NaN volume)."""
    if isinstance(step_size, bool) or not isinstance(step_size, (int, float)) or not math.isfinite(step_size):
        raise ValueError(f"step_size: expected a finite number, got {step_size!r}")


class MRIOperator:
    """Masked centred orthonormal 2D Fourier transform of every slice (paper Eq. 3).

    ``A x = M ⊙ F x`` slice by slice, with adjoint ``A^H y = F^H (M ⊙ y)``; ``F`` is
    :func:`fft2c`. The physics step is the paper's Eq. 4 (:meth:`data_consistency`).

    Parameters
    ----------
    mask : (H, W) or (D, H, W) tensor (or array)
        Sampling mask, bool or numeric with values in {0, 1} (stored as bool). A (H, W) mask
        is shared by all slices; a (D, H, W) mask gives each slice its own.

    Attributes
    ----------
    mask : bool tensor, the stored mask.

    Declared capabilities (the :class:`~paperlib.physics.base.Operator` protocol):
    ``slice_local = True`` (Eq. 4 acts on every slice independently, and every method
    broadcasts over leading dimensions such as candidates), ``is_linear = True`` with
    :meth:`adjoint`, ``projects = True`` (``physics_step(x, y, step_size=1.0)`` is the projection
    onto ``M F x = y``),
    ``supports_support = False`` (Eq. 4 takes no slice support),
    ``periodic_scan_step()`` None (no scan); :meth:`volume_shape` reads the k-space shape.

    Notes
    -----
    Inputs ``x`` may carry extra leading dimensions (e.g. ``(N, D, H, W)`` candidates): the
    mask broadcasts over them; their trailing dimensions must equal the mask's shape, else an
    :class:`~paperlib.io.InputValidationError` names both shapes.

    Examples
    --------
    >>> op = MRIOperator(torch.tensor([[1, 0, 1, 0]] * 4))     # {0, 1} masks are accepted
    >>> x = torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0))
    >>> y = op.forward(x)
    >>> tuple(y.shape), y.dtype, bool((y[..., 1] == 0).all())
    ((3, 4, 4), torch.complex64, True)
    >>> op.measurement_image(y).dtype
    torch.float32
    """

    slice_local: bool = True
    is_linear: bool = True
    projects: bool = True
    supports_support: bool = False

    def __init__(self, mask: Tensor | np.ndarray) -> None:
        if isinstance(mask, np.ndarray):
            mask = torch.from_numpy(mask)
        if not isinstance(mask, Tensor):
            raise InputValidationError(f"mask: expected a torch tensor or numpy array, got {type(mask).__name__}")
        if mask.ndim not in (2, 3) or min(mask.shape) < 1:
            raise InputValidationError(f"mask: expected shape (H, W) or (D, H, W), got {tuple(mask.shape)}")
        if mask.is_complex():
            raise InputValidationError("mask: expected bool or {0, 1}-valued real values, got a complex tensor")
        if mask.dtype != torch.bool:
            bad = (mask != 0) & (mask != 1)
            if bool(bad.any()):
                raise InputValidationError(
                    f"mask: expected bool or values in {{0, 1}}, got {mask.dtype} with values such as "
                    f"{float(mask[bad].flatten()[0]):g}"
                )
            mask = mask != 0
        self.mask: Tensor = mask.detach().clone()
        self._weight = self.mask.to(torch.float32)
        self._weight64: Tensor | None = None
        self._normal_weights: dict = {}

    # ---------------------------------------------------------------- helpers
    def __repr__(self) -> str:
        return f"MRIOperator(mask={tuple(self.mask.shape)}, sampled={float(self._weight.mean()):.3f})"

    @property
    def sampled_fraction(self) -> float:
        """Fraction of k-space sampled (over all slices for a (D, H, W) mask)."""
        return float(self._weight.mean())

    def check_shape(self, t: Tensor, name: str = "x") -> None:
        """Raise :class:`~paperlib.io.InputValidationError` unless the trailing dimensions of
        ``t`` (a volume for ``name="x"``, k-space otherwise) equal the mask's shape; the
        message names the argument, the mask shape and the shape of ``t``."""
        if not isinstance(t, Tensor):
            raise InputValidationError(f"{name}: expected a torch tensor, got {type(t).__name__}")
        m = tuple(self.mask.shape)
        if t.ndim < max(len(m), 2) or tuple(t.shape[-len(m):]) != m:
            what = "volume" if name == "x" else "k-space"
            raise InputValidationError(
                f"{name}: mask of shape {m} does not fit the {what} of shape {tuple(t.shape)} "
                f"(expected trailing dimensions {m})"
            )
        if t.numel() == 0:
            raise InputValidationError(f"{name}: empty tensor of shape {tuple(t.shape)}")

    def check(self, t: Tensor, name: str = "x") -> None:
        """:meth:`check_shape`, and raise :class:`~paperlib.io.InputValidationError` naming
        ``name`` unless ``t`` is float32/float64/complex64/complex128 and finite (no NaN/Inf)."""
        self.check_shape(t, name)
        if not (t.is_floating_point() or t.is_complex()):
            raise InputValidationError(f"{name}: expected a real floating-point or complex tensor, got {t.dtype}")
        if t.dtype not in _FFT_DTYPES:
            raise InputValidationError(f"{name}: expected float32, float64, complex64 or complex128 (what the FFT "
                                       f"takes), got {t.dtype}; convert with .float()")
        if not bool(torch.isfinite(t).all()):
            raise InputValidationError(
                f"{name}: {int((~torch.isfinite(t)).sum())} non-finite values (NaN/Inf) of {t.numel()}")

    def weight(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
        """The mask as a real {0, 1} tensor, centred like k-space: float64 when ``dtype`` is
        complex128 (double precision), else float32; on ``device``. Cached per precision."""
        device = torch.device(device)
        if dtype == torch.complex128:
            if self._weight64 is None:
                self._weight64 = self.mask.to(torch.float64)
            w = self._weight64
        else:
            w = self._weight
        return w if w.device == device else w.to(device)

    def uncentred_weight(self, dtype: torch.dtype, device: torch.device | str = "cpu") -> Tensor:
        """:meth:`weight` in the uncentred FFT frame, ``ifftshift(M)``: the mask that plain
        (unshifted) FFTs see, (H, W) or (D, H, W) real."""
        return torch.fft.ifftshift(self.weight(dtype, device), dim=_DIMS)

    def normal(self, v: Tensor, *, real: bool) -> Tensor:
        """The normal operator ``A^H A v = F^H (M ⊙ F v)``, with no fftshift in the loop.

        ``F_c^H diag(M) F_c`` is a circular convolution and circular shifts commute with it, so
        it equals ``F^H diag(ifftshift(M)) F`` with plain (uncentred) orthonormal FFTs
        (:meth:`uncentred_weight`). For ``real=True`` the result is ``Re(A^H A v)`` of a real
        ``v``, computed with real FFTs and the symmetrised mask (:func:`hermitian_half`).

        Parameters
        ----------
        v : (..., H, W) image: real float32/float64 for ``real=True``, complex64/complex128
            otherwise (float64/complex128 use a float64 mask).
        real : restrict to real images (see above).

        Returns
        -------
        Tensor of the shape and dtype of ``v``.

        >>> op = MRIOperator(make_mask("uniform1d", (8, 8), 2, 0.25, generator=torch.Generator().manual_seed(0)))
        >>> v = torch.rand(2, 8, 8, dtype=torch.float64)
        >>> bool(torch.allclose(op.normal(v, real=True), op.adjoint(op.forward(v)).real))
        True
        """
        complex_dtype = _complex_dtype(v)
        key = (complex_dtype, v.device, bool(real))
        if key not in self._normal_weights:
            mask = self.uncentred_weight(complex_dtype, v.device)
            self._normal_weights[key] = hermitian_half(mask) if real else mask
        mask = self._normal_weights[key]
        if real:
            k = torch.fft.rfft2(v, norm="ortho")
            k.mul_(mask)
            return torch.fft.irfft2(k, s=v.shape[-2:], norm="ortho")
        k = torch.fft.fft2(v, norm="ortho")
        k.mul_(mask)
        return torch.fft.ifft2(k, norm="ortho")

    def volume_shape(self, y: Tensor) -> tuple[int, int, int]:
        """The ``(D, H, W)`` of the images this operator acts on: the trailing three dimensions
        of the k-space ``y`` (whose trailing dimensions must fit the mask)."""
        self.check_shape(y, "y")
        if y.ndim < 3:
            raise InputValidationError(f"y: expected (D, H, W) k-space, got shape {tuple(y.shape)}")
        return tuple(int(s) for s in y.shape[-3:])  # type: ignore[return-value]

    def periodic_scan_step(self) -> None:
        """None: MRI has no scan (the capability serves DRIFT's 4D-STEM translation search)."""
        return None

    # ---------------------------------------------------------------- operator
    def forward(self, x: Tensor) -> Tensor:
        """Masked k-space ``M ⊙ F x`` (paper Eq. 3).

        Parameters
        ----------
        x : (..., D, H, W) real or complex image (a (..., H, W) image with a (H, W) mask).

        Returns
        -------
        complex64 (complex128 for double input) k-space of the shape of ``x``; zero where
        the mask is False.
        """
        self.check(x, "x")
        k = fft2c(x)
        return finite_result(k * self.weight(k.dtype, k.device), "MRIOperator.forward(x)")

    def adjoint(self, y: Tensor) -> Tensor:
        """``F^H (M ⊙ y)``: complex image of the shape of ``y`` (the adjoint of :meth:`forward`)."""
        self.check(y, "y")
        y = y.to(_complex_dtype(y))
        return finite_result(ifft2c(y * self.weight(y.dtype, y.device)), "MRIOperator.adjoint(y)")

    def zero_filled(self, y: Tensor) -> Tensor:
        """Zero-filled complex image ``F^{-1}(M ⊙ y)`` (equal to :meth:`adjoint`, as ``F`` is
        unitary): the least-squares solution of minimum norm."""
        return self.adjoint(y)

    def measurement_image(self, y: Tensor) -> Tensor:
        """DRIFT's selection image: the zero-filled magnitude ``|F^{-1}(M ⊙ y)|``, real
        (float32 for complex64 ``y``), shaped like ``y``: ``(..., D, H, W)``, one image per
        slice."""
        return self.adjoint(y).abs()

    def data_consistency(self, x: Tensor, y: Tensor, step_size: float = 1.0) -> Tensor:
        """Paper Eq. 4: ``x <- F^{-1}( F x - λ M ⊙ (F x - y) )`` with ``λ = step_size``.

        ``λ = 1`` replaces the sampled k-space of ``x`` by the measurement (hard data
        consistency; idempotent); ``0 < λ < 1`` moves it part of the way; ``λ = 0`` is the
        identity. Unsampled k-space of ``x`` is kept. Equivalently, a gradient step of size
        ``λ`` on ``1/2 ||M F x - y||^2`` (the Eq. 3 data term).

        Computed as that gradient step, ``x - λ (A^H A x - A^H y)``: the normal operator
        :meth:`normal` needs no fftshift (and, for real ``x``, only real FFTs of half the
        spectrum). Steps that reuse one measurement (DART's, at every diffusion step) compute
        ``A^H y`` once: :meth:`bind_physics_step`. Timing against sigpy and numpy:
        ``figures/benchmarks.md`` (rows "MRI data consistency").

        Parameters
        ----------
        x : (..., D, H, W) real or complex image.
        y : k-space shaped like ``x`` (values outside the mask are ignored).
        step_size : float λ, usually in [0, 1].

        Returns
        -------
        Tensor shaped like ``x``. **Complex** ``x`` gives the complex result. **Real** ``x``
        gives the real part of it (the images here are real magnitude images; keeping the
        real part is the projection onto real images, so DART can alternate Eq. 4 with a
        real-valued prior). Float32 stays float32/complex64; float64 gives float64/complex128.
        Differentiable in ``x`` and ``y``.

        >>> op = MRIOperator(make_mask("uniform1d", (8, 8), 2, 0.25, generator=torch.Generator().manual_seed(0)))
        >>> x, y = torch.rand(8, 8, dtype=torch.float64), op.forward(torch.rand(8, 8, dtype=torch.float64))
        >>> k = fft2c(x); k = torch.where(op.mask, y, k)    # the k-space form of Eq. 4 at λ = 1
        >>> bool(torch.allclose(op.data_consistency(x, y), ifft2c(k).real))
        True
        """
        self._check_step_args(x, y, step_size)
        return self._gradient_step(x, y, step_size, self._measured_image(y, _complex_dtype(x)))

    def bind_physics_step(self, y: Tensor, step_size: float = 1.0) -> Callable[[Tensor], Tensor]:
        """``step(x) = physics_step(x, y, step_size)`` with ``A^H y`` computed once, for the many
        steps that share one measurement (DART calls it through
        :func:`paperlib.recon.dart.physics_callback`). ``y`` is read now: changing it later does
        not change the bound step.

        >>> op = MRIOperator(make_mask("uniform1d", (8, 8), 2, 0.25, generator=torch.Generator().manual_seed(0)))
        >>> x, y = torch.rand(2, 8, 8), op.forward(torch.rand(2, 8, 8))
        >>> bool(torch.equal(op.bind_physics_step(y)(x), op.data_consistency(x, y)))
        True
        """
        self.check(y, "y")
        _check_step_size(step_size)
        y = y.detach().clone()
        images: dict = {}

        def step(x: Tensor) -> Tensor:
            self._check_step_args(x, y, step_size)
            dtype = _complex_dtype(x)
            if (dtype, x.device) not in images:
                images[dtype, x.device] = self._measured_image(y.to(x.device), dtype)
            return self._gradient_step(x, y, step_size, images[dtype, x.device])

        return step

    def _check_step_args(self, x: Tensor, y: Tensor, step_size: float) -> None:
        """Shapes and dtypes of Eq. 4's arguments (finiteness is checked on the result)."""
        self.check_shape(x, "x")
        self.check_shape(y, "y")
        for t, name in ((x, "x"), (y, "y")):
            if t.dtype not in _FFT_DTYPES:
                self.check(t, name)  # names the argument and the dtype
        if x.shape != y.shape:
            raise InputValidationError(f"x and y: expected one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        _check_step_size(step_size)

    def _measured_image(self, y: Tensor, dtype: torch.dtype) -> Tensor:
        """``A^H y`` in the complex ``dtype``."""
        return ifft2c(y.to(dtype) * self.weight(dtype, y.device))

    def _gradient_step(self, x: Tensor, y: Tensor, step_size: float, aty: Tensor) -> Tensor:
        """``x - λ (A^H A x - A^H y)`` (real part for real ``x``); one finiteness pass over the
        result, the input at fault named after it."""
        real = not x.is_complex()
        out = x - step_size * (self.normal(x, real=real) - (aty.real if real else aty))
        if not bool(torch.isfinite(out).all()):
            self.check(x, "x")
            self.check(y, "y")
            _cast_finite(y, aty.dtype, "y")
            finite_result(out, f"MRIOperator.data_consistency(x, y, step_size={step_size!r})")
        return out

    def physics_step(self, x: Tensor, y: Tensor, step_size: float = 1.0) -> Tensor:
        """The DART/DRIFT physics step: :meth:`data_consistency` (paper Eq. 4)."""
        return self.data_consistency(x, y, step_size)


# --------------------------------------------------------------------------------------------
# multicoil 3D Cartesian MRI (issue 18: the variational 2D-prior reconstruction)
# --------------------------------------------------------------------------------------------
_DIMS3 = (-3, -2, -1)


def fft3c(x: Tensor) -> Tensor:
    """Centred orthonormal 3D DFT over the last three dimensions (batched over the others).

    ``fftshift(fftn(ifftshift(x), norm="ortho"))`` over dims ``(-3, -2, -1)``: unitary, zero
    frequency at ``(D // 2, H // 2, W // 2)``; complex64 for float32/complex64 input, complex128
    for double precision.

    >>> x = torch.rand(2, 4, 6, 5, dtype=torch.float64)
    >>> bool(torch.allclose(ifft3c(fft3c(x)).real, x)), bool(torch.isclose(fft3c(x).norm(), x.norm()))
    (True, True)
    """
    return torch.fft.fftshift(torch.fft.fftn(torch.fft.ifftshift(x, dim=_DIMS3), dim=_DIMS3, norm="ortho"),
                              dim=_DIMS3)


def ifft3c(k: Tensor) -> Tensor:
    """Inverse of :func:`fft3c` (centred orthonormal inverse 3D DFT over the last three dims)."""
    return torch.fft.fftshift(torch.fft.ifftn(torch.fft.ifftshift(k, dim=_DIMS3), dim=_DIMS3, norm="ortho"),
                              dim=_DIMS3)


def _check_volume_shape(shape: Sequence[int], name: str = "shape", minimum: int = 1) -> tuple[int, int, int]:
    try:
        dims = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputValidationError(f"{name}: expected (D, H, W), three integers, got {shape!r}") from None
    if len(dims) != 3 or min(dims) < minimum:
        raise InputValidationError(f"{name}: expected (D, H, W), three integers >= {minimum}, got {shape!r}")
    return dims  # type: ignore[return-value]


def coil_sensitivities(
    shape: Sequence[int],
    num_coils: int = 8,
    *,
    coil_width: float = 0.7,
    radius: float = 1.25,
    phase_slope: float = 1.0,
    support: Tensor | None = None,
    dtype: torch.dtype = torch.complex64,
) -> Tensor:
    """Smooth simulated receive-coil sensitivity maps ``S_c`` of a (D, H, W) field of view.

    Geometry, in coordinates normalised to the field of view (every axis spans ``(-1, 1)``, so
    the maps do not depend on the voxel size): coil ``c`` sits at azimuth
    ``θ_c = 2π c / C`` on a circle of ``radius`` around the ``D`` axis, alternately at
    ``z = ±0.5`` when ``C > 1`` and ``D > 1`` (two staggered rings, so the coils also encode
    along ``D``). Its magnitude is the on-axis field of a loop coil (Biot-Savart),
    ``(1 + d_c^2 / w^2)^(-3/2)`` with ``d_c`` the distance of the voxel from the coil and
    ``w = coil_width``; its phase ``θ_c + phase_slope * <r, u_c>`` (``u_c`` the unit vector
    towards the coil) varies smoothly, as receive phases do. The maps are then normalised so that
    ``sum_c |S_c|^2 = 1`` at every voxel (inside ``support`` when it is given, exactly zero
    outside it): the coil-combination ``x -> (S_c x)_c`` is then an isometry on the support, and
    the multicoil operator keeps ``||A|| <= 1``.

    Parameters
    ----------
    shape : (D, H, W) of the volume, each >= 1.
    num_coils : C >= 1 (C = 1 gives a constant-magnitude map of modulus 1 with a smooth phase).
    coil_width : w > 0, in half fields of view.
    radius : distance of the coils from the centre, in half fields of view (> 1: outside the FOV).
    phase_slope : radians of phase per half field of view along ``u_c``.
    support : optional (D, H, W) bool mask of the object; the maps are zero outside it.
    dtype : complex64 (default) or complex128.

    Returns
    -------
    (C, D, H, W) complex tensor.

    >>> s = coil_sensitivities((4, 16, 16), 4)
    >>> s.shape, s.dtype, bool(torch.allclose((s.abs() ** 2).sum(0), torch.ones(4, 16, 16)))
    (torch.Size([4, 4, 16, 16]), torch.complex64, True)
    """
    dims = _check_volume_shape(shape)
    if not isinstance(num_coils, int) or num_coils < 1:
        raise InputValidationError(f"num_coils: expected an integer >= 1, got {num_coils!r}")
    for name, value in (("coil_width", coil_width), ("radius", radius)):
        if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InputValidationError(f"{name}: expected a finite number > 0, got {value!r}")
    if not isinstance(phase_slope, (int, float)) or not math.isfinite(phase_slope):
        raise InputValidationError(f"phase_slope: expected a finite number, got {phase_slope!r}")
    if dtype not in (torch.complex64, torch.complex128):
        raise InputValidationError(f"dtype: expected torch.complex64 or torch.complex128, got {dtype}")
    if support is not None:
        if not isinstance(support, Tensor) or tuple(support.shape) != dims:
            got = tuple(support.shape) if isinstance(support, Tensor) else type(support).__name__
            raise InputValidationError(f"support: expected a (D, H, W) = {dims} bool tensor, got {got}")
        support = support.to(torch.bool)
    axes = [((torch.arange(n, dtype=torch.float64) - (n - 1) / 2) / (n / 2)) for n in dims]
    z, yy, xx = torch.meshgrid(*axes, indexing="ij")  # (D, H, W) each
    theta = 2 * math.pi * torch.arange(num_coils, dtype=torch.float64) / num_coils
    cz = 0.5 * torch.cos(math.pi * torch.arange(num_coils, dtype=torch.float64)) if num_coils > 1 and dims[0] > 1 \
        else torch.zeros(num_coils, dtype=torch.float64)
    cy, cx = radius * torch.sin(theta), radius * torch.cos(theta)
    view = (num_coils, 1, 1, 1)
    d2 = ((z - cz.view(view)) ** 2 + (yy - cy.view(view)) ** 2 + (xx - cx.view(view)) ** 2)
    magnitude = (1.0 + d2 / coil_width**2) ** -1.5
    phase = theta.view(view) + phase_slope * (yy * torch.sin(theta).view(view) + xx * torch.cos(theta).view(view))
    maps = torch.polar(magnitude, phase)
    maps = maps / (magnitude**2).sum(0).sqrt()
    if support is not None:
        maps = maps * support
    return maps.to(dtype)


def multicoil_mask(
    shape: Sequence[int],
    acceleration: float,
    center_fraction: float,
    *,
    generator: torch.Generator,
    sigma: float = 0.2,
) -> Tensor:
    """3D Cartesian sampling mask: 2D variable density over the phase-encoding directions.

    The two phase-encoding directions are ``(D, H)``; the readout runs along ``W`` and is fully
    sampled (a sampled ``(k_D, k_H)`` line is measured at every ``k_W``). The ``(D, H)`` pattern is
    :func:`gaussian2d_mask`: a fully sampled central calibration ellipse covering a fraction
    ``center_fraction`` of the phase-encoding plane plus Gaussian-weighted random lines drawn
    from ``generator``, ``round(D H / acceleration)`` lines in all.

    Parameters
    ----------
    shape : (D, H, W) of k-space; D, H >= 4, W >= 1.
    acceleration : float > 1 (the undersampling factor of the phase-encoding plane and of k-space).
    center_fraction : in ``(0, 1/acceleration]``.
    generator : torch.Generator, the only source of randomness.
    sigma : width of the sampling density as a fraction of each side (see :func:`gaussian2d_mask`).

    Returns
    -------
    (D, H, W) bool tensor, constant along ``W``.

    >>> m = multicoil_mask((8, 16, 6), 4, 0.1, generator=torch.Generator().manual_seed(0))
    >>> m.shape, int(m[..., 0].sum()), bool((m == m[..., :1]).all()), bool(m[4, 8, 0])
    (torch.Size([8, 16, 6]), 32, True, True)
    """
    depth, height, width = _check_volume_shape(shape)
    phase_encoding = gaussian2d_mask((depth, height), acceleration, center_fraction, generator=generator, sigma=sigma)
    return phase_encoding[:, :, None].expand(depth, height, width).clone()


class MulticoilMRIOperator:
    """Multicoil 3D Cartesian MRI: ``A x = M ⊙ F_3D (S_c x)`` for every coil ``c``.

    ``x`` is a complex (or real) volume ``(D, H, W)``; ``S`` the coil sensitivities
    ``(C, D, H, W)`` (:func:`coil_sensitivities`); ``F_3D`` the centred orthonormal 3D DFT
    (:func:`fft3c`); ``M`` a (D, H, W) bool mask (:func:`multicoil_mask`, shared by the coils).
    The measurement is ``y`` ``(C, D, H, W)`` complex, exact zeros outside the mask. The adjoint
    is ``A^H y = sum_c conj(S_c) F_3D^H (M ⊙ y_c)``. With ``sum_c |S_c|^2 <= 1``, ``||A|| <= 1``.
    All coils go through one batched FFT call; there is no Python loop over coils or slices.
    Every method also broadcasts over leading dimensions of ``x`` (``(..., D, H, W)`` volumes give
    ``(..., C, D, H, W)`` k-space).

    Declared capabilities (the :class:`~paperlib.physics.base.Operator` protocol):

    * ``slice_local = False``: the 3D FFT couples the slices, the physics step needs the whole
      volume.
    * ``is_linear = True``, ``adjoint`` = :meth:`conjugate_transpose`; ``projects = False``:
      ``physics_step(x, y, step_size=1.0)`` is not the projection onto ``{x : A x = y}``, which
      holds for a masked unitary transform but not here (``A A^H`` is not a projection once coils
      are combined), so the projection-based sampler refuses this operator.
    * ``supports_support = False``; ``periodic_scan_step()`` None.

    :meth:`physics_step` is a gradient step on ``1/2 ||A x - y||^2`` (step 1 is safe as
    ``||A|| <= 1``); :meth:`measurement_image` the coil-combined zero-filled magnitude
    ``|A^H y|`` (``(..., D, H, W)``, the volume's shape, not the k-space's).

    Parameters
    ----------
    sensitivities : (C, D, H, W) complex tensor.
    mask : (D, H, W) bool or {0, 1} tensor.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> op = MulticoilMRIOperator(coil_sensitivities((4, 8, 8), 3), multicoil_mask((4, 8, 8), 2, 0.2, generator=g))
    >>> x = torch.randn(4, 8, 8, dtype=torch.complex64, generator=g)
    >>> y = op.forward(x)
    >>> tuple(y.shape), y.dtype, op.volume_shape(y), op.measurement_image(y).shape
    ((3, 4, 8, 8), torch.complex64, (4, 8, 8), torch.Size([4, 8, 8]))
    """

    slice_local: bool = False
    is_linear: bool = True
    projects: bool = False
    supports_support: bool = False

    def __init__(self, sensitivities: Tensor, mask: Tensor) -> None:
        if not isinstance(sensitivities, Tensor) or sensitivities.ndim != 4 or min(sensitivities.shape) < 1:
            got = tuple(sensitivities.shape) if isinstance(sensitivities, Tensor) else type(sensitivities).__name__
            raise InputValidationError(f"sensitivities: expected a (C, D, H, W) tensor, got {got}")
        if not (sensitivities.is_complex() or sensitivities.is_floating_point()):
            raise InputValidationError(f"sensitivities: expected a complex tensor, got dtype {sensitivities.dtype}")
        if not bool(torch.isfinite(sensitivities).all()):
            raise InputValidationError("sensitivities: expected finite values, got NaN/Inf")
        if not isinstance(mask, Tensor) or tuple(mask.shape) != tuple(sensitivities.shape[1:]):
            got = tuple(mask.shape) if isinstance(mask, Tensor) else type(mask).__name__
            raise InputValidationError(
                f"mask: expected a (D, H, W) = {tuple(sensitivities.shape[1:])} tensor (the sensitivities' volume), "
                f"got {got}")
        if mask.is_complex() or (mask.dtype != torch.bool and bool(((mask != 0) & (mask != 1)).any())):
            raise InputValidationError(f"mask: expected bool or {{0, 1}} values, got dtype {mask.dtype}")
        self.mask: Tensor = (mask != 0).detach().clone()
        precision = torch.complex128 if sensitivities.dtype in (torch.complex128, torch.float64) else torch.complex64
        self.sensitivities: Tensor = sensitivities.detach().to(precision).clone()
        self._cache: dict = {}

    def __repr__(self) -> str:
        c, d, h, w = self.sensitivities.shape
        return (f"MulticoilMRIOperator(coils={c}, volume={(d, h, w)}, "
                f"sampled={float(self.mask.float().mean()):.3f})")

    @property
    def num_coils(self) -> int:
        return int(self.sensitivities.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(D, H, W)`` of the volumes."""
        return tuple(int(s) for s in self.mask.shape)  # type: ignore[return-value]

    @property
    def sampled_fraction(self) -> float:
        return float(self.mask.float().mean())

    def _tensors(self, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
        """(sensitivities, real mask) in the precision of ``dtype`` (complex64/complex128) on ``device``."""
        key = (dtype, device)
        if key not in self._cache:
            real = torch.float64 if dtype == torch.complex128 else torch.float32
            self._cache[key] = (self.sensitivities.to(device=device, dtype=dtype),
                                self.mask.to(device=device, dtype=real))
        return self._cache[key]

    def check(self, t: Tensor, name: str = "x") -> None:
        """Raise :class:`~paperlib.io.InputValidationError` naming ``name`` unless ``t`` is a finite
        floating-point or complex tensor whose trailing dimensions are ``(D, H, W)`` (``name="x"``)
        or ``(C, D, H, W)`` (k-space)."""
        if not isinstance(t, Tensor):
            raise InputValidationError(f"{name}: expected a torch tensor, got {type(t).__name__}")
        expected = self.shape if name == "x" else tuple(self.sensitivities.shape)
        if t.ndim < len(expected) or tuple(t.shape[-len(expected):]) != expected:
            what = "volume (..., D, H, W)" if name == "x" else "k-space (..., C, D, H, W)"
            raise InputValidationError(
                f"{name}: expected a {what} with trailing dimensions {expected}, got shape {tuple(t.shape)}")
        if not (t.is_floating_point() or t.is_complex()):
            raise InputValidationError(f"{name}: expected a floating-point or complex tensor, got {t.dtype}")
        if t.dtype not in _FFT_DTYPES:
            raise InputValidationError(f"{name}: expected float32, float64, complex64 or complex128 (what the FFT "
                                       f"takes), got {t.dtype}; convert with .float()")
        if t.numel() == 0:
            raise InputValidationError(f"{name}: empty tensor of shape {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise InputValidationError(
                f"{name}: {int((~torch.isfinite(t)).sum())} non-finite values (NaN/Inf) of {t.numel()}")

    def volume_shape(self, y: Tensor) -> tuple[int, int, int]:
        """``(D, H, W)`` of the volumes explaining the k-space ``y`` ``(..., C, D, H, W)``."""
        self.check(y, "y")
        return self.shape

    def periodic_scan_step(self) -> None:
        """None: MRI has no scan."""
        return None

    def forward(self, x: Tensor) -> Tensor:
        """``y_c = M ⊙ F_3D(S_c x)``: (..., D, H, W) volume -> (..., C, D, H, W) complex k-space
        (complex64; complex128 for double precision input). Differentiable."""
        self.check(x, "x")
        dtype = _complex_dtype(x)
        sens, mask = self._tensors(dtype, x.device)
        return finite_result(fft3c(x.unsqueeze(-4) * sens) * mask, "MulticoilMRIOperator.forward(x)")

    def conjugate_transpose(self, y: Tensor) -> Tensor:
        """The adjoint ``A^H y = sum_c conj(S_c) F_3D^H (M ⊙ y_c)``: (..., C, D, H, W) -> (..., D, H, W)
        complex. Differentiable."""
        self.check(y, "y")
        dtype = _complex_dtype(y)
        sens, mask = self._tensors(dtype, y.device)
        return finite_result((ifft3c(y.to(dtype) * mask) * sens.conj()).sum(-4), "MulticoilMRIOperator.adjoint(y)")

    def normal(self, x: Tensor) -> Tensor:
        """``A^H A x`` (complex, the shape of ``x``)."""
        return self.conjugate_transpose(self.forward(x))

    def zero_filled(self, y: Tensor) -> Tensor:
        """Coil-combined zero-filled image ``A^H y`` (complex)."""
        return self.conjugate_transpose(y)

    def adjoint(self, y: Tensor) -> Tensor:
        """The adjoint of :meth:`forward` (the protocol's name): :meth:`conjugate_transpose`."""
        return self.conjugate_transpose(y)

    def measurement_image(self, y: Tensor) -> Tensor:
        """``|A^H y|``, real (float32 for complex64 ``y``), shaped ``(..., D, H, W)``."""
        return self.conjugate_transpose(y).abs()

    def data_term(self, x: Tensor, y: Tensor) -> Tensor:
        """``1/2 ||A x - y||^2`` (a real 0-d tensor summed over everything; differentiable)."""
        return 0.5 * (self.forward(x) - y).abs().pow(2).sum()

    def physics_step(self, x: Tensor, y: Tensor, step_size: float = 1.0) -> Tensor:
        """A gradient step ``x - step_size A^H (A x - y)`` on ``1/2 ||A x - y||^2`` (paper 002's data
        term; the multicoil counterpart of Eq. 4, which it is not a projection like). Real ``x``
        gives the real part (the projection onto real volumes). ``0 < step_size <= 1`` never
        increases the data term (``||A|| <= 1``)."""
        if not isinstance(step_size, (int, float)) or not math.isfinite(step_size):
            raise InputValidationError(f"step_size: expected a finite number, got {step_size!r}")
        self.check(x, "x")
        self.check(y, "y")
        y = _cast_finite(y, _complex_dtype(x), "y")
        out = finite_result(x - step_size * self.conjugate_transpose(self.forward(x) - y),
                            f"MulticoilMRIOperator.physics_step(x, y, step_size={step_size!r})")
        return out if x.is_complex() else out.real
