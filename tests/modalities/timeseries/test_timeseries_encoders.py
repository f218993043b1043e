"""Tests of otalign.modalities.timeseries.encoders: output shapes, and the TCN's causality and receptive field."""

import pytest
import torch

from otalign.modalities.timeseries import CNN1d, TCN


@pytest.mark.parametrize("t", [1, 7, 100])
def test_cnn1d_shapes_and_gradients(t):
    net = CNN1d(in_channels=6, feature_dim=32, width=8)
    x = torch.randn(4, 6, t, requires_grad=True)
    out = net(x)
    assert out.shape == (4, 32) and net.feature_dim == 32
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.parametrize("t", [1, 29, 100])
def test_tcn_shapes(t):
    net = TCN(in_channels=12, feature_dim=16, channels=8, levels=3)
    assert net(torch.randn(3, 12, t)).shape == (3, 16) and net.feature_dim == 16
    assert net.sequence(torch.randn(3, 12, t)).shape == (3, 8, t)


@pytest.mark.parametrize("levels,kernel_size", [(3, 3), (2, 5)])
def test_tcn_is_causal_with_the_stated_receptive_field(levels, kernel_size):
    torch.manual_seed(0)
    net = TCN(in_channels=2, feature_dim=4, channels=6, levels=levels, kernel_size=kernel_size).double().eval()
    t = net.receptive_field + 20
    assert net.receptive_field == 1 + 2 * (kernel_size - 1) * (2**levels - 1)
    x = torch.randn(1, 2, t, dtype=torch.float64, requires_grad=True)
    step = t - 5
    net.sequence(x)[0, :, step].sum().backward()
    influence = x.grad[0].abs().sum(0)
    reached = torch.nonzero(influence > 0).flatten()
    assert reached.max() == step  # nothing from the future
    assert reached.min() == step - net.receptive_field + 1  # and exactly receptive_field steps of the past


def test_bad_sizes_and_inputs():
    with pytest.raises(ValueError, match="feature_dim"):
        CNN1d(in_channels=3, feature_dim=0)
    with pytest.raises(ValueError, match="dropout"):
        TCN(in_channels=3, dropout=1.0)
    with pytest.raises(ValueError, match="x"):
        CNN1d(in_channels=3)(torch.randn(2, 4, 10))
    with pytest.raises(ValueError, match="x"):
        TCN(in_channels=3)(torch.randn(2, 3))
