"""``python -m paperlib reconstruct --modality stem`` on a microscope's data (issue 16, part 4).

The data are a crystal of a kind the package does not ship (rock-salt MgO, a = 4.21 Å, built
with ase) simulated by abTEM 1.0's own Potential / Probe / GridScan / PixelatedDetector and
written in the layouts the field uses: abTEM's zarr output, py4DSTEM's EMD 1.0 HDF5 tree and
``.npy``. The grid (36 px) is even but not divisible by 8. Every bad input of the issue is one
line on stderr, exit status 2, no output file, and refused before any reconstruction starts.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

import paperlib.reconstruct
from paperlib import cli
from paperlib.paths import repo_root
from paperlib.stem_input import (STEMAcquisition, acquisition_keys_table, check_file_calibration, load_acquisition,
                                 normalise_intensities, read_intensities)

GRID = 36  # even, not a multiple of the U-Net's factor 8
SCAN = 6  # 6 x 6 probe positions, one every 6 px: the scan tiles the periodic field of view


def _simulate(tmp: Path, gpts: int) -> tuple[np.ndarray, np.ndarray, dict, object]:
    """abTEM's 4D-STEM of a 2 x 2 x 2 MgO supercell: (intensities, potential, acquisition, measurement)."""
    import abtem
    from ase.build import bulk

    atoms = bulk("MgO", "rocksalt", a=4.21, cubic=True) * (2, 2, 2)
    extent, depth = float(atoms.cell[0, 0]), float(atoms.cell[2, 2])
    potential = abtem.Potential(atoms, gpts=(gpts, gpts), slice_thickness=depth / 4, projection="infinite")
    probe = abtem.Probe(energy=200e3, semiangle_cutoff=20, defocus=30)
    probe.grid.match(potential)
    scan = abtem.GridScan(start=(0, 0), end=(extent, extent), gpts=(SCAN, SCAN))
    measured = probe.scan(potential, scan=scan, detectors=abtem.PixelatedDetector(max_angle=None)).compute(
        progress_bar=False)
    acquisition = {"energy": 200, "semiangle": 20, "defocus": 30, "gpts": gpts, "sampling": extent / gpts,
                   "scan_step": extent / SCAN, "slice_thickness": depth / 4, "n_slices": 4}
    truth = np.asarray(potential.build().compute(progress_bar=False).array, dtype=np.float32)
    return np.asarray(measured.array, dtype=np.float32), truth, acquisition, measured


def _write_emd(path: Path, array: np.ndarray, step: float, mrad: float, names=("datacube",)) -> None:
    """py4DSTEM's EMD 1.0 layout: file header, a root group, DataCube array node(s) with dim vectors."""
    with h5py.File(path, "w") as f:
        f.attrs.update({"emd_group_type": "file", "version_major": 1, "version_minor": 0})
        root = f.create_group("measurement")
        root.attrs.update({"emd_group_type": "root", "python_class": "Root"})
        for name in names:
            node = root.create_group(name)
            node.attrs.update({"emd_group_type": "array", "python_class": "DataCube"})
            node.create_dataset("data", data=array).attrs["units"] = "counts"
            for n, (sampling, unit, label) in enumerate([(step / 10, "nm", "Rx"), (step / 10, "nm", "Ry"),
                                                        (mrad, "mrad", "Qx"), (mrad, "mrad", "Qy")]):
                dim = node.create_dataset(f"dim{n}", data=np.array([0.0, sampling]))
                dim.attrs.update({"units": unit, "name": label})
            bundle = node.create_group("metadatabundle")
            bundle.attrs["emd_group_type"] = "metadatabundle"


@pytest.fixture(scope="module")
def mgo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("mgo")
    data, truth, acquisition, measured = _simulate(tmp, GRID)
    np.save(tmp / "mgo.npy", data)
    measured.to_zarr(str(tmp / "mgo.zarr"))
    measured.to_zarr(str(tmp / "mgo.zip"))
    mrad = 1e3 * STEMAcquisition(**acquisition).wavelength / (GRID * acquisition["sampling"])
    _write_emd(tmp / "mgo.emd", data, acquisition["scan_step"], mrad)
    (tmp / "acq.yaml").write_text(yaml.safe_dump(acquisition))
    return {"dir": tmp, "data": data, "truth": truth, "acq": acquisition, "mrad": mrad}


