"""Variational 3D MRI reconstruction regularised by a 2D diffusion prior on random slices
(Krainovic, Ruschke & Heckel, "Resolution-Robust 3D MRI Reconstruction with 2D Diffusion Priors";
paper ``002`` in ``shared/papers``).

Problem. From multicoil 3D k-space ``y = A x + noise`` (:class:`~paperlib.physics.mri.MulticoilMRIOperator`,
``A x = M ⊙ F_3D(S_c x)``) the complex volume ``x`` (D, H, W) is found by minimising

.. math::

    L(x) = 1/2 ||A x - y||^2 + λ R(x)

with a first-order method (Adam, or plain gradient steps), starting from the zero-filled image
``A^H y``. The regulariser is re-drawn at every iteration (*randomised slicing*):

1. an axis ``a`` uniformly among ``axes`` (axial, coronal, sagittal) and ``k = slices_per_iter``
   distinct positions along it, uniformly: the 2D slices ``s_i`` of the current volume's
   magnitude (phase kept: the prior is trained on magnitude images; a real reconstruction,
   ``real=True``, uses the volume itself);
2. a timestep ``t`` uniformly in ``[0, t_max]`` (the *truncated* diffusion objective: only small
   noise levels, where the denoiser is a sharp image prior) and Gaussian noise ``z``:
   ``s_t = sqrt(abar_t) s / c + sqrt(1 - abar_t) z`` (paper Eq. 1; ``c`` the intensity scale,
   :func:`paperlib.data.intensity.intensity_scale` of ``|A^H y|`` by default);
3. the prior's denoised estimate ``D(s_t, t)`` and

.. math::

    R(x) = (n_a / k) \\, 1/2 \\sum_i || s_i - c \\, sg[D(s_{i,t}, t)] ||^2 / \\prod_j f_j,

an unbiased estimate of the same sum over *all* ``n_a`` slices of axis ``a`` (``f_j`` the
resampling factors below, so that ``R`` is in units of the native voxels). ``sg`` is the
stop-gradient: the *stabilised Jacobian*. The gradient of ``R`` is ``s - c D(s_t)`` (chained
through the magnitude and the resampling, both cheap and linear or 1-Lipschitz); the denoiser's
Jacobian is never formed and nothing is back-propagated through the network. This is our reading
of the paper's truncated objective with stabilised Jacobian (the formulas were lost from our
copy): it is the score-distillation / RED-diff gradient (Poole et al. 2023; Mardani et al. 2024),
``E[eps_hat - eps]`` in the x0 parametrisation, with the SNR weight dropped, so that ``λ`` is one
number for all ``t`` (``weighting="x0"``, the default). ``weighting="epsilon"`` keeps it: the
gradient is then that of the epsilon-prediction training loss ``1/2 ||eps_hat(s_t, t) - eps||^2``
with the denoiser's Jacobian dropped, ``sqrt(abar_t) (eps_hat - eps) = abar_t / sqrt(1 - abar_t)
(s - D(s_t))`` (in prior units): the term is multiplied by ``w_t = abar_t / sqrt(1 - abar_t)``,
which weights the smallest noise levels most.

Resolution. The prior is trained on slices with a pixel size ``prior.voxel_size`` (mm). When the
reconstruction voxel ``voxel_size`` is larger along some axis, the volume is trilinearly
resampled (:func:`resample_volume`, ``resample=True``) to the prior's voxel along that axis
before slicing, and the gradient flows back through the (linear) resampling. The paper finds
this closes the gap for ``V_rec > V_train``; for smaller reconstruction voxels nothing is
resampled (training on diverse voxel sizes is the remedy there).

Also here: :class:`SlicePrior`, a :class:`~paperlib.diffusion.unet3d.UNet3D` run on single slices
(``D = 1``) through :func:`paperlib.diffusion.partition.run_network`, and the simulation of
multicoil data from a magnitude volume or NIfTI file (:func:`simulate_multicoil`,
:func:`simulate_multicoil_nifti`).

>>> from paperlib.physics.mri import MulticoilMRIOperator, coil_sensitivities, multicoil_mask
>>> g = torch.Generator().manual_seed(0)
>>> x = torch.zeros(4, 8, 8); x[1:3, 2:6, 2:6] = 1.0
>>> op, y = simulate_multicoil(x, num_coils=2, acceleration=2, center_fraction=0.2, generator=g)
>>> r = variational2d(op, y, None, weight=0.0, iters=50, optimizer="gd", generator=g)
>>> bool(op.data_term(r, y) < 0.01 * op.data_term(torch.zeros_like(r), y))
True
"""
from __future__ import annotations

