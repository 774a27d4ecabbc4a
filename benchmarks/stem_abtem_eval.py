"""4D-STEM methods on data they did not come from: abTEM, frozen phonons, finite dose, crystals at random depth.

Tables 1 and 2 (4D-STEM) are computed on noiseless data from our own multislice operator, every
crystal at the entrance surface: the reconstructions invert exactly the model that made the data
(issue 16). This script is the first measurement on data made otherwise, on the **fresh test
split** (``test_fresh``: seeds no design choice has seen), with the profile's methods and settings
unchanged:

* intensities from abTEM's own multislice (``simulator: abtem``) averaged over
  ``--frozen-phonons`` configurations of atoms displaced by ``--phonon-rms`` Å, then Poisson noise
  at each ``--doses`` (e-/Å²; ``inf`` = noiseless); a random beam tilt up to ``--tilt`` mrad;
* the crystal at a random depth of the box (vacuum above and below, ``placement: random``);
* every method of the profile's ``stem_eval.methods``, plus the thickness search over slabs at
  any depth (``three_pie_thickness_anywhere``, :func:`paperlib.recon.stem_baselines.thickness_search`
  with ``placement="anywhere"``).

Scores as the tables (:func:`paperlib.metrics.stem.stem_scores`: per-slice SSIM, projection SSIM,
the depth-blind reference). Writes ``benchmarks/results/stem_abtem_eval.csv`` (per case) and
``stem_abtem_eval.md`` (per dose and method: mean ± std [95 % bootstrap interval over the
crystals], n).

    python benchmarks/stem_abtem_eval.py --profile default --n 4 --doses 1e5
    python benchmarks/stem_abtem_eval.py --doses 1e4 1e5 1e6 --no-anywhere --out /tmp/stem_abtem_dose.csv

Tables 1-2 are now computed on such data (the profile's ``stem_eval.data``), and the dose sweep is
the dose figure of ``notebooks/tab1_ssim.py`` (``figures/fig_stem_dose.md``); this script remains
the place of the thickness search over slabs anywhere and of other phonon / tilt settings.
"""
from __future__ import annotations

import math
import sys

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.crystals import STEMDataParams, stem_dataset
from paperlib.experiments.runner import run_cases
from paperlib.experiments.stem import STEMCase
from paperlib.provenance import git_commit
from _cli import bench_parser, parse_args, write_summary  # a sibling script (benchmarks/)

COLUMNS = ("ssim_slice_mean", "ssim_projected", "ssim_depth_blind", "wall_time_s")


def cases_at(profile, dose: float | None, args) -> list[STEMCase]:
    """The fresh test crystals simulated with abTEM at ``dose`` (None: noiseless)."""
    params = STEMDataParams(**{**profile.stem.model_dump(), "simulator": "abtem", "window": None, "dose": dose,
                               "placement": "random", "frozen_phonons": args.frozen_phonons,
                               "phonon_rms": args.phonon_rms, "tilt_mrad": args.tilt})
    return [STEMCase.from_sample(s) for s in stem_dataset(params, "test_fresh", args.n, progress=True)]


def main(argv: list[str] | None = None) -> int:
    p = bench_parser(__doc__, __file__)
    p.add_argument("--n", type=int, default=4, help="fresh test crystals")
    p.add_argument("--doses", nargs="+", type=float, default=[1e5], help="e-/Å^2; inf = noiseless")
    p.add_argument("--frozen-phonons", type=int, default=4)
    p.add_argument("--phonon-rms", type=float, default=0.08, help="Å per coordinate")
    p.add_argument("--tilt", type=float, default=1.0, help="largest beam tilt per axis, mrad")
    p.add_argument("--no-anywhere", action="store_true", help="skip the thickness search over slabs anywhere "
                   "(D (D + 1) / 2 hypotheses: the slowest row)")
    args = parse_args(p, argv)
    profile = load_profile(args.profile)
    anywhere = profile.with_overrides("stem", "three_pie_thickness", {"placement": "anywhere"})
    methods = list(profile.stem_eval.methods)
    rows = []
    for dose in args.doses:
        label = "noiseless" if math.isinf(dose) else f"{dose:g} e/A^2"
        cases = cases_at(profile, None if math.isinf(dose) else dose, args)
        got, _ = run_cases(profile, "stem", cases, methods, seeds=(0,), dataset=label)
        extra = [] if args.no_anywhere else \
            run_cases(anywhere, "stem", cases, ["three_pie_thickness"], seeds=(0,), dataset=label)[0]
        for r in extra:
            r["method"] = "three_pie_thickness_anywhere"
        rows += got + extra
    tables.write_csv_rows(rows, args.out)
    summary = tables.summarise(rows, by=("dataset", "method"))
    lines = [f"# 4D-STEM methods on abTEM data (profile {args.profile}, fresh test split)", "",
             f"n = {args.n} crystals at a random depth; abTEM multislice, {args.frozen_phonons} frozen-phonon "
             f"configurations of {args.phonon_rms:g} Å rms, beam tilt up to {args.tilt:g} mrad per axis; doses as "
             f"the first column; methods and settings of the profile unchanged; one seed. Cells: mean ± std "
             f"[95 % bootstrap interval over the crystals]; code {git_commit()[:10]}, {args.threads} thread(s).", "",
             "| Data | Method | n | per-slice SSIM | projection SSIM | depth-blind reference | s per crystal |",
             "|---|---|---|---|---|---|---|"]
    for s in summary:
        cells = [tables.mean_std_ci(s, c) for c in COLUMNS[:3]]
        lines.append(f"| {s['dataset']} | {s['method']} | {s['n']} | " + " | ".join(cells)
                     + f" | {s['wall_time_s_mean']:.1f} |")
    text = "\n".join(lines) + "\n"
    write_summary(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
