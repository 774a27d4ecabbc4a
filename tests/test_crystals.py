"""Crystal data sets: structures and lattice constants, seeded samples, the parameter-keyed cache."""
from __future__ import annotations

import math

import abtem  # noqa: F401  required dependency (pyproject): a broken install fails here, never skips
import numpy as np
import pytest
import torch

from paperlib.data import crystals
from paperlib.data.crystals import (
    MATERIALS,
    ZONE_AXES,
    STEMDataParams,
    make_crystal,
    make_sample,
    oriented_cell,
    simulate_4dstem,
    stem_dataset,
    unit_cell,
)
from paperlib.io import InputValidationError

#: tiny data set: 16 x 16 grid, 2 slices, 2 x 2 scan (an abTEM potential in ~20 ms)
TINY = dict(gpts=16, sampling=0.25, n_slices=2, slice_thickness=2.0, thickness_min=2.0,
            scan_gpts=2, detector_gpts=12)


def _min_distance(atoms, a: str, b: str) -> float:
    """Shortest periodic distance between an atom of species ``a`` and one of ``b`` (Å)."""
    symbols = np.array(atoms.get_chemical_symbols())
    ia, ib = np.flatnonzero(symbols == a), np.flatnonzero(symbols == b)
    big = atoms * (3, 3, 3)  # mic over a small cell: compare within a 3x3x3 supercell
    pos = big.get_positions()
    sym = np.array(big.get_chemical_symbols())
    centre = pos[len(atoms) * 13 + ia]  # the copy of the cell in the middle
    others = pos[sym == b]
    d = np.linalg.norm(centre[:, None] - others[None], axis=-1)
    d = d[d > 1e-6]
    assert len(ib) > 0
    return float(d.min())


@pytest.mark.parametrize("material, n_atoms, bond, expected", [
    # nearest-neighbour distances that follow from the published lattice constant and the
    # structure: zincblende a sqrt(3)/4, perovskite B-O a/2, L1_2 a/sqrt(2), anti-perovskite
    # Tb-C a/2, and 2H-WSe2's W-Se = sqrt(a^2/3 + ((z - 1/4) c)^2) = 2.527 Å (reported
    # W-Se bond length: 2.53 Å)
    ("GaAs", 8, ("Ga", "As"), 5.6533 * math.sqrt(3) / 4),
    ("SrTiO3", 5, ("Ti", "O"), 3.905 / 2),
    ("CoPt3", 4, ("Co", "Pt"), 3.831 / math.sqrt(2)),
    ("Tb3InC", 5, ("C", "Tb"), 4.68 / 2),
    ("WSe2", 6, ("W", "Se"), 2.527),
])
def test_unit_cells_and_lattice_constants(material, n_atoms, bond, expected):
    cell = unit_cell(material)
    spec = MATERIALS[material]
    assert len(cell) == n_atoms
    a, b, c, alpha, beta, gamma = cell.cell.cellpar()
    if spec["family"] == "cubic":
        np.testing.assert_allclose([a, b, c, alpha, beta, gamma], [spec["a"]] * 3 + [90] * 3, atol=1e-9)
    else:
        np.testing.assert_allclose([a, b, c, alpha, beta, gamma],
                                   [spec["a"], spec["a"], spec["c"], 90, 90, 120], atol=1e-9)
    assert _min_distance(cell, *bond) == pytest.approx(expected, abs=2e-3)


def test_published_lattice_constants():
    """The values of the module table (Å); a change here must come with a new source."""
    assert {m: MATERIALS[m]["a"] for m in MATERIALS} == {
        "GaAs": 5.6533, "SrTiO3": 3.905, "CoPt3": 3.831, "Tb3InC": 4.68, "WSe2": 3.282}
    assert MATERIALS["WSe2"]["c"] == 12.96 and MATERIALS["WSe2"]["z_se"] == 0.621


