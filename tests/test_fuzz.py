"""Property-based fuzzing of every public operator and reconstruction entry point (issue 19, part 4).

Each example feeds an entry point an argument of random shape (often the right one), dtype
(float32, float64, complex64, int64, bool, float16), values (normal, NaN, inf, empty, huge, zeros)
or kind (numpy array, list, None, str), with the other arguments drawn from valid and invalid
settings, on tiny grids with tiny random networks and 1-2 steps. The property: the call either
raises a clean error (:class:`~paperlib.io.InputValidationError`, ``ValueError`` or ``TypeError``
raised by paperlib itself, with a message) or returns a finite result of the documented shape.
An ``IndexError``/``RuntimeError`` from inside torch, an error raised deep in torch or numpy, or a
NaN/inf output fails the test.
"""
from __future__ import annotations

import math
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import paperlib
from paperlib.diffusion.partition import PartitionedPrior
from paperlib.diffusion.sampler import Sampler
from paperlib.diffusion.schedules import ScheduleConfig
from paperlib.diffusion.unet3d import UNet3D, UNet3DConfig
from paperlib.physics.mri import MRIOperator, MulticoilMRIOperator, make_mask, multicoil_mask
from paperlib.physics.multislice import MultisliceOperator, grid_scan
from paperlib.recon import mri_baselines, stem_baselines
from paperlib.recon.dart import dart
from paperlib.recon.drift import drift
from paperlib.recon.projection import projection_sampling

pytestmark = pytest.mark.usefixtures("one_thread")

