"""DART — Diffusion-Alternating Multi-slice Reconstruction (the paper's Algorithm 1, first branch).

Every reverse-diffusion step alternates the prior's denoising step with the operator's physics
step: at timestep ``t`` the partitioned prior gives the denoised estimate ``x0_hat`` of every
slice group, ``physics_steps`` physics steps move it towards the measurement (paper Eq. 4 for
MRI: data consistency in k-space; Eq. 5 for 4D-STEM: a gradient step on the intensity loss and a
soft threshold), and the sampler takes its DDIM/DDPM step from the corrected estimate
(:mod:`paperlib.diffusion.sampler`). The last step returns the corrected ``x0_hat`` itself, so
the reconstruction is the output of a physics step.

One implementation serves both modalities: it talks to the measurement only through the
:class:`~paperlib.physics.base.Operator` protocol (``volume_shape(y)`` and
``physics_step(x, y, **step_kwargs)``).

Units. The prior works on data divided by the fixed ``scale`` it was trained with (1 for MRI
images in [0, 1]; a V·Å constant for potentials); the physics step works in physical units, so
the callback multiplies by ``scale`` before and divides after.

Where the paper is silent (our choices, configurable):

* where the physics step acts: on ``x0_hat`` (the denoised estimate, as in DDS/DiffusionMBIR),
  not on the noisy ``x_t`` — the projection-based baseline (:mod:`paperlib.recon.projection`)
  is the noisy-iterate variant;
* the start: pure noise at ``T-1`` (``start=1``), or an initial image (for MRI the real part of
  the zero-filled image) noised to the timestep at fraction ``start`` of the schedule (SDEdit,
  Meng et al. 2022), which needs fewer steps;
* the last step: ``stop = 0`` runs the chain down to ``t = 0`` (the paper); ``stop > 0`` ends it
  at the timestep at that fraction of the schedule and returns the physics-corrected denoised
  estimate there (a posterior-mean-like estimate at that noise level instead of a sample with
  its own texture; chosen on validation where it is used);
* the noise of the chain (``levels``): the paper's DDIM/DDPM chain re-noises the corrected estimate
  to the next timestep (with the network's own noise estimate, or fresh noise); the
  *plug-and-play* form (``levels=(σ_max, σ_min)``, our option) hands the corrected estimate
  itself to the network as the noisy image at the next of ``num_steps`` geometrically spaced
  noise levels, so the estimate's remaining error plays the noise and nothing is drawn (the
  half-quadratic-splitting scheme of DPIR, Zhang et al. 2021, with the diffusion network as the
  Gaussian denoiser). It is deterministic and needs a starting image; on real brain scans it is
  what lifts DART above TV (``tab_real_mri``; chosen on the tuning scans);
* the orientation the network sees (``self_ensemble``, plug-and-play form only, our option): the
  *periodical geometric self-ensemble* of DPIR (Zhang et al. 2021): denoising step ``k`` sees the
  estimate flipped and/or transposed in-plane by the ``k mod 8``-th element of the square's
  symmetry group (:func:`in_plane_transform`) and is transformed back, so over the steps the
  network's orientation-dependent errors (and the tiles' padding, which moves with the flips)
  average out at no extra cost; chosen on the tuning scans for ``tab_real_mri``;
* the physics steps between two denoising steps (and DRIFT's K): one after the other, or with
  momentum (``step_kwargs["momentum"]``, :func:`accelerated_steps`: FISTA with adaptive restart),
  which reaches the same data fit in fewer steps where the steps are many (DRIFT's K).

Distributed runs: :func:`physics_callback` is the callback to hand to
:func:`paperlib.diffusion.distributed.partitioned_sample`, with ``gather_for_callback = not
operator.slice_local`` (MRI's Eq. 4 needs only a rank's own slices; multislice 4D-STEM needs the
whole object).
"""
from __future__ import annotations

import logging
import math
import numbers
from typing import Any, Callable, Mapping

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..diffusion.partition import PartitionedPrior
from ..diffusion.tiling import TiledPrior
from ..io import InputValidationError
from ..physics.base import Operator

