"""Real scans end to end: cases and roles, the general prior on volumes of any shape, valid outputs,
and the reconstruct command on NIfTI files of odd shapes and anisotropic voxels (issue 15)."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from paperlib.cli import main
from paperlib.config import load_profile
from paperlib.data.real_mri import REAL_SCANS, load_real_scan
from paperlib.experiments.real_mri import REAL_MRI, REAL_MRI_METHODS, real_cases, valid_magnitude
from paperlib.experiments.runner import run_cases
from paperlib.io import InputValidationError
from paperlib.validation import validation_cases


@pytest.fixture(scope="module")
def ci():
    return load_profile("ci")


def test_tuning_cases_never_hold_a_held_out_scan(ci):
    cases = validation_cases(ci, "real_mri", 100)
    assert cases and {c.role for c in cases} == {"tuning"}
    held_out = {name for name, s in REAL_SCANS.items() if s.role == "held_out"}
    assert held_out and not held_out & {c.scan for c in cases}
    every = real_cases(ci)
    assert len(every) == len(REAL_SCANS) * len(ci.real_mri.accelerations)
    assert {c.scan for c in real_cases(ci, role="held_out")} == held_out


def test_cases_keep_each_scan_at_its_own_shape_and_units(ci):
    for case in real_cases(ci):
        scan = load_real_scan(case.scan)
        assert torch.equal(case.image, scan.image)
        assert case.kspace.shape == scan.image.shape
        assert abs(case.operator.sampled_fraction - 1 / case.acceleration) < 0.06


def test_valid_magnitude_is_never_negative():
    x = torch.tensor([-3.0, 0.5, 1.0, 9.0])
    assert valid_magnitude(x, 10.0).tolist() == [0.0, 5.0, 10.0, 20.0]


def test_every_method_gives_a_valid_image_on_a_real_scan(ci):
    case = [c for c in real_cases(ci, role="tuning")][0]
    rows, recons = run_cases(ci, REAL_MRI, [case], sorted(REAL_MRI_METHODS), keep=True, progress=False)
    assert {r["method"] for r in rows} == set(REAL_MRI_METHODS)
    for (_, method, _), recon in recons.items():
        assert recon.shape == case.image.shape, method
        assert bool(torch.isfinite(recon).all()) and float(recon.min()) >= 0.0, method
    for r in rows:
        assert r["negative_fraction"] == 0.0 and 0.0 < r["ssim_whole"] <= 1.0


def _nifti(path, data, zooms):
    img = nib.Nifti1Image(data.astype(np.int16), np.diag([*zooms, 1.0]))
    img.header.set_zooms(zooms)
    img.header.set_qform(img.affine, 1)
    img.header.set_sform(img.affine, 4)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("shape, zooms", [((32, 32, 4), (2.0, 2.0, 2.0)), ((33, 37, 5), (1.9, 2.4, 6.0)),
                                          ((40, 36, 11), (4.0, 4.0, 5.0))])
@pytest.mark.parametrize("method", ["dart", "tv"])
def test_reconstruct_takes_any_shape_and_keeps_the_header(tmp_path, shape, zooms, method):
    scan = load_real_scan("dipy_aniso").image  # (24, 58, 58), the file's units
    d, h, w = shape[2], shape[1], shape[0]
    crop = scan[8:8 + d, 10:10 + h, 10:10 + w].numpy().transpose(2, 1, 0)  # -> (i, j, k)
    src = _nifti(tmp_path / "in.nii.gz", crop, zooms)
    out = tmp_path / "out.nii.gz"
    assert main(["reconstruct", "--profile", "ci", "--method", method, "--image", str(src),
                 "--out", str(out)]) == 0
    got, ref = nib.load(str(out)), nib.load(str(src))
    data = np.asarray(got.dataobj)
    assert data.shape == shape and data.dtype == np.float32
    assert data.min() >= 0.0 and data.max() <= float(crop.max()) + 1e-3
    assert int(got.header["qform_code"]) == 1 and int(got.header["sform_code"]) == 4
    assert np.allclose(got.header.get_zooms()[:3], zooms) and got.header.get_xyzt_units() == ref.header.get_xyzt_units()
    assert np.allclose(got.affine, ref.affine)


def test_dart_init_from_names_the_starting_image(ci):
    from paperlib.experiments.real_mri import dart_init

    case = real_cases(ci, role="tuning")[0]
    op, y = case.operator, case.kspace
    zf_start = ci.with_overrides("real_mri", "dart", {"init_from": "default"})
    assert torch.equal(dart_init(op, y, zf_start), op.zero_filled(y).real)
    tv_start = ci.with_overrides("real_mri", "dart", {"init_from": "tv"})
    assert torch.equal(dart_init(op, y, tv_start), REAL_MRI_METHODS["tv"].fn(op, y, ci, None))
    # another weight for the start (benchmarks/real_mri_dart_variants.py): the TV baseline at that weight
    weight = 5 * ci.real_mri.baselines.tv_weight
    stronger = ci.with_overrides("real_mri", "tv", {"tv_weight": weight})
    other = dart_init(op, y, tv_start, tv_weight=weight)
    assert torch.equal(other, REAL_MRI_METHODS["tv"].fn(op, y, stronger, None))
    assert not torch.equal(other, dart_init(op, y, tv_start))
    with pytest.raises(InputValidationError, match="tv_weight: DART starts from the zero-filled image"):
        dart_init(op, y, zf_start, tv_weight=weight)


def test_plug_and_play_settings_are_checked_together(ci):
    with pytest.raises(ValueError, match="sigma_min"):
        ci.with_overrides("real_mri", "dart", {"sigma_max": 0.03, "sigma_min": None})
    with pytest.raises(ValueError, match="sigma_min"):
        ci.with_overrides("real_mri", "dart", {"sigma_max": None})
    with pytest.raises(ValueError, match="samples, start and stop"):
        ci.with_overrides("real_mri", "dart", {"sigma_max": 0.03, "sigma_min": 0.005, "start": 1.0, "samples": 4})
    with pytest.raises(ValueError, match="sigma_max .* must be >= sigma_min"):
        ci.with_overrides("real_mri", "dart", {"sigma_max": 0.003, "sigma_min": 0.005, "start": 1.0})
    pnp = ci.with_overrides("real_mri", "dart", {"sigma_max": 0.03, "sigma_min": 0.005, "start": 1.0, "samples": 1,
                                                 "init_from": "tv"}).real_mri.diffusion.dart
    assert pnp.levels() == (0.03, 0.005)
    with pytest.raises(ValueError, match="self_ensemble: only DART's plug-and-play form"):
        ci.with_overrides("real_mri", "dart", {"sigma_max": None, "sigma_min": None, "self_ensemble": True})


def test_the_real_scan_dart_passes_its_self_ensemble_setting_on(ci, monkeypatch):
    import paperlib.experiments.real_mri as real_mri

    seen = []
    monkeypatch.setattr(real_mri, "dart", lambda *a, **kw: seen.append(kw["self_ensemble"]) or kw["init"])
    case = real_mri.real_cases(ci, role="tuning", n=1)[0]
    for flag in (True, False):
        profile = ci.with_overrides("real_mri", "dart", {"self_ensemble": flag})
        real_mri.REAL_MRI_METHODS["dart"].fn(case.operator, case.kspace, profile, torch.Generator().manual_seed(0))
        assert ("self-ensemble" in real_mri.dart_form(profile.real_mri.diffusion.dart)) is flag
    assert seen == [True, False]


def test_init_from_is_refused_outside_the_real_scans(ci):
    from paperlib.config import ConfigError
    from paperlib.experiments.mri import MRI_METHODS, mri_cases

    profile = ci.with_overrides("mri", "dart", {"init_from": "tv"})
    case = mri_cases(profile, split="val", n=1)[0]
    with pytest.raises(ConfigError, match="init_from"):
        MRI_METHODS["dart"].fn(case.operator, case.kspace, profile, torch.Generator().manual_seed(0))
