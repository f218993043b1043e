"""Fuzz of the public entry points with malformed inputs.

Contract: bad input raises ``ValueError`` or ``TypeError`` whose message starts with the argument's name and a
colon (``"eps: ..."``); never another exception (IndexError, RuntimeError, AttributeError, a FloatingPointError from
inside a solver), and never a silently non-finite result.

Two kinds of tests:

* hypothesis fuzz (derandomised): arbitrary Python values and tensors (every dtype, ranks 0..4, empty sides,
  NaN / inf / negative entries, tensors on the ``meta`` device standing in for a second device) fed to
  ``Problem``, ``solve``, ``Aligner`` and ``divergences``; an independent oracle written here says which inputs
  are valid. Valid inputs must solve to finite potentials and plans, invalid ones must raise as above.
* tables of specific malformed calls to every public entry point: ``Problem``, ``solve`` (solver, max_iter, tol,
  grad, init), ``Aligner``, ``targets.*``, ``divergences.*``, ``costs``, ``PointCloud``,
  ``otalign.softmin.logsumexp`` and ``otalign.metrics``.

The validation-only cases that tests/test_checks.py already pins (NaN cost, bad eps, ...) are not repeated.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import otalign
from otalign import Aligner, DenseCost, PointCloud, Problem, costs, divergences, metrics, solve, targets
from otalign.softmin import logsumexp

pytestmark = pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning")

NAN, INF = math.nan, math.inf
GRAD_MODES = ("unroll", "implicit", "envelope", "detach")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread. On a shared CPU, OpenMP's waiting threads made these tests about ten
    times slower after another test had used the thread pool (measured: 11 s instead of 0.8 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def fuzz(count: int):
    """hypothesis settings: ``count`` examples, no deadline, reproducible, no example database."""
    return settings(max_examples=count, deadline=None, derandomize=True, database=None)


def raises_naming(prefix: str, call) -> Exception:
    """``call()`` raises ValueError or TypeError whose message starts with ``prefix + ":"``; any other exception
    propagates and fails the test."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"{prefix}:"), message
    return info.value


def assert_finite(**tensors) -> None:
    for name, t in tensors.items():
        assert torch.isfinite(t).all(), name


