"""Real offline text from WordNet (Debian ``wordnet-base``): noun definitions and usage examples with a real
hierarchy of labels, and synonyms.

Texts are lists of strings; labels, ids and depths are ``(N,)`` int64 tensors.

WordNet (``/usr/share/wordnet/data.noun``, WordNet 3.0, 82,115 noun synsets). Each noun synset has a *lexicographer
file* (26 for nouns, :data:`NOUN_LEXFILES`: ``noun.Tops``, ``noun.act``, ``noun.animal``, ``noun.artifact``, ...), a
coarse topical label, and hypernym pointers (``@``, and ``@i`` for instances) up to the single root ``entity``.
Following the *first* hypernym pointer of every synset makes a tree; a synset's *depth* is its distance from
``entity`` (0 .. 19), and its depth-``k`` ancestor is the synset ``k`` steps below the root on its path (the synset
itself when its depth is ``k``). Ancestors at depths ``k`` and ``j < k`` are nested: the depth-``k`` ancestor
determines the depth-``j`` one. Lexicographer files are *not* a level of that tree: synsets with the same
depth-``k`` ancestor can sit in different lexicographer files (the direct hyponyms of ``organism`` are in
``noun.Tops``, ``noun.animal``, ``noun.person``, ``noun.plant`` and ``noun.group``; at depth 4, 146 of the 1,595
ancestors have descendants in several files).

Example::

    >>> nouns = load_wordnet_nouns(depth=4, per_lexfile=100)
    >>> nouns.texts[0], NOUN_LEXFILES[nouns.lexfiles[0]], nouns.ancestor_names[nouns.ancestors[0]]
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

from .labelled import LabelledTexts, cap_per_label

WORDNET_DIR = Path("/usr/share/wordnet")
#: The noun lexicographer files in file-number order (numbers 3 .. 28); label ``i`` is ``NOUN_LEXFILES[i]``.
NOUN_LEXFILES: tuple[str, ...] = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
_FIRST_NOUN_LEXFILE = 3
_DATA_FILES = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}
_QUOTED = re.compile(r'"([^"]+)"')
_ADJ_MARKER = re.compile(r"\([a-z]+\)$")


class Synset(NamedTuple):
    """One line of a WordNet ``data.*`` file: byte ``offset`` (the synset id), ``lexfile`` number, ``lemmas``
    (spaces for underscores, adjective markers removed), ``hypernyms`` (offsets of ``@`` and ``@i`` pointers, in
    file order) and the ``gloss`` (definition, then quoted examples)."""

    offset: int
    lexfile: int
    lemmas: tuple[str, ...]
    hypernyms: tuple[int, ...]
    gloss: str


class WordNetNouns(NamedTuple):
    """Noun glosses with labels. ``texts[i]``: the definition of synset ``synsets[i]`` (its first lemma is
    ``lemmas[i]``); ``lexfiles (N,)``: index into :data:`NOUN_LEXFILES`; ``ancestors (N,)``: index into
    ``ancestor_names`` / ``ancestor_synsets`` of the depth-``k`` ancestor; ``depths (N,)``; ``paths[i]``: the synset
    offsets from ``entity`` down to the synset (first hypernyms), for other levels (:func:`ancestor_labels`)."""

    texts: list[str]
    lemmas: list[str]
    synsets: Tensor
    lexfiles: Tensor
    ancestors: Tensor
    ancestor_synsets: Tensor
    ancestor_names: tuple[str, ...]
    depths: Tensor
    paths: list[tuple[int, ...]]



def _wordnet_root(root) -> Path:
    root = WORDNET_DIR if root is None else Path(root).expanduser()
    if not (root / "data.noun").is_file():
        raise FileNotFoundError(
            f"WordNet: {root / 'data.noun'} not found; install the Debian package wordnet-base "
            f"(apt-get install wordnet-base) or pass root= the folder holding data.noun"
        )
    return root


def _parse_line(line: str) -> Synset:
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    n_words = int(fields[3], 16)
    lemmas = tuple(_ADJ_MARKER.sub("", w).replace("_", " ") for w in fields[4 : 4 + 2 * n_words : 2])
    i = 4 + 2 * n_words
    n_pointers = int(fields[i])
    pointers = [fields[i + 1 + 4 * p : i + 5 + 4 * p] for p in range(n_pointers)]
    hypernyms = tuple(int(p[1]) for p in pointers if p[0] in ("@", "@i"))
    return Synset(int(fields[0]), int(fields[1]), lemmas, hypernyms, gloss.strip())


@functools.lru_cache(maxsize=8)
def _read_synsets(path: str) -> dict[int, Synset]:
    synsets = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("  "):  # the licence header
                continue
            synset = _parse_line(line)
            synsets[synset.offset] = synset
    return synsets


def read_wordnet(pos: str = "noun", root: Optional[Union[str, os.PathLike]] = None) -> dict[int, Synset]:
    """All synsets of one part of speech (``"noun"``, ``"verb"``, ``"adj"``, ``"adv"``) keyed by offset (cached)."""
    if pos not in _DATA_FILES:
        raise ValueError(f"pos: expected one of {tuple(_DATA_FILES)}, got {pos!r}")
    return _read_synsets(str(_wordnet_root(root) / _DATA_FILES[pos]))


def definition(gloss: str) -> str:
    """The definition part of a gloss (before the first quoted example)."""
    return re.split(r';?\s*"', gloss, maxsplit=1)[0].strip().rstrip(";").strip()


def examples(gloss: str) -> list[str]:
    """The quoted usage examples of a gloss, without the quotes."""
    tail = gloss[len(definition(gloss)) :]
    return [e.strip() for e in _QUOTED.findall(tail) if e.strip()]


def hypernym_path(offset: int, synsets: dict[int, Synset]) -> tuple[int, ...]:
    """Offsets from the root down to ``offset``, following each synset's first hypernym pointer."""
    path = [offset]
    while synsets[path[-1]].hypernyms:
        path.append(synsets[path[-1]].hypernyms[0])
        if len(path) > 100:
            raise ValueError(f"offset: the hypernym chain of {offset} does not reach a root")
    return tuple(reversed(path))


