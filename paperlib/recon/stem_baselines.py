"""Physics-only 4D-STEM baselines of Table 1/2: 3PIE, Torchslice-style autodiff, sparse
decomposition. Each reconstructs a multi-slice potential ``V`` (D, H, W) in V·Å from intensities
``(Sy, Sx, Ky, Kx)`` with a :class:`~paperlib.physics.multislice.MultisliceOperator` (the same
probe, propagators and windows as the simulation: the probe is known, as in the paper's Eq. 2).

Common signature: ``method(operator, intensities, *, <hyper-parameters>, init=None,
generator=None, progress=False) -> (D, H, W) float32 tensor``. ``init`` defaults to vacuum
(``V = 0``). All randomness (position order, mini-batches) comes from ``generator``.

Our choices (the original codes are not reproduced line by line):

* :func:`three_pie` — multislice ePIE (Maiden, Humphry & Rodenburg, JOSA A 29, 1606, 2012),
  potential only (phase object, known probe). Positions are visited in a random order in
  mini-batches of ``batch_size`` (1 = the original sequential algorithm). For each batch: forward
  through the slices keeping the incident waves; replace the far-field amplitude by the
  measured one inside the detector; walk back from the last slice: the object update
  ``alpha conj(psi_n) Delta_n / max_r sum_batch |psi_n|^2`` (ePIE's normalisation, summed over the
  batch's overlapping windows) is summed onto the grid, passed through the adjoint of the
  transmission's band limit ``B`` and taken to first order in the phase,
  ``dV = Im(conj(exp(i sigma V_n)) B[dt]) / sigma`` (so phases never wrap): with ``alpha`` set
  aside this is exactly the gradient of the amplitude loss through ``t_n = B[exp(i sigma V_n)]``,
  the model the data were simulated with. The incident wave is updated with ``beta conj(t_n)
  Delta_n`` (its exact adjoint for ``beta = 1``) and its change back-propagated with the adjoint
  Fresnel propagator to give ``Delta_{n-1}``. The first slice's incident wave (the probe) is
  not updated. (An earlier version divided by ``|t_n|^2`` and ``max |t_n|^2`` and skipped
  ``B``'s adjoint, i.e. ePIE's update for an object without band limit; the exact adjoint scored
  higher on the validation crystals, see ``benchmarks/results/stem_peers.txt``.) With ``nonnegative`` (default) the potential is projected onto ``V >= 0`` after
  each epoch, the positivity constraint of multislice ptychography codes (py4DSTEM's
  ``object_positivity``): projected potentials of atoms are non-negative.
* :func:`torchslice` — the Torchslice approach (Diederichs, Herdegen et al. 2024, "exact
  inversion of partially coherent dynamical electron scattering"): automatic differentiation
  through the multislice model and Adam on ``V``, here on the amplitude loss of Eq. 2 with
  optional mini-batches of positions and an optional non-negativity projection. No partial
  coherence or probe refinement (our data has neither).
* :func:`sparse_decomposition` — multislice reconstruction with a sparsity-promoting L1
  regulariser (Bangun et al., "Inverse multislice ptychography by layer-wise optimisation and
  sparse matrix decomposition", IEEE TCI 2022), solved by FISTA
  (:func:`paperlib.recon.solvers.fista`, Beck & Teboulle 2009): gradient of the Eq. 2 loss
  (step ``step_scale * operator.default_step_size``), then soft thresholding (optionally onto
  ``V >= 0``). The layer-wise sparse matrix factorisation of the original is replaced by this
  proximal-gradient solver of the same objective.

* :func:`thickness_search` (ours, not in the paper; Table 1's "3PIE + thickness search" row) —
  from a reconstruction (3PIE's), choose the number of occupied slices by the Eq. 2 loss after a
  few physics steps restricted to each support, then refine on the chosen one. It shows how much
  depth the data carry once one structural assumption (a slab from the entrance surface) is
  made, the yardstick for what a learned prior adds.

Hyper-parameters are chosen on the validation split, never the test split: the grids of the
profile's ``validation.stem`` section run through ``python -m paperlib.validation`` (every grid
point's per-case scores, with the profile digest, in ``figures/validation_stem_<profile>.csv``;
means and intervals in ``..._summary.csv``), or :func:`tune_stem` for an ad-hoc grid. The
profile's ``stem_baselines.tuned_on`` text quotes the scores it rests on from those files (a
test checks every number it quotes).
"""
from __future__ import annotations