logger = logging.getLogger(__name__)

__all__ = ["dart", "plug_and_play_timesteps", "in_plane_transform", "physics_callback", "accelerated_steps", "start_point", "stop_timestep", "check_prior_fits", "check_sampling_args"]


def check_prior_fits(prior: PartitionedPrior | TiledPrior, shape: tuple[int, int, int]) -> None:
    """Raise :class:`~paperlib.io.InputValidationError` unless ``prior`` covers ``shape``.

    A :class:`~paperlib.diffusion.tiling.TiledPrior` takes any depth ``D >= 1`` and ``H, W >= 8``
    (:meth:`~paperlib.diffusion.tiling.TiledPrior.check_fits`). For a
    :class:`~paperlib.diffusion.partition.PartitionedPrior` the networks are convolutional, so any
    ``H, W`` divisible by the U-Net's downsampling factor works; the depth must equal groups x
    slices per group (one model per group).
    """
    if isinstance(prior, TiledPrior):
        prior.check_fits(shape)
        return
    if not isinstance(prior, PartitionedPrior):
        raise TypeError(f"prior: expected a PartitionedPrior or a TiledPrior, got {type(prior).__name__}")
    if shape[0] != prior.depth:
        raise InputValidationError(
            f"volume depth {shape[0]} does not match the prior: {len(prior.models)} slice groups x "
            f"{prior.group_size} slices = {prior.depth}; crop or pad the volume, or use a prior "
            f"trained for {shape[0]} slices")


#: Largest ``|init| / scale`` a guided sampler accepts (the priors' data are of order 1 in their units;
#: the networks' normalisations overflow in float32 long before ~1e19).
INIT_LIMIT = 1e6


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_sampling_args(shape: tuple[int, ...], *, generator: Any, num_steps: Any, start: Any = 1.0,
                        init: Any = None, scale: Any = 1.0, physics_steps: Any = 1, stop: Any = 0.0) -> None:
    """Validate the settings shared by DART, DRIFT and the projection method at their entry.

    Raises :class:`~paperlib.io.InputValidationError` (a ``ValueError``) naming the argument:
    ``generator`` not a :class:`torch.Generator`; ``num_steps`` / ``physics_steps`` not integers
    >= 1 / >= 0; ``start`` not a number in (0, 1]; ``stop`` not a number in [0, ``start``); ``scale`` not a finite number > 0; ``init``
    (when given) not a finite real floating-point or complex tensor of the volume's ``shape``, or
    with ``|init| / scale`` above :data:`INIT_LIMIT` (prior units: the network would overflow).
    """
    if not isinstance(generator, torch.Generator):
        raise InputValidationError(f"generator: expected a torch.Generator (explicit seeding), got "
                                   f"{type(generator).__name__}")
    if not (_is_int(num_steps) and num_steps >= 1):
        raise InputValidationError(f"num_steps: expected an integer >= 1, got {num_steps!r}")
    if not (_is_int(physics_steps) and physics_steps >= 0):
        raise InputValidationError(f"physics_steps: expected an integer >= 0, got {physics_steps!r}")
    if not (_is_number(start) and 0.0 < start <= 1.0):
        raise InputValidationError(f"start: expected a fraction of the schedule in (0, 1], got {start!r}")
    if not (_is_number(stop) and 0.0 <= stop < start):
        raise InputValidationError(f"stop: expected a fraction of the schedule in [0, start={start!r}), got {stop!r}")
    if not (_is_number(scale) and scale > 0):
        raise InputValidationError(f"scale: expected a finite number > 0, got {scale!r}")
    if init is None:
        return
    if not isinstance(init, Tensor):
        raise InputValidationError(f"init: expected a (D, H, W) tensor or None, got {type(init).__name__}")
    if tuple(init.shape) != tuple(shape):
        raise InputValidationError(f"init: expected the volume's shape {tuple(shape)}, got {tuple(init.shape)}")
    if not (init.is_floating_point() or init.is_complex()):
        raise InputValidationError(f"init: expected a real floating-point or complex tensor, got {init.dtype}")
    if not bool(torch.isfinite(init).all()):
        raise InputValidationError(f"init: {int((~torch.isfinite(init)).sum())} non-finite values (NaN/Inf) "
                                   f"of {init.numel()}")
    peak = float(init.abs().max()) / scale if init.numel() else 0.0
    if peak > INIT_LIMIT:
        raise InputValidationError(f"init: values up to {peak:.3g} in prior units (init / scale, scale {scale!r}); the "
                                   f"prior's data are of order 1 and the network overflows far above "
                                   f"{INIT_LIMIT:g}: check the image's units or the scale")