def ancestor_labels(paths: Sequence[Sequence[int]], depth: int) -> tuple[Tensor, tuple[int, ...]]:
    """Depth-``depth`` ancestors of synsets given by their root-to-synset ``paths``: ``(ids (N,), offsets)`` where
    ``offsets[ids[i]]`` is sample ``i``'s ancestor; ids follow increasing offset. Every path needs
    ``len(path) > depth``."""
    if any(len(p) <= depth for p in paths):
        raise ValueError(f"depth: some paths are not deeper than {depth}")
    offsets = tuple(sorted({p[depth] for p in paths}))
    index = {o: i for i, o in enumerate(offsets)}
    return torch.tensor([index[p[depth]] for p in paths], dtype=torch.int64), offsets


def _lexfile_ids(lexfiles: Optional[Sequence[str]]) -> set[int]:
    if lexfiles is None:
        return set(range(len(NOUN_LEXFILES)))
    unknown = [name for name in lexfiles if name not in NOUN_LEXFILES]
    if unknown:
        raise ValueError(f"lexfiles: unknown {unknown}; expected names from NOUN_LEXFILES")
    return {NOUN_LEXFILES.index(name) for name in lexfiles}



def load_wordnet_nouns(
    depth: int = 4,
    *,
    lexfiles: Optional[Sequence[str]] = None,
    per_lexfile: Optional[int] = None,
    seed: int = 0,
    root: Optional[Union[str, os.PathLike]] = None,
) -> WordNetNouns:
    """WordNet noun definitions with three nested-or-topical labels (see the module docstring).

    Args:
        depth: the level of the mid-level label: each synset's ancestor ``depth`` steps below ``entity``.
            Synsets shallower than ``depth`` are left out.
        lexfiles: keep only these lexicographer files (names from :data:`NOUN_LEXFILES`).
        per_lexfile: keep at most this many synsets per lexicographer file (a seeded random choice).
        seed: seeds that choice.
        root: the WordNet folder (default ``/usr/share/wordnet``).

    Returns:
        :class:`WordNetNouns`, in increasing synset offset. With the defaults: 81,864 definitions, 26 lexicographer
        files, 1,595 depth-4 ancestors.

    Raises:
        FileNotFoundError: the WordNet files are missing (the message names the Debian package ``wordnet-base``).

    Example::

        >>> nouns = load_wordnet_nouns(depth=4, per_lexfile=100)
        >>> nouns.texts[0], NOUN_LEXFILES[nouns.lexfiles[0]], nouns.ancestor_names[nouns.ancestors[0]]
    """
    if not isinstance(depth, int) or depth < 0:
        raise ValueError(f"depth: expected an int >= 0, got {depth!r}")
    synsets = read_wordnet("noun", root)
    wanted = _lexfile_ids(lexfiles)
    chosen = []
    for offset in sorted(synsets):
        synset = synsets[offset]
        label = synset.lexfile - _FIRST_NOUN_LEXFILE
        path = hypernym_path(offset, synsets)
        if label in wanted and len(path) > depth:
            chosen.append((synset, label, path))
    chosen = [chosen[i] for i in cap_per_label([label for _, label, _ in chosen], per_lexfile, seed)]
    paths = [path for _, _, path in chosen]
    ancestors, ancestor_offsets = ancestor_labels(paths, depth)
    return WordNetNouns(
        texts=[definition(s.gloss) for s, _, _ in chosen],
        lemmas=[s.lemmas[0] for s, _, _ in chosen],
        synsets=torch.tensor([s.offset for s, _, _ in chosen], dtype=torch.int64),
        lexfiles=torch.tensor([label for _, label, _ in chosen], dtype=torch.int64),
        ancestors=ancestors,
        ancestor_synsets=torch.tensor(ancestor_offsets, dtype=torch.int64),
        ancestor_names=tuple(synsets[o].lemmas[0] for o in ancestor_offsets),
        depths=torch.tensor([len(p) - 1 for p in paths], dtype=torch.int64),
        paths=paths,
    )


