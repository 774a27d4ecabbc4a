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
# # Figure 5 — DART against the number of ranks P: peak memory per rank and wall time per volume
#
# The paper spreads the slice groups of its partitioned prior over P GPUs and claims that memory per
# device falls as 1/P. Peak memory of a rank has three parts (method in `benchmarks/scaling.py`):
# the **fixed** per-process part (interpreter, torch, gloo), the part partitioning **divides** (the
# networks and measured slices of the rank's G/P groups) and the **workspace** of one network call,
# which does not shrink with P (the groups of a rank run one after the other). The bottom panels
# show all three for the busiest rank, the 1/P reference for the divided part, and the wall time of
# one DART volume.
#
# * default profile: 16x64x64 volumes, default-width networks, G = 4 groups, P = 1, 2, 4 gloo
#   processes on this CPU, every number measured (DART runs whole; each reconstruction equals
#   `paperlib.recon.dart` in one process);
# * the paper's shape: 155x240x240, paper-width networks, G = 31 groups of 5 slices, P = 1, 2, 4, 8:
#   peak memory of the busiest rank measured while it holds all its groups and runs three DART steps
#   of one of them; time per step and per volume **extrapolated** from the warm steps x groups held x
#   DART steps (hollow markers);
# * dashed gray: the fitted cost model memory = c + k / P, time = a + b / P, drawn as a model.
#
# Measuring the paper's shape takes a quarter of an hour on this CPU, so the default and paper
# profiles read the committed measurements (`benchmarks/results/scaling_*.csv`, rerun with
# `python benchmarks/scaling.py --setting default default_probe --name default` and `--setting paper`);
# the ci profile runs a tiny fresh gloo measurement instead of the default one, so the test
# exercises the code. All rows go to `figures/fig5_scaling_cases.csv`.

# %% tags=["parameters"]
# In JupyterLab the profile and the output folder come from the environment (`make lab PROFILE=ci`
# sets both); papermill's injected parameters (make figures, the tests) override these lines.
import os

profile = os.environ.get("PAPERLIB_PROFILE", "default")
out_dir = os.environ.get("PAPERLIB_OUT_DIR", "../figures")
progress = False


# %%
import sys

import matplotlib.pyplot as plt

from paperlib import tables
from paperlib.diffusion.distributed import groups_for_rank
from paperlib.io import sha256_file
from paperlib.paths import repo_root
from paperlib.plotting import notebook_setup, save_figure
from paperlib.provenance import provenance

sys.path.insert(0, str(repo_root()))
from benchmarks import scaling  # noqa: E402

cfg, out = notebook_setup(profile, out_dir)
committed = {name: scaling.RESULTS / f"scaling_{name}.csv" for name in ("default", "paper")}
for name, path in committed.items():
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the committed {name} measurement is missing; "
                                f"run `python benchmarks/scaling.py --setting {name}`")
paper_rows = tables.read_csv_rows(committed["paper"])
if cfg.name == "ci":
    small_rows = scaling.run_setting(scaling.SETTINGS["ci"], seed=0)
    small_note = "ci profile: a fresh measurement of the tiny ci setting (8x32x32, ci networks, G = 2)"
    inputs = {"paper": committed["paper"]}
else:
    small_rows = tables.read_csv_rows(committed["default"])
    inputs = committed
    stamps = sorted({r["date_utc"] for r in small_rows})
    small_note = f"committed measurement {stamps[0]} to {stamps[-1]}"
rows = [dict(r) for r in small_rows] + [dict(r) for r in paper_rows]
machines = sorted({f"{r['cpu_model']}, {int(float(r['cores']))} cores, torch {r['torch']}" for r in rows})
print("\n".join(["measured on:"] + machines))

# %% [markdown]
# ## The must-show check: the divided part against 1/P

# %%
by_setting: dict = {}
for r in rows:
    by_setting.setdefault(r["setting"], []).append(r)
ratios = [x for name in by_setting for x in scaling.divided_ratios(by_setting[name])]
models = {name: scaling.cost_model(rs) for name, rs in by_setting.items()}
for x in ratios:
    print(f"{x['setting']:14} P={x['P']}: divided part {x['divided_mib']:9.1f} MiB, ratio to P=1 {x['ratio']:.3f} "
          f"vs 1/P = {x['one_over_P']:.3f} ({x['relative_error']:+.1%}, within 20 %: {x['within_20pct']})")

