"""Noise schedules of the DDPM forward process, as pure functions.

The forward process (paper Eq. 1; Ho et al. 2020, Eq. 4) is

    x_t = sqrt(abar_t) * x_0 + sqrt(1 - abar_t) * z,    z ~ N(0, I),

with ``abar_t = prod_{s <= t} (1 - beta_s)``. Timesteps are integers ``t = 0 .. T-1``: ``t = 0``
is the least noisy step, ``t = T - 1`` is (almost) pure noise. Schedules are computed in float64
and cast at the point of use.

References: Ho, Jain, Abbeel (2020) "Denoising Diffusion Probabilistic Models" (linear schedule);
Nichol, Dhariwal (2021) "Improved DDPM" (cosine schedule).

>>> betas = linear_betas(1000)
>>> betas.shape, betas.dtype
(torch.Size([1000]), torch.float64)
>>> abar = alphas_cumprod(cosine_betas(1000))
>>> bool(abar[0] > 0.99), bool(abar[-1] < 1e-3)
(True, True)
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import Tensor

ScheduleKind = Literal["linear", "cosine"]


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> Tensor:
    """Linear beta schedule of Ho et al. (2020), rescaled to ``num_timesteps``.

    The end points (1e-4, 0.02) are those of the 1000-step schedule; for other lengths they are
    scaled by ``1000 / num_timesteps`` so that the total noise added stays comparable.

    Returns
    -------
    betas : (T,) float64 tensor in (0, 1).
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps: expected >= 1, got {num_timesteps}")
    scale = 1000.0 / num_timesteps
    return torch.linspace(beta_start * scale, min(beta_end * scale, 0.999), num_timesteps, dtype=torch.float64)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Cosine schedule of Nichol & Dhariwal (2021): ``abar(t) ~ cos^2((t/T + s)/(1 + s) * pi/2)``.

    Returns
    -------
    betas : (T,) float64 tensor, clipped to at most ``max_beta``.
    """
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps: expected >= 1, got {num_timesteps}")
    steps = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = 1 - abar[1:] / abar[:-1]
    return betas.clamp(max=max_beta)


def alphas_cumprod(betas: Tensor) -> Tensor:
    """``abar_t = prod_{s <= t} (1 - beta_s)``; (T,) float64."""
    return torch.cumprod(1.0 - betas.to(torch.float64), dim=0)


def make_betas(kind: ScheduleKind, num_timesteps: int) -> Tensor:
    """Betas of a named schedule (``"linear"`` or ``"cosine"``)."""
    if kind == "linear":
        return linear_betas(num_timesteps)
    if kind == "cosine":
        return cosine_betas(num_timesteps)
    raise ValueError(f"schedule kind: expected 'linear' or 'cosine', got {kind!r}")


def _gather(values: Tensor, t: Tensor, ndim: int, like: Tensor) -> Tensor:
    """``values[t]`` reshaped to broadcast against a tensor with ``ndim`` dims (batch first)."""
    t = torch.as_tensor(t, device=values.device).long()
    out = values[t].to(device=like.device, dtype=like.dtype)
    return out.reshape(out.shape + (1,) * (ndim - out.ndim))


def q_sample(x0: Tensor, t: Tensor | int, noise: Tensor, abar: Tensor) -> Tensor:
    """Draw ``x_t`` from ``q(x_t | x_0)`` (paper Eq. 1) given the noise.

    Parameters
    ----------
    x0 : (B, ...) clean data, any float dtype.
    t : int or (B,) integer timesteps in ``[0, T)``.
    noise : same shape as ``x0``, standard normal.
    abar : (T,) cumulative products from :func:`alphas_cumprod`.

    Returns
    -------
    x_t : same shape and dtype as ``x0``.

    >>> abar = alphas_cumprod(linear_betas(10))
    >>> x0 = torch.ones(2, 3); z = torch.zeros(2, 3)
    >>> torch.allclose(q_sample(x0, torch.tensor([0, 9]), z, abar)[:, 0].double(), abar[[0, 9]].sqrt())
    True
    """
    a = _gather(abar, t, x0.ndim, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


@dataclass(frozen=True)
class ScheduleConfig:
    """A named noise schedule (stored in training configs and prior manifests).

    >>> ScheduleConfig("cosine", 100).alphas_cumprod().shape
    torch.Size([100])
    """

    kind: ScheduleKind = "cosine"
    num_timesteps: int = 1000

    def __post_init__(self) -> None:
        if self.kind not in ("linear", "cosine"):
            raise ValueError(f"ScheduleConfig.kind: expected 'linear' or 'cosine', got {self.kind!r}")
        if int(self.num_timesteps) < 1:
            raise ValueError(f"ScheduleConfig.num_timesteps: expected >= 1, got {self.num_timesteps}")

    def betas(self) -> Tensor:
        return make_betas(self.kind, self.num_timesteps)

    def alphas_cumprod(self) -> Tensor:
        return alphas_cumprod(self.betas())

    def to_dict(self) -> dict:
        return asdict(self)
