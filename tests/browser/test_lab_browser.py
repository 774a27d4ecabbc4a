"""The notebooks as a person opens them: `make lab` in a real (headless) Chromium.

Run by ``make test-browser`` (see ``conftest.py``). One JupyterLab, started through ``make lab
PROFILE=ci`` on a free local port with a random token, serves both tests:

- every ``notebooks/*.py`` opens as a notebook (one by URL ``/lab/tree/NAME.py``, the others by
  double-click in the file browser), is saved, and closed with its kernel: the paired ``.ipynb``
  is written and no tracked byte changes;
- ``fig3_mri_examples.py``, opened by double-click and run with Run > Run All Cells, shows its
  figure inline, uses the ci profile and the output folder of ``make lab`` (``LAB_FIGURES``), and
  its paired ``.ipynb`` keeps the image output.

After each test ``git status --porcelain`` and the sources' bytes are what they were before.
Everything the test starts (the server, its kernels, the browser) is stopped, also on failure;
a paired ``.ipynb`` that existed before is put back. On a failure a screenshot and the server's
log go to ``tests/browser/failures/`` (git-ignored).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "notebooks"
FAILURES = Path(__file__).resolve().parent / "failures"
RUN_NOTEBOOK = "fig3_mri_examples"  # the ci profile's quickest notebook with a figure
BY_URL = "tab1_ssim"  # opened by URL; the others by double-click
SERVER_START_S = 180
RUN_S = 900


def _chromium() -> str:
    path = os.environ.get("PAPERLIB_CHROMIUM", "/usr/bin/chromium-headless-shell")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(f"no Chromium at PAPERLIB_CHROMIUM={path}: run the tests with `make test-browser`, which "
                    "installs Debian's chromium-headless-shell, or point CHROMIUM at a Chromium binary")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _repo_state() -> tuple[str, dict[str, str]]:
    """``git status --porcelain`` and the sha256 of every notebook source."""
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout
    sources = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(NOTEBOOKS.glob("*.py"))}
    return status, sources


class Lab:
    """``make lab`` in its own process group, with private Jupyter runtime/settings folders."""

    def __init__(self, root: Path):
        self.port, self.token = _free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.figures = root / "figures"
        self.log_path = root / "lab.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}  # not the outer make's
        for name in ("runtime", "settings", "workspaces"):
            (root / name).mkdir()
        env.update(JUPYTER_RUNTIME_DIR=str(root / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(root / "settings"),
                   JUPYTERLAB_WORKSPACES_DIR=str(root / "workspaces"))
        cmd = ["make", "--no-print-directory", "lab", "PROFILE=ci", f"LAB_PORT={self.port}",
               f"LAB_TOKEN={self.token}", "LAB_BROWSER=no", f"LAB_FIGURES={self.figures}"]
        self.log = open(self.log_path, "w")
        self.process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)

    def api(self, path: str, method: str = "GET"):
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def wait_ready(self) -> None:
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"`make lab` exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                self.api("status")
                return
            except OSError:
                time.sleep(1)
        pytest.fail(f"JupyterLab did not answer on port {self.port} within {SERVER_START_S} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        """Shut the kernels and the server down through the API; kill what is left of them."""
        import psutil

        try:
            spawned = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            spawned = []
        try:
            for session in self.api("sessions"):
                self.api(f"sessions/{session['id']}", method="DELETE")
            self.api("shutdown", method="POST")
            self.process.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for child in spawned:  # kernels run in sessions of their own
            if child.is_running():
                child.kill()
        psutil.wait_procs(spawned, timeout=10)
        self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    chromium = _chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"Playwright for Python is missing ({exc}): run `make test-browser`, which installs it")
    root = tmp_path_factory.mktemp("lab")
    checkpoints = NOTEBOOKS / ".ipynb_checkpoints"  # Lab's checkpoints of saved files (git-ignored)
    had_checkpoints = set(checkpoints.iterdir()) if checkpoints.is_dir() else None
    (root / "paired").mkdir()  # a person's own paired notebooks wait here, and are put back
    paired = {p: root / "paired" / p.name for p in NOTEBOOKS.glob("*.ipynb")}
    for original, kept in paired.items():
        shutil.move(original, kept)
    server = Lab(root)
    try:
        server.wait_ready()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(60_000)
                yield server, page
            finally:
                browser.close()
    finally:
        server.stop()
        for created in NOTEBOOKS.glob("*.ipynb"):
            created.unlink()
        for original, kept in paired.items():
            shutil.move(kept, original)
        if had_checkpoints is None:
            shutil.rmtree(checkpoints, ignore_errors=True)
        elif checkpoints.is_dir():
            for created in set(checkpoints.iterdir()) - had_checkpoints:
                created.unlink()


@pytest.fixture
def page(lab, request):
    """The browser page; on a failure its screenshot and the server's log go to ``FAILURES``."""
    server, page = lab
    before = _repo_state()
    yield page
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    if failed:
        FAILURES.mkdir(exist_ok=True)
        shot = FAILURES / f"{request.node.name}.png"
        page.screenshot(path=str(shot), full_page=True)
        shutil.copy(server.log_path, FAILURES / f"{request.node.name}.lab.log")
        print(f"screenshot of the failure: {shot}")
    else:
        assert _repo_state() == before, "JupyterLab changed tracked files (git status or a source's bytes)"