#: >= 500 examples per entry point, reproducible (derandomize), no example database on disk
FUZZ = settings(max_examples=500, deadline=None, derandomize=True, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

PACKAGE = Path(paperlib.__file__).resolve().parent
D, H, W = 2, 8, 8  # the tiny volume every entry point sees: one slice group of two 8 x 8 slices
DTYPES = [torch.float32, torch.float64, torch.complex64, torch.int64, torch.bool, torch.float16]
VALUES = ["normal", "normal", "nan", "inf", "huge", "zeros", "empty"]


# --------------------------------------------------------------------------- fixtures of the fuzz
def _mri_operator() -> MRIOperator:
    return MRIOperator(make_mask("uniform1d", (H, W), 2, 0.25, generator=torch.Generator().manual_seed(0)))


def _stem_operator() -> MultisliceOperator:
    return MultisliceOperator(gpts=(H, W), sampling=0.5, energy=200.0, semiangle=20.0, slice_thickness=2.0,
                              n_slices=D, scan_positions=grid_scan((0.0, 0.0), (4.0, 4.0), (3, 3)),
                              fft_backend="torch")


def _prior() -> PartitionedPrior:
    torch.manual_seed(0)  # a tiny random network (weights do not matter, only that it runs)
    net = UNet3D(UNet3DConfig(base_width=4, channel_mults=(1,), num_res_blocks=1, attention_levels=(),
                              norm_groups=2)).eval()
    return PartitionedPrior([net], Sampler(ScheduleConfig("cosine", 20), clip=(-2.0, 2.0)), D)


MRI, STEM, PRIOR = _mri_operator(), _stem_operator(), _prior()
MRI_Y = MRI.forward(torch.rand(D, H, W, generator=torch.Generator().manual_seed(1)))
STEM_V = torch.rand(D, H, W, generator=torch.Generator().manual_seed(2)) * 5
STEM_I = STEM.forward(STEM_V)


# --------------------------------------------------------------------------- strategies
@st.composite
def arrays(draw, valid_shape: tuple[int, ...], nonnegative: bool = False, complex_only: bool = False):
    """A tensor (or not) of random shape, dtype and values; three draws in five are well-formed
    (the valid shape, a floating dtype, finite values, possibly huge; real and >= 0 where
    ``nonnegative``, as intensities; complex where ``complex_only``, as k-space), the others anything."""
    well_formed = draw(st.sampled_from([True, True, True, False, False]))
    if well_formed and nonnegative:
        kind, shape = "tensor", valid_shape
        dtype = draw(st.sampled_from([torch.float32, torch.float64]))
        values = draw(st.sampled_from(["normal", "normal", "zeros", "huge"]))
    elif well_formed:
        kind, shape = "tensor", valid_shape
        dtype = draw(st.sampled_from([torch.complex64, torch.complex128] if complex_only else
                                     [torch.float32, torch.float64, torch.complex64]))
        values = draw(st.sampled_from(["normal", "normal", "zeros", "huge"]))
    else:
        kind = draw(st.sampled_from(["tensor"] * 8 + ["numpy", "list", "none", "str"]))
        if kind == "none":
            return None
        if kind == "str":
            return "y.npy"
        shape = valid_shape if draw(st.booleans()) else tuple(draw(st.lists(st.integers(0, 9), max_size=5)))
        dtype = draw(st.sampled_from(DTYPES))
        values = draw(st.sampled_from(VALUES))
    if values == "empty":
        shape = (*shape[:-1], 0) if shape else (0,)
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    if dtype.is_complex:
        x = torch.complex(x, torch.randn(shape, generator=g, dtype=torch.float64))
    if values == "zeros":
        x = torch.zeros_like(x)
    elif values == "huge":
        x = x * {torch.float16: 3e4, torch.float32: 1e30, torch.complex64: 1e30, torch.int64: 2**60}.get(dtype, 1e300)
    if well_formed and nonnegative:
        x = x.abs()
    if dtype == torch.bool:
        t = x.real > 0
    elif dtype == torch.int64:
        t = x.real.clamp(-2**62, 2**62).round().to(torch.int64)
    else:
        t = x.to(dtype)
    if values in ("nan", "inf") and t.numel() and (t.is_floating_point() or t.is_complex()):
        t = t.clone()
        t.reshape(-1)[draw(st.integers(0, t.numel() - 1))] = float(values) * (1 if values == "nan" else -1)
    if kind == "numpy":
        return t.numpy()
    if kind == "list":
        return t.tolist()
    return t


#: bad scalar settings of every kind
BAD = [0, -1, 2.5, float("nan"), float("inf"), -1e300, "2", None, True, [1]]


@st.composite
def one_fault(draw, **good):
    """Keyword settings drawn from their good values, except (one draw in three) one drawn from :data:`BAD`."""
    faulty = draw(st.sampled_from([None] * (2 * len(good)) + [*good]))
    return {name: draw(st.sampled_from(BAD if name == faulty else values)) for name, values in good.items()}


# --------------------------------------------------------------------------- the property
def _raised_by_paperlib(exc: BaseException) -> bool:
    """Whether ``exc`` comes from a ``raise`` statement of paperlib (its validation), not from a
    dependency or from a builtin that paperlib code called (``range("2")``, ``torch.fft``)."""
    frames = traceback.extract_tb(exc.__traceback__)
    return (bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE)
            and (frames[-1].line or "").lstrip().startswith("raise "))


def clean_error_or_finite(call, shape=None):
    """Run ``call()``; the error must be clean, the result finite (and of ``shape`` when given)."""
    try:
        out = call()
    except (ValueError, TypeError) as exc:  # InputValidationError and CheckpointError are ValueErrors
        assert not isinstance(exc, (IndexError, RuntimeError)), exc
        assert str(exc).strip(), f"{type(exc).__name__} without a message"
        assert _raised_by_paperlib(exc), (
            f"{type(exc).__name__} raised inside a dependency, not by paperlib's validation:\n"
            + "".join(traceback.format_exception(exc)))
        event(f"clean {type(exc).__name__}")
        return None
    tensors = out if isinstance(out, tuple) else (out,)
    for t in tensors:
        assert isinstance(t, torch.Tensor), type(t)
        assert bool(torch.isfinite(t).all()), f"non-finite result ({int((~torch.isfinite(t)).sum())} of {t.numel()})"
    if shape is not None:
        assert tuple(tensors[0].shape) == tuple(shape), (tuple(tensors[0].shape), shape)
    event("finite result")
    return out


