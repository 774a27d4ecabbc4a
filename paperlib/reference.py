"""Values reported in the paper, shown beside ours in clearly labelled columns.

From "Physics-Guided Diffusion Priors for Multi-Slice Reconstruction in Scientific Imaging",
Table 1 (in-distribution: BraTS2020 FLAIR with a uniform 1D mask; cubic crystals) and Table 2
(out-of-distribution: plant roots with a Gaussian mask; hexagonal crystals). SSIM mean ± std
over 30 test cases. Keys are paperlib's method names. The 4D-STEM values are SSIMs of the
*phase projection* (sum over slices: "the phase projection of materials is used to evaluate the
SSIM"), so they compare with our ``ssim_projected`` column, not the per-slice SSIM.
"""
from __future__ import annotations

PAPER_TABLE1 = {
    ("mri", "dart"): (0.968, 0.011),
    ("mri", "drift"): (0.938, 0.023),
    ("mri", "projection"): (0.844, 0.027),
    ("mri", "cs_mri"): (0.804, 0.025),
    ("mri", "tv"): (0.803, 0.024),
    ("stem", "dart"): (0.607, 0.406),
    ("stem", "drift"): (0.899, 0.091),
    ("stem", "sparse"): (0.831, 0.198),
    ("stem", "three_pie"): (0.887, 0.243),
    ("stem", "torchslice"): (0.823, 0.115),
}

PAPER_TABLE2 = {
    ("mri", "dart"): (0.813, 0.130),
    ("mri", "drift"): (0.750, 0.174),
    ("mri", "projection"): (0.611, 0.169),
    ("mri", "cs_mri"): (0.676, 0.151),
    ("mri", "tv"): (0.577, 0.163),
    ("stem", "dart"): (0.588, 0.355),
    ("stem", "drift"): (0.981, 0.010),
    ("stem", "sparse"): (0.977, 0.011),
    ("stem", "three_pie"): (0.953, 0.041),
    ("stem", "torchslice"): (0.573, 0.025),
}

METHOD_LABELS = {
    "zero_filled": "Zero-filled",
    "cs_mri": "CS-MRI (L1-wavelet, Lustig 2007)",
    "tv": "TV (Block 2007)",
    "projection": "Projection-based",
    "dart": "DART",
    "drift": "DRIFT",
    "sparse": "Sparse decomposition (Bangun 2022)",
    "three_pie": "3PIE (Maiden 2012)",
    "torchslice": "Torchslice (Diederichs 2024)",
    "three_pie_thickness": "3PIE + thickness search (ours, not in the paper)",
}
