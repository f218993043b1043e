"""The soft-min seam: every Sinkhorn-type half-step reduces through one :class:`SoftMin`.

A soft-min is bound to one geometry and eps for one solve and computes

* ``axis=1`` (reduce over columns): ``out_i = LSE_j[(h_j - C_ij) / eps]``, ``h (..., m)`` -> ``(..., n)``;
* ``axis=0`` (reduce over rows):    ``out_j = LSE_i[(h_i - C_ij) / eps]``, ``h (..., n)`` -> ``(..., m)``;

``hint`` is an optional guess of the output (the previous iteration's) that an implementation may use as its
stabilising shift; it changes speed, never results. The implementations, one file each:

* :class:`~otalign.softmin.logdomain.LogDomain` (``logdomain.py``): exact at any eps, in row blocks (no n x m
  temporary), online for point clouds; variants ``"blocked"``, ``"dense"``, ``"compiled"``, ``"native"``.
* :class:`~otalign.softmin.kernel_domain.KernelDomain` (``kernel_domain.py``): one matrix-vector product with
  ``K = exp(-C / eps)`` for dense costs whose spread is small against eps; a one-GEMM backward. Its fixed-count
  solves run the scaling loop of ``scaling_loop.py``, which the contrastive losses' fused path differentiates as one
  autograd node.
* :class:`~otalign.softmin.absorbed.AbsorbedKernel` (``absorbed.py``): a product with a kernel rebuilt around the
  potentials, certified equal to the log domain up to rounding; no gradient.

:func:`choose_softmin` is the one place where a solve's soft-min is chosen; a new implementation is one file with a
class that follows :class:`SoftMin`, and one branch there.
"""

from __future__ import annotations

from typing import Optional, Protocol

import torch
from torch import Tensor

from ..geometry import Geometry
from .absorbed import AbsorbedKernel, absorption_allows
from .kernel_domain import KernelDomain, spread_allows
from .logdomain import VARIANTS, LogDomain, exp_floor, logsumexp

#: The ``kernel`` option of the Sinkhorn-type solvers: ``"auto"``, ``"absorbed"``, or a log-domain variant.
KERNEL_OPTIONS = ("auto", "absorbed") + VARIANTS


class SoftMin(Protocol):
    """``LSE[(h - C) / eps]`` along ``axis`` for the geometry and eps it was built for (module docstring)."""

    geometry: Geometry
    eps: float

    def __call__(self, h: Tensor, axis: int, hint: Optional[Tensor] = None) -> Tensor: ...


def choose_softmin(problem, kernel: str = "auto", tol: float = 0.0, block_rows: Optional[int] = None) -> SoftMin:
    """The soft-min of one solve of ``problem`` (any object with ``geometry``, ``eps``, ``a``, ``b``).

    Inside a ``torch.compile`` region: plain ``torch.logsumexp`` (``"native"``). With ``kernel="auto"``: the kernel
    domain for a fixed number of iterations (``tol=0``) on a dense cost of small spread / eps; else, when no
    gradient flows through the iterations, the absorbed kernel (within its size limits); else the blocked log
    domain. ``"absorbed"`` forces the absorbed kernel; a log-domain variant forces that variant.
    """
    if kernel not in KERNEL_OPTIONS:
        raise ValueError(f"kernel: expected one of {KERNEL_OPTIONS}, got {kernel!r}")
    geometry, eps = problem.geometry, problem.eps
    if torch.compiler.is_compiling():
        return LogDomain(geometry, eps, "native")
    if kernel == "auto" and tol == 0 and spread_allows(geometry, eps):
        return KernelDomain(geometry, eps)
    if kernel == "absorbed" or (kernel == "auto" and absorption_allows(geometry, needs_grad(problem))):
        return AbsorbedKernel(geometry, eps, block_rows)
    return LogDomain(geometry, eps, "blocked" if kernel == "auto" else kernel, block_rows)


def needs_grad(problem) -> bool:
    """Whether autograd would differentiate through the iterations of ``problem``."""
    tensors = (*problem.geometry.tensors(), problem.a, problem.b)
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


__all__ = ["SoftMin", "choose_softmin", "needs_grad", "LogDomain", "KernelDomain", "AbsorbedKernel", "logsumexp",
           "exp_floor", "VARIANTS", "KERNEL_OPTIONS"]
