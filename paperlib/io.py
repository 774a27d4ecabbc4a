"""Atomic file output and validated NIfTI input.

Every file paperlib writes goes through :func:`atomic_write_bytes` or :func:`atomic_path`:
the content is written to a temporary file in the destination folder and moved into place
with :func:`os.replace`, so a crash never leaves a half-written output. The file gets the mode
:func:`open` would give it: ``0o666`` less the user's umask for a new file, the old file's mode
when one is replaced (:func:`output_file_mode`).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import stat
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


def current_umask() -> int:
    """The process's file-mode creation mask (e.g. ``0o022``), read without changing it where possible.

    Linux (>= 4.7) reports it in ``/proc/self/status`` (line ``Umask:``, octal). Elsewhere it is
    read with ``os.umask(0)`` and put back at once: between the two calls a file created by
    another thread of this process would get mode ``0o666``; the command line writes from one
    thread, so this is only a caveat for multi-threaded callers on other systems.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o077)
    os.umask(old)
    return old


def output_file_mode(path: str | os.PathLike) -> int:
    """Permission bits a file written to ``path`` gets, as :func:`open` would give them.

    ``path`` exists (followed through a symbolic link): its current permission bits, so replacing
    a file keeps its mode. Otherwise ``0o666 & ~umask`` (:func:`current_umask`): ``0o644`` with the
    usual umask ``022``, ``0o600`` with ``077``.

    >>> output_file_mode("/nonexistent/new.txt") == 0o666 & ~current_umask()
    True
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


#: the mark in the name of :func:`atomic_path`'s temporary files
PARTIAL = ".partial"


def is_partial(path: str | os.PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_path` (hidden, ``.partial``
    before the destination's suffixes): an output still being written, or left by a killed process.

    >>> is_partial(".fig3.k2x9abcd.partial.png"), is_partial("fig3.png"), is_partial(".fig3.png")
    (True, False, False)
    """
    name = Path(path).name
    return name.startswith(".") and PARTIAL + "." in name


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    The temporary name keeps the destination's suffixes (``.nii.gz``, ``.png``) so writers that
    choose a format by extension behave as for the final name; it is hidden and marked
    ``.partial`` (``.fig3.k2x9.partial.png`` for ``fig3.png``, :func:`is_partial`), so that one left
    by a killed process is recognisable and never read as an output. Before the move the file gets
    :func:`output_file_mode` (the temporary file of :func:`tempfile.mkstemp` is private, ``0o600``).
    On any exception the temporary file is removed and ``path`` is left untouched.

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
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name.split('.')[0]}.", suffix=PARTIAL + suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, output_file_mode(path))
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
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such NIfTI file")
    if not path.name.endswith((".nii", ".nii.gz")):
        raise InputValidationError(f"{path}: expected a .nii or .nii.gz file")
    return load_volume(path, expected_ndim=expected_ndim, allow_nonfinite=allow_nonfinite, kind="NIfTI file")


def load_volume(
    path: str | os.PathLike,
    *,
    expected_ndim: int = 3,
    allow_nonfinite: bool = False,
    kind: str = "image file",
) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Read a volume in any format nibabel reads (NIfTI, an AFNI ``.HEAD``, MINC, ...) with
    :func:`load_nifti`'s checks; ``kind`` names the format in the messages (``"AFNI dataset"``).
    Returns and raises as :func:`load_nifti`, without its extension check."""
    import nibabel as nib

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such {kind}")
    if path.stat().st_size == 0:
        raise InputValidationError(f"{path}: the file is empty (0 bytes), expected a volume ({kind})")
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises several unrelated types for broken files
        raise InputValidationError(
            f"{path}: not a readable {kind} ({type(exc).__name__}: {exc})"
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
    if any(not np.isfinite(z) or z <= 0 for z in zooms[:3]):  # a fourth (time) step may be 0: unset
        raise InputValidationError(f"{path}: invalid voxel sizes {zooms[:3]}, expected positive numbers")
    return data, np.asarray(img.affine, dtype=np.float64), zooms


def save_nifti(path: str | os.PathLike, data: np.ndarray, affine: np.ndarray | None = None, *,
               like: str | os.PathLike | None = None) -> Path:
    """Write ``data`` as a float32 NIfTI file atomically (``affine`` defaults to identity).

    ``like``: a NIfTI file whose header this one follows: its qform and sform codes (how the
    scanner or atlas space is labelled), spatial/temporal units and voxel sizes; ``data`` must
    have its spatial shape.
    """
    import nibabel as nib

    data = np.asarray(data, dtype=np.float32)
    affine = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4):
        raise InputValidationError(f"affine: expected a (4, 4) matrix, got shape {affine.shape}")
    img = nib.Nifti1Image(data, affine)
    if like is not None:
        ref = nib.load(str(like)).header
        if tuple(ref.get_data_shape()[:data.ndim]) != data.shape:
            raise InputValidationError(f"like: {like} has shape {ref.get_data_shape()}, the data {data.shape}")
        img.header.set_xyzt_units(*ref.get_xyzt_units())
        img.header.set_zooms(tuple(ref.get_zooms()[:data.ndim]))
        img.header.set_qform(affine, int(ref["qform_code"]))
        img.header.set_sform(affine, int(ref["sform_code"]))
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)
