"""The entropic OT problem with relaxable marginals (docs/maths.md, section 1).

    min_P  <C, P> + eps KL(P | R) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)

with generalised KL, ``R = a (x) b`` (``reference="product"``, as POT's ``reg_type="kl"`` and geomloss) or
``R = 1`` (``reference="uniform"``, as OTT-JAX, POT's ``reg_type="entropy"`` and the GCA code).
``rho = inf`` makes that marginal a hard constraint, ``rho = 0`` leaves it free.

Conventions: rows are the source side (masses ``a``, potential ``f``), columns the target side (``b``, ``g``).
The plan is ``P_ij = R_ij exp((f_i + g_j - C_ij) / eps)``.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from .geometry import Geometry
from .checks import is_inf

REFERENCES = ("product", "uniform")


class Problem:
    """An entropic, possibly unbalanced, optimal transport problem.

    Args:
        cost: ``(n, m)`` or batched ``(B, n, m)`` tensor, or a :class:`~otalign.geometry.Geometry` (e.g. a
            :class:`~otalign.geometry.PointCloud`, whose cost blocks are computed lazily). Must be finite.
            float16 / bfloat16 costs are solved in float32.
        a: source masses ``(n,)`` or ``(B, n)``, a non-negative floating tensor on the cost's device; default
            uniform ``1/n``. A zero mass is a structural zero: for a hard or relaxed side (``rho > 0``) its row
            carries exactly no mass, the other rows solve the problem with that row removed, and its log is
            ``-inf`` (so under ``reference="uniform"`` its potential ``f_i`` is ``-inf``). Its gradient is defined
            as 0 in every ``grad`` mode (the objective's one-sided derivative there is ``-inf`` for the uniform
            reference); the other entries' gradients are those of the problem without the row.
        b: target masses ``(m,)`` or ``(B, m)``; default uniform ``1/m``. Zeros as for ``a``.
        eps: entropic strength (> 0), in cost units. For the GCA cost ``-cos`` it is the temperature. It must be
            representable with room to spare (``1/eps`` and ``4e4 eps`` within the dtype's range) and, for a cost
            matrix, at least ``max |C|`` times the dtype's unit roundoff, below which the plan is rounding noise.
        rho_a, rho_b: marginal relaxation: ``inf`` hard (default), ``0`` free, else a KL penalty weight.
        reference: ``"product"`` (``R = a b^T``) or ``"uniform"`` (``R = 1``). Identical plans when balanced.
        mask: optional bool ``(n, m)`` / ``(B, n, m)``; ``True`` forbids a pair (zero mass), e.g. self-pairs.

    Example::

        >>> C = torch.rand(5, 4)
        >>> plan = otalign.solve(Problem(C, eps=0.05))
        >>> plan.matrix.sum(1)  # = a = 1/5 each
    """

    def __init__(
        self,
        cost: Union[Tensor, Geometry],
        a: Optional[Tensor] = None,
        b: Optional[Tensor] = None,
        eps: float = 0.1,
        rho_a: float = math.inf,
        rho_b: float = math.inf,
        reference: str = "product",
        mask: Optional[Tensor] = None,
    ):
        from .problem_checks import check_problem

        geometry, a, b = check_problem(cost, a, b, eps, rho_a, rho_b, reference, mask)
        self.geometry: Geometry = geometry
        self.a, self.b = structural_zeros(a), structural_zeros(b)
        self.eps = float(eps)
        self.rho_a, self.rho_b = float(rho_a), float(rho_b)
        self.reference = reference
        self._log_cache: dict[str, Tensor] = {}

    # ----------------------------------------------------------------- structure
    @property
    def n(self) -> int:
        return self.geometry.n

    @property
    def m(self) -> int:
        return self.geometry.m

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.geometry.batch_shape

    @property
    def dtype(self) -> torch.dtype:
        return self.geometry.dtype

    @property
    def device(self) -> torch.device:
        return self.geometry.device

    @property
    def cost(self) -> Tensor:
        """The cost matrix ``(..., n, m)`` (materialised when the geometry is a point cloud)."""
        return self.geometry.matrix()

    @property
    def is_balanced(self) -> bool:
        return is_inf(self.rho_a) and is_inf(self.rho_b)

    @property
    def lambda_a(self) -> float:
        """Exponent of the row scaling update, ``rho_a / (rho_a + eps)`` (1 hard, 0 free)."""
        return _damping(self.rho_a, self.eps)

    @property
    def lambda_b(self) -> float:
        return _damping(self.rho_b, self.eps)

    def with_eps(self, eps: float) -> "Problem":
        """The same problem at another entropic strength (eps-scaling, proximal steps)."""
        return self._replace(eps=float(eps))

    def with_tensors(self, geometry_tensors, a: Tensor, b: Tensor) -> "Problem":
        """The same problem over other tensors (used to detach, or to re-run one step under autograd)."""
        geometry = self.geometry.with_tensors(geometry_tensors)
        return self._replace(geometry=geometry, a=structural_zeros(a), b=structural_zeros(b))

    def detach(self) -> "Problem":
        return self.with_tensors([t.detach() for t in self.geometry.tensors()], self.a.detach(), self.b.detach())

    def _replace(self, **changes) -> "Problem":
        new = object.__new__(Problem)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        new._log_cache = {}
        return new

    # ----------------------------------------------------------------- log masses
    @property
    def log_a(self) -> Tensor:
        """``log a`` (``-inf`` for a zero mass; its gradient there is 0, see :func:`safe_log`)."""
        return self._cached_log("a")

    @property
    def log_b(self) -> Tensor:
        return self._cached_log("b")

    def _cached_log(self, side: str) -> Tensor:
        """``safe_log`` of ``a`` or ``b``, computed once when the mass needs no gradient (every half-step uses it)."""
        mass = getattr(self, side)
        if mass.requires_grad:
            return safe_log(mass)
        cache = self.__dict__.setdefault("_log_cache", {})
        if side not in cache:
            cache[side] = safe_log(mass)
        return cache[side]

    def log_reference_a(self) -> Optional[Tensor]:
        """``log a`` when the reference is the product measure, else ``None`` (R = 1)."""
        return self.log_a if self.reference == "product" else None

    def log_reference_b(self) -> Optional[Tensor]:
        return self.log_b if self.reference == "product" else None

    # ----------------------------------------------------------------- plan pieces
    def log_plan_block(self, f: Tensor, g: Tensor, start: int, stop: int, tensors=None) -> Tensor:
        """Rows ``start:stop`` of ``log P``, ``(..., stop - start, m)``."""
        tensors = self.geometry.tensors() if tensors is None else tensors
        cost = self.geometry.block(tensors, start, stop)
        row, col = f[..., start:stop] / self.eps, g / self.eps
        if self.reference == "product":
            row, col = row + self.log_a[..., start:stop], col + self.log_b
        out = torch.sub(col.unsqueeze(-2), cost, alpha=1.0 / self.eps)  # one (stop - start) x m allocation
        return out.add_(row.unsqueeze(-1))

    def sum_rows(self, x: Tensor) -> Tensor:
        """``x.sum(-1)`` for a per-row quantity ``x (..., n)``, over all rows (all ranks' when sharded)."""
        return self.geometry.reduce_rows(x.sum(-1))

    def total_reference_mass(self) -> Tensor:
        if self.reference == "product":
            return self.sum_rows(self.a) * self.b.sum(-1)
        size = float(self.geometry.n_global * self.m)
        return torch.full(self.batch_shape, size, dtype=self.dtype, device=self.device)

    def __repr__(self) -> str:
        kind = type(self.geometry).__name__
        shape = self.batch_shape + (self.n, self.m)
        return (
            f"Problem({kind}{tuple(shape)}, eps={self.eps:g}, rho_a={self.rho_a:g}, rho_b={self.rho_b:g}, "
            f"reference={self.reference!r}, dtype={self.dtype})"
        )


def safe_log(mass: Tensor) -> Tensor:
    """``log mass``: exactly ``-inf`` at zero masses, with a gradient of 0 there instead of ``0 / 0`` (the log is
    taken of a tensor whose zeros were replaced by ones, then the zeros are filled with ``-inf``)."""
    zero = mass == 0
    return torch.where(zero, torch.ones_like(mass), mass).log().masked_fill(zero, -math.inf)


def structural_zeros(mass: Tensor) -> Tensor:
    """``mass`` itself, but the gradient that reaches its zero entries is replaced by 0 (see :class:`Problem`).
    An identity without autograd cost when ``mass`` needs no gradient or has no zeros."""
    if not mass.requires_grad or not bool((mass == 0).any()):
        return mass
    return _StructuralZeros.apply(mass)


class _StructuralZeros(torch.autograd.Function):
    @staticmethod
    def forward(ctx, mass):
        ctx.save_for_backward(mass)
        return mass.view_as(mass)

    @staticmethod
    def backward(ctx, grad):
        (mass,) = ctx.saved_tensors
        return grad.masked_fill(mass == 0, 0.0)


def where_positive(mass: Tensor, values: Tensor) -> Tensor:
    """``values`` where ``mass > 0``, else 0, chosen *before* any product with the mass, so that ``-inf`` or ``inf``
    values at zero masses give neither a NaN value nor a NaN gradient (``0 * inf``)."""
    return torch.where(mass > 0, values, torch.zeros_like(values))


def _damping(rho: float, eps: float) -> float:
    if is_inf(rho):
        return 1.0
    return rho / (rho + eps)


def marginal_penalty(marginal: Tensor, mass: Tensor, rho: float) -> Tensor:
    """``rho KL(marginal | mass)`` (generalised KL), summed over the last axis; 0 for hard (inf) or free (0) sides.

    ``+inf`` when the marginal puts mass where ``mass`` is 0 (the objective is infinite there, not large).
    """
    if is_inf(rho) or rho == 0.0:
        return marginal.new_zeros(marginal.shape[:-1])
    positive = marginal > 0
    safe_marginal = torch.where(positive, marginal, torch.ones_like(marginal))
    ratio = where_positive(marginal, safe_marginal * (safe_marginal.log() - safe_log(mass)))
    return rho * (ratio - marginal + mass).sum(-1)


def dual_mass_term(potential: Tensor, mass: Tensor, rho: float) -> Tensor:
    """``sum_i mass_i phi(potential_i)`` with ``phi(x) = rho (1 - exp(-x/rho))`` (``x`` when rho = inf, 0 when 0).
    Zero masses contribute 0 whatever their potential (``-inf`` under the uniform reference)."""
    if is_inf(rho):
        return (mass * where_positive(mass, potential)).sum(-1)
    if rho == 0.0:
        return potential.new_zeros(potential.shape[:-1])
    return (mass * rho * (1 - torch.exp(-where_positive(mass, potential) / rho))).sum(-1)


def optimal_marginal(potential: Tensor, mass: Tensor, rho: float) -> Optional[Tensor]:
    """The marginal that optimality asks of a side with potential ``potential`` (both references): ``mass`` when
    hard (rho = inf), ``mass exp(-potential / rho)`` when relaxed, ``None`` when free (rho = 0: no condition)."""
    if is_inf(rho):
        return mass
    if rho == 0.0:
        return None
    return mass * torch.exp(-where_positive(mass, potential) / rho)


__all__ = [
    "Problem", "REFERENCES", "safe_log", "structural_zeros", "where_positive", "marginal_penalty", "dual_mass_term",
    "optimal_marginal",
]
