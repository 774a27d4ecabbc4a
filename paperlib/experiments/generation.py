"""Table 3: how close generated volumes are to real ones, for one network over the whole depth
against the partitioned stack of group networks (paper Sec. 4, Table 3).

For a modality, every *draw* generates ``tab3.n_generated`` volumes from each prior (unconditional
DDIM, ``tab3.steps`` steps, a seeded generator per draw and prior) and compares their features
with those of ``tab3.n_reference`` **held-out** volumes (:func:`reference_set`: test-split
volumes, new seeds beyond the ones Table 1 scores, chosen by no setting) by FVD's Frechet
distance and JEDi (:mod:`paperlib.metrics.video`). The sanity row compares ``n_generated``
training volumes (a random subset per draw) with the same held-out set: the floor a perfect
generator would reach at this sample size.

Units: every set is in the prior's data units (MRI intensities in [0, 1]; 4D-STEM potentials
divided by ``stem_prior.data_scale``), which is what the project encoders were trained on.
"""
from __future__ import annotations

import time
from typing import Literal, Sequence

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..config import Profile
from ..diffusion.checkpoints import load_partitioned_prior
from ..diffusion.partition import PartitionedPrior, derive_seed
from ..metrics.video import frechet_distance, jedi, load_extractor, volume_features
from .priors import resolve_checkpoint

Modality = Literal["mri", "stem"]
#: the rows' ``model`` column: the two priors and the sanity row
MODELS = ("partitioned", "whole_depth", "training_set")
MODEL_LABELS = {
    "partitioned": "Partitioned stack of group networks (ours, the paper's)",
    "whole_depth": "One network over the whole depth (vanilla video diffusion)",
    "training_set": "Sanity: training volumes (the floor at this n)",
}


def _prior_section(profile: Profile, modality: Modality):
    if modality not in ("mri", "stem"):
        raise ValueError(f"modality: expected 'mri' or 'stem', got {modality!r}")
    return profile.prior if modality == "mri" else profile.stem_prior


def _scale(profile: Profile, modality: Modality) -> float:
    return 1.0 if modality == "mri" else float(profile.stem_prior.data_scale)


def reference_set(profile: Profile, modality: Modality, n: int, *, progress: bool = False) -> Tensor:
    """``n`` held-out volumes ``(n, D, H, W)`` float32 in prior units: the first ``n`` volumes of
    the test split (MRI: :func:`paperlib.data.brain.load_split` with ``n_test = n``; 4D-STEM: the
    cubic test crystals' potentials / ``data_scale``)."""
    if n < 2:
        raise ValueError(f"n: expected >= 2 held-out volumes, got {n}")
    if modality == "mri":
        from ..data.brain import load_split

        return load_split(profile.mri.model_copy(update={"n_test": n}), "test", progress=progress).images.float()
    from ..data.crystals import stem_dataset

    _prior_section(profile, modality)
    samples = stem_dataset(profile.stem, "test", n, progress=progress)
    return torch.stack([s.potential for s in samples]).float() / _scale(profile, modality)


def training_set(profile: Profile, modality: Modality) -> Tensor:
    """The priors' training volumes ``(N, D, H, W)`` in prior units
    (:func:`paperlib.data.training.load_training_data`)."""
    from ..data.training import load_training_data

    _prior_section(profile, modality)
    return load_training_data(modality, profile.name)[0].float()


def load_priors(profile: Profile, modality: Modality) -> dict[str, PartitionedPrior]:
    """``{"partitioned": ..., "whole_depth": ...}``: the profile's prior and its whole-depth prior
    (``single_checkpoint``), DDIM (eta 0), no clipping (samples as the networks make them)."""
    section = _prior_section(profile, modality)
    where = "prior" if modality == "mri" else "stem_prior"
    if section.single_checkpoint is None:
        raise ValueError(f"profile {profile.name}: {where}.single_checkpoint is not set; Table 3 needs the "
                         "whole-depth prior (python -m paperlib train --preset <modality>_single)")
    priors = {"partitioned": load_partitioned_prior(resolve_checkpoint(section.checkpoint)),
              "whole_depth": load_partitioned_prior(resolve_checkpoint(section.single_checkpoint))}
    if len(priors["whole_depth"].models) != 1:
        raise ValueError(f"{where}.single_checkpoint: expected one network over the whole depth, got "
                         f"{len(priors['whole_depth'].models)} groups")
    depths = {k: p.depth for k, p in priors.items()}
    if len(set(depths.values())) != 1:
        raise ValueError(f"{where}: the two priors cover different depths {depths}")
    return priors


