"""Data sets of the paper: volumes built or loaded, cached by a hash of their parameters.

Modules
-------
brain : BraTS-like synthetic MRI volumes (MNI152 template + tissue maps shipped in nilearn) and
        the real BraTS2020 NIfTI loader.

Submodules are imported on demand (``from paperlib.data.brain import load_split``) so that
importing :mod:`paperlib.data` stays cheap.
"""
