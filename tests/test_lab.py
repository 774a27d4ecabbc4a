"""The notebooks as JupyterLab opens them, without a browser (``make test-browser`` has one):
headers as jupytext writes them, the parameters cell (environment for Lab, papermill wins), the
default-viewer setting, and ``make lab``'s options."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jupytext
import pytest
from jupytext.config import load_jupytext_config

from paperlib import _lab
from paperlib._run_notebook import run
from paperlib.io import InputValidationError
from paperlib.paths import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("*.py"))
LAB_KERNEL = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}


def _parameters_cell(nb) -> int:
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged parameters, found {len(tagged)}"
    return tagged[0]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_saving_in_lab_changes_no_byte(path):
    """What jupytext writes when Lab saves the notebook (its kernel, its language_info, the
    folder's jupytext.toml) is the tracked file, byte for byte; the pairing writes an .ipynb."""
    text = path.read_text(encoding="utf-8")
    nb = jupytext.read(path)
    assert nb.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    nb.metadata["kernelspec"] = dict(LAB_KERNEL)
    nb.metadata["language_info"] = {"name": "python", "version": sys.version.split()[0]}
    assert jupytext.writes(nb, fmt="py:percent", config=load_jupytext_config(str(path))) == text


def test_parameters_cells_are_the_same():
    """Every notebook's parameters cell is the first code cell and reads the environment."""
    sources = set()
    for path in NOTEBOOKS:
        nb = jupytext.read(path)
        index = _parameters_cell(nb)
        assert index == min(i for i, c in enumerate(nb.cells) if c.cell_type == "code"), path.name
        sources.add(nb.cells[index].source)
    assert len(sources) == 1, "the notebooks' parameters cells differ"
    assert 'os.environ.get("PAPERLIB_PROFILE", "default")' in sources.pop()


def _probe(tmp_path: Path, src: Path) -> Path:
    """``src``'s cells up to its parameters cell, then a cell that writes ``profile`` and
    ``out_dir`` to ``seen.json``; as a py:percent file in ``tmp_path``."""
    nb = jupytext.read(src)
    nb.cells = nb.cells[: _parameters_cell(nb) + 1]
    nb.cells.append(jupytext.reads(
        f"import json\nopen({str(tmp_path / 'seen.json')!r}, 'w').write(json.dumps([profile, out_dir]))\n",
        fmt="py:percent").cells[0])
    probe = tmp_path / "probe.py"
    jupytext.write(nb, probe, fmt="py:percent")
    return probe


@pytest.mark.timeout(120)
def test_profile_from_environment_and_papermill_wins(tmp_path, monkeypatch):
    """The kernel inherits the environment (``make lab`` sets it): without injected parameters
    the environment's profile and folder are used, without the environment the defaults, and
    papermill's parameters override both."""
    probe = _probe(tmp_path, NOTEBOOKS[0])
    seen = tmp_path / "seen.json"
    monkeypatch.delenv("PAPERLIB_PROFILE", raising=False)
    monkeypatch.delenv("PAPERLIB_OUT_DIR", raising=False)
    run(probe, tmp_path / "plain.ipynb")
    assert json.loads(seen.read_text()) == ["default", "../figures"]
    monkeypatch.setenv("PAPERLIB_PROFILE", "ci")
    monkeypatch.setenv("PAPERLIB_OUT_DIR", "/tmp/lab-figures")
    run(probe, tmp_path / "env.ipynb")
    assert json.loads(seen.read_text()) == ["ci", "/tmp/lab-figures"]
    run(probe, tmp_path / "injected.ipynb", {"profile": "paper", "out_dir": "/tmp/injected"})
    assert json.loads(seen.read_text()) == ["paper", "/tmp/injected"]


def test_install_settings_names_the_jupytext_viewer(tmp_path):
    path = _lab.install_settings(tmp_path)
    assert path == tmp_path / "share/jupyter/lab/settings/overrides.d/paperlib.json"
    viewers = json.loads(path.read_text())["@jupyterlab/docmanager-extension:plugin"]["defaultViewers"]
    assert viewers == {"python": "Jupytext Notebook"}
    # the viewer is the one jupytext's JupyterLab extension (in the jupytext wheel) registers
    static = Path(sys.prefix, "share/jupyter/labextensions/jupyterlab-jupytext/static")
    scripts = [p.read_text(errors="replace") for p in static.glob("*.js")]
    assert scripts, f"no jupytext JupyterLab extension under {static}"
    assert any('"Jupytext Notebook"' in s or "'Jupytext Notebook'" in s for s in scripts)
    with pytest.raises(InputValidationError, match="prefix"):
        _lab.install_settings(tmp_path / "missing")


def _make_lab(*args: str, dry_run: bool = False) -> subprocess.CompletedProcess:
    """``make lab ARGS`` in the repo without (re)installing the lab extra (``-o``)."""
    cmd = ["make", "--no-print-directory", "-o", ".venv/.lab-installed", "-o", ".venv/.installed", "lab", *args]
    if dry_run:
        cmd.insert(1, "-n")
    env = {k: v for k, v in os.environ.items()  # neither the outer make's nor a person's settings
           if not k.startswith(("MAKE", "LAB_")) and k != "PROFILE"}
    return subprocess.run(cmd, cwd=repo_root(), capture_output=True, text=True, env=env, timeout=60)


def test_make_lab_options():
    done = _make_lab("PROFILE=ci", "LAB_PORT=9123", "LAB_TOKEN=t0ken", "LAB_BROWSER=no",
                     "LAB_FIGURES=/tmp/lab-out", dry_run=True)
    assert done.returncode == 0, done.stderr
    command = " ".join(done.stdout.replace("\\\n", " ").split())
    for part in ("env -u MPLBACKEND", "PAPERLIB_PROFILE=ci", "PAPERLIB_OUT_DIR=/tmp/lab-out",
                 "JUPYTER_TOKEN='t0ken'", "-m jupyter lab", "--ServerApp.port=9123",
                 "--ServerApp.port_retries=0", "--no-browser"):
        assert part in command, part
    default = _make_lab(dry_run=True)
    assert "--no-browser" not in default.stdout and "JUPYTER_TOKEN" not in default.stdout
    assert "PAPERLIB_PROFILE=default" in default.stdout and "--ServerApp.port=8888" in default.stdout


@pytest.mark.parametrize("arg, message", [("LAB_PORT=80a", "LAB_PORT must be a port number"),
                                          ("LAB_BROWSER=maybe", "LAB_BROWSER must be yes or no"),
                                          ("PROFILE=nope", "expected one of ci default paper")])
def test_make_lab_rejects_bad_options(arg, message):
    done = _make_lab(arg)
    assert done.returncode == 2 and message in done.stderr, (done.returncode, done.stderr)
