"""Per-case results and the tables derived from them.

Every notebook first writes its raw per-case results (one row per volume x method x seed) to
``figures/<name>_cases.csv``; the table is then *derived from that file* by :func:`summarise`,
so every number in a table can be traced to the rows (and the notebook) that made it.

Columns of the per-case rows
----------------------------
Every row: :data:`CASE_COLUMNS` (``modality``, ``dataset``, ``case``, ``method``, ``seed``,
``wall_time_s``, ``peak_rss_bytes``). The scores depend on the modality
(:data:`SCORE_COLUMNS`): MRI ``ssim_whole`` (whole-image SSIM, the paper's), ``ssim_head``
(inside the head or pot mask) and ``psnr_volume`` (PSNR of the whole volume); 4D-STEM
``ssim_slice_mean``, ``psnr_slice_mean`` (means over slices), ``ssim_projected``,
``psnr_projected`` (of the phase projection, the paper's 4D-STEM number) and
``ssim_depth_blind`` (the depth-blind reference). Definitions: :mod:`paperlib.metrics`.

Statistics of a group (one modality, dataset and method), :func:`summarise`
-----------------------------------------------------------------------------
* ``n``: rows (test cases x seeds for stochastic methods); ``n_cases``: distinct cases.
* ``<col>_mean``: mean over the rows.
* ``<col>_std``: **sample** standard deviation, ``ddof = 1`` (NaN when ``n = 1``).
* ``<col>_ci_low``, ``<col>_ci_high``: 95 % bootstrap interval of the mean, percentile method:
  :data:`BOOTSTRAP_RESAMPLES` resamples of the group's **cases** with replacement (all seeds of a
  drawn case together, since runs of one case are not independent), the mean of the drawn rows
  each time, and the 2.5th and 97.5th percentiles (numpy's default linear interpolation) of
  those means. Resamples come from ``numpy.random.default_rng(0)``, fresh for every group, the
  same draws for every column of a group. NaN when the group has fewer than 2 cases. With few
  cases a percentile interval is too narrow (with 2 cases it is the range of their two means);
  read it together with ``n``.
* A non-finite value (NaN, inf, empty cell) or a column that some rows of a group lack is an
  error naming the column, the group and the count: a missing score is never averaged away.
  Columns that no row of the group has are skipped (e.g. STEM columns in MRI rows).

In the Markdown tables a cell reads ``mean ± std [ci_low, ci_high]`` (:func:`mean_std_ci`), with
``–`` for what a group of one row or one case cannot give; :data:`INTERVAL_NOTE` says so in words.
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

#: columns of every per-case row, whatever the modality
CASE_COLUMNS = ("modality", "dataset", "case", "method", "seed", "wall_time_s", "peak_rss_bytes")
#: score columns per modality (see the module docstring)
SCORE_COLUMNS = {
    "mri": ("ssim_whole", "ssim_head", "psnr_volume"),
    "stem": ("ssim_slice_mean", "psnr_slice_mean", "ssim_projected", "psnr_projected", "ssim_depth_blind"),
}
#: numeric columns, read back as floats and summarised where present
NUMERIC = (*SCORE_COLUMNS["mri"], *SCORE_COLUMNS["stem"], "wall_time_s", "peak_rss_bytes")
#: resamples of the bootstrap intervals (:func:`summarise`)
BOOTSTRAP_RESAMPLES = 10_000
#: what a table cell means, for the notes under every table built by :func:`ssim_table_rows` or
#: :func:`stem_table_rows`
INTERVAL_NOTE = (
    "Cells: mean ± sample standard deviation (ddof = 1) [95 % bootstrap interval of the mean: "
    f"{BOOTSTRAP_RESAMPLES} resamples of the test cases with replacement, all seeds of a drawn case "
    "together, percentile method, numpy default_rng(0)]; n = rows (cases x seeds); "
    "'–' where a group has one row (no standard deviation) or one case (no interval)."
)


def write_cases(rows: Sequence[Mapping], path: str | os.PathLike) -> Path:
    """Write per-case rows as CSV, atomically.

    Every row must have :data:`CASE_COLUMNS`; the columns are the keys of the first row that
    every row has, in that order (scores, ``ssim_slices``, ``material``, ...).
    """
    if not rows:
        raise ValueError(f"{path}: no case rows to write")
    for i, row in enumerate(rows):
        missing = [c for c in CASE_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"{path}: case rows lack columns {missing} (row {i}: {dict(row)})")
    columns = [k for k in rows[0] if all(k in r for r in rows)]
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


def _read_rows(path: str | os.PathLike, what: str) -> list[dict]:
    """The rows of a CSV file as dicts of strings; a missing file is an error naming ``what``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what}; run the notebook that writes it first")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_cases(path: str | os.PathLike) -> list[dict]:
    """Read a cases CSV back; numeric columns become floats (empty/NaN -> ``nan``)."""
    rows = _read_rows(path, "cases file")
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
    return [{k: _parse(v) for k, v in row.items()} for row in _read_rows(path, "such results file")]


