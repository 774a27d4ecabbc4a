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
import itertools
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import paths
from .data.crystals import STEMDataParams


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
    methods: tuple[str, ...] = ("dart", "drift", "projection", "zero_filled", "cs_mri", "tv")


class OODExamplesConfig(_Section):
    """Figure 4 (``fig4_ood_examples``): which Table 2 cases it shows."""

    root_volume: int = Field(0, ge=0, description="index of the root volume (Table 2, MRI half)")
    root_slice: int = Field(8, ge=0, description="slice of that volume shown")
    stem_case: int = Field(0, ge=0, description="index of the hexagonal WSe2 crystal (Table 2, 4D-STEM half)")


class Table2Config(_Section):
    """Table 2, MRI half: out-of-distribution plant-root volumes (``paperlib.data.roots``)."""

    n_volumes: int = Field(ge=1, description="root volumes scored (the paper uses 30)")
    seeds: tuple[int, ...] = (0,)
    methods: tuple[str, ...] = ("dart", "drift", "projection", "zero_filled", "cs_mri", "tv")
    roots_seed: int = Field(30_000, description="volume i is root system seed roots_seed + i")
    noise_std: float = Field(0.015, ge=0.0, description="Rician-like noise of the root volumes")
    fig4: OODExamplesConfig = OODExamplesConfig()


class Fig5Config(_Section):
    """Figure 5, top (``fig5_scaling``): vanilla video diffusion against DART and DRIFT."""

    top_volumes: int = Field(2, ge=1, description="first test volumes of Table 1 reconstructed by each method")


class Table3Config(_Section):
    """Table 3 (``tab3_generation``): generated volumes of the whole-depth network against the
    partitioned stack (``paperlib.experiments.generation``)."""

    n_generated: int = Field(16, ge=2, description="volumes generated per prior and draw (and training volumes "
                             "in the sanity row)")
    n_reference: int = Field(24, ge=2, description="held-out test-split volumes every set is compared with")
    draws: int = Field(2, ge=1, description="independent generations per prior (mean and spread over them)")
    steps: int = Field(20, ge=1, description="DDIM steps per generated volume")
    batch: int = Field(8, ge=1, description="volumes sampled together")
    seed: int = 0
    extractors: tuple[str, ...] = Field(("project",), description="feature extractors: 'project' (the project's "
                                        "encoder of the modality), 'i3d', 'videomae', 'vjepa' or paths")
    weights_dir: str | None = Field(None, description="folder of the extractors' weight files (else "
                                    "$PAPERLIB_WEIGHTS; paperlib.metrics.video.load_extractor)")
    modalities: tuple[Literal["mri", "stem"], ...] = ("mri", "stem")


class Fig3Config(_Section):
    volume: int = Field(0, ge=0)
    slices: tuple[int, ...] = Field(description="slice indices shown")
    methods: tuple[str, ...] = ("dart", "drift", "projection", "zero_filled", "cs_mri", "tv")


class PriorConfig(_Section):
    """The shipped (or user-trained) MRI diffusion prior and how ``fig_prior_samples`` uses it."""

    checkpoint: str = Field(description="folder of prior_group*.safetensors + manifests, relative to the repo")
    single_checkpoint: str | None = Field(None, description="the whole-depth prior (ONE network over all slices, "
                                          "the paper's vanilla video diffusion; Figure 5, Table 3), relative to the repo")
    sampling_steps: int = Field(50, ge=1, description="DDIM steps per unconditional sample")
    n_samples: int = Field(2, ge=1)
    noise_levels: tuple[float, ...] = Field((0.02, 0.05, 0.1, 0.2), description="denoising test, [0, 1] units")
    n_eval_volumes: int = Field(4, ge=1, description="test volumes for the denoising PSNR")
    seed: int = 0


