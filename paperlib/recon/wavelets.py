"""Orthonormal 2D discrete wavelet transform (periodised Mallat pyramid), batched over slices.

:func:`dwt2` maps a ``(..., H, W)`` tensor to a pyramid ``(approximation, details)``:
``details[j]`` holds the three detail bands of level ``j + 1`` as ``(..., 3, H / 2^(j+1),
W / 2^(j+1))`` (bands: high-pass along W, along H, along both) and ``approximation`` is
``(..., H / 2^L, W / 2^L)``. With periodic boundaries the transform is **orthonormal** for any
``H``, ``W`` divisible by ``2^levels``: :func:`idwt2` is both its inverse and its adjoint, and
the sum of squares is preserved. That makes the proximal step of CS-MRI
(:mod:`paperlib.recon.mri_baselines`) an exact soft threshold.

Filters: orthonormal Daubechies wavelets ``"db1"`` (Haar) to ``"db4"`` (8 taps, sigpy's default).
The low-pass analysis filter ``h`` is tabulated; the high-pass is its quadrature mirror
``g[k] = (-1)^k h[L-1-k]``.

Implementation: one level is a single ``conv2d`` on the 2x2 polyphase components
(:func:`torch.nn.functional.pixel_unshuffle`), 4 input channels -> 4 output bands with
``(L/2) x (L/2)`` kernels on the circularly padded image; the inverse is the mirrored
``conv2d`` followed by ``pixel_shuffle``. Complex inputs are transformed as two real images.
There is no loop over slices.

>>> x = torch.randn(3, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> approx, details = dwt2(x, levels=2, wavelet="db4")
>>> tuple(approx.shape), [tuple(d.shape) for d in details]
((3, 4, 4), [(3, 3, 8, 8), (3, 3, 4, 4)])
>>> energy = approx.square().sum() + sum(d.square().sum() for d in details)
>>> bool(torch.allclose(energy, x.square().sum())), bool(torch.allclose(idwt2(approx, details, "db4"), x))
(True, True)
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from ..io import InputValidationError

__all__ = ["WAVELETS", "dwt2", "idwt2", "max_levels", "check_wavelet"]

# Low-pass analysis filters of the orthonormal Daubechies family (sum sqrt(2), unit norm,
# orthogonal to their even shifts: checked in tests/test_mri_baselines.py).
WAVELETS: dict[str, tuple[float, ...]] = {
    "db1": (1 / math.sqrt(2), 1 / math.sqrt(2)),
    "db2": (0.48296291314469025, 0.836516303737469, 0.22414386804185735, -0.12940952255092145),
    "db3": (0.3326705529509569, 0.8068915093133388, 0.4598775021193313, -0.13501102001039084,
            -0.08544127388224149, 0.035226291882100656),
    "db4": (0.23037781330885523, 0.7148465705525415, 0.6308807679295904, -0.02798376941698385,
            -0.18703481171888114, 0.030841381835986965, 0.032883011666982945, -0.010597401784997278),
}
WAVELETS["haar"] = WAVELETS["db1"]

_CACHE: dict[tuple[str, torch.dtype, torch.device], tuple[Tensor, Tensor]] = {}


def _kernels(wavelet: str, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    """Analysis and synthesis conv2d weights, each (4, 4, L/2, L/2).

    Analysis: band ``(a, b)`` (``a`` the filter along H, ``b`` along W; 0 = low, 1 = high)
    from polyphase component ``(p, q)``: ``f_a[2i + p] f_b[2j + q]``. Synthesis: the transpose
    with kernels flipped, so that a left/top circular pad gives the adjoint.
    """
    key = (wavelet, dtype, device)
    if key not in _CACHE:
        if wavelet not in WAVELETS:
            raise ValueError(f"wavelet: expected one of {sorted(WAVELETS)}, got {wavelet!r}")
        h = torch.tensor(WAVELETS[wavelet], dtype=torch.float64)
        taps = h.numel()
        g = torch.tensor([(-1.0) ** k for k in range(taps)], dtype=torch.float64) * h.flip(0)
        poly = torch.stack([h, g]).reshape(2, taps // 2, 2)  # [a, i, p] = f_a[2i + p]
        analysis = torch.einsum("aip,bjq->abpqij", poly, poly).reshape(4, 4, taps // 2, taps // 2)
        synthesis = analysis.transpose(0, 1).flip(-1, -2).contiguous()
        _CACHE[key] = (analysis.to(dtype=dtype, device=device), synthesis.to(dtype=dtype, device=device))
    return _CACHE[key]


def check_wavelet(wavelet: str, levels: int) -> None:
    """Raise :class:`~paperlib.io.InputValidationError` (a ``ValueError``) naming ``wavelet`` unless it is
    a key of :data:`WAVELETS`, or ``levels`` unless it is an integer >= 1."""
    if wavelet not in WAVELETS:
        raise InputValidationError(f"wavelet: expected one of {sorted(WAVELETS)}, got {wavelet!r}")
    if not isinstance(levels, int) or levels < 1:
        raise InputValidationError(f"levels: expected an integer >= 1, got {levels!r}")


def max_levels(shape: tuple[int, int]) -> int:
    """Largest number of levels for which both sides stay even down to at least 2 pixels."""
    levels = 0
    h, w = shape
    while h % 2 == 0 and w % 2 == 0 and min(h, w) >= 4:
        h, w, levels = h // 2, w // 2, levels + 1
    return levels


def _to_channels(x: Tensor) -> tuple[Tensor, tuple[int, ...], bool]:
    """(..., H, W) real/complex -> (N, 1, H, W) real (complex as interleaved re/im images)."""
    lead = tuple(x.shape[:-2])
    if x.is_complex():
        xr = torch.view_as_real(x).movedim(-1, -3)  # (..., 2, H, W)
        return xr.reshape(-1, 1, *x.shape[-2:]), lead, True
    return x.reshape(-1, 1, *x.shape[-2:]), lead, False


def _from_channels(x: Tensor, lead: tuple[int, ...], was_complex: bool) -> Tensor:
    """Inverse of :func:`_to_channels` for (N, C, h, w) -> (..., C, h, w) (C dropped when 1)."""
    chans, h, w = x.shape[1:]
    if was_complex:
        x = x.reshape(*lead, 2, chans, h, w).movedim(-4, -1)
        x = torch.view_as_complex(x.contiguous())
    else:
        x = x.reshape(*lead, chans, h, w)
    return x.squeeze(-3) if chans == 1 else x


def _circular_pad(x: Tensor, pad: int, before: bool) -> Tensor:
    """Periodic extension of the last two axes by ``pad`` pixels (before or after), wrapping
    as often as needed (``F.pad`` wraps at most once)."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    if pad <= min(h, w):
        return F.pad(x, (pad, 0, pad, 0) if before else (0, pad, 0, pad), mode="circular")
    offset = -pad if before else 0
    rows = (torch.arange(h + pad, device=x.device) + offset) % h
    cols = (torch.arange(w + pad, device=x.device) + offset) % w
    return x[..., rows[:, None], cols[None, :]]


