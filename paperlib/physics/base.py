"""The measurement-operator protocol shared by DART and DRIFT, and checks every operator passes.

An *operator* bundles one modality's physics: the forward model (volume -> measurement), the
physics step that DART alternates with the prior (paper Eq. 4 for MRI, Eq. 5 for 4D-STEM),
the real image DRIFT selects candidates with, and the declarations of its capabilities
(:class:`Operator`). ``slice_local`` tells the distributed samplers whether the physics step
of a slice needs only that slice (MRI: 2D undersampling per slice) or the whole object
(multislice 4D-STEM: the exit wave passes through every slice), so DART and DRIFT choose their
communication without knowing the modality.

The two helpers below are the invariants every operator is tested for (see CONVENTIONS.md):
:func:`adjointness_error` for a linear operator and its adjoint, and :func:`check_gradients`,
a float64 :func:`torch.autograd.gradcheck` wrapper for the differentiable parts.
"""
from __future__ import annotations

from typing import Callable, Protocol, runtime_checkable

import torch
from torch import Tensor

from ..io import InputValidationError

__all__ = ["Operator", "inner_product", "adjointness_error", "check_gradients", "finite_result"]


def finite_result(result: Tensor, what: str) -> Tensor:
    """``result``, or :class:`~paperlib.io.InputValidationError` when it holds NaN/Inf although the
    inputs were finite: finite values too large for the arithmetic of ``what`` (the message names
    ``what``, e.g. ``"forward(x)"``, and the dtype). One pass over ``result``.

    >>> finite_result(torch.ones(2), "forward(x)")
    tensor([1., 1.])
    >>> finite_result(torch.tensor([3e38]) * 10, "forward(x)")
    Traceback (most recent call last):
    ...
    paperlib.io.InputValidationError: forward(x): the result overflowed torch.float32 (1 of 1 values NaN/Inf): the inputs or settings are too large for this precision
    """
    finite = torch.isfinite(result)
    if not bool(finite.all()):
        raise InputValidationError(
            f"{what}: the result overflowed {result.dtype} ({int((~finite).sum())} of {result.numel()} values "
            "NaN/Inf): the inputs or settings are too large for this precision")
    return result


@runtime_checkable
class Operator(Protocol):
    """One modality's physics, batched over the slices of a ``(D, H, W)`` volume.

    An operator *declares* every capability a reconstruction may use; DART, DRIFT and the
    projection method read these declarations and never probe an operator's class or members
    (``DESIGN.md``). The implementations are
    :class:`~paperlib.physics.mri.MRIOperator` and
    :class:`~paperlib.physics.multislice.MultisliceOperator`; ``tests/test_operators.py``
    checks every declaration of both.

    Attributes
    ----------
    slice_local : bool
        True when :meth:`physics_step` acts on every slice independently (MRI), so each rank
        of a distributed sampler may apply it to its own slices; False when the step couples
        slices (multislice 4D-STEM) and needs the whole object. A slice-local operator's
        :meth:`forward`, :meth:`physics_step` and :meth:`measurement_image` also broadcast
        over leading dimensions (e.g. ``(N, D, H, W)`` candidates); a coupled one takes one
        volume at a time.
    supports_support : bool
        True when :meth:`physics_step` takes ``support=``, a ``(D,)`` bool tensor of the slices
        that may hold signal (the others are set to 0 after the step).
    is_linear : bool
        True when :meth:`forward` is linear and :attr:`adjoint` is its adjoint.
    adjoint : callable or None
        ``y -> A^H y``, the adjoint of :meth:`forward`, where ``is_linear``; None otherwise.
    projects : bool
        True when ``physics_step(x, y, step_size=1.0)`` is the projection onto ``{x : A x = y}``
        (``A A^H`` a projection, as for masked unitary transforms: MRI's Eq. 4); what the
        projection-based sampler needs. Implies ``is_linear``; a linear operator need not project
        (multicoil MRI: ``A A^H`` is not a projection once coils are combined).

    Examples
    --------
    ``isinstance`` checks only that the members exist; the values are the declarations:

    >>> from paperlib.physics.mri import MRIOperator
    >>> op = MRIOperator(torch.ones(4, 4, dtype=torch.bool))
    >>> isinstance(op, Operator), op.slice_local, op.is_linear, op.projects, op.supports_support
    (True, True, True, True, False)
    >>> op.volume_shape(torch.zeros(2, 4, 4, dtype=torch.complex64)), op.periodic_scan_step()
    ((2, 4, 4), None)
    """

    slice_local: bool
    supports_support: bool
    is_linear: bool
    adjoint: Callable[[Tensor], Tensor] | None
    projects: bool

    def forward(self, x: Tensor) -> Tensor:
        """Volume ``(D, H, W)`` -> measurement (modality-specific shape and dtype: MRI k-space
        ``(D, H, W)`` complex; 4D-STEM intensities ``(Sy, Sx, Ky, Kx)`` real)."""
        ...

    def physics_step(self, x: Tensor, y: Tensor) -> Tensor:
        """One step towards agreement with the measurement ``y`` (paper Eq. 4 / Eq. 5);
        returns a volume of the shape and real/complex kind of ``x``. Modality-specific
        keyword arguments (``step_size``, ...) pass through ``step_kwargs`` of DART/DRIFT;
        ``support=`` where :attr:`supports_support`. An operator may also offer
        ``bind_physics_step(y, **step_kwargs) -> step(x)``, the same step with ``y`` and the settings
        bound once (both implementations do: what depends on ``y`` alone is computed once);
        :func:`paperlib.recon.dart.physics_callback` uses it where present."""
        ...

    def measurement_image(self, y: Tensor) -> Tensor:
        """Real image derived from the measurement alone, DRIFT's selection image: MRI the
        zero-filled magnitude, one image per slice, shaped like ``y`` ``(..., D, H, W)``;
        4D-STEM the bright-field image of the whole object, ``(Sy, Sx)``. DRIFT compares it
        only with the same operator's image of a simulated measurement, so the two shapes
        never meet."""
        ...

    def volume_shape(self, y: Tensor) -> tuple[int, int, int]:
        """The ``(D, H, W)`` of the volumes that explain the measurement ``y`` (MRI: the
        k-space's trailing dimensions; 4D-STEM: the operator's grid and slices); raises
        :class:`~paperlib.io.InputValidationError` naming ``y`` when it does not fit."""
        ...

    def periodic_scan_step(self) -> tuple[int, int] | None:
        """``(py, px)`` pixels when the measurement is a scan that tiles the periodic field of
        view in whole-pixel steps (rolling the volume by ``(py, px)`` rolls the measurement
        image by one scan position; DRIFT's translation search), else None."""
        ...


