"""BraTS-like MRI volumes: synthetic subjects from the MNI152 template, and real BraTS2020.

Array convention
----------------
Every volume is ``(D, H, W)``: ``D`` axial slices from inferior to superior, ``H`` rows from
anterior to posterior, ``W`` columns from the patient's right to the patient's left (radiological
convention, as BraTS is usually shown), so ``plt.imshow(vol[d])`` is a standard axial view with
the nose at the top. Images are float32 in [0, 1]; the background outside the brain is exactly 0
(BraTS is skull-stripped).

Synthetic subjects
------------------
:func:`synthetic_subject` samples the ICBM 2009a nonlinear symmetric MNI152 template (1 mm) and
its grey/white-matter probability maps, which ship inside the nilearn wheel and are read
offline. The T1 template there is already skull-stripped, so ``brain = (T1 > 0)``; cerebrospinal
fluid is derived as ``CSF = clip(brain - GM - WM, 0, 1)`` (ventricles, sulci and the rim at the
brain surface). Each subject gets its own anatomy and texture:

* geometry: random rotation (up to 4-6 deg per axis), scale (0.90-1.00 globally, +-3 % per axis),
  translation (+-3 mm) and a smooth random displacement field (2.5 mm rms per component,
  correlation length 20 mm), plus the mass effect of its tumours (tissue pushed outwards);
* tissue: the template's partial-volume maps are sharpened (the template is an average of 152
  brains, hence blurrier than one brain) and their boundaries perturbed by band-limited random
  fields at the scale of cortical folding (wavelength about 8 mm);
* texture: band-limited random intensity fluctuations per tissue (wavelength about 4 mm);
* 1-2 tumours inside the cerebral white matter: irregular necrotic core (BraTS label 1),
  enhancing rim (4) and surrounding oedema (2) that spreads further in white matter;
* per-modality contrast (T1: WM > GM > CSF; T1ce: as T1 with a bright enhancing rim; T2: CSF
  bright, GM > WM; FLAIR: CSF dark, GM > WM, oedema bright), each with its own smooth
  multiplicative bias field (about 12 % rms);
* Rician noise: magnitude of complex Gaussian noise of std ``noise_std * max(image)`` added
  inside the brain mask only (the background stays exactly 0, as in BraTS).

Everything is generated directly on the output grid: the sampling positions of the output
voxels are mapped into the template (one trilinear ``grid_sample`` of a template box-filtered to
the output voxel size), smooth random fields are evaluated from a fixed set of random Fourier
coefficients (so geometry, bias and tumour shapes are the same subject at every resolution),
and only the band-limited folding/texture fields and the noise are drawn per output grid. The
field of view is that of BraTS, :data:`FOV_MM` = 155 x 240 x 240 mm centred on the brain, so
``shape = (155, 240, 240)`` gives 1 mm voxels and smaller shapes coarser voxels (thick slices
average the template over the slab) over the same field of view. The brain mask is where the
deformed, box-filtered template brain fraction exceeds 0.5; each image is divided by the 99.5th
percentile of its brain voxels and clipped to [0, 1].

>>> subject = synthetic_subject(0, (8, 32, 32))
>>> subject["flair"].shape, subject["flair"].dtype, subject["seg"].dtype
((8, 32, 32), dtype('float32'), dtype('uint8'))
>>> bool((subject["t1"][~subject["brain_mask"]] == 0).all())
True
"""
from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .. import paths
from ..io import InputValidationError, atomic_path, load_nifti

if TYPE_CHECKING:
    from ..config import MRIDataConfig

logger = logging.getLogger(__name__)

MODALITIES = ("t1", "t1ce", "t2", "flair")
#: Bump whenever a change of this module changes the generated volumes: invalidates caches.
GENERATOR_VERSION = 1
#: Field of view of the synthetic volumes along (D, H, W) in mm (that of BraTS at 1 mm).
FOV_MM = (155.0, 240.0, 240.0)

_TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
_BRATS_LAYOUT = (
    "expected layout: ROOT/BraTS20_Training_XXX/BraTS20_Training_XXX_{t1,t1ce,t2,flair}.nii.gz "
    "(and optionally _seg.nii.gz), one folder per subject"
)

# Relative intensities of the classes (CSF, GM, WM, necrosis, oedema, enhancing) per modality,
# before the per-subject jitter, bias field and [0, 1] normalisation.
_CLASSES = ("csf", "gm", "wm", "necrosis", "oedema", "enhancing")
_CONTRAST = {
    "t1": (0.30, 0.62, 0.85, 0.25, 0.50, 0.60),
    "t1ce": (0.30, 0.62, 0.85, 0.22, 0.52, 1.25),
    "t2": (1.00, 0.62, 0.45, 0.95, 0.85, 0.70),
    "flair": (0.15, 0.62, 0.48, 0.45, 1.00, 0.80),
}
# Texture amplitude of each class: fine texture (4 mm) and coarse heterogeneity (8 mm).
_TEXTURE_FINE = (0.03, 0.05, 0.03, 0.08, 0.03, 0.08)
_TEXTURE_COARSE = (0.0, 0.0, 0.0, 0.12, 0.04, 0.12)
# Log-odds gain of the folding-scale fields on the tissue maps, and the softmax temperature of
# the sharpening at 1 mm (rising to 1 = no sharpening at about 4 mm in-plane voxels).
_FOLD_GAIN = 0.4
_SHARPEN = 0.7


