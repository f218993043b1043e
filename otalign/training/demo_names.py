"""Names shared by the demo and its report: method labels (the loss classes' names, as users import them from
:mod:`otalign.losses`), the image demo's conditions and the evaluation metrics in the tables."""

from __future__ import annotations

from typing import Any

#: Method name -> label in the demo's output: the API's class name (``GCAInfoNCE``, ``GCAUOT``...).
LABELS = {
    "infonce": "InfoNCE",
    "gca_infonce": "GCAInfoNCE",
    "rince": "RINCE",
    "gca_rince": "GCARINCE",
    "gca_uot": "GCAUOT",
    "byol": "BYOL",
    "simsiam": "SimSiam",
    "ntxent": "NTXent",
    "supcon": "SupCon (labels)",
    "untrained": "untrained encoder",
}
CONDITIONS: dict[str, dict[str, Any]] = {
    "clean": {"corrupt_severity": 0},
    "corrupted": {"corrupt_severity": 5, "corrupt_view": "second", "corrupt_fraction": 0.5},
}
METRICS = ("probe_few", "probe_full", "knn", "wdm", "uniformity", "alignment")

__all__ = ["CONDITIONS", "LABELS", "METRICS"]
