"""Data sets of the paper: volumes built or loaded, cached by a hash of their parameters.

Modules
-------
brain : BraTS-like synthetic MRI volumes (MNI152 template + tissue maps shipped in nilearn) and
        the real BraTS2020 NIfTI loader.
randomized : domain-randomised MRI slabs (TorchIO), the general prior's training data.
intensity : the intensity scale shared by those slabs and every input of the general prior.
real_mri : real brain scans shipped inside pip packages (dipy, nibabel), with roles and head masks.
roots, crystals : plant roots (CPlantBox) and 4D-STEM crystals (abTEM); training : the priors' data.

Submodules are imported on demand (``from paperlib.data.brain import load_split``) so that
importing :mod:`paperlib.data` stays cheap.
"""
