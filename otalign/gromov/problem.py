"""The entropic (fused) Gromov-Wasserstein problem over two geometries.

For intra-domain costs ``C_x (n, n)`` and ``C_y (m, m)``, masses ``a (n,)``, ``b (m,)``, an optional cross cost
``M = cost_xy (n, m)`` and a plan ``P (n, m)`` (rows: the ``x`` side, columns: the ``y`` side),

    E(P)   = sum_{i,k,j,l} L(C_x[i,k], C_y[j,l]) P_ij P_kl                         (the GW energy)
    F(P)   = (1 - alpha) <M, P> + alpha E(P)                                         (the FGW objective)
    F_eps(P) = F(P) + eps KL(P | a b^T) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)     (what the solver minimises)

with generalised KL and ``L`` the ``"square"`` loss ``(s - t)^2`` or the ``"kl"`` loss ``s log(s/t) - s + t``.

``alpha`` follows POT's convention (``ot.gromov.entropic_fused_gromov_wasserstein``): it weights the GW term and
``1 - alpha`` the linear (Wasserstein) term, so ``alpha = 1`` is pure GW and POT's ``alpha`` can be passed
unchanged. ``eps`` is POT's ``epsilon``: every outer step solves a linear entropic problem with entropic strength
``eps`` (see :func:`otalign.gromov.solve_gw`).
"""

from __future__ import annotations

import math
from typing import Optional, Union

import torch
from torch import Tensor

from ..arrays import as_tensor
from ..geometry import DenseCost, Geometry, PointCloud
from .geometry import squared_distance_scale
from ..problem_checks import check_masses
from ..checks import MASS_RTOL, check_eps, check_float_tensor, check_number, check_rho

LOSSES = ("square", "kl")
Cost = Union[Tensor, Geometry]
#: Absolute tolerance of the symmetry test on dense intra costs (POT's).
SYMMETRY_ATOL = 1e-10