class GuidedStepsConfig(_Section):
    """One guided diffusion method: steps, start, and the physics step's keyword arguments."""

    steps: int = Field(20, ge=1, description="diffusion steps (network evaluations per slice group)")
    start: float = Field(1.0, gt=0.0, le=1.0, description="fraction of the schedule to start at (1 = pure noise)")
    stop: float = Field(0.0, ge=0.0, lt=1.0, description="DART: fraction of the schedule to stop at, returning the "
                                                         "corrected denoised estimate there (0 = down to t = 0)")
    candidates: int = Field(1, ge=1, description="DRIFT: prior samples drawn per reconstruction")
    samples: int = Field(1, ge=1, description="DART: mean of this many samples (1 = the paper's single sample)")
    physics_steps: int = Field(1, ge=0, description="physics steps per diffusion step (DART) or after selection (DRIFT)")
    step_size: float | None = Field(1.0, gt=0.0, description="MRI: Eq. 4 lambda; 4D-STEM: Eq. 5 mu (None = operator default)")
    threshold: float | None = Field(None, ge=0.0, description="4D-STEM: Eq. 5 soft threshold, V*Angstrom")
    nonnegative: bool | None = Field(None, description="4D-STEM: project onto V >= 0 after each step")
    likelihood: Literal["amplitude", "poisson"] | None = Field(
        None, description="4D-STEM: the physics step's data term (MultisliceOperator.loss; None = amplitude)")
    momentum: bool | None = Field(None, description="the physics steps with Nesterov momentum and adaptive restart "
                                                    "(paperlib.recon.dart.accelerated_steps; None = one after the other)")
    sigma_max: float | None = Field(None, gt=0.0, description="DART: the plug-and-play form (paperlib.recon.dart, "
                                    "levels): noise level of the first of `steps` denoising steps, prior units "
                                    "(None = the paper's noisy chain from `start`)")
    sigma_min: float | None = Field(None, gt=0.0, description="DART, plug-and-play form: noise level of the last "
                                    "denoising step (levels spaced geometrically in between)")
    self_ensemble: bool = Field(False, description="DART, plug-and-play form: denoising step k sees the estimate in "
                                "the (k mod 8)-th in-plane orientation (flips, transpose) and is turned back "
                                "(DPIR's periodical geometric self-ensemble; paperlib.recon.dart)")
    init_from: Literal["default", "tv"] = Field(
        "default", description="DART on real MRI scans (tab_real_mri, the reconstruct command): the starting image, "
                               "'default' the zero-filled image, 'tv' the TV reconstruction at real_mri.baselines")
    translate: bool = Field(False, description="DRIFT, 4D-STEM: align candidates laterally by whole scan steps first")
    vacuum_threshold: float | None = Field(
        None, ge=0.0, description="DRIFT, 4D-STEM: slices of the selected sample with mean potential below this "
                                  "(V*Angstrom) stay vacuum during the K physics steps (None: all slices free)")

    @model_validator(mode="after")
    def _levels_pair(self):
        if (self.sigma_max is None) != (self.sigma_min is None):
            raise ValueError("sigma_max and sigma_min: set both (the plug-and-play form of DART) or neither")
        if self.sigma_max is not None:
            if self.sigma_max < self.sigma_min:
                raise ValueError(f"sigma_max ({self.sigma_max}) must be >= sigma_min ({self.sigma_min})")
            if self.samples != 1 or self.stop != 0.0 or self.start != 1.0:
                raise ValueError("sigma_max / sigma_min (the plug-and-play form of DART) draw no noise and place their "
                                 "own levels: leave samples, start and stop out")
        elif self.self_ensemble:
            raise ValueError("self_ensemble: only DART's plug-and-play form takes it (set sigma_max / sigma_min)")
        return self

    def levels(self) -> tuple[float, float] | None:
        """``(sigma_max, sigma_min)`` of DART's plug-and-play form, or ``None`` (the paper's chain)."""
        return None if self.sigma_max is None else (self.sigma_max, self.sigma_min)

    def step_kwargs(self) -> dict:
        """Keyword arguments of ``operator.physics_step`` (only those set), with ``momentum``, which
        :func:`paperlib.recon.dart.physics_callback` takes itself."""
        kw = {"step_size": self.step_size, "threshold": self.threshold, "nonnegative": self.nonnegative,
              "likelihood": self.likelihood, "momentum": self.momentum}
        return {k: v for k, v in kw.items() if v is not None}


