"""``python -m paperlib reconstruct``: run DART, DRIFT or a baseline on a user's own data.

MRI (``--modality mri``)
    Input: a NIfTI magnitude volume (``--image``). Slices are taken along its third voxel axis
    (the axial axis of a standard acquisition): voxel array ``(i, j, k)`` -> volume ``(D, H, W) =
    (k, j, i)``. Its k-space is undersampled retrospectively, slice by slice, with either a
    ``--mask`` file (NIfTI on the same voxel grid, or ``.npy`` in the same ``(i, j, k)`` order;
    non-zero = sampled; ``(i, j)`` masks are shared by all slices) or the profile's / given
    acceleration settings (``--acceleration``, ``--center-fraction``, ``--mask-kind``,
    ``--mask-seed``). Intensities are divided by the 99.5th percentile of the positive voxels
    (the prior's training normalisation) and multiplied back afterwards. Output: a float32
    NIfTI with the input's affine, written atomically.

4D-STEM (``--modality stem``)
    Input: intensities ``(Sy, Sx, Ky, Kx)`` in ``.npy`` or HDF5 (``--dataset`` names the array)
    and the acquisition parameters in a YAML/JSON file (``--acquisition``: the keys of
    :class:`paperlib.data.crystals.STEMDataParams` — grid, sampling, slices, energy,
    semi-angle, defocus, scan and detector). Output: the ``(D, H, W)`` potential in V·Å as
    ``.npy``.

Methods are the registered ones of the modality (:data:`paperlib.experiments.runner.MODALITIES`:
``MODALITIES["mri"].methods``, ``MODALITIES["stem"].methods``), run with the settings of ``--profile``; ``--prior`` points to another checkpoint
folder (e.g. one trained on your own data with ``python -m paperlib train``).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, Profile, load_profile
from .io import InputValidationError, atomic_path, load_nifti, save_nifti

logger = logging.getLogger(__name__)

#: Percentile of the positive voxels mapped to 1 (as the training volumes are normalised).
NORMALISATION_PERCENTILE = 99.5


def to_dhw(array: np.ndarray) -> np.ndarray:
    """NIfTI voxel array ``(i, j, k)`` -> volume ``(D, H, W) = (k, j, i)`` (slices along the third axis)."""
    return np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0))


def from_dhw(volume: np.ndarray) -> np.ndarray:
    """Volume ``(D, H, W)`` -> NIfTI voxel array ``(i, j, k)``: the inverse of :func:`to_dhw`."""
    return np.ascontiguousarray(np.asarray(volume).transpose(2, 1, 0))


def registered_method(modality: str, name: str):
    """The method ``name`` of ``modality``'s registry; ``InputValidationError`` naming the registered ones."""
    from .experiments.runner import modality_of

    methods = modality_of(modality).methods
    if name not in methods:
        raise InputValidationError(f"method: unknown {name!r}; registered: {sorted(methods)}")
    return methods[name]


