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
# # Figure 4 — out-of-distribution examples
#
# The paper's Figure 4: what every method of Table 2 makes of data its prior never saw.
#
# * **Top row, MRI:** one slice of a plant-root volume (CPlantBox, `paperlib.data.roots`), 2D
#   Gaussian variable-density mask; each panel carries that slice's SSIM.
# * **Bottom row, 4D-STEM:** the projected potential of one hexagonal WSe2 crystal (the phase
#   image up to the interaction constant), after the metric's registration and affine fit; each
#   panel carries the projection SSIM, the paper's number.
#
# The cases, settings and the first seed are Table 2's (`paperlib.experiments.mri.root_cases`,
# `eval_cases(cfg, "ood")`, `run_cases`), so every panel is the reconstruction behind one row
# of `figures/tab2_ood_cases.csv` / `tab2_ood_stem_cases.csv`; the rows recomputed here are in
# `figures/fig4_ood_examples_cases.csv` / `fig4_ood_examples_stem_cases.csv`. Which case and slice: the profile's `tab2.fig4`.

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
from paperlib.experiments import stem as stem_exp
from paperlib.experiments.priors import prior_weights
from paperlib.experiments.runner import run_cases
from paperlib.metrics.image import ssim_slices
from paperlib.metrics.stem import align, stem_scores
from paperlib.plotting import image_panel, notebook_setup, save_figure
from paperlib.provenance import provenance
from paperlib.reference import METHOD_LABELS

cfg, out = notebook_setup(profile, out_dir)
sel = cfg.tab2.fig4
seed = cfg.tab2.seeds[0]
stem_seed = cfg.stem_eval.seeds[0]


def label(name: str) -> str:
    return METHOD_LABELS.get(name, name).split(" (")[0].replace(" + ", " +\n")


# %%
if sel.root_volume >= cfg.tab2.n_volumes:
    raise ValueError(f"tab2.fig4.root_volume: expected < tab2.n_volumes = {cfg.tab2.n_volumes}, got {sel.root_volume}")
if sel.stem_case >= cfg.stem_eval.n_ood:
    raise ValueError(f"tab2.fig4.stem_case: expected < stem_eval.n_ood = {cfg.stem_eval.n_ood}, got {sel.stem_case}")
root = mri_exp.root_cases(cfg, sel.root_volume + 1, progress=progress)[sel.root_volume]
if not 0 <= sel.root_slice < root.image.shape[0]:
    raise ValueError(f"tab2.fig4.root_slice: expected 0..{root.image.shape[0] - 1}, got {sel.root_slice}")
crystal = stem_exp.eval_cases(cfg, "ood", n=sel.stem_case + 1, progress=progress)[sel.stem_case]
mri_methods, stem_methods = list(cfg.tab2.methods), list(cfg.stem_eval.methods)
mri_rows, mri_recons = run_cases(cfg, "mri", [root], mri_methods, seeds=(seed,), dataset="roots", keep=True,
                                 progress=progress)
stem_rows, stem_recons = run_cases(cfg, "stem", [crystal], stem_methods, seeds=(stem_seed,), dataset="hexagonal",
                                   keep=True, progress=progress)
tables.write_cases(mri_rows, out / "fig4_ood_examples_cases.csv")
tables.write_cases(stem_rows, out / "fig4_ood_examples_stem_cases.csv")

# %%
s = sel.root_slice
ncols = 1 + max(len(mri_methods), len(stem_methods))
fig, axes = plt.subplots(2, ncols, figsize=(1.5 * ncols, 3.1), squeeze=False)
for ax in axes.flat:
    ax.axis("off")
for r, text in enumerate(("MRI: plant roots", "4D-STEM: WSe2")):
    axes[r, 0].text(-0.08, 0.5, text, rotation=90, transform=axes[r, 0].transAxes, ha="right", va="center",
                    fontsize=7)
image_panel(axes[0, 0], root.image[s], title="Ground truth", note=f"{root.case_id}, slice {s}")
for c, name in enumerate(mri_methods, start=1):
    rec = mri_recons[(root.case_id, name, seed)]
    image_panel(axes[0, c], rec[s], title=label(name), note=f"SSIM {ssim_slices(rec, root.image)[s]:.3f}")

truth = crystal.potential.sum(0)
lo, hi = float(truth.min()), float(truth.max())
image_panel(axes[1, 0], truth, vmin=lo, vmax=hi, title="Ground truth",
            note=f"{crystal.material} [{crystal.zone_axis}]")
for c, name in enumerate(stem_methods, start=1):
    rec = stem_recons[(crystal.case_id, name, stem_seed)]
    aligned = align(rec, crystal.potential)[0]
    image_panel(axes[1, c], aligned.sum(0).float(), vmin=lo, vmax=hi, title=label(name),
                note=f"SSIM {stem_scores(rec, crystal.potential)['ssim_projection']:.3f}")
fig.suptitle(f"Out-of-distribution data: root slice ({cfg.mri_physics.table2_mask} mask, "
             f"{cfg.mri_physics.acceleration:g}x; top) and WSe2 projected potential (bottom)", y=1.0)
save_figure(fig, "fig4_ood_examples", out)
tables.write_json(out / "fig4_ood_examples.json", {
    "provenance": provenance(cfg, "fig4_ood_examples",
                             checkpoints=prior_weights(cfg.prior.checkpoint, cfg.stem_prior.guided_checkpoint)),
    "root_case": root.case_id, "root_slice": s, "stem_case": crystal.case_id,
    "mri_seed": seed, "stem_seed": stem_seed})
plt.show()

# %% [markdown]
# The scores printed on the panels, per method (from the rows above):

# %%
for r in mri_rows:
    print(f"MRI  {r['method']:>20s}  slice {s} SSIM {ssim_slices(mri_recons[(root.case_id, r['method'], seed)], root.image)[s]:.3f}"
          f"  volume SSIM {r['ssim_whole']:.3f}")
for r in stem_rows:
    print(f"STEM {r['method']:>20s}  projection SSIM {r['ssim_projected']:.3f}  "
          f"per-slice SSIM {r['ssim_slice_mean']:.3f}")
