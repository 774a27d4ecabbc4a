"""Noise schedules and DDPM/DDIM steps, checked against the closed-form Gaussian denoiser."""
from __future__ import annotations

import math

import pytest
import torch

from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import (ScheduleConfig, alphas_cumprod, cosine_betas, linear_betas,
                                          make_betas, q_sample)


pytestmark = pytest.mark.usefixtures("one_thread")


# Two rows of 4000 i.i.d. pixels each: x0 ~ N(mu, s^2) per row.
MU = torch.tensor([0.5, -1.0], dtype=torch.float64)[:, None]
SIGMA = torch.tensor([0.2, 1.5], dtype=torch.float64)[:, None]
N_PIX = 4000


def gaussian_oracle(abar: torch.Tensor):
    """E[x0 | x_t] for x0 ~ N(mu, s^2), x_t = a x0 + b z: mu + a s^2 / (a^2 s^2 + b^2) (x_t - a mu)."""

    def denoise(x_t: torch.Tensor, t: int) -> torch.Tensor:
        a2 = float(abar[t])
        a = math.sqrt(a2)
        return MU + a * SIGMA**2 / (a2 * SIGMA**2 + (1 - a2)) * (x_t - a * MU)

    return denoise


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_schedules_are_valid(kind):
    betas = make_betas(kind, 1000)
    assert betas.dtype == torch.float64 and betas.shape == (1000,)
    assert bool((betas > 0).all() and (betas < 1).all())
    abar = alphas_cumprod(betas)
    assert bool((abar[1:] < abar[:-1]).all())
    assert abar[0] > 0.99 and abar[-1] < 1e-3


def test_schedule_helpers():
    assert torch.allclose(linear_betas(1000)[[0, -1]], torch.tensor([1e-4, 0.02], dtype=torch.float64))
    assert linear_betas(100)[-1] == pytest.approx(0.2)  # rescaled to keep the total noise
    assert cosine_betas(10).max() <= 0.999
    with pytest.raises(ValueError, match="kind"):
        ScheduleConfig("quadratic", 10)
    with pytest.raises(ValueError, match="num_timesteps"):
        linear_betas(0)


def test_q_sample_moments():
    abar = ScheduleConfig("cosine", 100).alphas_cumprod()
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((200_000,), 2.0, dtype=torch.float64)
    t = 40
    xt = q_sample(x0, torch.full((200_000,), t), torch.randn(200_000, generator=g, dtype=torch.float64), abar)
    assert xt.mean().item() == pytest.approx(2 * abar[t].sqrt().item(), abs=0.01)
    assert xt.var().item() == pytest.approx(1 - abar[t].item(), rel=0.02)


@pytest.mark.parametrize(
    "kind, method, eta, steps",
    [("linear", "ddpm", 0.0, 1000), ("cosine", "ddpm", 0.0, 1000),
     ("cosine", "ddim", 0.0, 250), ("linear", "ddim", 0.5, 250)],
)
def test_sampler_driven_by_optimal_denoiser_reproduces_gaussian(kind, method, eta, steps):
    """Tolerance: the mean within 4 standard errors (s / sqrt(4000)), the std within 6 %.

    The residual bias comes from the discretisation (DDPM's posterior variance ignores the
    uncertainty of x0_hat; fewer DDIM steps under-disperse a little); it shrinks with the step count.
    """
    abar = ScheduleConfig(kind, 1000).alphas_cumprod()
    sampler = Sampler(abar, method=method, eta=eta)
    x = sampler.sample(gaussian_oracle(abar), (2, N_PIX), steps, torch.Generator().manual_seed(0),
                       dtype=torch.float64)
    mean, std = x.mean(1, keepdim=True), x.std(1, keepdim=True)
    assert bool(((mean - MU).abs() < 4 * SIGMA / math.sqrt(N_PIX)).all()), (mean.flatten(), MU.flatten())
    assert bool(((std / SIGMA - 1).abs() < 0.06).all()), (std.flatten(), SIGMA.flatten())


