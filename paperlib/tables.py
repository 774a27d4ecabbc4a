"""Per-case results and the tables derived from them.

Every notebook first writes its raw per-case results (one row per volume x method x seed) to
``figures/<name>_cases.csv``; the table is then *derived from that file* by :func:`summarise`,
so every number in a table can be traced to the rows (and the notebook) that made it.

Standard deviations are population standard deviations (``ddof=0``) over all rows of a group,
i.e. over test cases and seeds together.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from .io import atomic_write_text

CASE_COLUMNS = (
    "modality", "dataset", "case", "method", "seed",
    "ssim", "ssim_head", "psnr", "wall_time_s", "peak_rss_bytes",
)
#: numeric columns read back as floats and summarised (absent ones are skipped): the MRI
#: columns, then the 4D-STEM extras (projection SSIM/PSNR and the depth-blind reference; 4D-STEM
#: rows leave ``ssim_head`` NaN)
NUMERIC = ("ssim", "ssim_head", "psnr", "wall_time_s", "peak_rss_bytes",
           "ssim_projected", "ssim_depth_blind", "psnr_projected")
_OPTIONAL_NUMERIC = ("ssim_projected", "ssim_depth_blind", "psnr_projected")


def write_cases(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """Write per-case rows (dicts with at least :data:`CASE_COLUMNS`) as CSV, atomically.

    Extra keys present in every row are appended as further columns.
    """
    if not rows:
        raise ValueError(f"{path}: no case rows to write")
    missing = [c for c in CASE_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: case rows lack columns {missing}")
    extra = [k for k in rows[0] if k not in CASE_COLUMNS and all(k in r for r in rows)]
    columns = list(CASE_COLUMNS) + extra
    return _write_csv(path, columns, ({k: row[k] for k in columns} for row in rows))


def _write_csv(path: str | os.PathLike, columns: Sequence[str], rows: Iterable[Mapping]) -> Path:
    """CSV of ``rows`` (dicts over ``columns``; floats to 6 significant digits, ``None`` empty),
    written atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    return atomic_write_text(path, buf.getvalue())