def cost(n: int = 4, m: int = 3, batch: Optional[int] = None, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(((batch,) if batch else ()) + (n, m), generator=gen, dtype=torch.float64)


# ================================================================================================ oracles


def as_real(value) -> Optional[float]:
    """The contract for real-number arguments: Python / NumPy reals and one-element real tensors that hold values
    are accepted (as that number); bools, complex numbers, strings, None, containers and meta tensors are not."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_meta or value.is_complex() or value.dtype == torch.bool:
            return None
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def as_int(value) -> Optional[int]:
    """The contract for integer arguments: Python / NumPy ints and one-element integer tensors (not bools)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_meta or value.is_floating_point() or value.is_complex():
            return None
        return None if value.dtype == torch.bool else int(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def valid_eps(value, cost: Optional[torch.Tensor] = None) -> bool:
    """A finite eps > 0 and, given the cost: 1/eps within the dtype, eps at most max / 4e4 (room for potentials
    ``eps |log mass|`` with log 0 floored at -1e4), and eps at least max |C| times the unit roundoff (below that
    ``(f + g - C) / eps`` is rounding noise)."""
    r = as_real(value)
    if r is None or not math.isfinite(r) or r <= 0:
        return False
    if cost is None:
        return True
    finfo = torch.finfo(cost.dtype)
    return 1 / r <= finfo.max and r <= finfo.max / 4e4 and r >= cost.abs().max().item() * finfo.eps


def valid_rho(value) -> bool:
    r = as_real(value)
    return r is not None and not math.isnan(r) and r >= 0


def valid_tol(value) -> bool:
    r = as_real(value)
    return r is not None and math.isfinite(r) and r >= 0


def valid_max_iter(value) -> bool:
    i = as_int(value)
    return i is not None and i >= 1


def valid_choice(choices):
    return lambda value: isinstance(value, str) and value in choices


def readable(t: torch.Tensor) -> Optional[torch.Tensor]:
    """``t`` in float64 if it is a real tensor with values (not meta, not complex), else None."""
    if t.is_meta or t.is_complex():
        return None
    return t.double()


def valid_cost(t: torch.Tensor) -> bool:
    values = readable(t)
    return (
        values is not None and t.is_floating_point() and t.dim() in (2, 3) and t.numel() > 0
        and bool(torch.isfinite(values).all())
    )


def valid_mass(t: torch.Tensor, size: int, batch: Optional[int]) -> bool:
    values = readable(t)
    shapes = [(size,)] + ([(batch, size)] if batch else [])
    return (
        values is not None and t.is_floating_point() and tuple(t.shape) in shapes
        and bool(torch.isfinite(values).all()) and bool((values >= 0).all()) and bool((values.sum(-1) > 0).all())
    )


def valid_target(t: torch.Tensor, shape: tuple[int, int]) -> bool:
    values = readable(t)
    return (
        values is not None and t.dim() >= 2 and tuple(t.shape[-2:]) == shape
        and bool(torch.isfinite(values).all()) and bool((values >= 0).all())
    )


# ================================================================================================ strategies

TENSOR_DTYPES = (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int32, torch.uint8, torch.bool,
    torch.complex64,
)


@st.composite
def scalar_tensors(draw) -> torch.Tensor:
    value = draw(st.one_of(st.floats(-3, 3), st.sampled_from([NAN, INF, -INF, 0.0, 1.0, 2.0])))
    dtype = draw(st.sampled_from((torch.float64, torch.float32, torch.int64, torch.bool, torch.complex64)))
    shape = draw(st.sampled_from([(), (1,), (2,)]))
    t = torch.full(shape, value, dtype=torch.float64)
    t = t.nan_to_num(0.0, 5.0, -5.0).to(dtype) if dtype in (torch.int64, torch.bool) else t.to(dtype)
    return t.to("meta") if draw(st.booleans()) and draw(st.booleans()) else t


ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(1e-3, 10.0),
    st.complex_numbers(max_magnitude=5),
    st.text(max_size=3),
    st.sampled_from(["0.5", "inf", "nan", "sinkhorn", "product", "uniform", *GRAD_MODES, "kl"]),
    st.lists(st.floats(0, 1), max_size=2),
    scalar_tensors(),
)


@st.composite
def tensors(draw, shapes) -> torch.Tensor:
    """A tensor of any dtype; its shape from ``shapes`` (the right ones) or arbitrary (rank 0..4, sides 0..4);
    possibly one NaN / inf / negative entry; possibly on the meta device."""
    dtype = draw(st.sampled_from(TENSOR_DTYPES))
    if draw(st.booleans()):
        shape = draw(st.sampled_from(shapes))
    else:
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    values = 5 * torch.rand(shape, generator=gen, dtype=torch.float64)
    if values.numel() and draw(st.booleans()):
        index = draw(st.integers(0, values.numel() - 1))
        values.view(-1)[index] = draw(st.sampled_from([NAN, INF, -INF, -1.0, 0.0]))
    if dtype.is_floating_point or dtype.is_complex:
        t = values.to(dtype)
    else:
        t = values.nan_to_num(0.0, 5.0, -1.0).clamp_min(0 if dtype in (torch.uint8, torch.bool) else -1).to(dtype)
    return t.to("meta") if draw(st.integers(0, 5)) == 0 else t


# ================================================================================================ hypothesis fuzz


SCALAR_ORACLES = {"eps": valid_eps, "rho_a": valid_rho, "rho_b": valid_rho, "reference": valid_choice(("product",
                  "uniform"))}


@given(name=st.sampled_from(sorted(SCALAR_ORACLES)), value=ANYTHING)
@fuzz(300)
def test_fuzz_problem_scalars(name, value):
    C = cost()
    valid = valid_eps(value, C) if name == "eps" else SCALAR_ORACLES[name](value)
    if not valid:
        raises_naming(name, lambda: Problem(C, **{name: value}))
        return
    plan = solve(Problem(C, **{name: value}), max_iter=3, tol=0)
    assert_finite(f=plan.f, g=plan.g, matrix=plan.matrix)
    assert not torch.isnan(plan.value).any()


SOLVE_ORACLES = {"max_iter": valid_max_iter, "tol": valid_tol, "grad": valid_choice(GRAD_MODES)}


@given(name=st.sampled_from(sorted(SOLVE_ORACLES)), value=ANYTHING, solver=st.sampled_from(["sinkhorn", "unbalanced"]))
@fuzz(300)
def test_fuzz_solve_controls(name, value, solver):
    problem = Problem(cost(), eps=0.5, rho_a=1.0)
    controls = {"max_iter": 5, "tol": 1e-3, name: value}
    if not SOLVE_ORACLES[name](value):
        raises_naming(name, lambda: solve(problem, solver, **controls))
        return
    plan = solve(problem, solver, **controls)
    assert_finite(f=plan.f, g=plan.g, matrix=plan.matrix, value=plan.value)


@given(name=st.sampled_from(["eps", "rho_a", "rho_b", "reference", "max_iter", "tol", "grad"]), value=ANYTHING)
@fuzz(300)
def test_fuzz_aligner_configuration(name, value):
    """An Aligner rejects a bad configuration when it is built, not at its first call."""
    oracle = {**SCALAR_ORACLES, **SOLVE_ORACLES}[name]
    settings_ = {"eps": 0.5, "max_iter": 5, "tol": 0.0, name: value}
    if not oracle(value):
        raises_naming(name, lambda: Aligner(**settings_))
        return
    aligner = Aligner(**settings_)
    C, target = cost(4, 4), targets.paired(2, dtype=torch.float64)
    if name == "eps" and not valid_eps(value, C):  # resolution depends on the cost: checked at the call
        raises_naming("eps", lambda: aligner(C, target))
        return
    assert_finite(loss=aligner(C, target).loss)


@given(t=tensors([(4, 3), (2, 4, 3), (1, 4, 3)]))
@fuzz(400)
def test_fuzz_cost_tensor(t):
    if not valid_cost(t):
        raises_naming("cost", lambda: Problem(t, eps=0.5))
        return
    plan = solve(Problem(t, eps=0.5), max_iter=5, tol=0)
    expected = torch.float64 if t.dtype == torch.float64 else torch.float32
    assert plan.f.dtype == expected and plan.matrix.dtype == expected
    assert_finite(f=plan.f, g=plan.g, matrix=plan.matrix, value=plan.value)


@given(side=st.sampled_from(["a", "b"]), batch=st.sampled_from([None, 2]),
       t=tensors([(4,), (3,), (2, 4), (2, 3), (1, 4)]))
@fuzz(400)
def test_fuzz_mass_tensor(side, batch, t):
    """Masses are relaxed (rho = 1) so that any valid total is accepted."""
    C = cost(batch=batch)
    size = 4 if side == "a" else 3

    def make():
        return Problem(C, eps=0.5, rho_a=1.0, rho_b=1.0, **{side: t})

    if not valid_mass(t, size, batch):
        raises_naming(side, make)
        return
    plan = solve(make(), max_iter=5, tol=0)
    assert_finite(f=plan.f, g=plan.g, matrix=plan.matrix, value=plan.value)


@given(t=tensors([(4, 4), (3, 4, 4), (4, 3)]), divergence=st.sampled_from(["kl", "robust"]))
@fuzz(400)
def test_fuzz_target_tensor(t, divergence):
    aligner = Aligner(divergence=divergence, eps=0.5, max_iter=3, tol=0)
    if not valid_target(t, (4, 4)):
        raises_naming("target", lambda: aligner(cost(4, 4), t))
        return
    out = aligner(cost(4, 4), t)
    assert_finite(loss=out.loss, per_anchor=out.per_anchor)


@given(x=tensors([(4, 2), (2, 4, 2)]), y=tensors([(3, 2), (2, 3, 2)]))
@fuzz(300)
def test_fuzz_point_clouds(x, y):
    """No oracle here: a point-cloud problem either solves to finite values or fails naming ``x``, ``y`` (or both)
    or ``cost``."""
    try:
        problem = Problem(PointCloud(x, y), eps=0.5)
    except (ValueError, TypeError) as err:
        assert str(err).split(":")[0] in ("x", "y", "x, y", "cost"), str(err)
        return
    plan = solve(problem, max_iter=5, tol=0)
    assert_finite(f=plan.f, g=plan.g, matrix=plan.matrix, value=plan.value)


@given(q=ANYTHING, lam=ANYTHING)
@fuzz(200)
def test_fuzz_robust_parameters(q, lam):
    plan = solve(Problem(cost(4, 4), eps=0.5), max_iter=3, tol=0)
    target = targets.paired(2, dtype=torch.float64)
    r_q, r_lam = as_real(q), as_real(lam)
    if r_q is None or not 1 / torch.finfo(torch.float64).max <= r_q <= 1:
        raises_naming("q", lambda: divergences.robust(plan, target, q=q, lam=lam))
    elif r_lam is None or not math.isfinite(r_lam) or r_lam < 0:
        raises_naming("lam", lambda: divergences.robust(plan, target, q=q, lam=lam))
    else:
        assert not torch.isnan(divergences.robust(plan, target, q=q, lam=lam)).any()


@given(n=ANYTHING, n_views=ANYTHING)
@fuzz(200)
def test_fuzz_paired(n, n_views):
    n_int, views_int = as_int(n), as_int(n_views)
    if n_int is None or n_int < 1:
        raises_naming("n", lambda: targets.paired(n, n_views))
    elif views_int is None or views_int < 2:
        raises_naming("n_views", lambda: targets.paired(n, n_views))
    else:
        assert targets.paired(n, n_views).shape == (n_int * views_int, n_int * views_int)


@given(labels=tensors([(4,), (6,)]))
@fuzz(200)
def test_fuzz_label_targets(labels):
    """Labels may be integers, bools or (finite) floats; complex, empty, non-1-D, meta or non-finite ones are
    rejected, naming ``labels``."""
    values = readable(labels)
    valid = values is not None and labels.dim() == 1 and labels.numel() > 0 and bool(torch.isfinite(values).all())
    if not valid:
        raises_naming("labels", lambda: targets.from_labels(labels))
        return
    target = targets.from_labels(labels)
    expected = (values[:, None] == values[None, :]).float().repeat(2, 2)
    expected.fill_diagonal_(0)
    torch.testing.assert_close(target, expected, rtol=0, atol=0)


# ================================================================================================ tables

meta = torch.device("meta")
C43 = cost()
PAIRED = targets.paired(2, dtype=torch.float64)


def a_plan(n: int = 4, m: int = 4) -> otalign.Plan:
    return solve(Problem(cost(n, m), eps=0.5), max_iter=3, tol=0)


PROBLEM_CASES = {
    "cost on the meta device": ("cost", lambda: Problem(C43.to(meta))),
    "mask on another device": ("mask", lambda: Problem(C43, mask=torch.zeros(4, 3, dtype=torch.bool, device=meta))),
    "int masses": ("a", lambda: Problem(C43, torch.ones(4, dtype=torch.int64), rho_a=1.0)),
    "bool masses": ("b", lambda: Problem(C43, None, torch.ones(3, dtype=torch.bool), rho_b=1.0)),
    "complex masses": ("a", lambda: Problem(C43, torch.ones(4, dtype=torch.complex128) / 4)),
    "empty masses": ("a", lambda: Problem(C43, torch.ones(0, dtype=torch.float64))),
    "inf mass": ("b", lambda: Problem(C43, None, torch.tensor([INF, 1.0, 1.0], dtype=torch.float64), rho_b=1.0)),
    "masses that sum to zero": ("a", lambda: Problem(C43, torch.zeros(4, dtype=torch.float64), rho_a=1.0)),
    "eps given as a bool": ("eps", lambda: Problem(C43, eps=True)),
    "eps given as a string": ("eps", lambda: Problem(C43, eps="0.1")),
    "eps given as a list": ("eps", lambda: Problem(C43, eps=[0.1])),
    "eps on the meta device": ("eps", lambda: Problem(C43, eps=torch.tensor(0.1, device=meta))),
    "eps whose inverse overflows float32": ("eps", lambda: Problem(C43.float(), eps=1e-300)),
    "eps beyond float32": ("eps", lambda: Problem(C43.float(), eps=1e300)),
    "rho given as a bool": ("rho_a", lambda: Problem(C43, rho_a=True)),
    "rho given as a string": ("rho_b", lambda: Problem(C43, rho_b="inf")),
    "rho given as a complex number": ("rho_a", lambda: Problem(C43, rho_a=1j)),
    "rho beyond float32": ("rho_a", lambda: Problem(C43.float(), rho_a=1e300)),
    "reference given as a list": ("reference", lambda: Problem(C43, reference=["product"])),
    "rank-4 cost": ("cost", lambda: Problem(torch.rand(1, 2, 4, 3))),
    "cost given as a string": ("cost", lambda: Problem("C")),
    "cost given as a ragged list": ("cost", lambda: Problem([[0.0, 1.0], [1.0]])),
    "bool cost": ("cost", lambda: Problem(torch.ones(4, 3, dtype=torch.bool))),
    "complex cost": ("cost", lambda: Problem(torch.ones(4, 3, dtype=torch.complex64))),
    "batched mask on a single cost": ("mask", lambda: Problem(C43, mask=torch.zeros(2, 4, 3, dtype=torch.bool))),
}

POINT_CLOUD_CASES = {
    "points of another device": ("y", lambda: Problem(PointCloud(torch.rand(4, 2), torch.rand(3, 2, device=meta)))),
    "points on the meta device": ("x", lambda: Problem(PointCloud(torch.rand(4, 2, device=meta),
                                                                  torch.rand(3, 2, device=meta)))),
    "integer points": ("x", lambda: Problem(PointCloud(torch.ones(4, 2, dtype=torch.int64),
                                                       torch.ones(3, 2, dtype=torch.int64)))),
    "complex points": ("y", lambda: Problem(PointCloud(torch.rand(4, 2), torch.rand(3, 2).to(torch.complex64)))),
    "empty feature dimension": ("x", lambda: Problem(PointCloud(torch.rand(4, 0), torch.rand(3, 0)))),
    "points whose squared norms overflow": ("x", lambda: Problem(PointCloud(torch.full((4, 2), 1e30),
                                                                            torch.rand(3, 2)))),
    "a cost function of the wrong shape": ("cost", lambda: Problem(PointCloud(
        torch.rand(4, 2), torch.rand(3, 2), cost=lambda x, y: (x[..., :, None, :] - y[..., None, :, :]).abs()))),
    "a cost function returning ints": ("cost", lambda: Problem(PointCloud(
        torch.rand(4, 2), torch.rand(3, 2), cost=lambda x, y: torch.ones(x.shape[0], y.shape[0], dtype=torch.long)))),
    "points given as a string": ("x", lambda: PointCloud("0 1", [[1.0, 0.0]])),
    "rank-1 points": ("x, y", lambda: PointCloud(torch.rand(4), torch.rand(4))),
    "mismatched batch": ("x, y", lambda: PointCloud(torch.rand(2, 4, 2), torch.rand(3, 3, 2))),
    "a cost that is not a name": ("cost", lambda: PointCloud(torch.rand(4, 2), torch.rand(3, 2), cost=3)),
    "a mask with a point cloud": ("mask", lambda: Problem(PointCloud(torch.rand(4, 2), torch.rand(3, 2)),
                                                          mask=torch.zeros(4, 3, dtype=torch.bool))),
}

P43 = Problem(C43)
SOLVE_CASES = {
    "unknown solver": ("solver", lambda: solve(P43, "simplex")),
    "solver class instead of instance": ("solver", lambda: solve(P43, otalign.solvers.Sinkhorn)),
    "solver None": ("solver", lambda: solve(P43, None)),
    "max_iter True": ("max_iter", lambda: solve(P43, max_iter=True)),
    "max_iter float": ("max_iter", lambda: solve(P43, max_iter=10.0)),
    "max_iter string": ("max_iter", lambda: solve(P43, max_iter="10")),
    "max_iter on the meta device": ("max_iter", lambda: solve(P43, max_iter=torch.tensor(3, device=meta))),
    "tol None": ("tol", lambda: solve(P43, tol=None)),
    "tol string": ("tol", lambda: solve(P43, tol="1e-3")),
    "tol inf": ("tol", lambda: solve(P43, tol=INF)),
    "tol a vector": ("tol", lambda: solve(P43, tol=torch.tensor([1e-3, 1e-3]))),
    "grad None": ("grad", lambda: solve(P43, grad=None)),
    "grad a list": ("grad", lambda: solve(P43, grad=["unroll"])),
    "implicit with proximal": ("solver", lambda: solve(P43, "proximal", grad="implicit")),
    "init a single tensor": ("init", lambda: solve(P43, init=torch.zeros(4, dtype=torch.float64))),
    "init a string": ("init", lambda: solve(P43, init="warm")),
    "init three tensors": ("init", lambda: solve(P43, init=(torch.zeros(4), torch.zeros(3), torch.zeros(1)))),
    "init lists": ("init", lambda: solve(P43, init=([0.0] * 4, [0.0] * 3))),
    "init integer potentials": ("init", lambda: solve(P43, init=(torch.zeros(4, dtype=torch.long),
                                                                 torch.zeros(3, dtype=torch.long)))),
    "init complex potentials": ("init", lambda: solve(P43, init=(torch.zeros(4, dtype=torch.complex128),
                                                                 torch.zeros(3, dtype=torch.complex128)))),
    "init NaN potentials": ("init", lambda: solve(P43, init=(torch.full((4,), NAN, dtype=torch.float64),
                                                             torch.zeros(3, dtype=torch.float64)))),
    "init inf potentials": ("init", lambda: solve(P43, init=(torch.zeros(4, dtype=torch.float64),
                                                             torch.full((3,), INF, dtype=torch.float64)))),
    "init on another device": ("init", lambda: solve(P43, init=(torch.zeros(4, device=meta),
                                                                torch.zeros(3, device=meta)))),
    "init a plan of another problem": ("init", lambda: solve(P43, init=a_plan(5, 3))),
    "unbalanced init of wrong shape": ("init", lambda: solve(P43, "unbalanced", init=(torch.zeros(3), torch.zeros(3)))),
    "proximal init of wrong type": ("init", lambda: solve(P43, "proximal", init=3)),
    "sinkhorn block_rows 0": ("block_rows", lambda: solve(P43, block_rows=0)),
    "sinkhorn block_rows string": ("block_rows", lambda: solve(P43, block_rows="4")),
    "sinkhorn check_every string": ("check_every", lambda: solve(P43, check_every="2")),
    "sinkhorn scaling_iter float": ("scaling_iter", lambda: solve(P43, eps_scaling=0.5, scaling_iter=1.5)),
    "sinkhorn eps_scaling string": ("eps_scaling", lambda: solve(P43, eps_scaling="0.5")),
    "sinkhorn eps_scaling NaN": ("eps_scaling", lambda: solve(P43, eps_scaling=NAN)),
    "proximal inner_iter float": ("inner_iter", lambda: solve(P43, "proximal", inner_iter=2.5)),
    "proximal inner_iter string": ("inner_iter", lambda: solve(P43, "proximal", inner_iter="10")),
}

ALIGNER_CASES = {
    "solver None": ("solver", lambda: Aligner(None)),
    "solver a number": ("solver", lambda: Aligner(3)),
    "divergence a list": ("divergence", lambda: Aligner(divergence=["kl"])),
    "divergence None": ("divergence", lambda: Aligner(divergence=None)),
    "negative eps": ("eps", lambda: Aligner(eps=-1.0)),
    "NaN rho": ("rho_b", lambda: Aligner(rho_b=NAN)),
    "unknown reference": ("reference", lambda: Aligner(reference="lebesgue")),
    "max_iter 0": ("max_iter", lambda: Aligner(max_iter=0)),
    "negative tol": ("tol", lambda: Aligner(tol=-1.0)),
    "unknown grad": ("grad", lambda: Aligner(grad="autodiff")),
    "target a string": ("target", lambda: Aligner(max_iter=2)(cost(4, 4), "paired")),
    "complex target": ("target", lambda: Aligner(max_iter=2)(cost(4, 4), PAIRED.to(torch.complex64))),
    "target on the meta device": ("target", lambda: Aligner(max_iter=2)(cost(4, 4), PAIRED.to(meta))),
    "target batch that does not broadcast": (
        "target", lambda: Aligner(max_iter=2)(cost(4, 4, batch=2), PAIRED.expand(3, 4, 4))),
    "cost NaN through the aligner": ("cost", lambda: Aligner(max_iter=2)(torch.full((4, 4), NAN), PAIRED)),
    "init of wrong shape through the aligner": (
        "init", lambda: Aligner(max_iter=2)(cost(4, 4), PAIRED, init=(torch.zeros(3), torch.zeros(4)))),
}

TARGET_CASES = {
    "paired n a float": ("n", lambda: targets.paired(1.5)),
    "paired n a string": ("n", lambda: targets.paired("3")),
    "paired n a bool": ("n", lambda: targets.paired(True)),
    "paired n_views a float": ("n_views", lambda: targets.paired(3, 2.5)),
    "from_labels None": ("labels", lambda: targets.from_labels(None)),
    "from_labels a string": ("labels", lambda: targets.from_labels("abc")),
    "from_labels mixed types": ("labels", lambda: targets.from_labels(["a", 1])),
    "from_labels complex": ("labels", lambda: targets.from_labels(torch.tensor([1j, 2j]))),
    "from_labels empty": ("labels", lambda: targets.from_labels(torch.tensor([], dtype=torch.long))),
    "from_labels NaN": ("labels", lambda: targets.from_labels(torch.tensor([0.0, NAN]))),
    "from_labels on the meta device": ("labels", lambda: targets.from_labels(torch.tensor([0.0, 1.0], device=meta))),
    "from_labels n_views 0": ("n_views", lambda: targets.from_labels(torch.tensor([0, 1]), n_views=0)),
    "from_labels n_views negative": ("n_views", lambda: targets.from_labels(torch.tensor([0, 1]), n_views=-1)),
    "domain_prior alpha NaN": ("alpha", lambda: targets.domain_prior(torch.tensor([0, 1]), NAN, 0.0)),
    "domain_prior beta inf": ("beta", lambda: targets.domain_prior(torch.tensor([0, 1]), 0.0, INF)),
    "domain_prior alpha a string": ("alpha", lambda: targets.domain_prior(torch.tensor([0, 1]), "a", 0.0)),
    "domain_prior alpha None": ("alpha", lambda: targets.domain_prior(torch.tensor([0, 1]), None, 0.0)),
    "domain_prior empty domains": ("domains", lambda: targets.domain_prior(torch.tensor([], dtype=torch.long), 1, 0)),
    "domain_prior n_views a float": ("n_views", lambda: targets.domain_prior(torch.tensor([0, 1]), 1, 0, 2.5)),
    "hierarchical levels a tensor": ("levels", lambda: targets.hierarchical(torch.arange(3), [1.0])),
    "hierarchical levels None": ("levels", lambda: targets.hierarchical(None, [1.0])),
    "hierarchical weights None": ("weights", lambda: targets.hierarchical([torch.arange(3)], None)),
    "hierarchical weight NaN": ("weights", lambda: targets.hierarchical([torch.arange(3)], [NAN])),
    "hierarchical weight inf": ("weights", lambda: targets.hierarchical([torch.arange(3)], [INF])),
    "hierarchical weight a string": ("weights", lambda: targets.hierarchical([torch.arange(3)], ["a"])),
    "hierarchical level 2-D": ("levels[0]", lambda: targets.hierarchical([torch.zeros(2, 2, dtype=torch.long)], [1])),
    "hierarchical n_views 0": ("n_views", lambda: targets.hierarchical([torch.arange(3)], [1.0], n_views=0)),
    "weighted target a string": ("target", lambda: targets.weighted("P", torch.ones(1))),
    "weighted target 1-D": ("target", lambda: targets.weighted(torch.ones(4), torch.ones(4))),
    "weighted target 0-D": ("target", lambda: targets.weighted(torch.tensor(1.0), torch.ones(1))),
    "weighted quality a string": ("view_quality", lambda: targets.weighted(PAIRED, "good")),
    "weighted quality complex": ("view_quality", lambda: targets.weighted(PAIRED, torch.ones(4).to(torch.complex64))),
    "weighted quality on another device": ("view_quality", lambda: targets.weighted(PAIRED, torch.ones(4).to(meta))),
    "weighted axis True": ("axis", lambda: targets.weighted(PAIRED, torch.ones(4), axis=True)),
    "check_target complex": ("target", lambda: targets.check_target(PAIRED.to(torch.complex64), (4, 4))),
    "check_target on the meta device": ("target", lambda: targets.check_target(PAIRED.to(meta), (4, 4))),
}

DIVERGENCE_CASES = {
    "kl of None": ("plan", lambda: divergences.kl(None, PAIRED)),
    "kl of a tensor": ("plan", lambda: divergences.kl(cost(4, 4), PAIRED)),
    "robust of None": ("plan", lambda: divergences.robust(None, PAIRED)),
    "log_column_kernel of None": ("plan", lambda: divergences.log_column_kernel(None)),
    "kl complex target": ("target", lambda: divergences.kl(a_plan(), PAIRED.to(torch.complex64))),
    "kl meta target": ("target", lambda: divergences.kl(a_plan(), PAIRED.to(meta))),
    "kl target batch that does not broadcast": (
        "target", lambda: divergences.kl(solve(Problem(cost(4, 4, batch=2)), max_iter=2, tol=0),
                                         PAIRED.expand(3, 4, 4))),
    "robust q inf": ("q", lambda: divergences.robust(a_plan(), PAIRED, q=INF)),
    "robust q above 1": ("q", lambda: divergences.robust(a_plan(), PAIRED, q=2.0)),
    "robust q whose inverse overflows": ("q", lambda: divergences.robust(a_plan(), PAIRED, q=5e-324)),
    "robust q a string": ("q", lambda: divergences.robust(a_plan(), PAIRED, q="a")),
    "robust lam inf": ("lam", lambda: divergences.robust(a_plan(), PAIRED, lam=INF)),
    "robust lam None": ("lam", lambda: divergences.robust(a_plan(), PAIRED, lam=None)),
    "Robust q negative": ("q", lambda: divergences.Robust(q=-1.0)(a_plan(), PAIRED)),
    "Weighted terms None": ("terms", lambda: divergences.Weighted(None)),
    "Weighted weight NaN": ("terms", lambda: divergences.Weighted([(NAN, divergences.kl)])),
    "Weighted weight a string": ("terms", lambda: divergences.Weighted([("a", divergences.kl)])),
    "Weighted divergence not callable": ("terms", lambda: divergences.Weighted([(1.0, "kl")])),
    "Weighted term not a pair": ("terms", lambda: divergences.Weighted([divergences.kl])),
    "get_divergence a list": ("divergence", lambda: divergences.get_divergence(["kl"])),
    "anchor_weights of a string": ("target", lambda: divergences.anchor_weights("P")),
}

COST_CASES = {
    "get_cost None": ("cost", lambda: costs.get_cost(None)),
    "get_cost a dict": ("cost", lambda: costs.get_cost({})),
    "get_cost a list": ("cost", lambda: costs.get_cost(["sqeuclidean"])),
    "pairwise feature dimensions differ": ("x, y", lambda: costs.pairwise(torch.rand(3, 2), torch.rand(2, 3))),
    "pairwise rank-1": ("x", lambda: costs.pairwise(torch.rand(3), torch.rand(2, 3))),
    "pairwise a list": ("y", lambda: costs.pairwise(torch.rand(3, 2), [[0.0, 1.0]])),
}

G43 = DenseCost(C43)
H3 = torch.zeros(3, dtype=torch.float64)
SOFTMIN_CASES = {
    "axis True": ("axis", lambda: logsumexp(G43, H3, 0.1, True)),
    "axis 1.0": ("axis", lambda: logsumexp(G43, H3, 0.1, 1.0)),
    "axis -1": ("axis", lambda: logsumexp(G43, H3, 0.1, -1)),
    "axis a string": ("axis", lambda: logsumexp(G43, H3, 0.1, "rows")),
    "variant unknown": ("variant", lambda: logsumexp(G43, H3, 0.1, 1, variant="fast")),
    "variant None": ("variant", lambda: logsumexp(G43, H3, 0.1, 1, variant=None)),
    "geometry a tensor": ("geometry", lambda: logsumexp(C43, H3, 0.1, 1)),
    "geometry None": ("geometry", lambda: logsumexp(None, H3, 0.1, 1)),
    "h of the other side": ("h", lambda: logsumexp(G43, torch.zeros(4, dtype=torch.float64), 0.1, 1)),
    "h for axis 0 of the wrong side": ("h", lambda: logsumexp(G43, H3, 0.1, 0)),
    "h batched on a single cost": ("h", lambda: logsumexp(G43, torch.zeros(2, 3, dtype=torch.float64), 0.1, 1)),
    "h a list": ("h", lambda: logsumexp(G43, [0.0] * 3, 0.1, 1)),
    "h integer": ("h", lambda: logsumexp(G43, torch.zeros(3, dtype=torch.long), 0.1, 1)),
    "h on another device": ("h", lambda: logsumexp(G43, H3.to(meta), 0.1, 1)),
    "eps 0": ("eps", lambda: logsumexp(G43, H3, 0.0, 1)),
    "eps negative": ("eps", lambda: logsumexp(G43, H3, -1.0, 1)),
    "eps NaN": ("eps", lambda: logsumexp(G43, H3, NAN, 1)),
    "eps a string": ("eps", lambda: logsumexp(G43, H3, "a", 1)),
    "hint of the wrong shape": ("hint", lambda: logsumexp(G43, H3, 0.1, 1, hint=torch.zeros(2, dtype=torch.float64))),
    "hint a list": ("hint", lambda: logsumexp(G43, H3, 0.1, 1, hint=[0.0] * 4)),
    "block_rows 0": ("block_rows", lambda: logsumexp(G43, H3, 0.1, 1, block_rows=0)),
    "block_rows a string": ("block_rows", lambda: logsumexp(G43, H3, 0.1, 1, block_rows="a")),
}

FEATURES = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
LABELS = torch.arange(10) % 2
TEST_FEATURES, TEST_LABELS = FEATURES[:6].clone(), LABELS[:6].clone()
WITH_NAN = FEATURES.clone()
WITH_NAN[0, 0] = NAN
METRIC_CASES = {
    "probe complex features": ("train_features", lambda: metrics.linear_probe(
        FEATURES.to(torch.complex64), LABELS, TEST_FEATURES, TEST_LABELS)),
    "probe features on the meta device": ("test_features", lambda: metrics.linear_probe(
        FEATURES, LABELS, TEST_FEATURES.to(meta), TEST_LABELS)),
    "probe labels on the meta device": ("train_labels", lambda: metrics.linear_probe(
        FEATURES, LABELS.to(meta), TEST_FEATURES, TEST_LABELS)),
    "probe weight_decay NaN": ("weight_decay", lambda: metrics.linear_probe(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, weight_decay=NAN)),
    "probe weight_decay a string": ("weight_decay", lambda: metrics.linear_probe(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, weight_decay="a")),
    "probe max_iter 0": ("max_iter", lambda: metrics.linear_probe(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, max_iter=0)),
    "probe max_iter a string": ("max_iter", lambda: metrics.linear_probe(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, max_iter="a")),
    "probe seed a float": ("seed", lambda: metrics.linear_probe(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, labels_per_class=1, seed=0.5)),
    "knn labels shorter than the features": ("train_labels", lambda: metrics.knn_accuracy(
        FEATURES, LABELS[:9], TEST_FEATURES, TEST_LABELS)),
    "knn NaN features": ("train_features", lambda: metrics.knn_accuracy(
        WITH_NAN, LABELS, TEST_FEATURES, TEST_LABELS)),
    "knn k True": ("k", lambda: metrics.knn_accuracy(FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, k=True)),
    "knn temperature a string": ("temperature", lambda: metrics.knn_accuracy(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, temperature="a")),
    "knn block_size 0": ("block_size", lambda: metrics.knn_accuracy(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, block_size=0)),
    "knn block_size negative": ("block_size", lambda: metrics.knn_accuracy(
        FEATURES, LABELS, TEST_FEATURES, TEST_LABELS, block_size=-1)),
    "knn features on the meta device": ("test_features", lambda: metrics.knn_accuracy(
        FEATURES, LABELS, TEST_FEATURES.to(meta), TEST_LABELS)),
    "alignment mismatched lengths": ("z0, z1", lambda: metrics.alignment(FEATURES, FEATURES[:9])),
    "alignment NaN features": ("z0", lambda: metrics.alignment(WITH_NAN, FEATURES)),
    "alignment alpha inf": ("alpha", lambda: metrics.alignment(FEATURES, FEATURES, alpha=INF)),
    "alignment alpha a string": ("alpha", lambda: metrics.alignment(FEATURES, FEATURES, alpha="a")),
    "alignment complex features": ("z0", lambda: metrics.alignment(FEATURES.to(torch.complex64), FEATURES)),
    "uniformity NaN features": ("z", lambda: metrics.uniformity(WITH_NAN)),
    "uniformity t inf": ("t", lambda: metrics.uniformity(FEATURES, t=INF)),
    "uniformity t a string": ("t", lambda: metrics.uniformity(FEATURES, t="a")),
    "uniformity block_size 0": ("block_size", lambda: metrics.uniformity(FEATURES, block_size=0)),
    "wdm mismatched lengths": ("z0, z1", lambda: metrics.wdm(FEATURES, FEATURES[:9])),
    "wdm NaN features": ("z1", lambda: metrics.wdm(FEATURES, WITH_NAN)),
    "wdm seed a string": ("seed", lambda: metrics.wdm(FEATURES, FEATURES, seed="a")),
    "wdm seed a float": ("seed", lambda: metrics.wdm(FEATURES, FEATURES, seed=1.5)),
    "wdm eps NaN": ("eps", lambda: metrics.wdm(FEATURES, FEATURES, eps=NAN)),
    "wdm tol negative": ("tol", lambda: metrics.wdm(FEATURES, FEATURES, tol=-1.0)),
    "wdm features on the meta device": ("z1", lambda: metrics.wdm(FEATURES, FEATURES.to(meta))),
    "sample_per_class a string": ("labels", lambda: metrics.sample_per_class("01", 1)),
    "sample_per_class NaN labels": ("labels", lambda: metrics.sample_per_class(torch.tensor([0.0, float("nan")]), 1)),
    "sample_per_class 2-D labels": ("labels", lambda: metrics.sample_per_class(torch.zeros(2, 2, dtype=torch.long), 1)),
}

TABLES = {
    "problem": PROBLEM_CASES,
    "point_cloud": POINT_CLOUD_CASES,
    "solve": SOLVE_CASES,
    "aligner": ALIGNER_CASES,
    "targets": TARGET_CASES,
    "divergences": DIVERGENCE_CASES,
    "costs": COST_CASES,
    "softmin": SOFTMIN_CASES,
    "metrics": METRIC_CASES,
}
CASES = [
    pytest.param(name, call, id=f"{table}: {label}")
    for table, cases in TABLES.items()
    for label, (name, call) in cases.items()
]


@pytest.mark.parametrize("name, call", CASES)
def test_malformed_call_raises_naming_the_argument(name, call):
    raises_naming(name, call)


def test_accepted_conversions_give_the_same_result():
    """What validation accepts beyond float tensors means what it says: an integer target is the float one, a
    one-element tensor eps is that number, a 0-d integer tensor max_iter is that count, float16 masses are
    promoted."""
    C = cost(4, 4)
    plan = solve(Problem(C, eps=0.5), max_iter=4, tol=0)
    same = solve(Problem(C, eps=torch.tensor([0.5])), max_iter=torch.tensor(4), tol=0)
    torch.testing.assert_close(same.matrix, plan.matrix, rtol=0, atol=0)
    aligner = Aligner(eps=0.5, max_iter=4, tol=0)
    torch.testing.assert_close(aligner(C, PAIRED.long()).loss, aligner(C, PAIRED).loss, rtol=0, atol=0)
    half = Problem(C.float(), torch.full((4,), 0.25, dtype=torch.float16), rho_a=1.0)
    assert half.a.dtype == torch.float32 and torch.equal(half.a, torch.full((4,), 0.25))


def test_eps_resolution_ignores_forbidden_pairs():
    """The lower bound on eps (max |C| times the unit roundoff) is taken over the allowed pairs: a huge
    placeholder on masked pairs does not reject a good eps, while the same value on an allowed pair does."""
    C = cost(4, 4)
    C.fill_diagonal_(1e14)  # 1e14 * 2.2e-16 = 0.022 > eps
    mask = torch.eye(4, dtype=torch.bool)
    plan = solve(Problem(C, eps=1e-2, mask=mask), max_iter=5, tol=0)
    assert_finite(f=plan.f, g=plan.g, matrix=plan.matrix)
    assert (plan.matrix.diagonal() == 0).all()
    raises_naming("eps", lambda: Problem(C, eps=1e-2))
