"""DART against TV on real scans *through the command line*, as a user would run it.

``notebooks/tab_real_mri.py`` calls the library; this script runs ``python -m paperlib reconstruct``
in a subprocess for every (scan, acceleration, method), reads the NIfTI it writes and scores it
against the scan, so what a user gets from the CLI is measured, not assumed. Scans:

* the registered real scans (``--scans``, default: every *held-out* one of
  :data:`paperlib.data.real_mri.REAL_SCANS`), each written to a NIfTI exactly as it is loaded (the
  AFNI dataset converted), undersampled with the notebook's
  mask seed (:func:`paperlib.experiments.real_mri.scan_mask_seed`), so that its rows can be
  compared with ``figures/tab_real_mri_cases.csv`` (they differ only where the notebook's output
  exceeds the scan's maximum: the CLI clamps its output to ``[0, max(scan)]``);
* any NIfTI of your own (``--images a.nii.gz b.nii ...``, mask seed ``real_mri.mask_seed``).

Every scan is scored on the whole image and inside :func:`paperlib.data.real_mri.head_mask`
(the notebook's metric, :func:`paperlib.metrics.image.volume_scores`); the report gives every row,
then DART - TV paired per scan with its 95 % bootstrap interval (``paperlib.tables``). Writes
``benchmarks/results/real_mri_cli.{csv,md}``.

    python benchmarks/real_mri_cli.py --profile default
    python benchmarks/real_mri_cli.py --scans --images /data/ixi/*.nii.gz --out /tmp/my_scans.csv
"""
from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.real_mri import REAL_SCANS, head_mask, load_real_scan
from paperlib.experiments.real_mri import margin_verdicts, scan_mask_seed
from paperlib.io import InputValidationError, load_nifti, save_nifti
from paperlib.metrics.image import volume_scores
from paperlib.provenance import git_commit
from paperlib.reconstruct import from_dhw, to_dhw
from _cli import bench_parser, write_summary  # a sibling script (benchmarks/)

#: Methods compared by default: the claim's two.
METHODS = ("dart", "tv")


def _cli(image: Path, out: Path, method: str, acceleration: float, seed: int, profile: str, section,
         threads: int) -> float:
    """Run ``python -m paperlib reconstruct`` once; its wall time in seconds (start-up included)."""
    command = [sys.executable, "-m", "paperlib", "reconstruct", "--image", str(image), "--out", str(out),
               "--method", method, "--acceleration", f"{acceleration:g}", "--center-fraction",
               f"{section.center_fraction:g}", "--mask-kind", section.mask_kind, "--mask-seed", str(seed),
               "--profile", profile, "--threads", str(threads), "--overwrite"]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return time.perf_counter() - start


def _inputs(folder: Path, scans: list[str], images: list[Path], profile) -> list[dict]:
    """Scans to reconstruct: name, role, NIfTI path, (D, H, W) image, head mask, mask seed."""
    inputs = []
    for name in scans:
        scan = load_real_scan(name)
        path = folder / f"{name}.nii.gz"
        save_nifti(path, from_dhw(scan.image.numpy()), scan.affine)
        inputs.append({"scan": name, "role": scan.role, "path": path, "image": scan.image,
                       "head_mask": scan.head_mask, "mask_seed": scan_mask_seed(profile, name)})
    names = [path.name for path in images]
    for path in images:
        label = path.name if names.count(path.name) == 1 else str(path)  # two files of one name stay apart
        data, _, zooms = load_nifti(path)
        image = torch.from_numpy(to_dhw(np.maximum(data, 0))).float()
        voxel_mm = (float(zooms[2]), float(zooms[1]), float(zooms[0]))
        inputs.append({"scan": label, "role": "user", "path": path, "image": image,
                       "head_mask": head_mask(image, voxel_mm), "mask_seed": profile.real_mri.mask_seed})
    return inputs


