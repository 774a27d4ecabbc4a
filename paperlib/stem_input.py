"""A microscope's 4D-STEM data for ``python -m paperlib reconstruct --modality stem``.

Three things are read and checked here before any reconstruction starts:

**The acquisition file** (``--acquisition``, YAML or JSON): :class:`STEMAcquisition`, the optics,
grid, scan and slicing of *one measurement*, in physical units (keV, mrad, Å). It is not
:class:`paperlib.data.crystals.STEMDataParams`, which describes how the package *generates*
crystals (vacancies, seeds, materials). Required physical quantities have no default; unknown
keys are refused with the list of valid ones; every key, its unit and its default are listed by
:func:`acquisition_keys_table` (``reconstruct --help`` and the README print that table).

**The intensities** (``--data``): an array ``(Sy, Sx, Ky, Kx)``: scan rows, scan columns,
detector rows, detector columns. The first scan axis moves the probe along the potential's rows
(axis ``H``, abTEM's *x*; ``scan_step[0]``), the first detector axis is the same direction in
reciprocal space (no scan rotation or flip between them). Each pattern is centred: the
undiffracted beam at pixel ``(Ky // 2, Kx // 2)`` (``fftshift`` order), which is checked
(:func:`beam_centre`). Readers (:func:`read_intensities`):

* ``.npy`` — the array itself;
* HDF5 (``.h5``, ``.hdf5``, ``.emd``) — py4DSTEM's EMD 1.0 tree (file attribute
  ``emd_group_type = 'file'``, ``version_major = 1``; a node with ``emd_group_type = 'array'``
  and ``python_class = 'DataCube'`` holding ``data`` and the calibration vectors ``dim0`` ..
  ``dim3`` with ``units`` attributes), or any HDF5 file with one 4D dataset, or the dataset
  ``--dataset`` names;
* abTEM's zarr output (``.zarr`` folder or ``.zip``, ``DiffractionPatterns.to_zarr``): array
  ``array0`` and its metadata (scan sampling in Å, reciprocal sampling in 1/Å, energy in eV,
  ``fftshift``); patterns written without ``fftshift`` are shifted here.

Calibrations found in the file (scan step, detector angle per pixel, energy) must agree with the
acquisition file within 1 % (:func:`check_file_calibration`): a disagreement is an error naming
both, not a silent choice.

**Counts or normalised** (:func:`normalise_intensities`): the operator's patterns sum to the
fraction of the beam that reaches the detector (about 1). Data whose patterns sum to more than
:data:`NORMALISED_MAX_SUM` on average are counts (integer-valued) or detector units; they are
divided by their mean pattern sum and multiplied by the operator's vacuum pattern sum, so the mean
pattern sums like a simulated one. What was detected and the factor are stated.

>>> acq = STEMAcquisition(energy=200, semiangle=20, defocus=30, gpts=36, sampling=0.25,
...                       scan_step=1.5, slice_thickness=2, n_slices=4)
>>> acq.gpts, acq.pixel_size, round(acq.detector_mrad_per_px[0], 3)
((36, 36), (0.25, 0.25), 2.787)
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .io import InputValidationError

__all__ = [
    "ENERGY_RANGE_KEV",
    "NORMALISED_MAX_SUM",
    "STEMAcquisition",
    "acquisition_keys_table",
    "beam_centre",
    "check_file_calibration",
    "load_acquisition",
    "normalise_intensities",
    "read_intensities",
]

#: Plausible acceleration voltages of a (S)TEM, keV.
ENERGY_RANGE_KEV = (20.0, 1000.0)
#: Largest plausible probe semi-angle, mrad.
SEMIANGLE_MAX_MRAD = 200.0
#: Relative disagreement allowed between two statements of one calibration.
CALIBRATION_TOLERANCE = 0.01
#: Mean pattern sum above which intensities are taken as counts / detector units, not normalised.
NORMALISED_MAX_SUM = 1.5
#: Largest offset (detector px) of the bright-field disk's centre from ``(Ky // 2, Kx // 2)``.
BEAM_CENTRE_TOLERANCE_PX = 1.0


def _pair(value, kind=float):
    """A number -> ``(v, v)``; a two-element list -> tuple; anything else unchanged (pydantic names it)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (kind(value), kind(value))
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return tuple(value)
    return value


