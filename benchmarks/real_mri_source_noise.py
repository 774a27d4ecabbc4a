"""Is DART's large gain on the training-source template the anatomy or the missing noise?

On ``nilearn_mni152`` (role ``training_source``: the MNI152 template our synthetic training subjects
are made from) DART beats TV by far more than on any real scan (``figures/tab_real_mri_margin.md``),
but the template is also the one noise-free volume. This script separates the two: the template
gets Rician noise (the magnitude of the image plus complex white Gaussian noise of standard
deviation ``sigma`` per channel, ``sigma`` in units of the template's intensity scale,
:mod:`paperlib.data.intensity`) at several levels, and DART and TV (the profile's ``real_mri``
settings, the table's masks for this volume) reconstruct each noisy volume, scored against the
noisy volume itself as the real scans are. For scale, the tuning scans' background noise is
measured in the same units (the standard deviation of the voxels outside their dilated head mask;
Rician, so an underestimate of ``sigma`` by about a third). Held-out scans are not touched.
Writes ``benchmarks/results/real_mri_source_noise.{csv,md}``.

    python benchmarks/real_mri_source_noise.py --profile default
"""
from __future__ import annotations

import torch
from scipy import ndimage

from paperlib.config import load_profile
from paperlib.data.intensity import intensity_scale
from paperlib.data.real_mri import REAL_SCANS, head_mask, load_real_scan
from paperlib.experiments.real_mri import RealMRICase, real_case
from paperlib.provenance import git_commit
from real_mri_fov import PAIR_COLUMNS, pair_rows, run_dart_tv  # a sibling script (benchmarks/)
from _cli import bench_parser, parse_args, rows_prior  # a sibling script (benchmarks/)

#: Rician noise levels, in units of the template's intensity scale.
SIGMAS = (0.0, 0.01, 0.02, 0.05)
SOURCE = "nilearn_mni152"


def background_noise(name: str) -> float:
    """Standard deviation of a scan's voxels outside its head mask dilated by 3 voxels in-plane, over
    its intensity scale."""
    scan = load_real_scan(name)
    outside = ~ndimage.binary_dilation(scan.head_mask.numpy(), structure=ndimage.generate_binary_structure(3, 1),
                                       iterations=3)
    values = scan.image.numpy()[outside]
    return float(values.std() / intensity_scale(scan.image, name=name))


def cases(profile, seed: int = 0) -> tuple[list[RealMRICase], dict[str, float]]:
    """The template at every noise level and acceleration; the head-mask fraction per level."""
    scan = load_real_scan(SOURCE)
    scale = intensity_scale(scan.image, name=SOURCE)
    gen = torch.Generator().manual_seed(seed)
    out, fractions = [], {}
    for sigma in SIGMAS:
        noise = torch.randn((2, *scan.image.shape), generator=gen) * sigma * scale
        image = torch.hypot(scan.image + noise[0], noise[1]) if sigma > 0 else scan.image
        mask = head_mask(image, scan.voxel_mm)
        fractions[f"{sigma:g}"] = float(mask.float().mean())
        out += [real_case(profile, SOURCE, f"sigma={sigma:g}@{acc:g}x", f"{SOURCE} sigma={sigma:g}",
                          REAL_SCANS[SOURCE].role, acc, image, mask) for acc in profile.real_mri.accelerations]
    return out, fractions


def report(rows: list[dict], profile: str, fractions: dict[str, float], tuning_noise: dict[str, float]) -> str:
    """Markdown: DART, TV and DART - TV per noise level and acceleration."""
    lines = [f"# DART - TV on the training-source template with Rician noise (profile `{profile}`)", "",
             f"Commit {git_commit()}; prior {rows_prior(rows)}; sigma in units of the template's intensity scale; scored against the noisy "
             "volume, SSIM whole and in its own head mask, as in tab_real_mri. Tuning scans' background noise "
             "(std outside the dilated head mask, same units): "
             + ", ".join(f"{name} {value:.4f}" for name, value in tuning_noise.items()) + ".", "",
             f"| sigma | Acceleration | head fraction | {PAIR_COLUMNS} |", "|---|---|---|---|---|---|---|---|---|"]
    for dart, cells in pair_rows(rows):
        sigma = dart["case"].split("@")[0].removeprefix("sigma=")
        lines.append(f"| {sigma} | {float(dart['acceleration']):g}x | {fractions[sigma]:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--seed", type=int, default=0, help="seed of the added noise")
    args = parse_args(p, argv)
    profile = load_profile(args.profile)
    todo, fractions = cases(profile, args.seed)
    tuning_noise = {name: background_noise(name) for name, s in REAL_SCANS.items() if s.role == "tuning"}
    run_dart_tv(profile, todo, args.out, lambda rows: report(rows, args.profile, fractions, tuning_noise))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