class DiffusionReconConfig(_Section):
    """DART, DRIFT and the projection-based method of one modality (``mri_diffusion``)."""

    sampler: Literal["ddim", "ddpm"] = "ddim"
    eta: float = Field(0.0, ge=0.0, le=1.0, description="DDIM stochasticity")
    clip: tuple[float, float] | None = Field(None, description="clamp of x0_hat in prior units (MRI: [0, 1])")
    precision: Literal["float32", "bfloat16", "auto"] = Field(
        "float32", description="the networks' arithmetic (bfloat16: weights and activations; auto: bfloat16 where "
                               "the CPU or GPU computes it natively, else float32, paperlib.diffusion.partition."
                               "resolve_precision; see benchmarks/guided_speed.py)")
    dart: GuidedStepsConfig
    drift: GuidedStepsConfig
    projection: GuidedStepsConfig | None = None
    tuned_on: str = Field("", description="how the settings were chosen (validation split)")


class ThreePIEConfig(_Section):
    """Keyword arguments of :func:`paperlib.recon.stem_baselines.three_pie`."""

    n_iter: int = Field(20, ge=1, description="epochs (each visits every scan position once)")
    alpha: float = Field(0.5, gt=0.0, description="object step")
    beta: float = Field(1.0, ge=0.0, description="incident-wave step for slices 2..D")
    batch_size: int | None = Field(64, ge=1, description="positions per update (None = all)")
    nonnegative: bool = Field(True, description="project onto V >= 0 after each epoch")


class TorchsliceConfig(_Section):
    """Keyword arguments of :func:`paperlib.recon.stem_baselines.torchslice`."""

    n_iter: int = Field(100, ge=1, description="Adam epochs")
    lr: float = Field(30.0, gt=0.0, description="Adam learning rate, V*Angstrom")
    batch_size: int | None = Field(None, ge=1, description="positions per Adam step (None = all)")
    nonnegative: bool = True


class SparseConfig(_Section):
    """Keyword arguments of :func:`paperlib.recon.stem_baselines.sparse_decomposition`."""

    n_iter: int = Field(100, ge=1, description="FISTA iterations")
    step_scale: float = Field(1.0, gt=0.0, description="multiple of the operator's Gauss-Newton step")
    threshold: float = Field(0.05, ge=0.0, description="soft threshold per iteration, V*Angstrom")
    nonnegative: bool = True


class ThicknessSearchConfig(_Section):
    """Keyword arguments of :func:`paperlib.recon.stem_baselines.thickness_search`."""

    steps: int = Field(20, ge=0, description="physics steps per thickness hypothesis")
    final_steps: int = Field(30, ge=0, description="physics steps on the chosen support")
    threshold: float = Field(0.05, ge=0.0, description="soft threshold per step, V*Angstrom")
    nonnegative: bool = True
    placement: Literal["entrance", "anywhere"] = Field(
        "entrance", description="slabs from the entrance surface, or at any depth (D (D + 1) / 2 hypotheses)")


class STEMBaselinesConfig(_Section):
    """Physics-only 4D-STEM baselines; each sub-section is passed as keyword arguments."""

    three_pie: ThreePIEConfig
    torchslice: TorchsliceConfig
    sparse: SparseConfig
    thickness: ThicknessSearchConfig = ThicknessSearchConfig()
    tuned_on: str = Field("", description="how the hyper-parameters were chosen (validation split)")


class Fig4Config(_Section):
    case: int = Field(0, ge=0, description="index of the test crystal shown")
    slices: Literal["all"] | tuple[int, ...] = Field("all", description="slice indices shown, or 'all'")


