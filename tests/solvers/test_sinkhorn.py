"""The log-domain "sinkhorn" solver: balanced plans and potentials against POT, closed forms for a free side,
batching, fixed iterations, warm starts, eps-scaling, masks, low precision and the eps sweep on a cosine cost.

Unbalanced and semi-relaxed comparisons with POT (for this solver and "unbalanced") are in test_unbalanced.py.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import otalign
from otalign import PointCloud, Problem, solve
from otalign.costs import cosine_distance, negative_cosine
from otalign.solvers import Sinkhorn

ot = pytest.importorskip("ot")


def pot_potentials(log, a, b, eps, reference):
    """otalign potentials from POT's balanced ``ot.sinkhorn(..., log=True)`` scalings. POT's kernel is
    ``exp(-C/eps)`` (R = 1), so ``f = eps log u`` for the uniform reference and ``eps log u - eps log a`` for the
    product one (the plan ``u K v = a b exp((f + g - C)/eps)``)."""
    f, g = eps * log["log_u"], eps * log["log_v"]
    if reference == "product":
        f, g = f - eps * a.log(), g - eps * b.log()
    return f, g


def gauge_fixed_gap(f, g, f_ref, g_ref):
    """``max |f - f_ref - c|, |g - g_ref + c|`` with ``c`` the mean shift: balanced potentials are defined up to
    ``(f + c, g - c)``."""
    c = (f - f_ref).mean()
    return max((f - f_ref - c).abs().max().item(), (g - g_ref + c).abs().max().item())


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_balanced_matches_pot_sinkhorn_log(data, reference, primal):
    eps = 0.05
    P_pot, log = ot.sinkhorn(
        data.a, data.b, data.C, eps, method="sinkhorn_log", numItermax=20_000, stopThr=1e-14, log=True
    )
    plan = solve(Problem(data.C, data.a, data.b, eps=eps, reference=reference), tol=1e-13, max_iter=20_000)
    assert plan.converged
    torch.testing.assert_close(plan.matrix, P_pot, rtol=0, atol=1e-12)
    f_pot, g_pot = pot_potentials(log, data.a, data.b, eps, reference)
    assert gauge_fixed_gap(plan.f, plan.g, f_pot, g_pot) < 1e-10
    expected = primal(P_pot, data.C, data.a, data.b, eps, math.inf, math.inf, reference)
    torch.testing.assert_close(plan.value, expected, rtol=1e-10, atol=1e-12)


def test_balanced_plan_same_for_both_references(data):
    plans = [
        solve(Problem(data.C, data.a, data.b, eps=0.1, reference=r), tol=1e-13, max_iter=10_000)
        for r in ("product", "uniform")
    ]
    torch.testing.assert_close(plans[0].matrix, plans[1].matrix, rtol=0, atol=1e-12)


@pytest.mark.parametrize("reference", ["product", "uniform"])
def test_free_columns_give_row_softmax(data, reference):
    """rho_b = 0: one row step is exact, ``P_ij = a_i softmax_j(-C_ij/eps + log R_b,j)``."""
    eps = 0.2
    plan = solve(Problem(data.C, data.a, data.b, eps=eps, rho_b=0.0, reference=reference), tol=1e-12)
    log_ref = data.b.log() if reference == "product" else torch.zeros_like(data.b)
    expected = data.a[:, None] * torch.softmax(-data.C / eps + log_ref, dim=1)
    torch.testing.assert_close(plan.matrix, expected, rtol=1e-12, atol=1e-14)
    assert plan.iterations <= 2
    assert torch.equal(plan.g, torch.zeros_like(plan.g))


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced"])
@pytest.mark.parametrize("rho", [(math.inf, math.inf), (0.5, 2.0), (math.inf, 0.3)])
@pytest.mark.parametrize("geometry", ["dense", "pointcloud"])
def test_batched_equals_loop(batch_data, solver, rho, geometry):
    """A (B, n, m) solve equals B single solves (fixed iterations, so both run the same steps)."""
    d = batch_data

    def problem(i=None):
        pick = (lambda t: t) if i is None else (lambda t: t[i])
        cost = pick(d.C) if geometry == "dense" else PointCloud(pick(d.x), pick(d.y), cost="sqeuclidean")
        return Problem(cost, pick(d.a), pick(d.b), eps=0.1, rho_a=rho[0], rho_b=rho[1])

    batched = solve(problem(), solver, tol=0, max_iter=40)
    for i in range(d.C.shape[0]):
        single = solve(problem(i), solver, tol=0, max_iter=40)
        torch.testing.assert_close(batched.f[i], single.f, rtol=0, atol=1e-12)
        torch.testing.assert_close(batched.g[i], single.g, rtol=0, atol=1e-12)
        torch.testing.assert_close(batched.matrix[i], single.matrix, rtol=0, atol=1e-14)
        torch.testing.assert_close(batched.value[i], single.value, rtol=1e-12, atol=1e-14)


def test_batched_shared_masses_broadcast(batch_data):
    d = batch_data
    shared = solve(Problem(d.C, d.a[0], d.b[0], eps=0.1), tol=0, max_iter=30)
    explicit = solve(Problem(d.C, d.a[0].expand(3, -1), d.b[0].expand(3, -1), eps=0.1), tol=0, max_iter=30)
    torch.testing.assert_close(shared.matrix, explicit.matrix, rtol=0, atol=0)


def test_tol_zero_runs_exactly_max_iter(data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a fixed-iteration solve must not warn
        plan = solve(Problem(data.C, data.a, data.b, eps=0.05), tol=0, max_iter=7)
    assert plan.iterations == 7
    assert not plan.converged


def test_converged_plan_meets_its_tolerance(data):
    tol = 1e-9
    plan = solve(Problem(data.C, data.a, data.b, eps=0.05), tol=tol, max_iter=10_000)
    rows, cols = plan.marginal_error
    assert plan.converged and rows <= tol and cols <= 1e-14


def test_stopping_rule_never_skips_the_column_step():
    """A cost that depends on the column only, ``C_ij = eps log(m b_j)``, makes the rows of the initial plan
    (zero potentials) exact while its columns are all ``1/m != b_j``: a solve must not stop before a column step.
    The solution is ``P = a b^T`` (every coupling has the same linear cost)."""
    eps, n, m = 0.1, 5, 4
    a = torch.full((n,), 1 / n, dtype=torch.float64)
    b = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    C = (eps * (m * b).log()).expand(n, m).clone()
    plan = solve(Problem(C, a, b, eps=eps), tol=1e-8)
    rows, cols = plan.marginal_error
    assert rows <= 1e-8 and cols <= 1e-8
    torch.testing.assert_close(plan.matrix, torch.outer(a, b), rtol=1e-8, atol=0)


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced"])
@pytest.mark.parametrize("rho", [math.inf, 1.0])
@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.filterwarnings("ignore::otalign.ConvergenceWarning")  # convergence is asserted instead
def test_zero_masses_are_allowed(data, solver, rho, reference, primal):
    """Masses may be zero (validation accepts non-negative masses): that row gets no mass, nothing is NaN."""
    a = data.a.clone()
    a[2] = 0.0
    a = a / a.sum()
    problem = Problem(data.C, a, data.b, eps=0.1, rho_a=rho, rho_b=rho, reference=reference)
    plan = solve(problem, solver, tol=1e-10, max_iter=2000)
    assert plan.converged
    assert torch.all(plan.matrix[2] == 0) and not torch.isnan(plan.f).any()
    expected = primal(plan.matrix, data.C, a, data.b, 0.1, rho, rho, reference)
    torch.testing.assert_close(plan.value, expected, rtol=1e-10, atol=1e-12)


def test_keep_iterates_holds_each_row_step(data):
    plan = solve(Problem(data.C, data.a, data.b, eps=0.1), "sinkhorn", tol=0, max_iter=5, keep_iterates=True)
    assert len(plan.iterates) == 5
    assert torch.equal(plan.iterates[0][1], torch.zeros_like(plan.g))  # g before the first column step
    assert torch.equal(plan.iterates[-1][0], plan.f)
    for f, g in plan.iterates:  # after a row step the rows are exact
        rows = otalign.Plan(plan.problem, f, g, 0, False).marginals[0]
        torch.testing.assert_close(rows, data.a, rtol=1e-12, atol=0)


def test_warm_start_converges_in_far_fewer_iterations(data):
    problem = Problem(data.C, data.a, data.b, eps=0.02)
    plain = {"tol": 1e-10, "max_iter": 20_000, "acceleration": None}  # iteration counts of plain Sinkhorn
    cold = solve(problem, **plain)
    warm = solve(problem, **plain, init=cold)
    assert cold.iterations >= 50
    assert warm.iterations <= 2
    # a nearby problem (cost changed by 1%) started from the previous potentials: fewer iterations, same plan
    nearby = Problem(data.C * 1.01, data.a, data.b, eps=0.02)
    nearby_cold = solve(nearby, **plain)
    nearby_warm = solve(nearby, **plain, init=(cold.f, cold.g))
    assert nearby_warm.iterations < nearby_cold.iterations
    torch.testing.assert_close(nearby_warm.matrix, nearby_cold.matrix, rtol=0, atol=1e-9)


def test_warm_start_of_wrong_shape_is_rejected(data):
    problem = Problem(data.C, data.a, data.b, eps=0.1)
    with pytest.raises(ValueError, match="init"):
        solve(problem, init=(torch.zeros(3, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)))


@pytest.mark.parametrize("low", [torch.float16, torch.bfloat16])
def test_low_precision_cost_is_solved_in_float32(data, low):
    C = data.C.to(low)
    plan = solve(Problem(C, eps=0.1), tol=1e-5)
    assert plan.problem.dtype == torch.float32 and plan.f.dtype == torch.float32
    assert plan.matrix.dtype == torch.float32
    reference = solve(Problem(C.float(), eps=0.1), tol=1e-5)
    torch.testing.assert_close(plan.matrix, reference.matrix, rtol=0, atol=0)
    assert plan.marginal_error[0] <= 1e-5


def test_eps_scaling_reaches_the_same_plan(data):
    eps = 0.005
    plain = solve(Problem(data.C, data.a, data.b, eps=eps), tol=1e-11, max_iter=100_000)
    scaled = solve(Problem(data.C, data.a, data.b, eps=eps), tol=1e-11, max_iter=100_000, eps_scaling=0.5)
    assert scaled.converged and plain.converged
    torch.testing.assert_close(scaled.matrix, plain.matrix, rtol=0, atol=1e-9)


def test_block_rows_do_not_change_the_result(make):
    d = make(23, 17, seed=3)
    problem = Problem(d.C, d.a, d.b, eps=0.05, rho_a=1.0, rho_b=math.inf)
    whole = solve(problem, tol=0, max_iter=30)
    blocked = solve(problem, tol=0, max_iter=30, block_rows=4)
    torch.testing.assert_close(blocked.f, whole.f, rtol=0, atol=1e-13)
    torch.testing.assert_close(blocked.g, whole.g, rtol=0, atol=1e-13)


def test_mask_gives_zero_mass_and_exact_marginals(make):
    d = make(6, 6, seed=4)
    mask = torch.eye(6, dtype=torch.bool)
    plan = solve(Problem(d.C, eps=0.1, mask=mask), tol=1e-12)
    P = plan.matrix
    assert torch.all(P[mask] == 0)
    torch.testing.assert_close(P.sum(1), torch.full((6,), 1 / 6, dtype=P.dtype), rtol=1e-11, atol=0)
    torch.testing.assert_close(P.sum(0), torch.full((6,), 1 / 6, dtype=P.dtype), rtol=1e-11, atol=0)
    # the same plan as POT on the finite-cost problem where forbidden pairs cost a lot (exp(-1e3/0.1) = 0)
    P_pot = ot.sinkhorn(plan.problem.a, plan.problem.b, d.C.masked_fill(mask, 1e3), 0.1, method="sinkhorn_log",
                        stopThr=1e-14, numItermax=10_000)
    torch.testing.assert_close(P, P_pot, rtol=0, atol=1e-12)


# --------------------------------------------------------------------------- eps sweep on a cosine cost (float32)

@pytest.fixture
def one_thread():
    """Run on one intra-op thread: a 512 x 512 half-step takes about a millisecond, and on a shared CPU the
    OpenMP threads' waiting made these tests 10 to 100 times slower (measured: 0.3 s vs up to 35 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def unit_vectors(n: int, d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, d, generator=gen), dim=-1)


