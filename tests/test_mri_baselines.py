"""Classical MRI baselines (zero-filled, CS-MRI by FISTA, TV by primal-dual) and the wavelets."""
import math

import pytest
import torch

from paperlib.io import InputValidationError
from paperlib.physics.mri import MRIOperator, make_mask
from paperlib.recon import mri_baselines as mb
from paperlib.recon.wavelets import WAVELETS, dwt2, idwt2, max_levels


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def phantom(depth=3, size=32):
    """Piecewise-constant slices (rectangles and a disc), different per slice."""
    x = torch.zeros(depth, size, size)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    for s in range(depth):
        x[s, 6 + s:22 + s, 8:24] = 0.6
        x[s][(yy - 16) ** 2 + (xx - 14 - s) ** 2 < 25] = 1.0
    return x


@pytest.fixture
def problem():
    x = phantom()
    masks = torch.stack([make_mask("uniform1d", (32, 32), 3, 0.1, generator=gen(i)) for i in range(3)])
    op = MRIOperator(masks)
    return op, x, op.forward(x)


def rel_err(r, x):
    return float((r - x).norm() / x.norm())


@pytest.mark.parametrize("name", sorted(WAVELETS))
def test_wavelet_filters_are_orthonormal(name):
    h = torch.tensor(WAVELETS[name], dtype=torch.float64)
    assert math.isclose(float(h.sum()), math.sqrt(2), abs_tol=1e-10)
    for shift in range(0, h.numel(), 2):
        dot = float((h[shift:] * h[: h.numel() - shift]).sum())
        assert math.isclose(dot, 1.0 if shift == 0 else 0.0, abs_tol=1e-10)


