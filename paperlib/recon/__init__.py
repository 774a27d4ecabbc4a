"""Reconstructions: classical MRI baselines (:mod:`.mri_baselines`), physics-only 4D-STEM
baselines (:mod:`.stem_baselines`), and the orthonormal wavelets CS-MRI uses (:mod:`.wavelets`)."""