def test_ddpm_equals_ddim_with_eta_one():
    abar = ScheduleConfig("cosine", 200).alphas_cumprod()
    oracle = gaussian_oracle(abar)
    a = Sampler(abar, method="ddpm").sample(oracle, (2, 50), 40, torch.Generator().manual_seed(3), dtype=torch.float64)
    b = Sampler(abar, method="ddim", eta=1.0).sample(oracle, (2, 50), 40, torch.Generator().manual_seed(3),
                                                     dtype=torch.float64)
    assert torch.allclose(a, b, atol=1e-12)


def test_timesteps():
    s = Sampler(ScheduleConfig("linear", 1000))
    for n in (1, 2, 7, 50, 999, 1000):
        ts = s.timesteps(n)
        assert len(ts) == n and ts[0] == 999
        assert bool((ts[1:] < ts[:-1]).all())
        if n > 1:
            assert ts[-1] == 0
    assert s.pairs(3) == [(999, 500), (500, 0), (0, -1)]
    with pytest.raises(ValueError, match="num_steps"):
        s.timesteps(1001)


def test_step_details():
    abar = ScheduleConfig("cosine", 100).alphas_cumprod()
    x0, xt = torch.randn(3, 4), torch.randn(3, 4)
    for method in ("ddpm", "ddim"):
        assert torch.equal(Sampler(abar, method=method).step(x0, xt, 5, -1, None), x0)  # last step returns x0_hat
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    Sampler(abar, method="ddim", eta=0.0).step(x0, xt, 50, 10, g)
    assert torch.equal(g.get_state(), state)  # deterministic DDIM draws no noise
    with pytest.raises(ValueError, match="t_prev"):
        Sampler(abar).step(x0, xt, 10, 10, g)


def test_predict_x0_and_eps_are_inverse():
    abar = ScheduleConfig("linear", 100).alphas_cumprod()
    x0, eps = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    t = torch.tensor([3, 77])
    xt = q_sample(x0, t, eps, abar)
    s_eps = Sampler(abar, prediction="epsilon")
    assert torch.allclose(s_eps.predict_x0(eps, xt, t), x0)
    assert torch.allclose(s_eps.predict_eps(x0, xt, t), eps)
    assert torch.equal(Sampler(abar, prediction="x0").predict_x0(x0, xt, t), x0)
    assert Sampler(abar, clip=(0.0, 1.0)).predict_x0(x0, xt, t).max() <= 1.0


def test_v_prediction_round_trip_and_training_target():
    """v = sqrt(abar) eps - sqrt(1 - abar) x0: predict_x0(v) recovers x0, and train uses that v as target."""
    from paperlib.diffusion.train import _target

    abar = ScheduleConfig("cosine", 100).alphas_cumprod()
    x0, eps = torch.randn(2, 3, 5, dtype=torch.float64), torch.randn(2, 3, 5, dtype=torch.float64)
    t = torch.tensor([2, 90])
    xt = q_sample(x0, t, eps, abar)
    a = abar[t][:, None, None]
    v = a.sqrt() * eps - (1 - a).sqrt() * x0
    assert torch.allclose(_target("v", x0, eps, abar[t]), v)
    assert torch.equal(_target("x0", x0, eps, abar[t]), x0) and torch.equal(_target("epsilon", x0, eps, abar[t]), eps)
    s_v = Sampler(abar, prediction="v")
    assert torch.allclose(s_v.predict_x0(v, xt, t), x0)
    assert torch.allclose(s_v.predict_x0(v[1], xt[1], 90), x0[1])  # scalar t
    with pytest.raises(ValueError, match="prediction"):
        Sampler(abar, prediction="score")


def test_callback_sees_every_step_and_shapes_the_result():
    abar = ScheduleConfig("cosine", 100).alphas_cumprod()
    seen = []

    def physics(x0_hat, t):
        seen.append(t)
        return torch.full_like(x0_hat, 0.25)  # e.g. a hard data-consistency projection

    x = Sampler(abar, method="ddpm").sample(lambda x, t: x, (4, 4), 10, torch.Generator().manual_seed(0), physics)
    assert seen == Sampler(abar).timesteps(10).tolist()
    assert torch.allclose(x, torch.full((4, 4), 0.25))
