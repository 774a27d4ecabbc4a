"""DART with the slice groups spread over ranks: the paper profile on several GPUs or nodes.

Run under ``torchrun`` (one process per GPU; gloo on CPU)::

    torchrun --nnodes 1 --nproc-per-node 8 -m paperlib.experiments.ranks \\
        --profile paper --modality mri --cases 0 1 2 --out runs/dart_paper

Every rank loads only the networks of its own slice groups
(:func:`paperlib.diffusion.distributed.groups_for_rank`: ``G`` groups over ``P`` ranks, the first
``G mod P`` ranks one more) and samples them; the physics step (paper Eq. 4 / Eq. 5) runs where its
data are: MRI data consistency is slice-local, so each rank corrects its own slices with its own
part of the k-space and the ranks meet only at the end; the multislice 4D-STEM operator needs the
whole object, so the denoised slices are all-gathered before every physics step
(:func:`paperlib.diffusion.distributed.partitioned_sample`). The random streams are per global
group, so the reconstruction equals the one-process :func:`paperlib.recon.dart.dart` of the same
case and seed (bit for bit on CPU at the same thread count; a test checks it with two gloo ranks).

Rank 0 scores each reconstruction with the runner's columns
(:mod:`paperlib.experiments.runner`) and writes, atomically, ``<out>/dart_ranks_cases.csv`` (one row
per case and seed, with the world size, the busiest rank's wall time and every rank's peak memory)
and ``<out>/<case>_seed<k>.npy`` (the volume, in physical units).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..config import Profile, load_profile
from ..diffusion.distributed import (current_context, groups_for_rank, init_from_env, local_part,
                                     partitioned_sample, shutdown)
from ..io import InputValidationError, atomic_path
from ..recon.dart import physics_callback, start_point, stop_timestep
from .priors import resolve_checkpoint
from .runner import modality_of

logger = logging.getLogger(__name__)

__all__ = ["dart_ranks", "main"]


def _setup(modality: str):
    from .mri import MRI_GUIDED
    from .stem import STEM_GUIDED

    return {"mri": MRI_GUIDED, "stem": STEM_GUIDED}[modality]


def _local_operator(operator, num_groups: int, groups: Sequence[int]):
    """The operator of a rank's own slices (MRI: its part of the per-slice masks)."""
    from ..physics.mri import MRIOperator

    mask = operator.mask
    return MRIOperator(local_part(mask, num_groups, groups) if mask.ndim == 3 else mask)


def dart_ranks(profile: Profile, modality: str, case, *, seed: int = 0, progress: bool = False):
    """DART of one case with this rank's slice groups (call on every rank of a process group).

    Parameters
    ----------
    profile : the settings (``<modality>_diffusion.dart``, the prior's ``checkpoint``).
    modality : ``"mri"`` or ``"stem"``.
    case : a case of that modality (``case.operator``, ``case.measurement``; every rank builds the
        same case).
    seed : the generator seed (as the runner's ``torch.Generator().manual_seed(seed)``).

    Returns
    -------
    :class:`~paperlib.diffusion.distributed.DistributedSample` with ``volume`` in physical units
    on rank 0 (``None`` elsewhere) and every rank's stats on rank 0.
    """
    setup = _setup(modality)
    d = setup.settings(profile).dart
    if d.samples != 1:
        raise InputValidationError(f"profile {profile.name}: {setup.diffusion}.dart.samples = {d.samples}; the "
                                   "distributed run draws one DART sample (set samples: 1)")
    if d.levels() is not None or d.init_from != "default":
        raise InputValidationError(f"profile {profile.name}: {setup.diffusion}.dart sets sigma_max / sigma_min or "
                                   "init_from; the distributed run takes the paper's chain only (leave them out)")
    ctx = current_context()
    folder = resolve_checkpoint(getattr(profile, setup.prior).checkpoint)
    manifests = sorted(folder.glob("prior_group*.json"))
    if not manifests:
        raise InputValidationError(f"{folder}: no prior_group*.json manifests (train the prior with make train)")
    num_groups = int(json.loads(manifests[0].read_text())["num_groups"])
    groups = groups_for_rank(num_groups, ctx.rank, ctx.world_size)
    # this rank's groups, with the profile's sampler and precision (and its scale checked), as one process loads all
    local_prior = setup.load(profile, groups=groups, device=str(ctx.device))
    models, sampler, group_size = list(local_prior.models), local_prior.sampler, local_prior.group_size
    section = setup.settings(profile)
    scale = setup.scale(profile)
    y = case.measurement
    shape = tuple(case.operator.volume_shape(y))
    if shape[0] != num_groups * group_size:
        raise InputValidationError(f"case {case.case_id}: depth {shape[0]} != {num_groups} groups x {group_size} "
                                   "slices of the prior; the distributed run needs a whole partition")
    gen = torch.Generator().manual_seed(seed)
    # the SDEdit start is drawn on every rank from the same generator, as the one-process run does
    t_start, x_T = start_point(local_prior, shape, d.start, setup.initial(case.operator, y), gen, scale=scale)
    slice_local = bool(case.operator.slice_local)
    if slice_local:
        op_local = _local_operator(case.operator, num_groups, groups)
        cb = physics_callback(op_local, local_part(y, num_groups, groups), scale=scale, steps=d.physics_steps,
                              step_kwargs=d.step_kwargs())
    else:
        cb = physics_callback(case.operator, y, scale=scale, steps=d.physics_steps, step_kwargs=d.step_kwargs())
    out = partitioned_sample(models, sampler, num_groups=num_groups, group_size=group_size, shape=shape,
                             num_steps=d.steps, seed=seed, callback=cb, gather_for_callback=not slice_local,
                             x_T=x_T, t_start=t_start, t_stop=stop_timestep(local_prior, d.stop, d.steps, t_start),
                             generator=gen, progress=progress,
                             precision=section.precision)
    if out.volume is not None:
        out.volume = (out.volume * scale).float()
    return out


