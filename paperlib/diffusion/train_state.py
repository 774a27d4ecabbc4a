"""The resumable training state of one slice group and its loss log.

Per group ``g`` in the output folder of :func:`paperlib.diffusion.train.train`:

* ``train_state_group{g}.pt`` (:func:`save_state` / :func:`load_state`): the weights, EMA,
  optimiser, step and every random state (the data-sampling generator, torch's global CPU RNG
  and, on a GPU, its CUDA RNG), so that a resumed run equals an uninterrupted one bit for bit.
  Loading refuses a state written for another config (apart from :data:`RESUMABLE_CHANGES`),
  another group or other data (by fingerprint).
* ``loss_group{g}.jsonl`` (:func:`read_log`, :func:`write_log`, :func:`append_log`): one JSON
  line per step.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import torch

from ..io import atomic_write_bytes
from .checkpoints import CheckpointError
from .train_config import TrainConfig
from .unet3d import UNet3D

STATE_FORMAT = "paperlib.train_state/1"
#: Fields that may change between a run and its resumption.
RESUMABLE_CHANGES = ("steps", "ckpt_every")


def read_log(path: Path) -> list[dict]:
    """The records of a loss log, oldest first; ``[]`` when there is no log yet."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_log(path: Path, records: list[dict]) -> None:
    """Replace the loss log by ``records`` (atomically)."""
    atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode())


def append_log(path: Path, records: list[dict]) -> None:
    """Append ``records`` to the loss log and flush them to disk (fsync)."""
    if not records:
        return
    with open(path, "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def _comparable(cfg_dict: dict) -> dict:
    return {k: v for k, v in cfg_dict.items() if k not in RESUMABLE_CHANGES}


def save_state(path: Path, cfg: TrainConfig, group: int, fingerprint: str, step: int, model: UNet3D,
                ema: UNet3D, opt: torch.optim.Optimizer, gen: torch.Generator, device: torch.device) -> None:
    """Write the resumable state of group ``group`` after ``step`` optimiser steps (atomically)."""
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


def load_state(path: Path, cfg: TrainConfig, group: int, fingerprint: str, model: UNet3D, ema: UNet3D,
                opt: torch.optim.Optimizer, gen: torch.Generator, device: torch.device) -> int:
    """Restore a state written by :func:`save_state` into the given objects; returns its step.

    Raises
    ------
    CheckpointError : unreadable file, another format, config (apart from
        :data:`RESUMABLE_CHANGES`), group or training data (fingerprint).
    """
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


__all__ = ["RESUMABLE_CHANGES", "STATE_FORMAT", "append_log", "load_state", "read_log", "save_state", "write_log"]
