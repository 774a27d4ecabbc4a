"""Train the slice groups' video-diffusion priors: L1 loss, Adam, gradient accumulation, EMA, exact resume.

Entry points: :func:`train` (one group), :func:`train_prior` (several groups, or this rank's under
``torch.distributed``) and :func:`main`, the ``python -m paperlib train`` command line.

The paper trains each slice group's model independently "with L1 loss, learning rate 1e-4,
batch-level gradient accumulation over 2 steps, and other hyperparameters following
(ho2022video)". Choices made here (documented in :class:`TrainConfig`):

* the network target is chosen by ``prediction`` and the loss is ``mean |f(x_t, t) - target|``
  (L1): ``"x0"`` the clean slices, ``"epsilon"`` the noise (Ho et al. 2020), ``"v"``
  ``sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho 2022; Ho et al. 2022's video models).
  The presets use ``"v"``: at low noise ``x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v_hat`` is close
  to the input even for a briefly trained network, which a direct ``x0`` target is not (measured
  in ``benchmarks/diffusion_prior_quality.py``);
* ``t`` is uniform over the training timesteps, ``x_t`` from :func:`~paperlib.diffusion.schedules.q_sample`;
* one *step* is one optimiser update over ``grad_accum`` micro-batches of ``batch_size`` volumes;
* EMA of the weights with warm-up ``decay_k = min(ema_decay, (1 + k) / (10 + k))`` (k = step);
* gradient-norm clipping at ``grad_clip`` (Ho et al. use 1).

Output folder, per group ``g``::

    train_state_group{g}.pt      resumable state (torch.save, loaded with weights_only=True)
    loss_group{g}.jsonl          one JSON line per step: step, loss, ema_decay, time_s
    prior_group{g}.safetensors   EMA weights + manifest (.json), written when training completes

A checkpoint every ``ckpt_every`` steps holds the weights, EMA, optimiser, step and every random
state (the data-sampling generator and torch's global CPU RNG, which dropout uses), so that a run
killed and resumed equals an uninterrupted run bit for bit. Library code never seeds globally:
training runs inside ``torch.random.fork_rng`` and leaves the caller's RNG untouched.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import logging
import os
import pickle
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..io import atomic_path, atomic_write_bytes
from .checkpoints import CheckpointError, save_prior, weights_name
from .partition import derive_seed, group_slices
from .schedules import ScheduleConfig, q_sample
from .unet3d import PRESETS, UNet3D, UNet3DConfig, reject_unknown_keys

logger = logging.getLogger(__name__)

STATE_FORMAT = "paperlib.train_state/1"
#: Largest |value| accepted in training data: the unit-variance noise of the schedule needs data of order 1.
MAX_ABS_DATA = 10.0
#: Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = ("steps", "ckpt_every")


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
#: ``ci``: 8x32x32 volumes, both groups in under a minute on one core (pipeline checks only).
#: ``default``: 16x64x64 volumes, 2 groups x 600 steps of ~2 s of one core each (~40 min on one
#: idle core, less with 2 threads); the learning rate is raised from the paper's 1e-4 to 5e-4 for
#: the short run. After 150 steps group 0 already beats a tuned Gaussian filter at denoising
#: (noise 0.02-0.2). Measurements: ``benchmarks/diffusion_train_speed.py``, ``benchmarks/diffusion_prior_quality.py``.
TRAIN_PRESETS: dict[str, TrainConfig] = {
    "ci": TrainConfig(model=PRESETS["ci"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                      num_groups=2, lr=1e-3, steps=60, ckpt_every=20, ema_decay=0.95),
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
    # training data hold atoms there in 17-82 % (scripts/prior_occupancy_check.py). L2 targets
    # the mean. 800 steps of ~2 s on one core per group (~27 min with both groups in parallel).
    "stem_default_l2": TrainConfig(model=PRESETS["default"], schedule=ScheduleConfig("cosine", 1000),
                                   prediction="v", loss="l2", num_groups=2, lr=2e-4, batch_size=8, grad_accum=1,
                                   steps=800, ckpt_every=100, ema_decay=0.99, hflip=True,
                                   init_from="checkpoints/stem_default"),
    "paper": TrainConfig(model=PRESETS["paper"], schedule=ScheduleConfig("cosine", 1000), prediction="v",
                         num_groups=2, steps=100_000, ckpt_every=1000, ema_decay=0.9999, weights_dtype="float32"),
}


@dataclass
class TrainResult:
    """What :func:`train` leaves behind (the objects are live, for tests and notebooks).

    :func:`train_prior` drops ``model`` and ``optimizer`` (``None``) so that only one group's
    training objects are in memory at a time; ``ema`` (the exported weights, float32) is kept.
    """

    model: UNet3D | None
    ema: UNet3D
    optimizer: torch.optim.Optimizer | None
    step: int
    last_loss: float | None
    state_path: Path
    log_path: Path
    prior_path: Path | None


def data_fingerprint(data: Tensor) -> str:
    """SHA-256 (16 hex digits) of the training tensor's shape and bytes; resume refuses other data."""
    h = hashlib.sha256(str(tuple(data.shape)).encode())
    h.update(data.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _validate(cfg: TrainConfig, data: Tensor, group: int) -> None:
    if not isinstance(data, Tensor) or data.ndim != 4:
        raise ValueError(f"data: expected a (N, D, H, W) tensor, got {getattr(data, 'shape', type(data))}")
    if not data.is_floating_point() or not torch.isfinite(data).all():
        raise ValueError("data: expected finite floating-point volumes")
    n, d, h, w = data.shape
    group_slices(d, cfg.num_groups)  # raises for D not a multiple of G
    f = cfg.model.spatial_factor
    if h % f or w % f:
        raise ValueError(f"data: H and W must be divisible by {f} for {len(cfg.model.channel_mults)} levels, got {h}x{w}")
    if not 0 <= group < cfg.num_groups:
        raise ValueError(f"group: expected 0 <= group < num_groups={cfg.num_groups}, got {group}")
    if cfg.model.in_channels != 1:
        raise ValueError("train: only single-channel volumes (in_channels=1) are supported")
    peak = float(data.abs().max())
    if peak > MAX_ABS_DATA:
        raise ValueError(f"data: values up to {peak:.3g}, but the noise schedule assumes data of order 1 "
                         f"(|x| <= {MAX_ABS_DATA:g}; MRI images in [0, 1]); divide by a fixed scale (e.g. the "
                         "training maximum) and record it in `dataset`")


def _sample_batch(cfg: TrainConfig, data: Tensor, group: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """One micro-batch: clean group windows (B, s, H, W), timesteps (B,), noise (B, s, H, W)."""
    n, d, h, w = data.shape
    size = d // cfg.num_groups
    idx = torch.randint(n, (cfg.batch_size,), generator=gen)
    start = torch.full((cfg.batch_size,), group * size)
    if cfg.slice_jitter:
        start = (start + torch.randint(-cfg.slice_jitter, cfg.slice_jitter + 1, (cfg.batch_size,), generator=gen)).clamp(0, d - size)
    x0 = torch.stack([data[i, s:s + size] for i, s in zip(idx.tolist(), start.tolist())]).float()
    if cfg.hflip:
        flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    t = torch.randint(cfg.schedule.num_timesteps, (cfg.batch_size,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    return x0, t, noise


def _target(prediction: str, x0: Tensor, noise: Tensor, abar_t: Tensor) -> Tensor:
    """The network's training target for ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise``."""
    if prediction == "x0":
        return x0
    if prediction == "epsilon":
        return noise
    a = abar_t.reshape(-1, *([1] * (x0.ndim - 1)))
    return a.sqrt() * noise - (1 - a).sqrt() * x0


def _paths(out_dir: Path, group: int) -> tuple[Path, Path, Path]:
    return (out_dir / f"train_state_group{group}.pt", out_dir / f"loss_group{group}.jsonl",
            out_dir / weights_name(group))


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _write_log(path: Path, records: list[dict]) -> None:
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def _append_log(path: Path, records: list[dict]) -> None:
    if not records:
        return
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def _comparable(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in RESUMABLE_CHANGES}


def train(
    cfg: TrainConfig,
    data: Tensor,
    out_dir: str | os.PathLike,
    *,
    group: int,
    resume: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
    dataset: dict | None = None,
    device: torch.device | str = "cpu",
) -> TrainResult:
    """Train (or continue training) the prior of slice group ``group``.

    Parameters
    ----------
    cfg : hyper-parameters.
    data : (N, D, H, W) float training volumes of order 1 (``|x| <= MAX_ABS_DATA``), e.g.
        ``paperlib.data.brain.load_split(profile.mri, "train").images`` (in [0, 1]) or 4D-STEM
        potentials divided by a fixed scale; group ``g`` trains on slices ``[g*s, (g+1)*s)``,
        ``s = D / num_groups``.
    out_dir : folder of the state, loss log and exported prior (shared by all groups).
    group : slice group index.
    resume : continue from ``train_state_group{g}.pt`` if present (its config, apart from
        ``steps``/``ckpt_every``, and the data fingerprint must match); ``False`` starts afresh.
    progress : tqdm progress bar.
    max_steps : do at most this many optimiser steps in this call, then write a checkpoint and
        return (to split a long run into sessions; a later call resumes exactly).
    dataset : JSON-serialisable description of the data, copied into the prior manifest.
    device : where to train (``"cpu"`` or ``"cuda:k"``); random draws stay on the CPU generator.

    Returns
    -------
    :class:`TrainResult`. When ``cfg.steps`` is reached the EMA weights are exported with
    :func:`~paperlib.diffusion.checkpoints.save_prior` (``prior_path``), else ``prior_path`` is None.

    Raises
    ------
    ValueError : bad data (shape, non-finite, depth not a multiple of ``num_groups``) or group.
    CheckpointError : the resumable state is unreadable or belongs to another config or data set.
    """
    _validate(cfg, data, group)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    state_path, log_path, prior_path = _paths(out_dir, group)
    device = torch.device(device)
    fingerprint = data_fingerprint(data)
    size = data.shape[1] // cfg.num_groups
    abar = cfg.schedule.alphas_cumprod().to(device=device, dtype=torch.float32)
    cuda_devices = [device] if device.type == "cuda" else []

    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(derive_seed(cfg.seed, "init", group))
        model = UNet3D(cfg.model).to(device)
        ema = copy.deepcopy(model).requires_grad_(False)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, "data", group))
        torch.manual_seed(derive_seed(cfg.seed, "dropout", group))
        step = 0
        init_weights, init = _initial_weights(cfg, group, size) if cfg.init_from else (None, None)
        if resume and state_path.exists():
            step = _load_state(state_path, cfg, group, fingerprint, model, ema, opt, gen, device)
            _write_log(log_path, [r for r in _read_log(log_path) if r["step"] <= step])
            logger.info("group %d: resumed at step %d from %s", group, step, state_path)
        else:
            _write_log(log_path, [])
            if init_weights is not None:  # fine-tuning: model and EMA start from the given prior
                model.load_state_dict(init_weights)
                ema.load_state_dict(init_weights)

        end = cfg.steps if max_steps is None else min(cfg.steps, step + max_steps)
        pending: list[dict] = []
        last_loss: float | None = None
        bar = tqdm(total=cfg.steps, initial=step, desc=f"train group {group}", disable=not progress)
        ema_params, model_params = list(ema.parameters()), list(model.parameters())
        while step < end:
            t0 = time.perf_counter()
            model.train()
            opt.zero_grad(set_to_none=True)
            total = 0.0
            for _ in range(cfg.grad_accum):
                x0, t, noise = _sample_batch(cfg, data, group, gen)
                x0, t, noise = x0.to(device), t.to(device), noise.to(device)
                x_t = q_sample(x0, t, noise, abar)
                out = model(x_t[:, None], t)[:, 0]
                target = _target(cfg.prediction, x0, noise, abar[t])
                err = out - target
                loss = err.abs().mean() if cfg.loss == "l1" else err.square().mean()
                (loss / cfg.grad_accum).backward()
                total += float(loss.detach())
            if cfg.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            decay = min(cfg.ema_decay, (1 + step) / (10 + step))
            with torch.no_grad():  # one fused update of all EMA tensors (not a kernel per parameter)
                torch._foreach_lerp_(ema_params, model_params, 1.0 - decay)
            step += 1
            last_loss = total / cfg.grad_accum
            pending.append({"step": step, "loss": last_loss, "ema_decay": decay,
                            "time_s": round(time.perf_counter() - t0, 4)})
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
            if step % cfg.ckpt_every == 0 or step == end:
                _append_log(log_path, pending)
                pending = []
                _save_state(state_path, cfg, group, fingerprint, step, model, ema, opt, gen, device)
        bar.close()

    exported = None
    if step >= cfg.steps:
        recent = [r["loss"] for r in _read_log(log_path)[-50:]]
        final = sum(recent) / len(recent) if recent else None
        save_prior(prior_path, ema, group_size=size, schedule=cfg.schedule, prediction=cfg.prediction,
                   group=group, num_groups=cfg.num_groups, dataset={**(dataset or {}), "fingerprint": fingerprint,
                                                                   "shape": list(data.shape)},
                   steps=step, final_loss=final, dtype=getattr(torch, cfg.weights_dtype),
                   extra={"train_config": cfg.to_dict(), **({"init": init} if init is not None else {})})
        exported = prior_path
    return TrainResult(model, ema, opt, step, last_loss, state_path, log_path, exported)


def _initial_weights(cfg: TrainConfig, group: int, size: int) -> tuple[dict, dict]:
    """Group ``group``'s float32 weights from ``cfg.init_from`` and the record of where they came from."""
    from ..paths import repo_root
    from .checkpoints import load_prior

    path = Path(cfg.init_from)
    if not path.is_absolute():
        path = repo_root() / path
    if not path.is_dir():
        raise FileNotFoundError(f"init_from: {cfg.init_from!r} is not a prior folder (looked at {path})")
    models, manifests = load_prior(path, groups=[group], expected_config=cfg.model)
    m = manifests[0]
    want = {"schedule": cfg.schedule.to_dict(), "prediction": cfg.prediction, "num_groups": cfg.num_groups,
            "group_size": size}  # as save_prior writes them
    mismatch = [k for k in want if m[k] != want[k]]
    if mismatch:
        raise CheckpointError(f"init_from {cfg.init_from}: group {group} was trained with "
                              + ", ".join(f"{k}={m[k]!r} (this config: {want[k]!r})" for k in mismatch))
    record = {"path": str(cfg.init_from), "sha256": m["sha256"], "steps": m.get("steps"),
              "loss": (m.get("train_config") or {}).get("loss"), "final_loss": m.get("final_loss")}
    return {k: v.float() for k, v in models[0].state_dict().items()}, record


def train_prior(
    cfg: TrainConfig,
    data: Tensor,
    out_dir: str | os.PathLike,
    *,
    groups: Sequence[int] | None = None,
    resume: bool = True,
    progress: bool = True,
    max_steps: int | None = None,
    dataset: dict | None = None,
    device: torch.device | str | None = None,
) -> list[TrainResult]:
    """Train (or continue) the priors of several slice groups, one after the other, into ``out_dir``.

    This is what ``python -m paperlib train`` runs. Each group is an independent run of
    :func:`train` (its own state, loss log and exported weights in ``out_dir``), so a run killed
    at any point resumes exactly with the same call, and ranks of a distributed job can each
    call it for their own groups.

    Parameters
    ----------
    cfg, data, resume, progress, max_steps, dataset : as in :func:`train` (``max_steps`` applies
        to each group).
    out_dir : folder of the prior (``prior_group{g}.safetensors`` + ``.json`` per group, for
        :func:`~paperlib.diffusion.checkpoints.load_partitioned_prior`).
    groups : group indices; default this rank's groups (:func:`~paperlib.diffusion.distributed.groups_for_rank`)
        under ``torch.distributed``, else all ``cfg.num_groups`` groups.
    device : default this rank's device (``cuda:LOCAL_RANK`` under nccl, else CPU).

    Returns
    -------
    one :class:`TrainResult` per group, in the order of ``groups``.
    """
    from .distributed import current_context, groups_for_rank

    ctx = current_context()
    if groups is None:
        groups = groups_for_rank(cfg.num_groups, ctx.rank, ctx.world_size)
    groups = [int(g) for g in groups]
    if not groups or len(set(groups)) != len(groups):
        raise ValueError(f"groups: expected distinct group indices, got {groups}")
    results = []
    for g in groups:
        results.append(train(cfg, data, out_dir, group=g, resume=resume, progress=progress, max_steps=max_steps,
                             dataset=dataset, device=ctx.device if device is None else device))
        results[-1] = replace(results[-1], model=None, optimizer=None)  # one group's training state at a time
    return results


def _save_state(path: Path, cfg: TrainConfig, group: int, fingerprint: str, step: int, model: UNet3D,
                ema: UNet3D, opt: torch.optim.Optimizer, gen: torch.Generator, device: torch.device) -> None:
    state = {
        "format": STATE_FORMAT,
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "group": group,
        "data_fingerprint": fingerprint,
        "step": step,
        "model": model.state_dict(),
        "ema": ema.state_dict(),
        "optimizer": opt.state_dict(),
        "data_rng": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda_rng"] = torch.cuda.get_rng_state(device)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_state(path: Path, cfg: TrainConfig, group: int, fingerprint: str, model: UNet3D, ema: UNet3D,
                opt: torch.optim.Optimizer, gen: torch.Generator, device: torch.device) -> int:
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises several types for broken files
        raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__}: {exc}); "
                              "delete it or pass resume=False to start afresh") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise CheckpointError(f"{path}: not a paperlib training state ({STATE_FORMAT})")
    saved = TrainConfig.from_dict(json.loads(state["config"])).to_dict()  # fields added later: defaults
    if _comparable(saved) != _comparable(cfg.to_dict()):
        diff = sorted(k for k in _comparable(cfg.to_dict()) if saved.get(k) != cfg.to_dict()[k])
        raise CheckpointError(f"{path}: config mismatch: the saved run differs in {diff}; "
                              "use another out_dir or resume=False")
    if state["group"] != group:
        raise CheckpointError(f"{path}: state is for group {state['group']}, asked for group {group}")
    if state["data_fingerprint"] != fingerprint:
        raise CheckpointError(f"{path}: the training data differ from the saved run's "
                              f"(fingerprint {fingerprint} != {state['data_fingerprint']})")
    model.load_state_dict(state["model"])
    ema.load_state_dict(state["ema"])
    opt.load_state_dict(state["optimizer"])
    gen.set_state(state["data_rng"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if "cuda_rng" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), device)
    return int(state["step"])


