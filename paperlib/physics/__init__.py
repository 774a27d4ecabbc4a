"""Measurement physics, one operator per modality, batched over the slices of a volume.

* :mod:`paperlib.physics.base`: the :class:`~paperlib.physics.base.Operator` protocol used by
  DART and DRIFT, and the adjointness / gradient checks every operator is tested with.
* :mod:`paperlib.physics.mri`: Cartesian sampling masks, the masked orthonormal FFT operator
  and its data-consistency step (paper Eq. 3, Eq. 4); the multicoil 3D Cartesian operator with
  simulated coil maps and 2D variable-density phase-encoding masks (issue 18).
* :mod:`paperlib.physics.multislice`: the multislice 4D-STEM model (paper Eq. 2, Eq. 5).
"""
from __future__ import annotations

from .base import Operator, adjointness_error, check_gradients, inner_product
from .mri import (MRIOperator, MulticoilMRIOperator, coil_sensitivities, fft2c, fft3c, gaussian2d_mask, ifft2c,
                  ifft3c, make_mask, multicoil_mask, uniform1d_mask)

__all__ = [
    "Operator",
    "adjointness_error",
    "check_gradients",
    "inner_product",
    "MRIOperator",
    "fft2c",
    "ifft2c",
    "make_mask",
    "uniform1d_mask",
    "gaussian2d_mask",
    "MulticoilMRIOperator",
    "coil_sensitivities",
    "multicoil_mask",
    "fft3c",
    "ifft3c",
]
