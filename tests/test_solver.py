"""The shared solver layer (otalign/solver.py): what every solve guarantees whatever the solver.

* ``converged=True`` means both marginal residuals of the returned plan (:attr:`Plan.marginal_residual`, L1 in
  mass units) are at most ``tol``, measured on the plan itself;
* a non-convergence warning suggests only options that exist;
* a plan whose mass overflows its dtype raises instead of returning inf / NaN;
* a cost function returning NaN is reported as a ``cost:`` error, not as an internal bug.
"""

from __future__ import annotations

import inspect
import math
import re
import warnings

import pytest
import torch

import otalign
from otalign import ConvergenceWarning, PointCloud, Problem, solve
from otalign import solvers as registry
from otalign.halfstep import col_step, log_row_marginal, row_step


def test_one_row_problem_in_float32_is_converged_only_if_both_marginals_are():
    """1 x N, float32, eps 0.01, costs up to 10: the row error of a single row is 0 after any column step, but the
    column error left by rounding (5e-6) exceeded tol = 1e-6 while the plan said converged."""
    gen = torch.Generator().manual_seed(0)
    C = torch.rand(1, 50, generator=gen) * 10
    b = torch.rand(50, generator=gen)
    b = b / b.sum()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        plan = solve(Problem(C, torch.ones(1), b, eps=0.01), tol=1e-6)
    rows, cols = plan.marginal_error
    assert not plan.converged or (float(rows) <= 1e-6 and float(cols) <= 1e-6), (plan.converged, rows, cols)


def test_a_solver_claiming_convergence_is_checked_on_its_plan():
    """A solver whose own criterion passes although the marginals are off is reported as not converged."""

    class RowsOnly(otalign.Solver):
        name = "rows_only_test"

        def run(self, problem, max_iter, tol, init):
            f, g = otalign.solver.initial_potentials(problem, init)
            f, _ = row_step(problem, g)
            return otalign.Plan(problem, f, g, 1, True)

    C = torch.rand(5, 4, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning, match="rows_only_test"):
        plan = RowsOnly()(Problem(C, eps=0.1))
    assert not plan.converged
    assert float(plan.error) == pytest.approx(float(max(plan.marginal_residual)))


@pytest.mark.parametrize("name", ["sinkhorn", "unbalanced", "proximal", "pot", "geomloss"])
def test_warnings_suggest_only_options_that_exist(name):
    """Every name in a solver's remedies is an argument of solve() or Problem, or a constructor option of that
    solver (the proximal solver's warning used to suggest eps_scaling, which it does not accept)."""
    solver = registry.get(name)
    known = set(inspect.signature(solve).parameters) | set(inspect.signature(Problem).parameters)
    known |= set(inspect.signature(type(solver).__init__).parameters)
    assert solver.remedies
    for option, text in solver.remedies:
        assert option in known, (name, option)
        assert option in text
    mentioned = set(re.findall(r"[a-z]+_[a-z_]+", " ".join(text for _, text in solver.remedies)))
    assert mentioned <= known, (name, mentioned - known)


def test_proximal_warning_names_its_own_options():
    x, y = torch.randn(8, 2, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    with pytest.warns(ConvergenceWarning) as record:
        solve(Problem(PointCloud(x, y), eps=0.05), "proximal", max_iter=2)
    message = str(record[0].message)
    assert "eps_scaling" not in message and "inner_iter" in message


@pytest.mark.parametrize("reference", ["uniform", "product"])
def test_both_sides_free_with_negative_cost_overflowing_float32_raises(reference):
    """rho_a = rho_b = 0, C = -1, eps = 0.01: the optimum is P = R exp(-C/eps) = R e^100, finite but beyond
    float32. It used to come back as an inf matrix, a NaN value and converged=True."""
    with pytest.raises(FloatingPointError, match="overflows torch.float32"):
        solve(Problem(-torch.ones(3, 4), eps=1e-2, rho_a=0, rho_b=0, reference=reference))


def test_both_sides_free_in_float64_is_the_closed_form():
    """The same problem in float64: P = exp(-C/eps) (R = 1) and value = -eps sum(P - R)."""
    C = -torch.ones(3, 4, dtype=torch.float64)
    plan = solve(Problem(C, eps=1e-2, rho_a=0, rho_b=0, reference="uniform"))
    expected = torch.exp(-C / 1e-2)
    torch.testing.assert_close(plan.matrix, expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(plan.value, -1e-2 * (expected - 1).sum(), rtol=1e-12, atol=0)
    assert plan.converged


def test_weakly_relaxed_sides_overflowing_float32_raise():
    with pytest.raises(FloatingPointError, match="overflows"):
        solve(Problem(-torch.ones(3, 4), eps=1e-2, rho_a=1e-3, rho_b=1e-3, reference="uniform"))


@pytest.mark.parametrize("where", ["everywhere", "one entry"])
def test_nan_from_a_cost_callable_is_reported_as_a_cost_error(where):
    def cost(x, y):
        out = torch.cdist(x, y)
        if where == "everywhere":
            return out * math.nan
        out = out.clone()
        out[..., -1, -1] = math.nan
        return out

    problem = Problem(PointCloud(torch.randn(5, 2), torch.randn(4, 2), cost=cost), eps=0.1)
    with pytest.raises(ValueError, match=r"^cost: the cost holds NaN"):
        solve(problem)
