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
