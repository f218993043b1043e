"""Absorbed kernel-domain soft-min: matrix-vector speed at any eps, with a certified error bound.

A log-domain Sinkhorn half-step reads every cost entry and takes one exponential per entry. The plain kernel
domain (:mod:`otalign.softmin.kernel_domain`) replaces that by one matrix-vector product with ``K = exp(-C / eps)``, but ``K``
underflows once the cost's spread is large against eps. Absorption keeps the kernel in range by rebuilding it
around the current potentials,

    K~_ij = exp(alpha_i + beta_j - C_ij / eps)      (entries of a row- or column-normalised plan, all <= 1),

after which a half-step only needs how far its input moved since then:

    LSE_j[h_j - C_ij / eps] = log (K~ w)_i + M - alpha_i,   w_j = exp(h_j - beta_j - M),   M = max_j (h_j - beta_j)

(the mirror image, ``w^T K~``, for a column half-step).

Certified results. Entries of ``K~`` below ``e^-T`` are set to 0 and weights ``w`` below ``e^-W`` are raised to
``e^-W`` (``T + W`` is kept inside the dtype's normal range, so the product never forms a denormal number: those
slow a CPU product down by up to 12x). Together these change output ``i``'s sum ``S_i`` by at most
``e^-T sum_j w_j + e^-W sum_j K~_ij``.
A half-step is accepted only if that bound is below the dtype's unit round-off times ``S_i`` for every output;
accepted outputs therefore equal the log-domain soft-min up to rounding. Otherwise the half-step runs in the log
domain (:func:`otalign.softmin.logdomain.logsumexp`) and the kernel is rebuilt around its exact result, normalised along that
half-step's axis (rows sum to 1 after a row step, columns after a column step).

Cost: one extra ``n x m`` matrix, one product per accepted half-step, and one log-domain half-step plus one pass
over the cost per absorption (frequent in the first iterations of a cold start at small eps, rare near a fixed
point). No gradient: the kernel is for solves whose iterations are not differentiated (``grad="implicit"``,
``"envelope"``, ``"detach"``, or inputs without ``requires_grad``); ``Sinkhorn(kernel="auto")`` picks it there for
dense costs (up to :data:`MAX_ELEMENTS` entries) and for geometries that never hold their cost, such as point
clouds, while the kernel stays small (:data:`MAX_ELEMENTS_ONLINE`); ``kernel="absorbed"`` forces it.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from ..geometry import DenseCost, Geometry
from .logdomain import exp_floor, logsumexp

#: ``(T, W, round-off)`` per dtype: kernel entries below ``e^-T`` are dropped, weights below ``e^-W`` raised to it.
_LIMITS = {torch.float32: (40.0, 45.0, 2.0**-24), torch.float64: (300.0, 300.0, 2.0**-53)}

#: Largest number of cost entries (over the batch) for which ``kernel="auto"`` allocates the absorbed kernel: for a
#: dense cost (which already takes as much memory), and for a geometry that never materialises its cost (a point
#: cloud: its user chose not to hold n x m numbers, so only small ones get the kernel).
MAX_ELEMENTS = 1 << 27
MAX_ELEMENTS_ONLINE = 1 << 24


def absorption_allows(geometry: Geometry, needs_grad: bool) -> bool:
    """Whether ``kernel="auto"`` may use an :class:`AbsorbedKernel` for ``geometry``: no gradient through the
    iterations, and a geometry it can hold (:func:`supported`) with at most :data:`MAX_ELEMENTS` entries
    (:data:`MAX_ELEMENTS_ONLINE` unless it is a :class:`DenseCost`)."""
    if needs_grad or not supported(geometry):
        return False
    limit = MAX_ELEMENTS if isinstance(geometry, DenseCost) else MAX_ELEMENTS_ONLINE
    return geometry.n * geometry.m * (geometry.batch or 1) <= limit


def supported(geometry: Geometry) -> bool:
    """A geometry of float32/float64 in one process (not sharded), without forbidden pairs."""
    return (isinstance(geometry, Geometry) and geometry.shards == 1 and geometry.dtype in _LIMITS
            and getattr(geometry, "mask", None) is None)


class AbsorbedKernel:
    """The absorbed kernel ``K~`` of one solve and its soft-min (see the module docstring).

    Args:
        geometry: the cost, ``(n, m)`` or ``(B, n, m)``, float32 or float64, in one process, without a mask (a
            :class:`DenseCost`, a :class:`~otalign.geometry.PointCloud`, ...).
        eps: the entropic strength.

    Attributes:
        products: half-steps answered by the matrix-vector product.
        absorptions: half-steps that ran in the log domain and rebuilt the kernel.

    Example::

        >>> softmin = AbsorbedKernel(DenseCost(C), eps=0.01)
        >>> lse = softmin(g, axis=1)   # (n,), = the log domain's LSE_j[(g_j - C_ij) / eps]
    """

    def __init__(self, geometry: Geometry, eps: float, block_rows: Optional[int] = None):
        if not supported(geometry):
            raise ValueError("kernel: the absorbed kernel needs a float32 or float64 geometry in one process, "
                             "without a mask")
        self.geometry = geometry
        self.tensors = tuple(t.detach() for t in geometry.tensors())
        self.eps = float(eps)
        self.block_rows = block_rows
        self.matrix: Optional[Tensor] = None
        self.alpha: Optional[Tensor] = None
        self.beta: Optional[Tensor] = None
        self.row_mass: Optional[Tensor] = None
        self.col_mass: Optional[Tensor] = None
        self.products = 0
        self.absorptions = 0

    def __call__(self, h: Tensor, axis: int, hint: Optional[Tensor] = None) -> Tensor:
        """``LSE[(h - C) / eps]`` along ``axis`` (as :func:`otalign.softmin.logdomain.logsumexp`). Inputs that
        autograd would differentiate go to the (differentiable) log domain: the product half-step has no backward."""
        block_rows = self.block_rows
        hint = None if hint is None else hint.detach()
        if torch.is_grad_enabled() and (h.requires_grad or any(t.requires_grad for t in self.geometry.tensors())):
            return logsumexp(self.geometry, h, self.eps, axis, hint=hint, block_rows=block_rows)
        with torch.no_grad():
            h_scaled = h / self.eps
            if self.matrix is not None:
                out = self._product(h_scaled, axis)
                if out is not None:
                    self.products += 1
                    return out
            if axis == 1:
                return self._row_step_and_absorb(h_scaled, block_rows)
            out = logsumexp(self.geometry, h, self.eps, axis, hint=hint, block_rows=block_rows)
            self._absorb(h_scaled, out, axis, block_rows)
            return out

    def _product(self, h_scaled: Tensor, axis: int) -> Optional[Tensor]:
        """The product half-step, or ``None`` when its certificate fails."""
        floor_t, floor_w, round_off = _LIMITS[h_scaled.dtype]
        moved = h_scaled - (self.beta if axis == 1 else self.alpha)
        top = torch.nan_to_num(moved.amax(-1, keepdim=True), neginf=0.0)  # 0 where every input is -inf
        w = moved.sub_(top).clamp_min_(-floor_w).exp_()  # raising weights below e^-W to e^-W adds < e^-W mass_i
        if axis == 1:
            sums = (self.matrix @ w.unsqueeze(-1)).squeeze(-1)
            mass = self.row_mass
        else:
            sums = (w.unsqueeze(-2) @ self.matrix).squeeze(-2)
            mass = self.col_mass
        # dropped terms: at most e^-T sum(w) + e^-W mass_i, to stay below round_off * sums_i
        margin = torch.add(sums, mass, alpha=-math.exp(-floor_w) / round_off).amin(-1)
        if not bool((margin >= w.sum(-1) * (math.exp(-floor_t) / round_off)).all()):
            return None
        return sums.log_().add_(top).sub_(self.alpha if axis == 1 else self.beta)

    def _row_step_and_absorb(self, h_scaled: Tensor, block_rows: Optional[int]) -> Tensor:
        """A log-domain row half-step that rebuilds the kernel in the same pass: each block of a dense cost holds
        whole rows, so its exact row maxima are at hand; ``K~_ij = exp(h_j - C_ij/eps - max_i)`` (entries <= 1).
        Returns the exact ``lse`` (the sums are taken before dropping entries, as the log domain takes them)."""

        geometry = self.geometry
        floor_t = _LIMITS[h_scaled.dtype][0]
        floor = exp_floor(h_scaled.dtype)
        matrix = self._matrix()
        shape = geometry.batch_shape + (geometry.n,)
        top, sums, row_mass = h_scaled.new_empty(shape), h_scaled.new_empty(shape), h_scaled.new_empty(shape)
        col_mass = h_scaled.new_zeros(geometry.batch_shape + (geometry.m,))
        blocks = geometry.logit_blocks(self.tensors, h_scaled, torch.zeros_like(top), 1, self.eps)
        for start, stop in geometry.row_blocks(block_rows):
            block = blocks(start, stop)
            block_top = block.amax(-1)
            block_top = torch.where(torch.isfinite(block_top), block_top, torch.zeros_like(block_top))
            block.sub_(block_top.unsqueeze(-1)).clamp_min_(floor).exp_()
            sums[..., start:stop] = block.sum(-1)
            _keep(block, start, stop, floor_t, matrix, row_mass, col_mass)
            top[..., start:stop] = block_top
        self._set(-top, h_scaled, row_mass, col_mass)
        return top + sums.log()

    def _matrix(self) -> Tensor:
        if self.matrix is None:
            geometry = self.geometry
            shape = geometry.batch_shape + (geometry.n, geometry.m)
            self.matrix = torch.empty(shape, dtype=geometry.dtype, device=geometry.device)
        return self.matrix

    def _set(self, alpha: Tensor, beta: Tensor, row_mass: Tensor, col_mass: Tensor) -> None:
        self.alpha, self.beta, self.row_mass, self.col_mass = alpha, beta, row_mass, col_mass
        self.absorptions += 1

    def _absorb(self, h_scaled: Tensor, lse: Tensor, axis: int, block_rows: Optional[int]) -> None:
        """Rebuild ``K~`` around the exact half-step ``lse``: ``K~_ij = exp((h - C)/eps - lse)`` along ``axis``."""
        if not bool(torch.isfinite(lse).all()):
            self.matrix = None
            return
        geometry = self.geometry
        floor_t = _LIMITS[h_scaled.dtype][0]
        matrix = self._matrix()
        row_mass = h_scaled.new_empty(geometry.batch_shape + (geometry.n,))
        col_mass = h_scaled.new_zeros(geometry.batch_shape + (geometry.m,))
        blocks = geometry.logit_blocks(self.tensors, h_scaled, lse, axis, self.eps)
        for start, stop in geometry.row_blocks(block_rows):
            block = blocks(start, stop)
            _keep(block.clamp_min_(-floor_t - 1.0).exp_(), start, stop, floor_t, matrix, row_mass, col_mass)
        if axis == 1:
            self._set(-lse, h_scaled, row_mass, col_mass)
        else:
            self._set(h_scaled, -lse, row_mass, col_mass)


def _keep(block: Tensor, start: int, stop: int, floor_t: float, matrix: Tensor, row_mass: Tensor,
          col_mass: Tensor) -> None:
    """Store rows ``start:stop`` of the kernel: ``block`` with its entries below ``e^-floor_t`` set to 0 (in place),
    and add their row and column sums to ``row_mass`` and ``col_mass``."""
    torch.nn.functional.threshold_(block, math.exp(-floor_t), 0.0)
    matrix[..., start:stop, :] = block
    row_mass[..., start:stop] = block.sum(-1)
    col_mass += block.sum(-2)
