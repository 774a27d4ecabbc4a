"""``python -m paperlib reconstruct``: run DART, DRIFT or a baseline on a user's own data.

MRI (``--modality mri``)
    Input: a NIfTI magnitude volume (``--image``). Slices are taken along its third voxel axis
    (the axial axis of a standard acquisition): voxel array ``(i, j, k)`` -> volume ``(D, H, W) =
    (k, j, i)``. Its k-space is undersampled retrospectively, slice by slice, with either a
    ``--mask`` file (NIfTI on the same voxel grid, or ``.npy`` in the same ``(i, j, k)`` order;
    non-zero = sampled; ``(i, j)`` masks are shared by all slices) or the profile's / given
    acceleration settings (``--acceleration``, ``--center-fraction``, ``--mask-kind``,
    ``--mask-seed``). Any shape (D >= 1 slices, H, W >= 8, odd sizes) and any voxel size is
    reconstructed as it is: DART, DRIFT and the projection method use the general prior of the
    profile's ``real_mri`` section, tiled over the depth and padded in-plane inside
    (:class:`paperlib.diffusion.tiling.TiledPrior`), with the measurement divided by the
    intensity scale of its zero-filled image (:mod:`paperlib.data.intensity`) and multiplied back;
    voxel sizes outside the prior's training ranges are reported (:func:`voxel_note`). Output: a
    float32 NIfTI, never negative and never above the input's maximum, with the input's affine,
    qform/sform codes and units (:func:`paperlib.io.save_nifti` with ``like=``), written atomically.

4D-STEM (``--modality stem``)
    Input: a microscope's intensities ``(Sy, Sx, Ky, Kx)`` (``--data``: ``.npy``, HDF5 such as
    py4DSTEM's EMD 1.0 files, or abTEM's zarr output; ``--dataset`` names the array where a file
    holds several) and the acquisition in a YAML/JSON file (``--acquisition``: the keys of
    :class:`paperlib.stem_input.STEMAcquisition` — energy in keV, semi-angle in mrad, defocus, scan
    step and slice thickness in Å, the grid and its sampling or detector calibration; ``--help``
    lists them with units and defaults). Counts are detected and normalised to the operator's
    convention (stated on stdout), calibrations the file states are checked against the
    acquisition file, and the undiffracted beam must sit at the pattern centre
    (:mod:`paperlib.stem_input`). Every method takes any grid and scan step: DART and DRIFT tile
    the prior over the depth and pad the grid inside (:func:`stem_method`). Output: the
    ``(D, H, W)`` potential in V·Å as ``.npy``, written atomically.

Methods are the registered ones of the modality (MRI:
:data:`paperlib.experiments.real_mri.REAL_MRI_METHODS`; 4D-STEM:
``paperlib.experiments.runner.MODALITIES["stem"].methods``), run with the settings of
``--profile``; ``--prior`` points to another checkpoint folder (e.g. one trained on your own data
with ``python -m paperlib train``).

Every flag is checked before any reconstruction starts, and a bad one is reported as one line
``error: --flag VALUE: expected ..., got ...`` (exit status 2); a sampling setting taken from the
profile is named as ``profile NAME: mri_physics.KEY VALUE`` (:func:`sampling_profile`). ``--out``
is never one of the inputs (``--image``, ``--mask``, ``--data``, ``--acquisition``, the profile's
YAML; links included) and replaces an existing file only with ``--overwrite``, keeping its mode;
a new file gets the user's umask (:func:`paperlib.io.output_file_mode`).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, Profile, load_profile
from .experiments.priors import GuidedSetup, register_guided
from .io import InputValidationError, atomic_path, load_nifti, save_nifti

logger = logging.getLogger(__name__)



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
        raise InputValidationError(f"--method {name}: expected a registered {modality} method "
                                   f"({', '.join(sorted(methods))}), got unknown {name!r}")
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
    voxel_mm: tuple[float, float, float] | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict]:
    """Undersample ``image`` (NIfTI voxel order) and reconstruct it with ``method``, at its own shape.

    The methods are those of real scans (:data:`paperlib.experiments.real_mri.REAL_MRI_METHODS`):
    DART, DRIFT and the projection method use the general prior of ``profile.real_mri`` (or
    ``prior``), tiled over any depth and padded to any in-plane size inside, on the measurement
    divided by the intensity scale of its zero-filled image (no percentile clipping); the
    result is multiplied back. Every output is a magnitude image within the input's range:
    clamped to ``[0, max(image)]``.

    Parameters
    ----------
    image : (i, j, k) float array, any size with k >= 1 slices and i, j >= 8.
    profile : settings (``mri_physics`` for the default mask, ``real_mri`` for the methods).
    mask : (D, H, W) or (H, W) bool sampling mask; default: the profile's mask per slice.
    voxel_mm : the NIfTI zooms (i, j, k); a voxel size outside the general prior's training
        range (:data:`paperlib.data.randomized.INPLANE_MM`, :data:`~paperlib.data.randomized.THICKNESS_MM`)
        is reported in ``info["voxel_note"]`` and logged.

    Returns
    -------
    recon : float32 array in the input's voxel order and intensity units.
    info : method, seed, sampled fraction, shape, the voxel-size note.
    """
    from .experiments import mri as mri_exp
    from .experiments.real_mri import REAL_MRI_METHODS
    from .physics.mri import MRIOperator

    if profile.real_mri is None:
        raise InputValidationError(f"--profile {profile.name}: has no real_mri section (the general prior "
                                   "and the settings of reconstructions of your own scans)")
    if method not in REAL_MRI_METHODS:
        raise InputValidationError(f"--method {method}: expected one of {sorted(REAL_MRI_METHODS)}")
    run = REAL_MRI_METHODS[method]
    volume = torch.from_numpy(to_dhw(image)).float().clamp_min(0)
    if mask is None:
        phys = profile.mri_physics
        mask = mri_exp.slice_masks(phys.table1_mask, tuple(volume.shape), phys.acceleration, phys.center_fraction,
                                   phys.mask_seed)
    op = MRIOperator(mask)
    op.check_shape(volume, "image")
    if prior is not None:
        profile = profile.model_copy(update={"real_mri": profile.real_mri.model_copy(update={"checkpoint": prior})})
    note = voxel_note(voxel_mm) if voxel_mm is not None else ""
    if note:
        logger.warning("%s", note)
    y = op.forward(volume)
    recon = run.fn(op, y, profile, torch.Generator().manual_seed(seed), progress=progress).float()
    recon = recon.clamp(0.0, float(volume.max()))
    info = {"method": method, "seed": seed, "sampled_fraction": op.sampled_fraction,
            "shape_dhw": list(volume.shape), "voxel_note": note}
    return from_dhw(recon.numpy()), info


def voxel_note(voxel_mm: tuple[float, float, float]) -> str:
    """Empty when the NIfTI zooms ``(i, j, k)`` lie in the general prior's training ranges, else
    a sentence naming the sizes and the ranges (the prior was trained across voxel sizes, so
    nothing is resampled; outside the ranges it extrapolates).

    >>> voxel_note((2.0, 2.0, 3.0))
    ''
    >>> voxel_note((0.5, 0.5, 1.0)).split(';')[0]
    "voxel size 0.5 x 0.5 x 1 mm (in-plane x in-plane x slice) is outside the general prior's training ranges"
    """
    from .data.randomized import INPLANE_MM, THICKNESS_MM

    inplane, thickness = (float(voxel_mm[0]), float(voxel_mm[1])), float(voxel_mm[2])
    outside = any(not INPLANE_MM[0] <= v <= INPLANE_MM[1] for v in inplane) or not (
        THICKNESS_MM[0] <= thickness <= THICKNESS_MM[1])
    if not outside:
        return ""
    return (f"voxel size {inplane[0]:g} x {inplane[1]:g} x {thickness:g} mm (in-plane x in-plane x slice) is outside "
            f"the general prior's training ranges; in-plane {INPLANE_MM[0]:g}-{INPLANE_MM[1]:g} mm, slices "
            f"{THICKNESS_MM[0]:g}-{THICKNESS_MM[1]:g} mm: the prior extrapolates (compare with --method tv)")


#: The command line's names of the sampling settings in the profile's ``mri_physics`` section.
SAMPLING_FLAGS = {"acceleration": "--acceleration", "center_fraction": "--center-fraction",
                  "table1_mask": "--mask-kind", "mask_seed": "--mask-seed"}


#: ``--method`` of the second system (issue 18): :func:`reconstruct_variational2d`
VARIATIONAL2D = "variational2d"


def reconstruct_variational2d(
    image: np.ndarray,
    profile: Profile,
    *,
    voxel_mm: tuple[float, float, float],
    acceleration: float | None = None,
    center_fraction: float | None = None,
    mask_seed: int | None = None,
    coils: int | None = None,
    seed: int = 0,
    prior: str | None = None,
    progress: bool = False,
) -> tuple[np.ndarray, dict]:
    """The second system on a **magnitude** volume: simulated multicoil 3D data, then
    :func:`paperlib.recon.variational2d.variational2d` with the diverse-voxel 2D prior.

    A magnitude image has no coil or phase data, so both are simulated
    (:func:`~paperlib.recon.variational2d.simulate_multicoil`: ``coils`` smooth sensitivity maps,
    zero phase, a 3D Cartesian variable-density mask over the phase-encoding axes ``(D, H)``, the
    readout ``W`` fully sampled). The reconstruction uses the settings of ``profile.resolution_robust``
    (iterations, λ, slices per iteration, truncation, step size) with the trilinear resampling to
    the prior's largest training voxel where the volume's voxels are larger.

    Parameters
    ----------
    image : (i, j, k) float array, the NIfTI voxel order; ``(D, H, W) = (k, j, i)``, D, H >= 4.
    profile : a profile with a ``resolution_robust`` section.
    voxel_mm : the NIfTI zooms ``(i, j, k)`` in mm.
    acceleration, center_fraction, mask_seed : the mask (defaults: the profile's ``mri_physics``;
        the centre fraction is capped at ``1 / acceleration``).
    coils : simulated coils (default ``resolution_robust.num_coils``).
    prior : a 2D prior folder instead of ``resolution_robust.diverse_prior``.

    Returns
    -------
    recon : float32 magnitude in the input's voxel order and units, clamped to ``[0, max(image)]``.
    info : method, seed, sampled fraction, shape, coils, acceleration, prior.
    """
    from .experiments.resolution_robust import load_slice_prior
    from .paths import repo_root
    from .recon.variational2d import simulate_multicoil, variational2d

    section = profile.resolution_robust
    if section is None:
        raise InputValidationError(f"--profile {profile.name}: has no resolution_robust section (the settings "
                                   f"of --method {VARIATIONAL2D})")
    phys = profile.mri_physics
    acceleration = phys.acceleration if acceleration is None else acceleration
    center = min(phys.center_fraction, 1.0 / acceleration) if center_fraction is None else center_fraction
    coils = section.num_coils if coils is None else coils
    if not isinstance(coils, int) or coils < 1:
        raise InputValidationError(f"--coils {coils}: expected an integer >= 1")
    volume = torch.from_numpy(to_dhw(image)).float().clamp_min(0)
    if min(volume.shape[:2]) < 4:
        raise InputValidationError(f"--image: expected at least 4 voxels along the phase-encoding axes (k, j), "
                                   f"got the voxel array shape {tuple(image.shape)}")
    seed_mask = phys.mask_seed if mask_seed is None else mask_seed
    flags = {"acceleration": "--acceleration", "center_fraction": "--center-fraction"}
    try:
        op, y = simulate_multicoil(volume, num_coils=coils, acceleration=acceleration, center_fraction=center,
                                   generator=torch.Generator().manual_seed(seed_mask))
    except InputValidationError as exc:  # the mask's checks name its argument: name the flag instead
        name, _, detail = str(exc).partition(": ")
        if name not in flags:
            raise
        value = acceleration if name == "acceleration" else center
        raise InputValidationError(f"{flags[name]} {value:g}: {detail}") from None
    folder = Path(prior) if prior is not None else repo_root() / section.diverse_prior
    slice_prior = load_slice_prior(folder)
    recon = variational2d(op, y, slice_prior, weight=section.weight, generator=torch.Generator().manual_seed(seed),
                          iters=section.iters, step_size=section.step_size, slices_per_iter=section.slices_per_iter,
                          t_max=section.t_max, voxel_size=tuple(float(v) for v in voxel_mm[::-1]), real=section.real,
                          progress=progress)
    recon = recon.abs().float().clamp(0.0, float(volume.max()))
    info = {"method": VARIATIONAL2D, "seed": seed, "sampled_fraction": float(op.mask.float().mean()),
            "shape_dhw": list(volume.shape), "coils": coils, "acceleration": float(acceleration),
            "center_fraction": float(center), "prior": str(folder), "prior_voxel_mm": slice_prior.voxel_size}
    return from_dhw(recon.numpy()), info


def _main_variational2d(args, cfg: Profile) -> int:
    if args.mask is not None or args.mask_kind is not None:
        flag = "--mask" if args.mask is not None else "--mask-kind"
        raise InputValidationError(f"{flag}: not used by --method {VARIATIONAL2D} (its 3D multicoil mask is "
                                   "simulated from --acceleration, --center-fraction and --mask-seed)")
    if cfg.resolution_robust is None:
        raise InputValidationError(f"--profile {cfg.name}: has no resolution_robust section (the settings of "
                                   f"--method {VARIATIONAL2D})")
    if args.coils is not None and args.coils < 1:
        raise InputValidationError(f"--coils {args.coils}: expected an integer >= 1")
    image, affine, zooms = load_image(args.image)
    numbers = {}
    for key, flag in (("acceleration", "--acceleration"), ("center_fraction", "--center-fraction")):
        text = getattr(args, key)
        if text is not None:
            value = _number(text)
            if not isinstance(value, float):
                raise InputValidationError(f"{flag} {text}: expected a number, got {text!r}")
            numbers[key] = value
    print(f"{VARIATIONAL2D}: {args.image} is read as a MAGNITUDE image: its multicoil k-space is SIMULATED "
          f"({args.coils or cfg.resolution_robust.num_coils} smooth coil maps, "
          "zero phase, 3D variable-density mask); the result says nothing about real coil data")
    recon, info = reconstruct_variational2d(image, cfg, voxel_mm=tuple(float(z) for z in zooms[:3]),
                                            mask_seed=args.mask_seed, coils=args.coils, seed=args.seed,
                                            prior=args.prior, progress=True, **numbers)
    save_nifti(args.out, recon, affine, like=args.image)
    print(f"{VARIATIONAL2D}: {args.image} -> {args.out} (volume {info['shape_dhw']} slices first, "
          f"{info['coils']} simulated coils, acceleration {info['acceleration']:g}, sampled fraction "
          f"{info['sampled_fraction']:.3f}, prior {info['prior']} at {info['prior_voxel_mm']:g} mm)")
    return 0


def _parser() -> argparse.ArgumentParser:
    from .cli import COMMANDS, PROG, CommandParser

    from .stem_input import acquisition_keys_table

    p = CommandParser(prog=f"{PROG} reconstruct", description=COMMANDS["reconstruct"].description,
                      formatter_class=argparse.RawDescriptionHelpFormatter,
                      epilog="4D-STEM acquisition file (--acquisition, YAML or JSON; unknown keys are errors):\n"
                             f"{acquisition_keys_table('text')}\n\n"
                             "4D-STEM data (--data): intensities (Sy, Sx, Ky, Kx) = (scan rows, scan columns, detector "
                             "rows, detector columns),\nthe undiffracted beam at pixel (Ky // 2, Kx // 2); counts or "
                             "normalised (patterns sum to about 1), detected and stated.")
    p.add_argument("--modality", choices=("mri", "stem"), default="mri")
    p.add_argument("--method", default="dart",
                   help="registered method (dart, drift, projection, cs_mri, tv, ...), or (MRI) "
                        f"{VARIATIONAL2D}: the second system's variational 3D reconstruction with the shipped "
                        "diverse-voxel 2D prior; the NIfTI is a MAGNITUDE image, so its multicoil 3D k-space is "
                        "SIMULATED (smooth coil maps, zero phase, a 3D variable-density mask over the two "
                        "phase-encoding axes (D, H) = voxel axes (k, j), readout i fully sampled)")
    p.add_argument("--profile", default="default", help="settings of the methods (and the prior): name or YAML path")
    p.add_argument("--prior", help="checkpoint folder to use instead of the profile's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch threads, >= 1 (default: the profile's)")
    p.add_argument("--out", type=Path, required=True,
                   help="output .nii/.nii.gz (MRI) or .npy (4D-STEM); a new file, or --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (never one of the inputs)")
    mri = p.add_argument_group("MRI")
    mri.add_argument("--image", type=Path, help="NIfTI magnitude volume (3D)")
    mri.add_argument("--mask", type=Path, help="sampling mask (.nii/.nii.gz/.npy) in the image's voxel order")
    mri.add_argument("--acceleration", metavar="FLOAT",
                     help="> 1, at most the number of sampled lines (uniform1d: W) or points (gaussian2d: H W); "
                          "default: the profile's")
    mri.add_argument("--center-fraction", metavar="FLOAT",
                     help="fully sampled centre, 0 < f <= 1/acceleration; default: the profile's")
    mri.add_argument("--mask-kind", metavar="{uniform1d,gaussian2d}", help="default: the profile's Table 1 mask")
    mri.add_argument("--mask-seed", type=int)
    mri.add_argument("--coils", type=int, metavar="N",
                     help=f"--method {VARIATIONAL2D}: simulated receive coils (default: the profile's "
                          "resolution_robust.num_coils)")
    stem = p.add_argument_group("4D-STEM")
    stem.add_argument("--data", type=Path, help="intensities (Sy, Sx, Ky, Kx): .npy, HDF5 (.h5/.hdf5/.emd: py4DSTEM "
                                                "EMD 1.0 or one 4D dataset) or abTEM zarr (.zarr/.zip)")
    stem.add_argument("--dataset", help="the HDF5 dataset (or EMD node, zarr array) where the file holds several")
    stem.add_argument("--acquisition", type=Path, help="YAML/JSON acquisition file (keys below)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m paperlib reconstruct``; 0 done, 2 bad input (one line on stderr).

    Every flag is checked (:func:`check_arguments`, then the input files are read and checked)
    before any reconstruction starts.
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        cfg = check_arguments(args)
        torch.set_num_threads(args.threads or cfg.threads)
        if args.modality == "mri":
            return _main_mri(args, cfg)
        return _main_stem(args, cfg)
    except (ConfigError, FileNotFoundError, ValueError) as exc:  # InputValidationError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2


def check_arguments(args: argparse.Namespace) -> Profile:
    """Check the flags that need no input file read; the profile named by ``--profile``.

    Checks ``--profile`` (loads), ``--threads``, ``--method`` (registered for ``--modality``),
    ``--prior`` (an existing folder; made absolute in ``args``), the inputs the modality needs, and
    ``--out``: its suffix, and :func:`paperlib.cli.check_output_path` (never an input, an existing
    file only with ``--overwrite``).

    Raises
    ------
    InputValidationError : one line ``--flag VALUE: expected ..., got ...``.
    """
    from .cli import check_output_path
    from .config import profile_path

    try:
        cfg = load_profile(args.profile)
    except ConfigError as exc:  # "profile 'NAME': no file ..." or "PATH: invalid profile: ..."
        detail = str(exc).removeprefix(f"profile {args.profile!r}: ")
        raise InputValidationError(f"--profile {args.profile}: {detail}") from None
    if args.threads is not None and args.threads < 1:
        raise InputValidationError(f"--threads {args.threads}: expected an integer >= 1, got {args.threads}")
    if not (args.modality == "mri" and args.method == VARIATIONAL2D):
        registered_method(args.modality, args.method)
    if args.prior is not None:  # relative to the working directory, not to the repository
        if not Path(args.prior).is_dir():
            raise InputValidationError(f"--prior {args.prior}: expected a checkpoint folder, got no such folder")
        args.prior = str(Path(args.prior).resolve())
    if args.modality == "mri":
        if args.image is None:
            raise InputValidationError("--image: an MRI reconstruction needs a NIfTI volume")
        if not args.out.name.endswith((".nii", ".nii.gz")):
            raise InputValidationError(f"--out {args.out}: expected a .nii or .nii.gz path for MRI")
    else:
        if args.data is None or args.acquisition is None:
            raise InputValidationError("--data and --acquisition: a 4D-STEM reconstruction needs both")
        if args.out.suffix != ".npy":
            raise InputValidationError(f"--out {args.out}: expected a .npy path for the 4D-STEM potential")
    inputs = {"--image": args.image, "--mask": args.mask, "--data": args.data, "--acquisition": args.acquisition,
              "--profile": profile_path(args.profile)}
    check_output_path("--out", args.out, inputs, overwrite=args.overwrite)
    return cfg


def load_image(path: Path) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """``--image``: :func:`paperlib.io.load_nifti` with the flag in its errors, and at least one positive voxel.

    Returns the voxel array ``(i, j, k)`` (float32), the (4, 4) affine and the voxel sizes in mm.
    """
    try:
        image, affine, zooms = load_nifti(path)
    except FileNotFoundError:
        raise InputValidationError(f"--image {path}: expected a NIfTI file (.nii, .nii.gz), got no such file") from None
    except InputValidationError as exc:
        raise InputValidationError(f"--image {exc}") from None
    if not (image > 0).any():
        got = "all voxels zero" if not image.any() else "no positive voxel"
        raise InputValidationError(f"--image {path}: expected a magnitude volume with positive voxels, got {got}")
    return image, affine, zooms


def _number(text: str) -> float | str:
    """``text`` as a float, or unchanged where it is not a number (the mask checker then names it)."""
    try:
        return float(text)
    except ValueError:
        return text


def sampling_profile(args: argparse.Namespace, cfg: Profile, image_shape: tuple[int, int, int]) -> Profile:
    """``cfg`` with the command line's sampling settings, checked for an image of ``image_shape``.

    The settings (``--acceleration``, ``--center-fraction``, ``--mask-kind``, ``--mask-seed``, else
    the profile's ``mri_physics`` values) are checked by the rules the masks are made with
    (one slice's mask is made with :func:`paperlib.physics.mri.make_mask`, whose argument check
    raises), on the image's slices ``(H, W) = (j, i)``, and the acceleration is at most what the slices allow: one sampled line of the
    ``W`` phase-encoding lines (``uniform1d``), one point of ``H W`` (``gaussian2d``). An error
    names the flag, or the profile and key where the value comes from the profile, e.g.
    ``profile default: mri_physics.center_fraction 0.08 with --acceleration 100: expected 0 <
    center_fraction <= 1/acceleration = 0.01, got 0.08``. With ``--mask`` the settings must not
    be given (the file decides).

    Raises
    ------
    InputValidationError : one line naming the flag (or profile key), what was expected and what was got.
    """
    from .physics.mri import MASK_KINDS, make_mask

    given = {key: getattr(args, key if key != "table1_mask" else "mask_kind") for key in SAMPLING_FLAGS}
    given = {key: value for key, value in given.items() if value is not None}
    if args.mask is not None:
        if given:
            raise InputValidationError(f"--mask {args.mask}: give either a mask file or acceleration settings "
                                       f"({', '.join(SAMPLING_FLAGS[k] for k in given)}), not both")
        return cfg
    phys = cfg.mri_physics

    def where(key: str) -> str:
        if key in given:
            return f"{SAMPLING_FLAGS[key]} {given[key]}"
        return f"profile {cfg.name}: mri_physics.{key} {getattr(phys, key)}"

    kind = given.get("table1_mask", phys.table1_mask)
    if kind not in MASK_KINDS:
        raise InputValidationError(f"{where('table1_mask')}: expected one of {', '.join(MASK_KINDS)}, got {kind!r}")
    acceleration = _number(given["acceleration"]) if "acceleration" in given else phys.acceleration
    center_fraction = _number(given["center_fraction"]) if "center_fraction" in given else phys.center_fraction
    height, width = int(image_shape[1]), int(image_shape[0])  # voxel axes (j, i) of each slice
    most = width if kind == "uniform1d" else height * width
    if isinstance(acceleration, float) and acceleration > most:
        units = f"the {width} phase-encoding lines along W (voxel axis i)" if kind == "uniform1d" else \
            f"the {height}x{width} k-space points of a slice"
        raise InputValidationError(f"{where('acceleration')}: expected a number in (1, {most}] for a {kind} mask "
                                   f"(at least one of {units} sampled), got {acceleration:g}")
    try:
        make_mask(kind, (height, width), acceleration, center_fraction, generator=torch.Generator().manual_seed(0))
    except ValueError as exc:
        name, _, detail = str(exc).partition(": ")
        if name == "shape":
            raise InputValidationError(f"--image {args.image}: slices (H, W) = voxel axes (j, i): {detail}") from None
        if name == "center_fraction":
            hint = ("; pass a --center-fraction in that range or a lower --acceleration"
                    if "center_fraction" not in given else "")
            raise InputValidationError(f"{where('center_fraction')} with {where('acceleration')}: {detail}{hint}") \
                from None
        raise InputValidationError(f"{where(name)}: {detail}") from None
    update = {**given, "acceleration": acceleration, "center_fraction": center_fraction}
    return cfg.model_copy(update={"mri_physics": phys.model_copy(update=update)})


def _main_mri(args, cfg: Profile) -> int:
    if args.method == VARIATIONAL2D:
        return _main_variational2d(args, cfg)
    image, affine, zooms = load_image(args.image)
    cfg = sampling_profile(args, cfg, image.shape)
    mask = _with_flag("--mask", load_mask, args.mask, image.shape) if args.mask is not None else None
    recon, info = reconstruct_mri(image, cfg, args.method, mask=mask, seed=args.seed, prior=args.prior,
                                  voxel_mm=tuple(float(z) for z in zooms[:3]), progress=True)
    save_nifti(args.out, recon, affine, like=args.image)
    print(f"{args.method}: {args.image} -> {args.out} (volume {info['shape_dhw']} slices first, "
          f"sampled fraction {info['sampled_fraction']:.3f})")
    return 0


def _with_flag(flag: str, load, *args):
    """``load(*args)`` with ``flag`` in front of its errors (which start with the file's path)."""
    try:
        return load(*args)
    except (FileNotFoundError, InputValidationError) as exc:
        raise InputValidationError(f"{flag} {exc}") from None


@dataclass(frozen=True)
class TiledGuidedSetup(GuidedSetup):
    """A :class:`~paperlib.experiments.priors.GuidedSetup` whose prior takes volumes of any shape:
    the profile's partitioned prior tiled over the depth and padded in-plane inside
    (:class:`~paperlib.diffusion.tiling.TiledPrior`, windows without overlap). Where the volume
    has the prior's own depth and a grid divisible by its U-Net's factor, this is the partitioned
    prior itself (bit for bit), so the tables' DART and DRIFT are unchanged."""

    def load(self, profile: Profile):
        from .diffusion.tiling import tiled

        return tiled(super().load(profile), overlap=0)


def _any_shape_guided():
    from .experiments.registry import Registry
    from .experiments.stem import STEM_GUIDED

    registry = Registry("4D-STEM (any shape)")
    setup = TiledGuidedSetup(**{f.name: getattr(STEM_GUIDED, f.name) for f in fields(GuidedSetup)})
    register_guided(registry, setup)
    return registry, setup


def stem_method(name: str, operator, profile: Profile, prior: str | None = None):
    """The 4D-STEM method ``name`` for a user's ``operator``, checked before any work.

    DART and DRIFT run on :class:`TiledGuidedSetup` (any depth, any grid; the prior is loaded
    here, so a missing or mismatched checkpoint is reported before the reconstruction). DRIFT's
    lateral alignment (``stem_diffusion.drift.translate``) needs a scan that tiles the field of
    view in whole pixels (:meth:`~paperlib.physics.multislice.MultisliceOperator.periodic_scan_step`);
    for any other scan it is switched off for this run and said so. The baselines are the
    registered ones.

    Returns
    -------
    method : the :class:`~paperlib.experiments.registry.Method`.
    profile : ``profile``, with ``prior`` as the checkpoint and DRIFT's alignment as it will run.
    notes : sentences for the user (empty when nothing was changed or is out of the prior's range).
    """
    if name not in ("dart", "drift"):
        return registered_method("stem", name), profile, []
    registry, setup = _any_shape_guided()
    if prior is not None:
        profile = profile.model_copy(update={"stem_prior": profile.stem_prior.model_copy(
            update={"recon_checkpoint": prior})})
    setup.load(profile)  # a missing checkpoint or a wrong data_scale fails here, before any work
    notes = prior_notes(profile, operator)
    drift_cfg = profile.stem_diffusion.drift
    if name == "drift" and drift_cfg.translate and operator.periodic_scan_step() is None:
        notes.append(
            "DRIFT: the scan does not tile the field of view in whole-pixel steps (scan_step = k x sampling "
            "with Sy x k = gpts, full grid), so the candidates are not aligned laterally (stem_diffusion.drift."
            "translate is off for this run)")
        drift_cfg = drift_cfg.model_copy(update={"translate": False})
        diffusion = profile.stem_diffusion.model_copy(update={"drift": drift_cfg})
        profile = profile.model_copy(update={"stem_diffusion": diffusion})
    return registry[name], profile, notes


def prior_notes(profile: Profile, operator) -> list[str]:
    """Where the acquisition lies outside the 4D-STEM prior's training data (its manifest's
    ``dataset.stem``: sampling, slice thickness, energy; more than 10 % away): one sentence each; the prior then
    extrapolates (compare with ``--method three_pie``)."""
    from .experiments.priors import resolve_checkpoint

    manifests = sorted(resolve_checkpoint(profile.stem_prior.guided_checkpoint).glob("prior_group*.json"))
    trained = json.loads(manifests[0].read_text()).get("dataset", {}).get("stem") if manifests else None
    if not trained:
        return []
    ours = {"sampling": max(operator.sampling), "slice_thickness": max(operator.slice_thickness),
            "energy": operator.energy}
    units = {"sampling": "Å/px", "slice_thickness": "Å", "energy": "keV"}
    return [f"{key} {ours[key]:g} {units[key]} differs from the prior's training data ({trained[key]:g} "
            f"{units[key]}): the prior extrapolates (compare with --method three_pie)"
            for key in ours if key in trained and abs(ours[key] - float(trained[key])) > 0.1 * float(trained[key])]


def _main_stem(args, cfg: Profile) -> int:
    from .stem_input import (check_beam_centre, check_file_calibration, load_acquisition, normalise_intensities,
                             read_intensities)

    acquisition = _with_flag("--acquisition", load_acquisition, args.acquisition)
    data, info = _with_flag("--data", read_intensities, args.data, args.dataset)
    source = f"--data {args.data}"
    acquisition.check_data_shape(data.shape, source)
    agreed = check_file_calibration(acquisition, info, source, f"--acquisition {args.acquisition}")
    op = acquisition.operator(data.shape)
    try:
        op.check_intensities(torch.from_numpy(np.asarray(data, dtype=np.float32)))  # sign and finiteness
    except InputValidationError as exc:
        raise InputValidationError(f"{source}: {exc}") from None
    check_beam_centre(data, source)
    vacuum = float(op.intensities_at(torch.zeros(op.shape, dtype=op.dtype), torch.tensor([0])).sum())
    intensities, statement = normalise_intensities(data, acquisition.intensities, vacuum, source)
    method, cfg, notes = stem_method(args.method, op, cfg, prior=args.prior)
    print(f"read {args.data}: {info['layout']}, shape {tuple(data.shape)} (Sy, Sx, Ky, Kx)"
          + (f"; agrees with the acquisition file on {', '.join(agreed)}" if agreed else ""))
    print(statement)
    for note in notes:
        logger.warning("%s", note)
    recon = method.fn(op, intensities.to(op.dtype), cfg, torch.Generator().manual_seed(args.seed))
    with atomic_path(args.out) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, recon.detach().float().cpu().numpy())
    print(f"{args.method}: {args.data} -> {args.out} (potential {tuple(recon.shape)} = (D, H, W), V*Angstrom, "
          f"{acquisition.n_slices} slices of {acquisition.slice_thickness:g} Å, {_pixels(op.sampling)} Å/px)")
    return 0


def _pixels(sampling) -> str:
    return f"{sampling[0]:.4g}" if abs(sampling[0] - sampling[1]) < 1e-12 else f"{sampling[0]:.4g}x{sampling[1]:.4g}"