def test_wse2_is_hexagonal():
    """Six in-plane W neighbours at a, 120 degrees apart; the [0001] supercell is a x a sqrt 3."""
    a = MATERIALS["WSe2"]["a"]
    cell = oriented_cell("WSe2", "001")
    np.testing.assert_allclose(cell.cell.lengths(), [a, a * math.sqrt(3), 12.96], atol=1e-9)
    big = cell * (3, 2, 1)
    w = big.get_positions()[np.array(big.get_chemical_symbols()) == "W"]
    layer = w[np.abs(w[:, 2] - w[0, 2]) < 0.1]
    centre = layer[np.argmin(np.linalg.norm(layer[:, :2] - layer[:, :2].mean(0), axis=1))]
    offsets = []
    for image in np.array([[i * big.cell[0, 0], j * big.cell[1, 1]]
                           for i in (-1, 0, 1) for j in (-1, 0, 1)]):
        v = layer[:, :2] + image - centre[:2]
        offsets.append(v[np.abs(np.linalg.norm(v, axis=1) - a) < 1e-6])
    neighbours = np.concatenate(offsets)
    assert len(neighbours) == 6
    angles = np.sort(np.degrees(np.arctan2(neighbours[:, 1], neighbours[:, 0])) % 360)
    np.testing.assert_allclose(np.diff(angles), 60.0, atol=1e-6)
    # the cubic families have no 120-degree cell; the OOD split draws only WSe2
    assert all(unit_cell(m).cell.cellpar()[5] == 90 for m in crystals.CUBIC)


@pytest.mark.parametrize("material", sorted(MATERIALS))
def test_oriented_cells_are_orthogonal_and_keep_density(material):
    base = unit_cell(material)
    density = len(base) / base.get_volume()
    for zone in ZONE_AXES[MATERIALS[material]["family"]]:
        cell = oriented_cell(material, zone)
        assert np.allclose(cell.cell.array, np.diag(cell.cell.lengths()))
        assert len(cell) / cell.get_volume() == pytest.approx(density, rel=1e-9)
        frac = cell.get_scaled_positions()
        assert bool(((frac >= 0) & (frac < 1)).all())
    with pytest.raises(InputValidationError, match="zone_axis: expected one of"):
        oriented_cell(material, "123")


def test_make_crystal_box_thickness_and_vacancies():
    rng = np.random.default_rng(0)
    full = make_crystal("SrTiO3", zone_axis="001", extent=(7.81, 7.81), thickness=7.81,
                        box_depth=10.0, rng=rng, origin=(0.1, 0.1, 0.1))
    assert np.allclose(full.cell.lengths(), [7.81, 7.81, 10.0])
    assert len(full) == 5 * 2 * 2 * 2  # 2 x 2 x 2 cells in the box
    assert full.get_positions()[:, 2].max() < 7.81  # vacuum below the crystal
    thin = make_crystal("SrTiO3", zone_axis="001", extent=(7.81, 7.81), thickness=3.905,
                        box_depth=10.0, rng=rng, origin=(0.1, 0.1, 0.1))
    assert len(thin) == len(full) // 2
    holes = make_crystal("SrTiO3", zone_axis="001", extent=(7.81, 7.81), thickness=7.81,
                         rng=np.random.default_rng(1), vacancy_fraction=0.5,
                         origin=(0.1, 0.1, 0.1))
    assert 5 < len(holes) < 35
    with pytest.raises(InputValidationError, match="material: expected one of"):
        make_crystal("NaCl", zone_axis="001", extent=(5, 5), thickness=5, rng=rng)
    with pytest.raises(InputValidationError, match="thickness <= box_depth"):
        make_crystal("SrTiO3", zone_axis="001", extent=(5, 5), thickness=6, box_depth=5, rng=rng)


