"""MRI-like volumes of plant root systems in soil: the out-of-distribution data of Table 2.

The paper tests MRI priors trained on brains on root systems imaged by MRI in soil (the data of
Schulz et al. 2012, "3D reconstruction of plant roots from MRI images"), which cannot be
downloaded. Here root systems are grown with the structural root model CPlantBox
(``pip install cplantbox``; Schnepf et al. 2018, Giraud et al. 2023) and voxelised into
MRI-like volumes of the same ``(D, H, W)`` as the brain volumes of :mod:`paperlib.data.brain`,
so the priors see the same grid and the same conventions (float32 in [0, 1], background
exactly 0, a support mask in the ``head_masks`` slot).

Array convention
----------------
Every volume is ``(D, H, W)``: ``D`` horizontal (axial) slices from the soil surface downwards,
``H`` rows along CPlantBox's +y, ``W`` columns along +x (cm from the pot axis), so
``plt.imshow(vol[d])`` is a horizontal cut through the pot at depth ``(d + 1/2) * fov_cm[0] / D``
cm, as in root MRI where slices are taken across the vertical pot.

Choices and reasons
-------------------
* **Plant** (:data:`PARAMETER_FILE`): ``Faba_synMRI.xml``, the *Vicia faba* (broad bean)
  parameter set that CPlantBox ships for synthetic MRI root images. A dicot with a thick
  taproot (radius about 0.9 mm) and dense, nearly horizontal first-order laterals (0.3-0.7 mm)
  is visible at the coarse voxels used here (1.4 mm in-plane at 64 x 64), as in MRI studies of
  bean, lupin and maize seedlings; the fine tertiary roots (0.1-0.4 mm) only add faint partial
  volume, as in real root MRI.
* **Randomness**: CPlantBox's own generator is seeded with ``Plant.setSeed(seed)`` (two runs with
  one seed are identical); on top, a NumPy generator seeded with ``seed`` jitters the growth rate,
  the inter-lateral distance and the insertion angle of every root order (+-``jitter``, 10 %
  by default) and moves the seed +-0.5 cm off the pot axis, so the root systems differ more than
  CPlantBox's within-parameter-set variation alone. Library code never seeds globally.
* **Pot** (:data:`POT_RADIUS_CM`, :data:`POT_DEPTH_CM`): a cylinder of 4 cm radius and 20 cm
  depth, given to CPlantBox as an ``SDF_PlantContainer`` so roots bend along the wall instead of
  leaving it. The field of view :data:`FOV_CM` = 4.8 x 9 x 9 cm covers the top 4.8 cm of the
  pot (where the root system is densest: the taproot's branching zone) with a 0.5 cm margin
  around the wall, at every resolution (smaller shapes give coarser voxels over the same field
  of view, as in the brain data). The default 16 slices are 3 mm thick: voxels 3 x 1.4 x 1.4
  mm, an anisotropy similar to the brain volumes' (9.7 x 3.8 x 3.8 mm at the same shape); with
  thicker slices the horizontal laterals fade into the soil (partial volume). Outside the pot
  the image is exactly 0 (plastic gives no MRI signal, and the brain volumes have a zero
  background too).
* **Age** (:data:`AGE_DAYS`): 20 days after sowing, about 15-20 m of root in the pot: the
  taproot, tens of first-order laterals (growing out to the wall, then down along it, as in
  real pots) and their branches; younger plants give nearly empty slices.
* **Rasterisation** (:func:`voxelise`): MRI signal is proportional to the water volume in a
  voxel, so each voxel gets the root volume fraction. Each segment is a tube of its radius; the
  distance from voxel centres to the segment is turned into a fraction with a linear ramp one
  in-plane voxel wide (a box-filtered edge), rescaled so the cross-section integral equals
  ``pi r^2`` (thin roots become faint blobs of the right volume instead of vanishing or
  filling a whole voxel). Thick slices are sampled at ``supersample`` sub-slices (about
  cubic sub-voxels) and averaged (the slab profile of a 2D multi-slice acquisition). Segments
  are combined with a maximum, so the joints of one root are not counted twice.
* **Contrast**: roots (water-rich tissue, long T2) have intensity 1. Sandy soil at field
  capacity gives a weak signal (short T2* from the particles, little water): a smooth random
  field with mean 0.06-0.12 and a 0.02 rms texture (correlation 0.3 cm), clipped to
  [0.02, 0.2], i.e. 0.05-0.15 of the root intensity over most of the pot, plus 3-8 water pockets
  (Gaussian blobs of 1.5-4 mm, peak 0.15-0.35) that are the usual confounder of root
  segmentation in soil MRI. Roots displace soil: ``image = roots + (1 - roots) * soil``.
  A smooth multiplicative coil sensitivity (+-8 % rms, correlation 4 cm) as in the brain data.
* **Noise**: Rician, the magnitude of the image plus complex Gaussian noise of std
  ``noise_std`` (default 0.015, within 0.01-0.02) times the image maximum, inside the pot only.
* **Normalisation**: divided by the maximum of the noise-free image (the brightest root voxel,
  about 1 x the coil sensitivity) and clipped to [0, 1]. Not the 99.5th percentile of the pot
  voxels used for the brains: roots fill only about 1 % of the pot, so that percentile lies on
  the soil, saturates every root voxel and lifts the soil to about 0.4.

>>> vol = synthetic_roots(0, (8, 32, 32))
>>> vol["image"].shape, vol["image"].dtype, vol["support"].dtype
((8, 32, 32), dtype('float32'), dtype('bool'))
>>> bool((vol["image"][~vol["support"]] == 0).all()), float(vol["image"].max()) <= 1.0
(True, True)
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .. import paths
from ..io import InputValidationError, atomic_path
from .brain import BrainVolumes, read_cache

logger = logging.getLogger(__name__)

#: Bump whenever a change of this module changes the generated volumes: invalidates caches.
GENERATOR_VERSION = 1
#: CPlantBox root-system parameter file (under ``plantbox.data_path()``/structural/rootsystem).
PARAMETER_FILE = "Faba_synMRI.xml"
#: Radius and depth of the cylindrical pot, cm.
POT_RADIUS_CM = 4.0
POT_DEPTH_CM = 20.0
#: Field of view along (D, H, W) in cm: the top 8 cm of the pot, 9 x 9 cm across.
FOV_CM = (4.8, 9.0, 9.0)
#: Default age of the plants, days after sowing.
AGE_DAYS = 20.0

_INSTALL_HINT = "pip install cplantbox==2.1.1, or pip install 'paperlib[data]' (make setup does)"


def _plantbox():
    try:
        import plantbox
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"root-system volumes need CPlantBox, which is not installed: {_INSTALL_HINT}"
        ) from exc
    return plantbox


def _cplantbox_version() -> str:
    try:
        return importlib.metadata.version("cplantbox")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass(frozen=True)
class RootSegments:
    """A root system as straight segments between nodes.

    Attributes
    ----------
    nodes : np.ndarray, (n_nodes, 3) float64
        Node positions (x, y, z) in cm; z is up, the soil surface is z = 0 (roots have z < 0).
    segments : np.ndarray, (n_segments, 2) int64
        Indices into ``nodes`` of the two ends of each segment.
    radii : np.ndarray, (n_segments,) float64
        Radius of each segment, cm.
    orders : np.ndarray, (n_segments,) int64
        CPlantBox sub-type of the root a segment belongs to (1 taproot, 2 and 3 laterals).

    Examples
    --------
    >>> seg = RootSegments(np.zeros((2, 3)), np.array([[0, 1]]), np.array([0.05]), np.array([1]))
    >>> len(seg), seg.length_cm
    (1, 0.0)
    """

    nodes: np.ndarray
    segments: np.ndarray
    radii: np.ndarray
    orders: np.ndarray

    def __len__(self) -> int:
        return int(self.segments.shape[0])

    @property
    def length_cm(self) -> float:
        """Total root length, cm."""
        ends = self.nodes[self.segments]
        return float(np.linalg.norm(ends[:, 1] - ends[:, 0], axis=1).sum())


def root_system(
    seed: int,
    *,
    age_days: float = AGE_DAYS,
    parameter_file: str | Path = PARAMETER_FILE,
    pot_radius_cm: float = POT_RADIUS_CM,
    pot_depth_cm: float = POT_DEPTH_CM,
    jitter: float = 0.1,
) -> RootSegments:
    """Grow one root system with CPlantBox in a cylindrical pot.

    Parameters
    ----------
    seed : int >= 0
        Seeds CPlantBox (``Plant.setSeed``) and the parameter jitter: one seed, one root system.
    age_days : float > 0
        Simulated time after sowing, days.
    parameter_file : str or Path
        A file name under CPlantBox's ``structural/rootsystem`` folder, or a path to an XML file.
    pot_radius_cm, pot_depth_cm : float > 0
        The pot, a cylinder whose top is the soil surface z = 0 (cm); roots stay inside it.
    jitter : float in [0, 1)
        Relative half-width of the uniform jitter of growth rate, inter-lateral distance and
        insertion angle of every root order.

    Returns
    -------
    RootSegments

    Raises
    ------
    InputValidationError : a bad argument or a missing parameter file.
    ImportError : CPlantBox is not installed.
    """
    if int(seed) < 0 or int(seed) >= 2**31:
        raise InputValidationError(f"seed: expected an integer in [0, 2**31), got {seed}")
    if not age_days > 0:
        raise InputValidationError(f"age_days: expected > 0 days, got {age_days}")
    if not (pot_radius_cm > 0 and pot_depth_cm > 0):
        raise InputValidationError(
            f"pot_radius_cm, pot_depth_cm: expected > 0 cm, got {pot_radius_cm}, {pot_depth_cm}"
        )
    if not 0 <= jitter < 1:
        raise InputValidationError(f"jitter: expected in [0, 1), got {jitter}")
    pb = _plantbox()
    path = Path(parameter_file)
    if not path.is_file():
        path = Path(pb.data_path()) / "structural" / "rootsystem" / str(parameter_file)
    if not path.is_file():
        raise InputValidationError(f"parameter_file: no such CPlantBox parameter file: {parameter_file}")

    rng = np.random.default_rng(int(seed))
    plant = pb.Plant()
    plant.readParameters(str(path))
    for param in plant.getOrganRandomParameter(pb.root):
        if param.subType < 1:
            continue
        factors = 1 + jitter * rng.uniform(-1, 1, 3)
        param.r *= factors[0]
        param.ln *= factors[1]
        param.theta *= factors[2]
    seed_param = plant.getOrganRandomParameter(pb.seed)[0]
    offset = rng.uniform(-0.5, 0.5, 2)
    seed_param.seedPos = pb.Vector3d(float(offset[0]), float(offset[1]), float(seed_param.seedPos.z))
    radius, depth = float(pot_radius_cm), float(pot_depth_cm)
    plant.setGeometry(pb.SDF_PlantContainer(radius, radius, depth, False))  # False: round pot
    plant.setSeed(int(seed))
    plant.initialize(False)
    plant.simulate(float(age_days), False)
    analyser = pb.SegmentAnalyser(plant)
    nodes = np.array([[n.x, n.y, n.z] for n in analyser.nodes], dtype=np.float64).reshape(-1, 3)
    segments = np.array([[s.x, s.y] for s in analyser.segments], dtype=np.int64).reshape(-1, 2)
    radii = np.asarray(analyser.getParameter("radius"), dtype=np.float64)
    orders = np.asarray(analyser.getParameter("subType"), dtype=np.float64).round().astype(np.int64)
    return RootSegments(nodes, segments, radii, orders)


# --------------------------------------------------------------------------------------------
# rasterisation
# --------------------------------------------------------------------------------------------
def _check_shape(shape: Sequence[int], name: str = "shape") -> tuple[int, int, int]:
    try:
        out = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise InputValidationError(f"{name}: expected three sizes (D, H, W), got {shape!r}") from None
    if len(out) != 3 or min(out) < 4 or any(s != t for s, t in zip(out, shape)):
        raise InputValidationError(f"{name}: expected three integer sizes (D, H, W) >= 4, got {shape!r}")
    return out  # type: ignore[return-value]


def _check_fov(fov_cm: Sequence[float]) -> tuple[float, float, float]:
    out = tuple(float(f) for f in fov_cm)
    if len(out) != 3 or min(out) <= 0:
        raise InputValidationError(f"fov_cm: expected three lengths (D, H, W) > 0 cm, got {fov_cm!r}")
    return out  # type: ignore[return-value]


def _voxel_centres(shape: tuple[int, int, int], fov_cm: tuple[float, float, float], supersample: int = 1):
    """Centres (z, y, x) in cm of the (sub-)voxels: z from the surface down, y and x centred."""
    d, h, w = shape
    vz, vy, vx = (f / n for f, n in zip(fov_cm, shape))
    z = -(torch.arange(d * supersample, dtype=torch.float64) + 0.5) * (vz / supersample)
    y = (torch.arange(h, dtype=torch.float64) + 0.5 - h / 2) * vy
    x = (torch.arange(w, dtype=torch.float64) + 0.5 - w / 2) * vx
    return z, y, x


def voxelise(
    roots: RootSegments,
    shape: Sequence[int],
    fov_cm: Sequence[float] = FOV_CM,
    *,
    supersample: int | None = None,
    chunk: int = 1024,
) -> torch.Tensor:
    """Root volume fraction of every voxel: the segments as tubes of their radii.

    For each segment, the voxels of a fixed stencil around its midpoint (large enough for the
    longest segment plus its radius plus one voxel) get ``w * clip(1/2 + (r_e - dist) / h, 0, 1)``
    where ``dist`` is the distance (cm) from the voxel centre to the segment, ``h`` the in-plane
    voxel size, ``r_e = max(r, h / 2)`` and ``w = min(1, r^2 / (r_e^2 + h^2 / 12))`` keeps the
    cross-section integral at ``pi r^2``. Segments are combined by a maximum; thick slices are
    sampled at ``supersample`` sub-slices and averaged. Vectorised over chunks of segments.

    Parameters
    ----------
    roots : RootSegments
        Coordinates in cm, soil surface at z = 0, pot axis at x = y = 0.
    shape : (D, H, W)
        Output grid; slice ``d`` covers depths ``[d, d + 1] * fov_cm[0] / D`` cm below the surface.
    fov_cm : (3,) cm
        Field of view along (D, H, W), centred on the pot axis in-plane.
    supersample : int >= 1, optional
        Sub-slices per slice; default ``ceil(slice thickness / in-plane voxel)``.
    chunk : int
        Segments per vectorised batch (memory about ``chunk * stencil`` floats).

    Returns
    -------
    torch.Tensor, (D, H, W) float32 in [0, 1].

    Examples
    --------
    A vertical root of radius 0.3 cm through a 4 x 8 x 8 cm field of view holds
    pi r^2 4 cm = 1.13 cm^3 of root; the voxelised volume agrees to the accuracy of sampling a
    profile one voxel wide (about 15 %):

    >>> rod = RootSegments(np.array([[0.0, 0, 1], [0, 0, -9]]), np.array([[0, 1]]), np.array([0.3]), np.array([1]))
    >>> frac = voxelise(rod, (4, 16, 16), fov_cm=(4.0, 8.0, 8.0))
    >>> volume_cm3 = float(frac.sum()) * (1.0 * 0.5 * 0.5)
    >>> tuple(frac.shape), abs(volume_cm3 / 1.131 - 1) < 0.15
    ((4, 16, 16), True)
    """
    shape = _check_shape(shape)
    fov = _check_fov(fov_cm)
    d, h, w = shape
    vz, vy, vx = (f / n for f, n in zip(fov, shape))
    ramp = min(vy, vx)
    sub = int(supersample) if supersample is not None else max(1, math.ceil(vz / ramp - 1e-9))
    if sub < 1:
        raise InputValidationError(f"supersample: expected >= 1, got {supersample}")
    dz = vz / sub
    zc, yc, xc = _voxel_centres(shape, fov, sub)
    out = torch.zeros(d * sub * h * w + 1, dtype=torch.float64)  # last entry: outside the grid
    if len(roots):
        ends = torch.from_numpy(np.ascontiguousarray(roots.nodes[roots.segments], dtype=np.float64))
        a, b = ends[:, 0], ends[:, 1]  # (m, 3) x, y, z
        radius = torch.from_numpy(np.asarray(roots.radii, dtype=np.float64))
        reach = (b - a).norm(dim=1) / 2 + radius + ramp  # cm around the midpoint
        lo = torch.minimum(a, b) - (radius + ramp)[:, None]
        hi = torch.maximum(a, b) + (radius + ramp)[:, None]
        inside = (
            (hi[:, 0] > -fov[2] / 2) & (lo[:, 0] < fov[2] / 2) & (hi[:, 1] > -fov[1] / 2)
            & (lo[:, 1] < fov[1] / 2) & (hi[:, 2] > -fov[0]) & (lo[:, 2] < 0)
        )
        a, b, radius, reach = a[inside], b[inside], radius[inside], reach[inside]
    if len(roots) and a.shape[0]:
        r_eff = radius.clamp_min(ramp / 2)
        weight = (radius**2 / (r_eff**2 + ramp**2 / 12)).clamp_max(1.0)
        top = float(reach.max())
        kz, ky, kx = (math.ceil(top / s) + 1 for s in (dz, vy, vx))
        offsets = torch.stack(torch.meshgrid(
            torch.arange(-kz, kz + 1), torch.arange(-ky, ky + 1), torch.arange(-kx, kx + 1), indexing="ij"
        ), dim=-1).reshape(-1, 3)  # (k, 3) index offsets along (z, y, x)
        mid = (a + b) / 2
        # index of the (sub-)voxel nearest each midpoint along (z, y, x)
        centre = torch.stack([
            torch.floor(-mid[:, 2] / dz), torch.floor(mid[:, 1] / vy + h / 2), torch.floor(mid[:, 0] / vx + w / 2)
        ], dim=1).long()
        sizes = torch.tensor([d * sub, h, w])
        for start in range(0, a.shape[0], chunk):
            sl = slice(start, start + chunk)
            idx = centre[sl, None, :] + offsets[None]  # (c, k, 3)
            valid = ((idx >= 0) & (idx < sizes)).all(-1)
            idx = torch.minimum(idx.clamp_min(0), sizes - 1)
            point = torch.stack([xc[idx[..., 2]], yc[idx[..., 1]], zc[idx[..., 0]]], dim=-1)  # (c, k, 3)
            sa, sb = a[sl, None, :], b[sl, None, :]
            axis = sb - sa
            t = (((point - sa) * axis).sum(-1) / (axis * axis).sum(-1).clamp_min(1e-12)).clamp(0, 1)
            dist = (point - sa - t[..., None] * axis).norm(dim=-1)
            frac = (0.5 + (r_eff[sl, None] - dist) / ramp).clamp(0, 1) * weight[sl, None]
            flat = (idx[..., 0] * h + idx[..., 1]) * w + idx[..., 2]
            flat = torch.where(valid & (frac > 0), flat, torch.full_like(flat, out.numel() - 1))
            out.scatter_reduce_(0, flat.reshape(-1), frac.reshape(-1), reduce="amax")
    volume = out[:-1].reshape(d, sub, h, w).mean(1)
    return volume.clamp(0, 1).to(torch.float32)


# --------------------------------------------------------------------------------------------
# MRI-like contrast
# --------------------------------------------------------------------------------------------
def pot_mask(
    shape: Sequence[int], fov_cm: Sequence[float] = FOV_CM, radius_cm: float = POT_RADIUS_CM
) -> torch.Tensor:
    """Voxels whose centre lies inside the pot (cylinder of ``radius_cm`` about the axis).

    Returns
    -------
    torch.Tensor, (D, H, W) bool; the same in every slice (the field of view is inside the pot's
    depth).
    """
    shape = _check_shape(shape)
    _, yc, xc = _voxel_centres(shape, _check_fov(fov_cm))
    disc = yc[:, None] ** 2 + xc[None, :] ** 2 <= radius_cm**2
    return disc[None].expand(shape).clone()


def _smooth_field(
    rng: np.random.Generator, shape: tuple[int, int, int], voxel_cm: Sequence[float], correlation_cm: float
) -> torch.Tensor:
    """A Gaussian random field (D, H, W) float64 of zero mean and unit variance on the grid.

    White noise filtered with a Gaussian of std ``correlation_cm`` (per-axis voxel sizes),
    periodic over the grid, then standardised.
    """
    white = torch.from_numpy(rng.standard_normal(shape))
    spectrum = torch.fft.rfftn(white)
    fz = torch.fft.fftfreq(shape[0], float(voxel_cm[0]), dtype=torch.float64)[:, None, None]
    fy = torch.fft.fftfreq(shape[1], float(voxel_cm[1]), dtype=torch.float64)[None, :, None]
    fx = torch.fft.rfftfreq(shape[2], float(voxel_cm[2]), dtype=torch.float64)[None, None, :]
    gain = torch.exp(-2 * math.pi**2 * correlation_cm**2 * (fz**2 + fy**2 + fx**2))
    field = torch.fft.irfftn(spectrum * gain, s=shape)
    return (field - field.mean()) / field.std().clamp_min(1e-12)


def synthetic_roots(
    seed: int,
    shape: Sequence[int],
    *,
    noise_std: float = 0.015,
    age_days: float = AGE_DAYS,
    fov_cm: Sequence[float] = FOV_CM,
    pot_radius_cm: float = POT_RADIUS_CM,
) -> dict[str, np.ndarray]:
    """One MRI-like volume of a root system in soil (see the module docstring for the model).

    Parameters
    ----------
    seed : int >= 0
        One seed, one volume (plant, soil, noise: independent streams spawned from it).
    shape : (D, H, W), each >= 4
    noise_std : float >= 0
        Rician noise, std of each complex component as a fraction of the image maximum.
    age_days, fov_cm, pot_radius_cm : see :func:`root_system` and :func:`voxelise`.

    Returns
    -------
    dict with ``"image"`` (D, H, W) float32 in [0, 1] (0 outside the pot), ``"support"``
    (D, H, W) bool (the pot interior) and ``"roots"`` (D, H, W) float32 root volume fraction.
    """
    shape = _check_shape(shape)
    fov = _check_fov(fov_cm)
    if not noise_std >= 0:
        raise InputValidationError(f"noise_std: expected >= 0, got {noise_std}")
    voxel = [f / n for f, n in zip(fov, shape)]
    seq = np.random.SeedSequence([int(seed), 7])  # streams apart from root_system's jitter
    rng_soil, rng_pockets, rng_bias, rng_noise = (np.random.default_rng(s) for s in seq.spawn(4))

    roots = voxelise(
        root_system(seed, age_days=age_days, pot_radius_cm=pot_radius_cm), shape, fov
    ).double()
    support = pot_mask(shape, fov, pot_radius_cm)

    # soil: weak textured background plus a few water pockets
    level = rng_soil.uniform(0.06, 0.12)
    soil = (level + 0.02 * _smooth_field(rng_soil, shape, voxel, correlation_cm=0.3)).clamp(0.02, 0.2)
    zc, yc, xc = _voxel_centres(shape, fov)
    for _ in range(int(rng_pockets.integers(3, 9))):
        rad = rng_pockets.uniform(0, pot_radius_cm - 0.3) * math.sqrt(rng_pockets.uniform())
        phi = rng_pockets.uniform(0, 2 * math.pi)
        cz, cy, cx = -rng_pockets.uniform(0.3, fov[0]), rad * math.sin(phi), rad * math.cos(phi)
        sigma, height = rng_pockets.uniform(0.15, 0.4), rng_pockets.uniform(0.15, 0.35)
        dist2 = (zc[:, None, None] - cz) ** 2 + (yc[None, :, None] - cy) ** 2 + (xc[None, None, :] - cx) ** 2
        soil = soil + height * torch.exp(-dist2 / (2 * sigma**2))
    bias = 1 + 0.08 * _smooth_field(rng_bias, shape, voxel, correlation_cm=4.0)
    image = bias * (roots + (1 - roots) * soil) * support
    peak = float(image.max())  # the brightest root (or pocket) voxel before noise

    # Rician noise inside the pot, then normalise on the pot voxels
    scale = noise_std * peak
    noise = torch.from_numpy(rng_noise.standard_normal((2, *shape)))
    image = torch.where(support, torch.hypot(image + scale * noise[0], scale * noise[1]), 0.0)
    image = (image / max(peak, 1e-12)).clamp(0, 1)
    return {
        "image": image.float().numpy(),
        "support": support.numpy(),
        "roots": roots.float().numpy(),
    }


# --------------------------------------------------------------------------------------------
# data set and caching
# --------------------------------------------------------------------------------------------
def _cache_file(shape: tuple[int, int, int], n: int, seed: int, noise_std: float, age_days: float) -> Path:
    key = dict(
        generator=GENERATOR_VERSION, shape=list(shape), n=n, seed=seed, noise_std=float(noise_std),
        age_days=float(age_days), fov_cm=list(FOV_CM), pot=[POT_RADIUS_CM, POT_DEPTH_CM],
        parameters=PARAMETER_FILE, cplantbox=_cplantbox_version(),
    )
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return paths.cache_dir() / "roots" / f"roots-{n}-{digest}.npz"


def load_roots(
    shape: Sequence[int],
    n: int,
    seed: int = 30_000,
    noise_std: float = 0.015,
    *,
    age_days: float = AGE_DAYS,
    progress: bool = False,
) -> BrainVolumes:
    """``n`` root-system volumes, the out-of-distribution MRI test set of Table 2.

    Volume ``i`` is :func:`synthetic_roots` with seed ``seed + i`` (the default seeds are apart
    from the brain splits'). The stack is cached in ``paths.cache_dir() / "roots"`` under a hash
    of every generation parameter (and :data:`GENERATOR_VERSION`, the CPlantBox version); an
    unreadable cache file is regenerated.

    Parameters
    ----------
    shape : (D, H, W), each >= 4
        Use the profile's ``mri.shape`` so the volumes match the brain volumes.
    n : int >= 1
    seed : int >= 0
    noise_std : float >= 0
    progress : bool
        Show a tqdm progress bar while generating.

    Returns
    -------
    BrainVolumes with images (n, D, H, W) float32 in [0, 1], the pot interior in ``head_masks``
    and ids ``"roots-000"``, ``"roots-001"``, ...

    Raises
    ------
    InputValidationError : bad shape, n, seed or noise_std.
    ImportError : CPlantBox is not installed.
    """
    shape = _check_shape(shape)
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise InputValidationError(f"n: expected an integer >= 1 volumes, got {n!r}")
    if isinstance(seed, bool) or int(seed) != seed or seed < 0:
        raise InputValidationError(f"seed: expected an integer >= 0, got {seed!r}")
    if not noise_std >= 0:
        raise InputValidationError(f"noise_std: expected >= 0, got {noise_std!r}")
    n, seed = int(n), int(seed)
    path = _cache_file(shape, n, seed, noise_std, age_days)
    cached = read_cache(path, (n, *shape))
    if cached is not None:
        logger.info("loaded %d root volumes from %s", len(cached), path)
        return cached
    _plantbox()  # fail early with the install hint
    from tqdm.auto import tqdm

    images = np.empty((n, *shape), np.float32)
    masks = np.empty((n, *shape), bool)
    for i in tqdm(range(n), desc="roots", disable=not progress):
        vol = synthetic_roots(seed + i, shape, noise_std=noise_std, age_days=age_days)
        images[i], masks[i] = vol["image"], vol["support"]
    ids = tuple(f"roots-{i:03d}" for i in range(n))
    with atomic_path(path) as tmp:
        np.savez(tmp, images=images, head_masks=masks, ids=np.array(ids))
    logger.info("generated %d root volumes into %s", n, path)
    return BrainVolumes(torch.from_numpy(images), torch.from_numpy(masks), ids)
