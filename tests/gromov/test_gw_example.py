"""The core of examples/gromov_matching.py on tiny data."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("sklearn")
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
import gromov_matching  # noqa: E402


def test_views_and_accuracy():
    views = gromov_matching.digit_views(30, 4, noise=0.0)
    assert views["pca"].shape == (30, 4) and views["nonlinear"].shape == (30, 8)
    # a rotation keeps every intra distance
    def distances(v):
        return (v[:, None] - v[None]).norm(dim=-1)

    assert torch.allclose(distances(views["pca"]), distances(views["rotated"]), atol=1e-10)
    assert gromov_matching.accuracy(torch.eye(5)) == 1.0
    assert gromov_matching.accuracy(torch.eye(5).flip(0)) == pytest.approx(0.2)  # the middle row is right


@pytest.mark.slow  # several seconds on a loaded 2-core machine
def test_gw_recovers_a_rotated_copy_where_w_cannot():
    rows = gromov_matching.run(n=40, dim=4, noise=0.0, eps=0.3, iterations=60)
    rotated = rows[0]
    assert rotated["views"] == "pca -> rotated" and rotated["random"] == pytest.approx(1 / 40)
    assert rotated["gw"] >= 0.9
    assert rotated["w"] < 0.5  # W compares coordinates, which the rotation scrambles
    assert rows[1]["w"] is None  # different dimensions: no W baseline
