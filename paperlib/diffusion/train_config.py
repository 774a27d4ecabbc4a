"""Training hyper-parameters of a slice group's prior (:class:`TrainConfig`) and the named presets.

This module only describes *how* to train; the loop is :mod:`paperlib.diffusion.train`, the data
bundles :mod:`paperlib.diffusion.bundles` and the command line ``python -m paperlib train``
(:func:`paperlib.cli.train_main`). Presets name no files: where a prior is written and which
prior a fine-tuning preset starts from are decided by the caller (the command line derives both
from the repository's ``checkpoints/`` folder, see :func:`paperlib.cli.prior_dir`, or takes
``--out`` / ``--init-from``).

>>> cfg = TRAIN_PRESETS["ci"]
>>> cfg.prediction, cfg.num_groups, cfg.steps
('v', 2, 600)
>>> TrainConfig.from_dict(cfg.to_dict()) == cfg
True
>>> FINE_TUNE_BASES["stem_default_l2"]
'stem_default'
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Literal

from .schedules import ScheduleConfig
from .unet3d import PRESETS, UNet3DConfig, reject_unknown_keys


@dataclass(frozen=True)
class TrainConfig:
    """Training hyper-parameters of one slice group's prior.

    Parameters
    ----------
    model : network architecture.
    schedule : noise schedule.
    prediction : network target, ``"x0"``, ``"epsilon"`` or ``"v"`` (module docstring).
    loss : ``"l1"`` (the paper) or ``"l2"``.
    num_groups : slice groups the volume depth is split into (one model each).
    lr : Adam learning rate (paper: 1e-4).
    batch_size : volumes per micro-batch.
    grad_accum : micro-batches per optimiser step (paper: 2).
    ema_decay : EMA decay (with warm-up, see module docstring).
    grad_clip : max gradient norm, or ``None``.
    steps : optimiser steps of the whole run.
    ckpt_every : steps between resumable checkpoints.
    seed : base seed; init, data and dropout streams are derived from it and the group index.
    hflip : random left-right flips (light augmentation).
    slice_jitter : the group's slice window is shifted by a random offset in ``[-j, j]``
        (clamped to the volume), a light augmentation across the group borders.
    weights_dtype : storage dtype of the exported prior, ``"float16"`` or ``"float32"``.
    focus_t, focus_fraction : the first ``round(focus_fraction * batch_size)`` volumes of each
        micro-batch draw their timestep uniformly from ``[0, focus_t)`` instead of the whole
        schedule (``focus_fraction = 0``, the default: every timestep uniform). A fine-tune for a
        sampler that only visits low noise levels (DART's plug-and-play form: σ 0.03 to 0.005,
        timesteps 0 to 12 of the cosine schedule, which uniform draws visit in 1.3 % of the
        samples) while the rest keeps the whole schedule (DRIFT and projection start from noise).
    init_from : fine-tuning: a prior folder (relative paths are relative to the repository root)
        whose group-``g`` weights start the run instead of a random initialisation (model and EMA;
        the optimiser starts afresh). Its architecture, schedule, prediction and group layout must
        equal this config's; the exported manifest records it (path, sha256, steps, loss) under
        ``init``.
    """

    model: UNet3DConfig = field(default_factory=lambda: PRESETS["default"])
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    prediction: Literal["x0", "epsilon", "v"] = "x0"
    loss: Literal["l1", "l2"] = "l1"
    num_groups: int = 2
    lr: float = 1e-4
    batch_size: int = 2
    grad_accum: int = 2
    ema_decay: float = 0.999
    grad_clip: float | None = 1.0
    steps: int = 10_000
    ckpt_every: int = 500
    seed: int = 0
    hflip: bool = False
    slice_jitter: int = 0
    weights_dtype: Literal["float16", "float32"] = "float16"
    init_from: str | None = None
    focus_t: int = 0
    focus_fraction: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "prediction": self.prediction in ("x0", "epsilon", "v"),
            "loss": self.loss in ("l1", "l2"),
            "num_groups": self.num_groups >= 1,
            "lr": self.lr > 0,
            "batch_size": self.batch_size >= 1,
            "grad_accum": self.grad_accum >= 1,
            "ema_decay": 0.0 <= self.ema_decay < 1.0,
            "grad_clip": self.grad_clip is None or self.grad_clip > 0,
            "steps": self.steps >= 1,
            "ckpt_every": self.ckpt_every >= 1,
            "slice_jitter": self.slice_jitter >= 0,
            "weights_dtype": self.weights_dtype in ("float16", "float32"),
            "focus_fraction": 0.0 <= self.focus_fraction <= 1.0,
            "focus_t": (isinstance(self.focus_t, int) and 0 <= self.focus_t <= self.schedule.num_timesteps
                        and (self.focus_t >= 1 or self.focus_fraction == 0)),
            "init_from": self.init_from is None or (isinstance(self.init_from, str) and bool(self.init_from)),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"TrainConfig: invalid {', '.join(f'{k}={getattr(self, k)!r}' for k in bad)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        reject_unknown_keys(cls, d)
        d = dict(d)
        if "model" in d:
            d["model"] = UNet3DConfig.from_dict(d["model"])
        if "schedule" in d:
            d["schedule"] = ScheduleConfig(**d["schedule"])
        return cls(**d)


#: Training presets matching the profiles (``python -m paperlib train --profile NAME`` uses ``NAME``).
#: ``ci``: 8x32x32 volumes, 600 steps (a few minutes per group on one core). At 60 steps the prior
#: was still near its initial loss and DART on the ci profile fell below zero-filled; the ci tests
#: now require DART to beat zero-filled (tests/test_notebooks.py), so the ci prior must be trained.
#: ``default``: 16x64x64 volumes, 2 groups x 600 steps of ~2 s of one core each (~40 min on one
#: idle core, less with 2 threads); the learning rate is raised from the paper's 1e-4 to 5e-4 for
#: the short run. After 150 steps group 0 already beats a tuned Gaussian filter at denoising
#: (noise 0.02-0.2). Measurements: ``benchmarks/diffusion_train_speed.py``, ``benchmarks/diffusion_prior_quality.py``.
_SLICE2D = TrainConfig(model=PRESETS["slice2d"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                       num_groups=1, lr=1e-3, batch_size=8, grad_accum=1, steps=3600, ckpt_every=200,
                       ema_decay=0.995, hflip=True)
#: presets mri_general_lownoise and mri_general_wide (one recipe, their data differ; comments below)
_MRI_LOWNOISE = TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                            num_groups=1, lr=2e-4, batch_size=8, grad_accum=1, steps=800, ckpt_every=100,
                            ema_decay=0.995, hflip=True, focus_t=32, focus_fraction=0.75)
#: presets mri_general_gpu_w24 and mri_general_gpu_w32 (one recipe from scratch, two widths; comments below)
_MRI_GPU_SCRATCH = TrainConfig(schedule=ScheduleConfig("cosine", 1000), prediction="v", num_groups=1, lr=3e-4,
                               batch_size=32, grad_accum=1, steps=3750, ckpt_every=250, ema_decay=0.999, hflip=True,
                               focus_t=32, focus_fraction=0.5)

TRAIN_PRESETS: dict[str, TrainConfig] = {
    "ci": TrainConfig(model=PRESETS["ci"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                      num_groups=2, lr=1e-3, steps=600, ckpt_every=20, ema_decay=0.95),
    "default": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                           num_groups=2, lr=5e-4, steps=1400, ckpt_every=50, ema_decay=0.995),
    # The shipped default priors (checkpoints/{mri,stem}_default): the same network, trained on a
    # GPU with 8 volumes per step, random left-right flips and (MRI) +-1 slice jitter, one
    # process per group on one card (scripts/train_priors_gpu.sh; ~0.06 s per step on an H200).
    # A step is twice the work of the CPU preset's (~2 s per step on one core), so retraining
    # them on a CPU is an overnight job; ``--preset default`` is the short CPU recipe.
    "mri_default": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                               num_groups=2, lr=5e-4, batch_size=8, grad_accum=1, steps=9000, ckpt_every=500,
                               ema_decay=0.999, hflip=True, slice_jitter=1),
    "stem_default": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                                num_groups=2, lr=5e-4, batch_size=8, grad_accum=1, steps=9000, ckpt_every=500,
                                ema_decay=0.999, hflip=True),
    # checkpoints/stem_default_l2, the STEM prior the profiles use: stem_default fine-tuned with
    # the L2 loss. With L1 (the paper's) the network learns the posterior *median*, and at pure
    # noise the median of a slice that is vacuum in a third of the crystals (the slices below the
    # thickness) is vacuum: the second group sampled empty slices in 94-100 % of the draws, the
    # training data hold atoms there in 16-79 % (slice mean > 5 V*A); after the L2 fine-tune the
    # samples are occupied in 12-38 % (benchmarks/results/prior_occupancy.txt). L2 targets
    # the mean. 800 steps of ~2 s on one core per group (~27 min with both groups in parallel).
    # It starts from the prior of preset stem_default (FINE_TUNE_BASES); the caller sets init_from.
    "stem_default_l2": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000),
                                   prediction="v", loss="l2", num_groups=2, lr=2e-4, batch_size=8, grad_accum=1,
                                   steps=800, ckpt_every=100, ema_decay=0.99, hflip=True),
    # checkpoints/stem_anydepth (issue 16): stem_default_l2 fine-tuned, with the same recipe, on the
    # same training crystals placed at a random depth of the box (vacuum above and below;
    # paperlib.data.training.PRESET_DATA), so that the prior no longer puts every crystal at the
    # entrance surface. The test crystals of the tables are at a random depth; with the prior trained
    # on entrance-placed crystals DART's mass centre was 2.44 slices too near the entrance on the deep
    # one, with this one 1.78 (benchmarks/results/stem_depth_placement.md and its git history).
    "stem_anydepth": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000),
                                 prediction="v", loss="l2", num_groups=2, lr=2e-4, batch_size=8, grad_accum=1,
                                 steps=800, ckpt_every=100, ema_decay=0.99, hflip=True),
    # checkpoints/mri_general, the base of mri_general_lownoise (below; the prior of real scans): one model
    # (slabs of 8 slices from random depths, so one network serves every window of a volume of any
    # depth, paperlib.diffusion.tiling), fine-tuned from group 0 of mri_default on the
    # domain-randomised slabs of the profile's real_mri section (paperlib.data.randomized).
    "mri_general": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                               num_groups=1, lr=2e-4, batch_size=8, grad_accum=1, steps=1100, ckpt_every=100,
                               ema_decay=0.995, hflip=True),
    # checkpoints/mri_general_lownoise: mri_general fine-tuned at the noise levels DART's
    # plug-and-play form visits on real scans (the real_mri section: σ 0.03 to 0.005, timesteps
    # 0-12): three quarters of every batch draw t < 32 (σ < 0.065), a quarter the whole schedule.
    # Trained on mri_general's data (the same randomised slabs). 800 steps of ~0.8 s on 2 threads (638 s);
    # run on to 1600 steps it scored level on the tuning scans (benchmarks/results/real_mri_prior_choice.md).
    "mri_general_lownoise": _MRI_LOWNOISE,
    # checkpoints/mri_general_wide: mri_general_lownoise trained on (the same recipe, 800 more steps)
    # slabs of the same seeds whose heads stray further from the one template every synthetic
    # subject is made from (paperlib.data.brain.ANATOMY_SPREADS["wide"]: tilts up to 15 degrees,
    # scale 0.85-1.10, 5 mm of deformation; PRESET_DATA "randomized_wide"). Not shipped and not in make
    # train: on the tuning scans it scored below mri_general_lownoise in every case
    # (benchmarks/results/real_mri_prior_anatomy.md, whose script docstring gives the commands).
    "mri_general_wide": _MRI_LOWNOISE,  # the same recipe; only the data differ (PRESET_DATA)
    # The capacity test on the CPU (benchmarks/real_mri_prior_depth.py): mri_general_lownoise deepened to
    # two residual blocks per level without changing its function, fine-tuned with mri_general_lownoise's
    # recipe on its slabs beside an unchanged copy (--init-from names each start). Not shipped.
    "mri_general_deep": replace(_MRI_LOWNOISE, model=replace(PRESETS["default"], num_res_blocks=2)),
    # GPU candidates for the real-scan prior (issue 15; scripts/train_real_mri_prior_gpu.sh, one H200,
    # all three side by side on the card, data exported here: scripts/export_real_mri_data.py, passed
    # with --data; data.training.PRESET_BUNDLES). On the CPU the 1.1 M-parameter network was saturated:
    # 1600 steps scored level with 800, and 4x the slabs lower (benchmarks/results/real_mri_prior_choice.md).
    # These test batch 32 and more steps (mri_general_gpu: the shipped network, from
    # mri_general_lownoise) and wider networks trained from scratch with half of every batch at t < 32
    # (w24: 2.5 M, w32: 4.4 M parameters). Trained 2026-12-04 in two calls (480 s, then 250 s
    # resumed; 0.14 / 0.18 / 0.20 s per step) to the steps below, each preset's `steps`, so that
    # `train --preset NAME --data BUNDLE` trains them again with the same recipe and steps (on a GPU
    # not bit for bit: its kernels are not deterministic). checkpoints/mri_general_gpu_w24 is the real-scan
    # prior since 2026-12-04 (chosen on the tuning scans: benchmarks/results/real_mri_prior_gpu.md).
    "mri_general_gpu": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                                   num_groups=1, lr=1e-4, batch_size=32, grad_accum=1, steps=4750, ckpt_every=250,
                                   ema_decay=0.999, hflip=True, focus_t=32, focus_fraction=0.75),
    "mri_general_gpu_w24": replace(_MRI_GPU_SCRATCH, model=replace(PRESETS["default"], base_width=24), steps=3750),
    "mri_general_gpu_w32": replace(_MRI_GPU_SCRATCH, model=replace(PRESETS["default"], base_width=32), steps=3250),
    # checkpoints/{mri,stem}_single: the paper's "vanilla video diffusion" baseline, ONE network over
    # the whole depth (16 slices) instead of a stack of group networks (Figure 5 top, Table 3). The
    # network is convolutional in depth with relative slice-position attention, so it starts from
    # group 0 of the shipped partitioned prior (8 slices) and is fine-tuned on whole volumes on the
    # CPU (the partitioned ones had 9000 GPU steps: the comparison states this).
    "mri_single": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                              num_groups=1, lr=1e-4, batch_size=4, grad_accum=1, steps=60, ckpt_every=10,
                              ema_decay=0.9, hflip=True),
    "stem_single": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                               loss="l2", num_groups=1, lr=1e-4, batch_size=4, grad_accum=1, steps=60,
                               ckpt_every=10, ema_decay=0.9, hflip=True),
    # checkpoints/slice2d_{fixed,diverse}: the 2D priors of the second system (issue 18,
    # paperlib.recon.variational2d): one network on single slices (D = 1) of all three orientations,
    # at one voxel size (fixed) or at 1x, 2x and 4x of it (diverse), paperlib.data.slices2d.prior_slice_set
    # of the default profile's resolution_robust section. 3600 steps of 8 slices, ~0.14 s per step
    # on one core (the time of every step is in the shipped loss logs).
    # The two presets are one recipe; only their data differ (paperlib.data.training.PRESET_DATA).
    # Shipped runs: 501 s (fixed) and 525 s (diverse) of CPU time (/usr/bin/time, one niced thread).
    "slice2d_fixed": _SLICE2D,
    "slice2d_diverse": _SLICE2D,
    # the ci profile's whole-depth priors (tiny, for the tests of Figure 5 and Table 3)
    "mri_single_ci": TrainConfig(model=PRESETS["ci"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                                 num_groups=1, lr=5e-4, steps=100, ckpt_every=20, ema_decay=0.9),
    "stem_single_ci": TrainConfig(model=PRESETS["ci"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                                  num_groups=1, lr=5e-4, steps=100, ckpt_every=20, ema_decay=0.9),
    # the paper profile's whole-depth priors (trained from scratch like the paper's group networks)
    "mri_single_paper": TrainConfig(model=PRESETS["paper"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                                    num_groups=1, steps=100_000, ckpt_every=1000, ema_decay=0.9999,
                                    weights_dtype="float32"),
    "stem_single_paper": TrainConfig(model=PRESETS["paper"], schedule=ScheduleConfig("cosine", 1000),
                                     prediction="v", loss="l2", num_groups=1, steps=100_000, ckpt_every=1000,
                                     ema_decay=0.9999, weights_dtype="float32"),
    "paper": TrainConfig(model=PRESETS["paper"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                         num_groups=2, steps=100_000, ckpt_every=1000, ema_decay=0.9999, weights_dtype="float32"),
}


#: Fine-tuning presets and the preset whose trained prior they start from. The command line sets
#: ``init_from`` to that prior's folder (the same modality), unless ``--init-from`` names another.
FINE_TUNE_BASES: dict[str, str] = {"stem_default_l2": "stem_default", "stem_anydepth": "stem_default_l2",
                                   "mri_general": "mri_default", "mri_general_lownoise": "mri_general",
                                   "mri_general_wide": "mri_general_lownoise", "mri_general_gpu": "mri_general_lownoise",
                                   # not a preset: the folder benchmarks/real_mri_prior_depth.py writes
                                   "mri_general_deep": "mri_general_deep_init",
                                   "mri_single": "mri_default", "stem_single": "stem_default_l2",
                                   "mri_single_ci": "ci", "stem_single_ci": "ci"}

__all__ = ["FINE_TUNE_BASES", "TRAIN_PRESETS", "TrainConfig"]