def _run(capsys, *argv) -> tuple[int, str, list[str]]:
    rc = cli.main(["reconstruct", "--modality", "stem", "--profile", "ci", "--threads", "1", *map(str, argv)])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err.strip().splitlines()


def _loss(acquisition: dict, data: np.ndarray, volume: np.ndarray) -> float:
    op = STEMAcquisition(**acquisition).operator(data.shape)
    with torch.no_grad():
        return float(op.loss(torch.from_numpy(volume).float(), torch.from_numpy(data)))


# ------------------------------------------------------------------------- the files are read as written
def test_readers_give_the_simulated_array_and_its_calibrations(mgo):
    d = mgo["dir"]
    for name, expected in [("mgo.npy", {}), ("mgo.zarr", {"energy_kev": 200.0}), ("mgo.zip", {"energy_kev": 200.0}),
                           ("mgo.emd", {"detector_mrad": (mgo["mrad"],) * 2})]:
        array, info = read_intensities(d / name)
        np.testing.assert_array_equal(array, mgo["data"])
        for key, value in expected.items():
            assert info[key] == pytest.approx(value), (name, info)
        if name != "mgo.npy":
            assert info["scan_step"] == pytest.approx((mgo["acq"]["scan_step"],) * 2), info
            assert check_file_calibration(STEMAcquisition(**mgo["acq"]), info, name, "acq.yaml")


def test_abtem_patterns_stored_without_fftshift_are_shifted(mgo, tmp_path):
    """abTEM marks patterns kept in FFT order with ``fftshift: false`` on the reciprocal axes."""
    import shutil

    import zarr

    store = tmp_path / "unshifted.zarr"
    shutil.copytree(mgo["dir"] / "mgo.zarr", store)
    root = zarr.open(str(store), mode="r+")
    root["array0"][...] = np.fft.ifftshift(mgo["data"], axes=(-2, -1))
    metadata = dict(root.attrs["metadata0"])
    metadata["axes"] = {k: {**a, "fftshift": False} if a.get("type") == "ReciprocalSpaceAxis" else a
                        for k, a in metadata["axes"].items()}
    root.attrs["metadata0"] = metadata
    array, info = read_intensities(store)
    np.testing.assert_array_equal(array, mgo["data"])
    assert info["layout"].endswith("patterns fftshifted here")


def test_our_operator_reproduces_abtem_on_the_acquisition_grid(mgo):
    """The acquisition file builds the operator that made the data (same model as abTEM), so a
    reconstruction fits the physics of the file, not of our own simulator."""
    op = STEMAcquisition(**mgo["acq"]).operator(mgo["data"].shape)
    simulated = op.forward(torch.from_numpy(mgo["truth"])).numpy()
    assert np.linalg.norm(simulated - mgo["data"]) / np.linalg.norm(mgo["data"]) < 1e-4


# ------------------------------------------------------------------------- every method, a 36-px grid
@pytest.mark.parametrize("method, data", [("three_pie", "mgo.zarr"), ("three_pie_thickness", "mgo.zip"),
                                          ("torchslice", "mgo.npy"), ("sparse", "mgo.emd"), ("dart", "mgo.npy"),
                                          ("drift", "mgo.zarr")])
def test_an_abtem_crystal_we_do_not_ship_runs_with_every_method(mgo, tmp_path, capsys, method, data):
    out = tmp_path / f"{method}.npy"
    rc, stdout, err = _run(capsys, "--method", method, "--data", mgo["dir"] / data, "--acquisition",
                           mgo["dir"] / "acq.yaml", "--out", out)
    assert rc == 0, err
    assert "intensities: normalised (mean pattern sum" in stdout and "detected" in stdout, stdout
    volume = np.load(out)
    assert volume.shape == (4, GRID, GRID) and np.isfinite(volume).all()
    # the reconstruction explains the measured patterns better than an empty specimen does
    assert _loss(mgo["acq"], mgo["data"], volume) < 0.8 * _loss(mgo["acq"], mgo["data"], np.zeros_like(volume))


