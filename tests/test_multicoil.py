"""Multicoil 3D Cartesian MRI (issue 18): the operator's invariants (adjointness, float64
gradients, an independent explicit-DFT reference), the coil maps and masks, the declared
capabilities, errors for bad input, and the multicoil CS-MRI baseline."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from paperlib.io import InputValidationError
from paperlib.physics.base import Operator, adjointness_error, check_gradients
from paperlib.physics.mri import (MulticoilMRIOperator, coil_sensitivities, fft3c, ifft3c, multicoil_mask)
from paperlib.recon.mri_multicoil_baselines import cs_wavelet_multicoil

pytestmark = pytest.mark.usefixtures("one_thread")

SHAPE = (4, 6, 5)


def _op(shape=SHAPE, coils=3, seed=0, acceleration=2.0):
    mask = multicoil_mask(shape, acceleration, 0.2, generator=torch.Generator().manual_seed(seed))
    return MulticoilMRIOperator(coil_sensitivities(shape, coils), mask)


def _randn(shape, dtype=torch.complex128, seed=1):
    return torch.randn(shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))


def test_adjointness_complex_and_real():
    op = _op()
    x, y = _randn(SHAPE), _randn((3, *SHAPE), seed=2)
    assert adjointness_error(op.forward, op.conjugate_transpose, x, y) < 1e-13
    # over real volumes: the adjoint is the real part of A^H y
    xr = _randn(SHAPE, torch.float64, seed=3)
    assert adjointness_error(op.forward, op.conjugate_transpose, xr, y) < 1e-13
    # a wrong adjoint (coils not conjugated) is caught
    wrong = lambda v: (ifft3c(v * op.mask) * op.sensitivities.to(v.dtype)).sum(-4)
    assert adjointness_error(op.forward, wrong, x, y) > 1e-3


def test_gradcheck_forward_and_adjoint():
    op = MulticoilMRIOperator(coil_sensitivities((4, 4, 3), 2, dtype=torch.complex128),
                              multicoil_mask((4, 4, 3), 2, 0.2, generator=torch.Generator().manual_seed(0)))
    assert check_gradients(lambda v: op.forward(v), _randn((4, 4, 3)))
    assert check_gradients(lambda v: op.conjugate_transpose(v), _randn((2, 4, 4, 3)))
    assert check_gradients(lambda v: op.data_term(v, op.forward(_randn((4, 4, 3), seed=5))), _randn((4, 4, 3)))


def _centred_dft(n: int) -> np.ndarray:
    """Explicit centred orthonormal DFT matrix: index n is position n - N//2, likewise k."""
    pos = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(pos, pos) / n) / np.sqrt(n)


def test_forward_agrees_with_explicit_dft_in_numpy():
    op = _op(coils=2, seed=4)
    x = _randn(SHAPE, seed=6)
    s, m, xn = op.sensitivities.numpy().astype(np.complex128), op.mask.numpy(), x.numpy()
    fd, fh, fw = (_centred_dft(n) for n in SHAPE)
    expected = np.einsum("ad,be,cf,zdef->zabc", fd, fh, fw, s * xn[None]) * m[None]
    got = op.forward(x).numpy()
    assert np.allclose(got, expected, atol=1e-6 * np.abs(expected).max())
    assert torch.allclose(ifft3c(fft3c(x)), x)


def test_coil_maps_normalised_smooth_and_support():
    s = coil_sensitivities((6, 16, 16), 8)
    assert s.shape == (8, 6, 16, 16) and s.dtype == torch.complex64
    assert torch.allclose((s.abs() ** 2).sum(0), torch.ones(6, 16, 16), atol=1e-5)
    # smooth: neighbouring voxels differ little; distinct coils differ a lot
    assert float((s[:, :, 1:] - s[:, :, :-1]).abs().max()) < 0.25
    assert float((s[0] - s[4]).abs().mean()) > 0.2
    support = torch.zeros(6, 16, 16, dtype=torch.bool)
    support[:, 4:12, 4:12] = True
    sm = coil_sensitivities((6, 16, 16), 8, support=support)
    assert torch.allclose((sm.abs() ** 2).sum(0), support.float(), atol=1e-5)
    with pytest.raises(InputValidationError, match="support"):
        coil_sensitivities((6, 16, 16), 8, support=support[0])
    with pytest.raises(InputValidationError, match="num_coils"):
        coil_sensitivities((6, 16, 16), 0)


