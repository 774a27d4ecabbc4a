"""Seconds per training step, parameter count and checkpoint size of the training presets.

For each preset and thread count, times the same work as one optimiser step of
:func:`paperlib.diffusion.train.train`: ``grad_accum`` micro-batches of ``batch_size`` slice
windows (``D / num_groups`` slices of the profile's volume size), forward, L1 loss, backward,
gradient clipping, Adam and the EMA update, on random data (the time does not depend on the
values). Reports the median and the minimum over ``--repeats`` steps after one warm-up step,
the implied time for the whole preset (``steps x num_groups``), the parameter count and the
float16 safetensors size per group and for all groups.

    OMP_NUM_THREADS=2 python benchmarks/diffusion_train_speed.py --preset default --threads 1 2

Run it on an otherwise idle machine: shared cores make both the medians and the 1-vs-2-thread
ratio meaningless (the load average is printed with the results).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from paperlib.diffusion.checkpoints import save_prior
from paperlib.diffusion.schedules import q_sample
from paperlib.diffusion.train import TRAIN_PRESETS
from paperlib.diffusion.unet3d import UNet3D, count_parameters

#: Volume size (D, H, W) of each preset's profile.
SHAPES = {"ci": (8, 32, 32), "default": (16, 64, 64), "paper": (160, 240, 240)}


def time_steps(preset: str, threads: int, repeats: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of ``repeats`` optimiser steps (after one warm-up) of ``preset``.

    With one thread the CPU time is what the step would take on an idle core (a useful estimate
    when the cores are shared); with more threads it also counts the other threads (and their spinning).
    """
    cfg = TRAIN_PRESETS[preset]
    d, h, w = SHAPES[preset]
    size = d // cfg.num_groups
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = UNet3D(cfg.model)
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    abar = cfg.schedule.alphas_cumprod().float()
    times, cpu = [], []
    for i in range(repeats + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        for _ in range(cfg.grad_accum):
            x0 = torch.rand(cfg.batch_size, size, h, w, generator=gen)
            t = torch.randint(cfg.schedule.num_timesteps, (cfg.batch_size,), generator=gen)
            x_t = q_sample(x0, t, torch.randn(x0.shape, generator=gen), abar)
            loss = (model(x_t[:, None], t)[:, 0] - x0).abs().mean()
            (loss / cfg.grad_accum).backward()
        if cfg.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), model.parameters()):
                pe.lerp_(p, 1.0 - cfg.ema_decay)
        if i:
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    return times, cpu


def checkpoint_bytes(preset: str) -> int:
    """Size of one group's exported weights (the preset's storage dtype)."""
    cfg = TRAIN_PRESETS[preset]
    with tempfile.TemporaryDirectory() as tmp:
        m = save_prior(Path(tmp) / "prior_group0.safetensors", UNet3D(cfg.model), group_size=1,
                       schedule=cfg.schedule, dtype=getattr(torch, cfg.weights_dtype))
    return int(m["size_bytes"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", nargs="+", default=["ci", "default"], choices=sorted(SHAPES))
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at start")
    for preset in args.preset:
        cfg = TRAIN_PRESETS[preset]
        d, h, w = SHAPES[preset]
        with torch.device("meta"):
            n = count_parameters(UNet3D(cfg.model))
        size = checkpoint_bytes(preset)
        print(f"\n{preset}: {n:,} parameters; checkpoint {size / 1e6:.2f} MB per group ({cfg.weights_dtype}), "
              f"{cfg.num_groups * size / 1e6:.2f} MB for {cfg.num_groups} groups; step = {cfg.grad_accum} x batch "
              f"{cfg.batch_size} of {d // cfg.num_groups}x{h}x{w}; {cfg.steps} steps x {cfg.num_groups} groups")
        for threads in args.threads:
            times, cpu = time_steps(preset, threads, args.repeats)
            med, med_cpu = statistics.median(times), statistics.median(cpu)
            print(f"  threads {threads}: wall {med:.3f} s/step median ({min(times):.3f} min, "
                  f"{med / cfg.grad_accum:.3f} s per batch-{cfg.batch_size} micro-batch), CPU {med_cpu:.3f} s/step; "
                  f"whole preset at the median wall time ~{med * cfg.steps * cfg.num_groups / 60:.1f} min"
                  + (f", at the CPU time ~{med_cpu * cfg.steps * cfg.num_groups / 60:.1f} min" if threads == 1 else "")
                  + f" (load avg now {os.getloadavg()[0]:.1f})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