# %% [markdown]
# ## Top panel: vanilla video diffusion against DART and DRIFT
#
# The paper's full multi-slice baseline is one video-diffusion network over the whole depth. Here
# it is the MRI method `video_diffusion`: DART's loop, settings and data consistency with the
# whole-depth network `prior.single_checkpoint` (group 0 of the shipped prior fine-tuned on whole
# volumes, a short CPU run: see its manifest) instead of the partitioned stack. All three run in one
# process on the first `fig5.top_volumes` test volumes of Table 1 (same masks, seed 0; DART's and
# DRIFT's rows equal Table 1's), and every row records wall time, the process's peak resident
# memory during the call (`paperlib.measure`, which includes torch and the data) and SSIM
# (`figures/fig5_scaling_top_cases.csv`). On one device the whole-depth network does the same
# per-slice work as the stack; the partitioned prior's advantage is that its groups can go to
# different ranks (bottom panels).

# %%
from paperlib.experiments import mri as mri_exp
from paperlib.experiments.runner import run_cases
from paperlib.reference import METHOD_LABELS

TOP_METHODS = ("video_diffusion", "dart", "drift")
top_cases = mri_exp.mri_cases(cfg, split="test", n=cfg.fig5.top_volumes, progress=progress)
top_rows, _ = run_cases(cfg, "mri", top_cases, TOP_METHODS, seeds=(0,), progress=progress)
tables.write_cases(top_rows, out / "fig5_scaling_top_cases.csv")
top_summary = {s["method"]: s for s in tables.summarise(top_rows)}
fig_top, axes_top = plt.subplots(1, 3, figsize=(10, 2.8))
for ax, (column, label, scale) in zip(axes_top, (("ssim_whole", "SSIM (whole image)", 1.0),
                                                 ("wall_time_s", "wall time per volume (s)", 1.0),
                                                 ("peak_rss_bytes", "peak RSS during the call (MiB)", 2**20))):
    for i, method in enumerate(TOP_METHODS):
        values = [float(r[column]) / scale for r in top_rows if r["method"] == method]
        ax.bar(i, sum(values) / len(values), color=f"C{i}", width=0.6)
        ax.plot([i] * len(values), values, "k.", markersize=4)
    ax.set_xticks(range(len(TOP_METHODS)), [METHOD_LABELS[m].split(" (")[0].replace("Vanilla ", "Vanilla\n")
                                            for m in TOP_METHODS], fontsize=7)
    ax.set_ylabel(label)
fig_top.suptitle(f"Figure 5 (top): {len(top_cases)} MRI test volumes {tuple(cfg.mri.shape)}, one process, "
                 f"{cfg.threads} threads; bars: mean, dots: volumes", y=1.02)
save_figure(fig_top, "fig5_scaling_top", out)
plt.show()
for method in TOP_METHODS:
    s_ = top_summary[method]
    print(f"{method:16s} SSIM {s_['ssim_whole_mean']:.3f}  wall {s_['wall_time_s_mean']:.1f} s  "
          f"peak {s_['peak_rss_bytes_mean'] / 2**20:.0f} MiB  (n = {s_['n']})")

# %% [markdown]
# ## Bottom panels: memory per rank and time per volume against P

# %%
STYLE = {"measured": dict(marker="o", linestyle="-", fillstyle="full"),
         "extrapolated": dict(marker="s", linestyle=":", fillstyle="none")}
MODEL = dict(color="0.35", linestyle=(0, (5, 3)), linewidth=1)
PARTS = [("fixed_mib", "fixed (interpreter, torch, gloo)", "0.75"),
         ("workspace_mib", "workspace (one group's network call)", "#9ecae1"),
         ("divided_mib", "divided (networks + slices of the rank's groups)", "#d95f02")]


def model_grid(setting_rows):
    """The P of the cost-model curve: up to G (every rank needs a group)."""
    groups = int(float(setting_rows[0]["num_groups"]))
    return [p for p in (1, 2, 4, 8, 16, 32) if p < groups] + [groups]


