"""Execute a jupytext (py:percent) notebook with papermill.

Used by the Makefile (``make figures``) and by the tests, so both run notebooks the same way::

    python -m paperlib._run_notebook notebooks/tab1_ssim.py notebooks/_build/tab1_ssim.ipynb \
        profile=ci out_dir=/tmp/figs

Papermill cannot read ``.py`` notebooks, so the source is converted with jupytext in memory
and handed to papermill as a NotebookNode. The kernel name is pinned (``python3``, the kernel
of the running interpreter), kernel start-up has a timeout, and every cell has an execution
timeout: a kernel that dies or hangs fails the run with an error naming the notebook.

The executed copy is written atomically: papermill saves the notebook after every cell into a
temporary file beside ``out`` (:func:`paperlib.io.atomic_path`, a hidden name with ``.partial``),
which replaces ``out`` only when the run ends. A run killed half-way (``kill -9`` of ``make
figures``) leaves no ``out``, so ``make`` runs the notebook again instead of taking a
half-executed copy for an up-to-date target; a SIGTERM removes the temporary file as well, and
the next run of the notebook removes one that a SIGKILL left.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from .io import PARTIAL, atomic_path

KERNEL_NAME = "python3"
START_TIMEOUT_S = 120
CELL_TIMEOUT_S = 3600


class NotebookExecutionError(RuntimeError):
    """A notebook failed: a cell raised, the kernel died or did not start, or a cell timed out."""


def run(
    src: str | Path,
    out: str | Path,
    parameters: dict | None = None,
    *,
    cell_timeout_s: int = CELL_TIMEOUT_S,
    start_timeout_s: int = START_TIMEOUT_S,
) -> Path:
    """Execute notebook ``src`` (py:percent) with ``parameters`` and write the executed copy to ``out``.

    The working directory is the notebook's folder, as in Jupyter. ``out`` appears only when the
    run ends (atomically, see the module docstring). On failure the partially executed notebook
    is still written to ``out`` for inspection, and a :class:`NotebookExecutionError` naming
    ``src`` is raised.
    """
    import jupytext
    import papermill as pm

    src, out = Path(src), Path(out)
    if not src.is_file():
        raise FileNotFoundError(f"{src}: no such notebook")
    nb = jupytext.read(src)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3", "language": "python"}
    for stale in out.parent.glob(f".{out.name.split('.')[0]}.*{PARTIAL}.ipynb"):
        stale.unlink(missing_ok=True)  # the executed copy of a killed run of this notebook
    failure: Exception | None = None
    with atomic_path(out) as tmp:
        try:
            pm.execute_notebook(
                nb,
                str(tmp),
                parameters=parameters or {},
                kernel_name=KERNEL_NAME,
                cwd=str(src.parent.resolve()),
                progress_bar=False,
                log_output=False,
                start_timeout=start_timeout_s,
                execution_timeout=cell_timeout_s,
            )
        except Exception as exc:  # cell error, dead kernel, start or cell timeout
            failure = exc
            if tmp.stat().st_size == 0:  # nothing was written: leave no empty ``out``
                raise NotebookExecutionError(f"notebook {src.name} failed ({type(exc).__name__}): {exc}") from exc
    if failure is not None:
        raise NotebookExecutionError(
            f"notebook {src.name} failed ({type(failure).__name__}): {failure}\n"
            f"partially executed copy: {out}"
        ) from failure
    return out


def _exit_on_sigterm(signum, frame):  # noqa: ARG001 (signal handler signature)
    """SIGTERM (``kill``, a CI runner's cancel) unwinds like Ctrl-C: temporary files are removed."""
    raise SystemExit(128 + signum)


def _parse_value(text: str):
    import yaml

    return yaml.safe_load(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="notebook source (.py, py:percent)")
    parser.add_argument("out", help="executed notebook (.ipynb)")
    parser.add_argument("params", nargs="*", help="NAME=VALUE parameters (values parsed as YAML)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    params = {}
    for item in args.params:
        if "=" not in item:
            parser.error(f"parameter {item!r}: expected NAME=VALUE")
        key, value = item.split("=", 1)
        params[key] = _parse_value(value)
    try:
        run(args.src, args.out, params)
    except NotebookExecutionError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
