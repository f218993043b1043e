"""What a solver can do, declared by the solver and checked by :func:`otalign.solve` before it runs.

A :class:`~otalign.solver.Solver` lists the optional capabilities it supports in ``supports`` (default: none).
:func:`required` reads what a solve asks for (from the problem, the gradient mode and the warm start) and
:func:`check_supported` refuses, before any work and with the same ``ValueError`` for every solver, what the solver
has not declared. On a sharded problem every rank reaches the same decision from the same global facts, so every
rank raises the same error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

if TYPE_CHECKING:
    from .problem import Problem
    from .solver import Solver

#: Every optional capability, with what it means.
CAPABILITIES: Mapping[str, str] = {
    "unroll": "gradients through the iterations (grad='unroll')",
    "implicit": "implicit differentiation at the fixed point (grad='implicit')",
    "envelope": "envelope-theorem gradients of the value (grad='envelope')",
    "detach": "a solve without gradients (grad='detach')",
    "fixed_iterations": ("exactly max_iter iterations of its scheme with gradients through them, on a dense cost "
                         "with forbidden pairs (tol=0), as the contrastive losses need"),
    "sharded": "rows split across processes (otalign.distributed)",
    "batched": "a batch of problems (B, n, m)",
    "masked": "forbidden pairs (Problem(mask=...))",
    "relaxed": "relaxed marginals (a finite or zero rho_a / rho_b)",
    "uniform_reference": "the uniform reference measure (reference='uniform')",
    "warm_start": "a warm start (init=...)",
    "dense": "a cost matrix (a tensor or DenseCost)",
    "geometry": "a cost given by a geometry other than a matrix (point clouds, factored costs)",
}

#: What every built-in Sinkhorn-type solver supports.
ALL = frozenset(CAPABILITIES)


def required(problem: "Problem", grad: str, init: object) -> list[str]:
    """The capabilities a solve of ``problem`` with ``grad`` and ``init`` needs (global facts only, so that every
    rank of a sharded problem computes the same list)."""
    geometry = problem.geometry
    needs = [grad]
    if geometry.shards > 1:
        needs.append("sharded")
    if problem.batch_shape:
        needs.append("batched")
    if geometry.masked:
        needs.append("masked")
    if not problem.is_balanced:
        needs.append("relaxed")
    if problem.reference == "uniform":
        needs.append("uniform_reference")
    if init is not None:
        needs.append("warm_start")
    needs.append("geometry" if geometry.structured else "dense")  # last: a more specific need is named first
    return needs


def check_supported(solver: "Solver", needs: Iterable[str], context: str = "") -> None:
    """Raise ``ValueError`` naming ``solver`` if it lacks any capability in ``needs``. ``context`` is appended to
    the message (e.g. which loss asked)."""
    for capability in needs:
        if capability not in CAPABILITIES:
            raise ValueError(f"capability: unknown capability {capability!r}; known: {sorted(CAPABILITIES)}")
        if capability in solver.supports:
            continue
        reason = solver.limitations.get(capability, "")
        raise ValueError(
            f"solver: {solver.name!r} does not support {CAPABILITIES[capability]}"
            + (f": {reason}" if reason else "") + (f" ({context})" if context else "")
        )


__all__ = ["CAPABILITIES", "ALL", "required", "check_supported"]
