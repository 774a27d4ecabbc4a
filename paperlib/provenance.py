"""Provenance of every output: git commit, profile and its hash, versions, checkpoints."""
from __future__ import annotations

import platform
import subprocess
from typing import Iterable

import torch

from . import __version__, paths
from .diffusion.partition import resolve_precision
from .io import sha256_file


def git_commit() -> str:
    """``HEAD`` of the checkout, with ``-dirty`` when tracked files differ; ``unknown`` outside git."""
    root = paths.repo_root()
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "paperlib", "notebooks"],
            cwd=root, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def _relative(path) -> str:
    """A checkpoint path relative to the repository when it lies inside it."""
    from pathlib import Path

    p = Path(path).resolve()
    try:
        return str(p.relative_to(paths.repo_root().resolve()))
    except ValueError:
        return str(p)


def provenance(profile, notebook: str, *, checkpoints: Iterable = ()) -> dict:
    """A JSON-serialisable record of what produced an output.

    Parameters
    ----------
    profile : the validated :class:`paperlib.config.Profile`.
    notebook : the notebook (or script) name that made the output.
    checkpoints : paths of checkpoint files used; their sha256 is recorded.
    """
    return {
        "notebook": notebook,
        "git_commit": git_commit(),
        "profile": profile.name,
        "profile_sha256": profile.digest(),
        "paperlib": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        # what a profile's ``precision: auto`` ran the networks in on this machine's CPU
        "auto_precision_cpu": resolve_precision("auto", "cpu"),
        "checkpoints": {_relative(p): sha256_file(p) for p in checkpoints},
    }
