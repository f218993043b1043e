"""Absorbed kernel-domain soft-min: matrix-vector speed at any eps, with a certified error bound.

A log-domain Sinkhorn half-step reads every cost entry and takes one exponential per entry. The plain kernel
domain (:mod:`otalign.softmin.kernel_domain`) replaces that by one matrix-vector product with ``K = exp(-C / eps)``,
but ``K`` underflows once the cost's spread is large against eps. Absorption keeps the kernel in range by rebuilding
it around the current potentials,

    K~_ij = exp(alpha_i + beta_j - C_ij / eps)      (a row- or column-scaled plan),

after which a half-step only needs how far its input moved since then:

    LSE_j[h_j - C_ij / eps] = log (K~ w)_i + M - alpha_i,   w_j = exp(h_j - beta_j - M),   M = max_j (h_j - beta_j)

(the mirror image, ``w^T K~``, for a column half-step).

Certified results. Entries of ``K~`` below ``e^-T`` and weights ``w`` below ``e^-W`` are raised to ``e^-T`` and
``e^-W`` (``T + W`` is kept inside the dtype's normal range, so the product never forms a denormal number: those
slow a CPU product down by up to 12x). Together these change output ``i``'s sum ``S_i`` by at most
``e^-T sum_j w_j + e^-W sum_j K~_ij``.
A half-step is accepted only if that bound is below the dtype's unit round-off times ``S_i`` for every output;
accepted outputs therefore equal the log-domain soft-min up to rounding. Otherwise the kernel is rebuilt along that
half-step's axis, scaled so that its rows (after a row step) or columns (after a column step) sum to ``e^X``: the
headroom before the certificate fails again is ``T + X`` (in units of the logits), while the sums of a product stay
below the kernel's masses, far from overflow. ``X`` is half of each row's (column's) ``|lse|``, at most 30
(float32) / 300 (float64): full headroom where eps is small and the logits large (the rebuilds that matter), while
the exponents a product's outputs carry, and so their rounding, at most double where the logits are small.

Rebuilds take one pass over the cost, exponentiating each block of logits in the kernel's own memory with the
logits clamped at ``-T`` (the raising of small entries, and no denormal ``exp``, in one pass):

* a row half-step reads each block's exact row maxima, so it returns the exact ``lse`` and rebuilds in that pass
  (for an input spread over at most :data:`TOP_SLACK` logits, a cold start's among them, an upper bound of the
  maxima read once from the cost's row minima stands in for them: one pass fewer per rebuild);
* a column half-step rebuilds around its ``hint`` (the previous column ``lse``) and keeps the result only if it is
  exact, i.e. every column's sum is large enough that the raised entries are below its round-off and small enough
  to stay in range; otherwise (a poor or missing hint) it runs in the log domain
  (:func:`otalign.softmin.logdomain.logsumexp`) and rebuilds around that exact result.

Cost: one extra ``n x m`` matrix, one product per accepted half-step, and one pass over the cost per rebuild
(frequent in the first iterations of a cold start at small eps, rare near a fixed point). No gradient: the kernel is
for solves whose iterations are not differentiated (``grad="implicit"``, ``"envelope"``, ``"detach"``, or inputs
without ``requires_grad``); ``Sinkhorn(kernel="auto")`` picks it there for dense costs (up to :data:`MAX_ELEMENTS`
entries) and for geometries that never hold their cost, such as point clouds, while the kernel stays small
(:data:`MAX_ELEMENTS_ONLINE`); ``kernel="absorbed"`` forces it. At the end of a solve the kernel is handed to the
plan (:meth:`AbsorbedKernel.held`, :mod:`otalign.softmin.held`) when the last half-step's certificate covers it.

Scaling form. A fixed number of balanced iterations without autograd (``Sinkhorn`` with ``tol=0``) runs, once the
kernel is built, as :meth:`AbsorbedKernel.scaling_iterations`: two products and two divisions per iteration on the
scaled variables of ``K~``, no log / exp per half-step, every product certified as above in ``O(n + m)``; the first
refused product hands the solve back to the half-steps from the last certified iterate.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from torch import Tensor

from ..geometry import DenseCost, Geometry
from .held import HeldKernel
from .scaling_loop import Sweep, matvec, rmatvec
from .logdomain import logsumexp

#: ``(T, W, X, round-off)`` per dtype: kernel entries below ``e^-T`` and weights below ``e^-W`` are raised to them
#: (``T + W`` inside the normal range: no denormal product); a rebuilt kernel's rows (or columns) sum to up to
#: ``e^X`` (:func:`_scale`).
_LIMITS = {torch.float32: (35.0, 50.0, 30.0, 2.0**-24), torch.float64: (300.0, 300.0, 300.0, 2.0**-53)}

#: The share of a rebuilt row's (column's) ``|lse|`` taken as its scale ``X`` (see :func:`_scale`).
SCALE_SHARE = 0.5

#: Largest spread ``max h - min h`` (in logits) of a row half-step's input for which a rebuild shifts each row by an
#: upper bound of its largest logit read from the cost's row minima (:meth:`AbsorbedKernel._row_tops`); the largest
#: entry of a rebuilt row is then at least ``e^(X - TOP_SLACK)``.
TOP_SLACK = 1.0

#: Most iterations the scaling form runs between two certificate checks (:func:`_chunks`): a check reads every
#: product of its chunk at once (one host sync), and a refusal wastes the rest of its chunk.
CHUNK = 16

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
        absorptions: half-steps that rebuilt the kernel.
        rejected: products whose certificate failed (a rebuild followed).
        hint_misses: column rebuilds around the hint that were not exact (the log domain followed).
        version: counts writes to the kernel's memory (a :class:`HeldKernel` is valid while it is unchanged).

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
        self.col_mass: Optional[Tensor] = None  # None after a row rebuild until a column product needs it
        self.fresh_rows = False  # whether the last call rebuilt the kernel along its rows (row_mass = K~ 1)
        self.products = 0
        self.absorptions = 0
        self.rejected = 0
        self.hint_misses = 0
        self.version = 0
        self.certified = False  # whether the last half-step's certificate covers the kernel held now
        self.known: Optional[tuple[Tensor, Tensor, Tensor, Tensor]] = None  # see HeldKernel
        self._finite: Optional[bool] = None  # see _finite_scalings

    def __call__(self, h: Tensor, axis: int, hint: Optional[Tensor] = None) -> Tensor:
        """``LSE[(h - C) / eps]`` along ``axis`` (as :func:`otalign.softmin.logdomain.logsumexp`). Inputs that
        autograd would differentiate go to the (differentiable) log domain: the product half-step has no backward."""
        block_rows = self.block_rows
        hint = None if hint is None else hint.detach()
        self.fresh_rows = False
        if torch.is_grad_enabled() and (h.requires_grad or any(t.requires_grad for t in self.geometry.tensors())):
            self.certified = False
            return logsumexp(self.geometry, h, self.eps, axis, hint=hint, block_rows=block_rows)
        with torch.no_grad():
            self.certified = True
            if self.matrix is not None:
                out = self._product(h, axis)
                if out is not None:
                    self.products += 1
                    return out
                self.rejected += 1
            h_scaled = h / self.eps
            if axis == 1:
                return self._row_step_and_absorb(h_scaled, block_rows)
            if hint is not None:
                out = self._col_step_and_absorb(h_scaled, hint, block_rows)
                if out is not None:
                    return out
                self.hint_misses += 1
            out = logsumexp(self.geometry, h, self.eps, axis, hint=hint, block_rows=block_rows)
            self._absorb(h_scaled, out, axis, block_rows)
            return out

    def scaling_iterations(self, problem, g: Tensor, iterations: int, first_rows: Optional[Tensor] = None
                           ) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
        """Up to ``iterations`` balanced Sinkhorn iterations from ``g`` in scaling form on the kernel held now (no
        log / exp per half-step), each product certified as :meth:`_product` certifies a half-step. With
        ``K~ = exp(alpha_i + beta_j - C_ij / eps)`` and the half-step inputs ``h`` of :mod:`otalign.halfstep`
        (``g + eps log b`` under the product reference, ``g`` under the uniform one; either way ``f`` and ``g`` turn
        into the same scalings), the scaled variables ``v'_j = exp(h_j / eps - beta_j)`` and
        ``u'_i = exp(h'_i / eps - alpha_i)`` follow

            r = K~ v',   u' = a / r,   c = K~^T u',   v' = b / c,

        and the half-steps' ``lse`` are ``log r - alpha`` and ``log c - beta`` (``v'`` starts at most 1: a shift
        ``top`` is carried and taken out at the end). Raising entries to ``e^-T`` changes output ``i``'s sum by at
        most ``e^-T sum(w)`` for the input ``w`` (the weights are exact here: no ``e^-W`` term), so each product is
        accepted while ``min_i r_i > e^-T sum(v') / round-off`` (the same for ``c`` and ``u'``), and while the
        input's sum keeps every product finite (:func:`_certified`): ``O(n + m)`` work per product. The products are
        checked in chunks of iterations (:func:`_chunks`: 4, then :data:`CHUNK`), one host sync per chunk; the
        loop stops at the chunk holding the first refusal and returns the last iteration before it (the rest of that
        chunk is computed and discarded).

        Args:
            problem: a balanced problem on this kernel's cost, without forbidden pairs (the caller checks).
            g: the column potential ``(..., m)`` to start from; the kernel must be held and certified for it (its
                last half-step ran through this kernel).
            iterations: the most iterations to run.
            first_rows: ``row_mass`` of a row rebuild around this ``g`` (:attr:`fresh_rows`): there ``v' = 1``, so the
                first product ``K~ v'`` is the rebuilt rows' sums, already at hand (used only where ``v'``, shifted
                by ``top``, is exactly 1).

        Returns:
            ``(f (..., n), g (..., m), lse_rows (..., n), lse_cols (..., m), ran)``: the potentials and half-step
            ``lse`` after ``ran`` certified iterations (``ran = 0``: the inputs, ``lse`` ``None``; the kernel
            cannot take this start, e.g. non-finite scalings from zero masses). The kernel stays held and
            certified for the returned ``g``.
        """
        floor_t, _, _, round_off = _LIMITS[g.dtype]
        eps = self.eps
        with torch.no_grad():
            kernel, alpha, beta = self.matrix, self.alpha, self.beta
            if kernel is None or not self.certified or not self._finite_scalings():
                return g, g, None, None, 0
            log_ref_b = problem.log_reference_b()
            moved = (g if log_ref_b is None else g + eps * log_ref_b).div(eps).sub_(beta)
            top = moved.amax(-1, keepdim=True)
            v = moved.sub_(top).exp_()
            # the columns' masses are at most the kernel's total (entries are non-negative) while not read
            columns = self.row_mass.sum(-1) if self.col_mass is None else self.col_mass
            largest = float(torch.maximum(self.row_mass.amax(), columns.amax()))
            limit = torch.finfo(g.dtype).max / (4.0 * largest)  # an input summing to less keeps products finite
            bound = math.exp(-floor_t) / round_off
            a, b = problem.a, problem.b
            rows = cols = scalings = None
            ran = 0
            sweep = Sweep(kernel, a, b)
            first = None if first_rows is None or not bool((v == 1).all()) else first_rows  # K~ v only for v = 1
            for chunk in _chunks(iterations):
                steps = []  # (v', r = K~ v', u' = a / r, c = K~^T u') of each iteration of the chunk
                w = v
                for _ in range(chunk):
                    if first is None:
                        new_rows, u, new_cols, next_w = sweep(w)
                    else:
                        new_rows = first.clone()
                        u, new_cols, next_w = sweep.from_rows(new_rows)
                        first = None
                    steps.append((w, new_rows, u, new_cols))
                    w = next_w
                passed = _certified(steps, bound, limit)
                if passed:
                    _, rows, u, cols = steps[passed - 1]
                    v = steps[passed][0] if passed < chunk else w
                    scalings, ran = (u, v), ran + passed
                if passed < chunk:
                    break
            self.products += 2 * ran
            if ran == 0:
                return g, g, None, None, 0
            lse_rows = rows.log_().add_(top).sub_(alpha)
            lse_cols = cols.log_().sub_(top).sub_(beta)
            if problem.reference == "product":
                f, g = lse_rows.mul(-eps), lse_cols.mul(-eps)
            else:
                f, g = torch.sub(problem.log_a, lse_rows).mul_(eps), torch.sub(problem.log_b, lse_cols).mul_(eps)
            self.known = (f, g) + scalings  # P = diag(u) K~ diag(v) for these (f, g): the shift by top cancels
            return f, g, lse_rows, lse_cols, ran

    def held(self) -> Optional[HeldKernel]:
        """The kernel for forming a plan (:mod:`otalign.softmin.held`), or ``None`` when the last half-step's
        certificate does not cover it (it ran in the log domain for a gradient, or there is no kernel), or when its
        scalings are not finite (zero masses on both sides: ``-inf`` in ``alpha`` and ``beta``, whose plan scalings
        would be NaN)."""
        if self.matrix is None or not self.certified:
            return None
        if not self._finite_scalings():
            return None
        return HeldKernel(self.matrix, self.alpha, self.beta, self, self.version, self.known)

    def release(self) -> None:
        """Give up the kernel's memory (a plan took it); the next half-step rebuilds."""
        self.matrix = None
        self.certified = False

    def _product(self, h: Tensor, axis: int) -> Optional[Tensor]:
        """The product half-step for the input ``h`` (cost units), or ``None`` when its certificate fails."""
        floor_t, floor_w, _, round_off = _LIMITS[h.dtype]
        neg_in, neg_out = self._negated[axis]  # -beta, -alpha for a row step; -alpha, -beta for a column step
        moved = torch.add(neg_in, h, alpha=1.0 / self.eps)
        if moved.dim() == 1:  # one problem: the shift and the certificate as Python numbers (fewer small ops)
            top = float(moved.amax())
            top = top if math.isfinite(top) else 0.0  # 0 where every input is -inf
            w = moved.sub_(top).clamp_min_(-floor_w).exp_()  # raising weights below e^-W adds < e^-W mass_i
            sums = matvec(self.matrix, w) if axis == 1 else rmatvec(self.matrix, w)
            mass = self.row_mass if axis == 1 else self._column_mass()
            # raised terms: at most e^-T sum(w) + e^-W mass_i, to stay below round_off * sums_i
            low = float(torch.add(sums, mass, alpha=-math.exp(-floor_w) / round_off).amin())
            if not low >= float(w.sum()) * (math.exp(-floor_t) / round_off):
                return None
            return sums.log_().add_(neg_out).add_(top)
        top = torch.nan_to_num(moved.amax(-1, keepdim=True), neginf=0.0)
        w = moved.sub_(top).clamp_min_(-floor_w).exp_()
        if axis == 1:
            sums, mass = matvec(self.matrix, w), self.row_mass
        else:
            sums, mass = rmatvec(self.matrix, w), self._column_mass()
        margin = torch.add(sums, mass, alpha=-math.exp(-floor_w) / round_off).amin(-1)
        if not bool((margin >= w.sum(-1) * (math.exp(-floor_t) / round_off)).all()):
            return None
        return sums.log_().add_(top).add_(neg_out)

    def _row_step_and_absorb(self, h_scaled: Tensor, block_rows: Optional[int]) -> Tensor:
        """A log-domain row half-step that rebuilds the kernel in the same pass,
        ``K~_ij = exp(h_j - C_ij/eps - top_i + X_i)`` with ``top_i`` each row's largest logit (or an upper bound of
        it within :data:`TOP_SLACK`, :meth:`_row_tops`). Returns the exact ``lse``: the raised entries change each
        row's sum by at most ``m e^-(T + X - TOP_SLACK)`` of its largest term, far below the round-off. The columns'
        masses are left to :meth:`_column_mass` (a solve that goes on in scaling form never reads them)."""
        geometry = self.geometry
        floor_t, _, largest_scale, _ = _LIMITS[h_scaled.dtype]
        shape = geometry.batch_shape + (geometry.n,)
        row_mass = h_scaled.new_empty(shape)
        bound = self._row_tops(h_scaled)
        if bound is not None:
            top, constant = bound
            top = top - _scale(top, largest_scale)
            # a constant input folds into the rows' shift: the logits are one subtraction from the cost
            fill = self._filler(constant - top, None, 0) if constant is not None else self._filler(h_scaled, top, 1)
            for start, stop in geometry.row_blocks(block_rows):
                _keep(fill(start, stop), floor_t, start, stop, row_mass, None)
        else:
            top = h_scaled.new_empty(shape)
            fill = self._filler(h_scaled, None, 1)
            for start, stop in geometry.row_blocks(block_rows):
                block = fill(start, stop)
                block_top = block.amax(-1)
                block_top = torch.where(torch.isfinite(block_top), block_top, torch.zeros_like(block_top))
                block_top = block_top - _scale(block_top, largest_scale)
                block.sub_(block_top.unsqueeze(-1))
                _keep(block, floor_t, start, stop, row_mass, None)
                top[..., start:stop] = block_top
        self._set(-top, h_scaled, row_mass, None)  # the columns' masses are summed when a column product needs them
        self.fresh_rows = True
        return top.add_(row_mass.log())

    def _row_tops(self, h_scaled: Tensor) -> Optional[tuple[Tensor, Optional[Tensor]]]:
        """For a dense cost and an input ``h (..., m)`` whose spread ``max h - min h`` is at most
        :data:`TOP_SLACK` (a cold start's is 0): ``(max h - min_j C_ij / eps (..., n), max h (..., 1) or None)``, an
        upper bound of each row's largest logit within the spread, from the cost's row minima (read once per
        kernel: one pass, instead of a maximum over the logits at every rebuild); the second item is ``max h``
        when ``h`` is constant. ``None`` otherwise (the rebuild reads the exact maxima off the logits)."""
        if not isinstance(self.geometry, DenseCost):
            return None
        high, low = h_scaled.amax(-1, keepdim=True), h_scaled.amin(-1, keepdim=True)
        spread = high - low
        if not bool((spread <= TOP_SLACK).all()):  # NaN, or -inf entries (zero masses), fail too
            return None
        top = torch.sub(high, self.geometry.row_minima(), alpha=1.0 / self.eps)
        return top, (high if bool((spread == 0).all()) else None)

    def _col_step_and_absorb(self, h_scaled: Tensor, hint: Tensor, block_rows: Optional[int]) -> Optional[Tensor]:
        """A column half-step that rebuilds ``K~_ij = exp(h_i - C_ij/eps - hint_j + X)`` in one pass and reads the
        ``lse`` off its column sums ``S_j``: exact when every ``S_j`` is at least ``n e^-T`` over the round-off (the
        raised entries are below rounding) and small enough that the kernel's masses stay in range; else ``None``
        (the kernel's memory is then overwritten by the rebuild that follows)."""
        geometry = self.geometry
        floor_t, _, largest_scale, round_off = _LIMITS[h_scaled.dtype]
        if not bool(torch.isfinite(hint).all()):
            return None
        shift = hint - _scale(hint, largest_scale)
        row_mass = h_scaled.new_empty(geometry.batch_shape + (geometry.n,))
        col_mass = h_scaled.new_zeros(geometry.batch_shape + (geometry.m,))
        fill = self._filler(h_scaled, shift, 0)
        for start, stop in geometry.row_blocks(block_rows):
            _keep(fill(start, stop), floor_t, start, stop, row_mass, col_mass)
        low, high = torch.aminmax(col_mass)
        largest = torch.finfo(h_scaled.dtype).max / (4 * max(geometry.n, geometry.m))
        if not (float(low) * round_off >= geometry.n * math.exp(-floor_t) and float(high) <= largest
                and bool(torch.isfinite(row_mass).all())):
            return None
        self._set(h_scaled, -shift, row_mass, col_mass)
        return shift.add_(col_mass.log())

    def _absorb(self, h_scaled: Tensor, lse: Tensor, axis: int, block_rows: Optional[int]) -> None:
        """Rebuild ``K~`` around the exact half-step ``lse``: ``K~_ij = exp((h - C)/eps - lse + X)`` along ``axis``."""
        if not bool(torch.isfinite(lse).all()):
            self.release()
            return
        geometry = self.geometry
        floor_t, _, largest_scale, _ = _LIMITS[h_scaled.dtype]
        row_mass = h_scaled.new_empty(geometry.batch_shape + (geometry.n,))
        col_mass = h_scaled.new_zeros(geometry.batch_shape + (geometry.m,))
        shift = lse - _scale(lse, largest_scale)
        fill = self._filler(h_scaled, shift, axis)
        for start, stop in geometry.row_blocks(block_rows):
            _keep(fill(start, stop), floor_t, start, stop, row_mass, col_mass)
        if axis == 1:
            self._set(-shift, h_scaled, row_mass, col_mass)
        else:
            self._set(h_scaled, -shift, row_mass, col_mass)

    def _filler(self, h_scaled: Tensor, shift: Optional[Tensor], axis: int):
        """``(start, stop) ->`` rows ``start:stop`` of the kernel's memory holding the logits ``(h - C)/eps - shift``
        (``shift`` ``None``: 0); a dense cost's logits are computed there directly, other geometries' copied in
        from :meth:`Geometry.logit_blocks`."""
        geometry = self.geometry
        if self.matrix is None:
            shape = geometry.batch_shape + (geometry.n, geometry.m)
            self.matrix = torch.empty(shape, dtype=geometry.dtype, device=geometry.device)
        matrix = self.matrix
        self.version += 1
        if isinstance(geometry, DenseCost):
            cost, scale = self.tensors[0], 1.0 / self.eps

            def fill(start: int, stop: int) -> Tensor:
                rows = matrix[..., start:stop, :]
                if axis == 1:
                    h_part = h_scaled.unsqueeze(-2)
                    shift_part = None if shift is None else shift[..., start:stop].unsqueeze(-1)
                else:
                    h_part = h_scaled[..., start:stop].unsqueeze(-1)
                    shift_part = None if shift is None else shift.unsqueeze(-2)
                torch.sub(h_part, cost[..., start:stop, :], alpha=scale, out=rows)
                return rows if shift_part is None else rows.sub_(shift_part)
            return fill
        zero = h_scaled.new_zeros(geometry.batch_shape + ((geometry.n,) if axis == 1 else (geometry.m,)))
        blocks = geometry.logit_blocks(self.tensors, h_scaled, zero if shift is None else shift, axis, self.eps)

        def copy(start: int, stop: int) -> Tensor:
            return matrix[..., start:stop, :].copy_(blocks(start, stop))
        return copy

    def _column_mass(self) -> Tensor:
        """The kernel's column sums ``(..., m)``, summed on first need after a row rebuild (one product)."""
        if self.col_mass is None:
            ones = self.matrix.new_ones(self.matrix.shape[:-2] + (self.matrix.shape[-2],))
            self.col_mass = rmatvec(self.matrix, ones)
        return self.col_mass

    def _finite_scalings(self) -> bool:
        """Whether the kernel's ``alpha`` and ``beta`` are finite (not where a zero mass gave ``-inf``); read once
        per rebuild."""
        if self._finite is None:
            self._finite = bool(torch.isfinite(self.alpha).all() & torch.isfinite(self.beta).all())
        return self._finite

    def _set(self, alpha: Tensor, beta: Tensor, row_mass: Tensor, col_mass: Optional[Tensor]) -> None:
        self.alpha, self.beta, self.row_mass, self.col_mass = alpha, beta, row_mass, col_mass
        self._finite = None
        self._negated = {1: (-beta, -alpha), 0: (-alpha, -beta)}
        self.certified = True
        self.absorptions += 1


