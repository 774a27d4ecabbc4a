"""Slice groups over ranks with torch.distributed (gloo on CPU, nccl on GPU).

Each rank holds the models of its own slice groups (:func:`groups_for_rank`), trains and samples
only those, and meets the other ranks only where the physics is not slice-local
(:func:`all_gather_volume`) and at the end, when rank 0 collects the volume and the per-rank
wall time and peak memory.

Two ways to start ranks, running the same code:

* ``torchrun --standalone --nproc-per-node P script.py``: the script calls :func:`init_from_env`,
  which reads ``RANK``, ``WORLD_SIZE`` (and ``LOCAL_RANK``) from the environment;
* :func:`spawn` (tests, notebooks): starts ``world_size`` local processes with the same
  environment variables set, a free port and a 60 s collective timeout, and returns each rank's
  return value.

Without ``WORLD_SIZE`` in the environment, :func:`init_from_env` returns a single-process context
and every collective here is the identity, so library code never needs to branch on it.

Memory: on GPU ``torch.cuda.max_memory_allocated`` over the tracked region (``peak_cuda_alloc_bytes``);
on CPU the process's peak RSS (``peak_rss_bytes``: ``VmHWM`` on Linux, which includes the interpreter
and torch; :func:`reset_peak_rss` restarts it). The two are not comparable.

>>> groups_for_rank(4, rank=1, world_size=2)
[2, 3]
>>> rank_generator(0, 1).initial_seed() == rank_generator(0, 1).initial_seed() != rank_generator(0, 0).initial_seed()
True
"""
from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import resource
import signal
import socket
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException
from torch import Tensor, nn

from .partition import Callback, PartitionedPrior, derive_seed, group_slices
from .sampler import Sampler

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size``, its backend and device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def default_backend() -> str:
    """``"nccl"`` when CUDA is available, else ``"gloo"``."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S) -> DistContext:
    """Join the process group described by ``RANK``/``WORLD_SIZE`` (as set by torchrun or :func:`spawn`).

    Without ``WORLD_SIZE`` (or with ``WORLD_SIZE=1``) no process group is created and a
    single-process context is returned. Collectives time out after ``timeout_s`` seconds, so a
    rank that died makes the others fail instead of hanging.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    backend = backend or default_backend()
    device = torch.device(f"cuda:{local_rank}") if backend == "nccl" else torch.device("cpu")
    if backend == "nccl":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=timeout_s))
        logger.debug("rank %d/%d joined (%s)", rank, world, backend)
    return DistContext(rank=rank, world_size=world, local_rank=local_rank,
                       backend=backend if world > 1 else None, device=device)


def shutdown() -> None:
    """Leave the process group if one was joined (call at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def current_context() -> DistContext:
    """The context of an already initialised process group (or the single-process one)."""
    if dist.is_available() and dist.is_initialized():
        backend = dist.get_backend()
        rank = dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        device = torch.device(f"cuda:{local}") if backend == "nccl" else torch.device("cpu")
        return DistContext(rank, dist.get_world_size(), local, backend, device)
    return DistContext()


def groups_for_rank(num_groups: int, rank: int, world_size: int) -> list[int]:
    """Global indices of the contiguous slice groups that ``rank`` holds.

    Groups are spread as evenly as possible (the first ``num_groups % world_size`` ranks get one
    more); every rank must get at least one group.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank: expected 0 <= rank < world_size={world_size}, got {rank}")
    if num_groups < world_size:
        raise ValueError(f"num_groups={num_groups} < world_size={world_size}: every rank needs at least one slice group")
    base, extra = divmod(num_groups, world_size)
    start = rank * base + min(rank, extra)
    return list(range(start, start + base + (rank < extra)))


def rank_generator(seed: int, rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for ``rank`` seeded with ``derive_seed(seed, "rank", rank)`` (no global seeding)."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, "rank", rank))


# ---------------------------------------------------------------------------- time and memory
@dataclass
class RankStats:
    """Wall time and peak memory of one rank over a tracked region."""

    rank: int
    world_size: int
    wall_time_s: float
    peak_rss_bytes: int
    peak_cuda_alloc_bytes: int | None
    threads: int
    groups: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def proc_field_bytes(path: str, key: str) -> int | None:
    """A ``kB`` field of a Linux ``/proc`` file (e.g. ``VmHWM:`` of ``/proc/self/status``,
    ``MemAvailable:`` of ``/proc/meminfo``) in bytes; ``None`` where the file or field is missing."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int:
    """Resident set size now (Linux ``/proc/self/statm``; elsewhere the peak, an upper bound)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak resident set size of this process in bytes.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process image (reset by
    :func:`reset_peak_rss`). Not ``ru_maxrss``: for a process started by :func:`spawn` (fork, then
    exec) that keeps the parent's resident size at the fork, so a large parent hides the child's own
    peak. Elsewhere ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    peak = proc_field_bytes("/proc/self/status", "VmHWM:")
    if peak is not None:
        return peak
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)


