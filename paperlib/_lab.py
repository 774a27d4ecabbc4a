"""JupyterLab settings that ``make lab`` installs into the project's virtual environment.

JupyterLab opens a ``.py`` file in its text editor unless a setting names another default
viewer. The jupytext extension (shipped in the jupytext wheel) registers the ``Jupytext
Notebook`` viewer; :data:`OVERRIDES` makes it the default for Python files, so the notebooks'
``py:percent`` sources open as notebooks on double-click and by URL (``/lab/tree/NAME.py``).

The settings go to ``<prefix>/share/jupyter/lab/settings/overrides.d/paperlib.json``, a file of
its own that JupyterLab merges with the other ``overrides.d`` files and, last, a user's
``overrides.json`` (``jupyterlab_server.settings_utils._get_overrides``), so nothing a user set
there is touched, and a setting changed in Lab's Settings Editor still wins::

    python -m paperlib._lab install-settings            # into sys.prefix (the running venv)
    python -m paperlib._lab install-settings --prefix P
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .io import InputValidationError, atomic_path

#: JupyterLab setting overrides, ``{plugin id: {setting: value}}``.
OVERRIDES: dict[str, dict] = {
    "@jupyterlab/docmanager-extension:plugin": {
        "defaultViewers": {"python": "Jupytext Notebook"},
    },
}
SETTINGS_FILE = Path("share", "jupyter", "lab", "settings", "overrides.d", "paperlib.json")


def settings_path(prefix: str | Path | None = None) -> Path:
    """Where :func:`install_settings` writes, for the environment at ``prefix`` (default ``sys.prefix``)."""
    return Path(sys.prefix if prefix is None else prefix) / SETTINGS_FILE


def install_settings(prefix: str | Path | None = None) -> Path:
    """Write :data:`OVERRIDES` as JSON to :func:`settings_path` (atomically); return the path.

    Parameters
    ----------
    prefix : str or Path, optional
        Root of the Python environment that runs JupyterLab (default ``sys.prefix``). It must
        exist; the folders below it are created.

    Raises
    ------
    paperlib.io.InputValidationError
        ``prefix`` is not an existing folder.
    """
    root = Path(sys.prefix if prefix is None else prefix)
    if not root.is_dir():
        raise InputValidationError(f"prefix: expected the folder of a Python environment, got {str(root)!r} "
                                   "(no such folder)")
    path = settings_path(root)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(OVERRIDES, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paperlib._lab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    install = sub.add_parser("install-settings", help="write the default-viewer setting for .py notebooks")
    install.add_argument("--prefix", default=None, help="Python environment root (default: the running one)")
    args = parser.parse_args(argv)
    try:
        path = install_settings(args.prefix)
    except InputValidationError as exc:
        parser.error(str(exc))
    print(f"JupyterLab settings written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
