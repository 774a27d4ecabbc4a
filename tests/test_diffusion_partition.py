"""Slice groups, the partitioned prior, and the same prior spread over 2 gloo ranks."""
from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from paperlib.diffusion import distributed as dd
from paperlib.diffusion.partition import (PartitionedPrior, group_slices, low_precision_copy, merge_groups,
                                          release_low_precision, run_network, split_groups)
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig


pytestmark = pytest.mark.usefixtures("one_thread")


CFG = UNet3DConfig(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), heads=2, head_dim=4)
SCHEDULE = ScheduleConfig("cosine", 100)
G, S, H = 2, 4, 16  # groups, slices per group, H = W


def _models(n: int = G) -> list[UNet3D]:
    out = []
    for g in range(n):
        torch.manual_seed(100 + g)
        out.append(UNet3D(CFG).eval())
    return out


@given(groups=st.integers(1, 4), size=st.integers(1, 3), batch=st.sampled_from([(), (2,)]))
def test_split_then_merge_is_identity(groups, size, batch):
    x = torch.randn(*batch, groups * size, 3, 2)
    parts = split_groups(x, groups)
    assert len(parts) == groups and all(p.shape[-3] == size for p in parts)
    assert torch.equal(merge_groups(parts), x)


def test_uneven_depth_is_an_error():
    with pytest.raises(ValueError, match="cannot be split into 3 equal slice groups"):
        split_groups(torch.zeros(8, 4, 4), 3)
    with pytest.raises(ValueError, match="at least one"):
        merge_groups([])
    assert group_slices(6, 2) == [slice(0, 3), slice(3, 6)]


@pytest.mark.parametrize("prediction", ["x0", "epsilon"])
def test_denoise_runs_each_group_through_its_own_model(prediction):
    models = _models()
    sampler = Sampler(SCHEDULE, prediction=prediction)
    prior = PartitionedPrior(models, sampler, S)
    x = torch.randn(G * S, H, H)
    t = 37
    want = merge_groups([sampler.predict_x0(m(xg[None, None], torch.tensor([t]))[0, 0], xg, t)
                         for m, xg in zip(models, split_groups(x, G))])
    # float32 rounding only (kernels blocked by batch size differ by ~1e-6 on AVX2); a group through
    # another model's weights would be off by O(1)
    assert torch.allclose(prior.denoise(x, t), want, rtol=1e-5, atol=1e-5)
    xb = torch.stack([x, -x])  # batched volumes
    assert torch.allclose(prior.denoise(xb, t)[0], want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="2 groups x 4 slices"):
        prior.denoise(torch.randn(6, H, H), t)


def test_bfloat16_precision_is_close_to_float32_and_returns_float32():
    models = _models()
    sampler = Sampler(SCHEDULE, prediction="v")
    x = torch.randn(G * S, H, H)
    exact = PartitionedPrior(models, sampler, S).denoise(x, 50)
    fast = PartitionedPrior(models, sampler, S, precision="bfloat16").denoise(x, 50)
    assert fast.dtype == torch.float32 and fast.shape == exact.shape
    rel = float((fast - exact).norm() / exact.norm())
    assert 0 < rel < 0.03  # bfloat16 has 8 significant bits: not identical, but close
    out = run_network(models[0], x[:S][None], 50, "bfloat16")
    assert out.dtype == torch.float32 and out.shape == (1, S, H, H)
    with pytest.raises(ValueError, match="precision: expected one of"):
        PartitionedPrior(models, sampler, S, precision="float16")
    with pytest.raises(ValueError, match="precision"):
        run_network(models[0], x[:S][None], 50, "half")


def test_auto_precision_is_bfloat16_only_where_the_device_computes_it_natively(monkeypatch):
    """``auto`` (the profiles' setting): bfloat16 on a CPU with AVX-512 BF16 or AMX-BF16, else float32,
    where emulated bfloat16 was 6x slower than float32 (paperlib.diffusion.partition.native_bfloat16)."""
    from paperlib.diffusion import partition

    models = _models()
    sampler = Sampler(SCHEDULE, prediction="v")
    x = torch.randn(G * S, H, H)
    for native, expect in ((False, "float32"), (True, "bfloat16")):
        monkeypatch.setattr(partition, "cpu_flags", lambda: frozenset({"avx2", "fma"} | ({"avx512_bf16"} if native else set())))
        assert partition.native_bfloat16("cpu") is native
        assert partition.resolve_precision("auto", "cpu") == expect
        auto = PartitionedPrior(models, sampler, S, precision="auto").denoise(x, 50)
        assert torch.equal(auto, PartitionedPrior(models, sampler, S, precision=expect).denoise(x, 50))
    monkeypatch.setattr(partition, "cpu_flags", lambda: frozenset({"amx_bf16", "amx_tile"}))
    assert partition.resolve_precision("auto", torch.device("cpu")) == "bfloat16"
    monkeypatch.setattr(partition, "cpu_flags", frozenset)  # flags not readable (not Linux): float32
    assert partition.resolve_precision("auto", "cpu") == "float32"
    assert partition.resolve_precision("auto", "meta") == "float32"  # no native bfloat16 known
    assert partition.resolve_precision("float32", "cpu") == "float32"
    monkeypatch.undo()
    assert partition.native_bfloat16("cpu") == bool({"avx512_bf16", "amx_bf16"} & partition.cpu_flags())
    with pytest.raises(ValueError, match=r"precision: expected one of \['auto', 'bfloat16', 'float32'\]"):
        partition.resolve_precision("fp16", "cpu")


