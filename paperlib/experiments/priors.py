"""The shipped priors as the experiments use them: loaded (sha256-verified) once per process,
with the sampler settings of a profile's ``*_diffusion`` section."""
from __future__ import annotations

import functools
import json
from pathlib import Path

from ..config import DiffusionReconConfig
from ..diffusion.checkpoints import load_partitioned_prior
from ..diffusion.partition import PartitionedPrior
from ..paths import repo_root


@functools.lru_cache(maxsize=4)
def _cached_prior(path: str, method: str, eta: float, clip: tuple[float, float] | None) -> PartitionedPrior:
    return load_partitioned_prior(path, method=method, eta=eta, clip=clip)


def _resolve(checkpoint: str) -> Path:
    path = Path(checkpoint)
    return (path if path.is_absolute() else repo_root() / path).resolve()


def guided_prior(section: DiffusionReconConfig, checkpoint: str, *, data_scale: float | None = None) -> PartitionedPrior:
    """The prior at ``checkpoint`` (relative to the repository) with the sampler of ``section``.

    ``data_scale``: the physical units per prior unit the caller will use; when given it must be
    the scale the prior was trained with (its manifests record it), else a
    :class:`ValueError` names both — a prior used at the wrong scale fails silently otherwise.
    """
    path = _resolve(checkpoint)
    if data_scale is not None:
        manifests = sorted(path.glob("prior_group*.json"))
        for m in manifests:
            trained = json.loads(m.read_text()).get("dataset", {}).get("scale", 1.0)
            if abs(float(trained) - float(data_scale)) > 1e-9 * max(1.0, abs(float(data_scale))):
                raise ValueError(f"{m}: prior trained on data divided by {trained}, but the profile's data_scale "
                                 f"is {data_scale}; retrain the prior or fix the profile")
    clip = None if section.clip is None else (float(section.clip[0]), float(section.clip[1]))
    return _cached_prior(str(path), section.sampler, float(section.eta), clip)


def prior_weights(*checkpoints: str) -> list[Path]:
    """The weight files (``prior_group*.safetensors``) of the prior folders ``checkpoints``
    (relative to the repository), for :func:`paperlib.provenance.provenance` to hash."""
    return [w for c in checkpoints for w in sorted(_resolve(c).glob("prior_group*.safetensors"))]