def run(profile_name: str, scans: list[str], images: list[Path], methods: tuple[str, ...] = METHODS,
        threads: int = 2, progress: bool = True) -> list[dict]:
    """One row per (scan, acceleration, method), scored as in ``tab_real_mri``."""
    unknown = [name for name in scans if name not in REAL_SCANS]
    if unknown:
        raise InputValidationError(f"--scans: unknown {unknown}; registered: {list(REAL_SCANS)}")
    profile = load_profile(profile_name)
    section = profile.real_mri
    rows = []
    with tempfile.TemporaryDirectory(prefix="real_mri_cli_") as tmp:
        folder = Path(tmp)
        inputs = _inputs(folder, scans, images, profile)
        bar = tqdm(total=len(inputs) * len(section.accelerations) * len(methods), desc="CLI reconstructions",
                   disable=not progress)
        for k, item in enumerate(inputs):
            for acc in section.accelerations:
                for method in methods:
                    out = folder / f"recon_{k}_{acc:g}_{method}.nii.gz"
                    wall = _cli(item["path"], out, method, acc, item["mask_seed"], profile_name, section, threads)
                    recon = torch.from_numpy(to_dhw(load_nifti(out)[0])).float()
                    s = volume_scores(recon, item["image"], head_mask=item["head_mask"])
                    rows.append({"case": f"{item['scan']}@{acc:g}x", "scan": item["scan"], "role": item["role"],
                                 "acceleration": float(acc), "method": method, "seed": 0, "ssim_whole": s["ssim"], "ssim_head": s["ssim_head"],
                                 "psnr_volume": s["psnr"], "cli_wall_s": wall,
                                 "negative_fraction": float((recon < 0).float().mean()),
                                 "max_ratio": float(recon.max() / item["image"].max())})
                    bar.update()
        bar.close()
    return rows


def report(rows: list[dict], profile: str) -> str:
    """Markdown: every row, then DART - TV paired per scan by role and acceleration."""
    lines = [f"# DART vs TV on real scans through `python -m paperlib reconstruct` (profile `{profile}`)", "",
             f"Commit {git_commit()}. Each row is one CLI run (its wall time includes Python's start-up); "
             "SSIM as in tab_real_mri (whole image, inside the head mask), data range the scan's.", "",
             "| Scan | Role | Acceleration | Method | SSIM whole | SSIM head | PSNR dB | max(out)/max(scan) | CLI s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['scan']} | {r['role']} | {r['acceleration']:g}x | {r['method']} | {r['ssim_whole']:.4f} | "
                     f"{r['ssim_head']:.4f} | {r['psnr_volume']:.2f} | {r['max_ratio']:.3f} | {r['cli_wall_s']:.1f} |")
    methods = {r["method"] for r in rows}
    if {"dart", "tv"} <= methods:
        lines += ["", "## DART - TV, paired per scan", "",
                  "| Role | Acceleration | n scans | whole image | head | whole >= +0.02 | head >= +0.02 |",
                  "|---|---|---|---|---|---|---|"]
        for m in tables.paired_differences(rows, "dart", "tv", ("ssim_whole", "ssim_head"), by=("role", "acceleration")):
            verdict = margin_verdicts(m)
            lines.append(f"| {m['role']} | {float(m['acceleration']):g}x | {m['n']} | {tables.mean_std_ci(m, 'ssim_whole')} "
                         f"| {tables.mean_std_ci(m, 'ssim_head')} | {verdict[0]} | {verdict[1]} |")
        lines += ["", tables.INTERVAL_NOTE.replace("test cases", "scans")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--scans", nargs="*", default=[n for n, s in REAL_SCANS.items() if s.role == "held_out"],
                   help="registered scans (default: the held-out ones; none: only --images)")
    p.add_argument("--images", nargs="*", type=Path, default=[], help="NIfTI magnitude volumes of your own")
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--report-only", action="store_true", help="rewrite the report from the rows of --out")
    args = p.parse_args(argv)
    if args.report_only:
        rows = tables.read_csv_rows(args.out)  # numbers come back as floats
    else:
        if not args.scans and not args.images:
            p.error("nothing to reconstruct: give --scans or --images")
        rows = run(args.profile, args.scans, args.images, tuple(args.methods), args.threads)
        tables.write_csv_rows(rows, args.out)
    text = report(rows, args.profile)
    write_summary(args.out, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
