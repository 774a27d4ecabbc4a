"""The tiled prior: any volume shape, the PartitionedPrior reproduced on fitting shapes, blending,
callbacks on the native grid, and DART / projection / DRIFT on an odd-sized MRI volume."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from paperlib.diffusion.partition import PartitionedPrior
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.tiling import TiledPrior, blend_weights, pad_indices, tiled, window_starts
from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig
from paperlib.io import InputValidationError
from paperlib.physics.mri import MRIOperator
from paperlib.recon.dart import check_prior_fits, dart
from paperlib.recon.drift import drift, select_per_group, selection_groups
from paperlib.recon.projection import projection_sampling

pytestmark = pytest.mark.usefixtures("one_thread")

CFG = UNet3DConfig(base_width=8, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(),
                   mid_attention=False)  # spatial factor 4
G, S = 2, 4  # groups, slices per group


def _prior(method: str = "ddim", eta: float = 0.0) -> PartitionedPrior:
    models = []
    for g in range(G):
        torch.manual_seed(200 + g)
        models.append(UNet3D(CFG).eval())
    return PartitionedPrior(models, Sampler(ScheduleConfig("cosine", 50), method=method, eta=eta), S)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


class _Constant(nn.Module):
    """Predicts the constant ``value`` everywhere and counts its forward calls."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value, self.calls = value, 0

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.full_like(x, self.value)


