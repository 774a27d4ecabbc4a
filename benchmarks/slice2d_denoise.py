"""Why the variational 2D-prior reconstruction shows no resolution gap (issue 18, findings 2-4).

The notebook ``resolution_robust`` finds the fixed-voxel and the diverse-voxel 2D priors within a
fraction of a dB of each other at every voxel shift. Two explanations predict that: (a) the
reconstruction barely depends on the prior (small weight), or (b) the prior itself is not
specific to its training voxel at the noise levels the truncated objective uses. This script
measures (b) directly, on the quantity the regulariser consumes: the denoised estimate
``D(x_t, t)`` of clean slices.

For each **validation** subject (``synthetic_subject(--subjects)``: not a training seed, which
start at :data:`paperlib.data.slices2d.SLICE_PRIOR_SEED`, nor an evaluation seed, which start at
the section's ``eval_seed``) at each voxel shift of the profile's ``resolution_robust`` section
(the subject drawn at ``shift x FIXED_VOXEL_MM``, as the notebook draws its cases), every native
slice of all three axes (as the regulariser's random slicing cuts them, no resampling) is divided
by the volume's intensity scale (:func:`paperlib.data.intensity.intensity_scale` of the clean
volume; the reconstruction uses the zero-filled image's), noised to each timestep fraction of
``--fractions`` (the objective draws ``t`` uniformly up to ``t_max``) with one noise draw shared by
both priors, and denoised by each prior. Score: PSNR (dB, peak = the clean slices' maximum) of the
estimate over the slices that hold brain (maximum above 5 % of the volume's), and of the
un-denoised ``x_t / sqrt(abar_t)`` for reference (``identity``). Differences fixed - diverse are
paired per subject (95 % bootstrap interval over subjects, :func:`paperlib.tables.paired_differences`).

A fixed-voxel prior that knew its voxel size would denoise coarser slices worse than the
diverse-voxel prior, which was trained on them; the rows say by how much.

    python benchmarks/slice2d_denoise.py --profile default

Writes ``benchmarks/results/slice2d_denoise.csv`` (per subject, shift, fraction, method) and
``slice2d_denoise.md``.
"""
from __future__ import annotations

import math
import sys

import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.brain import synthetic_subject
from paperlib.data.intensity import intensity_scale
from paperlib.data.slices2d import FIXED_VOXEL_MM, SLICE_PRIOR_SEED, subject_shape
from paperlib.experiments.resolution_robust import section_of, slice_priors
from paperlib.provenance import git_commit
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)



def denoise_rows(profile_name: str, subjects: list[int], fractions: list[float], seed: int = 0,
                 progress: bool = True) -> list[dict]:
    """One row per subject, shift, timestep fraction and method (``fixed``, ``diverse``, ``identity``)."""
    profile = load_profile(profile_name)
    section = section_of(profile)
    for s in subjects:
        if SLICE_PRIOR_SEED <= s < SLICE_PRIOR_SEED + section.prior_subjects or \
                section.eval_seed <= s < section.eval_seed + section.n_volumes:
            raise SystemExit(f"--subjects: {s} is a training or evaluation subject")
    priors = slice_priors(profile)
    sampler = priors["fixed"].sampler
    generator = torch.Generator().manual_seed(seed)
    rows = []
    jobs = [(s, shift) for s in subjects for shift in section.shifts]
    for subject, shift in tqdm(jobs, desc="2D prior denoising", disable=not progress):
        volume = torch.from_numpy(synthetic_subject(subject, subject_shape(shift * FIXED_VOXEL_MM),
                                                    noise_std=profile.mri.noise_std)[profile.mri.modality]).float()
        c = intensity_scale(volume, name=f"subject {subject}")
        for fraction in fractions:
            t = sampler.start_timestep(fraction)
            a = sampler.abar_at(t)
            err = {m: 0.0 for m in ("fixed", "diverse", "identity")}
            count, peak = 0, 0.0
            for axis in range(3):
                clean = volume.movedim(axis, 0) / c
                clean = clean[clean.flatten(1).amax(1) > 0.05 * float(volume.max()) / c]
                noisy = sampler.noise_to(clean, t, torch.randn(clean.shape, generator=generator))
                with torch.no_grad():
                    estimates = {role: prior.denoise(noisy, t) for role, prior in priors.items()}
                estimates["identity"] = noisy / math.sqrt(a)
                for m, est in estimates.items():
                    err[m] += float((est - clean).pow(2).sum())
                count += clean.numel()
                peak = max(peak, float(clean.max()))
            for m, e in err.items():
                rows.append({"modality": "mri", "dataset": f"x{shift:g} t/T={fraction:g}", "case": f"subject{subject}",
                             "method": m, "seed": seed, "shift": shift, "fraction": fraction, "timestep": t,
                             "psnr_volume": 10 * math.log10(peak ** 2 / (e / count))})
    return rows


def report(rows: list[dict], profile_name: str, subjects: list[int]) -> str:
    by = ("shift", "fraction")
    means = {(r["shift"], r["fraction"], r["method"]): r["psnr_volume_mean"]
             for r in tables.summarise(rows, by=(*by, "method"))}
    diffs = {(d["shift"], d["fraction"]): d
             for d in tables.paired_differences(rows, "fixed", "diverse", ["psnr_volume"], by=by)}
    lines = [f"# The 2D priors as denoisers of slices at each voxel shift (profile {profile_name})", "",
             f"n = {len(subjects)} validation subjects ({', '.join(map(str, subjects))}); PSNR in dB over the brain "
             "slices of all three axes; fixed - diverse paired per subject, mean [95 % bootstrap interval over "
             f"the subjects]; code {git_commit()[:10]}.", "",
             "| Shift (voxel / 3.75 mm) | t / T | identity x_t / sqrt(abar) | fixed-voxel prior | diverse-voxel prior "
             "| fixed - diverse |", "|---|---|---|---|---|---|"]
    for (shift, fraction), d in sorted(diffs.items()):
        m = {k: means[(shift, fraction, k)] for k in ("identity", "fixed", "diverse")}
        lines.append(f"| x{shift:g} | {fraction:g} | {m['identity']:.2f} | {m['fixed']:.2f} | {m['diverse']:.2f} | "
                     f"{d['psnr_volume_mean']:+.2f} [{d['psnr_volume_ci_low']:+.2f}, "
                     f"{d['psnr_volume_ci_high']:+.2f}] |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = bench_parser(__doc__, __file__)
    ap.add_argument("--subjects", nargs="+", type=int, default=[39_000, 39_001, 39_002, 39_003])
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.02, 0.05, 0.1, 0.2])
    args = parse_args(ap, argv)
    rows = denoise_rows(args.profile, args.subjects, args.fractions)
    tables.write_csv_rows(rows, args.out)
    md = report(rows, args.profile, args.subjects)
    write_summary(args.out, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
