"""Optimal transport between Gaussians (the Bures-Wasserstein geometry), in closed form.

For ``N(m_s, C_s)`` and ``N(m_t, C_t)`` with the squared Euclidean cost::

    W_2^2 = |m_s - m_t|^2 + B^2(C_s, C_t),   B^2 = tr(C_s + C_t - 2 (C_s^{1/2} C_t C_s^{1/2})^{1/2}),

and the optimal map is affine, ``T(x) = m_t + A (x - m_s)`` with the symmetric matrix
``A = C_s^{-1/2} (C_s^{1/2} C_t C_s^{1/2})^{1/2} C_s^{-1/2}``. As in POT (``ot.gaussian``), the functions return
the distance ``W_2`` itself (not its square) and the map as ``(A, b)`` acting on row vectors: ``T(x) = x A + b``
with ``b = m_t - m_s A``. The empirical versions fit a Gaussian to each (weighted) sample set first: weighted mean
and covariance (divided by the total weight) plus ``reg I``.

Matrix square roots use a symmetric eigendecomposition with eigenvalues clamped at 0. Their backward pass solves the
Sylvester equation ``Y X + X Y = G`` in the eigenbasis (``X_ij = G_ij / (s_i + s_j)``), so gradients stay finite for
repeated eigenvalues (isotropic covariances), where differentiating ``eigh`` itself would divide by zero. Every
function is batched over leading axes.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .measure_checks import check_points, check_weights
from .checks import check_number


class _SymmetricSqrt(torch.autograd.Function):
    """``S^{1/2}`` of symmetric positive semi-definite matrices ``(..., d, d)``."""

    @staticmethod
    def forward(ctx, s: Tensor) -> Tensor:
        values, vectors = torch.linalg.eigh((s + s.transpose(-1, -2)) / 2)
        roots = values.clamp(min=0).sqrt()
        ctx.save_for_backward(roots, vectors)
        return (vectors * roots.unsqueeze(-2)) @ vectors.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        roots, vectors = ctx.saved_tensors
        inner = vectors.transpose(-1, -2) @ grad @ vectors
        denominator = (roots.unsqueeze(-1) + roots.unsqueeze(-2)).clamp(min=torch.finfo(roots.dtype).tiny ** 0.5)
        out = vectors @ (inner / denominator) @ vectors.transpose(-1, -2)
        return (out + out.transpose(-1, -2)) / 2


def sqrtm(s: Tensor) -> Tensor:
    """Square root of symmetric PSD matrices ``(..., d, d)`` (eigenvalues clamped at 0), differentiable."""
    return _SymmetricSqrt.apply(s)


def bures_distance(Cs: Tensor, Ct: Tensor, paired: bool = False) -> Tensor:
    """Bures distance ``B(C_s, C_t)`` (not squared), POT's ``ot.gaussian.bures_distance``.

    Shapes: ``(d, d)`` each -> ``()``; ``(n, d, d)`` and ``(m, d, d)`` -> ``(n, m)``, or ``(n,)`` when ``paired``.
    """
    Cs, Ct = _covariances(Cs, Ct, paired)
    return _bures_squared(Cs, Ct).clamp(min=0).sqrt()


def bures_wasserstein_distance(ms: Tensor, mt: Tensor, Cs: Tensor, Ct: Tensor, paired: bool = False) -> Tensor:
    """``W_2`` between ``N(ms, Cs)`` and ``N(mt, Ct)`` (the distance, not its square: POT's
    ``ot.gaussian.bures_wasserstein_distance``).

    Args:
        ms, mt: means ``(d,)``, or batches ``(n, d)`` and ``(m, d)``.
        Cs, Ct: covariances ``(d, d)``, or ``(n, d, d)`` and ``(m, d, d)`` (symmetric positive semi-definite).
        paired: with batches, pair source i with target i (``n == m``) instead of all pairs.

    Returns:
        ``()``, or ``(n, m)`` (all pairs), or ``(n,)`` (paired).
    """
    ms, mt = check_points("ms", ms), check_points("mt", mt)
    if ms.dim() != Cs.dim() - 1 or mt.dim() != Ct.dim() - 1:
        raise ValueError(f"ms, mt: expected one fewer axis than Cs, Ct, got shapes {tuple(ms.shape)}, "
                         f"{tuple(mt.shape)} for {tuple(Cs.shape)}, {tuple(Ct.shape)}")
    Cs, Ct = _covariances(Cs, Ct, paired)
    if ms.shape[-1] != Cs.shape[-1] or mt.shape[-1] != Ct.shape[-1]:
        raise ValueError(f"ms, mt: expected means of dimension {Cs.shape[-1]}")
    if ms.dim() == 2 and not paired:
        ms, mt = ms[:, None], mt[None]
    mean_term = ((ms - mt) ** 2).sum(-1)
    return (mean_term + _bures_squared(Cs, Ct)).clamp(min=0).sqrt()


def bures_wasserstein_mapping(ms: Tensor, mt: Tensor, Cs: Tensor, Ct: Tensor) -> tuple[Tensor, Tensor]:
    """The optimal affine map from ``N(ms, Cs)`` to ``N(mt, Ct)`` as ``(A, b)`` with ``T(x) = x A + b`` (POT's
    ``ot.gaussian.bures_wasserstein_mapping``).

    Args:
        ms, mt: means ``(..., d)``; Cs, Ct: covariances ``(..., d, d)`` (batch axes broadcast); ``Cs`` must be
            positive definite (its inverse square root is taken).

    Returns:
        ``A (..., d, d)`` (symmetric) and ``b (..., d)``.
    """
    ms, mt = check_points("ms", ms), check_points("mt", mt)
    Cs, Ct = check_points("Cs", Cs, min_dim=2), check_points("Ct", Ct, min_dim=2)
    for name, c, m in (("Cs", Cs, ms), ("Ct", Ct, mt)):
        if c.shape[-1] != c.shape[-2] or c.shape[-1] != m.shape[-1]:
            raise ValueError(f"{name}: expected ({m.shape[-1]}, {m.shape[-1]}) matrices, got shape {tuple(c.shape)}")
    root = sqrtm(Cs)
    inverse_root = torch.linalg.inv(root)
    middle = sqrtm(root @ Ct @ root)
    A = inverse_root @ middle @ inverse_root
    A = (A + A.transpose(-1, -2)) / 2
    b = mt - (ms.unsqueeze(-2) @ A).squeeze(-2)
    return A, b


def gaussian_moments(x: Tensor, w: Optional[Tensor] = None, reg: float = 1e-6, bias: bool = True,
                     name: str = "x", weights_name: str = "w") -> tuple[Tensor, Tensor]:
    """Weighted mean ``(d,)`` and covariance ``(d, d)`` of samples ``x (n, d)``, the covariance divided by the total
    weight and ``reg I`` added (POT's empirical Gaussian). ``bias=False`` takes the mean as 0 (no centring)."""
    x = check_points(name, x, min_dim=2)
    if x.dim() != 2:
        raise ValueError(f"{name}: expected samples (n, d), got shape {tuple(x.shape)}")
    reg = check_number("reg", reg)
    n, d = x.shape
    w = x.new_full((n,), 1.0 / n) if w is None else check_weights(weights_name, w.reshape(-1) if isinstance(
        w, Tensor) else w, (n,), x)
    total = w.sum()
    mean = (w @ x) / total if bias else x.new_zeros(d)
    centred = x - mean
    cov = (centred * w[:, None]).T @ centred / total + reg * torch.eye(d, dtype=x.dtype, device=x.device)
    return mean, cov


def empirical_bures_wasserstein_distance(xs: Tensor, xt: Tensor, reg: float = 1e-6, ws: Optional[Tensor] = None,
                                         wt: Optional[Tensor] = None, bias: bool = True) -> Tensor:
    """``W_2`` between the Gaussians fitted to ``xs (n, d)`` and ``xt (m, d)`` (:func:`gaussian_moments`; POT's
    ``ot.gaussian.empirical_bures_wasserstein_distance``), differentiable w.r.t. the samples and weights."""
    ms, Cs = gaussian_moments(xs, ws, reg, bias, "xs", "ws")
    mt, Ct = gaussian_moments(xt, wt, reg, bias, "xt", "wt")
    return bures_wasserstein_distance(ms, mt, Cs, Ct)


def empirical_bures_wasserstein_mapping(xs: Tensor, xt: Tensor, reg: float = 1e-6, ws: Optional[Tensor] = None,
                                        wt: Optional[Tensor] = None, bias: bool = True) -> tuple[Tensor, Tensor]:
    """``(A, b)`` of the optimal affine map between the Gaussians fitted to ``xs`` and ``xt`` (POT's
    ``ot.gaussian.empirical_bures_wasserstein_mapping``; ``b`` is ``(d,)``, POT's is ``(1, d)``)."""
    ms, Cs = gaussian_moments(xs, ws, reg, bias, "xs", "ws")
    mt, Ct = gaussian_moments(xt, wt, reg, bias, "xt", "wt")
    return bures_wasserstein_mapping(ms, mt, Cs, Ct)


def _covariances(Cs: Tensor, Ct: Tensor, paired: bool) -> tuple[Tensor, Tensor]:
    """Checked covariances, broadcast for all pairs ``(n, 1, d, d)`` x ``(1, m, d, d)`` unless ``paired``."""
    Cs, Ct = check_points("Cs", Cs, min_dim=2), check_points("Ct", Ct, min_dim=2)
    for name, c in (("Cs", Cs), ("Ct", Ct)):
        if c.dim() > 3 or c.shape[-1] != c.shape[-2]:
            raise ValueError(f"{name}: expected (d, d) or (n, d, d) matrices, got shape {tuple(c.shape)}")
    if Cs.shape[-1] != Ct.shape[-1] or Cs.dim() != Ct.dim():
        raise ValueError(f"Ct: expected the layout of Cs {tuple(Cs.shape)}, got {tuple(Ct.shape)}")
    if Cs.dim() == 3 and paired:
        if Cs.shape[0] != Ct.shape[0]:
            raise ValueError(f"Ct: paired needs as many targets as sources, got {Ct.shape[0]} and {Cs.shape[0]}")
    elif Cs.dim() == 3:
        Cs, Ct = Cs[:, None], Ct[None]
    return Cs, Ct


def _bures_squared(Cs: Tensor, Ct: Tensor) -> Tensor:
    root = sqrtm(Cs)
    cross = sqrtm(root @ Ct @ root)
    return (Cs + Ct - 2 * cross).diagonal(dim1=-2, dim2=-1).sum(-1)
