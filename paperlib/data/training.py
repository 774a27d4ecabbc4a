"""The training data of a profile's diffusion priors, with the provenance their manifests record.

``python -m paperlib train`` calls :func:`load_training_data` unless ``--data FILE`` is given; the
diffusion package itself (:mod:`paperlib.diffusion`) never loads data sets, it takes a tensor.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: Modalities with a training set in the profiles.
MODALITIES = ("mri", "stem")


#: Training presets whose data are not the profile's ``mri`` split: the preset -> the data's name.
PRESET_DATA = {"mri_general": "randomized", "mri_general_lownoise": "randomized", "mri_general_wide": "randomized_wide", "mri_general_deep": "randomized",
               "slice2d_fixed": "slices_fixed",
               "slice2d_diverse": "slices_diverse", "stem_anydepth": "random_depth"}
#: Presets trained on a GPU machine from an exported bundle (the machine has no TorchIO to make the
#: slabs): the preset -> how the bundle is made; ``train`` refuses them without ``--data``.
PRESET_BUNDLES = {name: "python scripts/export_real_mri_data.py --n 768 --out build/train_data/real_mri_768.pt"
                  for name in ("mri_general_gpu", "mri_general_gpu_w24", "mri_general_gpu_w32")}
#: The data names of the domain-randomised MRI slabs -> their anatomy (``paperlib.data.brain.ANATOMY_SPREADS``):
#: the same slabs' seeds, the head further from the template for ``randomized_wide``.
_RANDOMIZED_ANATOMY = {"randomized": "template", "randomized_wide": "wide"}


def load_training_data(modality: str, profile: str, *, preset: str | None = None) -> tuple[Tensor, dict]:
    """The (N, D, H, W) float32 training volumes of a profile and their ``dataset`` record.

    Parameters
    ----------
    modality : ``"mri"``: the profile's ``mri`` section, ``train`` split
        (:func:`paperlib.data.brain.load_split`), images in [0, 1]. ``"stem"``: the first
        ``stem_eval.n_train`` cubic crystals of the ``train`` split
        (:func:`paperlib.data.crystals.stem_dataset`), their projected potentials per slice
        (V·Å) divided by ``stem_prior.data_scale`` so that the data are of order 1, as the noise
        schedule assumes.
    profile : profile name or YAML path (:func:`paperlib.config.load_profile`).

    Returns
    -------
    data : (N, D, H, W) float32 tensor.
    dataset : JSON-serialisable provenance (modality, profile name and digest, the data section;
        for 4D-STEM also the split, count and scale), copied into the prior manifest.

    Raises
    ------
    NotImplementedError : another modality (pass the volumes with ``train --data FILE``).
    """
    from ..config import load_profile

    if preset in PRESET_BUNDLES:
        raise ValueError(f"preset {preset} trains on an exported bundle of domain-randomised slabs, not on "
                         f"the profile's data: make it with `{PRESET_BUNDLES[preset]}` and pass it with --data")
    prof = load_profile(profile)
    anatomy = _RANDOMIZED_ANATOMY.get(PRESET_DATA.get(preset or "", "")) if modality == "mri" else None
    if anatomy is not None:
        from .randomized import GENERATOR_VERSION, randomized_set

        section = prof.real_mri
        if section is None:
            raise ValueError(f"profile {prof.name}: preset {preset} trains on the real_mri section's "
                             "randomised slabs, but the profile has no real_mri section")
        data = randomized_set(section.n_slabs, section.slab, seed=section.slab_seed, anatomy=anatomy)
        return data, {"modality": "mri", "profile": prof.name, "source": "randomized",
                      "generator_version": GENERATOR_VERSION, "n": section.n_slabs, "slab": list(section.slab),
                      "slab_seed": section.slab_seed, **({"anatomy": anatomy} if anatomy != "template" else {}),
                      "shape": list(data.shape)}
    if modality == "mri" and PRESET_DATA.get(preset or "", "").startswith("slices_"):
        from .slices2d import DIVERSE_VOXEL_MM, FIXED_VOXEL_MM, prior_slice_set

        section = prof.resolution_robust
        if section is None:
            raise ValueError(f"profile {prof.name}: preset {preset} trains on the resolution_robust section's "
                             "synthetic slices, but the profile has no resolution_robust section")
        voxels = [FIXED_VOXEL_MM] if PRESET_DATA[preset] == "slices_fixed" else list(DIVERSE_VOXEL_MM)
        data, record = prior_slice_set(voxels, section.prior_subjects, modality=prof.mri.modality, progress=True)
        return data, {"modality": "mri", "profile": prof.name, **record, "shape": list(data.shape)}
    if modality == "mri":
        from .brain import load_split

        images = load_split(prof.mri, "train", progress=True).images
        return torch.as_tensor(images, dtype=torch.float32), {"modality": "mri", "profile": prof.name,
                                                              "profile_digest": prof.digest(),
                                                              "mri": prof.mri.model_dump(mode="json")}
    if modality == "stem":
        from .crystals import stem_dataset

        scale = prof.stem_prior.data_scale
        params = prof.stem
        if PRESET_DATA.get(preset or "") == "random_depth":  # the same crystals at a random depth of the box
            params = params.model_copy(update={"placement": "random"})
        samples = stem_dataset(params, "train", prof.stem_eval.n_train, progress=True)
        data = torch.stack([s.potential for s in samples]).float() / scale
        return data, {"modality": "stem", "profile": prof.name, "profile_digest": prof.digest(),
                      "split": "train", "n": len(samples), "scale": scale, "scale_unit": "V*Angstrom",
                      "stem_digest": params.digest(), "stem": params.model_dump(mode="json")}
    raise NotImplementedError(f"modality: expected one of {MODALITIES}, got {modality!r}; pass the training "
                              "volumes with --data FILE.npy (N, D, H, W) and --data-scale")


__all__ = ["MODALITIES", "PRESET_BUNDLES", "PRESET_DATA", "load_training_data"]
