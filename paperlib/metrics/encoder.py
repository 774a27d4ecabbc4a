"""The project's offline feature extractor: a small 3D encoder trained contrastively on the priors' own volumes.

No pretrained video network can be downloaded here, so the default profile computes FVD's Frechet
distance and JEDi (:mod:`paperlib.metrics.video`) on the features of this encoder, trained by the
project on the training volumes of the diffusion priors (:func:`paperlib.data.training.load_training_data`:
the synthetic brain ``train`` split for MRI, the crystals' scaled projected potentials for 4D-STEM).

Model (:class:`VolumeEncoder`)
------------------------------
A volume ``(D, H, W)`` (slices first, float32, in the units of the prior's training data: MRI
intensities in [0, 1], 4D-STEM potentials divided by ``stem_prior.data_scale``) is

1. resampled to the encoder's ``input_shape`` by trilinear interpolation when its shape differs
   (``align_corners=False``), and standardised with the training set's mean and standard deviation
   (stored in the config);
2. passed through ``len(widths)`` stages of two 3x3x3 convolutions with SiLU, the first with
   stride 2 in-plane and stride 2 in depth while the depth is at least 4;
3. pooled to the mean and the standard deviation of each channel over all positions and mapped
   linearly to ``feature_dim`` features: the features used by the metrics (float32
   ``(B, feature_dim)``). There is no normalisation layer: a volume's features do not depend on
   the batch it is in, and per-sample normalisation (GroupNorm before a mean pool) made every
   volume's pooled features nearly equal, so the contrastive loss could not start.

Training (:func:`train_encoder`)
--------------------------------
SimCLR-style instance discrimination (Chen et al. 2020): each step takes ``batch_size`` distinct
training volumes, makes two random views of each (:func:`augment`: flips, circular in-plane
shifts of up to ``max_shift`` pixels, 90-degree in-plane rotations where enabled, a global
intensity factor in ``[1 - intensity, 1 + intensity]``), maps the features through a two-layer
projection head and minimises the symmetric InfoNCE loss (NT-Xent, cosine similarity over
``temperature``) that makes the two views of a volume closer than views of the other volumes and
than a *degraded* copy of each volume in the batch (:func:`degrade`: added noise, slices in random
order, or an in-plane blur), used as an extra negative only (negative data augmentation, Sinha et
al. 2021), plus the cross-entropy of a linear classifier on the features that names the
degradation (:data:`DEGRADATIONS`; clean views are class 0). Plain contrastive training on flips
and shifts gave features blind to noise (Frechet distance to the training volumes with noise of
0.1 no larger than between two halves of the training set), and so did the degraded negatives
alone (the copy can be pushed anywhere that is far from its own views); the classifier gives
each degradation a consistent direction in feature space, so that a set of noisy, blurred or
depth-incoherent volumes moves away from the training distribution as a whole. AdamW with a
cosine learning-rate decay to a tenth; parameters initialised and every random choice drawn from
``seed`` (explicit generators; the caller's RNG is untouched).

The shipped encoders (600 steps of 12 volumes, one thread, 692 s for MRI and 519 s for 4D-STEM on
a shared 2-core CPU; losses in their manifests) give, between the two halves of their training set,
a Frechet distance of 5.6 (MRI) and 55 (4D-STEM, a more varied set), and between one half and the
other half noised by 0.25 (MRI) / 0.5 (4D-STEM) of the data's standard deviation 376 / 200, with
the slices shuffled 1167 / 254, blurred 92 / 171 (``tests/test_encoder.py``). Weaker noise
(0.1 of the standard deviation: 16 / 60) is hardly told from sampling variation at these N.

Files (one folder per extractor, e.g. ``checkpoints/encoder_mri_default/``)::

    encoder.safetensors   float32 weights (the config is also stored in the header)
    encoder.json          manifest: format, weights file name, size and SHA-256, config,
                          training settings, steps, final loss, wall time, threads, and the
                          training data's description and fingerprint

:func:`load_encoder` checks size and SHA-256 and the config in both files and refuses a missing,
corrupt or mismatched file with :class:`~paperlib.diffusion.checkpoints.CheckpointError`.

Retrain with ``python -m paperlib.metrics.encoder train --modality mri --profile default --out
checkpoints/encoder_mri_default`` (``--modality stem`` likewise; ``--help`` lists the settings).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor, nn
from torch.nn import functional as F

from ..diffusion.bundles import data_fingerprint
from ..diffusion.checkpoints import CheckpointError
from ..io import InputValidationError, atomic_write_bytes, atomic_write_text

FORMAT = "paperlib.encoder/1"
WEIGHTS_NAME = "encoder.safetensors"
MANIFEST_NAME = "encoder.json"


#: What :attr:`VolumeEncoder.degradation_head` tells apart (index = class; :func:`degrade` makes 1-3).
DEGRADATIONS = ("clean", "noise", "slice_shuffle", "blur")


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture and input convention of a :class:`VolumeEncoder`.

    Attributes
    ----------
    input_shape : (D, H, W) the volumes are resampled to (the training volumes' shape).
    input_mean, input_std : standardisation of the input (training set mean and std, data units).
    widths : channels of the stages.
    feature_dim : F, the number of features the metrics see.
    projection_dim : output size of the projection head used only by the training loss.
    """

    input_shape: tuple[int, int, int]
    input_mean: float = 0.0
    input_std: float = 1.0
    widths: tuple[int, ...] = (8, 16, 32)
    feature_dim: int = 16
    projection_dim: int = 32

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "widths", tuple(int(v) for v in self.widths))
        if len(self.input_shape) != 3 or min(self.input_shape) < 1:
            raise ValueError(f"input_shape: expected (D, H, W) of positive sizes, got {self.input_shape}")
        if not self.input_std > 0:
            raise ValueError(f"input_std: expected > 0, got {self.input_std}")
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths: expected positive channel counts, got {self.widths}")

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class EncoderTrainConfig:
    """Settings of :func:`train_encoder` (recorded in the manifest).

    Attributes
    ----------
    steps, batch_size : optimiser steps; distinct volumes per step (two views each).
    lr, weight_decay : AdamW; the learning rate decays as a cosine to ``lr / 10`` at the last step.
    temperature : InfoNCE temperature on cosine similarities.
    seed : initialisation and every random draw.
    max_shift : largest circular in-plane shift of a view, pixels.
    intensity : views are multiplied by a factor uniform in ``[1 - intensity, 1 + intensity]``.
    flip_axes : spatial axes of a ``(D, H, W)`` volume flipped with probability 1/2 each.
    rotate90 : random in-plane rotations by multiples of 90 degrees (crystals; not brains).
    noise_range : noise of the degraded negatives (:func:`degrade`), in units of the data's standard deviation.
    degradation_weight : weight of the cross-entropy of the linear degradation classifier on the features.
    """

    steps: int = 600
    batch_size: int = 12
    lr: float = 1e-3
    weight_decay: float = 1e-4
    temperature: float = 0.2
    seed: int = 0
    max_shift: int = 4
    intensity: float = 0.1
    flip_axes: tuple[int, ...] = (2,)
    rotate90: bool = False
    noise_range: tuple[float, float] = (0.1, 0.75)
    degradation_weight: float = 1.0

    def __post_init__(self):
        object.__setattr__(self, "flip_axes", tuple(int(a) for a in self.flip_axes))
        object.__setattr__(self, "noise_range", tuple(float(v) for v in self.noise_range))
        if self.steps < 1 or self.batch_size < 2:
            raise ValueError(f"steps >= 1 and batch_size >= 2 expected, got {self.steps}, {self.batch_size}")
        if not set(self.flip_axes) <= {0, 1, 2}:
            raise ValueError(f"flip_axes: expected axes among 0, 1, 2 of (D, H, W), got {self.flip_axes}")


