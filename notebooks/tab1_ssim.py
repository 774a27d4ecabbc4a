# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Table 1 — SSIM of multi-slice reconstructions (in distribution)
#
# MRI half: BraTS-like FLAIR volumes, every slice undersampled with its own 1D Cartesian
# uniform random mask (fully sampled centre, acceleration from the profile). Each method
# reconstructs the whole volume (batched over slices); SSIM and PSNR use the ground-truth
# volume's data range (see `paperlib.metrics.image`). Per-case results go to
# `figures/tab1_ssim_cases.csv`; the table below is derived from that file only.
#
# The rightmost column holds the values *reported in the paper* (BraTS2020, 30 volumes,
# 155x240x240) for comparison; they are not computed here.

# %% tags=["parameters"]
profile = "default"
out_dir = "../figures"
progress = False

# %%
import logging
from pathlib import Path

import torch

from paperlib import tables
from paperlib.config import load_profile
from paperlib.experiments import mri as mri_exp
from paperlib.provenance import provenance
from paperlib.reference import METHOD_LABELS, PAPER_TABLE1

logging.basicConfig(level=logging.WARNING)
cfg = load_profile(profile)
torch.set_num_threads(cfg.threads)
out = Path(out_dir)
print(f"profile {cfg.name} ({cfg.digest()}): volumes {cfg.mri.shape}, "
      f"{cfg.tab1.n_volumes} test volumes, methods {cfg.tab1.methods}, seeds {cfg.tab1.seeds}")

# %% [markdown]
# ## MRI: reconstruct every test volume with every method

# %%
cases = mri_exp.mri_cases(cfg, split="test", mask_kind=cfg.mri_physics.table1_mask,
                          n=cfg.tab1.n_volumes, progress=progress)
rows, _ = mri_exp.run_methods(cfg, cases, cfg.tab1.methods, seeds=cfg.tab1.seeds,
                              dataset="brain", progress=progress)
tables.write_cases(rows, out / "tab1_ssim_cases.csv")

# %% [markdown]
# ## Table, derived from the per-case file

# %%
summary = tables.summarise(tables.read_cases(out / "tab1_ssim_cases.csv"))
header, table_rows = tables.ssim_table_rows(summary, PAPER_TABLE1, METHOD_LABELS)
prov = provenance(cfg, "tab1_ssim")
notes = [
    f"Profile `{cfg.name}`: {len(cases)} test volumes of shape {tuple(cfg.mri.shape)} (D, H, W)"
    + ("" if len(cases) >= 30 else " — fewer than the paper's 30, to fit this profile's time budget") + ".",
    f"MRI mask: {cfg.mri_physics.table1_mask}, acceleration {cfg.mri_physics.acceleration:g}, "
    f"centre fraction {cfg.mri_physics.center_fraction:g}; one independent mask per slice.",
    "SSIM: whole image (the paper's convention) and inside the head mask; data range from the ground truth.",
    "Mean ± std over test volumes (and seeds, for stochastic methods). Time: wall time per volume on this machine.",
    f"Baseline weights: {cfg.mri_baselines.tuned_on}",
]
tables.write_table(out / "tab1_ssim", header, table_rows,
                   title="Table 1: SSIM of multi-slice reconstructions", notes=notes, provenance=prov)
tables.write_json(out / "tab1_ssim.json", {"provenance": prov, "summary": summary})
print((out / "tab1_ssim.md").read_text())
