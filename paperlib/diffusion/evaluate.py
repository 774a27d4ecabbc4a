"""How good is a trained prior? Held-out denoising PSNR against a tuned Gaussian filter, and
whether its samples fill the slices as often as the training data do (:func:`prior_occupancy`).

A diffusion network trained to predict ``x0`` is, at every timestep, a denoiser of Gaussian
noise: for an image ``y = x0 + sigma z`` (z ~ N(0, I), intensities in the units of the training
data, [0, 1] for MRI) the scaled input ``sqrt(abar_t) y`` has exactly the distribution of ``x_t``
(paper Eq. 1) when ``abar_t = 1 / (1 + sigma^2)``, so ``f(sqrt(abar_t) y, t)`` estimates ``x0``.
:func:`prior_denoiser` picks the training timestep whose ``abar_t`` is closest to that value
(in ``log((1 - abar) / abar)``) and feeds the network.

The baseline is a Gaussian filter (:func:`gaussian_filter_volume`), its widths ``(sigma_z,
sigma_xy)`` chosen per noise level from a grid by the mean PSNR on *tuning* volumes (a held-out
split, e.g. ``val``), then applied to the evaluation volumes (e.g. ``test``). Both methods see
the same noisy volumes. PSNR follows :mod:`paperlib.metrics.image` (data range of the ground-truth
volume, mean over slices).

>>> vols = torch.rand(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
>>> rows = denoising_psnr(lambda y, sigma: y, vols, [0.1], torch.Generator().manual_seed(1),
...                       filter_sigmas=[(0.0, 0.0), (0.0, 1.0)])
>>> sorted({(r["method"], r["noise_level"]) for r in rows})
[('gaussian_filter', 0.1), ('prior', 0.1)]
"""
from __future__ import annotations

import logging
import math
from typing import Callable, Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch import Tensor
from tqdm.auto import tqdm

from ..metrics.image import psnr_volume
from .partition import PartitionedPrior

logger = logging.getLogger(__name__)

#: ``Denoiser(y, sigma) -> x0_hat``: y (B, D, H, W) noisy volumes, sigma the noise standard deviation.
Denoiser = Callable[[Tensor, float], Tensor]

#: Default grid of Gaussian-filter widths ``(sigma_z, sigma_xy)`` in voxels; ``(0, 0)`` is "no filter".
DEFAULT_FILTER_SIGMAS: tuple[tuple[float, float], ...] = tuple(
    (sz, sxy) for sz in (0.0, 0.7) for sxy in (0.0, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8))


def noise_level_timestep(abar: Tensor, sigma: float) -> int:
    """The training timestep whose noise-to-signal ratio matches additive noise of std ``sigma``.

    ``y = x0 + sigma z`` scaled by ``sqrt(abar)`` is ``x_t`` when ``(1 - abar) / abar = sigma^2``;
    the returned ``t`` minimises ``|log((1 - abar_t) / abar_t) - log(sigma^2)|``.

    Parameters
    ----------
    abar : (T,) cumulative products of the schedule.
    sigma : noise standard deviation (> 0), in units of the data.

    >>> from paperlib.diffusion.schedules import ScheduleConfig
    >>> abar = ScheduleConfig("cosine", 1000).alphas_cumprod()
    >>> t = noise_level_timestep(abar, 0.1)
    >>> round(float(((1 - abar[t]) / abar[t]).sqrt()), 2)
    0.1
    """
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma: expected a finite noise level > 0, got {sigma!r}")
    abar = torch.as_tensor(abar, dtype=torch.float64)
    log_snr_inv = torch.log((1 - abar).clamp_min(1e-300)) - torch.log(abar)
    return int((log_snr_inv - 2 * math.log(sigma)).abs().argmin())


def prior_denoiser(prior: PartitionedPrior) -> Denoiser:
    """A :data:`Denoiser` from a partitioned prior: one network call at the matching timestep.

    The returned function takes ``y`` (B, D, H, W) or (D, H, W) and ``sigma`` and returns
    ``prior.denoise(sqrt(abar_t) * y, t)`` with ``t = noise_level_timestep(abar, sigma)``.
    """
    if not isinstance(prior, PartitionedPrior):
        raise TypeError(f"prior: expected a PartitionedPrior, got {type(prior).__name__}")
    abar = prior.sampler.abar

    def denoise(y: Tensor, sigma: float) -> Tensor:
        t = noise_level_timestep(abar, sigma)
        return prior.denoise(float(abar[t]) ** 0.5 * y, t)

    denoise.timestep = lambda sigma: noise_level_timestep(abar, sigma)  # type: ignore[attr-defined]
    return denoise


