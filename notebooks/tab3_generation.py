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
# # Table 3 — generated volumes: one network over the whole depth against the partitioned stack
#
# The paper's Table 3 asks whether splitting the depth into slice groups, one network each,
# costs generation quality against a single video-diffusion network over the whole depth. Per
# modality and *draw*, each prior generates `tab3.n_generated` volumes (unconditional DDIM); their
# features are compared with those of `tab3.n_reference` **held-out** test-split volumes by
# FVD's Frechet distance and JEDi (`paperlib.metrics.video`). The sanity row puts training
# volumes in place of generated ones: the floor at this sample size. Mean and spread are over
# the independent draws. Per-draw rows: `figures/tab3_generation_cases.csv`.
#
# **Extractor.** The paper uses I3D and VideoMAE (FVD) and V-JEPA (JEDi). Their weights cannot be
# downloaded here, so the default profile uses the project's own small 3D encoders, trained
# contrastively on the priors' training volumes (`paperlib.metrics.encoder`, shipped in
# `checkpoints/encoder_{mri,stem}_default`); the paper profile adds the I3D, VideoMAE and V-JEPA
# columns when their files are supplied (`tab3.weights_dir` or `$PAPERLIB_WEIGHTS`). Numbers from
# different extractors, set sizes or resolutions are not comparable with each other or with the
# paper's.
#
# **The whole-depth networks** (`checkpoints/{mri,stem}_single`) start from group 0 of the shipped
# partitioned priors and are fine-tuned on whole volumes for a short CPU run (their manifests
# hold steps and loss); the partitioned priors had 9000 GPU steps. A gap between the two rows
# can come from that difference in training as well as from the architecture.

# %% tags=["parameters"]
# In JupyterLab the profile and the output folder come from the environment (`make lab PROFILE=ci`
# sets both); papermill's injected parameters (make figures, the tests) override these lines.
import os

profile = os.environ.get("PAPERLIB_PROFILE", "default")
out_dir = os.environ.get("PAPERLIB_OUT_DIR", "../figures")
progress = False

# %%
import json

import numpy as np

from paperlib import tables
from paperlib.experiments.generation import MODEL_LABELS, MODELS, generation_rows
from paperlib.experiments.priors import prior_weights
from paperlib.metrics.video import MIN_SAMPLES
from paperlib.paths import repo_root
from paperlib.plotting import notebook_setup
from paperlib.provenance import provenance

cfg, out = notebook_setup(profile, out_dir, style=False)
t3 = cfg.tab3
print(f"profile {cfg.name}: {t3.n_generated} generated vs {t3.n_reference} held-out volumes, {t3.draws} draws, "
      f"{t3.steps} DDIM steps, extractors {list(t3.extractors)}, modalities {list(t3.modalities)}")

# %%
rows = []
for modality in t3.modalities:
    rows += generation_rows(cfg, modality, progress=progress)
tables.write_csv_rows(rows, out / "tab3_generation_cases.csv")


# %%
def cell(values: list[float]) -> str:
    """mean ± sample std (ddof 1) [min, max] over the draws."""
    v = np.asarray(values, dtype=float)
    std = f"{v.std(ddof=1):.3g}" if v.size > 1 else "–"
    return f"{v.mean():.3g} ± {std} [{v.min():.3g}, {v.max():.3g}]"


extractors = list(dict.fromkeys(r["extractor"] for r in rows))
header = ["Modality", "Set", "n draws"] + [f"{m} ({e})" for e in extractors for m in ("FVD", "JEDi")] + [
    "Generation time per draw (s)"]
body, summary = [], []
for modality in t3.modalities:
    for model in MODELS:
        sel = [r for r in rows if r["modality"] == modality and r["model"] == model]
        line = [modality, MODEL_LABELS[model], len({r["draw"] for r in sel})]
        for e in extractors:
            for metric in ("fvd", "jedi"):
                vals = [r[metric] for r in sel if r["extractor"] == e]
                line.append(cell(vals))
                summary.append({"modality": modality, "model": model, "extractor": e, "metric": metric,
                                "mean": float(np.mean(vals)), "n_draws": len(vals)})
        times = [r["generate_s"] for r in sel if r["extractor"] == extractors[0]]
        line.append("–" if model == "training_set" else f"{np.mean(times):.1f}")
        body.append(line)

