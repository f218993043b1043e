"""A Gromov-Wasserstein alignment loss for two encoders that share no embedding space."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from ..divergences import anchor_weights
from ..geometry import PointCloud
from ..gromov.aligner import GWAligner
from ..checks import check_eps, check_positive_int, check_tensor

REDUCTIONS = ("mean", "sum", "none")


class GWAlignmentLoss(nn.Module):
    """``loss(z_x, z_y, target=None)``: ``KL(target | GW plan)`` between the intra-domain geometries of two batches.

    ``z_x (N, d_x)`` and ``z_y (N, d_y)`` come from two encoders whose spaces are unrelated (``d_x != d_y`` is
    fine): no cost between them is ever formed. Each side's intra cost is the squared Euclidean distance of its
    L2-normalised embeddings (``normalize=False`` keeps them as they are), kept factorised (``O(N d)`` memory per
    linearisation). The GW plan between the two (uniform masses ``1/N``) comes from ``iterations`` mirror-descent
    steps of ``inner_iterations`` Sinkhorn iterations each, unrolled; the loss is the row-normalised KL
    (:func:`otalign.divergences.kl`) between the target and the plan per anchor (row of ``z_x``), i.e.
    ``-sum_j T_ij log P_ij / sum_j P_ij`` with ``T`` row-normalised. Default target: the identity pairing (sample
    ``k`` of ``z_x`` is sample ``k`` of ``z_y``).

    Args:
        eps: entropic strength of the GW problem (units of squared distances squared; unit vectors have squared
            distances in ``[0, 4]``).
        iterations: outer (mirror-descent) steps.
        inner_iterations: Sinkhorn iterations per outer step.
        normalize: L2-normalise the embeddings first.
        reduction: ``"mean"`` (over anchors with target mass), ``"sum"`` or ``"none"`` (``(N,)``).

    Example::

        >>> loss_fn = GWAlignmentLoss(eps=0.1)
        >>> loss = loss_fn(image_encoder(x), text_encoder(t))   # (N, 128) and (N, 384)
        >>> loss.backward()
    """

    def __init__(
        self,
        eps: float = 0.1,
        iterations: int = 10,
        inner_iterations: int = 20,
        normalize: bool = True,
        reduction: str = "mean",
    ):
        super().__init__()
        self.eps = check_eps(eps)
        self.iterations = check_positive_int("iterations", iterations)
        self.inner_iterations = check_positive_int("inner_iterations", inner_iterations)
        if not isinstance(normalize, bool):
            raise TypeError(f"normalize: expected a bool, got {normalize!r}")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
        self.normalize, self.reduction = normalize, reduction
        self.aligner = GWAligner(
            "sinkhorn", "kl", eps=self.eps, max_iter=self.iterations, tol=0.0, grad="unroll",
            inner_max_iter=self.inner_iterations, inner_tol=0.0,
        )

    def forward(self, z_x: Tensor, z_y: Tensor, target: Optional[Tensor] = None) -> Tensor:
        for name, z in (("z_x", z_x), ("z_y", z_y)):
            check_tensor(name, z)
            if z.dim() != 2 or not z.is_floating_point():
                raise ValueError(f"{name}: expected a floating tensor (N, d), got {z.dtype} {tuple(z.shape)}")
        if z_x.shape[0] != z_y.shape[0] and target is None:
            raise ValueError(
                f"z_x, z_y: the default (identity) target needs equal batch sizes, got {z_x.shape[0]} and "
                f"{z_y.shape[0]}; pass a target (N_x, N_y)"
            )
        if z_x.dtype != z_y.dtype:
            raise TypeError(f"z_x, z_y: dtypes differ ({z_x.dtype} vs {z_y.dtype})")
        if target is None:
            target = torch.eye(z_x.shape[0], dtype=z_x.dtype, device=z_x.device)
        if self.normalize:
            z_x, z_y = nn.functional.normalize(z_x, dim=-1), nn.functional.normalize(z_y, dim=-1)
        alignment = self.aligner(PointCloud(z_x, z_x), PointCloud(z_y, z_y), target.to(z_x.dtype))
        per_anchor, weights = alignment.per_anchor, anchor_weights(target)
        if self.reduction == "none":
            return per_anchor * weights
        if self.reduction == "sum":
            return (per_anchor * weights).sum()
        return (per_anchor * weights).sum() / weights.sum().clamp_min(1)

    def extra_repr(self) -> str:
        return (
            f"eps={self.eps:g}, iterations={self.iterations}, inner_iterations={self.inner_iterations}, "
            f"normalize={self.normalize}, reduction={self.reduction!r}"
        )
