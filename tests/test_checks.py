"""Bad input raises ValueError / TypeError naming the argument; non-convergence warns; nothing is NaN silently.

(Targets of the wrong shape are tested in test_aligner.py and test_divergences.py.)
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import otalign
from otalign import Aligner, ConvergenceWarning, PointCloud, Problem, divergences, metrics, solve, targets
from otalign.losses import GCAInfoNCE
from otalign.checks import as_tensor


def with_entry(C, value):
    C = C.clone()
    C[1, 2] = value
    return C


@pytest.mark.parametrize("value, what", [(math.nan, "NaN"), (math.inf, "inf"), (-math.inf, "inf")])
def test_non_finite_cost(data, value, what):
    with pytest.raises(ValueError, match=rf"^cost:.*{what}"):
        Problem(with_entry(data.C, value))


@pytest.mark.parametrize("side", ["a", "b"])
def test_nan_mass(data, side):
    masses = {"a": data.a.clone(), "b": data.b.clone()}
    masses[side][0] = math.nan
    with pytest.raises(ValueError, match=rf"^{side}:.*NaN"):
        Problem(data.C, masses["a"], masses["b"], rho_a=1.0, rho_b=1.0)


@pytest.mark.parametrize("side", ["a", "b"])
def test_negative_mass(data, side):
    masses = {"a": data.a.clone(), "b": data.b.clone()}
    masses[side][0] = -0.01
    with pytest.raises(ValueError, match=rf"^{side}:.*non-negative"):
        Problem(data.C, masses["a"], masses["b"], rho_a=1.0, rho_b=1.0)


def test_mass_shape_mismatch(data):
    with pytest.raises(ValueError, match=r"^a:.*shape"):
        Problem(data.C, data.b, data.b)
    with pytest.raises(ValueError, match=r"^b:.*shape"):
        Problem(data.C, data.a, data.a)
    with pytest.raises(ValueError, match=r"^a:.*shape"):
        Problem(data.C, data.a[None].expand(2, -1), data.b)


def test_mass_not_a_tensor(data):
    with pytest.raises(TypeError, match=r"^a:"):
        Problem(data.C, "uniform", data.b)


@pytest.mark.parametrize("eps", [0.0, -0.1, math.nan, math.inf])
def test_bad_eps(data, eps):
    with pytest.raises(ValueError, match=r"^eps:"):
        Problem(data.C, eps=eps)


def test_eps_of_wrong_type(data):
    with pytest.raises(TypeError, match=r"^eps:"):
        Problem(data.C, eps="small")
    with pytest.raises(ValueError, match=r"^eps:.*scalar"):
        Problem(data.C, eps=torch.tensor([0.1, 0.2]))


@pytest.mark.parametrize("name", ["rho_a", "rho_b"])
@pytest.mark.parametrize("rho", [-1.0, math.nan])
def test_bad_rho(data, name, rho):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        Problem(data.C, **{name: rho})


def test_unequal_total_masses_in_balanced_problem(data):
    with pytest.raises(ValueError, match=r"^a, b:.*equal total masses"):
        Problem(data.C, data.a, 2 * data.b)
    # fine as soon as one side is relaxed (soft or free)
    for rho in ({"rho_a": 1.0}, {"rho_b": 0.3}, {"rho_b": 0.0}):
        plan = solve(Problem(data.C, data.a, 2 * data.b, **rho), tol=1e-9)
        assert plan.converged and torch.isfinite(plan.matrix).all()


def test_unknown_reference(data):
    with pytest.raises(ValueError, match=r"^reference:"):
        Problem(data.C, reference="lebesgue")


def test_integer_cost(data):
    with pytest.raises(TypeError, match=r"^cost:.*floating"):
        Problem(torch.ones(4, 3, dtype=torch.int64))


def test_empty_cost():
    with pytest.raises(ValueError, match=r"^cost:.*empty"):
        Problem(torch.zeros(0, 3))


def test_cost_of_wrong_rank_or_type():
    with pytest.raises(ValueError, match=r"^cost:.*shape"):
        Problem(torch.rand(5))
    with pytest.raises(TypeError, match=r"^cost:"):
        Problem({"C": [[0.0, 1.0], [1.0, 0.0]]})
    with pytest.raises(TypeError, match=r"^cost: expected a floating-point tensor"):
        Problem([[0, 1], [1, 0]])  # converted (a list is accepted), then rejected like an integer tensor


def test_mask_forbidding_a_whole_row_or_column(data):
    mask = torch.zeros(8, 6, dtype=torch.bool)
    mask[3] = True
    with pytest.raises(ValueError, match=r"^mask:"):
        Problem(data.C, mask=mask)
    column = torch.zeros(8, 6, dtype=torch.bool)
    column[:, 2] = True
    with pytest.raises(ValueError, match=r"^mask:"):
        Problem(data.C, mask=column)


def test_mask_of_wrong_type_or_shape(data):
    with pytest.raises(TypeError, match=r"^mask:"):
        Problem(data.C, mask=torch.zeros(8, 6))
    with pytest.raises(ValueError, match=r"^mask:.*broadcast"):
        Problem(data.C, mask=torch.zeros(8, 5, dtype=torch.bool))


def test_pointcloud_shapes():
    with pytest.raises(ValueError, match=r"^x, y:"):
        PointCloud(torch.rand(4, 2), torch.rand(3, 3))
    with pytest.raises(ValueError, match=r"^cost:"):
        PointCloud(torch.rand(4, 2), torch.rand(3, 2), cost="manhattan")
    with pytest.raises(ValueError, match=r"^x:.*NaN"):
        Problem(PointCloud(torch.full((4, 2), math.nan), torch.rand(3, 2)))


def test_unknown_solver_and_options(data):
    problem = Problem(data.C)
    with pytest.raises(ValueError, match=r"^solver:.*unknown"):
        solve(problem, "simplex")
    with pytest.raises(ValueError, match=r"^options: the .sinkhorn. solver has no option.*warp_speed"):
        solve(problem, "sinkhorn", warp_speed=True)
    with pytest.raises(TypeError, match=r"^solver:"):
        solve(problem, 42)
    with pytest.raises(ValueError, match=r"^options"):
        solve(problem, otalign.solvers.Sinkhorn(), eps_scaling=0.5)
    with pytest.raises(TypeError, match=r"^problem:"):
        solve(data.C)


def test_unknown_grad_mode(data):
    with pytest.raises(ValueError, match=r"^grad:"):
        solve(Problem(data.C), grad="autodiff")


@pytest.mark.parametrize(
    "kwargs, name", [({"max_iter": 0}, "max_iter"), ({"tol": -1.0}, "tol"), ({"tol": math.nan}, "tol")]
)
def test_bad_iteration_controls(data, kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}:"):
        solve(Problem(data.C), **kwargs)


def test_bad_solver_options():
    with pytest.raises(ValueError, match=r"^eps_scaling:"):
        otalign.solvers.Sinkhorn(eps_scaling=1.5)
    with pytest.raises(ValueError, match=r"^inner_iter:"):
        otalign.solvers.ProximalPoint(inner_iter=0)
    with pytest.raises(ValueError, match=r"^method:"):
        otalign.solvers.POTSolver(method="lbfgs")


def test_non_convergence_warns_and_is_reported(data):
    problem = Problem(data.C, data.a, data.b, eps=0.01)
    with pytest.warns(ConvergenceWarning, match="no convergence"):
        plan = solve(problem, tol=1e-9, max_iter=3)
    assert plan.converged is False and plan.iterations == 3
    assert plan.error is not None and plan.error > 1e-9
    assert torch.isfinite(plan.f).all() and torch.isfinite(plan.g).all() and torch.isfinite(plan.matrix).all()


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced"])
def test_hard_problem_is_finite_or_warns(solver):
    """A float32 cost spanning 1000 units at eps = 1e-3 (exp(-C/eps) underflows everywhere): a short solve warns
    that it did not converge and returns finite potentials and plan, never NaN."""
    gen = torch.Generator().manual_seed(0)
    C = 1000 * torch.rand(30, 20, generator=gen)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = solve(Problem(C, eps=1e-3, rho_a=1.0 if solver == "unbalanced" else math.inf), solver,
                     tol=1e-6, max_iter=20)
    assert plan.converged or any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for t in (plan.f, plan.g, plan.matrix, plan.value):
        assert not torch.isnan(t).any()
    assert torch.isfinite(plan.matrix).all()


# ------------------------------------------------------------------ one conversion rule: tensors, arrays, lists
def test_as_tensor_converts_arrays_and_lists_keeping_the_dtype():
    assert as_tensor("x", np.array([0, 1, 1])).dtype == torch.int64
    assert torch.equal(as_tensor("x", [[0.5, 1.0], [2.0, 3.0]]), torch.tensor([[0.5, 1.0], [2.0, 3.0]]))
    assert as_tensor("x", np.zeros((2, 2), dtype=np.float32)).dtype == torch.float32
    t = torch.ones(3)
    assert as_tensor("x", t) is t


@pytest.mark.parametrize("value", [None, "abc", {"a": 1}, [[1.0], [1.0, 2.0]], np.array([object(), 1], dtype=object)])
def test_as_tensor_names_the_argument(value):
    with pytest.raises(TypeError, match=r"^target: expected (a torch.Tensor, a NumPy array, a list of numbers|numbers)"):
        as_tensor("target", value)


def test_problem_accepts_arrays_for_cost_masses_and_mask(data):
    mask = torch.zeros_like(data.C, dtype=torch.bool)
    mask[0, 0] = True
    plan = solve(Problem(data.C, data.a, data.b, eps=0.1, mask=mask), max_iter=20, tol=0)
    same = solve(Problem(data.C.numpy(), data.a.numpy(), data.b.tolist(), eps=0.1, mask=mask.numpy()),
                 max_iter=20, tol=0)
    torch.testing.assert_close(same.matrix, plan.matrix, rtol=0, atol=0)


def test_targets_accept_arrays_and_lists():
    y = torch.tensor([0, 1, 1, 2])
    assert torch.equal(targets.from_labels(y.numpy()), targets.from_labels(y))
    assert torch.equal(targets.domain_prior(y.tolist(), 0.5, 0.1), targets.domain_prior(y, 0.5, 0.1))
    levels = [torch.arange(4), y]
    assert torch.equal(targets.hierarchical([lv.numpy() for lv in levels], [1.0, 0.5]),
                       targets.hierarchical(levels, [1.0, 0.5]))
    P, quality = targets.paired(4), torch.rand(8)
    assert torch.equal(targets.weighted(P.numpy(), quality.numpy()), targets.weighted(P, quality))
    with pytest.raises(TypeError, match=r"^view_quality:"):
        targets.weighted(P, "high")


def test_losses_accept_array_labels_and_targets():
    z0, z1 = torch.randn(4, 8, dtype=torch.float64), torch.randn(4, 8, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 1])
    loss = GCAInfoNCE(iterations=3)
    torch.testing.assert_close(loss(z0, z1, labels=y.numpy()), loss(z0, z1, labels=y), rtol=0, atol=0)
    P = targets.from_labels(y)
    torch.testing.assert_close(loss(z0, z1, target=P.numpy()), loss(z0, z1, target=P), rtol=0, atol=0)
    torch.testing.assert_close(loss(z0, z1, target=P.tolist()), loss(z0, z1, target=P), rtol=0, atol=0)
    with pytest.raises(TypeError, match=r"^target:"):
        loss(z0, z1, target="labels")
    with pytest.raises(TypeError, match=r"^labels:"):
        loss(z0, z1, labels={"a": 0})


def test_aligner_and_divergences_accept_array_targets(data):
    target = torch.rand_like(data.C)
    aligner = Aligner(eps=0.5, max_iter=5, tol=0)
    torch.testing.assert_close(aligner(data.C.numpy(), target.numpy()).loss, aligner(data.C, target).loss,
                               rtol=0, atol=0)
    plan = solve(Problem(data.C, data.a, data.b, eps=0.5), max_iter=5, tol=0)
    for divergence in (divergences.kl, divergences.robust):
        torch.testing.assert_close(divergence(plan, target.numpy()), divergence(plan, target), rtol=0, atol=0)
    torch.testing.assert_close(divergences.anchor_weights(target.numpy()), divergences.anchor_weights(target))


def test_metrics_accept_arrays():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 3, generator=gen), torch.arange(40) % 2
    assert metrics.knn_accuracy(x.numpy(), y.numpy(), x.numpy(), y.tolist(), k=3) == metrics.knn_accuracy(
        x, y, x, y, k=3)
    assert metrics.alignment(x.numpy(), x.numpy()) == metrics.alignment(x, x)
    assert metrics.uniformity(x.tolist()) == metrics.uniformity(x)
    assert torch.equal(metrics.sample_per_class(y.numpy(), 2, generator=torch.Generator().manual_seed(1)),
                       metrics.sample_per_class(y, 2, generator=torch.Generator().manual_seed(1)))
    with pytest.raises(TypeError, match=r"^z0:"):
        metrics.alignment("features", x)


@pytest.mark.parametrize("cost", ["sqeuclidean", "half_sqeuclidean", "euclidean"])
def test_pointcloud_eps_below_the_cost_resolution_is_rejected(cost):
    """Coordinates of 1e10 in float32: the point cloud skipped the eps-resolution check dense costs get and came
    back with f = -inf and an all-zero plan. Its cost is now bounded from the points' norms."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 2, generator=gen) * 1e10, torch.randn(4, 2, generator=gen) * 1e10
    with pytest.raises(ValueError, match=r"^eps: .* centre and rescale the points"):
        Problem(PointCloud(x, y, cost=cost), eps=0.1)