def _unit(unit: str) -> dict:
    return {"unit": unit}


class STEMAcquisition(BaseModel):
    """One 4D-STEM acquisition, in physical units: the ``--acquisition`` file.

    Relation between real-space sampling and detector calibration (the detector is the
    reciprocal grid of the propagation grid): a detector pixel subtends

    .. math:: \\Delta\\alpha = 1000\\,\\lambda / (n\\,\\Delta x)\\ \\text{mrad},

    with ``lambda`` the relativistic electron wavelength in Å
    (:func:`paperlib.physics.multislice.wavelength`, 0.02508 Å at 200 keV), ``n`` the pixels of
    the propagation grid along that axis (``window`` if set, else ``gpts``) and ``dx`` the
    ``sampling`` in Å. Give ``sampling``, ``detector_calibration`` or both; with both they must
    agree within 1 %, else the error says which ``sampling`` (or ``gpts``) would match.

    Pairs (``gpts``, ``sampling``, ``detector_calibration``, ``scan_step``) are ``[rows,
    columns]`` or one number for both. NaN and infinite numbers are refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    energy: float = Field(description="acceleration voltage, 20 to 1000 (200 for a 200 kV microscope)",
                          json_schema_extra=_unit("keV"))
    semiangle: float = Field(gt=0, le=SEMIANGLE_MAX_MRAD, description="probe convergence semi-angle",
                             json_schema_extra=_unit("mrad"))
    defocus: float = Field(description="probe defocus, positive = underfocus (abTEM's sign, C10 = -defocus); "
                                       "0 for a focused probe", json_schema_extra=_unit("Å"))
    gpts: tuple[int, int] = Field(description="pixels (H, W) of the reconstructed potential; the field of view "
                                              "gpts x sampling must hold the scan, and gpts (or window) at least "
                                              "the detector's pixels", json_schema_extra=_unit("px"))
    sampling: tuple[float, float] | None = Field(
        None, description="real-space pixel size; give it, detector_calibration or both",
        json_schema_extra=_unit("Å/px"))
    detector_calibration: tuple[float, float] | None = Field(
        None, description="scattering angle per detector pixel = 1000 wavelength / (n sampling), n = window "
                          "or gpts; give it, sampling or both (checked to 1 %)", json_schema_extra=_unit("mrad/px"))
    scan_step: tuple[float, float] = Field(description="distance between neighbouring probe positions",
                                           json_schema_extra=_unit("Å"))
    scan_shape: tuple[int, int] | None = Field(
        None, description="probe positions (Sy, Sx); default: the data's first two axes (checked when given)",
        json_schema_extra=_unit("positions"))
    scan_origin: tuple[float, float] | None = Field(
        None, description="position of the first probe (row, column) in the field of view; default: the scan "
                          "centred in the field of view", json_schema_extra=_unit("Å"))
    slice_thickness: float = Field(gt=0, description="thickness of each reconstructed slice",
                                   json_schema_extra=_unit("Å"))
    n_slices: int = Field(ge=1, description="slices D of the reconstruction (D x slice_thickness = depth)",
                          json_schema_extra=_unit("slices"))
    window: int | None = Field(None, ge=4, description="propagate a window of this many pixels around each "
                               "probe (faster, approximate); default: the full grid (abTEM's model)",
                               json_schema_extra=_unit("px"))
    intensities: Literal["auto", "counts", "normalised"] = Field(
        "auto", description="auto: detected (mean pattern sum > 1.5: counts or detector units, divided to "
                            "the operator's convention); counts; normalised (patterns sum to about 1)",
        json_schema_extra=_unit("-"))

    # ---------------------------------------------------------------- field checks
    @field_validator("gpts", "scan_shape", mode="before")
    @classmethod
    def _int_pair(cls, value):
        return _pair(value, int)

    @field_validator("sampling", "detector_calibration", "scan_step", "scan_origin", mode="before")
    @classmethod
    def _float_pair(cls, value):
        return _pair(value, float)

    @field_validator("energy")
    @classmethod
    def _plausible_energy(cls, value: float) -> float:
        low, high = ENERGY_RANGE_KEV
        if not math.isfinite(value) or not low <= value <= high:
            if value > high:
                hint = (f"; {value:g} looks like electron volts: write {value / 1e3:g} (keV)" if value >= 1e3 * low
                        else "")
            elif value > 0:
                hint = f"; {value:g} looks like MeV: write {value * 1e3:g} (keV)" if value * 1e3 >= low else ""
            else:
                hint = ""
            raise ValueError(f"expected an acceleration voltage in keV between {low:g} and {high:g} "
                             f"(200 for a 200 kV microscope), got {value:g}{hint}")
        return value

    @field_validator("gpts")
    @classmethod
    def _grid(cls, value: tuple[int, int]) -> tuple[int, int]:
        if min(value) < 8:
            raise ValueError(f"expected at least 8 pixels per axis, got {list(value)}")
        return value

    @field_validator("sampling", "detector_calibration", "scan_step", "scan_shape")
    @classmethod
    def _positive(cls, value):
        if value is not None and not all(math.isfinite(v) and v > 0 for v in value):
            raise ValueError(f"expected positive numbers, got {list(value)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> "STEMAcquisition":
        if self.sampling is None and self.detector_calibration is None:
            raise ValueError("give sampling (Å/px) or detector_calibration (mrad/px): the grid's scale is unknown")
        if self.window is not None and self.window > min(self.gpts):
            raise ValueError(f"window {self.window} px exceeds gpts {list(self.gpts)}")
        if self.sampling is not None and self.detector_calibration is not None:
            implied = self._calibration_of(self.sampling)
            for axis, (given, want) in enumerate(zip(self.detector_calibration, implied)):
                if abs(given - want) > CALIBRATION_TOLERANCE * want:
                    n = self.propagation_pixels[axis]
                    match = 1e3 * self.wavelength / (n * given)
                    raise ValueError(
                        f"detector_calibration {given:g} mrad/px does not match sampling {self.sampling[axis]:g} Å/px "
                        f"on a {n}-px grid: 1000 x wavelength {self.wavelength:.5f} Å / ({n} x "
                        f"{self.sampling[axis]:g} Å) = {want:.4g} mrad/px; for {given:g} mrad/px set sampling to "
                        f"{match:.4g} Å/px (or leave one of the two out)")
        return self

    # ---------------------------------------------------------------- derived quantities
    @property
    def wavelength(self) -> float:
        """Relativistic electron wavelength, Å."""
        from .physics.multislice import wavelength

        return wavelength(self.energy)

    @property
    def propagation_pixels(self) -> tuple[int, int]:
        """Pixels of the propagation grid: the window, else the whole grid."""
        return (self.window, self.window) if self.window is not None else self.gpts

    def _calibration_of(self, sampling: tuple[float, float]) -> tuple[float, float]:
        return tuple(1e3 * self.wavelength / (n * d) for n, d in zip(self.propagation_pixels, sampling))

    @property
    def pixel_size(self) -> tuple[float, float]:
        """Real-space sampling (Å/px): ``sampling``, or the one the detector calibration implies."""
        if self.sampling is not None:
            return self.sampling
        return tuple(1e3 * self.wavelength / (n * a) for n, a in zip(self.propagation_pixels,
                                                                      self.detector_calibration))

    @property
    def detector_mrad_per_px(self) -> tuple[float, float]:
        """Scattering angle per detector pixel (mrad) of the operator this file builds."""
        return self._calibration_of(self.pixel_size)

    @property
    def extent(self) -> tuple[float, float]:
        """Field of view (Å): gpts x sampling."""
        return tuple(n * d for n, d in zip(self.gpts, self.pixel_size))

    # ---------------------------------------------------------------- against the data
    def check_data_shape(self, shape: tuple[int, ...], source: str) -> None:
        """Refuse data of ``shape`` (Sy, Sx, Ky, Kx) that this acquisition cannot describe.

        ``source`` names the data (``--data FILE``) in the message. Checked: the scan shape (if
        given), that the detector fits the propagation grid, and that the scan lies inside the
        field of view.
        """
        scan, detector = tuple(shape[:2]), tuple(shape[2:])
        if self.scan_shape is not None and tuple(self.scan_shape) != scan:
            raise InputValidationError(f"{source}: the data's scan is {list(scan)} positions, the acquisition's "
                                       f"scan_shape {list(self.scan_shape)}")
        grid = self.propagation_pixels
        if any(k > n for k, n in zip(detector, grid)):
            what = "window" if self.window is not None else "gpts"
            raise InputValidationError(
                f"{source}: the patterns have {detector[0]}x{detector[1]} px but the propagation grid only "
                f"{grid[0]}x{grid[1]} (reciprocal pixels = {what}): set {what} to at least "
                f"{max(detector)} (with sampling or detector_calibration unchanged), or crop the patterns")
        origin = self.scan_origin
        for axis, (s, step, ext) in enumerate(zip(scan, self.scan_step, self.extent)):
            start = (ext - s * step) / 2 if origin is None else origin[axis]
            if start < -1e-6 * ext or start + s * step > ext * (1 + 1e-6):
                need = math.ceil((max(start, 0.0) + s * step) / self.pixel_size[axis] - 1e-9)
                raise InputValidationError(
                    f"{source}: the scan ({s} positions x {step:g} Å from {start:g} Å) does not fit the field "
                    f"of view gpts x sampling = {ext:g} Å along {'rows' if axis == 0 else 'columns'}: set gpts "
                    f"to at least {need}, or check scan_step (Å) and scan_origin")

    def scan_positions(self, scan_shape: tuple[int, int]) -> np.ndarray:
        """(Sy, Sx, 2) probe positions in Å: ``scan_origin + i scan_step`` (default origin: centred)."""
        from .physics.multislice import grid_scan

        start = [(ext - s * step) / 2 for s, step, ext in zip(scan_shape, self.scan_step, self.extent)] \
            if self.scan_origin is None else list(self.scan_origin)
        end = [a + s * step for a, s, step in zip(start, scan_shape, self.scan_step)]
        return grid_scan(start, end, tuple(scan_shape))

    def operator(self, data_shape: tuple[int, int, int, int], **overrides):
        """The :class:`~paperlib.physics.multislice.MultisliceOperator` of this acquisition for data of
        ``data_shape`` (Sy, Sx, Ky, Kx): its scan and detector crop."""
        from .physics.multislice import MultisliceOperator

        kwargs = dict(gpts=self.gpts, sampling=self.pixel_size, energy=self.energy, semiangle=self.semiangle,
                      defocus=self.defocus, slice_thickness=self.slice_thickness, n_slices=self.n_slices,
                      scan_positions=self.scan_positions(tuple(data_shape[:2])), window=self.window,
                      detector_shape=tuple(data_shape[2:]))
        return MultisliceOperator(**{**kwargs, **overrides})


def acquisition_keys_table(style: Literal["markdown", "text"] = "markdown") -> str:
    """Every key of :class:`STEMAcquisition`: key, unit, required or default, meaning.

    Generated from the model, so ``reconstruct --help`` (``style="text"``) and the README
    (``"markdown"``, checked by a test) cannot drift from it.
    """
    rows = []
    for name, field in STEMAcquisition.model_fields.items():
        unit = (field.json_schema_extra or {}).get("unit", "-")
        default = "required" if field.is_required() else ("unset" if field.default is None else str(field.default))
        rows.append((name, unit, default, field.description))
    if style == "markdown":
        lines = ["| key | unit | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{k}` | {u} | {'**required**' if d == 'required' else d} | {m} |" for k, u, d, m in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"  {k:<{widths[0]}}  {u:<{widths[1]}}  {d:<{widths[2]}}  {m}" for k, u, d, m in rows)


def _validation_problems(exc: ValidationError) -> str:
    """pydantic's errors as ``key NAME: what`` clauses, with the valid keys for an unknown one."""
    valid = ", ".join(STEMAcquisition.model_fields)
    problems, unknown = [], []
    for error in exc.errors():
        key = ".".join(str(part) for part in error["loc"] if not isinstance(part, int)) or "<file>"
        if error["type"] == "missing":
            field = STEMAcquisition.model_fields[key]
            unit = (field.json_schema_extra or {}).get("unit")
            problems.append(f"key {key}: missing, required ({unit}: {field.description})")
        elif error["type"] == "extra_forbidden":
            unknown.append(key)
        else:
            message = error["msg"].removeprefix("Value error, ")
            got = error.get("input")
            tail = "" if "got" in message else f" (got {got!r})"
            problems.append(f"key {key}: {message}{tail}" if key != "<file>" else message)
    if unknown:
        names = ", ".join(sorted(unknown))
        problems.insert(0, f"unknown key{'s' * (len(unknown) > 1)} {names}; valid keys are {valid}")
    return "; ".join(problems)