@pytest.mark.parametrize("name", ["haar", "db2", "db4"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("levels", [1, 3])
def test_dwt_is_orthonormal_and_inverted(name, dtype, levels):
    x = torch.randn(2, 3, 16, 24, dtype=dtype, generator=gen())
    approx, details = dwt2(x, levels, name)
    assert approx.shape == (2, 3, 16 >> levels, 24 >> levels)
    energy = approx.abs().square().sum() + sum(d.abs().square().sum() for d in details)
    assert torch.allclose(energy, x.abs().square().sum(), rtol=1e-9)
    assert torch.allclose(idwt2(approx, details, name), x, atol=1e-10)


def test_haar_fast_path_matches_convolution_path():
    x = torch.randn(2, 16, 16, dtype=torch.complex128, generator=gen(1))
    WAVELETS["_haar_by_conv"] = WAVELETS["haar"]
    try:
        a1, d1 = dwt2(x, 2, "haar")
        a2, d2 = dwt2(x, 2, "_haar_by_conv")
    finally:
        del WAVELETS["_haar_by_conv"]
    assert torch.allclose(a1, a2, atol=1e-12)
    assert all(torch.allclose(p, q, atol=1e-12) for p, q in zip(d1, d2))


def test_dwt_rejects_sizes_not_divisible():
    assert max_levels((24, 40)) == 3
    with pytest.raises(ValueError, match="divisible by 2\\^levels = 16"):
        dwt2(torch.zeros(24, 40), 4)
    with pytest.raises(ValueError, match="wavelet"):
        dwt2(torch.zeros(8, 8), 1, "sym9")


def test_zero_filled_is_the_adjoint_magnitude(problem):
    op, x, y = problem
    assert torch.allclose(mb.zero_filled(op, y), op.adjoint(y).abs())


@pytest.mark.parametrize("method, kwargs, gain", [
    (mb.cs_wavelet, dict(weight=0.02, iters=150, levels=2, wavelet="haar"), 0.6),
    (mb.cs_wavelet, dict(weight=0.01, iters=150, levels=2, wavelet="db2"), 0.9),
    (mb.total_variation, dict(weight=0.02, iters=150), 0.6),
])
def test_baselines_beat_zero_filled_on_a_piecewise_constant_phantom(problem, method, kwargs, gain):
    op, x, y = problem
    zf = rel_err(mb.zero_filled(op, y), x)
    rec = method(op, y, **kwargs)
    assert rec.shape == x.shape and rec.dtype == torch.float32
    assert rel_err(rec, x) < gain * zf


@pytest.mark.parametrize("method, kwargs", [
    (mb.cs_wavelet, dict(weight=0.02, iters=30, levels=2)),
    (mb.total_variation, dict(weight=0.02, iters=30)),
])
def test_batched_over_slices_equals_slice_by_slice(problem, method, kwargs):
    op, x, y = problem
    # a per-slice relative weight depends on the volume maximum: give each slice the same one
    batched = method(op, y, **kwargs)
    scale = float(op.zero_filled(y).abs().max())
    for s in range(3):
        single = MRIOperator(op.mask[s])
        w = kwargs["weight"] * scale / float(single.zero_filled(y[s]).abs().max())
        alone = method(single, y[s], **(kwargs | {"weight": w}))
        assert torch.allclose(batched[s], alone, atol=1e-4)


def test_iterations_converge(problem):
    op, x, y = problem
    a = mb.total_variation(op, y, weight=0.02, iters=200)
    b = mb.total_variation(op, y, weight=0.02, iters=400)
    assert rel_err(a, b) < 1e-2
    c = mb.cs_wavelet(op, y, weight=0.02, iters=200, levels=2, wavelet="haar")
    d = mb.cs_wavelet(op, y, weight=0.02, iters=400, levels=2, wavelet="haar")
    assert rel_err(c, d) < 1e-2


@pytest.mark.parametrize("method", [mb.cs_wavelet, mb.total_variation])
def test_zero_weight_keeps_the_least_squares_solution(problem, method):
    op, x, y = problem
    assert torch.allclose(method(op, y, weight=0.0, iters=5, real=False), mb.zero_filled(op, y), atol=1e-5)


@pytest.mark.parametrize("shape", [(32, 32), (30, 31), (33, 34)])
def test_real_normal_operator_is_the_real_part_of_the_complex_one(shape):
    masks = torch.stack([make_mask("uniform1d", shape, 3, 0.1, generator=gen(i)) for i in range(2)])
    op = MRIOperator(masks)
    v = torch.randn(2, *shape, dtype=torch.float64, generator=gen(7))
    assert torch.allclose(op.normal(v, real=True), op.adjoint(op.forward(v)).real, atol=1e-12)


@pytest.mark.parametrize("method, kwargs", [
    (mb.cs_wavelet, dict(weight=0.02, iters=150, levels=2, wavelet="haar")),
    (mb.total_variation, dict(weight=0.02, iters=150)),
])
def test_real_and_complex_solvers_both_work(problem, method, kwargs):
    op, x, y = problem
    zf = rel_err(mb.zero_filled(op, y), x)
    for real in (True, False):
        assert rel_err(method(op, y, real=real, **kwargs), x) < 0.6 * zf


def test_cs_pads_sizes_not_divisible_by_the_pyramid():
    x = phantom(2, 30)
    op = MRIOperator(make_mask("uniform1d", (30, 30), 3, 0.1, generator=gen()))
    y = op.forward(x)
    rec = mb.cs_wavelet(op, y, weight=0.02, iters=100, levels=2, wavelet="haar")
    assert rec.shape == (2, 30, 30)
    assert rel_err(rec, x) < rel_err(mb.zero_filled(op, y), x)


@pytest.mark.parametrize("method", [mb.zero_filled, mb.cs_wavelet, mb.total_variation])
def test_bad_inputs_are_clear_errors(problem, method):
    op, x, y = problem
    kw = {} if method is mb.zero_filled else dict(weight=0.01, iters=2)
    with pytest.raises(InputValidationError, match="complex k-space"):
        method(op, y.real, **kw)
    bad = y.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(InputValidationError, match="NaN"):
        method(op, bad, **kw)
    with pytest.raises(InputValidationError, match="does not fit"):
        method(op, y[:, :16], **kw)
    if kw:
        with pytest.raises(ValueError, match="weight"):
            method(op, y, weight=-1.0, iters=2)
        with pytest.raises(ValueError, match="iters"):
            method(op, y, weight=0.1, iters=0)


def test_tune_weight_picks_the_best_on_the_grid(problem):
    op, x, y = problem
    best, scores = mb.tune_weight(mb.total_variation, [op], [y], [x], [0.0, 0.02], iters=60, progress=False)
    assert best == 0.02
    best, scores = mb.tune_weight(mb.total_variation, [op], [y], [x], [0.0, 0.02], iters=60, progress=False,
                                  head_masks=[x > 0])
    assert [w for w, _ in scores] == [0.0, 0.02]
    assert best == 0.02 and scores[1][1] > scores[0][1]
    with pytest.raises(ValueError, match="equally many"):
        mb.tune_weight(mb.total_variation, [op], [], [x], [0.1])


def _tv_objective(op, y, x, lam, isotropic):
    """``1/2 ||M F x - y||^2 + λ TV(x)`` with forward differences (Neumann boundary)."""
    dh = torch.diff(x, dim=-2, append=x[..., -1:, :])
    dw = torch.diff(x, dim=-1, append=x[..., :, -1:])
    tv = (dh.abs() ** 2 + dw.abs() ** 2).sqrt().sum() if isotropic else dh.abs().sum() + dw.abs().sum()
    return float(0.5 * (op.forward(x) - y).abs().pow(2).sum() + lam * tv)


@pytest.mark.parametrize("real", [True, False])
def test_anisotropic_tv_minimises_its_own_objective(problem, real):
    """Each TV variant's solution beats the other variant's solution on its own objective."""
    op, x, y = problem
    lam = mb.absolute_weight(op.zero_filled(y), 0.02)
    # the solvers return magnitudes; the problem's images are >= 0, so magnitude = solution here
    iso = mb.total_variation(op, y, weight=0.02, iters=400, real=real)
    aniso = mb.total_variation(op, y, weight=0.02, iters=400, real=real, isotropic=False)
    assert rel_err(iso, aniso) > 1e-3  # the variants differ
    assert _tv_objective(op, y, aniso, lam, False) < _tv_objective(op, y, iso, lam, False)
    assert _tv_objective(op, y, iso, lam, True) < _tv_objective(op, y, aniso, lam, True)


def test_total_variation_anchored(problem):
    """``anchor``/``anchor_weight`` add ``ρ/2 ||x - z||^2``: a huge ρ returns the anchor, ρ = 0 from the
    TV solution stays there, and bad anchors are one clear error."""
    op, x, y = problem
    total_variation = mb.total_variation
    tv = total_variation(op, y, weight=0.01, iters=300)
    z = torch.rand(tv.shape, generator=gen(3))
    pinned = total_variation(op, y, weight=0.01, iters=50, anchor=z, anchor_weight=1e6)
    assert float((pinned - z).abs().max()) < 1e-3 * float(z.abs().max())
    again = total_variation(op, y, weight=0.01, iters=100, anchor=tv, anchor_weight=0.0)
    assert float((again - tv).abs().max()) < 2e-2 * float(tv.abs().max())
    middle = total_variation(op, y, weight=0.01, iters=300, anchor=z, anchor_weight=1.0)
    assert float((middle - z).norm()) < float((tv - z).norm())  # pulled towards the anchor
    for real in (True, False):
        total_variation(op, y, weight=0.01, iters=5, real=real, anchor=z if real else z.to(torch.complex64),
                        anchor_weight=0.5)
    with pytest.raises(ValueError, match="anchor"):
        total_variation(op, y, weight=0.01, iters=5, anchor=z[:-1], anchor_weight=1.0)
    with pytest.raises(ValueError, match="anchor"):
        total_variation(op, y, weight=0.01, iters=5, anchor=z.to(torch.complex64), anchor_weight=1.0)
    with pytest.raises(ValueError, match="anchor_weight"):
        total_variation(op, y, weight=0.01, iters=5, anchor=z, anchor_weight=-1.0)
    with pytest.raises(ValueError, match="anchor_weight"):
        total_variation(op, y, weight=0.01, iters=5, anchor_weight=1.0)
