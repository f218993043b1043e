"""The one MLP head of the trainer: projection heads of every modality, BYOL's and SimSiam's predictors."""

from __future__ import annotations

from torch import nn


def mlp_head(in_dim: int, hidden_dim: int, out_dim: int, first_bias: bool = True) -> nn.Sequential:
    """``Linear(in, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, out)``: maps ``(N, in_dim)`` to ``(N, out_dim)``.

    ``first_bias=False`` drops the first layer's bias, which the BatchNorm after it makes redundant (SimCLR's
    projection head, as the images modality builds it).

    Example::

        >>> predictor = mlp_head(64, 256, 64)
    """
    for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=first_bias),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )
