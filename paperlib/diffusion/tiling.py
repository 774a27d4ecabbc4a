"""Priors on volumes of any shape: a partitioned prior tiled over the depth, padded in-plane.

A :class:`~paperlib.diffusion.partition.PartitionedPrior` covers exactly ``G x s`` slices
(``G`` models of ``s = group_size`` slices each) with ``H, W`` divisible by the U-Net's
downsampling factor ``f = 2 ** (len(channel_mults) - 1)``. :class:`TiledPrior` wraps it so that
any (D, H, W) with ``D >= 1`` and ``H, W >= 8`` (or batched (B, D, H, W)) can be sampled and
guided. The scheme:

**Padding inside.** ``H`` and ``W`` are padded up to the next multiple of ``f``, and a depth
``D < s`` up to ``s``; the pad is split evenly (the odd pixel after), in *reflect* mode where
the pad on either side is smaller than the size along that axis, else *replicate*
(:func:`pad_indices`). The sampler's state lives on the padded grid ``(D', H', W')``; the result
is cropped back.

**Depth tiling.** Windows of ``s`` slices start at ``0, r, 2r, ...`` with stride ``r = s - overlap``
(default ``overlap = s // 2``); the last window is aligned to the end (start ``D' - s``), so every
slice is covered (:func:`window_starts`). Window ``w`` is evaluated by model ``w % G``. The
windows of one model go through it in one batched forward call per denoising step.

Which model sees which window: the MRI priors trained on domain-randomised "general" data draw
every group's training slabs from random depths of the training volumes, so their ``G`` models
are exchangeable and any of them may evaluate any window. A *positional* prior (the synthetic
set's, where group ``g`` learned slices ``g s .. (g+1) s - 1`` of a fixed anatomy) gets its
windows in order, model ``0, 1, ..., G-1, 0, ...``; for ``D = G s``, ``H, W`` multiples of ``f``
and ``overlap = 0`` the windows are exactly the groups and :class:`TiledPrior` reproduces the
partitioned prior bit for bit (denoiser, samples, guided samples).

**Blending.** The ``x0`` predictions of overlapping windows are averaged slice by slice with the
triangle weight ``w(z) = 1 - |2 (z + 1/2) / s - 1|``, ``z = 0 .. s-1`` (largest in the middle
of a window, ``1/s`` at its ends, where a window sees least context, never zero), normalised so that
the weights of the windows covering a slice sum to one (:func:`blend_weights`). A slice covered
by a single window takes its prediction unchanged (weight exactly 1).

**Callbacks.** ``callback(x0_hat, t)`` (DART's physics step) and ``post_step(x, t_prev)`` (the
projection method) receive the *cropped*, native-shape volume, so data consistency acts on the
measured grid; their result is written back into the padded volume, whose padding keeps the
prior's own values. ``x_T`` is given at the native shape and padded the same way.

**Randomness.** One draw of the caller's ``generator`` seeds one stream per chunk of ``s``
consecutive slices of the padded depth (chunk ``c`` covers slices ``c s .. min((c+1) s, D') - 1``,
stream seeded as :func:`~paperlib.diffusion.partition.group_generators` does for group index
``c``); chunk ``c``'s initial noise on the padded grid, then the fresh noise of its stochastic
(DDPM) steps, come from stream ``c``. So the same generator state gives the same output, and for
the fitting shape the streams are the partitioned prior's own (global group indices ``0 .. G-1``).

>>> from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig
>>> from paperlib.diffusion.schedules import ScheduleConfig
>>> cfg = UNet3DConfig(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(),
...                    mid_attention=False)
>>> base = PartitionedPrior([UNet3D(cfg), UNet3D(cfg)], Sampler(ScheduleConfig("cosine", 50)), 2)
>>> prior = TiledPrior(base)
>>> prior.sample((5, 9, 11), num_steps=2, generator=torch.Generator().manual_seed(0)).shape
torch.Size([5, 9, 11])
>>> window_starts(7, 4, 2)
[0, 2, 3]
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..io import InputValidationError
from .partition import Callback, PartitionedPrior, group_generators, run_network
from .sampler import Sampler

__all__ = ["TiledPrior", "blend_weights", "pad_indices", "tiled", "window_starts", "MIN_SIZE"]

MIN_SIZE = 8
"""Smallest in-plane size ``H, W`` a :class:`TiledPrior` accepts (pixels)."""


def pad_indices(size: int, padded: int) -> tuple[Tensor, int]:
    """Source indices that pad an axis of ``size`` to ``padded`` (split evenly, odd one after).

    Reflect mode (``... 2 1 | 0 1 2 ... n-1 | n-2 ...``, the edge not repeated) where the pad on
    each side is smaller than ``size``, else replicate (the edge value repeated).

    Returns
    -------
    index : (padded,) int64 tensor of source indices in ``[0, size)``.
    before : pad before the data (the native data sit at ``before .. before + size - 1``).

    >>> pad_indices(4, 7)[0].tolist(), pad_indices(1, 3)[0].tolist()
    ([1, 0, 1, 2, 3, 2, 1], [0, 0, 0])
    """
    if not 1 <= size <= padded:
        raise ValueError(f"pad_indices: expected 1 <= size <= padded, got size={size}, padded={padded}")
    before = (padded - size) // 2
    after = padded - size - before
    index = torch.arange(-before, size + after)
    if max(before, after) < size:
        index = torch.where(index < 0, -index, index)
        index = torch.where(index >= size, 2 * (size - 1) - index, index)
    else:
        index = index.clamp(0, size - 1)
    return index, before


def window_starts(depth: int, group_size: int, overlap: int) -> list[int]:
    """First slices of the depth windows: stride ``group_size - overlap``, the last one ending at ``depth``.

    Parameters
    ----------
    depth : slices ``D' >= group_size`` of the (padded) volume.
    group_size : slices per window ``s``.
    overlap : slices shared by consecutive windows, ``0 <= overlap < s``.
    """
    if depth < group_size:
        raise ValueError(f"window_starts: depth {depth} is below the window of {group_size} slices")
    starts = list(range(0, depth - group_size + 1, group_size - overlap))
    if starts[-1] != depth - group_size:
        starts.append(depth - group_size)
    return starts


def blend_weights(depth: int, group_size: int, starts: Sequence[int]) -> Tensor:
    """Per-window, per-slice blending weights, normalised to sum to one on every slice.

    The raw weight of slice ``z`` of a window is the triangle ``1 - |2 (z + 1/2) / s - 1|``,
    at least ``1/s`` (at ``z = 0`` and ``s - 1``); each slice's weights are divided by their sum
    over the windows that cover it, so a slice covered once gets exactly 1.

    Returns
    -------
    (len(starts), group_size) float64 tensor; ``weights[w, z]`` multiplies window ``w``'s
    prediction of slice ``starts[w] + z``.

    >>> blend_weights(6, 4, [0, 2]).tolist()[0]
    [1.0, 1.0, 0.75, 0.25]
    """
    s = group_size
    z = torch.arange(s, dtype=torch.float64)
    tri = 1.0 - (2.0 * (z + 0.5) / s - 1.0).abs()
    total = torch.zeros(depth, dtype=torch.float64)
    for start in starts:
        total[start:start + s] += tri
    if not bool((total > 0).all()):
        raise ValueError(f"blend_weights: windows {list(starts)} of {s} slices leave slices of {depth} uncovered")
    return torch.stack([tri / total[start:start + s] for start in starts])


class TiledPrior(nn.Module):
    """A partitioned prior tiled over any depth and padded to any in-plane size (scheme: module docstring).

    Parameters
    ----------
    prior : the :class:`~paperlib.diffusion.partition.PartitionedPrior` whose ``G`` models
        evaluate the windows (window ``w`` by model ``w % G``).
    overlap : slices shared by consecutive depth windows, ``0 <= overlap < group_size``
        (default ``group_size // 2``).

    Attributes
    ----------
    prior, sampler, models, group_size : the wrapped prior and its parts.
    overlap : int.
    spatial_factor : ``H, W`` are padded to multiples of it (the U-Net's ``cfg.spatial_factor``,
        1 for models without one).

    Volumes are (D, H, W) or batched (B, D, H, W) with ``D >= 1`` and ``H, W >= 8``
    (:meth:`check_fits`).
    """

    def __init__(self, prior: PartitionedPrior, *, overlap: int | None = None) -> None:
        super().__init__()
        if not isinstance(prior, PartitionedPrior):
            raise TypeError(f"prior: expected a PartitionedPrior, got {type(prior).__name__}")
        s = prior.group_size
        overlap = s // 2 if overlap is None else overlap
        if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < s:
            raise InputValidationError(f"overlap: expected an integer in [0, {s - 1}] (group_size {s}), got {overlap!r}")
        self.prior = prior
        self.overlap = int(overlap)
        cfg = getattr(prior.models[0], "cfg", None)
        self.spatial_factor = int(getattr(cfg, "spatial_factor", 1))
        self.eval()

    @property
    def sampler(self) -> Sampler:
        return self.prior.sampler

    @property
    def models(self) -> nn.ModuleList:
        return self.prior.models

    @property
    def group_size(self) -> int:
        return self.prior.group_size

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, overlap={self.overlap}, spatial_factor={self.spatial_factor}"

    # ------------------------------------------------------------------ geometry
    def check_fits(self, shape: Sequence[int]) -> None:
        """Raise :class:`~paperlib.io.InputValidationError` unless ``shape`` is (D, H, W) or
        (B, D, H, W) with ``D >= 1`` and ``H, W >= 8``."""
        shape = tuple(int(n) for n in shape)
        if len(shape) not in (3, 4) or min(shape) < 1 or min(shape[-2:]) < MIN_SIZE:
            raise InputValidationError(
                f"volume shape {shape}: the tiled prior takes (D, H, W) or (B, D, H, W) with D >= 1 and "
                f"H, W >= {MIN_SIZE}")

    def padded_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """The padded grid of ``shape``: depth at least ``group_size``, ``H, W`` multiples of
        :attr:`spatial_factor` (leading batch dimensions unchanged)."""
        self.check_fits(shape)
        *lead, d, h, w = (int(n) for n in shape)
        f = self.spatial_factor
        return (*lead, max(d, self.group_size), -(-h // f) * f, -(-w // f) * f)

    def _grid(self, shape: Sequence[int]) -> tuple[list[Tensor], tuple[slice, slice, slice]]:
        """Padding indices of the last three axes and the slices that crop the native volume out."""
        native, padded = tuple(shape)[-3:], self.padded_shape(shape)[-3:]
        indices, crop = [], []
        for n, p in zip(native, padded):
            index, before = pad_indices(n, p)
            indices.append(index)
            crop.append(slice(before, before + n))
        return indices, (crop[0], crop[1], crop[2])

    def pad(self, x: Tensor) -> Tensor:
        """``x`` (..., D, H, W) padded to :meth:`padded_shape` (scheme: module docstring)."""
        indices, _ = self._grid(x.shape)
        for axis, index in zip((-3, -2, -1), indices):
            if index.numel() != x.shape[axis]:
                x = x.index_select(axis, index.to(x.device))
        return x

    def crop(self, x_padded: Tensor, shape: Sequence[int]) -> Tensor:
        """The native-``shape`` part of the padded ``x_padded`` (a view)."""
        _, (sd, sh, sw) = self._grid(shape)
        return x_padded[..., sd, sh, sw]

    def _write_back(self, x_padded: Tensor, native: Tensor, shape: Sequence[int]) -> Tensor:
        if tuple(x_padded.shape) == tuple(native.shape):
            return native
        _, (sd, sh, sw) = self._grid(shape)
        out = x_padded.clone()
        out[..., sd, sh, sw] = native
        return out

    # ------------------------------------------------------------------ network
    @torch.no_grad()
    def _denoise_padded(self, x_t: Tensor, t: int) -> Tensor:
        """``x0_hat`` of a padded batch (B, D', H', W'): every window through its model, blended."""
        s, n_models = self.group_size, len(self.models)
        starts = window_starts(x_t.shape[1], s, self.overlap)
        weights = blend_weights(x_t.shape[1], s, starts).to(device=x_t.device, dtype=x_t.dtype)
        x0 = torch.zeros_like(x_t)
        for m, model in enumerate(self.models):
            mine = list(range(m, len(starts), n_models))
            if not mine:
                continue
            windows = torch.cat([x_t[:, starts[w]:starts[w] + s] for w in mine])  # (n_w B, s, H', W')
            out = self.sampler.predict_x0(run_network(model, windows, t, self.prior.precision), windows, t)
            for pred, w in zip(out.split(x_t.shape[0]), mine):
                x0[:, starts[w]:starts[w] + s] += weights[w][:, None, None] * pred
        return x0

    def denoise(self, x_t: Tensor, t: int) -> Tensor:
        """``x0_hat`` for a (D, H, W) or (B, D, H, W) volume at timestep ``t`` (padded, tiled,
        blended and cropped back).

        Returns
        -------
        float tensor of ``x_t``'s shape.
        """
        self.check_fits(x_t.shape)
        batched = x_t if x_t.ndim == 4 else x_t[None]
        x0 = self.crop(self._denoise_padded(self.pad(batched), t), batched.shape)
        return x0 if x_t.ndim == 4 else x0[0]

    # ------------------------------------------------------------------ sampling
    def sample(self, shape: Sequence[int], *, num_steps: int, generator: torch.Generator,
               callback: Callback | None = None, post_step: Callback | None = None,
               x_T: Tensor | None = None, t_start: int | None = None, t_stop: int = 0,
               device: torch.device | str | None = None, progress: bool = False) -> Tensor:
        """Draw a volume of any ``shape`` from the tiled prior (DDPM or DDIM per ``self.sampler``).

        The keyword arguments are those of :meth:`PartitionedPrior.sample
        <paperlib.diffusion.partition.PartitionedPrior.sample>`; here they mean:

        Parameters
        ----------
        shape : (D, H, W) or (B, D, H, W), ``D >= 1``, ``H, W >= 8``.
        num_steps : denoising steps (one batched network call per model each).
        generator : one draw from it seeds one stream per chunk of ``group_size`` padded slices
            (module docstring, *Randomness*).
        callback : ``callback(x0_hat, t) -> x0_hat`` on the cropped native-shape volume after every
            denoising step (DART's physics step); DDIM then carries the network's own noise estimate.
        x_T : optional starting point of ``shape`` (native) at timestep ``t_start``.
        t_start : first timestep (default ``T-1``, pure noise).
        t_stop : last timestep (default 0; :meth:`~paperlib.diffusion.sampler.Sampler.pairs`).
        post_step : ``post_step(x_prev, t_prev) -> x_prev`` on the cropped volume after every
            reverse step; ``t_prev = -1`` last.
        device : where the sample lives (the noise is drawn on the generator's device).
        progress : show a progress bar over the steps.

        Returns
        -------
        float32 tensor of ``shape`` on ``device`` (or ``x_T``'s device).
        """
        shape = tuple(int(n) for n in shape)
        self.check_fits(shape)
        batched = shape if len(shape) == 4 else (1, *shape)
        padded = self.padded_shape(batched)
        s = self.group_size
        chunks = [slice(c, min(c + s, padded[1])) for c in range(0, padded[1], s)]
        gens = group_generators(generator, range(len(chunks)))
        if x_T is None:
            x = torch.cat([torch.randn((padded[0], c.stop - c.start, *padded[2:]), generator=g, device=g.device)
                           for c, g in zip(chunks, gens)], dim=1)
            x = x.to(device) if device is not None else x
        else:
            if tuple(x_T.shape) != shape:
                raise InputValidationError(f"x_T: expected shape {shape}, got {tuple(x_T.shape)}")
            x = self.pad(x_T.reshape(batched))
        native = lambda v: self.crop(v, batched).reshape(shape)  # noqa: E731
        for t, t_prev in tqdm(self.sampler.pairs(num_steps, t_start, t_stop), desc="sampling", disable=not progress,
                              leave=False):
            x0 = self._denoise_padded(x, t)
            eps = None
            if callback is not None:  # DDIM carries the network's noise estimate (Sampler.step)
                eps = self.sampler.predict_eps(x0, x, t)
                x0 = self._write_back(x0, callback(native(x0), t).reshape(batched), batched)
            x = torch.cat([self.sampler.step(x0[:, c], x[:, c], t, t_prev, g, eps=None if eps is None else eps[:, c])
                           for c, g in zip(chunks, gens)], dim=1)
            if post_step is not None:
                x = self._write_back(x, post_step(native(x), t_prev).reshape(batched), batched)
        return native(x).contiguous()


def tiled(prior: PartitionedPrior | TiledPrior, *, overlap: int | None = None) -> TiledPrior:
    """``prior`` itself if it is already a :class:`TiledPrior`, else ``TiledPrior(prior, overlap=overlap)``."""
    return prior if isinstance(prior, TiledPrior) else TiledPrior(prior, overlap=overlap)
