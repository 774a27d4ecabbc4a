"""Multislice 4D-STEM operator: agreement with abTEM, gradients, invariants, bad inputs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paperlib.io import InputValidationError
from paperlib.physics.multislice import (
    MultisliceOperator,
    antialias_aperture,
    grid_scan,
    interaction_constant,
    probe_fourier,
    soft_threshold,
    wavelength,
)

import abtem  # noqa: E402  (a required dependency: a broken install must fail, not skip)


@pytest.fixture(scope="module")
def sto_potential():
    """abTEM potential of SrTiO3 [001], 2 x 2 x 2 cells on a 32 x 32 grid, 4 slices."""
    from ase.spacegroup import crystal

    cell = crystal(["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)],
                   spacegroup=221, cellpar=[3.905] * 3 + [90] * 3)
    atoms = cell * (2, 2, 2)
    with abtem.config.set({"precision": "float64"}):
        pot = abtem.Potential(atoms, gpts=32, slice_thickness=atoms.cell[2, 2] / 4)
        array = pot.build().compute(progress_bar=False)
    return np.asarray(array.array, dtype=np.float64), array.sampling[0], array.slice_thickness[0]


# positions that float32 represents exactly, so both codes place the probe identically
POSITIONS = grid_scan((0.5, 0.25), (4.5, 4.25), (4, 4))


def _abtem_scan(V, sampling, dz, *, defocus, precision):
    with abtem.config.set({"precision": precision}):
        arr = abtem.PotentialArray(V.astype(precision), sampling=sampling, slice_thickness=dz)
        probe = abtem.Probe(energy=200e3, semiangle_cutoff=20.0, defocus=defocus)
        probe.grid.match(arr)
        scan = abtem.CustomScan(POSITIONS.reshape(-1, 2))
        out = probe.scan(arr, scan=scan, detectors=abtem.PixelatedDetector(max_angle=None))
        out = np.asarray(out.compute(progress_bar=False).array)
    return out.reshape(4, 4, *V.shape[-2:])


@pytest.mark.parametrize("backend", ["fftw", "torch"])
@pytest.mark.parametrize("precision, dtype, tol", [
    ("float32", torch.float32, 1e-5),
    ("float64", torch.float64, 1e-12),
])
def test_agrees_with_abtem(sto_potential, precision, dtype, tol, backend):
    """Our 4D-STEM data equal abTEM 1.0.11's own simulation of the same potential (SrTiO3,
    4 slices, 32 x 32 grid, 16 positions, 20 Å defocus, full patterns).

    Why these tolerances (relative L2 error ``tol``, max error / max intensity ``3 tol``):

    * float64: both codes evaluate the same formulas (probe with a one-pixel soft aperture edge,
      antialiasing cutoff 0.6666666 of Nyquist with a 0.01/dx taper, transmit-then-propagate
      for every slice, ``exp(-2 pi i k.r)`` shifts), so the difference is rounding only:
      measured 3e-15. ``1e-12`` leaves 300x headroom for other FFT libraries, yet any
      convention difference (cutoff 2/3 instead of 0.6666666, hard aperture, propagating the
      last slice or not, a sign) shows up at 1e-9 or far above (a hard aperture alone gives
      ~18 %).
    * float32 (abTEM's default): each code rounds each of its 2D - 1 FFTs and D products at
      eps32 = 6e-8 relative, differently (FFTW vs MKL or FFTW with other plans); expected
      ~10 eps32 sqrt(#ops) ~ 1e-6, measured 6.6e-7 (L2) and 1.4e-6 (max). ``1e-5`` leaves a
      15x margin but is still 100x below the smallest convention error above.
    """
    V, sampling, dz = sto_potential
    expected = _abtem_scan(V, sampling, dz, defocus=20.0, precision=precision)
    op = MultisliceOperator(gpts=32, sampling=sampling, energy=200.0, semiangle=20.0,
                            defocus=20.0, slice_thickness=dz, n_slices=4,
                            scan_positions=POSITIONS, dtype=dtype, fft_backend=backend,
                            batch_size=5)
    got = op.forward(torch.from_numpy(V).to(dtype)).double().numpy()
    expected = expected.astype(np.float64)
    rel_l2 = np.linalg.norm(got - expected) / np.linalg.norm(expected)
    rel_max = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel_l2 < tol and rel_max < 3 * tol, (rel_l2, rel_max)


def test_detector_crop_is_centre_of_full_pattern(sto_potential):
    V, sampling, dz = sto_potential
    kw = dict(gpts=32, sampling=sampling, energy=200.0, semiangle=20.0, slice_thickness=dz,
              n_slices=4, scan_positions=POSITIONS[:2, :2])
    full = MultisliceOperator(**kw).forward(torch.from_numpy(V).float())
    crop = MultisliceOperator(**kw, detector_shape=(20, 24)).forward(torch.from_numpy(V).float())
    assert crop.shape == (2, 2, 20, 24)
    torch.testing.assert_close(crop, full[..., 6:26, 4:28])


def test_constants_match_abtem():
    from abtem.core.energy import energy2sigma, energy2wavelength

    for kev in (80.0, 200.0, 300.0):
        assert wavelength(kev) == pytest.approx(energy2wavelength(kev * 1e3), rel=1e-14)
        assert interaction_constant(kev) == pytest.approx(energy2sigma(kev * 1e3), rel=1e-12)


def test_probe_normalisation_and_vacuum_patterns():
    pk = probe_fourier((24, 20), (0.2, 0.25), 200.0, 20.0, defocus=50.0)
    assert float((pk.abs() ** 2).sum()) == pytest.approx(1.0, abs=1e-12)
    real = torch.fft.ifft2(pk)
    assert float((real.abs() ** 2).sum()) == pytest.approx(1 / (24 * 20), rel=1e-12)
    # the aperture is a disk of 20 mrad with a soft edge of one Fourier pixel
    lam = wavelength(200.0)
    k = torch.sqrt(torch.fft.fftfreq(24, 0.2)[:, None] ** 2 + torch.fft.fftfreq(20, 0.25)[None] ** 2)
    assert bool((pk.abs()[k * lam * 1e3 > 20.0 + 1e3 * lam / (20 * 0.2)] == 0).all())
    # vacuum: the probe passes unchanged, every pattern sums to one and is position-independent
    op = MultisliceOperator(gpts=(24, 20), sampling=(0.2, 0.25), energy=200.0, semiangle=20.0,
                            slice_thickness=2.0, n_slices=3,
                            scan_positions=grid_scan((0, 0), (4, 5), (3, 2)), dtype=torch.float64)
    intens = op.forward(torch.zeros(op.shape, dtype=torch.float64))
    torch.testing.assert_close(intens.sum((-2, -1)), torch.ones(3, 2, dtype=torch.float64))
    torch.testing.assert_close(intens, intens[:1, :1].expand_as(intens))
    bf = op.bright_field(intens)
    assert bf.shape == (3, 2) and bool((bf > 0.95).all())  # soft edge partly outside
    torch.testing.assert_close(op.measurement_image(intens), bf)


def test_abtem_probe_matches():
    op = MultisliceOperator(gpts=32, sampling=0.2, energy=200.0, semiangle=25.0, defocus=40.0,
                            slice_thickness=2.0, n_slices=1,
                            scan_positions=np.array([[[1.5, 2.25]]]), dtype=torch.float64)
    with abtem.config.set({"precision": "float64"}):
        probe = abtem.Probe(energy=200e3, semiangle_cutoff=25.0, defocus=40.0, gpts=32, sampling=0.2)
        ref = np.asarray(probe.build(scan=abtem.CustomScan([[1.5, 2.25]])).compute(progress_bar=False).array)
    np.testing.assert_allclose(op._probes[0].numpy(), ref.reshape(32, 32), atol=1e-12)


def test_antialias_aperture_cutoff():
    aa = antialias_aperture((64, 64), (0.2, 0.2))
    k = torch.sqrt(torch.fft.fftfreq(64, 0.2)[:, None] ** 2 + torch.fft.fftfreq(64, 0.2)[None] ** 2)
    nyquist = 1 / (2 * 0.2)
    assert bool((aa[k > 2 / 3 * nyquist] == 0).all())
    assert bool((aa[k < 2 / 3 * nyquist - 0.01 / 0.2] == 1).all())


def _tiny(dtype=torch.float64, **kw):
    args = dict(gpts=8, sampling=0.3, energy=200.0, semiangle=25.0, slice_thickness=1.0,
                n_slices=2, scan_positions=grid_scan((0, 0), (2.4, 2.4), (2, 2)), dtype=dtype)
    args.update(kw)
    return MultisliceOperator(**args)


@pytest.mark.parametrize("window", [None, 6])
def test_gradcheck_float64(window):
    op = _tiny(window=window)
    g = torch.Generator().manual_seed(0)
    V = (torch.rand(op.shape, generator=g, dtype=torch.float64) * 200).requires_grad_(True)
    target = op.forward(torch.rand(op.shape, generator=g, dtype=torch.float64) * 200)
    # gradients and intensities are small (patterns sum to <= 1): absolute tolerances below them
    assert torch.autograd.gradcheck(lambda v: op.loss(v, target), (V,), eps=1e-6, atol=1e-11, rtol=1e-3)
    assert torch.autograd.gradcheck(lambda v: op.forward(v), (V,), eps=1e-6, atol=1e-11, rtol=1e-3,
                                    fast_mode=True)


def test_window_equal_to_grid_is_the_full_model():
    g = torch.Generator().manual_seed(1)
    V = torch.rand(2, 8, 8, generator=g, dtype=torch.float64) * 100
    torch.testing.assert_close(_tiny(window=8).forward(V), _tiny().forward(V))


def test_window_is_exact_for_an_object_periodic_with_the_window():
    """A w-pixel window of a w-periodic object holds the whole object, so the windowed model on
    the large grid must equal the full model on the w-grid: checks the window gather, the probe
    placement inside the window and the detector grid (see the module docstring for how
    windows differ from the full model on non-periodic objects)."""
    g = torch.Generator().manual_seed(2)
    V24 = torch.rand(3, 24, 24, generator=g, dtype=torch.float64) * 100
    pos = grid_scan((4.0, 4.3), (7.0, 6.0), (3, 2))
    kw = dict(sampling=0.2, energy=200.0, semiangle=20.0, slice_thickness=2.0, n_slices=3,
              scan_positions=pos, defocus=20.0, dtype=torch.float64)
    small = MultisliceOperator(gpts=24, **kw).forward(V24)
    windowed = MultisliceOperator(gpts=48, window=24, **kw).forward(V24.repeat(1, 2, 2))
    assert windowed.shape == (3, 2, 24, 24)
    torch.testing.assert_close(windowed, small, rtol=0, atol=1e-13)


def test_all_positions_in_one_batch_match_single_positions():
    op = _tiny(dtype=torch.float32, window=6)
    V = torch.rand(op.shape, generator=torch.Generator().manual_seed(3)) * 100
    all_at_once = op.intensities_at(V)
    singles = torch.cat([op.intensities_at(V, torch.tensor([j])) for j in range(op.n_positions)])
    torch.testing.assert_close(all_at_once, singles)


@pytest.mark.parametrize("window", [None, 6])
def test_fast_path_matches_autograd_path(window, monkeypatch):
    """The no-grad forward (batched, in place, FFTW or torch FFTs, probes cached or built per
    batch, any batch size) computes the same model as the differentiable path."""
    op = _tiny(window=window, n_slices=3, scan_positions=grid_scan((0, 0), (2.4, 2.1), (3, 3)))
    V = torch.rand(op.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 300
    reference = op.intensities_at(V.clone().requires_grad_(True)).detach()
    for backend in ("fftw", "torch"):
        for batch in (1, 4, 9, 32):
            fast = _tiny(window=window, n_slices=3, scan_positions=op.scan_positions,
                         fft_backend=backend, batch_size=batch)
            torch.testing.assert_close(fast.intensities_at(V), reference, rtol=0, atol=1e-14)
    index = torch.tensor([7, 2, 2, 0])
    torch.testing.assert_close(op.intensities_at(V, index), reference[index], rtol=0, atol=1e-14)
    monkeypatch.setattr(MultisliceOperator, "PROBE_CACHE_ELEMENTS", 0)
    uncached = _tiny(window=window, n_slices=3, scan_positions=op.scan_positions, batch_size=4)
    assert uncached._probes is None
    torch.testing.assert_close(uncached.intensities_at(V), reference, rtol=0, atol=1e-14)
    assert uncached.default_step_size == pytest.approx(op.default_step_size, rel=1e-12)


@pytest.mark.parametrize("window", [None, 6])
def test_hand_written_gradient_matches_autograd(window, monkeypatch):
    """``gradient`` (the adjoint written out, FFTW or torch transforms, any batch size, probes
    cached or not, all positions or a mini-batch with repeats) equals autograd through ``loss``
    in float64, and leaves the operator as it was (the cached probes are not overwritten)."""
    scan = grid_scan((0, 0), (2.4, 2.1), (3, 3))
    g = torch.Generator().manual_seed(8)
    ref_op = _tiny(window=window, n_slices=3, scan_positions=scan)
    V = torch.rand(ref_op.shape, generator=g, dtype=torch.float64) * 300
    target = ref_op.forward(torch.rand(ref_op.shape, generator=g, dtype=torch.float64) * 300)

    def autograd(op, index=None):
        v = V.clone().requires_grad_(True)
        value = op.loss(v, target, index=index)
        return value.detach(), torch.autograd.grad(value, v)[0]

    index = torch.tensor([7, 2, 2, 0])
    for cache in (True, False):
        if not cache:
            monkeypatch.setattr(MultisliceOperator, "PROBE_CACHE_ELEMENTS", 0)
        for backend in ("fftw", "torch"):
            for batch in (1, 4, 32):
                op = _tiny(window=window, n_slices=3, scan_positions=scan, fft_backend=backend, batch_size=batch)
                before = op.forward(V)
                for idx in (None, index):
                    want_loss, want = autograd(op, idx)
                    got_loss, got = op.gradient(V, target, index=idx)
                    torch.testing.assert_close(got_loss, want_loss, rtol=1e-12, atol=0)
                    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14 * float(want.abs().max()))
                torch.testing.assert_close(op.forward(V), before, rtol=0, atol=0)


def _poisson_counts(op, V, dose, seed):
    """Poisson counts of ``op.forward(V)`` at ``dose`` electrons per pattern (zeros included) and the
    normalised intensities they estimate."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.poisson(op.forward(V) * dose, generator=g)
    assert bool((counts == 0).any())  # dark pixels with no count: the offset's case
    return counts, counts / dose


@pytest.mark.parametrize("window", [None, 6])
def test_poisson_gradient_matches_autograd(window):
    """The Poisson data term: the hand-written gradient (FFTW and torch transforms, any batch size, a
    mini-batch with repeats) equals autograd through ``loss(likelihood="poisson")`` in float64, on
    counts with zeros; the loss is zero at the data."""
    scan = grid_scan((0, 0), (2.4, 2.1), (3, 3))
    g = torch.Generator().manual_seed(11)
    ref_op = _tiny(window=window, n_slices=3, scan_positions=scan)
    V = torch.rand(ref_op.shape, generator=g, dtype=torch.float64) * 300
    _, target = _poisson_counts(ref_op, torch.rand(ref_op.shape, generator=g, dtype=torch.float64) * 300, 200, 0)
    index = torch.tensor([7, 2, 2, 0])
    for backend in ("fftw", "torch"):
        for batch in (1, 4, 32):
            op = _tiny(window=window, n_slices=3, scan_positions=scan, fft_backend=backend, batch_size=batch)
            for idx in (None, index):
                v = V.clone().requires_grad_(True)
                value = op.loss(v, target, index=idx, likelihood="poisson")
                want = torch.autograd.grad(value, v)[0]
                got_loss, got = op.gradient(V, target, index=idx, likelihood="poisson")
                torch.testing.assert_close(got_loss, value.detach(), rtol=1e-12, atol=0)
                torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14 * float(want.abs().max()))
    noiseless = ref_op.forward(V)
    assert float(ref_op.loss(V, noiseless, likelihood="poisson")) == pytest.approx(0.0, abs=1e-15)


def test_poisson_term_is_the_counts_likelihood_and_near_the_amplitude_curvature():
    """Differences of the Poisson term between two potentials are those of the counts' negative
    log-likelihood divided by the dose (normalised intensities, no offset); near the data its gradient
    is the amplitude form's (equal Gauss-Newton curvature, so the same default step); far from it they
    differ."""
    op, _, g = _two_slice_problem()
    op = _tiny(dtype=torch.float64, gpts=16, sampling=0.25, n_slices=2, scan_positions=op.scan_positions)
    V = torch.rand(op.shape, generator=g, dtype=torch.float64) * 100
    dose = 1e4
    counts, normalised = _poisson_counts(op, V, dose, 1)
    W = V + torch.rand(op.shape, generator=g, dtype=torch.float64)

    def nll(U):
        return -torch.distributions.Poisson(op.forward(U) * dose + 1e-300).log_prob(counts).sum()

    ours = (op.loss(W, normalised, likelihood="poisson", poisson_offset=1e-300)
            - op.loss(V, normalised, likelihood="poisson", poisson_offset=1e-300))
    assert float(ours) == pytest.approx(float(nll(W) - nll(V)) / dose / 2, rel=1e-6)
    exact = op.forward(V)
    near = V + 1e-3 * torch.randn(op.shape, generator=g, dtype=torch.float64)
    _, g_amp = op.gradient(near, exact)
    _, g_poi = op.gradient(near, exact, likelihood="poisson", poisson_offset=1e-12)
    assert float((g_poi - g_amp).norm() / g_amp.norm()) < 0.05
    far = torch.rand(op.shape, generator=g, dtype=torch.float64) * 100
    _, g_amp = op.gradient(far, exact)
    _, g_poi = op.gradient(far, exact, likelihood="poisson")
    assert float((g_poi - g_amp).norm() / g_amp.norm()) > 0.05


def test_poisson_physics_step_decreases_its_loss_and_binds():
    op, _, g = _two_slice_problem()
    truth = torch.rand(op.shape, generator=g) * 100
    _, intens = _poisson_counts(op, truth, 1e6, 2)
    V = torch.zeros(op.shape)
    losses = [float(op.loss(V, intens, likelihood="poisson"))]
    step = op.bind_physics_step(intens, likelihood="poisson", nonnegative=True)
    for _ in range(5):
        new = step(V)
        assert torch.equal(new, op.physics_step(V, intens, likelihood="poisson", nonnegative=True))
        V = new
        losses.append(float(op.loss(V, intens, likelihood="poisson")))
    assert all(b < a for a, b in zip(losses, losses[1:]))  # every step lowers it
    assert losses[-1] < 0.8 * losses[0] and all(torch.isfinite(torch.tensor(losses)))


@pytest.mark.parametrize("kwargs, intens_scale, match", [
    ({"likelihood": "gaussian"}, 1.0, "likelihood: expected one of"),
    ({"likelihood": "amplitude", "poisson_offset": 0.1}, 1.0, "poisson_offset: only with"),
    ({"likelihood": "poisson", "poisson_offset": 0.0}, 1.0, "poisson_offset: expected None or a finite number > 0"),
    ({"likelihood": "poisson", "poisson_offset": float("nan")}, 1.0, "poisson_offset"),
    ({"likelihood": "poisson"}, 0.0, "intensities: all zero"),
])
def test_likelihood_bad_settings_are_named(kwargs, intens_scale, match):
    op, intens, _ = _two_slice_problem()
    V = torch.zeros(op.shape)
    for call in (lambda: op.physics_step(V, intens * intens_scale, **kwargs),
                 lambda: op.bind_physics_step(intens * intens_scale, **kwargs),
                 lambda: op.loss(V, intens * intens_scale, **kwargs),
                 lambda: op.gradient(V, intens * intens_scale, **kwargs)):
        with pytest.raises(InputValidationError, match=match):
            call()


def test_operator_pickles_after_fftw_use():
    import pickle

    op = _tiny(fft_backend="fftw")
    V = torch.rand(op.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    before = op.forward(V)
    assert op._fftw_cache  # plans were made
    clone = pickle.loads(pickle.dumps(op))
    torch.testing.assert_close(clone.forward(V), before, rtol=0, atol=0)


def _two_slice_problem():
    op = _tiny(dtype=torch.float32, gpts=16, sampling=0.25, n_slices=2,
               scan_positions=grid_scan((0, 0), (4, 4), (4, 4)))
    g = torch.Generator().manual_seed(4)
    return op, op.forward(torch.rand(op.shape, generator=g) * 100), g


def test_physics_step_decreases_loss_and_thresholds():
    op, intens, _ = _two_slice_problem()
    V0 = torch.zeros(op.shape)
    V1 = op.physics_step(V0, intens)
    assert float(op.loss(V1, intens)) < float(op.loss(V0, intens))
    V2 = op.physics_step(V1, intens, threshold=5.0, nonnegative=True)
    assert bool((V2 >= 0).all())
    assert not V2.requires_grad and V2.shape == op.shape
    assert op.slice_local is False


def test_physics_step_on_a_support():
    op, intens, g = _two_slice_problem()
    V0 = torch.rand(op.shape, generator=g)
    top = torch.tensor([True, False])
    V1 = op.physics_step(V0, intens, support=top)
    assert bool((V1[1] == 0).all())  # outside the support: vacuum
    # the default step grows by D / T on a support of T slices; an explicit step is kept
    mu = op.default_step_size
    _, grad = op.gradient(V0, intens)
    torch.testing.assert_close(V1[0], V0[0] - 2 * mu * grad[0])
    torch.testing.assert_close(op.physics_step(V0, intens, support=top, step_size=mu)[0], V0[0] - mu * grad[0])
    for bad in (torch.tensor([False, False]), torch.tensor([1, 0]), torch.ones(3, dtype=torch.bool)):
        with pytest.raises(InputValidationError, match="support"):
            op.physics_step(V0, intens, support=bad)


def test_soft_threshold():
    x = torch.tensor([-3.0, -0.5, 0.0, 0.5, 3.0])
    assert soft_threshold(x, 1.0).tolist() == [-2.0, 0.0, 0.0, 0.0, 2.0]
    assert soft_threshold(x, 1.0, nonnegative=True).tolist() == [0.0, 0.0, 0.0, 0.0, 2.0]
    assert soft_threshold(x, 0.0) is x


# ----------------------------------------------------------------------------- bad inputs
def test_potential_shape_mismatch_is_named():
    op = _tiny()
    with pytest.raises(InputValidationError, match=r"V: expected .*\(2, 8, 8\).*got \(2, 8, 9\)"):
        op.forward(torch.zeros(2, 8, 9, dtype=torch.float64))
    with pytest.raises(InputValidationError, match=r"V: expected .*\(2, 8, 8\).*got \(3, 8, 8\)"):
        op.forward(torch.zeros(3, 8, 8, dtype=torch.float64))


def test_potential_sampling_mismatch_is_named():
    op = _tiny()
    with pytest.raises(InputValidationError, match=r"sampling: .*\(0\.2, 0\.2\).*\(0\.3, 0\.3\)"):
        op.forward(torch.zeros(op.shape, dtype=torch.float64), sampling=0.2)
    op.forward(torch.zeros(op.shape, dtype=torch.float64), sampling=(0.3, 0.3))


def test_potential_nonfinite_or_complex():
    op = _tiny()
    V = torch.zeros(op.shape, dtype=torch.float64)
    V[0, 1, 1] = math.nan
    with pytest.raises(InputValidationError, match="V: 1 non-finite"):
        op.forward(V)
    with pytest.raises(InputValidationError, match="V: expected a real"):
        op.forward(torch.zeros(op.shape, dtype=torch.complex128))


def test_intensity_shape_mismatch_is_named():
    op = _tiny()
    good = op.forward(torch.zeros(op.shape, dtype=torch.float64))
    V = torch.zeros(op.shape, dtype=torch.float64)
    with pytest.raises(InputValidationError,
                       match=r"intensities: expected shape .*\(2, 2, 8, 8\).*scan grid \(2, 2\).*got \(3, 2, 8, 8\)"):
        op.loss(V, torch.zeros(3, 2, 8, 8, dtype=torch.float64))
    with pytest.raises(InputValidationError, match=r"detector \(8, 8\).*got \(2, 2, 6, 6\)"):
        op.physics_step(V, good[..., 1:7, 1:7])
    with pytest.raises(InputValidationError, match="intensities: expected shape"):
        op.bright_field(good[0])


def test_negative_or_nonfinite_intensities():
    op = _tiny()
    V = torch.zeros(op.shape, dtype=torch.float64)
    intens = op.forward(V).clone()
    bad = intens.clone()
    bad[0, 0, 0, 0] = -1e-3
    with pytest.raises(InputValidationError, match=r"intensities: 1 negative values \(min -0\.001\)"):
        op.loss(V, bad)
    bad = intens.clone()
    bad[1, 1, 2, 2] = math.inf
    with pytest.raises(InputValidationError, match="intensities: 1 non-finite"):
        op.physics_step(V, bad)


def test_constructor_validation():
    with pytest.raises(InputValidationError, match="scan_positions: expected a finite"):
        _tiny(scan_positions=np.zeros((4, 2)))
    with pytest.raises(InputValidationError, match="slice_thickness: expected a number or 2"):
        _tiny(slice_thickness=[1.0, 1.0, 1.0])
    with pytest.raises(InputValidationError, match="window: expected between 2 and the grid"):
        _tiny(window=12)
    with pytest.raises(InputValidationError, match="detector_shape: expected at most the window"):
        _tiny(window=6, detector_shape=(8, 8))
    with pytest.raises(InputValidationError, match="batch_size: expected >= 1"):
        _tiny(batch_size=0)
    with pytest.raises(InputValidationError, match="fft_backend: expected 'auto'"):
        _tiny(fft_backend="mkl")
    with pytest.raises(InputValidationError, match="gpts, sampling: expected"):
        _tiny(sampling=-0.1)
    with pytest.raises(InputValidationError, match="energy, semiangle"):
        _tiny(energy=0.0)
    op = _tiny(slice_thickness=[1.0, 2.0])
    assert op.slice_thickness == (1.0, 2.0)


@pytest.mark.parametrize("window", [None, 8])
def test_scatter_is_the_adjoint_of_windows_and_band_limit_is_self_adjoint(window):
    """3PIE's update relies on both: ``scatter`` puts window arrays back where ``windows`` took
    them (overlaps add up), and the band limit ``B`` is its own adjoint."""
    from paperlib.physics.base import adjointness_error

    op = MultisliceOperator(gpts=16, sampling=0.25, energy=200.0, semiangle=20.0, slice_thickness=2.0,
                            n_slices=2, scan_positions=grid_scan((0.0, 0.0), (3.0, 3.0), (3, 3)),
                            window=window, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    index = torch.tensor([4, 0, 7])
    grid = torch.randn(2, 16, 16, dtype=torch.complex128, generator=g)
    windows = op.windows(grid, index)
    wins = torch.randn(2, 3, *op.window, dtype=torch.complex128, generator=g)
    forward = (lambda t: op.windows(t, index)) if window else (lambda t: op.windows(t, index).expand(-1, 3, -1, -1))
    assert adjointness_error(forward, lambda w: op.scatter(w, index), grid, wins) < 1e-12
    assert windows.shape == ((2, 3, 8, 8) if window else (2, 1, 16, 16))
    other = torch.randn(2, 16, 16, dtype=torch.complex128, generator=g)
    assert adjointness_error(op.band_limit, op.band_limit, grid, other) < 1e-12


def test_propagate_keeps_the_incident_waves():
    """The incident wave of slice n + 1 is the previous one transmitted and propagated (one loop
    serves the forward model and 3PIE)."""
    op = MultisliceOperator(gpts=16, sampling=0.25, energy=200.0, semiangle=20.0, slice_thickness=[2.0, 1.0, 3.0],
                            n_slices=3, scan_positions=grid_scan((0.0, 0.0), (2.0, 2.0), (2, 2)), window=8,
                            dtype=torch.float64)
    V = torch.rand(op.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 20
    t = op.windows(op.transmission(V), None)
    incident: list = []
    far = op.propagate(op.probe_batch(), t, incident=incident)
    assert len(incident) == 3 and torch.equal(incident[0], op.probe_batch())
    for n in range(2):
        step = torch.fft.ifft2(torch.fft.fft2(incident[n] * t[n]) * op.propagators[n])
        assert torch.allclose(incident[n + 1], step, atol=1e-14)
    assert torch.allclose(far, torch.fft.fft2(incident[2] * t[2]) * op.propagators[2], atol=1e-14)
    assert torch.equal(far, op.exit_waves(V))