def _cases(profile: Profile, modality: str, split: str, indices: Sequence[int]):
    spec = modality_of(modality)
    cases = spec.cases(profile, split, max(indices) + 1)
    if max(indices) >= len(cases):
        raise InputValidationError(f"--cases: the {split} split of profile {profile.name} has {len(cases)} cases, "
                                   f"got index {max(indices)}")
    return spec, [cases[i] for i in indices]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paperlib.experiments.ranks",
                                 description="DART with the slice groups spread over torchrun ranks.")
    ap.add_argument("--profile", default="default", help="profile name or YAML file")
    ap.add_argument("--modality", choices=("mri", "stem"), default="mri")
    ap.add_argument("--split", default="test", help="split of the profile's data (default test)")
    ap.add_argument("--cases", type=int, nargs="+", default=[0], help="case indices in the split")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads per rank (default: torch's)")
    ap.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                    help="default: nccl with CUDA, else gloo")
    args = ap.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    ctx = init_from_env(args.backend)
    try:
        profile = load_profile(args.profile)
        spec, cases = _cases(profile, args.modality, args.split, args.cases)
        rows = []
        for case in cases:
            for seed in args.seeds:
                res = dart_ranks(profile, args.modality, case, seed=seed, progress=ctx.is_main)
                if not ctx.is_main:
                    continue
                vol = res.volume.cpu()
                scores = spec.score(vol, case)
                stats = res.stats or []
                rows.append({"modality": spec.name, "case": case.case_id, "method": "dart", "seed": seed,
                             **{k: v for k, v in scores.items() if not isinstance(v, (list, tuple))},
                             "world_size": ctx.world_size, "wall_time_s": max(s.wall_time_s for s in stats),
                             "peak_rss_bytes": max(s.peak_rss_bytes for s in stats),
                             "peak_cuda_alloc_bytes": max((s.peak_cuda_alloc_bytes or 0) for s in stats) or "",
                             "per_rank_peak_rss_bytes": ";".join(str(s.peak_rss_bytes) for s in stats)})
                args.out.mkdir(parents=True, exist_ok=True)
                with atomic_path(args.out / f"{case.case_id}_seed{seed}.npy") as tmp:
                    with open(tmp, "wb") as f:
                        np.save(f, vol.numpy())
                print(f"{case.case_id} seed {seed}: " + ", ".join(
                    f"{k} {v:.4f}" for k, v in scores.items() if isinstance(v, float)), flush=True)
        if ctx.is_main and rows:
            from ..tables import write_csv_rows

            write_csv_rows(rows, args.out / "dart_ranks_cases.csv")
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