import math
import os
from typing import Callable, Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from ..data.intensity import intensity_scale
from ..diffusion.partition import check_precision, run_network
from ..diffusion.sampler import Sampler
from ..io import InputValidationError
from ..physics.mri import MulticoilMRIOperator, coil_sensitivities, multicoil_mask

__all__ = [
    "SlicePrior",
    "resample_volume",
    "resampling_factors",
    "random_slices",
    "variational2d",
    "simulate_multicoil",
    "simulate_multicoil_nifti",
]

AXES = (0, 1, 2)


class SlicePrior:
    """A 2D diffusion prior: a :class:`~paperlib.diffusion.unet3d.UNet3D` evaluated on single slices.

    Every slice is a one-frame "video" (``D = 1``), so the network's temporal attention (if any)
    attends to the slice itself; the ``"slice2d"`` preset of
    :data:`paperlib.diffusion.unet3d.PRESETS` has it off. Slices whose sides are not multiples of
    the network's downsampling factor are zero-padded at the bottom/right and cropped back.

    Parameters
    ----------
    model : the network, ``(B, 1, 1, H, W), t -> (B, 1, 1, H, W)`` prediction target of ``sampler``;
        put in eval mode.
    sampler : :class:`~paperlib.diffusion.sampler.Sampler` of its training schedule and target.
    voxel_size : in-plane pixel size (mm) of the training slices, or None (unknown: no resampling).
    precision : ``"float32"``, ``"bfloat16"`` or ``"auto"`` (:func:`~paperlib.diffusion.partition.run_network`).

    >>> from paperlib.diffusion.unet3d import UNet3D, PRESETS
    >>> from paperlib.diffusion.schedules import ScheduleConfig
    >>> prior = SlicePrior(UNet3D(PRESETS["slice2d"]), Sampler(ScheduleConfig("cosine", 100)), voxel_size=1.0)
    >>> prior.denoise(torch.rand(3, 12, 20), 5).shape
    torch.Size([3, 12, 20])
    """

    def __init__(self, model: nn.Module, sampler: Sampler, *, voxel_size: float | None = None,
                 precision: str = "float32") -> None:
        if not isinstance(model, nn.Module):
            raise InputValidationError(f"model: expected a torch.nn.Module (a UNet3D), got {type(model).__name__}")
        if not isinstance(sampler, Sampler):
            raise InputValidationError(f"sampler: expected a paperlib Sampler, got {type(sampler).__name__}")
        cfg = getattr(model, "cfg", None)
        if cfg is not None and cfg.in_channels != 1:
            raise InputValidationError(f"model: expected a one-channel network (magnitude slices), got "
                                       f"in_channels={cfg.in_channels}")
        if voxel_size is not None and not (isinstance(voxel_size, (int, float)) and math.isfinite(voxel_size)
                                           and voxel_size > 0):
            raise InputValidationError(f"voxel_size: expected a pixel size in mm > 0 or None, got {voxel_size!r}")
        check_precision(precision)
        self.model = model.eval()
        self.sampler = sampler
        self.voxel_size = None if voxel_size is None else float(voxel_size)
        self.precision = precision
        self.spatial_factor = int(cfg.spatial_factor) if cfg is not None else 1

    def __repr__(self) -> str:
        return f"SlicePrior({type(self.model).__name__}, {self.sampler!r}, voxel_size={self.voxel_size})"

    def denoise(self, x_t: Tensor, t: int) -> Tensor:
        """``x0_hat`` of the slices ``x_t`` (B, H, W) at timestep ``t`` (prior units), float32.

        Differentiable in ``x_t`` when gradients are enabled (posterior sampling needs that);
        :func:`variational2d` calls it on detached slices under :func:`torch.no_grad`.
        """
        if x_t.ndim != 3:
            raise InputValidationError(f"x_t: expected slices (B, H, W), got shape {tuple(x_t.shape)}")
        height, width = x_t.shape[-2:]
        f = self.spatial_factor
        ph, pw = (-height) % f, (-width) % f
        padded = F.pad(x_t, (0, pw, 0, ph)) if ph or pw else x_t
        out = run_network(self.model, padded[:, None], int(t), self.precision)[:, 0]
        x0 = self.sampler.predict_x0(out, padded, int(t))
        return x0[:, :height, :width]


