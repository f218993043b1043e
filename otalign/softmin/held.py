"""A kernel that a solve's soft-min already holds, from which a plan's matrix can be formed without an exponential.

A kernel-domain soft-min (:class:`~otalign.softmin.kernel_domain.KernelDomain`,
:class:`~otalign.softmin.absorbed.AbsorbedKernel`) ends a solve holding ``K_ij = exp(alpha_i + beta_j - C_ij / eps)``
``(..., n, m)``. A Gibbs plan ``P_ij = exp(r_i + c_j - C_ij / eps)`` (``r = f / eps``, ``c = g / eps``, plus
``log a`` / ``log b`` under the product reference) is then the diagonal scaling

    P = diag(u) K diag(v),    u = exp(r - alpha - s),  v = exp(c - beta + s),   s = max_i (r_i - alpha_i)

(the split ``s`` keeps ``u <= 1`` and ``v`` in range): two multiplications per entry instead of an ``exp``, which
on a CPU is slower still where the plan's entries are below the dtype's normal range (small eps). The absorbed
kernel sets entries below its threshold to 0; it hands its kernel out only while the last half-step's certificate
bounds what they carried by the dtype's round-off times each marginal, so the matrix equals the exponential form up
to rounding.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..versions import write_count


class HeldKernel:
    """``K (..., n, m)`` with its scalings ``alpha (..., n)`` / ``(..., 1)`` and ``beta (..., m)`` / ``(..., 1)``,
    as held by ``owner`` (a soft-min) at rebuild count ``version``. Valid while the owner has not rebuilt or
    released it; :meth:`take` hands the buffer itself over (once).

    ``known``: ``(f, g, u, v)`` when the solve that ends here already computed the diagonal scalings of the plan of
    ``(f, g)`` on this kernel (a scaling loop's last ``u``, ``v``); :meth:`scalings_of` returns them for exactly
    those potentials (the same tensors or detached aliases, not written to since), saving their recomputation."""

    def __init__(self, matrix: Tensor, alpha: Tensor, beta: Tensor, owner, version: int,
                 known: Optional[tuple[Tensor, Tensor, Tensor, Tensor]] = None):
        self.matrix, self.alpha, self.beta = matrix, alpha, beta
        self.owner, self.version = owner, version
        self.known = None if known is None else (known, (_fingerprint(known[0]), _fingerprint(known[1])))

    def valid(self) -> bool:
        return self.matrix is not None and self.owner.matrix is self.matrix and self.owner.version == self.version

    def scalings_of(self, f: Tensor, g: Tensor) -> Optional[tuple[Tensor, Tensor]]:
        """The known ``(u, v)`` of the plan of ``(f, g)`` (see the class docstring), else ``None``."""
        if self.known is None:
            return None
        (_, _, u, v), prints = self.known
        if None in prints:  # inference tensors: unchanged cannot be verified
            return None
        return (u, v) if (_fingerprint(f), _fingerprint(g)) == prints else None

    def scalings(self, log_rows: Tensor, log_cols: Tensor) -> tuple[Tensor, Tensor]:
        """``(u (..., n), v (..., m))`` of the module docstring for the plan's ``r = log_rows``, ``c = log_cols``."""
        rows = log_rows - self.alpha
        top = rows.amax(-1, keepdim=True)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # rows all -inf (no mass): u = 0
        return rows.sub_(top).exp_(), (log_cols - self.beta).add_(top).exp_()

    def block(self, u: Tensor, v: Tensor, start: int, stop: int) -> Tensor:
        """Rows ``start:stop`` of ``P = diag(u) K diag(v)``, a fresh tensor ``(..., stop - start, m)``."""
        out = torch.mul(self.matrix[..., start:stop, :], u[..., start:stop].unsqueeze(-1))
        return out.mul_(v.unsqueeze(-2))

    def take(self, u: Tensor, v: Tensor, row_blocks) -> Optional[Tensor]:
        """The plan formed in the kernel's own memory (row block by row block, each scaled while in cache), which
        then belongs to the caller: the owner releases it (its next half-step rebuilds) and this holder is spent."""
        if not self.valid():
            return None
        matrix = self.matrix
        if matrix.is_inference() and not torch.is_inference_mode_enabled():  # solved under inference_mode, read
            # outside it: an inference tensor takes no in-place write here, so the plan is formed out of place
            return self.block(u, v, 0, matrix.shape[-2])
        self.owner.release()
        self.matrix = None
        for start, stop in row_blocks:
            matrix[..., start:stop, :].mul_(u[..., start:stop].unsqueeze(-1)).mul_(v.unsqueeze(-2))
        return matrix


def _fingerprint(x: Tensor) -> Optional[tuple]:
    """What identifies a tensor's values without reading them: its memory, layout and write count (a detached
    alias shares the memory and the count, which every in-place write bumps; the known tensors are held, so their
    memory is not reused). ``None`` for an inference tensor, which keeps no count."""
    count = write_count(x)
    if count is None:
        return None
    return x.data_ptr(), count, tuple(x.shape), x.stride(), x.dtype, x.device
