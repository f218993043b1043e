"""An all-zero target gives loss 0: the losses warn, naming ``target``."""

import warnings

import pytest
import torch

from otalign import losses, targets

N = 5
LOSSES = [losses.InfoNCE, losses.GCAInfoNCE, losses.RINCE, losses.GCARINCE, losses.GCAUOT, losses.NTXent]


def _views():
    g = torch.Generator().manual_seed(0)
    return torch.randn(N, 3, generator=g), torch.randn(N, 3, generator=g)


@pytest.mark.parametrize("loss_class", [c for c in LOSSES if c.accepts_targets])
def test_an_all_zero_target_warns(loss_class):
    with pytest.warns(UserWarning, match=r"^target: .*no anchor has a positive"):
        value = loss_class()(*_views(), target=torch.zeros(2 * N, 2 * N))
    assert value.item() == 0


@pytest.mark.parametrize("loss_class", [c for c in LOSSES if c.accepts_targets])
def test_a_target_with_positives_does_not_warn(loss_class):
    target = targets.paired(N)
    target[0] = 0  # one anchor without positives is fine
    target[:, 0] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        loss_class()(*_views(), target=target)
