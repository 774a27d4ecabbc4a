"""Does DART's gain over TV depend on the field of view? The tuning scans, cropped in-plane.

On the held-out real scans DART's gain over TV is not uniform (``figures/tab_real_mri_margin.md``):
it is large on the scan whose field of view holds the whole head with air around it
(nib_example4d; also on the MNI template, the source of the training anatomy) and nil or negative
on the two whose field of view lies inside the head
(nib_anatomical, nib_afni_epi). This script tests that reading on the *tuning* scans only (the
held-out scans stay out of every experiment): each tuning scan is reconstructed by DART and TV (the
profile's ``real_mri`` settings, as in the table) at three in-plane fields of view of the same
slices:

* ``full``: the scan as it is (the table's case);
* ``head box``: cropped to the bounding box of its head mask (no air margin left);
* ``inside``: the central half (per in-plane axis) of that box, a field of view inside the head.

Every crop keeps the depth, and each case gets the table's per-slice masks for its shape (seed
``paperlib.experiments.real_mri.scan_mask_seed``). SSIM whole and in the (cropped) head mask as in the table.
Writes ``benchmarks/results/real_mri_fov.{csv,md}``.

    python benchmarks/real_mri_fov.py --profile default
"""
from __future__ import annotations

from pathlib import Path

import torch

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.real_mri import REAL_SCANS, load_real_scan
from paperlib.experiments.real_mri import REAL_MRI, RealMRICase, real_case
from paperlib.experiments.runner import run_cases
from paperlib.io import atomic_write_text
from paperlib.provenance import git_commit
from _cli import bench_parser, parse_args, rows_prior  # a sibling script (benchmarks/)

#: The fields of view compared, in order.
FOVS = ("full", "head box", "inside")


def crop_box(mask: torch.Tensor, fov: str) -> tuple[slice, slice]:
    """In-plane (H, W) slices of field of view ``fov`` for a (D, H, W) head mask."""
    if fov == "full":
        return slice(None), slice(None)
    boxes = []
    for axis in (1, 2):
        present = mask.any(dim=tuple(a for a in (0, 1, 2) if a != axis)).nonzero().flatten()
        lo, hi = int(present.min()), int(present.max()) + 1
        if fov == "inside":
            quarter = (hi - lo) // 4
            lo, hi = lo + quarter, hi - quarter
        elif fov != "head box":
            raise ValueError(f"fov: expected one of {FOVS}, got {fov!r}")
        boxes.append(slice(lo, hi))
    return boxes[0], boxes[1]


def cases(profile) -> list[RealMRICase]:
    """Every tuning scan x field of view x acceleration of ``profile.real_mri``."""
    out = []
    for name, source in REAL_SCANS.items():
        if source.role != "tuning":
            continue
        scan = load_real_scan(name)
        for fov in FOVS:
            rows, cols = crop_box(scan.head_mask, fov)
            image = scan.image[:, rows, cols].contiguous()
            mask = scan.head_mask[:, rows, cols].contiguous()
            out += [real_case(profile, name, f"{name}|{fov}@{acc:g}x", f"{name}|{fov}", source.role, acc, image, mask)
                    for acc in profile.real_mri.accelerations]
    return out


#: The DART / TV cells of one case in a paired report (:func:`pair_rows`).
PAIR_COLUMNS = "DART whole | TV whole | DART - TV whole | DART head | TV head | DART - TV head"


def pair_rows(rows: list[dict]) -> list[tuple[dict, str]]:
    """Per case, in order: its DART row and its :data:`PAIR_COLUMNS` cells (SSIM, 4 decimals)."""
    by = {(r["case"], r["method"]): r for r in rows}
    out = []
    for case_id in dict.fromkeys(r["case"] for r in rows):
        dart, tv = by[(case_id, "dart")], by[(case_id, "tv")]
        cells = []
        for column in ("ssim_whole", "ssim_head"):
            d, t = float(dart[column]), float(tv[column])
            cells += [f"{d:.4f}", f"{t:.4f}", f"{d - t:+.4f}"]
        out.append((dart, " | ".join(cells)))
    return out


def run_dart_tv(profile, todo: list[RealMRICase], out: Path, report_of) -> None:
    """DART and TV on ``todo`` (one seed); the rows to ``out`` (CSV), ``report_of`` of the rows read back from it
    to ``out.md`` and stdout."""
    rows, _ = run_cases(profile, REAL_MRI, todo, ["dart", "tv"], seeds=(0,), progress=True)
    tables.write_csv_rows([{**r, "prior_checkpoint": profile.real_mri.checkpoint} for r in rows], out)
    text = report_of(tables.read_csv_rows(out))  # from the CSV as written, so that the report re-renders from it
    atomic_write_text(out.with_suffix(".md"), text)
    print(text)


def report(rows: list[dict], profile: str, shapes: dict[str, tuple]) -> str:
    """Markdown: DART, TV and DART - TV per scan, field of view and acceleration."""
    lines = [f"# DART - TV against the field of view, tuning scans only (profile `{profile}`)", "",
             f"Commit {git_commit()}; prior {rows_prior(rows)}; SSIM as in tab_real_mri (whole image, inside the cropped head mask).", "",
             f"| Scan | Field of view | (D, H, W) | head fraction | Acceleration | {PAIR_COLUMNS} |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dart, cells in pair_rows(rows):
        scan, fov = dart["scan"].split("|")
        shape, fraction = shapes[dart["scan"]]
        lines.append(f"| {scan} | {fov} | {shape} | {fraction:.2f} | {float(dart['acceleration']):g}x | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    args = parse_args(p, argv)
    profile = load_profile(args.profile)
    todo = cases(profile)
    shapes = {c.scan: (tuple(c.image.shape), float(c.head_mask.float().mean())) for c in todo}
    run_dart_tv(profile, todo, args.out, lambda rows: report(rows, args.profile, shapes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