import logging
import math
import numbers
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from tqdm.auto import tqdm

from ..io import InputValidationError
from ..physics.base import finite_result
from ..physics.multislice import MultisliceOperator
from .solvers import fista, soft_threshold
from .tuning import grid_search

logger = logging.getLogger(__name__)

__all__ = ["three_pie", "torchslice", "sparse_decomposition", "thickness_search", "ThicknessResult", "tune_stem",
           "STEM_BASELINE_DEFAULTS"]


def _init(op: MultisliceOperator, init) -> torch.Tensor:
    """The starting potential: vacuum (zeros of ``op.shape``) or a validated copy of ``init``."""
    if init is None:
        return torch.zeros(op.shape, dtype=op.dtype, device=op.device)
    return op.check_potential(init).detach().clone()


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_count(value: object, least: int) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= least


def _check_settings(*, counts: Mapping[str, object] = {}, positive: Mapping[str, object] = {},
                    nonnegative: Mapping[str, object] = {}, batch_size: object = None) -> None:
    """Raise :class:`~paperlib.io.InputValidationError` naming the first bad setting: ``counts``
    must be integers >= 0 (iterations), ``positive`` finite numbers > 0 (step sizes, rates),
    ``nonnegative`` finite numbers >= 0 (thresholds), ``batch_size`` None or an integer >= 1."""
    for name, value in counts.items():
        if not _is_count(value, 0):
            raise InputValidationError(f"{name}: expected an integer >= 0, got {value!r}")
    for name, value in positive.items():
        if not (_is_number(value) and value > 0):
            raise InputValidationError(f"{name}: expected a finite number > 0, got {value!r}")
    for name, value in nonnegative.items():
        if not (_is_number(value) and value >= 0):
            raise InputValidationError(f"{name}: expected a finite number >= 0, got {value!r}")
    if batch_size is not None and not _is_count(batch_size, 1):
        raise InputValidationError(f"batch_size: expected None or an integer >= 1, got {batch_size!r}")


def _batches(n: int, batch_size: int | None, generator: torch.Generator | None) -> list[torch.Tensor]:
    """The ``n`` flat scan positions in a random order (from ``generator``), split into
    mini-batches of ``batch_size`` (None = one batch of all)."""
    order = torch.randperm(n, generator=generator)
    size = n if batch_size is None else max(1, int(batch_size))
    return list(torch.split(order, size))


