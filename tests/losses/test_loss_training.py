"""Every loss decreases under a few SGD steps on a toy problem (two clusters, a linear encoder)."""

import pytest
import torch

from otalign import losses

ALL = [losses.InfoNCE, losses.NTXent, losses.GCAInfoNCE, losses.RINCE, losses.GCARINCE, losses.GCAUOT, losses.SupCon]


@pytest.mark.parametrize("cls", ALL)
def test_loss_decreases_under_sgd(cls):
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[3.0, 0, 0, 0], [-3.0, 0, 0, 0]], dtype=torch.float64)
    labels = torch.arange(16) % 2
    x = centres[labels] + torch.randn(16, 4, generator=g, dtype=torch.float64)
    x0 = x + 0.1 * torch.randn(16, 4, generator=g, dtype=torch.float64)
    x1 = x + 0.1 * torch.randn(16, 4, generator=g, dtype=torch.float64)
    encoder = torch.nn.Linear(4, 3, dtype=torch.float64)
    torch.nn.init.normal_(encoder.weight, generator=g)
    loss_fn = cls()
    optimiser = torch.optim.SGD(encoder.parameters(), lr=0.1)
    kwargs = {"labels": labels} if cls is losses.SupCon else {}

    def loss():
        return loss_fn(encoder(x0), encoder(x1), **kwargs)

    start = loss().item()
    for _ in range(20):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    assert loss().item() < start - 1e-3