def _finite_values(members: Sequence[Mapping], col: str, group: Mapping) -> np.ndarray | None:
    """The values of ``col`` in ``members`` as float64, ``None`` when no member has the column.

    Raises ``ValueError`` naming the column, the group and the count when some members lack the
    column or hold a non-finite value (NaN, inf, ``None``, an empty or non-numeric cell).
    """
    present = [m[col] for m in members if col in m]
    if not present:
        return None
    if len(present) != len(members):
        raise ValueError(f"summarise: column {col!r} is missing in {len(members) - len(present)} of "
                         f"{len(members)} rows of group {group}")
    vals = np.array([_as_float(v) for v in present], dtype=np.float64)
    bad = int((~np.isfinite(vals)).sum())
    if bad:
        raise ValueError(f"summarise: column {col!r} has {bad} non-finite value(s) (NaN/inf/empty) in "
                         f"the {len(members)} rows of group {group}; fix or remove the runs that made "
                         f"them: a missing score is not averaged away")
    return vals


def _as_float(value) -> float:
    if value is None or value == "":
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _case_resamples(members: Sequence[Mapping], resamples: int, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Bootstrap draws of the cases of a group: ``(weights (resamples, n_cases), index (n,))``.

    ``weights[r, c]`` counts how often case ``c`` was drawn in resample ``r``; ``index[i]`` is
    the case of row ``i`` (rows without a ``case`` key are their own case). ``None`` with fewer
    than 2 cases.
    """
    keys = [m.get("case", i) for i, m in enumerate(members)]
    cases = list(dict.fromkeys(keys))
    if len(cases) < 2:
        return None
    index = np.array([cases.index(k) for k in keys])
    draws = np.random.default_rng(seed).integers(0, len(cases), size=(resamples, len(cases)))
    weights = np.zeros((resamples, len(cases)))
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1.0)
    return weights, index


def summarise(
    rows: Iterable[Mapping],
    by: Sequence[str] = ("modality", "dataset", "method"),
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> list[dict]:
    """Per group, in first-seen order: ``n``, ``n_cases`` and, for every :data:`NUMERIC` column
    that the group's rows have, ``<col>_mean``, ``<col>_std`` (ddof = 1), ``<col>_ci_low`` and
    ``<col>_ci_high`` (95 % bootstrap interval of the mean over cases; see the module docstring).

    Raises ``ValueError`` for a non-finite value or a column that only some rows of a group have.

    >>> rows = [{"method": "a", "case": "c0", "ssim_whole": 0.5}, {"method": "a", "case": "c1", "ssim_whole": 0.7},
    ...         {"method": "b", "case": "c0", "ssim_whole": 0.9}]
    >>> a, b = summarise(rows, by=("method",))
    >>> a["n"], round(a["ssim_whole_mean"], 3), round(a["ssim_whole_std"], 4)
    (2, 0.6, 0.1414)
    >>> a["ssim_whole_ci_low"], a["ssim_whole_ci_high"]  # 2 cases: the range of the two
    (0.5, 0.7)
    >>> b["n"], b["ssim_whole_mean"], b["ssim_whole_std"], b["ssim_whole_ci_low"]
    (1, 0.9, nan, nan)
    """
    groups: dict[tuple, list[Mapping]] = defaultdict(list)
    for row in rows:
        groups[tuple(row[k] for k in by)].append(row)
    out = []
    for key, members in groups.items():
        group = dict(zip(by, key))
        entry = dict(group)
        entry["n"] = len(members)
        draws = _case_resamples(members, resamples, seed)
        entry["n_cases"] = len({m.get("case", i) for i, m in enumerate(members)})
        for col in NUMERIC:
            vals = _finite_values(members, col, group)
            if vals is None:
                continue
            entry[f"{col}_mean"] = float(vals.mean())
            entry[f"{col}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else math.nan
            low = high = math.nan
            if draws is not None:
                weights, index = draws
                sums = np.bincount(index, weights=vals, minlength=weights.shape[1])
                counts = np.bincount(index, minlength=weights.shape[1])
                means = (weights @ sums) / (weights @ counts)
                low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
            entry[f"{col}_ci_low"], entry[f"{col}_ci_high"] = low, high
        out.append(entry)
    return out


def paired_differences(
    rows: Iterable[Mapping],
    method: str,
    baseline: str,
    columns: Sequence[str],
    by: Sequence[str] = ("modality", "dataset"),
) -> list[dict]:
    """``method`` minus ``baseline`` per case, summarised per group (:func:`summarise`).

    Per case the rows of each method are averaged over their seeds first (a deterministic
    baseline has one), then differenced; the differences are summarised like scores (mean,
    sample std, 95 % bootstrap interval over the cases, ``n`` = cases). A case that only one of
    the two methods has is an error naming it.

    >>> rows = [{"case": c, "method": m, "seed": s, "ssim_whole": v} for c, m, s, v in
    ...         [("a", "dart", 0, 0.9), ("a", "dart", 1, 0.8), ("a", "tv", 0, 0.8), ("b", "dart", 0, 0.7),
    ...          ("b", "tv", 0, 0.6)]]
    >>> d, = paired_differences(rows, "dart", "tv", ["ssim_whole"], by=())
    >>> d["n"], round(d["ssim_whole_mean"], 3), d["method"]
    (2, 0.075, 'dart - tv')
    """
    return summarise(case_differences(rows, method, baseline, columns, by), by=(*by, "method"))


def case_differences(
    rows: Iterable[Mapping],
    method: str,
    baseline: str,
    columns: Sequence[str],
    by: Sequence[str] = ("modality", "dataset"),
) -> list[dict]:
    """The per-case differences that :func:`paired_differences` summarises: one dict per case with the
    ``by`` keys, ``case``, ``method = "<method> - <baseline>"`` and each column's difference of the seed
    means."""
    per: dict[tuple, dict[str, list[Mapping]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        if row["method"] in (method, baseline):
            per[tuple(row[k] for k in by) + (row["case"],)][row["method"]].append(row)
    diffs = []
    for key, methods in per.items():
        missing = [m for m in (method, baseline) if m not in methods]
        if missing:
            raise ValueError(f"paired_differences: case {key[-1]!r} has no rows of {missing}")
        diff = {k: v for k, v in zip(by, key)}
        diff.update(case=key[-1], method=f"{method} - {baseline}")
        for col in columns:
            means = [float(np.mean([_as_float(r[col]) for r in methods[m]])) for m in (method, baseline)]
            diff[col] = means[0] - means[1]
        diffs.append(diff)
    return diffs


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``0.804 ± 0.025``; ``–`` for a NaN mean, ``0.804 ± –`` for a NaN std."""
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f} ± " + (f"{std:.{digits}f}" if np.isfinite(std) else "–")


