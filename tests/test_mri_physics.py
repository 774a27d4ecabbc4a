"""MRI physics: masks, centred FFTs, the operator and its data-consistency step (paper Eq. 3-4)."""
import numpy as np
import pytest
import torch

from paperlib.io import InputValidationError
from paperlib.physics.base import adjointness_error, check_gradients
from paperlib.physics.mri import MRIOperator, fft2c, gaussian2d_mask, ifft2c, make_mask, uniform1d_mask


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def op_and_volume():
    masks = torch.stack([make_mask("uniform1d", (24, 20), 4, 0.1, generator=gen(i)) for i in range(3)])
    x = torch.rand(3, 24, 20, generator=gen(5))
    return MRIOperator(masks), x


def test_fft2c_agrees_with_numpy():
    x = torch.randn(2, 7, 10, dtype=torch.complex128, generator=gen())
    ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x.numpy(), axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    np.testing.assert_allclose(fft2c(x).numpy(), ref, atol=1e-12)
    np.testing.assert_allclose(ifft2c(fft2c(x)).numpy(), x.numpy(), atol=1e-12)
    assert torch.allclose(fft2c(x).norm(), x.norm())  # unitary


@pytest.mark.parametrize("kind", ["uniform1d", "gaussian2d"])
@pytest.mark.parametrize("acceleration", [2, 4, 8])
def test_masks_sampled_fraction_centre_and_seed(kind, acceleration):
    shape = (48, 40)
    m1 = make_mask(kind, shape, acceleration, 0.5 / acceleration, generator=gen(3))
    m2 = make_mask(kind, shape, acceleration, 0.5 / acceleration, generator=gen(3))
    m3 = make_mask(kind, shape, acceleration, 0.5 / acceleration, generator=gen(4))
    assert m1.dtype == torch.bool and m1.shape == shape
    assert torch.equal(m1, m2) and not torch.equal(m1, m3)
    n_expected = round(40 / acceleration) * 48 if kind == "uniform1d" else round(48 * 40 / acceleration)
    assert int(m1.sum()) == n_expected
    assert bool(m1[24, 20])  # zero frequency always sampled


def test_uniform_mask_has_full_central_band():
    m = uniform1d_mask((16, 64), 4, 0.125, generator=gen())
    assert bool(m[:, 28:36].all())  # 8 central columns
    assert bool((m == m[0]).all())


def test_gaussian_mask_is_denser_at_the_centre():
    m = gaussian2d_mask((64, 64), 4, 0.05, generator=gen()).float()
    centre = m[16:48, 16:48].mean()
    assert centre > 2 * (m.sum() - m[16:48, 16:48].sum()) / (64 * 64 - 32 * 32)


@pytest.mark.parametrize("bad", [dict(acceleration=1.0), dict(acceleration=float("nan")),
                                 dict(center_fraction=0.5), dict(shape=(2, 8))])
def test_mask_arguments_validated(bad):
    args = dict(shape=(16, 16), acceleration=4, center_fraction=0.1) | bad
    name = next(iter(bad))
    with pytest.raises(ValueError, match=name):
        uniform1d_mask(args["shape"], args["acceleration"], args["center_fraction"], generator=gen())


def test_mask_requires_generator():
    with pytest.raises(ValueError, match="generator"):
        uniform1d_mask((16, 16), 4, 0.1, generator=None)


def test_adjointness(op_and_volume):
    op, _ = op_and_volume
    x = torch.randn(3, 24, 20, dtype=torch.complex128, generator=gen(1))
    y = torch.randn(3, 24, 20, dtype=torch.complex128, generator=gen(2))
    assert adjointness_error(op.forward, op.adjoint, x, y) < 1e-12


def test_forward_zero_outside_mask_and_batched_equals_per_slice(op_and_volume):
    op, x = op_and_volume
    y = op.forward(x)
    assert bool((y[~op.mask] == 0).all())
    for s in range(3):
        assert torch.allclose(y[s], MRIOperator(op.mask[s]).forward(x[s]))


def test_hard_data_consistency_is_idempotent_and_matches_measurement(op_and_volume):
    op, x = op_and_volume
    y = op.forward(x)
    z = torch.rand(3, 24, 20, generator=gen(9), dtype=torch.float64).to(torch.complex128)
    once = op.data_consistency(z, y.to(torch.complex128), 1.0)
    twice = op.data_consistency(once, y.to(torch.complex128), 1.0)
    assert torch.allclose(once, twice, atol=1e-12)
    assert torch.allclose(op.forward(once), y.to(torch.complex128), atol=1e-6)
    # unsampled k-space of z is kept
    assert torch.allclose(fft2c(once)[~op.mask], fft2c(z)[~op.mask], atol=1e-12)


def test_soft_data_consistency_is_a_gradient_step(op_and_volume):
    op, x = op_and_volume
    y = op.forward(x).to(torch.complex128)
    z = torch.randn(3, 24, 20, dtype=torch.complex128, generator=gen(3))
    lam = 0.3
    grad = op.adjoint(op.forward(z) - y)  # gradient of 1/2 ||A z - y||^2
    assert torch.allclose(op.data_consistency(z, y, lam), z - lam * grad, atol=1e-12)
    assert torch.allclose(op.data_consistency(z, y, 0.0), z)