class STEMEvalDataConfig(_Section):
    """The data of the 4D-STEM test tables (Tables 1-2, Figure 4 and the dose figure; issue 16).

    The fields set the evaluation options of :class:`paperlib.data.crystals.STEMDataParams` on
    top of the profile's ``stem`` section (optics, grid, scan and detector are shared). The
    defaults are the prior's own training data: our operator, noiseless, every crystal at the
    entrance surface, the ``test`` / ``ood`` splits.
    """

    simulator: Literal["torch", "abtem"] = Field("torch", description="who simulates the intensities")
    dose: float | None = Field(None, gt=0, description="e-/Å^2 of the tables (Poisson noise); None = noiseless")
    frozen_phonons: int = Field(1, ge=1, description="frozen-phonon configurations averaged in the data")
    phonon_rms: float = Field(0.0, ge=0, description="Å per coordinate and configuration")
    placement: Literal["entrance", "random"] = Field("entrance", description="crystal at the entrance "
                                                     "surface or at a random depth (vacuum above and below)")
    tilt_mrad: float = Field(0.0, ge=0, description="largest beam tilt per axis, mrad (simulator 'abtem')")
    fresh: bool = Field(False, description="the test_fresh / ood_fresh splits (seeds no design choice has "
                        "seen) instead of test / ood")
    sweep_doses: tuple[float, ...] = Field((), description="further doses of the dose figure (e-/Å^2), "
                                           "besides the tables' dose")
    sweep_n: int = Field(1, ge=1, description="test crystals of the dose figure (the tables' first ones)")
    sweep_noiseless: bool = Field(False, description="the dose figure also scores the same crystals without "
                                  "noise (the reference at the right end of its dose axis)")

    @model_validator(mode="after")
    def _consistent(self) -> "STEMEvalDataConfig":
        if self.tilt_mrad > 0 and self.simulator != "abtem":
            raise ValueError("tilt_mrad > 0 needs simulator: abtem (our operator has no beam tilt)")
        if any(d <= 0 for d in self.sweep_doses):
            raise ValueError(f"sweep_doses: expected positive doses in e-/Å^2, got {list(self.sweep_doses)}")
        if self.dose is not None and self.dose in self.sweep_doses:
            raise ValueError(f"sweep_doses: {self.dose:g} is already the tables' dose")
        if self.sweep_noiseless and self.dose is None:
            raise ValueError("sweep_noiseless: the tables' data are noiseless already (dose: null)")
        return self


class STEMEvalConfig(_Section):
    """Crystal splits and methods of the 4D-STEM half of Table 1 (and Figure 4)."""

    n_train: int = Field(ge=1, description="cubic crystals of the prior's training set")
    n_val: int = Field(ge=1, description="cubic crystals for tuning the baselines")
    n_test: int = Field(ge=1, description="cubic test crystals (Table 1; the paper uses 30)")
    n_ood: int = Field(ge=1, description="hexagonal test crystals (Table 2)")
    methods: tuple[str, ...] = ("dart", "drift", "three_pie", "torchslice", "sparse")
    seeds: tuple[int, ...] = (0,)
    fig4: Fig4Config = Fig4Config()
    data: STEMEvalDataConfig = STEMEvalDataConfig()

    @model_validator(mode="after")
    def _sweep_fits(self) -> "STEMEvalConfig":
        if (self.data.sweep_doses or self.data.sweep_noiseless) and self.data.sweep_n > self.n_test:
            raise ValueError(f"data.sweep_n: expected <= n_test = {self.n_test}, got {self.data.sweep_n}")
        return self


