"""Distribution distances between sets of volumes: FVD's Frechet distance and JEDi, with their extractors.

A set of N volumes becomes an ``(N, F)`` feature matrix (:func:`volume_features` with an extractor
from :func:`load_extractor`); two such matrices are compared by

* :func:`frechet_distance`, the statistic of FVD (Unterthiner et al. 2019) and FID (Heusel et al.
  2017): the Frechet (2-Wasserstein) distance between the Gaussians fitted to the two sets,
  ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a^{1/2} S_b S_a^{1/2})^{1/2})``;
* :func:`jedi`, JEDi (Luo et al. 2024): ``100 x`` the squared maximum mean discrepancy with the
  polynomial kernel ``k(x, y) = (gamma <x, y> + coef0)^degree``, degree 2, ``gamma = 1/F``,
  ``coef0 = 0`` (:func:`polynomial_mmd2`), on V-JEPA features in the paper.

Extractors and their files (nothing is downloaded)
--------------------------------------------------
:func:`load_extractor` resolves a name under the profile's weights folder, then ``$PAPERLIB_WEIGHTS``
(and the repository's ``checkpoints/`` for the project encoders):

=================  ===============================  ==============================================
name               file or folder                   format
=================  ===============================  ==============================================
``project-mri``    ``encoder_mri_default/``         ``encoder.json`` + ``encoder.safetensors``
``project-stem``   ``encoder_stem_default/``        (shipped; :mod:`paperlib.metrics.encoder`)
``i3d``            ``i3d_torchscript.pt``           TorchScript I3D of the PyTorch FVD code
                                                    (StyleGAN-V), 400 features
``videomae``       ``videomae/``                    ``save_pretrained`` of a transformers
                                                    ``VideoMAEModel``: config.json + model.safetensors
``vjepa``          ``vjepa2/``                      ``save_pretrained`` of ``VJEPA2Model`` or
                                                    ``VJEPA2ForVideoClassification``
=================  ===============================  ==============================================

A volume ``(D, H, W)`` is a video of D slices (frames). For the video networks
(:func:`volumes_to_frames`): values mapped from a fixed ``value_range`` (MRI: (0, 1)) to [0, 1] and
clipped; the network's clip length of frames taken by uniform slice sampling (deeper volumes
subsampled, shallower ones repeat slices; I3D: 16 frames, VideoMAE: ``num_frames``, V-JEPA 2:
``frames_per_clip``); the shorter side scaled to the network's size (224, V-JEPA 2 256) and a
centred square crop; grey repeated to 3 channels; then each network's normalisation (I3D: [-1, 1],
called with ``rescale=False, resize=False, return_features=True``; VideoMAE and V-JEPA 2: ImageNet
mean/std unless ``preprocessor_config.json`` gives others). The project encoders take the volumes
in the priors' data units and resample them to their training shape.

Why our own code
----------------
The field's libraries were checked first (torch must stay 2.13.0, no torchvision):

* torchmetrics 1.9 (already a dependency): ``image.fid._compute_fid`` is a private function that
  takes the eigenvalues of the non-symmetric product ``S_a S_b`` (complex round-off, no checks,
  no warning for singular covariances); ``image.kid.poly_mmd`` is the *unbiased* estimator and
  assumes two sets of the same size (it divides the cross term by ``m^2`` with ``m`` the size of
  the first set), so it gives -268.93 on the brief's example where JEDi's number is 270.72.
  Its ``_compute_fid`` is used in the tests as an independent reference.
* MONAI 1.6 (``FIDMetric``, ``MMDMetric``): installs alone next to torch 2.13, but in a fresh
  environment pulls torch 2.14 with CUDA; its FID calls ``scipy.linalg.sqrtm`` on the
  non-symmetric product and prints instead of warning; its MMD is the unbiased estimator with
  a *linear* kernel on equally sized sets, not JEDi's statistic.
* cd-fvd and videojedi import torchvision and download weights at run time.

So the two statistics are written here (a few lines each), in float64, validated, and checked
against closed forms, scipy and torchmetrics in ``tests/test_video_metrics.py``.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from ..io import InputValidationError, sha256_file
from ..paths import repo_root

#: Fewer feature vectors per set than this makes :func:`frechet_distance` warn: the Frechet
#: distance of sample Gaussians is biased upwards by roughly ``tr(S_a + S_b) / N`` for small N,
#: so values from a few dozen volumes only compare with values from the same N and F.
MIN_SAMPLES = 32


class FewSamplesWarning(UserWarning):
    """A feature set is too small for a reliable covariance (fewer than F + 1 or :data:`MIN_SAMPLES`)."""


def _features(name: str, value, *, min_rows: int = 2) -> np.ndarray:
    """``value`` as a finite float64 ``(N, F)`` array with ``N >= min_rows``; clear errors otherwise."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().to(torch.float64).numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputValidationError(f"{name}: expected an (N, F) array of numbers, got {type(value).__name__}") from exc
    if array.ndim != 2:
        raise InputValidationError(f"{name}: expected an (N, F) feature matrix, got shape {tuple(array.shape)}")
    if array.shape[0] < min_rows or array.shape[1] < 1:
        raise InputValidationError(f"{name}: expected at least {min_rows} feature vectors of at least one "
                                   f"feature, got shape {tuple(array.shape)}")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InputValidationError(f"{name}: expected finite features, got {bad} NaN/inf of {array.size}")
    return array