def inner_product(a: Tensor, b: Tensor) -> Tensor:
    """``<a, b> = sum(a * conj(b))`` over all elements (a 0-d tensor; complex if either is).

    >>> inner_product(torch.tensor([1j, 2.0]), torch.tensor([1j, 1.0]))
    tensor(3.+0.j)
    """
    if a.shape != b.shape:
        raise ValueError(f"inner_product: expected tensors of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    dtype = torch.promote_types(a.dtype, b.dtype)
    return torch.vdot(b.reshape(-1).to(dtype), a.reshape(-1).to(dtype))


def adjointness_error(
    forward: Callable[[Tensor], Tensor], adjoint: Callable[[Tensor], Tensor], x: Tensor, y: Tensor
) -> float:
    """Relative error of the adjoint identity ``<A x, y> = <x, A^H y>``.

    Parameters
    ----------
    forward, adjoint : callables
        ``A`` and its claimed adjoint ``A^H``.
    x : Tensor
        A point of the domain of ``A`` (any shape and dtype ``A`` accepts). When ``x`` is real
        the domain is treated as a *real* vector space: real parts of both inner products are
        compared (the adjoint of a real-to-complex map is the real part of ``A^H y``).
    y : Tensor
        A point of the range, shaped like ``A x``.

    Returns
    -------
    float
        ``|<A x, y> - <x, A^H y>| / (||A x|| ||y|| + ||x|| ||A^H y||)``. The denominator is the
        Cauchy-Schwarz bound of both terms, so the error is about the floating-point epsilon of
        the dtype for a correct adjoint, even when the inner products themselves are small.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> A = torch.randn(5, 3, dtype=torch.float64, generator=g)
    >>> x = torch.randn(3, dtype=torch.float64, generator=g)
    >>> y = torch.randn(5, dtype=torch.float64, generator=g)
    >>> adjointness_error(lambda v: A @ v, lambda v: A.T @ v, x, y) < 1e-15
    True
    >>> adjointness_error(lambda v: A @ v, lambda v: 2 * A.T @ v, x, y) > 1e-3
    True
    """
    ax = forward(x)
    ahy = adjoint(y)
    if ax.shape != y.shape:
        raise ValueError(f"adjointness_error: A x has shape {tuple(ax.shape)} but y has {tuple(y.shape)}")
    if ahy.shape != x.shape:
        raise ValueError(f"adjointness_error: A^H y has shape {tuple(ahy.shape)} but x has {tuple(x.shape)}")
    lhs = inner_product(ax, y)
    rhs = inner_product(x, ahy)
    if not x.is_complex():
        lhs, rhs = lhs.real, rhs.real
    scale = float(torch.linalg.vector_norm(ax) * torch.linalg.vector_norm(y)) + float(
        torch.linalg.vector_norm(x) * torch.linalg.vector_norm(ahy)
    )
    return float(abs(lhs - rhs)) / max(scale, torch.finfo(torch.float64).tiny)


def check_gradients(
    fn: Callable[..., Tensor], *inputs: Tensor, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3
) -> bool:
    """:func:`torch.autograd.gradcheck` of ``fn`` at ``inputs`` promoted to double precision.

    Floating inputs are cast to float64 and complex ones to complex128 and marked as requiring
    gradients (other inputs, e.g. bool masks, are passed unchanged); ``fn`` must accept them
    and return a tensor or a tuple of tensors. Complex inputs and outputs are checked with
    PyTorch's Wirtinger-calculus convention. Use small sizes: gradcheck costs two ``fn`` calls
    per input element.

    Returns
    -------
    bool
        True; raises :class:`torch.autograd.gradcheck.GradcheckError` (a ``RuntimeError``)
        naming the mismatching entries otherwise.

    Examples
    --------
    >>> check_gradients(lambda v: (v**2).sum(), torch.rand(3))
    True
    """
    promoted = []
    for t in inputs:
        if isinstance(t, Tensor) and t.is_complex():
            t = t.detach().to(torch.complex128).requires_grad_(True)
        elif isinstance(t, Tensor) and t.is_floating_point():
            t = t.detach().to(torch.float64).requires_grad_(True)
        promoted.append(t)
    return bool(torch.autograd.gradcheck(fn, tuple(promoted), eps=eps, atol=atol, rtol=rtol))