class STEMPriorConfig(_Section):
    """The 4D-STEM diffusion prior: where it lives and the fixed scale of its training data."""

    checkpoint: str = Field(description="folder of prior_group*.safetensors + manifests, relative to the repo: "
                            "the prior of its training data (generation: Table 3, Figure 5, prior samples)")
    single_checkpoint: str | None = Field(None, description="the whole-depth prior (one network over all slices; "
                                          "Table 3), relative to the repo")
    recon_checkpoint: str | None = Field(None, description="the prior DART and DRIFT sample in the reconstructions "
                                         "(Tables 1-2, Figure 4, validation, reconstruct), relative to the repo; "
                                         "None: checkpoint")
    data_scale: float = Field(gt=0.0, description="V*Angstrom; potentials / data_scale are the prior's data (~[0, 1])")
    sampling_steps: int = Field(50, ge=1, description="DDIM steps per sample")
    n_samples: int = Field(2, ge=1, description="unconditional samples shown by fig_prior_samples")
    noise_levels: tuple[float, ...] = Field((0.05, 0.1, 0.2, 0.4), description="denoising test, prior units "
                                            "(potential / data_scale)")
    n_eval_volumes: int = Field(4, ge=1, description="test crystals for the denoising PSNR")

    @property
    def guided_checkpoint(self) -> str:
        """The folder DART and DRIFT sample: ``recon_checkpoint``, else ``checkpoint``."""
        return self.recon_checkpoint or self.checkpoint


#: A setting value in a validation grid (a YAML scalar; its type is checked by the section it overrides).
Scalar = bool | int | float | str | None

#: Where each method's settings live: ``VALIDATION_TARGETS[modality][method]`` is the attribute path
#: of the profile section that a validation override of ``method`` updates (``None``: no settings).
VALIDATION_TARGETS: dict[str, dict[str, tuple[str, ...] | None]] = {
    "mri": {
        "dart": ("mri_diffusion", "dart"),
        "drift": ("mri_diffusion", "drift"),
        "projection": ("mri_diffusion", "projection"),
        "zero_filled": None,
        "cs_mri": ("mri_baselines",),
        "tv": ("mri_baselines",),
    },
    "real_mri": {
        "dart": ("real_mri", "diffusion", "dart"),
        "drift": ("real_mri", "diffusion", "drift"),
        "projection": ("real_mri", "diffusion", "projection"),
        "zero_filled": None,
        "cs_mri": ("real_mri", "baselines"),
        "tv": ("real_mri", "baselines"),
    },
    "stem": {
        "dart": ("stem_diffusion", "dart"),
        "drift": ("stem_diffusion", "drift"),
        "three_pie": ("stem_baselines", "three_pie"),
        "three_pie_thickness": ("stem_baselines", "thickness"),
        "torchslice": ("stem_baselines", "torchslice"),
        "sparse": ("stem_baselines", "sparse"),
    },
}
#: the 4D-STEM methods again, on the validation crystals made as ``stem_eval.data`` makes the test
#: tables' (abTEM, phonons, dose, random depth, tilt): ``validation.stem_eval``
VALIDATION_TARGETS["stem_eval"] = dict(VALIDATION_TARGETS["stem"])