#: Training settings per modality: brains are left-right symmetric only; crystals in any in-plane orientation.
MODALITY_TRAINING = {
    "mri": EncoderTrainConfig(flip_axes=(2,), rotate90=False),
    "stem": EncoderTrainConfig(flip_axes=(1, 2), rotate90=True),
}


def _block(cin: int, cout: int, stride: tuple[int, int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, stride=stride, padding=1), nn.SiLU(),
                         nn.Conv3d(cout, cout, 3, padding=1), nn.SiLU())


class VolumeEncoder(nn.Module):
    """Small 3D CNN: ``(B, D, H, W)`` volumes -> ``(B, feature_dim)`` features (see the module docstring).

    >>> enc = VolumeEncoder(EncoderConfig(input_shape=(8, 16, 16), widths=(8, 8), feature_dim=4))
    >>> enc(torch.zeros(3, 8, 16, 16)).shape
    torch.Size([3, 4])
    """

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        stages, cin, depth = [], 1, cfg.input_shape[0]
        for width in cfg.widths:
            stride_d = 2 if depth >= 4 else 1
            depth = (depth + stride_d - 1) // stride_d
            stages.append(_block(cin, width, (stride_d, 2, 2)))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.to_features = nn.Linear(2 * cin, cfg.feature_dim)
        self.projection = nn.Sequential(nn.Linear(cfg.feature_dim, cfg.projection_dim), nn.SiLU(),
                                        nn.Linear(cfg.projection_dim, cfg.projection_dim))
        self.degradation_head = nn.Linear(cfg.feature_dim, len(DEGRADATIONS))
        for module in self.stages.modules():  # He initialisation: without normalisation layers the
            if isinstance(module, nn.Conv3d):  # default init shrinks the signal ~3x per convolution
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def prepare(self, volumes: Tensor) -> Tensor:
        """``(B, D, H, W)`` -> ``(B, 1, *input_shape)`` resampled (trilinear) and standardised, float32."""
        x = volumes.to(torch.float32).unsqueeze(1)
        if tuple(x.shape[2:]) != self.cfg.input_shape:
            x = F.interpolate(x, size=self.cfg.input_shape, mode="trilinear", align_corners=False)
        return (x - self.cfg.input_mean) / self.cfg.input_std

    def forward(self, volumes: Tensor) -> Tensor:
        """Features ``(B, feature_dim)`` of ``(B, D, H, W)`` volumes."""
        h = self.stages(self.prepare(volumes)).flatten(2)
        return self.to_features(torch.cat([h.mean(dim=2), h.std(dim=2)], dim=1))


