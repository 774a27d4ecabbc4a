"""Image and video quality metrics (SSIM, PSNR; FVD and JEDi live in ``video``)."""
from .image import psnr_slices, ssim_slices, volume_scores

__all__ = ["ssim_slices", "psnr_slices", "volume_scores"]