def start_point(
    prior: PartitionedPrior | TiledPrior,
    shape: tuple[int, int, int],
    start: float,
    init: Tensor | None,
    generator: torch.Generator,
    *,
    scale: float = 1.0,
) -> tuple[int, Tensor | None]:
    """The first timestep and starting point of a guided sampler.

    ``start = 1``: timestep ``T-1`` and ``None`` (the prior draws pure noise). ``start < 1``:
    the timestep at that fraction of the schedule and ``init / scale`` noised to it (Eq. 1).
    """
    t_start = prior.sampler.start_timestep(start)
    if start >= 1.0:
        return t_start, None
    if init is None:
        raise InputValidationError("init: starting at start < 1 needs an initial image (D, H, W)")
    if tuple(init.shape) != tuple(shape):
        raise InputValidationError(f"init: expected shape {tuple(shape)}, got {tuple(init.shape)}")
    noise = torch.randn(tuple(shape), generator=generator, device=generator.device).to(init.device)
    return t_start, prior.sampler.noise_to(init.real.float() / scale, t_start, noise)


def stop_timestep(prior: PartitionedPrior | TiledPrior, stop: float, num_steps: int, t_start: int) -> int:
    """The training timestep where a chain with ``stop`` (a fraction of the schedule) ends: ``0`` for
    ``stop = 0``, else ``round(stop T)``; an :class:`~paperlib.io.InputValidationError` when
    ``num_steps`` distinct timesteps do not fit between ``t_start`` and it."""
    t_stop = 0 if stop <= 0 else min(round(stop * prior.sampler.num_train_timesteps), t_start)
    if num_steps > t_start - t_stop + 1:
        raise InputValidationError(f"num_steps: {num_steps} distinct timesteps do not fit between the start "
                                   f"(t = {t_start}) and stop (t = {t_stop}); use fewer steps or a smaller stop")
    return t_stop


