"""Optimal transport on the real line, in closed form (sorting and quantile functions).

For two measures ``mu = sum_i a_i delta_{u_i}`` and ``nu = sum_j b_j delta_{v_j}`` of equal mass on the line, the
monotone (north-west corner) coupling is optimal for every convex cost ``|x - y|^p``, so::

    W_p^p(mu, nu) = int_0^1 |F_mu^{-1}(t) - F_nu^{-1}(t)|^p dt,

where ``F^{-1}`` are the quantile functions: piecewise constant, jumping at the cumulative weights. The integral is
a finite sum over the merged breakpoints of both cumulative sums. Everything is sorting, cumulative sums and
gathers, so it is batched, runs on any device and is differentiable with respect to the positions (through the
sorted values) and the weights (through the interval lengths), as POT's ``ot.wasserstein_1d``.

Conventions (POT's): samples along the first axis; any trailing axes are independent problems (batched).
The result is ``W_p^p``, the p-th power of the distance.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .measure_checks import check_equal_totals, check_order, check_points, check_weights


def wasserstein_1d(
    u: Tensor,
    v: Tensor,
    u_weights: Optional[Tensor] = None,
    v_weights: Optional[Tensor] = None,
    p: float = 1,
) -> Tensor:
    """``W_p^p`` between 1-D measures (POT's ``ot.wasserstein_1d``; the p-th power, as POT returns it).

    Args:
        u: positions ``(n, ...)``; trailing axes are a batch of independent problems.
        v: positions ``(m, ...)``, trailing axes broadcastable with ``u``'s.
        u_weights: masses ``(n,)`` (shared by the batch) or ``(n, ...)``; default uniform ``1/n``.
        v_weights: masses ``(m,)`` or ``(m, ...)``; default uniform ``1/m``. Both totals must be equal.
        p: order ``>= 1`` of the ground cost ``|x - y|^p``.

    Returns:
        ``(...)``: ``W_p^p`` for each problem of the batch (a scalar for 1-D inputs).

    Example::

        >>> otalign.wasserstein_1d(torch.randn(100), torch.randn(80) + 1, p=2)   # about 1
    """
    u = check_points("u", u)
    v = check_points("v", v)
    p = check_order(p)
    if u.dtype != v.dtype or u.device != v.device:
        raise ValueError(f"v: expected {u.dtype} on {u.device} like u, got {v.dtype} on {v.device}")
    try:
        batch = torch.broadcast_shapes(u.shape[1:], v.shape[1:])
    except RuntimeError:
        raise ValueError(f"v: trailing (batch) axes {tuple(v.shape[1:])} do not broadcast with u's "
                         f"{tuple(u.shape[1:])}") from None
    uw = _weights_last("u_weights", u_weights, u, batch)
    vw = _weights_last("v_weights", v_weights, v, batch)
    if uw is not None and vw is not None:
        check_equal_totals("u_weights", uw, "v_weights", vw)
    return sorted_cost(_last(u, batch), _last(v, batch), uw, vw, p)


def plan_1d(u: Tensor, v: Tensor, u_weights: Optional[Tensor] = None, v_weights: Optional[Tensor] = None) -> Tensor:
    """The optimal (monotone) plan between two 1-D measures, dense ``(n, m)`` (POT's ``ot.emd_1d``; optimal for every
    cost ``|x - y|^p``, p >= 1).

    Args:
        u: positions ``(n,)``; v: positions ``(m,)``; weights as in :func:`wasserstein_1d` (1-D, equal totals).
    """
    u = check_points("u", u)
    v = check_points("v", v)
    for name, x in (("u", u), ("v", v)):
        if x.dim() != 1:
            raise ValueError(f"{name}: plan_1d takes 1-D positions, got shape {tuple(x.shape)}")
    uw = _weights_last("u_weights", u_weights, u, torch.Size())
    vw = _weights_last("v_weights", v_weights, v, torch.Size())
    uw = torch.full_like(u, 1.0 / u.shape[0]) if uw is None else uw
    vw = torch.full_like(v, 1.0 / v.shape[0]) if vw is None else vw
    check_equal_totals("u_weights", uw, "v_weights", vw)
    order_u, order_v = u.argsort(), v.argsort()
    cu, cv = uw[order_u].cumsum(0), vw[order_v].cumsum(0)
    qs = torch.cat([cu, cv]).sort().values
    iu = torch.searchsorted(cu, qs).clamp_(max=u.shape[0] - 1)
    iv = torch.searchsorted(cv, qs).clamp_(max=v.shape[0] - 1)
    delta = torch.diff(qs, prepend=qs.new_zeros(1))
    plan = u.new_zeros(u.shape[0], v.shape[0])
    return plan.index_put_((order_u[iu], order_v[iv]), delta, accumulate=True)


def sorted_cost(u: Tensor, v: Tensor, uw: Optional[Tensor], vw: Optional[Tensor], p: float) -> Tensor:
    """``W_p^p`` along the last axis: ``u (..., n)``, ``v (..., m)`` with equal batch shapes; weights ``None``
    (uniform) or of the same shapes. Internal entry for :func:`wasserstein_1d` and the sliced distances."""
    n, m = u.shape[-1], v.shape[-1]
    if uw is None and vw is None:
        su, sv = u.sort(-1).values, v.sort(-1).values
        if n == m:
            return _power(su - sv, p).mean(-1)
        iu, iv, delta = _uniform_breakpoints(n, m, u)
        return (delta * _power(su[..., iu] - sv[..., iv], p)).sum(-1)
    uw = torch.full_like(u, 1.0 / n) if uw is None else uw.expand(u.shape)
    vw = torch.full_like(v, 1.0 / m) if vw is None else vw.expand(v.shape)
    su, order_u = u.sort(-1)
    sv, order_v = v.sort(-1)
    cu = uw.gather(-1, order_u).cumsum(-1)
    cv = vw.gather(-1, order_v).cumsum(-1)
    iv_at_u, iu_at_v, order = _merge(cu.detach().contiguous(), cv.detach().contiguous())
    # every breakpoint (u's cumulative weights, then v's) closes the interval since the previous one in merged order
    qs = torch.cat([cu, cv], -1)
    iu = torch.cat([torch.arange(n, device=u.device).expand(cu.shape), iu_at_v.clamp(max=n - 1)], -1)
    iv = torch.cat([iv_at_u.clamp(max=m - 1), torch.arange(m, device=u.device).expand(cv.shape)], -1)
    sorted_qs = qs.gather(-1, order)
    delta = torch.diff(sorted_qs, dim=-1, prepend=sorted_qs.new_zeros(sorted_qs.shape[:-1] + (1,)))
    gaps = su.gather(-1, iu.gather(-1, order)) - sv.gather(-1, iv.gather(-1, order))
    return (delta * _power(gaps, p)).sum(-1)


def _merge(cu: Tensor, cv: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Merge two sorted sequences ``(..., n)`` and ``(..., m)`` without sorting their union: the quantile index of v
    at each of u's breakpoints (first ``j`` with ``cv_j >= cu_i``), that of u at each of v's (first ``i`` with
    ``cu_i > cv_j``; ties put u first) and the permutation that sorts ``cat([cu, cv])`` (u before v on ties)."""
    n, m = cu.shape[-1], cv.shape[-1]
    iv_at_u = torch.searchsorted(cv, cu)
    iu_at_v = torch.searchsorted(cu, cv, right=True)
    position_u = torch.arange(n, device=cu.device) + iv_at_u
    position_v = torch.arange(m, device=cu.device) + iu_at_v
    positions = torch.cat([position_u, position_v], -1)
    order = torch.empty_like(positions).scatter_(-1, positions, torch.arange(n + m, device=cu.device).expand(
        positions.shape).contiguous())
    return iv_at_u, iu_at_v, order


def _uniform_breakpoints(n: int, m: int, like: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Quantile indices and interval lengths shared by every problem with uniform weights ``1/n`` and ``1/m``:
    the merged breakpoints ``k/n`` and ``l/m``, computed exactly on integers (``k m`` vs ``l n``)."""
    keys = torch.cat([torch.arange(1, n + 1, device=like.device) * m, torch.arange(1, m + 1, device=like.device) * n])
    keys = keys.sort().values
    iu = torch.div(keys + m - 1, m, rounding_mode="floor") - 1  # first k with k m >= key
    iv = torch.div(keys + n - 1, n, rounding_mode="floor") - 1
    qs = keys.to(like.dtype) / (n * m)
    delta = torch.diff(qs, prepend=qs.new_zeros(1))
    return iu.clamp_(max=n - 1), iv.clamp_(max=m - 1), delta


def _power(diff: Tensor, p: float) -> Tensor:
    d = diff.abs()
    if p == 1:
        return d
    if p == 2:
        return d * d
    return d.pow(p)


def _last(x: Tensor, batch: torch.Size) -> Tensor:
    """``x (k, *b)`` as ``(*batch, k)``, the sample axis last (contiguous for sorting)."""
    x = x.reshape(x.shape[:1] + (1,) * (len(batch) - x.dim() + 1) + x.shape[1:])
    return x.expand(x.shape[:1] + batch).movedim(0, -1).contiguous()


def _weights_last(name: str, w, x: Tensor, batch: torch.Size) -> Optional[Tensor]:
    """Weights of ``x (k, ...)`` given as ``(k,)`` or ``(k, ...)``, as ``(*batch, k)``; ``None`` stays ``None``."""
    if w is None:
        return None
    w = check_weights(name, w, tuple(x.shape), x)
    try:
        torch.broadcast_shapes(w.shape[1:], batch)
    except RuntimeError:
        raise ValueError(f"{name}: trailing axes {tuple(w.shape[1:])} do not broadcast with the batch "
                         f"{tuple(batch)}") from None
    return _last(w, batch)
