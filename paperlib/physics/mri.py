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
from typing import Literal, Sequence

import numpy as np
import torch
from torch import Tensor

from ..io import InputValidationError

__all__ = [
    "fft2c",
    "ifft2c",
    "uniform1d_mask",
    "gaussian2d_mask",
    "make_mask",
    "hermitian_half",
    "MRIOperator",
    "MASK_KINDS",
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
def _complex_dtype(t: Tensor) -> torch.dtype:
    return torch.complex128 if t.dtype in (torch.float64, torch.complex128) else torch.complex64


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
    :meth:`adjoint` (and ``physics_step(x, y, step_size=1.0)`` the projection onto ``M F x = y``),
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

    def check(self, t: Tensor, name: str = "x") -> None:
        """:meth:`check_shape`, and raise :class:`~paperlib.io.InputValidationError` naming
        ``name`` unless ``t`` is floating-point or complex and finite (no NaN/Inf)."""
        self.check_shape(t, name)
        if not (t.is_floating_point() or t.is_complex()):
            raise InputValidationError(f"{name}: expected a real floating-point or complex tensor, got {t.dtype}")
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
        return k * self.weight(k.dtype, k.device)

    def adjoint(self, y: Tensor) -> Tensor:
        """``F^H (M ⊙ y)``: complex image of the shape of ``y`` (the adjoint of :meth:`forward`)."""
        self.check(y, "y")
        y = y.to(_complex_dtype(y))
        return ifft2c(y * self.weight(y.dtype, y.device))

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
        """
        self.check(x, "x")
        self.check(y, "y")
        if x.shape != y.shape:
            raise InputValidationError(f"x and y: expected one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        if not isinstance(step_size, (int, float)) or not math.isfinite(step_size):
            raise ValueError(f"step_size: expected a finite number, got {step_size!r}")
        kx = fft2c(x)
        y = y.to(kx.dtype)
        w = self.weight(kx.dtype, kx.device)
        k = kx - step_size * w * (kx - y)
        out = ifft2c(k)
        return out if x.is_complex() else out.real

    def physics_step(self, x: Tensor, y: Tensor, step_size: float = 1.0) -> Tensor:
        """The DART/DRIFT physics step: :meth:`data_consistency` (paper Eq. 4)."""
        return self.data_consistency(x, y, step_size)