# --------------------------------------------------------------------------- operators
# one test per entry point (parametrised), so that each gets its own 500 examples

@FUZZ
@pytest.mark.parametrize("method", ["forward", "adjoint", "physics_step", "bind_physics_step"])
@given(data=st.data(), kw=one_fault(step_size=[1.0, 0.5]))
def test_mri_operator(method, data, kw):
    x = data.draw(arrays((D, H, W)), label="x")
    shape = getattr(x, "shape", None)  # the operator broadcasts over leading dimensions (an (H, W) image too)
    if method == "forward":
        clean_error_or_finite(lambda: MRI.forward(x), shape)
    elif method == "adjoint":
        clean_error_or_finite(lambda: MRI.adjoint(x), shape)
    elif method == "physics_step":
        if data.draw(st.booleans(), label="fuzz the image (else the k-space)"):
            clean_error_or_finite(lambda: MRI.physics_step(x, MRI_Y, **kw), (D, H, W))
        else:
            clean_error_or_finite(lambda: MRI.physics_step(STEM_V, x, **kw), (D, H, W))
    elif data.draw(st.booleans(), label="fuzz the image (else the k-space)"):
        clean_error_or_finite(lambda: MRI.bind_physics_step(MRI_Y, **kw)(x), (D, H, W))
    else:
        clean_error_or_finite(lambda: MRI.bind_physics_step(x, **kw)(STEM_V), (D, H, W))


@FUZZ
@given(good=st.fixed_dictionaries({
           "kind": st.sampled_from(["uniform1d", "gaussian2d"]),
           "shape": st.tuples(st.integers(4, 40), st.integers(4, 40)),
           "acceleration": st.floats(1.5, 8.0), "center_fraction": st.floats(0.01, 0.12),
           "generator": st.builds(lambda seed: torch.Generator().manual_seed(seed), st.integers(0, 2**31 - 1))}),
       faulty=st.sampled_from([None] * 10 + ["kind", "shape", "acceleration", "center_fraction", "generator"]),
       bad=st.one_of(st.sampled_from([*BAD, "poisson", (8, 8, 8), "8x8", (0, 8), (8, -1), (4.5, 8), 1.0, 1e300, 0.9]),
                     st.floats(allow_nan=True, allow_infinity=True)))
def test_make_mask(good, faulty, bad):
    args = {**good, **({} if faulty is None else {faulty: bad})}
    mask = clean_error_or_finite(lambda: make_mask(args["kind"], args["shape"], args["acceleration"],
                                                   args["center_fraction"], generator=args["generator"]))
    if mask is not None:
        assert mask.dtype == torch.bool and tuple(mask.shape) == tuple(int(s) for s in args["shape"])
        assert bool(mask.any())


@FUZZ
@pytest.mark.parametrize("method", ["forward", "gradient", "physics_step", "bind_physics_step"])
@given(data=st.data(), kw=one_fault(step_size=[None, 1.0], threshold=[0.0, 0.1], nonnegative=[False, True],
                                    likelihood=["amplitude", "poisson"]))
def test_multislice_operator(method, data, kw):
    fuzz_volume = method == "forward" or data.draw(st.booleans(), label="fuzz the potential (else the intensities)")
    V = data.draw(arrays((D, H, W)), label="V") if fuzz_volume else STEM_V
    intensities = STEM_I if fuzz_volume else data.draw(arrays(STEM.measurement_shape, True), label="intensities")
    if method == "forward":
        clean_error_or_finite(lambda: STEM.forward(V), STEM.measurement_shape)
    elif method == "gradient":
        out = clean_error_or_finite(lambda: STEM.gradient(V, intensities, likelihood=kw["likelihood"]))
        if out is not None:
            assert out[0].shape == () and out[1].shape == (D, H, W)
    elif method == "physics_step":
        clean_error_or_finite(lambda: STEM.physics_step(V, intensities, **kw), (D, H, W))
    else:
        clean_error_or_finite(lambda: STEM.bind_physics_step(intensities, **kw)(V), (D, H, W))


