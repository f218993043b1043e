"""Log-domain Sinkhorn: balanced, semi-relaxed and unbalanced (by rho), batched, both reference measures."""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from otalign.capabilities import ALL
from otalign.geometry import DenseCost
from otalign.halfstep import col_step, log_col_marginal, log_row_marginal, row_step
from otalign.plan import Plan
from otalign.problem import Problem, dual_mass_term, optimal_marginal, where_positive
from otalign.softmin import (KERNEL_OPTIONS, AbsorbedKernel, KernelDomain, LogDomain, SoftMin, choose_softmin,
                             needs_grad)
from otalign.softmin.held import HeldKernel
from otalign.solver import Init, Solver, initial_potentials
from otalign.checks import check_number, check_positive_int

from .acceleration import AUTO_MIN_ENTRIES, Anderson
from .acceleration import check as acceleration_options
from .acceleration import make as make_accelerator
from .registry import register


@register("sinkhorn")
class Sinkhorn(Solver):
    """Alternating log-domain half-steps ``f <- row_step(g)``, ``g <- col_step(f)`` (:mod:`otalign.halfstep`).

    Stopping: both marginal residuals of the current plan (:attr:`Plan.marginal_residual`, L1 distances in mass
    units: ``|P 1 - a|_1`` for a hard side, ``|P 1 - a exp(-f / rho_a)|_1`` for a relaxed one, 0 for a free one;
    the same for the columns) are at most ``tol``; measured from the soft-min sums the half-steps compute anyway.
    ``tol=0`` runs exactly ``max_iter`` iterations.

    Options:
        eps_scaling: ratio in (0, 1) of an annealing schedule ``eps_0 > eps_0 r > ... > eps`` that starts at the
            cost's spread; ``scaling_iter`` sweeps per stage, potentials carried over (warm start). Speeds up
            small eps a lot.
        scaling_iter: sweeps per annealing stage (default 1).
        keep_iterates: keep ``(f, g)`` after every row step in :attr:`Plan.iterates` (multistep losses).
        block_rows: rows per block of the soft-min primitive (default: fit 2 MiB).
        kernel: ``"auto"`` (default) picks: for a dense cost, a fixed number of iterations (``tol=0``) and a
            spread small against eps, the kernel-domain soft-min with a fused backward (:mod:`otalign.softmin.kernel_domain`; same
            iterates); otherwise, when no gradient flows through the iterations (``grad`` other than ``"unroll"``,
            or inputs without ``requires_grad``), the absorbed kernel domain (:mod:`otalign.softmin.absorbed`: one
            matrix-vector product per half-step at any eps, certified equal to the log domain up to rounding; one
            extra n x m matrix, so for dense costs up to 2^27 entries and point clouds up to 2^24; a fixed number of
            balanced iterations runs there in its certified scaling form, :meth:`AbsorbedKernel.scaling_iterations`,
            once the kernel is built); else the
            blocked log-domain soft-min (:func:`otalign.softmin.choose_softmin`). ``"absorbed"`` forces the absorbed
            kernel; ``"blocked"``, ``"dense"``, ``"compiled"`` or ``"native"`` force a log-domain variant
            (:class:`otalign.softmin.LogDomain`; ``"compiled"`` is a fused ``torch.compile`` kernel for dense costs
            that compiles on first use). Inside a ``torch.compile`` region the plain ``"native"`` soft-min is always
            used.
        check_every: measure the stopping criterion every k iterations (fewer host syncs on GPU).
        acceleration: ``"auto"`` (default: for a solve to a tolerance on at least
            :data:`~otalign.solvers.acceleration.AUTO_MIN_ENTRIES` cost entries whose iterations autograd does not
            record, Anderson mixing after :data:`~otalign.solvers.acceleration.AUTO_START` plain iterations;
            plain Sinkhorn for fixed iteration counts, unrolled gradients, kept iterates and small problems),
            ``None`` (always plain Sinkhorn), ``"momentum"`` (adaptive over-relaxation; ``omega`` fixes the
            relaxation in [1, 2)) or ``"anderson"`` (Anderson mixing of the last ``memory`` column potentials from
            the first iteration); see :mod:`otalign.solvers.acceleration`. Same fixed point, fewer iterations where
            plain Sinkhorn is slow (small eps); a mixed step that lowers the dual objective is replaced by the plain
            one (momentum: a step that increases the residual falls back to plain steps).
    """

    supports = ALL
    remedies = (
        ("max_iter", "raise max_iter"),
        ("eps_scaling", "anneal eps with the solver option eps_scaling=0.5"),
        ("eps", "use a larger eps"),
    )

    def __init__(
        self,
        eps_scaling: Optional[float] = None,
        scaling_iter: int = 1,
        keep_iterates: bool = False,
        block_rows: Optional[int] = None,
        check_every: int = 1,
        kernel: str = "auto",
        acceleration: Optional[str] = "auto",
        omega: Optional[float] = None,
        memory: int = 5,
    ):
        super().__init__()
        acceleration_options(acceleration, omega, memory)
        self.acceleration, self.omega, self.memory = acceleration, omega, memory
        if eps_scaling is not None:
            eps_scaling = check_number("eps_scaling", eps_scaling, strict=True)
            if not eps_scaling < 1:
                raise ValueError(f"eps_scaling: expected a ratio in (0, 1), got {eps_scaling!r}")
        self.eps_scaling = eps_scaling
        self.scaling_iter = check_positive_int("scaling_iter", scaling_iter)
        self.keep_iterates = keep_iterates
        self.block_rows = None if block_rows is None else check_positive_int("block_rows", block_rows)
        self.check_every = check_positive_int("check_every", check_every)
        if kernel not in KERNEL_OPTIONS:
            raise ValueError(f"kernel: expected one of {KERNEL_OPTIONS}, got {kernel!r}")
        self.kernel = kernel

    def run(self, problem: Problem, max_iter: int, tol: float, init: Init) -> Plan:
        f, g = initial_potentials(problem, init)
        sweeps = 0
        if self.eps_scaling is not None:
            for eps in annealing_schedule(problem, self.eps_scaling):
                staged = problem.with_eps(eps)
                stage = self.iterate(staged, f, g, self.scaling_iter, 0.0)
                f, g, sweeps = stage.f, stage.g, sweeps + stage.iterations
        return self.iterate(problem, f, g, max_iter, tol, sweeps)

    def refine(self, problem: Problem, plan: Plan, max_iter: int, tol: float) -> Plan:
        """Continue in the exact log domain from ``plan`` (whose own stopping measurement, e.g. the absorbed
        kernel's product, was refuted by the measurement on the returned plan)."""
        variant = "blocked" if self.kernel in ("auto", "absorbed") else self.kernel
        softmin = LogDomain(problem.geometry, problem.eps, variant, self.block_rows)
        return self.iterate(problem, plan.f, plan.g, max_iter, tol, plan.iterations, softmin)

    def _scaling_form(self, problem: Problem, softmin: SoftMin, tol: float) -> bool:
        """Whether a run may take a scaling loop (:meth:`KernelDomain.scaling_iterations`, or
        :meth:`AbsorbedKernel.scaling_iterations` while its certificate holds: the same iterates without a log /
        exp per half-step): a fixed number of iterations of plain Sinkhorn (no acceleration, no kept iterates, no
        :meth:`after_iteration`) on a balanced problem, nothing recorded by autograd, a cost without forbidden
        pairs in one process."""
        return (isinstance(softmin, (KernelDomain, AbsorbedKernel)) and tol == 0 and problem.is_balanced
                and self.acceleration in (None, "auto") and not self.keep_iterates
                and type(self).after_iteration is Sinkhorn.after_iteration and not torch.is_grad_enabled()
                and problem.geometry.shards == 1 and getattr(problem.geometry, "mask", None) is None)

    def _accelerates(self, problem: Problem, tol: float) -> bool:
        """Whether ``acceleration="auto"`` mixes in this run: a solve to a tolerance, no kept iterates, no
        :meth:`after_iteration` of a subclass (a translation moves the potentials between the mixing's iterates),
        nothing recorded by autograd (the mixing carries no gradient: unrolled gradients need the plain iterates),
        and at least :data:`~otalign.solvers.acceleration.AUTO_MIN_ENTRIES` cost entries (below, the mixing's
        fixed cost per iteration outweighs the iterations it saves)."""
        entries = math.prod(problem.batch_shape) * problem.geometry.n_global * problem.m
        return (tol > 0 and not self.keep_iterates and type(self).after_iteration is Sinkhorn.after_iteration
                and not needs_grad(problem) and entries >= AUTO_MIN_ENTRIES)

    def after_iteration(self, problem: Problem, f: Tensor, g: Tensor) -> tuple[Tensor, Tensor]:
        """Hook run after each full iteration (the translation-invariant solver moves the potentials here)."""
        return f, g

    def iterate(
        self, problem: Problem, f: Tensor, g: Tensor, max_iter: int, tol: float, done: int = 0,
        softmin: Optional[SoftMin] = None,
    ) -> Plan:
        """Run up to ``max_iter`` iterations from ``(f, g)``; ``done`` earlier sweeps are added to the count.
        ``softmin`` is the soft-min implementation (default: :func:`otalign.softmin.choose_softmin` for this
        problem, the ``kernel`` option and ``tol``)."""
        if softmin is None:
            softmin = choose_softmin(problem, self.kernel, tol, self.block_rows)
        if isinstance(softmin, AbsorbedKernel) and self._scaling_form(problem, softmin, tol):
            return _absorbed_scaling(problem, softmin, g, max_iter, done)
        if self._scaling_form(problem, softmin, tol):
            f, g, lse = softmin.scaling_iterations(problem, g, max_iter)
            return Plan(problem, f, g, done + max_iter, False, None, "unroll", None,
                        log_mass=_log_mass(problem, (g, lse)), kernel=_held_kernel(problem, softmin, (g, lse)))
        iterates: Optional[list[tuple[Tensor, Tensor]]] = [] if self.keep_iterates else None
        hint_f = hint_g = None
        error: Optional[Tensor] = None
        log_cols: Optional[Tensor] = None
        measured = False  # whether log_cols holds the column marginal of the current (f, g)
        last_column_step: Optional[tuple[Tensor, Tensor]] = None  # (g, its lse) of the current (f, g)
        converged = False
        iterations = 0
        accelerator = make_accelerator(self.acceleration, self.omega, self.memory, self._accelerates(problem, tol))
        start = max_iter if accelerator is None else accelerator.start  # the first iteration that mixes
        # the dual-ascent guard needs the row soft-min (not computed for a free row side) and potentials that only
        # the half-steps move
        guard = (isinstance(accelerator, Anderson) and type(self).after_iteration is Sinkhorn.after_iteration
                 and problem.rho_a > 0)
        if isinstance(accelerator, Anderson):
            accelerator.guarded = guard
        dual: Optional[Tensor] = None  # the dual objective after the last row step (the guard's reference)
        for it in range(max_iter):
            check = tol > 0 and it % self.check_every == 0
            mixing = start <= it < max_iter - 1  # the last iteration is plain: an unconverged plan meets its columns
            f_next, hint_f = row_step(problem, g, softmin, hint_f)
            plain: Optional[Tensor] = None  # the plain column step of f when g was mixed
            if guard and it >= start:
                # dual ascent: plain half-steps never lower the dual; a mixed column potential that did is replaced
                # by its plain image, the row step is redone from there and that problem pauses mixing
                previous, dual = dual, _dual_after_row_step(problem, f_next, g, hint_f)
                plain, accelerator.plain = accelerator.plain, None
                if plain is not None and previous is not None:
                    lowered = dual < previous
                    if bool(lowered.any()):  # below the rounding of the dual, a change is noise
                        lowered = dual < previous - _dual_slack(problem, f_next, g)
                    accelerator.judge(lowered)
                    if bool(lowered.any()):
                        g = torch.where(lowered.unsqueeze(-1), plain, g)
                        f_next, hint_f = row_step(problem, g, softmin, hint_f)
                        dual = _dual_after_row_step(problem, f_next, g, hint_f)
                        if measured and hint_g is not None:
                            with torch.no_grad():
                                log_cols = log_col_marginal(problem, g, hint_g)
                        last_column_step = None if hint_g is None else (g, hint_g)
            if (check or mixing) and measured:  # both marginals of (f, g) are at hand
                error = _residual(problem, f, g, hint_f, log_cols)
                if mixing:
                    accelerator.observe(error)
                if check and bool((error <= tol).all()) and plain is not None:
                    # a converged accelerated solve ends on the plain column step (its columns exact): measured
                    # again there; if it misses tol, plain iterations go on from it
                    g, start, mixing = plain, max_iter, False
                    f_next, hint_f = row_step(problem, g, softmin, hint_f)
                    with torch.no_grad():
                        log_cols = log_col_marginal(problem, g, hint_g)
                    last_column_step = (g, hint_g)
                    error = _residual(problem, f, g, hint_f, log_cols)
                if check and bool((error <= tol).all()):
                    converged = True
                    break
            if mixing:
                f_next = accelerator.row(f, f_next)
            if iterates is not None:
                iterates.append((f_next, g))
            g_next, hint_g = col_step(problem, f_next, softmin, hint_g)
            if mixing:
                g_next = accelerator.col(g, g_next)
            measured = (tol > 0 and (it + 1) % self.check_every == 0) or it + 1 >= start
            if measured and hint_g is not None:  # the translation of after_iteration leaves the marginals as they are
                with torch.no_grad():
                    log_cols = log_col_marginal(problem, g_next, hint_g)
            f, g = self.after_iteration(problem, f_next, g_next)
            last_column_step = None if hint_g is None else (g_next, hint_g)
            iterations += 1
        return Plan(problem, f, g, done + iterations, converged, error, "unroll", iterates,
                    log_mass=_log_mass(problem, last_column_step),
                    kernel=_held_kernel(problem, softmin, last_column_step))


