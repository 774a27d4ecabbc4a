"""What limits DRIFT on MRI? Oracle selection, more candidates, and the selection score.

DRIFT (paper Sec. 3) draws N prior samples, keeps per slice group the one whose *measurement
image* (here the zero-filled magnitude of its simulated k-space) is most similar (SSIM) to the
measured one, and then takes K data-consistency steps (paper Eq. 4). On the synthetic test set it
reaches whole-image SSIM 0.651 against the paper's 0.938. This script separates the causes on
the **validation** split (never the test split), with the profile's prior and DRIFT settings:

* ``selected``: DRIFT as it runs (selection score, then the physics steps);
* ``oracle``: per group the candidate with the best *true* SSIM after the physics steps — the
  best any selection rule could do with these candidates;
* ``mean``: the average candidate after the physics steps (what a random pick gives);
* every N in ``--candidates`` (subsets of one draw of ``max(N)`` candidates, so the curves are
  nested) and the rank correlation between selection score and true SSIM over all candidates.

Hard data consistency is idempotent: after it a candidate keeps its own unmeasured k-space, which
belongs to another (synthetic) brain, so even the oracle is bounded by how close the nearest of N
prior samples is to the subject. Writes ``benchmarks/results/drift_limits.csv`` (the summary) and
``drift_limits.txt`` (the printed report).

    python benchmarks/drift_limits.py --profile default --volumes 4 --candidates 1 2 4 8 16
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.io import atomic_write_text
from paperlib.diffusion.partition import group_slices
from paperlib.experiments.mri import MRI_GUIDED, mri_cases
from paperlib.metrics.image import data_range_of, ssim_slices
from paperlib.recon.dart import physics_callback


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = (np.argsort(np.argsort(v)).astype(float) for v in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


def _per_slice(volumes: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N, D) SSIM of every slice of every (N, D, H, W) volume against the (D, H, W) reference
    (data range of the reference, as the tables)."""
    n, d = volumes.shape[:2]
    flat = volumes.reshape(n * d, *volumes.shape[2:])
    return ssim_slices(flat, reference.repeat(n, 1, 1), data_range=data_range_of(reference)).reshape(n, d)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--volumes", type=int, default=4, help="validation volumes")
    p.add_argument("--candidates", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads (default: the profile's)")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "drift_limits.csv")
    args = p.parse_args(argv)
    cfg = load_profile(args.profile)
    torch.set_num_threads(args.threads or cfg.threads)
    d = cfg.mri_diffusion.drift
    prior = MRI_GUIDED.load(cfg)
    n_max = max(args.candidates)
    rows, corr = [], []
    for case in tqdm(mri_cases(cfg, split="val", n=args.volumes), desc="validation volumes"):
        op, y, truth = case.operator, case.kspace, case.image
        shape = tuple(truth.shape)
        gen = torch.Generator().manual_seed(args.seed)
        cands = prior.sample((n_max, *shape), num_steps=d.steps, generator=gen)
        reference = op.measurement_image(y)
        score = _per_slice(op.measurement_image(op.forward(cands)), reference)  # (N, D)
        refine = physics_callback(op, y, steps=d.physics_steps, step_kwargs=d.step_kwargs())
        refined = torch.stack([refine(c, 0) for c in cands]).clamp_min(0)
        true = _per_slice(refined, truth)  # (N, D)
        corr.append(_spearman(score.flatten().numpy(), true.flatten().numpy()))
        groups = group_slices(shape[0], len(prior.models))
        for n in args.candidates:
            for rule in ("selected", "oracle", "mean"):
                per_group = []
                for s in groups:
                    g_true = true[:n, s].mean(dim=1)
                    if rule == "mean":
                        per_group.append(float(g_true.mean()))
                    else:
                        pick = score[:n, s].mean(dim=1).argmax() if rule == "selected" else g_true.argmax()
                        per_group.append(float(g_true[pick]))
                rows.append({"modality": "mri", "dataset": "brain-val", "case": case.case_id,
                             "method": f"drift_{rule}_n{n}", "seed": args.seed,
                             "ssim_whole": float(np.mean(per_group))})
    summary = tables.summarise(rows)
    out = tables.write_csv_rows(summary, args.out)
    lines = [f"rank correlation of selection score and true SSIM (per slice, per volume): "
             f"{', '.join(f'{c:.3f}' for c in corr)}"]
    lines += [f"{s['method']:22s} n={s['n']:2d} whole-image SSIM {tables.mean_std_ci(s, 'ssim_whole')}" for s in summary]
    report = atomic_write_text(args.out.with_suffix(".txt"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out} and {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
