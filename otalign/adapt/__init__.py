"""Optimal-transport domain adaptation on otalign's solvers (scikit-learn-style estimators, POT's conventions).

Estimators: :class:`SinkhornTransport` (entropic OT), :class:`UnbalancedSinkhornTransport` (KL-relaxed
marginals), :class:`SinkhornLpl1Transport` (class-regularised, group-lasso lp-l1 by majorisation-minimisation);
:class:`BarycentricDomainMapping` maps several domains onto their free-support Wasserstein barycenter
(``fit([X_1, ..., X_K])``, ``transform(X, domain)``, ``fit_transform``). The transports each have
``fit(Xs, ys=None, Xt=None, yt=None)``, ``transform(Xs)``, ``inverse_transform(Xt)``,
``transform_labels(ys)``, ``inverse_transform_labels(yt)`` and ``fit_transform``; inputs are NumPy arrays or torch
tensors (any device) and every result comes back in the type of the argument it answers. Solves go through
:func:`otalign.solve`. Only torch and NumPy are needed.

Example::

    >>> from otalign.adapt import SinkhornTransport
    >>> ot = SinkhornTransport(eps=0.1, norm="max").fit(Xs, Xt=Xt)
    >>> clf.fit(ot.transform(Xs), ys)                # train on source points moved onto the target domain
    >>> clf.score(Xt, yt)
"""

from .base import BaseTransport, NotFittedError
from .estimators import SinkhornTransport, UnbalancedSinkhornTransport
from .lpl1 import SinkhornLpl1Transport, sinkhorn_lpl1
from .multidomain import BarycentricDomainMapping

__all__ = [
    "BarycentricDomainMapping",
    "BaseTransport",
    "NotFittedError",
    "SinkhornLpl1Transport",
    "SinkhornTransport",
    "UnbalancedSinkhornTransport",
    "sinkhorn_lpl1",
]
