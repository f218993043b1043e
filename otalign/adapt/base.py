"""The estimator interface shared by the OT domain-adaptation transports (scikit-learn style).

``fit(Xs, ys, Xt, yt)`` builds the ground cost between source samples (rows) and target samples (columns),
solves an entropic OT problem with :func:`otalign.solve` and keeps the coupling; ``transform`` moves source
points onto the target domain, ``inverse_transform`` target points onto the source domain, and
``transform_labels`` / ``inverse_transform_labels`` propagate labels through the coupling.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import Tensor

from ..plan import Plan
from ..registry import resolve_solver
from ..checks import check_number, check_positive_int
from . import ground, mapping
from ..arrays import label_classes
from .arrays import ArrayLike, Container, as_labels, as_samples

OUT_OF_SAMPLE_MAPS = ("ferradans", "continuous")


class NotFittedError(ValueError, AttributeError):
    """An estimator was used before :meth:`BaseTransport.fit` (a ValueError and an AttributeError, as
    scikit-learn's)."""


class Parameters:
    """scikit-learn's parameter protocol for an estimator whose constructor stores each argument under its name:
    ``get_params`` reads them, ``set_params`` checks the new values with the estimator's ``_check_params`` and
    leaves the estimator as it was when one is refused."""

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (scikit-learn's ``get_params``; ``deep`` is accepted and ignored)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {name: getattr(self, name) for name in names}

    def set_params(self, **params) -> "Parameters":
        """Set constructor parameters by name (checked as in the constructor; all or none); returns ``self``."""
        previous = self.get_params()
        for name in params:
            if name not in previous:
                raise ValueError(f"{name}: not a parameter of {type(self).__name__}; "
                                 f"expected one of {sorted(previous)}")
        self.__dict__.update(params)
        try:
            self._check_params()
        except (TypeError, ValueError):
            self.__dict__.update(previous)  # a rejected value leaves the estimator as it was
            raise
        return self

    def _check_params(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class BaseTransport(Parameters):
    """Common machinery of the transports; subclasses define ``__init__`` (parameters stored under their own names)
    and :meth:`_solve`.

    Fitted attributes: ``coupling_ (n_s, n_t)`` and ``cost_ (n_s, n_t)`` (in the container of ``Xs``: NumPy or
    torch; the label cost included, ``inf`` on forbidden pairs), ``mu_s (n_s,)``, ``mu_t (n_t,)`` (uniform
    masses), ``plan_`` (the :class:`otalign.Plan`), ``n_iter_``, ``converged_``, ``norm_value_`` (the
    divisor of ``norm="median"|"max"``).
    """

    #: How points other than the fitted ones are mapped: ``"ferradans"`` or ``"continuous"``.
    out_of_sample_map: str = "ferradans"

    def _check_params(self) -> None:
        """Validate the common parameters (subclasses extend it)."""
        ground.check_metric(self.metric)
        ground.check_norm(self.norm)
        check_positive_int("max_iter", self.max_iter)
        check_number("tol", self.tol)
        check_number("limit_max", self.limit_max, finite=False)
        if self.out_of_sample_map not in OUT_OF_SAMPLE_MAPS:
            raise ValueError(f"out_of_sample_map: expected one of {OUT_OF_SAMPLE_MAPS}, got {self.out_of_sample_map!r}")
        if hasattr(self, "solver"):
            resolve_solver(self.solver)


    # ------------------------------------------------------------------ fit
    def _solve(self, cost: Tensor, a: Tensor, b: Tensor, mask: Optional[Tensor], ys: Optional[Tensor]) -> Plan:
        raise NotImplementedError

    def fit(self, Xs: ArrayLike, ys: Optional[ArrayLike] = None, Xt: Optional[ArrayLike] = None,
            yt: Optional[ArrayLike] = None) -> "BaseTransport":
        """Fit the coupling between source samples ``Xs (n_s, d)`` and target samples ``Xt (n_t, d)``.

        ``ys (n_s,)`` / ``yt (n_t,)`` are class labels: integers (``-1`` = unlabelled), booleans, floats or
        strings (coded alike on both sides; :func:`otalign.arrays.as_labels`). With both, pairs of labelled
        samples with different labels get the cost ``limit_max * max(C)`` (forbidden when ``limit_max = inf``).
        Returns ``self``.
        """
        self._check_params()
        if Xt is None:
            raise ValueError("Xt: fit needs the target samples (n_target, n_features)")
        xs, container = as_samples("Xs", Xs)
        xt, _ = as_samples("Xt", Xt)
        dtype = torch.promote_types(xs.dtype, xt.dtype)
        xs, xt = xs.to(dtype), xt.to(device=xs.device, dtype=dtype)
        if xs.shape[1] != xt.shape[1]:
            raise ValueError(f"Xs, Xt: feature dimensions differ ({xs.shape[1]} vs {xt.shape[1]})")
        classes = label_classes(ys, yt, names=("ys", "yt"))  # string labels: one coding shared by both sides
        labels_s = None if ys is None else as_labels("ys", ys, xs.shape[0], xs.device, classes)[0]
        labels_t = None if yt is None else as_labels("yt", yt, xt.shape[0], xs.device, classes)[0]
        with torch.no_grad():
            cost = ground.ground_cost(xs, xt, self.metric)
            value = ground.normalisation_value(cost, self.norm)
            cost = ground.normalise(cost, self.norm, value)
            mask = None
            if labels_s is not None and labels_t is not None:
                limit = check_number("limit_max", self.limit_max, finite=False)
                cost, mask = ground.label_cost(cost, labels_s, labels_t, limit)
            a = torch.full((xs.shape[0],), 1.0 / xs.shape[0], dtype=dtype, device=xs.device)
            b = torch.full((xt.shape[0],), 1.0 / xt.shape[0], dtype=dtype, device=xs.device)
            plan = self._solve(cost, a, b, mask, labels_s)
            coupling = plan.matrix
        self.xs_, self.xt_, self.plan_, self._coupling, self._container = xs, xt, plan, coupling, container
        self.norm_value_ = value
        self.n_iter_, self.converged_ = plan.iterations, plan.converged
        self.coupling_ = container.restore(coupling)
        self.cost_ = container.restore(cost if mask is None else cost.masked_fill(mask, torch.inf))
        self.mu_s, self.mu_t = container.restore(a), container.restore(b)
        return self

    def fit_transform(self, Xs: ArrayLike, ys: Optional[ArrayLike] = None, Xt: Optional[ArrayLike] = None,
                      yt: Optional[ArrayLike] = None) -> ArrayLike:
        """``fit(Xs, ys, Xt, yt).transform(Xs)``: the fitted source samples moved to the target domain."""
        return self.fit(Xs, ys, Xt, yt).transform(Xs)

    # ------------------------------------------------------------------ maps
    def _fitted(self) -> None:
        if not hasattr(self, "plan_"):
            raise NotFittedError(f"{type(self).__name__}: not fitted yet; call fit(Xs, ys, Xt, yt) first")

    def _samples(self, name: str, x: ArrayLike) -> tuple[Tensor, Container]:
        self._fitted()
        t, container = as_samples(name, x)
        if t.shape[1] != self.xs_.shape[1]:
            raise ValueError(f"{name}: expected {self.xs_.shape[1]} features (as in fit), got {t.shape[1]}")
        return t.to(device=self.xs_.device, dtype=self.xs_.dtype), container

    def _cost_to(self, support: Tensor, rows_are_support: bool):
        """The normalised fitted-metric cost from a block of query points to ``support``, as ``(k, len(support))``."""
        def cost(block: Tensor) -> Tensor:
            c = ground.ground_cost(support, block, self.metric).T if rows_are_support else \
                ground.ground_cost(block, support, self.metric)
            return ground.normalise(c, self.norm, self.norm_value_)
        return cost

    def transform(self, Xs: ArrayLike) -> ArrayLike:
        """Source points ``Xs (q, d)`` moved to the target domain, ``(q, d)`` in ``Xs``'s container.

        ``out_of_sample_map="ferradans"``: the fitted ``Xs`` go to their barycentric image
        ``sum_j P_ij xt_j / sum_j P_ij``; any other input moves each point by the displacement (barycentric image
        minus point) of its nearest fitted source point. ``"continuous"``: every point, fitted or not, goes to the
        entropic map ``sum_j w_j(x) xt_j``, ``w(x) = softmax_j(g_j/eps + log b_j - C(x, xt_j)/eps)`` with the
        fitted potential ``g`` and the fitted metric and normalisation (no label cost); on a fitted point this
        equals its barycentric image when no label cost was used.
        """
        x, container = self._samples("Xs", Xs)
        with torch.no_grad():
            if self.out_of_sample_map == "continuous":
                log_scaling = self.plan_.g / self.plan_.problem.eps + self.plan_.problem.log_b
                out = mapping.entropic_map(x, self.xt_, log_scaling, self.plan_.problem.eps,
                                           self._cost_to(self.xt_, rows_are_support=False))
            else:
                out = self._ferradans(x, self.xs_, mapping.barycentric(self._coupling, self.xt_))
        return container.restore(out)

    def inverse_transform(self, Xt: ArrayLike) -> ArrayLike:
        """Target points ``Xt (q, d)`` moved to the source domain: the mirror of :meth:`transform` (``P^T``,
        ``f`` and ``a`` in place of ``P``, ``g`` and ``b``)."""
        x, container = self._samples("Xt", Xt)
        with torch.no_grad():
            if self.out_of_sample_map == "continuous":
                log_scaling = self.plan_.f / self.plan_.problem.eps + self.plan_.problem.log_a
                out = mapping.entropic_map(x, self.xs_, log_scaling, self.plan_.problem.eps,
                                           self._cost_to(self.xs_, rows_are_support=True))
            else:
                out = self._ferradans(x, self.xt_, mapping.barycentric(self._coupling.T, self.xs_))
        return container.restore(out)

    @staticmethod
    def _ferradans(x: Tensor, fitted: Tensor, mapped: Tensor) -> Tensor:
        if x.shape == fitted.shape and torch.equal(x, fitted):
            return mapped
        return mapping.nearest_displacement(x, fitted, mapped)

    def transform_labels(self, ys: ArrayLike) -> ArrayLike:
        """Source labels ``ys (n_s,)`` propagated to the fitted target samples: ``(n_t, L)`` scores, column ``c``
        for the ``c``-th smallest distinct label of ``ys``; row ``j`` is the label mass of ``P[:, j]`` divided by
        ``sum_i P_ij``."""
        self._fitted()
        labels, container = as_labels("ys", ys, self.xs_.shape[0], self.xs_.device)
        return container.restore(mapping.propagate_labels(self._coupling, labels)[1])

    def inverse_transform_labels(self, yt: ArrayLike) -> ArrayLike:
        """Target labels ``yt (n_t,)`` propagated to the fitted source samples: ``(n_s, L)`` row-normalised
        scores, the mirror of :meth:`transform_labels`."""
        self._fitted()
        labels, container = as_labels("yt", yt, self.xt_.shape[0], self.xt_.device)
        return container.restore(mapping.propagate_labels(self._coupling.T, labels)[1])


__all__ = ["BaseTransport", "NotFittedError", "OUT_OF_SAMPLE_MAPS"]
