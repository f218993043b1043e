"""One solver resolver behind every entry point: the same mistake gives the same error (type and argument) from
``solve``, ``Aligner``, ``GWAligner``, the losses, ``otalign.adapt``, the training config and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import otalign
from otalign import Problem
from otalign.adapt import SinkhornTransport
from otalign.gromov import GWAligner
from otalign.registry import resolve_solver, solver_options
from otalign.training.config import Config

C = torch.rand(4, 3, dtype=torch.float64)
CLOUD = torch.randn(5, 2, dtype=torch.float64)


def _solve(solver, options):
    return otalign.solve(Problem(C), solver, **options)


def _aligner(solver, options):
    return otalign.Aligner(solver, **options)


def _gw_aligner(solver, options):
    return GWAligner(solver, **options)


def _loss(solver, options):
    return otalign.losses.GCAInfoNCE(solver=solver, solver_options=options)


def _gw_solve(solver, options):
    return otalign.solve(otalign.GWProblem(torch.cdist(CLOUD, CLOUD), torch.cdist(CLOUD, CLOUD)), solver, **options)


def _config(solver, options):
    if not isinstance(solver, str):
        pytest.skip("a config names its solver")
    return Config(solver=solver, solver_options=options)


ENTRY_POINTS = {"solve": _solve, "gw solve": _gw_solve, "Aligner": _aligner, "GWAligner": _gw_aligner,
                "loss": _loss, "config": _config}
OPTIONS_NAME = {"loss": "solver_options", "config": "solver_options"}
MISTAKES = {
    "unknown name": ("nope", {}, r"^solver: unknown solver 'nope'; available: \["),
    "unknown option": ("sinkhorn", {"warp_speed": 1}, r"^{options}: the 'sinkhorn' solver has no option\(s\) "
                                                       r"\['warp_speed'\]; its options: \["),
    "options with an instance": (otalign.solvers.Sinkhorn(), {"kernel": "dense"},
                                 r"^{options}: \['kernel'\] given with a solver instance"),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("mistake", sorted(MISTAKES))
def test_every_entry_point_gives_the_same_error(entry, mistake):
    solver, options, pattern = MISTAKES[mistake]
    with pytest.raises(ValueError, match=pattern.format(options=OPTIONS_NAME.get(entry, "options"))):
        ENTRY_POINTS[entry](solver, options)


@pytest.mark.parametrize("make", [lambda: SinkhornTransport(solver="nope"),
                                  lambda: SinkhornTransport().set_params(solver="nope")])
def test_adapt_estimators_name_an_unknown_solver_before_fitting(make):
    with pytest.raises(ValueError, match=r"^solver: unknown solver 'nope'"):
        estimator = make()
        estimator.fit(torch.randn(5, 2), Xt=torch.randn(4, 2))


def test_the_command_line_names_an_unknown_solver_option():
    result = subprocess.run([sys.executable, "-m", "otalign", "train", "--solver-option", "warp_speed=1",
                             "--epochs", "1"], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "solver_options: the 'sinkhorn' solver has no option(s) ['warp_speed']" in result.stderr


def test_resolver_builds_and_passes_instances_through():
    instance = otalign.solvers.Sinkhorn()
    assert resolve_solver(instance) is instance
    built = resolve_solver("sinkhorn", {"kernel": "dense"})
    assert isinstance(built, otalign.solvers.Sinkhorn) and built.kernel == "dense"
    assert "kernel" in solver_options(otalign.solvers.Sinkhorn)
    with pytest.raises(TypeError, match=r"^solver: expected a solver name"):
        resolve_solver(42)
    with pytest.raises(TypeError, match=r"^options: expected a dict"):
        resolve_solver("sinkhorn", ["kernel"])


def test_register_and_unregister(registry_cleanup):
    @otalign.solvers.register("echo_test")
    class Echo(otalign.Solver):
        def __init__(self, level: int = 0):
            self.level = level

    assert resolve_solver("echo_test", {"level": 2}).level == 2
    otalign.solvers.unregister("echo_test")
    with pytest.raises(ValueError, match=r"^solver: unknown solver 'echo_test'"):
        resolve_solver("echo_test")
    with pytest.raises(ValueError, match=r"^name: no solver called 'echo_test'"):
        otalign.solvers.unregister("echo_test")
