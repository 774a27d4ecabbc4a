"""Projection-based diffusion reconstruction for MRI (the paper's "Projection-based" baseline).

Sampling with a hard projection onto the measured k-space at every step, applied to the *noisy*
iterate (Song, Shen, Xing & Ermon, "Solving inverse problems in medical imaging with
score-based generative models", ICLR 2022; the paper cites its own variant, bangun2025reg): after
the reverse step to ``t_prev`` the measurement is noised to the same level,

    y_{t_prev} = sqrt(abar_{t_prev}) y + sqrt(1 - abar_{t_prev}) M F z,   z ~ N(0, I) fresh,

and the sampled k-space of ``x_{t_prev}`` is replaced by it (Eq. 4 with λ = 1). The last step
(``t_prev = -1``) projects onto ``y`` itself. This differs from DART
(:mod:`paperlib.recon.dart`), which corrects the denoised estimate ``x0_hat`` before the
sampler step; the two share the prior, the sampler and the operator.

It needs a *linear* operator whose ``physics_step(x, y, step_size=1.0)`` is the projection onto the
measurement (``operator.projects``, see :class:`~paperlib.physics.base.Operator`; MRI's Eq. 4
with λ = 1); multislice 4D-STEM has no such projection.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..diffusion.partition import PartitionedPrior
from ..diffusion.tiling import TiledPrior
from ..io import InputValidationError
from ..physics.base import Operator
from .dart import check_prior_fits, check_sampling_args, start_point

__all__ = ["projection_sampling"]


def projection_sampling(prior: PartitionedPrior | TiledPrior, operator: Operator, y: Tensor, *,
                        generator: torch.Generator, num_steps: int = 50, start: float = 1.0,
                        init: Tensor | None = None, progress: bool = False) -> Tensor:
    """Reconstruct an MRI volume by projecting every noisy iterate onto the noised measurement.

    Parameters
    ----------
    prior : partitioned prior trained on images in [0, 1] (scale 1), or a
        :class:`~paperlib.diffusion.tiling.TiledPrior` of one for volumes of any shape (the
        projection then acts on the native grid).
    operator, y : an operator whose unit physics step projects (``projects``, e.g. :class:`~paperlib.physics.mri.MRIOperator`)
        and its measurement (MRI: k-space (D, H, W)).
    generator : seeds the start, the sampler's noise and the measurement noise.
    num_steps, start, init : as in :func:`paperlib.recon.dart.dart`.

    Returns
    -------
    (D, H, W) float32 real image, consistent with ``y`` on the sampled k-space.
    """
    if not operator.projects:
        raise InputValidationError(
            f"operator: the projection-based method needs an operator whose physics step with step size 1 "
            f"projects onto the measurement (projects True, e.g. MRIOperator); {type(operator).__name__} "
            f"declares projects False")
    shape = operator.volume_shape(y)
    check_prior_fits(prior, shape)
    check_sampling_args(shape, generator=generator, num_steps=num_steps, start=start, init=init)
    sampler = prior.sampler

    def project(x_prev: Tensor, t_prev: int) -> Tensor:
        a = sampler.abar_at(t_prev)
        if t_prev < 0:
            return operator.physics_step(x_prev, y, step_size=1.0)
        z = torch.randn(shape, generator=generator, device=generator.device).to(x_prev.device)
        y_t = math.sqrt(a) * y + math.sqrt(1.0 - a) * operator.forward(z)
        return operator.physics_step(x_prev, y_t, step_size=1.0)

    t_start, x_T = start_point(prior, shape, start, init, generator)
    x = prior.sample(shape, num_steps=num_steps, generator=generator, x_T=x_T, t_start=t_start,
                     post_step=project, progress=progress)
    return x.float()