def three_pie(op: MultisliceOperator, intensities, *, n_iter: int = 20, alpha: float = 0.5,
              beta: float = 1.0, batch_size: int | None = 64, nonnegative: bool = True, init=None,
              generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Multislice ePIE (3PIE) for a phase object with a known probe (see module docstring).

    Parameters
    ----------
    op : the operator (probe, propagators, scan, windows).
    intensities : (Sy, Sx, Ky, Kx) measured intensities.
    n_iter : epochs (each visits every scan position once).
    alpha : object step (ePIE's alpha; 1 = full Gauss-Newton step for an isolated position).
    beta : incident-wave step for slices 2..D (1 = the exact adjoint).
    batch_size : positions updated together (1 = sequential ePIE, None = all).
    nonnegative : project onto ``V >= 0`` after each epoch.
    init, generator, progress : see the module docstring.

    Returns
    -------
    (D, H, W) float32 potential in V·Å.
    """
    _check_settings(counts={"n_iter": n_iter}, positive={"alpha": alpha, "beta": beta}, batch_size=batch_size)
    amp = torch.sqrt(op.check_intensities(intensities)).reshape(-1, *op.detector_shape)
    V = _init(op, init)
    depth = op.n_slices
    props = op.propagators
    crop = op.detector_crop
    for _ in tqdm(range(n_iter), desc="3PIE", disable=not progress):
        for idx in _batches(op.n_positions, batch_size, generator):
            t = op.windows(op.transmission(V), idx)  # (D, B or 1, wy, wx)
            incident: list[torch.Tensor] = []  # the wave incident on each slice
            wave_k = op.propagate(op.probe_batch(idx), t, incident=incident)
            shifted = torch.fft.fftshift(wave_k, dim=(-2, -1))
            det = shifted[..., crop[0], crop[1]]
            diff = torch.zeros_like(shifted)
            diff[..., crop[0], crop[1]] = amp[idx] * torch.sgn(det) - det
            delta = torch.fft.ifft2(torch.conj(props[-1]) * torch.fft.ifftshift(diff, dim=(-2, -1)))
            dt = []
            for n in range(depth - 1, -1, -1):
                psi_n, t_n = incident[n], t[n]
                weight = op.scatter((psi_n.abs() ** 2)[None], idx)[0].max()
                dt.append(alpha * torch.conj(psi_n) * delta / weight)
                if n == 0:
                    break
                dpsi = beta * torch.conj(t_n) * delta  # adjoint of psi -> psi t_n
                delta = torch.fft.ifft2(torch.conj(props[n - 1]) * torch.fft.fft2(dpsi))
            # transmission update on the grid, through the adjoint of the band limit B (a real,
            # symmetric filter), then to the potential: d/dV of exp(i sigma V) is i sigma exp(.)
            dt = op.band_limit(op.scatter(torch.stack(dt[::-1]), idx))  # (D, H, W) complex
            phase = torch.polar(torch.ones_like(V), op.sigma * V)
            V = V + (torch.imag(torch.conj(phase) * dt) / op.sigma).to(V.dtype)
        if nonnegative:
            V = V.clamp_min(0)
    return finite_result(V.float(), "three_pie(op, intensities)")


def torchslice(op: MultisliceOperator, intensities, *, n_iter: int = 100, lr: float = 30.0,
               batch_size: int | None = None, nonnegative: bool = True, init=None,
               generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """Torchslice-style reconstruction: autograd through the multislice model, Adam on ``V``.

    Parameters
    ----------
    n_iter : epochs.  lr : Adam learning rate, in V·Å (Adam steps are ~lr per element).
    batch_size : positions per Adam step (None = all positions, one step per epoch).
    nonnegative : clamp ``V >= 0`` after each step (potentials are non-negative).

    Returns
    -------
    (D, H, W) float32 potential in V·Å.
    """
    _check_settings(counts={"n_iter": n_iter}, positive={"lr": lr}, batch_size=batch_size)
    intensities = op.check_intensities(intensities)
    V = _init(op, init).requires_grad_(True)
    optimiser = torch.optim.Adam([V], lr=lr)
    for _ in tqdm(range(n_iter), desc="Torchslice", disable=not progress):
        batches = [None] if batch_size is None else _batches(op.n_positions, batch_size, generator)
        for idx in batches:
            optimiser.zero_grad(set_to_none=True)
            loss = op.loss(V, intensities, index=idx)
            loss.backward()
            optimiser.step()
            if nonnegative:
                with torch.no_grad():
                    V.clamp_(min=0.0)
    return finite_result(V.detach().float(), "torchslice(op, intensities)")


def sparse_decomposition(op: MultisliceOperator, intensities, *, n_iter: int = 100, step_scale: float = 1.0,
                         threshold: float = 0.05, nonnegative: bool = True, init=None,
                         generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor:
    """L1-regularised multislice reconstruction by FISTA (proximal gradient with momentum).

    Minimises ``L(V) + tau ||V||_1`` (``L`` = Eq. 2, amplitude form) with steps
    ``mu = step_scale * op.default_step_size`` and soft threshold ``mu tau = threshold`` (V·Å):
    :func:`~paperlib.recon.solvers.fista` with :func:`~paperlib.recon.solvers.soft_threshold`.

    Parameters
    ----------
    n_iter : iterations.  step_scale : multiple of the Gauss-Newton step.
    threshold : V·Å removed from every voxel per iteration (the sparsity weight).
    nonnegative : prox of ``tau ||V||_1 + indicator(V >= 0)``.
    generator : unused (deterministic); accepted for a uniform signature.

    Returns
    -------
    (D, H, W) float32 potential in V·Å.
    """
    _check_settings(positive={"step_scale": step_scale}, nonnegative={"threshold": threshold})
    intensities = op.check_intensities(intensities)
    V = fista(_init(op, init), lambda v: soft_threshold(v, threshold, nonnegative=nonnegative),
              gradient=lambda v: op.gradient(v, intensities)[1], step=step_scale * op.default_step_size,
              iters=n_iter, progress=progress, desc="Sparse")
    return finite_result(V.float(), "sparse_decomposition(op, intensities)")


@dataclass(frozen=True)
class ThicknessResult:
    """What :func:`thickness_search` found.

    Attributes
    ----------
    volume : (D, H, W) float32 potential in V·Å, zero outside the chosen slab.
    thickness : the chosen number of occupied slices ``T``.
    losses : Eq. 2 loss of each hypothesis after ``steps`` physics steps, in the order of
        ``hypotheses``: (D,) for ``placement="entrance"``, (D (D + 1) / 2,) for ``"anywhere"``.
    top : the first occupied slice of the chosen slab (0 for ``placement="entrance"``).
    hypotheses : ``(top, T)`` of every hypothesis tried.
    """

    volume: torch.Tensor
    thickness: int
    losses: torch.Tensor
    top: int = 0
    hypotheses: tuple[tuple[int, int], ...] = ()


def _support_steps(op, intensities, V, occupied: int, steps: int, threshold: float, nonnegative: bool,
                   top: int = 0):
    """``steps`` Eq. 5 physics steps restricted to the ``occupied`` slices from ``top`` on (the rest stay 0).

    Each step is one proximal-gradient (ISTA) step, :meth:`MultisliceOperator.physics_step`:
    gradient step with the support's step size, :func:`~paperlib.recon.solvers.soft_threshold`,
    zero outside the support. No momentum: these are the Eq. 5 steps DART and DRIFT take (bound to the
    measurement once, :meth:`MultisliceOperator.bind_physics_step`: the same numbers)."""
    index = torch.arange(V.shape[0])
    support = (index >= top) & (index < top + occupied)
    step = op.bind_physics_step(intensities, threshold=threshold, nonnegative=nonnegative, support=support)
    for _ in range(steps):
        V = step(V)
    return V


def thickness_search(op: MultisliceOperator, intensities, V, *, steps: int = 20, final_steps: int = 30,
                     threshold: float = 0.05, nonnegative: bool = True, placement: str = "entrance",
                     progress: bool = False) -> ThicknessResult:
    """Choose the specimen thickness by data consistency, then refine on that support (ours).

    For every hypothesis ``T = 1 .. D`` (crystal in the top ``T`` slices, vacuum below, as in
    our simulated specimens: the probe's defocus is referred to the entrance surface), the
    potential of the slices below ``T`` is folded into the top ``T`` (evenly, so the projection
    is kept), ``steps`` physics steps (paper Eq. 5: gradient step on the Eq. 2 loss, soft
    threshold) run on that support, and the loss is recorded; the hypothesis with the lowest
    loss gets ``final_steps`` more. Unconstrained, multislice ptychography spreads the potential
    over all ``D`` slices (the data barely constrain how the projection is distributed in depth
    when the depth of field, ~60 Å here, exceeds the specimen); constrained to a support, the
    noiseless data do tell the thicknesses apart through the propagation between slices. Its
    cost is ``D * steps + final_steps`` physics steps. This is a physics-only step with one
    structural assumption (a slab starting at the entrance surface); it is not in the paper.

    ``placement="anywhere"`` drops the entrance-surface assumption (a crystal at any depth in the
    box, vacuum above and below): every slab ``(top, T)`` with ``0 <= top <= D - T`` is a
    hypothesis, ``D (D + 1) / 2`` of them, so the cost is ``D (D + 1) / 2 * steps + final_steps``
    physics steps. The potential outside a slab is folded evenly into it, as above.

    Parameters
    ----------
    op, intensities : operator and measured intensities ``(Sy, Sx, Ky, Kx)``.
    V : (D, H, W) a reconstruction to start from (e.g. 3PIE's), V·Å.
    steps, final_steps : physics steps per hypothesis, and after the choice.
    threshold, nonnegative : the soft threshold (V·Å) and ``V >= 0`` of each physics step.
    placement : ``"entrance"`` (slabs from the top slice) or ``"anywhere"`` (slabs at any depth).

    Its validation scores (method ``three_pie_thickness``) are in
    ``figures/validation_stem_<profile>_summary.csv``.
    """
    V = op.check_potential(V).detach().clone()
    intensities = op.check_intensities(intensities)
    for name, value in (("steps", steps), ("final_steps", final_steps)):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected a non-negative integer, got {value!r}")
    _check_settings(nonnegative={"threshold": threshold})
    if placement not in ("entrance", "anywhere"):
        raise InputValidationError(f"placement: expected 'entrance' or 'anywhere', got {placement!r}")
    depth = V.shape[0]
    hypotheses = [(top, occupied) for occupied in range(1, depth + 1)
                  for top in (range(depth - occupied + 1) if placement == "anywhere" else (0,))]
    candidates, losses = [], []
    for top, occupied in tqdm(hypotheses, desc="thickness", disable=not progress):
        inside = slice(top, top + occupied)
        x = torch.zeros_like(V)
        outside = V[:top].sum(0, keepdim=True) + V[top + occupied:].sum(0, keepdim=True)
        x[inside] = V[inside] + outside / occupied
        x = _support_steps(op, intensities, x, occupied, steps, threshold, nonnegative, top=top)
        candidates.append(x)
        with torch.no_grad():
            losses.append(float(op.loss(x, intensities)))
    losses_t = torch.tensor(losses, dtype=torch.float64)
    best = int(torch.argmin(losses_t))
    top, occupied = hypotheses[best]
    volume = _support_steps(op, intensities, candidates[best], occupied, final_steps, threshold, nonnegative, top=top)
    logger.info("thickness search: %d of %d slices from slice %d (losses %s)", occupied, depth, top,
                ", ".join(f"{v:.3e}" for v in losses))
    return ThicknessResult(finite_result(volume.float(), "thickness_search(op, intensities, V)"), occupied, losses_t,
                           top, tuple(hypotheses))


#: tuned on the validation split with :func:`tune_stem` (the search is in the module docstring)
STEM_BASELINE_DEFAULTS: dict[str, dict] = {
    "3pie": dict(n_iter=20, alpha=0.5, beta=1.0, batch_size=64),
    "torchslice": dict(n_iter=100, lr=30.0, batch_size=None, nonnegative=True),
    "sparse": dict(n_iter=100, step_scale=1.0, threshold=0.05, nonnegative=True),
}

_FUNCTIONS: dict[str, Callable[..., torch.Tensor]] = {
    "3pie": three_pie,
    "torchslice": torchslice,
    "sparse": sparse_decomposition,
}


def tune_stem(
    method: str,
    cases: Sequence[tuple[MultisliceOperator, torch.Tensor, torch.Tensor]],
    grid: Mapping[str, Iterable],
    *,
    fixed: Mapping | None = None,
    seed: int = 0,
    progress: bool = False,
) -> tuple[dict, list[dict]]:
    """Grid search of a baseline's hyper-parameters on validation cases.

    Parameters
    ----------
    method : ``"3pie"``, ``"torchslice"`` or ``"sparse"``.
    cases : ``(operator, intensities, ground-truth potential)`` triples (validation split).
    grid : ``{name: values}``; every combination is tried.
    fixed : other keyword arguments passed unchanged.
    seed : seed of the ``torch.Generator`` given to each run.

    Returns
    -------
    best : the combination with the highest mean projection SSIM (ties: first).
    table : one row per combination: its parameters, ``ssim_projection`` and
        ``ssim_slices_mean`` (means over cases).
    """
    from ..metrics.stem import stem_scores

    if method not in _FUNCTIONS:
        raise InputValidationError(f"method: expected one of {sorted(_FUNCTIONS)}, got {method!r}")
    if not cases:
        raise InputValidationError("cases: expected at least one (operator, intensities, target)")
    fn = _FUNCTIONS[method]

    def evaluate(case, **kwargs) -> dict[str, float]:
        op, intens, target = case
        s = stem_scores(fn(op, intens, generator=torch.Generator().manual_seed(seed), **kwargs), target)
        return {"ssim_projection": s["ssim_projection"], "ssim_slices_mean": s["ssim_slices_mean"]}

    result = grid_search(evaluate, cases, grid, criterion="ssim_projection", fixed=fixed, progress=progress,
                         desc=f"tune {method}")
    return result.best, result.rows