def test_bfloat16_copy_follows_the_weights_and_passes_gradients_to_the_input():
    """The cached bfloat16 copy is remade after load_state_dict and after an explicit release, and
    gradients reach the input through it (posterior sampling differentiates the network)."""
    a, b = _models()
    x = torch.randn(1, S, H, H)
    before = run_network(a, x, 50, "bfloat16")
    assert torch.equal(run_network(a, x, 50, "bfloat16"), before)  # reused
    a.load_state_dict(b.state_dict())
    assert torch.equal(run_network(a, x, 50, "bfloat16"), run_network(b, x, 50, "bfloat16"))
    assert not torch.equal(run_network(a, x, 50, "bfloat16"), before)
    with torch.no_grad():  # an in-place change (an optimiser step) needs the explicit release
        for p in a.parameters():
            p.mul_(0.5)
    release_low_precision(a)
    a_half = run_network(a, x, 50, "bfloat16")
    assert not torch.equal(a_half, run_network(b, x, 50, "bfloat16"))
    a.channels_last = False  # an instance setting made after the copy reaches the network
    assert low_precision_copy(a, torch.bfloat16).channels_last is False
    assert torch.allclose(run_network(a, x, 50, "bfloat16"), a_half, rtol=0.05, atol=0.05)  # same weights
    xg = x.clone().requires_grad_(True)
    run_network(a, xg, 50, "bfloat16").square().sum().backward()
    assert xg.grad is not None and xg.grad.dtype == torch.float32 and bool(xg.grad.abs().sum() > 0)
    assert all(p.grad is None for p in a.parameters())  # the copy does not train the model


def test_groups_sample_independently_of_their_neighbours():
    """Group g's sample depends only on the generator and g, not on the other groups held."""
    models = _models()
    sampler = Sampler(SCHEDULE, method="ddpm")
    full = PartitionedPrior(models, sampler, S).sample((G * S, H, H), num_steps=4,
                                                        generator=torch.Generator().manual_seed(5))
    parts = [PartitionedPrior([m], sampler, S, group_indices=[g]).sample(
        (S, H, H), num_steps=4, generator=torch.Generator().manual_seed(5)) for g, m in enumerate(models)]
    assert torch.allclose(full, merge_groups(parts), atol=1e-6)
    other = PartitionedPrior(models, sampler, S).sample((G * S, H, H), num_steps=4,
                                                         generator=torch.Generator().manual_seed(6))
    assert not torch.allclose(full, other)


@given(num_groups=st.integers(1, 9), world=st.integers(1, 4))
def test_groups_for_rank_cover_every_group_once(num_groups, world):
    if num_groups < world:
        with pytest.raises(ValueError, match="at least one slice group"):
            dd.groups_for_rank(num_groups, 0, world)
        return
    per_rank = [dd.groups_for_rank(num_groups, r, world) for r in range(world)]
    assert sum(per_rank, []) == list(range(num_groups))
    assert max(map(len, per_rank)) - min(map(len, per_rank)) <= 1


def test_rank_generators_are_deterministic_and_distinct():
    draw = lambda r: torch.randn(3, generator=dd.rank_generator(7, r))  # noqa: E731
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(0), draw(1))


def test_single_process_helpers():
    x = torch.randn(4, 2, 2)
    assert dd.all_gather_volume(x) is x
    ctx = dd.current_context()
    assert (ctx.rank, ctx.world_size, ctx.distributed) == (0, 1, False)
    with dd.track(ctx) as stats:
        torch.ones(10).sum()
    assert stats.wall_time_s >= 0 and stats.peak_rss_bytes > 2**20
    assert dd.local_part(torch.arange(8.)[:, None, None].expand(8, 2, 2), 4, [1, 2])[:, 0, 0].tolist() == [2, 3, 4, 5]


def _global_mean_shift(x0: torch.Tensor, t: int) -> torch.Tensor:
    """A toy 'physics step' that couples every slice (like multislice 4D-STEM)."""
    return x0 - 0.5 * x0.mean() + 0.01 * t / 100


