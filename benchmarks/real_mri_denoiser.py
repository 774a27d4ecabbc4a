"""Does the general MRI prior know real brains? Its network as a plain Gaussian denoiser on the
*tuning* real scans, against TV denoising and a Gaussian filter, both tuned per case on the truth.

The paper's DART chain stayed below TV on the real scans (``benchmarks/real_mri_limits.py``). This
script asks the question underneath, without undersampling: each tuning scan (divided by its
intensity scale, ``paperlib.data.intensity``: the prior's units) gets white Gaussian noise of
standard deviation ``sigma`` (prior units), and three denoisers are scored by PSNR against the scan:

* ``prior``: one call of the tiled general prior (``real_mri.checkpoint``, the profile's precision)
  at the training timestep of that noise level (:func:`paperlib.diffusion.evaluate.noise_level_timestep`);
* ``tv``: the TV baseline itself as a denoiser (:func:`paperlib.recon.mri_baselines.total_variation`
  with every k-space sample measured, so its data term is ``1/2 ||x - noisy||^2``), at the best of
  :data:`TV_WEIGHTS` for each case and level, chosen on the truth (favours TV);
* ``gaussian``: the best Gaussian filter of :data:`paperlib.diffusion.evaluate.DEFAULT_FILTER_SIGMAS`, likewise.

If the network beats TV here, the network is not what kept DART below TV: the noisy chain is. That
is what the plug-and-play form of DART (``paperlib.recon.dart``, ``levels``) uses: the network as a
denoiser of the corrected estimate at small noise levels. Held-out scans are never touched.
Writes ``benchmarks/results/real_mri_denoiser.{csv,md}``.

    python benchmarks/real_mri_denoiser.py --profile default
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.intensity import intensity_scale
from paperlib.data.real_mri import REAL_SCANS, load_real_scan
from paperlib.diffusion.evaluate import DEFAULT_FILTER_SIGMAS, gaussian_filter_volume, noise_level_timestep
from paperlib.experiments import real_mri
from paperlib.metrics.image import psnr_volume
from paperlib.physics.mri import MRIOperator
from paperlib.provenance import git_commit
from paperlib.recon import mri_baselines
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)

#: Noise standard deviations, prior units (the tuning scans' intensity scale is 1).
SIGMAS = (0.02, 0.05, 0.1, 0.2)
#: TV weights tried per case and level (relative to the noisy image's maximum, as the baseline's).
TV_WEIGHTS = (0.00125, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)


def tv_best(noisy: torch.Tensor, x: torch.Tensor, weights: tuple[float, ...]) -> tuple[float, float]:
    """(PSNR, weight) of TV denoising of ``noisy`` at the best of ``weights`` against ``x`` (an oracle
    choice on the truth): the TV baseline with every k-space sample measured."""
    full = MRIOperator(torch.ones(x.shape, dtype=torch.bool))
    return max((psnr_volume(mri_baselines.total_variation(full, full.forward(noisy), weight=w, iters=200)
                            .clamp_min(0), x), w) for w in weights)


def run(profile_name: str, seed: int = 0, progress: bool = True) -> list[dict]:
    """One row per (tuning scan, noise level, denoiser)."""
    profile = load_profile(profile_name)
    prior = real_mri.general_prior(profile)
    abar = prior.sampler.abar
    scans = [load_real_scan(name) for name, s in REAL_SCANS.items() if s.role == "tuning"]
    rows = []
    bar = tqdm(total=len(scans) * len(SIGMAS), desc="denoising real scans", disable=not progress)
    for scan in scans:
        x = scan.image / intensity_scale(scan.image, name=f"{scan.name} image")
        full = MRIOperator(torch.ones(x.shape, dtype=torch.bool))
        for sigma in SIGMAS:
            g = torch.Generator().manual_seed(seed)
            noisy = x + sigma * torch.randn(x.shape, generator=g)
            t = noise_level_timestep(abar, sigma)
            with torch.no_grad():
                den = prior.denoise(math.sqrt(float(abar[t])) * noisy, t).float().clamp_min(0)
            tv = tv_best(noisy, x, TV_WEIGHTS)
            gauss = max((psnr_volume(gaussian_filter_volume(noisy, sz, sxy), x), f"{sz:g}/{sxy:g}")
                        for sz, sxy in DEFAULT_FILTER_SIGMAS)
            base = {"scan": scan.name, "sigma": sigma, "seed": seed, "noisy_psnr": psnr_volume(noisy, x)}
            rows += [{**base, "method": "prior", "psnr": psnr_volume(den, x), "setting": f"t={t}"},
                     {**base, "method": "tv", "psnr": tv[0], "setting": f"weight={tv[1]:g}"},
                     {**base, "method": "gaussian", "psnr": gauss[0], "setting": f"sigma_z/xy={gauss[1]}"}]
            bar.update()
    bar.close()
    return rows


def report(rows: list[dict], profile_name: str, checkpoint: str, threads: int) -> str:
    """Markdown: PSNR per scan and level, and the prior minus TV."""
    lines = [f"# The general prior as a Gaussian denoiser on the tuning real scans (profile {profile_name}, "
             f"prior {checkpoint})", "",
             "PSNR in dB against the scan (divided by its intensity scale); white Gaussian noise of std sigma "
             "(those units); TV and the Gaussian filter at their best setting per case and level, chosen on the "
             f"truth; one noise draw per case; {threads} thread(s); code {git_commit()[:10]}.", "",
             "| Scan | sigma | noisy | prior | TV (best weight) | Gaussian filter (best) | prior - TV |",
             "|---|---|---|---|---|---|---|"]
    by = {(r["scan"], r["sigma"], r["method"]): r for r in rows}
    for scan, sigma in dict.fromkeys((r["scan"], r["sigma"]) for r in rows):
        p, t, g = (by[(scan, sigma, m)] for m in ("prior", "tv", "gaussian"))
        lines.append(f"| {scan} | {sigma:g} | {p['noisy_psnr']:.2f} | {p['psnr']:.2f} | {t['psnr']:.2f} "
                     f"({t['setting']}) | {g['psnr']:.2f} | {p['psnr'] - t['psnr']:+.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--seed", type=int, default=0)
    args = parse_args(p, argv)
    rows = run(args.profile, args.seed)
    tables.write_csv_rows(rows, args.out)
    text = report(rows, args.profile, load_profile(args.profile).real_mri.checkpoint, args.threads)
    write_summary(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
