"""Training bundles: the (N, D, H, W) tensor a prior is trained on, carried between machines.

``python -m paperlib train --export-data FILE.pt`` writes the profile's training data with its
provenance (:func:`export_data`); ``train --data FILE`` reads it back, or a plain ``.npy`` /
``.pt`` array (:func:`load_data_file`). :func:`data_fingerprint` identifies a training tensor:
a resumed run refuses other data, and the prior manifest records it.

>>> import tempfile, pathlib
>>> data = torch.zeros(2, 4, 8, 8)
>>> with tempfile.TemporaryDirectory() as tmp:
...     path = export_data(pathlib.Path(tmp) / "bundle.pt", data, {"modality": "mri"})
...     back, info = load_data_file(path, with_info=True)
>>> torch.equal(back, data), info, data_fingerprint(back) == data_fingerprint(data)
(True, {'modality': 'mri'}, True)
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import atomic_path


def data_fingerprint(data: Tensor) -> str:
    """SHA-256 (16 hex digits) of the training tensor's shape and bytes; resume refuses other data."""
    h = hashlib.sha256(str(tuple(data.shape)).encode())
    h.update(data.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


#: Format tag of the bundles written by ``train --export-data``.
BUNDLE_FORMAT = "paperlib.train_data/1"


def export_data(path: str | os.PathLike, data: Tensor, dataset: dict, *, dtype: torch.dtype = torch.float32) -> Path:
    """Write a training bundle (``.pt``): the (N, D, H, W) tensor as trained on and its provenance.

    A bundle carries the profile's training data to a machine that cannot generate it (a GPU
    box without abTEM, say): ``train --data BUNDLE`` then trains on exactly the same tensor
    (same fingerprint) and records the same ``dataset`` block in the manifest as training
    from the profile would. Written atomically (:func:`paperlib.io.atomic_path`).

    ``dtype`` ``torch.float16`` halves the file (a bundle that must fit a transfer limit); the
    stored values are then the data rounded to float16 (relative error <= 2**-11), which is what
    :func:`load_data_file` returns (as float32) and what the fingerprint identifies, and
    ``dataset`` records ``"storage": "float16"``.
    """
    if dtype not in (torch.float32, torch.float16):
        raise ValueError(f"export_data dtype: expected torch.float32 or torch.float16, got {dtype}")
    if dtype == torch.float16:
        dataset = {**dataset, "storage": "float16"}
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"--export-data {path}: expected a .pt file")
    with atomic_path(path) as tmp:  # creates the folder
        torch.save({"format": BUNDLE_FORMAT, "data": data.detach().to("cpu", dtype).contiguous(),
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


__all__ = ["BUNDLE_FORMAT", "data_fingerprint", "export_data", "load_data_file"]