class GWProblem:
    """An entropic, possibly fused and unbalanced, Gromov-Wasserstein problem.

    Args:
        geom_x: intra cost of the source side: a tensor ``(n, n)`` / ``(B, n, n)`` (or a NumPy array, list or pandas
            DataFrame: :mod:`otalign.arrays`), a :class:`DenseCost`, or a
            :class:`PointCloud` ``PointCloud(x, x, cost=...)``. With the ``"sqeuclidean"`` or
            ``"half_sqeuclidean"`` cost and the square loss the solver never forms an ``n x n`` matrix (it uses
            the rank ``d + 2`` factorisation of squared-distance matrices); other point clouds are materialised.
        geom_y: intra cost of the target side, ``(m, m)`` / ``(B, m, m)`` or a point cloud, as ``geom_x``.
        a, b: masses ``(n,)`` / ``(B, n)`` and ``(m,)`` / ``(B, m)``, non-negative; default uniform.
        eps: entropic strength (> 0), in units of the objective (POT's ``epsilon``).
        alpha: weight of the GW term in ``(1 - alpha) <M, P> + alpha E(P)`` (POT's convention). Default: 1 (pure
            GW) without ``cost_xy``, POT's 0.5 with it. ``alpha < 1`` needs ``cost_xy``.
        cost_xy: the cross cost ``M`` of fused GW: a tensor ``(n, m)`` / ``(B, n, m)`` or a :class:`PointCloud`
            between the two sides' features (a squared-Euclidean one stays factorised).
        loss: ``"square"`` or ``"kl"`` (the ``"kl"`` loss needs non-negative intra costs; as POT, ``log C_y`` is
            floored at ``log 1e-18``).
        rho_a, rho_b: KL relaxation of the marginals (``inf``: hard, the default).
        symmetric: whether both intra costs are symmetric; ``None`` tests them (POT's test, ``atol=1e-10``). For
            asymmetric costs the linearisation averages the two orientations, as POT does.

    Example::

        >>> x, y = torch.randn(300, 3), torch.randn(200, 2)
        >>> problem = otalign.GWProblem(PointCloud(x, x), PointCloud(y, y), eps=0.01)
        >>> plan = otalign.solve(problem)          # GWPlan: plan.matrix (300, 200), plan.value
    """

    def __init__(
        self,
        geom_x: Cost,
        geom_y: Cost,
        a: Optional[Tensor] = None,
        b: Optional[Tensor] = None,
        eps: float = 0.1,
        alpha: Optional[float] = None,
        cost_xy: Optional[Cost] = None,
        loss: str = "square",
        rho_a: float = math.inf,
        rho_b: float = math.inf,
        symmetric: Optional[bool] = None,
    ):
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss: expected one of {LOSSES}, got {loss!r}")
        self.loss = loss
        self.geom_x = _intra_geometry("geom_x", _array_cost("geom_x", geom_x), loss)
        self.geom_y = _intra_geometry("geom_y", _array_cost("geom_y", geom_y), loss)
        like = self.geom_x.tensors()[0]
        cost_xy = None if cost_xy is None else _array_cost("cost_xy", cost_xy)
        a = None if a is None else as_tensor("a", a, dtype=like.dtype, device=like.device)
        b = None if b is None else as_tensor("b", b, dtype=like.dtype, device=like.device)
        _check_pair(self.geom_x, self.geom_y)
        self.cost_xy = None if cost_xy is None else _cross_geometry(cost_xy, self.geom_x, self.geom_y)
        if alpha is None:
            alpha = 1.0 if cost_xy is None else 0.5
        self.alpha = check_number("alpha", alpha)
        if self.alpha > 1:
            raise ValueError(f"alpha: expected a weight in [0, 1], got {self.alpha!r}")
        if self.alpha < 1 and self.cost_xy is None:
            raise ValueError(f"alpha: {self.alpha:g} < 1 weights a linear term, but no cost_xy was given")
        self.eps = check_eps(eps)
        self.rho_a, self.rho_b = check_rho("rho_a", rho_a), check_rho("rho_b", rho_b)
        self.a = check_masses("a", a, self.n, self.geom_x.batch, like)
        self.b = check_masses("b", b, self.m, self.geom_x.batch, like)
        if self.is_balanced:
            sa, sb = self.a.sum(-1), self.b.sum(-1)
            if bool(((sa - sb).abs() > MASS_RTOL * torch.maximum(sa, sb)).any()):
                raise ValueError(
                    f"a, b: a balanced problem (rho_a = rho_b = inf) needs equal total masses, got "
                    f"{float(sa.flatten()[0]):.6g} and {float(sb.flatten()[0]):.6g}; normalise them or relax a marginal"
                )
        if symmetric is None:
            symmetric = _is_symmetric(self.geom_x) and _is_symmetric(self.geom_y)
        elif not isinstance(symmetric, bool):
            raise TypeError(f"symmetric: expected None or a bool, got {symmetric!r}")
        self.symmetric = symmetric

    @property
    def n(self) -> int:
        return self.geom_x.n

    @property
    def m(self) -> int:
        return self.geom_y.n

    @property
    def batch_shape(self) -> tuple[int, ...]:
        return self.geom_x.batch_shape

    @property
    def dtype(self) -> torch.dtype:
        return self.geom_x.dtype

    @property
    def device(self) -> torch.device:
        return self.geom_x.device

    @property
    def is_balanced(self) -> bool:
        return math.isinf(self.rho_a) and math.isinf(self.rho_b)

    @property
    def is_fused(self) -> bool:
        return self.cost_xy is not None and self.alpha < 1

    def detach(self) -> "GWProblem":
        """The same problem over detached tensors (no validation rerun)."""
        new = object.__new__(GWProblem)
        new.__dict__.update(self.__dict__)
        new.geom_x, new.geom_y = self.geom_x.detach(), self.geom_y.detach()
        new.cost_xy = None if self.cost_xy is None else self.cost_xy.detach()
        new.a, new.b = self.a.detach(), self.b.detach()
        return new

    def __repr__(self) -> str:
        shape = self.batch_shape + (self.n, self.m)
        fused = f", alpha={self.alpha:g}" if self.is_fused else ""
        return (
            f"GWProblem({type(self.geom_x).__name__} x {type(self.geom_y).__name__}{tuple(shape)}, eps={self.eps:g}"
            f"{fused}, loss={self.loss!r}, rho_a={self.rho_a:g}, rho_b={self.rho_b:g}, dtype={self.dtype})"
        )