def memory_panel(ax, setting_rows, title, unit=1.0, unit_name="MiB", extend=()):
    """Stacked bars of the busiest rank's memory split (measured), the 1/P reference of the divided
    part, and the fitted model c + k/P, also at the model-only P of ``extend``."""
    top = scaling.busiest(setting_rows)
    ps = [int(r["P"]) for r in top]
    xs = list(range(len(ps)))
    bottom = [0.0] * len(ps)
    for key, label, color in PARTS:
        vals = [float(r[key]) / unit for r in top]
        ax.bar(xs, vals, bottom=bottom, color=color, label=label, width=0.6)
        bottom = [b + v for b, v in zip(bottom, vals)]
    base = [(float(r["fixed_mib"]) + float(r["workspace_mib"])) / unit for r in top]
    first = float(top[0]["divided_mib"]) / unit
    ax.plot(xs, [b + first / p for b, p in zip(base, ps)], "k_", markersize=16, markeredgewidth=2,
            label="fixed + workspace + divided(P=1)/P")
    c, k = models[top[0]["setting"]]["memory"]
    all_ps = ps + list(extend)
    all_xs = list(range(len(all_ps)))
    ax.plot(all_xs, [(c + k / p) / unit for p in all_ps], marker="x", **MODEL, label="model c + k/P (fit)")
    ax.set_xticks(all_xs, [f"P={p}\n{int(r['groups_held'])} gr." for p, r in zip(ps, top)]
                  + [f"P={p}\nmodel" for p in extend])
    ax.set_ylabel(f"peak memory per rank ({unit_name})")
    ax.set_title(title)


def ratio_panel(ax, groups):
    """The must-show: divided part at P over that at P = 1, against 1/P (+-20 % band)."""
    ps_all = sorted({x["P"] for _, ratios_of in groups for x in ratios_of})
    grid = [ps_all[0], ps_all[-1]]
    ax.fill_between(grid, [0.8 / p for p in grid], [1.2 / p for p in grid], color="0.9", label="1/P +- 20 %")
    ax.plot(grid, [1 / p for p in grid], "k--", linewidth=1, label="1/P")
    for (label, ratios_of), color in zip(groups, ("C0", "C2")):
        ax.plot([x["P"] for x in ratios_of], [x["ratio"] for x in ratios_of], color=color, label=f"{label} (measured)",
                **STYLE["measured"])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("ranks P")
    ax.set_ylabel("divided part / divided part at P = 1")
    ax.set_title("the part partitioning divides")


def time_panel(ax, groups, title):
    """Time per DART volume against P: the busiest rank's wall time (measured or extrapolated), its
    CPU time (the wall time with a core per rank) and the model a + b/P fitted to the CPU time."""
    for (label, setting_rows), color in zip(groups, ("C0", "C1", "C2")):
        top = scaling.busiest(setting_rows)
        ps = [int(r["P"]) for r in top]
        source = top[0]["volume_source"]
        ax.plot(ps, [float(r["volume_s"]) for r in top], color=color, label=f"{label}: wall ({source})",
                **STYLE[source])
        ax.plot(ps, [float(r["cpu_s"]) for r in top], color=color, label=f"{label}: CPU ({source})",
                **(STYLE[source] | {"marker": "^", "linewidth": 0.8}))
        a, b = models[top[0]["setting"]]["time"]
        grid = model_grid(setting_rows)
        ax.plot(grid, [a + b / p for p in grid], **MODEL)
    ax.plot([], [], **MODEL, label="model a + b/P (fit to CPU)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("ranks P")
    ax.set_ylabel("time per volume (s)")
    ax.set_title(title)


small_name = small_rows[0]["setting"]
small_label = f"{small_rows[0]['shape']}"
fig, axes = plt.subplots(1, 4, figsize=(15, 4.2), gridspec_kw={"width_ratios": [0.8, 1.2, 0.9, 1.0]})
memory_panel(axes[0], by_setting[small_name], f"{small_label}, {small_rows[0]['preset']} nets, gloo ranks")
memory_panel(axes[1], by_setting["paper"], "155x240x240, paper nets, busiest rank", unit=1024,
             unit_name="GiB", extend=(16, 31))
ratio_panel(axes[2], [(small_label, [x for x in ratios if x["setting"] == small_name]),
                      ("155x240x240", [x for x in ratios if x["setting"] == "paper"])])
time_groups = [(small_label, by_setting[small_name])]
if "default_probe" in by_setting:
    time_groups.append(("16x64x64 probe", by_setting["default_probe"]))
time_groups.append(("155x240x240", by_setting["paper"]))
time_panel(axes[3], time_groups, "DART time per volume")
for ax in (axes[0], axes[2], axes[3]):  # the two memory panels share one legend
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=6, frameon=False)
fig.text(0.01, -0.33, f"{small_note}; paper shape: committed measurement {paper_rows[0]['date_utc']}. "
         f"Machine: {'; '.join(machines)}; 2 cores shared with other jobs (load average per row in the CSV): "
         "wall times depend on the load, CPU times and memory hardly. Filled: measured; hollow: extrapolated from "
         "the timed DART steps of one group x groups held x steps; dashed gray: fitted model (memory to P = 31 = G).",
         fontsize=6, ha="left", va="top", wrap=True)