def load_acquisition(path: str | Path) -> STEMAcquisition:
    """Read and validate an acquisition file (YAML, or JSON by the ``.json`` suffix).

    Raises
    ------
    FileNotFoundError : no such file.
    InputValidationError : unreadable YAML/JSON, not a mapping, a missing required key, an unknown
        key (the valid ones are listed), an implausible value; the message starts with the path.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such acquisition file")
    try:
        text = path.read_text()
        params = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise InputValidationError(f"{path}: not readable as {'JSON' if path.suffix == '.json' else 'YAML'} "
                                   f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(params, dict):
        raise InputValidationError(f"{path}: expected a mapping of acquisition keys "
                                   f"({', '.join(STEMAcquisition.model_fields)}), got {type(params).__name__}")
    try:
        return STEMAcquisition.model_validate(params)
    except ValidationError as exc:
        raise InputValidationError(f"{path}: {_validation_problems(exc)}") from None


# ------------------------------------------------------------------------------------ readers
_LENGTH_TO_ANGSTROM = {"a": 1.0, "å": 1.0, "angstrom": 1.0, "nm": 10.0, "pm": 0.01}


def _unit_key(unit) -> str:
    if isinstance(unit, bytes):
        unit = unit.decode("utf-8", "replace")
    return str(unit).strip().lower()


def _checked_array(array: np.ndarray, source: str) -> np.ndarray:
    """``array`` if it is a non-empty real 4D array, else one error naming ``source``."""
    if array.ndim != 4:
        raise InputValidationError(f"{source}: expected a 4D array (Sy, Sx, Ky, Kx), got shape {array.shape}")
    if array.size == 0:
        raise InputValidationError(f"{source}: the array is empty, shape {array.shape}")
    if array.dtype.kind not in "iuf":
        raise InputValidationError(f"{source}: expected real intensities (integer or float), got dtype {array.dtype}")
    return array


def _read_npy(path: Path) -> tuple[np.ndarray, dict]:
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, EOFError, OSError for broken files
        raise InputValidationError(f"{path}: not a readable .npy array ({type(exc).__name__}: {exc})") from None
    return _checked_array(np.asarray(array), str(path)), {"layout": ".npy array"}


def _emd_calibration(group) -> dict:
    """Scan step (Å) and detector sampling (mrad or 1/Å) of an EMD 1.0 array node's ``dim0..dim3``."""
    found = {}
    steps, detector, detector_unit = [], [], None
    for n in range(4):
        dim = group.get(f"dim{n}")
        if dim is None or dim.shape == () or dim.shape[0] < 2:
            return found
        values = np.asarray(dim[:2], dtype=np.float64)
        unit = _unit_key(dim.attrs.get("units", ""))
        step = float(values[1] - values[0])
        if n < 2 and unit in _LENGTH_TO_ANGSTROM:
            steps.append(step * _LENGTH_TO_ANGSTROM[unit])
        elif n >= 2 and unit in ("mrad", "a^-1", "1/a", "1/å", "å^-1"):
            detector.append(step)
            detector_unit = "mrad" if unit == "mrad" else "1/Å"
    if len(steps) == 2:
        found["scan_step"] = tuple(steps)
    if len(detector) == 2:
        found["detector_mrad" if detector_unit == "mrad" else "detector_inverse_angstrom"] = tuple(detector)
    return found