# ---------------------------------------------------------------------------- command line
#: Format tag of the bundles written by ``train --export-data``.
BUNDLE_FORMAT = "paperlib.train_data/1"


def export_data(path: str | os.PathLike, data: Tensor, dataset: dict) -> Path:
    """Write a training bundle (``.pt``): the (N, D, H, W) tensor as trained on and its provenance.

    A bundle carries the profile's training data to a machine that cannot generate it (a GPU
    box without abTEM, say): ``train --data BUNDLE`` then trains on exactly the same tensor
    (same fingerprint) and records the same ``dataset`` block in the manifest as training
    from the profile would. Written atomically (:func:`paperlib.io.atomic_path`).
    """
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"--export-data {path}: expected a .pt file")
    with atomic_path(path) as tmp:  # creates the folder
        torch.save({"format": BUNDLE_FORMAT, "data": data.detach().to("cpu", torch.float32).contiguous(),
                    "dataset": json.dumps(dataset, sort_keys=True)}, tmp)
    return path


def load_data_file(path: str | os.PathLike, with_info: bool = False) -> Tensor | tuple[Tensor, dict | None]:
    """A (N, D, H, W) training tensor from ``.npy`` (no pickles) or ``.pt`` (``weights_only``).

    A ``.pt`` file holds either a tensor or a bundle written by :func:`export_data`; with
    ``with_info`` the bundle's dataset block (``None`` for plain arrays) is returned too.

    Raises
    ------
    FileNotFoundError : no such file.  ValueError : another suffix, unreadable, or not 4-D.
    """
    import numpy as np

    path = Path(path)
    if path.suffix not in (".npy", ".pt"):
        raise ValueError(f"--data {path}: expected a .npy or .pt file")
    if not path.is_file():
        raise FileNotFoundError(f"--data {path}: no such file")
    try:
        if path.suffix == ".npy":
            data = torch.from_numpy(np.load(path, allow_pickle=False))
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
        raise ValueError(f"--data {path}: unreadable ({type(exc).__name__}: {exc})") from None
    info = None
    if isinstance(data, dict):
        if data.get("format") != BUNDLE_FORMAT or not isinstance(data.get("dataset"), str):
            raise ValueError(f"--data {path}: a dict that is not a {BUNDLE_FORMAT} bundle "
                             f"(keys {sorted(map(str, data))}); expected a tensor or a train --export-data file")
        try:
            info = json.loads(data["dataset"])
        except json.JSONDecodeError as exc:
            raise ValueError(f"--data {path}: the bundle's dataset block is not JSON ({exc})") from None
        data = data.get("data")
    if not isinstance(data, Tensor) or data.ndim != 4:
        raise ValueError(f"--data {path}: expected one (N, D, H, W) array, got "
                         f"{tuple(data.shape) if isinstance(data, Tensor) else type(data).__name__}")
    return (data.float(), info) if with_info else data.float()