def reset_peak_rss() -> bool:
    """Reset :func:`peak_rss_bytes` to the current resident size (Linux >= 4.0: ``5`` written to
    ``/proc/self/clear_refs``), so that a later peak belongs to what ran in between. Returns
    whether it could; where it cannot, the peak stays the process-lifetime one."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def track(ctx: DistContext | None = None, groups: Sequence[int] = ()) -> Iterator[RankStats]:
    """Measure wall time and peak memory of the block; the yielded :class:`RankStats` is filled on exit."""
    ctx = ctx or current_context()
    cuda = ctx.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(ctx.device)
    stats = RankStats(ctx.rank, ctx.world_size, 0.0, 0, None, torch.get_num_threads(), list(groups))
    t0 = time.perf_counter()
    try:
        yield stats
    finally:
        if cuda:
            torch.cuda.synchronize(ctx.device)
        stats.wall_time_s = time.perf_counter() - t0
        stats.peak_rss_bytes = peak_rss_bytes()
        stats.peak_cuda_alloc_bytes = int(torch.cuda.max_memory_allocated(ctx.device)) if cuda else None


def gather_stats(stats: RankStats) -> list[RankStats] | None:
    """All ranks' stats on rank 0 (ordered by rank); ``None`` on the other ranks."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [stats]
    out: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(stats.to_dict(), out, dst=0)
    return None if out is None else [RankStats(**d) for d in out]


# ---------------------------------------------------------------------------- collectives
def all_gather_volume(local_slices: Tensor, dim: int = -3) -> Tensor:
    """Concatenate every rank's slices along ``dim`` (rank order), on every rank.

    For physics that is not slice-local (multislice 4D-STEM): each rank passes its own slices
    (..., d_r, H, W) and gets the whole (..., D, H, W). Ranks may hold different numbers of
    slices. Without a process group it returns ``local_slices``.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return local_slices
    world = dist.get_world_size()
    dim = dim % local_slices.ndim
    n = torch.tensor([local_slices.shape[dim]], device=local_slices.device)
    counts = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(counts, n)
    counts_i = [int(c) for c in counts]
    top = max(counts_i)
    pad_shape = list(local_slices.shape)
    pad_shape[dim] = top - counts_i[dist.get_rank()]
    padded = torch.cat([local_slices, local_slices.new_zeros(pad_shape)], dim=dim).contiguous()
    bufs = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(bufs, padded)
    return torch.cat([b.narrow(dim, 0, c) for b, c in zip(bufs, counts_i)], dim=dim)


def local_part(volume: Tensor, num_groups: int, groups: Sequence[int], dim: int = -3) -> Tensor:
    """The slices of ``groups`` (contiguous, ascending) cut from a full volume along ``dim``."""
    slices = group_slices(volume.shape[dim], num_groups)
    start, stop = slices[groups[0]].start, slices[groups[-1]].stop
    return volume.narrow(dim % volume.ndim, start, stop - start)


@dataclass
class DistributedSample:
    """Result of :func:`partitioned_sample`: on rank 0 the whole volume and every rank's stats."""

    volume: Tensor | None
    stats: list[RankStats] | None
    local: Tensor
    groups: list[int]


