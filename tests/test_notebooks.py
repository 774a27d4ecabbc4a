"""Every notebook executed with the ci profile into a temporary folder (the repo stays clean),
plus the runner's failure modes: a cell error, a dead kernel and a hung cell each fail with the
notebook's name instead of hanging."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from paperlib import tables
from paperlib._run_notebook import NotebookExecutionError, run
from paperlib.paths import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("*.py"))


def test_notebooks_exist():
    names = {p.stem for p in NOTEBOOKS}
    assert {"tab1_ssim", "tab2_ood", "fig3_mri_examples", "fig_prior_samples", "fig4_stem_examples"} <= names


@pytest.fixture(scope="module")
def ci_outputs(tmp_path_factory):
    """Run every notebook once on the ci profile; return the output folder."""
    out = tmp_path_factory.mktemp("figures")
    for nb in NOTEBOOKS:
        run(nb, out / "_build" / f"{nb.stem}.ipynb", {"profile": "ci", "out_dir": str(out)},
            cell_timeout_s=600)
    return out


@pytest.mark.notebook
def test_tab1_outputs(ci_outputs):
    rows = tables.read_cases(ci_outputs / "tab1_ssim_cases.csv")
    methods = {r["method"] for r in rows}
    assert {"dart", "drift", "projection", "zero_filled", "cs_mri", "tv"} <= methods
    for r in rows:
        assert 0.0 < r["ssim"] <= 1.0 and r["wall_time_s"] > 0 and r["peak_rss_bytes"] > 0
    summary = {s["method"]: s for s in tables.summarise(rows)}
    # the regularised reconstructions must improve on the zero-filled image
    assert summary["tv"]["ssim_mean"] > summary["zero_filled"]["ssim_mean"]
    assert summary["cs_mri"]["ssim_mean"] > summary["zero_filled"]["ssim_mean"]
    md = (ci_outputs / "tab1_ssim.md").read_text()
    assert "SSIM reported in paper" in md and "0.803 ± 0.024" in md
    prov = json.loads((ci_outputs / "tab1_ssim.json").read_text())["provenance"]
    assert prov["profile"] == "ci" and prov["git_commit"]


@pytest.mark.notebook
def test_fig3_outputs(ci_outputs):
    for ext in ("png", "pdf"):
        assert (ci_outputs / f"fig3_mri_examples.{ext}").stat().st_size > 1000
    assert (ci_outputs / "fig3_mri_examples_cases.csv").is_file()


@pytest.mark.notebook
def test_tab1_stem_outputs(ci_outputs):
    rows = tables.read_cases(ci_outputs / "tab1_ssim_stem_cases.csv")
    assert {r["method"] for r in rows} == {"dart", "drift", "three_pie", "three_pie_thickness", "torchslice", "sparse"}
    for r in rows:
        assert r["modality"] == "stem" and 0.0 < r["ssim_projected"] <= 1.0 and 0.0 < r["ssim_depth_blind"] < 1.0
        assert -1.0 <= r["ssim"] <= 1.0 and r["wall_time_s"] > 0
    md = (ci_outputs / "tab1_ssim_stem.md").read_text()
    assert "SSIM projection reported in paper" in md and "0.887 ± 0.243" in md and "Depth-blind" in md
    assert (ci_outputs / "tab1_ssim_stem.csv").is_file()


@pytest.mark.notebook
def test_fig4_outputs(ci_outputs):
    for ext in ("png", "pdf"):
        assert (ci_outputs / f"fig4_stem_examples.{ext}").stat().st_size > 1000
    rows = tables.read_cases(ci_outputs / "fig4_stem_examples_cases.csv")
    assert len({r["case"] for r in rows}) == 1
    assert {r["method"] for r in rows} == {"dart", "drift", "three_pie", "three_pie_thickness", "torchslice", "sparse"}


@pytest.mark.notebook
def test_tab2_outputs(ci_outputs):
    rows = tables.read_cases(ci_outputs / "tab2_ood_cases.csv")
    assert {r["dataset"] for r in rows} == {"roots"}
    assert {"dart", "drift", "projection", "zero_filled", "cs_mri", "tv"} <= {r["method"] for r in rows}
    for r in rows:
        assert 0.0 < r["ssim"] <= 1.0 and r["wall_time_s"] > 0
    md = (ci_outputs / "tab2_ood.md").read_text()
    assert "SSIM in pot (ours)" in md and "0.813 ± 0.130" in md  # the paper's DART value, labelled
    stem = tables.read_cases(ci_outputs / "tab2_ood_stem_cases.csv")
    assert {r["dataset"] for r in stem} == {"hexagonal"} and all("WSe2" in r["case"] for r in stem)
    assert "0.981 ± 0.010" in (ci_outputs / "tab2_ood_stem.md").read_text()


def _notebook(tmp_path: Path, body: str) -> Path:
    src = tmp_path / "broken.py"
    src.write_text('# %% tags=["parameters"]\nx = 1\n\n# %%\n' + body + "\n")
    return src


def test_cell_error_names_notebook(tmp_path):
    src = _notebook(tmp_path, "raise ValueError('boom')")
    with pytest.raises(NotebookExecutionError, match=r"(?s)broken\.py.*boom"):
        run(src, tmp_path / "out.ipynb")


@pytest.mark.timeout(120)
def test_dead_kernel_fails_with_name(tmp_path):
    src = _notebook(tmp_path, "import os\nos._exit(1)")
    with pytest.raises(NotebookExecutionError, match=r"broken\.py"):
        run(src, tmp_path / "out.ipynb")


@pytest.mark.timeout(120)
def test_hung_cell_times_out(tmp_path):
    src = _notebook(tmp_path, "import time\ntime.sleep(600)")
    with pytest.raises(NotebookExecutionError, match=r"(?s)broken\.py.*(Timeout|timed out)"):
        run(src, tmp_path / "out.ipynb", cell_timeout_s=3)


@pytest.mark.notebook
def test_prior_samples_outputs(ci_outputs):
    rows = tables.read_csv_rows(ci_outputs / "fig_prior_samples_cases.csv")
    levels = {r["noise_level"] for r in rows}
    assert levels == {0.02, 0.05, 0.1, 0.2}
    assert {r["method"] for r in rows} == {"prior", "gaussian_filter"}
    assert all(r["psnr"] > r["noisy_psnr"] - 10 and r["psnr"] < 80 for r in rows)
    assert (ci_outputs / "fig_prior_samples.png").stat().st_size > 0
    md = (ci_outputs / "fig_prior_samples.md").read_text()
    assert "checkpoints/mri_ci/prior_group0.safetensors" in md
    stem = tables.read_csv_rows(ci_outputs / "fig_prior_samples_stem_cases.csv")
    assert {r["noise_level"] for r in stem} == {0.05, 0.1, 0.2, 0.4}
    assert {r["method"] for r in stem} == {"prior", "gaussian_filter"}
    assert (ci_outputs / "fig_prior_samples_stem.png").stat().st_size > 1000
    assert "checkpoints/stem_ci/prior_group0.safetensors" in (ci_outputs / "fig_prior_samples_stem.md").read_text()