def _absorbed_scaling(problem: Problem, softmin: AbsorbedKernel, g: Tensor, max_iter: int, done: int) -> Plan:
    """``max_iter`` iterations of plain balanced Sinkhorn from ``g`` through the absorbed kernel in its certified
    scaling form (:meth:`AbsorbedKernel.scaling_iterations`) wherever the kernel is built around the current
    potentials: a row half-step that rebuilds the kernel around ``g`` hands its row sums over as the scaling form's
    first product (a cold start: one rebuild, then products only); a kernel rebuilt by a column half-step is taken
    up at the next iteration. After a refusal the half-steps go on from the last certified iterate (rebuilding the
    kernel where they must) until the kernel is rebuilt. Same iterates as the half-step loop up to rounding."""
    f = g  # replaced by the first iteration (max_iter >= 1), which starts with a row half-step: no hint yet
    hint_f = hint_g = None
    remaining, refused_at = max_iter, None  # refused_at: the rebuild count when the scaling form last stopped short
    while remaining:
        rows = None
        if hint_g is None or softmin.absorptions == refused_at:
            f, hint_f = row_step(problem, g, softmin, hint_f)
            if not (softmin.fresh_rows and softmin.absorptions != refused_at):
                g, hint_g = col_step(problem, f, softmin, hint_g)
                remaining -= 1
                continue
            rows = softmin.row_mass  # the kernel was just rebuilt around g: the scaling form's first product
        f_s, g_s, lse_rows, lse_cols, ran = softmin.scaling_iterations(problem, g, remaining, rows)
        refused_at = softmin.absorptions
        if ran:
            f, g, hint_f, hint_g, remaining = f_s, g_s, lse_rows, lse_cols, remaining - ran
        elif rows is not None:  # refused at once: this iteration ends as half-steps
            g, hint_g = col_step(problem, f, softmin, hint_g)
            remaining -= 1
    column_step = (g, hint_g)
    return Plan(problem, f, g, done + max_iter, False, None, "unroll", None,
                log_mass=_log_mass(problem, column_step), kernel=_held_kernel(problem, softmin, column_step))