def partitioned_sample(
    models: Sequence[nn.Module],
    sampler: Sampler,
    *,
    num_groups: int,
    group_size: int,
    shape: Sequence[int],
    num_steps: int,
    seed: int,
    callback: Callback | None = None,
    gather_for_callback: bool = False,
    x_T: Tensor | None = None,
    t_start: int | None = None,
    t_stop: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    precision: str = "float32",
) -> DistributedSample:
    """Sample a partitioned prior with the slice groups spread over the ranks.

    Every rank calls this with the models of *its* groups, ``groups_for_rank(num_groups, rank,
    world)``, in order. The random streams are per global group (derived from ``seed``), so the
    result equals ``PartitionedPrior(all_models, ...).sample(shape, generator=Generator().manual_seed(seed))``
    in one process (bit-for-bit on CPU with the same thread count).

    Parameters
    ----------
    models : this rank's networks.
    shape : the *whole* volume, (D, H, W) or (B, D, H, W) with ``D = num_groups * group_size``.
    callback : ``callback(x0_hat, t) -> x0_hat``. With ``gather_for_callback=False`` it gets and
        returns this rank's slices (slice-local physics, e.g. MRI data consistency, whose
        measurement the caller cuts with ``local_part(y, num_groups, groups_for_rank(...))``); with ``True``
        the slices are all-gathered first, the callback gets and returns the whole volume (e.g.
        multislice 4D-STEM), and each rank keeps its own slices of the result.
    x_T, t_start : optional starting point of the *whole* ``shape`` at timestep ``t_start`` (DART's
        SDEdit start, :func:`paperlib.recon.dart.start_point`); each rank cuts its own slices.
    t_stop : last timestep (DART's ``stop``, :func:`paperlib.recon.dart.stop_timestep`).
    generator : used instead of ``torch.Generator().manual_seed(seed)`` when given, e.g. the
        generator that :func:`~paperlib.recon.dart.start_point` drew ``x_T`` from, so that the
        result equals :func:`paperlib.recon.dart.dart` in one process with the same generator.
    precision : the networks' arithmetic (:func:`paperlib.diffusion.partition.run_network`).

    Returns
    -------
    :class:`DistributedSample`; ``volume`` and ``stats`` are ``None`` on ranks other than 0.
    """
    ctx = current_context()
    groups = groups_for_rank(num_groups, ctx.rank, ctx.world_size)
    if len(models) != len(groups):
        raise ValueError(f"rank {ctx.rank}: expected {len(groups)} models (groups {groups}), got {len(models)}")
    shape = tuple(int(s) for s in shape)
    if shape[-3] != num_groups * group_size:
        raise ValueError(f"shape: depth {shape[-3]} != num_groups {num_groups} x group_size {group_size}")
    if x_T is not None and tuple(x_T.shape) != shape:
        raise ValueError(f"x_T: expected the whole volume's shape {shape}, got {tuple(x_T.shape)}")
    local_shape = shape[:-3] + (len(groups) * group_size,) + shape[-2:]
    prior = PartitionedPrior([m.to(ctx.device) for m in models], sampler, group_size, group_indices=groups,
                             precision=precision)

    cb = callback
    if callback is not None and gather_for_callback:
        def cb(x0_local: Tensor, t: int) -> Tensor:
            full = callback(all_gather_volume(x0_local), t)
            return local_part(full, num_groups, groups)

    with track(ctx, groups) as stats:
        gen = generator if generator is not None else torch.Generator().manual_seed(seed)
        start = None if x_T is None else local_part(x_T, num_groups, groups).to(ctx.device)
        local = prior.sample(local_shape, num_steps=num_steps, generator=gen, callback=cb, x_T=start,
                             t_start=t_start, t_stop=t_stop, device=ctx.device, progress=progress and ctx.is_main)
        volume = all_gather_volume(local) if ctx.world_size > 1 else local
    all_stats = gather_stats(stats)
    return DistributedSample(volume if ctx.is_main else None, all_stats, local, groups)


# ---------------------------------------------------------------------------- local spawn
def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn_worker(rank: int, world_size: int, port: int, backend: str, timeout_s: float, threads: int,
                  out_dir: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_WORLD_SIZE=str(world_size))
    torch.set_num_threads(threads)
    init_from_env(backend, timeout_s)
    try:
        result = fn(rank, world_size, *args)
        buf = io.BytesIO()
        torch.save(result, buf)
        Path(out_dir, f"rank{rank}.pt").write_bytes(buf.getvalue())
    except Exception:  # for the launcher's error (:func:`_join_ranks`); torch's launcher reports it too
        Path(out_dir, f"rank{rank}.error").write_text(traceback.format_exc())
        raise
    finally:
        shutdown()


class RankFailedError(ProcessException):
    """A rank of :func:`spawn` raised, was killed, or exited before returning its result.

    ``rank`` is the failed rank (also ``error_index``, as for torch's launcher exceptions),
    ``world_size`` the size of the run; the message names both and what happened: the signal or
    exit code, or the rank's traceback where it raised.
    """

    def __init__(self, msg: str, rank: int, pid: int, world_size: int) -> None:
        super().__init__(msg, rank, pid)
        self.rank = rank
        self.world_size = world_size

    def __reduce__(self):
        return type(self), (self.msg, self.rank, self.error_pid, self.world_size)


def _stop(processes: Sequence[Any], grace_s: float = 10.0) -> None:
    """Terminate the ranks still running (SIGTERM, then SIGKILL after ``grace_s``)."""
    for proc in processes:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + grace_s
    for proc in processes:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            proc.kill()
            proc.join()