def generate(prior: PartitionedPrior, n: int, shape: Sequence[int], *, steps: int, generator: torch.Generator,
             batch: int = 8, progress: bool = False) -> Tensor:
    """``n`` unconditional samples ``(n, D, H, W)`` of ``prior`` (DDIM, ``steps`` steps), drawn
    ``batch`` at a time from ``generator`` (so the result depends on ``batch``)."""
    if n < 1 or batch < 1 or steps < 1:
        raise ValueError(f"n, batch, steps: expected >= 1, got {n}, {batch}, {steps}")
    out = []
    for start in tqdm(range(0, n, batch), desc="generate", disable=not progress):
        b = min(batch, n - start)
        out.append(prior.sample((b, *shape), num_steps=steps, generator=generator))
    return torch.cat(out).float()


def extractor_for(profile: Profile, modality: Modality, name: str):
    """The feature extractor ``name`` of ``tab3.extractors`` for a modality: ``"project"`` is the
    project's encoder of that modality (``project-mri`` / ``project-stem``); other names and
    paths go to :func:`paperlib.metrics.video.load_extractor` with ``tab3.weights_dir``. Video
    networks see MRI in [0, 1] and 4D-STEM potentials in [0, clip] prior units."""
    if name == "project":
        return load_extractor(f"project-{modality}")
    clip = profile.stem_diffusion.clip if modality == "stem" else None
    value_range = (0.0, 1.0) if clip is None else (float(clip[0]), float(clip[1]))
    weights = profile.tab3.weights_dir
    return load_extractor(name, weights_dir=None if weights is None else resolve_checkpoint(weights), value_range=value_range)


def generation_rows(profile: Profile, modality: Modality, *, progress: bool = False) -> list[dict]:
    """Every (draw, model, extractor) row of Table 3 for one modality: ``fvd`` (Frechet distance of
    the feature Gaussians), ``jedi``, the set sizes, frames (slices) and resolution, the extractor
    (``extractor``: its entry in ``tab3.extractors``; ``extractor_name``: the network loaded, e.g.
    ``project-mri``), and the wall time of generating the draw."""
    t3 = profile.tab3
    priors = load_priors(profile, modality)
    reference = reference_set(profile, modality, t3.n_reference, progress=progress)
    train = training_set(profile, modality)
    shape = tuple(reference.shape[1:])
    if tuple(train.shape[1:]) != shape or priors["partitioned"].depth != shape[0]:
        raise ValueError(f"{modality}: training volumes {tuple(train.shape[1:])}, held-out {shape} and prior depth "
                         f"{priors['partitioned'].depth} disagree")
    if t3.n_generated > train.shape[0]:
        raise ValueError(f"tab3.n_generated: expected <= the {train.shape[0]} training volumes (sanity row), "
                         f"got {t3.n_generated}")
    extractors = {name: extractor_for(profile, modality, name) for name in t3.extractors}
    ref_feats = {name: volume_features(reference, ex) for name, ex in extractors.items()}
    rows = []
    for draw in tqdm(range(t3.draws), desc=f"Table 3 {modality} draws", disable=not progress):
        sets, times = {}, {}
        for model, prior in priors.items():
            gen = torch.Generator().manual_seed(derive_seed(t3.seed, "tab3", modality, model, draw))
            start = time.perf_counter()
            sets[model] = generate(prior, t3.n_generated, shape, steps=t3.steps, generator=gen, batch=t3.batch,
                                   progress=progress)
            times[model] = time.perf_counter() - start
        pick = torch.Generator().manual_seed(derive_seed(t3.seed, "tab3-train", modality, draw))
        sets["training_set"] = train[torch.randperm(train.shape[0], generator=pick)[: t3.n_generated]]
        times["training_set"] = 0.0
        for model in MODELS:
            for name, ex in extractors.items():
                feats = volume_features(sets[model], ex)
                rows.append({"modality": modality, "model": model, "draw": draw, "extractor": name,
                             "extractor_name": ex.name,
                             "n_generated": t3.n_generated, "n_reference": t3.n_reference, "frames": shape[0],
                             "resolution": f"{shape[1]}x{shape[2]}", "steps": t3.steps if model != "training_set" else 0,
                             "fvd": frechet_distance(feats, ref_feats[name], min_samples=2),
                             "jedi": jedi(feats, ref_feats[name]), "generate_s": round(times[model], 2)})
    return rows


__all__ = ["MODELS", "MODEL_LABELS", "reference_set", "training_set", "load_priors", "generate", "extractor_for",
           "generation_rows"]
