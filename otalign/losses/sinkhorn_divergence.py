"""The Sinkhorn divergence as a loss between point clouds, in geomloss's vocabulary (docs/divergence.md).

``SinkhornDivergence(p, blur, reach, scaling, debias)`` is :func:`otalign.sinkhorn_divergence` with

==================  ==========================================================================================
geomloss            otalign
==================  ==========================================================================================
``p``               ground cost ``|x - y|^p / p``: ``"half_sqeuclidean"`` (p = 2), :func:`euclidean_floored` (p = 1)
``blur``            ``eps = blur ** p``
``reach``           ``rho = reach ** p`` (``None``: balanced, ``rho = inf``)
``scaling``         ``eps_scaling = scaling ** p``, from ``eps_start = diameter ** p``
``diameter``        bounding-box diagonal of all points unless given
``debias``          ``debias``
``backend``         ``"tensorized"``: stored cost matrices; ``"online"``: :class:`~otalign.PointCloud` blocks
==================  ==========================================================================================

With the defaults (``method="annealing"``, ``grad="envelope"``) the value is that of
``geomloss.SamplesLoss("sinkhorn", ...)`` up to rounding, and so are the gradients w.r.t. points and weights when
balanced (``reach=None``). With a ``reach``, geomloss's gradients are ``(rho + eps / 2) / (rho + eps)`` times the
derivative of its own value at convergence (the ``rho + eps`` backward it defines is never called by autograd);
otalign returns the derivative, and ``compat="geomloss"`` geomloss's numbers.
"""

from __future__ import annotations

import math
from typing import Optional, Union

from torch import Tensor, nn

from ..costs import CostFn, sqeuclidean
from ..measures import GRADS, METHODS, sinkhorn_divergence
from ..symmetric_sinkhorn import bounding_diameter
from ..checks import check_number

BACKENDS = ("auto", "tensorized", "online")
COMPAT = (None, "geomloss")


def euclidean_floored(x: Tensor, y: Tensor) -> Tensor:
    """``C_ij = max(|x_i - y_j|, 1e-4)``: the Euclidean distance (geomloss's ``p = 1`` cost), floored so that its
    gradient is finite; the floor is geomloss's, so that the self-terms' diagonal ``C_ii`` is the same."""
    return sqeuclidean(x, y).clamp_min(1e-8).sqrt()


