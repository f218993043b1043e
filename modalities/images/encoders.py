"""Image encoders and the projection head.

Every encoder maps images ``(B, C, H, W)`` to features ``(B, feature_dim)`` (the representation that the linear
probe evaluates) and has a ``feature_dim`` attribute. The projection head maps features to the embeddings the
contrastive loss sees.
"""

from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor, nn

from otalign.training.heads import mlp_head


def resnet18_cifar(feature_dim: int = 512, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 with the CIFAR stem: a 3 x 3 stride-1 first convolution and no max-pool (so 32 x 32
    inputs keep a 4 x 4 map before the global pooling); the classifier is removed.

    Args:
        feature_dim: output size; 512 (the pooled features as they are) or another size through a final linear map.
        in_channels: image channels.

    Returns:
        The network, with attribute ``feature_dim``; ``(B, in_channels, H, W) -> (B, feature_dim)``.
    """
    from torchvision.models import resnet18

    if feature_dim < 1 or in_channels < 1:
        raise ValueError(f"feature_dim, in_channels: must be >= 1, got {feature_dim}, {in_channels}")
    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    net.maxpool = nn.Identity()
    net.fc = nn.Identity() if feature_dim == 512 else nn.Linear(512, feature_dim)
    net.feature_dim = feature_dim
    return net


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """A small convolutional encoder for small images (8 x 8 digits, 32 x 32 CIFAR-sized).

    Three stages of two 3 x 3 conv-BN-ReLU blocks (``width``, ``2 width``, ``4 width`` channels); a 2 x 2 max-pool
    between stages while the map is larger than 4 x 4 (so 8 x 8 inputs are pooled once, 32 x 32 twice); global
    average pooling; a linear map to ``feature_dim``.

    Example::

        >>> SmallCNN(in_channels=1, feature_dim=128)(torch.rand(16, 1, 8, 8)).shape
        torch.Size([16, 128])
    """

    def __init__(self, in_channels: int = 1, feature_dim: int = 128, width: int = 32):
        super().__init__()
        if in_channels < 1 or feature_dim < 1 or width < 1:
            raise ValueError(
                f"in_channels, feature_dim, width: must be >= 1, got {in_channels}, {feature_dim}, {width}"
            )
        channels = [width, 2 * width, 4 * width]
        self.stages = nn.ModuleList()
        c_in = in_channels
        for c in channels:
            self.stages.append(nn.Sequential(*_conv_block(c_in, c), *_conv_block(c, c)))
            c_in = c
        self.fc = nn.Linear(channels[-1], feature_dim)
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1 and min(x.shape[-2:]) > 4:
                x = nn.functional.max_pool2d(x, 2)
        return self.fc(x.mean(dim=(-2, -1)))


class MLPEncoder(nn.Module):
    """Flatten the image, then ``depth`` Linear-BN-ReLU layers of width ``hidden`` and a linear map to
    ``feature_dim``.

    Args:
        in_shape: the shape of one image, ``(C, H, W)`` (or any shape; it is flattened).

    Example::

        >>> MLPEncoder((1, 8, 8))(torch.rand(4, 1, 8, 8)).shape
        torch.Size([4, 128])
    """

    def __init__(self, in_shape: Sequence[int], hidden: int = 256, feature_dim: int = 128, depth: int = 2):
        super().__init__()
        in_shape = tuple(int(s) for s in in_shape)
        if not in_shape or min(in_shape) < 1:
            raise ValueError(f"in_shape: expected positive sizes, got {in_shape}")
        if hidden < 1 or feature_dim < 1 or depth < 0:
            raise ValueError(f"hidden, feature_dim, depth: invalid ({hidden}, {feature_dim}, {depth})")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for _ in range(depth):
            layers += [nn.Linear(width, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, feature_dim))
        self.net = nn.Sequential(*layers)
        self.in_shape = in_shape
        self.feature_dim = feature_dim

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(f"x: expected (B, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}")
        return self.net(x)


def projection_head(in_dim: int, hidden_dim: int = 512, out_dim: int = 128) -> nn.Sequential:
    """The SimCLR projection head ``Linear(no bias) - BatchNorm1d - ReLU - Linear``: ``(B, in_dim) -> (B, out_dim)``
    (otalign's one MLP head, :func:`otalign.training.heads.mlp_head`, without the bias BatchNorm makes redundant)."""
    return mlp_head(in_dim, hidden_dim, out_dim, first_bias=False)


__all__ = ["MLPEncoder", "SmallCNN", "projection_head", "resnet18_cifar"]