@pytest.mark.parametrize("eps", [1e-3, 1e-2, 0.1, 1.0, 10.0])
def test_eps_sweep_cosine_float32(eps, one_thread):
    """n = 512, d = 32, float32, C = -cos. eps-scaling (ratio 0.5) is used for eps <= 1e-2, where plain Sinkhorn
    from zero potentials needs thousands of iterations. Tolerance: L1 row error 1e-3, 1e-2 at eps = 1e-3 (about
    800 instead of 200 iterations for 1e-3 there); the column error is exact after the column step, up to float32
    rounding."""
    x, y = unit_vectors(512, 32, seed=0), unit_vectors(512, 32, seed=1)
    C = negative_cosine(x, y)
    assert C.dtype == torch.float32
    options = {"eps_scaling": 0.5} if eps <= 1e-2 else {}
    tol = 1e-2 if eps < 1e-2 else 1e-3
    plan = solve(Problem(C, eps=eps), tol=tol, max_iter=1000, **options)
    for name, t in (("f", plan.f), ("g", plan.g), ("matrix", plan.matrix)):
        assert torch.isfinite(t).all(), name
    rows, cols = plan.marginal_error
    assert plan.converged
    assert torch.isfinite(rows) and torch.isfinite(cols)
    assert rows <= tol and cols <= 1e-4
    assert abs(plan.matrix.sum().item() - 1) <= tol
    assert torch.isfinite(plan.value)


