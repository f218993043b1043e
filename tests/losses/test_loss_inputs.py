"""Reductions, bad inputs (errors name the argument), and the constructor contract."""

import inspect

import pytest
import torch

from otalign import losses, targets
from otalign.losses.base import LossOptions
from otalign.losses import GCAUOT, GCAInfoNCE, InfoNCE, NTXent, SupCon

ALL = [losses.InfoNCE, losses.NTXent, losses.GCAInfoNCE, losses.RINCE, losses.GCARINCE, losses.GCAUOT, losses.SupCon]


def views(seed=0, n=6, d=4):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(2)]


@pytest.mark.parametrize("cls", ALL)
def test_reductions(cls):
    z = views()
    labels = torch.tensor([0, 1, 2, 0, 1, 2]) if cls is SupCon else None
    none = cls(reduction="none")(*z, labels=labels)
    assert none.shape == (12,)
    assert torch.allclose(cls(reduction="mean")(*z, labels=labels), none.mean())
    assert torch.allclose(cls(reduction="sum")(*z, labels=labels), none.sum())


def test_mean_skips_anchors_without_a_target():
    z = views()
    target = targets.paired(6, 2, dtype=torch.float64)
    target[0] = 0  # anchor 0 asks for nothing
    none = InfoNCE(reduction="none")(*z, target=target)
    assert none[0] == 0
    assert torch.allclose(InfoNCE()(*z, target=target), none[1:].mean())


@pytest.mark.parametrize("cls", ALL)
def test_no_batch_size_and_common_keywords(cls):
    params = inspect.signature(cls).parameters
    assert "batch_size" not in params
    assert "temperature" in params
    common = {"reduction", "gather_distributed", "solver", "solver_options", "compat"}
    assert common <= set(LossOptions.__annotations__)
    if issubclass(cls, losses.AlignmentLoss):
        assert cls(reduction="sum", gather_distributed=False, solver="sinkhorn", solver_options={}).reduction == "sum"


def test_labels_and_target_are_exclusive():
    z = views()
    labels = torch.arange(6)
    with pytest.raises(ValueError, match="labels, target"):
        InfoNCE()(*z, labels=labels, target=targets.from_labels(labels, dtype=torch.float64))


def test_mismatched_views():
    z0, z1 = views()
    with pytest.raises(ValueError, match="z1"):
        InfoNCE()(z0, z1[:5])
    with pytest.raises(ValueError, match="z1"):
        InfoNCE()(z0, z1.float())
    with pytest.raises(ValueError, match="z"):
        InfoNCE()(z0)
    with pytest.raises(ValueError, match="z0"):
        InfoNCE()(z0[0], z1[0])


def test_bad_target():
    z = views()
    with pytest.raises(ValueError, match="target"):
        GCAInfoNCE()(*z, target=torch.ones(6, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match="target"):
        InfoNCE()(*z, target=-targets.paired(6, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="target.*diagonal"):
        InfoNCE()(*z, target=torch.ones(12, 12, dtype=torch.float64))


def test_bad_labels():
    z = views()
    with pytest.raises(ValueError, match="labels"):
        SupCon()(*z, labels=torch.arange(5))
    with pytest.raises(ValueError, match="labels: contains NaN"):  # float labels are read alike, NaN is not a label
        SupCon()(*z, labels=torch.tensor([0.0, 1.0, float("nan"), 0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="labels, target"):
        NTXent()(*z, labels=torch.arange(6))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_embeddings(bad):
    z0, z1 = views()
    z1[2, 1] = bad
    with pytest.raises(ValueError, match="z1.*NaN"):
        GCAUOT()(z0, z1)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"temperature": 0.0}, "temperature"),
        ({"iterations": 0}, "iterations"),
        ({"reduction": "avg"}, "reduction"),
        ({"compat": "theirs"}, "compat"),
    ],
)
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        GCAInfoNCE(**kwargs)


def test_no_nan_gradient_with_identical_views():
    z = views()[0].requires_grad_()
    for cls in ALL:
        labels = torch.tensor([0, 1, 2, 0, 1, 2]) if cls is SupCon else None
        loss = cls()(z, z, labels=labels)
        (grad,) = torch.autograd.grad(loss, z)
        assert torch.isfinite(loss) and torch.isfinite(grad).all(), cls.__name__


def test_gather_without_a_process_group_is_local():
    z = views()
    assert torch.equal(GCAInfoNCE(gather_distributed=True)(*z), GCAInfoNCE()(*z))


def test_self_pairs_get_no_mass_unless_compat():
    z = views()
    assert torch.equal(GCAInfoNCE().align(*z).plan.matrix.diagonal(), torch.zeros(12, dtype=torch.float64))
    assert (GCAInfoNCE(compat="authors").align(*z).plan.matrix.diagonal() > 0).all()