def mean_std_ci(summary: Mapping, column: str, digits: int = 3) -> str:
    """The cell of ``column`` in a :func:`summarise` entry: ``mean ± std [ci_low, ci_high]``.

    >>> s = {"ssim_whole_mean": 0.9714, "ssim_whole_std": 0.0052,
    ...      "ssim_whole_ci_low": 0.9689, "ssim_whole_ci_high": 0.9737}
    >>> mean_std_ci(s, "ssim_whole")
    '0.971 ± 0.005 [0.969, 0.974]'
    >>> mean_std_ci({"psnr_volume_mean": 30.0, "psnr_volume_std": math.nan, "psnr_volume_ci_low": math.nan,
    ...              "psnr_volume_ci_high": math.nan}, "psnr_volume", digits=2)
    '30.00 ± – [–]'
    """
    _require(summary, column, ("mean", "std", "ci_low", "ci_high"))
    low, high = summary[f"{column}_ci_low"], summary[f"{column}_ci_high"]
    interval = f"[{low:.{digits}f}, {high:.{digits}f}]" if np.isfinite(low) and np.isfinite(high) else "[–]"
    return mean_std(summary[f"{column}_mean"], summary[f"{column}_std"], digits) + " " + interval


def _require(summary: Mapping, column: str, stats: Sequence[str]) -> None:
    """Raise ``ValueError`` naming the group and ``column`` when a summary entry lacks its stats."""
    missing = [f"{column}_{k}" for k in stats if f"{column}_{k}" not in summary]
    if missing:
        group = {k: summary[k] for k in ("modality", "dataset", "method") if k in summary}
        raise ValueError(f"summary: no {missing} for group {group}; do its case rows have the column "
                         f"{column!r}? (case columns: paperlib.tables.SCORE_COLUMNS)")


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


