"""Maps and label propagation read off a coupling, checked against direct formulas."""

from __future__ import annotations

import torch

from otalign.adapt import mapping

G = torch.Generator().manual_seed(0)


def test_barycentric_rows_and_empty_rows():
    P = torch.rand(4, 3, dtype=torch.float64, generator=G)
    P[2] = 0
    y = torch.randn(3, 2, dtype=torch.float64, generator=G)
    out = mapping.barycentric(P, y)
    for i in (0, 1, 3):
        torch.testing.assert_close(out[i], (P[i, :, None] * y).sum(0) / P[i].sum())
    assert torch.equal(out[2], torch.zeros(2, dtype=torch.float64))  # no mass: 0, as POT


def test_nearest_displacement():
    fitted = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    mapped = torch.tensor([[1.0, 1.0], [10.0, 5.0]])
    x = torch.tensor([[0.5, -0.5], [9.0, 1.0], [10.0, 0.0]])
    expected = torch.tensor([[1.5, 0.5], [9.0, 6.0], [10.0, 5.0]])
    torch.testing.assert_close(mapping.nearest_displacement(x, fitted, mapped), expected)


def test_entropic_map_is_a_softmax_average_and_blocks_do_not_matter(monkeypatch):
    support = torch.randn(5, 3, dtype=torch.float64, generator=G)
    h = torch.randn(5, dtype=torch.float64, generator=G)
    x = torch.randn(9, 3, dtype=torch.float64, generator=G)
    cost = lambda block: torch.cdist(block, support) ** 2  # noqa: E731
    out = mapping.entropic_map(x, support, h, 0.3, cost)
    w = torch.exp(h - cost(x) / 0.3)
    torch.testing.assert_close(out, (w / w.sum(1, keepdim=True)) @ support)
    monkeypatch.setattr(mapping, "_BLOCK_ENTRIES", 7)  # one row per block
    torch.testing.assert_close(mapping.entropic_map(x, support, h, 0.3, cost), out)


def test_entropic_map_survives_far_points():
    """exp(-C/eps) underflows for a far point; the softmax does not (POT's direct ratio would give 0/0)."""
    support = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    out = mapping.entropic_map(torch.tensor([[1e3]], dtype=torch.float64), support, torch.zeros(2, dtype=torch.float64),
                               1e-2, lambda b: (b - support.T) ** 2)
    torch.testing.assert_close(out, torch.tensor([[1.0]], dtype=torch.float64))


def test_propagate_labels():
    P = torch.tensor([[0.2, 0.0], [0.1, 0.3], [0.1, 0.3]], dtype=torch.float64)
    classes, scores = mapping.propagate_labels(P, torch.tensor([7, 3, 7]))
    assert classes.tolist() == [3, 7]
    torch.testing.assert_close(scores, torch.tensor([[0.25, 0.75], [0.5, 0.5]], dtype=torch.float64))
