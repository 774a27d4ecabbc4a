"""DART, DRIFT and the projection method per volume: before / after the sampling speed-up, at equal SSIM.

"Before" is how the networks ran until 2026-12: float32 arithmetic and contiguous (N, C, H, W)
activations. "After" is the profile's ``precision`` (``bfloat16`` autocast in the default profile)
with channels-last activations (:attr:`paperlib.diffusion.unet3d.UNet3D.channels_last`). The two
settings reconstruct the same cases with the same seeds, alternately case by case (so that a
change in machine load hits both), on splits that no reported table uses: the MRI validation
volumes, the 4D-STEM validation crystals and the real-scan tuning scans. Each row is one
reconstruction (its SSIM and wall time); the summary gives, per method, the mean time of each
setting, the ratio, and the largest SSIM change over the cases.

    python benchmarks/guided_speed.py --profile default --threads 2 --out benchmarks/results/guided_speed.csv

Results of the committed run: ``benchmarks/results/guided_speed.csv`` and ``guided_speed.txt``.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
from pathlib import Path

import torch

from paperlib.config import load_profile
from paperlib.diffusion.unet3d import UNet3D
from paperlib.experiments.runner import MODALITIES, run_cases

SETTINGS = ("before", "after")
#: (label, modality, profile section of the guided methods, methods)
SUITES = (
    ("mri", "mri", "mri_diffusion", ("dart", "drift", "projection")),
    ("stem", "stem", "stem_diffusion", ("dart", "drift")),
    ("real_mri", "real_mri", None, ("dart",)),
)


def profile_for(profile, section: str | None, setting: str):
    """``profile`` with the guided section's precision at float32 for ``before`` (unchanged for ``after``)."""
    if setting == "after":
        return profile
    if section is None:  # real scans: profile.real_mri.diffusion
        rm = profile.real_mri
        return profile.model_copy(update={"real_mri": rm.model_copy(update={
            "diffusion": rm.diffusion.model_copy(update={"precision": "float32"})})})
    return profile.model_copy(update={section: getattr(profile, section).model_copy(update={"precision": "float32"})})


def suite_cases(profile, modality: str, n: int):
    if modality == "real_mri":
        from paperlib.experiments.real_mri import REAL_MRI, real_cases

        return REAL_MRI, real_cases(profile, "tuning", n)
    spec = MODALITIES[modality]
    return spec, spec.cases(profile, "val", n)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="default")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=2, help="cases per suite")
    ap.add_argument("--suites", nargs="+", default=[s[0] for s in SUITES])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/guided_speed.csv"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    profile = load_profile(args.profile)
    rows = []
    for label, modality, section, methods in SUITES:
        if label not in args.suites:
            continue
        spec, cases = suite_cases(profile, modality, args.n)
        for case in cases:
            for setting in SETTINGS:
                UNet3D.channels_last = setting == "after"
                try:
                    got, _ = run_cases(profile_for(profile, section, setting), spec, [case], list(methods),
                                       seeds=(0,), progress=False)
                finally:
                    UNet3D.channels_last = True
                for r in got:
                    score = r.get("ssim_whole", r.get("ssim_projected"))
                    rows.append({"suite": label, "setting": setting, "case": r["case"], "method": r["method"],
                                 "ssim": score, "ssim_slice_mean": r.get("ssim_slice_mean", ""),
                                 "wall_time_s": r["wall_time_s"]})
                    print(f"{label:8s} {setting:6s} {r['case']:24s} {r['method']:10s} ssim {score:.4f} "
                          f"{r['wall_time_s']:6.2f} s", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, args.out)
    lines = [f"# guided_speed: {platform.processor() or platform.machine()}, {args.threads} threads, "
             f"torch {torch.__version__}, profile {args.profile}, {args.n} cases per suite, seed 0",
             "suite     method      before_s  after_s  speed-up  ssim_before  ssim_after  max|dSSIM|"]
    for label, _, _, methods in SUITES:
        for method in methods:
            pair = {s: [r for r in rows if r["suite"] == label and r["method"] == method and r["setting"] == s]
                    for s in SETTINGS}
            if not pair["before"]:
                continue
            tb, ta = (sum(r["wall_time_s"] for r in pair[s]) / len(pair[s]) for s in SETTINGS)
            sb, sa = (sum(r["ssim"] for r in pair[s]) / len(pair[s]) for s in SETTINGS)
            dmax = max(abs(a["ssim"] - b["ssim"]) for a, b in zip(pair["after"], pair["before"]))
            lines.append(f"{label:9s} {method:10s} {tb:8.2f} {ta:8.2f} {tb / ta:8.2f}x {sb:11.4f} {sa:11.4f} "
                         f"{dmax:10.4f}")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.with_suffix(".txt").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
