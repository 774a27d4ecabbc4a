"""Prior checkpoints: safetensors weights + a JSON manifest, verified on load.

One slice group is one pair of files, written atomically (weights first, then the manifest that
pins them)::

    prior_group0.safetensors   the network weights (float16 by default, upcast to float32 on load)
    prior_group0.json          manifest: format, weights file name, size and SHA-256, model config,
                               noise schedule, prediction target, group index / number of groups /
                               slices per group, dataset parameters, training steps, final loss

The model config is also stored in the safetensors header, so a weights file paired with the
wrong manifest is caught. :func:`load_prior` never loads silently: a missing, truncated, corrupt
(hash) or mismatched (config vs weights) file raises :class:`CheckpointError` naming the file
and the problem. Training state for resuming is a separate file (see :mod:`paperlib.diffusion.train`).

>>> import tempfile, pathlib
>>> from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig
>>> from paperlib.diffusion.schedules import ScheduleConfig
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> cfg = UNet3DConfig(base_width=8, channel_mults=(1,), num_res_blocks=1, attention_levels=())
>>> manifest = save_prior(d / "prior_group0.safetensors", UNet3D(cfg), group_size=4,
...                       schedule=ScheduleConfig("cosine", 100))
>>> models, manifests = load_prior(d)
>>> models[0].cfg == cfg, manifests[0]["group"], manifests[0]["dtype"]
(True, 0, 'float16')
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from ..io import atomic_write_bytes
from .partition import PartitionedPrior
from .sampler import Method, Sampler
from .schedules import ScheduleConfig
from .unet3d import UNet3D, UNet3DConfig

logger = logging.getLogger(__name__)

FORMAT = "paperlib.prior/1"
_REQUIRED = ("format", "weights", "sha256", "size_bytes", "dtype", "model_config", "schedule",
             "prediction", "group", "num_groups", "group_size")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class CheckpointError(ValueError):
    """A prior checkpoint is missing, unreadable, corrupt or inconsistent; the message names the file."""


def weights_name(group: int) -> str:
    """Conventional weights file name of a slice group: ``prior_group{group}.safetensors``."""
    return f"prior_group{group}.safetensors"


def manifest_path(weights_path: str | os.PathLike) -> Path:
    """The manifest beside a weights file (same stem, ``.json``)."""
    return Path(weights_path).with_suffix(".json")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def save_prior(
    path: str | os.PathLike,
    model: UNet3D,
    *,
    group_size: int,
    schedule: ScheduleConfig,
    prediction: str = "x0",
    group: int = 0,
    num_groups: int = 1,
    dataset: dict | None = None,
    steps: int = 0,
    final_loss: float | None = None,
    dtype: torch.dtype = torch.float16,
    extra: dict | None = None,
) -> dict:
    """Write one group's weights (safetensors) and manifest (JSON) atomically.

    Parameters
    ----------
    path : the ``.safetensors`` file; the manifest goes to ``path.with_suffix(".json")``.
    model : a :class:`UNet3D` (its ``cfg`` is recorded).
    group_size : slices per group the model was trained on.
    schedule, prediction : the noise schedule and target the model was trained with.
    group, num_groups : this group's index and the number of groups of the prior.
    dataset : JSON-serialisable description of the training data (e.g. the profile's data section).
    steps, final_loss : training steps done and the last logged loss.
    dtype : storage dtype of the weights (float16 keeps the shipped priors small; float32 exact).
    extra : more JSON-serialisable fields for the manifest.

    Returns
    -------
    The manifest (dict), as written.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path: expected a .safetensors file name, got {path}")
    if not isinstance(getattr(model, "cfg", None), UNet3DConfig):
        raise TypeError(f"model: expected a UNet3D with a UNet3DConfig .cfg, got {type(model).__name__}")
    dtype_name = {v: k for k, v in _DTYPES.items()}.get(dtype)
    if dtype_name is None:
        raise ValueError(f"dtype: expected one of {list(_DTYPES)}, got {dtype}")
    if not 0 <= group < num_groups:
        raise ValueError(f"group: expected 0 <= group < num_groups={num_groups}, got {group}")
    tensors = {}
    for name, value in model.state_dict().items():
        if not torch.isfinite(value).all():
            raise ValueError(f"save_prior: parameter {name!r} has non-finite values; refusing to save")
        if dtype == torch.float16 and value.abs().max() > torch.finfo(torch.float16).max:
            raise ValueError(f"save_prior: parameter {name!r} overflows float16; save with dtype=torch.float32")
        tensors[name] = value.detach().to("cpu", dtype).contiguous()
    model_cfg = model.cfg.to_dict()
    blob = st_save(tensors, metadata={"format": FORMAT, "model_config": _canonical(model_cfg),
                                      "group": str(group), "num_groups": str(num_groups)})
    manifest = {
        "format": FORMAT,
        "weights": path.name,
        "sha256": hashlib.sha256(blob).hexdigest(),
        "size_bytes": len(blob),
        "dtype": dtype_name,
        "num_parameters": int(sum(t.numel() for t in tensors.values())),
        "model_config": model_cfg,
        "schedule": schedule.to_dict(),
        "prediction": prediction,
        "group": int(group),
        "num_groups": int(num_groups),
        "group_size": int(group_size),
        "dataset": dataset or {},
        "steps": int(steps),
        "final_loss": None if final_loss is None or not math.isfinite(final_loss) else float(final_loss),
        **(extra or {}),
    }
    atomic_write_bytes(path, blob)
    atomic_write_bytes(manifest_path(path), (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    logger.info("saved prior group %d/%d to %s (%d bytes, %s)", group, num_groups, path, len(blob), dtype_name)
    return manifest


def _read_manifest(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: manifest not found (expected the JSON written by save_prior)")
    try:
        manifest = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{path}: not a paperlib prior manifest (format {got!r}, expected {FORMAT!r})")
    missing = [k for k in _REQUIRED if k not in manifest]
    if missing:
        raise CheckpointError(f"{path}: manifest lacks keys {missing}")
    problems = _field_problems(manifest)
    if problems:
        raise CheckpointError(f"{path}: invalid manifest fields: " + "; ".join(problems))
    return manifest


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field_problems(manifest: dict) -> list[str]:
    """What is wrong with the types and values of a manifest's required fields (empty if nothing):
    a hand-edited or foreign manifest is reported here, before any of its values is used."""
    problems = []
    weights = manifest["weights"]
    if not (isinstance(weights, str) and weights.endswith(".safetensors") and Path(weights).name == weights):
        problems.append(f"weights: expected a file name beside the manifest ending in .safetensors, got {weights!r}")
    digest = manifest["sha256"]
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        problems.append(f"sha256: expected 64 lowercase hex digits, got {digest!r}")
    if not (_is_int(manifest["size_bytes"]) and manifest["size_bytes"] >= 0):
        problems.append(f"size_bytes: expected an integer >= 0, got {manifest['size_bytes']!r}")
    if manifest["dtype"] not in _DTYPES:
        problems.append(f"dtype: expected one of {list(_DTYPES)}, got {manifest['dtype']!r}")
    if not isinstance(manifest["model_config"], dict):
        problems.append(f"model_config: expected a mapping, got {type(manifest['model_config']).__name__}")
    try:
        ScheduleConfig(**manifest["schedule"])
    except (TypeError, ValueError) as exc:
        problems.append(f"schedule: expected the fields of a ScheduleConfig, got {manifest['schedule']!r} ({exc})")
    if manifest["prediction"] not in ("x0", "epsilon", "v"):
        problems.append(f"prediction: expected 'x0', 'epsilon' or 'v', got {manifest['prediction']!r}")
    group, num_groups, group_size = manifest["group"], manifest["num_groups"], manifest["group_size"]
    if not (_is_int(num_groups) and num_groups >= 1):
        problems.append(f"num_groups: expected an integer >= 1, got {num_groups!r}")
    elif not (_is_int(group) and 0 <= group < num_groups):
        problems.append(f"group: expected an integer in 0..{num_groups - 1}, got {group!r}")
    if not (_is_int(group_size) and group_size >= 1):
        problems.append(f"group_size: expected an integer >= 1, got {group_size!r}")
    return problems


def _header_metadata(data: bytes) -> dict:
    """The ``__metadata__`` of a safetensors blob (8-byte little-endian header length, JSON header)."""
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + n]).get("__metadata__") or {}


def _load_one(mpath: Path, expected_config: UNet3DConfig | None, device: torch.device | str) -> tuple[UNet3D, dict]:
    manifest = _read_manifest(mpath)
    wpath = mpath.parent / manifest["weights"]
    if not wpath.is_file():
        raise CheckpointError(f"{wpath}: weights file not found (named by manifest {mpath})")
    data = wpath.read_bytes()
    if len(data) != manifest["size_bytes"]:
        raise CheckpointError(f"{wpath}: truncated or altered file: {len(data)} bytes, manifest {mpath.name} "
                              f"expects {manifest['size_bytes']}; re-download or re-train it")
    digest = hashlib.sha256(data).hexdigest()
    if digest != manifest["sha256"]:
        raise CheckpointError(f"{wpath}: SHA-256 mismatch ({digest[:12]}... != manifest {manifest['sha256'][:12]}...): "
                              "the file is corrupt or from another checkpoint")
    try:
        tensors = st_load(data)
        meta = _header_metadata(data)
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{wpath}: unreadable safetensors file ({exc})") from None
    try:
        cfg = UNet3DConfig.from_dict(manifest["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{mpath}: invalid model_config ({exc})") from None
    if meta.get("model_config") != _canonical(cfg.to_dict()):
        raise CheckpointError(f"{wpath}: config mismatch: the weights were saved with model_config "
                              f"{meta.get('model_config')}, manifest {mpath.name} says {_canonical(cfg.to_dict())}")
    if expected_config is not None and cfg != expected_config:
        raise CheckpointError(f"{mpath}: config mismatch: checkpoint has {cfg}, expected {expected_config}")
    model = UNet3D(cfg)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if want != got:
        missing = sorted(set(want) - set(got))[:5]
        unexpected = sorted(set(got) - set(want))[:5]
        shapes = [f"{k}: {got[k]} vs {want[k]}" for k in sorted(set(want) & set(got)) if want[k] != got[k]][:5]
        raise CheckpointError(f"{wpath}: config mismatch: weights do not fit model_config "
                              f"(missing {missing}, unexpected {unexpected}, shape differences {shapes})")
    bad = [k for k, v in tensors.items() if not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{wpath}: non-finite values in {bad[:5]}")
    model.load_state_dict({k: v.float() for k, v in tensors.items()})
    return model.to(device).eval(), manifest


def _manifests_in(path: Path) -> list[Path]:
    if path.is_dir():
        found = []
        for p in sorted(path.glob("*.json")):
            try:
                if json.loads(p.read_text()).get("format") == FORMAT:
                    found.append(p)
            except (ValueError, AttributeError, UnicodeDecodeError):
                continue
        if not found:
            raise CheckpointError(f"{path}: no prior manifests ({FORMAT}) in this folder")
        return found
    if path.suffix == ".safetensors":
        return [manifest_path(path)]
    if path.suffix == ".json":
        return [path]
    raise CheckpointError(f"{path}: expected a folder, a .json manifest or a .safetensors file")


def load_prior(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    groups: Sequence[int] | None = None,
    expected_config: UNet3DConfig | None = None,
    device: torch.device | str = "cpu",
) -> tuple[list[UNet3D], list[dict]]:
    """Load and verify prior checkpoints.

    Parameters
    ----------
    path : a folder with the group manifests of one prior, one manifest (``.json``) or weights
        file (``.safetensors``, its manifest beside it), or a list of those.
    groups : load only these group indices (e.g. one rank's groups); default all found. With a
        folder and ``groups=None`` the folder must hold every group ``0 .. num_groups-1`` exactly once.
    expected_config : if given, every checkpoint's model config must equal it.

    Returns
    -------
    models : float32 :class:`UNet3D` in eval mode, ordered by group index.
    manifests : the matching manifests.

    Raises
    ------
    CheckpointError : missing file or manifest, size or SHA-256 mismatch, unreadable weights,
        config mismatch (manifest vs weights header, weights vs config, or vs ``expected_config``),
        groups missing, duplicated or from different priors.
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    mpaths = [m for p in paths for m in _manifests_in(Path(p))]
    headers = {m: _read_manifest(m) for m in mpaths}
    by_group: dict[int, Path] = {}
    for m, h in headers.items():
        if h["group"] in by_group:
            raise CheckpointError(f"{m}: group {h['group']} also in {by_group[h['group']]}")
        by_group[h["group"]] = m
    first = headers[mpaths[0]]
    shared = ("model_config", "schedule", "prediction", "num_groups", "group_size")
    for m, h in headers.items():
        diff = [k for k in shared if h[k] != first[k]]
        if diff:
            raise CheckpointError(f"{m}: differs from {mpaths[0].name} in {diff}: not groups of one prior")
    wanted = sorted(by_group) if groups is None else sorted({int(g) for g in groups})
    if groups is None and Path(paths[0]).is_dir() and len(paths) == 1 and wanted != list(range(first["num_groups"])):
        raise CheckpointError(f"{paths[0]}: groups {wanted} found, expected 0..{first['num_groups'] - 1}")
    absent = [g for g in wanted if g not in by_group]
    if absent:
        raise CheckpointError(f"{paths[0]}: no checkpoint for groups {absent} (found {sorted(by_group)})")
    loaded = [_load_one(by_group[g], expected_config, device) for g in wanted]
    return [m for m, _ in loaded], [h for _, h in loaded]


def load_partitioned_prior(
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    groups: Sequence[int] | None = None,
    method: Method = "ddim",
    eta: float = 0.0,
    clip: tuple[float, float] | None = None,
    device: torch.device | str = "cpu",
    precision: str = "float32",
) -> PartitionedPrior:
    """:func:`load_prior` and wrap the models in a :class:`PartitionedPrior` with a matching sampler
    (``precision``: the networks' arithmetic, see :func:`~paperlib.diffusion.partition.run_network`)."""
    models, manifests = load_prior(path, groups=groups, device=device)
    m0 = manifests[0]
    sampler = Sampler(ScheduleConfig(**m0["schedule"]), method=method, eta=eta, prediction=m0["prediction"], clip=clip)
    return PartitionedPrior(models, sampler, m0["group_size"], group_indices=[m["group"] for m in manifests],
                            precision=precision)


def file_size_ok(path: str | os.PathLike, limit_bytes: int = 16 * 2**20) -> bool:
    """Whether a shipped weights file respects the repository's size limit (16 MiB)."""
    return Path(path).stat().st_size <= limit_bytes


__all__ = ["CheckpointError", "FORMAT", "save_prior", "load_prior", "load_partitioned_prior",
           "weights_name", "manifest_path", "file_size_ok"]