def physics_callback(
    operator: Operator,
    y: Tensor,
    *,
    scale: float = 1.0,
    steps: int = 1,
    step_kwargs: Mapping[str, Any] | None = None,
) -> Callable[[Tensor, int], Tensor]:
    """``callback(x0_hat, t) -> x0_hat``: ``steps`` physics steps (paper Eq. 4 / Eq. 5).

    Parameters
    ----------
    operator, y : the modality's operator and its measurement.
    scale : prior units -> physical units factor (the prior's training scale).
    steps : physics steps per diffusion step (the paper uses 1 for DART).
        Operators with a ``bind_physics_step(y, **step_kwargs)`` method (MRI) bind ``y`` once.
    step_kwargs : keyword arguments of ``operator.physics_step`` (MRI: ``step_size`` λ;
        4D-STEM: ``step_size`` μ, ``threshold``, ``nonnegative``, ``likelihood``), and
        ``momentum`` (bool, default False), which the callback takes itself: the ``steps`` steps
        then run as :func:`accelerated_steps` (FISTA with adaptive restart) instead of one after
        the other from where the last ended.
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps: expected a non-negative integer, got {steps!r}")
    if not (isinstance(scale, (int, float)) and scale > 0):
        raise ValueError(f"scale: expected a positive number, got {scale!r}")
    kwargs = dict(step_kwargs or {})
    momentum = kwargs.pop("momentum", False)
    if not isinstance(momentum, bool):
        raise InputValidationError(f"momentum: expected True or False, got {momentum!r}")
    bind = getattr(operator, "bind_physics_step", None)
    if bind is not None:  # the operator precomputes what depends on y alone (MRI: A^H y)
        step = bind(y, **kwargs)
    else:
        def step(x: Tensor) -> Tensor:
            return operator.physics_step(x, y, **kwargs)

    def callback(x0_hat: Tensor, t: int) -> Tensor:
        x = x0_hat * scale
        if momentum:
            x = accelerated_steps(step, x, steps)
        else:
            for _ in range(steps):
                x = step(x)
        return (x / scale).to(x0_hat.dtype)

    return callback


def accelerated_steps(step: Callable[[Tensor], Tensor], x: Tensor, steps: int) -> Tensor:
    """``steps`` proximal-gradient steps ``step`` from ``x`` with Nesterov's extrapolation (FISTA,
    Beck & Teboulle 2009) and the gradient-based adaptive restart of O'Donoghue & Candès (2015).

    With ``x_k`` the iterates and ``z_k`` the points the step is taken from (``z_0 = x_0 = x``):
    ``x_{k+1} = step(z_k)``, ``theta_{k+1} = (1 + sqrt(1 + 4 theta_k^2)) / 2`` (``theta_0 = 1``) and
    ``z_{k+1} = x_{k+1} + (theta_k - 1) / theta_{k+1} (x_{k+1} - x_k)``; the momentum is dropped
    (``theta = 1``, ``z_{k+1} = x_{k+1}``) whenever ``<z_k - x_{k+1}, x_{k+1} - x_k> > 0``, i.e. the
    step's move points against the last move, the sign that the extrapolation overshot (the test
    needs no loss value, which the bound 4D-STEM step does not compute). The inner product runs over
    the whole tensor (every sample of a batch together). The physics step of 4D-STEM is a
    proximal-gradient step on a non-convex loss, where FISTA's rate is not guaranteed; the restart
    keeps it from oscillating, and the gain is measured, not assumed
    (``benchmarks/stem_momentum.py``). ``steps = 0`` returns ``x``; the first step equals the plain
    step (``theta_0 - 1 = 0``).

    >>> step = lambda v: 0.5 * v  # a contraction towards 0
    >>> float(accelerated_steps(step, torch.ones(()), 1)), float(accelerated_steps(step, torch.ones(()), 0))
    (0.5, 1.0)
    """
    z, theta = x, 1.0
    for _ in range(steps):
        x_new = step(z)
        move = x_new - x
        theta_new = (1.0 + math.sqrt(1.0 + 4.0 * theta * theta)) / 2.0
        if float(((z - x_new).conj() * move).real.sum()) > 0:  # restart
            theta_new, z = 1.0, x_new
        else:
            z = x_new + ((theta - 1.0) / theta_new) * move
        x, theta = x_new, theta_new
    return x


def dart(prior: PartitionedPrior | TiledPrior, operator: Operator, y: Tensor, *, generator: torch.Generator,
         num_steps: int = 50, start: float = 1.0, init: Tensor | None = None, physics_steps: int = 1,
         step_kwargs: Mapping[str, Any] | None = None, scale: float = 1.0, samples: int = 1,
         stop: float = 0.0, levels: tuple[float, float] | None = None, self_ensemble: bool = False,
         progress: bool = False) -> Tensor:
    """Reconstruct a volume by alternating denoising and physics steps (DART).

    Parameters
    ----------
    prior : the partitioned prior (one model per slice group), with its sampler (DDIM or DDPM),
        or a :class:`~paperlib.diffusion.tiling.TiledPrior` for volumes of any shape (the physics
        step then acts on the native grid).
    operator, y : the measurement model and the measurement.
    generator : seeds the starting noise and every stochastic sampler step.
    num_steps : diffusion steps (network evaluations per slice group).
    start : fraction of the schedule to start from, in (0, 1]; 1 = pure noise. Below 1 the
        starting point is ``init`` noised to that timestep (``init`` required).
    init : (D, H, W) initial image in physical units (e.g. the zero-filled MRI image).
    stop : fraction of the schedule where the chain ends, in [0, ``start``); 0 = down to
        ``t = 0`` (the paper). Above 0 the result is the physics-corrected denoised estimate at
        that timestep (module docstring); ``num_steps`` are spread from the start to it.
    physics_steps : physics steps per diffusion step.
    step_kwargs : keyword arguments of ``operator.physics_step``.
    scale : the prior's training scale (physical units per prior unit).
    samples : K; 1 is the paper's DART (one posterior sample). K > 1 returns the mean of K
        independent DART samples, an estimate of the posterior *mean* (our option, not in the
        paper): a sample carries texture and noise of its own in what the measurement leaves
        open, which SSIM and PSNR penalise, the mean keeps only what the samples agree on. Each
        sample is consistent with the measurement where Eq. 4 is hard (λ = 1), so is their mean
        (Eq. 4 is affine in ``x``). Slice-local operators (MRI) run the K samples as one batch.
    levels : ``(σ_max, σ_min)`` with ``σ_max >= σ_min > 0`` (prior units): the plug-and-play form
        (module docstring): ``num_steps`` denoising steps at the training timesteps of noise levels
        spaced geometrically from ``σ_max`` to ``σ_min`` (:func:`plug_and_play_timesteps`), each
        applied to the physics-corrected estimate itself, from ``init``; no noise is drawn, so
        ``samples`` must be 1, and ``start`` / ``stop`` (which place a noisy chain) must keep their
        defaults. ``None`` (default): the paper's chain.
    self_ensemble : plug-and-play form only: denoising step ``k`` sees the estimate in the ``k mod
        8``-th in-plane orientation (:func:`in_plane_transform`; the 4 flips only where the prior
        needs a fixed square shape and ``H != W``), transformed back after (module docstring).

    Returns
    -------
    (D, H, W) float32 reconstruction in physical units.
    """
    if not _is_int(samples) or samples < 1:
        raise ValueError(f"samples: expected a positive integer, got {samples!r}")
    shape = operator.volume_shape(y)
    check_prior_fits(prior, shape)
    check_sampling_args(shape, generator=generator, num_steps=num_steps, start=start, init=init, scale=scale,
                        physics_steps=physics_steps, stop=stop)
    if not isinstance(self_ensemble, bool):
        raise InputValidationError(f"self_ensemble: expected True or False, got {self_ensemble!r}")
    if levels is not None:
        if samples != 1 or start != 1.0 or stop != 0.0:
            raise InputValidationError(
                f"levels: the plug-and-play form draws no noise and places its own levels, so samples must be 1 "
                f"and start / stop keep their defaults; got samples={samples!r}, start={start!r}, stop={stop!r}")
        if init is None:
            raise InputValidationError("init: the plug-and-play form (levels) starts from an image; pass init "
                                       "(D, H, W), e.g. a TV or zero-filled reconstruction")
        timesteps = plug_and_play_timesteps(prior, levels, num_steps)
        cb = physics_callback(operator, y, scale=scale, steps=physics_steps, step_kwargs=step_kwargs)
        x = init.real.float() / scale
        orientations = (8 if shape[-1] == shape[-2] or isinstance(prior, TiledPrior) else 4) if self_ensemble else 1
        for k, t in enumerate(tqdm(timesteps, desc="DART (plug-and-play)", disable=not progress, leave=False)):
            g = k % orientations
            x_t = in_plane_transform(math.sqrt(float(prior.sampler.abar[t])) * x, g)
            x = cb(in_plane_transform(prior.denoise(x_t, t), g, inverse=True), t)
        return (x * scale).float()
    if self_ensemble:
        raise InputValidationError(f"self_ensemble: only the plug-and-play form (levels) takes it, got "
                                   f"self_ensemble={self_ensemble!r} without levels")
    if samples > 1:
        kwargs = dict(num_steps=num_steps, start=start, init=init, physics_steps=physics_steps,
                      step_kwargs=step_kwargs, scale=scale, stop=stop, progress=progress)
        if not operator.slice_local:  # the physics step takes one volume at a time
            return torch.stack([dart(prior, operator, y, generator=generator, **kwargs) for _ in range(samples)]).mean(0)
        return _batched_mean(prior, operator, y, shape, samples, generator, **kwargs)
    t_start, x_T = start_point(prior, shape, start, init, generator, scale=scale)
    cb = physics_callback(operator, y, scale=scale, steps=physics_steps, step_kwargs=step_kwargs)
    x = prior.sample(shape, num_steps=num_steps, generator=generator, callback=cb, x_T=x_T, t_start=t_start,
                     t_stop=stop_timestep(prior, stop, num_steps, t_start), progress=progress)
    return (x * scale).float()


def in_plane_transform(x: Tensor, g: int, *, inverse: bool = False) -> Tensor:
    """Element ``g`` (0-7) of the symmetry group of the square acting on the last two axes of ``x``
    (``H``, ``W``): bit 0 flips ``H``, bit 1 flips ``W``, bit 2 transposes (after the flips);
    ``inverse=True`` undoes it. ``g = 0`` is the identity (``x`` itself is returned).

    >>> x = torch.arange(6.).reshape(1, 2, 3)
    >>> all(torch.equal(in_plane_transform(in_plane_transform(x, g), g, inverse=True), x) for g in range(8))
    True
    >>> in_plane_transform(x, 4).shape
    torch.Size([1, 3, 2])
    """
    if not (_is_int(g) and 0 <= g < 8):
        raise ValueError(f"g: expected an integer in 0..7, got {g!r}")
    flips = [d for d, bit in ((-2, 1), (-1, 2)) if g & bit]
    if not inverse:
        x = x.flip(flips) if flips else x
        return x.transpose(-1, -2) if g & 4 else x
    x = x.transpose(-1, -2) if g & 4 else x
    return x.flip(flips) if flips else x


def plug_and_play_timesteps(prior: PartitionedPrior | TiledPrior, levels: Any, num_steps: int) -> list[int]:
    """The training timesteps of DART's plug-and-play form: for ``num_steps`` noise levels
    ``σ_k`` spaced geometrically from ``σ_max`` to ``σ_min`` (``levels``, prior units), the
    timestep whose ``sqrt((1 - abar_t) / abar_t)`` is nearest to ``σ_k``
    (:func:`~paperlib.diffusion.evaluate.noise_level_timestep`; levels below the schedule's
    smallest map to ``t = 0``, which then repeats: more denoising steps at the finest level).

    Raises :class:`~paperlib.io.InputValidationError` unless ``levels`` is two finite numbers
    ``σ_max >= σ_min > 0``.
    """
    from ..diffusion.evaluate import noise_level_timestep

    ok = (isinstance(levels, (tuple, list)) and len(levels) == 2 and all(_is_number(v) for v in levels)
          and levels[0] >= levels[1] > 0)
    if not ok:
        raise InputValidationError(f"levels: expected two noise levels (sigma_max, sigma_min) with "
                                   f"sigma_max >= sigma_min > 0, got {levels!r}")
    sigmas = torch.logspace(math.log10(levels[0]), math.log10(levels[1]), num_steps, dtype=torch.float64)
    return [noise_level_timestep(prior.sampler.abar, float(s)) for s in sigmas]


def _batched_mean(prior, operator: Operator, y: Tensor, shape: tuple[int, int, int], samples: int,
                  generator: torch.Generator, *, num_steps: int, start: float, init: Tensor | None,
                  physics_steps: int, step_kwargs: Mapping[str, Any] | None, scale: float, stop: float,
                  progress: bool) -> Tensor:
    """The mean of ``samples`` DART samples drawn as one batch (slice-local operators broadcast)."""
    batch = (samples, *shape)
    t_start, x_T = start_point(prior, batch, start, None if init is None else init.expand(batch), generator,
                               scale=scale)
    cb = physics_callback(operator, y.expand(batch), scale=scale, steps=physics_steps, step_kwargs=step_kwargs)
    x = prior.sample(batch, num_steps=num_steps, generator=generator, callback=cb, x_T=x_T, t_start=t_start,
                     t_stop=stop_timestep(prior, stop, num_steps, t_start), progress=progress)
    return (x * scale).float().mean(0)
