"""DART, DRIFT and the projection-based method: an analytic Gaussian check, the selection rule,
error handling, and the registered methods on the ci prior."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from paperlib.config import load_profile
from paperlib.diffusion.partition import PartitionedPrior
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.io import InputValidationError
from paperlib.physics.mri import MRIOperator, fft2c, ifft2c
from paperlib.recon.dart import dart, physics_callback
from paperlib.recon.drift import drift, image_ssim, select_per_group
from paperlib.recon.projection import projection_sampling


class GaussianDenoiser(nn.Module):
    """Exact E[x0 | x_t] for x0 ~ N(mu, s^2 I): mu + sqrt(a) s^2 / (a s^2 + 1 - a) (x_t - sqrt(a) mu)."""

    def __init__(self, abar: torch.Tensor, mu: torch.Tensor, s: float) -> None:
        super().__init__()
        self.register_buffer("abar", abar.double())
        self.register_buffer("mu", mu.double())  # (d, H, W): this group's slices
        self.s2 = s * s

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        a = self.abar[t].reshape(-1, 1, 1, 1, 1)
        x = x_t.double()
        gain = a.sqrt() * self.s2 / (a * self.s2 + 1 - a)
        return (self.mu + gain * (x - a.sqrt() * self.mu)).to(x_t.dtype)


def _gaussian_prior(mu: torch.Tensor, s: float, groups: int = 2) -> PartitionedPrior:
    sampler = Sampler(ScheduleConfig("cosine", 200), method="ddim", prediction="x0")
    size = mu.shape[0] // groups
    models = [GaussianDenoiser(sampler.abar, mu[g * size:(g + 1) * size], s) for g in range(groups)]
    return PartitionedPrior(models, sampler, size)


def _hermitian_mask(depth: int, n: int) -> torch.Tensor:
    """Column mask symmetric under f -> -f (index i <-> 2*(n//2) - i mod n): a real image's
    sampled k-space then stays Hermitian, so the real-part projection of Eq. 4 is exact."""
    c = n // 2
    cols = torch.zeros(n, dtype=torch.bool)
    for i in (c, c - 1, c + 1, 1):
        cols[i] = cols[(2 * c - i) % n] = True
    return cols.expand(depth, n, n).clone()



def _gaussian_problem(seed: int, s: float, depth: int = 2, n: int = 8):
    """A linear Gaussian MRI problem: a random mean image ``mu``, a truth drawn around it with
    std ``s``, its k-space on a Hermitian mask, the isotropic Gaussian prior, and the posterior
    mean (measured coefficients kept, unmeasured ones from ``mu``)."""
    g = torch.Generator().manual_seed(seed)
    mu = 0.5 + 0.2 * torch.rand(depth, n, n, generator=g, dtype=torch.float64)
    x_true = mu + s * torch.randn(depth, n, n, generator=g, dtype=torch.float64)
    op = MRIOperator(_hermitian_mask(depth, n))
    y = op.forward(x_true)
    expected = ifft2c(y + (~op.mask) * fft2c(mu)).real
    return op, y, _gaussian_prior(mu, s), expected

def test_dart_mean_matches_the_gaussian_posterior_mean():
    """Linear Gaussian MRI problem, x ~ N(mu, s^2 I), noiseless y = M F x, exact denoiser.

    The posterior keeps the measured k-space and the prior mean elsewhere, so its mean is
    F^-1(M y + (1 - M) F mu). DART with hard data consistency (lambda = 1) and DDIM carrying
    the network's noise estimate leaves the unmeasured coefficients on the unconditional
    (mean-preserving) path, so the mean of B runs must match it up to Monte-Carlo error:
    tolerance = 5 standard errors per pixel (max) and 1.5 standard errors (RMS), with the
    standard error sqrt(s^2 (1 - sampled fraction) / B). (An isotropic prior decouples the
    k-space coefficients, so this holds whether or not DDIM carries the network's noise
    estimate; :func:`test_ddim_step_carries_the_given_noise_estimate` checks that part.)
    """
    s, runs = 0.3, 300
    op, y, prior, expected = _gaussian_problem(0, s)

    outs = torch.stack([dart(prior, op, y, generator=torch.Generator().manual_seed(r), num_steps=8)
                        for r in range(runs)]).double()
    stderr = s * math.sqrt((1 - op.sampled_fraction) / runs)
    err = outs.mean(0) - expected
    assert float(err.abs().max()) < 5 * stderr
    assert float(err.pow(2).mean().sqrt()) < 1.5 * stderr
    # every run is data-consistent, and the unmeasured part really varies (not a collapse to the mean)
    assert torch.allclose(op.forward(outs[0]), y, atol=1e-5)
    assert float(outs.std(0).mean()) > 0.3 * s


def test_dart_samples_returns_the_mean_of_a_batch_of_samples():
    """``samples=K`` is the mean of K DART samples drawn as one batch: on the linear Gaussian
    problem it is the posterior mean up to Monte-Carlo error with K runs (the same bound as
    above), data-consistent, and far closer to it than one sample."""
    s, k = 0.3, 200
    op, y, prior, expected = _gaussian_problem(1, s)
    mean = dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=8, samples=k).double()
    single = dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=8).double()
    stderr = s * math.sqrt((1 - op.sampled_fraction) / k)
    assert mean.shape == (2, 8, 8)  # _gaussian_problem: depth 2, 8 x 8
    assert float((mean - expected).abs().max()) < 5 * stderr
    assert float((single - expected).pow(2).mean()) > 20 * float((mean - expected).pow(2).mean())
    assert torch.allclose(op.forward(mean), y, atol=1e-5)
    with pytest.raises(ValueError, match="samples"):
        dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=2, samples=0)


def test_dart_stop_returns_the_corrected_denoised_estimate_at_that_timestep():
    """``stop > 0`` ends the chain at ``t_stop`` and returns Eq. 4 applied to the denoiser's
    estimate there. On the linear Gaussian problem that estimate keeps the measured k-space and,
    elsewhere, ``mu + g (x_t - sqrt(a) mu)``: unbiased around the posterior mean with per-pixel
    variance ``a s^4 / (a s^2 + 1 - a)`` over the unmeasured fraction (``a = abar_{t_stop}``),
    far below a full sample's ``s^2``. Checked over runs: the mean, the variance (within 25 %),
    data consistency, and that the timesteps end at ``t_stop``."""
    s, runs, stop = 0.3, 200, 0.5
    op, y, prior, expected = _gaussian_problem(2, s)
    outs = torch.stack([dart(prior, op, y, generator=torch.Generator().manual_seed(r), num_steps=6, stop=stop)
                        for r in range(runs)]).double()
    t_stop = round(stop * prior.sampler.num_train_timesteps)
    assert prior.sampler.pairs(6, 199, t_stop)[-1] == (t_stop, -1)
    a = prior.sampler.abar_at(t_stop)
    var = a * s ** 4 / (a * s ** 2 + 1 - a) * (1 - op.sampled_fraction)
    err = outs - expected
    assert float(err.mean(0).pow(2).mean().sqrt()) < 1.5 * math.sqrt(var / runs) / math.sqrt(1 - op.sampled_fraction)
    assert abs(float(err.pow(2).mean()) / var - 1) < 0.25
    assert var < 0.25 * s ** 2 * (1 - op.sampled_fraction)
    assert torch.allclose(op.forward(outs[0]), y, atol=1e-5)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(InputValidationError, match="stop"):
            dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=2, stop=bad)
    with pytest.raises(InputValidationError, match="num_steps"):
        dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=150, stop=0.5)


def test_ddim_step_carries_the_given_noise_estimate():
    sampler = Sampler(ScheduleConfig("cosine", 100), method="ddim")
    g = torch.Generator().manual_seed(5)
    x0, x_t, eps = (torch.randn(3, 4, 4, generator=g, dtype=torch.float64) for _ in range(3))
    a_prev = sampler.abar_at(40)
    got = sampler.step(x0, x_t, 60, 40, eps=eps)
    assert torch.allclose(got, math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps)
    # without eps the implied noise is used, and a correction of x0 mostly cancels
    delta = torch.randn(3, 4, 4, generator=g, dtype=torch.float64)
    implied = sampler.step(x0 + delta, x_t, 60, 58) - sampler.step(x0, x_t, 60, 58)
    carried = sampler.step(x0 + delta, x_t, 60, 58, eps=eps) - sampler.step(x0, x_t, 60, 58, eps=eps)
    assert float(implied.norm()) < 0.1 * float(carried.norm())


def test_projection_sampling_is_data_consistent_and_seeded():
    g = torch.Generator().manual_seed(1)
    mu = torch.rand(2, 8, 8, generator=g, dtype=torch.float64)
    op = MRIOperator(_hermitian_mask(2, 8))
    y = op.forward(mu + 0.1 * torch.randn(2, 8, 8, generator=g, dtype=torch.float64))
    prior = _gaussian_prior(mu, 0.3)
    a = projection_sampling(prior, op, y, generator=torch.Generator().manual_seed(3), num_steps=6)
    b = projection_sampling(prior, op, y, generator=torch.Generator().manual_seed(3), num_steps=6)
    assert torch.equal(a, b)
    assert torch.allclose(op.forward(a.double()), y, atol=1e-5)


def test_drift_selects_the_candidate_closest_to_the_measurement_per_group():
    g = torch.Generator().manual_seed(2)
    truth = torch.rand(4, 16, 16, generator=g)
    op = MRIOperator(_hermitian_mask(4, 16))
    y = op.forward(truth)
    noise = lambda: torch.rand(4, 16, 16, generator=g)  # noqa: E731
    c0, c1, c2 = noise(), noise(), noise()
    c0[:2] = truth[:2]  # group 0 right in candidate 0
    c2[2:] = truth[2:]  # group 1 right in candidate 2
    volume, choice, scores = select_per_group(op, y, torch.stack([c0, c1, c2]), 2)
    assert choice.tolist() == [0, 2]
    assert torch.equal(volume, truth)
    assert scores.shape == (3, 2)


class _ProjectionOperator:
    """A slice-coupling toy operator: the measurement is the sum over slices (like a projection).

    Linear, with ``A A^H = D I``, so its physics step with step size 1,
    ``x - A^H (A x - y) / D``, is the projection onto ``A x = y``: every capability declared."""

    slice_local = False
    supports_support = False
    is_linear = True
    projects = True

    def __init__(self, depth: int = 4, *, linear: bool = True) -> None:
        self.depth = depth
        self.is_linear = self.projects = linear
        self.adjoint = self._adjoint if linear else None

    def forward(self, x):
        return x.sum(dim=-3)

    def _adjoint(self, y):
        return y[..., None, :, :].expand(*y.shape[:-2], self.depth, *y.shape[-2:])

    def measurement_image(self, y):
        return y

    def physics_step(self, x, y, step_size=1.0):
        return x - step_size * (self.forward(x) - y)[..., None, :, :] / x.shape[-3]

    def volume_shape(self, y):
        return (self.depth, *y.shape[-2:])

    def periodic_scan_step(self):
        return None


def test_projection_sampling_reads_the_linearity_declaration():
    """Any operator declaring ``is_linear`` runs (not only MRI); one declaring it False is refused
    with an error naming the declaration."""
    from paperlib.physics.base import Operator

    g = torch.Generator().manual_seed(6)
    mu = torch.rand(4, 8, 8, generator=g, dtype=torch.float64)
    op = _ProjectionOperator(4)
    assert isinstance(op, Operator)
    y = op.forward(mu + 0.2 * torch.randn(4, 8, 8, generator=g, dtype=torch.float64))
    x = projection_sampling(_gaussian_prior(mu, 0.3), op, y, generator=torch.Generator().manual_seed(0), num_steps=4)
    assert torch.allclose(op.forward(x.double()), y, atol=1e-4)
    with pytest.raises(InputValidationError, match="projects False"):
        projection_sampling(_gaussian_prior(mu, 0.3), _ProjectionOperator(4, linear=False), y,
                            generator=torch.Generator().manual_seed(0), num_steps=4)


def test_drift_coupled_selection_assembles_groups_by_the_whole_object_score():
    g = torch.Generator().manual_seed(4)
    truth = torch.rand(4, 16, 16, generator=g)
    op = _ProjectionOperator()
    y = op.forward(truth)
    c0 = torch.rand(4, 16, 16, generator=g)
    c1 = torch.rand(4, 16, 16, generator=g)
    c0[:2], c1[2:] = truth[:2], truth[2:]
    volume, choice, scores = select_per_group(op, y, torch.stack([c0, c1]), 2)
    assert choice.tolist() == [0, 1]
    assert torch.equal(volume, truth)
    assert scores.shape == (2, 1)


def test_image_ssim_small_images_and_errors():
    ref = torch.rand(8, 8, generator=torch.Generator().manual_seed(0))
    vals = image_ssim(torch.stack([ref, ref.flip(0)]), ref)
    assert vals.shape == (2,) and vals[0] == pytest.approx(1.0, abs=1e-5) and vals[1] < 0.9
    with pytest.raises(InputValidationError, match="images"):
        image_ssim(torch.rand(2, 7, 7), ref)


def test_dart_rejects_bad_input():
    mu = torch.zeros(2, 8, 8, dtype=torch.float64)
    prior = _gaussian_prior(mu, 0.3)
    op3 = MRIOperator(torch.ones(3, 8, 8, dtype=torch.bool))
    with pytest.raises(InputValidationError, match="depth 3"):
        dart(prior, op3, torch.zeros(3, 8, 8, dtype=torch.complex64), generator=torch.Generator())
    op = MRIOperator(torch.ones(2, 8, 8, dtype=torch.bool))
    y = torch.zeros(2, 8, 8, dtype=torch.complex64)
    with pytest.raises(InputValidationError, match="init"):
        dart(prior, op, y, generator=torch.Generator(), start=0.5)
    with pytest.raises(ValueError, match="start"):
        dart(prior, op, y, generator=torch.Generator(), start=0.0)
    with pytest.raises(ValueError, match="n_candidates"):
        drift(prior, op, y, generator=torch.Generator(), n_candidates=0)
    with pytest.raises(ValueError, match="steps"):
        physics_callback(op, y, steps=-1)


def test_registered_methods_run_on_the_ci_prior():
    """DART, DRIFT and the projection method through the registry on a ci case: right shape,
    finite, measured k-space honoured, reproducible per seed."""
    from paperlib.experiments import mri as mri_exp

    torch.set_num_threads(1)
    cfg = load_profile("ci")
    case = mri_exp.mri_cases(cfg, split="val", n=1)[0]
    for name in ("dart", "drift", "projection"):
        fn = mri_exp.MRI_METHODS[name].fn
        a = fn(case.operator, case.kspace, cfg, torch.Generator().manual_seed(0))
        b = fn(case.operator, case.kspace, cfg, torch.Generator().manual_seed(0))
        assert a.shape == case.image.shape and torch.isfinite(a).all(), name
        assert torch.equal(a, b), name
        # Eq. 4 with lambda = 1 as the last step: the measured k-space of the real part matches
        # the measurement up to the Hermitian part the real projection removes
        resid = (case.operator.forward(a) - case.kspace).abs().pow(2).sum().sqrt()
        assert float(resid) < 0.5 * float(case.kspace.abs().pow(2).sum().sqrt()), name


def test_drift_translation_search_undoes_whole_scan_step_shifts():
    """A crystal rolled by whole scan steps is rolled back exactly: its bright-field image is the
    measured one rolled, and the search scores every roll of it."""
    from paperlib.experiments import stem as stem_exp
    from paperlib.recon.drift import align_translations

    torch.set_num_threads(1)
    case = stem_exp.stem_cases(load_profile("ci"), split="val", n=1)[0]
    op, V = case.operator, case.potential
    py, px = op.periodic_scan_step()
    assert (py, px) == (4, 4)
    shifted = torch.stack([torch.roll(V, (py, -2 * px), dims=(-2, -1)), torch.roll(V, (3 * py, 0), dims=(-2, -1))])
    aligned, shifts, images = align_translations(op, case.intensities, shifted / 250.0, scale=250.0)
    assert torch.allclose(aligned * 250.0, V.expand(2, -1, -1, -1), atol=1e-4)
    # the returned images are those of the aligned candidates (rolled, not re-simulated)
    simulated = torch.stack([op.measurement_image(op.forward(v)) for v in aligned * 250.0])
    assert torch.allclose(images, simulated, atol=1e-5)
    assert shifts.tolist() in ([[-py, 2 * px], [-3 * py, 0]], [[op.gpts[0] - py, 2 * px], [op.gpts[0] - 3 * py, 0]])
    with pytest.raises(InputValidationError, match="periodic"):
        align_translations(MRIOperator(torch.ones(2, 8, 8, dtype=torch.bool)), torch.zeros(2, 8, 8), torch.zeros(1, 2, 8, 8))


def test_drift_keeps_the_selected_samples_vacuum_slices_empty():
    """With ``vacuum_threshold`` the K physics steps leave the slices the selection left empty at
    exactly 0 and refine the others; without it they fill every slice."""
    from paperlib.experiments import stem as stem_exp
    from paperlib.recon.drift import drift

    torch.set_num_threads(1)
    cfg = load_profile("ci")
    case = stem_exp.stem_cases(cfg, split="val", n=1)[0]
    prior, scale = stem_exp._stem_prior(cfg), cfg.stem_prior.data_scale
    kw = dict(n_candidates=2, num_steps=2, scale=scale, step_kwargs={"threshold": 0.05, "nonnegative": True})
    first = drift(prior, case.operator, case.intensities, generator=torch.Generator().manual_seed(0),
                  physics_steps=0, **kw)
    means = first.initial.mean(dim=(1, 2)).sort().values
    threshold = float(means[len(means) // 2 - 1] + means[len(means) // 2]) / 2  # half the slices "vacuum"
    vacuum = first.initial.mean(dim=(1, 2)) < threshold
    free = drift(prior, case.operator, case.intensities, generator=torch.Generator().manual_seed(0),
                 physics_steps=3, **kw)
    kept = drift(prior, case.operator, case.intensities, generator=torch.Generator().manual_seed(0),
                 physics_steps=3, vacuum_threshold=threshold, **kw)
    assert torch.equal(kept.initial, first.initial) and torch.equal(free.initial, first.initial)
    assert bool((kept.volume[vacuum] == 0).all()) and bool((kept.volume[~vacuum] != 0).any())
    assert bool((free.volume[vacuum] != 0).any())
    with pytest.raises(InputValidationError, match="vacuum_threshold"):
        drift(prior, case.operator, case.intensities, generator=torch.Generator().manual_seed(0),
              physics_steps=1, vacuum_threshold=float(means[-1]) + 1.0, **kw)
    with pytest.raises(InputValidationError, match="no slice support"):  # MRI's Eq. 4 has none
        drift(_gaussian_prior(torch.zeros(4, 8, 8), 1.0), MRIOperator(torch.ones(4, 8, 8, dtype=torch.bool)),
              torch.zeros(4, 8, 8, dtype=torch.complex64), generator=torch.Generator().manual_seed(0),
              n_candidates=1, num_steps=1, vacuum_threshold=1.0)


def _lasso(seed: int = 0):
    """A non-negative lasso ``min 1/2 ||A x - b||^2 + tau ||x||_1, x >= 0`` and its proximal-gradient step
    at ``1 / L``: the convex case of the 4D-STEM physics step (gradient step, soft threshold, V >= 0)."""
    from paperlib.physics.multislice import soft_threshold

    g = torch.Generator().manual_seed(seed)
    decay = torch.diag(torch.logspace(0, -2, 40, dtype=torch.float64))  # ill-conditioned columns
    A = torch.randn(60, 40, generator=g, dtype=torch.float64) @ decay
    b = A @ torch.rand(40, generator=g, dtype=torch.float64)
    mu, tau = 1.0 / float(torch.linalg.matrix_norm(A, 2)) ** 2, 1e-3

    def objective(x):
        return float(0.5 * (A @ x - b).square().sum() + tau * x.abs().sum())

    def step(x):
        return soft_threshold(x - mu * A.T @ (A @ x - b), mu * tau, nonnegative=True)

    return step, objective


def test_accelerated_steps_reach_the_plain_steps_minimum_in_fewer_steps():
    from paperlib.recon.dart import accelerated_steps

    step, objective = _lasso()
    x0 = torch.zeros(40, dtype=torch.float64)

    def plain(k):
        x = x0
        for _ in range(k):
            x = step(x)
        return x

    best = objective(accelerated_steps(step, x0, 5000))
    for k in (10, 30, 100):  # ahead of the plain steps at every count
        assert objective(accelerated_steps(step, x0, k)) < objective(plain(k))
    # 100 accelerated steps get closer to the minimum than 1000 plain ones (ill-conditioned A)
    assert objective(accelerated_steps(step, x0, 100)) - best < objective(plain(1000)) - best
    assert best <= objective(plain(5000)) + 1e-12
    assert torch.equal(accelerated_steps(step, x0, 1), step(x0)) and torch.equal(accelerated_steps(step, x0, 0), x0)


def test_physics_callback_momentum_switch():
    """``step_kwargs["momentum"]`` is the callback's: False is the plain loop bit for bit, True runs
    :func:`accelerated_steps` (on the 4D-STEM ci crystal it fits the data better in as many steps),
    anything else is named."""
    from paperlib.experiments import stem as stem_exp

    torch.set_num_threads(1)
    case = stem_exp.stem_cases(load_profile("ci"), split="val", n=1)[0]
    op, y = case.operator, case.intensities
    kw = {"threshold": 0.01, "nonnegative": True}
    start = torch.zeros(op.shape)
    plain = physics_callback(op, y, steps=8, step_kwargs=kw)(start, 0)
    assert torch.equal(physics_callback(op, y, steps=8, step_kwargs={**kw, "momentum": False})(start, 0), plain)
    fast = physics_callback(op, y, steps=8, step_kwargs={**kw, "momentum": True})(start, 0)
    assert not torch.equal(fast, plain)
    assert float(op.loss(fast, y)) < float(op.loss(plain, y))
    with pytest.raises(InputValidationError, match="momentum: expected True or False"):
        physics_callback(op, y, steps=1, step_kwargs={"momentum": "yes"})


def test_dart_plug_and_play_matches_the_closed_form_on_the_gaussian_problem():
    """``levels=(σ_max, σ_min)``: each step denoises the corrected estimate itself at the level
    σ_k (no noise drawn) and Eq. 4 (λ = 1) puts the measurement back. With the exact Gaussian
    denoiser ``D_σ(x) = mu + s^2 / (s^2 + σ^2) (x - mu)`` every k-space coefficient is on its own:
    the measured ones equal ``y``, the others end at ``mu + prod_k g_k (init - mu)`` with
    ``g_k = s^2 / (s^2 + σ_k^2)`` and ``σ_k`` the noise level of the timestep the step takes.
    The result does not depend on the generator."""
    from paperlib.recon.dart import plug_and_play_timesteps

    s = 0.3
    op, y, prior, _ = _gaussian_problem(3, s)
    mu = torch.cat([m.mu for m in prior.models])
    init = op.zero_filled(y).real
    levels, steps = (0.5, 0.05), 7
    ts = plug_and_play_timesteps(prior, levels, steps)
    abar = prior.sampler.abar.double()
    gain = math.prod(s * s / (s * s + float((1 - abar[t]) / abar[t])) for t in ts)
    expected = ifft2c(y + (~op.mask) * (fft2c(mu) + gain * (fft2c(init.double()) - fft2c(mu)))).real
    out = dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=steps, init=init, levels=levels)
    again = dart(prior, op, y, generator=torch.Generator().manual_seed(99), num_steps=steps, init=init, levels=levels)
    assert torch.equal(out, again)
    assert torch.allclose(out.double(), expected, atol=1e-5)
    assert torch.allclose(op.forward(out.double()), y, atol=1e-5)
    assert 0.01 < gain < 0.99  # the levels are neither negligible nor overwhelming here


#: the 8 in-plane orientations as paperlib.recon.dart.in_plane_transform documents them (bit 0 flips H,
#: bit 1 flips W, bit 2 transposes after the flips), each with its inverse, written out here
_ORIENTATIONS = [
    (lambda x: x, lambda x: x),
    (lambda x: x.flip(-2), lambda x: x.flip(-2)),
    (lambda x: x.flip(-1), lambda x: x.flip(-1)),
    (lambda x: x.flip(-2).flip(-1), lambda x: x.flip(-1).flip(-2)),
    (lambda x: x.transpose(-1, -2), lambda x: x.transpose(-1, -2)),
    (lambda x: x.flip(-2).transpose(-1, -2), lambda x: x.transpose(-1, -2).flip(-2)),
    (lambda x: x.flip(-1).transpose(-1, -2), lambda x: x.transpose(-1, -2).flip(-1)),
    (lambda x: x.flip(-2).flip(-1).transpose(-1, -2), lambda x: x.transpose(-1, -2).flip(-1).flip(-2)),
]


def test_in_plane_transform_is_the_documented_group_element():
    from paperlib.recon.dart import in_plane_transform

    x = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
    for g, (forward, inverse) in enumerate(_ORIENTATIONS):
        assert torch.equal(in_plane_transform(x, g), forward(x))
        assert torch.equal(in_plane_transform(forward(x), g, inverse=True), inverse(forward(x)))
        assert torch.equal(inverse(forward(x)), x)
    for bad in (8, -1, 1.0, True, "0"):
        with pytest.raises(ValueError, match="g: expected an integer in 0..7"):
            in_plane_transform(x, bad)


def test_dart_self_ensemble_denoises_step_k_in_the_k_mod_8_orientation():
    """``self_ensemble=True``: step ``k`` hands ``g(x)`` to the network and turns its output back
    with ``g^-1``, ``g`` the ``k mod 8``-th orientation. For the exact Gaussian denoiser of mean
    ``mu`` that is the Gaussian denoiser of mean ``g^-1(mu)``: the reference below runs that loop
    (the orientations written out in ``_ORIENTATIONS``). A mean the 8 orientations leave unchanged
    gives the plain result; a generic one does not."""
    from paperlib.recon.dart import plug_and_play_timesteps

    s, steps, levels = 0.3, 11, (0.5, 0.05)
    op, y, prior, _ = _gaussian_problem(6, s)
    mu = torch.cat([m.mu for m in prior.models])
    init = op.zero_filled(y).real
    abar = prior.sampler.abar.double()
    x = init.double()
    for k, t in enumerate(plug_and_play_timesteps(prior, levels, steps)):
        c = s * s / (s * s + float((1 - abar[t]) / abar[t]))
        m = _ORIENTATIONS[k % 8][1](mu)
        x = ifft2c(op.mask * y + (~op.mask) * fft2c(m + c * (x - m))).real
    kw = dict(generator=torch.Generator().manual_seed(0), num_steps=steps, init=init, levels=levels)
    turned = dart(prior, op, y, self_ensemble=True, **kw)
    plain = dart(prior, op, y, **kw)
    assert torch.allclose(turned.double(), x, atol=1e-5)
    assert float((turned - plain).abs().max()) > 1e-3

    sym = torch.zeros(2, 8, 8, dtype=torch.float64)
    sym[:, 2:6, 2:6] = 0.7  # a centred square: every flip and the transpose leave it as it is
    sym[:, 3:5, 3:5] = 0.2
    sym_prior = _gaussian_prior(sym, s)
    a = dart(sym_prior, op, y, self_ensemble=True, **kw)
    b = dart(sym_prior, op, y, **kw)
    assert torch.allclose(a, b, atol=1e-6)


def test_dart_self_ensemble_on_a_non_square_fixed_shape_prior_uses_the_four_flips():
    """A prior of one fixed (D, H, W) with H != W cannot take the transposed volume: the
    self-ensemble cycles through the 4 flips only (the reference loop with ``k mod 4``)."""
    from paperlib.recon.dart import plug_and_play_timesteps

    s, steps, levels = 0.3, 6, (0.5, 0.05)
    g = torch.Generator().manual_seed(7)
    mu = 0.5 + 0.2 * torch.rand(2, 8, 12, generator=g, dtype=torch.float64)
    mask = torch.zeros(2, 8, 12, dtype=torch.bool)
    mask[:, :, ::3] = True
    op = MRIOperator(mask)
    y = op.forward(mu + s * torch.randn(2, 8, 12, generator=g, dtype=torch.float64))
    prior = _gaussian_prior(mu, s)
    init = op.zero_filled(y).real
    out = dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=steps, init=init, levels=levels,
               self_ensemble=True)
    abar = prior.sampler.abar.double()
    x = init.double()
    for k, t in enumerate(plug_and_play_timesteps(prior, levels, steps)):
        c = s * s / (s * s + float((1 - abar[t]) / abar[t]))
        m = _ORIENTATIONS[k % 4][1](mu)
        x = op.physics_step(m + c * (x - m), y, step_size=1.0)
    assert out.shape == (2, 8, 12)
    assert torch.allclose(out.double(), x.real.double(), atol=1e-5)


def test_dart_self_ensemble_needs_the_plug_and_play_form():
    op, y, prior, _ = _gaussian_problem(4, 0.3)
    init = op.zero_filled(y).real
    g = torch.Generator().manual_seed(0)
    with pytest.raises(InputValidationError, match="self_ensemble: only the plug-and-play form"):
        dart(prior, op, y, generator=g, num_steps=3, start=0.5, init=init, self_ensemble=True)
    with pytest.raises(InputValidationError, match="self_ensemble: expected True or False"):
        dart(prior, op, y, generator=g, num_steps=3, init=init, levels=(0.5, 0.05), self_ensemble=1)


def test_plug_and_play_timesteps_are_the_geometric_levels():
    from paperlib.diffusion.evaluate import noise_level_timestep
    from paperlib.recon.dart import plug_and_play_timesteps

    prior = _gaussian_prior(torch.zeros(2, 8, 8, dtype=torch.float64), 0.3)
    abar = prior.sampler.abar
    ts = plug_and_play_timesteps(prior, (1.0, 0.01), 5)
    assert ts == [noise_level_timestep(abar, v) for v in (1.0, 10 ** -0.5, 0.1, 10 ** -1.5, 0.01)]
    assert ts == sorted(ts, reverse=True) and ts[0] > ts[-1]
    assert plug_and_play_timesteps(prior, (1e-6, 1e-6), 3) == [0, 0, 0]  # below the schedule: t = 0, repeated
    for bad in ((0.01, 0.1), (0.1, 0.0), (0.1,), (0.1, float("nan")), "0.1", (True, 0.1)):
        with pytest.raises(InputValidationError, match="levels"):
            plug_and_play_timesteps(prior, bad, 3)


def test_dart_plug_and_play_rejects_what_it_does_not_use():
    s = 0.3
    op, y, prior, _ = _gaussian_problem(4, s)
    init = op.zero_filled(y).real
    g = torch.Generator().manual_seed(0)
    with pytest.raises(InputValidationError, match="init"):
        dart(prior, op, y, generator=g, num_steps=3, levels=(0.5, 0.05))
    for kw in ({"samples": 2}, {"start": 0.5}, {"stop": 0.2, "start": 0.5}):
        with pytest.raises(InputValidationError, match="levels"):
            dart(prior, op, y, generator=g, num_steps=3, init=init, levels=(0.5, 0.05), **kw)
    with pytest.raises(InputValidationError, match="levels"):
        dart(prior, op, y, generator=g, num_steps=3, init=init, levels=(0.05, 0.5))


def test_an_init_far_outside_the_priors_range_is_refused():
    """An init of 1e30 passes the finiteness check but overflows the network (NaN out of every
    normalisation); with no physics step after it, nothing else would notice."""
    op, y, prior, _ = _gaussian_problem(5, 0.3)
    huge = torch.full((2, 8, 8), 1e30)
    for kw in ({"start": 0.5}, {"levels": (0.5, 0.05)}):
        with pytest.raises(InputValidationError, match="init: values up to 1e"):
            dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=2, init=huge,
                 physics_steps=0, **kw)
    fine = dart(prior, op, y, generator=torch.Generator().manual_seed(0), num_steps=2, init=huge * 1e-27,
                start=0.5, scale=1e3)  # 1e3 / 1e3: in range
    assert bool(torch.isfinite(fine).all())
