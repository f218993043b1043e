"""Contrastive losses as OT alignments (GCA, docs/maths.md, section 2), lightly-style modules.

Call convention: ``loss(z0, z1, ..., labels=None, target=None)`` with ``z_v`` of shape ``(N, d)`` (two or more
views), ``labels`` ``(N,)`` or a ``(V N, V N)`` non-negative ``target`` (mutually exclusive). Constructor keywords:
``temperature`` (= eps), ``iterations``, ``q``, ``lam``, ``rho``, ``r1``, ``r2``, ``reduction``,
``gather_distributed``; no batch size. Conventions (layout, which plan is measured, distributed) in
:mod:`otalign.losses.base`.

=====================  ================================  =====================  ==========
loss                   divergence                        plan                   iterations
=====================  ================================  =====================  ==========
:class:`InfoNCE`       KL                                rows only              1
:class:`GCAInfoNCE`    KL                                balanced               T (10)
:class:`RINCE`         robust                            rows only              1
:class:`GCARINCE`      robust                            balanced               T (10)
:class:`GCAUOT`        r1 KL + r2 robust                 soft marginals (rho)   T (10)
:class:`SupCon`        KL, label target                  rows only              1
:class:`NTXent`        SimCLR's cross-entropy, direct    (none)                 (none)
=====================  ================================  =====================  ==========

:class:`SinkhornDivergence` (:mod:`otalign.losses.sinkhorn_divergence`) is a loss between two point clouds, not
between views: geomloss's ``SamplesLoss("sinkhorn")``, called as ``loss(x, y)`` or ``loss(a, x, b, y)``.

:class:`GWAlignmentLoss` (:mod:`otalign.losses.gromov`) is the odd one out: two encoders with no shared space,
KL between a target and the Gromov-Wasserstein plan of their intra-domain geometries.
"""

from .base import AlignmentLoss, Batch, ContrastiveLoss
from .gca_infonce import GCAInfoNCE
from .gca_rince import GCARINCE
from .gca_uot import GCAUOT
from .gromov import GWAlignmentLoss
from .infonce import InfoNCE
from .ntxent import NTXent
from .rince import RINCE
from .sinkhorn_divergence import SinkhornDivergence
from .supcon import SupCon

__all__ = [
    "AlignmentLoss",
    "Batch",
    "ContrastiveLoss",
    "GCAInfoNCE",
    "GCARINCE",
    "GCAUOT",
    "GWAlignmentLoss",
    "InfoNCE",
    "NTXent",
    "RINCE",
    "SinkhornDivergence",
    "SupCon",
]