def _dual_after_row_step(problem: Problem, f: Tensor, g: Tensor, lse_rows: Tensor) -> Tensor:
    """The dual objective at ``(f, g)`` up to a constant, ``(...,)`` in float64, with ``f`` the row half-step of
    ``g`` and ``lse_rows`` its soft-min: ``sum_i phi_a(f_i) + sum_j phi_b(g_j) - eps mass``
    (:func:`otalign.problem.dual_mass_term`). After the row step of a hard row side the rows equal ``a``, so the
    mass is the constant ``sum(a)`` and is left out; a relaxed side's mass comes from the row sums."""
    with torch.no_grad():
        f, g = f.detach().double(), g.detach().double()
        value = problem.geometry.reduce_rows(dual_mass_term(f, problem.a.double(), problem.rho_a))
        value = value + dual_mass_term(g, problem.b.double(), problem.rho_b)
        if math.isinf(problem.rho_a):
            return value
        rows = log_row_marginal(problem, f, lse_rows.double()).exp()
        return value - problem.eps * problem.sum_rows(rows)


def _dual_slack(problem: Problem, f: Tensor, g: Tensor) -> Tensor:
    """Rounding of :func:`_dual_after_row_step` in the potentials' dtype, ``(...,)``: a change below it is noise."""
    with torch.no_grad():
        a, b = problem.a, problem.b  # a zero mass contributes 0 whatever its potential (-inf)
        size = (problem.geometry.reduce_rows((a * where_positive(a, f.detach()).abs()).sum(-1))
                + (b * where_positive(b, g.detach()).abs()).sum(-1) + problem.eps * problem.sum_rows(a))
        return 16 * torch.finfo(f.dtype).eps * size.double()


