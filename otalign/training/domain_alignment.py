"""The domain-alignment term of a training run (``Config.domain_alignment``, ``Config.domain_weight``).

For a dataset whose samples carry a ``"domain"`` (``TensorData.train_meta["domain"]``), each step adds

    lambda * mean over pairs of domains (k < l) present in the batch of  D(F_k, F_l)

to the method's loss, where ``F_k`` are the encoder features (what evaluation reads) of the batch's samples of
domain ``k`` (both views), projected onto the unit sphere so that the term cannot be lowered by shrinking the
features, and ``D`` is

* ``"sinkhorn"``: the debiased Sinkhorn divergence (:class:`otalign.losses.SinkhornDivergence`, ``p = 2``,
  ``blur = 0.1``: on the unit sphere, a twentieth of the diameter; envelope gradients);
* ``"sliced"``: the sliced Wasserstein distance ``otalign.sliced_wasserstein`` (50 random directions, ``p = 2``);
* ``"gaussian"``: the Bures-Wasserstein distance between Gaussians fitted to the two sets
  (``otalign.gaussian.empirical_bures_wasserstein_distance``).

The last two belong to otalign's sliced / Gaussian OT module and are imported when first used. A domain with fewer
than two samples in a batch is left out of that batch's term.
"""

from __future__ import annotations

import importlib
import warnings
from itertools import combinations
from typing import Callable, Optional

import torch
from torch import Tensor
from torch.nn import functional

from .config import Config

KINDS = ("sinkhorn", "sliced", "gaussian")
#: The blur of the Sinkhorn divergence between unit-norm features (diameter 2).
SINKHORN_BLUR = 0.1
#: Random directions of the sliced distance.
SLICED_PROJECTIONS = 50
#: Where the other two divergences live: kind -> (module, attribute).
LAZY = {"sliced": ("otalign", "sliced_wasserstein"),
        "gaussian": ("otalign.gaussian", "empirical_bures_wasserstein_distance")}


class DomainAlignment:
    """``term(features (M, k), domains (M,)) -> ()``: ``weight`` times the mean divergence over pairs of domains.

    Args:
        kind: one of :data:`KINDS`.
        weight: lambda >= 0.

    Example::

        >>> term = DomainAlignment("sinkhorn", 0.5)
        >>> loss = loss + term(features, domains)
    """

    def __init__(self, kind: str, weight: float):
        if kind not in KINDS:
            raise ValueError(f"domain_alignment: expected one of {KINDS}, got {kind!r}")
        self.kind, self.weight = kind, float(weight)
        self.divergence = _divergence(kind)

    def __call__(self, features: Tensor, domains: Tensor) -> Tensor:
        if features.shape[0] != domains.shape[0]:
            raise ValueError(f"domains: expected one per feature row ({features.shape[0]}), got {domains.shape[0]}")
        unit = functional.normalize(features.float(), dim=-1)
        groups = [unit[domains == d] for d in torch.unique(domains).tolist()]
        groups = [g for g in groups if g.shape[0] >= 2]
        terms = [self.divergence(s, t) for s, t in combinations(groups, 2)]
        if not terms:
            return unit.sum() * 0.0  # keeps the graph (and DDP's bookkeeping) when a batch has one domain
        return self.weight * torch.stack(terms).mean()


def domain_alignment_term(config: Config, meta_names: tuple[str, ...]) -> Optional[DomainAlignment]:
    """The run's term (``None`` without ``domain_alignment``); a ``domain_weight`` set alone is ignored with a
    warning, and a dataset without ``"domain"`` metadata is an error."""
    if config.domain_alignment is None:
        if config.domain_weight is not None:
            warnings.warn("domain_weight: set without domain_alignment; ignored", UserWarning, stacklevel=3)
        return None
    if "domain" not in meta_names:
        raise ValueError(f"domain_alignment: dataset {config.dataset!r} has no domains (its metadata: "
                         f"{list(meta_names) or 'none'}); use a multi-domain dataset such as digits-domains")
    weight = 1.0 if config.domain_weight is None else config.domain_weight
    return DomainAlignment(config.domain_alignment, weight)


def _divergence(kind: str) -> Callable[[Tensor, Tensor], Tensor]:
    if kind == "sinkhorn":
        from ..losses import SinkhornDivergence

        return SinkhornDivergence(p=2, blur=SINKHORN_BLUR, scaling=0.5)
    module_name, attribute = LAZY[kind]
    try:
        function = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError):
        raise ValueError(f"domain_alignment: {kind!r} needs {module_name}.{attribute}, which this version of "
                         f"otalign lacks; use domain_alignment='sinkhorn'") from None
    if kind == "sliced":
        return lambda s, t: function(s, t, n_projections=SLICED_PROJECTIONS, p=2)
    return function


__all__ = ["DomainAlignment", "KINDS", "domain_alignment_term"]
