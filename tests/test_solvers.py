"""Proximal maps and solvers (paperlib.recon.solvers) against closed-form cases."""
import math

import numpy as np
import pytest
import torch

from paperlib.recon.solvers import fista, primal_dual, project_tv_dual_ball, soft_threshold


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- proximal maps
@pytest.mark.parametrize("threshold", [0.0, 0.3, 1.7])
def test_soft_threshold_real_matches_the_formula_and_the_prox_definition(threshold):
    x = torch.randn(200, dtype=torch.float64, generator=gen())
    out = soft_threshold(x, threshold)
    expected = np.sign(x.numpy()) * np.maximum(np.abs(x.numpy()) - threshold, 0.0)
    assert np.array_equal(out.numpy(), expected)
    # prox definition: argmin_u threshold |u| + (u - x)^2 / 2, by brute force on a fine grid
    u = torch.linspace(-5, 5, 20001, dtype=torch.float64)
    for xi, oi in zip(x[:5], out[:5]):
        brute = u[torch.argmin(threshold * u.abs() + 0.5 * (u - xi) ** 2)]
        assert abs(float(brute - oi)) <= 1e-3


def test_soft_threshold_complex_shrinks_the_magnitude_and_keeps_the_phase():
    x = torch.randn(300, dtype=torch.complex128, generator=gen(1))
    x[0] = 0
    out = soft_threshold(x, 0.5)
    a = x.numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = np.where(np.abs(a) > 0.5, a * (1 - 0.5 / np.abs(a)), 0)
    assert np.allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert out.dtype == x.dtype and out[0] == 0
    assert torch.allclose(soft_threshold(x.to(torch.complex64), 0.5), out.to(torch.complex64), atol=1e-6)


def test_soft_threshold_nonnegative_and_edge_cases():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 3.0])
    assert soft_threshold(x, 1.0, nonnegative=True).tolist() == [0.0, 0.0, 0.0, 0.0, 2.0]
    assert soft_threshold(x, 0.0, nonnegative=True).tolist() == [0.0, 0.0, 0.0, 0.5, 3.0]
    assert soft_threshold(x, 0.0) is x
    with pytest.raises(ValueError, match="threshold: expected a number >= 0, got -1"):
        soft_threshold(x, -1.0)
    with pytest.raises(ValueError, match="nonnegative: expected a real x"):
        soft_threshold(x.to(torch.complex64), 1.0, nonnegative=True)


def test_multislice_soft_threshold_is_the_same_function():
    from paperlib.physics import multislice

    assert multislice.soft_threshold is soft_threshold


@pytest.mark.parametrize("channels", [1, 2])
def test_tv_dual_projection_is_the_pointwise_ball_projection(channels):
    p = 2.0 * torch.randn(2, 3, 5, 4, channels, dtype=torch.float64, generator=gen(2))
    radius = 1.5
    # direct formula: the vector of a pixel gathers both directions and all channels
    vectors = p.permute(1, 2, 3, 0, 4).reshape(3, 5, 4, 2 * channels)
    norms = vectors.norm(dim=-1, keepdim=True)
    expected = (vectors * torch.clamp(radius / norms, max=1.0)).reshape(3, 5, 4, 2, channels).permute(3, 0, 1, 2, 4)
    out = project_tv_dual_ball(p.clone(), radius)
    assert torch.allclose(out, expected, atol=1e-12)
    inside = (norms <= radius).squeeze(-1)
    assert bool(inside.any()) and bool((~inside).any())
    with pytest.raises(ValueError, match="radius"):
        project_tv_dual_ball(p, 0.0)


# ----------------------------------------------------------------------------- FISTA
def lasso_problem(seed=3, m=30, n=12):
    A = torch.randn(m, n, dtype=torch.float64, generator=gen(seed))
    x_true = torch.zeros(n, dtype=torch.float64)
    x_true[[1, 4, 9]] = torch.tensor([2.0, -1.5, 1.0], dtype=torch.float64)
    b = A @ x_true + 0.05 * torch.randn(m, dtype=torch.float64, generator=gen(seed + 1))
    lipschitz = float(torch.linalg.matrix_norm(A, ord=2)) ** 2
    return A, b, lipschitz


