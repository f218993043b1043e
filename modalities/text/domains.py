"""Several offline text sources as domains: WordNet definitions, WordNet usage examples and fortune quotes
(:func:`text_domains`). Texts are lists of strings; labels and domain ids ``(N,)`` int64 tensors.

Example::

    >>> data = text_domains(per_class=20)
    >>> data.sources[data.domains[0]], data.classes[data.labels[0]]
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

from .fortunes import load_fortunes
from .wordnet import NOUN_LEXFILES, load_wordnet_examples, load_wordnet_nouns

#: The sources of :func:`text_domains`, in domain-id order.
TEXT_SOURCES: tuple[str, ...] = ("definitions", "examples", "fortunes")


class TextDomains(NamedTuple):
    """Texts from several sources: ``labels (N,)`` index ``classes``; ``domains (N,)`` index ``sources``."""

    texts: list[str]
    labels: Tensor
    domains: Tensor
    classes: tuple[str, ...]
    sources: tuple[str, ...]


def text_domains(
    sources: Sequence[str] = TEXT_SOURCES,
    *,
    per_class: Optional[int] = None,
    seed: int = 0,
    wordnet_root: Optional[Union[str, os.PathLike]] = None,
    fortunes_root: Optional[Union[str, os.PathLike]] = None,
) -> TextDomains:
    """Texts from several sources, each source a domain.

    Sources: ``"definitions"`` (WordNet noun definitions, labelled by lexicographer file), ``"examples"`` (WordNet
    usage examples, labelled by their noun's lexicographer file: the same 26 classes as the definitions, in another
    style of text), ``"fortunes"`` (quotes, labelled by category). ``classes`` is :data:`NOUN_LEXFILES` followed by
    the fortune categories, so labels of the two WordNet sources are comparable and fortune labels start at 26.
    Domain ids are the sources' indices in :data:`TEXT_SOURCES` (they do not depend on which sources are chosen).

    Args:
        per_class: at most this many texts per class and source (a seeded random choice).

    Example::

        >>> data = text_domains(per_class=20)
        >>> targets.domain_prior(data.domains, alpha=1.0, beta=0.1)
    """
    sources = tuple(sources)
    if not sources or len(set(sources)) != len(sources) or any(s not in TEXT_SOURCES for s in sources):
        raise ValueError(f"sources: expected distinct names from {TEXT_SOURCES}, got {sources!r}")
    texts: list[str] = []
    labels, domains = [], []
    fortune_classes: tuple[str, ...] = ()
    for source in sources:
        if source == "definitions":
            nouns = load_wordnet_nouns(0, per_lexfile=per_class, seed=seed, root=wordnet_root)
            part_texts, part_labels = nouns.texts, nouns.lexfiles
        elif source == "examples":
            part_texts, part_labels, _ = load_wordnet_examples(per_lexfile=per_class, seed=seed, root=wordnet_root)
        else:
            part_texts, fortune_labels, fortune_classes = load_fortunes(
                per_category=per_class, seed=seed, root=fortunes_root
            )
            part_labels = fortune_labels + len(NOUN_LEXFILES)
        texts += part_texts
        labels.append(part_labels)
        domains.append(torch.full((len(part_texts),), TEXT_SOURCES.index(source), dtype=torch.int64))
    return TextDomains(texts, torch.cat(labels), torch.cat(domains), NOUN_LEXFILES + fortune_classes, sources)


__all__ = ["TEXT_SOURCES", "TextDomains", "text_domains"]