def _read_hdf5(path: Path, dataset: str | None) -> tuple[np.ndarray, dict]:
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise InputValidationError(f"{path}: not a readable HDF5 file (truncated or not HDF5: {exc})") from None
    with f:
        arrays: list[tuple[str, object]] = []  # (name, group or dataset)
        if dataset is not None:
            if dataset not in f:
                raise InputValidationError(f"{path}: no dataset {dataset!r} (--dataset); 4D datasets in the file: "
                                           f"{_four_d_datasets(f) or 'none'}")
            node = f[dataset]
            if isinstance(node, h5py.Group) and isinstance(node.get("data"), h5py.Dataset):
                arrays = [(dataset, node)]
            elif isinstance(node, h5py.Dataset):
                arrays = [(dataset, node)]
            else:
                raise InputValidationError(f"{path}: {dataset!r} is a group, not a dataset (--dataset); 4D "
                                           f"datasets in the file: {_four_d_datasets(f) or 'none'}")
        elif f.attrs.get("emd_group_type") is not None and _unit_key(f.attrs.get("emd_group_type")) == "file":
            nodes = []
            f.visititems(lambda name, obj: nodes.append((name, obj)) if isinstance(obj, h5py.Group)
                         and _unit_key(obj.attrs.get("emd_group_type", "")) == "array"
                         and isinstance(obj.get("data"), h5py.Dataset) and obj["data"].ndim == 4 else None)
            cubes = [(n, g) for n, g in nodes if _unit_key(g.attrs.get("python_class", "")) == "datacube"]
            arrays = cubes or nodes
            if len(arrays) != 1:
                raise InputValidationError(f"{path}: EMD 1.0 file with {len(arrays)} 4D array nodes "
                                           f"({[n for n, _ in arrays] or 'none'}); name one with --dataset")
        else:
            names = _four_d_datasets(f)
            if len(names) != 1:
                raise InputValidationError(f"{path}: {len(names)} 4D datasets ({names or 'none'}); name the "
                                           "(Sy, Sx, Ky, Kx) intensities with --dataset")
            arrays = [(names[0], f[names[0]])]
        name, node = arrays[0]
        is_group = isinstance(node, h5py.Group)
        data = node["data"] if is_group else node
        source = f"{path}:{name}"
        if data.ndim != 4:
            raise InputValidationError(f"{source}: expected a 4D array (Sy, Sx, Ky, Kx), got shape {data.shape}")
        try:
            array = np.asarray(data[()])
        except (OSError, ValueError, RuntimeError) as exc:  # truncated files fail only when the data is read
            raise InputValidationError(f"{source}: the data cannot be read (truncated file? {exc})") from None
        kind = f"EMD 1.0 {node.attrs.get('python_class', 'array')} node" if is_group else "dataset"
        info = {"layout": f"HDF5 {kind} /{name}"}
        if is_group:
            info.update(_emd_calibration(node))
        return _checked_array(array, source), info


