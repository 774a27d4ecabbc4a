"""Is the real-scan prior short of data, of capacity, or of realism? Its network as a denoiser at
DART's noise levels on its training slabs, on unseen slabs of the same generator, and on the
*tuning* real scans, each against TV denoising at its best weight.

DART on real scans (``real_mri.diffusion.dart``) calls the network as a denoiser from σ 0.03 down
to 0.005. On the CPU, training the shipped network (1.1 M parameters) longer or on 4x the slabs
did not raise DART on the tuning scans (``benchmarks/results/real_mri_prior_choice.md``). This
script measures why, one network call per volume at the training timestep of each level
(:func:`paperlib.diffusion.evaluate.noise_level_timestep`), PSNR against the clean volume:

* ``train``: slabs of seeds ``0 .. n-1`` of :func:`paperlib.data.randomized.randomized_slab`, the
  first of the slabs both shipped general priors were trained on (``real_mri.n_slabs`` from seed 0);
* ``unseen``: ``n`` slabs of seeds from :data:`UNSEEN_SEED0`, never trained on;
* ``tuning scans``: the real tuning scans (divided by their intensity scale, the prior's units),
  the tiled prior as in ``benchmarks/real_mri_denoiser.py``.

``unseen - train`` near 0 says the network does not memorise its slabs, so more slabs of the same
generator cannot help; ``prior - TV`` on the real scans against on the unseen slabs measures how
much of its lead over a generic denoiser the network keeps on real anatomy. Held-out scans are never
touched. Writes ``benchmarks/results/real_mri_prior_fit.{csv,md}``::

    python benchmarks/real_mri_prior_fit.py --profile default
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.intensity import intensity_scale
from paperlib.data.randomized import randomized_slab
from paperlib.data.real_mri import REAL_SCANS, load_real_scan
from paperlib.diffusion.evaluate import noise_level_timestep
from paperlib.diffusion.tiling import tiled
from paperlib.experiments.priors import guided_prior, prior_manifest
from paperlib.metrics.image import psnr_volume
from paperlib.provenance import git_commit
from _cli import bench_parser, parse_args, write_summary  # sibling scripts (benchmarks/)
from real_mri_denoiser import tv_best

#: DART's noise levels on real scans (prior units): ``sigma_min`` to ``sigma_max`` of ``real_mri.diffusion.dart``.
SIGMAS = (0.005, 0.01, 0.02, 0.03)
#: TV weights tried per volume and level (relative to the noisy image's maximum); best chosen on the truth.
TV_WEIGHTS = (0.0003, 0.000625, 0.00125, 0.0025, 0.005, 0.01)
#: first seed of the unseen slabs (far above any training set's seeds)
UNSEEN_SEED0 = 1_000_000
CANDIDATES = ("checkpoints/mri_general", "checkpoints/mri_general_lownoise")


def _volumes(profile, n: int) -> dict[str, list[tuple[str, torch.Tensor]]]:
    shape = tuple(int(s) for s in profile.real_mri.slab)
    seed0 = int(profile.real_mri.slab_seed)
    if n > profile.real_mri.n_slabs:
        raise ValueError(f"--n {n}: the training slabs are only real_mri.n_slabs = {profile.real_mri.n_slabs}")
    sets = {"train": [(f"seed {seed0 + i}", randomized_slab(seed0 + i, shape)[0]) for i in range(n)],
            "unseen": [(f"seed {UNSEEN_SEED0 + i}", randomized_slab(UNSEEN_SEED0 + i, shape)[0]) for i in range(n)],
            "tuning scans": []}
    for name, spec in REAL_SCANS.items():
        if spec.role == "tuning":
            image = load_real_scan(name).image
            sets["tuning scans"].append((name, image / intensity_scale(image, name=f"{name} image")))
    return sets


def _sha256(checkpoint: str) -> str:
    """The sha256 a prior folder's (first) manifest records."""
    return prior_manifest(checkpoint)["sha256"]


