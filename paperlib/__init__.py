"""paperlib: reference companion to "Physics-Guided Diffusion Priors for Multi-Slice
Reconstruction in Scientific Imaging" (DART and DRIFT).

Sub-packages follow the paper: ``physics`` (measurement operators), ``data`` (volumes),
``recon`` (reconstructions and baselines), ``metrics`` (SSIM, PSNR), ``diffusion`` (priors).
"""
import logging

from . import _malloc

__version__ = "0.1.0"
logging.getLogger("paperlib").addHandler(logging.NullHandler())
_malloc.tune()  # keep freed tensor memory in the process (paperlib._malloc; PAPERLIB_MALLOC=default keeps glibc's)
