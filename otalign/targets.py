"""Target plans ``P_tgt``: which pairs of a batch should be aligned (docs/maths.md, section 3).

Layout: the batch is view-blocked, ``Z = [z_view0; z_view1; ...]`` (``n_views * N`` rows), so sample ``k`` of view
``v`` is row ``v * N + k``. Every target is a non-negative ``(n_views N, n_views N)`` matrix with a zero diagonal
(a sample is never its own positive). Any non-negative matrix of that shape is accepted as a target; these build
the common ones.

Targets, labels, domains and view qualities may be tensors, NumPy arrays or lists
(:func:`otalign.checks.as_tensor`).
"""

from __future__ import annotations

from collections import abc
from typing import Optional, Sequence

import torch
from torch import Tensor

from . import arrays
from .checks import check_number, check_positive_int, checks_enabled


def paired(n: int, n_views: int = 2, device=None, dtype: torch.dtype = torch.float32) -> Tensor:
    """Instance pairing: ``P[i, j] = 1`` when rows i != j are views of the same sample. ``(V n, V n)``."""
    n = check_positive_int("n", n)
    n_views = check_positive_int("n_views", n_views, minimum=2)
    return _same(torch.arange(n, device=device).repeat(n_views), dtype)


def from_labels(labels: Tensor, n_views: int = 2, dtype: torch.dtype = torch.float32) -> Tensor:
    """Supervised contrastive target: ``P[i, j] = 1[y_i = y_j]``, ``i != j``.

    Args:
        labels: ``(N,)`` integer labels of the samples (repeated over the ``n_views`` views).
        n_views: ``V >= 1``.
    """
    labels = _check_labels("labels", labels)
    n_views = check_positive_int("n_views", n_views)
    return _same(labels.repeat(n_views), dtype)


def domain_prior(
    domains: Tensor, alpha: float, beta: float, n_views: int = 2, dtype: torch.dtype = torch.float32
) -> Tensor:
    """Domain-aware target: ``P = I_pair + alpha 1[same domain] + beta 1[other domain]`` off the diagonal.

    Raising ``alpha - beta`` asks the features to keep domain information (the GCA paper's PACS experiment).

    Args:
        domains: ``(N,)`` integer domain id of each sample.
        alpha, beta: weights of same-domain and cross-domain pairs (>= 0).
    """
    domains = _check_labels("domains", domains)
    alpha, beta = check_number("alpha", alpha), check_number("beta", beta)
    n_views = check_positive_int("n_views", n_views, minimum=2)
    stacked = domains.repeat(n_views)
    same = _same(stacked, dtype)
    other = (stacked[:, None] != stacked[None, :]).to(dtype)
    return paired(domains.numel(), n_views, domains.device, dtype) + alpha * same + beta * other


def hierarchical(
    levels: Sequence[Tensor], weights: Sequence[float], n_views: int = 2, dtype: torch.dtype = torch.float32
) -> Tensor:
    """``P = sum_l w_l 1[same label at level l]`` off the diagonal.

    Args:
        levels: label tensors ``(N,)`` from fine to coarse; pass ``torch.arange(N)`` as a level to include the
            instance pairing.
        weights: one non-negative weight per level.
    """
    for name, seq in (("levels", levels), ("weights", weights)):
        if isinstance(seq, (Tensor, str)) or not isinstance(seq, abc.Sequence):
            raise TypeError(f"{name}: expected a list with one entry per level, got {type(seq).__name__}")
    if len(levels) == 0 or len(levels) != len(weights):
        raise ValueError(f"levels, weights: need one weight per level, got {len(levels)} levels, {len(weights)} weights")
    weights = [check_number("weights", w) for w in weights]
    levels = [_check_labels(f"levels[{i}]", level) for i, level in enumerate(levels)]
    n_views = check_positive_int("n_views", n_views)
    sizes = {level.numel() for level in levels}
    if len(sizes) != 1:
        raise ValueError(f"levels: all levels must label the same N samples, got sizes {sorted(sizes)}")
    total: Optional[Tensor] = None
    for level, weight in zip(levels, weights):
        term = weight * _same(level.repeat(n_views), dtype)
        total = term if total is None else total + term
    return total