def _haar_analysis(x: Tensor) -> tuple[Tensor, Tensor]:
    """One Haar level by strided slicing: the same bands, signs and order as the convolution
    path, for a few elementwise passes. Complex tensors are processed as real views (faster)."""
    if x.is_complex():
        low, bands = _haar_analysis_real(torch.view_as_real(x), (slice(None),))
        return torch.view_as_complex(low), torch.view_as_complex(bands)
    return _haar_analysis_real(x, ())


def _haar_analysis_real(x: Tensor, tail: tuple) -> tuple[Tensor, Tensor]:
    even, odd = slice(0, None, 2), slice(1, None, 2)
    a, b = x[(..., even, even, *tail)], x[(..., even, odd, *tail)]
    c, d = x[(..., odd, even, *tail)], x[(..., odd, odd, *tail)]
    s_ab, d_ab, s_cd, d_cd = a + b, a - b, c + d, c - d
    low = (s_ab + s_cd).mul_(0.5)
    dim = -4 if tail else -3
    bands = torch.stack([d_ab + d_cd, s_ab.sub_(s_cd), d_ab.sub_(d_cd)], dim=dim).mul_(0.5)
    return low, bands


def _haar_synthesis(low: Tensor, bands: Tensor) -> Tensor:
    if low.is_complex():
        return torch.view_as_complex(
            _haar_synthesis_real(torch.view_as_real(low), torch.view_as_real(bands), (slice(None),)))
    return _haar_synthesis_real(low, bands, ())


