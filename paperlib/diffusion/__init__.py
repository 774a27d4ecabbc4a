"""Partitioned video-diffusion priors (paper Sec. "Numerical Experiments"; Ho et al. 2020, 2022).

Modules
-------
schedules     noise schedules (linear, cosine) and the forward process ``q_sample``
unet3d        space-time factorised 3D U-Net; slices play the role of video frames
sampler       DDPM / DDIM reverse steps with a hook for the physics step between network and step
partition     split the depth into G slice groups, one independent model per group
distributed   slice groups over torch.distributed ranks (gloo / nccl), torchrun or local spawn
train         L1 training of the groups' priors: accumulation, EMA, exact resume, CLI ``main``
checkpoints   safetensors weights + JSON manifest, verified on load
evaluate      held-out denoising PSNR of a prior against a tuned Gaussian filter

The networks predict ``v`` (Salimans & Ho 2022; Ho et al. 2022), trained with the L1 loss; see
:mod:`paperlib.diffusion.train`.
"""
from __future__ import annotations

from .checkpoints import CheckpointError, load_partitioned_prior, load_prior, save_prior
from .evaluate import denoising_psnr, prior_denoiser, summarize_psnr
from .partition import PartitionedPrior, derive_seed, group_slices, merge_groups, split_groups
from .sampler import Sampler
from .schedules import ScheduleConfig, alphas_cumprod, cosine_betas, linear_betas, q_sample
from .tiling import TiledPrior, tiled
from .train import TRAIN_PRESETS, TrainConfig, TrainResult, train_prior
from .unet3d import PRESETS, UNet3D, UNet3DConfig, count_parameters

__all__ = [
    "CheckpointError", "load_partitioned_prior", "load_prior", "save_prior",
    "denoising_psnr", "prior_denoiser", "summarize_psnr",
    "PartitionedPrior", "derive_seed", "group_slices", "merge_groups", "split_groups",
    "TiledPrior", "tiled",
    "Sampler", "ScheduleConfig", "alphas_cumprod", "cosine_betas", "linear_betas", "q_sample",
    "TRAIN_PRESETS", "TrainConfig", "TrainResult", "train_prior",
    "PRESETS", "UNet3D", "UNet3DConfig", "count_parameters",
]
