"""What every solver returns: the plan protocol, and the Gibbs-form :class:`Plan` of the Sinkhorn-type solvers.

Every plan type (:class:`Plan`, :class:`~otalign.LowRankPlan`, :class:`~otalign.gromov.GWPlan`) offers what
:class:`AnyPlan` lists: its problem, marginals and their residuals, ``apply`` and ``barycentric_map``, its values,
``converged`` / ``iterations`` / ``error``, and ``matrix`` on demand. Plans are immutable (frozen dataclasses; what
they compute on demand is cached, never changed).

``converged`` is a measurement on the returned plan: :func:`certify` keeps a solver's claim only if both marginal
residuals of the plan the user gets, summed in float64, are at most ``tol``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Optional, Protocol, TypeVar, runtime_checkable

import torch
from torch import Tensor

from .problem import Problem, dual_mass_term, marginal_penalty, optimal_marginal, safe_log, where_positive
from .halfstep import log_col_marginal, log_row_marginal
from .softmin import logsumexp
from .softmin.held import HeldKernel


@runtime_checkable
class AnyPlan(Protocol):
    """What every plan offers (shapes: rows ``n`` are the source side, columns ``m`` the target side)."""

    problem: object
    iterations: int
    converged: bool
    error: Optional[Tensor]
    grad: str

    @property
    def matrix(self) -> Tensor: ...

    @property
    def marginals(self) -> tuple[Tensor, Tensor]: ...

    @property
    def marginal_error(self) -> tuple[Tensor, Tensor]: ...

    @property
    def value(self) -> Tensor: ...

    @property
    def value_linear(self) -> Optional[Tensor]: ...

    def apply(self, x: Tensor, axis: int = 1) -> Tensor: ...

    def barycentric_map(self, y: Tensor) -> Tensor: ...

    def measured_residual(self) -> Tensor: ...


PlanT = TypeVar("PlanT")


def certify(plan: PlanT, tol: float) -> PlanT:
    """``plan`` with ``converged`` measured on it: a claim of convergence is kept only if
    :meth:`AnyPlan.measured_residual` (both marginal residuals of the returned plan, accumulated in float64) is at
    most ``tol``; otherwise a copy with ``converged=False`` and ``error`` = that residual."""
    if tol <= 0 or not plan.converged:
        return plan
    residual = plan.measured_residual()
    if bool((residual <= tol).all()):
        return plan
    return dataclasses.replace(plan, converged=False, error=residual.to(plan.problem.dtype))


class MarginalQuantities:
    """What every plan derives from its :attr:`marginals` and its problem's masses (mixin of :class:`Plan` and
    :class:`~otalign.lowrank_plan.LowRankPlan`)."""

    problem: Problem
    marginals: tuple[Tensor, Tensor]

    def barycentric_map(self, y: Tensor) -> Tensor:
        """Where each source point goes: ``(P @ y) / (P 1)``, ``y (..., m, k)`` -> ``(..., n, k)`` (POT's
        barycentric projection, ``ot.da``'s ``transform``). A row with no mass maps to 0."""
        rows = self.marginals[0]
        safe = torch.where(rows > 0, rows, torch.ones_like(rows))
        return torch.where((rows > 0).unsqueeze(-1), self.apply(y) / safe.unsqueeze(-1), torch.zeros_like(rows).unsqueeze(-1))

    @property
    def marginal_error(self) -> tuple[Tensor, Tensor]:
        """L1 distances ``(|P 1 - a|_1, |P^T 1 - b|_1)``, each ``(...,)``. For a relaxed side this is the
        deviation the penalty allowed, not a violation."""
        rows, cols = self.marginals
        return self.problem.sum_rows((rows - self.problem.a).abs()), (cols - self.problem.b).abs().sum(-1)

    @property
    def mass(self) -> Tensor:
        """Total transported mass ``(...,)``."""
        return self.problem.sum_rows(self.marginals[0])


@dataclass(frozen=True)
class Plan(MarginalQuantities):
    """A solved (or partly solved) entropic OT problem.

    The plan is ``P_ij = R_ij exp((f_i + g_j - C_ij) / eps)`` (see :class:`~otalign.problem.Problem`); it is
    built on demand, so point-cloud problems never hold it unless :attr:`matrix` is asked for.

    On a sharded problem (:mod:`otalign.distributed`) ``f``, :attr:`matrix` and the row marginals are this rank's
    rows; ``g``, the column marginals and every scalar (value, mass, marginal errors) are global.

    Attributes:
        problem: the problem solved.
        f: row potentials ``(..., n)``, in cost units (``-inf`` for a zero mass under the uniform reference:
            ``f = eps log u`` with ``u = 0``).
        g: column potentials ``(..., m)``.
        iterations: full (row + column) iterations run.
        converged: whether the stopping criterion was met and both :attr:`marginal_residual` are at most ``tol``
            (``False`` when run for a fixed number of iterations, ``tol=0``).
        error: the last value of the stopping criterion (``(...,)``), or ``None`` if never measured.
        grad: the differentiation mode the plan was made with.
        iterates: ``(f, g)`` after every row step, when the solver was asked to keep them (multistep losses).
        explicit: the plan matrix itself, for solvers whose plan is not of the Gibbs form above (exact OT,
            ``ot.emd``); then :attr:`value` is ``<C, P>`` and ``f``, ``g`` are zeros, or the LP dual potentials when
            the solver knows them (``"exact"``: then :attr:`dual_value` equals :attr:`value`).
        log_mass: ``log`` of the plan's total mass ``(...,)`` when the solver already knows it (Sinkhorn reads it
            off its last column half-step), else ``None``; spares the overflow check a pass over the cost.
        kernel: the kernel the solver's soft-min holds at the end (:class:`~otalign.softmin.held.HeldKernel`), or
            ``None``: then :attr:`matrix` (and :meth:`measured_residual`, which measures what :attr:`matrix`
            returns) forms ``P = diag(u) K diag(v)`` from it instead of exponentiating, the first :attr:`matrix`
            in the kernel's own memory; equal to the exponential form up to rounding. Sinkhorn hands it over
            from solves of a dense cost run without autograd recording (``grad`` other than ``"unroll"``); the plan
            then holds that ``n x m`` kernel until its first :attr:`matrix` (or until it is dropped). Not used
            where autograd would differentiate the matrix.
    """

    problem: Problem
    f: Tensor
    g: Tensor
    iterations: int
    converged: bool
    error: Optional[Tensor] = None
    grad: str = "unroll"
    iterates: Optional[list[tuple[Tensor, Tensor]]] = None
    explicit: Optional[Tensor] = None
    log_mass: Optional[Tensor] = None
    kernel: Optional[HeldKernel] = field(default=None, repr=False, compare=False)
    _marginals: Optional[tuple[Tensor, Tensor]] = field(default=None, repr=False)
    _log_matrix: Optional[Tensor] = field(default=None, repr=False)

    @property
    def log_matrix(self) -> Tensor:
        """``log P``, ``(..., n, m)``; computed once and kept, so several divergences of one plan share it."""
        if self._log_matrix is None:
            log_matrix = safe_log(self.explicit) if self.explicit is not None else self.problem.log_plan_block(
                self.f, self.g, 0, self.problem.n)
            object.__setattr__(self, "_log_matrix", log_matrix)
        return self._log_matrix

    @property
    def matrix(self) -> Tensor:
        """The plan ``P``, ``(..., n, m)`` (a fresh tensor; :attr:`log_matrix` is not kept for it)."""
        if self.explicit is not None:
            return self.explicit
        if self._log_matrix is not None:
            return self._log_matrix.exp()
        scaled = self._kernel_scalings()
        if scaled is not None:
            held, u, v = scaled
            out = held.take(u, v, self.problem.geometry.row_blocks())
            if out is not None:
                return out
        return self.problem.log_plan_block(self.f, self.g, 0, self.problem.n).exp_()

    def _kernel_scalings(self) -> Optional[tuple[HeldKernel, Tensor, Tensor]]:
        """``(kernel, u, v)`` when :attr:`matrix` is formed from the held kernel (:mod:`otalign.softmin.held`):
        a kernel still valid, and nothing that autograd would differentiate."""
        held, p = self.kernel, self.problem
        if held is None or self.explicit is not None or not held.valid() or self._records_grad():
            return None
        known = held.scalings_of(self.f, self.g)
        if known is not None:
            return held, known[0], known[1]
        with torch.no_grad():
            rows, cols = self.f / p.eps, self.g / p.eps
            if p.reference == "product":
                rows, cols = rows + p.log_a, cols + p.log_b
            u, v = held.scalings(rows, cols)
        return held, u, v

    @property
    def mass(self) -> Tensor:
        """Total transported mass ``(...,)``: from :attr:`log_mass` when the solver knew it and no gradient flows
        (no pass over the cost), else the sum of the row marginal."""
        if self.log_mass is not None and self._marginals is None and not self._records_grad():
            return self.log_mass.exp()
        return self.problem.sum_rows(self.marginals[0])

    def _records_grad(self) -> bool:
        """Whether autograd would differentiate through this plan (its potentials or its cost)."""
        tensors = (self.f, self.g, *self.problem.geometry.tensors())
        return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)

    @property
    def marginals(self) -> tuple[Tensor, Tensor]:
        """Row sums ``P 1`` ``(..., n)`` and column sums ``P^T 1`` ``(..., m)``, computed blockwise."""
        if self._marginals is None and self.explicit is not None:
            object.__setattr__(self, "_marginals", (self.explicit.sum(-1), self.explicit.sum(-2)))
        if self._marginals is None:
            p = self.problem
            h_g = self.g if p.log_reference_b() is None else self.g + p.eps * p.log_b
            h_f = self.f if p.log_reference_a() is None else self.f + p.eps * p.log_a
            rows = log_row_marginal(p, self.f, logsumexp(p.geometry, h_g, p.eps, 1)).exp()
            cols = log_col_marginal(p, self.g, logsumexp(p.geometry, h_f, p.eps, 0)).exp()
            object.__setattr__(self, "_marginals", (rows, cols))
        return self._marginals

    def measured_residual(self) -> Tensor:
        """The larger of the two :attr:`marginal_residual` of :attr:`matrix` as the user gets it (each block formed
        in the problem's dtype, exactly as :attr:`matrix` forms it, then summed in float64), ``(...,)`` float64.
        One pass over the cost; no autograd."""
        p = self.problem.detach()
        with torch.no_grad():
            f, g = self.f.detach(), self.g.detach()
            if self.explicit is not None:
                matrix = self.explicit.detach().double()
                rows, cols = matrix.sum(-1), matrix.sum(-2)
            else:
                tensors = p.geometry.tensors()
                scaled = self._kernel_scalings()
                parts = []
                cols = torch.zeros(p.batch_shape + (p.m,), dtype=torch.float64, device=p.device)
                for start, stop in p.geometry.row_blocks():
                    if scaled is not None:  # what matrix returns: formed from the held kernel
                        block = scaled[0].block(scaled[1], scaled[2], start, stop).double()
                    else:
                        block = p.log_plan_block(f, g, start, stop, tensors).exp_().double()
                    parts.append(block.sum(-1))
                    cols += block.sum(-2)
                rows = torch.cat(parts, dim=-1)
            cols = p.geometry.reduce_rows(cols)
            out = []
            for marginal, potential, mass, rho in ((rows, f, p.a, p.rho_a), (cols, g, p.b, p.rho_b)):
                target = optimal_marginal(potential.double(), mass.double(), rho)
                out.append(rows.new_zeros(marginal.shape[:-1]) if target is None else (marginal - target).abs().sum(-1))
            return torch.maximum(p.geometry.reduce_rows(out[0]), out[1])

    @property
    def marginal_residual(self) -> tuple[Tensor, Tensor]:
        """How far each marginal is from what optimality asks of it, as L1 distances in mass units ``(...,)``:
        ``|P 1 - a|_1`` for a hard row side (= :attr:`marginal_error`), ``|P 1 - a exp(-f / rho_a)|_1`` for a
        relaxed one, 0 for a free one (no condition); the same for the columns. Every solver's ``converged=True``
        means both are at most ``tol`` (checked on the returned plan by :class:`~otalign.solver.Solver`)."""
        rows, cols = self.marginals
        p = self.problem
        out = []
        for marginal, potential, mass, rho in ((rows, self.f, p.a, p.rho_a), (cols, self.g, p.b, p.rho_b)):
            target = optimal_marginal(potential, mass, rho)
            out.append(marginal.new_zeros(marginal.shape[:-1]) if target is None else (marginal - target).abs().sum(-1))
        return p.geometry.reduce_rows(out[0]), out[1]  # the row residual over all ranks' rows when sharded

    @property
    def value_linear(self) -> Tensor:
        """``<P, C>``, ``(...,)``; computed blockwise, so point clouds need no n x m memory."""
        p = self.problem
        if self.explicit is not None:
            return (self.explicit * p.cost).sum((-1, -2))
        tensors = p.geometry.tensors()
        total = self.f.new_zeros(p.batch_shape)
        for start, stop in p.geometry.row_blocks():
            cost = p.geometry.block(tensors, start, stop)
            finite_cost = cost.masked_fill(torch.isinf(cost), 0.0)  # forbidden pairs carry no mass
            weights = p.log_plan_block(self.f, self.g, start, stop, tensors).exp()
            total = total + (weights * finite_cost).sum((-1, -2))
        return p.geometry.reduce_rows(total)

    @property
    def value(self) -> Tensor:
        """The full primal objective of this plan, ``(...,)``:
        ``<C,P> + eps KL(P|R) + rho_a KL(P1|a) + rho_b KL(P^T 1|b)`` (hard or free sides add nothing).

        Uses ``eps KL(P|R) = <f, P1> + <g, P^T 1> - <C, P> - eps (|P| - |R|)``, exact for any potentials.
        With ``grad="envelope"`` it is the dual value at the (detached) potentials instead, whose gradient is the
        envelope-theorem gradient of the optimum.

        ``+inf`` when the objective is infinite (a relaxed side puts mass where its mass is 0). The terms are
        summed in float64 (they cancel), so the value is exact to the plan's own rounding; a value beyond the
        dtype's range raises ``FloatingPointError`` instead of returning an overflowed inf.
        """
        p = self.problem
        if self.explicit is not None:
            return self.value_linear
        if self.grad == "envelope":
            return _narrow(self.dual_value, p)
        rows, cols = (x.double() for x in self.marginals)
        f, g = self.f.double(), self.g.double()
        a, b = p.a.double(), p.b.double()
        # a potential is -inf exactly where its marginal is 0 (a zero mass under the uniform reference)
        row_terms = p.geometry.reduce_rows(
            (where_positive(rows, f) * rows).sum(-1) - p.eps * rows.sum(-1) + marginal_penalty(rows, a, p.rho_a)
        )
        entropic = row_terms + (where_positive(cols, g) * cols).sum(-1) + p.eps * p.total_reference_mass().double()
        return _narrow(entropic + marginal_penalty(cols, b, p.rho_b), p)

    @property
    def dual_value(self) -> Tensor:
        """The dual objective at ``(f, g)``, ``(...,)``: equals :attr:`value` at the optimum (strong duality)."""
        p = self.problem
        return (
            p.geometry.reduce_rows(dual_mass_term(self.f, p.a, p.rho_a))
            + dual_mass_term(self.g, p.b, p.rho_b)
            - p.eps * (self.mass - p.total_reference_mass())
        )

    def apply(self, x: Tensor, axis: int = 1) -> Tensor:
        """``P @ x`` (axis=1, ``x (..., m, k)``) or ``P^T @ x`` (axis=0, ``x (..., n, k)``), blockwise."""
        p = self.problem
        if self.explicit is not None:
            return self.explicit @ x if axis == 1 else self.explicit.transpose(-1, -2) @ x
        tensors = p.geometry.tensors()
        parts = []
        out = None
        for start, stop in p.geometry.row_blocks():
            weights = p.log_plan_block(self.f, self.g, start, stop, tensors).exp()
            if axis == 1:
                parts.append(weights @ x)
            else:
                term = weights.transpose(-1, -2) @ x[..., start:stop, :]
                out = term if out is None else out + term
        return torch.cat(parts, dim=-2) if axis == 1 else p.geometry.reduce_rows(out)

    def __repr__(self) -> str:
        err = None if self.error is None else float(self.error.max())
        return (
            f"Plan({self.problem!r}, iterations={self.iterations}, converged={self.converged}, "
            f"error={err}, grad={self.grad!r})"
        )


def _narrow(value: Tensor, problem: Problem) -> Tensor:
    """``value`` (float64) in the problem's dtype; raises if a finite value overflows it (``+inf``, an infinite
    objective, passes through)."""
    out = value.to(problem.dtype)
    overflow = torch.isinf(out) & torch.isfinite(value)
    if bool(overflow.any()):
        raise FloatingPointError(
            f"value: the objective, about {float(value[overflow].flatten()[0]):.4g}, is beyond the range of "
            f"{problem.dtype} ({problem!r}); use float64 or rescale the masses or the cost"
        )
    return out
