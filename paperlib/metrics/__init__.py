"""Image quality metrics (SSIM, PSNR), the 4D-STEM scores, and distances between sets of volumes (FVD, JEDi).

Conventions in :mod:`.image`; the video metrics, their feature extractors and file formats in :mod:`.video`;
the project's offline 3D encoder in :mod:`.encoder`.
"""
from .image import psnr_slices, psnr_volume, ssim_images, ssim_slices, volume_scores
from .video import frechet_distance, jedi, load_extractor, polynomial_mmd2, set_distances, volume_features

__all__ = ["ssim_slices", "ssim_images", "psnr_slices", "psnr_volume", "volume_scores",
           "frechet_distance", "jedi", "polynomial_mmd2", "set_distances", "load_extractor", "volume_features"]
