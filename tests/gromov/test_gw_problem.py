"""GWProblem: conventions and input checks (each error names the argument)."""

from __future__ import annotations

import math

import pytest
import torch

import otalign
from otalign import DenseCost, GWProblem, PointCloud

from gw_reference import clouds, sqdist


def test_defaults_and_conventions():
    x, y, a, b = clouds(6, 5, seed=0)
    problem = GWProblem(sqdist(x), PointCloud(y))
    assert problem.alpha == 1.0 and not problem.is_fused and problem.loss == "square"
    assert torch.allclose(problem.a, torch.full((6,), 1 / 6, dtype=x.dtype))
    assert (problem.n, problem.m) == (6, 5) and problem.symmetric and problem.is_balanced
    fused = GWProblem(sqdist(x), sqdist(y), cost_xy=torch.ones(6, 5, dtype=x.dtype))
    assert fused.alpha == 0.5 and fused.is_fused  # POT's default
    assert isinstance(GWProblem(DenseCost(sqdist(x)), sqdist(y)).geom_x, DenseCost)
    # non-factorisable point clouds and the kl loss are materialised
    assert isinstance(GWProblem(PointCloud(x, x, "euclidean"), PointCloud(y)).geom_x, DenseCost)
    assert isinstance(GWProblem(PointCloud(x), PointCloud(y), loss="kl").geom_y, DenseCost)
    asym = sqdist(x) + torch.triu(torch.ones(6, 6, dtype=x.dtype))
    assert not GWProblem(asym, sqdist(y)).symmetric
    assert GWProblem(asym, sqdist(y), symmetric=True).symmetric
    assert "GWProblem" in repr(fused) and "alpha=0.5" in repr(fused)
    detached = GWProblem(PointCloud(x.requires_grad_()), sqdist(y)).detach()
    assert not detached.geom_x.x.requires_grad


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(loss="l1"), ValueError, "loss"),
        (dict(alpha=0.5), ValueError, "alpha.*cost_xy"),
        (dict(alpha=1.5, cost_xy="M"), ValueError, "alpha"),
        (dict(eps=0.0), ValueError, "eps"),
        (dict(rho_a=-1.0), ValueError, "rho_a"),
        (dict(a="bad_mass"), ValueError, "a, b"),
        (dict(cost_xy="wrong_shape"), ValueError, "cost_xy"),
        (dict(cost_xy=3), TypeError, "cost_xy"),
        (dict(symmetric="yes"), TypeError, "symmetric"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    x, y, _, _ = clouds(6, 5, seed=1)
    if kwargs.get("cost_xy") == "M":
        kwargs["cost_xy"] = torch.ones(6, 5, dtype=x.dtype)
    if kwargs.get("cost_xy") == "wrong_shape":
        kwargs["cost_xy"] = torch.ones(5, 6, dtype=x.dtype)
    if kwargs.get("a") == "bad_mass":
        kwargs["a"] = torch.full((6,), 0.5, dtype=x.dtype)
    with pytest.raises(error, match=match):
        GWProblem(sqdist(x), sqdist(y), **kwargs)


def test_bad_geometries():
    x, y, _, _ = clouds(6, 5, seed=2)
    with pytest.raises(ValueError, match="geom_x: expected a square cost"):
        GWProblem(torch.ones(6, 5, dtype=x.dtype), sqdist(y))
    with pytest.raises(ValueError, match="geom_y.*kl"):
        GWProblem(sqdist(x), sqdist(y) - 1, loss="kl")
    with pytest.raises(ValueError, match="geom_x.*NaN"):
        GWProblem(sqdist(x).fill_diagonal_(math.nan), sqdist(y))
    with pytest.raises(TypeError, match="geom_y"):
        GWProblem(sqdist(x), "cost")
    with pytest.raises(ValueError, match="geom_x: an intra-domain cost must be square"):
        GWProblem(PointCloud(x, x[:4]), sqdist(y))
    with pytest.raises(ValueError, match="batch shapes"):
        GWProblem(sqdist(x).expand(2, 6, 6), sqdist(y))
    with pytest.raises(TypeError, match="dtypes"):
        GWProblem(sqdist(x), sqdist(y).float())


def test_solve_rejects_bad_options():
    x, y, _, _ = clouds(6, 5, seed=3)
    problem = GWProblem(sqdist(x), sqdist(y), eps=0.1)
    from otalign.gromov import solve_gw
    with pytest.raises(ValueError, match="step"):
        solve_gw(problem, step=1.5)
    with pytest.raises(ValueError, match="step.*materialize"):
        solve_gw(problem, step=0.5, materialize=False)
    with pytest.raises(TypeError, match="materialize"):
        solve_gw(problem, materialize="yes")
    with pytest.raises(ValueError, match="init"):
        solve_gw(problem, init=torch.ones(5, 6, dtype=x.dtype))
    with pytest.raises(TypeError, match="problem"):
        solve_gw(otalign.Problem(torch.ones(3, 3)))
    with pytest.raises(ValueError, match="unknown solver"):
        otalign.solve(problem, "nope")
