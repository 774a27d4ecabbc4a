"""The second system's priors, evaluation and command line (issue 18): the 2D training sets, the
prior loader, the per-case runner, the computed findings, the profile section, the training-data
path of ``make train`` and ``reconstruct --method variational2d`` on a tiny NIfTI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from paperlib.cli import main, prior_dir
from paperlib.config import load_profile
from paperlib.data.slices2d import DIVERSE_VOXEL_MM, FIXED_VOXEL_MM, prior_slice_set, subject_shape
from paperlib.data.training import load_training_data
from paperlib.diffusion.checkpoints import CheckpointError, save_prior
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.train_config import TRAIN_PRESETS
from paperlib.diffusion.unet3d import PRESETS, UNet3D
from paperlib.experiments import resolution_robust as rr
from paperlib.io import InputValidationError, load_nifti, save_nifti
from paperlib.metrics.image import volume_scores
from paperlib.paths import params_dir, repo_root

pytestmark = pytest.mark.usefixtures("one_thread")


def _write_prior(folder, voxels=(3.75,), group_size=1, seed=0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = UNet3D(PRESETS["slice2d"])
    folder.mkdir(parents=True, exist_ok=True)
    save_prior(folder / "prior_group0.safetensors", model, group_size=group_size,
               schedule=ScheduleConfig("cosine", 100), prediction="v",
               dataset={"voxel_sizes_mm": list(voxels)} if voxels else {})
    return folder


@pytest.fixture(scope="module")
def tiny_priors(tmp_path_factory):
    root = tmp_path_factory.mktemp("priors")
    return {"fixed": rr.load_slice_prior(_write_prior(root / "fixed", (3.75,))),
            "diverse": rr.load_slice_prior(_write_prior(root / "diverse", (3.75, 7.5, 15.0), seed=1))}


def test_subject_shapes_and_the_slice_sets():
    assert subject_shape(FIXED_VOXEL_MM) == (41, 64, 64)
    assert [subject_shape(v) for v in DIVERSE_VOXEL_MM[1:]] == [(21, 32, 32), (10, 16, 16)]
    fixed, record = prior_slice_set([15.0], 1, size=16)
    assert fixed.shape[1:] == (1, 16, 16) and fixed.dtype == torch.float32
    assert record["voxel_sizes_mm"] == [15.0] and record["slices_per_voxel_size"]["15.0"] == fixed.shape[0]
    assert bool((fixed.flatten(1).amax(1) > 0.05).all())  # empty slices dropped
    both, record = prior_slice_set([7.5, 15.0], 1, size=32)
    counts = record["slices_per_voxel_size"]
    assert sum(counts.values()) == both.shape[0] and counts["7.5"] > counts["15.0"]
    # at its own voxel size a 15 mm head covers a quarter of the side that a 7.5 mm head does... of the
    # 32-pixel image (a 240 mm field of view at 7.5 mm): the coarse slices hold zero margins
    coarse = both[counts["7.5"]:, 0]
    assert float(coarse[:, :, :6].abs().max()) == 0.0 and float(both[: counts["7.5"], 0].abs().amax()) > 0
    for bad, match in (([], "voxel_sizes_mm"), ([-1.0], "voxel_sizes_mm")):
        with pytest.raises(InputValidationError, match=match):
            prior_slice_set(bad, 1)
    with pytest.raises(InputValidationError, match="n_subjects"):
        prior_slice_set([15.0], 0)
    with pytest.raises(InputValidationError, match="modality"):
        prior_slice_set([15.0], 1, modality="pd")


def test_presets_profile_sections_and_training_data(tmp_path):
    for name in ("slice2d_fixed", "slice2d_diverse"):
        cfg = TRAIN_PRESETS[name]
        assert cfg.model == PRESETS["slice2d"] and cfg.num_groups == 1
        assert prior_dir("mri", name) == repo_root() / "checkpoints" / name
    for name in ("ci", "default", "paper"):
        section = load_profile(name).resolution_robust
        assert section is not None and section.methods_shift in section.shifts
    # the trainer's data path, on a copy of the ci profile with one training subject
    prof = yaml.safe_load((params_dir() / "ci.yaml").read_text())
    prof["resolution_robust"]["prior_subjects"] = 1
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(prof))
    data, info = load_training_data("mri", str(path), preset="slice2d_diverse")
    assert data.ndim == 4 and data.shape[1] == 1 and info["voxel_sizes_mm"] == list(DIVERSE_VOXEL_MM)
    assert info["shape"] == list(data.shape) and float(data.max()) <= 1.0
    del prof["resolution_robust"]
    path.write_text(yaml.safe_dump(prof))
    with pytest.raises(ValueError, match="resolution_robust"):
        load_training_data("mri", str(path), preset="slice2d_fixed")


def test_load_slice_prior_takes_the_largest_training_voxel_and_rejects_others(tmp_path, tiny_priors):
    assert tiny_priors["fixed"].voxel_size == 3.75 and tiny_priors["diverse"].voxel_size == 15.0
    with pytest.raises(CheckpointError, match="voxel_sizes_mm"):
        rr.load_slice_prior(_write_prior(tmp_path / "novoxel", voxels=()))
    with pytest.raises(CheckpointError, match="one-group 2D"):
        rr.load_slice_prior(_write_prior(tmp_path / "deep", group_size=4))
    with pytest.raises(CheckpointError, match="no prior folder"):
        rr.load_slice_prior(tmp_path / "absent")


def test_shipped_priors_are_small_and_record_their_voxels():
    for role, voxels in (("fixed", [FIXED_VOXEL_MM]), ("diverse", list(DIVERSE_VOXEL_MM))):
        folder = repo_root() / "checkpoints" / f"slice2d_{role}"
        manifest = json.loads((folder / "prior_group0.json").read_text())
        assert manifest["dataset"]["voxel_sizes_mm"] == voxels
        assert manifest["steps"] == TRAIN_PRESETS[f"slice2d_{role}"].steps and manifest["sha256"]
        assert (folder / "prior_group0.safetensors").stat().st_size < 16 * 2**20
        assert rr.load_slice_prior(folder).voxel_size == max(voxels)


def _tiny_section(**update):
    base = load_profile("ci").resolution_robust
    return base.model_copy(update={"iters": 3, "n_volumes": 1, **update})


def test_run_case_rows_and_the_zero_filled_score(tiny_priors):
    section = _tiny_section()
    truth = torch.zeros(6, 16, 16)
    truth[1:5, 4:12, 3:13] = 0.8
    op, y = rr._simulate(truth, section, 4.0, 0)
    case = rr.Case("synthetic", "toy", 2.0, 4.0, (7.5, 7.5, 7.5), truth, truth > 0, op, y)
    kept = {}
    rows = rr.run_case(case, ["zero_filled", "variational_fixed", "variational_fixed_resampled", "cs"],
                       tiny_priors, section, keep=kept)
    assert [r["method"] for r in rows] == ["zero_filled", "variational_fixed", "variational_fixed_resampled", "cs"]
    expected = volume_scores(op.conjugate_transpose(y).abs(), truth, head_mask=truth > 0)
    assert rows[0]["psnr_volume"] == pytest.approx(expected["psnr"]) and rows[0]["dataset"] == "synthetic x2 R4"
    assert all(r["wall_time_s"] > 0 and np.isfinite(r["ssim_whole"]) for r in rows)
    # the resampled run regularises a 2x finer grid: a different result from the same seed
    assert not torch.equal(kept[("synthetic", "toy", 2.0, 4.0, "variational_fixed")],
                           kept[("synthetic", "toy", 2.0, 4.0, "variational_fixed_resampled")])
    with pytest.raises(InputValidationError, match="methods"):
        rr.run_case(case, ["magic"], tiny_priors, section)


def _rows(values):
    """Synthetic rows from ``{(acceleration, shift, method): [psnr per case]}``."""
    return [{"source": "synthetic", "acceleration": a, "shift": s, "method": m, "case": f"c{i}", "seed": 0,
             "psnr_volume": v} for (a, s, m), vals in values.items() for i, v in enumerate(vals)]


def _oracle(deficit, resampled_gain=3.0, baselines=-2.0):
    """Rows where the fixed prior loses ``deficit[(a, s)]`` dB against the diverse one."""
    values = {}
    for a in (4.0, 8.0):
        for s in (1.0, 2.0, 4.0):
            diverse = [30.0, 31.0, 29.0]
            fixed = [v - deficit[(a, s)] for v in diverse]
            values[(a, s, "variational_diverse")] = diverse
            values[(a, s, "variational_fixed")] = fixed
            if s > 1:
                values[(a, s, "variational_fixed_resampled")] = [v + resampled_gain for v in fixed]
            else:
                for b in ("dps", "dds_tv_z", "cs"):
                    values[(a, s, b)] = [v + baselines for v in fixed]
    return _rows(values)


def test_findings_follow_the_numbers():
    section = _tiny_section()
    grows = {(a, s): (0.0 if s == 1 else s * a / 4) for a in (4.0, 8.0) for s in (1.0, 2.0, 4.0)}
    out = rr.findings(_oracle(grows, resampled_gain=max(grows.values())), section)
    assert [f["reproduced"] for f in out] == [True, True, True, True]
    assert "REPRODUCED" in out[1]["sentence"] and "R8 x4 fixed - diverse -8.000 dB" in out[1]["sentence"]
    assert "(n = 3)" in out[0]["sentence"] and "Caveat" not in out[3]["sentence"]
    # the deficit shrinking with the shift, the baselines winning, resampling not helping: NOT reproduced
    shrinks = {(a, s): (0.0 if s == 1 else 4.0 / s) for a in (4.0, 8.0) for s in (1.0, 2.0, 4.0)}
    out = rr.findings(_oracle(shrinks, resampled_gain=-1.0, baselines=+1.0), section)
    assert [f["reproduced"] for f in out] == [False, False, True, False]
    assert all("NOT reproduced" in f["sentence"] for f in out if not f["reproduced"])
    assert "Caveat: (2) found no degradation" in out[3]["sentence"]
    # the diverse prior costing accuracy at the training voxel: (3) NOT reproduced
    costly = {**grows, **{(a, 1.0): -2.0 for a in (4.0, 8.0)}}
    assert rr.findings(_oracle(costly), section)[2]["reproduced"] is False


@pytest.fixture(scope="module")
def nifti(tmp_path_factory):
    """A small magnitude volume in NIfTI order (i, j, k) = (W, H, D), 7.5 mm voxels."""
    from paperlib.data.brain import synthetic_subject

    vol = synthetic_subject(40_000, (10, 16, 16))["flair"]  # (D, H, W)
    data = 500.0 * vol.transpose(2, 1, 0)
    affine = np.diag([15.0, 15.0, 15.5, 1.0])
    path = tmp_path_factory.mktemp("nifti") / "head.nii.gz"
    save_nifti(path, data, affine)
    return path, data, affine


def test_reconstruct_variational2d_cli(nifti, tmp_path, capsys):
    path, data, affine = nifti
    out = tmp_path / "recon.nii.gz"
    prior = _write_prior(tmp_path / "prior", (3.75, 7.5))
    args = ["reconstruct", "--profile", "ci", "--method", "variational2d", "--image", str(path), "--threads", "1",
            "--prior", str(prior)]
    rc = main([*args, "--out", str(out), "--acceleration", "4"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "MAGNITUDE" in captured.out and "SIMULATED" in captured.out and "at 7.5 mm" in captured.out
    recon, got_affine, _ = load_nifti(out)
    assert recon.shape == data.shape and np.isfinite(recon).all()
    assert recon.min() >= 0 and recon.max() <= data.max() + 1e-3
    np.testing.assert_allclose(got_affine, affine, atol=1e-6)
    assert np.linalg.norm(recon - data) / np.linalg.norm(data) < 0.6
    assert not list(tmp_path.glob("*.tmp*"))
    for extra, message in ((["--coils", "0"], "--coils 0"), (["--acceleration", "x"], "--acceleration x"),
                           (["--acceleration", "4", "--center-fraction", "0.5"], "--center-fraction 0.5"),
                           (["--mask-kind", "uniform1d"], "--mask-kind")):
        bad = tmp_path / "bad.nii.gz"
        assert main([*args, "--out", str(bad), *extra]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and "Traceback" not in err, err
        assert not bad.exists()
    assert main(["reconstruct", "--method", "variational2d", "--help"]) == 0
    assert "SIMULATED" in capsys.readouterr().out