def load_wordnet_examples(
    *,
    lexfiles: Optional[Sequence[str]] = None,
    per_lexfile: Optional[int] = None,
    seed: int = 0,
    root: Optional[Union[str, os.PathLike]] = None,
) -> LabelledTexts:
    """The quoted usage examples of WordNet noun glosses (sentences using the noun), labelled by their synset's
    lexicographer file (``classes = NOUN_LEXFILES``); a synset with several examples gives several texts. With the
    defaults: 11,489 examples from 8,742 synsets."""
    synsets = read_wordnet("noun", root)
    wanted = _lexfile_ids(lexfiles)
    texts, labels = [], []
    for offset in sorted(synsets):
        label = synsets[offset].lexfile - _FIRST_NOUN_LEXFILE
        if label in wanted:
            for sentence in examples(synsets[offset].gloss):
                texts.append(sentence)
                labels.append(label)
    keep = cap_per_label(labels, per_lexfile, seed)
    return LabelledTexts([texts[i] for i in keep], torch.tensor([labels[i] for i in keep], dtype=torch.int64),
                         NOUN_LEXFILES)


@functools.lru_cache(maxsize=4)
def _synonyms(root: str) -> dict[str, tuple[str, ...]]:
    table: dict[str, set[str]] = {}
    for pos in _DATA_FILES:
        for synset in read_wordnet(pos, root).values():
            lemmas = {lemma.lower() for lemma in synset.lemmas}
            for lemma in lemmas:
                if " " not in lemma:
                    table.setdefault(lemma, set()).update(lemmas - {lemma})
    return {word: tuple(sorted(others)) for word, others in table.items() if others}


def wordnet_synonyms(root: Optional[Union[str, os.PathLike]] = None) -> dict[str, tuple[str, ...]]:
    """WordNet synonyms: for each single-word lemma (lower case), the other lemmas of every synset containing it,
    over nouns, verbs, adjectives and adverbs, sorted (multi-word synonyms use spaces). Cached.

    Raises:
        FileNotFoundError: the WordNet files are missing (Debian package ``wordnet-base``).
    """
    return _synonyms(str(_wordnet_root(root)))


__all__ = [
    "NOUN_LEXFILES",
    "Synset",
    "WORDNET_DIR",
    "WordNetNouns",
    "ancestor_labels",
    "definition",
    "examples",
    "hypernym_path",
    "load_wordnet_examples",
    "load_wordnet_nouns",
    "read_wordnet",
    "wordnet_synonyms",
]
