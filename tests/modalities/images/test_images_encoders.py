"""Tests of otalign.modalities.images.encoders: output shapes, the CIFAR stem, the projection head."""

import pytest
import torch
from torch import nn

from otalign.modalities.images import MLPEncoder, SmallCNN, projection_head, resnet18_cifar


def test_resnet18_cifar_stem_and_shapes():
    pytest.importorskip("torchvision")
    net = resnet18_cifar()
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert isinstance(net.maxpool, nn.Identity) and isinstance(net.fc, nn.Identity)
    assert net.feature_dim == 512
    seen = {}

    def record(module, inputs, output):
        seen["layer1"] = output.shape

    net.layer1.register_forward_hook(record)
    assert net(torch.rand(2, 3, 16, 16)).shape == (2, 512)
    assert seen["layer1"][-2:] == (16, 16)  # the ImageNet stem (stride-2 conv, max-pool) would give 4 x 4
    small = resnet18_cifar(feature_dim=64, in_channels=1)
    assert small.feature_dim == 64 and small(torch.rand(2, 1, 8, 8)).shape == (2, 64)


@pytest.mark.parametrize("channels,size", [(1, 8), (3, 8), (3, 32)])
def test_small_cnn_shapes_and_gradients(channels, size):
    net = SmallCNN(in_channels=channels, feature_dim=32, width=8)
    x = torch.rand(4, channels, size, size, requires_grad=True)
    out = net(x)
    assert out.shape == (4, 32) and net.feature_dim == 32
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_mlp_encoder_shapes_and_bad_input():
    net = MLPEncoder((1, 8, 8), hidden=16, feature_dim=10)
    assert net(torch.rand(5, 1, 8, 8)).shape == (5, 10) and net.feature_dim == 10
    assert MLPEncoder((3, 8, 8), depth=0)(torch.rand(2, 3, 8, 8)).shape == (2, 128)
    with pytest.raises(ValueError, match="x"):
        net(torch.rand(5, 3, 8, 8))
    with pytest.raises(ValueError, match="in_shape"):
        MLPEncoder((0, 8, 8))


def test_projection_head_structure():
    head = projection_head(32, hidden_dim=16, out_dim=8)
    kinds = [type(m) for m in head]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head[0].in_features == 32 and head[3].out_features == 8
    assert head(torch.rand(6, 32)).shape == (6, 8)
