"""Wall time and peak memory of a call.

CPU: the peak resident set size of this process *during* the call, sampled every few
milliseconds by a background thread (``ru_maxrss`` cannot be reset, so it cannot attribute a
peak to one call). GPU: ``torch.cuda.max_memory_allocated`` after resetting the peak counter.
The two are different quantities and are reported under different keys.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import psutil
import torch


@dataclass(frozen=True)
class Measurement:
    result: Any
    wall_time_s: float
    peak_rss_bytes: int
    peak_cuda_alloc_bytes: int | None = None


def measure(fn: Callable[[], Any], *, interval_s: float = 0.005) -> Measurement:
    """Call ``fn()`` and return its result with wall time and peak memory.

    >>> m = measure(lambda: sum(range(1000)))
    >>> m.result, m.wall_time_s >= 0, m.peak_rss_bytes > 0
    (499500, True, True)
    """
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            peak[0] = max(peak[0], proc.memory_info().rss)

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        result = fn()
        if cuda:
            torch.cuda.synchronize()
    finally:
        wall = time.perf_counter() - t0
        stop.set()
        thread.join()
    peak[0] = max(peak[0], proc.memory_info().rss)
    return Measurement(
        result=result,
        wall_time_s=wall,
        peak_rss_bytes=int(peak[0]),
        peak_cuda_alloc_bytes=int(torch.cuda.max_memory_allocated()) if cuda else None,
    )
