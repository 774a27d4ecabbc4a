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
# # The partitioned video-diffusion prior: samples and a quantitative check
#
# The prior of DART and DRIFT: the depth of each volume is split into slice groups, each with
# its own space-time U-Net (trained by `make train PROFILE=<profile>`, shipped in
# `checkpoints/` for the `ci` and `default` profiles), one prior for MRI and one for 4D-STEM
# potentials. Top: unconditional samples from the
# prior beside training volumes (same slices). Bottom: held-out denoising — test volumes plus
# Gaussian noise of several levels, denoised in one network call at the matching timestep,
# against a Gaussian filter whose widths are chosen per noise level on the validation split.
# Per-volume results go to `figures/fig_prior_samples_cases.csv`; the table is derived from them.

# %% tags=["parameters"]
# In JupyterLab the profile and the output folder come from the environment (`make lab PROFILE=ci`
# sets both); papermill's injected parameters (make figures, the tests) override these lines.
import os

profile = os.environ.get("PAPERLIB_PROFILE", "default")
out_dir = os.environ.get("PAPERLIB_OUT_DIR", "../figures")
progress = False

# %%
import matplotlib.pyplot as plt
import torch

from paperlib import tables
from paperlib.data.brain import load_split
from paperlib.data.crystals import stem_dataset
from paperlib.diffusion import denoising_psnr, load_partitioned_prior, summarize_psnr
from paperlib.paths import repo_root
from paperlib.plotting import image_panel, notebook_setup, save_figure
from paperlib.provenance import provenance

cfg, out = notebook_setup(profile, out_dir)
ckpt = repo_root() / cfg.prior.checkpoint
if not ckpt.is_dir():
    raise FileNotFoundError(f"prior.checkpoint: no folder {ckpt}; train it with `make train PROFILE={cfg.name}`")
prior = load_partitioned_prior(ckpt)
weights = sorted(ckpt.glob("prior_group*.safetensors"))
print(f"profile {cfg.name}: prior {ckpt.name}, {len(weights)} slice groups of {prior.group_size} slices")
stem_ckpt = repo_root() / cfg.stem_prior.checkpoint
if not stem_ckpt.is_dir():
    raise FileNotFoundError(f"stem_prior.checkpoint: no folder {stem_ckpt}; train it with `make train PROFILE={cfg.name}`")
stem_prior = load_partitioned_prior(stem_ckpt)
stem_weights = sorted(stem_ckpt.glob("prior_group*.safetensors"))

# %% [markdown]
# ## Unconditional samples beside training volumes

# %%
depth, height, width = cfg.mri.shape
gen = torch.Generator().manual_seed(cfg.prior.seed)
with torch.no_grad():
    samples = prior.sample((cfg.prior.n_samples, depth, height, width), num_steps=cfg.prior.sampling_steps,
                           generator=gen).clamp(0, 1)
