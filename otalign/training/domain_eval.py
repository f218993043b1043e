"""Per-domain evaluation of frozen features, for datasets whose samples carry a domain (``"domain"`` metadata).

Three numbers, each from linear probes (:func:`otalign.metrics.linear_probe`) on frozen encoder features:

* ``domain_probe``: accuracy of predicting the domain itself (how much domain information the features keep; a
  domain prior with ``alpha > beta`` raises it, the GCA paper's PACS experiment).
* ``in_domain``: class accuracy on each domain's test samples of a probe trained on that domain's training samples,
  averaged over domains (``in_domain/<d>`` per domain).
* ``held_out_domain``: class accuracy on each domain's test samples of a probe trained on the *other* domains'
  training samples, averaged (``held_out_domain/<d>``): how well what is learned transfers across the shift.
  With ``Config.held_out_domain = d`` the encoder never saw domain ``d`` either: ``held_out_domain/<d>`` is then
  the leave-one-domain-out accuracy.
"""

from __future__ import annotations

import statistics

import torch
from torch import Tensor

from .. import metrics


def domain_evaluation(
    train_f: Tensor, train_y: Tensor, train_d: Tensor, test_f: Tensor, test_y: Tensor, test_d: Tensor
) -> dict[str, float]:
    """The numbers of the module docstring as a flat dict of floats; features ``(N, k)``, labels and domains
    ``(N,)`` for the training and test splits."""
    results = {"domain_probe": metrics.linear_probe(train_f, train_d, test_f, test_d)}
    in_domain, held_out = [], []
    for domain in torch.unique(test_d).tolist():
        test = test_d == domain
        train_in, train_out = train_d == domain, train_d != domain
        if _has_two_classes(train_y[train_in]):
            score = metrics.linear_probe(train_f[train_in], train_y[train_in], test_f[test], test_y[test])
            results[f"in_domain/{domain}"] = score
            in_domain.append(score)
        if _has_two_classes(train_y[train_out]):
            score = metrics.linear_probe(train_f[train_out], train_y[train_out], test_f[test], test_y[test])
            results[f"held_out_domain/{domain}"] = score
            held_out.append(score)
    if in_domain:
        results["in_domain"] = statistics.fmean(in_domain)
    if held_out:
        results["held_out_domain"] = statistics.fmean(held_out)
    return results


def _has_two_classes(labels: Tensor) -> bool:
    return labels.numel() > 0 and torch.unique(labels).numel() >= 2
