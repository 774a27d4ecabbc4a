"""Figure 5 (bottom): DART's peak memory per rank, split into what partitioning divides and what it
does not, and DART's wall time per volume, against the number of ranks P.

Settings (:data:`SETTINGS`)
---------------------------
``ci``      : the ci profile's 8 x 32 x 32 volume, ``ci`` networks, G = 2 groups, P in {1, 2} (tests, the
              ci notebook).
``default`` : the default profile's 16 x 64 x 64 MRI volume, ``default``-width group networks, G = 4
              groups of 4 slices (the shipped default prior has G = 2 groups of 8; G = 4 lets P = 4 ranks
              hold one group each), P in {1, 2, 4}.
``paper``   : the paper profile's 155 x 240 x 240 volume, paper-width networks (``PRESETS["paper"]``,
              61.5 M parameters, 246 MB in float32 each), P in {1, 2, 4, 8}. The grouping rule of
              :func:`paperlib.diffusion.partition.group_slices` needs equal groups, so G must divide
              155 = 5 x 31; G = 31 groups of 5 slices is the only choice with G >= 8. The groups are
              spread over ranks by :func:`paperlib.diffusion.distributed.groups_for_rank` (contiguous,
              the first ``31 mod P`` ranks one more): the busiest rank holds 31 / 16 / 8 / 4 groups at
              P = 1 / 2 / 4 / 8.

Networks are randomly initialised (seeded per group); time and memory do not depend on the weights.
The DART settings (steps, start, physics steps, lambda, sampler, clip) and the k-space mask
(``mri_physics.table1_mask``, acceleration, centre fraction) are the profile's; the measurement is the
mask applied to a seeded smooth random volume.

Two kinds of run
----------------
``gloo`` (ci, default): every P runs as P fresh processes joined by gloo
    (:func:`paperlib.diffusion.distributed.spawn`, one torch thread each), and each runs the whole
    DART reconstruction: :func:`paperlib.recon.dart.start_point` and
    :func:`paperlib.recon.dart.physics_callback` (paper Eq. 4, slice-local, so each rank corrects only its
    own slices) through :func:`~paperlib.diffusion.distributed.partitioned_sample`. The reconstruction
    at every P is compared with :func:`paperlib.recon.dart.dart` in one process (``equals_dart``; it
    must be bit-identical). Wall time per volume is measured.
``probe`` (paper): the busiest rank of each P runs alone in a fresh process (no process group) and
    holds everything that rank would hold (its networks and measured slices); it then runs
    ``PROBE_STEPS`` = 3 DART steps (network, Eq. 4, DDIM step) of ONE of its groups: the first is cold
    (one-time set-up, ``group_step_cold_s``), the mean of the others is the group's step
    (``group_step_s`` wall, ``group_step_cpu_s`` CPU). Its peak memory is the rank's peak in a whole
    run (every step and every group repeats the same work on same-sized tensors, one group at a time),
    except for the sampler's iterates of the rank's slices (``4 x slices x H x W x 4 B``, 0.14 GiB at
    P = 1), which the probe adds to the workspace analytically (``iterates_added_mib``). Time: the
    group's step times the groups held is the rank's step (``extrapolated``); times the profile's DART
    steps, the volume (``extrapolated``). On this CPU one paper-width step of one 5-slice group takes
    about 35 CPU seconds, a whole step at P = 1 about 18 CPU minutes, so whole runs are out of reach.
    The ranks are probed one at a time because P ranks at once do not fit this 24 GiB machine for
    P = 8 (the CSV's ``all_ranks_peak_GiB`` sums the per-rank peaks, ``all_ranks_fit_machine`` compares
    the sum with the machine's memory); the probe process has no gloo group, whose cost the default
    rows show to be small. The same probe is run at the default shape (``default_probe``), where the
    extrapolated volume time can be compared with the measured one.

Memory split (per rank, Linux RSS from ``/proc/self/statm``, peak from ``VmHWM``)
----------------------------------------------------------------------------------
fixed     : RSS right before the phase, after a warm-up that parses the profile, builds and drops a
            measurement and calls a tiny network (so one-time lazy costs land here): interpreter,
            numpy, torch, paperlib, the gloo group. A process that does everything but hold networks
            and slices.
divided   : RSS after the rank built the networks of its groups and cut its slices of the
            measurement, minus ``fixed``: what the rank keeps for its own groups during the whole run,
            the part that partitioning divides (G / P groups per rank).
workspace : ``peak - fixed - divided``: transient memory of a step: the activations of ONE group's
            network call (``PartitionedPrior.denoise`` runs the groups one after the other, so this does
            not shrink with P), the sampler's iterates of the rank's slices, the DART start point and
            the gathered volume.
The peak is the process's ``VmHWM`` reset to the current RSS right before the phase
(:func:`paperlib.diffusion.distributed.reset_peak_rss`, ``peak_reset``), so it belongs to the phase.
(``ru_maxrss`` would not do: a process started by ``spawn`` inherits the parent's resident size at the
fork in it, which made every rank's peak 416 MiB here, the size of the parent.)

Time: ``volume_s`` is the rank's wall time of the whole reconstruction (gloo) and ``cpu_s`` its process
CPU time, which is what the wall time would be with a core per rank (robust to the shared cores).

Time on this machine: 2 cores shared with other jobs; ranks beyond the free cores share them, so the
measured wall time stops falling (and varies with the load average, recorded per run). Memory does
not depend on the load.

    OMP_NUM_THREADS=1 python benchmarks/scaling.py --setting default
    OMP_NUM_THREADS=1 python benchmarks/scaling.py --setting paper

write ``benchmarks/results/scaling_<setting>.csv`` and ``.json`` (rows + the printed log).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from paperlib.config import load_profile
from paperlib.diffusion.distributed import (current_rss_bytes, groups_for_rank, local_part, partitioned_sample,
                                            peak_rss_bytes, proc_field_bytes, reset_peak_rss, spawn)
from paperlib.diffusion.partition import PartitionedPrior, derive_seed
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.unet3d import PRESETS, UNet3D, count_parameters
from paperlib.io import InputValidationError, atomic_write_bytes
from paperlib.physics.mri import MRIOperator, make_mask
from paperlib.recon.dart import dart, physics_callback, start_point
from paperlib import tables

MiB = 2**20
GiB = 2**30
RESULTS = Path(__file__).resolve().parent / "results"
MACHINE_GIB = 24.0
#: DART steps of one group per probe: the first is cold (one-time set-up), the others are timed.
PROBE_STEPS = 3


@dataclass(frozen=True)
class Setting:
    """One scaling measurement: the volume, the networks, the groups and the ranks."""

    name: str
    profile: str
    preset: str
    num_groups: int
    ranks: tuple[int, ...]
    kind: str  # "gloo" or "probe"

    def check(self) -> None:
        if self.kind not in ("gloo", "probe"):
            raise InputValidationError(f"setting {self.name}: kind: expected 'gloo' or 'probe', got {self.kind!r}")
        if self.preset not in PRESETS:
            raise InputValidationError(f"setting {self.name}: preset: expected one of {sorted(PRESETS)}, got {self.preset!r}")
        if not self.ranks or min(self.ranks) < 1 or max(self.ranks) > self.num_groups:
            raise InputValidationError(f"setting {self.name}: ranks: expected 1 <= P <= G={self.num_groups}, "
                                       f"got {self.ranks}")


SETTINGS: dict[str, Setting] = {
    "ci": Setting("ci", "ci", "ci", 2, (1, 2), "gloo"),
    "default": Setting("default", "default", "default", 4, (1, 2, 4), "gloo"),
    "default_probe": Setting("default_probe", "default", "default", 4, (1, 2, 4), "probe"),
    "paper": Setting("paper", "paper", "paper", 31, (1, 2, 4, 8), "probe"),
}


# ---------------------------------------------------------------------------- per-process helpers
def available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (None where there is none)."""
    return proc_field_bytes("/proc/meminfo", "MemAvailable:")


