"""Values reported in the paper, shown beside ours in clearly labelled columns.

From "Physics-Guided Diffusion Priors for Multi-Slice Reconstruction in Scientific Imaging",
Table 1 (in-distribution: BraTS2020 FLAIR with a uniform 1D mask; cubic crystals) and Table 2
(out-of-distribution: plant roots with a Gaussian mask; hexagonal crystals). SSIM mean ± std
over 30 test cases. Keys are paperlib's method names. The 4D-STEM values are SSIMs of the
*phase projection* (sum over slices: "the phase projection of materials is used to evaluate the
SSIM"), so they compare with our ``ssim_projected`` column, not the per-slice SSIM.
"""
from __future__ import annotations

#: ``(modality, method): (Table 1 (mean, std), Table 2 (mean, std))``, one line per row of the
#: paper's tables, as printed there
_PAPER_SSIM = {
    ("mri", "dart"): ((0.968, 0.011), (0.813, 0.130)),
    ("mri", "drift"): ((0.938, 0.023), (0.750, 0.174)),
    ("mri", "projection"): ((0.844, 0.027), (0.611, 0.169)),
    ("mri", "cs_mri"): ((0.804, 0.025), (0.676, 0.151)),
    ("mri", "tv"): ((0.803, 0.024), (0.577, 0.163)),
    ("stem", "dart"): ((0.607, 0.406), (0.588, 0.355)),
    ("stem", "drift"): ((0.899, 0.091), (0.981, 0.010)),
    ("stem", "sparse"): ((0.831, 0.198), (0.977, 0.011)),
    ("stem", "three_pie"): ((0.887, 0.243), (0.953, 0.041)),
    ("stem", "torchslice"): ((0.823, 0.115), (0.573, 0.025)),
}
#: Table 1 (in distribution): ``(modality, method): (mean, std)`` SSIM
PAPER_TABLE1 = {key: table1 for key, (table1, _) in _PAPER_SSIM.items()}
#: Table 2 (out of distribution): ``(modality, method): (mean, std)`` SSIM
PAPER_TABLE2 = {key: table2 for key, (_, table2) in _PAPER_SSIM.items()}

#: Row labels of the tables and figures. Every baseline is our implementation of another
#: paper's method and says so ("ours: <what we implemented> after <the paper>"; the differences
#: are in the docstrings of :mod:`paperlib.recon.mri_baselines`, :mod:`paperlib.recon.projection`
#: and :mod:`paperlib.recon.stem_baselines`); DART and DRIFT are this paper's methods as
#: implemented here, "(ours, not in the paper)" marks additions.
METHOD_LABELS = {
    "zero_filled": "Zero-filled",
    "cs_mri": "CS-MRI (ours: L1-wavelet FISTA after Lustig 2007)",
    "tv": "TV (ours: Chambolle-Pock TV after Block 2007)",
    "projection": "Projection-based (ours: after Song 2022)",
    "dart": "DART",
    "drift": "DRIFT",
    "sparse": "Sparse decomposition (ours: FISTA-L1 after Bangun 2022)",
    "three_pie": "3PIE (ours: multislice ePIE after Maiden 2012)",
    "torchslice": "Torchslice (ours: autodiff Adam after Diederichs 2024)",
    "three_pie_thickness": "3PIE + thickness search (ours, not in the paper)",
    "video_diffusion": "Vanilla video diffusion (ours: one network over the whole depth, DART's loop)",
}
