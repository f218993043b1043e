"""Shared fixtures: small seeded float64 problems.

Conventions used across the suite: rows are the source side (masses ``a``, potential ``f``), columns the target
side (``b``, ``g``); ``eps`` is in cost units.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

DTYPE = torch.float64


@dataclass
class Data:
    """A small problem's raw inputs: cost ``C (n, m)``, masses ``a (n,)``, ``b (m,)`` (each summing to 1) and the
    point clouds ``x (n, 2)``, ``y (m, 2)`` the cost was built from (``C = |x - y|^2``, scaled to max 1)."""

    C: torch.Tensor
    a: torch.Tensor
    b: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor


def make_data(n: int, m: int, seed: int, batch: int | None = None) -> Data:
    """Seeded random problem; ``batch`` adds a leading batch dimension to every tensor."""
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.randn(lead + (n, 2), generator=gen, dtype=DTYPE)
    y = torch.randn(lead + (m, 2), generator=gen, dtype=DTYPE) * 0.8 + 0.3
    C = torch.cdist(x, y) ** 2
    C = C / C.amax((-1, -2), keepdim=True)
    a = torch.rand(lead + (n,), generator=gen, dtype=DTYPE) + 0.5
    b = torch.rand(lead + (m,), generator=gen, dtype=DTYPE) + 0.5
    return Data(C, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True), x, y)


@pytest.fixture
def data() -> Data:
    """An 8 x 6 problem."""
    return make_data(8, 6, seed=0)


@pytest.fixture
def batch_data() -> Data:
    """A batch of 3 problems of size 7 x 5."""
    return make_data(7, 5, seed=1, batch=3)


@pytest.fixture
def make():
    """The factory :func:`make_data`, for tests that need other sizes or seeds."""
    return make_data


def generalized_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``sum p log(p / q) - p + q`` over all entries (``0 log 0 = 0``), written independently of otalign."""
    p, q = p.flatten(), q.flatten()
    positive = p > 0
    return (p[positive] * (p[positive] / q[positive]).log()).sum() - p.sum() + q.sum()


def primal_objective(P, C, a, b, eps, rho_a, rho_b, reference) -> torch.Tensor:
    """``<C, P> + eps KL(P | R) + rho_a KL(P 1 | a) + rho_b KL(P^T 1 | b)`` for a single ``(n, m)`` plan; a hard
    (inf) or free (0) side adds nothing. ``R = a b^T`` (``"product"``) or ``1`` (``"uniform"``)."""
    R = torch.outer(a, b) if reference == "product" else torch.ones_like(P)
    value = (C * P).sum() + eps * generalized_kl(P, R)
    for rho, marginal, mass in ((rho_a, P.sum(1), a), (rho_b, P.sum(0), b)):
        if 0 < rho < float("inf"):
            value = value + rho * generalized_kl(marginal, mass)
    return value


@pytest.fixture
def primal():
    """The independent primal objective :func:`primal_objective`."""
    return primal_objective


@pytest.fixture
def one_torch_thread():
    """Tiny tensors: one intra-op thread is fastest, and stays fast on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def registry_cleanup():
    """Solvers a test registers are gone after it (the registry is process-wide)."""
    from otalign.registry import _REGISTRY

    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def pytest_collection(session) -> None:
    """Say what the silent part of a run is: collecting imports torch, POT, torchvision and hypothesis once
    (about 20 s of wall time on an idle 2-core machine, minutes on a loaded one) before the first test runs."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("collecting the suite (imports torch, POT, torchvision and hypothesis: ~20 s on an idle "
                            "2-core machine, longer on a loaded one) ...")