def test_mask_variable_density_full_readout_seeded():
    shape = (16, 16, 8)
    m = multicoil_mask(shape, 4, 0.08, generator=torch.Generator().manual_seed(0))
    assert m.dtype == torch.bool and m.shape == shape
    assert bool((m == m[..., :1]).all())  # readout fully sampled
    assert abs(float(m.float().mean()) - 0.25) < 1 / (2 * 16 * 16) + 1e-9
    assert bool(m[7:10, 7:10].all())  # calibration centre
    # variable density: the central quarter is sampled more densely than the rest
    central = torch.zeros(16, 16, dtype=torch.bool)
    central[4:12, 4:12] = True
    plane = m[..., 0]
    assert float(plane[central].float().mean()) > 2 * float(plane[~central].float().mean())
    assert torch.equal(m, multicoil_mask(shape, 4, 0.08, generator=torch.Generator().manual_seed(0)))
    assert not torch.equal(m, multicoil_mask(shape, 4, 0.08, generator=torch.Generator().manual_seed(1)))


def test_declarations_shapes_and_batching():
    op = _op()
    assert isinstance(op, Operator)
    assert (op.slice_local, op.is_linear, op.projects, op.supports_support) == (False, True, False, False)
    assert op.periodic_scan_step() is None
    x = _randn((2, *SHAPE), torch.complex64)
    y = op.forward(x)
    assert y.shape == (2, 3, *SHAPE) and y.dtype == torch.complex64
    assert torch.equal(y[1], op.forward(x[1]))
    assert op.volume_shape(y) == SHAPE
    image = op.measurement_image(y)
    assert image.shape == (2, *SHAPE) and image.dtype == torch.float32
    assert bool((y[..., ~op.mask] == 0).all())
    assert op.forward(x.real.double()).dtype == torch.complex128


def test_physics_step_descends_data_term_and_keeps_real():
    op = _op()
    y = op.forward(_randn(SHAPE, torch.float64, seed=7))
    x = _randn(SHAPE, torch.float64, seed=8)
    stepped = op.physics_step(x, y)
    assert stepped.dtype == torch.float64
    assert float(op.data_term(stepped, y)) < float(op.data_term(x, y))
    xc = _randn(SHAPE, seed=9)
    assert op.physics_step(xc, y, step_size=0.5).is_complex()


@pytest.mark.parametrize("bad, match", [
    (lambda op: op.forward(torch.zeros(4, 6, 4)), "x: expected a volume"),
    (lambda op: op.forward(torch.zeros(SHAPE, dtype=torch.int64)), "x: expected a floating-point"),
    (lambda op: op.forward(torch.full(SHAPE, float("nan"))), "non-finite"),
    (lambda op: op.conjugate_transpose(torch.zeros((2, *SHAPE), dtype=torch.complex64)), "y: expected a k-space"),
    (lambda op: op.volume_shape(torch.zeros(SHAPE, dtype=torch.complex64)), "y: expected a k-space"),
    (lambda op: op.physics_step(torch.zeros(SHAPE), torch.zeros((3, *SHAPE)), step_size=float("inf")), "step_size"),
    (lambda op: MulticoilMRIOperator(op.sensitivities[0], op.mask), "sensitivities"),
    (lambda op: MulticoilMRIOperator(op.sensitivities, op.mask[:, :, :2]), "mask"),
    (lambda op: MulticoilMRIOperator(op.sensitivities, op.mask.float() * 2), "mask"),
    (lambda op: multicoil_mask((2, 6, 5), 2, 0.2, generator=torch.Generator()), "shape"),
])
def test_bad_input_is_named(bad, match):
    with pytest.raises((InputValidationError, ValueError), match=match):
        bad(_op())


def test_cs_wavelet_multicoil_descends_and_least_squares_at_zero_weight():
    shape = (4, 12, 10)  # 12 x 10 is padded to the wavelet's 16 x 16
    truth = torch.zeros(shape)
    truth[1:3, 3:9, 2:8] = 1.0
    op = _op(shape, coils=4, acceleration=2.0)
    y = op.forward(truth)
    zero_filled = op.conjugate_transpose(y)
    weight = 0.01
    lam = weight * float(zero_filled.abs().max())

    def objective(v):
        from paperlib.recon.wavelets import dwt2
        a, d = dwt2(torch.nn.functional.pad(v, (0, 6, 0, 4)), 3, "db4")
        return float(op.data_term(v, y)) + lam * float(a.abs().sum() + sum(b.abs().sum() for b in d))

    x = cs_wavelet_multicoil(op, y, weight=weight, iters=60)
    assert x.shape == shape and x.is_complex()
    assert objective(x) < objective(zero_filled)
    x0 = cs_wavelet_multicoil(op, y, weight=0.0, iters=100)
    assert float(op.data_term(x0, y)) < 1e-3 * float(op.data_term(zero_filled, y))
    with pytest.raises(InputValidationError, match="weight"):
        cs_wavelet_multicoil(op, y, weight=-1.0)
    with pytest.raises(InputValidationError, match="op"):
        cs_wavelet_multicoil(object(), y, weight=0.1)