# --------------------------------------------------------------------------------------------
# resampling and slicing
# --------------------------------------------------------------------------------------------
def resampling_factors(voxel_size: Sequence[float] | None, prior_voxel_size: float | None) -> tuple[float, ...]:
    """Per-axis factors ``max(1, voxel_size_j / prior_voxel_size)`` by which :func:`variational2d`
    upsamples the volume before slicing (all 1 when either size is unknown).

    >>> resampling_factors((4.0, 1.0, 0.5), 1.0)
    (4.0, 1.0, 1.0)
    """
    if voxel_size is None or prior_voxel_size is None:
        return (1.0, 1.0, 1.0)
    sizes = tuple(float(v) for v in voxel_size)
    if len(sizes) != 3 or not all(math.isfinite(v) and v > 0 for v in sizes):
        raise InputValidationError(f"voxel_size: expected three positive voxel sizes in mm (D, H, W), got {voxel_size!r}")
    return tuple(max(1.0, v / float(prior_voxel_size)) for v in sizes)


def resample_volume(x: Tensor, size: Sequence[int]) -> Tensor:
    """Trilinear resampling of a real or complex volume (..., D, H, W) to ``size`` (D', H', W').

    Cell-centred (``align_corners=False``): the field of view is kept and a voxel of the output
    is ``D / D'`` (etc.) input voxels. Complex volumes are resampled as real and imaginary parts.
    Linear, differentiable; the identity when ``size`` is the input's shape.

    >>> resample_volume(torch.ones(2, 3, 4), (4, 6, 8)).shape
    torch.Size([4, 6, 8])
    """
    size = tuple(int(s) for s in size)
    if len(size) != 3 or min(size) < 1:
        raise InputValidationError(f"size: expected (D, H, W), three integers >= 1, got {size!r}")
    if x.ndim < 3:
        raise InputValidationError(f"x: expected a volume (..., D, H, W), got shape {tuple(x.shape)}")
    if tuple(x.shape[-3:]) == size:
        return x
    if x.is_complex():
        return torch.complex(resample_volume(x.real, size), resample_volume(x.imag, size))
    lead = x.shape[:-3]
    flat = x.reshape(-1, 1, *x.shape[-3:])
    out = F.interpolate(flat, size=size, mode="trilinear", align_corners=False)
    return out.reshape(*lead, *size)


