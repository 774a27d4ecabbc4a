"""FVD's Frechet distance and JEDi against closed forms, scipy and torchmetrics; the video extractors' loaders."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch

from paperlib.io import InputValidationError
from paperlib.metrics.video import (FewSamplesWarning, frechet_distance, frechet_distance_from_statistics,
                                    gaussian_statistics, jedi, polynomial_mmd2)

A = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
B = [[7, 6, 5], [4, 3, 2], [1, 1, 8], [0, 2, 5]]


def exact_sample(rng: np.random.Generator, n: int, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """n points whose sample mean and sample covariance (divisor n - 1) are exactly ``mean`` and ``cov``."""
    z = rng.standard_normal((n, len(mean)))
    z -= z.mean(axis=0)
    whitening = np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False)))
    z = z @ whitening.T                      # sample covariance exactly I
    return z @ np.linalg.cholesky(cov).T + mean


def random_spd(rng: np.random.Generator, f: int) -> np.ndarray:
    m = rng.standard_normal((f, f))
    return m @ m.T + 0.1 * np.eye(f)


def test_polynomial_mmd_reference_number():
    assert polynomial_mmd2(A, B) == pytest.approx(270.7222222, abs=1e-6)
    assert round(polynomial_mmd2(A, B), 2) == 270.72
    assert jedi(A, B) == pytest.approx(27072.22222, abs=1e-4)


def test_polynomial_mmd_equals_second_moment_distance():
    # k(x, y) = (<x, y> / F)^2 is the inner product of x x^T / F, so MMD^2 is a Frobenius distance.
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((11, 5)) + 0.3
    closed = np.sum((a.T @ a / 7 - b.T @ b / 11) ** 2) / 5 ** 2
    assert polynomial_mmd2(a, b) == pytest.approx(closed, rel=1e-12)
    assert jedi(a, b) == pytest.approx(100 * closed, rel=1e-12)
    # general kernel: brute force over pairs
    k = lambda x, y: (0.7 * x @ y + 1.5) ** 3  # noqa: E731
    brute = (np.mean([[k(x, y) for y in a] for x in a]) + np.mean([[k(x, y) for y in b] for x in b])
             - 2 * np.mean([[k(x, y) for y in b] for x in a]))
    assert polynomial_mmd2(a, b, degree=3, gamma=0.7, coef0=1.5) == pytest.approx(brute, rel=1e-12)


def test_mmd_identity_symmetry_and_tensor_input():
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((6, 4)), rng.standard_normal((9, 4))
    assert jedi(a, a) == pytest.approx(0.0, abs=1e-12)
    assert jedi(a, b) == pytest.approx(jedi(b, a), rel=1e-12)
    assert jedi(torch.tensor(a, dtype=torch.float32), b) == pytest.approx(jedi(a.astype(np.float32), b), rel=1e-12)
    assert jedi(a, b) > 0
    # the degree-2 homogeneous kernel is blind to sign flips of whole vectors
    assert jedi(-a, b) == pytest.approx(jedi(a, b), rel=1e-12)


def test_frechet_known_gaussians_closed_form():
    assert frechet_distance_from_statistics([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 9.0])) == 7.0
    rng = np.random.default_rng(2)
    mean_a, mean_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 0.5])
    cov_a, cov_b = np.diag([1.0, 2.0, 3.0]), np.diag([4.0, 1.0, 0.5])
    expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(np.diag(cov_a)) - np.sqrt(np.diag(cov_b))) ** 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FewSamplesWarning)
        got = frechet_distance(exact_sample(rng, 20, mean_a, cov_a), exact_sample(rng, 30, mean_b, cov_b))
    assert got == pytest.approx(expected, rel=1e-10)


def test_frechet_non_commuting_against_scipy_and_torchmetrics():
    from torchmetrics.image.fid import _compute_fid

    rng = np.random.default_rng(3)
    f = 6
    mean_a, mean_b = rng.standard_normal(f), rng.standard_normal(f)
    cov_a, cov_b = random_spd(rng, f), random_spd(rng, f)
    scipy_value = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
                   - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
    ours = frechet_distance_from_statistics(mean_a, cov_a, mean_b, cov_b)
    assert ours == pytest.approx(scipy_value, rel=1e-9)
    tm = float(_compute_fid(*(torch.tensor(v) for v in (mean_a, cov_a, mean_b, cov_b))))
    assert ours == pytest.approx(tm, rel=1e-9)
    # from samples with exactly these statistics
    a, b = exact_sample(rng, 40, mean_a, cov_a), exact_sample(rng, 50, mean_b, cov_b)
    assert frechet_distance(a, b) == pytest.approx(scipy_value, rel=1e-9)


def test_frechet_large_sample_converges_to_population_value():
    rng = np.random.default_rng(4)
    cov_a, cov_b = np.diag([1.0, 0.25]), np.array([[2.0, 0.5], [0.5, 1.0]])
    a = rng.multivariate_normal([0, 0], cov_a, size=20000)
    b = rng.multivariate_normal([0.5, 0], cov_b, size=20000)
    population = frechet_distance_from_statistics([0, 0], cov_a, [0.5, 0], cov_b)
    assert frechet_distance(a, b) == pytest.approx(population, abs=0.03)


def test_frechet_identity_symmetry_invariances():
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((50, 4)), 1.5 * rng.standard_normal((60, 4)) + 0.2
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-10)
    d = frechet_distance(a, b)
    assert d > 0.5
    assert frechet_distance(b, a) == pytest.approx(d, rel=1e-10)
    shift = rng.standard_normal(4) * 10
    assert frechet_distance(a + shift, b + shift) == pytest.approx(d, rel=1e-9)
    rotation, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    assert frechet_distance(a @ rotation, b @ rotation) == pytest.approx(d, rel=1e-9)
    assert frechet_distance(3 * a, 3 * b) == pytest.approx(9 * d, rel=1e-9)
    # order of the vectors in a set does not matter
    assert frechet_distance(a[::-1], b[rng.permutation(60)]) == pytest.approx(d, rel=1e-10)


def test_frechet_singular_covariance_is_finite_and_warns():
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((5, 8)), rng.standard_normal((5, 8))
    with pytest.warns(FewSamplesWarning, match="N = 5 feature vectors of F = 8"):
        d = frechet_distance(a, b)
    assert np.isfinite(d) and d > 0
    with pytest.warns(FewSamplesWarning, match="fewer than 10"):
        frechet_distance(rng.standard_normal((9, 2)), rng.standard_normal((40, 2)), min_samples=10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        frechet_distance(rng.standard_normal((40, 2)), rng.standard_normal((40, 2)), min_samples=10)


@pytest.mark.parametrize("a, b, match", [
    (np.zeros((1, 3)), np.zeros((4, 3)), "feats_a: expected at least 2"),
    (np.zeros((4, 3)), np.zeros((4, 2)), "same feature dimension F, got 3 and 2"),
    (np.zeros((4, 3, 1)), np.zeros((4, 3)), r"feats_a: expected an \(N, F\) feature matrix"),
    (np.zeros((4, 3)), np.full((4, 3), np.nan), "feats_b: expected finite"),
])
def test_frechet_rejects_bad_input(a, b, match):
    with pytest.raises(InputValidationError, match=match):
        frechet_distance(a, b)


def test_gaussian_statistics_and_mmd_validation():
    mean, cov = gaussian_statistics(np.array([[0.0, 1.0], [2.0, 3.0]]))
    np.testing.assert_allclose(mean, [1.0, 2.0])
    np.testing.assert_allclose(cov, [[2.0, 2.0], [2.0, 2.0]])
    with pytest.raises(InputValidationError, match="degree"):
        polynomial_mmd2(A, B, degree=0)
    with pytest.raises(InputValidationError, match="same feature dimension"):
        jedi(A, [[1.0, 2.0]])