def test_data_consistency_gradcheck():
    mask = make_mask("uniform1d", (6, 8), 2, 0.25, generator=gen())
    op = MRIOperator(mask)
    x = torch.rand(2, 6, 8, dtype=torch.float64, generator=gen(1))
    y = op.forward(torch.rand(2, 6, 8, dtype=torch.float64, generator=gen(2)))
    assert check_gradients(lambda a, b: op.data_consistency(a, b, 0.7), x, y)
    assert check_gradients(lambda a: op.forward(a), x)


def test_measurement_image_is_zero_filled_magnitude(op_and_volume):
    op, x = op_and_volume
    y = op.forward(x)
    img = op.measurement_image(y)
    assert img.dtype == torch.float32 and img.shape == x.shape
    assert torch.allclose(img, ifft2c(y).abs(), atol=1e-6)


def test_mask_shape_that_does_not_fit_the_volume_is_a_clear_error():
    op = MRIOperator(torch.ones(3, 24, 20, dtype=torch.bool))
    with pytest.raises(InputValidationError, match=r"mask of shape \(3, 24, 20\) does not fit the volume of shape \(3, 24, 24\)"):
        op.forward(torch.zeros(3, 24, 24))
    with pytest.raises(InputValidationError, match="mask of shape"):
        op.data_consistency(torch.zeros(4, 24, 20), torch.zeros(4, 24, 20, dtype=torch.complex64))


@pytest.mark.parametrize("mask, match", [
    (torch.full((4, 4), 0.5), r"values in \{0, 1\}"),
    (torch.ones(4), r"\(H, W\) or \(D, H, W\)"),
    ([[1, 0]], "torch tensor or numpy array"),
])
def test_bad_masks_rejected(mask, match):
    with pytest.raises(InputValidationError, match=match):
        MRIOperator(mask)


@pytest.mark.parametrize("real", [True, False])
def test_normal_operator_is_adjoint_of_forward(op_and_volume, real):
    """``normal`` (uncentred FFTs; for real images the symmetrised half mask) equals
    ``A^H A`` (its real part for real images), per slice mask, in double precision."""
    op, _ = op_and_volume
    g = gen(7)
    v = torch.randn(3, 24, 20, dtype=torch.float64 if real else torch.complex128, generator=g)
    expected = op.adjoint(op.forward(v))
    got = op.normal(v, real=real)
    assert got.dtype == v.dtype and got.shape == v.shape
    assert torch.allclose(got, expected.real if real else expected, atol=1e-12)


def test_volume_shape_and_bad_values_are_named():
    op = MRIOperator(torch.ones(8, 8, dtype=torch.bool))
    assert op.volume_shape(torch.zeros(2, 3, 8, 8, dtype=torch.complex64)) == (3, 8, 8)
    with pytest.raises(InputValidationError, match=r"y: expected \(D, H, W\)"):
        op.volume_shape(torch.zeros(8, 8, dtype=torch.complex64))
    with pytest.raises(InputValidationError, match="x: 128 non-finite"):
        op.forward(torch.tensor(float("nan")).expand(2, 8, 8))


@pytest.mark.parametrize("dtype", [torch.float32, torch.complex64, torch.float64, torch.complex128])
def test_bound_physics_step_equals_eq4_and_reads_y_once(dtype):
    """``bind_physics_step(y)`` (A^H y computed once, DART's path) gives Eq. 4 of
    ``data_consistency`` for real and complex, single and double precision, batched ``x``; it
    keeps the ``y`` it was bound to; a non-finite ``y`` is refused at binding, naming ``y``; a
    non-finite ``x`` at the step, naming ``x``."""
    g = torch.Generator().manual_seed(3)
    op = MRIOperator(make_mask("gaussian2d", (16, 16), 4, 0.125, generator=g))
    y = op.forward(torch.rand(3, 16, 16, generator=g, dtype=torch.float64)).to(
        torch.complex128 if dtype in (torch.float64, torch.complex128) else torch.complex64)
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64).to(dtype)
    yb = y.expand(2, 3, 16, 16)
    step = op.bind_physics_step(yb, step_size=0.7)
    expected = op.data_consistency(x, yb, step_size=0.7)
    assert step(x).dtype == expected.dtype == x.dtype
    assert torch.allclose(step(x), expected, atol=1e-6)
    y_copy = y.clone()
    y.mul_(2.0)  # the bound step read y when it was bound
    assert torch.allclose(step(x), op.data_consistency(x, y_copy.expand(2, 3, 16, 16), step_size=0.7), atol=1e-6)
    bad = y_copy.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputValidationError, match="y: 1 non-finite"):
        op.bind_physics_step(bad)
    with pytest.raises(InputValidationError, match="x: 1 non-finite"):
        nan_x = x.clone()
        nan_x[0, 0, 0, 0] = float("nan")
        step(nan_x)