def _four_d_datasets(f) -> list[str]:
    import h5py

    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 4 else None)
    return names


def _read_abtem_zarr(path: Path, dataset: str | None) -> tuple[np.ndarray, dict]:
    import zarr

    try:
        if path.suffix == ".zip":
            root = zarr.open(store=zarr.storage.ZipStore(str(path), mode="r"), mode="r")
        else:
            root = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises many types for a missing or damaged store
        raise InputValidationError(f"{path}: not a readable zarr store ({type(exc).__name__}: {exc})") from None
    info: dict = {}
    name = dataset
    metadata = root.attrs.get("metadata0") if hasattr(root, "attrs") else None
    if name is None:
        if metadata is None:
            raise InputValidationError(f"{path}: no abTEM measurement (no 'metadata0' attribute); name the array "
                                       "with --dataset")
        name = "array0"
    try:
        array = np.asarray(root[name][...])
    except Exception as exc:
        raise InputValidationError(f"{path}: array {name!r} cannot be read ({type(exc).__name__}: {exc})") from None
    source = f"{path}:{name}"
    info["layout"] = f"zarr array {name}"
    if metadata is not None and name == "array0":
        info["layout"] = f"abTEM {metadata.get('type', 'measurement')} (zarr)"
        axes = metadata.get("axes", {})
        ordered = [axes[k] for k in sorted(axes, key=lambda k: int(k.split("_")[1]))]
        if array.ndim == 4 and len(ordered) == 4:
            scan = [a for a in ordered[:2] if a.get("type") == "ScanAxis" and a.get("units") == "Å"]
            if len(scan) == 2:
                info["scan_step"] = tuple(float(a["sampling"]) for a in scan)
            recip = [a for a in ordered[2:] if a.get("units") == "1/Å"]
            if len(recip) == 2:
                info["detector_inverse_angstrom"] = tuple(float(a["sampling"]) for a in recip)
            if not all(a.get("fftshift", True) for a in ordered[2:]):
                array = np.fft.fftshift(array, axes=(-2, -1))
                info["layout"] += ", patterns fftshifted here"
        if metadata.get("energy"):
            info["energy_kev"] = float(metadata["energy"]) / 1e3
    return _checked_array(array, source), info