def gaussian_filter_volume(volume: Tensor, sigma_z: float, sigma_xy: float) -> Tensor:
    """Gaussian filter of a (D, H, W) volume with widths ``(sigma_z, sigma_xy, sigma_xy)`` voxels.

    Reflecting borders (scipy's ``mode="reflect"``); a width of 0 leaves that axis unfiltered.
    """
    if volume.ndim != 3:
        raise ValueError(f"volume: expected (D, H, W), got shape {tuple(volume.shape)}")
    if sigma_z < 0 or sigma_xy < 0:
        raise ValueError(f"filter widths must be >= 0, got sigma_z={sigma_z}, sigma_xy={sigma_xy}")
    out = gaussian_filter(volume.detach().cpu().double().numpy(), (sigma_z, sigma_xy, sigma_xy), mode="reflect")
    return torch.from_numpy(np.ascontiguousarray(out)).to(volume.dtype)


def _check_volumes(name: str, volumes: Tensor) -> Tensor:
    if not isinstance(volumes, Tensor) or volumes.ndim != 4 or volumes.shape[0] < 1:
        raise ValueError(f"{name}: expected a (N, D, H, W) tensor with N >= 1, got "
                         f"{tuple(volumes.shape) if isinstance(volumes, Tensor) else type(volumes).__name__}")
    if not volumes.is_floating_point() or not bool(torch.isfinite(volumes).all()):
        raise ValueError(f"{name}: expected finite floating-point volumes")
    return volumes.detach().cpu().float()


def _noisy(volumes: Tensor, sigma: float, generator: torch.Generator) -> Tensor:
    return volumes + sigma * torch.randn(volumes.shape, generator=generator, dtype=volumes.dtype)


def _apply(denoiser: Denoiser, noisy: Tensor, sigma: float, batch_size: int) -> Tensor:
    outs = []
    for start in range(0, noisy.shape[0], batch_size):
        chunk = noisy[start:start + batch_size]
        with torch.no_grad():
            out = denoiser(chunk, sigma)
        if not isinstance(out, Tensor) or out.shape != chunk.shape:
            raise ValueError(f"denoiser: expected an output of shape {tuple(chunk.shape)}, got "
                             f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}")
        outs.append(out.detach().cpu().float())
    return torch.cat(outs)


def best_filter_sigma(
    volumes: Tensor,
    sigma: float,
    generator: torch.Generator,
    filter_sigmas: Sequence[tuple[float, float]] = DEFAULT_FILTER_SIGMAS,
) -> tuple[tuple[float, float], float]:
    """The filter widths with the highest mean PSNR on noisy copies of ``volumes`` (the tuning set).

    Returns
    -------
    ``((sigma_z, sigma_xy), mean_psnr)``.
    """
    volumes = _check_volumes("tune_volumes", volumes)
    noisy = _noisy(volumes, sigma, generator)
    best: tuple[tuple[float, float], float] | None = None
    for widths in filter_sigmas:
        sz, sxy = (float(w) for w in widths)
        score = float(np.mean([psnr_volume(gaussian_filter_volume(n, sz, sxy), v)
                               for n, v in zip(noisy, volumes)]))
        if best is None or score > best[1]:
            best = ((sz, sxy), score)
    assert best is not None
    return best


