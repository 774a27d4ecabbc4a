"""Crystals for the 4D-STEM experiments: ase structures -> abTEM potentials (the ground-truth
slices) -> 4D-STEM diffraction data.

The paper trains on cubic crystals and tests out of distribution on hexagonal ones (Sec. 4,
Tables 1 and 2; structures from the Materials Project, potentials from abTEM, durham2022accurate).
We build the same families from published lattice constants:

==========  =================  ==========================  =======================================
material    structure          lattice constant (Å)        source
==========  =================  ==========================  =======================================
GaAs        zincblende, F-43m  a = 5.6533                  Madelung, *Semiconductors: Data
                                                           Handbook*, 3rd ed., Springer 2004 (300 K)
SrTiO3      perovskite, Pm-3m  a = 3.905                   room-temperature X-ray value, e.g.
                                                           Okazaki & Kawaminami, Mater. Res. Bull.
                                                           8, 545 (1973); Materials Project mp-5229
CoPt3       L1_2 (Cu3Au), Pm-3m a = 3.831                  ordered CoPt3 (Villars & Calvert,
                                                           *Pearson's Handbook*, ASM 1991); also
                                                           Vegard's law between fcc Pt (3.924) and
                                                           fcc Co (3.545) at 75 % Pt gives 3.829
Tb3InC      anti-perovskite    a = 4.68 (approximate)      see note below
            (Pm-3m; In corner,
            C body centre, Tb
            face centres)
WSe2        2H, P6_3/mmc       a = 3.282, c = 12.96,       Schutte, de Boer & Jellinek, J. Solid
            (OOD family)       z(Se) = 0.621               State Chem. 70, 207 (1987)
==========  =================  ==========================  =======================================

Note on Tb3InC: the R3InC (R = rare earth) anti-perovskite carbides are reported with
a ≈ 4.6–4.9 Å, decreasing along the lanthanide series; we could not consult a primary source
for Tb3InC offline, so we use 4.68 Å, which puts the Tb–C distance (a / 2 = 2.34 Å) at the
value typical of octahedral C in Tb carbides and the Tb–Tb distance (a / sqrt 2 = 3.31 Å) a
few per cent below hcp Tb's 3.60 Å (Spedding et al., Acta Cryst. 9, 559, 1956), as expected
for a carbide. The value only sets the period of one training material; treat it as
approximate.

Sample generation (all randomness from one ``numpy.random.Generator`` seeded by
``(params.seed, split, index)``):

* material ``index mod len(family)`` (so every small split is balanced); zone axis uniformly
  from the family's list
  (cubic: ``001``, ``011``, ``111`` — every one gives an orthogonal supercell; hexagonal:
  ``001`` = [0001], and ``100`` = [2-1-10], a side view of the layers);
* the crystal is cut from the infinite lattice, with a random origin, into the fixed box
  ``extent x extent x (n_slices * slice_thickness)`` (Å). Its thickness is drawn uniformly in
  ``[thickness_min, n_slices * slice_thickness]``; slices below it are vacuum. The box is
  periodic laterally (abTEM and our operator wrap around); where the lattice period does not
  divide the extent there is a boundary (a seam) at the box edge — part of the ground truth;
* Gaussian "thermal" displacements of rms ``displacement_rms`` per coordinate and vacancies
  with probability ``vacancy_fraction`` per atom;
* abTEM (Lobato parametrisation, infinite projection) computes the projected potential of every
  slice on the fixed grid: ``(D, H, W)`` float32 in V·Å, the ground truth;
* 4D-STEM intensities from our multislice operator (``simulator="torch"``, tested against
  abTEM) or abTEM itself (``simulator="abtem"``, full grid only), optionally with Poisson noise
  for a dose in e-/Å².

Evaluation data that the methods did not come from (issue 16; every option off by default, and
then the samples, their random streams and the cache keys are those of the plain generator):

* ``placement="random"``: the crystal at a random depth of the box (its top drawn uniformly in
  ``[0, box depth - thickness]``), vacuum above and below, instead of at the entrance surface;
* ``frozen_phonons=N`` with ``phonon_rms``: the intensities are the mean over ``N`` frozen-phonon
  configurations (every atom displaced by an independent Gaussian of ``phonon_rms`` Å per
  coordinate, on top of the static disorder), each simulated in full, then noised once; the
  ground truth stays the static potential (the frozen-phonon average of the data is not the
  intensity of any one potential: a model mismatch the reconstructions must live with);
* ``tilt_mrad``: a small beam tilt, uniform in ``[-tilt_mrad, tilt_mrad]`` per axis, drawn per
  sample (abTEM's ``Probe(tilt=)``, so ``simulator="abtem"`` only); the reconstructions are not
  told;
* the ``test_fresh`` and ``ood_fresh`` splits: new seeds for cubic and hexagonal test sets that
  no design choice has seen.

Datasets are cached sample by sample under ``paths.cache_dir() / "crystals" / <hash>``, the
hash taken over every generation parameter, and written atomically.

>>> atoms = make_crystal("SrTiO3", zone_axis="001", extent=(7.81, 7.81), thickness=3.905,
...                      box_depth=3.905, rng=np.random.default_rng(0))
>>> sorted(set(atoms.get_chemical_symbols()))
['O', 'Sr', 'Ti']
>>> len(atoms)
20
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from ase import Atoms
from ase.build import make_supercell
from ase.spacegroup import crystal
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .. import paths
from ..io import InputValidationError, atomic_path

logger = logging.getLogger(__name__)

__all__ = [
    "MATERIALS",
    "CUBIC",
    "HEXAGONAL",
    "ZONE_AXES",
    "unit_cell",
    "oriented_cell",
    "make_crystal",
    "crystal_potential",
    "abtem_4dstem",
    "reproducible_fftw",
    "simulate_4dstem",
    "poisson_counts",
    "EVALUATION_OPTIONS",
    "STEMDataParams",
    "STEMSample",
    "make_sample",
    "stem_dataset",
]

#: bump when the generation code changes the produced numbers (invalidates the cache)
GENERATOR_VERSION = 2

CUBIC = ("GaAs", "SrTiO3", "CoPt3", "Tb3InC")
HEXAGONAL = ("WSe2",)

#: lattice constants in Å (sources in the module docstring)
MATERIALS: dict[str, dict] = {
    "GaAs": dict(family="cubic", a=5.6533),
    "SrTiO3": dict(family="cubic", a=3.905),
    "CoPt3": dict(family="cubic", a=3.831),
    "Tb3InC": dict(family="cubic", a=4.68),
    "WSe2": dict(family="hexagonal", a=3.282, c=12.96, z_se=0.621),
}

#: orthogonal supercells: rows are the new (row axis, column axis, beam) vectors in units of the
#: conventional cell vectors; every matrix has a positive determinant (right-handed).
ZONE_AXES: dict[str, dict[str, tuple[tuple[int, int, int], ...]]] = {
    "cubic": {
        "001": ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
        "011": ((1, 0, 0), (0, 1, -1), (0, 1, 1)),
        "111": ((1, -1, 0), (1, 1, -2), (1, 1, 1)),
    },
    "hexagonal": {
        "001": ((1, 0, 0), (1, 2, 0), (0, 0, 1)),  # beam along c = [0001]
        "100": ((1, 2, 0), (0, 0, 1), (1, 0, 0)),  # beam along a1 = [2-1-10]
    },
}


def _check_material(material: str) -> dict:
    if material not in MATERIALS:
        raise InputValidationError(f"material: expected one of {sorted(MATERIALS)}, got {material!r}")
    return MATERIALS[material]


def unit_cell(material: str) -> Atoms:
    """Conventional unit cell of ``material`` (ase ``Atoms``; cubic cells are cubes, WSe2 the
    hexagonal cell with two formula units)."""
    spec = _check_material(material)
    a = spec["a"]
    cubic = dict(spacegroup=221, cellpar=[a, a, a, 90, 90, 90])
    if material == "GaAs":
        return crystal(["Ga", "As"], basis=[(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=216,
                       cellpar=[a, a, a, 90, 90, 90])
    if material == "SrTiO3":
        return crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], **cubic)
    if material == "CoPt3":
        return crystal(["Co", "Pt"], basis=[(0, 0, 0), (0, 0.5, 0.5)], **cubic)
    if material == "Tb3InC":
        return crystal(["In", "C", "Tb"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], **cubic)
    # WSe2, 2H: W on 2c (1/3, 2/3, 1/4), Se on 4f (1/3, 2/3, z)
    return crystal(["W", "Se"], basis=[(1 / 3, 2 / 3, 0.25), (1 / 3, 2 / 3, spec["z_se"])],
                   spacegroup=194, cellpar=[a, a, spec["c"], 90, 90, 120])


def oriented_cell(material: str, zone_axis: str) -> Atoms:
    """Orthogonal supercell with the zone axis along z (the beam), axis-aligned cell.

    >>> [round(float(v), 3) for v in oriented_cell("GaAs", "011").cell.lengths()]
    [5.653, 7.995, 7.995]
    """
    family = _check_material(material)["family"]
    axes = ZONE_AXES[family]
    if zone_axis not in axes:
        raise InputValidationError(
            f"zone_axis: expected one of {sorted(axes)} for the {family} material {material}, "
            f"got {zone_axis!r}"
        )
    sup = make_supercell(unit_cell(material), np.array(axes[zone_axis]))
    lengths = sup.cell.lengths()
    # the supercell vectors are mutually orthogonal: replacing the cell by the diagonal one with
    # scale_atoms=True keeps fractional coordinates, i.e. rotates the crystal onto the axes
    sup.set_cell(np.diag(lengths), scale_atoms=True)
    sup.wrap()
    return sup


def make_crystal(
    material: str,
    *,
    zone_axis: str,
    extent: tuple[float, float],
    thickness: float,
    box_depth: float | None = None,
    rng: np.random.Generator,
    displacement_rms: float = 0.0,
    vacancy_fraction: float = 0.0,
    origin: Sequence[float] | None = None,
    z_offset: float = 0.0,
) -> Atoms:
    """Cut a crystal into an orthogonal box.

    Parameters
    ----------
    material : one of :data:`MATERIALS`.
    zone_axis : a key of :data:`ZONE_AXES` for the material's family.
    extent : (rows, columns) lateral size of the box in Å (periodic).
    thickness : Å of crystal along the beam, from z = ``z_offset``.
    box_depth : Å, the box (cell) depth; defaults to ``thickness`` (vacuum below the crystal
        when larger).
    z_offset : Å of vacuum above the crystal (``z_offset + thickness <= box_depth``).
    rng : numpy Generator; draws the origin (unless given), displacements and vacancies.
    displacement_rms : Å, standard deviation of the Gaussian displacement of each coordinate.
    vacancy_fraction : probability that an atom is removed.
    origin : optional (3,) Å offset of the lattice inside its oriented cell.

    Returns
    -------
    ase.Atoms with cell ``diag(extent[0], extent[1], box_depth)``, pbc True.
    """
    cell_atoms = oriented_cell(material, zone_axis)
    lengths = cell_atoms.cell.lengths()
    depth = float(thickness if box_depth is None else box_depth)
    if not (0 < thickness <= depth + 1e-9) or min(extent) <= 0:
        raise InputValidationError(
            f"extent, thickness, box_depth: expected positive Å with thickness <= box_depth, got "
            f"{extent}, {thickness}, {box_depth}"
        )
    if not (z_offset >= 0 and z_offset + thickness <= depth + 1e-9):
        raise InputValidationError(f"z_offset: expected 0 <= z_offset <= box_depth - thickness = "
                                   f"{depth - thickness:g} Å, got {z_offset!r}")
    if not 0 <= vacancy_fraction < 1 or displacement_rms < 0:
        raise InputValidationError(
            f"vacancy_fraction, displacement_rms: expected [0, 1) and >= 0, got {vacancy_fraction}, "
            f"{displacement_rms}"
        )
    box = np.array([extent[0], extent[1], thickness], dtype=np.float64)
    offset = rng.uniform(0, lengths) if origin is None else np.asarray(origin, dtype=np.float64)
    reps = [int(math.ceil(b / l)) + 1 for b, l in zip(box, lengths)]
    tiled = cell_atoms * reps
    pos = tiled.get_positions() - offset
    keep = np.all((pos >= -1e-9) & (pos < box - 1e-9), axis=1)
    numbers = tiled.get_atomic_numbers()[keep]
    pos = pos[keep]
    if displacement_rms > 0:
        pos = pos + rng.normal(0.0, displacement_rms, size=pos.shape)
    if vacancy_fraction > 0:
        present = rng.random(len(pos)) >= vacancy_fraction
        pos, numbers = pos[present], numbers[present]
    pos[:, :2] = np.mod(pos[:, :2], box[:2])
    pos[:, 2] = np.clip(pos[:, 2] + z_offset, 0.0, np.nextafter(depth, 0))
    return Atoms(numbers=numbers, positions=pos, cell=np.diag([box[0], box[1], depth]), pbc=True)


#: abTEM's FFTW planning for the data the tables use: plans chosen without timing (see
#: :func:`reproducible_fftw`)
FFTW_PLANNING = "FFTW_ESTIMATE"
#: FFTW's planner rigours (``FFTW_ESTIMATE`` is the only one that times nothing)
FFTW_PLANNINGS = ("FFTW_ESTIMATE", "FFTW_MEASURE", "FFTW_PATIENT", "FFTW_EXHAUSTIVE")


@contextlib.contextmanager
def reproducible_fftw(planning: str | None = FFTW_PLANNING):
    """abTEM's FFTs made with FFTW plans that do not depend on timing, inside the block.

    abTEM transforms with FFTW at ``FFTW_MEASURE`` by default: the planner times candidate
    algorithms and keeps the fastest, so two processes (or two machines under different load)
    may pick different plans, whose results differ in the last bits. Poisson noise turns those
    last bits into different counts: a pixel's count can change with its mean's last bit, and where
    that changes how many uniforms ``numpy``'s sampler consumes, so do the counts of the pixels
    after it (seen in ``make test``: one abTEM crystal's 3PIE SSIM 0.834388 in one run, 0.834079
    in the next; on the AVX2 CPU, three runs of the default profile's first test crystal gave two
    different sets of counts, a few pixels apart). ``FFTW_ESTIMATE`` picks the plan by heuristics alone, so a machine and thread
    count always get the same plan and the same numbers. FFTW reuses wisdom of a higher rigour
    for a lower one, so the wisdom of earlier ``FFTW_MEASURE`` plans in this process is forgotten
    on entry (``pyfftw.forget_wisdom``; later ``FFTW_MEASURE`` requests plan again), which also
    keeps it away from the ``FFTW_ESTIMATE`` plans of
    :class:`~paperlib.physics.multislice.MultisliceOperator`. ``planning=None`` leaves abTEM's own
    setting (what a speed comparison with abTEM should time)."""
    if planning is None:
        yield
        return
    if planning not in FFTW_PLANNINGS:
        raise InputValidationError(f"fftw_planning: expected one of {FFTW_PLANNINGS} or None (abTEM's own "
                                   f"setting), got {planning!r}")
    import abtem

    if abtem.config.get("fft") == "fftw":
        import pyfftw

        pyfftw.forget_wisdom()
    with abtem.config.set({"fftw.planning_effort": planning}):
        yield


def crystal_potential(
    atoms: Atoms, *, gpts: int | tuple[int, int], n_slices: int, parametrization: str = "lobato",
    fftw_planning: str | None = FFTW_PLANNING,
) -> np.ndarray:
    """abTEM projected potential of ``atoms`` in ``n_slices`` equal slices of the cell depth:
    ``(D, H, W)`` float32 in V·Å (infinite projection: each atom in the slice holding it).
    ``fftw_planning``: see :func:`reproducible_fftw`."""
    import abtem

    depth = float(atoms.cell[2, 2])
    potential = abtem.Potential(
        atoms, gpts=gpts, slice_thickness=depth / n_slices, parametrization=parametrization,
        projection="infinite",
    )
    with reproducible_fftw(fftw_planning):
        array = np.asarray(potential.build().compute(progress_bar=False).array, dtype=np.float32)
    if array.shape[0] != n_slices:  # pragma: no cover - abTEM rounding guard
        raise RuntimeError(f"abTEM produced {array.shape[0]} slices, expected {n_slices}")
    return array


def abtem_4dstem(
    potential: np.ndarray,
    *,
    sampling: float,
    slice_thickness: float,
    energy: float,
    semiangle: float,
    scan_positions: np.ndarray,
    defocus: float = 0.0,
    detector_shape: tuple[int, int] | None = None,
    tilt: tuple[float, float] = (0.0, 0.0),
    fftw_planning: str | None = FFTW_PLANNING,
) -> np.ndarray:
    """abTEM's own 4D-STEM simulation of a given potential (full pattern, centre-cropped).

    Parameters
    ----------
    potential : (D, H, W) V·Å.  sampling, slice_thickness : Å.  energy : keV.
    semiangle : mrad.  scan_positions : (Sy, Sx, 2) Å (our axis convention = abTEM's x, y).
    defocus : Å.  detector_shape : centre crop of the fftshifted pattern (default full).
    tilt : beam tilt (mrad) along abTEM's (x, y).
    fftw_planning : FFTW planning of abTEM's transforms (:func:`reproducible_fftw`); ``None``
        keeps abTEM's configured one.

    Returns
    -------
    (Sy, Sx, Ky, Kx) float32 intensities (abTEM's precision setting).
    """
    import abtem

    potential = np.asarray(potential)
    array = abtem.PotentialArray(potential, sampling=sampling, slice_thickness=slice_thickness)
    probe = abtem.Probe(energy=energy * 1e3, semiangle_cutoff=semiangle, defocus=defocus,
                        tilt=tuple(float(t) for t in tilt))
    probe.grid.match(array)
    pos = np.asarray(scan_positions)
    scan = abtem.CustomScan(pos.reshape(-1, 2))
    detector = abtem.PixelatedDetector(max_angle=None)
    with reproducible_fftw(fftw_planning):
        measured = probe.scan(array, scan=scan, detectors=detector).compute(progress_bar=False)
    out = np.asarray(measured.array).reshape(*pos.shape[:2], *potential.shape[-2:])
    if detector_shape is not None:
        h, w = potential.shape[-2:]
        ky, kx = detector_shape
        out = out[..., h // 2 - ky // 2: h // 2 - ky // 2 + ky, w // 2 - kx // 2: w // 2 - kx // 2 + kx]
    return out


# --------------------------------------------------------------------------- parameters
class STEMDataParams(BaseModel):
    """Generation parameters of the crystal 4D-STEM data sets (a profile's ``stem:`` section).

    Defaults are sized for a 2-core CPU: a 64 x 64 grid of 0.2 Å (12.8 Å field of view), 8
    slices of 2 Å, 200 kV, 20 mrad, a 16 x 16 scan covering the whole (periodic) field of view
    (0.8 Å steps), 30 Å defocus so neighbouring probes overlap, full-grid propagation (exactly
    abTEM's model) and a 48 x 48 detector: the centre crop that still holds every non-zero
    pixel (the antialiasing aperture leaves a disk of 2/3 Nyquist, 42.7 px across), i.e. up to
    41.8 mrad. A ``window`` (e.g. 32) is about 3x faster but differs from the full-grid model
    by ~7 % (relative L2 of the patterns; see ``paperlib.physics.multislice``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    gpts: int = Field(64, ge=8, description="pixels of the square potential grid")
    sampling: float = Field(0.2, gt=0, description="Å per pixel")
    n_slices: int = Field(8, ge=1, description="D, slices of the ground-truth volume")
    slice_thickness: float = Field(2.0, gt=0, description="Å")
    thickness_min: float = Field(8.0, gt=0, description="Å; crystal thickness ~ U[min, D*dz]")
    energy: float = Field(200.0, gt=0, description="keV")
    semiangle: float = Field(20.0, gt=0, description="convergence semi-angle, mrad")
    defocus: float = Field(30.0, description="Å, positive = underfocus (abTEM sign)")
    scan_gpts: int = Field(16, ge=1, description="scan positions per axis")
    scan_step: float | None = Field(None, gt=0, description="Å; None = extent / scan_gpts")
    window: int | None = Field(None, ge=4, description="propagation window, px; None = full grid")
    detector_gpts: int | None = Field(
        48, ge=4, description="centre crop of the patterns, px; None = the window (or grid)"
    )
    dose: float | None = Field(None, gt=0, description="e-/Å^2 for Poisson noise; None = noiseless")
    displacement_rms: float = Field(0.05, ge=0, description="Å, Gaussian per coordinate")
    vacancy_fraction: float = Field(0.02, ge=0, lt=1)
    cubic_materials: tuple[str, ...] = CUBIC
    cubic_zone_axes: tuple[str, ...] = ("001", "011", "111")
    ood_materials: tuple[str, ...] = HEXAGONAL
    ood_zone_axes: tuple[str, ...] = ("001",)
    simulator: Literal["torch", "abtem"] = "torch"
    seed: int = 0
    placement: Literal["entrance", "random"] = Field(
        "entrance", description="crystal from the entrance surface, or at a random depth (vacuum above and below)")
    frozen_phonons: int = Field(1, ge=1, description="frozen-phonon configurations averaged (1 = static)")
    phonon_rms: float = Field(0.0, ge=0, description="Å, Gaussian per coordinate and configuration")
    tilt_mrad: float = Field(0.0, ge=0, description="largest beam tilt per axis, mrad (simulator 'abtem')")

    @model_validator(mode="after")
    def _consistent(self) -> "STEMDataParams":
        depth = self.n_slices * self.slice_thickness
        if self.thickness_min > depth:
            raise ValueError(f"thickness_min {self.thickness_min} Å exceeds n_slices * "
                             f"slice_thickness = {depth} Å")
        if self.window is not None and self.window > self.gpts:
            raise ValueError(f"window {self.window} exceeds gpts {self.gpts}")
        if self.simulator == "abtem" and self.window not in (None, self.gpts):
            raise ValueError("simulator 'abtem' computes the full grid: set window to None")
        if self.tilt_mrad > 0 and self.simulator != "abtem":
            raise ValueError("tilt_mrad: a beam tilt needs simulator 'abtem' (our operator has no tilt)")
        if (self.frozen_phonons > 1) != (self.phonon_rms > 0):
            raise ValueError(f"frozen_phonons {self.frozen_phonons} and phonon_rms {self.phonon_rms}: set both "
                             "(several configurations of displaced atoms) or neither")
        if self.detector_gpts is not None and self.detector_gpts > (self.window or self.gpts):
            raise ValueError(f"detector_gpts {self.detector_gpts} exceeds the window/grid "
                             f"{self.window or self.gpts}")
        for name, family, materials, axes in (
            ("cubic", "cubic", self.cubic_materials, self.cubic_zone_axes),
            ("ood", "hexagonal", self.ood_materials, self.ood_zone_axes),
        ):
            for m in materials:
                if m not in MATERIALS or MATERIALS[m]["family"] != family:
                    raise ValueError(f"{name}_materials: {m!r} is not a known {family} material")
            for z in axes:
                if z not in ZONE_AXES[family]:
                    raise ValueError(f"{name}_zone_axes: {z!r} not in {sorted(ZONE_AXES[family])}")
        return self

    @property
    def extent(self) -> float:
        """Lateral field of view in Å."""
        return self.gpts * self.sampling

    @property
    def step(self) -> float:
        """Scan step in Å."""
        return self.scan_step if self.scan_step is not None else self.extent / self.scan_gpts

    def scan_positions(self) -> np.ndarray:
        """(Sy, Sx, 2) Å: a square grid centred in the field of view."""
        from ..physics.multislice import grid_scan

        span = self.step * self.scan_gpts
        start = (self.extent - span) / 2
        return grid_scan((start, start), (start + span, start + span), self.scan_gpts)

    def operator(self, **overrides):
        """The :class:`~paperlib.physics.multislice.MultisliceOperator` of these optics, grid, scan
        and detector (``overrides`` are passed on, e.g. ``dtype``)."""
        from ..physics.multislice import MultisliceOperator

        kwargs = dict(
            gpts=self.gpts, sampling=self.sampling, energy=self.energy, semiangle=self.semiangle,
            defocus=self.defocus, slice_thickness=self.slice_thickness, n_slices=self.n_slices,
            scan_positions=self.scan_positions(), window=self.window,
            detector_shape=None if self.detector_gpts is None else (self.detector_gpts,) * 2,
        )
        return MultisliceOperator(**{**kwargs, **overrides})

    def digest(self) -> str:
        """Hash of every generation parameter (and the generator version): the cache key.

        The evaluation options (:data:`EVALUATION_OPTIONS`) enter only where they are not at
        their defaults, so that data made without them keep their keys."""
        dump = self.model_dump(mode="json")
        for name in EVALUATION_OPTIONS:
            if dump[name] == type(self).model_fields[name].default:
                del dump[name]
        blob = json.dumps({"v": GENERATOR_VERSION, **dump}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


SPLITS = {"train": 0, "val": 1, "test": 2, "ood": 3, "test_fresh": 4, "ood_fresh": 5}
#: the splits of the hexagonal (out-of-distribution) family; the others are cubic
HEXAGONAL_SPLITS = ("ood", "ood_fresh")
#: the STEMDataParams fields of the evaluation data (module docstring), off by default
EVALUATION_OPTIONS = ("placement", "frozen_phonons", "phonon_rms", "tilt_mrad")


@dataclass(frozen=True)
class STEMSample:
    """One crystal: ground-truth potential and its 4D-STEM data.

    Attributes
    ----------
    potential : (D, H, W) float32 tensor, V·Å (ground truth).
    intensities : (Sy, Sx, Ky, Kx) float32 tensor; patterns sum to ~1 (noiseless) or are
        Poisson counts divided by the electrons per position.
    scan_positions : (Sy, Sx, 2) float64 array, Å.
    sampling, slice_thickness : Å.  energy : keV.  semiangle : mrad.  defocus : Å.
    window : propagation window of the simulation (None = full grid).
    material, zone_axis : what was simulated.  thickness : Å of crystal (rest is vacuum).
    dose : e-/Å² or None.  seed : the integer seed material the sample was drawn from.
    z_offset : Å of vacuum above the crystal (0: at the entrance surface).
    tilt : beam tilt (mrad) the data were simulated with (the operator does not know it).
    frozen_phonons : configurations averaged in the intensities (1 = static).
    """

    potential: torch.Tensor
    intensities: torch.Tensor
    scan_positions: np.ndarray
    sampling: float
    slice_thickness: float
    energy: float
    semiangle: float
    defocus: float
    window: int | None
    material: str
    zone_axis: str
    thickness: float
    dose: float | None
    seed: tuple[int, int, int]
    case_id: str = ""
    z_offset: float = 0.0
    tilt: tuple[float, float] = (0.0, 0.0)
    frozen_phonons: int = 1

    def operator(self, **overrides):
        """The :class:`~paperlib.physics.multislice.MultisliceOperator` that simulated it."""
        from ..physics.multislice import MultisliceOperator

        return MultisliceOperator.from_sample(self, **overrides)


def simulate_4dstem(
    potential: np.ndarray | torch.Tensor,
    params: STEMDataParams,
    *,
    rng: np.random.Generator | None = None,
    tilt: tuple[float, float] = (0.0, 0.0),
    noise: bool = True,
) -> torch.Tensor:
    """4D-STEM intensities ``(Sy, Sx, Ky, Kx)`` float32 of a potential with the optics, scan
    and simulator of ``params``; Poisson noise when ``params.dose`` is set and ``noise`` (needs
    ``rng``, :func:`poisson_counts`). ``tilt``: beam tilt in mrad (abTEM only)."""
    pos = params.scan_positions()
    if params.simulator == "abtem":
        intens = torch.from_numpy(abtem_4dstem(
            np.asarray(potential, dtype=np.float32), sampling=params.sampling,
            slice_thickness=params.slice_thickness, energy=params.energy,
            semiangle=params.semiangle, scan_positions=pos, defocus=params.defocus,
            detector_shape=None if params.detector_gpts is None else (params.detector_gpts,) * 2, tilt=tilt,
        )).float()
    else:
        if tuple(tilt) != (0.0, 0.0):
            raise InputValidationError(f"tilt: our operator has no beam tilt (got {tilt} mrad); use simulator 'abtem'")
        op = params.operator()
        with torch.no_grad():
            intens = op.forward(torch.as_tensor(np.asarray(potential), dtype=torch.float32))
    if noise and params.dose is not None:
        intens = poisson_counts(intens, params, rng)
    return intens.float()


def poisson_counts(intensities: torch.Tensor, params: STEMDataParams, rng: np.random.Generator | None) -> torch.Tensor:
    """Poisson noise at ``params.dose`` e-/Å²: counts of ``I * dose * step^2`` electrons per
    pattern pixel, divided back by the electrons per scan position (so noiseless patterns and
    noisy ones share units)."""
    if rng is None:
        raise InputValidationError("rng: a numpy Generator is needed for Poisson noise (dose set)")
    electrons = params.dose * params.step**2  # e- per scan position
    counts = rng.poisson(np.clip(intensities.numpy().astype(np.float64), 0, None) * electrons)
    return torch.from_numpy((counts / electrons).astype(np.float32))


def make_sample(params: STEMDataParams, split: str, index: int) -> STEMSample:
    """Draw sample ``index`` of ``split`` (``train``/``val``/``test``/``test_fresh``: cubic;
    ``ood``/``ood_fresh``: hexagonal)."""
    if split not in SPLITS:
        raise InputValidationError(f"split: expected one of {sorted(SPLITS)}, got {split!r}")
    seed = (int(params.seed), SPLITS[split], int(index))
    rng = np.random.default_rng(seed)
    materials, axes = (
        (params.ood_materials, params.ood_zone_axes) if split in HEXAGONAL_SPLITS
        else (params.cubic_materials, params.cubic_zone_axes)
    )
    material = materials[int(index) % len(materials)]  # balanced families, even for small n
    zone = axes[int(rng.integers(len(axes)))]
    depth = params.n_slices * params.slice_thickness
    thickness = float(rng.uniform(params.thickness_min, depth))
    # the evaluation options draw only when on, so the plain generator's streams are unchanged
    z_offset = float(rng.uniform(0.0, depth - thickness)) if params.placement == "random" else 0.0
    atoms = make_crystal(
        material, zone_axis=zone, extent=(params.extent, params.extent), thickness=thickness,
        box_depth=depth, rng=rng, displacement_rms=params.displacement_rms,
        vacancy_fraction=params.vacancy_fraction, z_offset=z_offset,
    )
    tilt = tuple(float(t) for t in rng.uniform(-params.tilt_mrad, params.tilt_mrad, 2)) \
        if params.tilt_mrad > 0 else (0.0, 0.0)
    potential = crystal_potential(atoms, gpts=params.gpts, n_slices=params.n_slices)
    if params.frozen_phonons > 1:
        intensities = torch.stack([
            simulate_4dstem(crystal_potential(_displaced(atoms, params.phonon_rms, rng), gpts=params.gpts,
                                              n_slices=params.n_slices), params, tilt=tilt, noise=False)
            for _ in range(params.frozen_phonons)]).mean(0)
        if params.dose is not None:
            intensities = poisson_counts(intensities, params, rng)
    else:
        intensities = simulate_4dstem(potential, params, rng=rng, tilt=tilt)
    return STEMSample(
        potential=torch.from_numpy(potential), intensities=intensities,
        scan_positions=params.scan_positions(), sampling=params.sampling,
        slice_thickness=params.slice_thickness, energy=params.energy,
        semiangle=params.semiangle, defocus=params.defocus, window=params.window,
        material=material, zone_axis=zone, thickness=thickness, dose=params.dose, seed=seed,
        case_id=f"{split}{index:03d}-{material}-{zone}", z_offset=z_offset, tilt=tilt,
        frozen_phonons=params.frozen_phonons,
    )


def _displaced(atoms: Atoms, rms: float, rng: np.random.Generator) -> Atoms:
    """A frozen-phonon configuration: every coordinate moved by N(0, rms²) Å, laterally wrapped in
    the periodic box, kept inside the box in depth."""
    out = atoms.copy()
    pos = out.get_positions() + rng.normal(0.0, rms, size=(len(out), 3))
    box = np.diag(np.asarray(out.cell))
    pos[:, :2] = np.mod(pos[:, :2], box[:2])
    pos[:, 2] = np.clip(pos[:, 2], 0.0, np.nextafter(box[2], 0))
    out.set_positions(pos)
    return out


def _sample_path(params: STEMDataParams, split: str, index: int) -> Path:
    return paths.cache_dir() / "crystals" / params.digest() / f"{split}_{index:05d}.npz"


def _save(sample: STEMSample, path: Path) -> None:
    meta = dict(
        sampling=sample.sampling, slice_thickness=sample.slice_thickness, energy=sample.energy,
        semiangle=sample.semiangle, defocus=sample.defocus, window=sample.window,
        material=sample.material, zone_axis=sample.zone_axis, thickness=sample.thickness,
        dose=sample.dose, seed=list(sample.seed), case_id=sample.case_id, z_offset=sample.z_offset,
        tilt=list(sample.tilt), frozen_phonons=sample.frozen_phonons,
    )
    buffer = io.BytesIO()
    np.savez_compressed(
        buffer, potential=sample.potential.numpy(), intensities=sample.intensities.numpy(),
        scan_positions=sample.scan_positions, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
    )
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _load(path: Path) -> STEMSample:
    with np.load(path) as data:
        meta = json.loads(bytes(data["meta"]).decode())
        return STEMSample(
            potential=torch.from_numpy(data["potential"].copy()),
            intensities=torch.from_numpy(data["intensities"].copy()),
            scan_positions=data["scan_positions"].copy(),
            sampling=meta["sampling"], slice_thickness=meta["slice_thickness"],
            energy=meta["energy"], semiangle=meta["semiangle"], defocus=meta["defocus"],
            window=meta["window"], material=meta["material"], zone_axis=meta["zone_axis"],
            thickness=meta["thickness"], dose=meta["dose"], seed=tuple(meta["seed"]),
            case_id=meta["case_id"], z_offset=meta.get("z_offset", 0.0),
            tilt=tuple(meta.get("tilt", (0.0, 0.0))), frozen_phonons=meta.get("frozen_phonons", 1),
        )


def stem_dataset(
    params: STEMDataParams,
    split: Literal["train", "val", "test", "ood", "test_fresh", "ood_fresh"],
    n: int,
    *,
    cache: bool = True,
    progress: bool = False,
) -> list[STEMSample]:
    """The first ``n`` samples of a split, generated once and cached.

    Sample ``i`` depends only on ``(params, split, i)``, so growing ``n`` reuses the cache.
    ``train``, ``val``, ``test`` and ``test_fresh`` draw cubic crystals with different seeds;
    ``ood`` and ``ood_fresh`` draw the hexagonal family.
    """
    from tqdm.auto import tqdm

    if n < 0:
        raise InputValidationError(f"n: expected >= 0, got {n}")
    out = []
    for i in tqdm(range(n), desc=f"crystals {split}", disable=not progress):
        path = _sample_path(params, split, i)
        if cache and path.is_file():
            try:
                out.append(_load(path))
                continue
            except Exception as exc:  # a damaged cache file is regenerated
                logger.warning("regenerating unreadable cache file %s (%s)", path, exc)
        sample = make_sample(params, split, i)
        if cache:
            _save(sample, path)
        out.append(sample)
    return out