def read_intensities(path: str | Path, dataset: str | None = None) -> tuple[np.ndarray, dict]:
    """The 4D-STEM intensities ``(Sy, Sx, Ky, Kx)`` of a file and the calibrations it states.

    Parameters
    ----------
    path : ``.npy``; HDF5 (``.h5``, ``.hdf5``, ``.emd``: py4DSTEM's EMD 1.0 tree, or any file with
        one 4D dataset); abTEM's zarr output (``.zarr`` folder or ``.zip``).
    dataset : the HDF5 dataset (or EMD array node) or zarr array to read, where the file holds
        several (``--dataset``).

    Returns
    -------
    array : the data as stored (dtype kept, so that integer counts can be recognised).
    info : ``layout`` (what was read) and, where the file states them, ``scan_step`` (Å, per
        axis), ``detector_mrad`` or ``detector_inverse_angstrom`` (per detector pixel),
        ``energy_kev``.

    Raises
    ------
    FileNotFoundError : no such file.
    InputValidationError : one message naming the file for every unreadable input: empty or
        truncated file, not the format its suffix says, no or several candidate arrays, not 4D,
        no values, complex or non-numeric dtype.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such 4D-STEM data file")
    if path.is_file() and path.stat().st_size == 0:
        raise InputValidationError(f"{path}: the file is empty (0 bytes), expected 4D-STEM intensities")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if dataset is not None:
            raise InputValidationError(f"{path}: a .npy file holds one array; --dataset {dataset} applies to HDF5 "
                                       "and zarr files only")
        return _read_npy(path)
    if suffix in (".h5", ".hdf5", ".emd"):
        return _read_hdf5(path, dataset)
    if suffix in (".zarr", ".zip"):
        return _read_abtem_zarr(path, dataset)
    raise InputValidationError(f"{path}: expected 4D-STEM intensities as .npy, HDF5 (.h5, .hdf5, .emd) or abTEM "
                               f"zarr (.zarr, .zip), got suffix {path.suffix or 'none'!r}")


def check_file_calibration(acquisition: STEMAcquisition, info: dict, source: str, where: str) -> list[str]:
    """Compare the calibrations a data file states (``info`` of :func:`read_intensities`) with the
    acquisition file ``where``; a disagreement above 1 % is an error naming both.

    Returns the agreements, as short phrases for the log.
    """
    agreed = []

    def compare(label: str, in_file, in_acquisition, unit: str, fix: str) -> None:
        for f_value, a_value in zip(in_file, in_acquisition):
            if abs(f_value - a_value) > CALIBRATION_TOLERANCE * abs(a_value):
                raise InputValidationError(
                    f"{source}: the file states {label} {_fmt(in_file)} {unit}, {where} gives "
                    f"{_fmt(in_acquisition)} {unit}; {fix}")
        agreed.append(f"{label} {_fmt(in_file)} {unit}")

    if "energy_kev" in info:
        compare("energy", (info["energy_kev"],), (acquisition.energy,), "keV", "fix energy (keV)")
    if "scan_step" in info:
        compare("scan step", info["scan_step"], acquisition.scan_step, "Å", "fix scan_step (Å)")
    detector = info.get("detector_mrad")
    if detector is None and "detector_inverse_angstrom" in info:
        detector = tuple(1e3 * acquisition.wavelength * q for q in info["detector_inverse_angstrom"])
    if detector is not None:
        implied = acquisition.detector_mrad_per_px
        n = acquisition.propagation_pixels
        fix = (f"the grid implies 1000 x wavelength / (n x sampling) with n = {list(n)} px, sampling "
               f"{_fmt(acquisition.pixel_size)} Å/px: set sampling to "
               f"{_fmt(tuple(1e3 * acquisition.wavelength / (k * a) for k, a in zip(n, detector)))} Å/px "
               "or give detector_calibration")
        compare("detector calibration", detector, implied, "mrad/px", fix)
    return agreed


def _fmt(values) -> str:
    values = tuple(values)
    if len(values) == 2 and math.isclose(values[0], values[1], rel_tol=1e-9):
        values = values[:1]
    return "x".join(f"{v:.4g}" for v in values)


# ------------------------------------------------------------------------------------ checks
def beam_centre(intensities: np.ndarray) -> tuple[float, float]:
    """Centre (row, column), in detector pixels, of the bright-field disk of the mean pattern: the
    centroid of the pixels above half its maximum."""
    mean = np.asarray(intensities, dtype=np.float64).mean(axis=(0, 1))
    disk = mean >= 0.5 * mean.max()
    rows, cols = np.nonzero(disk)
    weights = mean[rows, cols]
    return float((rows * weights).sum() / weights.sum()), float((cols * weights).sum() / weights.sum())


def check_beam_centre(intensities: np.ndarray, source: str) -> None:
    """Refuse patterns whose undiffracted beam is not at ``(Ky // 2, Kx // 2)`` (within
    :data:`BEAM_CENTRE_TOLERANCE_PX`): the model has it there, so an off-centre or unshifted
    pattern would be fitted as a strong tilt or a wrong crystal."""
    ky, kx = intensities.shape[-2:]
    if not np.any(np.asarray(intensities)):
        raise InputValidationError(f"{source}: every intensity is zero")
    row, col = beam_centre(intensities)
    if abs(row - ky // 2) > BEAM_CENTRE_TOLERANCE_PX or abs(col - kx // 2) > BEAM_CENTRE_TOLERANCE_PX:
        raise InputValidationError(
            f"{source}: the bright-field disk of the mean pattern is centred at (row, column) = ({row:.1f}, "
            f"{col:.1f}) px, expected ({ky // 2}, {kx // 2}) = (Ky // 2, Kx // 2): shift the patterns so the "
            "undiffracted beam sits there (fftshift order, zero angle at the centre pixel)")


def normalise_intensities(intensities: np.ndarray, mode: str, vacuum_sum: float,
                          source: str) -> tuple[torch.Tensor, str]:
    """Intensities in the operator's convention, and a sentence saying what was found and done.

    Parameters
    ----------
    intensities : (Sy, Sx, Ky, Kx) as read (any real dtype; >= 0 is checked by the operator).
    mode : ``"auto"`` (detect), ``"counts"`` or ``"normalised"`` (the acquisition's ``intensities``).
    vacuum_sum : the operator's pattern sum without a specimen (the fraction of the beam inside
        the detector; about 1).
    source : names the data in messages.

    Returns
    -------
    (Sy, Sx, Ky, Kx) float32 tensor, and the statement. Counts (integer-valued) and detector
    units (mean pattern sum above :data:`NORMALISED_MAX_SUM`, not integers) are divided by
    ``mean pattern sum / vacuum_sum``: each pattern then sums like a simulated one, up to the
    electrons scattered outside the detector. Normalised data are used as they are.

    Raises
    ------
    InputValidationError : ``mode`` normalised but the patterns sum to far more than 1.

    >>> counts = np.full((2, 2, 4, 4), 50, dtype=np.uint16)
    >>> x, said = normalise_intensities(counts, "auto", 1.0, "scan.npy")
    >>> float(x.sum((-2, -1)).mean()), said.split(" (")[0]
    (1.0, 'intensities: counts')
    """
    data = np.asarray(intensities)
    sums = data.sum(axis=(-2, -1), dtype=np.float64)
    mean_sum = float(sums.mean())
    integer = data.dtype.kind in "iu" or bool(np.all(np.mod(data, 1) == 0))
    kind = mode
    if mode == "auto":
        kind = "normalised" if mean_sum <= NORMALISED_MAX_SUM else ("counts" if integer else "detector units")
    elif mode == "normalised" and mean_sum > NORMALISED_MAX_SUM:
        raise InputValidationError(
            f"{source}: intensities: normalised (acquisition file), but the patterns sum to {mean_sum:.4g} on "
            f"average; normalised patterns sum to about 1: set intensities to counts or auto")
    tensor = torch.from_numpy(data.astype(np.float32))
    if kind == "normalised":
        how = "detected" if mode == "auto" else "as stated"
        return tensor, f"intensities: normalised (mean pattern sum {mean_sum:.4g}, {how}); used as they are"
    if mean_sum <= 0:
        raise InputValidationError(f"{source}: every pattern sums to zero")
    factor = mean_sum / vacuum_sum
    how = ("integer-valued" if integer else "not integers") + f", mean pattern sum {mean_sum:.4g}"
    how += ", detected" if mode == "auto" else ", as stated"
    return tensor / factor, (f"intensities: {kind} ({how}); divided by {factor:.4g} so that the mean pattern sums to "
                             f"{vacuum_sum:.4g}, the operator's vacuum pattern")