def augment(volumes: Tensor, cfg: EncoderTrainConfig, generator: torch.Generator) -> Tensor:
    """One random view of each ``(B, D, H, W)`` volume (flips, in-plane shift/rotation, intensity factor)."""
    views = []
    for volume in volumes:
        for axis in cfg.flip_axes:
            if torch.rand((), generator=generator) < 0.5:
                volume = volume.flip(axis)
        if cfg.rotate90:
            volume = torch.rot90(volume, int(torch.randint(4, (), generator=generator)), dims=(1, 2))
        if cfg.max_shift > 0:
            shift = torch.randint(-cfg.max_shift, cfg.max_shift + 1, (2,), generator=generator)
            volume = torch.roll(volume, (int(shift[0]), int(shift[1])), dims=(1, 2))
        factor = 1.0 + cfg.intensity * (2 * float(torch.rand((), generator=generator)) - 1)
        views.append(volume * factor)
    return torch.stack(views)


def info_nce(z1: Tensor, z2: Tensor, temperature: float, negatives: Tensor | None = None) -> Tensor:
    """Symmetric InfoNCE (NT-Xent) of two ``(B, P)`` batches of projections; row ``i`` of each is one volume.

    Each of the ``2B`` views is an anchor whose positive is the other view of its volume; the
    candidates are all other views plus the ``(M, P)`` ``negatives`` (degraded volumes), which
    are never anchors. Cosine similarities over ``temperature``; chance level is ``log(2B - 1 + M)``.
    """
    anchors = F.normalize(torch.cat([z1, z2]), dim=1)
    candidates = anchors if negatives is None else torch.cat([anchors, F.normalize(negatives, dim=1)])
    logits = anchors @ candidates.T / temperature
    b = z1.shape[0]
    logits[:, :2 * b].fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(b)])
    return F.cross_entropy(logits, target)