save_figure(fig, "fig5_scaling", out)
plt.show()

# %% [markdown]
# ## Per-case rows, summary table and provenance

# %%
tables.write_csv_rows(rows, out / "fig5_scaling_cases.csv")
stored = tables.read_csv_rows(out / "fig5_scaling_cases.csv")
summary = []
for x in ratios:
    r = next(r for r in scaling.busiest([s for s in stored if s["setting"] == x["setting"]]) if int(r["P"]) == x["P"])
    summary.append([x["setting"], r["shape"], x["P"], int(r["groups_held"]), f"{float(r['fixed_mib']):.0f}",
                    f"{float(r['workspace_mib']):.0f}", f"{x['divided_mib']:.1f}", f"{x['ratio']:.3f}",
                    f"{x['one_over_P']:.3f}", f"{float(r['peak_rss_mib']):.0f}", r["memory_source"],
                    f"{float(r['volume_s']):.4g}", f"{float(r['cpu_s']):.4g}", r["volume_source"]])
c, k = models["paper"]["memory"]
a, b = models["paper"]["time"]
for p in (16, 31):
    busy = len(groups_for_rank(scaling.SETTINGS["paper"].num_groups, 0, p))
    summary.append(["paper", "model", p, busy, "", "", "", "", f"{1 / p:.3f}", f"{c + k / p:.0f}",
                    "model", "", f"{a + b / p:.4g}", "model"])
prov = provenance(cfg, "fig5_scaling")
tables.write_table(out / "fig5_scaling", ["Setting", "Shape", "P", "Groups (busiest rank)", "Fixed MiB",
                                          "Workspace MiB", "Divided MiB", "Divided / divided at P=1", "1/P",
                                          "Peak MiB", "Memory", "Wall s per volume", "CPU s per volume",
                                          "Time"], summary,
                   title="Figure 5 (bottom): DART peak memory per rank and wall time per volume against P",
                   provenance=prov, notes=[
                       small_note + "; paper shape: committed measurement " + paper_rows[0]["date_utc"] + ".",
                       "Busiest rank per P. Fixed: RSS before the phase; divided: RSS after the rank built its "
                       "networks and cut its slices, minus fixed; workspace: peak minus both (method in "
                       "benchmarks/scaling.py).",
                       "Paper shape: G = 31 groups of 5 slices (155 = 5 x 31, groups spread by groups_for_rank); "
                       "the busiest rank probed alone, holding all its groups, with three DART steps of one group "
                       "(the first cold); time per volume extrapolated: mean warm step x groups held x the paper "
                       "profile's DART steps. Memory is measured.",
                       "Model rows: least-squares fit of peak = c + k/P and of the CPU time = a + b/P over "
                       "the measured P (CPU time of the busiest rank: its wall time with a core per rank).",
                       "2 CPU cores shared with other jobs: wall times depend on the load average (in the per-case "
                       "CSV); ranks beyond the free cores share them."])
tables.write_json(out / "fig5_scaling.json", {
    "provenance": prov, "inputs": {name: {"path": str(p.relative_to(repo_root())), "sha256": sha256_file(p)}
                                   for name, p in inputs.items()},
    "ratios": ratios, "models": models})
print((out / "fig5_scaling.md").read_text())
