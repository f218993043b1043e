"""Per-domain evaluation of frozen features, for datasets whose samples carry a domain (``"domain"`` metadata).

Three numbers, each from linear probes (:func:`otalign.metrics.linear_probe`) on frozen encoder features:

* ``domain_probe``: accuracy of predicting the domain itself (how much domain information the features keep; a
  domain prior with ``alpha > beta`` raises it, the GCA paper's PACS experiment).
* ``in_domain``: class accuracy on each domain's test samples of a probe trained on that domain's training samples,
  averaged over domains (``in_domain/<d>`` per domain).
* ``cross_domain``: class accuracy on each domain's test samples of a probe trained on the *other* domains'
  training samples, averaged (``cross_domain/<d>`` per domain): how well what is learned transfers across the
  shift. The encoder trained on every domain here.
* With ``Config.held_out_domain = d`` (leave-one-domain-out: the encoder never saw domain ``d``):
  ``held_out_domain`` is ``cross_domain/<d>``, the accuracy on the never-seen domain alone (probe and encoder
  trained without it), ``held_out_domain_id`` is ``d``, and ``seen_domains_cross_domain`` averages
  ``cross_domain/<e>`` over the domains ``e != d`` the encoder trained on (named apart, never mixed with ``d``).
"""

from __future__ import annotations

import statistics
from typing import Optional

import torch
from torch import Tensor

from .. import metrics


def domain_evaluation(
    train_f: Tensor, train_y: Tensor, train_d: Tensor, test_f: Tensor, test_y: Tensor, test_d: Tensor,
    held_out: Optional[int] = None,
) -> dict[str, float]:
    """The numbers of the module docstring as a flat dict of floats; features ``(N, k)``, labels and domains
    ``(N,)`` for the training and test splits; ``held_out``: the domain the encoder never trained on, if any."""
    results = {"domain_probe": metrics.linear_probe(train_f, train_d, test_f, test_d)}
    in_domain, cross = [], {}
    for domain in torch.unique(test_d).tolist():
        test = test_d == domain
        train_in, train_out = train_d == domain, train_d != domain
        if _has_two_classes(train_y[train_in]):
            score = metrics.linear_probe(train_f[train_in], train_y[train_in], test_f[test], test_y[test])
            results[f"in_domain/{domain}"] = score
            in_domain.append(score)
        if _has_two_classes(train_y[train_out]):
            score = metrics.linear_probe(train_f[train_out], train_y[train_out], test_f[test], test_y[test])
            results[f"cross_domain/{domain}"] = score
            cross[domain] = score
    if in_domain:
        results["in_domain"] = statistics.fmean(in_domain)
    if cross:
        results["cross_domain"] = statistics.fmean(cross.values())
    if held_out is not None:
        if held_out not in cross:
            raise ValueError(f"held_out_domain: domain {held_out} has no test samples, or its other domains hold "
                             f"fewer than two classes; it cannot be scored")
        results["held_out_domain"] = cross[held_out]
        results["held_out_domain_id"] = float(held_out)
        seen = [score for domain, score in cross.items() if domain != held_out]
        if seen:
            results["seen_domains_cross_domain"] = statistics.fmean(seen)
    return results


def _has_two_classes(labels: Tensor) -> bool:
    return labels.numel() > 0 and torch.unique(labels).numel() >= 2
