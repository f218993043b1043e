"""The fused dense path (default solver name) against the general aligner path (a solver instance), and its
structure cache."""

import math

import pytest
import torch

import otalign
from otalign import targets
from otalign.losses import GCARINCE, GCAUOT, RINCE, AlignmentLoss, GCAInfoNCE, InfoNCE, SupCon, fused
from loss_reference import kernel, kl_per_anchor, pairing, robust_per_anchor, sinkhorn_v

PRESETS = {
    "InfoNCE": lambda **o: InfoNCE(0.4, **o),
    "RINCE": lambda **o: RINCE(0.4, q=0.7, lam=0.05, **o),
    "GCAInfoNCE": lambda **o: GCAInfoNCE(0.4, iterations=6, **o),
    "GCARINCE": lambda **o: GCARINCE(0.4, iterations=6, q=0.6, lam=0.02, **o),
    "GCAUOT": lambda **o: GCAUOT(0.4, iterations=6, rho=0.3, r1=1.0, r2=0.4, **o),
    "columns only": lambda **o: AlignmentLoss("kl", temperature=0.4, iterations=3, rho_a=0.0, rho_b=math.inf, **o),
    "rows relaxed": lambda **o: AlignmentLoss("robust", temperature=0.4, iterations=2, rho_a=0.5, rho_b=0.0, **o),
}


def views(seed, n=6, d=5, n_views=2, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=dtype).requires_grad_() for _ in range(n_views)]


def general(make):
    return make(solver=otalign.solvers.get("sinkhorn"))


def target_kwargs(kind, n, n_views, seed):
    g = torch.Generator().manual_seed(seed)
    if kind == "pairing":
        return {}
    if kind == "labels":
        return {"labels": torch.randint(0, 3, (n,), generator=g)}
    target = torch.rand(n * n_views, n * n_views, generator=g, dtype=torch.float64)
    target[0] = 0  # an anchor without positives
    return {"target": target.fill_diagonal_(0)}


@pytest.mark.parametrize("name", list(PRESETS))
@pytest.mark.parametrize("kind", ["pairing", "labels", "target"])
@pytest.mark.parametrize("n_views", [2, 3])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_equals_general_value_and_gradient(name, kind, n_views, reduction):
    z = views(1, n_views=n_views)
    kwargs = target_kwargs(kind, 6, n_views, seed=2)
    mine = PRESETS[name](reduction=reduction)
    assert mine._fused_terms is not None
    ours = mine(*z, **kwargs)
    theirs = general(lambda **o: PRESETS[name](reduction=reduction, **o))(*z, **kwargs)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-10)
    weights = torch.linspace(0.5, 1.5, ours.numel(), dtype=ours.dtype).reshape(ours.shape)
    for a, b in zip(torch.autograd.grad((ours * weights).sum(), z), torch.autograd.grad((theirs * weights).sum(), z)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["GCAInfoNCE", "GCAUOT"])
def test_fused_float32_close_to_float64_reference(name):
    z64 = views(3, n=16, d=8)
    z32 = [x.detach().float().requires_grad_() for x in z64]
    eps, rho = 0.2, (0.2 if name == "GCAUOT" else math.inf)
    lam = 1.0 if math.isinf(rho) else rho / (rho + eps)
    k = kernel(z64, eps)
    k_tilde = k * sinkhorn_v(k, 10, lam=lam)
    target = pairing(16, 2)
    reference = kl_per_anchor(k_tilde, target)
    if name == "GCAUOT":
        reference = reference + robust_per_anchor(k_tilde, target, 0.6, 0.01)
        loss = GCAUOT(eps, 10, rho=rho)
    else:
        loss = GCAInfoNCE(eps, 10)
    ours = loss(*z32)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), reference.mean(), rtol=0, atol=1e-5)
    g_ours = torch.autograd.grad(ours, z32)
    g_ref = torch.autograd.grad(reference.mean(), z64)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a.double(), b, rtol=0, atol=1e-5)


def test_small_temperature_falls_back_to_the_general_path(monkeypatch):
    """``2 / eps`` beyond the float32 kernel range: the general (log-domain) path runs and gives its value."""
    calls = []
    original = fused.per_anchor
    monkeypatch.setattr(fused, "per_anchor", lambda *a, **k: calls.append(1) or original(*a, **k))
    z = [x.detach().float() for x in views(4)]
    small = GCAInfoNCE(0.02, iterations=5)(*z)
    assert calls == []
    GCAInfoNCE(0.5, iterations=5)(*z)
    assert calls == [1]
    torch.testing.assert_close(small, general(lambda **o: GCAInfoNCE(0.02, iterations=5, **o))(*z), rtol=0, atol=0)


def test_other_solvers_and_compat_use_the_general_path():
    assert GCAInfoNCE(solver="proximal")._fused_terms is None
    assert GCAInfoNCE(solver_options={"kernel": "blocked"})._fused_terms is None
    assert GCAInfoNCE(compat="authors")._fused_terms is None
    assert SupCon()._fused_terms is not None


def test_pairing_is_cached_and_equals_the_public_target():
    first = fused.pairing(5, 3, torch.float64, torch.device("cpu"))
    assert fused.pairing(5, 3, torch.float64, torch.device("cpu")) is first
    assert fused.pairing(5, 3, torch.float32, torch.device("cpu")) is not first
    torch.testing.assert_close(first.target, targets.paired(5, 3, dtype=torch.float64), rtol=0, atol=0)
    assert torch.equal(first.self_pairs, torch.eye(15, dtype=torch.bool))
    assert first.positives.tolist()[0] == [5, 10] and first.positives.tolist()[14] == [4, 9]


def test_half_precision_uses_the_general_path(monkeypatch):
    calls = []
    monkeypatch.setattr(fused, "per_anchor", lambda *a, **k: calls.append(1))
    z = [x.detach().to(torch.bfloat16) for x in views(5)]
    value = InfoNCE()(*z)
    assert calls == [] and torch.isfinite(value)



def test_zero_weights_use_the_general_path():
    assert GCAUOT(r1=0.0, r2=0.0)._fused_terms is None
    z = [x.detach() for x in views(7)]
    assert float(GCAUOT(r1=0.0, r2=0.0)(*z)) == 0.0
