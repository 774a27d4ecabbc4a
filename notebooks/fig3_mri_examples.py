# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Figure 3 — MRI reconstructions, slice by slice
#
# One test volume of Table 1 (same masks, same methods): for a few slices, the ground truth,
# the k-space mask, and every method's reconstruction, each annotated with its slice SSIM
# (whole image). The methods come from the profile's `fig3.methods`, so DART, DRIFT and the
# projection-based method appear here once they are registered.

# %% tags=["parameters"]
# In JupyterLab the profile and the output folder come from the environment (`make lab PROFILE=ci`
# sets both); papermill's injected parameters (make figures, the tests) override these lines.
import os

profile = os.environ.get("PAPERLIB_PROFILE", "default")
out_dir = os.environ.get("PAPERLIB_OUT_DIR", "../figures")
progress = False

# %%
import matplotlib.pyplot as plt

from paperlib import tables
from paperlib.experiments import mri as mri_exp
from paperlib.experiments.runner import run_cases
from paperlib.metrics.image import ssim_slices
from paperlib.plotting import image_panel, notebook_setup, save_figure
from paperlib.provenance import provenance
from paperlib.experiments.priors import prior_weights
from paperlib.reference import METHOD_LABELS

cfg, out = notebook_setup(profile, out_dir)

# %%
case = mri_exp.mri_cases(cfg, split="test", mask_kind=cfg.mri_physics.table1_mask,
                         n=cfg.fig3.volume + 1, progress=progress)[cfg.fig3.volume]
depth = case.image.shape[0]
bad = [s for s in cfg.fig3.slices if not 0 <= s < depth]
if bad:
    raise ValueError(f"fig3.slices: {bad} outside the volume's {depth} slices")
rows, recons = run_cases(cfg, "mri", [case], cfg.fig3.methods, seeds=(0,), keep=True, progress=progress)
tables.write_cases(rows, out / "fig3_mri_examples_cases.csv")

# %%
methods = list(cfg.fig3.methods)
ncols = 2 + len(methods)
fig, axes = plt.subplots(len(cfg.fig3.slices), ncols, figsize=(1.25 * ncols, 1.3 * len(cfg.fig3.slices)),
                         squeeze=False)
for r, s in enumerate(cfg.fig3.slices):
    image_panel(axes[r, 0], case.image[s], title="Ground truth" if r == 0 else None, note=f"slice {s}")
    mask = case.operator.mask[s] if case.operator.mask.ndim == 3 else case.operator.mask
    image_panel(axes[r, 1], mask.float(), title="Mask" if r == 0 else None)
    for c, name in enumerate(methods):
        rec = recons[(case.case_id, name, 0)]
        score = ssim_slices(rec, case.image)[s]
        image_panel(axes[r, 2 + c], rec[s], title=METHOD_LABELS.get(name, name).split(" (")[0] if r == 0 else None,
                    note=f"SSIM {score:.3f}")
fig.suptitle(f"{case.case_id}, {cfg.mri_physics.table1_mask} mask, {cfg.mri_physics.acceleration:g}x", y=1.0)
save_figure(fig, "fig3_mri_examples", out)
tables.write_json(out / "fig3_mri_examples.json", {
    "provenance": provenance(cfg, "fig3_mri_examples", checkpoints=prior_weights(cfg.prior.checkpoint)),
    "case": case.case_id, "slices": list(cfg.fig3.slices)})
plt.show()