def random_slices(volume: Tensor, axis: int, count: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``count`` distinct random slices of ``volume`` (D, H, W) along ``axis`` (0, 1 or 2).

    Returns
    -------
    slices : (count, ...) the slices, differentiable views of ``volume`` (axis 0: (H, W);
        1: (D, W); 2: (D, H)).
    positions : (count,) int64 positions along ``axis`` (a uniform draw without replacement).
    """
    n = volume.shape[axis]
    positions = torch.randperm(n, generator=generator, device=generator.device)[: min(int(count), n)]
    return volume.movedim(axis, 0)[positions.to(volume.device)], positions


# --------------------------------------------------------------------------------------------
# the reconstruction
# --------------------------------------------------------------------------------------------
def _check_reconstruction_args(op, y, prior, weight, iters, slices_per_iter, t_max, axes, optimizer, step_size):
    if not isinstance(op, MulticoilMRIOperator):
        raise InputValidationError(f"op: expected a MulticoilMRIOperator, got {type(op).__name__}")
    op.check(y, "y")
    if not y.is_complex():
        raise InputValidationError(f"y: expected complex k-space, got dtype {y.dtype}")
    if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
        raise InputValidationError(f"weight: expected a finite number >= 0 (λ), got {weight!r}")
    if weight > 0 and not isinstance(prior, SlicePrior):
        raise InputValidationError(f"prior: expected a SlicePrior when weight > 0, got {type(prior).__name__}")
    if not isinstance(iters, int) or iters < 0:
        raise InputValidationError(f"iters: expected an integer >= 0, got {iters!r}")
    if not isinstance(slices_per_iter, int) or slices_per_iter < 1:
        raise InputValidationError(f"slices_per_iter: expected an integer >= 1, got {slices_per_iter!r}")
    if not (isinstance(t_max, (int, float)) and 0 < t_max <= 1):
        raise InputValidationError(f"t_max: expected a fraction of the schedule in (0, 1], got {t_max!r}")
    if not axes or any(a not in AXES for a in axes):
        raise InputValidationError(f"axes: expected a non-empty subset of {AXES}, got {axes!r}")
    if optimizer not in ("adam", "gd"):
        raise InputValidationError(f"optimizer: expected 'adam' or 'gd', got {optimizer!r}")
    if not (isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0):
        raise InputValidationError(f"step_size: expected a finite number > 0, got {step_size!r}")


def variational2d(
    op: MulticoilMRIOperator,
    y: Tensor,
    prior: SlicePrior | None,
    *,
    weight: float,
    generator: torch.Generator,
    iters: int = 200,
    optimizer: Literal["adam", "gd"] = "adam",
    step_size: float | None = None,
    slices_per_iter: int = 4,
    t_max: float = 0.2,
    axes: Sequence[int] = AXES,
    weighting: Literal["x0", "epsilon"] = "x0",
    voxel_size: Sequence[float] | None = None,
    resample: bool = True,
    scale: float | None = None,
    real: bool = False,
    init: Tensor | None = None,
    callback: Callable[[int, Tensor], None] | None = None,
    progress: bool = False,
) -> Tensor:
    """Minimise ``1/2 ||A x - y||^2 + λ R(x)`` with randomised 2D-prior slicing (module docstring).

    Parameters
    ----------
    op, y : the multicoil operator and its k-space (C, D, H, W) complex.
    prior : the 2D prior; may be None when ``weight`` is 0 (plain least squares).
    weight : λ >= 0, dimensionless (both terms are squared intensities).
    generator : the only source of randomness (axes, positions, timesteps, noise); a CPU generator.
    iters : iterations (each: one data-term gradient and one prior call on ``slices_per_iter`` slices).
    optimizer : ``"adam"`` (the paper's) or ``"gd"`` (plain gradient steps).
    step_size : Adam's learning rate in units of the intensity scale ``c`` (default 0.02, i.e.
        ``lr = 0.02 c``); for ``"gd"`` the step in units of ``1 / ||A||^2`` (default 1; ``||A|| <= 1``).
    slices_per_iter : slices drawn per iteration (all of the axis when it has fewer).
    t_max : the truncation: timesteps are drawn uniformly from ``0 .. t_max (T - 1)``.
    axes : the slicing orientations to draw from (0: axial (H, W); 1: coronal (D, W); 2: sagittal (D, H)).
    weighting : ``"x0"`` (unweighted ``s - D(s_t)``) or ``"epsilon"`` (times ``abar_t / sqrt(1 - abar_t)``);
        module docstring.
    voxel_size : (3,) reconstruction voxel (D, H, W) in mm; with ``prior.voxel_size`` and ``resample``
        the volume is trilinearly upsampled by :func:`resampling_factors` before slicing.
    resample : apply that resampling (the paper's fix for reconstruction voxels larger than the
        training voxel); False regularises the native grid whatever the voxel sizes.
    scale : intensity scale ``c`` of the prior (default :func:`~paperlib.data.intensity.intensity_scale`
        of ``|A^H y|``).
    real : reconstruct a real volume (the regulariser then acts on ``x`` rather than ``|x|``).
    init : starting volume (D, H, W); default ``A^H y`` (its real part when ``real``).
    callback : ``callback(k, x)`` after iteration ``k = 1 .. iters`` with a copy of the iterate (it may be kept).
    progress : tqdm bar.

    Returns
    -------
    (D, H, W) complex64 volume (float32 when ``real``).
    """
    _check_reconstruction_args(op, y, prior, weight, iters, slices_per_iter, t_max, tuple(axes), optimizer,
                               1.0 if step_size is None else step_size)
    if weighting not in ("x0", "epsilon"):
        raise InputValidationError(f"weighting: expected 'x0' or 'epsilon', got {weighting!r}")
    if not isinstance(generator, torch.Generator):
        raise InputValidationError(f"generator: expected a torch.Generator, got {type(generator).__name__}")
    axes = tuple(int(a) for a in axes)
    zero_filled = op.conjugate_transpose(y)
    c = float(scale) if scale is not None else intensity_scale(zero_filled.abs(), name="zero-filled image |A^H y|")
    if not (math.isfinite(c) and c > 0):
        raise InputValidationError(f"scale: expected a finite number > 0, got {scale!r}")
    if init is None:
        start = zero_filled.real if real else zero_filled
    else:
        op.check(init, "x")
        if tuple(init.shape) != op.shape:
            raise InputValidationError(f"init: expected shape {op.shape}, got {tuple(init.shape)}")
        start = init.real if real else init.to(zero_filled.dtype)
    x = start.detach().clone().requires_grad_(True)
    regularised = weight > 0
    factors = resampling_factors(voxel_size, prior.voxel_size if (regularised and resample) else None)
    fine_shape = tuple(max(1, round(n * f)) for n, f in zip(op.shape, factors))
    cells = math.prod(fine / n for fine, n in zip(fine_shape, op.shape))
    if regularised:
        t_top = prior.sampler.start_timestep(float(t_max))
    if optimizer == "adam":
        lr = (0.02 if step_size is None else step_size) * c
        opt = torch.optim.Adam([x], lr=lr)
    else:
        lr = 1.0 if step_size is None else step_size
        opt = torch.optim.SGD([x], lr=lr)
    y = y.to(zero_filled.dtype)
    for k in tqdm(range(iters), desc="variational 2D prior", disable=not progress, leave=False):
        opt.zero_grad(set_to_none=True)
        loss = op.data_term(x, y)
        if regularised:
            loss = loss + weight * _slice_regulariser(x, prior, fine_shape, cells, axes, slices_per_iter, t_top, c,
                                                      weighting, generator)
        loss.backward()
        opt.step()
        if callback is not None:
            callback(k + 1, x.detach().clone())
    return x.detach()


def _slice_regulariser(x: Tensor, prior: SlicePrior, fine_shape: tuple[int, ...], cells: float,
                       axes: tuple[int, ...], count: int, t_top: int, scale: float, weighting: str,
                       generator: torch.Generator) -> Tensor:
    """One draw of ``R(x)`` (module docstring): random axis, slices, timestep and noise; the
    denoiser output enters as a constant (stabilised Jacobian)."""
    axis = axes[int(torch.randint(len(axes), (1,), generator=generator, device=generator.device))]
    t = int(torch.randint(t_top + 1, (1,), generator=generator, device=generator.device))
    image = x.abs() if x.is_complex() else x
    image = resample_volume(image, fine_shape)
    slices, _ = random_slices(image, axis, count, generator)
    noise = torch.randn(slices.shape, generator=generator, dtype=torch.float32, device=generator.device).to(slices.device)
    with torch.no_grad():
        noisy = prior.sampler.noise_to(slices.detach().float() / scale, t, noise)
        target = prior.denoise(noisy, t).to(slices.dtype) * scale
    a = prior.sampler.abar_at(t)
    w = a / math.sqrt(1.0 - a) if weighting == "epsilon" else 1.0
    return (w * image.shape[axis] / slices.shape[0]) * 0.5 * (slices - target).pow(2).sum() / cells


# --------------------------------------------------------------------------------------------
# simulated multicoil data for magnitude volumes
# --------------------------------------------------------------------------------------------
def simulate_multicoil(
    volume: Tensor,
    *,
    num_coils: int = 8,
    acceleration: float = 4.0,
    center_fraction: float = 0.08,
    noise_std: float = 0.0,
    generator: torch.Generator,
) -> tuple[MulticoilMRIOperator, Tensor]:
    """Simulated multicoil 3D k-space of a **magnitude** volume (no coil data exist for it).

    Magnitude images (NIfTI files, the synthetic brains) carry neither phase nor coil
    information, so both are *simulated*: the volume is taken as a real, zero-phase image,
    multiplied by :func:`~paperlib.physics.mri.coil_sensitivities` (smooth Biot-Savart-like maps,
    ``sum_c |S_c|^2 = 1``), Fourier transformed in 3D and undersampled by
    :func:`~paperlib.physics.mri.multicoil_mask` (2D variable density over ``(D, H)``, readout
    ``W`` fully sampled). Results on such data say nothing about phase errors or real coil noise.

    Parameters
    ----------
    volume : (D, H, W) real, finite, D and H >= 4.
    num_coils, acceleration, center_fraction : the coils and the mask.
    noise_std : standard deviation of complex Gaussian k-space noise per sampled entry (real and
        imaginary parts each ``noise_std / sqrt(2)``), in the volume's units (the FFT is unitary).
    generator : draws the mask and the noise.

    Returns
    -------
    (op, y) : the operator and the k-space (C, D, H, W) complex64, zero outside the mask.
    """
    if not isinstance(volume, Tensor) or volume.ndim != 3 or volume.is_complex() or not volume.is_floating_point():
        got = f"{volume.dtype} {tuple(volume.shape)}" if isinstance(volume, Tensor) else type(volume).__name__
        raise InputValidationError(f"volume: expected a real floating-point (D, H, W) magnitude volume, got {got}")
    if not bool(torch.isfinite(volume).all()):
        raise InputValidationError("volume: expected finite values, got NaN/Inf")
    if not (isinstance(noise_std, (int, float)) and math.isfinite(noise_std) and noise_std >= 0):
        raise InputValidationError(f"noise_std: expected a finite number >= 0, got {noise_std!r}")
    shape = tuple(int(s) for s in volume.shape)
    try:
        mask = multicoil_mask(shape, acceleration, center_fraction, generator=generator)
    except ValueError as exc:  # the mask's own checks name the argument
        raise InputValidationError(str(exc)) from exc
    op = MulticoilMRIOperator(coil_sensitivities(shape, num_coils), mask)
    y = op.forward(volume.float())
    if noise_std > 0:
        noise = torch.randn(y.shape, generator=generator, dtype=torch.complex64) * noise_std
        y = y + noise * op.mask
    return op, y


def simulate_multicoil_nifti(path: str | os.PathLike, **kwargs) -> tuple[MulticoilMRIOperator, Tensor, tuple[float, ...], Tensor]:
    """:func:`simulate_multicoil` for a **magnitude** NIfTI volume (coils and phase simulated, see there).

    The file is read and validated by :func:`paperlib.io.load_nifti` and reordered to
    ``(D, H, W) = (k, j, i)`` (:func:`paperlib.reconstruct.to_dhw`).

    Returns
    -------
    (op, y, voxel_size, volume) : the operator, k-space, the voxel size ``(D, H, W)`` in mm (pass it to
    :func:`variational2d`) and the (D, H, W) float32 volume.
    """
    from ..io import load_nifti
    from ..reconstruct import to_dhw

    data, _, zooms = load_nifti(path)
    volume = torch.from_numpy(to_dhw(data)).float()
    op, y = simulate_multicoil(volume, **kwargs)
    return op, y, tuple(float(z) for z in zooms[::-1]), volume