class ValidationGrid(_Section):
    """The tuning grid of one modality, run on its **validation** split by ``paperlib.validation``.

    ``methods`` maps a method name to a list of grids; a grid maps a setting of the method's
    profile section (:data:`VALIDATION_TARGETS`) to the values to try, and stands for the
    Cartesian product of its lists. A single grid may be written without the list; ``[]`` runs
    the method once with the profile's own settings (a reference row).

    >>> g = ValidationGrid(n_volumes=2, methods={"dart": {"start": [0.5, 1.0], "steps": [20]},
    ...                                          "zero_filled": []})
    >>> g.points("dart")
    [{'start': 0.5, 'steps': 20}, {'start': 1.0, 'steps': 20}]
    >>> g.points("zero_filled")
    [{}]
    """

    n_volumes: int = Field(ge=1, description="first n volumes (MRI) or crystals (4D-STEM) of the validation split")
    seeds: tuple[int, ...] = Field((0,), min_length=1, description="seeds of the stochastic methods")
    methods: dict[str, tuple[dict[str, tuple[Scalar, ...]], ...]] = Field(
        min_length=1, description="method -> grids of setting -> values")
    checkpoints: tuple[str, ...] = Field(
        (), description="priors to compare (folders relative to the repo): every grid point of a method that "
        "samples the prior runs once per folder, its overrides saying checkpoint=FOLDER; empty: the profile's prior")

    @field_validator("methods", mode="before")
    @classmethod
    def _one_grid_needs_no_list(cls, v):
        if isinstance(v, dict):
            return {m: [g] if isinstance(g, dict) else g for m, g in v.items()}
        return v

    @field_validator("methods")
    @classmethod
    def _non_empty_value_lists(cls, v):
        for method, grids in v.items():
            for grid in grids:
                empty = [k for k, values in grid.items() if not values]
                if empty:
                    raise ValueError(f"method {method!r}: settings {empty} have no values to try")
        return v

    def points(self, method: str) -> list[dict[str, Scalar]]:
        """Every override of ``method`` in grid order (first setting slowest), duplicates dropped."""
        out: list[dict[str, Scalar]] = []
        for grid in self.methods[method] or ({},):
            for values in itertools.product(*grid.values()):
                point = dict(zip(grid, values))
                if point not in out:
                    out.append(point)
        return out

    def settings(self, *methods: str) -> list[str]:
        """The setting names the points of ``methods`` (default: every method) override, in grid order.

        >>> ValidationGrid(n_volumes=1, methods={"dart": {"start": [0.5], "steps": [20]}, "tv": []}).settings()
        ['start', 'steps']
        """
        return list(dict.fromkeys(k for m in methods or self.methods for p in self.points(m) for k in p))


class ValidationConfig(_Section):
    """Optional ``validation:`` section: the tuning grid per modality (either may be absent)."""

    mri: ValidationGrid | None = None
    stem: ValidationGrid | None = None
    #: the tuning scans of the real-scan evaluation (never the held-out ones), real_mri's settings
    real_mri: ValidationGrid | None = None
    #: the 4D-STEM validation crystals as ``stem_eval.data`` makes the test tables' crystals (abTEM,
    #: phonons, dose, random depth, tilt); the settings are the ``stem`` ones
    stem_eval: ValidationGrid | None = None


class RealMRIConfig(_Section):
    """Optional ``real_mri:`` section: the general (domain-randomised) MRI prior and the real-scan
    evaluation (notebooks/tab_real_mri.py, ``python -m paperlib reconstruct --modality mri``)."""

    n_slabs: int = Field(ge=1, description="domain-randomised training slabs (paperlib.data.randomized)")
    slab: tuple[int, int, int] = Field((8, 64, 64), description="(D, H, W) of a training slab")
    slab_seed: int = Field(0, description="slab i is randomized_slab(slab_seed + i)")
    checkpoint: str = Field(description="folder of the general prior, relative to the repo")
    overlap: int = Field(4, ge=0, description="slices shared by neighbouring windows of the tiled prior")
    accelerations: tuple[float, ...] = Field((4.0, 8.0), description="undersampling factors evaluated")
    center_fraction: float = Field(0.08, gt=0.0, lt=1.0)
    mask_kind: Literal["uniform1d", "gaussian2d"] = "uniform1d"
    mask_seed: int = Field(0, description="scan i at acceleration a gets masks seeded mask_seed + 100 i")
    seeds: tuple[int, ...] = Field((0,), description="seeds of the stochastic methods")
    methods: tuple[str, ...] = ("dart", "drift", "projection", "zero_filled", "cs_mri", "tv")
    baselines: MRIBaselinesConfig
    diffusion: DiffusionReconConfig


