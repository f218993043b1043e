"""The in-place Dykstra (no graph) against the graph path it replaces, which is pinned to a plain log-domain
iteration in test_lowrank_dykstra.py: the same projection up to rounding, with and without re-framing, in float32
and float64, batched (with elements frozen at different checks), with zero masses, warm starts, buffers reused
across calls and the inputs overwritten."""

from __future__ import annotations

import math

import pytest
import torch

from otalign.solvers.lowrank_dykstra import dykstra, dykstra_graph
from otalign.solvers import lowrank_dykstra_fast as fast_module
from otalign.solvers.lowrank_dykstra_fast import dykstra_fast

F64 = torch.float64


def kernels(n: int, m: int, r: int, seed: int, batch: tuple = (), spread: float = 3.0, far: float = 0.0):
    """Random log-kernels and masses (float64); ``far``: two components ``e^-far`` and ``e^(-far / 2)`` below the
    others, whose scalings must move by about that much (beyond float32's safe range for 150, float64's for
    400): frames move."""
    gen = torch.Generator().manual_seed(seed)
    log_kq = spread * torch.randn(batch + (n, r), generator=gen, dtype=F64)
    log_kr = spread * torch.randn(batch + (m, r), generator=gen, dtype=F64)
    log_kg = torch.randn(batch + (r,), generator=gen, dtype=F64) - math.log(r)
    log_kq[..., 0] -= far
    log_kr[..., 1] -= far / 2
    a = torch.rand(batch + (n,), generator=gen, dtype=F64) + 0.5
    b = torch.rand(batch + (m,), generator=gen, dtype=F64) + 0.5
    return [log_kq, log_kr, log_kg, a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True)]


def fast(*args, **kwargs):
    """:func:`dykstra_fast` with :func:`dykstra`'s defaults, as the graph path's :class:`Projection` fields."""
    options = {"start": None, "every": 10, **kwargs}
    return dykstra_fast(*args[:8], options.pop("start"), options.pop("every"), **options)


