"""Time-series encoders: a 3-block 1D CNN and a dilated temporal convolutional network (TCN).

Every encoder maps series ``(B, C, T)`` to features ``(B, feature_dim)`` (the representation that the linear probe
evaluates) and has a ``feature_dim`` attribute; any ``T >= 1`` is accepted (global average pooling over time).
Pair them with ``otalign.modalities.images.projection_head(encoder.feature_dim)`` for contrastive training.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn
from torch.nn import functional as F


def _check_sizes(**sizes: int) -> None:
    bad = {k: v for k, v in sizes.items() if not isinstance(v, int) or v < 1}
    if bad:
        raise ValueError(f"{', '.join(bad)}: must be ints >= 1, got {', '.join(repr(v) for v in bad.values())}")


def _check_input(x: Tensor, in_channels: int) -> None:
    if x.dim() != 3 or x.shape[1] != in_channels:
        raise ValueError(f"x: expected (B, {in_channels}, T), got {tuple(x.shape)}")


class CNN1d(nn.Module):
    """Three Conv1d-BatchNorm-ReLU blocks and global average pooling over time (the fully convolutional
    baseline for time-series classification).

    The blocks have ``width``, ``2 width`` and ``feature_dim`` channels and kernel sizes ``kernel_sizes`` (odd
    sizes keep the length: "same" padding). The pooled output of the last block is the feature vector.

    Example::

        >>> CNN1d(in_channels=6, feature_dim=128)(torch.randn(8, 6, 100)).shape
        torch.Size([8, 128])
    """

    def __init__(
        self, in_channels: int, feature_dim: int = 128, width: int = 64, kernel_sizes: Sequence[int] = (7, 5, 3)
    ):
        super().__init__()
        kernel_sizes = tuple(kernel_sizes)
        _check_sizes(in_channels=in_channels, feature_dim=feature_dim, width=width)
        if len(kernel_sizes) != 3 or any(not isinstance(k, int) or k < 1 for k in kernel_sizes):
            raise ValueError(f"kernel_sizes: expected three ints >= 1, got {kernel_sizes}")
        channels = (in_channels, width, 2 * width, feature_dim)
        blocks = []
        for c_in, c_out, k in zip(channels[:-1], channels[1:], kernel_sizes):
            blocks += [
                nn.Conv1d(c_in, c_out, k, padding="same", bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
            ]
        self.blocks = nn.Sequential(*blocks)
        self.in_channels, self.feature_dim = in_channels, feature_dim

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_channels)
        return self.blocks(x).mean(dim=-1)


class CausalConv1d(nn.Conv1d):
    """A Conv1d padded on the left only, so output step ``t`` sees inputs ``t - dilation (kernel_size - 1) .. t``;
    the length is kept."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int = 1, bias: bool = True):
        super().__init__(c_in, c_out, kernel_size, dilation=dilation, bias=bias)
        self.left_pad = dilation * (kernel_size - 1)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, (self.left_pad, 0)))


class TemporalBlock(nn.Module):
    """A residual TCN block: two causal dilated convolutions (each followed by BatchNorm, ReLU and dropout) added
    to the input (through a 1 x 1 convolution when the channel count changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float = 0.0):
        super().__init__()
        self.body = nn.Sequential(
            CausalConv1d(c_in, c_out, kernel_size, dilation, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            CausalConv1d(c_out, c_out, kernel_size, dilation, bias=False),
            nn.BatchNorm1d(c_out),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.skip(x))


class TCN(nn.Module):
    """A dilated temporal convolutional network: ``levels`` residual :class:`TemporalBlock` s with dilations
    ``1, 2, 4, ..., 2^(levels-1)``, global average pooling over time, and a linear map to ``feature_dim``.

    The convolutions are causal: :meth:`sequence` gives per-step features ``(B, channels, T)`` whose step ``t``
    depends only on inputs ``max(0, t - receptive_field + 1) .. t``, with
    ``receptive_field = 1 + 2 (kernel_size - 1) (2^levels - 1)``.

    Example::

        >>> TCN(in_channels=6, feature_dim=128)(torch.randn(8, 6, 100)).shape
        torch.Size([8, 128])
    """

    def __init__(
        self,
        in_channels: int,
        feature_dim: int = 128,
        channels: int = 64,
        levels: int = 4,
        kernel_size: int = 3,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_sizes(
            in_channels=in_channels, feature_dim=feature_dim, channels=channels, levels=levels, kernel_size=kernel_size
        )
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout: expected a number in [0, 1), got {dropout}")
        self.blocks = nn.Sequential(*[
            TemporalBlock(in_channels if i == 0 else channels, channels, kernel_size, 2**i, dropout)
            for i in range(levels)
        ])
        self.fc = nn.Linear(channels, feature_dim)
        self.in_channels, self.feature_dim = in_channels, feature_dim
        self.receptive_field = 1 + 2 * (kernel_size - 1) * (2**levels - 1)

    def sequence(self, x: Tensor) -> Tensor:
        """Per-step features ``(B, channels, T)`` before pooling."""
        _check_input(x, self.in_channels)
        return self.blocks(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.sequence(x).mean(dim=-1))


__all__ = ["CNN1d", "CausalConv1d", "TCN", "TemporalBlock"]