def _haar_synthesis_real(low: Tensor, bands: Tensor, tail: tuple) -> Tensor:
    # inverse of _haar_analysis: a = (s1 + s2) / 2, b = (d1 + d2) / 2, c = (s1 - s2) / 2, d = (d1 - d2) / 2
    lh, hl, hh = bands.unbind(-4 if tail else -3)
    s1, d1 = low + lh, low - lh
    s2, d2 = hl + hh, hl - hh
    h, w = (low.shape[-3], low.shape[-2]) if tail else low.shape[-2:]
    shape = (*low.shape[:-3], 2 * h, 2 * w, low.shape[-1]) if tail else (*low.shape[:-2], 2 * h, 2 * w)
    out = low.new_empty(shape)
    even, odd = slice(0, None, 2), slice(1, None, 2)
    torch.add(s1, s2, out=out[(..., even, even, *tail)])
    torch.add(d1, d2, out=out[(..., even, odd, *tail)])
    torch.sub(s1, s2, out=out[(..., odd, even, *tail)])
    torch.sub(d1, d2, out=out[(..., odd, odd, *tail)])
    return out.mul_(0.5)


def dwt2(x: Tensor, levels: int, wavelet: str = "db4") -> tuple[Tensor, list[Tensor]]:
    """Orthonormal 2D DWT of the last two axes.

    Parameters
    ----------
    x : (..., H, W) real or complex tensor; H and W divisible by ``2^levels``.
    levels : int >= 1.
    wavelet : a key of :data:`WAVELETS`.

    Returns
    -------
    approximation : (..., H / 2^L, W / 2^L), dtype of ``x``.
    details : list of ``levels`` tensors, finest first, ``(..., 3, H / 2^j, W / 2^j)``.
    """
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels: expected an integer >= 1, got {levels!r}")
    if not isinstance(x, Tensor) or x.ndim < 2:
        raise ValueError(f"x: expected a tensor (..., H, W), got {getattr(x, 'shape', type(x).__name__)}")
    height, width = x.shape[-2:]
    if height % 2**levels or width % 2**levels:
        raise ValueError(
            f"x: H and W must be divisible by 2^levels = {2**levels} for an orthonormal periodised "
            f"transform, got (H, W) = {(height, width)}; max_levels gives {max_levels((height, width))}"
        )
    if wavelet in ("haar", "db1"):
        details = []
        for _ in range(levels):
            x, bands = _haar_analysis(x)
            details.append(bands)
        return x, details
    cur, lead, was_complex = _to_channels(x)
    analysis, _ = _kernels(wavelet, cur.dtype, cur.device)
    pad = analysis.shape[-1] - 1
    details = []
    for _ in range(levels):
        poly = _circular_pad(F.pixel_unshuffle(cur, 2), pad, before=False)
        bands = F.conv2d(poly, analysis)  # (N, 4, h, w): LL, (lo H, hi W), (hi H, lo W), HH
        details.append(_from_channels(bands[:, 1:], lead, was_complex))
        cur = bands[:, :1]
    return _from_channels(cur, lead, was_complex), details


def _check_band(band: Tensor, low: Tensor) -> None:
    if band.ndim < 3 or band.shape[-3] != 3 or band.shape[-2:] != low.shape[-2:]:
        raise ValueError(
            f"details: expected bands (..., 3, {low.shape[-2]}, {low.shape[-1]}) at this level, "
            f"got {tuple(band.shape)}"
        )


def idwt2(approximation: Tensor, details: list[Tensor], wavelet: str = "db4") -> Tensor:
    """Inverse (and adjoint) of :func:`dwt2`: ``(approximation, details) -> (..., H, W)``."""
    if not details:
        raise ValueError("details: expected at least one level")
    if wavelet in ("haar", "db1"):
        for band in reversed(details):
            _check_band(band, approximation)
            approximation = _haar_synthesis(approximation, band)
        return approximation
    cur, lead, was_complex = _to_channels(approximation)
    _, synthesis = _kernels(wavelet, cur.dtype, cur.device)
    pad = synthesis.shape[-1] - 1
    for band in reversed(details):
        _check_band(band, cur)
        b = torch.view_as_real(band).movedim(-1, -4) if was_complex else band
        stacked = torch.cat([cur, b.reshape(-1, 3, *cur.shape[-2:])], dim=1)
        stacked = _circular_pad(stacked, pad, before=True)
        cur = F.pixel_shuffle(F.conv2d(stacked, synthesis), 2)
    return _from_channels(cur, lead, was_complex)