def _open_by_double_click(server: Lab, page, name: str):
    page.goto(f"{server.url}/lab?token={server.token}")
    page.locator(".jp-DirListing-item", has_text=f"{name}.py").dblclick()
    return _notebook_panel(page, name)


def _open_by_url(server: Lab, page, name: str):
    page.goto(f"{server.url}/lab/tree/{name}.py?token={server.token}")
    return _notebook_panel(page, name)


def _notebook_panel(page, name: str):
    """The open document ``name``.py: a notebook (not the text editor) whose kernel is idle."""
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=f"{name}.py")
    tab.wait_for()
    page.locator(".jp-NotebookPanel:visible, .jp-FileEditor:visible").first.wait_for()
    assert page.locator(".jp-FileEditor:visible").count() == 0, f"{name}.py opened in the text editor"
    panel = page.locator(".jp-NotebookPanel:visible")
    panel.locator(".jp-CodeCell").nth(1).wait_for()  # cells: the parameters cell and the code after it
    page.locator("#jp-main-statusbar", has_text="Python 3 (ipykernel) | Idle").wait_for()
    return panel


def _menu(page, menu: str, command: str) -> None:
    page.locator(".lm-MenuBar-item", has_text=menu).first.click()
    page.locator(f'.lm-Menu-item[data-command="{command}"]').click()


def _save_and_close(page, panel, name: str) -> dict:
    """Save (which writes the paired .ipynb), close the notebook and shut its kernel down; return
    the paired notebook as JSON."""
    paired = NOTEBOOKS / f"{name}.ipynb"
    written = paired.stat().st_mtime_ns if paired.exists() else None
    panel.locator('jp-button[data-command="docmanager:save"]').click()
    deadline = time.monotonic() + 60
    while not (paired.exists() and paired.stat().st_mtime_ns != written):
        assert time.monotonic() < deadline, f"saving {name}.py in Lab wrote no paired {paired.name}"
        time.sleep(0.5)
    _menu(page, "File", "filemenu:close-and-cleanup")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=f"{name}.py").wait_for(state="detached")
    return json.loads(paired.read_text())


def test_every_notebook_opens_as_notebook_and_saving_changes_no_tracked_byte(lab, page):
    server, _ = lab
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    assert BY_URL in names and RUN_NOTEBOOK in names
    for name in names:
        opened = _open_by_url if name == BY_URL else _open_by_double_click
        panel = opened(server, page, name)
        paired = _save_and_close(page, panel, name)
        assert paired["metadata"]["jupytext"]["formats"] == "ipynb,py:percent", name


def _run_all(page, panel) -> None:
    """Run > Run All Cells; wait until every code cell has its execution count; fail on an error."""
    _menu(page, "Run", "runmenu:run-all")
    deadline = time.monotonic() + RUN_S
    while True:
        errors = panel.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        for text in errors.all_inner_texts():
            assert "Traceback" not in text, f"a cell failed:\n{text[-3000:]}"
        prompts = [p.strip() for p in panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()]
        if prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return
        assert time.monotonic() < deadline, f"the notebook did not finish within {RUN_S} s (prompts {prompts})"
        time.sleep(2)


def test_double_click_and_run_all_shows_the_figure_inline(lab, page):
    server, _ = lab
    panel = _open_by_double_click(server, page, RUN_NOTEBOOK)
    _run_all(page, panel)
    figure = panel.locator('.jp-OutputArea-output[data-mime-type="image/png"] img')
    assert figure.count() == 1, "no inline figure: the kernel did not get matplotlib's inline backend"
    box = figure.bounding_box()
    assert box and box["width"] > 100 and box["height"] > 50, f"the figure is not shown ({box})"
    paired = _save_and_close(page, panel, RUN_NOTEBOOK)
    kept = [o for c in paired["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(kept) == 1, "the paired .ipynb did not keep the figure"
    # the ci profile (PAPERLIB_PROFILE from `make lab PROFILE=ci`), outputs in LAB_FIGURES, not figures/
    provenance = json.loads((server.figures / f"{RUN_NOTEBOOK}.json").read_text())["provenance"]
    assert provenance["profile"] == "ci", provenance
    assert (server.figures / f"{RUN_NOTEBOOK}.png").stat().st_size > 1000
