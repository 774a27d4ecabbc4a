"""The 4D-STEM dose figure: SSIM against dose for every method, derived from its per-case file.

``notebooks/tab1_ssim.py`` reconstructs the first ``stem_eval.data.sweep_n`` test crystals of
Table 1 at every dose of ``stem_eval.data.sweep_doses`` (the table's own rows give the table's
dose) and writes ``fig_stem_dose_cases.csv`` (a ``dose`` column in e-/Å²); :func:`write_dose_figure`
turns that file, and only that file, into ``fig_stem_dose.{png,pdf,md,csv,json}``: per dose and
method the mean per-slice and projection SSIM with 95 % bootstrap intervals over the crystals
(:func:`paperlib.tables.summarise`), the depth-blind reference drawn, and computed notes on which
method is highest at each dose and whose intervals reach it. With ``stem_eval.data.sweep_noiseless``
the same crystals are also scored without noise: their ``dose`` is :data:`NOISELESS` (``inf``, written
``inf`` in the CSV, "noiseless" in the table, the notes and at the right end of the figure's axis).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .. import tables
from ..io import atomic_write_text

#: the summary's score columns: per-slice SSIM, projection SSIM, the depth-blind reference
COLUMNS = ("ssim_slice_mean", "ssim_projected", "ssim_depth_blind")
#: the ``dose`` of noiseless data: infinitely many electrons (sorts after every finite dose)
NOISELESS = math.inf


def dose_label(dose: float, unit: bool = True) -> str:
    """A dose as ``f"{dose:g} e-/Å²"`` (``unit=False``: the number alone), ``"noiseless"`` for :data:`NOISELESS`.

    >>> dose_label(1e4), dose_label(NOISELESS), dose_label(1e6, unit=False)
    ('10000 e-/Å²', 'noiseless', '1e+06')
    """
    if math.isinf(dose):
        return "noiseless"
    return f"{dose:g}" + (" e-/Å²" if unit else "")


def dose_summary(rows: Sequence[Mapping]) -> list[dict]:
    """Per (dose, method), sorted by dose: :func:`paperlib.tables.summarise` of the case rows."""
    missing = [i for i, r in enumerate(rows) if "dose" not in r]
    if missing:
        raise ValueError(f"dose rows: expected a 'dose' column (e-/Å^2), missing in rows {missing[:5]}")
    summary = tables.summarise(rows, by=("dose", "method"))
    for e in summary:
        e["dose"] = float(e["dose"])
    return sorted(summary, key=lambda e: e["dose"])


def ordering_notes(summary: Sequence[Mapping], labels: Mapping[str, str]) -> list[str]:
    """Per dose and score: the method with the highest mean, and the methods whose 95 % interval
    reaches its interval (or that there is no interval with one crystal)."""
    notes = []
    for d in sorted({e["dose"] for e in summary}):
        at = {e["method"]: e for e in summary if e["dose"] == d}
        for col, what in (("ssim_projected", "projection"), ("ssim_slice_mean", "per-slice")):
            best = max(at.values(), key=lambda e: e[f"{col}_mean"])
            head = (f"{dose_label(d)}, {what} SSIM: highest mean {labels.get(best['method'], best['method'])} "
                    f"{best[f'{col}_mean']:.3f}; ")
            if not np.isfinite(best[f"{col}_ci_low"]):
                notes.append(head + "one crystal, no interval: the order is not shown.")
                continue
            rivals = [m for m, e in at.items()
                      if m != best["method"] and e[f"{col}_ci_high"] >= best[f"{col}_ci_low"]]
            notes.append(head + ("no other method's interval reaches its interval." if not rivals else
                                 "intervals overlapping it: " + ", ".join(labels.get(m, m) for m in rivals) + "."))
    return notes


def write_dose_figure(out: str | os.PathLike, labels: Mapping[str, str], *, notes: Sequence[str],
                      provenance: Mapping, name: str = "fig_stem_dose") -> list[dict]:
    """Read ``out/<name>_cases.csv``; write the summary (``.csv``, ``.md`` with ``notes`` and the
    computed ordering notes, ``.json`` with ``provenance``) and the figure (``.png``, ``.pdf``).
    Returns the summary."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    out = Path(out)
    summary = dose_summary(tables.read_cases(out / f"{name}_cases.csv"))
    methods = list(dict.fromkeys(e["method"] for e in summary))
    doses = sorted({e["dose"] for e in summary})
    stats = ("mean", "std", "ci_low", "ci_high")
    tables.write_csv_rows([{k: e[k] for k in ("dose", "method", "n", "n_cases")}
                           | {f"{c}_{s}": e[f"{c}_{s}"] for c in COLUMNS for s in stats}
                           for e in summary], out / f"{name}.csv")
    body = [[dose_label(e["dose"], unit=False), labels.get(e["method"], e["method"]), e["n"]]
            + [tables.mean_std_ci(e, c) for c in COLUMNS] for e in summary]
    lines = ["# 4D-STEM SSIM against dose", "",
             tables.markdown_table(["Dose (e-/Å²)", "Method", "n", "SSIM per slice", "SSIM projection",
                                    "Depth-blind reference (per slice)"], body).rstrip("\n"), ""]
    lines += [f"- {n}" for n in [*notes, *ordering_notes(summary, labels)]]
    atomic_write_text(out / f"{name}.md", "\n".join(lines) + "\n")
    tables.write_json(out / f"{name}.json", {"provenance": dict(provenance),
                                              "doses": [d if math.isfinite(d) else "noiseless" for d in doses],
                                              "crystals": max(e["n_cases"] for e in summary)})
    finite = [d for d in doses if math.isfinite(d)]
    # noiseless data sit one decade right of the highest dose, set apart by a gap in the lines
    x_at = {d: (d if math.isfinite(d) else 10.0 * max(finite, default=1e5)) for d in doses}
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0), sharex=True, constrained_layout=True)
    for ax, col, title in zip(axes, COLUMNS[:2], ("per-slice SSIM", "projection SSIM")):
        for i, m in enumerate(methods):
            pts = [e for e in summary if e["method"] == m]
            parts = [p for p in ([e for e in pts if math.isfinite(e["dose"])],
                                 [e for e in pts if not math.isfinite(e["dose"])]) if p]
            for k, part in enumerate(parts):  # the finite doses as one line, the noiseless point apart
                y = np.array([e[f"{col}_mean"] for e in part])
                err = np.array([[e[f"{col}_mean"] - e[f"{col}_ci_low"], e[f"{col}_ci_high"] - e[f"{col}_mean"]]
                                for e in part]).T
                ax.errorbar([x_at[e["dose"]] for e in part], y, yerr=np.nan_to_num(err), marker="o", ms=3,
                            capsize=2, color=f"C{i % 10}", label=labels.get(m, m).split(" (")[0] if k == 0 else None)
        ax.set_xscale("log")
        ax.set_xlabel("dose (e-/Å²)")
        ax.set_title(title, fontsize=8)
        if len(finite) < len(doses):
            ax.set_xticks([x_at[d] for d in doses], [dose_label(d, unit=False) for d in doses], fontsize=7)
            ax.minorticks_off()
    reference = [next(e for e in summary if e["dose"] == d)["ssim_depth_blind_mean"] for d in doses]
    axes[0].plot([x_at[d] for d in doses], reference, "k--", lw=1, label="depth-blind reference")
    axes[0].set_ylabel("SSIM (mean, 95 % interval)")
    handles, names = axes[0].get_legend_handles_labels()
    axes[1].legend(handles, names, fontsize=6, loc="lower right")
    save_figure(fig, name, out)
    plt.close(fig)
    return summary