class _Identity(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return x


@pytest.mark.parametrize("shape", [(4, 32, 32), (5, 33, 37), (16, 64, 64), (23, 40, 48), (1, 8, 8), (2, 5, 9, 11)])
def test_any_shape_samples_to_that_shape(shape):
    prior = TiledPrior(_prior())
    x = prior.sample(shape, num_steps=2, generator=_gen(0))
    assert tuple(x.shape) == shape and x.dtype == torch.float32
    assert bool(torch.isfinite(x).all())
    assert tuple(prior.denoise(x, 10).shape) == shape


def test_overlap_zero_reproduces_the_partitioned_prior_bit_for_bit():
    shape = (G * S, 16, 24)  # fitting: depth G x s, H and W multiples of 4
    x = torch.randn(2, *shape, generator=_gen(1))
    cb = lambda x0, t: 0.5 * x0 + 0.1  # noqa: E731
    post = lambda x, t: x.clamp(-2.0, 2.0)  # noqa: E731
    for method, eta in (("ddim", 0.0), ("ddpm", 0.0), ("ddim", 0.7)):
        base = _prior(method, eta)
        tiled_prior = TiledPrior(base, overlap=0)
        assert torch.equal(tiled_prior.denoise(x, 30), base.denoise(x, 30))
        assert torch.equal(tiled_prior.denoise(x[0], 30), base.denoise(x[0], 30))
        for kwargs in ({}, {"callback": cb}, {"post_step": post}, {"x_T": x[1], "t_start": 20, "callback": cb}):
            want = base.sample(shape, num_steps=3, generator=_gen(4), **kwargs)
            got = tiled_prior.sample(shape, num_steps=3, generator=_gen(4), **kwargs)
            assert torch.equal(got, want), (method, eta, sorted(kwargs))
        want = base.sample((2, *shape), num_steps=3, generator=_gen(5))
        assert torch.equal(tiled_prior.sample((2, *shape), num_steps=3, generator=_gen(5)), want)


def test_same_seed_same_sample_and_other_seeds_differ():
    prior = TiledPrior(_prior("ddpm"))
    shape = (7, 13, 10)
    a = prior.sample(shape, num_steps=3, generator=_gen(7))
    assert torch.equal(a, prior.sample(shape, num_steps=3, generator=_gen(7)))
    assert not torch.allclose(a, prior.sample(shape, num_steps=3, generator=_gen(8)))


def test_callbacks_see_the_native_shape_and_their_result_is_kept():
    prior = TiledPrior(_prior())
    shape = (5, 9, 11)  # padded inside to (8, 12, 12)
    seen = []

    def callback(x0, t):
        assert tuple(x0.shape) == shape
        seen.append(t)
        return torch.full_like(x0, 0.25)

    def post_step(x, t_prev):
        assert tuple(x.shape) == shape
        return x

    x = prior.sample(shape, num_steps=3, generator=_gen(0), callback=callback, post_step=post_step)
    assert len(seen) == 3
    assert torch.equal(x, torch.full(shape, 0.25))  # the last step returns the callback's x0_hat
    start = torch.rand(shape, generator=_gen(1))
    with pytest.raises(InputValidationError, match="x_T"):
        prior.sample(shape, num_steps=2, generator=_gen(0), x_T=start[:4])


@pytest.mark.parametrize("depth,size,overlap", [(8, 4, 2), (23, 8, 4), (9, 4, 0), (10, 4, 3), (4, 4, 2), (17, 8, 7)])
def test_windows_cover_every_slice_and_weights_sum_to_one(depth, size, overlap):
    starts = window_starts(depth, size, overlap)
    assert starts[0] == 0 and starts[-1] == depth - size
    assert all(0 < b - a <= size - overlap for a, b in zip(starts, starts[1:]))
    weights = blend_weights(depth, size, starts)
    assert bool((weights > 0).all())
    total = torch.zeros(depth, dtype=torch.float64)
    for start, w in zip(starts, weights):
        total[start:start + size] += w
    assert torch.allclose(total, torch.ones(depth, dtype=torch.float64), atol=1e-12)


def test_blend_weights_are_a_triangle_largest_in_the_middle():
    weights = blend_weights(8, 4, [0, 2, 4])  # raw triangle (1, 3, 3, 1) / 4
    assert weights.tolist() == [[1.0, 1.0, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 1.0, 1.0]]
    with pytest.raises(ValueError, match="uncovered"):
        blend_weights(9, 4, [0, 4])


def test_blending_identical_windows_is_the_identity():
    prior = TiledPrior(PartitionedPrior([_Identity(), _Identity()], Sampler(ScheduleConfig("cosine", 50)), S))
    x = torch.randn(2, 11, 9, 13, generator=_gen(3))
    assert torch.allclose(prior.denoise(x, 5), x, atol=1e-6)


def test_window_w_goes_to_model_w_mod_g_in_one_call_per_model():
    models = [_Constant(0.0), _Constant(1.0)]
    prior = TiledPrior(PartitionedPrior(models, Sampler(ScheduleConfig("cosine", 50)), S), overlap=2)
    x0 = prior.denoise(torch.zeros(3, 10, 8, 8), 5)  # windows start 0, 2, 4, 6 -> models 0, 1, 0, 1
    assert [m.calls for m in models] == [1, 1]
    means = x0.mean(dim=(0, 2, 3))
    assert float(means[0]) == 0.0 and float(means[-1]) == 1.0  # ends seen by one window each
    assert 0.0 < float(means[4]) < 1.0  # blended in between


def test_padding_is_reflect_below_the_size_else_replicate():
    assert pad_indices(5, 8)[1] == 1 and pad_indices(4, 4)[1] == 0
    assert pad_indices(5, 8)[0].tolist() == [1, 0, 1, 2, 3, 4, 3, 2]
    assert pad_indices(2, 8)[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    prior = TiledPrior(_prior())
    x = torch.rand(1, 3, 9, 10, generator=_gen(2))
    padded = prior.pad(x)
    assert tuple(padded.shape) == (1, 4, 12, 12) == prior.padded_shape(x.shape)
    assert torch.equal(padded[:, 3], x[:, 1, pad_indices(9, 12)[0]][..., pad_indices(10, 12)[0]])
    assert torch.equal(prior.crop(padded, x.shape), x)


def test_bad_shapes_and_overlaps_are_refused():
    prior = TiledPrior(_prior())
    for shape in [(0, 32, 32), (4, 7, 32), (4, 32, 7), (32, 32), (1, 1, 4, 8, 8)]:
        with pytest.raises(InputValidationError, match=r"H, W >= 8"):
            prior.check_fits(shape)
    with pytest.raises(InputValidationError, match=r"volume shape \(4, 7, 32\)"):
        prior.sample((4, 7, 32), num_steps=2, generator=_gen(0))
    with pytest.raises(InputValidationError, match="D >= 1"):
        check_prior_fits(prior, (0, 16, 16))
    for overlap in (-1, S, 1.5):
        with pytest.raises(InputValidationError, match="overlap"):
            TiledPrior(_prior(), overlap=overlap)
    with pytest.raises(TypeError, match="PartitionedPrior"):
        TiledPrior(prior)
    assert tiled(prior) is prior and isinstance(tiled(prior.prior), TiledPrior)
    with pytest.raises(InputValidationError, match="does not match the prior"):
        check_prior_fits(prior.prior, (5, 32, 32))  # the partitioned prior keeps its rule
    check_prior_fits(prior, (5, 33, 37))


def _odd_hermitian_mask(depth: int, h: int, w: int) -> torch.Tensor:
    """Column mask symmetric under f -> -f (index j <-> w - 1 - j for odd w), so the real part of
    the data-consistency step stays exactly consistent."""
    cols = torch.zeros(w, dtype=torch.bool)
    for j in (w // 2, w // 2 - 1, w // 2 - 2, w // 2 - 5, 2):
        cols[j] = cols[w - 1 - j] = True
    return cols.expand(depth, h, w).clone()


def test_dart_projection_and_drift_run_on_an_odd_mri_volume():
    shape = (5, 33, 37)
    op = MRIOperator(_odd_hermitian_mask(*shape))
    y = op.forward(torch.rand(shape, generator=_gen(9)))
    prior = TiledPrior(_prior())

    def assert_consistent(x: torch.Tensor) -> None:
        assert tuple(x.shape) == shape and bool(torch.isfinite(x).all())
        assert torch.allclose(op.forward(x)[op.mask.expand(shape)], y[op.mask.expand(shape)], atol=1e-4)

    x = dart(prior, op, y, generator=_gen(0), num_steps=3, step_kwargs={"step_size": 1.0})
    assert_consistent(x)
    assert_consistent(dart(prior, op, y, generator=_gen(0), num_steps=3, start=0.5, init=op.zero_filled(y).real))
    assert torch.equal(x, dart(prior, op, y, generator=_gen(0), num_steps=3, step_kwargs={"step_size": 1.0}))
    assert_consistent(projection_sampling(prior, op, y, generator=_gen(1), num_steps=3))
    result = drift(prior, op, y, generator=_gen(2), n_candidates=3, num_steps=2, physics_steps=1,
                   step_kwargs={"step_size": 1.0})
    assert_consistent(result.volume)
    assert tuple(result.choice.shape) == (2,) and tuple(result.scores.shape) == (3, 2)  # ceil(5 / 4) chunks


class _SliceSum:
    """A slice-coupling toy operator (the measurement is the sum over slices), for DRIFT's
    whole-object selection path."""

    slice_local = False
    supports_support = False
    is_linear = False
    projects = False

    def forward(self, x):
        return x.sum(dim=-3)

    def measurement_image(self, y):
        return y


@pytest.mark.parametrize("operator", [MRIOperator(torch.ones(5, 16, 16, dtype=torch.bool)), _SliceSum()])
def test_drift_selects_per_chunk_of_a_tiled_prior(operator):
    groups = selection_groups(TiledPrior(_prior()), 5)  # ceil(5 / 4) = 2 chunks: slices 0-2 and 3-4
    assert [g.tolist() for g in groups] == [[0, 1, 2], [3, 4]]
    g = _gen(11)
    truth = torch.rand(5, 16, 16, generator=g)
    candidates = torch.rand(3, 5, 16, 16, generator=g)
    candidates[2, :3], candidates[0, 3:] = truth[:3], truth[3:]
    volume, choice, _ = select_per_group(operator, operator.forward(truth), candidates, groups)
    assert choice.tolist() == [2, 0]
    assert torch.equal(volume, truth)
