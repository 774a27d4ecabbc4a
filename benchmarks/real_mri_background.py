"""Where does DART lose to TV on the held-out scans: inside the head or in the background?

On ``dipy_piesno`` DART is below TV on the whole image by more than inside the head mask
(``figures/tab_real_mri.md``), which puts the rest of the loss outside the mask. This script
measures that directly: every held-out scan with a background (a head mask that is not the whole
volume) is reconstructed by DART and TV with the table's masks and settings (the same cases, so
the whole-image SSIM equals the table's), and SSIM is averaged over the *background*, the voxels
outside the head mask (:func:`paperlib.metrics.image.volume_scores` with the complement as its
mask). A diagnosis of held-out rows, not a choice: nothing is tuned from it.

Writes ``benchmarks/results/real_mri_background.{csv,md}``::

    python benchmarks/real_mri_background.py --profile default
"""
from __future__ import annotations

from paperlib.config import load_profile
from paperlib.data.real_mri import REAL_SCANS, load_real_scan
from paperlib.experiments.real_mri import RealMRICase, real_case
from paperlib.provenance import git_commit
from real_mri_fov import pair_rows, run_dart_tv  # a sibling script (benchmarks/)
from _cli import bench_parser, parse_args, rows_prior  # a sibling script (benchmarks/)


def cases(profile, role: str = "held_out") -> tuple[list[RealMRICase], dict[str, float]]:
    """The scans of ``role`` whose head mask leaves a background, at every acceleration of
    ``profile.real_mri``, each with the background (the complement of its head mask) as the mask
    scored; the background fraction per scan."""
    out, fractions = [], {}
    for name, source in REAL_SCANS.items():
        if source.role != role:
            continue
        scan = load_real_scan(name)
        background = ~scan.head_mask
        if not bool(background.any()):
            continue
        fractions[name] = float(background.float().mean())
        out += [real_case(profile, name, f"{name}@{acc:g}x", name, source.role, acc, scan.image, background)
                for acc in profile.real_mri.accelerations]
    return out, fractions


def report(rows: list[dict], profile: str, fractions: dict[str, float]) -> str:
    """Markdown: DART and TV SSIM on the whole image and in the background, per scan and acceleration."""
    lines = [f"# DART - TV on the held-out scans: whole image and background (profile `{profile}`)", "",
             f"Commit {git_commit()}; prior {rows_prior(rows)}; the table's cases "
             "(masks, settings); 'background' = SSIM averaged outside the head mask. Scans whose head mask is the "
             "whole volume have no background and are left out.", "",
             "| Scan | background fraction | Acceleration | DART whole | TV whole | DART - TV whole "
             "| DART background | TV background | DART - TV background |",
             "|---|---|---|---|---|---|---|---|---|"]
    for dart, cells in pair_rows(rows):
        lines.append(f"| {dart['scan']} | {fractions[dart['scan']]:.2f} | {float(dart['acceleration']):g}x | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    args = parse_args(p, argv)
    profile = load_profile(args.profile)
    todo, fractions = cases(profile)
    run_dart_tv(profile, todo, args.out, lambda rows: report(rows, args.profile, fractions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
