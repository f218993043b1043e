"""Low-rank Sinkhorn (Scetbon, Cuturi & Peyre 2021, "Low-Rank Sinkhorn Factorization"), registered as ``"lowrank"``.

The plan is constrained to ``P = Q diag(1/g) R^T`` with ``Q (n, r)``, ``R (m, r)``, ``g (r,)`` non-negative and

    Q 1 = a,  R 1 = b,  Q^T 1 = R^T 1 = g >= alpha,

and the solver minimises (POT's ``ot.lowrank_sinkhorn`` objective; OTT-JAX's ``LRSinkhorn`` with ``epsilon``)

    F(Q, R, g) = <C, Q diag(1/g) R^T> + epsilon (sum Q log Q + sum R log R + sum g log g)

by mirror descent: each step multiplies the factors by ``exp(-step * gradient)`` and projects back onto the
constraints in KL: by Newton's method on the projection's ``2 r`` dual variables when solving to ``tol > 0``
(:mod:`otalign.solvers.lowrank_newton`), by Dykstra's algorithm on scalings for a fixed number of steps
(:mod:`otalign.solvers.lowrank_dykstra`, POT's iteration). The problem is non-convex: the result is a local
minimum that depends on the initialisation. Everything is O((n + m) r) memory; with a point cloud and an
inner-product cost (``"sqeuclidean"``, ``"half_sqeuclidean"``, cosine costs) the cost is used in factored form
``C = A B^T`` and a step costs O((n + m) r d) time.

Balanced problems only (``rho_a = rho_b = inf``); masked costs are not supported.
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import Optional, Union

import torch
from torch import Tensor

from otalign.cost_operator import cost_operator
from otalign.lowrank_plan import LowRankPlan, factor_entropy
from otalign.problem import Problem, safe_log
from otalign.solver import ConvergenceWarning, Solver
from otalign.checks import check_number, check_positive_int

from .lowrank_dykstra import CHECK_EVERY, dykstra
from .lowrank_newton import newton_projection
from .lowrank_steps import (INITIALIZERS, RESCALES, exp_contiguous, initial_factors, kept_rows, linear_gradients,
                            log_stored_transposed, mirror_kernels, same_memory_transposed)
from .registry import register

#: The ``projection`` option: Newton's method or Dykstra's algorithm for the KL projection of each step.
PROJECTIONS = ("auto", "newton", "dykstra")
#: The loosest projection tolerance, relative to the total mass (the first steps of a solve to ``tol > 0``).
LOOSE = 1e-3

LowRankInit = Union[None, LowRankPlan, tuple[Tensor, Tensor, Tensor]]


@register("lowrank")
class LowRankSinkhorn(Solver):
    """Low-rank entropic OT by mirror descent on the factors ``(Q, R, g)`` (see the module docstring).

    Options:
        rank: the rank ``r`` of the plan, ``1 <= r <= min(n, m)``.
        epsilon: weight of the entropic term on the factors. ``0`` (default, as POT's ``reg=0`` and OTT-JAX's
            ``epsilon=0``): the unregularised low-rank problem, ``F = <C, P>``; the problem's ``eps`` is then not
            used. ``None``: the problem's ``eps``. Entropy on the factors pushes every row of ``Q`` towards uniform
            weights over the ``r`` components, i.e. the plan towards ``a b^T``: at the same value it blurs the plan
            much more than ``eps KL(P | a b^T)`` does in the full problem.
        gamma: mirror-descent step (inverse of a KL proximal weight), default 10.
        gamma_rescale: how the step is set at every step from ``G``, the largest gradient entry (sup-norm over
            ``Q``, ``R``, ``g``): ``"linear"`` (default) ``gamma / G``, so that no log-factor moves by more than
            ``gamma``, unchanged when the cost and eps are scaled together, and at most ``1 / (2 epsilon)``
            (larger steps overshoot the entropic term). ``"square"``: ``gamma / G^2``, POT's
            ``gamma_init="rescale"`` and OTT-JAX's ``gamma_rescale=True`` (Scetbon & Cuturi 2022), whose moves
            shrink as the cost grows (POT rescales the cost to about [0, 1] for it). ``None``: ``gamma`` itself.
        initializer: ``"random"`` (default, seeded by ``seed``) or ``"rank2"`` (deterministic; POT's
            ``init="deterministic"``; its asymmetry scales like 1/n, so at large n it starts near a saddle point).
            ``solve(..., init=)`` takes a :class:`~otalign.LowRankPlan` or ``(Q, R, g)`` (a warm start).
        alpha: lower bound on the entries of ``g`` (default 1e-10, as POT), ``alpha < (total mass) / rank``.
        inner_tol: tolerance of each projection on its marginal error (default 1e-6): Dykstra's
            ``|Q 1 - a|_1 + |R 1 - b|_1`` (checked every 10 iterations; ``0``: none, exactly ``inner_max_iter``
            iterations), Newton's ``|Q^T 1 - g|_1 + |R^T 1 - g|_1``.
        inner_max_iter: iteration cap of each projection (default 1000; Newton needs about 2-10).
        projection: ``"auto"`` (default): Newton when solving to ``tol > 0``, Dykstra for ``tol = 0``;
            ``"newton"`` or ``"dykstra"`` for either always. Both compute the same KL projection; Dykstra's rate
            degrades as the factors approach hard assignments (as they do at ``epsilon = 0``), Newton's does not.

    Schedule. Solving to ``tol > 0`` (``solve``'s default 1e-6): every projection is Newton's, started from the
    previous step's column scalings (the first from a plan given as ``init``); while the objective still changes by
    more than ``10 tol`` a projection is inexact, to ``0.1 x`` (the last relative change) ``x`` (total mass),
    between ``inner_tol`` and ``1e-3 x`` (total mass); after that each runs to ``inner_tol``. The solve stops when
    the relative change of ``F`` between two steps, ``|F_k - F_{k-1}| / |F_{k-1}|``, is at most ``tol`` and the
    last projection met ``inner_tol``; ``converged=True`` is then certified on the returned factors (both marginal
    residuals, float64, at most ``max(tol, inner_tol)``). ``tol=0`` runs exactly ``max_iter`` steps, every
    projection Dykstra's from zero scalings to ``inner_tol``: POT's protocol, whose factors it reproduces step for
    step.
    A solve that stops short warns (``ConvergenceWarning``) with the knob: ``max_iter`` (steps), or
    ``inner_max_iter`` when the last projection stopped at its cap above its tolerance.
    ``grad``: ``"unroll"`` (through every step and projection), ``"envelope"`` (factors detached; ``value``
    differentiates through the cost only), ``"detach"``; ``"implicit"`` is not available (no fixed-point equation
    is implemented for this non-convex problem).

    Example::

        >>> x, y = torch.randn(10**6, 3), torch.randn(10**6, 3)
        >>> problem = otalign.Problem(otalign.PointCloud(x, y), eps=0.01)
        >>> plan = otalign.solve(problem, "lowrank", rank=10, max_iter=50)
        >>> plan.value_linear, plan.Q.shape, plan.inner_marginal                   # (10**6, 10) factors, no n x m
    """

    supports = frozenset({"unroll", "envelope", "detach", "batched", "uniform_reference", "warm_start", "dense",
                          "geometry"})
    limitations = {
        "implicit": "no fixed-point equation is implemented for this non-convex problem; use 'unroll' or 'envelope'",
        "relaxed": "the low-rank solver supports balanced problems only (rho = inf)",
        "masked": "cost products cannot carry forbidden pairs (infinite costs)",
        "sharded": "the factors couple all rows",
        "fixed_iterations": ("a low-rank plan has no dual potentials and cannot exclude forbidden pairs (masked "
                             "costs), both of which the contrastive losses use; use it through "
                             "otalign.solve(problem, 'lowrank', rank=...)"),
    }
    remedies = (("max_iter", "raise max_iter"),)

    def __init__(
        self,
        rank: int,
        epsilon: Optional[float] = 0.0,
        gamma: float = 10.0,
        gamma_rescale: Optional[str] = "linear",
        initializer: str = "random",
        seed: int = 0,
        alpha: float = 1e-10,
        inner_tol: float = 1e-6,
        inner_max_iter: int = 1000,
        projection: str = "auto",
    ):
        super().__init__()
        self.rank = check_positive_int("rank", rank)
        self.epsilon = None if epsilon is None else check_number("epsilon", epsilon)
        self.gamma = check_number("gamma", gamma, strict=True)
        if gamma_rescale not in RESCALES:
            raise ValueError(f"gamma_rescale: expected one of {RESCALES}, got {gamma_rescale!r}")
        self.gamma_rescale = gamma_rescale
        if initializer not in INITIALIZERS:
            raise ValueError(f"initializer: expected one of {INITIALIZERS}, got {initializer!r}")
        self.initializer = initializer
        self.seed = int(seed)
        self.alpha = check_number("alpha", alpha, strict=True)
        self.inner_tol = check_number("inner_tol", inner_tol)
        self.inner_max_iter = check_positive_int("inner_max_iter", inner_max_iter)
        if projection not in PROJECTIONS:
            raise ValueError(f"projection: expected one of {PROJECTIONS}, got {projection!r}")
        self.projection = projection

    def _newton(self, tol: float) -> bool:
        """Whether the projections use Newton's method (``"auto"``: when solving to ``tol > 0``)."""
        return self.projection == "newton" or (self.projection == "auto" and tol > 0)

    def _inner_tolerance(self, change: Tensor, tol: float, mass: Tensor) -> Tensor:
        """The next projection's tolerance per problem ``(...,)``: ``inner_tol`` once the objective's relative
        change is within ``10 tol``; before that ``0.1 * change * mass``, between ``inner_tol`` and ``LOOSE * mass``
        (far from convergence a projection need not be finer than the step's effect on the objective)."""
        loose = (0.1 * change).clamp_max(LOOSE) * mass
        return torch.where(change <= 10 * tol, self.inner_tol, loose.clamp_min(self.inner_tol))

    def residual_tolerance(self, tol: float) -> float:
        """``converged`` certifies the marginals to the projection's tolerance (``tol`` bounds the objective's
        relative change)."""
        return max(tol, self.inner_tol)

    def attach(self, problem: Problem, plan: LowRankPlan, grad: str) -> LowRankPlan:
        """Factors computed without a graph, kept detached: ``"envelope"`` differentiates :attr:`LowRankPlan.value`
        through the cost only, ``"detach"`` nothing."""
        return replace(plan, problem=problem if grad == "envelope" else problem.detach(), grad=grad, _operator=None)

    def check_result(self, plan: LowRankPlan) -> None:
        for name, x in (("Q", plan.Q), ("R", plan.R), ("inner_marginal", plan.inner_marginal)):
            # the factors are exponentials (>= 0 or NaN): all entries are finite iff the largest is (NaN propagates)
            if not bool(torch.isfinite(x.detach().amax())):
                raise FloatingPointError(f"lowrank: the factor {name} is not finite; this is a bug, please report it "
                                         f"with the problem ({plan.problem!r}) and the solver options")
        if plan.projection_error is None:
            return
        # a tolerance of 0 asks for exactly inner_max_iter iterations (as tol=0 for the steps): nothing was missed
        missed = (plan.projection_error > plan.projection_tolerance) & (plan.projection_tolerance > 0)
        if bool(missed.any()):
            error = float(plan.projection_error[missed].max())
            target = float(plan.projection_tolerance[missed].max())
            warnings.warn(f"lowrank: the last projection stopped at inner_max_iter={self.inner_max_iter} with marginal "
                          f"error {error:.3g} > its tolerance {target:.3g}; raise inner_max_iter",
                          ConvergenceWarning, stacklevel=4)

    def run(self, problem: Problem, max_iter: int, tol: float, init: LowRankInit) -> LowRankPlan:
        self._check(problem)
        epsilon = problem.eps if self.epsilon is None else self.epsilon
        operator = cost_operator(problem.geometry)
        Q, R, g = self._initial(problem, init)
        scalings = self._initial_scalings(init, Q.dtype)
        rows, cols = kept_rows(problem.a), kept_rows(problem.b)
        batch = problem.batch_shape
        active = torch.ones(batch, dtype=torch.bool, device=problem.device)
        error: Optional[Tensor] = None
        history: list[Tensor] = []
        previous: Optional[Tensor] = None
        projection: Optional[Tensor] = None
        projection_tol: Optional[Tensor] = None
        steps = inner_total = 0
        mass = problem.a.detach().sum(-1)
        # without a graph to record, the (n, r) arrays of a step live in buffers reused by the next steps (a fresh
        # large tensor costs its page faults every time): Q, R, and the gradients, which become the log-kernels
        # (mirror_kernels) and then the new log-factors (dykstra's overwrite), freeing the old ones' memory
        fused = not (torch.is_grad_enabled()
                     and any(t.requires_grad for t in (problem.a, problem.b, *problem.geometry.tensors())))
        reuse = fused and operator.kind != "blocked"  # a blocked cost may hold parameters out of sight
        buffers: list[Optional[Tensor]] = [None] * 4  # Q, R, spare (n, r) and (m, r) arrays
        log_g = safe_log(g)
        workspace: dict = {}
        transposed = reuse and not self._newton(tol)
        if transposed:
            # the (n, r) arrays stored as (r, n) (the layout Dykstra reads its kernels in, which then needs no
            # transposed copy of them); every buffer of the solve is made in this layout (no gradient: the plain
            # log, whose values are safe_log's). Factors drawn here are not read again: their memory holds the
            # spare arrays; Dykstra's first frames go into the Q and R buffers (not read during a projection),
            # which at the end hold the returned factors: 3 arrays per factor made, not 6
            log_q, log_r = log_stored_transposed(Q), log_stored_transposed(R)
            spare = [same_memory_transposed(x) if init is None and x.is_contiguous() else torch.empty_like(log_x)
                     for x, log_x in ((Q, log_q), (R, log_r))]
            buffers = [torch.empty_like(log_q), torch.empty_like(log_r), *spare]
            workspace = {"Q": {"kernel": buffers[0].transpose(-1, -2)}, "R": {"kernel": buffers[1].transpose(-1, -2)}}
        else:
            log_q, log_r = safe_log(Q), safe_log(R)
        for _ in range(max_iter):
            if reuse:
                Q, R = torch.exp(log_q, out=buffers[0]), torch.exp(log_r, out=buffers[1])
                buffers[:2] = Q, R
            else:
                Q, R = log_q.exp(), log_r.exp()
            g = log_g.exp()
            entropy = factor_entropy(Q, R, g) if epsilon != 0 else None
            linear_q, linear_r, omega = linear_gradients(operator, Q, R, log_g, buffers if reuse else None)
            value = (omega / g).sum(-1)  # <C, Q diag(1/g) R^T>, as lowrank_plan.linear_value
            if entropy is not None:
                value = value + epsilon * entropy
            history.append(value.detach())
            inner_tol: Union[float, Tensor] = self.inner_tol
            if previous is not None and tol > 0:
                with torch.no_grad():
                    change = (value - previous).abs() / previous.abs().clamp_min(torch.finfo(value.dtype).tiny)
                    error = change if error is None else torch.where(active, change, error)
                    active = active & ((change > tol) | (projection > self.inner_tol))
                if not bool(active.any()):
                    break
                inner_tol = self._inner_tolerance(change, tol, mass)
            elif tol > 0:
                inner_tol = (LOOSE * mass).clamp_min(self.inner_tol)
            previous = value.detach()
            kernels = mirror_kernels(log_q, log_r, log_g, linear_q, linear_r, omega, epsilon, self.gamma,
                                     self.gamma_rescale, rows, cols)
            start = scalings if tol > 0 else None
            if self._newton(tol):
                new = newton_projection(*kernels[:3], problem.a, problem.b, self.alpha, inner_tol,
                                        self.inner_max_iter, start=start)
            else:
                # without a stopping test (inner_tol = 0) the checks only guard the scalings' range: one block
                # (re-run with re-framing in the rare case it left the range) saves two checks a projection
                every = self.inner_max_iter if isinstance(inner_tol, float) and inner_tol == 0 else CHECK_EVERY
                new = dykstra(*kernels[:3], problem.a, problem.b, self.alpha, inner_tol, self.inner_max_iter,
                              start=start, every=every, overwrite=reuse, workspace=workspace)
            if reuse:
                buffers[2:] = log_q, log_r  # the old log-factors are not read again
            inner_total += new.iterations
            target = torch.as_tensor(inner_tol, dtype=new.error.dtype, device=new.error.device).expand_as(new.error)
            projection = new.error if projection is None else torch.where(active, new.error, projection)
            projection_tol = target if projection_tol is None else torch.where(active, target, projection_tol)
            if bool(active.all()):
                log_q, log_r, log_g, scalings = new.log_q, new.log_r, new.log_g, new.scalings
            else:
                keep = active.unsqueeze(-1)
                log_q = torch.where(keep.unsqueeze(-1), new.log_q, log_q)
                log_r = torch.where(keep.unsqueeze(-1), new.log_r, log_r)
                log_g = torch.where(keep, new.log_g, log_g)
                scalings = tuple(torch.where(keep, x, y) for x, y in zip(new.scalings, scalings))
            steps += 1
        projected = projection is None or bool((projection <= self.inner_tol).all())
        converged = tol > 0 and not bool(active.any()) and projected
        return LowRankPlan(
            problem, *(exp_contiguous(x, same_memory_transposed(buffers[k]) if transposed else None)
                       for k, x in enumerate((log_q, log_r))),
            log_g.exp(), epsilon, steps, converged, error, "unroll",
            torch.stack(history), projection, inner_total, scalings, projection_tol, _operator=operator,
        )

    def _check(self, problem: Problem) -> None:
        if not problem.is_balanced:
            raise ValueError(
                f"rho_a, rho_b: the 'lowrank' solver supports balanced problems only (rho = inf), got rho_a = "
                f"{problem.rho_a:g}, rho_b = {problem.rho_b:g}"
            )
        if self.rank > min(problem.n, problem.m):
            raise ValueError(f"rank: {self.rank} exceeds min(n, m) = {min(problem.n, problem.m)}")
        mass = float(problem.a.detach().sum(-1).min())
        if not self.alpha < mass / self.rank:
            raise ValueError(f"alpha: expected alpha < total mass / rank = {mass / self.rank:g}, got {self.alpha:g}")

    @staticmethod
    def _initial_scalings(init: LowRankInit, dtype: torch.dtype) -> Optional[tuple[Tensor, Tensor]]:
        """The first projection's warm start: a :class:`LowRankPlan`'s last column scalings (checked finite), or
        ``None`` (zeros: a cold start) for factors ``(Q, R, g)``, which carry none."""
        if not isinstance(init, LowRankPlan) or init.scalings is None:
            return None
        scalings = tuple(x.detach().to(dtype) for x in init.scalings)
        if not all(bool(torch.isfinite(x).all()) for x in scalings):
            raise ValueError("init: the plan's scalings are not finite")
        return scalings

    def _initial(self, problem: Problem, init: LowRankInit) -> tuple[Tensor, Tensor, Tensor]:
        if init is None:
            return initial_factors(problem, self.rank, self.initializer, self.seed)
        if isinstance(init, LowRankPlan):
            init = (init.Q, init.R, init.inner_marginal)
        if not (isinstance(init, (tuple, list)) and len(init) == 3):
            raise TypeError(f"init: expected a LowRankPlan or a triple (Q, R, g), got {type(init).__name__}")
        r, batch = self.rank, problem.batch_shape
        shapes = (batch + (problem.n, r), batch + (problem.m, r), batch + (r,))
        out = []
        for name, x, shape in zip("QRg", init, shapes):
            if not isinstance(x, Tensor) or not x.is_floating_point():
                raise TypeError(f"init: {name} must be a floating-point tensor")
            if tuple(x.shape) != shape:
                raise ValueError(f"init: {name} must have shape {shape} (rank {r}), got {tuple(x.shape)}")
            if x.device != problem.device:
                raise ValueError(f"init: {name} is on {x.device} but the problem is on {problem.device}")
            if not bool(torch.isfinite(x).all()) or bool((x < 0).any()):
                raise ValueError(f"init: {name} must be finite and non-negative")
            out.append(x.detach().to(problem.dtype))
        for name, x, mass in (("Q", out[0], problem.a), ("R", out[1], problem.b), ("g", out[2], None)):
            support = x if mass is None else x[mass > 0]
            if not bool((support > 0).all()):
                where = "" if mass is None else " on the rows of positive mass"
                raise ValueError(f"init: {name} must be positive{where} (mirror descent multiplies the factors, so "
                                 f"a zero entry would stay zero and the constraints could not be met); e.g. add a "
                                 f"small constant to it")
        return out[0], out[1], out[2]
