"""The losses' hot path: inputs validated once at the boundary, the plan's log-matrix built once, no device-to-host
read with validation off, and a forward + backward that ``torch.compile(fullgraph=True)`` captures."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign import targets
from otalign.losses import GCARINCE, GCAUOT, GCAInfoNCE, InfoNCE, SupCon

HOST_READS = ("__bool__", "__float__", "__int__", "__index__", "item", "tolist", "numpy")


@pytest.fixture
def validation_off():
    otalign.set_validation(False)
    try:
        yield
    finally:
        otalign.set_validation(True)


def embeddings(n: int = 8, d: int = 5, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=gen).requires_grad_() for _ in range(2)]


@pytest.mark.parametrize("cls", [GCAInfoNCE, GCAUOT, GCARINCE, InfoNCE])
def test_no_host_read_when_validation_is_off(cls, validation_off, monkeypatch):
    z0, z1 = embeddings()
    loss_fn = cls()

    def host_read(*args, **kwargs):
        raise AssertionError("a device-to-host read on the hot path")

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, host_read)
    loss = loss_fn(z0, z1)
    loss.backward()
    monkeypatch.undo()
    assert torch.isfinite(z0.grad).all() and torch.isfinite(loss.detach())


@pytest.mark.parametrize("cls", [SupCon, GCAInfoNCE, GCAUOT])
def test_no_host_read_with_labels_when_validation_is_off(cls, validation_off, monkeypatch):
    z0, z1 = embeddings()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    loss_fn = cls()

    def host_read(*args, **kwargs):
        raise AssertionError("a device-to-host read on the hot path")

    for name in HOST_READS:
        monkeypatch.setattr(torch.Tensor, name, host_read)
    loss = loss_fn(z0, z1, labels=labels)
    loss.backward()
    monkeypatch.undo()
    assert torch.isfinite(z0.grad).all() and torch.isfinite(loss.detach())


def test_the_host_read_detector_catches_a_read(monkeypatch):
    """The detector above works: the same loss with validation on reads values (it checks them)."""
    z0, z1 = embeddings()

    def host_read(*args, **kwargs):
        raise AssertionError("read")

    monkeypatch.setattr(torch.Tensor, "__bool__", host_read)
    with pytest.raises(AssertionError, match="read"):
        GCAInfoNCE()(z0, z1)


@pytest.mark.parametrize("general", [True, False])
def test_target_checked_once_and_log_matrix_built_once(general, monkeypatch):
    """The general path (a solver instance) builds the plan's log-matrix once for both divergences of GCA-UOT; the
    fused path (the default solver name) builds none. Both check the target once."""
    z0, z1 = embeddings()
    counts = {"finite": 0, "log_plan": 0}
    finite, log_plan = targets._all_finite, otalign.Problem.log_plan_block

    def counting_finite(x):
        counts["finite"] += 1
        return finite(x)

    def counting_log_plan(self, *args, **kwargs):
        counts["log_plan"] += 1
        return log_plan(self, *args, **kwargs)

    monkeypatch.setattr(targets, "_all_finite", counting_finite)
    monkeypatch.setattr(otalign.Problem, "log_plan_block", counting_log_plan)
    solver = otalign.solvers.get("sinkhorn") if general else "sinkhorn"
    GCAUOT(solver=solver)(z0, z1, target=targets.paired(8))  # r1 KL + r2 robust: two divergences of one plan
    assert counts == {"finite": 1, "log_plan": int(general)}


def test_validation_off_equals_on():
    z0, z1 = embeddings(seed=1)
    on = GCAUOT()(z0, z1)
    otalign.set_validation(False)
    try:
        off = GCAUOT()(z0, z1)
    finally:
        otalign.set_validation(True)
    torch.testing.assert_close(on, off, rtol=0, atol=0)


def test_set_validation_takes_a_bool():
    with pytest.raises(TypeError, match="enabled: expected True or False"):
        otalign.set_validation("no")
    assert otalign.validation_enabled()


@pytest.mark.slow
@pytest.mark.parametrize("make", [GCAInfoNCE, GCAUOT, InfoNCE, GCARINCE, lambda: GCAInfoNCE(solver="proximal")],
                         ids=["GCAInfoNCE", "GCAUOT", "InfoNCE", "GCARINCE", "GCAInfoNCE-proximal"])
def test_compiles_with_fullgraph(make, validation_off):
    """Dynamo captures the whole forward (no graph break) and AOT autograd the backward; values and gradients
    equal eager mode. ``aot_eager`` traces exactly what inductor would compile, without a C++ toolchain. The
    proximal solver's inner steps get their soft-min from the same choice (plain ``torch.logsumexp`` there)."""
    torch._dynamo.reset()
    z0, z1 = embeddings(seed=2)
    loss_fn = make()
    compiled = torch.compile(loss_fn, fullgraph=True, backend="aot_eager")
    value = compiled(z0, z1)
    grads = torch.autograd.grad(value, (z0, z1))
    eager = loss_fn(z0, z1)
    eager_grads = torch.autograd.grad(eager, (z0, z1))
    torch.testing.assert_close(value, eager, rtol=1e-5, atol=1e-6)
    for mine, reference in zip(grads, eager_grads):
        torch.testing.assert_close(mine, reference, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_compiling_with_validation_on_says_to_switch_it_off():
    """With validation on, fullgraph compilation fails with a message that names otalign.set_validation(False)
    (not dynamo's "could not guard on data-dependent expression"); without fullgraph the loss runs, checks
    included, and equals eager mode."""
    torch._dynamo.reset()
    z0, z1 = embeddings(seed=3)
    assert otalign.validation_enabled()
    with pytest.raises(RuntimeError, match=r"set_validation\(False\)"):
        torch.compile(GCAInfoNCE(), fullgraph=True, backend="aot_eager")(z0, z1)
    torch._dynamo.reset()
    value = torch.compile(GCAInfoNCE(), backend="aot_eager")(z0, z1)
    torch.testing.assert_close(value, GCAInfoNCE()(z0, z1))