def test_samples_are_seeded():
    params = STEMDataParams(**TINY)
    a, b = make_sample(params, "train", 0), make_sample(params, "train", 0)
    assert a.case_id == b.case_id and a.thickness == b.thickness
    torch.testing.assert_close(a.potential, b.potential, rtol=0, atol=0)
    torch.testing.assert_close(a.intensities, b.intensities, rtol=0, atol=0)
    assert a.potential.shape == (2, 16, 16) and a.intensities.shape == (2, 2, 12, 12)
    assert float(a.potential.min()) >= 0 and float(a.potential.max()) > 10  # V·Å
    other_index = make_sample(params, "train", 1)
    other_split = make_sample(params, "val", 0)
    other_seed = make_sample(STEMDataParams(**TINY, seed=1), "train", 0)
    for other in (other_index, other_split, other_seed):
        assert not torch.equal(other.potential, a.potential)
    # families: train/val/test are cubic, balanced by index; ood is hexagonal
    assert [make_sample(params, "test", i).material for i in range(4)] == list(crystals.CUBIC)
    assert make_sample(params, "ood", 0).material == "WSe2"
    # the data are the sample's own operator applied to its potential
    torch.testing.assert_close(a.operator().forward(a.potential), a.intensities)


def test_poisson_noise_is_seeded_and_needs_rng():
    params = STEMDataParams(**TINY, dose=1e4)
    V = make_sample(STEMDataParams(**TINY), "train", 0).potential
    noisy = simulate_4dstem(V, params, rng=np.random.default_rng(5))
    again = simulate_4dstem(V, params, rng=np.random.default_rng(5))
    torch.testing.assert_close(noisy, again, rtol=0, atol=0)
    electrons = 1e4 * params.step**2
    counts = noisy.double() * electrons
    torch.testing.assert_close(counts, counts.round(), rtol=0, atol=1e-3)  # integer counts
    with pytest.raises(InputValidationError, match="rng: a numpy Generator is needed"):
        simulate_4dstem(V, params)


def test_abtem_simulator_agrees_with_torch():
    V = make_sample(STEMDataParams(**TINY), "train", 0).potential
    ours = simulate_4dstem(V, STEMDataParams(**TINY))
    theirs = simulate_4dstem(V, STEMDataParams(**TINY, simulator="abtem"))
    assert float((ours - theirs).norm() / theirs.norm()) < 1e-5


def test_cache_is_keyed_by_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    params = STEMDataParams(**TINY)
    first = stem_dataset(params, "train", 2)
    folder = tmp_path / "crystals" / params.digest()
    assert sorted(p.name for p in folder.iterdir()) == ["train_00000.npz", "train_00001.npz"]

    def fail(*args, **kwargs):
        raise AssertionError("regenerated a cached sample")

    monkeypatch.setattr(crystals, "make_sample", fail)
    again = stem_dataset(STEMDataParams(**TINY), "train", 2)  # equal parameters: cache hit
    for x, y in zip(first, again):
        assert x.case_id == y.case_id and x.seed == y.seed
        torch.testing.assert_close(x.potential, y.potential, rtol=0, atol=0)
        torch.testing.assert_close(x.intensities, y.intensities, rtol=0, atol=0)
        np.testing.assert_array_equal(x.scan_positions, y.scan_positions)
    # any parameter change gives another key (and regenerates)
    digests = {STEMDataParams(**{**TINY, **change}).digest()
               for change in ({}, {"seed": 1}, {"defocus": 10.0}, {"dose": 100.0},
                              {"vacancy_fraction": 0.0})}
    assert len(digests) == 5
    with pytest.raises(AssertionError, match="regenerated"):
        stem_dataset(STEMDataParams(**TINY, seed=1), "train", 1)
    # a damaged file is regenerated, not trusted
    monkeypatch.undo()
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    (folder / "train_00001.npz").write_bytes(b"not a zip file")
    repaired = stem_dataset(params, "train", 2)
    torch.testing.assert_close(repaired[1].potential, first[1].potential, rtol=0, atol=0)


def test_params_validation():
    with pytest.raises(ValueError, match="thickness_min"):
        STEMDataParams(**{**TINY, "thickness_min": 5.0})
    with pytest.raises(ValueError, match="detector_gpts 20 exceeds"):
        STEMDataParams(**{**TINY, "detector_gpts": 20})
    with pytest.raises(ValueError, match="ood_materials: 'GaAs' is not a known hexagonal"):
        STEMDataParams(**TINY, ood_materials=("GaAs",))
    with pytest.raises(ValueError, match="extra"):
        STEMDataParams(**TINY, typo=1)
    with pytest.raises(InputValidationError, match="split: expected one of"):
        make_sample(STEMDataParams(**TINY), "validation", 0)


