"""Products ``C @ R`` and ``C^T @ Q`` with a problem's cost, without an n x m matrix where the cost allows it.

Low-rank solvers only touch the cost through such products with thin matrices (``R (..., m, k)``, ``Q (..., n, k)``).
:func:`cost_operator` picks the cheapest exact way for a geometry:

* ``"factored"``: a :class:`~otalign.geometry.PointCloud` whose cost is an inner-product form (``"sqeuclidean"``,
  ``"half_sqeuclidean"``, ``"negative_cosine"``, ``"cosine"``) is written ``C = A B^T`` with ``A (..., n, p)``,
  ``B (..., m, p)``, ``p = d + 2``; a product costs O((n + m) p k) time and memory.
* ``"dense"``: a :class:`~otalign.geometry.DenseCost` is multiplied directly (O(n m k) time, no extra memory).
* ``"blocked"``: any other geometry (e.g. a point cloud with a custom cost) is recomputed in row blocks
  (O(n m k) time, one block of memory).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .geometry import _INNER_PRODUCT_COSTS, DenseCost, Geometry, PointCloud


class CostOperator:
    """``C @ R`` (:meth:`matmul`) and ``C^T @ Q`` (:meth:`rmatmul`) for a cost ``C (..., n, m)``.

    Build it with :func:`cost_operator`. ``kind`` is ``"factored"``, ``"dense"`` or ``"blocked"``; for a factored
    cost, ``factors = (A, B)`` with ``C = A @ B^T`` (differentiable functions of the point clouds).
    """

    def __init__(self, geometry: Geometry, kind: str, factors: Optional[tuple[Tensor, Tensor]] = None):
        self.geometry = geometry
        self.kind = kind
        self.factors = factors

    def matmul(self, right: Tensor) -> Tensor:
        """``C @ right``: ``right (..., m, k)`` -> ``(..., n, k)``."""
        if self.factors is not None:
            A, B = self.factors
            return A @ (B.transpose(-1, -2) @ right)
        geometry = self.geometry
        tensors = geometry.tensors()
        if self.kind == "dense":
            return tensors[0] @ right
        return torch.cat([geometry.block(tensors, i, j) @ right for i, j in geometry.row_blocks()], dim=-2)

    def rmatmul(self, left: Tensor) -> Tensor:
        """``C^T @ left``: ``left (..., n, k)`` -> ``(..., m, k)``."""
        if self.factors is not None:
            A, B = self.factors
            return B @ (A.transpose(-1, -2) @ left)
        geometry = self.geometry
        tensors = geometry.tensors()
        if self.kind == "dense":
            return tensors[0].transpose(-1, -2) @ left
        out = None
        for i, j in geometry.row_blocks():
            term = geometry.block(tensors, i, j).transpose(-1, -2) @ left[..., i:j, :]
            out = term if out is None else out + term
        return out


def cost_operator(geometry: Geometry) -> CostOperator:
    """The :class:`CostOperator` of ``geometry`` (see the module docstring for which kind is used).

    Raises ``ValueError`` for a masked dense cost: forbidden pairs have infinite cost, which products cannot carry.

    Example::

        >>> x, y = torch.randn(10**6, 3), torch.randn(10**6, 3)
        >>> op = cost_operator(PointCloud(x, y))          # factored: never 10^6 x 10^6
        >>> op.matmul(torch.rand(10**6, 10)).shape        # (10**6, 10)
    """
    if isinstance(geometry, DenseCost):
        if geometry.mask is not None:
            raise ValueError("mask: masked costs (forbidden pairs) are not supported by low-rank cost products")
        return CostOperator(geometry, "dense")
    if isinstance(geometry, PointCloud) and isinstance(geometry.cost_name, str):
        form = _INNER_PRODUCT_COSTS.get(geometry.cost_name)
        if form is not None:
            return CostOperator(geometry, "factored", _factors(geometry.x, geometry.y, *form))
    return CostOperator(geometry, "blocked")


def _factors(x: Tensor, y: Tensor, c0: float, alpha: float, beta: float, normalise: bool) -> tuple[Tensor, Tensor]:
    """``A, B`` with ``A B^T = c0 + alpha (|x|^2 + |y|^2) - beta <x, y>`` (on unit vectors when ``normalise``).

    Squared distances are translation invariant: both clouds are first centred on the mean of their two means,
    which keeps ``|x|^2 + |y|^2 - 2 <x, y>`` from cancelling catastrophically for clouds far from the origin.
    """
    if normalise:
        x = x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        y = y / y.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    elif alpha > 0:
        centre = (x.mean(-2, keepdim=True) + y.mean(-2, keepdim=True)) / 2
        x, y = x - centre, y - centre
    ones_x = torch.ones_like(x[..., :1])
    ones_y = torch.ones_like(y[..., :1])
    A = torch.cat((c0 + alpha * (x * x).sum(-1, keepdim=True), ones_x, -beta * x), dim=-1)
    B = torch.cat((ones_y, alpha * (y * y).sum(-1, keepdim=True), y), dim=-1)
    return A, B


__all__ = ["CostOperator", "cost_operator"]
