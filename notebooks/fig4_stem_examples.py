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
# # Figure 4 — 4D-STEM reconstructions, slice by slice
#
# One cubic test crystal of Table 1 (same data, same methods): the ground-truth potential slices
# and their phase projection, the bright-field image computed from the 4D-STEM data, and every
# method's reconstructed slices. Each reconstruction is shown *after* the metric's registration
# (one lateral shift) and affine fit (one scale and offset per volume; `paperlib.metrics.stem`),
# so every panel shares the ground truth's grey scale (V·Å); each slice is annotated with its
# SSIM, the projection with the projection SSIM. The methods come from the profile's
# `stem_eval.methods`, so DART and DRIFT appear here once they are registered.

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
from paperlib.experiments import stem as stem_exp
from paperlib.experiments.runner import run_cases
from paperlib.metrics.stem import align, stem_scores
from paperlib.plotting import image_panel, notebook_setup, save_figure
from paperlib.provenance import provenance
from paperlib.experiments.priors import prior_weights
from paperlib.reference import METHOD_LABELS

cfg, out = notebook_setup(profile, out_dir)

# %%
index = cfg.stem_eval.fig4.case
case = stem_exp.eval_cases(cfg, "test", n=index + 1, progress=progress)[index]
depth = case.potential.shape[0]
slices = list(range(depth)) if cfg.stem_eval.fig4.slices == "all" else list(cfg.stem_eval.fig4.slices)
bad = [s for s in slices if not 0 <= s < depth]
if bad:
    raise ValueError(f"stem_eval.fig4.slices: {bad} outside the crystal's {depth} slices")
methods = list(cfg.stem_eval.methods)
rows, recons = run_cases(cfg, "stem", [case], methods, seeds=cfg.stem_eval.seeds[:1], keep=True,
                         progress=progress)
tables.write_cases(rows, out / "fig4_stem_examples_cases.csv")

# %%
truth = case.potential
projection = truth.sum(0)
vmin, vmax = float(truth.min()), float(truth.max())
seed = cfg.stem_eval.seeds[0]
ncols = len(slices) + 2  # slices, projection, bright field
fig, axes = plt.subplots(1 + len(methods), ncols, figsize=(0.95 * ncols, 1.05 * (1 + len(methods))),
                         squeeze=False)
for c, s in enumerate(slices):
    image_panel(axes[0, c], truth[s], vmin=vmin, vmax=vmax, title=f"slice {s}")
image_panel(axes[0, -2], projection, vmin=float(projection.min()), vmax=float(projection.max()),
            title="projection")
bright_field = case.operator.measurement_image(case.intensities)
image_panel(axes[0, -1], bright_field, vmin=float(bright_field.min()), vmax=float(bright_field.max()),
            title="bright field")
for r, name in enumerate(methods, start=1):
    recon = recons[(case.case_id, name, seed)]
    aligned, shift, _, _ = align(recon, truth)  # the metric's registration and affine fit
    scores = stem_scores(recon, truth)
    for c, s in enumerate(slices):
        image_panel(axes[r, c], aligned[s].float(), vmin=vmin, vmax=vmax,
                    note=f"SSIM {scores['ssim_slices'][s]:.2f}")
    axes[r, 0].set_ylabel(METHOD_LABELS.get(name, name).split(" (")[0], fontsize=6)
    proj = aligned.sum(0).float()
    image_panel(axes[r, -2], proj, vmin=float(projection.min()), vmax=float(projection.max()),
                note=f"SSIM {scores['ssim_projection']:.2f}")
    axes[r, -1].axis("off")
axes[0, 0].set_ylabel("Ground truth", fontsize=6)
fig.suptitle(f"{case.case_id}: {case.material} [{case.zone_axis}], depth-blind reference SSIM per slice "
             f"{rows[0]['ssim_depth_blind']:.2f}", y=1.0)
save_figure(fig, "fig4_stem_examples", out)
tables.write_json(out / "fig4_stem_examples.json", {
    "provenance": provenance(cfg, "fig4_stem_examples", checkpoints=prior_weights(cfg.stem_prior.guided_checkpoint)),
    "case": case.case_id, "slices": slices})
plt.show()