def _load_training_data(modality: str, profile: str) -> tuple[Tensor, dict]:
    from ..config import load_profile

    prof = load_profile(profile)
    if modality == "mri":
        from ..data.brain import load_split

        images = load_split(prof.mri, "train", progress=True).images
        return torch.as_tensor(images, dtype=torch.float32), {"modality": "mri", "profile": prof.name,
                                                              "profile_digest": prof.digest(),
                                                              "mri": prof.mri.model_dump(mode="json")}
    if modality == "stem":
        from ..data.crystals import stem_dataset

        # potentials (V*Angstrom) / the profile's fixed scale: data of order 1, as the schedule assumes
        scale = prof.stem_prior.data_scale
        samples = stem_dataset(prof.stem, "train", prof.stem_eval.n_train, progress=True)
        data = torch.stack([s.potential for s in samples]).float() / scale
        return data, {"modality": "stem", "profile": prof.name, "profile_digest": prof.digest(),
                      "split": "train", "n": len(samples), "scale": scale, "scale_unit": "V*Angstrom",
                      "stem_digest": prof.stem.digest(), "stem": prof.stem.model_dump(mode="json")}
    raise NotImplementedError(f"modality {modality!r}: pass the training volumes with --data FILE.npy "
                              "(N, D, H, W) and --data-scale")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib train --modality {mri,stem} --profile NAME [options]``: train a partitioned prior.

    MRI volumes come from the profile's ``mri`` section (train split), 4D-STEM potentials from its
    ``stem`` section (``stem_eval.n_train`` cubic crystals, divided by ``stem_prior.data_scale``);
    ``--data FILE`` ((N, D, H, W) ``.npy`` or ``.pt``, divided by ``--data-scale``) replaces either.
    The preset is :data:`TRAIN_PRESETS` ``[--preset or the profile name]``. The output folder
    holds, per group, the resumable state, the loss log (JSON lines) and, when the run is
    complete, the prior (safetensors + manifest); rerunning the same command after a kill
    resumes exactly. Under ``torchrun`` each rank trains its own groups.

    Returns
    -------
    exit status: 0 done, 2 bad input (message on stderr).
    """
    from .distributed import gather_stats, groups_for_rank, init_from_env, shutdown, track

    p = argparse.ArgumentParser(prog="paperlib train", description="train a partitioned diffusion prior")
    p.add_argument("--modality", choices=("mri", "stem"), required=True)
    p.add_argument("--profile", default="default", help="profile name or YAML path (data section)")
    p.add_argument("--preset", choices=sorted(TRAIN_PRESETS), help="training preset (default: the profile's name)")
    p.add_argument("--data", type=Path, help="(N, D, H, W) training volumes, .npy or .pt (default: the profile's)")
    p.add_argument("--data-scale", type=float, default=1.0,
                   help="divide --data by this (recorded in the manifest; not for bundles, which are scaled)")
    p.add_argument("--export-data", type=Path, metavar="FILE.pt",
                   help="write the profile's training data and its provenance to FILE.pt and stop "
                        "(train elsewhere with --data FILE.pt)")
    p.add_argument("--groups", nargs="*", type=int, help="group indices (default: all, or this rank's)")
    p.add_argument("--out", type=Path, help="output folder (default: checkpoints/<modality>_<preset>)")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--max-steps", type=int, help="stop each group after this many steps in this call (resumable)")
    p.add_argument("--threads", type=int, help="torch intra-op threads")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if a state exists")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    preset = args.preset or Path(args.profile).stem
    out_name = preset if preset.startswith(f"{args.modality}_") else f"{args.modality}_{preset}"
    if args.preset is None and out_name in TRAIN_PRESETS:
        preset = out_name  # a modality-specific preset of this profile
    if preset not in TRAIN_PRESETS:
        print(f"error: no training preset {preset!r}; pass --preset {sorted(TRAIN_PRESETS)}", file=sys.stderr)
        return 2
    if not (args.data_scale > 0):
        print(f"error: --data-scale: expected > 0, got {args.data_scale}", file=sys.stderr)
        return 2
    cfg = TRAIN_PRESETS[preset]
    try:
        if args.steps is not None:
            cfg = replace(cfg, steps=args.steps)
        if args.threads:
            torch.set_num_threads(args.threads)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from ..paths import repo_root

    out = args.out or repo_root() / "checkpoints" / out_name
    ctx = init_from_env()
    try:
        if args.data is not None:
            data, info = load_data_file(args.data, with_info=True)
            if info is None:
                data = data / args.data_scale
                info = {"modality": args.modality, "file": args.data.name, "scale": args.data_scale}
            elif args.data_scale != 1.0:
                raise ValueError(f"--data-scale {args.data_scale:g}: {args.data} is a bundle, already "
                                 f"scaled (scale {info.get('scale', 1.0)}); leave --data-scale out")
            elif info.get("modality", args.modality) != args.modality:
                raise ValueError(f"--data {args.data}: a {info['modality']} bundle, but --modality {args.modality}")
        else:
            data, info = _load_training_data(args.modality, args.profile)
        if args.export_data is not None:
            export_data(args.export_data, data, info)
            print(f"wrote {args.export_data}: {tuple(data.shape)} ({info.get('modality')}, "
                  f"profile {info.get('profile', '-')})")
            return 0
        groups = args.groups or groups_for_rank(cfg.num_groups, ctx.rank, ctx.world_size)
        with track(ctx, groups) as stats:
            results = train_prior(cfg, data, out, groups=groups, resume=not args.no_resume,
                                  progress=not args.no_progress and ctx.is_main, max_steps=args.max_steps,
                                  dataset=info, device=ctx.device)
        for g, res in zip(groups, results):
            print(f"[rank {ctx.rank}] group {g}: step {res.step}/{cfg.steps}, last loss {res.last_loss}, "
                  f"{'prior ' + str(res.prior_path) if res.prior_path else 'state ' + str(res.state_path)}")
        for s in gather_stats(stats) or []:
            print(f"rank {s.rank}: groups {s.groups}, {s.wall_time_s:.1f} s, peak RSS {s.peak_rss_bytes / 2**20:.0f} MiB"
                  + (f", peak CUDA {s.peak_cuda_alloc_bytes / 2**20:.0f} MiB" if s.peak_cuda_alloc_bytes else ""))
    except (ValueError, FileNotFoundError, NotImplementedError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