class ResolutionRobustConfig(_Section):
    """Optional ``resolution_robust:`` section: the second system (paper ``002``, issue 18), its
    two 2D priors and notebooks/resolution_robust.py.

    The priors' training sets (``make train``, presets ``slice2d_fixed`` / ``slice2d_diverse``)
    are :func:`paperlib.data.slices2d.prior_slice_set` of ``prior_subjects`` synthetic subjects
    per voxel size. The evaluation subjects are drawn at ``shift * FIXED_VOXEL_MM`` for every
    shift (the same anatomy at every voxel size), their magnitude images get simulated coils.
    """

    prior_subjects: int = Field(24, ge=1, description="training subjects per voxel size of each 2D prior")
    fixed_prior: str = Field("checkpoints/slice2d_fixed", description="folder of the fixed-voxel prior")
    diverse_prior: str = Field("checkpoints/slice2d_diverse", description="folder of the diverse-voxel prior")
    n_volumes: int = Field(ge=1, description="evaluation subjects per voxel size")
    eval_seed: int = Field(40_000, description="evaluation subject i is synthetic_subject(eval_seed + i)")
    shifts: tuple[float, ...] = Field((1.0, 2.0, 4.0), description="reconstruction voxel / training voxel")
    accelerations: tuple[float, ...] = Field((4.0, 8.0), description="undersampling factors")
    num_coils: int = Field(8, ge=1)
    center_fraction: float = Field(0.08, gt=0.0, lt=1.0)
    noise_std: float = Field(0.0, ge=0.0, description="complex k-space noise (simulate_multicoil)")
    mask_seed: int = Field(0, description="volume i at acceleration a gets masks seeded mask_seed + 100 i + a")
    seeds: tuple[int, ...] = Field((0,), description="seeds of the stochastic methods")
    iters: int = Field(ge=1, description="variational iterations")
    weight: float = Field(gt=0.0, description="λ of the variational method")
    slices_per_iter: int = Field(4, ge=1)
    t_max: float = Field(0.2, gt=0.0, le=1.0)
    step_size: float = Field(0.005, gt=0.0, description="Adam learning rate in units of the intensity scale")
    real: bool = Field(True, description="reconstruct a real volume (the simulated data have zero phase); "
                                         "False: complex, the prior on the magnitude")
    cs_weight: float = Field(gt=0.0)
    cs_iters: int = Field(ge=1)
    cs_levels: int = Field(2, ge=1)
    dps_steps: int = Field(ge=1)
    dps_guidance: float = Field(1.0, ge=0.0)
    dds_steps: int = Field(ge=1)
    dds_weight: float = Field(0.01, gt=0.0)
    methods_shift: float = Field(1.0, description="the shift at which the method is compared with the baselines")
    real_scans: tuple[str, ...] = Field((), description="paperlib.data.real_mri scans run at their own voxel sizes")
    real_max_side: int = Field(64, ge=8, description="real scans are centre-cropped to this many voxels per side")
    tuned_on: str = ""


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
    mri_diffusion: DiffusionReconConfig
    tab2: Table2Config
    stem: STEMDataParams = Field(description="4D-STEM crystal data (paperlib.data.crystals.STEMDataParams)")
    stem_baselines: STEMBaselinesConfig
    stem_eval: STEMEvalConfig
    stem_prior: STEMPriorConfig
    stem_diffusion: DiffusionReconConfig
    validation: ValidationConfig | None = None
    real_mri: RealMRIConfig | None = None
    resolution_robust: ResolutionRobustConfig | None = None
    tab3: Table3Config = Table3Config()
    fig5: Fig5Config = Fig5Config()

    @model_validator(mode="after")
    def _stem_only_settings(self) -> "Profile":
        """``likelihood`` is a setting of the 4D-STEM physics step; the MRI sections refuse it by name."""
        sections = [("mri_diffusion", self.mri_diffusion)]
        if self.real_mri is not None:
            sections.append(("real_mri.diffusion", self.real_mri.diffusion))
        for where, section in sections:
            for method in ("dart", "drift", "projection"):
                steps = getattr(section, method)
                if steps is not None and steps.likelihood is not None:
                    raise ValueError(f"{where}.{method}.likelihood: a 4D-STEM setting (the multislice data term); "
                                     f"the MRI physics step has none, remove it")
        return self

    @model_validator(mode="after")
    def _validation_grid_fits(self) -> "Profile":
        """Every grid method exists, every setting is a field of its section, every value
        validates there, and the validation split holds ``n_volumes``."""
        if self.validation is None:
            return self
        # real_mri: the tuning scans x accelerations (their count lives in paperlib.data.real_mri)
        available = {"mri": self.mri.n_val, "stem": self.stem_eval.n_val, "real_mri": None,
                     "stem_eval": self.stem_eval.n_val}
        for modality in available:
            grid = getattr(self.validation, modality)
            if grid is None:
                continue
            where = f"validation.{modality}"
            if available[modality] is not None and grid.n_volumes > available[modality]:
                split = "mri.n_val" if modality == "mri" else "stem_eval.n_val"
                raise ValueError(f"{where}.n_volumes: expected <= {split} = {available[modality]}, "
                                 f"got {grid.n_volumes}")
            for method in grid.methods:
                if method not in VALIDATION_TARGETS[modality]:
                    raise ValueError(f"{where}.methods: unknown method {method!r}; "
                                     f"known: {sorted(VALIDATION_TARGETS[modality])}")
                for point in grid.points(method):
                    try:
                        self.with_overrides(modality, method, point)
                    except ValueError as exc:
                        raise ValueError(f"{where}.methods.{exc}") from None  # exc starts with the method
        return self

    def with_overrides(self, modality: str, method: str, overrides: dict) -> "Profile":
        """This profile with ``overrides`` applied to ``method``'s section: the section is validated
        with the overrides (a mistyped setting or a bad value is an error naming it) and put in
        place with ``model_copy(update=...)`` up the chain of sections; ``self`` is unchanged.

        >>> p = load_profile("ci")
        >>> p.with_overrides("mri", "dart", {"start": 0.7}).mri_diffusion.dart.start
        0.7
        >>> p.with_overrides("stem", "three_pie", {"alpa": 0.25})
        Traceback (most recent call last):
        ...
        ValueError: three_pie: unknown settings ['alpa'] for section stem_baselines.three_pie; ...
        """
        if method not in VALIDATION_TARGETS.get(modality, {}):
            raise ValueError(f"method: expected one of {sorted(VALIDATION_TARGETS.get(modality, {}))} for "
                             f"modality {modality!r}, got {method!r}")
        target = VALIDATION_TARGETS[modality][method]
        if not overrides:
            return self
        if target is None:
            raise ValueError(f"{method}: has no settings to override, got {sorted(overrides)}")
        chain: list[BaseModel] = [self]
        for attr in target:
            section = getattr(chain[-1], attr)
            if section is None:
                raise ValueError(f"{method}: section {'.'.join(target)} is not configured in profile {self.name!r}")
            chain.append(section)
        section = chain[-1]
        unknown = sorted(set(overrides) - set(type(section).model_fields))
        if unknown:
            raise ValueError(f"{method}: unknown settings {unknown} for section {'.'.join(target)}; "
                             f"known: {sorted(type(section).model_fields)}")
        try:
            updated = type(section).model_validate({**section.model_dump(), **overrides})
        except ValidationError as exc:
            bad = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']} (got {e.get('input')!r})"
                            for e in exc.errors())
            raise ValueError(f"{method}: {bad}") from None
        for parent, attr in zip(reversed(chain[:-1]), reversed(target)):
            updated = parent.model_copy(update={attr: updated})
        return updated

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
        if not err["loc"] and err["type"] == "value_error":
            lines.append(str(err["ctx"]["error"]))  # a whole-profile check: its message names the keys
        elif err["type"] == "extra_forbidden":
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
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not valid YAML (not UTF-8 text: {exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    try:
        return Profile.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, path)) from None
