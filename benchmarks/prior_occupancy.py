"""Do a 4D-STEM prior's samples fill the slices as often as its training crystals do?

For each prior, :func:`paperlib.diffusion.evaluate.prior_occupancy` draws unconditional samples
(the profile's sampler: DDIM, ``eta``, ``clip`` of ``stem_diffusion``) and reports, per slice,
the fraction of samples whose slice mean (negative values clipped) exceeds a threshold, beside
the same fraction over the profile's training potentials. A slice below a crystal's thickness
is vacuum, so the deeper slices are occupied in only part of the training crystals; a prior
trained with the L1 loss (the posterior *median*) tends to leave them empty in nearly every
sample, one fine-tuned with the L2 loss (preset ``stem_default_l2``) should not.

    OMP_NUM_THREADS=2 python benchmarks/prior_occupancy.py --profile default --threads 2

Default priors: ``checkpoints/stem_<profile>`` (the base, L1) and the profile's
``stem_prior.checkpoint``. Writes ``benchmarks/results/prior_occupancy.txt`` (``--out``)
atomically: the table, the settings and each prior's weights' sha256.
"""
from __future__ import annotations

import datetime
import sys
import time
from pathlib import Path

import torch

from paperlib.config import load_profile
from paperlib.data.training import load_training_data
from paperlib.diffusion.bundles import load_data_file
from paperlib.diffusion.checkpoints import load_partitioned_prior, load_prior
from paperlib.diffusion.evaluate import prior_occupancy
from paperlib.io import atomic_write_text
from paperlib.paths import repo_root
from _cli import bench_parser, parse_args  # a sibling script (benchmarks/)


def _table(columns: dict[str, list[dict]]) -> list[str]:
    """One line per slice: the data's occupied fraction, then each prior's."""
    first = next(iter(columns.values()))
    lines = ["slice  group  data   " + "  ".join(f"{name:>18}" for name in columns)]
    for d, row in enumerate(first):
        lines.append(f"{d:5d}  {row['group']:5d}  {row['data']:.2f}   "
                     + "  ".join(f"{rows[d]['prior']:18.2f}" for rows in columns.values()))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__, suffix=".txt")
    p.add_argument("--priors", nargs="+", type=Path,
                   help="prior folders (default: checkpoints/stem_<profile> and the profile's stem_prior.checkpoint)")
    p.add_argument("--data", type=Path, help="a train --export-data bundle instead of the profile's crystals")
    p.add_argument("--threshold", type=float, default=5.0, help="slice-mean threshold, V*Angstrom")
    p.add_argument("--n-samples", type=int, default=16)
    p.add_argument("--sampling-steps", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    args = parse_args(p, argv)
    prof = load_profile(args.profile)
    priors = args.priors or [repo_root() / f"checkpoints/stem_{prof.name}", repo_root() / prof.stem_prior.checkpoint]
    data, info = load_data_file(args.data, with_info=True) if args.data else load_training_data("stem", args.profile)
    scale = float((info or {}).get("scale", prof.stem_prior.data_scale))
    sd = prof.stem_diffusion
    columns, notes = {}, []
    for folder in priors:
        start = time.perf_counter()
        prior = load_partitioned_prior(folder, method=sd.sampler, eta=sd.eta, clip=sd.clip)
        columns[folder.name] = prior_occupancy(prior, data, args.threshold / scale,
                                               torch.Generator().manual_seed(args.seed),
                                               n_samples=args.n_samples, num_steps=args.sampling_steps)
        manifests = load_prior(folder)[1]
        notes.append(f"{folder.name}: {time.perf_counter() - start:.0f} s; loss "
                     f"{(manifests[0].get('train_config') or {}).get('loss')}, steps {[m['steps'] for m in manifests]}, "
                     f"sha256 {[m['sha256'][:12] for m in manifests]}")
    lines = [f"# benchmarks/prior_occupancy.py, {datetime.date.today()}, profile {prof.name}, "
             f"{args.threads} threads",
             f"# fraction occupied (slice mean of max(V, 0) > {args.threshold:g} V*Angstrom): "
             f"{data.shape[0]} training crystals vs {args.n_samples} unconditional samples per prior "
             f"({sd.sampler}, {args.sampling_steps} steps, clip {sd.clip}, seed {args.seed})",
             *_table(columns), *(f"# {n}" for n in notes)]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    atomic_write_text(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
