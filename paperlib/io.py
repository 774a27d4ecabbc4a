"""Atomic file output and validated NIfTI input.

Every file paperlib writes goes through :func:`atomic_write_bytes` or :func:`atomic_path`:
the content is written to a temporary file in the destination folder and moved into place
with :func:`os.replace`, so a crash never leaves a half-written output.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np


class InputValidationError(ValueError):
    """A user-supplied file or array does not have the expected form."""


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    The temporary name keeps the destination's suffixes (``.nii.gz``, ``.png``) so writers that
    choose a format by extension behave as for the final name. On any exception the temporary
    file is removed and ``path`` is left untouched.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("hello")
    >>> (d / "a.txt").read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name.split('.')[0]}.", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def load_nifti(
    path: str | os.PathLike,
    *,
    expected_ndim: int = 3,
    allow_nonfinite: bool = False,
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a NIfTI volume and validate it.

    Parameters
    ----------
    path : path to a ``.nii`` or ``.nii.gz`` file.
    expected_ndim : number of spatial dimensions expected (a trailing singleton axis is dropped).
    allow_nonfinite : accept NaN/Inf voxels (default: reject them).

    Returns
    -------
    data : float32 array in the file's voxel order (i, j, k).
    affine : (4, 4) float64 voxel-to-world matrix.
    zooms : voxel sizes in mm.

    Raises
    ------
    FileNotFoundError : the file does not exist.
    InputValidationError : wrong extension, unreadable or truncated file, empty file, wrong
        dimensionality, unsupported dtype, non-finite voxels, invalid voxel sizes. The message
        names the file and what was expected.
    """
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such NIfTI file")
    if not path.name.endswith((".nii", ".nii.gz")):
        raise InputValidationError(f"{path}: expected a .nii or .nii.gz file")
    if path.stat().st_size == 0:
        raise InputValidationError(f"{path}: the file is empty (0 bytes), expected a NIfTI volume")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several unrelated types for broken files
        raise InputValidationError(
            f"{path}: not a readable NIfTI file ({type(exc).__name__}: {exc})"
        ) from exc
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > expected_ndim and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != expected_ndim:
        raise InputValidationError(
            f"{path}: expected a {expected_ndim}D volume, got shape {tuple(img.shape)}"
        )
    if min(shape) < 1:
        raise InputValidationError(f"{path}: the volume is empty, shape {tuple(img.shape)}")
    if img.get_data_dtype().kind not in "iuf":
        raise InputValidationError(
            f"{path}: unsupported on-disk dtype {img.get_data_dtype()}, expected integer or float voxels"
        )
    try:
        data = np.asanyarray(img.dataobj, dtype=np.float32).reshape(shape)
    except (OSError, EOFError, ValueError) as exc:  # truncated data surfaces only here
        raise InputValidationError(f"{path}: image data unreadable or truncated ({exc})") from exc
    if not allow_nonfinite:
        bad = ~np.isfinite(data)
        if bad.any():
            raise InputValidationError(
                f"{path}: {int(bad.sum())} non-finite voxels (NaN/Inf) of {data.size}; "
                "expected finite intensities (clean the volume first)"
            )
    zooms = tuple(float(z) for z in img.header.get_zooms()[:expected_ndim])
    if any(not np.isfinite(z) or z <= 0 for z in zooms):
        raise InputValidationError(f"{path}: invalid voxel sizes {zooms}, expected positive numbers")
    return data, np.asarray(img.affine, dtype=np.float64), zooms


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``data`` as a float32 NIfTI file atomically (``affine`` defaults to identity)."""
    import nibabel as nib

    data = np.asarray(data, dtype=np.float32)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputValidationError(f"affine: expected a (4, 4) matrix, got shape {affine.shape}")
    img = nib.Nifti1Image(data, affine)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
