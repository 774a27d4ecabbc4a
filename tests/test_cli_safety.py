"""Command-line safety (issue 15, part 7): outputs never destroy inputs, files get the user's umask,
``--help`` lists every command, and every bad flag is one line naming it."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

import paperlib.config
import paperlib.diffusion.bundles
import paperlib.reconstruct
from paperlib import cli
from paperlib.io import atomic_write_text, current_umask, output_file_mode, save_nifti
from paperlib.paths import repo_root

ROOT = repo_root()


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A small NIfTI volume (i, j, k) = (W, H, D) = (32, 24, 6) and a few bad ones; cwd = tmp_path."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    save_nifti("img.nii.gz", 100.0 * rng.random((32, 24, 6)).astype(np.float32))
    save_nifti("zero.nii.gz", np.zeros((32, 24, 6), np.float32))
    save_nifti("flat.nii.gz", np.ones((32, 24), np.float32))
    save_nifti("five.nii.gz", np.ones((32, 24, 6, 2, 2), np.float32))
    nan = rng.random((32, 24, 6)).astype(np.float32)
    nan[1, 2, 3] = np.nan
    save_nifti("nan.nii.gz", nan)
    Path("notes.txt").write_text("not a volume")
    Path("bad.yaml").write_text("foo: 1\n")
    np.save("mask.npy", np.ones((32, 24), np.uint8))
    return tmp_path


@pytest.fixture
def no_reconstruction(monkeypatch):
    """Fail loudly if a reconstruction starts: refusals must come before any work."""
    def started(*args, **kwargs):
        raise AssertionError("the reconstruction started before the arguments were checked")

    monkeypatch.setattr(paperlib.reconstruct, "reconstruct_mri", started)


def _run(capsys, *argv):
    """``python -m paperlib ARGV`` in-process: (exit status, stderr lines)."""
    rc = cli.main([str(a) for a in argv])
    return rc, capsys.readouterr().err.strip().splitlines()


def _reconstruct(capsys, *extra):
    return _run(capsys, "reconstruct", "--profile", "ci", "--threads", "1", "--method", "zero_filled", *extra)


# ---------------------------------------------------------------------------- 1. --out refusals
@pytest.mark.parametrize("out, extra, why", [
    ("img.nii.gz", [], "is the input --image"),
    ("img.nii.gz", ["--overwrite"], "is the input --image"),
    ("SYMLINK", ["--overwrite"], "is the input --image"),
    ("HARDLINK", ["--overwrite"], "is the input --image"),
    ("other.nii.gz", [], "the file exists"),
    ("sub.nii", ["--overwrite"], "expected a file path, got an existing folder"),
])
def test_reconstruct_out_never_overwrites_an_input_and_needs_overwrite(files, capsys, no_reconstruction,
                                                                       out, extra, why):
    original = Path("img.nii.gz").read_bytes()
    Path("other.nii.gz").write_bytes(b"keep me")
    Path("sub.nii").mkdir()
    os.symlink("img.nii.gz", "link.nii.gz")
    os.link("img.nii.gz", "hard.nii.gz")
    out = {"SYMLINK": "link.nii.gz", "HARDLINK": "hard.nii.gz"}.get(out, out)
    rc, err = _reconstruct(capsys, "--image", "img.nii.gz", "--out", out, *extra)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: --out {out}: ") and why in err[0], err
    assert Path("img.nii.gz").read_bytes() == original and Path("other.nii.gz").read_bytes() == b"keep me"


def test_reconstruct_out_may_not_be_the_mask_or_the_profile(files, capsys, no_reconstruction):
    Path("mask.nii").write_bytes(b"any mask")  # refused before it is read
    rc, err = _reconstruct(capsys, "--image", "img.nii.gz", "--mask", "mask.nii", "--out", "mask.nii", "--overwrite")
    assert rc == 2 and "--out mask.nii: is the input --mask" in err[0], err
    assert Path("mask.nii").read_bytes() == b"any mask"
    profile = files / "ci_copy.yaml"
    profile.write_text((ROOT / "notebooks" / "params" / "ci.yaml").read_text())
    os.symlink(profile, "out.nii")
    rc, err = _run(capsys, "reconstruct", "--profile", profile, "--method", "zero_filled", "--image", "img.nii.gz",
                   "--out", "out.nii", "--overwrite")
    assert rc == 2 and "--out out.nii: is the input --profile" in err[0], err


def test_reconstruct_overwrite_replaces_another_file_and_keeps_its_mode(files, capsys):
    Path("old.nii.gz").write_bytes(b"old")
    os.chmod("old.nii.gz", 0o640)
    rc, err = _reconstruct(capsys, "--image", "img.nii.gz", "--out", "old.nii.gz", "--overwrite")
    assert rc == 0, err
    assert Path("old.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # a gzipped NIfTI now
    assert stat.S_IMODE(os.stat("old.nii.gz").st_mode) == 0o640


def test_train_refuses_an_out_file_and_an_export_over_its_data(tmp_path, capsys, monkeypatch):
    def loaded(*args, **kwargs):
        raise AssertionError("training data were loaded before the outputs were checked")

    monkeypatch.setattr(paperlib.diffusion.bundles, "load_data_file", loaded)
    data = tmp_path / "vols.pt"
    data.write_bytes(b"data")
    common = ["train", "--modality", "mri", "--profile", "ci", "--no-progress"]
    rc, err = _run(capsys, *common, "--data", data, "--out", data)
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: --out {data}: expected a folder"), err
    rc, err = _run(capsys, *common, "--data", data, "--export-data", data, "--overwrite")
    assert rc == 2 and err[0].startswith(f"error: --export-data {data}: is the input --data"), err
    other = tmp_path / "other.pt"
    other.write_bytes(b"other")
    rc, err = _run(capsys, *common, "--data", data, "--export-data", other)
    assert rc == 2 and "--export-data" in err[0] and "pass --overwrite" in err[0], err
    assert data.read_bytes() == b"data" and other.read_bytes() == b"other"


def test_tune_baselines_refuses_an_existing_out_before_loading_the_profile(tmp_path, capsys, monkeypatch):
    def loaded(*args, **kwargs):
        raise AssertionError("the profile was loaded before --out was checked")

    monkeypatch.setattr(paperlib.config, "load_profile", loaded)
    csv = tmp_path / "scores.csv"
    csv.write_text("keep")
    rc, err = _run(capsys, "tune-baselines", "--profile", "ci", "--out", csv)
    assert rc == 2 and err == [f"error: --out {csv}: the file exists; refusing to overwrite it "
                               "(pass --overwrite to replace it)"], err
    profile = tmp_path / "mine.yaml"
    profile.write_text("name: mine\n")
    rc, err = _run(capsys, "tune-baselines", "--profile", profile, "--out", profile, "--overwrite")
    assert rc == 2 and "is the input --profile" in err[0], err
    assert csv.read_text() == "keep" and profile.read_text() == "name: mine\n"


# ---------------------------------------------------------------------------- 2. umask
@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    try:
        yield os.umask
    finally:
        os.umask(old)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_outputs_get_the_umask_mode(tmp_path, umask, mask, mode):
    umask(mask)
    assert current_umask() == mask
    assert atomic_write_text(tmp_path / "a.txt", "x") and stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == mode
    save_nifti(tmp_path / "v.nii.gz", np.ones((4, 4, 4), np.float32))
    assert stat.S_IMODE(os.stat(tmp_path / "v.nii.gz").st_mode) == mode
    os.chmod(tmp_path / "a.txt", 0o604)  # replacing a file keeps its mode, whatever the umask
    atomic_write_text(tmp_path / "a.txt", "y")
    assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o604 == output_file_mode(tmp_path / "a.txt")


def test_reconstruct_output_mode_follows_the_umask_in_a_fresh_process(tmp_path):
    """The whole command line, as a user runs it, under umask 027."""
    rng = np.random.default_rng(1)
    save_nifti(tmp_path / "img.nii", 50.0 * rng.random((32, 24, 6)).astype(np.float32))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    code = ("import os, sys; os.umask(0o027); from paperlib.cli import main; sys.exit(main(sys.argv[1:]))")
    proc = subprocess.run([sys.executable, "-c", code, "reconstruct", "--profile", "ci", "--threads", "1",
                           "--method", "zero_filled", "--image", "img.nii", "--out", "zf.nii"],
                          cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert stat.S_IMODE(os.stat(tmp_path / "zf.nii").st_mode) == 0o640


def test_current_umask_without_proc(monkeypatch, umask):
    """Where /proc/self/status cannot be read, the umask is read with os.umask and left unchanged."""
    import builtins

    real_open = builtins.open

    def no_proc(file, *args, **kwargs):
        if str(file) == "/proc/self/status":
            raise FileNotFoundError(file)
        return real_open(file, *args, **kwargs)

    umask(0o037)
    monkeypatch.setattr(builtins, "open", no_proc)
    assert current_umask() == 0o037
    assert os.umask(0o037) == 0o037  # still in force


# ---------------------------------------------------------------------------- 3. --help
def test_help_lists_every_command_with_a_description():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "paperlib", "--help"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    for name in cli.COMMANDS:
        described = [line for line in lines if line.split()[:1] == [name] and len(line.split()) > 2]
        assert described, f"`python -m paperlib --help` does not describe {name!r}:\n{proc.stdout}"
    assert {"data", "tune-baselines", "train", "reconstruct"} <= set(cli.COMMANDS)
    # the `paperlib` console script is the same entry point
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["paperlib"] == "paperlib.cli:main"


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_every_command_has_its_own_help(name, capsys):
    assert cli.main([name, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m paperlib {name}"), out[:200]
    assert cli.COMMANDS[name].description in " ".join(out.split())


def test_unknown_or_missing_command_lists_the_commands(capsys):
    for argv in (["reconstrct"], []):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert ("unknown command 'reconstrct'" if argv else "no command given") in err
        for name, command in cli.COMMANDS.items():
            assert f"{name}  " in err and command.description in err


# ---------------------------------------------------------------------------- 4. flags named
BAD_FLAGS = [
    (["--acceleration", "abc"], "--acceleration abc: expected a finite number > 1, got 'abc'"),
    (["--acceleration", "0.5"], "--acceleration 0.5: expected a finite number > 1, got 0.5"),
    (["--acceleration", "nan"], "--acceleration nan: expected a finite number > 1"),
    (["--acceleration", "1000"], "--acceleration 1000: expected a number in (1, 32] for a uniform1d mask"),
    (["--acceleration", "40", "--mask-kind", "gaussian2d", "--center-fraction", "0.05"],
     "--center-fraction 0.05 with --acceleration 40: expected 0 < center_fraction <= 1/acceleration = 0.025"),
    (["--acceleration", "500", "--mask-kind", "gaussian2d"],
     "profile ci: mri_physics.center_fraction 0.08 with --acceleration 500: expected 0 < center_fraction "
     "<= 1/acceleration = 0.002, got 0.08; pass a --center-fraction in that range or a lower --acceleration"),
    (["--acceleration", "20"], "profile ci: mri_physics.center_fraction 0.08 with --acceleration 20:"),
    (["--center-fraction", "1.5"], "--center-fraction 1.5 with profile ci: mri_physics.acceleration 4.0: expected 0 <"),
    (["--center-fraction", "0"], "--center-fraction 0 with profile ci: mri_physics.acceleration 4.0: expected 0 <"),
    (["--center-fraction", "x"], "--center-fraction x with profile ci: mri_physics.acceleration 4.0: expected"),
    (["--mask-kind", "radial"], "--mask-kind radial: expected one of uniform1d, gaussian2d, got 'radial'"),
    (["--mask", "mask.npy", "--acceleration", "4"], "--mask mask.npy: give either a mask file or acceleration"),
    (["--mask", "missing.npy"], "--mask missing.npy: no such mask file"),
    (["--mask", "notes.txt"], "--mask notes.txt: expected a mask as .nii, .nii.gz or .npy"),
    (["--method", "nope"], "--method nope: expected a registered mri method (cs_mri, dart,"),
    (["--profile", "nope"], "--profile nope: no file"),
    (["--profile", "missing.yaml"], "--profile missing.yaml: no file missing.yaml"),
    (["--profile", "bad.yaml"], "--profile bad.yaml: bad.yaml: invalid profile: missing key 'name'"),
    (["--threads", "0"], "--threads 0: expected an integer >= 1, got 0"),
    (["--seed", "x"], "--seed: invalid int value: 'x'"),
    (["--image", "missing.nii.gz"], "--image missing.nii.gz: expected a NIfTI file (.nii, .nii.gz), got no such file"),
    (["--image", "notes.txt"], "--image notes.txt: expected a .nii or .nii.gz file"),
    (["--image", "flat.nii.gz"], "--image flat.nii.gz: expected a 3D volume, got shape (32, 24)"),
    (["--image", "five.nii.gz"], "--image five.nii.gz: expected a 3D volume, got shape (32, 24, 6, 2, 2)"),
    (["--image", "nan.nii.gz"], "--image nan.nii.gz: 1 non-finite voxels"),
    (["--image", "zero.nii.gz"], "--image zero.nii.gz: expected a magnitude volume with positive voxels, got all"),
]


@pytest.mark.parametrize("extra, message", BAD_FLAGS, ids=[" ".join(e) for e, _ in BAD_FLAGS])
def test_bad_flags_give_one_line_naming_the_flag(files, capsys, no_reconstruction, extra, message):
    argv = ["--profile", "ci", "--threads", "1", "--image", "img.nii.gz", "--out", "out.nii.gz"]
    rc = cli.main(["reconstruct", *argv, *extra])  # later flags win
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert rc == 2 and len(err) == 1, captured.err
    assert err[0].startswith(f"error: {message}"), err[0]
    for internal in ("Traceback", "pydantic", "http", "validation error", "center_fraction:"):
        assert internal not in err[0], err[0]
    assert not Path("out.nii.gz").exists()


def test_acceleration_is_blamed_whatever_the_profile(files, capsys, no_reconstruction):
    """--acceleration 1000 names the acceleration the user passed, first, for either mask kind."""
    for kind in ("uniform1d", "gaussian2d"):
        rc, err = _reconstruct(capsys, "--image", "img.nii.gz", "--out", "o.nii", "--acceleration", "1000",
                               "--mask-kind", kind, "--center-fraction", "0.0005")
        assert rc == 2 and err[0].startswith("error: --acceleration 1000: expected a number in (1, "), err
        assert ("(1, 32]" if kind == "uniform1d" else "(1, 768]") in err[0], err


def test_stem_inputs_are_named_too(files, capsys, no_reconstruction):
    Path("acq.yaml").write_text("energy: -5\n")
    stem = ["reconstruct", "--modality", "stem", "--profile", "ci", "--threads", "1", "--out", "pot.npy"]
    for extra, message in [
        (["--data", "scan.npy", "--acquisition", "missing.yaml"], "--acquisition missing.yaml: no such"),
        (["--data", "scan.npy", "--acquisition", "acq.yaml"], "--acquisition acq.yaml: key energy: expected an "
                                                             "acceleration voltage in keV"),
        (["--acquisition", "acq.yaml"], "--data and --acquisition: a 4D-STEM reconstruction needs both"),
        (["--data", "scan.npy", "--acquisition", "acq.yaml", "--method", "tv"], "--method tv: expected a "
                                                                                "registered stem method"),
    ]:
        rc, err = _run(capsys, *stem, *extra)
        assert rc == 2 and len(err) == 1 and err[0].startswith(f"error: {message}"), err
        assert "pydantic" not in err[0] and "http" not in err[0], err