train = load_split(cfg.mri, "train", progress=progress).images[: cfg.prior.n_samples]
show = sorted({depth // 4, depth // 2, (3 * depth) // 4})
rows = [(f"sample {i}", samples[i]) for i in range(len(samples))] + [(f"train {i}", train[i]) for i in range(len(train))]
fig, axes = plt.subplots(len(rows), len(show), figsize=(1.3 * len(show), 1.3 * len(rows)), squeeze=False)
for r, (label, vol) in enumerate(rows):
    for c, s in enumerate(show):
        image_panel(axes[r, c], vol[s], title=f"slice {s}" if r == 0 else None, note=label if c == 0 else None)
fig.suptitle(f"prior samples ({cfg.prior.sampling_steps} DDIM steps) and training volumes", y=1.0)
save_figure(fig, "fig_prior_samples", out)
plt.show()

# %% [markdown]
# ## Held-out denoising PSNR: prior against a tuned Gaussian filter

# %%
def psnr_table(case_rows, name, title, what):
    """Write the per-volume rows, then the table derived from the written file."""
    tables.write_csv_rows(case_rows, out / f"{name}_cases.csv")
    stored = tables.read_csv_rows(out / f"{name}_cases.csv")
    by_level, noisy = {}, {}
    for s in summarize_psnr(stored):
        by_level.setdefault(s["noise_level"], {})[s["method"]] = s
    for r in stored:
        noisy.setdefault(r["noise_level"], []).append(r["noisy_psnr"])
    header = ["Noise sigma", "n volumes", "Noisy input PSNR dB", "Gaussian filter PSNR dB", "Prior PSNR dB",
              "Prior - filter dB"]
    table_rows = []
    for level, m in sorted(by_level.items()):
        f, p = m["gaussian_filter"], m["prior"]
        table_rows.append([f"{level:g}", p["n_volumes"], f"{sum(noisy[level]) / len(noisy[level]):.2f}",
                           f"{f['psnr_mean']:.2f} ± {f['psnr_std']:.2f}", f"{p['psnr_mean']:.2f} ± {p['psnr_std']:.2f}",
                           f"{p['psnr_mean'] - f['psnr_mean']:+.2f}"])
    tables.write_table(out / name, header, table_rows, title=title, provenance=prov, notes=[
        what + "; filter widths chosen per noise level on the validation split; one network call at the "
        "matching timestep.", "Mean ± sample standard deviation (ddof 1) over the n held-out volumes; PSNR of "
        "each whole volume (MSE over all voxels, data range of the clean volume)."])
    print((out / f"{name}.md").read_text())


test = load_split(cfg.mri, "test", progress=progress).images[: cfg.prior.n_eval_volumes]
val = load_split(cfg.mri, "val", progress=progress).images
case_rows = denoising_psnr(prior, test, cfg.prior.noise_levels, torch.Generator().manual_seed(cfg.prior.seed + 1),
                           tune_volumes=val, progress=progress)
prov = provenance(cfg, "fig_prior_samples", checkpoints=weights + stem_weights)
psnr_table(case_rows, "fig_prior_samples", "Prior check (MRI): held-out denoising PSNR",
           f"{len(test)} test volumes of shape {tuple(cfg.mri.shape)}, [0, 1] units")

# %% [markdown]
# ## The 4D-STEM prior: samples beside training crystals, held-out denoising
#
# Potentials in V·Å (the prior works on potential / `stem_prior.data_scale`); each row shows
# every slice of one volume, top slice (beam entrance) first. Crystals thinner than the box
# leave vacuum slices at the bottom. Denoising noise levels are in prior units.

# %%
sp = cfg.stem_prior
scale = sp.data_scale
stem_train = torch.stack([s.potential for s in stem_dataset(cfg.stem, "train", sp.n_samples)])
with torch.no_grad():
    stem_samples = stem_prior.sample((sp.n_samples, *stem_train.shape[1:]), num_steps=sp.sampling_steps,
                                     generator=torch.Generator().manual_seed(cfg.prior.seed)) * scale
rows = [(f"sample {i}", v) for i, v in enumerate(stem_samples)] + [(f"train {i}", v) for i, v in enumerate(stem_train)]
n_slices = stem_train.shape[1]
fig, axes = plt.subplots(len(rows), n_slices, figsize=(1.0 * n_slices, 1.05 * len(rows)), squeeze=False)
vmax = float(torch.quantile(stem_train.flatten()[::7], 0.995))  # peaks would make the rest black
for r, (label, vol) in enumerate(rows):
    for c in range(n_slices):
        image_panel(axes[r, c], vol[c].clamp(min=0), title=f"slice {c}" if r == 0 else None,
                    note=label if c == 0 else None, vmin=0.0, vmax=vmax)
fig.suptitle(f"4D-STEM prior samples ({sp.sampling_steps} DDIM steps) and training potentials", y=1.0)
save_figure(fig, "fig_prior_samples_stem", out)
plt.show()

# %%
stem_test = torch.stack([s.potential for s in stem_dataset(cfg.stem, "test", sp.n_eval_volumes)]) / scale
stem_val = torch.stack([s.potential for s in stem_dataset(cfg.stem, "val", cfg.stem_eval.n_val)]) / scale
stem_rows = denoising_psnr(stem_prior, stem_test, sp.noise_levels, torch.Generator().manual_seed(cfg.prior.seed + 1),
                           tune_volumes=stem_val, progress=progress)
psnr_table(stem_rows, "fig_prior_samples_stem", "Prior check (4D-STEM): held-out denoising PSNR",
           f"{len(stem_test)} cubic test crystals of shape {tuple(stem_test.shape[1:])}, units of "
           f"potential / {scale:g} V·Å")