def denoising_psnr(
    prior: PartitionedPrior | Denoiser,
    volumes: Tensor,
    noise_levels: Sequence[float],
    generator: torch.Generator,
    *,
    tune_volumes: Tensor | None = None,
    filter_sigmas: Sequence[tuple[float, float]] = DEFAULT_FILTER_SIGMAS,
    batch_size: int = 2,
    progress: bool = False,
) -> list[dict]:
    """Denoising PSNR of a prior and of the tuned Gaussian filter, per noise level and volume.

    Parameters
    ----------
    prior : a :class:`PartitionedPrior` (wrapped with :func:`prior_denoiser`) or any
        ``denoiser(y, sigma) -> x0_hat`` on (B, D, H, W) batches.
    volumes : (N, D, H, W) clean evaluation volumes (e.g. the ``test`` split), units of the
        training data ([0, 1] for MRI).
    noise_levels : standard deviations ``sigma > 0`` of the added Gaussian noise, same units.
    generator : source of every noise draw (tuning noise first, then evaluation noise, per level).
    tune_volumes : (M, D, H, W) held-out volumes on which the filter widths are chosen (e.g. the
        ``val`` split). ``None`` tunes on ``volumes`` themselves, which favours the baseline
        (rows then say ``filter_tuned_on = "eval"``).
    filter_sigmas : grid of ``(sigma_z, sigma_xy)`` widths in voxels.
    batch_size : volumes per network call.
    progress : tqdm bar over noise levels.

    Returns
    -------
    list of dicts, one per (noise level, method, volume), with keys ``noise_level``, ``method``
    (``"prior"`` or ``"gaussian_filter"``), ``volume`` (index into ``volumes``), ``psnr`` (dB),
    ``noisy_psnr`` (dB, of the input), ``timestep`` (prior rows, else ``None``),
    ``filter_sigma_z``, ``filter_sigma_xy`` (filter rows, else ``None``), ``filter_tuned_on``.

    Raises
    ------
    ValueError : malformed volumes, a noise level that is not > 0, an empty filter grid, or a
        denoiser output of the wrong shape.
    """
    volumes = _check_volumes("volumes", volumes)
    tune = volumes if tune_volumes is None else _check_volumes("tune_volumes", tune_volumes)
    if tune.shape[1:] != volumes.shape[1:]:
        raise ValueError(f"tune_volumes: expected volumes of shape {tuple(volumes.shape[1:])} like `volumes`, "
                         f"got {tuple(tune.shape[1:])}")
    levels = [float(s) for s in noise_levels]
    bad = [s for s in levels if not (math.isfinite(s) and s > 0)]
    if not levels or bad:
        raise ValueError(f"noise_levels: expected a non-empty list of values > 0, got {list(noise_levels)}")
    if not filter_sigmas:
        raise ValueError("filter_sigmas: expected at least one (sigma_z, sigma_xy) pair")
    if batch_size < 1:
        raise ValueError(f"batch_size: expected >= 1, got {batch_size}")
    if isinstance(prior, PartitionedPrior):
        if prior.depth != volumes.shape[1]:
            raise ValueError(f"volumes: depth {volumes.shape[1]} != the prior's {len(prior.models)} groups x "
                             f"{prior.group_size} slices = {prior.depth}")
        denoiser: Denoiser = prior_denoiser(prior)
        params = list(prior.parameters())
        device = params[0].device if params else torch.device("cpu")
        timestep = denoiser.timestep  # type: ignore[attr-defined]
        run = lambda y, s: denoiser(y.to(device), s)  # noqa: E731
    elif callable(prior):
        run, timestep = prior, None
    else:
        raise TypeError(f"prior: expected a PartitionedPrior or a callable denoiser(y, sigma), "
                        f"got {type(prior).__name__}")
    tuned_on = "eval" if tune_volumes is None else "tune"

    rows: list[dict] = []
    for sigma in tqdm(levels, desc="denoising PSNR", disable=not progress):
        (sz, sxy), tune_score = best_filter_sigma(tune, sigma, generator, filter_sigmas)
        logger.info("noise %.3g: filter widths (%g, %g) chosen on %s (PSNR %.2f dB)",
                    sigma, sz, sxy, tuned_on, tune_score)
        noisy = _noisy(volumes, sigma, generator)
        denoised = _apply(run, noisy, sigma, batch_size)
        t = timestep(sigma) if timestep is not None else None
        for i, (clean, y, xp) in enumerate(zip(volumes, noisy, denoised)):
            base = {"noise_level": sigma, "volume": i, "noisy_psnr": psnr_volume(y, clean),
                    "filter_tuned_on": tuned_on}
            rows.append({**base, "method": "prior", "psnr": psnr_volume(xp, clean), "timestep": t,
                         "filter_sigma_z": None, "filter_sigma_xy": None})
            rows.append({**base, "method": "gaussian_filter",
                         "psnr": psnr_volume(gaussian_filter_volume(y, sz, sxy), clean), "timestep": None,
                         "filter_sigma_z": sz, "filter_sigma_xy": sxy})
    return rows


