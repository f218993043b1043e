"""SinkhornDivergence against geomloss's SamplesLoss("sinkhorn", backend="tensorized"): values and gradients w.r.t.
positions and weights, float64, random inputs of several sizes, p = 1 and 2, balanced and with reach, debias on and
off, batched inputs. With grad="envelope" (the default) both differentiate one last step of each potential with
the other side held fixed, so the gradients agree to rounding; tolerance 1e-5 as asked, observed at most 1.5e-14
(p = 1) and 1e-15 (p = 2). With a reach, geomloss's gradients are (rho + eps/2) / (rho + eps) times the envelope
gradient (its intended backward weight is never called): compat="geomloss" reproduces them; the default is checked
against geomloss rescaled here and against finite differences in tests/test_measures.py."""

from __future__ import annotations

import pytest
import torch

from otalign.losses import SinkhornDivergence

geomloss = pytest.importorskip("geomloss")

TOL = 1e-5


def _inputs(n: int, m: int, seed: int, batch: int | None = None, unequal_mass: bool = False):
    gen = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    x = torch.rand(lead + (n, 3), generator=gen, dtype=torch.float64)
    y = torch.rand(lead + (m, 3), generator=gen, dtype=torch.float64) * 0.8 + 0.3
    a = torch.rand(lead + (n,), generator=gen, dtype=torch.float64) + 0.2
    b = torch.rand(lead + (m,), generator=gen, dtype=torch.float64) + 0.2
    a, b = a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)
    if unequal_mass:
        b = 1.4 * b
    return [t.requires_grad_() for t in (a, x, b, y)]


def _compare(ours: SinkhornDivergence, theirs, inputs) -> None:
    value = ours(*inputs)
    expected = theirs(*inputs)
    assert value.shape == expected.shape
    torch.testing.assert_close(value, expected, atol=TOL, rtol=0)
    grads = torch.autograd.grad(value.sum(), inputs)
    expected_grads = torch.autograd.grad(expected.sum(), inputs)
    for name, got, want in zip("axby", grads, expected_grads):
        torch.testing.assert_close(got, want, atol=TOL, rtol=0, msg=lambda s: f"gradient w.r.t. {name}: {s}")


@pytest.mark.parametrize("n, m", [(8, 8), (30, 30), (41, 23)])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("reach", [None, 0.6])
@pytest.mark.parametrize("debias", [True, False])
def test_matches_geomloss(n, m, p, reach, debias):
    blur, scaling = 0.08, 0.7
    ours = SinkhornDivergence(p=p, blur=blur, reach=reach, scaling=scaling, debias=debias, compat="geomloss")
    theirs = geomloss.SamplesLoss("sinkhorn", p=p, blur=blur, reach=reach, scaling=scaling, debias=debias,
                                  backend="tensorized")
    _compare(ours, theirs, _inputs(n, m, seed=n + 7 * p, unequal_mass=reach is not None))


@pytest.mark.parametrize("backend", ["tensorized", "online"])
@pytest.mark.parametrize("p", [1, 2])
def test_matches_geomloss_on_both_backends_and_uniform_weights(backend, p):
    ours = SinkhornDivergence(p=p, blur=0.05, backend=backend)
    theirs = geomloss.SamplesLoss("sinkhorn", p=p, blur=0.05, backend="tensorized")
    a, x, b, y = _inputs(50, 35, seed=3)
    torch.testing.assert_close(ours(x, y), theirs(x, y), atol=TOL, rtol=0)
    _compare(ours, theirs, [a, x, b, y])


@pytest.mark.parametrize("reach", [None, 1.0])
def test_batched_matches_geomloss(reach):
    ours = SinkhornDivergence(p=2, blur=0.1, reach=reach, scaling=0.8, compat="geomloss")
    theirs = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.1, reach=reach, scaling=0.8, backend="tensorized")
    _compare(ours, theirs, _inputs(20, 20, seed=5, batch=3, unequal_mass=reach is not None))
    _compare(ours, theirs, _inputs(20, 12, seed=6, batch=2))


@pytest.mark.parametrize("p", [1, 2])
def test_default_unbalanced_gradient_is_geomloss_rescaled(p):
    blur, reach = 0.1, 0.5
    eps, rho = blur ** p, reach ** p
    ours = SinkhornDivergence(p=p, blur=blur, reach=reach, scaling=0.7)
    theirs = geomloss.SamplesLoss("sinkhorn", p=p, blur=blur, reach=reach, scaling=0.7, backend="tensorized")
    inputs = _inputs(20, 14, seed=2, unequal_mass=True)
    value, expected = ours(*inputs), theirs(*inputs)
    torch.testing.assert_close(value, expected, atol=TOL, rtol=0)
    ratio = (rho + eps) / (rho + eps / 2)
    for got, want in zip(torch.autograd.grad(value, inputs), torch.autograd.grad(expected, inputs)):
        torch.testing.assert_close(got, ratio * want, atol=TOL, rtol=0)


def test_two_argument_call_uses_uniform_weights():
    _, x, _, y = _inputs(25, 15, seed=9)
    loss = SinkhornDivergence(blur=0.1)
    uniform = loss(torch.full((25,), 1 / 25, dtype=torch.float64), x, torch.full((15,), 1 / 15, dtype=torch.float64), y)
    torch.testing.assert_close(loss(x, y), uniform, atol=1e-14, rtol=0)


def test_column_weights_are_accepted_as_geomloss_does():
    a, x, b, y = _inputs(10, 12, seed=1)
    loss = SinkhornDivergence(blur=0.1)
    torch.testing.assert_close(loss(a[:, None], x, b[:, None], y), loss(a, x, b, y))


@pytest.mark.parametrize("kwargs, name", [
    ({"p": 3}, "p"), ({"blur": 0.0}, "blur"), ({"scaling": 1.0}, "scaling"), ({"reach": -1.0}, "reach"),
    ({"backend": "keops"}, "backend"), ({"compat": "ott"}, "compat"), ({"method": "exact"}, "method"),
    ({"grad": "implicit"}, "grad"),
])
def test_bad_arguments_are_named(kwargs, name):
    with pytest.raises((ValueError, TypeError), match=name):
        SinkhornDivergence(**kwargs)


def test_wrong_number_of_arguments():
    x = torch.rand(5, 2)
    with pytest.raises(TypeError, match=r"\(x, y\) or \(a, x, b, y\)"):
        SinkhornDivergence()(x, x, x)


@pytest.mark.slow
def test_matches_geomloss_online_keops_backend():
    pytest.importorskip("pykeops")
    a, x, b, y = _inputs(60, 45, seed=4)
    ours = SinkhornDivergence(p=2, blur=0.05, backend="online")
    theirs = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.05, backend="online")
    _compare(ours, theirs, [a, x, b, y])
