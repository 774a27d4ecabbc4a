"""Classical MRI baselines of Table 1, batched over the slices of a volume.

All three reconstruct a ``(D, H, W)`` magnitude image from k-space ``y = M ⊙ F x`` measured by
an :class:`~paperlib.physics.mri.MRIOperator` (paper Eq. 3):

* :func:`zero_filled` — ``|F^H (M ⊙ y)|``, the minimum-norm least-squares image.
* :func:`cs_wavelet` — CS-MRI (Lustig, Donoho & Pauly 2007) as L1-wavelet regularised least
  squares, ``min_x 1/2 ||M F x - y||^2 + λ ||W x||_1`` with ``W`` the orthonormal periodised
  Daubechies transform (:mod:`paperlib.recon.wavelets`; all coefficients, the coarse
  approximation included, are penalised), solved by FISTA (Beck & Teboulle 2009,
  :func:`paperlib.recon.solvers.fista`) with step 1 (``||M F|| <= 1``).
* :func:`total_variation` — ``min_x 1/2 ||M F x - y||^2 + λ TV(x)`` with isotropic TV
  (forward differences, Neumann boundary), solved by the primal-dual algorithm of Chambolle &
  Pock (2011, :func:`paperlib.recon.solvers.primal_dual`). The data term's proximal map is exact in k-space:
  ``prox_{τ f}(v) = F^H[(F v + τ M y) / (1 + τ M)]``.

By default ``x`` is a **real** image (``real=True``): the images here are real magnitude
images and the DART/DRIFT physics step keeps real images too; the normal operator restricted
to real images is exact with real FFTs and a symmetrised mask (:func:`paperlib.physics.mri.hermitian_half`), half
the work of the complex problem. ``real=False`` solves over complex images, as sigpy's apps
do. The result is the magnitude, float32.

**Weights are relative**: the absolute ``λ`` is ``weight * max |zero-filled image|`` of the
whole volume, so one weight fits volumes of any intensity scale. Weights are chosen on the
validation split with :func:`tune_weight` (``python -m paperlib tune-baselines``) and recorded
in ``notebooks/params/<profile>.yaml``. Iterations are fixed counts (no data-dependent early
stop), so every slice of a batch runs the same number of steps and results are reproducible.

>>> import torch
>>> from paperlib.physics.mri import MRIOperator, make_mask
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.zeros(2, 32, 32); x[:, 8:24, 10:22] = 1.0
>>> op = MRIOperator(make_mask("uniform1d", (32, 32), 4, 0.08, generator=g))
>>> y = op.forward(x)
>>> err = lambda r: float((r - x).norm() / x.norm())
>>> err(total_variation(op, y, weight=0.01, iters=200)) < 0.5 * err(zero_filled(op, y))
True
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..io import InputValidationError
from ..metrics.image import volume_scores
from ..physics.base import Operator, finite_result
from ..physics.mri import MRIOperator, hermitian_half
from .solvers import fista, primal_dual, project_tv_dual_ball, soft_threshold
from .tuning import grid_search
from .wavelets import check_wavelet, dwt2, idwt2

__all__ = ["zero_filled", "cs_wavelet", "total_variation", "tune_weight", "absolute_weight"]


_UNSET = object()  # a setting the caller does not take (zero_filled has no weight, no iterations)


def _check_inputs(op: MRIOperator, y: Tensor, weight: object = _UNSET, iters: object = _UNSET) -> None:
    """Validate a baseline's operator, k-space ``y`` (complex, finite, fitting the mask),
    ``weight`` and ``iters``; errors name the argument."""
    if not (isinstance(op, Operator) and op.is_linear and op.slice_local):
        raise InputValidationError(
            f"op: expected a linear, slice-local operator with an adjoint (an MRIOperator), got {type(op).__name__}")
    op.check(y, "y")  # shape, floating dtype, finite: the operator's own check
    if not y.is_complex():
        raise InputValidationError(f"y: expected complex k-space, got dtype {y.dtype}")
    if weight is not _UNSET and (not isinstance(weight, (int, float)) or isinstance(weight, bool)
                                 or not math.isfinite(weight) or weight < 0):
        raise ValueError(f"weight: expected a finite number >= 0, got {weight!r}")
    if iters is not _UNSET and (not isinstance(iters, int) or iters < 1):
        raise ValueError(f"iters: expected an integer >= 1, got {iters!r}")


def absolute_weight(zero_filled_image: Tensor, weight: float) -> float:
    """``weight * max |x_zf|`` over the whole volume: the λ actually used."""
    return float(weight) * float(zero_filled_image.abs().max())


def zero_filled(op: MRIOperator, y: Tensor) -> Tensor:
    """Magnitude of the zero-filled image ``|F^H (M ⊙ y)|``: (..., D, H, W) float32."""
    _check_inputs(op, y)
    return finite_result(op.zero_filled(y).abs().float(), "zero_filled(op, y)")


def cs_wavelet(op: MRIOperator, y: Tensor, *, weight: float, iters: int = 300, levels: int = 4, wavelet: str = "db4",
               real: bool = True, progress: bool = False) -> Tensor:
    """CS-MRI: L1-wavelet regularised least squares by FISTA, batched over slices.

    Solves ``min_x 1/2 ||M F x - y||^2 + λ ||W x||_1`` with ``λ = weight * max |x_zf|``
    (module docstring) by :func:`~paperlib.recon.solvers.fista`. One iteration: gradient step
    ``v = z - A^H A z + x_zf`` (step 1, as ``||A|| <= 1``; ``A^H y = x_zf``), soft threshold
    (:func:`~paperlib.recon.solvers.soft_threshold`) of all wavelet coefficients of ``v`` (the
    coarse approximation and the detail bands; for ``W`` orthonormal this is the exact
    proximal map of ``λ ||W x||_1``), Nesterov momentum. Images whose sides are not divisible
    by ``2^levels`` are zero-padded at the bottom/right for the transform (padded pixels are
    unmeasured and only the L1 term acts on them) and cropped back.

    Parameters
    ----------
    op : the measurement operator.
    y : (..., D, H, W) complex k-space.
    weight : float >= 0, regularisation relative to the zero-filled image's maximum.
    iters : FISTA iterations.
    levels : wavelet levels.
    wavelet : a key of :data:`paperlib.recon.wavelets.WAVELETS` (default ``"db4"``, as sigpy).
    real : solve over real images (default: the images here are real magnitude images, as in
        the DART/DRIFT physics step; half the work, see :func:`paperlib.physics.mri.hermitian_half`); ``False``
        solves over complex images as sigpy's ``L1WaveletRecon`` does.
    progress : show a tqdm bar over iterations.

    Returns
    -------
    (..., D, H, W) float32 magnitude image.
    """
    _check_inputs(op, y, weight, iters)
    check_wavelet(wavelet, levels)
    zf = op.zero_filled(y)
    lam = absolute_weight(zf, weight)
    normal = functools.partial(op.normal, real=real)  # v -> A^H A v (its real part for real v)
    if real:
        zf = zf.real.contiguous()
    height, width = zf.shape[-2:]
    ph, pw = (-height) % 2**levels, (-width) % 2**levels
    x = zf
    if ph or pw:  # the normal operator acts on the image; padded pixels are unmeasured
        def pad(v: Tensor) -> Tensor:
            return torch.nn.functional.pad(v, (0, pw, 0, ph))

        normal_image = normal

        def normal(v: Tensor) -> Tensor:
            return pad(normal_image(v[..., :height, :width]))

        x = pad(zf)

    def prox(v: Tensor) -> Tensor:
        approximation, details = dwt2(v, levels, wavelet)
        return idwt2(soft_threshold(approximation, lam), [soft_threshold(d, lam) for d in details], wavelet)

    x = fista(x, prox, normal=normal, rhs=x, step=1.0, iters=iters, progress=progress, desc="CS-MRI (FISTA)")
    return finite_result(x[..., :height, :width].abs().float(), "cs_wavelet(op, y)")


def _gradient_into(xr: Tensor, out: Tensor) -> None:
    """Forward differences of a real view ``(..., H, W, 2)`` into ``out`` (2, ..., H, W, 2):
    ``out[0]`` along H, ``out[1]`` along W, zero on the last row/column (Neumann)."""
    torch.sub(xr[..., 1:, :, :], xr[..., :-1, :, :], out=out[0, ..., :-1, :, :])
    out[0, ..., -1, :, :] = 0
    torch.sub(xr[..., :, 1:, :], xr[..., :, :-1, :], out=out[1, ..., :, :-1, :])
    out[1, ..., :, -1, :] = 0


def _divergence(p: Tensor) -> Tensor:
    """Negative adjoint of :func:`_gradient_into` for duals whose last row (``p[0]``) and last
    column (``p[1]``) are zero, as they stay in :func:`total_variation`."""
    d = p[0].clone()
    d[..., 1:, :, :] -= p[0, ..., :-1, :, :]
    d += p[1]
    d[..., :, 1:, :] -= p[1, ..., :, :-1, :]
    return d


def total_variation(op: MRIOperator, y: Tensor, *, weight: float, iters: int = 300, step_ratio: float = 4.0,
                    real: bool = True, isotropic: bool = True, anchor: Tensor | None = None,
                    anchor_weight: float = 0.0, progress: bool = False) -> Tensor:
    """Isotropic-TV regularised least squares by Chambolle–Pock primal-dual, batched over slices.

    Solves ``min_x 1/2 ||M F x - y||^2 + λ sum_pixels |∇x|`` with ``λ = weight * max |x_zf|``
    (``|∇x|`` the Euclidean norm of the two complex differences); with ``isotropic=False``,
    anisotropic TV ``λ sum_pixels (|∇_H x| + |∇_W x|)`` (each complex difference's modulus), the
    variant of sigpy's ``TotalVariationRecon``. Steps ``τ = step_ratio / L``,
    ``σ = 1 / (step_ratio L)`` with ``L = sqrt(8) >= ||∇||`` (so ``τ σ L^2 = 1``), over-relaxation
    ``θ = 1``. The data term's proximal map is exact:
    ``F_c^H[(F_c v + τ M y) / (1 + τ M)] = F^H[F v / (1 + τ M')] + τ / (1 + τ) x_zf`` with
    ``M'`` the uncentred mask (see :meth:`paperlib.physics.mri.MRIOperator.normal`); the dual's is the projection
    :func:`~paperlib.recon.solvers.project_tv_dual_ball`, and the iteration is
    :func:`~paperlib.recon.solvers.primal_dual` with ``K = ∇``.

    Parameters
    ----------
    op, y : operator and (..., D, H, W) complex k-space.
    weight : float >= 0, relative regularisation.
    iters : primal-dual iterations.
    step_ratio : ``sqrt(τ / σ) L``; larger moves the image faster relative to the dual.
    real : solve over real images (default; the data prox then uses the symmetrised mask of
        :func:`paperlib.physics.mri.hermitian_half` and real FFTs); ``False`` solves over complex images, as sigpy's
        ``TotalVariationRecon`` does.
    isotropic : isotropic TV (default); ``False`` for anisotropic TV (the dual projection of
        :func:`~paperlib.recon.solvers.project_tv_dual_ball` with ``per_direction=True``).
    anchor, anchor_weight : optionally an image ``z`` (the shape of the zero-filled image, in its
        units; e.g. another method's reconstruction) and ``ρ >= 0``: adds ``ρ / 2 ||x - z||^2`` to the
        objective (TV *anchored* at ``z``). The data prox stays exact and diagonal in k-space,
        ``(F v + τ M y + τ ρ F z) / (1 + τ ρ + τ M)``, and the iteration starts at ``z``.
        ``benchmarks/real_mri_limits.py`` anchors TV at DART's estimate.
    progress : tqdm bar over iterations.

    Returns
    -------
    (..., D, H, W) float32 magnitude image.
    """
    _check_inputs(op, y, weight, iters)
    if not isinstance(step_ratio, (int, float)) or not step_ratio > 0:
        raise ValueError(f"step_ratio: expected a number > 0, got {step_ratio!r}")
    zf = op.zero_filled(y)
    rho = 0.0
    if anchor is not None:
        if not isinstance(anchor, Tensor) or anchor.shape != zf.shape or anchor.is_complex() != (not real) \
                or not bool(torch.isfinite(anchor).all()):
            kind = "real" if real else "complex"
            raise ValueError(f"anchor: expected a finite {kind} tensor of shape {tuple(zf.shape)}, got "
                             f"{type(anchor).__name__} {tuple(getattr(anchor, 'shape', ()))}")
        if not (isinstance(anchor_weight, (int, float)) and math.isfinite(anchor_weight) and anchor_weight >= 0):
            raise ValueError(f"anchor_weight: expected a finite number >= 0, got {anchor_weight!r}")
        rho = float(anchor_weight)
    elif anchor_weight != 0:
        raise ValueError(f"anchor_weight: {anchor_weight!r} given without an anchor")
    lam = absolute_weight(zf, weight)
    lip = math.sqrt(8.0)
    tau, sigma = step_ratio / lip, 1.0 / (step_ratio * lip)
    mask = op.uncentred_weight(zf.dtype, zf.device)  # ifftshift(M): no fftshift in the loop
    if real:
        # x is real: prox = irfft2((rfft2(v) + τ rfft2(Re x_zf)) / (1 + τ M_sym))
        half = hermitian_half(mask)
        damping = 1.0 / (1.0 + tau * rho + tau * half)
        zr = zf.real.contiguous()
        rhs = tau * torch.fft.rfft2(zr, norm="ortho")
        if anchor is not None:
            rhs += (tau * rho) * torch.fft.rfft2(anchor.to(zr.dtype), norm="ortho")
        offset = torch.fft.irfft2(rhs * damping, s=zr.shape[-2:], norm="ortho")
        x = zr if anchor is None else anchor.to(zr.dtype).contiguous()

        def view(t: Tensor) -> Tensor:
            return t.unsqueeze(-1)

        def unview(t: Tensor) -> Tensor:
            return t.squeeze(-1)

        def data_prox(v: Tensor) -> Tensor:
            k = torch.fft.rfft2(v.squeeze(-1), norm="ortho")
            k.mul_(damping)
            return torch.fft.irfft2(k, s=v.shape[-3:-1], norm="ortho").add_(offset).unsqueeze(-1)
    else:
        damping = (1.0 / (1.0 + tau * rho + tau * mask)).unsqueeze(-1)  # real, applied to real views of k-space
        if anchor is None:  # F x_zf lives where M = 1
            offset = torch.view_as_real(zf) * (tau / (1.0 + tau))
        else:
            rhs = torch.fft.fft2(zf * tau + anchor.to(zf.dtype) * (tau * rho), norm="ortho")
            torch.view_as_real(rhs).mul_(damping)
            offset = torch.view_as_real(torch.fft.ifft2(rhs, norm="ortho"))
        x = zf if anchor is None else anchor.to(zf.dtype)
        view, unview = torch.view_as_real, torch.view_as_complex

        def data_prox(v: Tensor) -> Tensor:
            k = torch.fft.fft2(torch.view_as_complex(v), norm="ortho")
            torch.view_as_real(k).mul_(damping)
            out = torch.view_as_real(torch.fft.ifft2(k, norm="ortho"))
            return out.add_(offset)

    g = torch.empty((2, *view(x).shape), dtype=view(x).dtype, device=x.device)

    def gradient(v: Tensor) -> Tensor:  # K = ∇, into a buffer reused every iteration
        _gradient_into(v, g)
        return g

    regularised = lam > 0
    x = primal_dual(
        view(x),
        data_prox,
        forward=gradient if regularised else None,
        adjoint=(lambda p: _divergence(p).neg_()) if regularised else None,
        prox_dual=(lambda p: project_tv_dual_ball(p, lam, per_direction=not isotropic)) if regularised else None,
        tau=tau,
        sigma=sigma,
        iters=iters,
        progress=progress,
        desc="TV (primal-dual)",
    )
    return finite_result(unview(x).abs().float(), "total_variation(op, y)")


def tune_weight(
    method: Callable[..., Tensor],
    operators: Sequence[MRIOperator],
    kspaces: Sequence[Tensor],
    targets: Sequence[Tensor],
    grid: Sequence[float],
    *,
    head_masks: Sequence[Tensor] | None = None,
    progress: bool = True,
    **kwargs,
) -> tuple[float, list[tuple[float, float]]]:
    """Grid search of a baseline's relative weight by mean SSIM over validation volumes.

    Meant for the **validation** split only (never test volumes). With ``head_masks`` the
    criterion is the SSIM inside the head (:func:`paperlib.metrics.image.volume_scores`'
    ``ssim_head``), otherwise whole-image SSIM. The head score is the default of
    ``python -m paperlib tune-baselines``: whole-image SSIM is dominated by the empty
    background and rewards over-smoothing (on the default profile it picks a Haar CS-MRI
    weight so large that the brain becomes 8x8-pixel blocks).

    Parameters
    ----------
    method : :func:`cs_wavelet` or :func:`total_variation` (any ``method(op, y, weight=..., **kwargs)``).
    operators, kspaces, targets : one per validation volume; targets (D, H, W) ground truth.
    grid : candidate weights.
    head_masks : optional (D, H, W) bool masks, one per volume.
    kwargs : passed to ``method`` (iterations, levels...).

    Returns
    -------
    (best weight, [(weight, mean SSIM over volumes), ...] in grid order)
    """
    if not (len(operators) == len(kspaces) == len(targets)) or not operators:
        raise ValueError(
            f"operators, kspaces, targets: expected equally many (>= 1), got "
            f"{len(operators)}, {len(kspaces)}, {len(targets)}"
        )
    if head_masks is not None and len(head_masks) != len(targets):
        raise ValueError(f"head_masks: expected {len(targets)} masks, got {len(head_masks)}")
    if not grid:
        raise ValueError("grid: expected at least one weight")
    key = "ssim" if head_masks is None else "ssim_head"
    cases = list(zip(operators, kspaces, targets, [None] * len(targets) if head_masks is None else head_masks))

    def evaluate(case, weight: float, **method_kwargs) -> dict[str, float]:
        op, y, target, mask = case
        return volume_scores(method(op, y, weight=weight, **method_kwargs), target, head_mask=mask)

    result = grid_search(evaluate, cases, {"weight": [float(w) for w in grid]}, criterion=key, fixed=kwargs,
                         progress=progress, desc=f"tuning {getattr(method, '__name__', 'method')}")
    return result.best["weight"], [(row["weight"], row[key]) for row in result.rows]
