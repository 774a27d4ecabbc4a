"""Domain-randomised MRI slabs: the training data of the general MRI prior.

The synthetic FLAIR volumes of :mod:`paperlib.data.brain` have one contrast, one voxel size, one
field of view and no skull; a prior trained on them learns that generator, not brains (issue 15:
on real scans DART lost to TV by 0.03-0.12 SSIM). Following the domain-randomisation recipe of
SynthSeg / SynthSR (Billot et al. 2020, 2023), every training slab here is drawn from the same
anatomy with everything else random, so that real scans of any contrast and resolution lie inside
the training distribution:

* anatomy: a synthetic subject of :func:`paperlib.data.brain.synthetic_tissues` (MNI152-based,
  deformed, with BraTS-like tumours), rendered on a grid of random in-plane voxel size
  (:data:`INPLANE_MM`) and slice thickness (:data:`THICKNESS_MM`), i.e. the matching blur of
  thick slices and coarse voxels (the generator box-filters the template to the voxel); with
  ``anatomy="wide"`` the subject strays further from the template (rotations up to 15 degrees about
  each axis, scale 0.85-1.10 with 8 % per axis, 5 mm of smooth deformation:
  :data:`paperlib.data.brain.ANATOMY_SPREADS`), the extra-cerebral layers following the brain;
* head: with probability :data:`P_SKULL` extra-cerebral layers outside the brain, CSF/dura, skull
  and scalp, of random thickness, whose boundaries wander with a smooth random field; otherwise
  skull-stripped;
* contrast: TorchIO's ``RandomLabelsToImage`` (a Gaussian mixture over the partial-volume labels:
  a random mean and within-tissue std per class), so T1-, T2-, FLAIR-, PD- and EPI/b0-like
  contrasts are all inside the distribution;
* field of view: a random ``H x W`` window of the rendered head (partial views, head off-centre,
  head smaller than the window) and a random slab of ``D`` slices;
* acquisition: TorchIO's ``RandomBlur``, ``RandomBiasField``, ``RandomGamma``,
  ``RandomGhosting``, ``RandomMotion`` and ``RandomNoise`` followed by the magnitude (Rician-like
  background noise);
* orientation: random flips of both in-plane axes and a random in-plane transpose (real files
  store the head in any in-plane orientation).

Each slab is divided by :func:`paperlib.data.intensity.intensity_scale` (not clipped).

Randomness: the slab's own ``numpy`` generator draws the geometry; TorchIO draws from torch's
global generator, which :func:`randomized_slab` seeds inside :func:`torch.random.fork_rng` from the
slab's seed (:func:`paperlib.diffusion.partition.derive_seed`), so a slab is a function of its
seed and the caller's random state is untouched.

>>> image, head = randomized_slab(3, (8, 32, 32))
>>> image.shape, image.dtype, bool(image.min() >= 0), head.dtype
(torch.Size([8, 32, 32]), torch.float32, True, torch.bool)
>>> torch.equal(image, randomized_slab(3, (8, 32, 32))[0])
True
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor
from tqdm.auto import tqdm

from .. import paths
from ..io import atomic_path
from .brain import FOV_MM, synthetic_tissues
from .intensity import intensity_scale

logger = logging.getLogger(__name__)

__all__ = ["randomized_slab", "randomized_set", "INPLANE_MM", "THICKNESS_MM", "P_SKULL", "GENERATOR_VERSION"]

#: Bump whenever a change here changes the slabs (invalidates caches).
GENERATOR_VERSION = 1
#: In-plane voxel size range, mm (BraTS 1 mm; clinical EPI 2-4 mm).
INPLANE_MM = (1.5, 4.5)
#: Slice thickness range, mm (at least the in-plane voxel size).
THICKNESS_MM = (2.0, 8.0)
#: Probability of a head with skull and scalp (else skull-stripped, as BraTS).
P_SKULL = 0.6
#: Label channels, in the order of the mean/std ranges below.
LABELS = ("background", "csf", "gm", "wm", "necrosis", "oedema", "enhancing", "outer_csf", "skull", "scalp")
_MEAN = ((0.0, 0.03),) + ((0.03, 1.0),) * 6 + ((0.03, 1.0), (0.0, 0.25), (0.05, 1.0))
_STD = ((0.0, 0.02),) + ((0.0, 0.08),) * 9


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], cells: tuple[int, int, int]) -> Tensor:
    """A smooth random field on ``shape``: unit normal values on a ``cells`` grid, trilinearly upsampled."""
    coarse = torch.from_numpy(rng.standard_normal(cells).astype(np.float32))
    return F.interpolate(coarse[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]


def _head_labels(rng: np.random.Generator, tissues: np.ndarray, voxel: np.ndarray) -> Tensor:
    """(10, D, H, W) partial volumes of :data:`LABELS`: the brain's six tissues, the random
    extra-cerebral layers (CSF, skull, scalp; none when skull-stripped) and the background."""
    brain = torch.from_numpy(tissues).sum(0).clamp(0, 1)
    shape = tuple(brain.shape)
    layers = torch.zeros((3, *shape))
    if rng.random() < P_SKULL:
        dist = torch.from_numpy(ndimage.distance_transform_edt(brain.numpy() < 0.5, sampling=voxel).astype(np.float32))
        dist = dist + 2.0 * _smooth_field(rng, shape, (4, 6, 6))  # boundaries wander by ~2 mm
        edges = np.cumsum(rng.uniform((0.5, 2.0, 2.0), (3.0, 7.0, 8.0)))  # outer CSF, skull, scalp (mm)
        width = 0.4 * float(voxel[1:].mean())
        inside = [torch.sigmoid((float(e) - dist) / width) for e in edges]
        layers = torch.stack([inside[0], inside[1] - inside[0], inside[2] - inside[1]]) * (1 - brain)
    background = (1 - brain - layers.sum(0)).clamp_min(0)
    return torch.cat([background[None], torch.from_numpy(tissues), layers])


def _window(labels: Tensor, rng: np.random.Generator, shape: tuple[int, int, int]) -> Tensor:
    """A random ``shape`` window of (C, D, H, W) labels; where it leaves the grid, background.

    The slab's centre slice is drawn with probability proportional to the head's area in it; the in-plane window's
    centre anywhere within a quarter of the window from the head's centre of mass.
    """
    c, depth, height, width = labels.shape
    out = torch.zeros((c, *shape))
    out[0] = 1.0
    fg = 1 - labels[0]
    area = fg.sum((1, 2)).double().numpy()
    centre_d = int(rng.choice(depth, p=area / area.sum()))  # slices with more head more often
    ys, xs = (torch.arange(n, dtype=torch.float32) for n in (height, width))
    mass = fg.sum(0)
    cy = float((mass.sum(1) * ys).sum() / mass.sum())
    cx = float((mass.sum(0) * xs).sum() / mass.sum())
    starts = (centre_d - shape[0] // 2,
              int(round(cy + rng.uniform(-0.25, 0.25) * shape[1])) - shape[1] // 2,
              int(round(cx + rng.uniform(-0.25, 0.25) * shape[2])) - shape[2] // 2)
    src, dst = [], []
    for start, n, size in zip(starts, (depth, height, width), shape):
        lo, hi = max(start, 0), min(start + size, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[(slice(None), *dst)] = labels[(slice(None), *src)]
    return out


def _transform(voxel: np.ndarray):
    """The TorchIO pipeline from labels to a magnitude image (module docstring)."""
    import torchio as tio

    return tio.Compose([
        tio.RandomLabelsToImage(label_key="labels", image_key="image", mean=list(_MEAN), std=list(_STD)),
        tio.RandomBlur(std=(0.0, 0.5 * float(voxel[1:].mean()))),
        tio.RandomBiasField(coefficients=0.4, order=3, p=0.8),
        tio.RandomGamma(log_gamma=(-0.3, 0.3), p=0.5),
        tio.RandomGhosting(num_ghosts=(2, 6), intensity=(0.1, 0.4), p=0.1),
        tio.RandomMotion(degrees=2.0, translation=2.0, num_transforms=1, p=0.1),
        tio.RandomNoise(mean=0.0, std=(0.0, 0.03), p=0.7),
    ])


def randomized_slab(seed: int, shape: tuple[int, int, int] = (8, 64, 64), *,
                    anatomy: str = "template") -> tuple[Tensor, Tensor]:
    """One domain-randomised slab (module docstring).

    Parameters
    ----------
    seed : determines the slab entirely (subject, voxel size, head, window, contrast, artefacts).
    shape : (D, H, W) of the slab.
    anatomy : how far the subject strays from the template, a key of
        :data:`paperlib.data.brain.ANATOMY_SPREADS` (``"template"`` or ``"wide"``).

    Returns
    -------
    image : (D, H, W) float32, non-negative, divided by its :func:`~paperlib.data.intensity.intensity_scale`.
    head : (D, H, W) bool, brain plus extra-cerebral layers above half a voxel.
    """
    import torchio as tio

    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"shape: expected (D, H, W) of positive sizes, got {shape}")
    rng = np.random.default_rng(int(seed))
    inplane = rng.uniform(*INPLANE_MM)
    thickness = rng.uniform(max(THICKNESS_MM[0], inplane), THICKNESS_MM[1])
    grid = (max(shape[0], round(FOV_MM[0] / thickness)), round(FOV_MM[1] / inplane), round(FOV_MM[2] / inplane))
    tissues, voxel = synthetic_tissues(int(seed), grid, anatomy=anatomy)
    labels = _window(_head_labels(rng, tissues, voxel), rng, shape)
    head = labels[0] < 0.5
    # TorchIO's spatial axes are (x, y, z) = our (W, H, D)
    affine = np.diag([voxel[2], voxel[1], voxel[0], 1.0])
    subject = tio.Subject(labels=tio.LabelMap(tensor=labels.permute(0, 3, 2, 1).contiguous(), affine=affine))
    from ..diffusion.partition import derive_seed

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(int(seed), "torchio"))
        image = _transform(voxel)(subject)["image"].data[0].permute(2, 1, 0).abs().float()
    flips = [d for d, f in zip((1, 2), rng.random(2) < 0.5) if f]
    image, head = (t.flip(flips) if flips else t for t in (image, head))
    if shape[1] == shape[2] and rng.random() < 0.5:
        image, head = image.transpose(1, 2), head.transpose(1, 2)
    image = image.contiguous()
    return image / intensity_scale(image, name=f"randomized slab {seed}"), head.contiguous()


def _cache_file(n: int, shape: tuple[int, int, int], seed: int, anatomy: str = "template") -> Path:
    record = {"v": GENERATOR_VERSION, "n": n, "shape": list(shape), "seed": seed}
    if anatomy != "template":  # the template's files keep their names
        record["anatomy"] = anatomy
    key = json.dumps(record, sort_keys=True)
    return paths.cache_dir() / f"randomized_{hashlib.sha256(key.encode()).hexdigest()[:16]}.pt"


def randomized_set(n: int, shape: tuple[int, int, int], *, seed: int = 0, anatomy: str = "template",
                   progress: bool = True) -> Tensor:
    """``n`` slabs of seeds ``seed, seed + 1, ...`` with ``anatomy`` (:func:`randomized_slab`) as
    one (n, D, H, W) float32 tensor (cached)."""
    shape = tuple(int(s) for s in shape)
    path = _cache_file(int(n), shape, int(seed), anatomy)
    if path.exists():
        data = torch.load(path, weights_only=True)
        if tuple(data.shape) == (n, *shape):
            return data
    data = torch.stack([randomized_slab(seed + i, shape, anatomy=anatomy)[0]
                        for i in tqdm(range(n), desc="randomised slabs", disable=not progress)])
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(data, tmp)
    return data