def test_fista_solves_least_squares():
    A, b, lip = lasso_problem()
    x = fista(torch.zeros(A.shape[1], dtype=torch.float64), lambda v: v,
              gradient=lambda x: A.T @ (A @ x - b), step=1 / lip, iters=400)
    assert torch.allclose(x, torch.linalg.lstsq(A, b).solution, atol=1e-8)


def test_fista_lasso_with_a_diagonal_operator_has_the_closed_form_solution():
    d = torch.tensor([3.0, 2.0, 1.0, 0.5, 0.25], dtype=torch.float64)
    b = torch.tensor([1.0, -2.0, 0.3, 4.0, -8.0], dtype=torch.float64)
    lam = 0.4
    expected = soft_threshold(d * b, lam) / d**2  # argmin 1/2 ||d x - b||^2 + λ ||x||_1, per entry
    step = 1 / float(d.max()) ** 2
    x = fista(torch.zeros(5, dtype=torch.float64), lambda v: soft_threshold(v, step * lam),
              gradient=lambda x: d * (d * x - b), step=step, iters=3000)
    assert torch.allclose(x, expected, atol=1e-8)


def test_fista_lasso_satisfies_the_optimality_conditions_and_the_rate():
    A, b, lip = lasso_problem()
    lam, step = 2.0, 1 / lip
    objective = lambda x: 0.5 * float((A @ x - b).square().sum()) + lam * float(x.abs().sum())
    x0 = torch.zeros(A.shape[1], dtype=torch.float64)
    prox = lambda v: soft_threshold(v, step * lam)
    grad = lambda x: A.T @ (A @ x - b)
    x_star = fista(x0, prox, gradient=grad, step=step, iters=3000)
    # KKT: A^T (b - A x) = λ sign(x) on the support, |A^T (b - A x)| <= λ off it
    corr = A.T @ (b - A @ x_star)
    support = x_star != 0
    assert 0 < int(support.sum()) < x_star.numel()
    assert torch.allclose(corr[support], lam * torch.sign(x_star[support]), atol=1e-7)
    assert bool((corr[~support].abs() <= lam + 1e-7).all())
    # Beck & Teboulle (2009), Thm. 4.4: F(x_k) - F* <= 2 L ||x0 - x*||^2 / (k + 1)^2
    values = []
    fista(x0, prox, gradient=grad, step=step, iters=60, callback=lambda k, x: values.append((k, objective(x))))
    assert [k for k, _ in values] == list(range(1, 61))
    f_star, dist = objective(x_star), float((x0 - x_star).square().sum())
    assert all(f - f_star <= 2 * lip * dist / (k + 1) ** 2 + 1e-9 for k, f in values)


def test_fista_momentum_beats_ista_on_an_ill_conditioned_problem():
    d = torch.logspace(-2, 0, 20, dtype=torch.float64)  # condition number 10^4
    b = torch.ones(20, dtype=torch.float64)
    objective = lambda x: 0.5 * float((d * x - b).square().sum())  # minimum 0 at x = b / d
    runs = {momentum: fista(torch.zeros(20, dtype=torch.float64), lambda v: v, gradient=lambda x: d * (d * x - b),
                            step=1.0, iters=200, momentum=momentum) for momentum in (True, False)}
    assert objective(runs[True]) < 0.1 * objective(runs[False])


def test_fista_normal_operator_form_equals_the_gradient_form():
    A, b, lip = lasso_problem(5)
    x0 = torch.zeros(A.shape[1], dtype=torch.float64)
    prox = lambda v: soft_threshold(v, 0.5 / lip)
    for step in (1 / lip, 0.5 / lip):
        by_gradient = fista(x0, prox, gradient=lambda x: A.T @ (A @ x - b), step=step, iters=50)
        by_normal = fista(x0, prox, normal=lambda x: A.T @ (A @ x), rhs=A.T @ b, step=step, iters=50)
        assert torch.allclose(by_gradient, by_normal, atol=1e-10)
    scaled = A / math.sqrt(lip)  # ||A|| = 1: step 1 takes the `z - normal(z) + rhs` path
    x1 = fista(x0, lambda v: v, normal=lambda x: scaled.T @ (scaled @ x), rhs=scaled.T @ b, iters=500)
    assert torch.allclose(x1, torch.linalg.lstsq(scaled, b).solution, atol=1e-6)