class SinkhornDivergence(nn.Module):
    """Debiased Sinkhorn divergence between weighted point clouds (module docstring for the vocabulary).

    Args:
        p: exponent of the ground cost ``|x - y|^p / p`` (1 or 2), unless ``cost`` is given.
        blur: the kernel's length scale; ``eps = blur ** p`` (> 0).
        reach: ``None`` (balanced: the weights must have equal totals) or the length scale of the marginal
            penalty, ``rho = reach ** p``.
        scaling: ratio in (0, 1) of successive blur values of the annealing (more steps and more accuracy as it
            approaches 1).
        debias: subtract the self-terms (``False``: the raw entropic OT cost, biased towards shrinking).
        diameter: first blur of the annealing (default: the bounding-box diagonal of the inputs).
        cost: a cost name or callable ``(x (..., k, d), y (..., m, d)) -> (..., k, m)`` replacing ``|x - y|^p / p``
            (``p`` then only sets the schedule's exponent).
        backend: ``"tensorized"`` stores the cost matrices, ``"online"`` recomputes cost blocks (memory
            O((n + m) d)); ``"auto"``: online for ``p = 2`` (each block is one matrix product), else stored up to
            5000^2 entries per matrix.
        method, grad: see :func:`otalign.sinkhorn_divergence` (``grad="envelope"`` is geomloss's gradient).
        compat: ``"geomloss"`` reproduces geomloss 0.3's gradients also with a ``reach``, which are
            ``(rho + eps / 2) / (rho + eps)`` times the envelope gradient (see
            :func:`otalign.sinkhorn_divergence`, ``geomloss_gradient``); values are the same either way.

    Call as ``loss(x, y)`` (uniform weights) or ``loss(a, x, b, y)`` with ``x (n, d)``, ``y (m, d)``, ``a (n,)``,
    ``b (m,)``, or batched ``(B, n, d)``, ``(B, m, d)``, ``(B, n)``, ``(B, m)``; returns ``()`` or ``(B,)``.

    Example::

        >>> loss = otalign.losses.SinkhornDivergence(p=2, blur=0.05)
        >>> x = torch.randn(1000, 3, requires_grad=True)
        >>> loss(x, torch.randn(800, 3) + 2).backward()
    """

    def __init__(
        self,
        p: float = 2,
        blur: float = 0.05,
        reach: Optional[float] = None,
        scaling: float = 0.5,
        debias: bool = True,
        diameter: Optional[float] = None,
        cost: Union[str, CostFn, None] = None,
        backend: str = "auto",
        method: str = "annealing",
        grad: str = "envelope",
        compat: Optional[str] = None,
    ):
        super().__init__()
        self.p = check_number("p", p, strict=True)
        if cost is None and self.p not in (1, 2):
            raise ValueError(f"p: expected 1 or 2 (or give cost=), got {p!r}")
        self.blur = check_number("blur", blur, strict=True)
        self.reach = None if reach is None else check_number("reach", reach, strict=True, finite=False)
        self.scaling = check_number("scaling", scaling, strict=True)
        if not self.scaling < 1:
            raise ValueError(f"scaling: expected a ratio in (0, 1), got {scaling!r}")
        self.diameter = None if diameter is None else check_number("diameter", diameter, strict=True)
        if not isinstance(debias, bool):
            raise TypeError(f"debias: expected a bool, got {type(debias).__name__}")
        if backend not in BACKENDS:
            raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
        if method not in METHODS:
            raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
        if grad not in GRADS:
            raise ValueError(f"grad: expected one of {GRADS}, got {grad!r}")
        if compat not in COMPAT:
            raise ValueError(f"compat: expected one of {COMPAT}, got {compat!r}")
        self.debias, self.backend, self.method, self.grad, self.compat = debias, backend, method, grad, compat
        self.cost = cost if cost is not None else ("half_sqeuclidean" if self.p == 2 else euclidean_floored)

    @property
    def eps(self) -> float:
        """The entropic strength ``blur ** p``."""
        return self.blur ** self.p

    @property
    def rho(self) -> float:
        """The marginal penalty ``reach ** p`` (``inf`` when balanced)."""
        return math.inf if self.reach is None else self.reach ** self.p

    def forward(self, *args: Tensor) -> Tensor:
        if len(args) == 2:
            (x, y), a, b = args, None, None
        elif len(args) == 4:
            a, x, b, y = args
        else:
            raise TypeError(f"SinkhornDivergence: expected (x, y) or (a, x, b, y), got {len(args)} arguments")
        a, b = _flat_weights("a", a, x), _flat_weights("b", b, y)
        diameter = self.diameter if self.diameter is not None else bounding_diameter(x, y)
        dense = None if self.backend == "auto" else self.backend == "tensorized"
        return sinkhorn_divergence(
            x, y, a, b, eps=self.eps, rho=self.rho, cost=self.cost, debias=self.debias, method=self.method,
            eps_scaling=self.scaling ** self.p, eps_start=(diameter if diameter > 0 else self.blur) ** self.p,
            grad=self.grad, dense=dense, geomloss_gradient=self.compat == "geomloss",
        )

    def extra_repr(self) -> str:
        return (f"p={self.p:g}, blur={self.blur:g}, reach={self.reach}, scaling={self.scaling:g}, "
                f"debias={self.debias}, backend={self.backend!r}")


def _flat_weights(name: str, weights: Optional[Tensor], points: Tensor) -> Optional[Tensor]:
    """geomloss accepts ``(n, 1)`` weights for ``(n, d)`` points: flatten them to ``(n,)``."""
    if isinstance(weights, Tensor) and points.dim() == 2 and weights.dim() == 2 and weights.shape[-1] == 1:
        return weights.reshape(-1)
    if weights is not None and not isinstance(weights, Tensor):
        raise TypeError(f"{name}: expected a tensor of weights, got {type(weights).__name__}")
    return weights


__all__ = ["SinkhornDivergence", "euclidean_floored"]
