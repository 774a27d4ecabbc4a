"""Profiles (``ci``, ``default``, ``paper``) as validated, frozen configuration objects.

A profile is one YAML file in ``notebooks/params/``; every notebook's ``parameters`` cell names
the profile and reads its section from it. Every section is a pydantic model with
``extra="forbid"``: an unknown or mistyped key is an error that names the key and the file.

>>> cfg = load_profile("ci")
>>> cfg.name
'ci'
>>> len(cfg.mri.shape)
3
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from . import paths


class ConfigError(ValueError):
    """A profile file is missing, unreadable or does not validate."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MRIDataConfig(_Section):
    """Synthetic BraTS-like volumes (or real BraTS2020 when ``source == "brats"``)."""

    source: Literal["synthetic", "brats"] = "synthetic"
    shape: tuple[int, int, int] = Field(description="(D, H, W) of every volume: slices first")
    modality: Literal["t1", "t1ce", "t2", "flair"] = "flair"
    n_train: int = Field(ge=1)
    n_val: int = Field(ge=1)
    n_test: int = Field(ge=1)
    train_seed: int = 0
    val_seed: int = 10_000
    test_seed: int = 20_000
    noise_std: float = Field(0.01, ge=0.0, description="Rician-like noise, fraction of max intensity")

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(s < 4 for s in v):
            raise ValueError(f"every dimension of shape must be >= 4, got {v}")
        return v


class MRIPhysicsConfig(_Section):
    """k-space undersampling used by Table 1 (uniform) and Table 2 (Gaussian)."""

    acceleration: float = Field(4.0, gt=1.0)
    center_fraction: float = Field(0.08, gt=0.0, lt=1.0)
    table1_mask: Literal["uniform1d", "gaussian2d"] = "uniform1d"
    table2_mask: Literal["uniform1d", "gaussian2d"] = "gaussian2d"
    mask_seed: int = 0


class MRIBaselinesConfig(_Section):
    """Classical MRI baselines. Weights are relative to max |zero-filled image|."""

    cs_weight: float = Field(gt=0.0)
    cs_iters: int = Field(ge=1)
    cs_levels: int = Field(3, ge=1)
    cs_wavelet: Literal["haar", "db2", "db4"] = Field("haar", description="chosen on the validation split")
    tv_weight: float = Field(gt=0.0)
    tv_iters: int = Field(ge=1)
    tuned_on: str = Field("", description="how the weights were chosen (validation split)")


class Table1Config(_Section):
    n_volumes: int = Field(ge=1, description="test volumes scored (the paper uses 30)")
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = ("zero_filled", "cs_mri", "tv")


class Fig3Config(_Section):
    volume: int = Field(0, ge=0)
    slices: tuple[int, ...] = Field(description="slice indices shown")
    methods: tuple[str, ...] = ("zero_filled", "cs_mri", "tv")


class PriorConfig(_Section):
    """The shipped (or user-trained) MRI diffusion prior and how ``fig_prior_samples`` uses it."""

    checkpoint: str = Field(description="folder of prior_group*.safetensors + manifests, relative to the repo")
    sampling_steps: int = Field(50, ge=1, description="DDIM steps per unconditional sample")
    n_samples: int = Field(2, ge=1)
    noise_levels: tuple[float, ...] = Field((0.02, 0.05, 0.1, 0.2), description="denoising test, [0, 1] units")
    n_eval_volumes: int = Field(4, ge=1, description="test volumes for the denoising PSNR")
    seed: int = 0


class Profile(_Section):
    """A whole profile file."""

    name: str
    description: str = ""
    threads: int = Field(2, ge=1, description="torch intra-op threads for CPU runs")
    mri: MRIDataConfig
    mri_physics: MRIPhysicsConfig = MRIPhysicsConfig()
    mri_baselines: MRIBaselinesConfig
    tab1: Table1Config
    fig3: Fig3Config
    prior: PriorConfig

    def digest(self) -> str:
        """SHA-256 (first 16 hex digits) of the validated profile: its provenance hash."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def profile_path(name_or_path: str | os.PathLike) -> Path:
    """Resolve a profile name (``ci``, ``default``, ``paper``) or a path to its YAML file."""
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml"):
        path = candidate
    else:
        path = paths.params_dir() / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in paths.params_dir().glob("*.yaml"))
        raise ConfigError(f"profile {str(name_or_path)!r}: no file {path} (known profiles: {known})")
    return path


def _format_errors(exc: ValidationError, path: Path) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key {key!r}")
        elif err["type"] == "missing":
            lines.append(f"missing key {key!r}")
        else:
            lines.append(f"key {key!r}: {err['msg']} (got {err.get('input')!r})")
    return f"{path}: invalid profile: " + "; ".join(lines)


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load and validate a profile by name or path.

    Raises
    ------
    ConfigError
        The file is missing, is not a YAML mapping, or has an unknown, missing or mistyped key;
        the message names the file and every offending key.
    """
    path = profile_path(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path)) from None