def test_fista_argument_errors():
    x0 = torch.zeros(3)
    with pytest.raises(ValueError, match="exactly one of them, got neither"):
        fista(x0, lambda v: v, iters=1)
    with pytest.raises(ValueError, match="got both"):
        fista(x0, lambda v: v, gradient=lambda x: x, normal=lambda x: x, rhs=x0, iters=1)
    with pytest.raises(ValueError, match="rhs"):
        fista(x0, lambda v: v, normal=lambda x: x, iters=1)
    with pytest.raises(ValueError, match="step"):
        fista(x0, lambda v: v, gradient=lambda x: x, step=0.0, iters=1)
    with pytest.raises(ValueError, match="iters"):
        fista(x0, lambda v: v, gradient=lambda x: x, iters=-1)
    assert fista(x0, lambda v: v + 1, gradient=lambda x: x, iters=0) is x0


# ----------------------------------------------------------------------------- primal-dual
def difference(x):
    return torch.diff(x, dim=0).unsqueeze(0)  # (1, n - 1, 1): one direction, one channel


def difference_adjoint(p):
    q = p[0]
    zero = torch.zeros_like(q[:1])
    return -torch.diff(torch.cat([zero, q, zero]), dim=0)


def tv_denoise_1d(b, lam, iters=2000, tau=0.5, sigma=0.5, **kwargs):
    """min_x 1/2 ||x - b||^2 + λ sum |x_{i+1} - x_i| (||D||^2 <= 4: τ σ 4 = 1)."""
    x0 = b.reshape(-1, 1).clone()
    prox_primal = lambda v: (v + tau * x0) / (1 + tau)
    x = primal_dual(x0, prox_primal, forward=difference, adjoint=difference_adjoint,
                    prox_dual=lambda p: project_tv_dual_ball(p, lam), tau=tau, sigma=sigma, iters=iters, **kwargs)
    return x.flatten()


def test_primal_dual_tv_denoising_of_a_step():
    # a step of height h between n samples on each side: the jump shrinks by λ / n per side
    n, h, lam = 5, 1.0, 0.75
    b = torch.tensor([0.0] * n + [h] * n, dtype=torch.float64)
    expected = torch.tensor([lam / n] * n + [h - lam / n] * n, dtype=torch.float64)
    assert torch.allclose(tv_denoise_1d(b, lam), expected, atol=1e-8)


def test_primal_dual_tv_denoising_of_a_spike():
    # a spike of height h in n samples: it drops by 2λ, the others rise by 2λ / (n - 1)
    n, h, lam = 7, 3.0, 0.6
    b = torch.zeros(n, dtype=torch.float64)
    b[3] = h
    expected = torch.full((n,), 2 * lam / (n - 1), dtype=torch.float64)
    expected[3] = h - 2 * lam
    assert torch.allclose(tv_denoise_1d(b, lam), expected, atol=1e-8)


def test_primal_dual_matches_brute_force_on_three_samples():
    b = torch.tensor([0.2, 1.0, 0.4], dtype=torch.float64)
    lam = 0.15
    grid = torch.linspace(-0.2, 1.4, 161, dtype=torch.float64)
    X = torch.cartesian_prod(grid, grid, grid)
    objective = 0.5 * (X - b).square().sum(1) + lam * torch.diff(X, dim=1).abs().sum(1)
    brute = X[torch.argmin(objective)]
    x = tv_denoise_1d(b, lam)
    assert torch.allclose(x, brute, atol=0.01 + 1e-9)  # the grid spacing
    f = lambda v: 0.5 * float((v - b).square().sum()) + lam * float(torch.diff(v).abs().sum())
    assert f(x) <= float(objective.min()) + 1e-12


