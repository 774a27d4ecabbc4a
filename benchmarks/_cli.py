"""The command-line options the benchmark scripts share (imported by its siblings in ``benchmarks/``).

Every script is run as ``python benchmarks/<script>.py [options]`` from the repository root; the
options that recur in all of them are made here once: ``--profile`` (the notebook profile that
sizes the run), ``--threads`` (torch threads) and ``--out`` (the result file, by default
``benchmarks/results/<script>.csv``; the Markdown summary goes beside it with the suffix ``.md``).
Each script adds its own options to the parser this returns and reads them with :func:`parse_args`,
which also applies ``--threads``.
"""
from __future__ import annotations

import argparse
from pathlib import Path

#: Where the scripts write their results by default.
RESULTS = Path(__file__).resolve().parent / "results"


def bench_parser(doc: str, script: str, *, suffix: str = ".csv", threads: int = 2) -> argparse.ArgumentParser:
    """A parser with ``--profile``, ``--threads`` and ``--out`` for the benchmark script ``script``.

    Parameters
    ----------
    doc : the script's module docstring; its first line is the ``--help`` description.
    script : the script's ``__file__``; the default ``--out`` is ``RESULTS / (stem + suffix)``.
    suffix : the result file's suffix (``".csv"``; ``".txt"`` for the text reports).
    threads : default of ``--threads``.
    """
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    p.add_argument("--profile", default="default", help="notebook profile that sizes the run (default: default)")
    p.add_argument("--threads", type=int, default=threads, help=f"torch threads (default: {threads})")
    name = Path(script).stem + suffix
    p.add_argument("--out", type=Path, default=RESULTS / name, help=f"result file (default: benchmarks/results/{name})")
    return p


def parse_args(p: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """``p``'s options from ``argv``, with torch's thread count set to ``--threads`` (every script's
    first step; ``p`` must have ``--threads``, as :func:`bench_parser`'s has)."""
    import torch

    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    return args


def write_summary(out: Path, text: str) -> Path:
    """Write ``text``, a script's Markdown summary, beside its result file ``out`` (suffix ``.md``,
    atomically) and print it; returns the path written."""
    from paperlib.io import atomic_write_text

    path = Path(out).with_suffix(".md")
    atomic_write_text(path, text)
    print(text)
    return path


#: The real-scan prior of the real-scan benchmarks whose CSVs predate the ``prior_checkpoint`` column
#: (every run before 2026-12-04 that used the profile's prior: its reports name it in their header).
PRIOR_BEFORE_RECORDED = "checkpoints/mri_general_lownoise"


def rows_prior(rows: list[dict]) -> str:
    """The real-scan prior a benchmark's rows were made with: their ``prior_checkpoint`` column, or
    :data:`PRIOR_BEFORE_RECORDED` for a CSV from before that column."""
    return (rows[0].get("prior_checkpoint") if rows else None) or PRIOR_BEFORE_RECORDED


def table_file(prior: str, name: str = "tab_real_mri_cases.csv") -> Path:
    """The real-scan table's file ``name`` as made with ``prior``: ``figures/`` for the default
    profile's prior, else the copy frozen when the profile's prior changed
    (``results/tab_real_mri_<prior folder>/``); a prior with neither is an error."""
    from paperlib.config import load_profile

    if prior == load_profile("default").real_mri.checkpoint:
        return RESULTS.parents[1] / "figures" / name
    frozen = RESULTS / f"tab_real_mri_{Path(prior).name}" / name
    if not frozen.is_file():
        raise FileNotFoundError(f"prior {prior}: no real-scan table made with it ({frozen} is missing)")
    return frozen