def run(profile_name: str, checkpoints: list[str], n: int, seed: int = 0, progress: bool = True) -> list[dict]:
    """One row per (checkpoint or TV, set, volume, noise level)."""
    profile = load_profile(profile_name)
    section = profile.real_mri
    sets = _volumes(profile, n)
    priors = {c: tiled(guided_prior(section.diffusion, c), overlap=section.overlap) for c in checkpoints}
    sha = {c: _sha256(c) for c in checkpoints}
    rows = []
    total = sum(len(v) for v in sets.values()) * len(SIGMAS)
    bar = tqdm(total=total, desc="denoising", disable=not progress)
    for set_name, vols in sets.items():
        for k, (vol_name, x) in enumerate(vols):
            for sigma in SIGMAS:
                g = torch.Generator().manual_seed(seed * 1_000_003 + k)
                noisy = x + sigma * torch.randn(x.shape, generator=g)
                base = {"set": set_name, "volume": vol_name, "sigma": sigma, "seed": seed,
                        "noisy_psnr": psnr_volume(noisy, x)}
                for c, prior in priors.items():
                    abar = prior.sampler.abar
                    t = noise_level_timestep(abar, sigma)
                    with torch.no_grad():
                        den = prior.denoise(math.sqrt(float(abar[t])) * noisy, t).float().clamp_min(0)
                    rows.append({**base, "method": c, "psnr": psnr_volume(den, x), "setting": f"t={t}",
                                 "prior_sha256": sha[c]})
                tv = tv_best(noisy, x, TV_WEIGHTS)
                rows.append({**base, "method": "TV", "psnr": tv[0], "setting": f"weight={tv[1]:g}", "prior_sha256": ""})
                bar.update()
    bar.close()
    return rows