def test_primal_dual_callback_over_relaxation_and_no_dual():
    b = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    seen = []
    x = tv_denoise_1d(b, 0.2, iters=5, callback=lambda k, x: seen.append(k))
    assert seen == [1, 2, 3, 4, 5]
    # θ = 0 is the Arrow-Hurwicz variant; with these steps it still converges on this problem
    assert torch.allclose(tv_denoise_1d(b, 0.2, iters=3000, theta=0.0), tv_denoise_1d(b, 0.2), atol=1e-6)
    # g = 0: the iteration is x <- prox_{τ f}(x), which converges to b from any start
    x = primal_dual(torch.zeros(4, dtype=torch.float64), lambda v: (v + 0.5 * b) / 1.5,
                    forward=None, adjoint=None, prox_dual=None, tau=0.5, sigma=0.5, iters=100)
    assert torch.allclose(x, b, atol=1e-12)
    with pytest.raises(ValueError, match="expected all three or none, got adjoint None"):
        primal_dual(b, lambda v: v, forward=difference, adjoint=None, prox_dual=lambda p: p,
                    tau=0.5, sigma=0.5, iters=1)
    with pytest.raises(ValueError, match="tau, sigma"):
        primal_dual(b, lambda v: v, forward=None, adjoint=None, prox_dual=None, tau=0.0, sigma=0.5, iters=1)


def test_primal_dual_first_iterations_follow_the_recursion():
    """Three iterations written out: p+ = prox*(p + σ K x̄), x+ = prox(x - τ K^T p+),
    x̄+ = x+ + θ (x+ - x), with θ = 0.5 so that the over-relaxation is visible."""
    b = torch.tensor([0.0, 2.0, -1.0, 0.5], dtype=torch.float64)
    tau, sigma, theta, lam = 0.3, 0.6, 0.5, 0.4
    D = torch.diff(torch.eye(4, dtype=torch.float64), dim=0)  # (3, 4)
    prox_primal = lambda v: (v + tau * b) / (1 + tau)
    x, x_bar = torch.zeros(4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    p = torch.zeros(3, dtype=torch.float64)
    by_hand = []
    for _ in range(3):
        p = (p + sigma * D @ x_bar).clamp(-lam, lam)
        x_new = prox_primal(x - tau * D.T @ p)
        x_bar, x = x_new + theta * (x_new - x), x_new
        by_hand.append(x)
    seen = []
    primal_dual(torch.zeros(4, dtype=torch.float64), prox_primal, forward=lambda v: (D @ v)[None, :, None],
                adjoint=lambda q: D.T @ q[0, :, 0], prox_dual=lambda q: project_tv_dual_ball(q, lam),
                tau=tau, sigma=sigma, theta=theta, iters=3, callback=lambda k, v: seen.append(v.clone()))
    assert all(torch.allclose(u, v, atol=1e-14) for u, v in zip(seen, by_hand)) and len(seen) == 3


def test_fista_first_iterations_follow_the_recursion():
    A, b, lip = lasso_problem(7)
    step, lam = 1 / lip, 1.0
    prox = lambda v: soft_threshold(v, step * lam)
    x = z = torch.zeros(A.shape[1], dtype=torch.float64)
    t, by_hand = 1.0, []
    for _ in range(3):
        x_new = prox(z - step * A.T @ (A @ z - b))
        t_new = (1 + math.sqrt(1 + 4 * t * t)) / 2
        z, x, t = x_new + (t - 1) / t_new * (x_new - x), x_new, t_new
        by_hand.append(x)
    seen = []
    fista(torch.zeros(A.shape[1], dtype=torch.float64), prox, gradient=lambda v: A.T @ (A @ v - b), step=step,
          iters=3, callback=lambda k, v: seen.append(v))
    assert len(seen) == 3 and all(torch.allclose(u, v, atol=1e-14) for u, v in zip(seen, by_hand))