def machine() -> dict:
    """Cores, CPU model, torch version, date (UTC) and load average, for the CSV."""
    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": model, "torch": torch.__version__,
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"),
            "loadavg_1min": round(os.getloadavg()[0], 2)}


def network(preset: str, group: int) -> UNet3D:
    """The randomly initialised network of ``group`` (seeded per group, no global seeding left behind)."""
    with torch.random.fork_rng():
        torch.manual_seed(derive_seed(0, "scaling-model", group))
        return UNet3D(PRESETS[preset]).eval()


def measurement(profile_name: str, seed: int) -> tuple[MRIOperator, torch.Tensor]:
    """The profile's k-space mask (``mri_physics.table1_mask``) applied to a seeded smooth volume.

    Returns ``(operator, y)``, ``y`` complex64 (D, H, W) of the profile's ``mri.shape``.
    """
    cfg = load_profile(profile_name)
    d, h, w = cfg.mri.shape
    gen = torch.Generator().manual_seed(derive_seed(seed, "scaling-volume"))
    coarse = torch.rand(1, 1, max(d // 4, 1), max(h // 8, 1), max(w // 8, 1), generator=gen)
    volume = torch.nn.functional.interpolate(coarse, size=(d, h, w), mode="trilinear", align_corners=False)[0, 0]
    ph = cfg.mri_physics
    mask = make_mask(ph.table1_mask, (h, w), ph.acceleration, ph.center_fraction,
                     generator=torch.Generator().manual_seed(derive_seed(seed, "scaling-mask")))
    op = MRIOperator(mask)
    return op, op.forward(volume)


def dart_settings(profile_name: str) -> dict:
    """The profile's DART settings and sampler (``mri_diffusion``)."""
    md = load_profile(profile_name).mri_diffusion
    return {"steps": md.dart.steps, "start": md.dart.start, "physics_steps": md.dart.physics_steps,
            "step_kwargs": md.dart.step_kwargs(), "method": md.sampler, "eta": md.eta, "clip": md.clip}


def make_sampler(d: dict) -> Sampler:
    return Sampler(ScheduleConfig("cosine", 1000), method=d["method"], eta=d["eta"], prediction="v",
                   clip=None if d["clip"] is None else tuple(d["clip"]))


# ---------------------------------------------------------------------------- rank workers
def _hold(setting: Setting, groups: list[int], seed: int) -> tuple[list[UNet3D], MRIOperator, torch.Tensor, torch.Tensor]:
    """Build the networks of ``groups`` and cut their slices of the measurement (what a rank holds)."""
    models = [network(setting.preset, g) for g in groups]
    op, y = measurement(setting.profile, seed)
    y_local = local_part(y, setting.num_groups, groups).clone()
    return models, op, y, y_local


def _warm_up(setting: Setting, seed: int) -> None:
    """Everything a rank does once before it holds anything: parse the profile, build a mask and a
    measurement (then drop them), build and call a tiny network, so that the lazy one-time costs
    (imports, FFT and convolution set-up) land in the fixed part, not in the divided one."""
    op, y = measurement(setting.profile, seed)
    op.zero_filled(y[:1])
    with torch.no_grad():
        network("ci", 0)(torch.zeros(1, 1, 2, 8, 8), torch.zeros(1, dtype=torch.long))
    del op, y


def _start() -> tuple[int, int, bool]:
    """Warm-up done: the fixed RSS, the peak so far, and whether the peak could be reset to it."""
    rss0, max0 = current_rss_bytes(), peak_rss_bytes()
    return rss0, max0, reset_peak_rss()


def _memory(start: tuple[int, int, bool], rss1: int, extra: int = 0) -> dict:
    rss0, max0, reset = start
    peak = max(peak_rss_bytes(), rss1)
    return {"fixed_mib": rss0 / MiB, "divided_mib": (rss1 - rss0) / MiB,
            "workspace_mib": (peak - rss1 + extra) / MiB, "peak_rss_mib": (peak + extra) / MiB,
            "maxrss_before_mib": max0 / MiB, "peak_reset": reset, "peak_valid": reset or max0 <= rss1}


def gloo_rank(rank: int, world: int, setting: Setting, seed: int) -> dict:
    """One rank of a whole DART reconstruction under gloo (run by :func:`spawn`)."""
    _warm_up(setting, seed)
    start = _start()
    groups = groups_for_rank(setting.num_groups, rank, world)
    models, op, y, y_local = _hold(setting, groups, seed)
    rss1 = current_rss_bytes()
    d = dart_settings(setting.profile)
    sampler = make_sampler(d)
    shape = tuple(y.shape)
    gen = torch.Generator().manual_seed(seed)
    local_prior = PartitionedPrior(models, sampler, shape[0] // setting.num_groups, group_indices=groups)
    t_start, x_T = start_point(local_prior, shape, d["start"], op.zero_filled(y).real, gen)
    del y
    cb = physics_callback(op, y_local, steps=d["physics_steps"], step_kwargs=d["step_kwargs"])
    cpu0 = time.process_time()
    out = partitioned_sample(models, sampler, num_groups=setting.num_groups, group_size=shape[0] // setting.num_groups,
                             shape=shape, num_steps=d["steps"], seed=seed, callback=cb, x_T=x_T, t_start=t_start,
                             generator=gen)
    cpu = time.process_time() - cpu0
    return {"groups": groups, "params": sum(count_parameters(m) for m in models), "threads": torch.get_num_threads(),
            **_memory(start, rss1), "cpu_s": cpu, "stats": [s.to_dict() for s in out.stats] if out.stats else None,
            "volume": out.volume, "steps": d["steps"]}


def probe_rank(rank: int, world: int, setting: Setting, ranks: int, seed: int) -> dict:
    """The busiest rank of a ``ranks``-rank run, alone: hold its groups, run ``PROBE_STEPS`` DART steps
    of one group (the first cold, the others timed)."""
    _warm_up(setting, seed)
    start = _start()
    groups = groups_for_rank(setting.num_groups, 0, ranks)
    models, op, y, y_local = _hold(setting, groups, seed)
    del y
    rss1 = current_rss_bytes()
    d = dart_settings(setting.profile)
    sampler = make_sampler(d)
    size = y_local.shape[0] // len(groups)
    one = PartitionedPrior(models[:1], sampler, size, group_indices=groups[:1])
    y_group = y_local[:size]
    cb = physics_callback(op, y_group, steps=d["physics_steps"], step_kwargs=d["step_kwargs"])
    t_start = sampler.start_timestep(d["start"])
    x_T = torch.randn(tuple(y_group.shape), generator=torch.Generator().manual_seed(seed))
    walls, cpus = [], []
    for _ in range(PROBE_STEPS):
        t0, cpu0 = time.perf_counter(), time.process_time()
        one.sample(tuple(y_group.shape), num_steps=1, generator=torch.Generator().manual_seed(seed), callback=cb,
                   x_T=x_T, t_start=t_start)
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - cpu0)
    group_step, group_cpu = float(np.mean(walls[1:])), float(np.mean(cpus[1:]))
    iterates = 4 * y_local.shape[0] * y_local.shape[1] * y_local.shape[2] * 4  # x_t, x0_hat, eps, x_prev (float32)
    return {"groups": groups, "params": sum(count_parameters(m) for m in models), "threads": torch.get_num_threads(),
            **_memory(start, rss1, extra=iterates), "iterates_added_mib": iterates / MiB,
            "group_step_s": group_step, "group_step_cold_s": walls[0], "group_step_cpu_s": group_cpu,
            "cpu_s": group_cpu * len(groups) * d["steps"], "steps": d["steps"]}


# ---------------------------------------------------------------------------- runs
def reference_dart(setting: Setting, seed: int) -> torch.Tensor:
    """:func:`paperlib.recon.dart.dart` in this process with all G networks (one thread)."""
    d = dart_settings(setting.profile)
    op, y = measurement(setting.profile, seed)
    models = [network(setting.preset, g) for g in range(setting.num_groups)]
    prior = PartitionedPrior(models, make_sampler(d), y.shape[0] // setting.num_groups)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return dart(prior, op, y, generator=torch.Generator().manual_seed(seed), num_steps=d["steps"],
                    start=d["start"], init=op.zero_filled(y).real, physics_steps=d["physics_steps"],
                    step_kwargs=d["step_kwargs"])
    finally:
        torch.set_num_threads(threads)


def _row(setting: Setting, world: int, rank: int, r: dict, env: dict, shape: tuple, **extra) -> dict:
    return {"setting": setting.name, "kind": setting.kind, "shape": "x".join(map(str, shape)), "preset": setting.preset,
            "num_groups": setting.num_groups, "group_size": shape[0] // setting.num_groups, "P": world, "rank": rank,
            "groups_held": len(r["groups"]), "slices_held": len(r["groups"]) * (shape[0] // setting.num_groups),
            "params_held": r["params"], "threads": r["threads"], "dart_steps": r["steps"],
            "fixed_mib": r["fixed_mib"], "divided_mib": r["divided_mib"], "workspace_mib": r["workspace_mib"],
            "peak_rss_mib": r["peak_rss_mib"], "maxrss_before_mib": r["maxrss_before_mib"],
            "peak_reset": r["peak_reset"], "peak_valid": r["peak_valid"], "memory_source": "measured",
            "cpu_s": r["cpu_s"], **extra, **env}


def run_setting(setting: Setting, seed: int = 0, ranks: tuple[int, ...] | None = None, check: bool = True,
                log=print) -> list[dict]:
    """Measure ``setting`` at every P of ``ranks`` (default: the setting's); one row per (P, rank).

    ``check``: compare every gloo reconstruction with :func:`reference_dart` (``equals_dart``).
    """
    setting.check()
    ranks = tuple(ranks or setting.ranks)
    shape = tuple(load_profile(setting.profile).mri.shape)
    if shape[0] % setting.num_groups:
        raise InputValidationError(f"setting {setting.name}: depth {shape[0]} is not a multiple of G={setting.num_groups}")
    reference = reference_dart(setting, seed) if (check and setting.kind == "gloo") else None
    rows: list[dict] = []
    for world in ranks:
        start_env = machine()
        if setting.kind == "gloo":
            res = spawn(gloo_rank, world, setting, seed)
            stats = {s["rank"]: s for s in res[0]["stats"]}
            same = None if reference is None else bool(torch.equal(res[0]["volume"], reference))
            env = start_env | {"loadavg_1min_end": round(os.getloadavg()[0], 2)}
            for rank, r in enumerate(res):
                wall = stats[rank]["wall_time_s"]
                rows.append(_row(setting, world, rank, r, env, shape, step_s=wall / r["steps"], step_source="measured",
                                 volume_s=wall, volume_source="measured", group_step_s=None, group_step_cold_s=None,
                                 group_step_cpu_s=None, iterates_added_mib=0.0, equals_dart=same))
        else:
            r = _probe(setting, world, seed, shape, log)
            if r is None:
                continue
            env = start_env | {"loadavg_1min_end": round(os.getloadavg()[0], 2)}
            step = r["group_step_s"] * len(r["groups"])
            rows.append(_row(setting, world, 0, r, env, shape, step_s=step, step_source="extrapolated",
                             volume_s=step * r["steps"], volume_source="extrapolated", group_step_s=r["group_step_s"],
                             group_step_cold_s=r["group_step_cold_s"], group_step_cpu_s=r["group_step_cpu_s"],
                             iterates_added_mib=r["iterates_added_mib"],
                             equals_dart=None))
        for row in rows[-world if setting.kind == "gloo" else -1:]:
            log(f"  {setting.name} P={world} rank {row['rank']}: groups {row['groups_held']}, fixed {row['fixed_mib']:.0f} "
                f"MiB, divided {row['divided_mib']:.1f} MiB, workspace {row['workspace_mib']:.0f} MiB, peak "
                f"{row['peak_rss_mib']:.0f} MiB, step {row['step_s']:.3g} s ({row['step_source']}), volume "
                f"{row['volume_s']:.4g} s, equals dart: {row['equals_dart']}, load {row['loadavg_1min']}")
    return add_totals(rows, setting)


def add_totals(rows: list[dict], setting: Setting) -> list[dict]:
    """Add ``all_ranks_peak_GiB`` (the P ranks' peaks summed: what one machine needs to run them all
    at once) and ``all_ranks_fit_machine`` (that sum below this machine's ``MemTotal``) to every row.

    gloo settings sum the measured peaks; probe settings measured the busiest rank only, and the
    others are scaled from it: its fixed part and workspace plus its divided part per group times the
    groups of that rank (derived, not measured).
    """
    total_gib = machine_memory_gib()
    for world in sorted({int(r["P"]) for r in rows}):
        sel = [r for r in rows if int(r["P"]) == world]
        if setting.kind == "gloo":
            total = sum(float(r["peak_rss_mib"]) for r in sel)
        else:
            r = sel[0]
            per_group = float(r["divided_mib"]) / float(r["groups_held"])
            total = sum(float(r["fixed_mib"]) + float(r["workspace_mib"])
                        + per_group * len(groups_for_rank(setting.num_groups, k, world)) for k in range(world))
        for r in sel:
            r["all_ranks_peak_GiB"] = round(total / 1024, 2)
            r["machine_memory_GiB"] = round(total_gib, 1)
            r["all_ranks_fit_machine"] = total / 1024 <= total_gib
    return rows


def machine_memory_gib() -> float:
    """``MemTotal`` of ``/proc/meminfo`` in GiB (``MACHINE_GIB`` where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(ln.split()[1]) / 2**20 for ln in f if ln.startswith("MemTotal:"))
    except (OSError, StopIteration):
        return MACHINE_GIB


def _probe(setting: Setting, world: int, seed: int, shape: tuple, log) -> dict | None:
    """Run :func:`probe_rank` for P = ``world`` if it fits the memory available now, else log where it stops."""
    groups = groups_for_rank(setting.num_groups, 0, world)
    need = len(groups) * count_parameters(network(setting.preset, 0)) * 4 + 4.5 * GiB  # networks + one forward, upper
    free = available_bytes()
    if free is not None and need > free:
        log(f"  {setting.name} P={world}: stops here: needs about {need / GiB:.1f} GiB, {free / GiB:.1f} GiB available")
        return None
    return spawn(probe_rank, 1, setting, world, seed)[0]


# ---------------------------------------------------------------------------- cost model
def busiest(rows: list[dict]) -> list[dict]:
    """Per P, the rank with the largest peak memory (the one that sets the machine size and the wall time)."""
    out: dict[int, dict] = {}
    for r in rows:
        p = int(r["P"])
        if p not in out or float(r["peak_rss_mib"]) > float(out[p]["peak_rss_mib"]):
            out[p] = r
    return [out[p] for p in sorted(out)]


def fit_inverse(ps, values) -> tuple[float, float]:
    """Least-squares ``value = a + b / P``; returns ``(a, b)``."""
    ps = np.asarray(ps, dtype=float)
    design = np.stack([np.ones_like(ps), 1.0 / ps], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, np.asarray(values, dtype=float), rcond=None)
    return float(a), float(b)


def cost_model(rows: list[dict]) -> dict:
    """Fitted ``memory = fixed + workspace + k / P`` and ``time = a + b / P`` on the busiest rank per P.

    ``memory``: ``(c, k)`` in MiB from a least-squares fit of the peak; ``divided``: ``(c, k)`` of the
    divided part alone; ``time``: ``(a, b)`` in s per volume fitted to the rank's CPU time (the wall
    time with a core per rank); ``wall``: the same fitted to the wall time on this machine. Meaningful
    for P up to G (every rank needs one group).
    """
    top = busiest(rows)
    ps = [int(r["P"]) for r in top]
    return {"memory": fit_inverse(ps, [float(r["peak_rss_mib"]) for r in top]),
            "divided": fit_inverse(ps, [float(r["divided_mib"]) for r in top]),
            "time": fit_inverse(ps, [float(r["cpu_s"]) for r in top]),
            "wall": fit_inverse(ps, [float(r["volume_s"]) for r in top]), "P": ps}


def divided_ratios(rows: list[dict]) -> list[dict]:
    """The must-show check: divided part of the busiest rank at P over that at P = 1, against 1/P."""
    top = busiest(rows)
    base = {r["setting"]: float(r["divided_mib"]) for r in top if int(r["P"]) == 1}
    out = []
    for r in top:
        ratio = float(r["divided_mib"]) / base[r["setting"]]
        expect = 1.0 / int(r["P"])
        out.append({"setting": r["setting"], "P": int(r["P"]), "divided_mib": float(r["divided_mib"]), "ratio": ratio,
                    "one_over_P": expect, "relative_error": ratio / expect - 1.0,
                    "within_20pct": abs(ratio / expect - 1.0) <= 0.2})
    return out


def write(rows: list[dict], name: str, log_lines: list[str], folder: Path = RESULTS) -> Path:
    """``<folder>/scaling_<name>.csv`` and ``.json`` (rows and the log), atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"scaling_{name}.csv"
    tables.write_csv_rows(rows, path)
    atomic_write_bytes(folder / f"scaling_{name}.json",
                       json.dumps({"rows": rows, "log": log_lines, "settings": {k: asdict(v) for k, v in SETTINGS.items()}},
                                  indent=1, default=str).encode())
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--setting", nargs="+", default=["default"], choices=sorted(SETTINGS))
    p.add_argument("--ranks", nargs="+", type=int, help="P values (default: the setting's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true", help="skip the comparison with dart() in one process")
    p.add_argument("--out", type=Path, default=RESULTS, help="folder of scaling_<setting>.csv/.json")
    p.add_argument("--name", help="file name part (default: the setting; several settings go into one file)")
    args = p.parse_args(argv)
    lines: list[str] = []

    def log(msg: str) -> None:
        lines.append(msg)
        print(msg, flush=True)

    rows: list[dict] = []
    for name in args.setting:
        log(f"{name}: {machine()}")
        rows += run_setting(SETTINGS[name], args.seed, tuple(args.ranks) if args.ranks else None,
                            check=not args.no_check, log=log)
    for r in divided_ratios(rows):
        log(f"{r['setting']} P={r['P']}: divided {r['divided_mib']:.1f} MiB, ratio to P=1 {r['ratio']:.3f}, "
            f"1/P {r['one_over_P']:.3f}, relative error {r['relative_error']:+.1%}")
    path = write(rows, args.name or "_".join(args.setting), lines, args.out)
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