def _array_cost(name: str, cost) -> Cost:
    """A cost given as a NumPy array, list or pandas DataFrame (:func:`otalign.arrays.as_tensor`) as a tensor
    (integers read as float64, as NumPy promotes them); tensors and geometries as given."""
    if isinstance(cost, (Tensor, Geometry)):
        return cost
    cost = as_tensor(name, cost)
    return cost if cost.is_floating_point() else cost.to(torch.float64)


def _intra_geometry(name: str, cost: Cost, loss: str) -> Geometry:
    """A validated square geometry: ``DenseCost`` (finite, non-negative for the kl loss) or ``PointCloud``."""
    if isinstance(cost, PointCloud):
        x = check_float_tensor(f"{name}.x", cost.x)
        y = check_float_tensor(f"{name}.y", cost.y)
        if x.dtype != y.dtype or x.device != y.device:
            raise ValueError(f"{name}: the point cloud's x and y differ in dtype or device")
        if cost.n != cost.m:
            raise ValueError(f"{name}: an intra-domain cost must be square, got {cost.n} x {cost.m} points")
        geometry = PointCloud(x, y, cost.cost_function)
        if loss == "kl" or squared_distance_scale(geometry) is None:
            geometry = DenseCost(geometry.matrix())
    elif isinstance(cost, DenseCost):
        geometry = DenseCost(check_float_tensor(name, cost.cost))
    elif isinstance(cost, Tensor):
        geometry = DenseCost(check_float_tensor(name, cost))
    elif isinstance(cost, Geometry):
        raise TypeError(f"{name}: expected a tensor, a DenseCost or a PointCloud, got {type(cost).__name__}")
    else:
        raise TypeError(f"{name}: expected a tensor (n, n) / (B, n, n) or a PointCloud, got {type(cost).__name__}")
    if isinstance(geometry, DenseCost):
        cost_matrix = geometry.cost
        if cost_matrix.dim() not in (2, 3) or cost_matrix.shape[-1] != cost_matrix.shape[-2]:
            raise ValueError(f"{name}: expected a square cost (n, n) or (B, n, n), got {tuple(cost_matrix.shape)}")
        if loss == "kl" and bool((cost_matrix < 0).any()):
            raise ValueError(f"{name}: the 'kl' loss needs non-negative intra costs, found {float(cost_matrix.min()):g}")
    return geometry


def _check_pair(gx: Geometry, gy: Geometry) -> None:
    if gx.batch_shape != gy.batch_shape:
        raise ValueError(f"geom_x, geom_y: batch shapes differ ({gx.batch_shape} vs {gy.batch_shape})")
    if gx.dtype != gy.dtype:
        raise TypeError(f"geom_x, geom_y: dtypes differ ({gx.dtype} vs {gy.dtype})")
    if gx.device != gy.device:
        raise ValueError(f"geom_x, geom_y: devices differ ({gx.device} vs {gy.device})")


def _cross_geometry(cost: Cost, gx: Geometry, gy: Geometry) -> Geometry:
    if isinstance(cost, PointCloud):
        x, y = check_float_tensor("cost_xy.x", cost.x), check_float_tensor("cost_xy.y", cost.y)
        geometry = PointCloud(x, y, cost.cost_function)
    elif isinstance(cost, DenseCost):
        geometry = DenseCost(check_float_tensor("cost_xy", cost.cost))
    elif isinstance(cost, Tensor):
        geometry = DenseCost(check_float_tensor("cost_xy", cost))
    else:
        raise TypeError(f"cost_xy: expected a tensor (n, m) / (B, n, m) or a PointCloud, got {type(cost).__name__}")
    expected = gx.batch_shape + (gx.n, gy.n)
    got = geometry.batch_shape + (geometry.n, geometry.m)
    if got != expected:
        raise ValueError(f"cost_xy: expected shape {expected} (batch, n, m), got {got}")
    if geometry.dtype != gx.dtype or geometry.device != gx.device:
        raise ValueError(f"cost_xy: dtype/device {geometry.dtype}/{geometry.device} differ from the intra costs'")
    return geometry


def _is_symmetric(geometry: Geometry) -> bool:
    if isinstance(geometry, PointCloud):
        return geometry.x is geometry.y or torch.equal(geometry.x, geometry.y)
    cost = geometry.cost.detach()
    transposed = cost.transpose(-1, -2)
    return torch.equal(cost, transposed) or bool(torch.allclose(cost, transposed, rtol=1e-5, atol=SYMMETRY_ATOL))
