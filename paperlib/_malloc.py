"""glibc's allocator settings for many short-lived tensors of a few megabytes.

A denoiser step allocates and frees hundreds of activations of 0.5-4 MiB. With glibc's defaults
such blocks are mapped and unmapped, or the heap top is trimmed and regrown, on every call, so each
step pays for thousands of page faults, with the kernel zeroing every page again (measured on the
default MRI prior, one 16x64x64 denoiser step on 2 threads: ~6000-9000 minor faults and ~15-20 ms
of system time per step; with the settings below none). :func:`tune` keeps freed memory in the
process instead: blocks below 32 MiB come from the heap (``M_MMAP_THRESHOLD``) and up to 1 GiB
of free heap top is kept (``M_TRIM_THRESHOLD``). PyTorch's CPU tuning guide reaches the same with
jemalloc or tcmalloc through ``LD_PRELOAD``; this needs nothing installed.

``import paperlib`` applies it once per process (so every paperlib computation in a process runs
on the same allocator, baselines included). It changes nothing but glibc's two thresholds (a
process's resident memory stays near its peak while it runs); set ``PAPERLIB_MALLOC=default``
before the import to keep glibc's defaults. Without glibc (macOS, musl) it does nothing.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

logger = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc's malloc.h) and the values :func:`tune` sets
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 2**30

#: the environment variable that keeps glibc's defaults (value ``default``)
ENV = "PAPERLIB_MALLOC"
_state: dict[str, bool | None] = {"applied": None}


def tune() -> bool:
    """Set glibc's mmap and trim thresholds (module docstring); True when they were set, False
    without glibc or with ``PAPERLIB_MALLOC=default``. Idempotent."""
    if _state["applied"] is not None:
        return _state["applied"]
    setting = os.environ.get(ENV, "tuned").strip().lower()
    if setting not in ("tuned", "default"):
        raise ValueError(f"{ENV}: expected 'tuned' or 'default', got {os.environ[ENV]!r}")
    applied = False
    if setting == "tuned":
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt
        except (OSError, AttributeError):  # not glibc
            mallopt = None
        if mallopt is not None:
            applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD,
                                                                                       TRIM_THRESHOLD))
    logger.debug("glibc malloc thresholds %s", "set" if applied else "left at their defaults")
    _state["applied"] = applied
    return applied


def applied() -> bool | None:
    """Whether :func:`tune` set the thresholds in this process (None: not called yet)."""
    return _state["applied"]