def _feature_pair(feats_a, feats_b, *, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    a = _features("feats_a", feats_a, min_rows=min_rows)
    b = _features("feats_b", feats_b, min_rows=min_rows)
    if a.shape[1] != b.shape[1]:
        raise InputValidationError(f"feats_a, feats_b: expected the same feature dimension F, got "
                                   f"{a.shape[1]} and {b.shape[1]}")
    return a, b


def gaussian_statistics(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(F,)`` and sample covariance ``(F, F)`` (divisor ``N - 1``) of an ``(N, F)`` set, float64."""
    x = _features("feats", feats)
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b) -> float:
    """Squared Frechet distance between ``N(mean_a, cov_a)`` and ``N(mean_b, cov_b)``.

    ``d^2 = ||mean_a - mean_b||^2 + tr(cov_a) + tr(cov_b) - 2 tr((cov_a^{1/2} cov_b cov_a^{1/2})^{1/2})``.
    The cross term is computed from the symmetric positive semi-definite matrix
    ``cov_a^{1/2} cov_b cov_a^{1/2}`` (same eigenvalues as ``cov_a cov_b``) with ``eigh``, so
    singular covariances give real, finite results; eigenvalues below zero by round-off count as 0.
    The result is clipped at 0 (it is a squared distance; identical inputs give ~1e-13 otherwise).

    Parameters
    ----------
    mean_a, mean_b : (F,) means.
    cov_a, cov_b : (F, F) symmetric positive semi-definite covariances.

    Returns
    -------
    float, in squared feature units.

    >>> frechet_distance_from_statistics([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0]))
    7.0
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
    f = mean_a.shape[0]
    for name, value, shape in (("mean_b", mean_b, (f,)), ("cov_a", cov_a, (f, f)), ("cov_b", cov_b, (f, f))):
        if value.shape != shape:
            raise InputValidationError(f"{name}: expected shape {shape} (from mean_a), got {value.shape}")
    root_a = _psd_sqrt(cov_a)
    product = root_a @ cov_b @ root_a
    cross = np.linalg.eigvalsh((product + product.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(cross, 0.0, None)).sum())
    value = float(np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)
    return max(value, 0.0)


def frechet_distance(feats_a, feats_b, *, min_samples: int = MIN_SAMPLES) -> float:
    """FVD's statistic: squared Frechet distance between the Gaussians fitted to two feature sets.

    Parameters
    ----------
    feats_a, feats_b : (N_a, F) and (N_b, F) arrays or tensors (any float dtype; computed in
        float64). ``N_a`` and ``N_b`` may differ; each must be at least 2.
    min_samples : a set with fewer rows than this, or fewer than ``F + 1`` (singular sample
        covariance), raises a :class:`FewSamplesWarning` through :func:`warnings.warn`. The
        distance is still returned: it is biased upwards for small N, so report N and F with it.

    Returns
    -------
    float : ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` (squared feature units),
        with sample means and covariances (divisor ``N - 1``); see
        :func:`frechet_distance_from_statistics`. Symmetric in its arguments, 0 for identical
        sets, unchanged by a common translation or rotation of the features, scaled by ``c^2``
        when both sets are scaled by ``c``.

    Raises
    ------
    InputValidationError : not 2-D, fewer than 2 rows, different F, or non-finite values.
    """
    a, b = _feature_pair(feats_a, feats_b, min_rows=2)
    f = a.shape[1]
    for name, x in (("feats_a", a), ("feats_b", b)):
        if x.shape[0] < f + 1 or x.shape[0] < min_samples:
            warnings.warn(f"frechet_distance: {name} has N = {x.shape[0]} feature vectors of F = {f}; fewer "
                          f"than F + 1 = {f + 1} makes the covariance singular and fewer than "
                          f"{min_samples} makes it unreliable: the distance is biased upwards and only "
                          "comparable at equal N and F", FewSamplesWarning, stacklevel=2)
    return frechet_distance_from_statistics(*gaussian_statistics(a), *gaussian_statistics(b))


def polynomial_mmd2(feats_a, feats_b, *, degree: int = 2, gamma: float | None = None,
                    coef0: float = 0.0) -> float:
    """Squared MMD with a polynomial kernel, biased (V-statistic) estimator, float64.

    ``k(x, y) = (gamma <x, y> + coef0)^degree`` and

    ``MMD^2 = mean_ij k(a_i, a_j) + mean_ij k(b_i, b_j) - 2 mean_ij k(a_i, b_j)``,

    every mean over *all* pairs, the diagonal ``i = j`` included (the biased estimator; it is
    never negative and is 0 for identical sets). This is the convention that reproduces JEDi's
    reference number: for ``a = [[1,2,3],[4,5,6],[7,8,9]]``, ``b = [[7,6,5],[4,3,2],[1,1,8],
    [0,2,5]]``, degree 2, ``gamma = 1/F = 1/3``, ``coef0 = 0`` it gives 270.72 (the unbiased
    estimator gives -122.57, torchmetrics' equal-size KID estimator -268.93).

    Parameters
    ----------
    feats_a, feats_b : (N_a, F), (N_b, F) features (N >= 1 each).
    degree : kernel degree (>= 1).
    gamma : kernel scale; ``None`` means ``1 / F``.
    coef0 : kernel offset.

    Returns
    -------
    float.

    >>> round(polynomial_mmd2([[1, 2, 3], [4, 5, 6], [7, 8, 9]], [[7, 6, 5], [4, 3, 2], [1, 1, 8], [0, 2, 5]]), 2)
    270.72
    """
    a, b = _feature_pair(feats_a, feats_b, min_rows=1)
    if int(degree) != degree or degree < 1:
        raise InputValidationError(f"degree: expected an integer >= 1, got {degree!r}")
    gamma = 1.0 / a.shape[1] if gamma is None else float(gamma)

    def kernel_mean(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.mean((gamma * (x @ y.T) + coef0) ** int(degree)))

    return kernel_mean(a, a) + kernel_mean(b, b) - 2.0 * kernel_mean(a, b)


def jedi(feats_a, feats_b) -> float:
    """JEDi: ``100 x`` :func:`polynomial_mmd2` with degree 2, ``gamma = 1/F``, ``coef0 = 0`` (biased estimator).

    With this kernel ``k(x, y) = (<x, y> / F)^2`` the statistic is the squared Frobenius distance
    between the two sets' (uncentred) second-moment matrices: ``100 / F^2 ||A^T A / N_a - B^T B / N_b||_F^2``.

    Parameters
    ----------
    feats_a, feats_b : (N_a, F), (N_b, F) features (V-JEPA features in the paper).

    Returns
    -------
    float, >= 0.
    """
    return 100.0 * polynomial_mmd2(feats_a, feats_b, degree=2, gamma=None, coef0=0.0)



def set_distances(feats_a, feats_b, *, min_samples: int = MIN_SAMPLES) -> dict:
    """Both statistics of two feature sets with what they depend on, for one row of a table.

    Returns
    -------
    dict : ``frechet`` (:func:`frechet_distance`), ``jedi`` (:func:`jedi`), ``n_a``, ``n_b``,
        ``feature_dim``, and ``few_samples`` (True when a set has fewer than ``F + 1`` or
        ``min_samples`` vectors: the Frechet distance is then biased upwards; it also warned).
    """
    a, b = _feature_pair(feats_a, feats_b, min_rows=2)
    n_min, f = min(a.shape[0], b.shape[0]), a.shape[1]
    return {"frechet": frechet_distance(a, b, min_samples=min_samples), "jedi": jedi(a, b), "n_a": a.shape[0],
            "n_b": b.shape[0], "feature_dim": f, "few_samples": bool(n_min < f + 1 or n_min < min_samples)}

# --------------------------------------------------------------------------------------------------
# Feature extractors: a volume (D, H, W) is fed to a video network as a video of D slices.
# --------------------------------------------------------------------------------------------------

#: ImageNet channel mean and std (RGB), the normalisation VideoMAE and V-JEPA 2 checkpoints use
#: unless their folder's ``preprocessor_config.json`` says otherwise.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Environment variable naming the folder with the extractors' weights (see :func:`load_extractor`).
WEIGHTS_ENV = "PAPERLIB_WEIGHTS"

#: Extractor names and what :func:`load_extractor` looks for under a weights folder.
EXTRACTOR_FILES = {
    "project-mri": "encoder_mri_default",   # folder: encoder.json + encoder.safetensors (also in checkpoints/)
    "project-stem": "encoder_stem_default",
    "i3d": "i3d_torchscript.pt",            # TorchScript I3D of the common PyTorch FVD code (400 features)
    "videomae": "videomae",                 # folder: config.json (model_type videomae) + model.safetensors
    "vjepa": "vjepa2",                      # folder: config.json (model_type vjepa2) + model.safetensors
}


def frame_indices(depth: int, num_frames: int | None) -> Tensor:
    """Slices that become the frames of a clip: ``round(linspace(0, depth - 1, num_frames))``.

    Uniform temporal sampling: a deeper volume is subsampled, a shallower one repeats slices
    (nearest slice), the first and last slices are always kept. ``None`` keeps every slice.

    >>> frame_indices(16, 4).tolist(), frame_indices(3, 6).tolist()
    ([0, 5, 10, 15], [0, 0, 1, 1, 2, 2])
    """
    if num_frames is None:
        return torch.arange(depth)
    return torch.linspace(0, depth - 1, int(num_frames), dtype=torch.float64).round().long()


def volumes_to_frames(volumes: Tensor, *, num_frames: int | None, size: int,
                      value_range: tuple[float, float] = (0.0, 1.0)) -> Tensor:
    """``(B, D, H, W)`` volumes -> ``(B, T, 3, size, size)`` RGB frames in [0, 1], float32.

    1. values: ``(v - lo) / (hi - lo)`` with ``(lo, hi) = value_range``, clipped to [0, 1]; one fixed
       range for every set compared (MRI intensities: (0, 1)), never a per-volume min-max, which
       would hide intensity errors;
    2. frames: slices :func:`frame_indices` (``T = num_frames``, or ``D`` when ``None``);
    3. space: the shorter in-plane side scaled to ``size`` (bilinear, antialiased when shrinking),
       then a centred ``size x size`` crop (the usual FVD preprocessing);
    4. channels: the grey value repeated in R, G and B.
    """
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise InputValidationError(f"value_range: expected (lo, hi) with hi > lo, got {value_range}")
    x = ((volumes.to(torch.float32) - lo) / (hi - lo)).clamp(0.0, 1.0)
    x = x[:, frame_indices(x.shape[1], num_frames)]
    b, t, h, w = x.shape
    scale = size / min(h, w)
    new_h, new_w = max(size, round(h * scale)), max(size, round(w * scale))
    x = F.interpolate(x.reshape(b * t, 1, h, w), size=(new_h, new_w), mode="bilinear", align_corners=False,
                      antialias=scale < 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    x = x[:, :, top:top + size, left:left + size].reshape(b, t, 1, size, size)
    return x.expand(b, t, 3, size, size).contiguous()


class VolumeFeatureExtractor:
    """A feature extractor for :func:`volume_features`: ``(B, D, H, W)`` volumes -> ``(B, F)`` features.

    Attributes
    ----------
    name : ``"project-mri"``, ``"i3d"``, ... (what a table names).
    source : the file or folder it was loaded from.
    sha256 : SHA-256 of the weights file.
    convention : how volumes are turned into the network's input (for the table's notes).
    """

    name: str = ""
    source: str = ""
    sha256: str = ""
    convention: str = ""

    def __call__(self, volumes: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self) -> dict:
        """JSON-serialisable description: name, source, sha256, convention."""
        return {"name": self.name, "source": self.source, "sha256": self.sha256, "convention": self.convention}


class ProjectEncoderExtractor(VolumeFeatureExtractor):
    """The project's 3D encoder (:mod:`paperlib.metrics.encoder`) on volumes in the priors' data units."""

    def __init__(self, encoder, manifest: dict, source: str, name: str = "project"):
        self.encoder, self.manifest = encoder, manifest
        self.name, self.source, self.sha256 = name, source, manifest["sha256"]
        shape = "x".join(str(v) for v in encoder.cfg.input_shape)
        self.convention = (f"project 3D encoder ({encoder.cfg.feature_dim} features), volumes in the prior's "
                           f"data units, resampled trilinearly to {shape} (D x H x W)")

    def __call__(self, volumes: Tensor) -> Tensor:
        return self.encoder(volumes)


class I3DExtractor(VolumeFeatureExtractor):
    """I3D as used for FVD: the TorchScript ``i3d_torchscript.pt`` of the common PyTorch FVD code.

    Input ``(B, 3, T, 224, 224)`` in [-1, 1] (:func:`volumes_to_frames` then ``2 x - 1``), called as
    ``model(x, rescale=False, resize=False, return_features=True)``: the 400 logits before the
    softmax. ``T = num_frames`` (16, FVD's clip length, by default).
    """

    def __init__(self, module, source: str, sha256: str, *, num_frames: int | None = 16, size: int = 224,
                 value_range: tuple[float, float] = (0.0, 1.0)):
        self.module, self.num_frames, self.size, self.value_range = module, num_frames, size, value_range
        self.name, self.source, self.sha256 = "i3d", source, sha256
        self.convention = (f"I3D (TorchScript), {num_frames or 'D'} frames by uniform slice sampling, "
                           f"{size}x{size} (shorter side scaled, centre crop), grey repeated to RGB, "
                           f"values {value_range} -> [-1, 1]")

    def __call__(self, volumes: Tensor) -> Tensor:
        frames = volumes_to_frames(volumes, num_frames=self.num_frames, size=self.size, value_range=self.value_range)
        video = (2.0 * frames - 1.0).permute(0, 2, 1, 3, 4).contiguous()
        return self.module(video, rescale=False, resize=False, return_features=True)


class TransformersVideoExtractor(VolumeFeatureExtractor):
    """VideoMAE or V-JEPA 2 from a Hugging Face ``transformers`` folder (config.json + model.safetensors).

    Input ``(B, T, 3, S, S)``: :func:`volumes_to_frames` with ``T`` the model's clip length
    (``num_frames`` of VideoMAE, ``frames_per_clip`` of V-JEPA 2) and ``S`` its image size
    (``image_size`` / ``crop_size``), normalised per channel with the folder's
    ``preprocessor_config.json`` mean and std (ImageNet's when absent). Features: the mean of the
    encoder's output tokens (``last_hidden_state``), or, for a V-JEPA 2 video classifier folder
    (``VJEPA2ForVideoClassification``, e.g. the SSv2 probe JEDi uses), the attentive pooler's output.
    """

    def __init__(self, model, kind: str, source: str, sha256: str, *, num_frames: int, size: int,
                 mean: Sequence[float], std: Sequence[float], value_range: tuple[float, float] = (0.0, 1.0)):
        self.model, self.kind = model, kind
        self.num_frames, self.size, self.value_range = num_frames, size, value_range
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, 1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, 1, 3, 1, 1)
        self.name, self.source, self.sha256 = kind, source, sha256
        pooled = "attentive pooler" if hasattr(model, "pooler") else "mean of output tokens"
        self.convention = (f"{kind} (transformers {type(model).__name__}), {num_frames} frames by uniform slice "
                           f"sampling, {size}x{size} (shorter side scaled, centre crop), grey repeated to RGB, "
                           f"values {value_range} -> [0, 1] -> (x - mean) / std, features: {pooled}")

    def __call__(self, volumes: Tensor) -> Tensor:
        frames = volumes_to_frames(volumes, num_frames=self.num_frames, size=self.size, value_range=self.value_range)
        video = (frames - self.mean) / self.std
        if self.kind == "videomae":
            return self.model(pixel_values=video).last_hidden_state.mean(dim=1)
        if hasattr(self.model, "pooler"):  # VJEPA2ForVideoClassification: the probe's pooled features
            tokens = self.model.vjepa2(pixel_values_videos=video, skip_predictor=True).last_hidden_state
            return self.model.pooler(tokens)
        return self.model(pixel_values_videos=video, skip_predictor=True).last_hidden_state.mean(dim=1)


def _weights_folders(weights_dir) -> list[Path]:
    folders = [Path(weights_dir)] if weights_dir else []
    if os.environ.get(WEIGHTS_ENV):
        folders.append(Path(os.environ[WEIGHTS_ENV]))
    return folders


def _candidates(name: str, weights_dir) -> list[Path]:
    found = [folder / EXTRACTOR_FILES[name] for folder in _weights_folders(weights_dir)]
    if name.startswith("project-"):
        found.append(repo_root() / "checkpoints" / EXTRACTOR_FILES[name])
    return found


def _load_transformers(path: Path, expected: str | None, value_range) -> TransformersVideoExtractor:
    config = json.loads((path / "config.json").read_text())
    kind = {"videomae": "videomae", "vjepa2": "vjepa"}.get(config.get("model_type"))
    if kind is None or (expected is not None and kind != expected):
        want = expected or "videomae or vjepa"
        raise InputValidationError(f"{path / 'config.json'}: expected model_type for {want} "
                                   f"('videomae' or 'vjepa2'), got {config.get('model_type')!r}")
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise InputValidationError(f"{path}: expected model.safetensors beside config.json (save_pretrained format)")
    try:
        import transformers
    except ImportError as exc:
        raise ImportError(f"{path}: loading {kind} needs the `transformers` package: "
                          "pip install 'paperlib[video]'") from exc
    if kind == "videomae":
        cls, frames, size = transformers.VideoMAEModel, config.get("num_frames", 16), config.get("image_size", 224)
    else:
        classifier = "VJEPA2ForVideoClassification" in (config.get("architectures") or [])
        cls = transformers.VJEPA2ForVideoClassification if classifier else transformers.VJEPA2Model
        frames, size = config.get("frames_per_clip", 64), config.get("crop_size", 256)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    for name in ("preprocessor_config.json", "video_preprocessor_config.json"):
        if (path / name).is_file():
            pre = json.loads((path / name).read_text())
            mean, std = pre.get("image_mean", mean), pre.get("image_std", std)
    model = cls.from_pretrained(str(path), local_files_only=True).eval()
    return TransformersVideoExtractor(model, kind, str(path), sha256_file(weights), num_frames=int(frames),
                                      size=int(size), mean=mean, std=std, value_range=value_range)


def _load_path(path: Path, expected: str | None, *, value_range, num_frames) -> VolumeFeatureExtractor:
    if path.is_dir() and (path / "encoder.json").is_file():
        from .encoder import load_encoder

        encoder, manifest = load_encoder(path)
        modality = manifest["dataset"].get("modality", "custom")
        name = expected if expected and expected.startswith("project") else f"project-{modality}"
        return ProjectEncoderExtractor(encoder, manifest, str(path), name=name)
    if path.is_dir() and (path / "config.json").is_file():
        return _load_transformers(path, expected, value_range)
    if path.is_file() and path.suffix == ".pt":
        try:
            with warnings.catch_warnings():  # torch 2.13 deprecates TorchScript; the I3D file is TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(path), map_location="cpu").eval()
        except (RuntimeError, ValueError) as exc:
            raise InputValidationError(f"{path}: expected a TorchScript I3D (torch.jit.save), could not load it "
                                       f"({str(exc).splitlines()[0]})") from None
        return I3DExtractor(module, str(path), sha256_file(path), num_frames=num_frames, size=224,
                            value_range=value_range)
    raise InputValidationError(f"{path}: not an extractor: expected a folder with encoder.json (project encoder), "
                               "a folder with config.json + model.safetensors (VideoMAE / V-JEPA 2), or a "
                               "TorchScript I3D .pt file")


def load_extractor(name_or_path: str | os.PathLike, *, weights_dir: str | os.PathLike | None = None,
                   value_range: tuple[float, float] = (0.0, 1.0),
                   num_frames: int | None = 16) -> VolumeFeatureExtractor:
    """Load a feature extractor by name or path; nothing is downloaded.

    Parameters
    ----------
    name_or_path : one of :data:`EXTRACTOR_FILES` (``"project-mri"``, ``"project-stem"``, ``"i3d"``,
        ``"videomae"``, ``"vjepa"``), or a path to such a file or folder. A name is looked up, in
        this order, under ``weights_dir`` (the profile's weights folder), under ``$PAPERLIB_WEIGHTS``
        and, for the project encoders, in the repository's ``checkpoints/``. Files:

        - ``project-mri`` / ``project-stem``: folder ``encoder_mri_default/`` / ``encoder_stem_default/``
          with ``encoder.json`` + ``encoder.safetensors`` (:func:`paperlib.metrics.encoder.save_encoder`);
        - ``i3d``: ``i3d_torchscript.pt``, the TorchScript I3D of the PyTorch FVD code (StyleGAN-V's);
        - ``videomae``: folder ``videomae/`` from ``save_pretrained`` of a ``VideoMAEModel`` (config.json
          with ``model_type: videomae`` + model.safetensors, optional preprocessor_config.json);
        - ``vjepa``: folder ``vjepa2/`` from ``save_pretrained`` of a ``VJEPA2Model`` or
          ``VJEPA2ForVideoClassification`` (``model_type: vjepa2``).
    weights_dir : folder searched first (e.g. the profile's ``weights`` entry).
    value_range : for the video networks, the data values mapped to [0, 1] (:func:`volumes_to_frames`);
        the project encoders take the prior's data units and ignore it.
    num_frames : I3D clip length (frames sampled uniformly from the slices; ``None``: all slices).
        VideoMAE and V-JEPA 2 use their config's clip length.

    Raises
    ------
    InputValidationError : an unknown name (the known ones listed), no candidate file found (every
        path looked at listed), or a file of the wrong format.
    paperlib.diffusion.checkpoints.CheckpointError : a corrupt project encoder.
    """
    text = str(name_or_path)
    if text in EXTRACTOR_FILES:
        candidates = _candidates(text, weights_dir)
        for candidate in candidates:
            if candidate.exists():
                return _load_path(candidate, text, value_range=value_range, num_frames=num_frames)
        looked = ", ".join(str(c) for c in candidates) or "nowhere"
        raise InputValidationError(f"extractor {text!r}: no {EXTRACTOR_FILES[text]} found; looked in {looked}. "
                                   f"Put the weights there, pass weights_dir, or set ${WEIGHTS_ENV} "
                                   "(see paperlib.metrics.video.load_extractor for the formats)")
    path = Path(text)
    if not path.exists():
        raise InputValidationError(f"extractor {text!r}: expected one of {sorted(EXTRACTOR_FILES)} or an existing "
                                   "file or folder, got neither")
    return _load_path(path, None, value_range=value_range, num_frames=num_frames)


def volume_features(volumes, extractor: VolumeFeatureExtractor | str, *, batch_size: int = 8,
                    progress: bool = False) -> np.ndarray:
    """Features of N volumes: ``(N, F)`` float64, for any extractor of :func:`load_extractor`.

    Parameters
    ----------
    volumes : (N, D, H, W) tensor or array, or a sequence of N (D, H, W) volumes of one shape, in
        the units the extractor expects (the priors' data units for the project encoders; see
        ``value_range`` of :func:`load_extractor` for the video networks).
    extractor : a :class:`VolumeFeatureExtractor`, or a name / path given to :func:`load_extractor`.
    batch_size : volumes per forward pass.
    progress : tqdm bar over the batches.

    Returns
    -------
    (N, F) float64 numpy array; the extractors are deterministic (eval mode, no dropout), so the
    same volumes give the same features in any batch.
    """
    from tqdm.auto import tqdm

    if isinstance(volumes, (list, tuple)):
        try:
            volumes = torch.stack([torch.as_tensor(v) for v in volumes])
        except (RuntimeError, TypeError) as exc:
            raise InputValidationError(f"volumes: expected N volumes (D, H, W) of one shape ({exc})") from None
    volumes = torch.as_tensor(volumes)
    if volumes.ndim != 4 or min(volumes.shape) < 1:
        raise InputValidationError(f"volumes: expected an (N, D, H, W) stack of volumes, "
                                   f"got shape {tuple(volumes.shape)}")
    if volumes.is_complex() or not bool(torch.isfinite(volumes).all()):
        raise InputValidationError("volumes: expected finite real values")
    if int(batch_size) < 1:
        raise InputValidationError(f"batch_size: expected >= 1, got {batch_size}")
    if isinstance(extractor, (str, os.PathLike)):
        extractor = load_extractor(extractor)
    out = []
    with torch.inference_mode():
        for start in tqdm(range(0, volumes.shape[0], int(batch_size)), desc=f"features ({extractor.name})",
                          disable=not progress):
            out.append(extractor(volumes[start:start + int(batch_size)].to(torch.float32)).to(torch.float64).cpu())
    return torch.cat(out).numpy()