def _strict_json(value):
    """``value`` with every non-finite float (a group's NaN std or interval) as ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {k: _strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict_json(v) for v in value]
    return value


def write_json(path: str | os.PathLike, data: Mapping) -> Path:
    """Write ``data`` as indented, key-sorted, strict JSON atomically: NaN and inf become
    ``null`` (JSON has no NaN); numpy and torch scalars become floats.

    >>> import tempfile, pathlib
    >>> p = write_json(pathlib.Path(tempfile.mkdtemp()) / "s.json", {"std": math.nan, "n": [1, 2.5]})
    >>> json.loads(p.read_text())
    {'n': [1, 2.5], 'std': None}
    """
    text = json.dumps(_strict_json(data), indent=2, sort_keys=True, allow_nan=False,
                      default=lambda v: _strict_json(float(v)))
    return atomic_write_text(path, text + "\n")


def ssim_table_rows(
    summary: Sequence[Mapping],
    reference: Mapping[tuple[str, str], tuple[float, float]],
    labels: Mapping[str, str],
    *,
    inside: str = "head",
) -> tuple[list[str], list[list[str]]]:
    """Rows of an MRI SSIM table (Table 1 / Table 2 layout) from :func:`summarise` output.

    Columns: modality, method, n, whole-image SSIM (``ssim_whole``), SSIM inside the support
    mask (``ssim_head``; ``inside`` names it: the head, the pot), PSNR of the volume
    (``psnr_volume``), each as :func:`mean_std_ci`; mean time per volume; the paper's reported
    SSIM (mean ± std, from ``reference``) in a separate, labelled column. ``reference`` fills
    only that column.
    """
    header = [
        "Modality", "Method", "n", "SSIM whole image (ours)", f"SSIM in {inside} (ours)",
        "PSNR of the volume dB (ours)", "Time / volume s (ours)", "SSIM reported in paper",
    ]
    rows = []
    for s in summary:
        ref = reference.get((s["modality"], s["method"]))
        rows.append([
            s["modality"].upper(),
            labels.get(s["method"], s["method"]),
            str(s["n"]),
            mean_std_ci(s, "ssim_whole"),
            mean_std_ci(s, "ssim_head"),
            mean_std_ci(s, "psnr_volume", digits=2),
            _mean_time(s),
            mean_std(*ref) if ref else "not in paper",
        ])
    return header, rows


def _mean_time(summary: Mapping) -> str:
    _require(summary, "wall_time_s", ("mean",))
    return f"{summary['wall_time_s_mean']:.3g}"


def stem_table_rows(
    summary: Sequence[Mapping],
    reference: Mapping[tuple[str, str], tuple[float, float]],
    labels: Mapping[str, str],
) -> tuple[list[str], list[list[str]]]:
    """Rows of a 4D-STEM SSIM table from :func:`summarise` output of 4D-STEM case rows.

    Columns: dataset, method, n, per-slice SSIM (``ssim_slice_mean``), SSIM of the phase
    projection (``ssim_projected``), the paper's reported SSIM (of the phase projection, so it
    sits beside ours; ``reference`` fills only that column), the per-slice SSIM of the
    depth-blind reference (``ssim_depth_blind``: every slice = projection / D), PSNR per slice
    (``psnr_slice_mean``), PSNR of the projection (``psnr_projected``), each of ours as
    :func:`mean_std_ci`, and the mean time per volume.
    """
    header = [
        "Dataset", "Method", "n", "SSIM per slice (ours)", "SSIM projection (ours)",
        "SSIM projection reported in paper", "Depth-blind reference SSIM per slice (ours)",
        "PSNR per slice dB (ours)", "PSNR projection dB (ours)", "Time / volume s (ours)",
    ]
    rows = []
    for s in summary:
        ref = reference.get((s["modality"], s["method"]))
        rows.append([
            s["dataset"],
            labels.get(s["method"], s["method"]),
            str(s["n"]),
            mean_std_ci(s, "ssim_slice_mean"),
            mean_std_ci(s, "ssim_projected"),
            mean_std(*ref) if ref else "not in paper",
            mean_std_ci(s, "ssim_depth_blind"),
            mean_std_ci(s, "psnr_slice_mean", digits=2),
            mean_std_ci(s, "psnr_projected", digits=2),
            _mean_time(s),
        ])
    return header, rows


def _short(label: str) -> str:
    """A row label without its parenthesis: "TV (ours: ... after Block 2007)" -> "TV"."""
    return label.split(" (")[0]


def _interval(summary: Mapping, column: str) -> tuple[float, float]:
    return summary.get(f"{column}_ci_low", math.nan), summary.get(f"{column}_ci_high", math.nan)


def ordering_notes(
    summary: Sequence[Mapping],
    reference: Mapping[tuple[str, str], tuple[float, float]],
    labels: Mapping[str, str],
    *,
    column: str = "ssim_whole",
    what: str = "SSIM",
) -> list[str]:
    """Where our ranking of two methods differs from the paper's, one sentence per pair (computed).

    Every pair of methods of one modality that both the paper and ``summary`` report is compared
    by ``<column>_mean`` (ours) and the paper's mean; a pair whose order flips is listed with both
    sets of numbers (methods named by their labels up to the first parenthesis), and with a
    remark when our two 95 % intervals overlap (the test cases then do not resolve the flip).
    Pairs tied in the paper are skipped. With no flip, one sentence says that the ordering
    agrees. Use ``column="ssim_projected"`` for 4D-STEM, whose
    paper values are SSIMs of the phase projection.

    >>> s = [{"modality": "mri", "method": "a", "ssim_whole_mean": 0.9},
    ...      {"modality": "mri", "method": "b", "ssim_whole_mean": 0.8}]
    >>> ordering_notes(s, {("mri", "a"): (0.7, 0.1), ("mri", "b"): (0.8, 0.1)}, {})
    ['Ordering differs from the paper (SSIM, MRI): a 0.900 > b 0.800 here; the paper has a 0.700 < b 0.800.']
    >>> s[0].update(ssim_whole_ci_low=0.75, ssim_whole_ci_high=0.95)
    >>> s[1].update(ssim_whole_ci_low=0.7, ssim_whole_ci_high=0.85)
    >>> ordering_notes(s, {("mri", "a"): (0.7, 0.1), ("mri", "b"): (0.8, 0.1)}, {})[0][-59:]
    '95 % intervals ([0.750, 0.950] and [0.700, 0.850]) overlap.'
    >>> ordering_notes(s, {("mri", "a"): (0.95, 0.1), ("mri", "b"): (0.8, 0.1)}, {})
    ['SSIM ordering of the 1 pair(s) of methods the paper also reports (MRI) agrees with the paper.']
    """
    notes: list[str] = []
    for modality in dict.fromkeys(s["modality"] for s in summary):
        entries = {s["method"]: s for s in summary
                   if s["modality"] == modality and (modality, s["method"]) in reference}
        ours = {m: float(s[f"{column}_mean"]) for m, s in entries.items()}
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
                    la, lb = _short(labels.get(hi, hi)), _short(labels.get(lo, lo))
                    note = (f"Ordering differs from the paper ({what}, {modality.upper()}): {la} "
                            f"{ours[hi]:.3f} > {lb} {ours[lo]:.3f} here; the paper has {la} "
                            f"{reference[(modality, hi)][0]:.3f} < {lb} {reference[(modality, lo)][0]:.3f}.")
                    (hl, hh), (ll, lh) = _interval(entries[hi], column), _interval(entries[lo], column)
                    if hl <= lh:  # False when either interval is NaN
                        note += (f" Our 95 % intervals ([{hl:.3f}, {hh:.3f}] and [{ll:.3f}, {lh:.3f}]) "
                                 f"overlap.")
                    notes.append(note)
        if pairs and not flips:
            notes.append(f"{what} ordering of the {pairs} pair(s) of methods the paper also reports "
                         f"({modality.upper()}) agrees with the paper.")
    return notes


def depth_notes(summary: Sequence[Mapping], labels: Mapping[str, str]) -> list[str]:
    """Which 4D-STEM methods resolve depth: mean per-slice SSIM (``ssim_slice_mean``) above the
    depth-blind reference's (``ssim_depth_blind``, averaged over the summary's entries).

    >>> s = [{"method": "a", "ssim_slice_mean_mean": 0.6, "ssim_depth_blind_mean": 0.5},
    ...      {"method": "b", "ssim_slice_mean_mean": 0.4, "ssim_depth_blind_mean": 0.5}]
    >>> depth_notes(s, {"a": "A (ours: after X 2020)"})
    ['Per-slice SSIM above the depth-blind reference (0.500): A 0.600. Not above it: b 0.400.']
    """
    blind = [float(s["ssim_depth_blind_mean"]) for s in summary]
    if not blind:
        return []
    ref = float(np.mean(blind))
    above = [s for s in summary if float(s["ssim_slice_mean_mean"]) > ref]
    below = [s for s in summary if float(s["ssim_slice_mean_mean"]) <= ref]

    def fmt(group):
        return ", ".join(f"{_short(labels.get(s['method'], s['method']))} {float(s['ssim_slice_mean_mean']):.3f}"
                         for s in group)

    return [f"Per-slice SSIM above the depth-blind reference ({ref:.3f}): {fmt(above) or 'none'}."
            + (f" Not above it: {fmt(below)}." if below else "")]


def depth_margin_notes(cases: Sequence[Mapping], labels: Mapping[str, str],
                       methods: Sequence[str] = ("dart", "drift"),
                       physics: str = "three_pie_thickness") -> list[str]:
    """Does the prior add depth beyond physics, paired per case: per-slice SSIM (``ssim_slice_mean``) of
    each of ``methods`` minus the same crystal's depth-blind reference (``ssim_depth_blind``) and minus
    ``physics`` (3PIE + thickness search), mean [95 % bootstrap interval over the cases] and the cases
    above zero (:func:`paired_differences`); the means of :func:`depth_notes` alone hide how many
    crystals carry them. Methods or a baseline the rows do not have are left out.

    >>> rows = [{"modality": "stem", "dataset": "c", "case": c, "method": m, "seed": 0, "ssim_slice_mean": v,
    ...          "ssim_depth_blind": 0.5} for c, m, v in [("a", "dart", 0.7), ("b", "dart", 0.4),
    ...                                                    ("a", "three_pie_thickness", 0.5),
    ...                                                    ("b", "three_pie_thickness", 0.45)]]
    >>> print(depth_margin_notes(rows, {"dart": "DART"})[0])  # doctest: +NORMALIZE_WHITESPACE
    Paired per crystal, per-slice SSIM minus the same crystal's (mean [95 % bootstrap interval over the
    crystals], crystals above): DART - depth-blind reference +0.050 [-0.100, +0.200], 1 of 2; DART - 3PIE
    + thickness search +0.075 [-0.050, +0.200], 1 of 2. An interval that covers 0 does not show the
    difference on these crystals.
    """
    cases = [dict(r) for r in cases]
    present = {r["method"] for r in cases}
    blind = {}
    for r in cases:
        blind.setdefault((r["modality"], r["dataset"], r["case"]), r.get("ssim_depth_blind"))
    reference = [{"modality": m, "dataset": d, "case": c, "method": "depth-blind", "seed": 0,
                  "ssim_slice_mean": v} for (m, d, c), v in blind.items() if v not in (None, "")]
    parts = []
    for method in methods:
        if method not in present:
            continue
        for baseline, name, rows in (("depth-blind", "depth-blind reference", cases + reference),
                                     (physics, _short(labels.get(physics, "3PIE + thickness search")), cases)):
            if baseline != "depth-blind" and baseline not in present:
                continue
            diffs = case_differences(rows, method, baseline, ["ssim_slice_mean"])
            above = sum(d["ssim_slice_mean"] > 0 for d in diffs)
            for d in summarise(diffs, by=("modality", "dataset", "method")):
                parts.append(f"{_short(labels.get(method, method))} - {name} {d['ssim_slice_mean_mean']:+.3f} "
                             f"[{d['ssim_slice_mean_ci_low']:+.3f}, {d['ssim_slice_mean_ci_high']:+.3f}], "
                             f"{above} of {d['n_cases']}")
    if not parts:
        return []
    return ["Paired per crystal, per-slice SSIM minus the same crystal's (mean [95 % bootstrap interval over the "
            "crystals], crystals above): " + "; ".join(parts) + ". An interval that covers 0 does not show the "
            "difference on these crystals."]


def write_result_table(
    out: str | os.PathLike,
    name: str,
    modality: str,
    reference: Mapping[tuple[str, str], tuple[float, float]],
    labels: Mapping[str, str],
    *,
    title: str,
    notes: Sequence[str],
    provenance: Mapping,
    inside: str = "head",
) -> list[dict]:
    """A notebook's table, derived from its per-case file ``out/<name>_cases.csv``.

    Summarises the file (:func:`summarise`), builds the MRI (:func:`ssim_table_rows`) or 4D-STEM
    (:func:`stem_table_rows`) rows, appends the computed notes (4D-STEM: :func:`depth_notes` and :func:`depth_margin_notes`;
    both: :func:`ordering_notes` on whole-image SSIM for MRI, projection SSIM for 4D-STEM) to
    ``notes``, and writes ``<name>.md``, ``<name>.csv`` and ``<name>.json`` (provenance and the
    summary) atomically. Returns the summary.
    """
    out = Path(out)
    cases = read_cases(out / f"{name}_cases.csv")
    summary = summarise(cases)
    if modality == "mri":
        header, rows = ssim_table_rows(summary, reference, labels, inside=inside)
        computed = ordering_notes(summary, reference, labels, column="ssim_whole")
    elif modality == "stem":
        header, rows = stem_table_rows(summary, reference, labels)
        computed = depth_notes(summary, labels) + depth_margin_notes(cases, labels) + ordering_notes(
            summary, reference, labels, column="ssim_projected", what="projection SSIM")
    else:
        raise ValueError(f"modality: expected 'mri' or 'stem', got {modality!r}")
    write_table(out / name, header, rows, title=title, notes=[*notes, *computed], provenance=provenance)
    write_json(out / f"{name}.json", {"provenance": provenance, "summary": summary})
    return summary