def report(rows: list[dict], profile_name: str, checkpoints: list[str], threads: int,
           baseline: str | None = None) -> str:
    """Markdown: mean PSNR per set and level for each prior and TV, then the two gaps; with
    ``baseline`` (one of ``checkpoints``) also every other prior minus it, paired per volume."""
    recorded = {r["method"]: r.get("prior_sha256") for r in rows if r["method"] != "TV"}
    sha = {c: (recorded.get(c) or _sha256(c))[:12] for c in checkpoints}  # as run (the folder may be gone)
    sets = list(dict.fromkeys(r["set"] for r in rows))
    count = {s: len({r["volume"] for r in rows if r["set"] == s}) for s in sets}

    def mean(method, s, sigma):
        v = [r["psnr"] for r in rows if r["method"] == method and r["set"] == s and r["sigma"] == sigma]
        return sum(v) / len(v)

    lines = [f"# The real-scan prior as a denoiser at DART's noise levels: training slabs, unseen slabs, "
             f"tuning real scans (profile {profile_name})", "",
             f"Mean PSNR in dB over the volumes of each set ({', '.join(f'{s}: n = {count[s]}' for s in sets)}); "
             "one call of the network at the level's training timestep; TV at its best weight per volume and "
             "level, chosen on the truth (favours TV); one noise draw per volume; "
             f"{threads} thread(s); code {git_commit()[:10]}; priors "
             + ", ".join(f"{c} (sha256 {sha[c]})" for c in checkpoints) + ".", "",
             "| Set | sigma | noisy | TV (best) | " + " | ".join(checkpoints) + " | "
             + " | ".join(f"{c} - TV" for c in checkpoints) + " |",
             "|---|---|---|---|" + "---|" * (2 * len(checkpoints))]
    for s in sets:
        for sigma in SIGMAS:
            noisy = sum(r["noisy_psnr"] for r in rows
                        if r["method"] == "TV" and r["set"] == s and r["sigma"] == sigma) / count[s]
            tv = mean("TV", s, sigma)
            ps = [mean(c, s, sigma) for c in checkpoints]
            lines.append(f"| {s} | {sigma:g} | {noisy:.2f} | {tv:.2f} | " + " | ".join(f"{p:.2f}" for p in ps)
                         + " | " + " | ".join(f"{p - tv:+.2f}" for p in ps) + " |")
    def paired(c, ref, s, sigma):  # per volume (in row order): c's PSNR minus ref's on the same noisy volume
        by = {(r["volume"], r["method"]): r["psnr"] for r in rows if r["set"] == s and r["sigma"] == sigma}
        return {v: by[(v, c)] - by[(v, ref)] for v in dict.fromkeys(v for v, _ in by)}

    def leads(c, s, sigma):  # the prior's PSNR minus TV's
        return list(paired(c, "TV", s, sigma).values())

    def ci(v, digits=2):  # mean [95 % interval, normal approximation]
        m = sum(v) / len(v)
        if len(v) < 2:
            return f"{m:+.{digits}f}"
        se = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1) / len(v))
        return f"{m:+.{digits}f} [{m - 1.96 * se:+.{digits}f}, {m + 1.96 * se:+.{digits}f}]"

    def gap(a, b):  # difference of two independent means with its 95 % interval
        ma, mb = sum(a) / len(a), sum(b) / len(b)
        va = sum((x - ma) ** 2 for x in a) / (len(a) - 1) / len(a)
        vb = sum((x - mb) ** 2 for x in b) / (len(b) - 1) / len(b)
        d, se = ma - mb, math.sqrt(va + vb)
        return f"{d:+.2f} [{d - 1.96 * se:+.2f}, {d + 1.96 * se:+.2f}]"

    real = [v for v, _ in dict.fromkeys((r["volume"], 0) for r in rows if r["set"] == "tuning scans")]
    lines += ["", "Lead over TV (prior minus TV, dB, per volume then averaged; [95 % interval, mean +- 1.96 "
              "standard errors]); the tuning scans one by one:", "",
              "| Prior | sigma | training slabs | unseen slabs | training - unseen | " + " | ".join(real) + " |",
              "|---|---|---|---|---|" + "---|" * len(real)]
    for c in checkpoints:
        for sigma in SIGMAS:
            tr, un = leads(c, "train", sigma), leads(c, "unseen", sigma)
            per_real = paired(c, "TV", "tuning scans", sigma)
            lines.append(f"| {c} | {sigma:g} | {ci(tr)} | {ci(un)} | {gap(tr, un)} | "
                         + " | ".join(f"{per_real[v]:+.2f}" for v in real) + " |")
    if baseline is not None:
        others = [c for c in checkpoints if c != baseline]
        lines += ["", f"Paired differences from {baseline} (PSNR dB, per volume then averaged; [95 % interval, "
                  "mean +- 1.96 standard errors]; 'higher in' counts the volumes):", "",
                  "| Prior | Set | sigma | minus baseline | higher in |", "|---|---|---|---|---|"]
        for c in others:
            for s in sets:
                for sigma in SIGMAS:
                    d = list(paired(c, baseline, s, sigma).values())
                    lines.append(f"| {c} | {s} | {sigma:g} | {ci(d, 3)} | "
                                 f"{sum(x > 0 for x in d)} of {len(d)} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--checkpoints", nargs="+", default=list(CANDIDATES))
    p.add_argument("--n", type=int, default=32, help="slabs per synthetic set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baseline", help="one of --checkpoints: add every other prior minus it, paired per volume")
    p.add_argument("--report-only", action="store_true", help="re-render the report from the CSV")
    args = parse_args(p, argv)
    if args.baseline is not None and args.baseline not in args.checkpoints:
        p.error(f"--baseline {args.baseline}: expected one of --checkpoints {args.checkpoints}")
    if args.report_only:
        rows = tables.read_csv_rows(args.out)
        for r in rows:
            r["sigma"], r["psnr"], r["noisy_psnr"] = float(r["sigma"]), float(r["psnr"]), float(r["noisy_psnr"])
    else:
        rows = run(args.profile, args.checkpoints, args.n, args.seed)
        tables.write_csv_rows(rows, args.out)
    write_summary(args.out, report(rows, args.profile, args.checkpoints, args.threads, args.baseline))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
