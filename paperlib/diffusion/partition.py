"""Slice groups: split a volume's depth into G contiguous groups, one independent prior per group.

The paper partitions the axial slices into groups, "each assigned to an independent diffusion
model", and distributes the groups uniformly over GPUs. Groups here have equal sizes: a depth
``D`` that is not a multiple of ``G`` is an error (crop or pad the volume first), so that every
model sees the same number of slices at training and at sampling time.

Randomness is per group: :meth:`PartitionedPrior.sample` derives one generator per *global* group
index from the caller's generator, so the samples of group ``g`` do not depend on which process
or how many groups run beside it. That is what makes a 2-rank run equal a 1-process run.

>>> x = torch.arange(24.).reshape(6, 2, 2)
>>> [g.shape[0] for g in split_groups(x, 3)]
[2, 2, 2]
>>> torch.equal(merge_groups(split_groups(x, 3)), x)
True
"""
from __future__ import annotations

import copy
import functools
import hashlib
import logging
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .sampler import Sampler

logger = logging.getLogger(__name__)

Callback = Callable[[Tensor, int], Tensor]

#: Arithmetic of the networks at sampling time: ``float32``, or ``bfloat16`` (weights and
#: activations in bfloat16; the sampler, the physics and the returned estimate in float32).
PRECISIONS: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16}

#: The precision names a prior or profile accepts: :data:`PRECISIONS` and ``"auto"``
#: (:func:`resolve_precision`).
PRECISION_NAMES = (*PRECISIONS, "auto")


#: /proc/cpuinfo flags of the x86 instructions that compute bfloat16 natively
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (``/proc/cpuinfo``, the first ``flags`` line);
    empty where that file does not exist or has none (macOS, Windows, some containers). Read once
    per process (every network call with ``precision="auto"`` asks)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.partition(":")[2].split())
    except OSError:
        pass
    return frozenset()