# --------------------------------------------------------------------------------------------
# template
# --------------------------------------------------------------------------------------------
def template_folder() -> Path:
    """Folder inside the installed nilearn package that holds the MNI152 2009a files.

    Found with :func:`importlib.util.find_spec`, without importing nilearn.

    Raises
    ------
    ImportError
        nilearn is not installed, or its wheel lacks the template files.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "synthetic brain volumes need the MNI152 template shipped with nilearn, which is not "
            "installed: pip install 'paperlib[data]'"
        )
    folders = [Path(loc) / "datasets" / "data" for loc in spec.submodule_search_locations]
    for folder in folders:
        if all((folder / name).is_file() for name in _TEMPLATE_FILES.values()):
            return folder
    raise ImportError(
        f"nilearn is installed but {folders[0]} lacks {sorted(_TEMPLATE_FILES.values())}; "
        "reinstall it: pip install 'paperlib[data]'"
    )


@dataclass(frozen=True)
class _Template:
    channels: np.ndarray  # (3, K, J, I) float32: brain fraction, GM, WM in [0, 1]; (z, y, x) order
    origin: np.ndarray  # (3,) world mm (x, y, z) of voxel (i, j, k) = 0 of the cropped arrays
    spacing: np.ndarray  # (3,) mm per voxel along (x, y, z)
    centre: np.ndarray  # (3,) world mm (x, y, z): centre of the brain's bounding box
    lesion_sites: np.ndarray  # (n, 3) world mm (x, y, z): cerebral white-matter voxels


@functools.lru_cache(maxsize=1)
def _template() -> _Template:
    folder = template_folder()
    vols, affine = {}, None
    for key, name in _TEMPLATE_FILES.items():
        vols[key], affine, _ = load_nifti(folder / name)
    lin = affine[:3, :3]
    if not np.allclose(lin, np.diag(np.diag(lin))) or (np.diag(lin) <= 0).any():
        raise InputValidationError(f"{folder}: expected an axis-aligned RAS template, got {affine}")
    brain = (vols["t1"] > 0).astype(np.float32)
    gm = np.minimum(vols["gm"] / 255.0, brain)
    wm = np.minimum(vols["wm"] / 255.0, brain)
    # crop to the brain with a margin (grid_sample pads with zeros outside anyway)
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        nz = np.flatnonzero(brain.any(axis=other))
        lo.append(max(int(nz[0]) - 8, 0))
        hi.append(min(int(nz[-1]) + 9, brain.shape[axis]))
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    channels = np.stack([brain[box], gm[box], wm[box]]).transpose(0, 3, 2, 1)  # -> (c, z, y, x)
    spacing = np.diag(lin).copy()
    origin = affine[:3, 3] + spacing * np.asarray(lo)
    ijk = np.argwhere(brain[box] > 0)
    centre = origin + spacing * (ijk.min(0) + ijk.max(0)) / 2
    # tumour sites: deep cerebral white matter, above the cerebellum (world z > 0 mm)
    sites = origin + spacing * np.argwhere(wm[box] > 0.8)[::7]
    sites = sites[sites[:, 2] > 0]
    return _Template(np.ascontiguousarray(channels), origin, spacing, centre, sites)


@functools.lru_cache(maxsize=2)
def _filtered_template(kernel: tuple[int, int, int]) -> torch.Tensor:
    """Template channels box-filtered by ``kernel`` (odd, template voxels along z, y, x).

    Returns (1, 3, K, J, I) float32: the anti-aliasing (partial volume) filter for output voxels
    of about ``kernel`` mm.
    """
    data = torch.from_numpy(_template().channels)
    for axis, k in enumerate(kernel):
        if k > 1:  # running mean by differences of a cumulative sum, zeros outside
            dim = axis + 1
            pad = [0] * 6
            pad[2 * (2 - axis)] = k // 2 + 1
            pad[2 * (2 - axis) + 1] = k // 2
            total = torch.cumsum(F.pad(data, pad), dim=dim)
            n = data.shape[dim]
            data = (total.narrow(dim, k, n) - total.narrow(dim, 0, n)) / k
    return data[None].contiguous()


# --------------------------------------------------------------------------------------------
# random fields
# --------------------------------------------------------------------------------------------
def _axes_mm(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres of the output voxels in mm: (z up, y anterior, x towards the patient's right)."""
    voxel = np.asarray(FOV_MM) / np.asarray(shape)
    centred = [(np.arange(n) - (n - 1) / 2) * v for n, v in zip(shape, voxel)]
    return centred[0], -centred[1], -centred[2]