def _residual(problem: Problem, f: Tensor, g: Tensor, lse_rows: Optional[Tensor], log_cols: Optional[Tensor]) -> Tensor:
    """The larger of the two marginal residuals of :attr:`Plan.marginal_residual`, ``(...,)``, from the row
    soft-min of ``g`` (``None`` for a free row side) and the log column marginal (``None`` for a free column side)."""
    with torch.no_grad():
        error = f.new_zeros(problem.batch_shape)
        if lse_rows is not None:
            rows = log_row_marginal(problem, f, lse_rows).exp()
            error = problem.sum_rows((rows - optimal_marginal(f, problem.a, problem.rho_a)).abs())  # all ranks' rows
        if log_cols is not None:
            target = optimal_marginal(g, problem.b, problem.rho_b)
            error = torch.maximum(error, (log_cols.exp() - target).abs().sum(-1))
        return error


def annealing_schedule(problem: Problem, ratio: float) -> list[float]:
    """eps values from the cost's spread down to (not including) ``problem.eps``, geometric with ``ratio``."""
    low, high = cost_range(problem)
    schedule = []
    eps = max(high - low, problem.eps)
    while eps > problem.eps:
        schedule.append(eps)
        eps *= ratio
    return schedule


def cost_range(problem: Problem) -> tuple[float, float]:
    """``(min, max)`` of the allowed costs: :meth:`DenseCost.bounds` for a matrix, one blockwise pass otherwise."""
    geometry = problem.geometry
    if isinstance(geometry, DenseCost):
        return geometry.bounds()
    low, high = math.inf, -math.inf
    with torch.no_grad():
        tensors = geometry.tensors()
        for start, stop in geometry.row_blocks():
            block = geometry.block(tensors, start, stop)
            finite = block[torch.isfinite(block)]
            if finite.numel():
                low, high = min(low, finite.min().item()), max(high, finite.max().item())
    bounds = geometry.reduce_rows(torch.tensor([-low, high], dtype=torch.float64, device=geometry.device), "max")
    return -bounds[0].item(), bounds[1].item()  # over all ranks' rows when sharded