def test_otalign_converges_where_pot_scaling_sinkhorn_fails(one_thread):
    """eps = 1e-3 on C = 1 - cos in float32: exp(-C/eps) underflows to 0 for every pair, POT's scaling Sinkhorn
    stops at iteration 0 and returns a plan whose marginals are off by about the whole mass (or non-finite)."""
    x, y = unit_vectors(512, 32, seed=0), unit_vectors(512, 32, seed=1)
    C = cosine_distance(x, y)
    a = torch.full((512,), 1 / 512)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        P_pot = ot.sinkhorn(a, a, C, 1e-3, method="sinkhorn", numItermax=1000)
    pot_error = (P_pot.sum(1) - a).abs().sum()
    assert not torch.isfinite(pot_error) or pot_error > 0.5
    plan = solve(Problem(C, eps=1e-3), tol=1e-2, max_iter=1000, eps_scaling=0.5)
    assert plan.converged and torch.isfinite(plan.matrix).all()
    rows, cols = plan.marginal_error
    assert rows <= 1e-2 and cols <= 1e-4


@pytest.mark.parametrize("solver", ["sinkhorn", "unbalanced"])
@pytest.mark.parametrize("rho", [math.inf, 0.5])
def test_plan_knows_its_total_mass_and_the_solve_makes_no_extra_pass(solver, rho, monkeypatch):
    """The last column half-step gives the column marginal, so ``plan.log_mass`` comes free and the overflow
    check after the solve reads it instead of making one more pass over the cost: 2 soft-min calls per iteration."""
    import otalign.solver as solver_module
    import otalign.solvers.sinkhorn as sinkhorn_module

    gen = torch.Generator().manual_seed(0)
    x = 3 * torch.randn(2, 40, 3, generator=gen, dtype=torch.float64)
    y = 3 * torch.randn(2, 30, 3, generator=gen, dtype=torch.float64)
    problem = Problem(PointCloud(x, y), eps=0.05, rho_a=rho, rho_b=rho)  # spread / eps ~ 10^4: no bound helps
    calls = []
    real_choose, real_logsumexp = sinkhorn_module.choose_softmin, solver_module.logsumexp

    def counting(real):
        def call(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(sinkhorn_module, "choose_softmin", lambda *args: counting(real_choose(*args)))
    monkeypatch.setattr(solver_module, "logsumexp", counting(real_logsumexp))  # the overflow check's pass, if made
    plan = solve(problem, solver, max_iter=7, tol=0)
    assert len(calls) == 2 * 7
    monkeypatch.undo()
    torch.testing.assert_close(plan.log_mass, plan.matrix.sum((-1, -2)).log(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("check_every", [2, 5])
def test_check_every_measures_less_often_and_stops_at_a_checked_iteration(check_every):
    """``check_every=k`` measures the stopping rule every k iterations: the same plan as ``k=1`` up to the extra
    iterations it runs, and the iteration count is a multiple of k (plus the first check)."""
    gen = torch.Generator().manual_seed(5)
    problem = Problem(torch.rand(12, 9, generator=gen, dtype=torch.float64), eps=0.05)
    every = solve(problem, "sinkhorn", tol=1e-10)
    sparse = solve(problem, "sinkhorn", tol=1e-10, check_every=check_every)
    assert sparse.converged and sparse.iterations >= every.iterations
    assert sparse.iterations % check_every == 0
    torch.testing.assert_close(sparse.matrix, every.matrix, rtol=1e-7, atol=1e-10)


@pytest.mark.slow
def test_compiled_kernel_on_cpu_equals_the_blocked_log_domain():
    """``kernel="compiled"`` (a fused torch.compile soft-min) on the CPU: same iterates as the eager blocked path."""
    pytest.importorskip("torch._inductor")
    gen = torch.Generator().manual_seed(6)
    problem = Problem(torch.rand(64, 48, generator=gen), eps=0.02)
    compiled = solve(problem, Sinkhorn(kernel="compiled"), max_iter=30, tol=0)
    blocked = solve(problem, Sinkhorn(kernel="blocked"), max_iter=30, tol=0)
    torch.testing.assert_close(compiled.f, blocked.f, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled.g, blocked.g, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("reference", ["product", "uniform"])
@pytest.mark.parametrize("batch", [None, 3])
def test_scaling_form_gives_the_half_step_iterates(make, dtype, reference, batch):
    """A fixed number of balanced iterations without autograd on the kernel domain runs in scaling form
    (``u = a / (K v)``, ``v = b / (K^T u)``): the same potentials and total mass as the log-domain half-steps, up to
    rounding, with a zero mass and a warm start far from 0 (``g / eps`` about 300: the start is shifted into range)."""
    from otalign.softmin import KernelDomain

    d = make(9, 7, seed=4, batch=batch)
    a = d.a.clone()
    a[..., 2] = 0.0
    a = a / a.sum(-1, keepdim=True)
    problem = Problem(d.C.to(dtype), a.to(dtype), d.b.to(dtype), eps=0.1, reference=reference)
    init = (torch.zeros_like(problem.a), 30.0 + torch.rand_like(problem.b))
    calls = []
    original = KernelDomain.scaling_iterations

    def counted(self, *args):
        calls.append(1)
        return original(self, *args)

    KernelDomain.scaling_iterations = counted
    try:
        got = solve(problem, Sinkhorn(), max_iter=6, tol=0, grad="detach", init=init)
    finally:
        KernelDomain.scaling_iterations = original
    ref = solve(problem, Sinkhorn(kernel="blocked"), max_iter=6, tol=0, grad="detach", init=init)
    assert calls == [1] and got.iterations == ref.iterations == 6
    # exponents of size (|f| + |g|) / eps, each rounded: 4 unit round-offs of that, in log units
    finite = torch.isfinite(ref.f)
    size = 1 + float(ref.f[finite].abs().max() + ref.g.abs().max()) / problem.eps
    tol = 4 * torch.finfo(dtype).eps / 2 * size
    assert bool((torch.isinf(got.f) == torch.isinf(ref.f)).all())
    torch.testing.assert_close(got.f[finite], ref.f[finite], rtol=0, atol=tol * problem.eps)
    torch.testing.assert_close(got.g, ref.g, rtol=0, atol=tol * problem.eps)
    torch.testing.assert_close(got.log_mass, ref.log_mass, rtol=0, atol=tol)
    torch.testing.assert_close(got.matrix, ref.matrix, rtol=tol, atol=0)