MC = (4, H, W)  # the multicoil mask needs D >= 4
MULTICOIL = MulticoilMRIOperator(
    torch.randn(2, *MC, dtype=torch.complex64, generator=torch.Generator().manual_seed(3)) / 2,
    multicoil_mask(MC, 2, 0.25, generator=torch.Generator().manual_seed(4)))
MC_X = torch.rand(MC, generator=torch.Generator().manual_seed(5))
MC_Y = MULTICOIL.forward(MC_X)


@FUZZ
@pytest.mark.parametrize("method", ["forward", "adjoint", "physics_step"])
@given(data=st.data(), kw=one_fault(step_size=[1.0, 0.5]))
def test_multicoil_mri_operator(method, data, kw):
    fuzz_volume = method == "forward" or (method == "physics_step" and data.draw(st.booleans(), label="fuzz x"))
    x = data.draw(arrays(MC), label="x") if fuzz_volume else MC_X
    y = MC_Y if fuzz_volume else data.draw(arrays(tuple(MC_Y.shape), complex_only=True), label="y")
    lead = tuple(getattr(x if fuzz_volume else y, "shape", ()))[:-3 if fuzz_volume else -4]  # batch dimensions
    if method == "forward":
        clean_error_or_finite(lambda: MULTICOIL.forward(x), (*lead, *MC_Y.shape))
    elif method == "adjoint":
        clean_error_or_finite(lambda: MULTICOIL.adjoint(y), (*lead, *MC))
    else:
        clean_error_or_finite(lambda: MULTICOIL.physics_step(x, y, **kw), MC)


# --------------------------------------------------------------------------- reconstructions
MEASUREMENTS = {"mri": (MRI, MRI_Y.shape, False), "stem": (STEM, STEM.measurement_shape, True)}


@FUZZ
@given(data=st.data(), modality=st.sampled_from(["mri", "stem"]),
       kw=one_fault(num_steps=[1, 2], start=[1.0, 0.5], samples=[1, 2], scale=[1.0, 3.0], physics_steps=[1, 2],
                    momentum=[False, True]))
def test_dart(data, modality, kw):
    op, shape, nonnegative = MEASUREMENTS[modality]
    y = data.draw(arrays(shape, nonnegative), label="y")
    init = data.draw(arrays((D, H, W)), label="init") if kw["start"] != 1.0 else None
    step_kwargs = {"momentum": kw.pop("momentum")}  # the physics steps with momentum or one after the other
    clean_error_or_finite(lambda: dart(PRIOR, op, y, generator=torch.Generator().manual_seed(0), init=init,
                                       step_kwargs=step_kwargs, **kw), (D, H, W))


@FUZZ
@given(data=st.data(), modality=st.sampled_from(["mri", "stem"]),
       kw=one_fault(num_steps=[1, 3], levels=[(0.5, 0.05), (0.1, 0.1)], scale=[1.0, 3.0], physics_steps=[1, 0]))
def test_dart_plug_and_play(data, modality, kw):
    op, shape, nonnegative = MEASUREMENTS[modality]
    y = data.draw(arrays(shape, nonnegative), label="y")
    init = data.draw(arrays((D, H, W)), label="init")
    clean_error_or_finite(lambda: dart(PRIOR, op, y, generator=torch.Generator().manual_seed(0), init=init, **kw),
                          (D, H, W))


@FUZZ
@given(data=st.data(), modality=st.sampled_from(["mri", "stem"]),
       kw=one_fault(num_steps=[1, 2], n_candidates=[1, 2], physics_steps=[1, 0], scale=[1.0, 3.0]),
       translate=st.booleans())
def test_drift(data, modality, kw, translate):
    op, shape, nonnegative = MEASUREMENTS[modality]
    translate = translate and modality == "stem"  # MRI has no scan to align (a clean error, tested below)
    y = data.draw(arrays(shape, nonnegative), label="y")
    result = clean_error_or_finite(lambda: drift(PRIOR, op, y, generator=torch.Generator().manual_seed(0),
                                                 translate=translate, **kw).volume, (D, H, W))
    assert result is None or result.dtype == torch.float32


