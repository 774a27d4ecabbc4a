"""Space-time factorised 3D U-Net (Ho et al. 2022, "Video Diffusion Models").

The slices of a slice group play the role of video frames. Every operation but one acts on each
slice separately: 3x3 convolutions, group normalisation, spatial self-attention and the
down/upsampling (in H and W only, never along D, since a group may hold only 4 or 8 slices).
The exception is *temporal* self-attention, which attends across the slices at every pixel,
with a learned relative-position bias (clamped slice distance, one bias per head), so the model
works for any number of slices. Internally the slices are folded into the batch,
``(B, C, D, H, W) -> (B*D, C, H, W)``, and unfolded only for temporal attention.

Attention is what costs at full resolution, so ``attention_levels`` selects the (coarse) levels
that carry it; the bottleneck always carries both kinds unless they are switched off.

The network maps ``(x_t, t)`` to the prediction target chosen at training time (``x0`` in
paperlib, see :mod:`paperlib.diffusion.train`). The paper uses base width 64 and channel
multipliers (1, 2, 4, 8) (:data:`PRESETS` ``"paper"``); ``"default"`` and ``"ci"`` are reduced
profiles for 2-core CPUs.

>>> cfg = UNet3DConfig(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(1,),
...                    heads=2, head_dim=4)
>>> net = UNet3D(cfg)
>>> x = torch.randn(2, 1, 4, 16, 16)
>>> net(x, torch.tensor([10, 500])).shape
torch.Size([2, 1, 4, 16, 16])
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

logger = logging.getLogger(__name__)


def reject_unknown_keys(cls, d: dict) -> None:
    """Raise ``ValueError`` naming every key of ``d`` that is not a field of dataclass ``cls``."""
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {unknown} (known: {sorted(names)})")


@dataclass(frozen=True)
class UNet3DConfig:
    """Architecture of :class:`UNet3D` (all fields are stored in checkpoint manifests).

    Parameters
    ----------
    in_channels : channels of the input volume (1 for MRI magnitude or STEM potentials).
    out_channels : channels of the output; ``None`` means ``in_channels``.
    base_width : channels of the first level.
    channel_mults : width multiplier per level; level ``i`` has ``base_width * channel_mults[i]``
        channels and spatial size ``H / 2**i``.
    num_res_blocks : ResNet blocks per level (the decoder has one more per level).
    attention_levels : levels (indices into ``channel_mults``) carrying attention blocks.
    spatial_attention, temporal_attention : which kinds of attention the attention blocks have.
    mid_attention : attention in the bottleneck (between its two ResNet blocks).
    heads, head_dim : multi-head attention size (inner width ``heads * head_dim``).
    dropout : dropout probability inside the ResNet blocks.
    norm_groups : groups of every GroupNorm; must divide every level's width.
    max_slice_distance : relative slice distances are clamped to this for the position bias.
    """

    in_channels: int = 1
    out_channels: int | None = None
    base_width: int = 64
    channel_mults: tuple[int, ...] = (1, 2, 4, 8)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (2, 3)
    spatial_attention: bool = True
    temporal_attention: bool = True
    mid_attention: bool = True
    heads: int = 4
    head_dim: int = 32
    dropout: float = 0.0
    norm_groups: int = 8
    max_slice_distance: int = 32

    def __post_init__(self) -> None:
        # JSON round trips give lists: store tuples so configs compare equal.
        object.__setattr__(self, "channel_mults", tuple(int(m) for m in self.channel_mults))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        if self.in_channels < 1 or self.base_width < 1 or self.num_res_blocks < 1:
            raise ValueError(f"UNet3DConfig: in_channels, base_width and num_res_blocks must be >= 1, got {self}")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(f"UNet3DConfig.channel_mults: expected positive ints, got {self.channel_mults}")
        n = len(self.channel_mults)
        bad = [a for a in self.attention_levels if not 0 <= a < n]
        if bad:
            raise ValueError(f"UNet3DConfig.attention_levels: levels {bad} outside 0..{n - 1}")
        for m in self.channel_mults:
            if (self.base_width * m) % self.norm_groups:
                raise ValueError(
                    f"UNet3DConfig.norm_groups={self.norm_groups} must divide every level width; "
                    f"base_width * {m} = {self.base_width * m}")
        if self.heads < 1 or self.head_dim < 1:
            raise ValueError(f"UNet3DConfig: heads and head_dim must be >= 1, got {self.heads}, {self.head_dim}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"UNet3DConfig.dropout: expected [0, 1), got {self.dropout}")

    @property
    def spatial_factor(self) -> int:
        """H and W must be divisible by this (``2 ** (levels - 1)``)."""
        return 2 ** (len(self.channel_mults) - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "UNet3DConfig":
        """Build from a dict; an unknown key is an error naming it."""
        reject_unknown_keys(cls, d)
        return cls(**d)


#: Named architectures. ``paper``: the paper's base width 64, multipliers (1, 2, 4, 8), attention at
#: the two coarsest levels. The reduced ones keep attention only at the coarsest level (8x8 for
#: 64x64 slices) and the bottleneck, where it is cheap, and one ResNet block per level:
#: ``default``: the shipped CPU prior for 16x64x64 MRI volumes (1.13 M parameters: 2.3 MB per
#: group in float16); ``ci``: tiny (81 k parameters), for tests and the ci profile.
#: Step times and the reasoning are in ``benchmarks/diffusion_train_speed.py``.
#: ``slice2d``: a 2D prior for the variational reconstruction of issue 18
#: (:mod:`paperlib.recon.variational2d`), run on single slices (``D = 1``), so temporal attention is
#: off; the width of ``ci`` with spatial attention at the coarsest level, small enough to train and
#: run on a 2-core CPU.
PRESETS: dict[str, UNet3DConfig] = {
    "paper": UNet3DConfig(),
    "default": UNet3DConfig(base_width=16, channel_mults=(1, 2, 4, 4), num_res_blocks=1,
                            attention_levels=(3,), heads=2, head_dim=16),
    "ci": UNet3DConfig(base_width=8, channel_mults=(1, 2, 2), num_res_blocks=1,
                       attention_levels=(2,), heads=2, head_dim=8, norm_groups=4),
    "slice2d": UNet3DConfig(base_width=8, channel_mults=(1, 2, 2), num_res_blocks=1, attention_levels=(2,),
                            temporal_attention=False, heads=2, head_dim=8, norm_groups=4),
}


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10_000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps (Vaswani et al.; Ho et al. 2020).

    Parameters
    ----------
    t : (B,) timesteps.
    dim : embedding width.

    Returns
    -------
    (B, dim) float32 tensor ``[cos(t w_k), sin(t w_k)]`` with ``w_k = max_period^(-k/half)``.
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3 twice, with the time embedding as FiLM (scale, shift) after the second norm.

    Acts on ``(N, C, H, W)`` with ``N = B*D``: every slice separately.
    """

    def __init__(self, in_ch: int, out_ch: int, temb_dim: int, groups: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(temb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(F.silu(temb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h)
        if h.dtype == torch.bfloat16:
            # bfloat16 broadcast addition over few channels (16) in channels-last has no vector kernel on
            # CPU (~5x slower than float32): add the shift in float32 and round once
            h = torch.addcmul(shift.float(), h, 1 + scale).to(h.dtype)
        else:
            h = h * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return h + self.skip(x)


class SpatialAttention(nn.Module):
    """Multi-head self-attention over the H*W pixels of each slice (pre-norm, residual)."""

    def __init__(self, ch: int, heads: int, head_dim: int, groups: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.norm = nn.GroupNorm(groups, ch)
        self.qkv = nn.Conv2d(ch, 3 * heads * head_dim, 1)
        self.out = nn.Conv2d(heads * head_dim, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(n, 3, self.heads, self.head_dim, h * w).transpose(-1, -2).unbind(1)
        o = F.scaled_dot_product_attention(q, k, v)  # (n, heads, hw, head_dim)
        o = o.transpose(-1, -2).reshape(n, self.heads * self.head_dim, h, w)
        return x + self.out(o)


class TemporalAttention(nn.Module):
    """Multi-head self-attention across the D slices at every pixel, with a relative position bias.

    The bias for query slice i and key slice j is a learned per-head value of
    ``clamp(j - i, -R, R)`` (R = ``max_slice_distance``), initialised to zero.
    """

    def __init__(self, ch: int, heads: int, head_dim: int, max_distance: int) -> None:
        super().__init__()
        self.heads, self.head_dim, self.max_distance = heads, head_dim, max_distance
        self.norm = nn.LayerNorm(ch)
        self.qkv = nn.Linear(ch, 3 * heads * head_dim)
        self.out = nn.Linear(heads * head_dim, ch)
        self.rel_bias = nn.Parameter(torch.zeros(2 * max_distance + 1, heads))

    def position_bias(self, d: int, device: torch.device, dtype: torch.dtype) -> Tensor:
        """(heads, d, d) additive attention bias."""
        pos = torch.arange(d, device=device)
        rel = (pos[None, :] - pos[:, None]).clamp(-self.max_distance, self.max_distance) + self.max_distance
        return self.rel_bias[rel].permute(2, 0, 1).to(dtype)

    def forward(self, x: Tensor, d: int) -> Tensor:
        nd, c, h, w = x.shape
        b = nd // d
        tokens = x.reshape(b, d, c, h * w).permute(0, 3, 1, 2).reshape(b * h * w, d, c)
        q, k, v = self.qkv(self.norm(tokens)).reshape(b * h * w, d, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=self.position_bias(d, x.device, q.dtype))
        o = self.out(o.transpose(1, 2).reshape(b * h * w, d, self.heads * self.head_dim))
        o = o.reshape(b, h * w, d, c).permute(0, 2, 3, 1).reshape(nd, c, h, w)
        return x + o


class AttentionBlock(nn.Module):
    """Spatial then temporal attention (either may be absent)."""

    def __init__(self, ch: int, cfg: UNet3DConfig) -> None:
        super().__init__()
        self.spatial = SpatialAttention(ch, cfg.heads, cfg.head_dim, cfg.norm_groups) if cfg.spatial_attention else None
        self.temporal = (TemporalAttention(ch, cfg.heads, cfg.head_dim, cfg.max_slice_distance)
                         if cfg.temporal_attention else None)

    def forward(self, x: Tensor, d: int) -> Tensor:
        if self.spatial is not None:
            x = self.spatial(x)
        if self.temporal is not None:
            x = self.temporal(x, d)
        return x


class _Level(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList()
        self.attns = nn.ModuleList()
        self.resample: nn.Module = nn.Identity()


class UNet3D(nn.Module):
    """The space-time factorised U-Net.

    ``forward(x, t)``: ``x`` (B, C, D, H, W) float, ``t`` (B,) integer (or float) timesteps, or an
    int for the whole batch; returns (B, out_channels, D, H, W). H and W must be divisible by
    ``cfg.spatial_factor``; D is arbitrary.

    ``channels_last`` (attribute, default ``True``): the activations are kept channels-last (the
    weights keep their layout), on which oneDNN's CPU convolutions run ~1.5x faster for the
    default prior; the same arithmetic up to float rounding order. ``False`` gives the contiguous
    (N, C, H, W) layout (the "before" of ``benchmarks/guided_speed.py``).
    """

    channels_last: bool = True

    def __init__(self, cfg: UNet3DConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w, g = cfg.base_width, cfg.norm_groups
        temb = 4 * w
        self.time_mlp = nn.Sequential(nn.Linear(w, temb), nn.SiLU(), nn.Linear(temb, temb))
        self.conv_in = nn.Conv2d(cfg.in_channels, w, 3, padding=1)
        widths = [w * m for m in cfg.channel_mults]
        n = len(widths)

        self.down = nn.ModuleList()
        skips = [w]
        ch = w
        for i, out in enumerate(widths):
            level = _Level()
            for _ in range(cfg.num_res_blocks):
                level.blocks.append(ResBlock(ch, out, temb, g, cfg.dropout))
                level.attns.append(AttentionBlock(out, cfg) if i in cfg.attention_levels else nn.Identity())
                ch = out
                skips.append(ch)
            if i < n - 1:
                level.resample = nn.Conv2d(ch, ch, 3, stride=2, padding=1)
                skips.append(ch)
            self.down.append(level)

        self.mid1 = ResBlock(ch, ch, temb, g, cfg.dropout)
        use_mid = cfg.mid_attention and (cfg.spatial_attention or cfg.temporal_attention)
        self.mid_attn = AttentionBlock(ch, cfg) if use_mid else nn.Identity()
        self.mid2 = ResBlock(ch, ch, temb, g, cfg.dropout)

        self.up = nn.ModuleList()
        for i, out in reversed(list(enumerate(widths))):
            level = _Level()
            for _ in range(cfg.num_res_blocks + 1):
                level.blocks.append(ResBlock(ch + skips.pop(), out, temb, g, cfg.dropout))
                level.attns.append(AttentionBlock(out, cfg) if i in cfg.attention_levels else nn.Identity())
                ch = out
            if i > 0:
                level.resample = nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"),
                                               nn.Conv2d(ch, ch, 3, padding=1))
            self.up.append(level)

        self.norm_out = nn.GroupNorm(g, ch)
        self.conv_out = nn.Conv2d(ch, cfg.out_channels or cfg.in_channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor | int) -> Tensor:
        cfg = self.cfg
        if x.ndim != 5 or x.shape[1] != cfg.in_channels:
            raise ValueError(f"UNet3D: expected x of shape (B, {cfg.in_channels}, D, H, W), got {tuple(x.shape)}")
        b, c, d, h, w = x.shape
        f = cfg.spatial_factor
        if h % f or w % f:
            raise ValueError(f"UNet3D: H and W must be divisible by {f} ({len(cfg.channel_mults)} levels), got {h}x{w}")
        t = torch.as_tensor(t, device=x.device)
        if t.ndim == 0:
            t = t.expand(b)
        temb = self.time_mlp(timestep_embedding(t, cfg.base_width).to(x.dtype))
        temb = temb.repeat_interleave(d, dim=0)  # one copy per slice: (B*D, E)

        flat = x.transpose(1, 2).reshape(b * d, c, h, w)
        if self.channels_last:  # channels-last strides on the input already: conv_in's output is channels-last
            flat = flat.to(memory_format=torch.channels_last)
        hid = self.conv_in(flat)
        if self.channels_last:
            hid = hid.contiguous(memory_format=torch.channels_last)
        skips = [hid]
        for level in self.down:
            for block, attn in zip(level.blocks, level.attns):
                hid = block(hid, temb)
                hid = attn(hid, d) if isinstance(attn, AttentionBlock) else hid
                skips.append(hid)
            if not isinstance(level.resample, nn.Identity):
                hid = level.resample(hid)
                skips.append(hid)
        hid = self.mid1(hid, temb)
        hid = self.mid_attn(hid, d) if isinstance(self.mid_attn, AttentionBlock) else hid
        hid = self.mid2(hid, temb)
        for level in self.up:
            for block, attn in zip(level.blocks, level.attns):
                hid = block(torch.cat([hid, skips.pop()], dim=1), temb)
                hid = attn(hid, d) if isinstance(attn, AttentionBlock) else hid
            hid = level.resample(hid)
        out = self.conv_out(F.silu(self.norm_out(hid)))
        return out.reshape(b, d, -1, h, w).transpose(1, 2)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