def load_mask(path: str | Path, image_shape: tuple[int, int, int]) -> torch.Tensor:
    """A sampling mask file in the image's voxel order -> (D, H, W) or (H, W) bool tensor.

    ``image_shape`` is the NIfTI array shape ``(i, j, k)``; the mask must be ``(i, j, k)`` or
    ``(i, j)`` with values in {0, 1} (or bool).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such mask file")
    if path.name.endswith((".nii", ".nii.gz")):
        data, _, _ = load_nifti(path, expected_ndim=3 if len(image_shape) == 3 else 2)
    elif path.suffix == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputValidationError(f"{path}: not a readable .npy array ({exc})") from exc
    else:
        raise InputValidationError(f"{path}: expected a mask as .nii, .nii.gz or .npy")
    data = np.asarray(data)
    if data.shape == tuple(image_shape[:2]):
        data = data[:, :, None]
    elif data.shape != tuple(image_shape):
        raise InputValidationError(
            f"{path}: mask of shape {data.shape} does not fit the image of shape {tuple(image_shape)} "
            f"(expected {tuple(image_shape)} or {tuple(image_shape[:2])}, in the image's voxel order)")
    if not np.isin(data, (0, 1)).all():
        raise InputValidationError(f"{path}: expected mask values in {{0, 1}}, got e.g. {data[~np.isin(data, (0, 1))][0]}")
    mask = torch.from_numpy(to_dhw(data != 0))
    return mask[0] if mask.shape[0] == 1 else mask


def reconstruct_mri(
    image: np.ndarray,
    profile: Profile,
    method: str,
    *,
    mask: torch.Tensor | None = None,
    seed: int = 0,
    prior: str | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict]:
    """Undersample ``image`` (NIfTI voxel order) and reconstruct it with ``method``.

    Returns
    -------
    recon : float32 array in the input's voxel order and intensity units.
    info : the sampled fraction, the normalisation scale, the SSIM of the zero-filled image.
    """
    from .experiments import mri as mri_exp
    from .physics.mri import MRIOperator

    run = registered_method("mri", method)
    volume = torch.from_numpy(to_dhw(image)).float()
    positive = volume[volume > 0]
    if positive.numel() == 0:
        raise InputValidationError("image: no positive voxels; expected a magnitude MR volume")
    scale = float(torch.quantile(positive[:: max(1, positive.numel() // 1_000_000)],
                                 NORMALISATION_PERCENTILE / 100))
    x = volume / scale
    if mask is None:
        phys = profile.mri_physics
        mask = mri_exp.slice_masks(phys.table1_mask, tuple(x.shape), phys.acceleration, phys.center_fraction,
                                   phys.mask_seed)
    op = MRIOperator(mask)
    op.check_shape(x, "image")
    y = op.forward(x)
    if prior is not None:
        profile = profile.model_copy(update={"prior": profile.prior.model_copy(update={"checkpoint": prior})})
    recon = run.fn(op, y, profile, torch.Generator().manual_seed(seed)).float()
    info = {"method": method, "seed": seed, "sampled_fraction": op.sampled_fraction, "scale": scale,
            "shape_dhw": list(x.shape)}
    return from_dhw((recon * scale).numpy()), info


def _load_intensities(path: Path, dataset: str | None) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such 4D-STEM data file")
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False)
    if path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            if dataset is None or dataset not in f:
                names = []
                f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
                raise InputValidationError(f"{path}: pass --dataset, one of {names}")
            return np.asarray(f[dataset])
    raise InputValidationError(f"{path}: expected 4D-STEM intensities as .npy, .h5 or .hdf5")


def _load_acquisition(path: Path) -> dict:
    import yaml

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such acquisition-parameter file")
    text = path.read_text()
    params = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(params, dict):
        raise InputValidationError(f"{path}: expected a mapping of acquisition parameters")
    return params


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m paperlib reconstruct``; 0 done, 2 bad input (message on stderr)."""
    p = argparse.ArgumentParser(prog="python -m paperlib reconstruct", description=__doc__.splitlines()[0])
    p.add_argument("--modality", choices=("mri", "stem"), default="mri")
    p.add_argument("--method", default="dart", help="registered method (dart, drift, projection, cs_mri, tv, ...)")
    p.add_argument("--profile", default="default", help="settings of the methods (and the prior)")
    p.add_argument("--prior", help="checkpoint folder to use instead of the profile's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int)
    p.add_argument("--out", type=Path, required=True, help="output .nii/.nii.gz (MRI) or .npy (4D-STEM)")
    mri = p.add_argument_group("MRI")
    mri.add_argument("--image", type=Path, help="NIfTI magnitude volume")
    mri.add_argument("--mask", type=Path, help="sampling mask (.nii/.nii.gz/.npy) in the image's voxel order")
    mri.add_argument("--acceleration", type=float, help="default: the profile's")
    mri.add_argument("--center-fraction", type=float, help="default: the profile's")
    mri.add_argument("--mask-kind", choices=("uniform1d", "gaussian2d"), help="default: the profile's Table 1 mask")
    mri.add_argument("--mask-seed", type=int)
    stem = p.add_argument_group("4D-STEM")
    stem.add_argument("--data", type=Path, help="intensities (Sy, Sx, Ky, Kx), .npy or HDF5")
    stem.add_argument("--dataset", help="HDF5 dataset name")
    stem.add_argument("--acquisition", type=Path, help="YAML/JSON acquisition parameters")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_profile(args.profile)
        torch.set_num_threads(args.threads or cfg.threads)
        if args.prior is not None:  # relative to the working directory, not to the repository
            if not Path(args.prior).is_dir():
                raise FileNotFoundError(f"--prior: no checkpoint folder {args.prior}")
            args.prior = str(Path(args.prior).resolve())
        if args.modality == "mri":
            return _main_mri(args, cfg)
        return _main_stem(args, cfg)
    except (ConfigError, FileNotFoundError, ValueError) as exc:  # InputValidationError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _main_mri(args, cfg: Profile) -> int:
    if args.image is None:
        raise InputValidationError("--image: an MRI reconstruction needs a NIfTI volume")
    if not args.out.name.endswith((".nii", ".nii.gz")):
        raise InputValidationError(f"--out: expected a .nii or .nii.gz path for MRI, got {args.out}")
    image, affine, _ = load_nifti(args.image)
    update = {k: v for k, v in {"acceleration": args.acceleration, "center_fraction": args.center_fraction,
                                "table1_mask": args.mask_kind, "mask_seed": args.mask_seed}.items() if v is not None}
    if update:
        if args.mask is not None:
            raise InputValidationError("--mask: give either a mask file or acceleration settings, not both")
        cfg = cfg.model_copy(update={"mri_physics": type(cfg.mri_physics).model_validate(
            {**cfg.mri_physics.model_dump(), **update})})
    mask = load_mask(args.mask, image.shape) if args.mask is not None else None
    recon, info = reconstruct_mri(image, cfg, args.method, mask=mask, seed=args.seed, prior=args.prior)
    save_nifti(args.out, recon, affine)
    print(f"{args.method}: {args.image} -> {args.out} (volume {info['shape_dhw']} slices first, "
          f"sampled fraction {info['sampled_fraction']:.3f})")
    return 0


def _main_stem(args, cfg: Profile) -> int:
    from .data.crystals import STEMDataParams
    if args.data is None or args.acquisition is None:
        raise InputValidationError("--data and --acquisition: a 4D-STEM reconstruction needs both")
    if args.out.suffix != ".npy":
        raise InputValidationError(f"--out: expected a .npy path for the 4D-STEM potential, got {args.out}")
    run = registered_method("stem", args.method)
    params = STEMDataParams.model_validate(_load_acquisition(args.acquisition))
    intensities = torch.from_numpy(np.asarray(_load_intensities(args.data, args.dataset), dtype=np.float32))
    op = params.operator()
    op.bright_field(intensities)  # validates shape, sign and finiteness with a clear message
    if args.prior is not None:
        cfg = cfg.model_copy(update={"stem_prior": cfg.stem_prior.model_copy(update={"checkpoint": args.prior})})
    recon = run.fn(op, intensities, cfg, torch.Generator().manual_seed(args.seed))
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, recon.detach().float().numpy())
    print(f"{args.method}: {args.data} -> {args.out} (potential {tuple(recon.shape)}, V*Angstrom)")
    return 0
