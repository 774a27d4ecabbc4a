"""The space-time factorised 3D U-Net: shapes, time conditioning, what mixes slices and what not."""
from __future__ import annotations

import pytest
import torch

from paperlib.diffusion.unet3d import PRESETS, UNet3D, UNet3DConfig, count_parameters


pytestmark = pytest.mark.usefixtures("one_thread")


TINY = dict(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,), heads=2, head_dim=4)


def _net(seed: int = 0, **kw) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(UNet3DConfig(**{**TINY, **kw})).eval()


@pytest.mark.parametrize(
    "kw, shape",
    [
        ({}, (2, 1, 4, 16, 16)),
        ({}, (1, 1, 1, 16, 8)),  # one slice, non-square
        ({"channel_mults": (1, 2, 2), "attention_levels": (0, 2), "num_res_blocks": 2}, (1, 1, 5, 16, 16)),
        ({"in_channels": 2, "out_channels": 3, "spatial_attention": False}, (2, 2, 3, 8, 8)),
        ({"temporal_attention": False, "spatial_attention": False, "dropout": 0.1}, (1, 1, 4, 8, 8)),
    ],
)
def test_output_shapes(kw, shape):
    net = _net(**kw)
    out = net(torch.randn(shape), torch.randint(0, 1000, (shape[0],)))
    cfg = net.cfg
    assert out.shape == (shape[0], cfg.out_channels or cfg.in_channels) + shape[2:]
    assert torch.isfinite(out).all()


def test_scalar_t_and_bad_shapes():
    net = _net()
    x = torch.randn(2, 1, 4, 16, 16)
    assert torch.equal(net(x, 7), net(x, torch.tensor([7, 7])))
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 1, 4, 15, 16), 0)
    with pytest.raises(ValueError, match="expected x of shape"):
        net(torch.randn(1, 4, 16, 16), 0)


def test_config_validation():
    with pytest.raises(ValueError, match="attention_levels"):
        UNet3DConfig(channel_mults=(1, 2), attention_levels=(2,))
    with pytest.raises(ValueError, match="norm_groups"):
        UNet3DConfig(base_width=12, norm_groups=8)
    with pytest.raises(ValueError, match="unknown keys"):
        UNet3DConfig.from_dict({"base_width": 8, "widht": 3})
    cfg = UNet3DConfig(**TINY)
    assert UNet3DConfig.from_dict(cfg.to_dict()) == cfg


def test_output_depends_on_t():
    net = _net()
    x = torch.randn(1, 1, 4, 16, 16)
    assert (net(x, 10) - net(x, 900)).abs().max() > 1e-4


def _slice_response(net: UNet3D, slice_changed: int) -> torch.Tensor:
    """Max change of every output slice when input slice ``slice_changed`` is perturbed."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 4, 16, 16, generator=g)
    y = x.clone()
    y[:, :, slice_changed] += torch.randn(y[:, :, slice_changed].shape, generator=g)
    with torch.no_grad():
        return (net(y, 300) - net(x, 300)).abs().amax(dim=(0, 1, 3, 4))


def test_temporal_attention_mixes_slices():
    change = _slice_response(_net(), slice_changed=0)
    assert bool((change > 1e-4).all()), change  # every slice sees the change of slice 0


def test_without_temporal_attention_slices_are_independent():
    change = _slice_response(_net(temporal_attention=False), slice_changed=1)
    assert change[1] > 1e-3
    assert torch.allclose(change[[0, 2, 3]], torch.zeros(3), atol=1e-6, rtol=0), change


def test_every_parameter_gets_a_gradient():
    net = _net(channel_mults=(1, 2), attention_levels=(0, 1)).train()
    net(torch.randn(2, 1, 3, 8, 8), torch.tensor([1, 500])).abs().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing


def test_presets_and_shipping_size():
    default = UNet3D(PRESETS["default"])
    n = count_parameters(default)
    assert n * 4 <= 16 * 2**20  # the shipped default prior fits 16 MiB even in float32
    with torch.device("meta"):
        paper = UNet3D(PRESETS["paper"])
    assert PRESETS["paper"].base_width == 64 and PRESETS["paper"].channel_mults == (1, 2, 4, 8)
    assert count_parameters(paper) > 10 * n


def test_channels_last_activations_compute_the_same_function():
    torch.manual_seed(0)
    net = UNet3D(UNet3DConfig(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,),
                              heads=2, head_dim=4)).eval()
    x, t = torch.randn(2, 1, 3, 16, 16), torch.tensor([10, 500])
    with torch.no_grad():
        fast = net(x, t)
        net.channels_last = False
        plain = net(x, t)
    assert fast.shape == plain.shape == (2, 1, 3, 16, 16)
    assert torch.allclose(fast, plain, atol=1e-5)