def _smooth_fields(
    rng: np.random.Generator, n: int, shape: tuple[int, int, int], correlation_mm: float
) -> torch.Tensor:
    """``n`` smooth Gaussian random fields of unit variance on the output grid.

    A separable real Fourier series over a box 1.25 x :data:`FOV_MM` with a Gaussian spectrum
    (Gaussian autocorrelation of std ``correlation_mm``). The random coefficients depend only on
    ``rng`` and ``correlation_mm``, not on ``shape``: the same field sampled at any resolution.

    Returns
    -------
    torch.Tensor, (n, D, H, W) float32.
    """
    nu_c = 1.0 / (math.sqrt(2.0) * math.pi * correlation_mm)  # cycles/mm
    bases, freqs = [], []
    for coords, fov in zip(_axes_mm(shape), FOV_MM):
        period = 1.25 * fov
        f = np.arange(1, max(1, math.ceil(2.5 * nu_c * period)) + 1) / period
        phase = 2 * np.pi * coords[:, None] * f[None, :]
        basis = np.concatenate([np.ones_like(coords)[:, None], np.cos(phase), np.sin(phase)], axis=1)
        bases.append(torch.from_numpy(basis.astype(np.float32)))
        freqs.append(np.concatenate([[0.0], f, f]))
    nu2 = freqs[0][:, None, None] ** 2 + freqs[1][None, :, None] ** 2 + freqs[2][None, None, :] ** 2
    weight = np.exp(-0.5 * nu2 / nu_c**2)
    # point variance = sum of w^2 over distinct frequency triples (cos^2 + sin^2 = 1 per axis)
    distinct = tuple(slice(0, (len(f) + 1) // 2) for f in freqs)
    weight /= np.sqrt((weight[distinct] ** 2).sum())
    coef = torch.from_numpy((rng.standard_normal((n, *weight.shape)) * weight).astype(np.float32))
    bz, by, bx = bases
    field = torch.matmul(by, torch.matmul(coef, bx.T))  # (n, A, H, W)
    out = torch.matmul(bz, field.reshape(n, field.shape[1], -1))  # (n, D, H * W)
    return out.reshape(n, *shape)


def _band_fields(
    rng: np.random.Generator,
    shape: tuple[int, int, int],
    voxel_mm: np.ndarray,
    wavelengths_mm: Sequence[float],
    bandwidth: float = 0.5,
) -> torch.Tensor:
    """Band-limited Gaussian random fields on the output grid (one per wavelength).

    White noise filtered with a log-normal band ``exp(-ln(nu * lambda)^2 / (2 bw^2))`` around
    ``1 / lambda`` cycles/mm. Each is scaled to unit variance in the continuum, so on a coarse
    grid the unresolved part of the band is averaged out (lower variance), as in a real image.

    Parameters
    ----------
    shape : (D, H, W) of the grid; voxel_mm : (3,) its voxel size in mm.

    Returns
    -------
    torch.Tensor, (len(wavelengths_mm), D, H, W) float32.
    """
    voxel = np.asarray(voxel_mm, dtype=float)
    white = torch.from_numpy(rng.standard_normal((len(wavelengths_mm), *shape), dtype=np.float32))
    spectrum = torch.fft.rfftn(white, dim=(-3, -2, -1))
    fz = torch.fft.fftfreq(shape[0], float(voxel[0]))[:, None, None]
    fy = torch.fft.fftfreq(shape[1], float(voxel[1]))[None, :, None]
    fx = torch.fft.rfftfreq(shape[2], float(voxel[2]))[None, None, :]
    nu = torch.sqrt(fz**2 + fy**2 + fx**2).clamp_min(1e-6)
    filters = []
    for lam in wavelengths_mm:
        nu0 = 1.0 / lam
        continuum = 4 * math.pi * nu0**3 * bandwidth * math.sqrt(math.pi) * math.exp(9 * bandwidth**2 / 4)
        band = torch.exp(-0.5 * (torch.log(nu / nu0) / bandwidth) ** 2)
        filters.append(band / math.sqrt(float(np.prod(voxel)) * continuum))
    filtered = spectrum * torch.stack(filters).to(spectrum.dtype)
    return torch.fft.irfftn(filtered, s=shape, dim=(-3, -2, -1)).contiguous()


def _rotation(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) from angles about x, y, z in degrees."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


# --------------------------------------------------------------------------------------------
# synthetic subjects
# --------------------------------------------------------------------------------------------
def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 2:
        raise ValueError(f"shape: expected three sizes (D, H, W) >= 2, got {shape}")
    return shape  # type: ignore[return-value]


@dataclass(frozen=True)
class _Lesion:
    centre: np.ndarray  # (3,) template world mm (x, y, z)
    radius: float  # mm, outer edge of the enhancing rim
    core: float  # necrotic core radius / radius (0: none)
    oedema: float  # oedema outer radius / radius (in grey matter; further in white matter)
    roughness: float  # amplitude of the random boundary displacement / radius
    mass: float  # mass effect: fraction by which tissue at the centre is pushed away


def _draw_lesions(rng: np.random.Generator, sites: np.ndarray) -> list[_Lesion]:
    """1 (65 %) or 2 tumours centred on template white-matter ``sites`` (n, 3) mm."""
    lesions = []
    for k in range(1 + int(rng.random() < 0.35)):
        radius = rng.uniform(10.0, 22.0) if k == 0 else rng.uniform(7.0, 14.0)
        centre = sites[rng.integers(len(sites))]
        far = np.linalg.norm(sites - centre, axis=1) > 2.5 * (radius + 14.0)
        sites = sites[far] if far.any() else sites  # a second tumour away from the first
        lesions.append(_Lesion(centre, radius, core=rng.uniform(0.0, 0.7), oedema=rng.uniform(1.4, 2.2),
                               roughness=rng.uniform(0.12, 0.25), mass=rng.uniform(0.2, 0.45)))
    return lesions


@dataclass(frozen=True)
class AnatomySpread:
    """How far a synthetic subject's anatomy strays from the template (:func:`_template_positions`):
    rotations up to ``degrees`` about (x, y, z), an overall scale uniform in ``scale`` times a
    per-axis factor ``1 +- axis_scale``, and a smooth displacement of ``deformation_mm`` rms."""

    degrees: tuple[float, float, float]
    scale: tuple[float, float]
    axis_scale: float
    deformation_mm: float


#: ``anatomy`` of :func:`synthetic_tissues`: ``"template"``, every synthetic subject of this module
#: (Table 1's data; the general MRI prior's slabs); ``"wide"`` (:mod:`paperlib.data.randomized`):
#: heads of other sizes, shapes and tilts, the same draws scaled (so one seed is one subject's
#: lesions and tissue either way).
ANATOMY_SPREADS = {
    "template": AnatomySpread(degrees=(4.0, 4.0, 6.0), scale=(0.90, 1.00), axis_scale=0.03, deformation_mm=2.5),
    "wide": AnatomySpread(degrees=(15.0, 15.0, 15.0), scale=(0.85, 1.10), axis_scale=0.08, deformation_mm=5.0),
}


def _template_positions(
    rng: np.random.Generator, shape: tuple[int, int, int], centre: np.ndarray,
    spread: AnatomySpread = ANATOMY_SPREADS["template"],
) -> torch.Tensor:
    """Template world positions (3, D, H, W) mm (x, y, z) of the output voxels.

    ``centre + R diag(1 / s) (p + u(p)) + t`` for output positions ``p`` (mm from the centre of
    the field of view): rotation ``R``, per-axis scale ``s`` (the subject's brain is ``s`` times
    the template's), translation ``t`` and a smooth displacement field ``u``, their ranges from
    ``spread``.
    """
    angles = rng.uniform(-1, 1, 3) * np.array(spread.degrees)  # degrees about x, y, z
    scale = rng.uniform(*spread.scale) * (1 + rng.uniform(-spread.axis_scale, spread.axis_scale, 3))
    shift = rng.uniform(-3.0, 3.0, 3)
    matrix = torch.from_numpy((_rotation(angles) / scale[None, :]).astype(np.float32))
    points = spread.deformation_mm * _smooth_fields(rng, 3, shape, correlation_mm=20.0)  # u: rms in mm
    z, y, x = (torch.from_numpy(a.astype(np.float32)) for a in _axes_mm(shape))
    points[0] += x[None, None, :]
    points[1] += y[None, :, None]
    points[2] += z[:, None, None]
    pos = torch.matmul(matrix, points.reshape(3, -1)).reshape(3, *shape)
    return pos.add_(torch.from_numpy((centre + shift).astype(np.float32))[:, None, None, None])


def _sample_template(pos: torch.Tensor, voxel: np.ndarray) -> torch.Tensor:
    """Brain fraction, GM and WM (3, D, H, W) at template positions ``pos`` (3, D, H, W) mm.

    The template is first box-filtered to the output voxel size ``voxel`` (D, H, W) mm (partial
    volume; no aliasing at coarse grids), then sampled trilinearly. ``pos`` is overwritten.
    """
    tpl = _template()
    kernel = tuple(int(2 * round((v / s - 1) / 2) + 1) for v, s in zip(voxel, tpl.spacing[::-1]))
    data = _filtered_template(kernel)
    size = data.shape[2:][::-1]  # (I, J, K) along (x, y, z)
    for a in range(3):  # world mm -> grid_sample's [-1, 1] (align_corners=True)
        pos[a].sub_(float(tpl.origin[a])).mul_(2.0 / (float(tpl.spacing[a]) * (size[a] - 1))).sub_(1.0)
    grid = pos.permute(1, 2, 3, 0)[None]
    return F.grid_sample(data, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]


def _tumour_maps(
    lesions: Sequence[_Lesion],
    distances: Sequence[torch.Tensor],
    irregular: torch.Tensor,
    prob: torch.Tensor,
    edge_mm: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Partial volumes and BraTS labels of the tumours at n brain voxels.

    Each tumour is a set of nested shells of ``level = distance / radius + roughness * g``
    (``g``: a smooth random field): necrotic core below ``core``, enhancing rim up to 1, oedema
    up to ``oedema`` (reaching further in white matter, never into CSF).

    Parameters
    ----------
    distances : per lesion, (n,) mm from its centre (template space, before the mass effect).
    irregular : (2, n) unit-variance smooth fields.
    prob : (3, n) CSF, GM, WM fractions of the healthy tissue.
    edge_mm : width of the soft edges, mm.

    Returns
    -------
    necrosis, oedema, enhancing : (n,) float32 fractions, summing to <= 1.
    labels : (n,) uint8: 0, 1 (necrotic core), 2 (oedema), 4 (enhancing).
    """
    n = prob.shape[1]
    necrosis, tumour, oedema = torch.zeros(3, n)  # tumour = necrosis + enhancing
    labels = torch.zeros(n, dtype=torch.uint8)
    for les, dist, g in zip(lesions, distances, irregular):
        level = dist / les.radius + les.roughness * g
        level_oedema = level * (1 - 0.25 * prob[2])
        width = edge_mm / les.radius
        if les.core > 0:
            necrosis = torch.maximum(necrosis, torch.sigmoid((les.core - level) / width))
        s_tumour = torch.sigmoid((1 - level) / width)
        s_oedema = torch.sigmoid((les.oedema - level_oedema) / width) * (1 - prob[0])
        tumour = torch.maximum(tumour, s_tumour)
        oedema = torch.maximum(oedema, (1 - s_tumour) * s_oedema)
        labels[(level_oedema < les.oedema) & (prob[0] < 0.5) & (labels == 0)] = 2
        labels[(level < 1) & (labels != 1)] = 4
        labels[level < les.core] = 1
    return necrosis, torch.minimum(oedema, 1 - tumour), tumour - necrosis, labels


@dataclass(frozen=True)
class _BrainVoxels:
    """The voxels inside a subject's brain mask: every step after the geometry works on these only.

    ``mask`` (D, H, W) bool is where the deformed, box-filtered template brain fraction exceeds
    0.5; ``inside`` (n,) holds the flat indices of its voxels (C order).
    """

    mask: torch.Tensor
    inside: torch.Tensor

    @classmethod
    def from_fraction(cls, fraction: torch.Tensor) -> "_BrainVoxels":
        mask = fraction > 0.5
        return cls(mask, torch.nonzero(mask.flatten())[:, 0])

    @property
    def n(self) -> int:
        return int(self.inside.numel())

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """(..., D, H, W) -> (..., n): the values at the brain voxels."""
        return t.reshape(*t.shape[:-3], -1)[..., self.inside]

    def bounding_box(self) -> tuple[slice, slice, slice]:
        """The smallest box holding the brain (the whole grid when the mask is empty)."""
        if not self.n:
            return (slice(None),) * 3  # type: ignore[return-value]
        where = torch.nonzero(self.mask)
        return tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(where.min(0).values, where.max(0).values))


def _check_simulation_args(shape: Sequence[int], modalities: Sequence[str], noise_std: float) -> tuple[int, int, int]:
    shape = _check_shape(shape)
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"modality: expected one of {MODALITIES}, got {unknown}")
    if noise_std < 0:
        raise ValueError(f"noise_std: expected >= 0, got {noise_std}")
    return shape


def _mass_effect(pos: torch.Tensor, lesion: _Lesion) -> tuple[torch.Tensor, torch.Tensor]:
    """Push the template positions ``pos`` (3, D, H, W) mm away from a tumour's centre.

    A position at distance ``r`` from the centre moves to ``centre + (1 - mass exp(-r^2 / (2 (1.3
    radius)^2))) (pos - centre)``: the template tissue near the tumour is sampled closer to its
    centre, so the subject's tissue appears pushed outwards. ``pos`` is overwritten.

    Returns
    -------
    pos : (3, D, H, W) the moved positions; distance : (D, H, W) ``r`` in mm, before the move.
    """
    centre = torch.from_numpy(lesion.centre.astype(np.float32))[:, None, None, None]
    offset = pos - centre
    dist2 = (offset**2).sum(0)
    squeeze = 1 - lesion.mass * torch.exp(-dist2 / (2 * (1.3 * lesion.radius) ** 2))
    return offset.mul_(squeeze).add_(centre), dist2.sqrt()


def _deformed_anatomy(
    rng_geom: np.random.Generator, rng_lesion: np.random.Generator, shape: tuple[int, int, int], voxel: np.ndarray,
    spread: AnatomySpread = ANATOMY_SPREADS["template"],
) -> tuple[torch.Tensor, list[_Lesion], list[torch.Tensor]]:
    """Step 1, anatomy: the template sampled through the subject's deformation and its tumours' mass effect.

    Returns
    -------
    sampled : (3, D, H, W) float32 brain fraction, GM and WM of the subject (partial volumes).
    lesions : the subject's tumours (:func:`_draw_lesions`, first draws of ``rng_lesion``).
    distances : per tumour, (D, H, W) mm from its centre in template space.
    """
    tpl = _template()
    pos = _template_positions(rng_geom, shape, tpl.centre, spread)
    lesions = _draw_lesions(rng_lesion, tpl.lesion_sites)
    distances = []
    for lesion in lesions:
        pos, distance = _mass_effect(pos, lesion)
        distances.append(distance)
    return _sample_template(pos, voxel), lesions, distances


def _healthy_tissue(
    rng_tissue: np.random.Generator,
    sampled: torch.Tensor,
    voxels: _BrainVoxels,
    voxel: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Step 2, tissue: sharpen the population-average tissue maps and perturb their boundaries.

    CSF = brain - GM - WM; the log-odds of (CSF, GM, WM) get folding-scale random fields (8 mm,
    gain :data:`_FOLD_GAIN`) and a softmax at temperature :data:`_SHARPEN` (towards 1 at coarse
    voxels). The band-limited fields (two at 8 mm, one at 4 mm) are drawn over the brain's
    bounding box only.

    Returns
    -------
    brain : (n,) brain fraction in [0, 1]; prob : (3, n) CSF, GM, WM fractions of the tissue;
    fold : (n,) the folding field also used as coarse texture; fine : (n,) the 4 mm texture field.
    """
    brain = voxels.gather(sampled[0]).clamp(0, 1)
    gm, wm = voxels.gather(sampled[1]), voxels.gather(sampled[2])
    prob = torch.stack([(brain - gm - wm).clamp_min(0), gm, wm]) / brain  # CSF, GM, WM
    shape = tuple(voxels.mask.shape)
    box = voxels.bounding_box()
    box_shape = tuple(len(range(*b.indices(n))) for b, n in zip(box, shape))
    fields = torch.zeros((3, *shape))
    fields[(slice(None), *box)] = _band_fields(rng_tissue, box_shape, voxel, (8.0, 8.0, 4.0))
    fold_a, fold_b, fine = voxels.gather(fields)
    temperature = min(max(_SHARPEN + 0.2 * (float(voxel[1:].mean()) - 1.0), _SHARPEN), 1.0)
    logits = torch.log(prob + 0.02)
    logits += _FOLD_GAIN * torch.stack([fold_b, fold_a, -fold_a])
    return brain, torch.softmax(logits / temperature, dim=0), fold_a, fine


def _with_tumours(
    rng_lesion: np.random.Generator,
    lesions: Sequence[_Lesion],
    distances: Sequence[torch.Tensor],
    brain: torch.Tensor,
    prob: torch.Tensor,
    voxels: _BrainVoxels,
    voxel: np.ndarray,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 3, lesions: the tumours' necrotic core, enhancing rim and oedema replace healthy tissue.

    Tumour boundaries are made irregular by two smooth fields (6 mm) drawn from ``rng_lesion``
    after the tumours themselves; edges are soft over half a voxel (:func:`_tumour_maps`).

    Returns
    -------
    weights : (6, n) partial volumes of :data:`_CLASSES` times the brain fraction.
    labels : (n,) uint8 BraTS labels.
    """
    irregular = voxels.gather(_smooth_fields(rng_lesion, 2, tuple(voxels.mask.shape), correlation_mm=6.0))
    edge_mm = 0.5 * float(np.exp(np.log(voxel).mean()))  # soft edges half a voxel wide
    necrosis, oedema, enhancing, labels = _tumour_maps(
        lesions, [voxels.gather(d) for d in distances], irregular, prob, edge_mm
    )
    lesion = necrosis + oedema + enhancing
    weights = torch.cat([prob * (1 - lesion), torch.stack([necrosis, oedema, enhancing])]) * brain
    return weights, labels


def _contrast_and_bias(
    rng_contrast: np.random.Generator, voxels: _BrainVoxels
) -> tuple[np.ndarray, torch.Tensor]:
    """Step 4, contrast: per-modality class intensities (4 % jitter) and a smooth bias field each.

    Returns
    -------
    contrast : (len(MODALITIES), len(_CLASSES)) float64 intensities, :data:`_CONTRAST` jittered.
    bias : (len(MODALITIES), n) multiplicative bias ``exp(0.12 g)`` (g: 50 mm smooth field), about 12 % rms.
    """
    jitter = 1 + 0.04 * rng_contrast.standard_normal((len(MODALITIES), len(_CLASSES)))
    contrast = np.array([_CONTRAST[m] for m in MODALITIES]) * jitter
    bias = voxels.gather(_smooth_fields(rng_contrast, len(MODALITIES), tuple(voxels.mask.shape), correlation_mm=50.0))
    return contrast, torch.exp(0.12 * bias)


def _textured(weights: torch.Tensor, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
    """Step 5, texture: each class's partial volume (6, n) scaled by ``1 + a_fine fine + a_coarse coarse``."""
    texture = torch.tensor(_TEXTURE_FINE)[:, None] * fine + torch.tensor(_TEXTURE_COARSE)[:, None] * coarse
    return weights * (1 + texture)


def _noisy_normalised(
    values: np.ndarray, rng_noise: np.random.Generator, noise_std: float, voxels: _BrainVoxels
) -> np.ndarray:
    """Step 6, noise: Rician noise at the brain voxels, division by the 99.5th percentile, clip to [0, 1].

    ``values`` (n,) float32 are the noiseless intensities at the brain voxels; the noise is the
    magnitude of complex Gaussian noise of std ``noise_std * max(values)``. Returns the (D, H, W)
    float32 volume, exactly 0 outside the brain.
    """
    volume = np.zeros(tuple(voxels.mask.shape), np.float32)
    if not voxels.n:
        return volume
    if noise_std > 0:
        sigma = np.float32(noise_std * float(values.max()))
        noise = rng_noise.standard_normal((2, voxels.n), dtype=np.float32) * sigma
        values = np.hypot(values + noise[0], noise[1])
    high = max(float(np.percentile(values, 99.5)), 1e-12)
    volume.flat[voxels.inside.numpy()] = np.clip(values / high, 0.0, 1.0)
    return volume


def _simulate(
    seed: int,
    shape: tuple[int, int, int],
    noise_std: float = 0.01,
    modalities: Sequence[str] = MODALITIES,
    *,
    tissues: bool = False,
    anatomy: str = "template",
) -> dict[str, np.ndarray]:
    """One synthetic subject; only the listed modalities are rendered.

    The steps, each its own function: anatomy (:func:`_deformed_anatomy`), healthy tissue
    (:func:`_healthy_tissue`), tumours (:func:`_with_tumours`), contrast and bias
    (:func:`_contrast_and_bias`), texture (:func:`_textured`), noise and normalisation
    (:func:`_noisy_normalised`). Each draws from its own random stream, all spawned from
    ``seed`` in a fixed order, so a modality's image does not depend on which other modalities
    are rendered. With ``tissues=True`` the result also holds ``"tissues"``: (6, D, H, W) float32
    partial volumes of ``_CLASSES`` (for tests). Positions are computed on the whole grid;
    everything else only at the brain voxels.
    """
    shape = _check_simulation_args(shape, modalities, noise_std)
    streams = np.random.SeedSequence(int(seed)).spawn(4 + len(MODALITIES))
    rng_geom, rng_lesion, rng_tissue, rng_contrast = (np.random.default_rng(s) for s in streams[:4])
    voxel = np.asarray(FOV_MM) / np.asarray(shape)

    if anatomy not in ANATOMY_SPREADS:
        raise ValueError(f"anatomy: expected one of {sorted(ANATOMY_SPREADS)}, got {anatomy!r}")
    sampled, lesions, distances = _deformed_anatomy(rng_geom, rng_lesion, shape, voxel, ANATOMY_SPREADS[anatomy])
    voxels = _BrainVoxels.from_fraction(sampled[0])
    brain, prob, fold, fine = _healthy_tissue(rng_tissue, sampled, voxels, voxel)
    del sampled
    weights, labels = _with_tumours(rng_lesion, lesions, distances, brain, prob, voxels, voxel)
    del distances, prob
    contrast, bias = _contrast_and_bias(rng_contrast, voxels)
    textured = _textured(weights, fine, fold)
    out: dict[str, np.ndarray] = {}
    for m, modality in enumerate(MODALITIES):
        if modality in modalities:
            values = torch.tensordot(torch.from_numpy(contrast[m].astype(np.float32)), textured, dims=1) * bias[m]
            out[modality] = _noisy_normalised(values.numpy(), np.random.default_rng(streams[4 + m]), noise_std, voxels)
    flat = voxels.inside.numpy()
    out["seg"] = np.zeros(shape, np.uint8)
    out["seg"].flat[flat] = labels.numpy()
    out["brain_mask"] = voxels.mask.numpy()
    if tissues:
        out["tissues"] = np.zeros((len(_CLASSES), *shape), np.float32)
        out["tissues"].reshape(len(_CLASSES), -1)[:, flat] = weights.numpy()
    return out


def synthetic_subject(
    seed: int, shape: tuple[int, int, int], *, noise_std: float = 0.01
) -> dict[str, np.ndarray]:
    """One synthetic BraTS-like subject (all four modalities, labels and brain mask).

    Parameters
    ----------
    seed : int
        Determines the subject entirely (anatomy, tumours, contrast, noise).
    shape : (D, H, W)
        Output grid over the field of view :data:`FOV_MM` (155 x 240 x 240 mm): voxel size is
        ``FOV_MM / shape`` mm. D: inferior -> superior, H: anterior -> posterior, W: right -> left.
    noise_std : float
        Rician noise std as a fraction of the image maximum, inside the brain mask only.

    Returns
    -------
    dict
        ``"t1", "t1ce", "t2", "flair"``: (D, H, W) float32 in [0, 1], each divided by the
        99.5th percentile of its brain voxels and clipped, exactly 0 outside the brain;
        ``"seg"``: (D, H, W) uint8 BraTS labels (0 background/healthy, 1 necrotic core,
        2 oedema, 4 enhancing tumour); ``"brain_mask"``: (D, H, W) bool.

    Examples
    --------
    >>> s = synthetic_subject(3, (8, 32, 32))
    >>> sorted(s)
    ['brain_mask', 'flair', 'seg', 't1', 't1ce', 't2']
    >>> float(s["t2"].min()) >= 0.0 and float(s["t2"].max()) <= 1.0
    True
    """
    return _simulate(seed, shape, noise_std, MODALITIES)


def synthetic_tissues(seed: int, shape: tuple[int, int, int], *,
                      anatomy: str = "template") -> tuple[np.ndarray, np.ndarray]:
    """The partial-volume tissue maps of synthetic subject ``seed`` on a ``shape`` grid (no contrast).

    The anatomy, tissue and tumour steps of :func:`synthetic_subject` without its fixed contrasts:
    the label maps from which :mod:`paperlib.data.randomized` draws images of any contrast.
    ``anatomy``: a key of :data:`ANATOMY_SPREADS` (how far the head strays from the template).

    Returns
    -------
    tissues : (6, D, H, W) float32 partial volumes of CSF, GM, WM, necrosis, oedema, enhancing
        tumour (their sum is the brain fraction, 0 outside the brain).
    voxel_mm : (3,) float64 voxel size ``FOV_MM / shape``.

    >>> t, v = synthetic_tissues(0, (8, 32, 32))
    >>> t.shape, bool(t.sum(0).max() <= 1 + 1e-5), v.tolist()
    ((6, 8, 32, 32), True, [19.375, 7.5, 7.5])
    """
    out = _simulate(seed, shape, 0.0, ("t1",), tissues=True, anatomy=anatomy)
    return out["tissues"], np.asarray(FOV_MM) / np.asarray(_check_shape(shape))


# --------------------------------------------------------------------------------------------
# volumes, splits and caching
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BrainVolumes:
    """A stack of single-modality volumes with their brain masks.

    Attributes
    ----------
    images : torch.Tensor, (N, D, H, W) float32 in [0, 1]
    head_masks : torch.Tensor, (N, D, H, W) bool
        Brain mask (BraTS is skull-stripped): where SSIM "inside the head" is computed.
    ids : tuple of str
        ``"synthetic-<seed>"`` or the BraTS subject folder name, e.g. ``"BraTS20_Training_001"``.

    Examples
    --------
    >>> vols = BrainVolumes(torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 8, 8, dtype=torch.bool), ("a", "b"))
    >>> len(vols), tuple(vols.images.shape[1:])
    (2, (4, 8, 8))
    """

    images: torch.Tensor
    head_masks: torch.Tensor
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        shape = tuple(self.images.shape)
        if len(shape) != 4 or tuple(self.head_masks.shape) != shape or len(self.ids) != shape[0]:
            raise ValueError(
                f"BrainVolumes: expected images and head_masks of one shape (N, D, H, W) and N ids, "
                f"got {tuple(self.images.shape)}, {tuple(self.head_masks.shape)} and {len(self.ids)} ids"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])


_SPLITS = ("train", "val", "test")


def _split_seeds(cfg: MRIDataConfig, split: str) -> range:
    ranges = {}
    for s in _SPLITS:
        start = getattr(cfg, f"{s}_seed")
        ranges[s] = range(start, start + getattr(cfg, f"n_{s}"))
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if ranges[a].start < ranges[b].stop and ranges[b].start < ranges[a].stop:
            raise ValueError(
                f"mri config: the seeds of the {a} split ({ranges[a].start}..{ranges[a].stop - 1}) "
                f"and of the {b} split ({ranges[b].start}..{ranges[b].stop - 1}) overlap; "
                f"move {a}_seed or {b}_seed apart"
            )
    return ranges[split]


def _cache_file(cfg: MRIDataConfig, split: str, seeds: range) -> Path:
    try:
        nilearn_version = importlib.metadata.version("nilearn")
    except importlib.metadata.PackageNotFoundError:
        nilearn_version = "unknown"
    key = dict(
        generator=GENERATOR_VERSION, fov_mm=FOV_MM, shape=list(cfg.shape), modality=cfg.modality,
        seeds=[seeds.start, seeds.stop], noise_std=float(cfg.noise_std), nilearn=nilearn_version,
    )
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return paths.cache_dir() / "brain" / f"synthetic-{cfg.modality}-{split}-{digest}.npz"


def read_cache(path: Path, expected: tuple[int, ...]) -> BrainVolumes | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as archive:
            images, masks, ids = archive["images"], archive["head_masks"], archive["ids"]
        if (images.shape, masks.shape, images.dtype, masks.dtype) != (expected, expected, np.float32, bool):
            raise ValueError(f"arrays of shape {images.shape} / {masks.shape}, expected {expected}")
        return BrainVolumes(torch.from_numpy(images), torch.from_numpy(masks), tuple(str(i) for i in ids))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        logger.warning("cache %s unreadable (%s): regenerating", path, exc)
        return None


def load_split(
    cfg: MRIDataConfig, split: Literal["train", "val", "test"], *, progress: bool = False
) -> BrainVolumes:
    """The volumes of one split of a profile's MRI data, in modality ``cfg.modality``.

    ``cfg.source == "synthetic"``: subject ``i`` of the split is :func:`synthetic_subject` with
    seed ``cfg.<split>_seed + i`` (``cfg.n_<split>`` subjects, noise ``cfg.noise_std``), so splits
    are disjoint by seed. The stacked split is cached in
    ``paths.cache_dir() / "brain"`` under a hash of every generation parameter (and
    :data:`GENERATOR_VERSION`); an unreadable cache file is regenerated.

    ``cfg.source == "brats"``: the BraTS2020 subjects under ``$PAPERLIB_DATA``, sorted, split by
    a permutation seeded with ``cfg.train_seed`` (first ``n_train``, next ``n_val``, next
    ``n_test``; each split sorted), loaded with :func:`load_brats` at ``cfg.shape``.

    Returns
    -------
    BrainVolumes with images (n_<split>, *cfg.shape).

    Raises
    ------
    ValueError : unknown split, overlapping seed ranges, or fewer BraTS subjects than requested.
    FileNotFoundError : ``$PAPERLIB_DATA`` unset or a BraTS file missing (source ``"brats"``).
    """
    if split not in _SPLITS:
        raise ValueError(f"split: expected one of {_SPLITS}, got {split!r}")
    if cfg.source == "brats":
        return _load_brats_split(cfg, split, progress)
    from tqdm.auto import tqdm

    seeds = _split_seeds(cfg, split)
    shape = tuple(cfg.shape)
    path = _cache_file(cfg, split, seeds)
    cached = read_cache(path, (len(seeds), *shape))
    if cached is not None:
        logger.info("loaded %s split (%d volumes) from %s", split, len(cached), path)
        return cached
    images = np.empty((len(seeds), *shape), np.float32)
    masks = np.empty((len(seeds), *shape), bool)
    for n, seed in enumerate(tqdm(seeds, desc=f"brain {split}", disable=not progress)):
        subject = _simulate(seed, shape, cfg.noise_std, (cfg.modality,))
        images[n], masks[n] = subject[cfg.modality], subject["brain_mask"]
    ids = tuple(f"synthetic-{seed}" for seed in seeds)
    with atomic_path(path) as tmp:
        np.savez(tmp, images=images, head_masks=masks, ids=np.array(ids))
    logger.info("generated %s split (%d volumes) into %s", split, len(ids), path)
    return BrainVolumes(torch.from_numpy(images), torch.from_numpy(masks), ids)


# --------------------------------------------------------------------------------------------
# real BraTS2020
# --------------------------------------------------------------------------------------------
def _brats_subjects(root: Path) -> list[str]:
    if not root.is_dir():
        raise FileNotFoundError(f"BraTS root {root}: no such directory; {_BRATS_LAYOUT}")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("BraTS"))
    if not names:
        raise FileNotFoundError(f"BraTS root {root}: no BraTS* subject folders in it; {_BRATS_LAYOUT}")
    return names


def _load_brats_split(cfg: MRIDataConfig, split: str, progress: bool) -> BrainVolumes:
    root = paths.data_dir()
    if root is None:
        raise FileNotFoundError(
            "mri.source is 'brats' but $PAPERLIB_DATA is not set: set it to the folder holding the "
            "BraTS20_Training_XXX/ directories (e.g. .../MICCAI_BraTS2020_TrainingData)"
        )
    names = _brats_subjects(root)
    wanted = cfg.n_train + cfg.n_val + cfg.n_test
    if len(names) < wanted:
        raise ValueError(
            f"BraTS root {root}: {len(names)} subjects found, but the profile asks for {wanted} "
            f"(n_train={cfg.n_train} + n_val={cfg.n_val} + n_test={cfg.n_test})"
        )
    order = np.random.default_rng(cfg.train_seed).permutation(len(names))
    start = {"train": 0, "val": cfg.n_train, "test": cfg.n_train + cfg.n_val}[split]
    picked = sorted(names[i] for i in order[start:start + getattr(cfg, f"n_{split}")])
    return load_brats(root, cfg.modality, shape=tuple(cfg.shape), subjects=picked, progress=progress)


def _brats_volume(path: Path, shape: tuple[int, int, int] | None) -> np.ndarray:
    """Read one BraTS modality file as a (D, H, W) float32 array (not normalised)."""
    import nibabel.orientations as ornt

    data, affine, _ = load_nifti(path)
    # voxel axes -> (L, P, S); BraTS files (affine diag(-1, -1, 1)) are already L, P, S
    transform = ornt.ornt_transform(ornt.io_orientation(affine), ornt.axcodes2ornt(("L", "P", "S")))
    data = ornt.apply_orientation(data, transform)
    # (x: R->L, y: A->P, z: I->S) -> (D: I->S, H: A->P, W: R->L)
    volume = torch.from_numpy(np.ascontiguousarray(data.transpose(2, 1, 0), dtype=np.float32))
    if shape is not None and tuple(volume.shape) != tuple(shape):
        volume = F.interpolate(volume[None, None], size=tuple(shape), mode="trilinear", align_corners=False)
        volume = volume[0, 0]
    return volume.numpy()


def load_brats(
    root: str | os.PathLike,
    modality: str,
    *,
    shape: tuple[int, int, int] | None = None,
    subjects: Sequence[str] | None = None,
    progress: bool = False,
) -> BrainVolumes:
    """Load BraTS2020 volumes of one modality as (N, D, H, W) images in [0, 1].

    Parameters
    ----------
    root : folder holding ``BraTS20_Training_XXX/BraTS20_Training_XXX_<modality>.nii.gz``.
    modality : one of :data:`MODALITIES`.
    shape : (D, H, W) to resample to with trilinear interpolation; ``None`` keeps the native
        grid (155, 240, 240) at 1 mm.
    subjects : subject folder names; ``None`` = every ``BraTS*`` folder in ``root``, sorted.
    progress : show a progress bar.

    Notes
    -----
    The NIfTI arrays, (240, 240, 155) in (x, y, z) voxel order, are reoriented with their affine
    to voxel axes (L, P, S): x from the patient's right to left, y from anterior to posterior,
    z from inferior to superior. The BraTS affine ``diag(-1, -1, 1)`` already is L, P, S, so for
    BraTS this flips nothing and only transposes (x, y, z) -> (z, y, x) = (D, H, W), giving the
    axial view of the synthetic volumes (nose at the top, patient's right on the left). Each
    volume is divided by the 99.5th percentile of its brain voxels and clipped to [0, 1]; the
    head mask is ``voxels > 0`` (after resampling); values <= 0 are set to 0.

    Raises
    ------
    FileNotFoundError : missing root, subject folder or modality file (the message names it and
        the expected layout).
    paperlib.io.InputValidationError : unreadable, NaN-holding or wrongly shaped NIfTI files,
        an image without positive voxels, or subjects of different native shapes with
        ``shape=None``.
    """
    from tqdm.auto import tqdm

    if modality not in MODALITIES:
        raise ValueError(f"modality: expected one of {MODALITIES}, got {modality!r}")
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"BraTS root {root}: no such directory; {_BRATS_LAYOUT}")
    names = _brats_subjects(root) if subjects is None else list(subjects)
    images, masks = [], []
    for name in tqdm(names, desc=f"BraTS {modality}", disable=not progress):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"BraTS subject folder {folder}: no such directory; {_BRATS_LAYOUT}")
        candidates = [folder / f"{name}_{modality}.nii.gz", folder / f"{name}_{modality}.nii"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FileNotFoundError(f"BraTS file {candidates[0]}: no such file; {_BRATS_LAYOUT}")
        volume = _brats_volume(path, shape)
        if images and volume.shape != images[0].shape:
            raise InputValidationError(
                f"{path}: grid {volume.shape} differs from {images[0].shape} of {names[0]}; "
                "pass shape= to resample"
            )
        mask = volume > 0
        if not mask.any():
            raise InputValidationError(f"{path}: no voxel > 0, expected a skull-stripped brain image")
        scale = float(np.percentile(volume[mask], 99.5))
        images.append(np.where(mask, np.clip(volume / scale, 0.0, 1.0), 0.0).astype(np.float32))
        masks.append(mask)
    return BrainVolumes(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)), tuple(names))