def native_bfloat16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes in bfloat16 natively (not by emulation in float32).

    CPU: the x86 flags AVX-512 BF16 or AMX-BF16 (:func:`cpu_flags`, :data:`NATIVE_BF16_FLAGS`;
    torch's own test is private). Without them oneDNN converts every operand: measured on a 2-core
    AMD EPYC with AVX2 only, one denoiser step of the real-scan MRI prior (16 x 64 x 64, 2 threads)
    took 7.7x as long in bfloat16 as in float32 (``benchmarks/results/precision_speed.md``), while on a CPU
    with AVX-512 BF16 bfloat16 is the faster one (``benchmarks/results/guided_speed.md``). A CPU
    whose flags cannot be read (not Linux) counts as without. CUDA: ``torch.cuda.is_bf16_supported()``.
    Any other device: False.
    """
    device = torch.device(device)
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return bool(cpu_flags() & NATIVE_BF16_FLAGS)


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """The arithmetic ``precision`` means on ``device``: ``"auto"`` is ``"bfloat16"`` where the
    device computes it natively (:func:`native_bfloat16`), else ``"float32"``; the other names
    are themselves. Anything else is a ``ValueError``.

    >>> resolve_precision("float32"), resolve_precision("bfloat16")
    ('float32', 'bfloat16')
    >>> resolve_precision("auto") == ("bfloat16" if native_bfloat16("cpu") else "float32")
    True
    """
    check_precision(precision)
    if precision == "auto":
        return "bfloat16" if native_bfloat16(device) else "float32"
    return precision


def check_precision(precision: str) -> str:
    """``precision`` if it is a precision name (:data:`PRECISION_NAMES`); anything else is a ``ValueError``."""
    if precision not in PRECISION_NAMES:
        raise ValueError(f"precision: expected one of {sorted(PRECISION_NAMES)}, got {precision!r}")
    return precision


_LOW_PRECISION: "weakref.WeakKeyDictionary[nn.Module, tuple[tuple, nn.Module]]" = weakref.WeakKeyDictionary()
_LOW_PRECISION_LOCK = threading.Lock()


def low_precision_copy(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """A copy of ``model`` with every parameter and buffer in ``dtype``, made once and reused.

    The copy is remade when ``model`` has other parameter or buffer tensors than when it was made,
    another train/eval mode or another ``channels_last`` setting, and after ``model.load_state_dict``
    (a hook drops it). Weights changed in place by other means
    (an optimiser step on a model that is also sampled) need :func:`release_low_precision` first:
    torch has no public counter of in-place changes. The copy does not require gradients;
    gradients still flow to its input.

    >>> net = nn.Linear(2, 2)
    >>> low_precision_copy(net, torch.bfloat16).weight.dtype
    torch.bfloat16
    >>> low_precision_copy(net, torch.bfloat16) is low_precision_copy(net, torch.bfloat16)
    True
    >>> _ = net.load_state_dict({"weight": torch.ones(2, 2), "bias": torch.zeros(2)})
    >>> low_precision_copy(net, torch.bfloat16).weight.tolist()
    [[1.0, 1.0], [1.0, 1.0]]
    """
    state = (dtype, model.training, getattr(model, "channels_last", None),  # settings the copy would freeze
             tuple(t.data_ptr() for t in (*model.parameters(), *model.buffers())))
    with _LOW_PRECISION_LOCK:
        cached = _LOW_PRECISION.get(model)
        if cached is not None and cached[0] == state:
            return cached[1]
        if cached is None:
            model.register_load_state_dict_post_hook(lambda module, keys: release_low_precision(module))
        low = copy.deepcopy(model).to(dtype).requires_grad_(False)
        _LOW_PRECISION[model] = (state, low)
        return low


def release_low_precision(model: nn.Module) -> None:
    """Drop the cached low-precision copy of ``model`` (:func:`low_precision_copy`), e.g. after its
    weights were changed in place; the next bfloat16 call makes a new one."""
    with _LOW_PRECISION_LOCK:
        if model in _LOW_PRECISION:  # kept as an entry that matches no state: the model's hook stays registered once
            _LOW_PRECISION[model] = (None, None)


def run_network(model: nn.Module, x: Tensor, t: int, precision: str = "float32") -> Tensor:
    """One network evaluation on slice groups: ``model(x[:, None], t)[:, 0]`` for ``x`` (B, s, H, W) at
    timestep ``t``, in ``precision`` (:data:`PRECISION_NAMES`; ``"auto"`` resolved for ``x``'s
    device by :func:`resolve_precision`), returned as float32.

    ``bfloat16`` runs a bfloat16 copy of the network (:func:`low_precision_copy`) on the input
    rounded to bfloat16: convolutions, matrix products, normalisations (which accumulate in
    float32 on CPU), activations and residual sums all move half the bytes. On a CPU with AVX-512
    BF16 it is what makes DART and DRIFT faster at the same SSIM (before / after per method:
    ``benchmarks/guided_speed.py``, results in ``benchmarks/results/guided_speed.md``; its distance
    from float32 and its throughput: the denoiser rows of ``figures/benchmarks.md``). Autocast, the
    previous setting, kept the normalisations in float32 at the cost of a cast around each.
    """
    dtype = PRECISIONS[resolve_precision(precision, x.device)]
    tt = torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)
    if dtype == torch.float32:
        return model(x[:, None], tt)[:, 0].float()
    return low_precision_copy(model, dtype)(x[:, None].to(dtype), tt)[:, 0].float()


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit seed derived deterministically (SHA-256) from ``seed`` and ``keys``.

    >>> derive_seed(0, "group", 1) == derive_seed(0, "group", 1) != derive_seed(0, "group", 2)
    True
    """
    text = ":".join(str(k) for k in (seed, *keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") & (2**63 - 1)


def group_slices(depth: int, num_groups: int) -> list[slice]:
    """Slices ``[g*s, (g+1)*s)`` of the ``num_groups`` groups of ``s = depth // num_groups``.

    Raises
    ------
    ValueError : ``depth`` is not a positive multiple of ``num_groups``.
    """
    if num_groups < 1:
        raise ValueError(f"num_groups: expected >= 1, got {num_groups}")
    if depth < num_groups or depth % num_groups:
        raise ValueError(
            f"depth {depth} cannot be split into {num_groups} equal slice groups; "
            f"crop or pad the volume to a multiple of {num_groups} slices")
    size = depth // num_groups
    return [slice(g * size, (g + 1) * size) for g in range(num_groups)]


def split_groups(x: Tensor, num_groups: int) -> list[Tensor]:
    """Split ``x`` (..., D, H, W) along D into ``num_groups`` contiguous groups (views).

    Returns
    -------
    list of ``num_groups`` tensors of shape (..., D / num_groups, H, W).
    """
    if x.ndim < 3:
        raise ValueError(f"split_groups: expected (..., D, H, W), got shape {tuple(x.shape)}")
    return [x[..., s, :, :] for s in group_slices(x.shape[-3], num_groups)]


def merge_groups(groups: Sequence[Tensor]) -> Tensor:
    """Concatenate slice groups (..., d_g, H, W) back along the depth axis."""
    if not groups:
        raise ValueError("merge_groups: expected at least one group")
    return torch.cat(list(groups), dim=-3)


def group_generators(generator: torch.Generator, group_indices: Sequence[int]) -> list[torch.Generator]:
    """One generator per global group index, derived from one draw of ``generator``.

    Every process that passes a generator in the same state gets the same per-group streams.
    """
    base = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return [torch.Generator(device=generator.device).manual_seed(derive_seed(base, "group", g))
            for g in group_indices]


_GROUP_POOLS: dict[tuple[int, int, int], ThreadPoolExecutor] = {}


def _group_pool(workers: int, threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``workers`` threads, each running torch ops on ``threads`` intra-op
    threads (``torch.set_num_threads`` is per calling thread), made once per pair and per process
    (a forked child inherits the pool object but not its threads, so it makes its own)."""
    key = (os.getpid(), workers, threads)
    if key not in _GROUP_POOLS:
        _GROUP_POOLS[key] = ThreadPoolExecutor(workers, thread_name_prefix="paperlib-group",
                                               initializer=torch.set_num_threads, initargs=(threads,))
    return _GROUP_POOLS[key]


class PartitionedPrior(nn.Module):
    """G independent video-diffusion denoisers, one per contiguous slice group.

    Parameters
    ----------
    models : one network per group, mapping ``(x_t (B, 1, s, H, W), t (B,))`` to the prediction
        target of ``sampler.prediction``.
    sampler : :class:`~paperlib.diffusion.sampler.Sampler` of the schedule the models were
        trained with (it converts network outputs to ``x0_hat`` and takes the reverse steps).
    group_size : slices per group, ``s``.
    group_indices : global indices of the groups held here (default ``0 .. len(models)-1``); a rank
        of a distributed run holds only some groups. They fix the per-group random streams.
    precision : the networks' arithmetic, ``"float32"``, ``"bfloat16"`` or ``"auto"`` (bfloat16
        where the device computes it natively; :func:`resolve_precision`, :func:`run_network`).

    Volumes are (D, H, W) or batched (B, D, H, W) with ``D = len(models) * group_size``.

    On a CPU with more than one torch thread, :meth:`denoise` runs the groups' networks side by
    side, ``min(groups, threads)`` Python threads with the torch threads shared out among them
    (:attr:`parallel_groups`): a group network of the default profile uses two cores at ~1.3x the
    speed of one, so two groups on one core each finish ~1.3x sooner than one after the other
    (``benchmarks/guided_speed.py``). The groups are independent, so the numbers do not depend on it.

    >>> from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig
    >>> from paperlib.diffusion.schedules import ScheduleConfig
    >>> cfg = UNet3DConfig(base_width=8, channel_mults=(1, 2), num_res_blocks=1, attention_levels=(),
    ...                    mid_attention=False)
    >>> prior = PartitionedPrior([UNet3D(cfg), UNet3D(cfg)], Sampler(ScheduleConfig("cosine", 50)), 2)
    >>> x = prior.sample((4, 8, 8), num_steps=3, generator=torch.Generator().manual_seed(0))
    >>> x.shape
    torch.Size([4, 8, 8])
    """

    #: run the group networks side by side on CPU (see the class docstring); False: one after the other
    parallel_groups: bool = True

    def __init__(self, models: Sequence[nn.Module], sampler: Sampler, group_size: int, *,
                 group_indices: Sequence[int] | None = None, precision: str = "float32") -> None:
        super().__init__()
        check_precision(precision)
        self.precision = precision
        if not models:
            raise ValueError("PartitionedPrior: expected at least one model")
        if group_size < 1:
            raise ValueError(f"group_size: expected >= 1, got {group_size}")
        self.models = nn.ModuleList(models)
        self.sampler = sampler
        self.group_size = int(group_size)
        self.group_indices = list(range(len(models)) if group_indices is None else group_indices)
        if len(self.group_indices) != len(models):
            raise ValueError(f"group_indices: expected {len(models)} indices (one per model), got {self.group_indices}")
        self.eval()

    @property
    def depth(self) -> int:
        """Slices covered by the groups held here."""
        return len(self.models) * self.group_size

    def _check(self, x: Tensor) -> None:
        if x.ndim not in (3, 4) or x.shape[-3] != self.depth:
            raise ValueError(f"PartitionedPrior: expected (D, H, W) or (B, D, H, W) with D = {len(self.models)} "
                             f"groups x {self.group_size} slices = {self.depth}, got shape {tuple(x.shape)}")

    @torch.no_grad()
    def denoise(self, x_t: Tensor, t: int) -> Tensor:
        """``x0_hat`` for the whole (local) volume: each group through its own model.

        Parameters
        ----------
        x_t : (D, H, W) or (B, D, H, W) float tensor at timestep ``t``.
        t : training timestep (int).

        Returns
        -------
        x0_hat : same shape as ``x_t``.
        """
        self._check(x_t)
        batched = x_t if x_t.ndim == 4 else x_t[None]
        groups = split_groups(batched, len(self.models))

        def one(g: int) -> Tensor:
            with torch.no_grad():  # grad mode is per thread
                return self.sampler.predict_x0(run_network(self.models[g], groups[g], t, self.precision),
                                               groups[g], t)

        threads = torch.get_num_threads()
        if self.parallel_groups and len(groups) > 1 and threads > 1 and batched.device.type == "cpu":
            workers = min(len(groups), threads)
            outs = list(_group_pool(workers, threads // workers).map(one, range(len(groups))))
        else:
            outs = [one(g) for g in range(len(groups))]
        x0 = merge_groups(outs)
        return x0 if x_t.ndim == 4 else x0[0]

    def sample(self, shape: Sequence[int], *, num_steps: int, generator: torch.Generator,
               callback: Callback | None = None, x_T: Tensor | None = None, t_start: int | None = None,
               t_stop: int = 0, post_step: Callback | None = None,
               device: torch.device | str | None = None, progress: bool = False) -> Tensor:
        """Draw a volume from the prior (DDPM or DDIM per ``self.sampler``).

        Parameters
        ----------
        shape : (D, H, W) or (B, D, H, W), ``D = self.depth``.
        num_steps : network evaluations per group.
        generator : one draw from it seeds one stream per group (see :func:`group_generators`).
        callback : ``callback(x0_hat, t) -> x0_hat`` on the (local) volume after every denoising
            step, the place of DART's physics step; DDIM steps then carry the network's own noise
            estimate (see ``eps`` in :meth:`~paperlib.diffusion.sampler.Sampler.step`).
        x_T : optional starting point of ``shape`` at timestep ``t_start`` (then the per-group
            streams only feed the steps).
        t_start : first timestep (default ``T-1``: pure noise); with ``x_T`` an image noised to
            ``t_start`` this is SDEdit-style sampling from an initial guess.
        t_stop : last timestep (default 0); above 0 the sample is the corrected denoised estimate
            there (:meth:`~paperlib.diffusion.sampler.Sampler.pairs`).
        post_step : ``post_step(x_prev, t_prev) -> x_prev`` after every reverse step (the
            projection-based baseline projects the noisy iterate here); ``t_prev = -1`` last.

        Returns
        -------
        (D, H, W) or (B, D, H, W) float32 sample on ``device``.
        """
        shape = tuple(int(s) for s in shape)
        gens = group_generators(generator, self.group_indices)
        gshape = shape[:-3] + (self.group_size,) + shape[-2:]
        if x_T is None:
            x = merge_groups([torch.randn(gshape, generator=g, device=g.device) for g in gens])
            x = x.to(device) if device is not None else x
        else:
            x = x_T
        self._check(x)
        for t, t_prev in tqdm(self.sampler.pairs(num_steps, t_start, t_stop), desc="sampling", disable=not progress,
                              leave=False):
            x0 = self.denoise(x, t)
            n = len(self.models)
            eps = [None] * n
            if callback is not None:  # DDIM carries the network's noise estimate (Sampler.step)
                eps = split_groups(self.sampler.predict_eps(x0, x, t), n)
                x0 = callback(x0, t)
            x = merge_groups([self.sampler.step(x0g, xg, t, t_prev, g, eps=e)
                              for x0g, xg, g, e in zip(split_groups(x0, n), split_groups(x, n), gens, eps)])
            if post_step is not None:
                x = post_step(x, t_prev)
        return x