def test_pointcloud_cost_bound_is_an_upper_bound():
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(7, 3, generator=gen) + 4, torch.randn(6, 3, generator=gen)
    for cost in ("sqeuclidean", "half_sqeuclidean", "euclidean", "negative_cosine", "cosine"):
        geometry = PointCloud(x, y, cost=cost)
        assert geometry.cost_bound() >= float(geometry.matrix().abs().max()), cost
    assert PointCloud(x, y, cost=lambda p, q: torch.cdist(p, q)).cost_bound() is None


def test_masses_whose_objective_overflows_are_rejected():
    """Masses of 1e30 in float32: the product reference's mass sum(a) sum(b) = 9e60 made value inf, silently."""
    a, b = torch.full((3,), 1e30), torch.full((4,), 0.75e30)
    with pytest.raises(ValueError, match=r"^a, b: the product reference has mass"):
        Problem(torch.rand(3, 4), a, b, eps=0.1)
    with pytest.raises(ValueError, match=r"^a: the total mass overflows"):
        Problem(torch.rand(3, 4), torch.full((3,), 3e38), eps=0.1, rho_a=1.0)
    # float64 holds it; tol is an L1 distance in mass units, so it scales with the masses
    plan = solve(Problem(torch.rand(3, 4, dtype=torch.float64), a.double(), b.double(), eps=0.1), tol=3e24)
    assert torch.isfinite(plan.value) and plan.converged