def _rank_slice_shift(x0: torch.Tensor, t: int) -> torch.Tensor:
    """A slice-local toy physics step (like MRI data consistency)."""
    return 0.9 * x0


def _dist_worker(rank: int, world: int) -> dict:
    models = _models()
    mine = [models[g] for g in dd.groups_for_rank(G, rank, world)]
    sampler = Sampler(SCHEDULE, method="ddpm")
    common = dict(num_groups=G, group_size=S, shape=(G * S, H, H), num_steps=4, seed=11)
    plain = dd.partitioned_sample(mine, sampler, **common)
    local = dd.partitioned_sample(mine, sampler, callback=_rank_slice_shift, **common)
    coupled = dd.partitioned_sample(mine, sampler, callback=_global_mean_shift, gather_for_callback=True, **common)
    uneven = dd.all_gather_volume(torch.full((rank + 1, 2, 2), float(rank)))
    return {"plain": plain.volume, "local": local.volume, "coupled": coupled.volume, "stats": plain.stats,
            "groups": plain.groups, "uneven": uneven, "threads": torch.get_num_threads()}


@pytest.mark.timeout(180)
def test_two_gloo_ranks_equal_one_process():
    results = dd.spawn(_dist_worker, 2)
    r0, r1 = results
    assert r0["groups"] == [0] and r1["groups"] == [1]
    assert r1["plain"] is None and r1["stats"] is None
    assert [s.rank for s in r0["stats"]] == [0, 1]
    assert all(s.peak_rss_bytes > 2**20 and s.wall_time_s > 0 for s in r0["stats"])
    assert r0["uneven"][:, 0, 0].tolist() == [0.0, 1.0, 1.0] == r1["uneven"][:, 0, 0].tolist()

    threads = torch.get_num_threads()
    torch.set_num_threads(r0["threads"])  # same thread count as the ranks: bitwise-comparable kernels
    try:
        prior = PartitionedPrior(_models(), Sampler(SCHEDULE, method="ddpm"), S)
        ref = {name: prior.sample((G * S, H, H), num_steps=4, generator=torch.Generator().manual_seed(11),
                                  callback=cb)
               for name, cb in [("plain", None), ("local", _rank_slice_shift), ("coupled", _global_mean_shift)]}
    finally:
        torch.set_num_threads(threads)
    for name, want in ref.items():
        assert r0[name].shape == want.shape
        assert torch.equal(r0[name], want), (name, (r0[name] - want).abs().max())  # bit for bit


@pytest.mark.parametrize("groups", [2, 3])
def test_groups_side_by_side_equal_one_after_the_other(groups, monkeypatch):
    """With 2 torch threads the group networks run in worker threads (one torch thread each);
    the result equals the sequential one, carries no autograd graph, and the caller's thread
    count is unchanged."""
    models = _models(groups)
    prior = PartitionedPrior(models, Sampler(SCHEDULE, prediction="v"), S, precision="bfloat16")
    x = torch.randn(2, groups * S, H, H)
    torch.set_num_threads(2)  # the one_thread fixture restores it
    seen = []
    real = run_network

    def spy(model, xg, t, precision):
        seen.append((torch.get_num_threads(), torch.is_grad_enabled()))
        return real(model, xg, t, precision)

    monkeypatch.setattr("paperlib.diffusion.partition.run_network", spy)
    side_by_side = prior.denoise(x, 40)
    assert torch.get_num_threads() == 2 and seen == [(1, False)] * groups
    monkeypatch.setattr(PartitionedPrior, "parallel_groups", False)
    seen.clear()
    in_turn = prior.denoise(x, 40)
    assert seen == [(2, False)] * groups
    torch.testing.assert_close(side_by_side, in_turn, rtol=1e-6, atol=1e-6)
    assert not side_by_side.requires_grad


def test_a_forked_child_runs_the_groups_side_by_side_too():
    """The worker pool is per process: a child forked after the parent used it must not wait on
    the parent's threads (it would hang); it gets its own pool and the same numbers."""
    import multiprocessing as mp

    models = _models(2)
    prior = PartitionedPrior(models, Sampler(SCHEDULE, prediction="v"), S)
    x = torch.randn(G * S, H, H)
    torch.set_num_threads(2)  # the one_thread fixture restores it
    want = prior.denoise(x, 30)  # the parent's pool now exists
    ctx = mp.get_context("fork")
    queue = ctx.Queue()

    def child():
        queue.put(prior.denoise(x, 30).numpy())  # plain pickling, not torch shared memory

    proc = ctx.Process(target=child)
    proc.start()
    got = queue.get(timeout=60)
    proc.join(timeout=60)
    assert proc.exitcode == 0
    torch.testing.assert_close(torch.from_numpy(got), want, rtol=0, atol=0)
