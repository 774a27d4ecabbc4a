"""Image quality metrics (SSIM, PSNR) and the 4D-STEM scores; conventions in :mod:`.image`."""
from .image import psnr_slices, psnr_volume, ssim_images, ssim_slices, volume_scores

__all__ = ["ssim_slices", "ssim_images", "psnr_slices", "psnr_volume", "volume_scores"]