@FUZZ
@given(data=st.data(), kw=one_fault(num_steps=[1, 2], start=[1.0, 0.5]))
def test_projection(data, kw):
    y = data.draw(arrays((D, H, W)), label="y")
    init = data.draw(arrays((D, H, W)), label="init") if kw["start"] != 1.0 else None
    clean_error_or_finite(lambda: projection_sampling(PRIOR, MRI, y, generator=torch.Generator().manual_seed(0),
                                                      init=init, **kw), (D, H, W))


@FUZZ
@pytest.mark.parametrize("method", ["zero_filled", "total_variation", "cs_wavelet"])
@given(y=arrays((D, H, W), complex_only=True), kw=one_fault(weight=[0.01, 0.0], iters=[1, 2], real=[True, False]),
       wavelet=one_fault(levels=[1, 2], wavelet=["haar", "db4"]))
def test_mri_baselines(method, y, kw, wavelet):
    shape = (D, H, W)
    if method == "zero_filled":  # broadcasts over leading dimensions, like the operator
        shape = getattr(y, "shape", None)
        call = lambda: mri_baselines.zero_filled(MRI, y)  # noqa: E731
    elif method == "total_variation":
        call = lambda: mri_baselines.total_variation(MRI, y, **kw)  # noqa: E731
    else:
        call = lambda: mri_baselines.cs_wavelet(MRI, y, **kw, **wavelet)  # noqa: E731
    clean_error_or_finite(call, shape)


STEM_SETTINGS = {
    "three_pie": dict(n_iter=[1, 2], alpha=[0.5, 1.0], beta=[1.0], batch_size=[None, 4], nonnegative=[True, False]),
    "torchslice": dict(n_iter=[1, 2], lr=[30.0, 1.0], batch_size=[None, 4], nonnegative=[True, False]),
    "sparse_decomposition": dict(n_iter=[1, 2], step_scale=[1.0, 0.5], threshold=[0.05, 0.0],
                                 nonnegative=[True, False]),
    "thickness_search": dict(steps=[1, 2], final_steps=[1, 0], threshold=[0.05, 0.0], nonnegative=[True, False]),
}


@FUZZ
@pytest.mark.parametrize("method", sorted(STEM_SETTINGS))
@given(data=st.data())
def test_stem_baselines(method, data):
    kw = data.draw(one_fault(**STEM_SETTINGS[method]), label="settings")
    fuzz_volume = data.draw(st.booleans(), label="fuzz the potential (else the intensities)")
    intensities = STEM_I if fuzz_volume else data.draw(arrays(STEM.measurement_shape, True), label="intensities")
    volume = data.draw(arrays((D, H, W)), label="volume") if fuzz_volume else None
    fn = getattr(stem_baselines, method)
    if method == "thickness_search":
        call = lambda: fn(STEM, intensities, STEM_V if volume is None else volume, **kw).volume  # noqa: E731
    else:
        call = lambda: fn(STEM, intensities, init=volume, **kw)  # noqa: E731
    clean_error_or_finite(call, (D, H, W))


def test_fuzz_fixtures_are_valid():
    """The fixed arguments are themselves good, so a clean error always comes from the fuzzed one."""
    assert math.isfinite(float(MRI_Y.abs().sum())) and STEM_I.shape == STEM.measurement_shape
    assert dart(PRIOR, MRI, MRI_Y, generator=torch.Generator().manual_seed(0), num_steps=2).shape == (D, H, W)
    assert np.isfinite(stem_baselines.three_pie(STEM, STEM_I, n_iter=1).numpy()).all()
    with pytest.raises(ValueError, match="operator: MRIOperator has no periodic whole-pixel scan"):
        drift(PRIOR, MRI, MRI_Y, generator=torch.Generator().manual_seed(0), n_candidates=2, num_steps=1, translate=True)