def _fmt(value):
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def read_cases(path: str | os.PathLike) -> list[dict]:
    """Read a cases CSV back; numeric columns become floats (empty/NaN -> ``nan``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no cases file; run the notebook that writes it first")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for key in NUMERIC:
            if key in row:
                row[key] = float(row[key]) if row[key] not in ("", None) else math.nan
    return rows


def write_csv_rows(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """Write dict rows (the columns of the first row) as CSV, atomically; ``None`` -> empty.

    For per-case files whose columns are not :data:`CASE_COLUMNS` (e.g. denoising PSNR rows).

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.csv"
    >>> _ = write_csv_rows([{"method": "a", "psnr": 30.5, "t": None}], p)
    >>> read_csv_rows(p)
    [{'method': 'a', 'psnr': 30.5, 't': None}]
    """
    if not rows:
        raise ValueError(f"{path}: no rows to write")
    columns = list(rows[0])
    return _write_csv(path, columns, ({k: row.get(k) for k in columns} for row in rows))


def _parse(value: str):
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value


def read_csv_rows(path: str | os.PathLike) -> list[dict]:
    """Read :func:`write_csv_rows` output back: numbers as floats, empty cells as ``None``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such results file; run the notebook that writes it first")
    with open(path, newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def summarise(
    rows: Iterable[Mapping], by: Sequence[str] = ("modality", "dataset", "method")
) -> list[dict]:
    """Mean and standard deviation of every numeric column per group, in first-seen order.

    >>> rows = [{"method": "a", "ssim": 0.5}, {"method": "a", "ssim": 0.7}, {"method": "b", "ssim": 0.9}]
    >>> [(s["method"], s["n"], round(s["ssim_mean"], 3), round(s["ssim_std"], 3)) for s in summarise(rows, by=("method",))]
    [('a', 2, 0.6, 0.1), ('b', 1, 0.9, 0.0)]
    """
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in by)].append(row)
    out = []
    for key, members in groups.items():
        entry = dict(zip(by, key))
        entry["n"] = len(members)
        for col in NUMERIC:
            if col in _OPTIONAL_NUMERIC and not any(col in m for m in members):
                continue  # 4D-STEM extras are left out of MRI summaries
            vals = np.array([float(m[col]) for m in members if col in m], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            entry[f"{col}_mean"] = float(vals.mean()) if vals.size else math.nan
            entry[f"{col}_std"] = float(vals.std()) if vals.size else math.nan
        out.append(entry)
    return out


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``0.804 ± 0.025`` (or ``–`` for NaN)."""
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_table(
    stem: str | os.PathLike,
    header: Sequence[str],
    rows: Sequence[Sequence],
    *,
    title: str = "",
    notes: Sequence[str] = (),
    provenance: Mapping | None = None,
) -> list[Path]:
    """Write ``stem.md`` (title, table, notes, provenance) and ``stem.csv`` atomically."""
    stem = Path(stem)
    md = (f"# {title}\n\n" if title else "") + markdown_table(header, rows)
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    if provenance:
        md += "\nProvenance: `" + json.dumps(provenance, sort_keys=True) + "`\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    md_path = atomic_write_text(stem.with_suffix(".md"), md)
    csv_path = atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
    return [md_path, csv_path]


def write_json(path: str | os.PathLike, data: Mapping) -> Path:
    """Write ``data`` as indented, key-sorted JSON atomically."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


def ssim_table_rows(
    summary: Sequence[Mapping],
    reference: Mapping[tuple[str, str], tuple[float, float]],
    labels: Mapping[str, str],
    *,
    inside: str = "head",
) -> tuple[list[str], list[list[str]]]:
    """Rows of an SSIM table (Table 1 / Table 2 layout) from :func:`summarise` output.

    Columns: modality, method, n, SSIM (whole image), SSIM inside the support mask (``inside``
    names it: the head, the pot), PSNR, time per volume, and the paper's reported SSIM in a
    separate, labelled column.
    """
    header = [
        "Modality", "Method", "n", "SSIM (ours)", f"SSIM in {inside} (ours)", "PSNR dB (ours)",
        "Time / volume s (ours)", "SSIM reported in paper",
    ]
    rows = []
    for s in summary:
        ref = reference.get((s["modality"], s["method"]))
        rows.append([
            s["modality"].upper(),
            labels.get(s["method"], s["method"]),
            str(s["n"]),
            mean_std(s["ssim_mean"], s["ssim_std"]),
            mean_std(s["ssim_head_mean"], s["ssim_head_std"]),
            mean_std(s["psnr_mean"], s["psnr_std"], digits=2),
            f"{s['wall_time_s_mean']:.3g}",
            mean_std(*ref) if ref else "not in paper",
        ])
    return header, rows


def stem_table_rows(
    summary: Sequence[Mapping],
    reference: Mapping[tuple[str, str], tuple[float, float]],
    labels: Mapping[str, str],
) -> tuple[list[str], list[list[str]]]:
    """Rows of a 4D-STEM SSIM table from :func:`summarise` output of 4D-STEM case rows.

    Columns: dataset, method, n, per-slice SSIM, SSIM of the phase projection, the paper's
    reported SSIM (which is of the phase projection, so it sits beside ours), the per-slice SSIM
    of the depth-blind reference (every slice = projection / D), PSNR per slice and time per
    volume.
    """
    header = [
        "Dataset", "Method", "n", "SSIM per slice (ours)", "SSIM projection (ours)",
        "SSIM projection reported in paper", "Depth-blind reference SSIM per slice (ours)",
        "PSNR per slice dB (ours)", "Time / volume s (ours)",
    ]
    rows = []
    for s in summary:
        ref = reference.get((s["modality"], s["method"]))
        rows.append([
            s["dataset"],
            labels.get(s["method"], s["method"]),
            str(s["n"]),
            mean_std(s["ssim_mean"], s["ssim_std"]),
            mean_std(s["ssim_projected_mean"], s["ssim_projected_std"]),
            mean_std(*ref) if ref else "not in paper",
            mean_std(s["ssim_depth_blind_mean"], s["ssim_depth_blind_std"]),
            mean_std(s["psnr_mean"], s["psnr_std"], digits=2),
            f"{s['wall_time_s_mean']:.3g}",
        ])
    return header, rows


def ordering_notes(
    summary: Sequence[Mapping],
    reference: Mapping[tuple[str, str], tuple[float, float]],
    labels: Mapping[str, str],
    *,
    column: str = "ssim",
    what: str = "SSIM",
) -> list[str]:
    """Where our ranking of two methods differs from the paper's, one sentence per pair (computed).

    Every pair of methods of one modality that both the paper and ``summary`` report is compared
    by ``<column>_mean`` (ours) and the paper's mean; a pair whose order flips is listed with both
    sets of numbers. Pairs tied in the paper are skipped. With no flip, one sentence says that
    the ordering agrees. Use ``column="ssim_projected"`` for 4D-STEM, whose paper values are SSIMs
    of the phase projection.

    >>> s = [{"modality": "mri", "method": "a", "ssim_mean": 0.9}, {"modality": "mri", "method": "b", "ssim_mean": 0.8}]
    >>> ordering_notes(s, {("mri", "a"): (0.7, 0.1), ("mri", "b"): (0.8, 0.1)}, {})
    ['Ordering differs from the paper (SSIM, MRI): a 0.900 > b 0.800 here; the paper has a 0.700 < b 0.800.']
    >>> ordering_notes(s, {("mri", "a"): (0.95, 0.1), ("mri", "b"): (0.8, 0.1)}, {})
    ['SSIM ordering of the 1 pair(s) of methods the paper also reports (MRI) agrees with the paper.']
    """
    notes: list[str] = []
    for modality in dict.fromkeys(s["modality"] for s in summary):
        ours = {s["method"]: float(s[f"{column}_mean"]) for s in summary
                if s["modality"] == modality and (modality, s["method"]) in reference}
        names = list(ours)
        pairs = flips = 0
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                pa, pb = reference[(modality, a)][0], reference[(modality, b)][0]
                if pa == pb or not (math.isfinite(ours[a]) and math.isfinite(ours[b])):
                    continue
                pairs += 1
                if (ours[a] - ours[b]) * (pa - pb) < 0:
                    flips += 1
                    hi, lo = (a, b) if ours[a] > ours[b] else (b, a)
                    la, lb = labels.get(hi, hi), labels.get(lo, lo)
                    notes.append(f"Ordering differs from the paper ({what}, {modality.upper()}): {la} "
                                 f"{ours[hi]:.3f} > {lb} {ours[lo]:.3f} here; the paper has {la} "
                                 f"{reference[(modality, hi)][0]:.3f} < {lb} {reference[(modality, lo)][0]:.3f}.")
        if pairs and not flips:
            notes.append(f"{what} ordering of the {pairs} pair(s) of methods the paper also reports "
                         f"({modality.upper()}) agrees with the paper.")
    return notes


def depth_notes(summary: Sequence[Mapping], labels: Mapping[str, str]) -> list[str]:
    """Which 4D-STEM methods resolve depth: mean per-slice SSIM above the depth-blind reference's.

    >>> s = [{"method": "a", "ssim_mean": 0.6, "ssim_depth_blind_mean": 0.5},
    ...      {"method": "b", "ssim_mean": 0.4, "ssim_depth_blind_mean": 0.5}]
    >>> depth_notes(s, {"a": "A"})
    ['Per-slice SSIM above the depth-blind reference (0.500): A 0.600. Not above it: b 0.400.']
    """
    blind = [float(s["ssim_depth_blind_mean"]) for s in summary]
    if not blind:
        return []
    ref = float(np.mean(blind))
    above = [s for s in summary if float(s["ssim_mean"]) > ref]
    below = [s for s in summary if float(s["ssim_mean"]) <= ref]

    def fmt(group):
        return ", ".join(f"{labels.get(s['method'], s['method'])} {float(s['ssim_mean']):.3f}" for s in group)

    return [f"Per-slice SSIM above the depth-blind reference ({ref:.3f}): {fmt(above) or 'none'}."
            + (f" Not above it: {fmt(below)}." if below else "")]