def _held_kernel(problem: Problem, softmin: SoftMin, column_step) -> Optional[HeldKernel]:
    """The kernel the soft-min holds, for the plan's matrix (:mod:`otalign.softmin.held`): only for a solve run
    without autograd recording (``grad`` other than ``"unroll"``, or under ``torch.no_grad()``: an unrolled plan
    keeps the exponential form its log-matrix shares), after a column half-step through the kernel (its
    certificate covers the plan's ``f``, which the translation of :meth:`Sinkhorn.after_iteration` only shifts),
    in one process, for a dense cost (whose user holds an n x m matrix already; a point cloud's plan holds none)."""
    held = getattr(softmin, "held", None)
    if (held is None or column_step is None or not isinstance(problem.geometry, DenseCost)
            or problem.geometry.shards > 1 or torch.is_grad_enabled()):
        return None
    return held()


def _log_mass(problem: Problem, column_step: Optional[tuple[Tensor, Tensor]]) -> Optional[Tensor]:
    """``log`` of the plan's total mass from the last column half-step (its ``lse`` gives the column marginal;
    the translation of :meth:`Sinkhorn.after_iteration` leaves the plan unchanged), ``(...,)``; ``None`` if the
    loop ran no iteration or the column side is free."""
    if column_step is None:
        return None
    with torch.no_grad():
        g, lse = column_step
        return torch.logsumexp(log_col_marginal(problem, g.detach(), lse.detach()), dim=-1)