def _chunks(iterations: int) -> Iterator[int]:
    """The scaling form's iterations between two certificate checks: 4 (a refusal soon after a rebuild wastes
    little), then :data:`CHUNK` each, summing to ``iterations``."""
    size, left = 4, iterations
    while left > 0:
        yield min(size, left)
        left -= size
        size = CHUNK


def _certified(steps: list[tuple[Tensor, Tensor, Tensor, Tensor]], bound: float, limit: float) -> int:
    """How many leading iterations of a chunk ``steps = [(v' (..., m), r (..., n), u' (..., n), c (..., m)), ...]``
    (``r = K~ v'``, ``c = K~^T u'``) have both products certified. A product is certified when every output exceeds
    ``bound = e^-T / round-off`` times its input's sum (the raised entries are below its rounding; every output is
    then positive) and that sum is at most ``limit`` (no product overflows); NaN fails. One host sync."""
    row_ins, rows, col_ins, cols = (torch.stack(part) for part in zip(*steps))
    mins = torch.stack((rows.amin(-1), cols.amin(-1)))  # (2, k, ...)
    totals = torch.stack((row_ins.sum(-1), col_ins.sum(-1)))
    passed = ((mins > totals * bound) & (totals <= limit)).reshape(2, len(steps), -1).all(-1).all(0)  # (k,)
    if bool(passed.all()):
        return len(steps)
    return int(passed.int().cumprod(0).sum())


def _scale(lse: Tensor, largest: float) -> Tensor:
    """``X`` per row or column of a rebuilt kernel: :data:`SCALE_SHARE` of ``|lse|``, at most ``largest``. The
    rounding of a product's log-domain output grows with the exponents it adds up (``|alpha|``, ``|beta|``, ``X``), so
    ``X`` is a share of the ``lse`` already there: full headroom where the logits are large (small eps), and at most
    twice the exponents (and rounding) where they are small."""
    return (lse.abs() * SCALE_SHARE).clamp_(max=largest)


def _keep(block: Tensor, floor_t: float, start: int, stop: int, row_mass: Tensor, col_mass: Optional[Tensor]) -> None:
    """Exponentiate the logits ``block`` (rows ``start:stop`` of the kernel) in place, those below ``-floor_t``
    raised to it first (one clamp: no denormal ``exp``, and no ``exp(-inf)``, both slow paths on a CPU), and add the
    rows' and columns' sums to ``row_mass`` and ``col_mass`` (``None``: the rows' only)."""
    block.clamp_min_(-floor_t).exp_()
    row_mass[..., start:stop] = block.sum(-1)
    if col_mass is not None:
        col_mass += block.sum(-2)
