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
# # The partitioned video-diffusion prior: samples and a quantitative check
#
# The prior of DART and DRIFT: the depth of each volume is split into slice groups, each with
# its own space-time U-Net (trained by `make train PROFILE=<profile>`, shipped in
# `checkpoints/` for the `ci` and `default` profiles). Top: unconditional samples from the
# prior beside training volumes (same slices). Bottom: held-out denoising — test volumes plus
# Gaussian noise of several levels, denoised in one network call at the matching timestep,
# against a Gaussian filter whose widths are chosen per noise level on the validation split.
# Per-volume results go to `figures/fig_prior_samples_cases.csv`; the table is derived from them.

# %% tags=["parameters"]
profile = "default"
out_dir = "../figures"
progress = False

# %%
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from paperlib import tables
from paperlib.config import load_profile
from paperlib.data.brain import load_split
from paperlib.diffusion import denoising_psnr, load_partitioned_prior, summarize_psnr
from paperlib.paths import repo_root
from paperlib.plotting import image_panel, save_figure, use_paper_style
from paperlib.provenance import provenance

cfg = load_profile(profile)
torch.set_num_threads(cfg.threads)
use_paper_style()
out = Path(out_dir)
ckpt = repo_root() / cfg.prior.checkpoint
if not ckpt.is_dir():
    raise FileNotFoundError(f"prior.checkpoint: no folder {ckpt}; train it with `make train PROFILE={cfg.name}`")
prior = load_partitioned_prior(ckpt)
weights = sorted(ckpt.glob("prior_group*.safetensors"))
print(f"profile {cfg.name}: prior {ckpt.name}, {len(weights)} slice groups of {prior.group_size} slices")

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
test = load_split(cfg.mri, "test", progress=progress).images[: cfg.prior.n_eval_volumes]
val = load_split(cfg.mri, "val", progress=progress).images
case_rows = denoising_psnr(prior, test, cfg.prior.noise_levels, torch.Generator().manual_seed(cfg.prior.seed + 1),
                           tune_volumes=val, progress=progress)
tables.write_csv_rows(case_rows, out / "fig_prior_samples_cases.csv")
stored = tables.read_csv_rows(out / "fig_prior_samples_cases.csv")
summary = summarize_psnr(stored)
by_level = {}
for s in summary:
    by_level.setdefault(s["noise_level"], {})[s["method"]] = s
header = ["Noise sigma", "Noisy input PSNR dB", "Gaussian filter PSNR dB", "Prior PSNR dB", "Prior - filter dB"]
noisy = {}
for r in stored:
    noisy.setdefault(r["noise_level"], []).append(r["noisy_psnr"])
table_rows = []
for level, m in sorted(by_level.items()):
    f, p = m["gaussian_filter"], m["prior"]
    table_rows.append([f"{level:g}", f"{sum(noisy[level]) / len(noisy[level]):.2f}",
                       f"{f['psnr_mean']:.2f} ± {f['psnr_std']:.2f}", f"{p['psnr_mean']:.2f} ± {p['psnr_std']:.2f}",
                       f"{p['psnr_mean'] - f['psnr_mean']:+.2f}"])
prov = provenance(cfg, "fig_prior_samples", checkpoints=weights)
tables.write_table(out / "fig_prior_samples", header, table_rows,
                   title="Prior check: held-out denoising PSNR", provenance=prov, notes=[
                       f"{len(test)} test volumes of shape {tuple(cfg.mri.shape)}; filter widths chosen per noise "
                       f"level on the {len(val)} validation volumes; one network call at the matching timestep.",
                       "Mean ± std over volumes."])
print((out / "fig_prior_samples.md").read_text())
