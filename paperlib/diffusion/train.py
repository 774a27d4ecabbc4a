"""Train the slice groups' video-diffusion priors: L1 loss, Adam, gradient accumulation, EMA, exact resume.

Entry points: :func:`train` (one group) and :func:`train_prior` (several groups, or this rank's
under ``torch.distributed``). The pieces around the loop live next to it:

* :mod:`paperlib.diffusion.train_config`: :class:`TrainConfig` and the presets ``TRAIN_PRESETS``
  (re-exported here);
* :mod:`paperlib.diffusion.train_state`: the resumable state and the loss log;
* :mod:`paperlib.diffusion.bundles`: training bundles and the data fingerprint;
* :func:`paperlib.cli.train_main`: the ``python -m paperlib train`` command line, which also
  loads the profile's data (:func:`paperlib.data.training.load_training_data`): nothing in
  :mod:`paperlib.diffusion` imports :mod:`paperlib.data`.

The paper trains each slice group's model independently "with L1 loss, learning rate 1e-4,
batch-level gradient accumulation over 2 steps, and other hyperparameters following
(ho2022video)". Choices made here (documented in :class:`TrainConfig`):

* the network target is chosen by ``prediction`` and the loss is ``mean |f(x_t, t) - target|``
  (L1): ``"x0"`` the clean slices, ``"epsilon"`` the noise (Ho et al. 2020), ``"v"``
  ``sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho 2022; Ho et al. 2022's video models).
  The presets use ``"v"``: at low noise ``x0_hat = sqrt(abar) x_t - sqrt(1 - abar) v_hat`` is close
  to the input even for a briefly trained network, which a direct ``x0`` target is not (measured
  in ``benchmarks/diffusion_prior_quality.py``);
* ``t`` is uniform over the training timesteps (a fine-tune may draw part of each batch from the
  lowest ``focus_t`` timesteps only: :class:`TrainConfig`), ``x_t`` from :func:`~paperlib.diffusion.schedules.q_sample`;
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

import copy
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .bundles import data_fingerprint
from .checkpoints import CheckpointError, save_prior, weights_name
from .partition import derive_seed, group_slices
from .schedules import q_sample
from .train_config import TRAIN_PRESETS, TrainConfig
from .train_state import append_log, load_state, read_log, save_state, write_log
from .unet3d import UNet3D

logger = logging.getLogger(__name__)

#: Largest |value| accepted in training data: the unit-variance noise of the schedule needs data of order 1.
MAX_ABS_DATA = 10.0


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
    n_focus = round(cfg.focus_fraction * cfg.batch_size)
    if n_focus:  # drawn only here, so configs without a focus keep their random stream
        t[:n_focus] = torch.randint(cfg.focus_t, (n_focus,), generator=gen)
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
            step = load_state(state_path, cfg, group, fingerprint, model, ema, opt, gen, device)
            write_log(log_path, [r for r in read_log(log_path) if r["step"] <= step])
            logger.info("group %d: resumed at step %d from %s", group, step, state_path)
        else:
            write_log(log_path, [])
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
            with torch.no_grad():  # public per-tensor lerp_ (equal to the private fused _foreach_lerp_ on CPU)
                for ema_param, param in zip(ema_params, model_params):
                    ema_param.lerp_(param, 1.0 - decay)
            step += 1
            last_loss = total / cfg.grad_accum
            pending.append({"step": step, "loss": last_loss, "ema_decay": decay,
                            "time_s": round(time.perf_counter() - t0, 4)})
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}")
            if step % cfg.ckpt_every == 0 or step == end:
                append_log(log_path, pending)
                pending = []
                save_state(state_path, cfg, group, fingerprint, step, model, ema, opt, gen, device)
        bar.close()

    exported = None
    if step >= cfg.steps:
        recent = [r["loss"] for r in read_log(log_path)[-50:]]
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
    # as save_prior writes them; the number of groups and the slices per group may differ (a
    # one-model prior over the whole depth can start from one group of a partitioned one: the
    # network is convolutional in depth and its slice attention uses relative positions); the
    # record keeps the base's group size
    want = {"schedule": cfg.schedule.to_dict(), "prediction": cfg.prediction}
    mismatch = [k for k in want if m[k] != want[k]]
    if mismatch:
        raise CheckpointError(f"init_from {cfg.init_from}: group {group} was trained with "
                              + ", ".join(f"{k}={m[k]!r} (this config: {want[k]!r})" for k in mismatch))
    record = {"path": str(cfg.init_from), "sha256": m["sha256"], "steps": m.get("steps"),
              "loss": (m.get("train_config") or {}).get("loss"), "final_loss": m.get("final_loss"),
              "group_size": m["group_size"]}
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


__all__ = ["MAX_ABS_DATA", "TRAIN_PRESETS", "TrainConfig", "TrainResult", "train", "train_prior"]
