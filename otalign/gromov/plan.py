"""What a GW solve returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from torch import Tensor

from ..plan import Plan
from ..problem import marginal_penalty
from .linearization import Linearization
from .problem import GWProblem


@dataclass(frozen=True)
class GWPlan:
    """A solved entropic (fused) GW problem.

    The plan is the one the last outer step's linear solve returned: ``P = a b^T exp((f + g - G) / eps)`` with
    ``G`` the linearised cost of that step (:attr:`inner` is that :class:`otalign.Plan`, its problem the linear
    one). Point-cloud problems never hold ``P`` unless :attr:`matrix` is asked for.

    Attributes:
        problem: the :class:`GWProblem`.
        inner: the last linear :class:`otalign.Plan`.
        iterations: outer steps run.
        converged: whether the plan change met ``tol`` and the returned plan's measured marginal residual met
            ``inner_tol`` (``False`` for a fixed number of steps, ``tol=0``).
        error: the last measured plan change ``|P_k - P_{k-1}|_F`` (``(...,)``), or ``None``.
        grad: the differentiation mode.
        inner_iterations: linear-solver iterations summed over the outer steps.
        step: the mirror-descent step of the last outer step (see :func:`~otalign.gromov.solve_gw`).

    Values (both ``(...,)``): :attr:`value` is ``F(P) = (1 - alpha) <M, P> + alpha E(P)`` *without* the entropic
    term (POT's ``gw_dist`` / ``fgw_dist``); :attr:`value_entropic` adds ``eps KL(P | a b^T)`` and the marginal
    penalties: the objective the solver minimises. With ``grad="envelope"`` both are evaluated at the detached
    plan, so their gradient w.r.t. the intra costs, points and ``cost_xy`` is the partial one at fixed ``P``;
    for :attr:`value_entropic` at a fixed point this is the gradient of the optimal value (the masses are not
    differentiated in that mode).
    """

    problem: GWProblem
    inner: Plan
    iterations: int
    converged: bool
    error: Optional[Tensor]
    grad: str
    inner_iterations: int
    objective: Linearization = field(repr=False)
    step: float = 1.0

    @property
    def f(self) -> Tensor:
        """Row potentials of the last linear problem, ``(..., n)``."""
        return self.inner.f

    @property
    def g(self) -> Tensor:
        """Column potentials of the last linear problem, ``(..., m)``."""
        return self.inner.g

    @property
    def matrix(self) -> Tensor:
        """The plan ``P``, ``(..., n, m)`` (rows: the ``x`` side)."""
        return self.inner.matrix

    @property
    def log_matrix(self) -> Tensor:
        return self.inner.log_matrix

    @property
    def marginals(self) -> tuple[Tensor, Tensor]:
        """``(P 1 (..., n), P^T 1 (..., m))``."""
        return self.inner.marginals

    @property
    def marginal_error(self) -> tuple[Tensor, Tensor]:
        """L1 distances ``(|P 1 - a|_1, |P^T 1 - b|_1)``, each ``(...,)``."""
        return self.inner.marginal_error

    @property
    def mass(self) -> Tensor:
        return self.inner.mass

    def apply(self, x: Tensor, axis: int = 1) -> Tensor:
        """``P @ x`` (axis=1, ``x (..., m, k)``) or ``P^T @ x`` (axis=0, ``x (..., n, k)``), blockwise."""
        return self.inner.apply(x, axis)

    def barycentric_map(self, y: Tensor) -> Tensor:
        """Where each ``x`` point goes: ``(P @ y) / (P 1)``, ``y (..., m, k)`` -> ``(..., n, k)``."""
        return self.inner.barycentric_map(y)

    def measured_residual(self) -> Tensor:
        """Both marginal residuals of the plan as the user gets it, summed in float64 (``(...,)``)."""
        return self.inner.measured_residual()

    @property
    def value(self) -> Tensor:
        """``(1 - alpha) <M, P> + alpha E(P)`` without the entropic term, ``(...,)``."""
        return self.objective.value(self.inner)

    @property
    def value_linear(self) -> Optional[Tensor]:
        """``<M, P>`` (the Wasserstein term of fused GW, unweighted), or ``None`` without ``cost_xy``."""
        return self.objective.linear_term(self.inner)

    @property
    def energy(self) -> Tensor:
        """The GW energy ``E(P) = sum L(C_x[i,k], C_y[j,l]) P_ij P_kl`` (unweighted), ``(...,)``."""
        return self.objective.energy(self.inner)

    @property
    def value_entropic(self) -> Tensor:
        """``F(P) + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)``, ``(...,)``.

        ``eps' KL(P | a b^T) = <f, P 1> + <g, P^T 1> - <G, P> - eps' (|P| - |a| |b|)`` exactly, for the Gibbs form
        of :attr:`inner` (``G`` its cost, ``eps'`` its entropic strength: ``eps / step``)."""
        p = self.problem
        inner = self.inner
        rows, cols = inner.marginals
        reference = inner.problem.a.sum(-1) * inner.problem.b.sum(-1)
        entropic = (inner.f * rows).sum(-1) + (inner.g * cols).sum(-1) - inner.value_linear
        entropic = (entropic - inner.problem.eps * (rows.sum(-1) - reference)) * (p.eps / inner.problem.eps)
        penalties = marginal_penalty(rows, inner.problem.a, p.rho_a) + marginal_penalty(cols, inner.problem.b, p.rho_b)
        return self.value + entropic + penalties

    def __repr__(self) -> str:
        err = None if self.error is None else float(self.error.max())
        return (
            f"GWPlan({self.problem!r}, iterations={self.iterations}, converged={self.converged}, error={err}, "
            f"grad={self.grad!r})"
        )