def test_the_command_line_itself_runs_and_refuses(mgo, tmp_path):
    """``python -m paperlib reconstruct`` as a user types it: exit 0 on the abTEM zarr, exit 2 on eV."""
    base = [sys.executable, "-m", "paperlib", "reconstruct", "--modality", "stem", "--profile", "ci", "--threads",
            "1", "--method", "three_pie", "--data", str(mgo["dir"] / "mgo.zarr")]
    env = {"PYTHONPATH": str(repo_root()), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    ok = subprocess.run([*base, "--acquisition", str(mgo["dir"] / "acq.yaml"), "--out", str(tmp_path / "p.npy")],
                        capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert np.load(tmp_path / "p.npy").shape == (4, GRID, GRID)
    ev = tmp_path / "ev.yaml"
    ev.write_text(yaml.safe_dump({**mgo["acq"], "energy": 200000}))
    bad = subprocess.run([*base, "--acquisition", str(ev), "--out", str(tmp_path / "q.npy")],
                         capture_output=True, text=True, env=env, cwd=tmp_path)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1, bad.stderr
    assert "looks like electron volts: write 200 (keV)" in bad.stderr
    assert not (tmp_path / "q.npy").exists()


def test_an_odd_grid_is_abtems_model_too_and_runs(tmp_path, capsys, caplog):
    """Odd grids are not refused: abTEM's data on a 35-px grid are our operator's (fftshift puts the
    zero angle at pixel 35 // 2 on both sides), and DART pads the grid inside."""
    data, truth, acquisition, _ = _simulate(tmp_path, 35)
    op = STEMAcquisition(**acquisition).operator(data.shape)
    assert np.linalg.norm(op.forward(torch.from_numpy(truth)).numpy() - data) / np.linalg.norm(data) < 1e-4
    np.save(tmp_path / "odd.npy", data)
    (tmp_path / "acq.yaml").write_text(yaml.safe_dump(acquisition))
    for method in ("dart", "drift"):
        caplog.clear()
        rc, _, err = _run(capsys, "--method", method, "--data", tmp_path / "odd.npy", "--acquisition",
                          tmp_path / "acq.yaml", "--out", tmp_path / f"odd_{method}.npy")
        assert rc == 0, err
        assert np.load(tmp_path / f"odd_{method}.npy").shape == (4, 35, 35)
        # 6 probe positions cannot step through 35 px in whole pixels: DRIFT says it does not align
        assert ("not aligned laterally" in caplog.text) == (method == "drift"), caplog.text


def test_counts_are_detected_stated_and_normalised(mgo, tmp_path, capsys):
    rng = np.random.default_rng(0)
    counts = rng.poisson(mgo["data"].astype(np.float64) * 1e6).astype(np.uint32)  # 1e6 electrons per position
    np.save(tmp_path / "counts.npy", counts)
    rc, stdout, err = _run(capsys, "--method", "three_pie", "--data", tmp_path / "counts.npy", "--acquisition",
                           mgo["dir"] / "acq.yaml", "--out", tmp_path / "c.npy")
    assert rc == 0, err
    assert "intensities: counts (integer-valued, mean pattern sum" in stdout, stdout
    from_counts = np.load(tmp_path / "c.npy")
    rc, _, err = _run(capsys, "--method", "three_pie", "--data", mgo["dir"] / "mgo.npy", "--acquisition",
                      mgo["dir"] / "acq.yaml", "--out", tmp_path / "n.npy")
    from_normalised = np.load(tmp_path / "n.npy")
    # counts were divided to the operator's convention: the same potential, up to the Poisson noise
    # (unnormalised, the potential would be ~1e4 times too strong, as in the issue)
    rel = np.linalg.norm(from_counts - from_normalised) / np.linalg.norm(from_normalised)
    assert rel < 0.1, rel


def test_normalise_intensities_detects_each_kind():
    counts = np.full((2, 2, 4, 4), 50, dtype=np.uint16)
    x, said = normalise_intensities(counts, "auto", 0.98, "f")
    assert said.startswith("intensities: counts (integer-valued")
    assert float(x.sum((-2, -1)).mean()) == pytest.approx(0.98)
    x, said = normalise_intensities(counts * 1.37, "auto", 1.0, "f")
    assert said.startswith("intensities: detector units (not integers")
    x, said = normalise_intensities(counts / 800.0, "auto", 1.0, "f")
    assert said.startswith("intensities: normalised") and torch.equal(x, torch.from_numpy(counts / 800.0).float())
    with pytest.raises(ValueError, match="normalised \\(acquisition file\\), but the patterns sum to 800"):
        normalise_intensities(counts, "normalised", 1.0, "f")


# ------------------------------------------------------------------------- bad inputs: one clear error each
@pytest.fixture
def no_reconstruction(monkeypatch):
    def started(*args, **kwargs):
        raise AssertionError("a method was set up before the input was checked")

    monkeypatch.setattr(paperlib.reconstruct, "stem_method", started)


def _acq(mgo, tmp_path, name="acq.yaml", drop=(), **changes) -> Path:
    values = {k: v for k, v in {**mgo["acq"], **changes}.items() if k not in drop}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def _truncated_h5(mgo, tmp_path) -> Path:
    whole = tmp_path / "whole.h5"
    with h5py.File(whole, "w") as f:
        f.create_dataset("scan", data=mgo["data"])
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return cut


BAD_INPUTS = {
    # name: (acquisition changes, data maker, expected start of the message after "error: ")
    "counts stated as normalised": (dict(intensities="normalised"), "counts",
                                    "--data {data}: intensities: normalised (acquisition file), but the patterns sum"),
    "energy in eV": (dict(energy=200000), None, "--acquisition {acq}: key energy: expected an acceleration voltage "
                                                "in keV between 20 and 1000"),
    "energy in MeV": (dict(energy=0.3), None, "--acquisition {acq}: key energy: expected"),
    "non-finite number": (dict(defocus=float("nan")), None, "--acquisition {acq}: key defocus: Input should be a "
                                                            "finite number"),
    "missing energy": (dict(drop=("energy",)), None, "--acquisition {acq}: key energy: missing, required (keV"),
    "missing gpts": (dict(drop=("gpts",)), None, "--acquisition {acq}: key gpts: missing, required (px"),
    "unknown keys": (dict(vacancy_fraction=0.02, seed=0), None,
                     "--acquisition {acq}: unknown keys seed, vacancy_fraction; valid keys are energy, semiangle,"),
    "no grid scale": (dict(drop=("sampling",)), None, "--acquisition {acq}: give sampling (Å/px) or "
                                                      "detector_calibration"),
    "calibration off the grid": (dict(detector_calibration=3.5), None,
                                 "--acquisition {acq}: detector_calibration 3.5 mrad/px does not match sampling"),
    "grid smaller than the detector": (dict(gpts=24, sampling=8.42 / 24), None,
                                       "--data {data}: the patterns have 36x36 px but the propagation grid only 24x24"),
    "scan shape of other data": (dict(scan_shape=[5, 6]), None, "--data {data}: the data's scan is [6, 6] positions, "
                                                                "the acquisition's scan_shape [5, 6]"),
    "scan outside the field of view": (dict(scan_step=3.0), None, "--data {data}: the scan (6 positions x 3 Å"),
    "EMD calibration disagrees": (dict(), "emd_wrong", "--data {data}: the file states detector calibration"),
    "abTEM energy disagrees": (dict(energy=300), "zarr", "--data {data}: the file states energy 200 keV, --acquisition"),
    "truncated h5": (dict(), "truncated", "--data {data}: not a readable HDF5 file"),
    "empty npy": (dict(), "empty", "--data {data}: the file is empty (0 bytes)"),
    "npy without values": (dict(), "zero_size", "--data {data}: the array is empty"),
    "wrong ndim": (dict(), "3d", "--data {data}: expected a 4D array (Sy, Sx, Ky, Kx), got shape (36, 36, 36)"),
    "missing dataset": (dict(), "two_datasets", "--data {data}: 2 4D datasets (['a', 'b']); name the"),
    "off-centre beam": (dict(), "rolled", "--data {data}: the bright-field disk of the mean pattern is centred"),
    "negative values": (dict(), "negative", "--data {data}: intensities: 1 negative values"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_each_bad_input_is_one_clear_error_and_exit_2(mgo, tmp_path, capsys, no_reconstruction, case):
    changes, maker, expected = BAD_INPUTS[case]
    changes = dict(changes)
    acq = _acq(mgo, tmp_path, drop=changes.pop("drop", ()), **changes)
    data = mgo["dir"] / "mgo.npy"
    if maker == "counts":
        data = tmp_path / "counts.npy"
        np.save(data, np.round(mgo["data"] * 1e4).astype(np.int32))
    elif maker == "zarr":
        data = mgo["dir"] / "mgo.zarr"
    elif maker == "emd_wrong":
        data = tmp_path / "wrong.emd"
        _write_emd(data, mgo["data"], mgo["acq"]["scan_step"], 1.2 * mgo["mrad"])
    elif maker == "truncated":
        data = _truncated_h5(mgo, tmp_path)
    elif maker == "empty":
        data = tmp_path / "empty.npy"
        data.write_bytes(b"")
    elif maker == "zero_size":
        data = tmp_path / "none.npy"
        np.save(data, np.zeros((0, 6, 36, 36), np.float32))
    elif maker == "3d":
        data = tmp_path / "three.npy"
        np.save(data, mgo["data"].reshape(36, 36, 36))
    elif maker == "two_datasets":
        data = tmp_path / "two.h5"
        with h5py.File(data, "w") as f:
            f["a"], f["b"] = mgo["data"], mgo["data"]
    elif maker == "rolled":
        data = tmp_path / "rolled.npy"
        np.save(data, np.roll(mgo["data"], 5, axis=-1))
    elif maker == "negative":
        data = tmp_path / "negative.npy"
        bad = mgo["data"].copy()
        bad[0, 0, 0, 0] = -1.0
        np.save(data, bad)
    out = tmp_path / "out.npy"
    rc, _, err = _run(capsys, "--method", "dart", "--data", data, "--acquisition", acq, "--out", out)
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("error: " + expected.format(acq=acq, data=data)), err[0]
    assert "Traceback" not in err[0] and "pydantic" not in err[0]
    assert not out.exists()


def test_an_emd_file_with_two_datacubes_needs_dataset(mgo, tmp_path):
    path = tmp_path / "two.emd"
    _write_emd(path, mgo["data"], mgo["acq"]["scan_step"], mgo["mrad"], names=("raw", "calibrated"))
    nodes = r"2 4D array nodes \(\['measurement/calibrated', 'measurement/raw'\]\); name one with --dataset"
    with pytest.raises(ValueError, match=nodes):
        read_intensities(path)
    array, info = read_intensities(path, "measurement/calibrated")
    np.testing.assert_array_equal(array, mgo["data"])
    assert info["layout"] == "HDF5 EMD 1.0 DataCube node /measurement/calibrated"


def test_a_detector_calibration_alone_sets_the_sampling(mgo, tmp_path):
    acq = load_acquisition(_acq(mgo, tmp_path, drop=("sampling",), detector_calibration=mgo["mrad"]))
    assert acq.pixel_size == pytest.approx((mgo["acq"]["sampling"],) * 2)


# ------------------------------------------------------------------------- documented where users look
def test_help_and_readme_list_every_acquisition_key_with_its_unit(capsys):
    assert cli.main(["reconstruct", "--help"]) == 0
    text = capsys.readouterr().out
    for name, field in STEMAcquisition.model_fields.items():
        line = next((l for l in text.splitlines() if l.split()[:1] == [name]), None)
        assert line is not None and field.json_schema_extra["unit"] in line, name
        assert ("required" in line) == field.is_required(), line
    assert "(Sy, Sx, Ky, Kx)" in text
    readme = (repo_root() / "README.md").read_text()
    assert acquisition_keys_table() in readme, "README's acquisition table is stale: paste acquisition_keys_table()"


# ------------------------------------------------------------------------- the tables' methods are unchanged
@pytest.mark.parametrize("method", ["dart", "drift"])
def test_any_shape_guided_methods_are_the_tables_where_the_volume_fits_the_prior(method):
    """On the prior's own depth (ci: 2 groups x 2 slices) and a grid divisible by its U-Net's factor,
    the command line's tiled DART / DRIFT are the registered ones, number for number."""
    from paperlib.config import load_profile
    from paperlib.experiments.stem import STEM_METHODS
    from paperlib.reconstruct import stem_method

    cfg = load_profile("ci")
    acq = STEMAcquisition(energy=200, semiangle=20, defocus=30, gpts=32, sampling=0.25, scan_step=1.0,
                          slice_thickness=2, n_slices=4)
    op = acq.operator((8, 8, 24, 24))
    potential = 40 * torch.rand(op.shape, generator=torch.Generator().manual_seed(0))
    y = op.forward(potential)
    tiled_method, run_cfg, notes = stem_method(method, op, cfg)
    assert notes == [] and run_cfg == cfg  # the ci prior's own grid, and a scan of whole-pixel steps
    ours = tiled_method.fn(op, y, run_cfg, torch.Generator().manual_seed(3))
    tables = STEM_METHODS[method].fn(op, y, cfg, torch.Generator().manual_seed(3))
    assert torch.equal(ours, tables)


def test_a_dataset_name_for_an_npy_file_is_refused(mgo):
    with pytest.raises(ValueError, match="a .npy file holds one array; --dataset scan applies to HDF5"):
        read_intensities(mgo["dir"] / "mgo.npy", "scan")
