"""The variational 2D-prior reconstruction (issue 18), its prior wrapper, resampling and slicing,
the two diffusion baselines on the same multicoil data, the ``slice2d`` preset and the training
slices, all with a tiny random network."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from paperlib.data.slices2d import training_slices
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.unet3d import PRESETS, UNet3D
from paperlib.io import InputValidationError, save_nifti
from paperlib.recon.mri_multicoil_baselines import dds_tv_z, posterior_sampling
from paperlib.recon.variational2d import (SlicePrior, random_slices, resample_volume, resampling_factors,
                                          simulate_multicoil, simulate_multicoil_nifti, variational2d)

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (4, 8, 8)


@pytest.fixture(scope="module")
def prior():
    with torch.random.fork_rng():  # random weights, without touching the caller's stream
        torch.manual_seed(0)
        model = UNet3D(PRESETS["slice2d"])
    return SlicePrior(model, Sampler(ScheduleConfig("cosine", 100), prediction="v"), voxel_size=1.0)


@pytest.fixture(scope="module")
def data():
    truth = torch.zeros(SHAPE)
    truth[1:3, 2:6, 2:7] = 1.0
    truth[2, 3:5, 3:5] = 0.5
    op, y = simulate_multicoil(truth, num_coils=3, acceleration=2.0, center_fraction=0.2,
                               generator=torch.Generator().manual_seed(0))
    return truth, op, y


def _gen(seed=1):
    return torch.Generator().manual_seed(seed)


def test_slice2d_preset_and_prior_wrapper(prior):
    cfg = PRESETS["slice2d"]
    assert not cfg.temporal_attention and cfg.in_channels == 1
    out = prior.denoise(torch.rand(5, 10, 6, generator=_gen()), 3)  # padded to the factor 4, cropped
    assert out.shape == (5, 10, 6) and out.dtype == torch.float32
    with pytest.raises(InputValidationError, match="x_t"):
        prior.denoise(torch.rand(1, 5, 8, 8), 3)
    with pytest.raises(InputValidationError, match="voxel_size"):
        SlicePrior(prior.model, prior.sampler, voxel_size=-1.0)


def test_shapes_dtypes_and_determinism(prior, data):
    _, op, y = data
    kwargs = dict(weight=0.5, iters=4, slices_per_iter=2)
    a = variational2d(op, y, prior, generator=_gen(3), **kwargs)
    b = variational2d(op, y, prior, generator=_gen(3), **kwargs)
    c = variational2d(op, y, prior, generator=_gen(4), **kwargs)
    assert a.shape == SHAPE and a.dtype == torch.complex64 and not a.requires_grad
    assert torch.equal(a, b) and not torch.equal(a, c)
    real = variational2d(op, y, prior, generator=_gen(3), real=True, **kwargs)
    assert real.dtype == torch.float32


def test_zero_weight_reaches_the_least_squares_solution(data):
    truth, _, _ = data
    # 4 coils at acceleration 1.5: A is well enough conditioned (smallest singular value 0.06)
    # for gradient steps to converge in a few thousand iterations
    op, y = simulate_multicoil(truth, num_coils=4, acceleration=1.5, center_fraction=0.2, generator=_gen(0))
    # the minimum-norm least-squares solution from an explicit matrix of A (complex128)
    n = int(np.prod(SHAPE))
    basis = torch.eye(n, dtype=torch.complex128).reshape(n, *SHAPE)
    matrix = op.forward(basis).reshape(n, -1).T.numpy()
    expected = (np.linalg.pinv(matrix) @ y.reshape(-1).numpy().astype(np.complex128)).reshape(SHAPE)
    # gradient steps from A^H y stay in range(A^H): they converge to the minimum-norm solution
    got = variational2d(op, y, None, weight=0.0, iters=3000, optimizer="gd", generator=_gen())
    assert np.abs(got.numpy() - expected).max() < 1e-3 * np.abs(expected).max()
    # Adam reaches a least-squares solution: the normal equations hold
    adam = variational2d(op, y, None, weight=0.0, iters=400, step_size=0.01, generator=_gen())
    residual = op.conjugate_transpose(op.forward(adam) - y)
    assert float(residual.abs().max()) < 1e-2 * float(op.conjugate_transpose(y).abs().max())


def test_stabilised_jacobian_nothing_flows_through_the_network(prior, data):
    _, op, y = data
    calls, backward = [], []

    def on_forward(module, inputs, output):
        calls.append((torch.is_grad_enabled(), inputs[0].requires_grad, tuple(inputs[0].shape)))

    handles = [prior.model.register_forward_hook(on_forward),
               prior.model.register_full_backward_hook(lambda *args: backward.append(1))]
    try:
        x = variational2d(op, y, prior, weight=1.0, iters=3, slices_per_iter=2, generator=_gen())
    finally:
        for h in handles:
            h.remove()
    assert len(calls) == 3 and not backward
    assert all(not grad and not requires for grad, requires, _ in calls)
    assert all(p.grad is None for p in prior.model.parameters())
    # the regulariser acts: the result differs from the unregularised one of the same seed
    plain = variational2d(op, y, prior, weight=0.0, iters=3, generator=_gen())
    assert not torch.allclose(x, plain)


def test_resampling_for_larger_reconstruction_voxels(prior, data):
    _, op, y = data
    assert resampling_factors((2.0, 1.0, 0.5), 1.0) == (2.0, 1.0, 1.0)
    assert resampling_factors(None, 1.0) == (1.0, 1.0, 1.0)
    constant = torch.full((3, 4, 5), 2.0, dtype=torch.complex64)
    up = resample_volume(constant, (6, 8, 10))
    assert up.shape == (6, 8, 10) and torch.allclose(up, torch.full_like(up, 2.0))
    ramp = torch.arange(4.0).reshape(4, 1, 1).expand(4, 2, 2)
    assert torch.allclose(resample_volume(ramp, (8, 2, 2))[2:6, 0, 0], torch.tensor([0.75, 1.25, 1.75, 2.25]))
    seen = []
    handle = prior.model.register_forward_hook(lambda m, i, o: seen.append(tuple(i[0].shape[-2:])))
    try:
        variational2d(op, y, prior, weight=1.0, iters=6, generator=_gen(), voxel_size=(2.0, 1.0, 1.0), axes=(1,))
        variational2d(op, y, prior, weight=1.0, iters=2, generator=_gen(), voxel_size=(2.0, 1.0, 1.0), axes=(1,),
                      resample=False)
    finally:
        handle.remove()
    assert set(seen[:6]) == {(8, 8)}  # coronal (D, W) slices with D upsampled 4 -> 8
    assert set(seen[6:]) == {(4, 8)}  # native grid
    slices, positions = random_slices(torch.arange(24.0).reshape(2, 3, 4), 2, 3, _gen())
    assert slices.shape == (3, 2, 3) and len(set(positions.tolist())) == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(weight=1.0, prior=None), "prior"),
    (dict(weight=-1.0), "weight"),
    (dict(t_max=0.0), "t_max"),
    (dict(axes=(3,)), "axes"),
    (dict(optimizer="lbfgs"), "optimizer"),
    (dict(weighting="v"), "weighting"),
    (dict(voxel_size=(1.0, 1.0)), "voxel_size"),
    (dict(init=torch.zeros(4, 8, 4)), "x: expected a volume"),
])
def test_bad_arguments_are_named(prior, data, kwargs, match):
    _, op, y = data
    args = dict(prior=prior, weight=0.1, iters=1, generator=_gen())
    args.update(kwargs)
    with pytest.raises(InputValidationError, match=match):
        variational2d(op, y, args.pop("prior"), **args)


def test_bad_data_are_named(prior, data):
    _, op, y = data
    with pytest.raises(InputValidationError, match="y: expected complex"):
        variational2d(op, y.real, prior, weight=0.1, generator=_gen())
    with pytest.raises(InputValidationError, match="op"):
        variational2d(object(), y, prior, weight=0.1, generator=_gen())
    with pytest.raises(InputValidationError, match="volume"):
        simulate_multicoil(torch.zeros(4, 8, 8, dtype=torch.complex64), generator=_gen())
    with pytest.raises(InputValidationError, match="center_fraction"):
        simulate_multicoil(torch.zeros(SHAPE), acceleration=4, center_fraction=0.5, generator=_gen())


def test_simulate_multicoil_from_a_magnitude_nifti(tmp_path):
    volume = np.zeros((8, 6, 4), dtype=np.float32)  # (i, j, k): 4 slices of 6 x 8
    volume[2:6, 1:5, 1:3] = 1.0
    path = save_nifti(tmp_path / "v.nii.gz", volume, np.diag([0.5, 1.0, 3.0, 1.0]))
    op, y, voxel, dhw = simulate_multicoil_nifti(path, num_coils=2, acceleration=2, center_fraction=0.2,
                                                 noise_std=0.01, generator=_gen())
    assert dhw.shape == (4, 6, 8) and voxel == (3.0, 1.0, 0.5)
    assert y.shape == (2, 4, 6, 8) and bool((y[..., ~op.mask] == 0).all())
    noiseless = op.forward(dhw)
    assert 0 < float((y - noiseless).abs().max()) < 0.1


def test_diffusion_baselines_run_and_lower_the_data_term(prior, data):
    _, op, y = data
    unguided = posterior_sampling(op, y, prior, guidance=0.0, num_steps=6, generator=_gen(5))
    dps = posterior_sampling(op, y, prior, guidance=1.0, num_steps=6, generator=_gen(5))
    dds = dds_tv_z(op, y, prior, weight=0.01, num_steps=6, generator=_gen(5))
    for volume in (unguided, dps, dds):
        assert volume.shape == SHAPE and volume.dtype == torch.float32
    assert float(op.data_term(dps, y)) < float(op.data_term(unguided, y))
    assert float(op.data_term(dds, y)) < 0.1 * float(op.data_term(unguided, y))
    assert torch.equal(dds, dds_tv_z(op, y, prior, weight=0.01, num_steps=6, generator=_gen(5)))
    with pytest.raises(InputValidationError, match="rho"):
        dds_tv_z(op, y, prior, rho=0.0, generator=_gen())
    with pytest.raises(InputValidationError, match="prior"):
        posterior_sampling(op, y, None, generator=_gen())


def test_training_slices_three_orientations_and_voxel_sizes():
    volumes = torch.rand(2, 4, 8, 6, generator=_gen())
    slices, pixels = training_slices(volumes, [(2.0, 1.0, 1.0), (4.0, 1.0, 1.0)], 16)
    assert slices.shape == (2 * (4 + 8 + 6), 16, 16) and slices.dtype == torch.float32
    assert pixels.shape == (36,) and torch.allclose(pixels[:4], torch.full((4,), 0.5, dtype=torch.float64))
    # a fixed physical pixel: a coronal slice of 4 slices x 2 mm by 6 x 1 mm is 8 mm x 6 mm -> 8 x 6 pixels
    one = torch.ones(1, 4, 8, 6)
    coronal, px = training_slices(one, (2.0, 1.0, 1.0), 12, pixel_size=1.0, axes=(1,))
    assert coronal.shape == (8, 12, 12) and bool((px == 1.0).all())
    assert int((coronal[0] > 0.5).sum()) == 8 * 6
    # a list of volumes of different shapes (a diverse-voxel set), every second slice
    mixed, _ = training_slices([torch.ones(4, 8, 8), torch.ones(8, 4, 4)], [(2.0, 1.0, 1.0), (1.0, 2.0, 2.0)], 8,
                               step=2)
    assert mixed.shape[0] == (2 + 4 + 4) + (4 + 2 + 2)
    with pytest.raises(InputValidationError, match="voxel_sizes"):
        training_slices(volumes, (1.0, 0.0, 1.0), 8)
    with pytest.raises(InputValidationError, match="volumes"):
        training_slices(torch.rand(4, 8, 8), (1.0, 1.0, 1.0), 8)


class GaussianDenoiser(torch.nn.Module):
    """The exact MMSE denoiser of i.i.d. Gaussian pixels N(mean, var), in the network's calling convention
    ``(B, 1, 1, H, W), t -> x0_hat``: ``E[x0 | x_t] = mean + sqrt(a) var / (a var + 1 - a) (x_t - sqrt(a) mean)``."""

    def __init__(self, mean: float, var: float, abar: torch.Tensor) -> None:
        super().__init__()
        self.mean, self.var, self.abar = mean, var, abar

    def forward(self, x, t):
        a = self.abar[t].float().view(-1, 1, 1, 1, 1)
        return self.mean + a.sqrt() * self.var / (a * self.var + 1 - a) * (x - a.sqrt() * self.mean)


@pytest.mark.parametrize("weighting", ["x0", "epsilon"])
def test_gaussian_oracle_reaches_the_expected_objectives_minimiser(weighting):
    """With the exact Gaussian denoiser, E[s - D(s_t)] = w(t) (s - mean) with w = (1 - a) / (a var + 1 - a):
    the expected objective is 1/2 ||A x - y||^2 + λ w̄ / 2 ||x - mean||^2 (w̄ averaged over the truncated
    timesteps, times abar / sqrt(1 - abar) for the epsilon weighting), a Tikhonov problem with a closed-form
    minimiser; the averaged iterates must reach it."""
    schedule = ScheduleConfig("cosine", 100)
    abar = schedule.alphas_cumprod()
    mean, var, lam = 0.5, 0.05, 1.0
    oracle = SlicePrior(GaussianDenoiser(mean, var, abar), Sampler(schedule, prediction="x0"))
    g = _gen(0)
    truth = 0.5 + 0.2 * torch.rand(SHAPE, generator=g)
    op, y = simulate_multicoil(truth, num_coils=3, acceleration=2, center_fraction=0.2, noise_std=0.05, generator=g)
    a = abar[: oracle.sampler.start_timestep(0.2) + 1]
    snr = a / (1 - a).sqrt() if weighting == "epsilon" else torch.ones_like(a)
    w_bar = float((snr * (1 - a) / (a * var + 1 - a)).mean())
    n = int(np.prod(SHAPE))
    normal = op.normal(torch.eye(n, dtype=torch.float64).reshape(n, *SHAPE)).real.reshape(n, n).numpy().T
    rhs = op.conjugate_transpose(y).real.double().reshape(-1).numpy()
    expected = np.linalg.solve(normal + lam * w_bar * np.eye(n), rhs + lam * w_bar * mean)
    least_squares = np.linalg.lstsq(normal, rhs, rcond=None)[0]
    iterates = []
    variational2d(op, y, oracle, weight=lam, iters=1500, weighting=weighting, optimizer="gd", step_size=0.5, slices_per_iter=8, real=True,
                  scale=1.0, generator=_gen(1), callback=lambda k, v: iterates.append(v) if k > 500 else None)
    average = torch.stack(iterates).mean(0).double().reshape(-1).numpy()
    assert np.linalg.norm(average - expected) < 0.02 * np.linalg.norm(expected - least_squares)
    assert np.linalg.norm(average - truth.reshape(-1).numpy()) < 0.2 * np.linalg.norm(least_squares - truth.reshape(-1).numpy())
