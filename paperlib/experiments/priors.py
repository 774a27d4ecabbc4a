"""The shipped priors as the experiments use them: loaded (sha256-verified) once per process,
with the sampler settings of a profile's ``*_diffusion`` section, and DART / DRIFT registered for
a modality from where its settings live (:class:`GuidedSetup`, :func:`register_guided`)."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from torch import Tensor

from ..config import ConfigError, DiffusionReconConfig, Profile
from ..diffusion.checkpoints import load_partitioned_prior, manifest_path
from ..diffusion.partition import PartitionedPrior
from ..paths import repo_root
from ..recon.dart import dart
from ..recon.drift import drift


@functools.lru_cache(maxsize=4)
def _cached_prior(path: str, method: str, eta: float, clip: tuple[float, float] | None, precision: str,
                  groups: tuple[int, ...] | None, device: str) -> PartitionedPrior:
    return load_partitioned_prior(path, method=method, eta=eta, clip=clip, precision=precision, groups=groups,
                                  device=device)


def resolve_checkpoint(checkpoint: str) -> Path:
    """A prior folder named relative to the repository (or absolute), resolved."""
    path = Path(checkpoint)
    return (path if path.is_absolute() else repo_root() / path).resolve()


def guided_prior(section: DiffusionReconConfig, checkpoint: str, *, data_scale: float | None = None,
                 groups: Sequence[int] | None = None, device: str = "cpu") -> PartitionedPrior:
    """The prior at ``checkpoint`` (relative to the repository) with the sampler of ``section``;
    ``groups``: only these slice groups (a rank's, :func:`~paperlib.diffusion.distributed.groups_for_rank`),
    on ``device``.

    ``data_scale``: the physical units per prior unit the caller will use; when given it must be
    the scale the prior was trained with (its manifests record it), else a
    :class:`ValueError` names both — a prior used at the wrong scale fails silently otherwise.
    """
    path = resolve_checkpoint(checkpoint)
    if data_scale is not None:
        manifests = sorted(path.glob("prior_group*.json"))
        for m in manifests:
            trained = json.loads(m.read_text()).get("dataset", {}).get("scale", 1.0)
            if abs(float(trained) - float(data_scale)) > 1e-9 * max(1.0, abs(float(data_scale))):
                raise ValueError(f"{m}: prior trained on data divided by {trained}, but the profile's data_scale "
                                 f"is {data_scale}; retrain the prior or fix the profile")
    clip = None if section.clip is None else (float(section.clip[0]), float(section.clip[1]))
    return _cached_prior(str(path), section.sampler, float(section.eta), clip, section.precision,
                         None if groups is None else tuple(int(g) for g in groups), str(device))


def prior_weights(*checkpoints: str) -> list[Path]:
    """The weight files (``prior_group*.safetensors``) of the prior folders ``checkpoints``
    (relative to the repository), for :func:`paperlib.provenance.provenance` to hash."""
    return [w for c in checkpoints for w in sorted(resolve_checkpoint(c).glob("prior_group*.safetensors"))]


def prior_manifest(checkpoint: str) -> dict:
    """The manifest of the first group of the prior folder ``checkpoint`` (its steps, parameters,
    sha256, training config; the fields every group of a folder shares), without loading weights."""
    return json.loads(manifest_path(prior_weights(checkpoint)[0]).read_text())


@dataclass(frozen=True)
class GuidedSetup:
    """Where one modality's DART / DRIFT / projection settings live in a profile.

    Attributes
    ----------
    diffusion : the profile section of the guided methods (``"mri_diffusion"``, ``"stem_diffusion"``).
    prior : the profile section naming the prior's ``checkpoint`` (``"prior"``, ``"stem_prior"``).
    scaled : whether that section has a ``data_scale`` (physical units per prior unit, e.g.
        V·Å for 4D-STEM potentials); else the prior works in physical units (scale 1).
    init : ``(operator, measurement) -> (D, H, W)`` starting image for methods that start part
        way into the schedule (MRI: the zero-filled image), or ``None``.
    checkpoint : the field of the prior section naming the folder (``"checkpoint"``: the
        partitioned prior; ``"single_checkpoint"``: the whole-depth one).

    >>> from paperlib.config import load_profile
    >>> setup = GuidedSetup("stem_diffusion", "stem_prior", scaled=True)
    >>> ci = load_profile("ci")
    >>> setup.scale(ci), setup.settings(ci).dart is ci.stem_diffusion.dart, setup.initial(None, None)
    (250.0, True, None)
    >>> GuidedSetup("mri_diffusion", "prior").scale(ci)
    1.0
    """

    diffusion: str
    prior: str
    scaled: bool = False
    init: Callable[[Any, Tensor], Tensor] | None = None
    checkpoint: str = "checkpoint"

    def settings(self, profile: Profile) -> DiffusionReconConfig:
        """The profile's section of the guided methods."""
        return getattr(profile, self.diffusion)

    def scale(self, profile: Profile) -> float:
        """Physical units per prior unit."""
        return float(getattr(profile, self.prior).data_scale) if self.scaled else 1.0

    def load(self, profile: Profile, *, groups: Sequence[int] | None = None, device: str = "cpu") -> PartitionedPrior:
        """The profile's prior with its sampler (the scale checked against the manifests when scaled);
        ``groups``, ``device``: as :func:`guided_prior`."""
        section = getattr(profile, self.prior)
        folder = getattr(section, self.checkpoint)
        if folder is None:
            raise ValueError(f"profile {profile.name}: {self.prior}.{self.checkpoint} is not set (a prior folder, "
                             "relative to the repository, is expected)")
        return guided_prior(self.settings(profile), folder, data_scale=section.data_scale if self.scaled else None,
                            groups=groups, device=device)

    def initial(self, operator, y: Tensor) -> Tensor | None:
        """The starting image of ``y``, or ``None`` where the modality has none."""
        return None if self.init is None else self.init(operator, y)


def run_dart(setup: GuidedSetup, operator, y: Tensor, profile: Profile, generator) -> Tensor:
    """DART (paper Sec. 3) with the prior ``setup`` loads and the settings of its ``dart`` section:
    ``steps`` diffusion steps from ``start``, ``physics_steps`` physics steps (Eq. 4 / Eq. 5)
    after each."""
    d = setup.settings(profile).dart
    if d.init_from != "default":
        raise ConfigError(f"profile {profile.name}: {setup.diffusion}.dart.init_from = {d.init_from!r}; only the "
                          f"real-scan DART (real_mri.diffusion.dart) starts from another reconstruction")
    return dart(setup.load(profile), operator, y, generator=generator, num_steps=d.steps, start=d.start,
                init=setup.initial(operator, y), physics_steps=d.physics_steps,
                step_kwargs=d.step_kwargs(), scale=setup.scale(profile), samples=d.samples,
                stop=d.stop, levels=d.levels(), self_ensemble=d.self_ensemble)


def register_guided(registry, setup: GuidedSetup) -> None:
    """Register DART and DRIFT (stochastic) in ``registry`` with the settings ``setup`` points to.

    DART (paper Sec. 3): ``steps`` diffusion steps from ``start`` with ``physics_steps`` physics
    steps (Eq. 4 / Eq. 5) after each. DRIFT: ``candidates`` prior samples, selected per slice
    group against the measurement image, then ``physics_steps`` physics steps; ``translate`` and
    ``vacuum_threshold`` as configured.
    """

    @registry.register("dart", stochastic=True)
    def _dart(operator, y, profile, generator):
        return run_dart(setup, operator, y, profile, generator)

    @registry.register("drift", stochastic=True)
    def _drift(operator, y, profile, generator):
        d = setup.settings(profile).drift
        return drift(setup.load(profile), operator, y, generator=generator, n_candidates=d.candidates,
                     num_steps=d.steps, physics_steps=d.physics_steps, step_kwargs=d.step_kwargs(),
                     scale=setup.scale(profile), translate=d.translate,
                     vacuum_threshold=d.vacuum_threshold).volume
