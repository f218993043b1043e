"""A batched solve equals the same problems solved one by one, for every registered solver that accepts batches
(each element's plan, value and convergence flag), whatever the other elements of the batch are."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from otalign import PointCloud, Problem, solve
from otalign.stacked_plan import StackedPlan

pytest.importorskip("ot")
pytestmark = pytest.mark.filterwarnings("ignore::otalign.solver.ConvergenceWarning")
DTYPE = torch.float64


def random_batch(batch: int, n: int, m: int, seed: int, log10_scales: list[float]):
    """Costs ``(B, n, m)`` uniform in [0, 1) times ``10 ** log10_scales[i]`` for element i; random masses of
    equal total (balanced)."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.tensor([10.0 ** s for s in log10_scales], dtype=DTYPE).reshape(batch, 1, 1)
    C = torch.rand(batch, n, m, generator=gen, dtype=DTYPE) * scales
    a = torch.rand(batch, n, generator=gen, dtype=DTYPE) + 0.2
    b = torch.rand(batch, m, generator=gen, dtype=DTYPE) + 0.2
    return C, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)


def assert_batch_equals_loop(batched_problem, one_problem, solver, atol, **options):
    """Element ``i`` of the batched plan against the plan of problem ``i`` alone: plan entries within ``atol``, the
    values within ``atol`` relative, the same convergence flag when the batch converged."""
    plan = solve(batched_problem, solver, **options)
    matrices = plan.matrix
    for i in range(matrices.shape[0]):
        alone = solve(one_problem(i), solver, **options)
        torch.testing.assert_close(matrices[i], alone.matrix, rtol=0, atol=atol)
        assert float(plan.value_linear[i]) == pytest.approx(float(alone.value_linear), rel=atol, abs=atol)
        if plan.converged:
            assert alone.converged
    return plan


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(2, 4),
    n=st.integers(2, 9),
    m=st.integers(2, 9),
    seed=st.integers(0, 2**16),
    scales=st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4),
    tol=st.sampled_from([0.0, 1e-8]),
)
def test_proximal_batch_equals_loop(batch, n, m, seed, scales, tol):
    """Property: costs scaled by factors between 1e-2 and 1e2 within one batch; each element follows its own
    eps / k schedule, so its plan is the one it gets alone (to 1e-9 per entry: a group of elements at the same
    stage may run a sweep more than an element alone, which moves the plan by less than ``tol``)."""
    C, a, b = random_batch(batch, n, m, seed, scales[:batch])
    assert_batch_equals_loop(
        Problem(C, a, b, eps=0.1), lambda i: Problem(C[i], a[i], b[i], eps=0.1), "proximal", atol=1e-9,
        max_iter=60, tol=tol, inner_iter=5,
    )


def test_proximal_scaled_batch_regression():
    """Issue reproducer: costs (2, 40, 30) scaled x1 and x100. Element 0's <C, P> batched was 0.0732 against
    0.0451 alone (one eps / k schedule for the batch); now each element's plan is its own, exactly."""
    gen = torch.Generator().manual_seed(0)
    C = torch.rand(2, 40, 30, generator=gen, dtype=DTYPE) * torch.tensor([1.0, 100.0], dtype=DTYPE).view(2, 1, 1)
    plan = assert_batch_equals_loop(Problem(C, eps=0.1), lambda i: Problem(C[i], eps=0.1), "proximal", atol=1e-12,
                                    max_iter=100, tol=1e-6)
    assert isinstance(plan, StackedPlan)  # the two elements ended at different eps / k
    assert plan.parts[0].problem.eps != plan.parts[1].problem.eps


@pytest.mark.parametrize("grad", ["detach", "envelope"])
def test_proximal_attaches_at_the_last_eps(grad):
    """Without a graph the plan was rebuilt at the problem's eps instead of the last outer step's eps / k (its
    mass was 0.42 instead of 1): batched or not, ``grad`` does not change the plan."""
    C, a, b = random_batch(2, 8, 6, seed=1, log10_scales=[0.0, 2.0])
    for problem in (Problem(C, a, b, eps=0.1), Problem(C[1], a[1], b[1], eps=0.1)):
        reference = solve(problem, "proximal", max_iter=40, tol=1e-7)
        plan = solve(problem, "proximal", max_iter=40, tol=1e-7, grad=grad)
        torch.testing.assert_close(plan.matrix, reference.matrix, rtol=0, atol=1e-12)
        if grad == "detach":  # (envelope's value is the dual at the potentials)
            torch.testing.assert_close(plan.value, reference.value, rtol=1e-12, atol=0)


def _dense(C, a, b, rho):
    return lambda i=None: Problem(C if i is None else C[i], a if i is None else a[i], b if i is None else b[i],
                                  eps=0.1, rho_a=rho, rho_b=rho)


SOLVERS = [
    ("sinkhorn", {}, (math.inf, 1.0)),
    ("unbalanced", {}, (math.inf, 1.0)),
    ("proximal", {"inner_iter": 5, "max_iter": 40}, (math.inf, 1.0)),
    ("pot", {}, (math.inf, 1.0)),
    pytest.param("lowrank", {"rank": 2, "max_iter": 30}, (math.inf,), marks=pytest.mark.slow, id="lowrank"),
]


@pytest.mark.parametrize("name, options, rhos", SOLVERS, ids=["sinkhorn", "unbalanced", "proximal", "pot", "lowrank"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_every_batching_solver_equals_loop(name, options, rhos, seed):
    """Per solver accepting batches: B = 2..4, costs scaled by 10^[-2, 2], balanced and relaxed where supported.
    Stated tolerance: plan entries within 1e-7 at tol = 1e-10 (a batch may run a few more sweeps than an element
    alone; the Sinkhorn-type solvers stop the batch once every element meets tol)."""
    gen = torch.Generator().manual_seed(100 + seed)
    batch = 2 + seed
    n, m = (int(x) for x in torch.randint(3, 10, (2,), generator=gen))
    scales = (torch.rand(batch, generator=gen) * 4 - 2).tolist()
    C, a, b = random_batch(batch, n, m, seed, scales)
    for rho in rhos:
        make = _dense(C, a, b, rho)
        settings = {"max_iter": 3000, "tol": 1e-10, **options}
        assert_batch_equals_loop(make(), make, name, atol=1e-7, **settings)


def test_geomloss_batch_equals_loop():
    """The point-cloud backend on a batch of clouds of different spreads."""
    pytest.importorskip("geomloss")
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(3, 7, 2, generator=gen, dtype=DTYPE) * torch.tensor([0.3, 1.0, 3.0], dtype=DTYPE).view(3, 1, 1)
    y = torch.randn(3, 6, 2, generator=gen, dtype=DTYPE)
    assert_batch_equals_loop(
        Problem(PointCloud(x, y, cost="half_sqeuclidean"), eps=0.5),
        lambda i: Problem(PointCloud(x[i], y[i], cost="half_sqeuclidean"), eps=0.5), "geomloss", atol=1e-7,
    )
