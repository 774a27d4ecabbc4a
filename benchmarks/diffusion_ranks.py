"""Per-rank peak memory and wall time of a partitioned prior for P = 1, 2, 4 CPU ranks (gloo).

An MRI-like setting: volumes of 16 x 64 x 64, G = 4 slice groups of 4 slices, spread over P ranks
with :func:`paperlib.diffusion.distributed.groups_for_rank`. Every (phase, P) runs in P fresh
processes (:func:`paperlib.diffusion.distributed.spawn`, one torch thread each), so the
process-lifetime peak RSS of a rank belongs to that phase alone (plus the interpreter, torch and
gloo, which is why the RSS just before the phase is reported too).

Phases
------
sample : :func:`~paperlib.diffusion.distributed.partitioned_sample` of ``--batch`` volumes with
    ``--steps`` DDIM steps: every rank holds the networks of its groups and denoises only its
    slices; rank 0 gathers the volume. Memory per rank falls with P (fewer networks and slices).
    The volume of every P is compared with P = 1 (it must be identical: per-group random streams).
train : one optimiser step (L1, Adam, batch ``--train-batch``) of every group the rank holds, one
    group after the other as :func:`~paperlib.diffusion.train.train_prior` does (one network and
    its Adam state in memory at a time): per-rank memory stays flat, wall time falls with P.

The weights are random (seeded per group); time and memory do not depend on their values.

    OMP_NUM_THREADS=1 python benchmarks/diffusion_ranks.py --preset default --steps 10 --json ranks.json

On a machine with fewer cores than ranks the processes share cores and the wall time stops
falling (P = 4 on 2 cores); the table records the core count.

Peak RSS here is process-lifetime and includes the interpreter, torch and gloo; until
:func:`~paperlib.diffusion.distributed.peak_rss_bytes` read ``VmHWM`` it was ``ru_maxrss``, which in a
spawned rank also carries the parent's resident size at the fork. ``benchmarks/scaling.py`` (Figure 5)
splits the peak into the fixed part, the part partitioning divides and the per-call workspace.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from paperlib.diffusion.distributed import (current_context, current_rss_bytes, groups_for_rank, partitioned_sample,
                                            peak_rss_bytes, spawn, track)
from paperlib.diffusion.partition import derive_seed
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import ScheduleConfig, q_sample
from paperlib.diffusion.unet3d import PRESETS, UNet3D, count_parameters
from paperlib.io import atomic_write_bytes

MiB = 2**20


def _model(preset: str, group: int) -> UNet3D:
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(0, "bench-model", group))
        return UNet3D(PRESETS[preset])


def _sample_rank(rank: int, world: int, preset: str, num_groups: int, shape: tuple, steps: int, seed: int) -> dict:
    before, max_before = current_rss_bytes(), peak_rss_bytes()
    groups = groups_for_rank(num_groups, rank, world)
    models = [_model(preset, g) for g in groups]
    sampler = Sampler(ScheduleConfig("cosine", 1000), method="ddim")
    out = partitioned_sample(models, sampler, num_groups=num_groups, group_size=shape[-3] // num_groups,
                             shape=shape, num_steps=steps, seed=seed)
    # out.stats (every rank's wall time and peak memory) and out.volume are set on rank 0 only
    return {"groups": groups, "rss_before": before, "maxrss_before": max_before, "peak_rss": peak_rss_bytes(),
            "params": sum(count_parameters(m) for m in models), "threads": torch.get_num_threads(),
            "wall_s": None, "stats": [st.to_dict() for st in out.stats] if out.stats else None,
            "volume": out.volume}


def _train_rank(rank: int, world: int, preset: str, num_groups: int, shape: tuple, batch: int) -> dict:
    before, max_before = current_rss_bytes(), peak_rss_bytes()
    ctx = current_context()
    groups = groups_for_rank(num_groups, rank, world)
    size = shape[-3] // num_groups
    abar = ScheduleConfig("cosine", 1000).alphas_cumprod().float()
    gen = torch.Generator().manual_seed(derive_seed(0, "bench-data", rank))
    losses = []
    with track(ctx, groups) as stats:
        for g in groups:
            model = _model(preset, g)
            opt = torch.optim.Adam(model.parameters(), lr=1e-4)
            x0 = torch.rand(batch, size, *shape[-2:], generator=gen)
            t = torch.randint(1000, (batch,), generator=gen)
            x_t = q_sample(x0, t, torch.randn(x0.shape, generator=gen), abar)
            loss = (model(x_t[:, None], t)[:, 0] - x0).abs().mean()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            del model, opt, loss
    return {"groups": groups, "rss_before": before, "maxrss_before": max_before, "peak_rss": peak_rss_bytes(),
            "params": count_parameters(_model(preset, groups[0])) * len(groups), "threads": torch.get_num_threads(),
            "wall_s": stats.wall_time_s, "losses": losses}


def run(preset: str, ranks: list[int], num_groups: int, shape: tuple, batch: int, steps: int,
        train_batch: int, phases: list[str]) -> list[dict]:
    rows: list[dict] = []
    reference = None
    for phase in phases:
        for world in ranks:
            t0 = time.perf_counter()
            if phase == "sample":
                res = spawn(_sample_rank, world, preset, num_groups, (batch, *shape), steps, 0)
                stats = {s["rank"]: s for s in res[0]["stats"]}
                volume = res[0]["volume"]
                if reference is None:
                    reference = volume
                same = bool(torch.equal(volume, reference))
            else:
                res = spawn(_train_rank, world, preset, num_groups, shape, train_batch)
                stats, same = None, None
            outer = time.perf_counter() - t0
            for rank, r in enumerate(res):
                wall = stats[rank]["wall_time_s"] if stats else r["wall_s"]
                rows.append({"phase": phase, "P": world, "rank": rank, "groups": r["groups"], "threads": r["threads"],
                             "params_held": r["params"], "wall_s": wall, "peak_rss_mib": r["peak_rss"] / MiB,
                             "rss_before_mib": r["rss_before"] / MiB, "maxrss_before_mib": r["maxrss_before"] / MiB,
                             "peak_minus_before_mib": (r["peak_rss"] - r["rss_before"]) / MiB,
                             "spawn_total_s": outer, "equals_P1": same})
            print(f"  {phase} P={world}: {outer:.1f} s including process start", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--ranks", nargs="+", type=int, default=[1, 2, 4])
    p.add_argument("--groups", type=int, default=4, help="slice groups G")
    p.add_argument("--shape", nargs=3, type=int, default=[16, 64, 64], metavar=("D", "H", "W"))
    p.add_argument("--batch", type=int, default=1, help="volumes sampled at once")
    p.add_argument("--steps", type=int, default=10, help="DDIM steps")
    p.add_argument("--train-batch", type=int, default=2)
    p.add_argument("--phases", nargs="+", default=["sample", "train"], choices=["sample", "train"])
    p.add_argument("--json", type=Path, help="write the rows here (atomically)")
    args = p.parse_args(argv)
    if any(args.groups < w for w in args.ranks):
        p.error(f"--groups {args.groups} must be >= every rank count {args.ranks}")
    rows = run(args.preset, args.ranks, args.groups, tuple(args.shape), args.batch, args.steps, args.train_batch,
               args.phases)
    cores = os.cpu_count()
    print(f"preset {args.preset}, volume {tuple(args.shape)} x batch {args.batch}, G={args.groups}, "
          f"{args.steps} DDIM steps, {cores} CPU cores, load avg {os.getloadavg()[0]:.1f}, 1 thread per rank")
    print(f"{'phase':6} {'P':>2} {'rank':>4} {'groups':10} {'params':>9} {'wall s':>7} {'peak RSS':>9} "
          f"{'RSS before':>10} {'peak-before':>11} {'same as P=1':>11}")
    for r in rows:
        print(f"{r['phase']:6} {r['P']:2d} {r['rank']:4d} {str(r['groups']):10} {r['params_held']:9d} "
              f"{r['wall_s']:7.2f} {r['peak_rss_mib']:8.0f}M {r['rss_before_mib']:9.0f}M "
              f"{r['peak_minus_before_mib']:10.1f}M {str(r['equals_P1']) if r['equals_P1'] is not None else '':>11}")
    print("max over ranks:")
    for phase in args.phases:
        for w in args.ranks:
            sel = [r for r in rows if r["phase"] == phase and r["P"] == w]
            print(f"  {phase:6} P={w}: wall {max(r['wall_s'] for r in sel):6.2f} s, "
                  f"peak RSS {max(r['peak_rss_mib'] for r in sel):6.0f} MiB, "
                  f"peak - before {max(r['peak_minus_before_mib'] for r in sel):6.1f} MiB")
    if args.json:
        atomic_write_bytes(args.json, json.dumps({"args": vars(args) | {"json": str(args.json)}, "cores": cores,
                                                  "rows": rows}, indent=1).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
