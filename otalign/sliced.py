"""Sliced Wasserstein distances: 1-D optimal transport along random (or given) directions.

Each unit direction ``theta`` projects both point clouds onto a line, where OT is closed-form
(:mod:`otalign.oned`). The sliced distance averages the projected costs and takes the p-th root::

    SW_p(mu, nu) = ( (1/L) sum_l W_p^p(theta_l # mu, theta_l # nu) )^(1/p),

and the max-sliced distance keeps the worst direction, ``max_l W_p(theta_l # mu, theta_l # nu)``. Both follow POT's
``ot.sliced_wasserstein_distance`` / ``ot.max_sliced_wasserstein_distance``: projections are a ``(d, L)`` matrix
of unit columns, drawn from a standard normal and normalised; the returned value is the distance itself (the p-th
root taken). With ``seed`` an int, the directions are those POT's torch backend draws with the same seed on the
CPU (``torch.manual_seed(seed)`` then ``randn(d, L)``), but drawn from a private generator: the global RNG is left
alone.

Cost: one matrix product ``(n, d) @ (d, L)`` and one sort of ``L`` columns of length ``n`` (uniform weights need no
more; weighted measures add cumulative sums and a merge).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from torch import Tensor

from .measure_checks import check_equal_totals, check_order, check_points, check_weights
from .oned import sorted_cost
from .checks import check_positive_int

Seed = Union[None, int, torch.Generator]


def random_projections(d: int, n_projections: int, seed: Seed = None, dtype: torch.dtype = torch.float32,
                       device: Union[str, torch.device, None] = None) -> Tensor:
    """``(d, n_projections)`` unit directions, standard normal draws normalised column by column.

    ``seed``: ``None`` (the global RNG), an int (a private CPU generator seeded with it: the draws of POT's torch
    backend with that seed) or a ``torch.Generator``.
    """
    d = check_positive_int("d", d)
    n_projections = check_positive_int("n_projections", n_projections)
    if seed is None or isinstance(seed, torch.Generator):
        generator = seed
        on = device if seed is None else seed.device
    else:
        generator = torch.Generator().manual_seed(check_positive_int("seed", seed, minimum=0))
        on = "cpu"
    theta = torch.randn(d, n_projections, generator=generator, dtype=dtype, device=on)
    return (theta / theta.norm(dim=0, keepdim=True)).to(device)


def projected_costs(
    x: Tensor,
    y: Tensor,
    a: Optional[Tensor] = None,
    b: Optional[Tensor] = None,
    projections: Optional[Tensor] = None,
    n_projections: int = 50,
    p: float = 2,
    seed: Seed = None,
) -> Tensor:
    """``W_p^p`` along each direction, ``(..., L)`` (arguments as :func:`sliced_wasserstein`)."""
    x = check_points("x", x, min_dim=2)
    y = check_points("y", y, min_dim=2)
    p = check_order(p)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"y: expected points of dimension {x.shape[-1]} like x, got shape {tuple(y.shape)}")
    if x.dtype != y.dtype or x.device != y.device:
        raise ValueError(f"y: expected {x.dtype} on {x.device} like x, got {y.dtype} on {y.device}")
    try:
        batch = torch.broadcast_shapes(x.shape[:-2], y.shape[:-2])
    except RuntimeError:
        raise ValueError(f"y: batch axes {tuple(y.shape[:-2])} do not broadcast with x's {tuple(x.shape[:-2])}") \
            from None
    d = x.shape[-1]
    if projections is None:
        projections = random_projections(d, n_projections, seed, x.dtype, x.device)
    else:
        projections = check_points("projections", projections, min_dim=2)
        if projections.dim() != 2 or projections.shape[0] != d:
            raise ValueError(f"projections: expected shape ({d}, n_projections), got {tuple(projections.shape)}")
        projections = projections.to(x.dtype)
    # (..., n, d) @ (d, L) -> (..., L, n): each direction's projected samples contiguous for the sort
    px = (x @ projections).transpose(-1, -2).expand(batch + (projections.shape[1], x.shape[-2]))
    py = (y @ projections).transpose(-1, -2).expand(batch + (projections.shape[1], y.shape[-2]))
    wa = _sample_weights("a", a, x)
    wb = _sample_weights("b", b, y)
    if wa is not None and wb is not None:
        check_equal_totals("a", wa, "b", wb)
    return sorted_cost(px.contiguous(), py.contiguous(), wa, wb, p)


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    a: Optional[Tensor] = None,
    b: Optional[Tensor] = None,
    projections: Optional[Tensor] = None,
    n_projections: int = 50,
    p: float = 2,
    seed: Seed = None,
) -> Tensor:
    """Sliced p-Wasserstein distance ``SW_p`` (POT's ``ot.sliced_wasserstein_distance``, the p-th root taken).

    Args:
        x: source points ``(..., n, d)``; leading axes are a batch of independent problems.
        y: target points ``(..., m, d)``, batch axes broadcastable with ``x``'s.
        a: source masses ``(n,)`` or ``(..., n)``; default uniform. b: target masses likewise; equal totals.
        projections: ``(d, L)`` directions (POT's layout, unit columns expected); default ``n_projections`` random
            unit directions (:func:`random_projections` with ``seed``).
        n_projections: number of random directions when ``projections`` is not given.
        p: order ``>= 1``.
        seed: ``None``, an int (reproducible, POT's torch draws) or a ``torch.Generator``.

    Returns:
        ``(...)``: the distance, differentiable w.r.t. ``x``, ``y``, ``a``, ``b`` and ``projections``.

    Example::

        >>> otalign.sliced_wasserstein(x, y, n_projections=200, seed=0)
    """
    costs = projected_costs(x, y, a, b, projections, n_projections, p, seed)
    return costs.mean(-1).pow(1.0 / check_order(p))


def max_sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    a: Optional[Tensor] = None,
    b: Optional[Tensor] = None,
    projections: Optional[Tensor] = None,
    n_projections: int = 50,
    p: float = 2,
    seed: Seed = None,
) -> Tensor:
    """Max-sliced distance ``max_l W_p`` over the directions (POT's ``ot.max_sliced_wasserstein_distance`` on the
    same directions; no optimisation over the sphere). Arguments and shapes as :func:`sliced_wasserstein`."""
    costs = projected_costs(x, y, a, b, projections, n_projections, p, seed)
    return costs.amax(-1).pow(1.0 / check_order(p))


def _sample_weights(name: str, w, x: Tensor) -> Optional[Tensor]:
    """Masses of ``x (..., n, d)`` as ``(..., 1, n)`` (shared by every direction)."""
    if w is None:
        return None
    w = check_weights(name, w.movedim(-1, 0) if isinstance(w, Tensor) else w, (x.shape[-2],), x)
    return w.movedim(0, -1).unsqueeze(-2)