def degrade(volumes: Tensor, cfg: "EncoderTrainConfig", noise_unit: float,
            generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A degraded copy of each ``(B, D, H, W)`` volume: a negative for the contrastive loss.

    One of, at random: Gaussian noise of standard deviation ``noise_unit x U(noise_range)``
    (kind 1); the slices in a random order (kind 2); an in-plane 3 x 3 box blur (kind 3). Then the
    same kind of view as :func:`augment` makes, so that only the degradation tells it from its
    volume's views. Returns the copies and their ``(B,)`` kinds (0 is kept for clean views).
    """
    out, kinds = [], []
    for volume in volumes:
        kind = int(torch.randint(3, (), generator=generator))
        if kind == 0:
            lo, hi = cfg.noise_range
            sigma = noise_unit * (lo + (hi - lo) * float(torch.rand((), generator=generator)))
            volume = volume + sigma * torch.randn(volume.shape, generator=generator)
        elif kind == 1:
            volume = volume[torch.randperm(volume.shape[0], generator=generator)]
        else:
            volume = F.avg_pool2d(volume[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]
        out.append(volume)
        kinds.append(kind + 1)
    return augment(torch.stack(out), cfg, generator), torch.tensor(kinds)


def _check_volumes(name: str, volumes) -> Tensor:
    if not isinstance(volumes, torch.Tensor) or volumes.ndim != 4 or min(volumes.shape) < 1:
        shape = tuple(volumes.shape) if hasattr(volumes, "shape") else type(volumes).__name__
        raise InputValidationError(f"{name}: expected an (N, D, H, W) tensor of volumes, got {shape}")
    if not bool(torch.isfinite(volumes).all()):
        raise InputValidationError(f"{name}: expected finite values")
    return volumes.to(torch.float32)


def train_encoder(data: Tensor, cfg: EncoderTrainConfig = EncoderTrainConfig(), *,
                  encoder_cfg: EncoderConfig | None = None, progress: bool = True) -> tuple[VolumeEncoder, dict]:
    """Train a :class:`VolumeEncoder` on ``(N, D, H, W)`` volumes by InfoNCE over two views (module docstring).

    Parameters
    ----------
    data : (N, D, H, W) float32 training volumes, N >= 2 (``batch_size`` is capped at N).
    cfg : training settings.
    encoder_cfg : architecture; ``None``: the defaults with ``input_shape = (D, H, W)`` and the
        data's mean and standard deviation.
    progress : tqdm bar over the steps, loss shown.

    Returns
    -------
    encoder : the trained network, in eval mode.
    record : ``{"steps", "final_loss" (mean of the last 20 steps), "chance_loss" (the loss of
        constant features), "loss_every_50", "time_s", "threads"}``.
    """
    from tqdm.auto import tqdm

    data = _check_volumes("data", data)
    if data.shape[0] < 2:
        raise InputValidationError(f"data: expected at least 2 volumes, got {data.shape[0]}")
    if encoder_cfg is None:
        encoder_cfg = EncoderConfig(input_shape=tuple(data.shape[1:]), input_mean=float(data.mean()),
                                    input_std=float(data.std()))
    batch = min(cfg.batch_size, data.shape[0])
    noise_unit = float(data.std())
    generator = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        encoder = VolumeEncoder(encoder_cfg)
    optimizer = torch.optim.AdamW(encoder.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    losses, start = [], time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="encoder", disable=not progress)
    encoder.train()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * step / max(cfg.steps - 1, 1))))
        chosen = data[torch.randperm(data.shape[0], generator=generator)[:batch]]
        degraded, kinds = degrade(chosen, cfg, noise_unit, generator)
        views = torch.cat([augment(chosen, cfg, generator), augment(chosen, cfg, generator), degraded])
        features = encoder(views)
        projections = encoder.projection(features)
        loss = info_nce(projections[:batch], projections[batch:2 * batch], cfg.temperature,
                        negatives=projections[2 * batch:])
        labels = torch.cat([torch.zeros(2 * batch, dtype=torch.long), kinds])
        loss = loss + cfg.degradation_weight * F.cross_entropy(encoder.degradation_head(features), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
    encoder.eval()
    tail = losses[-20:]
    # constant features: InfoNCE at log(3B - 1), the classifier at the entropy of the labels (2/3 clean, 1/9 each)
    chance = math.log(3 * batch - 1) + cfg.degradation_weight * (2 / 3 * math.log(3 / 2) + 1 / 3 * math.log(9))
    return encoder, {"steps": cfg.steps, "final_loss": sum(tail) / len(tail), "chance_loss": chance,
                     "loss_every_50": [round(v, 5) for v in losses[::50]],
                     "time_s": round(time.perf_counter() - start, 1), "threads": torch.get_num_threads()}


def save_encoder(folder: str | os.PathLike, encoder: VolumeEncoder, *, training: dict | None = None,
                 dataset: dict | None = None) -> dict:
    """Write ``encoder.safetensors`` (float32) and the ``encoder.json`` manifest into ``folder`` atomically.

    Parameters
    ----------
    folder : output folder (created).
    encoder : the network; its config goes into both files.
    training : JSON-serialisable training record (settings, steps, loss, time).
    dataset : JSON-serialisable description of the training data (with its fingerprint).

    Returns
    -------
    The manifest, as written.
    """
    folder = Path(folder)
    config = encoder.cfg.to_json()
    tensors = {k: v.detach().to(torch.float32).contiguous() for k, v in encoder.state_dict().items()}
    blob = st_save(tensors, metadata={"format": FORMAT, "config": json.dumps(config, sort_keys=True)})
    atomic_write_bytes(folder / WEIGHTS_NAME, blob)
    manifest = {"format": FORMAT, "weights": WEIGHTS_NAME, "size_bytes": len(blob),
                "sha256": hashlib.sha256(blob).hexdigest(), "config": config, "training": training or {},
                "dataset": dataset or {}, "torch": torch.__version__.split("+")[0]}
    atomic_write_text(folder / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def load_encoder(path: str | os.PathLike) -> tuple[VolumeEncoder, dict]:
    """Load and verify an encoder saved by :func:`save_encoder`.

    Parameters
    ----------
    path : the folder holding ``encoder.json`` and ``encoder.safetensors``, or the manifest itself.

    Returns
    -------
    encoder : :class:`VolumeEncoder` in eval mode, float32.
    manifest : the manifest (dict).

    Raises
    ------
    CheckpointError : missing or unreadable manifest or weights, wrong format, size or SHA-256
        mismatch (a corrupt or replaced file), or a config that differs between the two files.
    """
    path = Path(path)
    manifest_file = path / MANIFEST_NAME if path.is_dir() or path.suffix != ".json" else path
    try:
        manifest = json.loads(manifest_file.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{manifest_file}: encoder manifest not found (expected {MANIFEST_NAME} beside "
                              f"{WEIGHTS_NAME}; train one with `python -m paperlib.metrics.encoder train`)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{manifest_file}: unreadable encoder manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{manifest_file}: expected format {FORMAT!r}, got {got!r}")
    weights_file = manifest_file.parent / str(manifest.get("weights", WEIGHTS_NAME))
    try:
        blob = weights_file.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{weights_file}: encoder weights unreadable ({exc.strerror or exc})") from None
    if len(blob) != manifest.get("size_bytes") or hashlib.sha256(blob).hexdigest() != manifest.get("sha256"):
        raise CheckpointError(f"{weights_file}: corrupt or replaced: {len(blob)} bytes with SHA-256 "
                              f"{hashlib.sha256(blob).hexdigest()[:16]}..., the manifest {manifest_file.name} "
                              f"pins {manifest.get('size_bytes')} bytes, {str(manifest.get('sha256'))[:16]}...")
    try:
        tensors = st_load(blob)
        header_len = int.from_bytes(blob[:8], "little")
        header = json.loads(blob[8:8 + header_len])
    except (SafetensorError, ValueError) as exc:
        raise CheckpointError(f"{weights_file}: not a safetensors file ({exc})") from None
    stored = json.loads(header.get("__metadata__", {}).get("config", "null"))
    if stored != manifest.get("config"):
        raise CheckpointError(f"{weights_file}: config in the weights {stored} differs from the manifest's "
                              f"{manifest.get('config')}")
    try:
        encoder = VolumeEncoder(EncoderConfig(**manifest["config"]))
        encoder.load_state_dict(tensors)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights_file}: weights do not fit the config ({exc})") from None
    return encoder.eval(), manifest


def train_main(argv: Sequence[str] | None = None) -> int:
    """``python -m paperlib.metrics.encoder train``: train and save an encoder on a profile's training volumes."""
    p = argparse.ArgumentParser(prog="python -m paperlib.metrics.encoder",
                                description="Train the project's 3D feature encoder (FVD/JEDi extractor) "
                                            "on the priors' training volumes.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train and write encoder.safetensors + encoder.json")
    t.add_argument("--modality", choices=sorted(MODALITY_TRAINING), required=True)
    t.add_argument("--profile", default="default", help="profile name or YAML (default: default)")
    t.add_argument("--out", required=True, help="output folder, e.g. checkpoints/encoder_mri_default")
    t.add_argument("--steps", type=int, help="optimiser steps (default %d)" % EncoderTrainConfig.steps)
    t.add_argument("--seed", type=int, help="seed (default 0)")
    t.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    from dataclasses import replace

    from ..data.training import load_training_data

    torch.set_num_threads(args.threads)
    cfg = MODALITY_TRAINING[args.modality]
    cfg = replace(cfg, **{k: v for k, v in (("steps", args.steps), ("seed", args.seed)) if v is not None})
    data, dataset = load_training_data(args.modality, args.profile)
    dataset = {**dataset, "shape": list(data.shape), "fingerprint": data_fingerprint(data)}
    encoder, record = train_encoder(data, cfg, progress=not args.no_progress)
    training = {**{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}, **record}
    manifest = save_encoder(args.out, encoder, training=training, dataset=dataset)
    print(f"wrote {Path(args.out) / WEIGHTS_NAME} ({manifest['size_bytes']} bytes, final loss "
          f"{record['final_loss']:.4f}, {record['time_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