def summarize_psnr(rows: Sequence[dict]) -> list[dict]:
    """Mean and sample standard deviation of ``psnr`` over volumes, per (noise level, method).

    Returns
    -------
    list of dicts with ``noise_level``, ``method``, ``psnr_mean``, ``psnr_std`` (ddof 1, NaN for
    one volume), ``n_volumes``, sorted by noise level then method.
    """
    groups: dict[tuple[float, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["noise_level"], r["method"]), []).append(r["psnr"])
    return [{"noise_level": s, "method": m, "psnr_mean": float(np.mean(v)), "psnr_std": float(np.std(v, ddof=1)) if len(v) > 1 else math.nan,
             "n_volumes": len(v)}
            for (s, m), v in sorted(groups.items())]


def slice_occupancy(volumes: Tensor, threshold: float) -> Tensor:
    """Per slice, the fraction of volumes whose slice is *occupied*: mean of ``max(x, 0)`` > ``threshold``.

    For 4D-STEM potentials a slice whose mean stays below a small threshold is vacuum (the
    slices below a crystal's thickness); negative values (noise of a sample) are clipped first.

    Parameters
    ----------
    volumes : (N, D, H, W) float, in the units of ``threshold`` (e.g. prior units, potential /
        ``data_scale``).
    threshold : slice-mean level above which a slice counts as occupied.

    Returns
    -------
    (D,) float64 fractions in [0, 1].

    >>> v = torch.zeros(4, 2, 3, 3); v[:3, 0] = 1.0; v[0, 1] = -5.0
    >>> slice_occupancy(v, 0.5).tolist()
    [0.75, 0.0]
    """
    volumes = _check_volumes("volumes", volumes)
    if not (isinstance(threshold, (int, float)) and math.isfinite(threshold)):
        raise ValueError(f"threshold: expected a finite number, got {threshold!r}")
    return (volumes.clamp(min=0).mean((-2, -1)) > threshold).double().mean(0)


def prior_occupancy(prior: PartitionedPrior, data: Tensor, threshold: float, generator: torch.Generator, *,
                    n_samples: int = 16, num_steps: int = 20) -> list[dict]:
    """Occupancy per slice of a prior's unconditional samples against its training data.

    A prior trained with the L1 loss learns the posterior *median*: at pure noise the median of
    a slice that is vacuum in a good share of the training volumes is vacuum, so its samples may
    leave such slices empty far more often than the data do (the reason for the L2 fine-tuned
    4D-STEM prior, preset ``stem_default_l2``). Measured in ``benchmarks/prior_occupancy.py``.

    Parameters
    ----------
    prior : the partitioned prior (its sampler as configured, e.g. DDIM with clipping).
    data : (N, D, H, W) training volumes in prior units, ``D = prior.depth``.
    threshold : occupancy level of :func:`slice_occupancy`, prior units.
    generator : source of the samples' noise.
    n_samples : unconditional samples drawn, at the data's (H, W).
    num_steps : sampling steps per sample.

    Returns
    -------
    one dict per slice: ``slice``, ``group`` (slice // group_size), ``prior`` and ``data`` (the
    occupied fractions), ``n_samples``, ``n_data``, ``threshold``.
    """
    data = _check_volumes("data", data)
    if data.shape[1] != prior.depth:
        raise ValueError(f"data: depth {data.shape[1]} != the prior's {len(prior.models)} groups x "
                         f"{prior.group_size} slices = {prior.depth}")
    if n_samples < 1 or num_steps < 1:
        raise ValueError(f"n_samples, num_steps: expected >= 1, got {n_samples}, {num_steps}")
    samples = prior.sample((n_samples, *data.shape[1:]), num_steps=num_steps, generator=generator)
    sampled, observed = slice_occupancy(samples.cpu().float(), threshold), slice_occupancy(data, threshold)
    return [{"slice": d, "group": d // prior.group_size, "prior": float(sampled[d]), "data": float(observed[d]),
             "n_samples": n_samples, "n_data": int(data.shape[0]), "threshold": float(threshold)}
            for d in range(prior.depth)]


__all__ = ["DEFAULT_FILTER_SIGMAS", "Denoiser", "best_filter_sigma", "denoising_psnr",
           "gaussian_filter_volume", "noise_level_timestep", "prior_denoiser", "prior_occupancy",
           "slice_occupancy", "summarize_psnr"]
