"""Export the domain-randomised MRI slabs of the real-scan prior as a training bundle for a GPU box.

``python scripts/export_real_mri_data.py --n 768 --out build/train_data/real_mri_768.pt`` writes
the slabs of seeds ``0 .. n-1`` of :func:`paperlib.data.randomized.randomized_slab` (the profile's
``real_mri`` slab shape; its first ``n_slabs`` are the shipped priors' training set) as a
float16 bundle (:func:`paperlib.diffusion.bundles.export_data`), made on ``--workers`` processes.
The GPU machine has no TorchIO (the generator's transforms), so the data travel; float16 halves
them to fit the device tool's 64 MiB transfer. ``train --data FILE`` reads it back, and the prior's
manifest records the generator version, seeds, shape and storage.
"""
from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from tqdm.auto import tqdm


def _slab(args: tuple[int, tuple[int, int, int]]) -> torch.Tensor:
    from paperlib.data.randomized import randomized_slab

    torch.set_num_threads(1)
    seed, shape = args
    return randomized_slab(seed, shape)[0]


def main(argv: list[str] | None = None) -> int:
    from paperlib.config import load_profile
    from paperlib.data.randomized import GENERATOR_VERSION
    from paperlib.diffusion.bundles import export_data

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, required=True, help="number of slabs (seeds 0 .. n-1)")
    p.add_argument("--out", type=Path, required=True, help="the bundle, a new .pt file")
    p.add_argument("--profile", default="default", help="profile whose real_mri section gives the slab shape")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n: expected >= 1, got {args.n}")
    if args.out.exists():
        p.error(f"--out {args.out}: exists; choose a new file")
    section = load_profile(args.profile).real_mri
    if section is None:
        p.error(f"--profile {args.profile}: no real_mri section")
    shape = tuple(int(s) for s in section.slab)
    seed0 = int(section.slab_seed)
    jobs = [(seed0 + i, shape) for i in range(args.n)]
    with ProcessPoolExecutor(max(1, args.workers)) as pool:
        slabs = list(tqdm(pool.map(_slab, jobs, chunksize=8), total=len(jobs), desc="randomised slabs"))
    data = torch.stack(slabs)
    record = {"modality": "mri", "profile": args.profile, "source": "randomized",
              "generator_version": GENERATOR_VERSION, "n": args.n, "slab": list(shape), "slab_seed": seed0,
              "shape": list(data.shape)}
    export_data(args.out, data, record, dtype=torch.float16)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