#: words of the error a rank gets in a collective when another rank is gone (gloo, NCCL, c10d)
_PEER_LOST = ("Connection reset by peer", "Connection closed by peer", "DistBackendError", "timed out",
              "Timed out", "Broken pipe")


def _rank_outcome(proc: Any, out_dir: str, rank: int) -> tuple[int, str] | None:
    """``None`` when ``rank`` ended well, else ``(priority, what happened)``; priority 0 is a rank
    that died on its own (signal, exit code, exit without result), 1 one that raised, 2 one that
    failed in a collective because another rank was gone."""
    error = Path(out_dir, f"rank{rank}.error")
    if proc.exitcode == 0 and Path(out_dir, f"rank{rank}.pt").is_file():
        return None
    if error.is_file():
        trace = error.read_text(errors="replace").strip()
        return (2 if any(w in trace for w in _PEER_LOST) else 1), f"raised:\n{trace}\n--"
    if proc.exitcode == 0:
        return 0, "exited (code 0) without returning its result, mid-run"
    if proc.exitcode is not None and proc.exitcode < 0:
        try:
            name = signal.Signals(-proc.exitcode).name
        except ValueError:
            name = f"signal {-proc.exitcode}"
        return 0, f"terminated with signal {name}"
    return 0, f"terminated with exit code {proc.exitcode}"


def _join_ranks(processes: Sequence[Any], out_dir: str, world_size: int, settle_s: float = 2.0) -> None:
    """Wait for every rank; at the first that fails, stop the others and raise :class:`RankFailedError`.

    A rank fails when it raises, is killed, exits with a non-zero code, or exits with code 0 without
    having written its result (``os._exit(0)`` in a library): the others would otherwise wait for it
    in their next collective. The others get ``settle_s`` seconds to end on their own first, so
    that the error names the rank that died, not one that then failed waiting for it.
    """
    from multiprocessing.connection import wait

    pending = {proc.sentinel: rank for rank, proc in enumerate(processes)}
    while pending:
        failed = False
        for sentinel in wait(list(pending)):
            rank = pending.pop(sentinel)
            processes[rank].join()
            failed = failed or _rank_outcome(processes[rank], out_dir, rank) is not None
        if not failed:
            continue
        wait(list(pending), timeout=settle_s)
        # a rank that raised has written its traceback before its (possibly slow) shutdown: count it
        ended = [r for r, p in enumerate(processes) if not p.is_alive() or Path(out_dir, f"rank{r}.error").is_file()]
        _stop(processes)
        outcomes = {r: o for r in ended if (o := _rank_outcome(processes[r], out_dir, r)) is not None}
        culprit = min(outcomes, key=lambda r: (outcomes[r][0], r))
        others = sorted(set(outcomes) - {culprit})
        also = f"; ranks {others} failed after it" if others else ""
        raise RankFailedError(f"distributed run failed: rank {culprit} of {world_size} {outcomes[culprit][1]}"
                              f"{also}; the other ranks were stopped", culprit, processes[culprit].pid, world_size)


def spawn(fn: Callable[..., Any], world_size: int, *args: Any, backend: str = "gloo",
          timeout_s: float = DEFAULT_TIMEOUT_S, threads: int = 1) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` in ``world_size`` fresh local processes, joined in a group.

    ``fn`` and ``args`` must be picklable (``fn`` defined at module level). Each process gets the
    torchrun environment variables, ``torch.set_num_threads(threads)`` and a process group with a
    ``timeout_s`` collective timeout on a free local port. A rank that raises, is killed or exits
    without its result stops the run at once: the other ranks are terminated and
    :class:`RankFailedError` (a ``torch.multiprocessing`` ``ProcessException``) names the rank and
    what happened (with the rank's traceback where it raised). No rank is left waiting for a dead
    one; the ``timeout_s`` collective timeout covers a rank that hangs instead.

    Returns
    -------
    ``[result of rank 0, result of rank 1, ...]``. Results travel through ``torch.save`` files, so
    they may hold tensors of any size; they are read back with ``weights_only=False`` since they
    come from our own child processes.
    """
    if world_size < 1:
        raise ValueError(f"world_size: expected >= 1, got {world_size}")
    with tempfile.TemporaryDirectory(prefix="paperlib-spawn-") as out_dir:
        context = mp.spawn(_spawn_worker, args=(world_size, free_port(), backend, timeout_s, threads, out_dir, fn,
                                                args), nprocs=world_size, join=False)
        try:
            _join_ranks(context.processes, out_dir, world_size)
        finally:
            _stop(context.processes)
        return [torch.load(Path(out_dir, f"rank{r}.pt"), weights_only=False) for r in range(world_size)]
