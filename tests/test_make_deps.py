"""make figures re-executes only the notebooks that import a changed library file (paperlib._deps)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paperlib._deps import make_rules, notebook_dependencies
from paperlib.paths import repo_root

ROOT = repo_root()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.py"))


def test_dependencies_follow_imports_transitively_and_lazily():
    tab1 = notebook_dependencies(ROOT / "notebooks" / "tab1_ssim.py")
    # tab1 imports paperlib.experiments.runner, which imports the MRI experiments -> DART -> the prior
    for f in ("paperlib/experiments/runner.py", "paperlib/recon/dart.py", "paperlib/diffusion/unet3d.py",
              "paperlib/styles/paper.mplstyle"):
        assert f in tab1, f
    assert "paperlib/_lab.py" not in tab1 and "paperlib/cli.py" not in tab1
    real = notebook_dependencies(ROOT / "notebooks" / "tab_real_mri.py")
    assert "paperlib/experiments/real_mri.py" in real
    with pytest.raises(FileNotFoundError, match="missing.py"):
        notebook_dependencies(ROOT / "notebooks" / "missing.py")


def _scan_stamp() -> str:
    """The name of the Makefile's SCAN_STAMP in the venv: ``.scans-`` and its SCAN_DOWNLOADS joined."""
    (line,) = [line for line in (ROOT / "Makefile").read_text().splitlines() if line.startswith("SCAN_DOWNLOADS =")]
    return ".scans-" + "+".join(r.replace("==", "-") for r in line.split("=", 1)[1].split())


def _what_if(tmp_path: Path, changed: str) -> set[str]:
    """The notebooks ``make -n figures`` would execute if ``changed`` were modified, with every
    notebook built after every source (a fake, already-installed venv; a temporary build folder)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True, exist_ok=True)
    if not (venv / "bin" / "python").exists():
        (venv / "bin" / "python").symlink_to(sys.executable)
    build = tmp_path / "build"
    build.mkdir(exist_ok=True)
    (build / "deps.mk").write_text(make_rules(NOTEBOOKS))
    for nb in NOTEBOOKS:
        (build / f"{nb.stem}.ipynb").write_text("{}")
    # the stamp of the scan archives (Makefile SCAN_STAMP), then .installed: a set-up checkout
    (venv / _scan_stamp()).write_text("")
    (venv / ".installed").write_text("")
    env = {**os.environ, "MAKEFLAGS": ""}
    out = subprocess.run(["make", "-n", "-W", changed, "figures", f"BUILD={build}", f"VENV={venv}",
                          f"FIGURES={tmp_path / 'figures'}", "PROFILE=default"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return {nb.stem for nb in NOTEBOOKS if f"_run_notebook {nb.relative_to(ROOT)}" in out.stdout}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_reruns_only_the_dependents(tmp_path):
    assert _what_if(tmp_path, "paperlib/_lab.py") == set()
    assert _what_if(tmp_path, "paperlib/cli.py") == {nb.stem for nb in NOTEBOOKS
                                                      if "paperlib/cli.py" in notebook_dependencies(nb)}
    assert _what_if(tmp_path, "notebooks/tab2_ood.py") == {"tab2_ood"}
    everything = _what_if(tmp_path, "notebooks/params/default.yaml")
    assert everything == {nb.stem for nb in NOTEBOOKS}
    assert "tab1_ssim" in _what_if(tmp_path, "paperlib/recon/dart.py")