def weighted(target: Tensor, view_quality: Tensor, axis: int = 1) -> Tensor:
    """Scale each row (``axis=1``) or column (``axis=0``) of ``target`` by a per-view confidence in [0, inf).

    A corrupted view then asks for less mass. ``view_quality`` is ``(V N,)``.
    """
    if isinstance(axis, bool) or axis not in (0, 1):
        raise ValueError(f"axis: expected 0 or 1, got {axis!r}")
    target = _check_target_tensor(target)
    target = check_target(target, target.shape[-2:])
    expected = target.shape[-2] if axis == 1 else target.shape[-1]
    view_quality = _like("view_quality", view_quality, target)
    if view_quality.is_complex():
        raise TypeError(f"view_quality: expected real values, got dtype {view_quality.dtype}")
    if tuple(view_quality.shape) != (expected,):
        raise ValueError(f"view_quality: expected shape ({expected},), got {tuple(view_quality.shape)}")
    if view_quality.device != target.device:
        raise ValueError(f"view_quality: is on {view_quality.device} but the target is on {target.device}")
    if (view_quality < 0).any() or not torch.isfinite(view_quality).all():
        raise ValueError("view_quality: must be finite and >= 0")
    quality = view_quality.to(target.dtype)
    return target * (quality[:, None] if axis == 1 else quality[None, :])


def check_target(
    target: Tensor, shape, batch_shape: Optional[tuple[int, ...]] = None, like: Optional[Tensor] = None
) -> Tensor:
    """Raise unless ``target`` is a finite, non-negative real tensor (or array, converted onto ``like``'s device)
    whose last two dims are ``shape`` and whose leading dims broadcast with ``batch_shape`` (a plan's batch shape;
    not checked when ``None``). The value checks (finite, non-negative) follow
    :func:`otalign.checks.checks_enabled`. Returns the target as a floating tensor."""
    target = _check_target_tensor(target, like)
    if tuple(target.shape[-2:]) != tuple(shape):
        raise ValueError(f"target: expected shape {tuple(shape)} (last two dims), got {tuple(target.shape)}")
    if batch_shape is not None:
        try:
            torch.broadcast_shapes(tuple(target.shape[:-2]), tuple(batch_shape))
        except RuntimeError:
            raise ValueError(
                f"target: leading dims {tuple(target.shape[:-2])} do not broadcast with the plan's batch shape "
                f"{tuple(batch_shape)}"
            ) from None
    if not target.is_floating_point():
        target = target.float()
    if not checks_enabled():
        return target
    if not _all_finite(target):
        raise ValueError("target: contains NaN or inf")
    if target.numel() and bool(target.amin() < 0):
        raise ValueError("target: must be non-negative")
    return target


def _like(name: str, value, like: Optional[Tensor]) -> Tensor:
    """:func:`otalign.arrays.as_tensor` onto ``like``'s device and, for a floating ``like``, its dtype."""
    if like is None:
        return arrays.as_tensor(name, value)
    dtype = like.dtype if like.is_floating_point() else None
    return arrays.as_tensor(name, value, dtype=dtype, device=like.device)


def _check_target_tensor(target, like: Optional[Tensor] = None) -> Tensor:
    target = _like("target", target, like)
    if target.is_complex():
        raise TypeError(f"target: expected real values, got dtype {target.dtype}")
    if target.dim() < 2:
        raise ValueError(f"target: expected a matrix (..., n, m), got shape {tuple(target.shape)}")
    return target


def _all_finite(x: Tensor) -> bool:
    """``isfinite(x).all()``, fast: a finite sum proves every entry finite (NaN and inf propagate into a sum);
    only a non-finite sum (an entry, or an overflow) falls back to the exact test. On CPU ``isfinite`` costs about
    twenty times a sum."""
    return bool(torch.isfinite(x.sum())) or bool(torch.isfinite(x).all())


def _same(labels: Tensor, dtype: torch.dtype) -> Tensor:
    out = (labels[:, None] == labels[None, :]).to(dtype)
    out.fill_diagonal_(0)
    return out


def _check_labels(name: str, labels: Tensor) -> Tensor:
    """Ids as int64 codes (:func:`otalign.arrays.as_labels`: integers, booleans, floats or strings alike)."""
    labels = arrays.as_labels(name, labels)
    if labels.dim() != 1:
        raise ValueError(f"{name}: expected a 1-D tensor of ids, got shape {tuple(labels.shape)}")
    if labels.numel() == 0:
        raise ValueError(f"{name}: is empty")
    return labels
