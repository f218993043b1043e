"""Free-support Wasserstein barycenters of point clouds (the barycenter's points move, its masses stay fixed).

For K measures ``nu_k = sum_j b_kj delta_{y_kj}`` with weights ``w_k`` and a barycenter ``sum_i c_i delta_{x_i}``
with fixed masses ``c``, the squared-Euclidean objective ``sum_k w_k W_2^2(mu, nu_k)`` is minimised by alternating
(Cuturi and Doucet 2014; POT's ``ot.lp.free_support_barycenter``):

1. for fixed points ``x``, an optimal plan ``P_k`` from the barycenter (rows, masses ``c``) to each measure
   (columns, masses ``b_k``), cost ``|x_i - y_kj|^2``;
2. for fixed plans, each point moves to the weighted mean of its images:
   ``x_i <- sum_k w_k (P_k y_k)_i / c_i``.

The plans come from any registered solver: ``"exact"`` (network simplex, POT's exact algorithm) or an entropic one
(``"sinkhorn"`` ..., with ``eps``; POT's ``ot.bregman.free_support_sinkhorn_barycenter`` for ``"sinkhorn"``).
Measures of equal size are solved as one batched problem per outer step.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .measure_checks import check_points, check_weights
from .problem import Problem
from .solving import solve
from .checks import check_eps, check_number, check_positive_int

Clouds = Union[Tensor, Sequence[Tensor]]


def free_support_barycenter(
    locations: Clouds,
    init: Tensor,
    masses: Optional[Sequence[Tensor]] = None,
    b: Optional[Tensor] = None,
    weights: Optional[Tensor] = None,
    solver: str = "exact",
    eps: float = 0.1,
    max_iter: int = 100,
    tol: float = 1e-7,
    inner_max_iter: int = 1000,
    inner_tol: float = 1e-9,
    grad: str = "detach",
    return_log: bool = False,
    **solver_options,
):
    """Free-support barycenter of K point clouds (module docstring for the maths).

    Args:
        locations: the K clouds: a list of ``(n_k, d)`` tensors or one ``(K, n, d)`` tensor.
        init: the barycenter's initial points ``(k, d)`` (POT's ``X_init``).
        masses: the clouds' masses: a list of ``(n_k,)`` or a ``(K, n)`` tensor; default uniform. Each must have
            the total of ``b``.
        b: the barycenter's masses ``(k,)``; default uniform ``1/k``.
        weights: ``(K,)`` barycentric weights, normalised to sum to 1; default uniform.
        solver: a registered solver name for the inner plans (``"exact"``, ``"sinkhorn"``, ...) or an instance.
        eps: entropic strength of the inner problems (cost units; ignored by ``"exact"``).
        max_iter: outer iterations at most. tol: stop when ``sum_i |x_i^new - x_i|^2 <= tol`` (POT's rule).
        inner_max_iter, inner_tol: the inner solves' ``max_iter`` / ``tol``.
        grad: the inner solves' ``grad`` mode (default ``"detach"``: no graph).
        return_log: also return ``{"iterations", "displacements"}``.
        **solver_options: the inner solver's options.

    Returns:
        ``(k, d)``: the barycenter's points.
    """
    clouds, cloud_masses = _clouds(locations, masses)
    x = check_points("init", init, min_dim=2)
    if x.dim() != 2 or x.shape[1] != clouds[0].shape[-1]:
        raise ValueError(f"init: expected points (k, {clouds[0].shape[-1]}), got shape {tuple(init.shape)}")
    k = x.shape[0]
    c = x.new_full((k,), 1.0 / k) if b is None else check_weights("b", b, (k,), x)
    w = x.new_full((len(clouds),), 1.0 / len(clouds)) if weights is None else \
        check_weights("weights", weights, (len(clouds),), x)
    w = w / w.sum()
    cloud_masses = [torch.full((y.shape[0],), float(c.sum()) / y.shape[0], dtype=x.dtype, device=x.device)
                    if m is None else m for y, m in zip(clouds, cloud_masses)]
    eps = check_eps(eps)
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_number("tol", tol)
    options = dict(max_iter=inner_max_iter, tol=inner_tol, grad=grad, **solver_options)
    same_size = len({y.shape[0] for y in clouds}) == 1
    displacements: list[float] = []
    it = 0
    for it in range(1, max_iter + 1):
        if same_size:
            ys, ms = torch.stack(clouds), torch.stack(cloud_masses)
            plan = solve(Problem(squared_distances(x, ys), c.expand(len(clouds), k), ms, eps=eps), solver, **options)
            images = (w[:, None, None] * plan.apply(ys, axis=1)).sum(0)
        else:
            images = sum(
                wk * solve(Problem(squared_distances(x, y), c, m, eps=eps), solver, **options).apply(y, axis=1)
                for wk, y, m in zip(w, clouds, cloud_masses)
            )
        new = images / c[:, None]
        displacement = float(((new - x) ** 2).sum())
        displacements.append(displacement)
        x = new
        if displacement <= tol:
            break
    return (x, {"iterations": it, "displacements": displacements}) if return_log else x


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """``|x_i - y_j|^2`` for ``x (k, d)`` and ``y (..., n, d)``, clamped at 0 (POT's ``ot.dist``)."""
    inner = x @ y.transpose(-1, -2)
    return ((x * x).sum(-1)[:, None] + (y * y).sum(-1).unsqueeze(-2) - 2 * inner).clamp(min=0)


def _clouds(locations: Clouds, masses) -> tuple[list[Tensor], list[Optional[Tensor]]]:
    """The clouds as a list of ``(n_k, d)`` tensors and their masses (``None``: uniform)."""
    if isinstance(locations, Tensor):
        check_points("locations", locations, min_dim=3)
        clouds = list(locations)
    elif isinstance(locations, (list, tuple)) and locations:
        clouds = [check_points(f"locations[{i}]", y, min_dim=2) for i, y in enumerate(locations)]
    else:
        raise TypeError("locations: expected a (K, n, d) tensor or a non-empty list of (n_k, d) tensors")
    if any(y.dim() != 2 or y.shape[1] != clouds[0].shape[1] for y in clouds):
        raise ValueError("locations: every cloud must be (n_k, d) with the same d")
    if masses is None:
        return clouds, [None] * len(clouds)
    masses = list(masses)
    if len(masses) != len(clouds):
        raise ValueError(f"masses: expected {len(clouds)} mass vectors, got {len(masses)}")
    return clouds, [check_weights(f"masses[{i}]", m, (y.shape[0],), y) for i, (m, y) in enumerate(zip(masses, clouds))]
