"""Several domains mapped onto their Wasserstein barycenter (scikit-learn-style estimator).

``fit(Xs)`` takes K sample sets (one per domain, ``(n_k, d)`` each, uniform masses), computes their free-support
barycenter (:func:`otalign.free_support_barycenter`: ``n_support`` points initialised from the pooled samples) and
one optimal plan ``P_k`` from the barycenter's support (rows) to each domain (columns). ``transform(X, domain=k)``
moves domain k's samples onto the common space: a fitted sample goes to its barycentric image
``sum_i P_k[i, j] z_i / sum_i P_k[i, j]`` (``z`` the support), any other point moves by the displacement of its
nearest fitted sample of that domain (Ferradans et al. 2014), as :class:`~otalign.adapt.SinkhornTransport` does.
A classifier trained on the mapped samples of some domains then applies to the mapped samples of another.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor

from ..free_support import free_support_barycenter, squared_distances
from ..problem import Problem
from ..registry import resolve_solver
from ..solving import solve
from ..checks import check_eps, check_number, check_positive_int
from . import mapping
from .arrays import ArrayLike, as_samples
from .base import NotFittedError, Parameters


class BarycentricDomainMapping(Parameters):
    """Map K domains onto their free-support Wasserstein barycenter (module docstring).

    Args:
        n_support: number of barycenter points; default the mean domain size.
        solver: inner solver of the barycenter and of the final plans: ``"exact"`` (default, network simplex via
            POT) or an entropic one (``"sinkhorn"``, ...) with ``eps``.
        eps: entropic strength of entropic inner solves (cost units; squared Euclidean cost).
        max_iter: barycenter (outer) iterations at most; tol: its stopping threshold on the squared displacement.
        inner_max_iter, inner_tol: ``max_iter`` / ``tol`` of every inner solve.
        seed: seed of the initial support (drawn without replacement from the pooled samples).

    Fitted attributes: ``support_ (n_support, d)``, ``couplings_`` (K plans ``(n_support, n_k)``), ``n_iter_``.

    Example::

        >>> m = BarycentricDomainMapping(n_support=100).fit([X_a, X_b, X_c])
        >>> clf.fit(np.concatenate([m.transform(X_a, 0), m.transform(X_b, 1)]), np.concatenate([y_a, y_b]))
        >>> clf.score(m.transform(X_c, 2), y_c)
    """

    def __init__(self, n_support: Optional[int] = None, solver: str = "exact", eps: float = 0.1, max_iter: int = 50,
                 tol: float = 1e-7, inner_max_iter: int = 1000, inner_tol: float = 1e-6, seed: int = 0):
        self.n_support, self.solver, self.eps, self.max_iter, self.tol, self.seed = \
            n_support, solver, eps, max_iter, tol, seed
        self.inner_max_iter, self.inner_tol = inner_max_iter, inner_tol
        self._check_params()

    def _check_params(self) -> None:
        if self.n_support is not None:
            check_positive_int("n_support", self.n_support)
        resolve_solver(self.solver)
        check_eps(self.eps)
        check_positive_int("max_iter", self.max_iter)
        check_number("tol", self.tol)
        check_positive_int("inner_max_iter", self.inner_max_iter)
        check_number("inner_tol", self.inner_tol)
        check_positive_int("seed", self.seed, minimum=0)

    def fit(self, Xs: Sequence[ArrayLike], y: Any = None) -> "BarycentricDomainMapping":
        """Fit the barycenter of the domains ``Xs`` (a list of K >= 2 arrays ``(n_k, d)``); ``y`` is ignored.
        Returns ``self``."""
        self._check_params()
        if not isinstance(Xs, (list, tuple)) or len(Xs) < 2:
            raise ValueError("Xs: expected a list of at least two domains' samples (n_k, d)")
        first, container = as_samples("Xs[0]", Xs[0])
        domains = [first] + [as_samples(f"Xs[{k}]", x)[0] for k, x in enumerate(Xs[1:], start=1)]
        dtype = first.dtype if first.is_floating_point() else torch.float64
        domains = [x.to(device=first.device, dtype=dtype) for x in domains]
        if len({x.shape[1] for x in domains}) != 1:
            raise ValueError(f"Xs: every domain needs the same number of features, got {[x.shape[1] for x in domains]}")
        pooled = torch.cat(domains)
        k = self.n_support or max(1, round(sum(x.shape[0] for x in domains) / len(domains)))
        if k > pooled.shape[0]:
            raise ValueError(f"n_support: at most the {pooled.shape[0]} pooled samples, got {k}")
        gen = torch.Generator().manual_seed(self.seed)
        init = pooled[torch.randperm(pooled.shape[0], generator=gen)[:k].to(pooled.device)]
        support, log = free_support_barycenter(domains, init, solver=self.solver, eps=self.eps,
                                               max_iter=self.max_iter, tol=self.tol, inner_max_iter=self.inner_max_iter,
                                               inner_tol=self.inner_tol, return_log=True)
        weights = support.new_full((k,), 1.0 / k)
        couplings = []
        for x in domains:
            cost = squared_distances(support, x)
            mass = x.new_full((x.shape[0],), 1.0 / x.shape[0])
            couplings.append(solve(Problem(cost, weights, mass, eps=self.eps), self.solver, grad="detach",
                                   max_iter=self.inner_max_iter, tol=self.inner_tol).matrix)
        self.support_, self.couplings_, self.n_iter_ = container.restore(support), couplings, log["iterations"]
        self._support, self._domains = support, domains
        self._mapped = [mapping.barycentric(p.T, support) for p in couplings]
        return self

    def transform(self, X: ArrayLike, domain: int) -> ArrayLike:
        """Samples ``X (q, d)`` of domain ``domain`` (its index in ``fit``'s list) moved onto the barycenter, in
        ``X``'s container."""
        if not hasattr(self, "_support"):
            raise NotFittedError(f"{type(self).__name__}: not fitted yet; call fit(Xs) first")
        if isinstance(domain, bool) or not isinstance(domain, int) or not 0 <= domain < len(self._domains):
            raise ValueError(f"domain: expected an index in [0, {len(self._domains)}), got {domain!r}")
        x, container = as_samples("X", X)
        fitted = self._domains[domain]
        if x.shape[1] != fitted.shape[1]:
            raise ValueError(f"X: expected {fitted.shape[1]} features (as in fit), got {x.shape[1]}")
        x = x.to(device=fitted.device, dtype=fitted.dtype)
        if x.shape == fitted.shape and torch.equal(x, fitted):
            out: Tensor = self._mapped[domain]
        else:
            out = mapping.nearest_displacement(x, fitted, self._mapped[domain])
        return container.restore(out)

    def fit_transform(self, Xs: Sequence[ArrayLike], y: Any = None) -> list[ArrayLike]:
        """``fit(Xs)`` then every domain's samples mapped: a list of ``(n_k, d)`` arrays."""
        self.fit(Xs)
        return [self.transform(x, k) for k, x in enumerate(Xs)]
