"""Baselines of the variational 2D-prior reconstruction on the same multicoil 3D data (issue 18;
paper ``002``'s Figure 3), all on a :class:`~paperlib.physics.mri.MulticoilMRIOperator`
``A x = M ⊙ F_3D(S_c x)``:

* :func:`cs_wavelet_multicoil` — compressive sensing: ``min_x 1/2 ||A x - y||^2 + λ ||W x||_1``
  over complex volumes, ``W`` the orthonormal 2D Daubechies transform of every axial slice
  (:mod:`paperlib.recon.wavelets`), by FISTA with step 1 (``||A|| <= 1``), as the single-coil
  :func:`paperlib.recon.mri_baselines.cs_wavelet`.
* :func:`posterior_sampling` — DPS (Chung, Kim, McCann, Klasky & Ye, ICLR 2023) with the 2D prior
  on the axial slices: every reverse step moves ``x_{t_prev}`` against the gradient, taken through
  the denoiser, of the data misfit of ``x0_hat(x_t)``.
* :func:`dds_tv_z` — slice-wise 2D diffusion with a total-variation penalty across slices
  (DiffusionMBIR, Chung, Ryu, McCann, Klasky & Ye, CVPR 2023; in the decomposed form of DDS, Chung,
  Lee & Ye, ICLR 2024): at every reverse step the denoised slices ``x0_hat`` are corrected by a few
  ADMM iterations on ``1/2 ||A x - y||^2 + λ ||D_z x||_1`` started at ``x0_hat`` (the x-update by a
  few conjugate-gradient steps, the early stop keeping ``x`` near ``x0_hat`` as in DDS), and the
  DDIM step carries the network's own noise estimate.

The 2D prior is a :class:`~paperlib.recon.variational2d.SlicePrior` trained on magnitude images,
so the two diffusion baselines reconstruct **real** volumes (the simulated data of
:func:`~paperlib.recon.variational2d.simulate_multicoil` have zero phase); the intensity scale ``c``
(default :func:`~paperlib.data.intensity.intensity_scale` of ``|A^H y|``) maps prior units to the
volume's. Weights are relative, as in :mod:`paperlib.recon.mri_baselines`: ``λ = weight * max |A^H y|``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..data.intensity import intensity_scale
from ..io import InputValidationError
from ..physics.mri import MulticoilMRIOperator
from .mri_baselines import absolute_weight
from .solvers import conjugate_gradient, fista, soft_threshold
from .variational2d import SlicePrior
from .wavelets import check_wavelet, dwt2, idwt2

__all__ = ["cs_wavelet_multicoil", "posterior_sampling", "dds_tv_z", "z_difference", "z_difference_adjoint"]


def _check(op: MulticoilMRIOperator, y: Tensor, **numbers: float) -> None:
    if not isinstance(op, MulticoilMRIOperator):
        raise InputValidationError(f"op: expected a MulticoilMRIOperator, got {type(op).__name__}")
    op.check(y, "y")
    if not y.is_complex():
        raise InputValidationError(f"y: expected complex k-space, got dtype {y.dtype}")
    for name, value in numbers.items():
        if name.endswith("iters") or name == "num_steps":
            if not isinstance(value, int) or value < 1:
                raise InputValidationError(f"{name}: expected an integer >= 1, got {value!r}")
        elif not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise InputValidationError(f"{name}: expected a finite number >= 0, got {value!r}")


def _scale(op: MulticoilMRIOperator, y: Tensor, scale: float | None) -> float:
    if scale is None:
        return intensity_scale(op.measurement_image(y), name="zero-filled image |A^H y|")
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise InputValidationError(f"scale: expected a finite number > 0, got {scale!r}")
    return float(scale)


def cs_wavelet_multicoil(op: MulticoilMRIOperator, y: Tensor, *, weight: float, iters: int = 100, levels: int = 3,
                         wavelet: str = "db4", progress: bool = False) -> Tensor:
    """Multicoil CS-MRI: ``min_x 1/2 ||A x - y||^2 + λ ||W x||_1`` by FISTA (module docstring).

    One iteration: the gradient step ``v = z - A^H A z + A^H y`` (step 1), the soft threshold of all
    wavelet coefficients of every axial slice (complex: the magnitude is shrunk), Nesterov momentum.
    Slices whose sides are not multiples of ``2^levels`` are zero-padded at the bottom/right for the
    transform (the padding is unmeasured, only the L1 term acts on it) and cropped back.

    Parameters
    ----------
    op, y : the operator and k-space (C, D, H, W).
    weight : relative λ >= 0 (``λ = weight * max |A^H y|``).
    iters, levels, wavelet : FISTA iterations, wavelet levels, a key of :data:`~paperlib.recon.wavelets.WAVELETS`.
    progress : tqdm bar.

    Returns
    -------
    (D, H, W) complex volume (complex64).
    """
    _check(op, y, weight=weight, iters=iters)
    check_wavelet(wavelet, levels)
    zero_filled = op.conjugate_transpose(y)
    lam = absolute_weight(zero_filled, weight)
    height, width = zero_filled.shape[-2:]
    ph, pw = (-height) % 2**levels, (-width) % 2**levels

    def normal(v: Tensor) -> Tensor:  # A^H A on the image, zero on the unmeasured padding
        return torch.nn.functional.pad(op.normal(v[..., :height, :width]), (0, pw, 0, ph))

    def prox(v: Tensor) -> Tensor:
        approximation, details = dwt2(v, levels, wavelet)
        return idwt2(soft_threshold(approximation, lam), [soft_threshold(d, lam) for d in details], wavelet)

    start = torch.nn.functional.pad(zero_filled, (0, pw, 0, ph))
    x = fista(start, prox, normal=normal, rhs=start, step=1.0, iters=iters, progress=progress,
              desc="multicoil CS (FISTA)")
    return x[..., :height, :width]


def posterior_sampling(op: MulticoilMRIOperator, y: Tensor, prior: SlicePrior, *, generator: torch.Generator,
                       num_steps: int = 50, guidance: float = 1.0, scale: float | None = None,
                       progress: bool = False) -> Tensor:
    """DPS with the 2D prior on the axial slices, guided by the multicoil data (module docstring).

    At each reverse step ``t -> t_prev`` with ``x_t`` the slices (D, H, W) in prior units:
    ``x0_hat = D(x_t, t)`` (through the network, with its Jacobian), the misfit
    ``r = ||A (c x0_hat) - y|| / c`` (in prior units), the sampler's step from ``x0_hat`` and then
    ``x_{t_prev} -= guidance * ∇_{x_t} r``. This is DPS's update ``ζ_t ∇ ||y - A x0_hat||^2`` with
    ``ζ_t = ζ' / ||y - A x0_hat||`` (Chung et al. 2023, Algorithm 1; ``guidance = 2 ζ'``).

    Parameters
    ----------
    op, y : operator and k-space (C, D, H, W).
    prior : the 2D prior (its sampler's method and ``eta`` apply).
    generator : the initial noise and the sampler's noise.
    num_steps : network evaluations.
    guidance : ``>= 0``; 0 gives the unguided prior sample (slice by slice).
    scale : intensity scale ``c`` (default from ``|A^H y|``).

    Returns
    -------
    (D, H, W) float32 real volume in the data's units.
    """
    _check(op, y, guidance=guidance, num_steps=num_steps)
    if not isinstance(prior, SlicePrior):
        raise InputValidationError(f"prior: expected a SlicePrior, got {type(prior).__name__}")
    c = _scale(op, y, scale)
    sampler = prior.sampler
    x = torch.randn(op.shape, generator=generator, dtype=torch.float32, device=generator.device).to(y.device)
    for t, t_prev in tqdm(sampler.pairs(num_steps), desc="DPS", disable=not progress, leave=False):
        x_t = x.detach().requires_grad_(guidance > 0)
        with torch.set_grad_enabled(guidance > 0):
            x0 = prior.denoise(x_t, t)
            if guidance > 0:
                misfit = (op.forward(c * x0) - y).abs().pow(2).sum().sqrt() / c
                (grad,) = torch.autograd.grad(misfit, x_t)
        x = sampler.step(x0.detach(), x_t.detach(), t, t_prev, generator)
        if guidance > 0:
            x = x - guidance * grad
    return (c * x).float()


def z_difference(x: Tensor) -> Tensor:
    """Forward differences across slices ``x[1:] - x[:-1]``: (D, H, W) -> (D - 1, H, W)."""
    return x[1:] - x[:-1]


def z_difference_adjoint(p: Tensor) -> Tensor:
    """Adjoint of :func:`z_difference`: (D - 1, H, W) -> (D, H, W).

    >>> x, p = torch.randn(4, 2, 3, dtype=torch.float64), torch.randn(3, 2, 3, dtype=torch.float64)
    >>> bool(torch.isclose((z_difference(x) * p).sum(), (x * z_difference_adjoint(p)).sum()))
    True
    """
    zero = torch.zeros_like(p[:1])
    return torch.cat([zero, p]) - torch.cat([p, zero])


def dds_tv_z(op: MulticoilMRIOperator, y: Tensor, prior: SlicePrior, *, generator: torch.Generator,
             weight: float = 0.01, num_steps: int = 50, admm_iters: int = 3, cg_iters: int = 5, rho: float = 1.0,
             scale: float | None = None, progress: bool = False) -> Tensor:
    """Slice-wise 2D diffusion with TV across slices (DiffusionMBIR / DDS + TV-z; module docstring).

    At each reverse step the prior denoises every axial slice; ``x = c x0_hat`` is then refined by
    ``admm_iters`` ADMM iterations on ``1/2 ||A x - y||^2 + λ ||D_z x||_1`` (:func:`z_difference`),
    started from ``z = D_z x``, ``u = 0``:

    * ``x <- argmin 1/2 ||A x - y||^2 + ρ/2 ||D_z x - z + u||^2`` approximately, by ``cg_iters``
      conjugate-gradient steps (:func:`~paperlib.recon.solvers.conjugate_gradient`) on the normal
      equations ``(Re A^H A + ρ D_z^T D_z) x = Re A^H y + ρ D_z^T (z - u)`` started at the current
      ``x`` (over real volumes);
    * ``z <- soft(D_z x + u, λ / ρ)``, ``u <- u + D_z x - z``.

    The corrected ``x / c`` replaces ``x0_hat`` in the sampler's step, which carries the network's
    noise estimate (DDS). The last step returns the corrected estimate.

    Parameters
    ----------
    op, y : operator and k-space (C, D, H, W).
    prior : the 2D prior.
    generator : initial and sampler noise.
    weight : relative TV-z weight (``λ = weight * max |A^H y|``).
    num_steps, admm_iters, cg_iters : reverse steps, ADMM iterations per step, CG steps per x-update.
    rho : ADMM penalty ``ρ > 0`` (``Re A^H A`` has norm at most 1).
    scale : intensity scale ``c``.

    Returns
    -------
    (D, H, W) float32 real volume.
    """
    _check(op, y, weight=weight, num_steps=num_steps, admm_iters=admm_iters, cg_iters=cg_iters, rho=rho)
    if rho <= 0:
        raise InputValidationError(f"rho: expected a number > 0, got {rho!r}")
    if not isinstance(prior, SlicePrior):
        raise InputValidationError(f"prior: expected a SlicePrior, got {type(prior).__name__}")
    c = _scale(op, y, scale)
    zero_filled = op.conjugate_transpose(y)
    lam = absolute_weight(zero_filled, weight)
    rhs_data = zero_filled.real.float()
    sampler = prior.sampler

    def system(v: Tensor) -> Tensor:
        return op.normal(v).real + rho * z_difference_adjoint(z_difference(v))

    def correct(x: Tensor) -> Tensor:
        z = z_difference(x)
        u = torch.zeros_like(z)
        for _ in range(admm_iters):
            x = conjugate_gradient(system, rhs_data + rho * z_difference_adjoint(z - u), x, iters=cg_iters)
            dz = z_difference(x)
            z = soft_threshold(dz + u, lam / rho)
            u = u + dz - z
        return x

    x = torch.randn(op.shape, generator=generator, dtype=torch.float32, device=generator.device).to(y.device)
    with torch.no_grad():
        for t, t_prev in tqdm(sampler.pairs(num_steps), desc="DDS + TV-z", disable=not progress, leave=False):
            x0 = prior.denoise(x, t)
            eps = sampler.predict_eps(x0, x, t)
            x0 = correct(c * x0) / c
            x = sampler.step(x0, x, t, t_prev, generator, eps=eps)
    return (c * x).float()
