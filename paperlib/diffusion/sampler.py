"""DDPM and DDIM reverse steps, split so that a physics step fits between network and scheduler.

One reverse step from ``t`` to ``t_prev < t`` is written in three parts, diffusers-style:

1. the network output is turned into a denoised estimate ``x0_hat = sampler.predict_x0(out, x_t, t)``;
2. DART may modify ``x0_hat`` (the physics step of paper Eq. 4 / Eq. 5);
3. ``x_{t_prev} = sampler.step(x0_hat, x_t, t, t_prev, generator)``.

Both steps are parametrised by ``x0_hat``: the implied noise is
``eps_hat = (x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)``.

* ``method="ddpm"`` (Ho et al. 2020): ancestral sampling from the Gaussian posterior
  ``q(x_{t_prev} | x_t, x0_hat)`` with the effective ``beta' = 1 - abar_t / abar_{t_prev}`` when
  steps are skipped, and the posterior variance ``beta' (1 - abar_{t_prev}) / (1 - abar_t)``.
* ``method="ddim"`` (Song et al. 2021): ``x_{t_prev} = sqrt(abar_prev) x0_hat +
  sqrt(1 - abar_prev - sigma^2) eps_hat + sigma z`` with
  ``sigma = eta sqrt((1 - abar_prev)/(1 - abar_t)) sqrt(1 - abar_t/abar_prev)``; ``eta = 0`` is
  deterministic, ``eta = 1`` coincides with ``"ddpm"``.

The final step goes to ``t_prev = -1`` where ``abar = 1``: it returns ``x0_hat`` itself.

Prediction target: the network output is converted to ``x0_hat`` by :meth:`Sampler.predict_x0`
according to what it was trained on (``"x0"``, ``"epsilon"`` or ``"v"``, stored in each prior's
manifest; see :mod:`paperlib.diffusion.train`), so everything downstream sees only ``x0_hat``.

>>> from paperlib.diffusion.schedules import ScheduleConfig
>>> s = Sampler(ScheduleConfig("linear", 100).alphas_cumprod(), method="ddim")
>>> s.timesteps(5).tolist()
[99, 74, 50, 25, 0]
>>> g = torch.Generator().manual_seed(0)
>>> x = s.sample(lambda x_t, t: torch.zeros_like(x_t), (2, 3), num_steps=5, generator=g)
>>> x.abs().max().item()
0.0
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Literal, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .schedules import ScheduleConfig

logger = logging.getLogger(__name__)

Method = Literal["ddpm", "ddim"]
Prediction = Literal["x0", "epsilon", "v"]
DenoiseFn = Callable[[Tensor, int], Tensor]
Callback = Callable[[Tensor, int], Tensor]


class Sampler:
    """Reverse-process steps for a fixed noise schedule.

    Parameters
    ----------
    abar : (T,) cumulative products ``abar_t`` (float64 preferred), or a :class:`ScheduleConfig`.
    method : ``"ddpm"`` (ancestral) or ``"ddim"``.
    eta : DDIM stochasticity in [0, 1] (ignored by ``"ddpm"``).
    prediction : what the network outputs, ``"x0"``, ``"epsilon"`` or ``"v"`` (``v = sqrt(abar_t) eps -
        sqrt(1 - abar_t) x0``, Salimans & Ho 2022, used by Ho et al. 2022); used by :meth:`predict_x0`.
    clip : optional ``(low, high)`` clamp applied to ``x0_hat`` in :meth:`predict_x0`.
    """

    def __init__(
        self,
        abar: Tensor | ScheduleConfig,
        *,
        method: Method = "ddim",
        eta: float = 0.0,
        prediction: Prediction = "x0",
        clip: tuple[float, float] | None = None,
    ) -> None:
        if isinstance(abar, ScheduleConfig):
            abar = abar.alphas_cumprod()
        abar = torch.as_tensor(abar, dtype=torch.float64).flatten()
        if abar.numel() < 1 or not bool(((abar > 0) & (abar <= 1)).all()):
            raise ValueError("abar: expected a non-empty (T,) tensor with values in (0, 1]")
        if method not in ("ddpm", "ddim"):
            raise ValueError(f"method: expected 'ddpm' or 'ddim', got {method!r}")
        if prediction not in ("x0", "epsilon", "v"):
            raise ValueError(f"prediction: expected 'x0', 'epsilon' or 'v', got {prediction!r}")
        if not 0.0 <= eta <= 1.0:
            raise ValueError(f"eta: expected a value in [0, 1], got {eta}")
        self.abar = abar
        self.method = method
        self.eta = float(eta)
        self.prediction = prediction
        self.clip = clip

    @property
    def num_train_timesteps(self) -> int:
        return int(self.abar.numel())

    def __repr__(self) -> str:
        return (f"Sampler(T={self.num_train_timesteps}, method={self.method!r}, eta={self.eta}, "
                f"prediction={self.prediction!r})")

    # ------------------------------------------------------------------ timesteps
    def timesteps(self, num_steps: int, t_start: int | None = None, t_stop: int = 0) -> Tensor:
        """``num_steps`` descending training timesteps, evenly spaced from ``t_start`` (default
        ``T-1``, pure noise) down to ``t_stop`` (default ``0``).

        Returns
        -------
        (num_steps,) int64 tensor, strictly decreasing, first ``t_start``, last ``t_stop`` (if > 1 step).

        >>> from paperlib.diffusion.schedules import ScheduleConfig
        >>> Sampler(ScheduleConfig("linear", 100)).timesteps(3, t_start=49).tolist()
        [49, 24, 0]
        >>> Sampler(ScheduleConfig("linear", 100)).timesteps(3, t_start=49, t_stop=9).tolist()
        [49, 29, 9]
        """
        T = self.num_train_timesteps
        top = T - 1 if t_start is None else int(t_start)
        if not 0 <= top <= T - 1:
            raise ValueError(f"t_start: expected 0 <= t_start <= {T - 1}, got {t_start}")
        t_stop = int(t_stop)
        if not 0 <= t_stop <= top:
            raise ValueError(f"t_stop: expected 0 <= t_stop <= t_start ({top}), got {t_stop}")
        if not 1 <= num_steps <= top - t_stop + 1:
            raise ValueError(f"num_steps: expected 1 <= num_steps <= {top - t_stop + 1} (timesteps from t_start {top} "
                             f"down to {t_stop}), got {num_steps}")
        if num_steps == 1:
            return torch.tensor([top])
        return torch.linspace(top, t_stop, num_steps, dtype=torch.float64).round().long()

    def pairs(self, num_steps: int, t_start: int | None = None, t_stop: int = 0) -> list[tuple[int, int]]:
        """``[(t, t_prev), ...]`` for :meth:`step`; the last ``t_prev`` is ``-1`` (clean data).

        With ``t_stop > 0`` the chain ends early: the last step goes from ``t_stop`` straight to
        ``-1``, which returns the (corrected) denoised estimate ``x0_hat`` at ``t_stop`` (Tweedie's
        posterior mean there, after the callback), not a sample refined down to ``t = 0``.
        """
        ts = self.timesteps(num_steps, t_start, t_stop).tolist()
        return list(zip(ts, ts[1:] + [-1]))

    def start_timestep(self, start: float) -> int:
        """The training timestep at fraction ``start`` in (0, 1] of the schedule (1 = ``T-1``,
        pure noise); DART and the projection method start there from a noised initial image.

        >>> from paperlib.diffusion.schedules import ScheduleConfig
        >>> Sampler(ScheduleConfig("linear", 100)).start_timestep(0.5)
        49
        """
        if not (isinstance(start, (int, float)) and 0.0 < start <= 1.0):
            raise ValueError(f"start: expected a fraction of the schedule in (0, 1], got {start!r}")
        return max(0, round(start * self.num_train_timesteps) - 1)

    def noise_to(self, x0: Tensor, t: int, noise: Tensor) -> Tensor:
        """``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise`` (paper Eq. 1, the forward process)."""
        a = self.abar_at(int(t))
        return math.sqrt(a) * x0 + math.sqrt(1.0 - a) * noise

    def abar_at(self, t: int) -> float:
        """``abar_t`` as a float; ``abar_{-1} = 1``."""
        return 1.0 if t < 0 else float(self.abar[t])

    # ------------------------------------------------------------------ parametrisations
    def _abar_like(self, t: int | Tensor, like: Tensor) -> Tensor:
        t = torch.as_tensor(t).long()
        a = self.abar[t.clamp(min=0)].where(t >= 0, torch.ones((), dtype=torch.float64))
        a = a.to(device=like.device, dtype=like.dtype)
        return a.reshape(a.shape + (1,) * (like.ndim - a.ndim))

    def predict_x0(self, model_out: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        """Denoised estimate ``x0_hat`` from the network output.

        Parameters
        ----------
        model_out, x_t : tensors of the same shape (batch first when ``t`` is a (B,) tensor).
        t : int, or (B,) int tensor of training timesteps.
        """
        if self.prediction == "x0":
            x0 = model_out
        elif self.prediction == "epsilon":
            a = self._abar_like(t, x_t)
            x0 = (x_t - (1 - a).sqrt() * model_out) / a.sqrt()
        else:  # v = sqrt(a) eps - sqrt(1 - a) x0  =>  x0 = sqrt(a) x_t - sqrt(1 - a) v
            a = self._abar_like(t, x_t)
            x0 = a.sqrt() * x_t - (1 - a).sqrt() * model_out
        if self.clip is not None:
            x0 = x0.clamp(*self.clip)
        return x0

    def predict_eps(self, x0_hat: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        """The noise implied by ``x0_hat``: ``(x_t - sqrt(abar_t) x0_hat) / sqrt(1 - abar_t)``."""
        a = self._abar_like(t, x_t)
        return (x_t - a.sqrt() * x0_hat) / (1 - a).sqrt()

    # ------------------------------------------------------------------ one step
    def step(
        self,
        x0_hat: Tensor,
        x_t: Tensor,
        t: int,
        t_prev: int,
        generator: torch.Generator | None = None,
        *,
        noise: Tensor | None = None,
        eps: Tensor | None = None,
    ) -> Tensor:
        """One reverse step ``x_t -> x_{t_prev}`` given the (possibly physics-corrected) ``x0_hat``.

        Parameters
        ----------
        x0_hat, x_t : tensors of the same shape and dtype.
        t, t_prev : training timesteps with ``-1 <= t_prev < t``.
        generator : draws the fresh noise of stochastic steps (on the generator's device, then
            moved to ``x_t``'s device, so a CPU generator gives the same noise on every device).
        noise : optional explicit standard-normal noise (then ``generator`` is not used).
        eps : DDIM only: the noise estimate to carry to ``t_prev`` instead of the one implied by
            ``x0_hat``. When a physics step has corrected ``x0_hat`` by ``delta``, the implied
            noise absorbs ``-sqrt(abar_t / (1 - abar_t)) delta`` and the DDIM update cancels the
            correction to first order (its coefficient ``sqrt(abar_prev) - sqrt(abar_t (1 -
            abar_prev) / (1 - abar_t))`` vanishes as ``t_prev -> t``); passing the network's own
            estimate keeps it (decomposed diffusion sampling, Chung, Lee & Ye, ICLR 2024).
            DDPM's posterior mean is written in ``x0_hat`` and ``x_t`` and ignores it.

        Returns
        -------
        x_{t_prev} : same shape and dtype as ``x_t``. No noise is drawn when the step is
        deterministic (DDIM with ``eta = 0``, or ``t_prev = -1``).
        """
        t, t_prev = int(t), int(t_prev)
        if not -1 <= t_prev < t < self.num_train_timesteps:
            raise ValueError(f"step: expected -1 <= t_prev < t < {self.num_train_timesteps}, got t={t}, t_prev={t_prev}")
        a_t, a_prev = self.abar_at(t), self.abar_at(t_prev)
        if self.method == "ddpm":
            beta = 1.0 - a_t / a_prev
            c_x0 = math.sqrt(a_prev) * beta / (1.0 - a_t)
            c_xt = math.sqrt(1.0 - beta) * (1.0 - a_prev) / (1.0 - a_t)
            var = beta * (1.0 - a_prev) / (1.0 - a_t)
            mean = c_x0 * x0_hat + c_xt * x_t
        else:
            var = self.eta ** 2 * (1.0 - a_prev) / (1.0 - a_t) * (1.0 - a_t / a_prev)
            if eps is None:
                eps = (x_t - math.sqrt(a_t) * x0_hat) / math.sqrt(1.0 - a_t)
            mean = math.sqrt(a_prev) * x0_hat + math.sqrt(max(1.0 - a_prev - var, 0.0)) * eps
        if var <= 0.0:
            return mean
        if noise is None:
            noise = _randn(x_t, generator)
        return mean + math.sqrt(var) * noise

    # ------------------------------------------------------------------ whole chain
    def sample(
        self,
        denoise_fn: DenoiseFn,
        shape: Sequence[int],
        num_steps: int,
        generator: torch.Generator,
        callback: Callback | None = None,
        *,
        x_T: Tensor | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        progress: bool = False,
    ) -> Tensor:
        """Run the reverse chain from pure noise.

        Parameters
        ----------
        denoise_fn : ``denoise_fn(x_t, t) -> x0_hat`` with ``t`` a Python int (already converted
            from the network output, e.g. :meth:`paperlib.diffusion.partition.PartitionedPrior.denoise`).
        shape : shape of ``x_T`` (e.g. ``(D, H, W)``).
        num_steps : number of network evaluations (see :meth:`timesteps`).
        generator : source of the initial noise and of every stochastic step.
        callback : ``callback(x0_hat, t) -> x0_hat``, applied after every network call; DART puts
            the physics step (paper Eq. 4 / 5) here. It is also applied at the last step, so the
            returned sample is the output of the callback at ``t = 0``. DDIM steps carry the
            network's noise estimate (see ``eps`` in :meth:`step`).
        x_T : optional starting point instead of fresh noise.

        Returns
        -------
        x_0 : tensor of ``shape``.
        """
        x = _randn_shape(tuple(shape), generator, dtype, device) if x_T is None else x_T
        for t, t_prev in tqdm(self.pairs(num_steps), desc="sampling", disable=not progress, leave=False):
            x0_hat = denoise_fn(x, t)
            eps = None
            if callback is not None:
                eps = self.predict_eps(x0_hat, x, t)
                x0_hat = callback(x0_hat, t)
            x = self.step(x0_hat, x, t, t_prev, generator, eps=eps)
        return x


def _randn_shape(shape: tuple[int, ...], generator: torch.Generator | None, dtype: torch.dtype,
                 device: torch.device | str | None) -> Tensor:
    gen_device = generator.device if generator is not None else torch.device("cpu")
    z = torch.randn(shape, generator=generator, dtype=dtype, device=gen_device)
    return z if device is None else z.to(device)


def _randn(like: Tensor, generator: torch.Generator | None) -> Tensor:
    return _randn_shape(tuple(like.shape), generator, like.dtype, like.device)
