"""Proximal maps and first-order solvers shared by the classical baselines (sigpy's spirit:
small pieces that compose).

The problems are of the form ``min_x f(x) + g(x)`` (FISTA) or ``min_x f(x) + g(K x)``
(primal-dual), with ``f`` smooth or with an easy proximal map. The proximal map of a convex
``h`` is ``prox_h(v) = argmin_x h(x) + 1/2 ||x - v||^2``.

* :func:`soft_threshold` — ``prox`` of ``λ ||x||_1`` for real or complex ``x`` (optionally
  plus the indicator of ``x >= 0``). CS-MRI (:func:`~paperlib.recon.mri_baselines.cs_wavelet`,
  on wavelet coefficients), the sparse decomposition
  (:func:`~paperlib.recon.stem_baselines.sparse_decomposition`) and the 4D-STEM physics step
  (paper Eq. 5, :meth:`~paperlib.physics.multislice.MultisliceOperator.physics_step`) use it.
* :func:`project_tv_dual_ball` — projection onto ``{p : |p_i|_2 <= λ}`` pixel by pixel, the
  proximal map of the convex conjugate of ``λ TV`` (isotropic total variation), used by
  :func:`~paperlib.recon.mri_baselines.total_variation`.
* :func:`fista` — proximal gradient with Nesterov momentum (Beck & Teboulle 2009).
* :func:`primal_dual` — the primal-dual algorithm of Chambolle & Pock (2011).
* :func:`conjugate_gradient` — CG for ``B x = b`` with ``B`` self-adjoint positive (semi)definite
  (the inner solver of the DDS + TV-z baseline, :mod:`paperlib.recon.mri_multicoil_baselines`).

This module imports only torch (and tqdm), so that :mod:`paperlib.physics` may use it without
a circular import.

>>> A = torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
>>> b = torch.tensor([3.0, 0.25], dtype=torch.float64)
>>> x = fista(torch.zeros(2, dtype=torch.float64), lambda v: soft_threshold(v, 0.25 * 0.5),
...           gradient=lambda x: A.T @ (A @ x - b), step=0.25, iters=200)
>>> [round(v, 6) for v in x.tolist()]  # soft(A^T b, λ) / diag(A)^2 with λ = 0.5
[1.375, 0.0]
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor
from tqdm.auto import tqdm

__all__ = ["soft_threshold", "project_tv_dual_ball", "fista", "primal_dual", "conjugate_gradient"]


def soft_threshold(x: Tensor, threshold: float, *, nonnegative: bool = False) -> Tensor:
    """Proximal map of ``threshold * ||x||_1``, element by element.

    Real ``x``: ``sign(x) max(|x| - threshold, 0)``. Complex ``x``: the magnitude is shrunk and
    the phase kept, ``x max(0, 1 - threshold / |x|)`` (computed on the real view, no complex
    division). With ``nonnegative`` (real ``x`` only) it is the proximal map of
    ``threshold * ||x||_1 + indicator(x >= 0)``: ``max(x - threshold, 0)``.

    Parameters
    ----------
    x : tensor of any shape, real floating point or complex.
    threshold : float >= 0, in the units of ``x`` (for a proximal-gradient step of length
        ``μ`` on ``f + τ ||x||_1`` it is ``μ τ``).
    nonnegative : also project onto ``x >= 0``.

    Returns
    -------
    Tensor of the shape and dtype of ``x``; ``x`` itself (not a copy) when ``threshold`` is 0
    and ``nonnegative`` is False.

    >>> soft_threshold(torch.tensor([-2.0, 0.5, 3.0]), 1.0).tolist()
    [-1.0, 0.0, 2.0]
    >>> soft_threshold(torch.tensor([-2.0, 0.5, 3.0]), 1.0, nonnegative=True).tolist()
    [0.0, 0.0, 2.0]
    >>> soft_threshold(torch.tensor([3 + 4j, 0.3j]), 1.0).tolist()  # |3+4i| = 5 -> 4
    [(2.4000000953674316+3.200000047683716j), 0j]
    """
    if threshold < 0:
        raise ValueError(f"threshold: expected a number >= 0, got {threshold!r}")
    if nonnegative:
        if x.is_complex():
            raise ValueError(f"nonnegative: expected a real x for a non-negativity constraint, got dtype {x.dtype}")
        return torch.clamp(x - threshold, min=0.0)
    if threshold == 0:
        return x
    if not x.is_complex():
        return torch.sign(x) * torch.clamp(x.abs() - threshold, min=0.0)
    xr = torch.view_as_real(x)
    sq = torch.mul(xr[..., 0], xr[..., 0]).addcmul_(xr[..., 1], xr[..., 1])
    factor = sq.clamp_min_(1e-30).rsqrt_().mul_(-threshold).add_(1.0).clamp_(min=0.0)
    return torch.view_as_complex(xr * factor.unsqueeze(-1))


def project_tv_dual_ball(p: Tensor, radius: float, *, per_direction: bool = False) -> Tensor:
    """Project every pixel's dual vector onto the Euclidean ball of ``radius``, **in place**.

    For isotropic TV, ``λ TV(x) = λ sum_i |(∇x)_i|_2``; its convex conjugate is the indicator
    of ``{p : |p_i|_2 <= λ for every pixel i}``, whose proximal map (for any step ``σ``) is this
    projection, ``p_i <- p_i / max(1, |p_i|_2 / λ)`` (Chambolle & Pock 2011, Sec. 6.2.1).

    Parameters
    ----------
    p : (N, ..., C) real tensor: ``p[n]`` the dual component of the ``n``-th difference
        direction (``N = 2`` in 2D: along H and along W) and the last axis the real components
        of one difference (``C = 1`` for real images, ``C = 2`` for the real and imaginary parts
        of complex ones). The norm of a pixel is taken over ``N`` and ``C`` together.
    radius : float > 0, ``λ``.
    per_direction : project each difference direction on its own (norm over ``C`` only): the
        dual set of **anisotropic** TV, ``λ sum_i sum_n |(∇_n x)_i|`` (sigpy's
        ``TotalVariationRecon``), whose conjugate is the indicator of ``{p : |p_{n,i}| <= λ}``.
        The default ``False`` is the isotropic ball above.

    Returns
    -------
    ``p``, projected.

    >>> p = torch.tensor([[[3.0]], [[4.0]]])  # one pixel, differences (3, 4): norm 5
    >>> project_tv_dual_ball(p, 1.0).flatten().tolist()
    [0.6000000238418579, 0.800000011920929]
    >>> project_tv_dual_ball(torch.tensor([[[3.0]], [[0.5]]]), 1.0, per_direction=True).flatten().tolist()
    [1.0, 0.5]
    """
    if not radius > 0:
        raise ValueError(f"radius: expected a number > 0, got {radius!r}")
    if per_direction:
        shrink = torch.linalg.vector_norm(p, dim=-1).mul_(1.0 / radius).clamp_(min=1.0).reciprocal_()
        return p.mul_(shrink.unsqueeze(-1))
    sq = torch.mul(p[0], p[0])
    for component in p[1:]:
        sq.addcmul_(component, component)
    shrink = sq.sum(-1).sqrt_().mul_(1.0 / radius).clamp_(min=1.0).reciprocal_()
    return p.mul_(shrink.unsqueeze(-1))


def _iterations(iters: int, desc: str, progress: bool):
    if not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters: expected an integer >= 0, got {iters!r}")
    return tqdm(range(iters), desc=desc, disable=not progress, leave=False)


def fista(
    x0: Tensor,
    prox: Callable[[Tensor], Tensor],
    *,
    gradient: Callable[[Tensor], Tensor] | None = None,
    normal: Callable[[Tensor], Tensor] | None = None,
    rhs: Tensor | None = None,
    step: float = 1.0,
    iters: int,
    momentum: bool = True,
    callback: Callable[[int, Tensor], None] | None = None,
    progress: bool = False,
    desc: str = "FISTA",
) -> Tensor:
    """FISTA (Beck & Teboulle 2009): proximal gradient with Nesterov momentum.

    Minimises ``f(x) + g(x)`` with ``f`` smooth (gradient Lipschitz with constant ``L``) and
    ``g`` convex with the proximal map ``prox``. From ``z_1 = x_0``, ``t_1 = 1``:

    .. math::

        x_k = prox(z_k - μ ∇f(z_k)), \\quad t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2, \\quad
        z_{k+1} = x_k + ((t_k - 1) / t_{k+1}) (x_k - x_{k-1}).

    With ``μ <= 1 / L``, ``F(x_k) - F* <= 2 L ||x_0 - x*||^2 / (k + 1)^2`` (Beck & Teboulle 2009,
    Thm. 4.4). ``momentum=False`` gives ISTA (``z_{k+1} = x_k``, rate ``1 / k``).

    The gradient comes in one of two forms:

    * ``gradient``: ``z -> ∇f(z)``; the forward step is ``z - step * gradient(z)``.
    * ``normal`` and ``rhs``, for a least-squares ``f = 1/2 ||A x - y||^2``: ``normal`` is
      ``z -> A^H A z`` and ``rhs`` is ``A^H y``; the forward step is
      ``z - step * normal(z) + step * rhs`` (for ``step = 1``, ``z - normal(z) + rhs``, without
      forming the residual).

    Parameters
    ----------
    x0 : starting point, any shape, real or complex.
    prox : ``v -> prox_{μ g}(v)`` with the step ``μ`` already applied (e.g.
        ``lambda v: soft_threshold(v, step * weight)``).
    gradient : ``z -> ∇f(z)``, a tensor like ``z``.
    normal, rhs : the normal operator ``A^H A`` and ``A^H y`` (instead of ``gradient``).
    step : ``μ``, at most ``1 / L`` for the convergence guarantee.
    iters : number of iterations (fixed; no data-dependent stop).
    momentum : Nesterov momentum (FISTA); False for ISTA.
    callback : called as ``callback(k, x_k)`` after iteration ``k = 1 .. iters``.
    progress : tqdm bar over iterations, labelled ``desc``.

    Returns
    -------
    ``x_iters``, a tensor like ``x0`` (``x0`` itself when ``iters`` is 0).
    """
    if (gradient is None) == (normal is None):
        raise ValueError("gradient, normal: expected exactly one of them, got "
                         + ("both" if gradient is not None else "neither"))
    if normal is not None and rhs is None:
        raise ValueError("rhs: expected A^H y (a tensor like x0) with normal, got None")
    if not step > 0:
        raise ValueError(f"step: expected a number > 0, got {step!r}")

    if gradient is not None:
        def forward_step(z: Tensor) -> Tensor:
            return z - step * gradient(z)
    elif step == 1:
        def forward_step(z: Tensor) -> Tensor:
            return z - normal(z) + rhs
    else:
        scaled_rhs = step * rhs

        def forward_step(z: Tensor) -> Tensor:
            return z - step * normal(z) + scaled_rhs

    x = z = x0
    t = 1.0
    for k in _iterations(iters, desc, progress):
        x_new = prox(forward_step(z))
        if momentum:
            t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
            z = x_new + ((t - 1) / t_new) * (x_new - x)
            t = t_new
        else:
            z = x_new
        x = x_new
        if callback is not None:
            callback(k + 1, x)
    return x


def primal_dual(
    x0: Tensor,
    prox_primal: Callable[[Tensor], Tensor],
    *,
    forward: Callable[[Tensor], Tensor] | None,
    adjoint: Callable[[Tensor], Tensor] | None,
    prox_dual: Callable[[Tensor], Tensor] | None,
    tau: float,
    sigma: float,
    iters: int,
    theta: float = 1.0,
    dual: Tensor | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
    progress: bool = False,
    desc: str = "primal-dual",
) -> Tensor:
    """Chambolle & Pock (2011) primal-dual algorithm for ``min_x f(x) + g(K x)``.

    With ``f``, ``g`` convex and proximable and ``K`` linear, from ``x̄_0 = x_0`` and
    ``p_0 = dual`` (zero by default):

    .. math::

        p_{k+1} = prox_{σ g^*}(p_k + σ K x̄_k), \\quad
        x_{k+1} = prox_{τ f}(x_k - τ K^H p_{k+1}), \\quad
        x̄_{k+1} = (1 + θ) x_{k+1} - θ x_k.

    It converges for ``θ = 1`` and ``τ σ ||K||^2 <= 1`` (Chambolle & Pock 2011, Thm. 1). For
    isotropic TV, ``K = ∇``, ``||∇||^2 <= 8`` in 2D (4 in 1D) and ``prox_{σ g^*}`` is
    :func:`project_tv_dual_ball`.

    The dual update is done in place on a tensor this function owns (``p.add_(K x̄, alpha=σ)``
    then ``prox_dual(p)``), so ``forward`` may return a buffer it reuses and ``prox_dual`` may
    work in place; ``prox_primal`` gets a fresh tensor ``x - τ K^H p`` it may modify and must
    return a new tensor (not ``x``).

    Parameters
    ----------
    x0 : starting point, real tensor (complex unknowns as their real view).
    prox_primal : ``v -> prox_{τ f}(v)`` with ``τ`` already applied.
    forward, adjoint : ``K`` and ``K^H``; ``forward`` maps a tensor like ``x0`` to a dual
        tensor, ``adjoint`` back. All three of ``forward``, ``adjoint``, ``prox_dual`` None:
        ``g = 0``, the iteration is ``x_{k+1} = prox_{τ f}(x_k)``.
    prox_dual : ``p -> prox_{σ g^*}(p)`` (may modify ``p`` and return it).
    tau, sigma : primal and dual steps, ``τ σ ||K||^2 <= 1``.
    iters : number of iterations (fixed).
    theta : over-relaxation ``θ`` (1 in the convergence theorem).
    dual : starting dual ``p_0`` (copied); zeros like ``K x_0`` by default.
    callback : ``callback(k, x_k)`` after iteration ``k = 1 .. iters``.
    progress : tqdm bar over iterations, labelled ``desc``.

    Returns
    -------
    ``x_iters``, a tensor like ``x0``.

    Examples
    --------
    1-D TV denoising of a step, ``min_x 1/2 ||x - b||^2 + λ sum |x_{i+1} - x_i|``: the exact
    solution lowers the step by ``λ / n`` on each side of it (``n = 4`` samples a side).

    >>> b = torch.tensor([0.0] * 4 + [1.0] * 4, dtype=torch.float64)
    >>> x = primal_dual(b.clone(), lambda v: (v + 0.5 * b) / 1.5,  # prox of τ/2 ||x - b||^2, τ = 0.5
    ...                 forward=torch.diff, adjoint=lambda p: -torch.diff(p, prepend=p[:1] * 0, append=p[:1] * 0),
    ...                 prox_dual=lambda p: p.clamp_(-0.4, 0.4), tau=0.5, sigma=0.5, iters=300)
    >>> [round(v, 4) for v in x.tolist()]  # λ = 0.4: 0.4 / 4 = 0.1
    [0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9]
    """
    linear = (forward, adjoint, prox_dual)
    if any(f is None for f in linear) and not all(f is None for f in linear):
        raise ValueError("forward, adjoint, prox_dual: expected all three or none, got "
                         + ", ".join(n for n, f in zip(("forward", "adjoint", "prox_dual"), linear) if f is None)
                         + " None")
    if not (tau > 0 and sigma > 0):
        raise ValueError(f"tau, sigma: expected numbers > 0, got {tau!r}, {sigma!r}")
    iterations = _iterations(iters, desc, progress)
    x = x0
    x_bar = x0.clone()
    p = None
    if forward is not None:
        p = torch.zeros_like(forward(x0)) if dual is None else dual.clone()
    for k in iterations:
        if p is not None:
            p.add_(forward(x_bar), alpha=sigma)
            p = prox_dual(p)
            v = adjoint(p).mul_(-tau).add_(x)
        else:
            v = x
        x_new = prox_primal(v)
        torch.mul(x_new, 1.0 + theta, out=x_bar).sub_(x, alpha=theta)
        x = x_new
        if callback is not None:
            callback(k + 1, x)
    return x


def conjugate_gradient(apply: Callable[[Tensor], Tensor], b: Tensor, x0: Tensor, *, iters: int,
                       tol: float = 0.0) -> Tensor:
    """Conjugate gradients (Hestenes & Stiefel 1952) for ``B x = b``, ``B`` self-adjoint positive
    (semi)definite on real or complex tensors of any shape (inner product ``Re <u, v>``).

    Parameters
    ----------
    apply : ``v -> B v``.
    b, x0 : right-hand side and starting point (tensors of one shape and dtype).
    iters : at most this many iterations (fixed count unless ``tol`` stops earlier).
    tol : stop once ``||r|| <= tol ||b||`` (0: never; runs are then reproducible step counts).

    Returns
    -------
    The iterate, a tensor like ``x0``.

    >>> B = torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    >>> x = conjugate_gradient(lambda v: B @ v, torch.tensor([1.0, 2.0], dtype=torch.float64),
    ...                        torch.zeros(2, dtype=torch.float64), iters=2)
    >>> [round(v, 6) for v in x.tolist()]  # exact in n = 2 steps: B^-1 b = (1, 7) / 11
    [0.090909, 0.636364]
    """
    if not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters: expected an integer >= 0, got {iters!r}")
    if b.shape != x0.shape:
        raise ValueError(f"b, x0: expected one shape, got {tuple(b.shape)} and {tuple(x0.shape)}")

    def dot(u: Tensor, v: Tensor) -> Tensor:
        return torch.vdot(u.reshape(-1), v.reshape(-1)).real

    x = x0
    r = b - apply(x)
    p = r
    rr = dot(r, r)
    stop = (tol * float(torch.linalg.vector_norm(b))) ** 2
    for _ in range(iters):
        if float(rr) <= stop or float(rr) == 0.0:
            break
        bp = apply(p)
        alpha = rr / dot(p, bp)
        x = x + alpha * p
        r = r - alpha * bp
        rr_new = dot(r, r)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return x