# %% [markdown]
# Computed checks: is the sanity row below every generated row (it must be, for the statistic to
# mean anything at this n), and which prior is closer to the held-out volumes.

# %%
mean = {(s["modality"], s["model"], s["extractor"], s["metric"]): s["mean"] for s in summary}
notes = []
for modality in t3.modalities:
    for e in extractors:
        for metric, label in (("fvd", "FVD"), ("jedi", "JEDi")):
            floor = mean[(modality, "training_set", e, metric)]
            part, whole = mean[(modality, "partitioned", e, metric)], mean[(modality, "whole_depth", e, metric)]
            ok = floor < min(part, whole)
            better = "the partitioned stack" if part < whole else "the whole-depth network"
            names = sorted({r["extractor_name"] for r in rows if r["modality"] == modality and r["extractor"] == e})
            notes.append(f"{modality}, {label} ({', '.join(names)}): sanity row {floor:.3g} "
                         f"{'below' if ok else 'NOT below'} both generated rows ({part:.3g} partitioned, "
                         f"{whole:.3g} whole depth); closer to the held-out volumes: {better}.")
if t3.n_generated < MIN_SAMPLES or t3.n_reference < MIN_SAMPLES:
    notes.append(f"Few volumes: {t3.n_generated} generated and {t3.n_reference} held-out per set, fewer than "
                 f"{MIN_SAMPLES} (paperlib.metrics.video.MIN_SAMPLES). The Frechet distance of sample Gaussians is "
                 "biased upwards by about tr(S_a + S_b) / n at small n: values compare only with values of the same "
                 "n, extractor and resolution; the sanity row gives the floor at this n.")
shapes = {r["modality"]: f"{r['frames']} frames (slices) of {r['resolution']}" for r in rows}
notes += [
    "Volumes: " + "; ".join(f"{m}: {s}" for m, s in shapes.items()) + f"; generated with {t3.steps} DDIM steps "
    "(eta 0, no clipping) in the priors' data units (MRI [0, 1], 4D-STEM potential / data_scale).",
    "Held-out volumes: the first n_reference volumes of the test split (new seeds beyond Table 1's cases are "
    "included; no setting was chosen on them).",
    "Cells: mean ± sample standard deviation (ddof 1) [min, max] over the independent draws; n draws in the "
    "third column. FVD: Frechet distance of Gaussians fitted to the features; JEDi: 100 x squared polynomial MMD "
    "(degree 2, gamma = 1/F, coef0 0). Lower is closer.",
    "Extractor 'project-*': the project's contrastive 3D encoder of that modality (paperlib.metrics.encoder), "
    "not I3D, VideoMAE or V-JEPA: the numbers are not on the paper's scale.",
]
for modality in t3.modalities:
    folder = (cfg.prior if modality == "mri" else cfg.stem_prior).single_checkpoint
    m = json.loads((repo_root() / folder / "prior_group0.json").read_text())
    notes.append(f"Whole-depth network ({modality}, {folder}): {m['steps']} fine-tuning steps from "
                 f"{(m.get('init') or {}).get('path', 'scratch')}, final loss {m['final_loss']:.4g} "
                 f"({m['train_config'].get('loss', 'l1')}).")
weights = prior_weights(*[c for s in (cfg.prior, cfg.stem_prior) for c in (s.checkpoint, s.single_checkpoint)])
prov = provenance(cfg, "tab3_generation", checkpoints=weights)
tables.write_table(out / "tab3_generation", header, body, notes=notes, provenance=prov,
                   title="Table 3: generated volumes against held-out volumes (lower is closer)")
tables.write_json(out / "tab3_generation.json", {"provenance": prov, "summary": summary})
print((out / "tab3_generation.md").read_text())
