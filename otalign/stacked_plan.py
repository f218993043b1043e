"""A batch of plans whose elements were solved at different stages of a per-element schedule.

A batched :class:`~otalign.problem.Problem` has one ``eps``; a solver whose schedule changes the entropic strength
per element (``"proximal"``: outer step ``k`` solves at ``eps / k``) can end with each element at its own strength.
Its result is then a :class:`StackedPlan`: ``parts[i]`` is element ``i``'s plan, a batch of one at its own
``eps / k_i``, exactly the plan a solve of that element alone returns, and every quantity of the batch is the
concatenation of the parts' (``(B, ...)``). ``problem`` is the batched problem as given.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from .plan import Plan


@dataclass(frozen=True, repr=False)
class StackedPlan(Plan):
    """Element ``i`` of the batch is ``parts[i]`` (a plan of batch 1); ``f``, ``g`` are the parts' concatenated."""

    parts: tuple[Plan, ...] = ()

    @classmethod
    def of(cls, problem, parts: list[Plan], iterations: int, converged: bool, error: Optional[Tensor]) -> "StackedPlan":
        f = torch.cat([p.f for p in parts])
        g = torch.cat([p.g for p in parts])
        with torch.no_grad():  # what the overflow check reads; a pass over a part's plan only if its solver lacks it
            log_mass = torch.cat([p.log_mass.detach() if p.log_mass is not None
                                  else torch.logsumexp(p.problem.detach().log_plan_block(
                                      p.f.detach(), p.g.detach(), 0, p.problem.n).flatten(-2), -1)
                                  for p in parts])
        return cls(problem, f, g, iterations, converged, error, parts[0].grad, None, None, log_mass,
                   parts=tuple(parts))

    def _cat(self, read: Callable[[Plan], Tensor]) -> Tensor:
        return torch.cat([read(dataclasses.replace(p, _marginals=None, _log_matrix=None)) for p in self.parts])

    @property
    def log_matrix(self) -> Tensor:
        if self._log_matrix is None:
            object.__setattr__(self, "_log_matrix", self._cat(lambda p: p.log_matrix))
        return self._log_matrix

    @property
    def matrix(self) -> Tensor:
        return self._log_matrix.exp() if self._log_matrix is not None else self._cat(lambda p: p.matrix)

    @property
    def marginals(self) -> tuple[Tensor, Tensor]:
        if self._marginals is None:
            parts = [dataclasses.replace(p, _marginals=None).marginals for p in self.parts]
            object.__setattr__(self, "_marginals", (torch.cat([r for r, _ in parts]), torch.cat([c for _, c in parts])))
        return self._marginals

    @property
    def marginal_residual(self) -> tuple[Tensor, Tensor]:
        residuals = [dataclasses.replace(p, _marginals=None).marginal_residual for p in self.parts]
        return torch.cat([r for r, _ in residuals]), torch.cat([c for _, c in residuals])

    def measured_residual(self) -> Tensor:
        return torch.cat([p.measured_residual().reshape(1) for p in self.parts])

    @property
    def value_linear(self) -> Tensor:
        return self._cat(lambda p: p.value_linear)

    @property
    def value(self) -> Tensor:
        return self._cat(lambda p: p.value)

    @property
    def dual_value(self) -> Tensor:
        return self._cat(lambda p: p.dual_value)

    def apply(self, x: Tensor, axis: int = 1) -> Tensor:
        """``P @ x`` / ``P^T @ x`` per element; ``x`` is ``(B, ., k)`` or shared ``(., k)``."""
        return torch.cat([p.apply(x[i:i + 1] if x.dim() == 3 else x, axis) for i, p in enumerate(self.parts)])

    def __repr__(self) -> str:
        eps = ", ".join(f"{p.problem.eps:.3g}" for p in self.parts)
        return f"StackedPlan({self.problem!r}, element eps=[{eps}], iterations={self.iterations}, " \
               f"converged={self.converged})"


__all__ = ["StackedPlan"]
