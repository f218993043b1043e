"""The solver registry: built-in names, registering a custom solver and using it by name, and the errors."""

from __future__ import annotations

import pytest
import torch

import otalign
from otalign import Plan, Problem, Solver, solve
from otalign.solvers import available, get, register
from otalign.halfstep import row_step


@pytest.fixture
def clean_registry(registry_cleanup):
    """Remove whatever a test registers, so tests stay independent."""
    yield


def test_builtin_solvers_are_registered():
    assert {"sinkhorn", "unbalanced", "proximal", "pot", "geomloss"} <= set(available())
    assert isinstance(get("sinkhorn"), otalign.solvers.Sinkhorn)
    assert isinstance(get("unbalanced", eps_scaling=0.5), otalign.solvers.TranslationInvariantSinkhorn)


def test_custom_solver_by_name(clean_registry, data):
    @register("row_softmax_test")
    class RowSoftmax(Solver):
        """One row step, i.e. the rows-only plan, whatever the problem says."""

        def __init__(self, scale: float = 1.0):
            super().__init__()
            self.scale = scale

        def run(self, problem, max_iter, tol, init):
            f, _ = row_step(problem, torch.zeros_like(problem.b))
            return Plan(problem, self.scale * f, torch.zeros_like(problem.b), 1, True)

    assert "row_softmax_test" in available()
    plan = solve(Problem(data.C, data.a, data.b, eps=0.1), "row_softmax_test", max_iter=5)
    expected = data.a[:, None] * torch.softmax(-data.C / 0.1 + data.b.log(), dim=1)
    torch.testing.assert_close(plan.matrix, expected, rtol=1e-12, atol=0)
    assert type(get("row_softmax_test", scale=2.0)).name == "row_softmax_test"
    # registered solvers get the differentiation modes for free
    C = data.C.clone().requires_grad_()
    plan = solve(Problem(C, data.a, data.b, eps=0.1), "row_softmax_test", grad="detach")
    assert not plan.matrix.requires_grad


def test_duplicate_name_is_rejected(clean_registry):
    class Another(Solver):
        def run(self, problem, max_iter, tol, init):
            raise NotImplementedError

    with pytest.raises(ValueError, match=r"^name:.*already registered"):
        register("sinkhorn")(Another)


def test_registering_the_same_class_twice_is_harmless(clean_registry):
    class Once(Solver):
        def run(self, problem, max_iter, tol, init):
            raise NotImplementedError

    register("once_test")(Once)
    assert register("once_test")(Once) is Once


def test_non_solver_class_is_rejected(clean_registry):
    class NotASolver:
        pass

    with pytest.raises(TypeError, match="Solver subclass"):
        register("not_a_solver_test")(NotASolver)
    with pytest.raises(TypeError, match="Solver subclass"):
        register("function_test")(lambda problem: None)
    assert "not_a_solver_test" not in available()


def test_bad_names(clean_registry):
    with pytest.raises(ValueError, match=r"^name:"):
        register("")
    with pytest.raises(ValueError, match=r"^solver:.*unknown"):
        get("no_such_solver")
