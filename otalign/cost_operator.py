"""Products ``C @ R`` and ``C^T @ Q`` with a problem's cost, without an n x m matrix where the cost allows it.

Low-rank solvers only touch the cost through such products with thin matrices (``R (..., m, k)``, ``Q (..., n, k)``).
:func:`cost_operator` picks the cheapest exact way for a geometry:

* ``"factored"``: a :class:`~otalign.geometry.PointCloud` whose cost has factors (:meth:`otalign.costs.Cost.factors`:
  the squared-Euclidean and cosine costs) is written ``C = A B^T`` with ``A (..., n, p)``, ``B (..., m, p)``,
  ``p = d + 2``; a product costs O((n + m) p k) time and memory.
* ``"dense"``: a :class:`~otalign.geometry.DenseCost` is multiplied directly (O(n m k) time, no extra memory).
* ``"blocked"``: any other geometry (e.g. a point cloud with a custom cost) is recomputed in row blocks
  (O(n m k) time, one block of memory).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .geometry import DenseCost, Geometry, PointCloud


class CostOperator:
    """``C @ R`` (:meth:`matmul`) and ``C^T @ Q`` (:meth:`rmatmul`) for a cost ``C (..., n, m)``.

    Build it with :func:`cost_operator`. ``kind`` is ``"factored"``, ``"dense"`` or ``"blocked"``; for a factored
    cost, ``factors = (A, B)`` with ``C = A @ B^T`` (differentiable functions of the point clouds).
    """

    def __init__(self, geometry: Geometry, kind: str, factors: Optional[tuple[Tensor, Tensor]] = None):
        self.geometry = geometry
        self.kind = kind
        self.factors = factors
        self._transposed: Optional[tuple[Tensor, Tensor]] = None

    def transposed_factors(self) -> tuple[Tensor, Tensor]:
        """``(A^T (..., p, n), B^T (..., p, m))``, contiguous, detached (made once per operator): products with the
        factors without a graph, in the layout that writes ``(..., k, n)`` results contiguously."""
        if self.factors is None:
            raise ValueError(f"transposed_factors: the {self.kind} cost has no factors")
        if self._transposed is None:
            A, B = self.factors
            self._transposed = (A.detach().transpose(-1, -2).contiguous(), B.detach().transpose(-1, -2).contiguous())
        return self._transposed

    def matmul(self, right: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """``C @ right``: ``right (..., m, k)`` -> ``(..., n, k)``; written into ``out`` when given (a buffer of that
        shape, e.g. kept across the steps of a solve; not with autograd)."""
        if self.factors is not None:
            A, B = self.factors
            return torch.matmul(A, B.transpose(-1, -2) @ right, out=out)
        geometry = self.geometry
        tensors = geometry.tensors()
        if self.kind == "dense":
            return torch.matmul(tensors[0], right, out=out)
        return torch.cat([geometry.block(tensors, i, j) @ right for i, j in geometry.row_blocks()], dim=-2, out=out)

    def rmatmul(self, left: Tensor, out: Optional[Tensor] = None) -> Tensor:
        """``C^T @ left``: ``left (..., n, k)`` -> ``(..., m, k)``; ``out`` as in :meth:`matmul`."""
        if self.factors is not None:
            A, B = self.factors
            return torch.matmul(B, A.transpose(-1, -2) @ left, out=out)
        geometry = self.geometry
        tensors = geometry.tensors()
        if self.kind == "dense":
            return torch.matmul(tensors[0].transpose(-1, -2), left, out=out)
        total = None
        for i, j in geometry.row_blocks():
            term = geometry.block(tensors, i, j).transpose(-1, -2) @ left[..., i:j, :]
            total = term if total is None else total + term
        return total if out is None else out.copy_(total)


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
    if isinstance(geometry, PointCloud):
        factors = geometry.cost_function.factors(geometry.x, geometry.y)
        if factors is not None:
            return CostOperator(geometry, "factored", factors)
    return CostOperator(geometry, "blocked")


__all__ = ["CostOperator", "cost_operator"]
