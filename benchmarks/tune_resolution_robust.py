"""The variational 2D-prior reconstruction's weight, chosen on a validation subject (issue 18).

The profile's ``resolution_robust`` section sets the regularisation weight of
:func:`paperlib.recon.variational2d.variational2d`. This script scores every weight of ``--weights``
(0 = no prior: least squares by the same optimiser) and the zero-filled image on one **validation**
subject (``synthetic_subject(--subject)``, never an evaluation seed: those start at the section's
``eval_seed``) at twice the fixed prior's voxel, acceleration ``--acceleration``, with the fixed
prior and every other setting of the section. The baselines of finding (1) get the same treatment
on the same subject, each for itself: CS's weight (``--cs-weights``), DPS's guidance
(``--dps-guidance``) at each of ``--dps-steps``, and the TV-z weight of DDS + TV-z
(``--dds-weights``). Writes ``figures/tune_resolution_robust_<profile>.csv`` (one row per method and
setting: whole-image and head SSIM, PSNR, the setting in its own column), the file the section's
``tuned_on`` text quotes.

    python benchmarks/tune_resolution_robust.py --profile default
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from paperlib import paths, tables
from paperlib.config import load_profile
from paperlib.data.brain import FOV_MM, synthetic_subject
from paperlib.data.slices2d import FIXED_VOXEL_MM, subject_shape
from paperlib.experiments.resolution_robust import Case, run_case, section_of, slice_priors
from paperlib.recon.variational2d import simulate_multicoil
from _cli import parse_args  # a sibling script (benchmarks/)


def validation_case(profile, subject: int, shift: float, acceleration: float) -> Case:
    """``synthetic_subject(subject)`` at ``shift`` times the fixed prior's voxel with simulated coils, as the
    notebook draws its cases, with the section's coils, centre fraction, noise and mask seed; an
    evaluation subject (the section's ``eval_seed`` onwards) is refused."""
    section = section_of(profile)
    if section.eval_seed <= subject < section.eval_seed + section.n_volumes:
        raise SystemExit(f"--subject {subject} is an evaluation subject (eval_seed {section.eval_seed})")
    shape = subject_shape(shift * FIXED_VOXEL_MM)
    voxel = tuple(float(f) / s for f, s in zip(FOV_MM, shape))
    drawn = synthetic_subject(subject, shape, noise_std=profile.mri.noise_std)
    truth = torch.from_numpy(drawn[profile.mri.modality]).float()
    op, y = simulate_multicoil(truth, num_coils=section.num_coils, acceleration=acceleration,
                               center_fraction=min(section.center_fraction, 1.0 / acceleration),
                               noise_std=section.noise_std, generator=torch.Generator().manual_seed(section.mask_seed))
    return Case("validation", f"subject{subject}", float(shift), float(acceleration), voxel, truth,
                torch.from_numpy(drawn["brain_mask"]), op, y)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="default")
    p.add_argument("--subject", type=int, default=39_000, help="synthetic_subject seed (validation)")
    p.add_argument("--acceleration", type=float, default=8.0)
    p.add_argument("--weights", nargs="+", type=float, default=[0.0, 0.01, 0.03, 0.1, 0.3, 1.0])
    p.add_argument("--cs-weights", nargs="*", type=float, default=[0.00005, 0.0002, 0.001, 0.005, 0.02])
    p.add_argument("--dps-guidance", nargs="*", type=float, default=[1.0, 3.0, 10.0, 30.0, 100.0])
    p.add_argument("--dps-steps", nargs="*", type=int, default=[15, 50])
    p.add_argument("--dds-weights", nargs="*", type=float, default=[0.001, 0.01, 0.1])
    p.add_argument("--threads", type=int, default=2)
    args = parse_args(p, argv)
    profile = load_profile(args.profile)
    section = section_of(profile)
    case = validation_case(profile, args.subject, 2.0, args.acceleration)
    priors = slice_priors(profile)
    # (method, settings) in run order; every row carries every setting column (empty where not run)
    grid = [("zero_filled", {})]
    grid += [("variational_fixed", {"weight": w}) for w in args.weights]
    grid += [("cs", {"cs_weight": w}) for w in args.cs_weights]
    grid += [("dps", {"dps_steps": n, "dps_guidance": g}) for n in args.dps_steps for g in args.dps_guidance]
    grid += [("dds_tv_z", {"dds_weight": w}) for w in args.dds_weights]
    columns = dict.fromkeys(k for _, point in grid for k in point)
    rows = []
    for method, point in tqdm(grid, desc="tuning"):
        rows += [{**r, **dict.fromkeys(columns, ""), **point}
                 for r in run_case(case, [method], priors, section.model_copy(update=point))]
    out = paths.repo_root() / "figures" / f"tune_resolution_robust_{args.profile}.csv"
    tables.write_csv_rows(rows, out)
    for r in rows:
        setting = " ".join(f"{k} {r[k]}" for k in columns if r[k] != "")
        print(f"{r['method']:20s} {setting:30s} whole {r['ssim_whole']:.4f} head {r['ssim_head']:.4f} "
              f"PSNR {r['psnr_volume']:.2f} ({r['wall_time_s']:.1f} s)")
    print(f"wrote {Path(out).relative_to(paths.repo_root())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
