"""Tuning runs on the **validation** split, written where the ``tuned_on`` texts can cite them.

A profile's optional ``validation:`` section (:class:`paperlib.config.ValidationGrid`, per
modality) lists methods and, per method, grids of setting overrides. :func:`run_validation`
reconstructs the first ``n_volumes`` validation volumes (MRI) or crystals (4D-STEM) once per
grid point (and per seed for the stochastic methods) with the profile's settings updated by
that point, and scores them as the tables do. The test split is never touched. For
``real_mri`` the cases are the *tuning* real scans (:data:`paperlib.data.real_mri.REAL_SCANS`)
at every acceleration of the ``real_mri`` section; the held-out scans are never touched. For
``stem_eval`` they are the 4D-STEM validation crystals made as the test tables' crystals are
(``stem_eval.data``: abTEM, frozen phonons, dose, random depth, tilt;
:func:`paperlib.experiments.stem.eval_cases`), with the ``stem`` settings. A grid's
``checkpoints`` compares priors: every point of a prior method runs once per folder.

Outputs, written atomically into ``figures/`` (or ``--out``):

``validation_<modality>_<profile>.csv``
    one row per case x method x grid point x seed: the per-case columns of
    :data:`paperlib.tables.CASE_COLUMNS` (4D-STEM: plus the projection and depth-blind scores),
    ``split`` (always ``val``), ``overrides`` (the grid point as ``key=value;...``), one column
    per grid setting holding the value the method actually ran with (empty where the method has
    no such setting), the profile name and digest, and the prior's checkpoint folder and the
    ``sha256`` of each slice group's weights as its manifests record them (``;``-joined; empty
    for methods without a prior), so a tuning made with another prior is detectable.
``validation_<modality>_<profile>_summary.csv``
    mean, sample standard deviation and 95 % bootstrap interval per method and grid point
    (:func:`paperlib.tables.summarise`), the numbers a ``tuned_on`` text quotes.

Command line::

    python -m paperlib.validation --profile default [--modality mri|stem|stem_eval|real_mri] [--out figures/]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Literal, Sequence

import torch

from . import paths, tables
from .config import VALIDATION_TARGETS, ConfigError, Profile, ValidationGrid, load_profile
from .diffusion.checkpoints import manifest_path
from .experiments.priors import prior_weights
from .experiments.runner import MODALITIES, run_cases
from .experiments.stem import eval_cases

logger = logging.getLogger(__name__)

Modality = Literal["mri", "stem", "stem_eval", "real_mri"]

#: methods that sample the diffusion prior (their rows carry its checkpoint hashes)
PRIOR_METHODS = frozenset({"dart", "drift", "projection"})


def csv_path(out_dir: str | os.PathLike, modality: Modality, profile: str, *, summary: bool = False) -> Path:
    """``<out_dir>/validation_<modality>_<profile>[_summary].csv``."""
    return Path(out_dir) / f"validation_{modality}_{profile}{'_summary' if summary else ''}.csv"


#: the profile section and field naming the prior folder the guided methods of each modality sample
_PRIOR_FIELDS = {"mri": ("prior", "checkpoint"), "stem": ("stem_prior", "recon_checkpoint"),
                 "stem_eval": ("stem_prior", "recon_checkpoint"), "real_mri": ("real_mri", "checkpoint")}


def prior_checkpoint(profile: Profile, modality: Modality) -> str:
    """The prior folder (relative to the repository) the guided methods of ``modality`` sample
    (a section's ``guided_checkpoint`` where it has one, else its ``checkpoint``)."""
    section = getattr(profile, _PRIOR_FIELDS[modality][0])
    return getattr(section, "guided_checkpoint", section.checkpoint)


def with_checkpoint(profile: Profile, modality: Modality, checkpoint: str) -> Profile:
    """``profile`` with the prior folder the guided methods of ``modality`` sample replaced by ``checkpoint``."""
    section, field = _PRIOR_FIELDS[modality]
    return profile.model_copy(update={section: getattr(profile, section).model_copy(update={field: checkpoint})})


def prior_sha256(checkpoint: str) -> str:
    """The ``sha256`` fields of the prior's manifests (one per slice group, in group order), ``;``-joined.

    Raises ``FileNotFoundError`` naming the folder when it holds no weights.
    """
    weights = prior_weights(checkpoint)
    if not weights:
        raise FileNotFoundError(f"checkpoint {checkpoint!r}: no prior_group*.safetensors (train the prior first)")
    return ";".join(json.loads(manifest_path(w).read_text())["sha256"] for w in weights)


def validation_cases(profile: Profile, modality: Modality, n: int) -> list:
    """The first ``n`` cases of the validation split (the runner's case builder of ``modality``);
    for ``real_mri`` the tuning scans at every acceleration (never the held-out ones)."""
    return _modality(modality).cases(profile, "tuning" if modality == "real_mri" else "val", n)


def _modality(modality: Modality):
    if modality == "real_mri":
        from .experiments.real_mri import REAL_MRI

        return REAL_MRI
    if modality == "stem_eval":
        return dataclasses.replace(MODALITIES["stem"], cases=eval_cases, dataset="cubic, as stem_eval.data")
    return MODALITIES[modality]


def score_cases(profile: Profile, modality: Modality, cases: Sequence, methods: Sequence[str], *,
                seeds: Sequence[int], progress: bool) -> list[dict]:
    """Per-case rows of ``methods`` on ``cases`` (:func:`paperlib.experiments.runner.run_cases`)."""
    return run_cases(profile, _modality(modality), cases, methods, seeds=seeds, progress=progress)[0]


def _grid(profile: Profile, modality: Modality) -> ValidationGrid:
    grid = None if profile.validation is None else getattr(profile.validation, modality)
    if grid is None:
        raise ConfigError(f"profile {profile.name!r}: no validation.{modality} section (the grid to run); "
                          f"add one to notebooks/params/{profile.name}.yaml")
    return grid


def _effective(profile: Profile, modality: Modality, method: str, setting: str):
    """The value of ``setting`` in ``method``'s section of ``profile`` (``None`` where it has none)."""
    section = profile
    for attr in VALIDATION_TARGETS[modality][method] or ():
        section = getattr(section, attr)
    if section is profile or setting not in type(section).model_fields:
        return None
    return getattr(section, setting)


def validation_rows(profile: Profile, modality: Modality, *, progress: bool = False) -> list[dict]:
    """Run the profile's ``validation.<modality>`` grid on the validation split; per-case rows.

    Parameters
    ----------
    profile : a profile with a ``validation.<modality>`` grid.
    modality : ``"mri"``, ``"stem"``, ``"stem_eval"`` or ``"real_mri"``.
    progress : show progress bars.

    Returns
    -------
    One dict per case x method x grid point x seed (columns: see the module docstring).

    Raises
    ------
    ConfigError
        The profile has no grid for ``modality``.
    """
    if modality not in VALIDATION_TARGETS:
        raise ValueError(f"modality: expected one of {sorted(VALIDATION_TARGETS)}, got {modality!r}")
    grid = _grid(profile, modality)
    settings = grid.settings()
    checkpoints = grid.checkpoints or (prior_checkpoint(profile, modality),)
    shas = ({c: prior_sha256(c) for c in checkpoints} if any(m in PRIOR_METHODS for m in grid.methods) else {})
    cases = validation_cases(profile, modality, grid.n_volumes)
    rows = []
    for method in grid.methods:
        uses_prior = method in PRIOR_METHODS
        for point in grid.points(method):
            for checkpoint in checkpoints if uses_prior else (None,):
                tuned = profile.with_overrides(modality, method, point)
                overrides = [f"{k}={v}" for k, v in point.items()]
                if uses_prior and grid.checkpoints:
                    tuned = with_checkpoint(tuned, modality, checkpoint)
                    overrides.append(f"checkpoint={checkpoint}")
                logger.info("validation %s %s %s", modality, method, ";".join(overrides) or "(profile settings)")
                extra = {
                    "split": "val",
                    "overrides": ";".join(overrides),
                    **{s: _effective(tuned, modality, method, s) for s in settings},
                    "profile": profile.name, "profile_digest": profile.digest(),
                    "prior_checkpoint": checkpoint,
                    "prior_sha256": shas[checkpoint] if uses_prior else None,
                }
                rows += [{**row, **extra} for row in score_cases(tuned, modality, cases, [method],
                                                                 seeds=grid.seeds, progress=progress)]
    return rows


def run_validation(profile: Profile | str, modality: Modality, *, out_dir: str | os.PathLike | None = None,
                   progress: bool = False) -> tuple[Path, Path]:
    """Run the grid (:func:`validation_rows`) and write the per-case and summary CSVs atomically.

    Returns the paths ``(cases_csv, summary_csv)``.
    """
    profile = load_profile(profile) if isinstance(profile, str) else profile
    rows = validation_rows(profile, modality, progress=progress)
    out_dir = paths.figures_dir() if out_dir is None else Path(out_dir)
    cases_csv = tables.write_cases(rows, csv_path(out_dir, modality, profile.name))
    summary = tables.summarise(tables.read_cases(cases_csv), by=("modality", "method", "overrides"))
    summary_csv = tables.write_csv_rows(summary, csv_path(out_dir, modality, profile.name, summary=True))
    return cases_csv, summary_csv


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib.validation --profile NAME [--modality mri|stem] [--out DIR]``.

    Returns 0; a profile without the grid asked for exits with status 2 and says so on stderr.
    """
    parser = argparse.ArgumentParser(prog="python -m paperlib.validation",
                                     description="run a profile's validation grid (validation split only)")
    parser.add_argument("--profile", required=True, help="profile name (ci, default, paper) or YAML path")
    parser.add_argument("--modality", choices=sorted(VALIDATION_TARGETS), action="append",
                        help="modality to run (repeatable; default: every modality the profile's grid has)")
    parser.add_argument("--out", default=None, help="output folder (default: figures/)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: the profile's)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        profile = load_profile(args.profile)
        modalities = args.modality or [m for m in VALIDATION_TARGETS
                                       if profile.validation is not None and getattr(profile.validation, m)]
        if not modalities:
            raise ConfigError(f"profile {profile.name!r}: no validation section (the grid to run)")
        torch.set_num_threads(args.threads or profile.threads)
        for modality in modalities:
            for path in run_validation(profile, modality, out_dir=args.out, progress=True):
                print(f"wrote {path}")
    except ConfigError as exc:
        parser.exit(2, f"error: {exc}\n")  # SystemExit(2), message on stderr
    return 0


if __name__ == "__main__":
    sys.exit(main())