def same(ours, graph, rtol, atol):
    log_q, log_r, log_g, error, iterations, scalings = ours
    assert iterations == graph.iterations
    for x, y in zip((log_q, log_r, log_g), (graph.log_q, graph.log_r, graph.log_g)):
        torch.testing.assert_close(x.exp(), y.exp(), rtol=rtol, atol=atol)
    for x, y in zip(scalings, graph.scalings):  # logs: an absolute error of rounding times their size
        torch.testing.assert_close(x, y, rtol=rtol, atol=10 * atol)
    torch.testing.assert_close(error, graph.error, rtol=1e-3, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("far", [0.0, 150.0])
@pytest.mark.parametrize("alpha", [1e-10, 0.08])
def test_matches_the_graph_path(dtype, far, alpha):
    args = [x.to(dtype) for x in kernels(40, 25, 5, 0, far=far)]
    if alpha > 0.01:
        args[2][0] -= 10.0  # a small K_g: the bound g >= alpha is active
    for tol, iterations in ((0.0, 73), (1e-6 if dtype == F64 else 1e-4, 3000)):
        graph = dykstra_graph(*args, alpha, tol, iterations)
        rtol, atol = (1e-9, 1e-13) if dtype == F64 else (2e-4, 1e-6)
        same(fast(*args, alpha, tol, iterations), graph, rtol, atol)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_reframing_happens_and_a_block_is_rerun(dtype, monkeypatch):
    """With scalings beyond the dtype's safe range a block is re-run with re-framing before each product, and
    frames move between checks too."""
    calls = {"frame": 0, "restore": 0}
    for name in calls:
        owner = fast_module._Side if name == "frame" else fast_module._State
        original = getattr(owner, name)

        def counted(*args, _original=original, _name=name, **kwargs):
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    args = [x.to(dtype) for x in kernels(30, 20, 4, 5, far=150.0 if dtype == torch.float32 else 400.0)]
    rtol, atol = (1e-9, 1e-13) if dtype == F64 else (2e-3, 1e-6)
    for every in (1, 7, 10, 200):  # 200: one block (no stopping test), re-run with re-framing throughout
        same(fast(*args, 1e-10, 0.0, 200, every=every), dykstra_graph(*args, 1e-10, 0.0, 200, every=every),
             rtol, atol)
    assert calls["frame"] > 6 and calls["restore"] > 0


def test_warm_start_matches_the_graph_path():
    args = kernels(30, 20, 5, 1)
    gen = torch.Generator().manual_seed(3)
    start = tuple(3 * torch.randn(5, generator=gen, dtype=F64) for _ in range(2))
    same(fast(*args, 1e-10, 1e-12, 5000, start=start), dykstra_graph(*args, 1e-10, 1e-12, 5000, start=start),
         1e-9, 1e-14)


@pytest.mark.parametrize("far", [0.0, 400.0])
def test_batched_equals_looped_with_elements_frozen_at_different_checks(far):
    batch = kernels(20, 12, 3, 2, batch=(3,), far=far)
    tol = torch.tensor([1e-5, 1e-8, 1e-11], dtype=F64)
    out = fast(*batch, 1e-10, tol, 20000)
    graph = dykstra_graph(*batch, 1e-10, tol, 20000)
    same(out, graph, 1e-9, 1e-14)
    counts = []
    for i in range(3):
        single = fast(*(x[i] for x in batch), 1e-10, float(tol[i]), 20000)
        counts.append(single[4])
        for x, y in zip(out[:3], single[:3]):
            torch.testing.assert_close(x[i], y, rtol=1e-12, atol=1e-15)
    assert len(set(counts)) > 1  # the elements stop at different checks: the first ones are frozen meanwhile


def test_zero_masses():
    log_kq, log_kr, log_kg, a, b = kernels(10, 8, 3, 7)
    a = a.clone()
    a[[2, 5]] = 0.0
    a = a / a.sum()
    b = b.clone()
    b[3] = 0.0
    b = b / b.sum()
    log_kq = log_kq.masked_fill((a == 0)[:, None], -math.inf)  # finite log-kernels on b's zero row
    args = (log_kq, log_kr, log_kg, a, b)
    out = fast(*args, 1e-10, 1e-12, 20000)
    same(out, dykstra_graph(*args, 1e-10, 1e-12, 20000), 1e-9, 1e-14)
    assert float(out[0].exp()[[2, 5]].abs().max()) == 0.0 and float(out[1].exp()[3].abs().max()) == 0.0


def test_overwrite_and_a_workspace_reused_across_shapes():
    workspace: dict = {}
    for n, m in ((30, 20), (30, 20), (12, 9), (30, 20)):
        args = kernels(n, m, 4, n + m)
        graph = dykstra_graph(*args, 1e-10, 0.0, 40)
        inputs = [x.clone() for x in args]
        out = fast(*inputs, 1e-10, 0.0, 40, overwrite=True, workspace=workspace)
        same(out, graph, 1e-9, 1e-14)
        assert out[0].data_ptr() == inputs[0].data_ptr() and out[1].data_ptr() == inputs[1].data_ptr()


def test_dykstra_records_a_graph_only_when_needed():
    args = kernels(15, 10, 3, 4)
    args[0].requires_grad_(True)
    with_graph = dykstra(*args, 1e-10, 0.0, 30)
    assert with_graph.log_q.requires_grad
    with torch.no_grad():
        without = dykstra(*args, 1e-10, 0.0, 30)
    assert not without.log_q.requires_grad
    torch.testing.assert_close(without.log_q, with_graph.log_q.detach(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_batched_with_the_bound_on_g_active_and_frames_moving_for_some_elements(dtype):
    """The correction of ``g >= alpha`` carries the frames' column offsets: re-framing some elements of a batch
    (and re-running blocks) with the bound active still gives the graph path's projection."""
    batch = [x.to(dtype) for x in kernels(25, 15, 4, 9, batch=(3,))]
    far = 150.0 if dtype == torch.float32 else 400.0
    batch[0][1, :, 0] -= far  # only the middle element's scalings move beyond the safe range
    batch[1][1, :, 1] -= far / 2
    batch[2][..., 0] -= 10.0  # a small K_g: the bound is active
    rtol, atol = (1e-9, 1e-13) if dtype == F64 else (2e-3, 1e-6)
    for tol, every in ((0.0, 3), (torch.tensor([1e-4, 1e-5, 1e-3], dtype=dtype), 10)):
        same(fast(*batch, 0.05, tol, 600, every=every), dykstra_graph(*batch, 0.05, tol, 600, every=every),
             rtol, atol)


def test_a_workspace_follows_the_masses():
    """The workspace keeps the masses' logs and zero rows for the next call with the same masses; new masses, or
    the same tensor modified in place, are read afresh."""
    workspace: dict = {}
    log_kq, log_kr, log_kg, a, b = kernels(12, 9, 3, 11)
    for change in ("none", "new tensor", "in place", "none"):
        if change == "new tensor":
            a = a.clone()
            a[1] = 0.0
            a = a / a.sum()
        elif change == "in place":
            a[1] = a[2]
            a[2] = 0.0
        args = (log_kq, log_kr, log_kg, a, b)
        same(fast(*args, 1e-10, 0.0, 40, workspace=workspace), dykstra_graph(*args, 1e-10, 0.0, 40), 1e-9, 1e-14)