def test_evaluation_options_off_keep_the_plain_generator_and_its_cache_keys():
    """The issue-16 options at their defaults change nothing: the digest is the one computed
    without those fields (old caches stay valid), and each option on gives a new key."""
    import hashlib
    import json

    params = STEMDataParams(**TINY)
    dump = {k: v for k, v in params.model_dump(mode="json").items() if k not in crystals.EVALUATION_OPTIONS}
    old = hashlib.sha256(json.dumps({"v": crystals.GENERATOR_VERSION, **dump}, sort_keys=True).encode()).hexdigest()
    assert params.digest() == old[:16]
    changes = ({"placement": "random"}, {"frozen_phonons": 2, "phonon_rms": 0.08},
               {"simulator": "abtem", "tilt_mrad": 1.0})
    assert len({params.digest(), *(STEMDataParams(**TINY, **c).digest() for c in changes)}) == 4


def test_random_depth_frozen_phonons_tilt_and_the_fresh_split():
    """A crystal at a random depth has vacuum above it (z_offset > 0 for some sample, recorded,
    and the potential's top slices empty there); frozen-phonon intensities are the mean of
    configurations: different from the static potential's data, still normalised patterns,
    seeded; a tilt needs abTEM and changes the data; test_fresh draws new crystals."""
    tall = dict(TINY, n_slices=4, thickness_min=2.0)
    placed = [make_sample(STEMDataParams(**tall, placement="random"), "test", i) for i in range(4)]
    offsets = [s.z_offset for s in placed]
    assert all(0 <= z <= 8.0 - s.thickness + 1e-9 for z, s in zip(offsets, placed)) and max(offsets) > 2.0
    deep = placed[int(np.argmax(offsets))]
    empty = int(deep.z_offset // 2.0)  # slices of 2 Å wholly above the crystal
    assert empty >= 1 and float(deep.potential[:empty].abs().max()) < 1e-3 * float(deep.potential.max())

    static = make_sample(STEMDataParams(**TINY), "train", 0)
    fp = STEMDataParams(**TINY, frozen_phonons=3, phonon_rms=0.1)
    a, b = make_sample(fp, "train", 0), make_sample(fp, "train", 0)
    torch.testing.assert_close(a.intensities, b.intensities, rtol=0, atol=0)
    torch.testing.assert_close(a.potential, static.potential, rtol=0, atol=0)  # truth: the static potential
    assert a.frozen_phonons == 3 and float((a.intensities - static.intensities).abs().max()) > 1e-4
    torch.testing.assert_close(a.intensities.sum((-2, -1)), static.intensities.sum((-2, -1)), rtol=2e-2, atol=0)

    with pytest.raises(ValueError, match="tilt_mrad"):
        STEMDataParams(**TINY, tilt_mrad=1.0)
    with pytest.raises(ValueError, match="frozen_phonons"):
        STEMDataParams(**TINY, frozen_phonons=2)
    # the tilt acts through the propagation between slices (abTEM's tilted Fresnel propagator): a
    # few mrad through a 16 Å crystal change the patterns by ~0.1-1 %
    thick = dict(TINY, n_slices=8, thickness_min=16.0)
    tilted = make_sample(STEMDataParams(**thick, simulator="abtem", tilt_mrad=5.0), "train", 0)
    plain = make_sample(STEMDataParams(**thick, simulator="abtem"), "train", 0)
    assert max(abs(t) for t in tilted.tilt) > 0 and plain.tilt == (0.0, 0.0)
    assert float((tilted.intensities - plain.intensities).norm() / plain.intensities.norm()) > 1e-4

    fresh = make_sample(STEMDataParams(**TINY), "test_fresh", 0)
    assert fresh.seed[1] == crystals.SPLITS["test_fresh"] and not torch.equal(
        fresh.potential, make_sample(STEMDataParams(**TINY), "test", 0).potential)


def test_evaluation_sample_fields_survive_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PAPERLIB_CACHE", str(tmp_path))
    params = STEMDataParams(**dict(TINY, n_slices=4), placement="random", frozen_phonons=2, phonon_rms=0.05)
    made, = stem_dataset(params, "test_fresh", 1)
    read, = stem_dataset(params, "test_fresh", 1)
    assert (read.z_offset, read.tilt, read.frozen_phonons) == (made.z_offset, made.tilt, 2)
    torch.testing.assert_close(read.intensities, made.intensities, rtol=0, atol=0)


def test_abtem_data_use_fftw_plans_that_do_not_depend_on_timing(monkeypatch):
    """abTEM's default FFTW_MEASURE picks plans by timing them, so two processes could compute
    last-bit-different intensities and Poisson noise different counts (a ``make test`` run gave
    two 3PIE SSIMs of one crystal 3e-4 apart). Our data generation plans with FFTW_ESTIMATE, and
    forgets wisdom an earlier FFTW_MEASURE plan left (FFTW would reuse it for FFTW_ESTIMATE);
    ``fftw_planning=None`` keeps abTEM's own setting for speed comparisons."""
    pyfftw = pytest.importorskip("pyfftw")
    if abtem.config.get("fft") != "fftw":
        pytest.skip("abTEM is configured for another FFT library")
    planned: list[tuple[str, ...]] = []
    real = pyfftw.FFTW

    def recording(*args, **kwargs):
        flags = tuple(kwargs.get("flags", ()))
        if "FFTW_WISDOM_ONLY" not in flags:  # a new plan, not a wisdom lookup
            planned.append(flags)
        return real(*args, **kwargs)

    monkeypatch.setattr(pyfftw, "FFTW", recording)
    params = STEMDataParams(**TINY, simulator="abtem")
    V = make_sample(STEMDataParams(**TINY), "train", 0).potential
    kwargs = dict(sampling=params.sampling, slice_thickness=params.slice_thickness, energy=params.energy,
                  semiangle=params.semiangle, scan_positions=params.scan_positions(),
                  defocus=params.defocus)
    planned.clear()  # the potential's plans
    def wisdom_flags() -> set[str]:  # the planner flags each wisdom entry was made with
        return {line.split()[2] for w in pyfftw.export_wisdom() for line in w.decode().splitlines()[1:]
                if line.strip().startswith("(")}

    crystals.abtem_4dstem(V.numpy(), **kwargs)
    clean = wisdom_flags()  # what planning our way leaves
    planned.clear()
    measured = crystals.abtem_4dstem(V.numpy(), **kwargs, fftw_planning=None)  # abTEM's own: MEASURE
    assert planned and all("FFTW_MEASURE" in f for f in planned)
    assert wisdom_flags() != clean
    planned.clear()
    ours = crystals.abtem_4dstem(V.numpy(), **kwargs)  # the same shapes: MEASURE wisdom exists
    assert planned and all("FFTW_ESTIMATE" in f and "FFTW_MEASURE" not in f for f in planned)
    assert wisdom_flags() == clean, "the FFTW_MEASURE wisdom was kept (FFTW would reuse it)"
    assert abtem.config.get("fftw.planning_effort") == "FFTW_MEASURE"  # abTEM's setting restored
    np.testing.assert_allclose(ours, measured, rtol=1e-4, atol=1e-7)
    planned.clear()
    crystals.crystal_potential(unit_cell("SrTiO3"), gpts=16, n_slices=2)
    assert all("FFTW_ESTIMATE" in f for f in planned)
    again = [make_sample(params, "train", 0).intensities for _ in range(2)]
    assert torch.equal(*again)
    with pytest.raises(InputValidationError, match="fftw_planning: expected one of"):
        crystals.abtem_4dstem(V.numpy(), **kwargs, fftw_planning="FFTW_FAST")
