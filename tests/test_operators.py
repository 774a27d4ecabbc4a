"""Conformance test of every operator against the :class:`~paperlib.physics.base.Operator`
protocol: shapes and dtypes, the declared capabilities (each checked against what the
operator really does), adjointness where linear, float64 gradients, one physics step lowering
the data term, and bad input named in a ValueError.

Each case is a factory ``make(dtype) -> (operator, x, names, data_term)``: a small operator, a
volume ``x`` it acts on, the argument names its errors use (volume, measurement), and the
data term its physics step descends (MRI: ``||A x - y||^2``, paper Eq. 3-4; 4D-STEM: the
Eq. 2 amplitude loss).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

import pytest
import torch

from paperlib.physics.base import Operator, adjointness_error, check_gradients
from paperlib.physics.mri import MRIOperator, MulticoilMRIOperator, coil_sensitivities, make_mask, multicoil_mask
from paperlib.physics.multislice import MultisliceOperator, grid_scan


@dataclass
class Case:
    op: Operator
    x: torch.Tensor  # a volume (D, H, W) the operator acts on
    x_name: str  # how the operator's errors name the volume ...
    y_name: str  # ... and the measurement
    data_term: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    bad_dtype: torch.dtype  # a dtype neither the volume nor the measurement may have


def _mri(kind: str, dtype: torch.dtype) -> Case:
    mask = make_mask(kind, (8, 10), 2, 0.2, generator=torch.Generator().manual_seed(1))
    op = MRIOperator(mask)
    x = torch.rand(3, 8, 10, generator=torch.Generator().manual_seed(2), dtype=dtype)
    # real and complex images are both valid (and k-space is complex); integers are not
    return Case(op, x, "x", "y", lambda v, y: (op.forward(v) - y).abs().pow(2).sum(), torch.int64)


def _multislice(window: int | None, dtype: torch.dtype) -> Case:
    # a 4 x 4 scan in steps of 4 pixels tiles the 16 x 16 periodic grid (full-grid propagation)
    op = MultisliceOperator(gpts=16, sampling=0.25, energy=200.0, semiangle=20.0, slice_thickness=2.0,
                            n_slices=3, scan_positions=grid_scan((0.0, 0.0), (4.0, 4.0), (4, 4)),
                            defocus=10.0, window=window, dtype=dtype)
    x = torch.rand(op.shape, generator=torch.Generator().manual_seed(2), dtype=dtype) * 20
    # integer intensities (detector counts) are valid; complex potentials or intensities are not
    return Case(op, x, "V", "intensities", lambda v, y: op.loss(v, y), torch.complex64)


def _multicoil(dtype: torch.dtype) -> Case:
    shape = (4, 8, 10)  # the mask's phase-encoding plane (D, H) needs >= 4 x 4
    mask = multicoil_mask(shape, 2, 0.2, generator=torch.Generator().manual_seed(1))
    op = MulticoilMRIOperator(coil_sensitivities(shape, 2), mask)
    x = torch.rand(shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    return Case(op, x, "x", "y", lambda v, y: (op.forward(v) - y).abs().pow(2).sum(), torch.int64)


CASES = {
    "mri-uniform1d": lambda dtype: _mri("uniform1d", dtype),
    "mri-gaussian2d": lambda dtype: _mri("gaussian2d", dtype),
    "multislice-full": lambda dtype: _multislice(None, dtype),
    "multislice-window": lambda dtype: _multislice(8, dtype),
    "mri-multicoil": _multicoil,
}


@pytest.fixture(params=list(CASES), ids=list(CASES))
def make(request):
    return CASES[request.param]


def test_forward_shapes_dtypes_and_volume_shape(make):
    c = make(torch.float32)
    assert isinstance(c.op, Operator)
    y = c.op.forward(c.x)
    assert torch.isfinite(y).all()
    if isinstance(c.op, MRIOperator):
        assert y.shape == c.x.shape and y.dtype == torch.complex64
    elif isinstance(c.op, MulticoilMRIOperator):
        assert y.shape == (c.op.num_coils, *c.x.shape) and y.dtype == torch.complex64
    else:
        assert y.shape == c.op.measurement_shape and y.dtype == torch.float32
    assert c.op.volume_shape(y) == tuple(c.x.shape)
    image = c.op.measurement_image(y)
    assert not image.is_complex() and image.dtype == torch.float32 and torch.isfinite(image).all()
    # float64 in, double precision out
    c64 = make(torch.float64)
    assert c64.op.forward(c64.x).dtype in (torch.float64, torch.complex128)


def test_linearity_declaration_and_adjointness(make):
    c = make(torch.float64)
    assert c.op.is_linear == (c.op.adjoint is not None)
    assert c.op.is_linear or not c.op.projects  # projects implies linear
    g = torch.Generator().manual_seed(3)
    if not c.op.is_linear:
        # declared nonlinear: the forward model really is (doubling V does not double the data)
        y1, y2 = c.op.forward(c.x), c.op.forward(2 * c.x)
        assert not torch.allclose(y2, 2 * y1, rtol=1e-3)
        return
    x = torch.randn(c.x.shape, dtype=torch.complex128, generator=g)
    y = torch.randn(c.op.forward(x).shape, dtype=torch.complex128, generator=g)
    assert adjointness_error(c.op.forward, c.op.adjoint, x, y) < 1e-12
    assert adjointness_error(c.op.forward, c.op.adjoint, c.x, y) < 1e-12  # real domain
    # projects: physics_step(x, y, step_size=1.0) is the projection onto A x = y (declared either way)
    y_true = c.op.forward(torch.randn(c.x.shape, dtype=torch.float64, generator=g))
    z = torch.randn(c.x.shape, dtype=torch.complex128, generator=g)
    projected = c.op.physics_step(z, y_true, step_size=1.0)
    is_projection = (torch.allclose(c.op.forward(projected), y_true, atol=1e-12)
                     and torch.allclose(c.op.physics_step(projected, y_true, step_size=1.0), projected, atol=1e-12))
    assert is_projection == c.op.projects


def test_slice_local_declaration(make):
    """slice_local True: the physics step of one slice needs only that slice, and the operator
    broadcasts over a leading candidate dimension. False: changing one slice changes the step
    of another."""
    c = make(torch.float64)
    y = c.op.forward(c.x)
    start = torch.zeros_like(c.x)
    step = c.op.physics_step(start, y)
    other = start.clone()
    other[0] = 1.0
    coupled = not torch.allclose(c.op.physics_step(other, y)[-1], step[-1], atol=1e-12)
    assert coupled == (not c.op.slice_local)
    if c.op.slice_local:
        both = torch.stack([c.x, 2 * c.x])
        assert torch.allclose(c.op.forward(both)[1], c.op.forward(2 * c.x))
        assert torch.allclose(c.op.measurement_image(c.op.forward(both))[0], c.op.measurement_image(y))


def test_support_declaration(make):
    c = make(torch.float64)
    takes_support = "support" in inspect.signature(c.op.physics_step).parameters
    assert c.op.supports_support == takes_support
    if not c.op.supports_support:
        return
    y = c.op.forward(c.x)
    support = torch.tensor([True, False, True])
    stepped = c.op.physics_step(c.x, y, support=support)
    assert bool((stepped[1] == 0).all()) and bool((stepped[[0, 2]] != 0).any())


def test_periodic_scan_step_declaration(make):
    """Where declared, rolling the volume by the step rolls the measurement image by one scan
    position (what DRIFT's translation search relies on)."""
    c = make(torch.float64)
    step = c.op.periodic_scan_step()
    if isinstance(c.op, MultisliceOperator) and c.op.full:
        assert step == (4, 4)
    if step is None:
        return
    py, px = step
    image = c.op.measurement_image(c.op.forward(c.x))
    rolled = c.op.measurement_image(c.op.forward(torch.roll(c.x, (py, px), dims=(-2, -1))))
    assert torch.allclose(rolled, torch.roll(image, (1, 1), dims=(-2, -1)), atol=1e-10)


def test_gradients_in_float64(make):
    """gradcheck on tiny sizes (two function calls per input element): MRI's forward model on a
    6 x 6 corner of the mask, the multislice Eq. 2 loss on an 8 x 8 grid (same window mode)."""
    c = make(torch.float64)
    if isinstance(c.op, MRIOperator):
        op = MRIOperator(c.op.mask[:6, :6])
        assert check_gradients(op.forward, c.x[:2, :6, :6])
        return
    if isinstance(c.op, MulticoilMRIOperator):
        assert check_gradients(c.op.forward, c.x)
        return
    op = MultisliceOperator(gpts=8, sampling=0.25, energy=200.0, semiangle=20.0, slice_thickness=2.0, n_slices=2,
                            scan_positions=grid_scan((0.0, 0.0), (2.0, 2.0), (2, 2)),
                            window=None if c.op.full else 4, dtype=torch.float64)
    V = torch.rand(op.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 20
    y = op.forward(torch.rand(op.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 20)
    # the loss gradient is ~1e-7 per voxel here, so the tolerance must sit well below it
    assert check_gradients(lambda v: op.loss(v, y), V, atol=1e-11)


def test_one_physics_step_lowers_the_data_term(make):
    c = make(torch.float64)
    y = c.op.forward(c.x)
    start = 0.5 * c.x
    before = float(c.data_term(start, y))
    after = float(c.data_term(c.op.physics_step(start, y), y))
    assert before > 0 and after < 0.9 * before


@pytest.mark.parametrize("fault", ["shape", "dtype", "nan"])
def test_bad_input_is_a_value_error_naming_the_argument(make, fault):
    c = make(torch.float32)
    y = c.op.forward(c.x)

    def broken(t: torch.Tensor) -> torch.Tensor:
        if fault == "shape":
            return t[..., :-1]
        if fault == "dtype":
            return torch.ones(t.shape, dtype=c.bad_dtype)
        bad = t.clone()
        bad.reshape(-1)[0] = float("nan")
        return bad

    with pytest.raises(ValueError, match=c.x_name):
        c.op.forward(broken(c.x))
    with pytest.raises(ValueError, match=c.x_name):
        c.op.physics_step(broken(c.x), y)
    with pytest.raises(ValueError, match=c.y_name):
        c.op.physics_step(c.x, broken(y))
    with pytest.raises(ValueError, match=c.y_name):
        c.op.measurement_image(broken(y))
