"""Real offline text: WordNet noun glosses with a real hierarchy (Debian ``wordnet-base``), quotes by category
(Debian ``fortunes``), and several sources as domains.

Texts are lists of strings; labels, ids and domain ids are ``(N,)`` int64 tensors.

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

Fortunes (``/usr/share/games/fortunes/<category>``, records separated by lines holding ``%``): the category is the
file name. :data:`EXCLUDED_FORTUNE_CATEGORIES` are left out by default: ``ethnic`` and ``men-women`` (jokes built
on ethnic and gender stereotypes), ``ascii-art`` and ``translate-me`` (pictures and dialect spelling, not prose).
The offensive collection (Debian ``fortunes-off``, an ``off/`` folder) is never read.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor

WORDNET_DIR = Path("/usr/share/wordnet")
FORTUNES_DIR = Path("/usr/share/games/fortunes")
#: The noun lexicographer files in file-number order (numbers 3 .. 28); label ``i`` is ``NOUN_LEXFILES[i]``.
NOUN_LEXFILES: tuple[str, ...] = (
    "noun.Tops", "noun.act", "noun.animal", "noun.artifact", "noun.attribute", "noun.body", "noun.cognition",
    "noun.communication", "noun.event", "noun.feeling", "noun.food", "noun.group", "noun.location", "noun.motive",
    "noun.object", "noun.person", "noun.phenomenon", "noun.plant", "noun.possession", "noun.process",
    "noun.quantity", "noun.relation", "noun.shape", "noun.state", "noun.substance", "noun.time",
)
_FIRST_NOUN_LEXFILE = 3
#: Fortune categories left out by default (see the module docstring).
EXCLUDED_FORTUNE_CATEGORIES: tuple[str, ...] = ("ascii-art", "ethnic", "men-women", "translate-me")
#: The sources of :func:`text_domains`, in domain-id order.
TEXT_SOURCES: tuple[str, ...] = ("definitions", "examples", "fortunes")
_DATA_FILES = {"noun": "data.noun", "verb": "data.verb", "adj": "data.adj", "adv": "data.adv"}
_QUOTED = re.compile(r'"([^"]+)"')
_ADJ_MARKER = re.compile(r"\([a-z]+\)$")
_ATTRIBUTION = re.compile(r"\n\s*--\s.*\Z", re.DOTALL)


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


class LabelledTexts(NamedTuple):
    """``texts``, ``labels (N,)`` int64, ``classes``: the name of each label id."""

    texts: list[str]
    labels: Tensor
    classes: tuple[str, ...]


class TextDomains(NamedTuple):
    """Texts from several sources: ``labels (N,)`` index ``classes``; ``domains (N,)`` index ``sources``."""

    texts: list[str]
    labels: Tensor
    domains: Tensor
    classes: tuple[str, ...]
    sources: tuple[str, ...]


# --------------------------------------------------------------------------------------------------- WordNet
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


def _cap_per_label(labels: list[int], per_label: Optional[int], seed: int) -> list[int]:
    """Indices keeping at most ``per_label`` items of each label (a seeded random choice), in increasing order."""
    if per_label is None:
        return list(range(len(labels)))
    if not isinstance(per_label, int) or per_label < 1:
        raise ValueError(f"per_lexfile/per_category: expected an int >= 1 or None, got {per_label!r}")
    generator = torch.Generator().manual_seed(seed)
    kept = []
    for label in sorted(set(labels)):
        members = [i for i, l in enumerate(labels) if l == label]
        chosen = torch.randperm(len(members), generator=generator)[:per_label].tolist()
        kept += [members[j] for j in chosen]
    return sorted(kept)


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
    chosen = [chosen[i] for i in _cap_per_label([label for _, label, _ in chosen], per_lexfile, seed)]
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
    keep = _cap_per_label(labels, per_lexfile, seed)
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


# --------------------------------------------------------------------------------------------------- fortunes
def _fortunes_root(root) -> Path:
    root = FORTUNES_DIR if root is None else Path(root).expanduser()
    if not root.is_dir() or not any((root / f"{p.stem}.dat").is_file() for p in root.iterdir() if p.is_file()):
        raise FileNotFoundError(
            f"fortunes: no fortune files (<category> and <category>.dat) under {root}; install the Debian package "
            f"fortunes (apt-get install fortunes) or pass root= the folder holding them"
        )
    return root


def fortune_categories(root: Optional[Union[str, os.PathLike]] = None) -> tuple[str, ...]:
    """All fortune categories present (files with a ``.dat`` index beside them; symlinks such as ``*.u8`` and
    sub-folders such as ``off/`` are ignored), sorted, exclusions not applied."""
    root = _fortunes_root(root)
    return tuple(sorted(
        p.name for p in root.iterdir()
        if p.is_file() and not p.is_symlink() and "." not in p.name and (root / f"{p.name}.dat").is_file()
    ))


def _overstrike(line: str) -> str:
    """What a terminal prints for a line with backspaces: a backspace moves back one column and the next character
    replaces the one there, except that ``_`` (underlining) keeps it."""
    cells: list[str] = []
    column = 0
    for char in line:
        if char == "\b":
            column = max(column - 1, 0)
            continue
        if column == len(cells):
            cells.append(char)
        elif char != "_":
            cells[column] = char
        column += 1
    return "".join(cells)


def read_fortunes(path: Union[str, os.PathLike], strip_attribution: bool = True) -> list[str]:
    """The records of one fortune file, whitespace collapsed to single spaces; lines with terminal overstrike
    (backspaces, for underlining or bold) are reduced to the printed characters; with ``strip_attribution`` a
    final ``-- author`` line is removed."""
    with open(path, encoding="utf-8", errors="replace") as f:
        raw = "\n".join(_overstrike(line) if "\b" in line else line for line in f.read().split("\n"))
    records = []
    for record in re.split(r"^%\s*$", raw, flags=re.MULTILINE):
        if strip_attribution:
            record = _ATTRIBUTION.sub("", record.rstrip())
        text = " ".join(record.split())
        if text:
            records.append(text)
    return records


def load_fortunes(
    categories: Optional[Sequence[str]] = None,
    *,
    exclude: Sequence[str] = EXCLUDED_FORTUNE_CATEGORIES,
    min_count: int = 20,
    max_chars: Optional[int] = None,
    per_category: Optional[int] = None,
    seed: int = 0,
    strip_attribution: bool = True,
    root: Optional[Union[str, os.PathLike]] = None,
) -> LabelledTexts:
    """Fortune quotes labelled by category (the file name).

    Args:
        categories: the categories to read (default: all present, minus ``exclude``).
        exclude: categories left out (default :data:`EXCLUDED_FORTUNE_CATEGORIES`).
        min_count: categories with fewer quotes (after ``max_chars``) are dropped.
        max_chars: drop quotes longer than this many characters.
        per_category: keep at most this many quotes per category (a seeded random choice).
        strip_attribution: remove the final ``-- author`` line of each quote.
        root: the fortunes folder (default ``/usr/share/games/fortunes``).

    Returns:
        :class:`LabelledTexts` with ``classes`` the kept categories (sorted); quotes in category order, then file
        order. With the defaults (Debian ``fortunes`` 1.99.1): 14,440 quotes in 38 categories.

    Raises:
        FileNotFoundError: no fortune files (the message names the Debian package ``fortunes``).

    Example::

        >>> quotes = load_fortunes(per_category=50)
        >>> quotes.texts[0], quotes.classes[quotes.labels[0]]
    """
    root = _fortunes_root(root)
    present = fortune_categories(root)
    if categories is None:
        categories = [c for c in present if c not in set(exclude)]
    missing = [c for c in categories if c not in present]
    if missing:
        raise ValueError(f"categories: not found under {root}: {missing}; present: {present}")
    kept: dict[str, list[str]] = {}
    for category in sorted(categories):
        quotes = read_fortunes(root / category, strip_attribution)
        if max_chars is not None:
            quotes = [q for q in quotes if len(q) <= max_chars]
        if len(quotes) >= min_count:
            kept[category] = quotes
    classes = tuple(kept)
    texts = [q for c in classes for q in kept[c]]
    labels = [i for i, c in enumerate(classes) for _ in kept[c]]
    keep = _cap_per_label(labels, per_category, seed)
    return LabelledTexts([texts[i] for i in keep], torch.tensor([labels[i] for i in keep], dtype=torch.int64), classes)


# --------------------------------------------------------------------------------------------------- domains
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


__all__ = [
    "EXCLUDED_FORTUNE_CATEGORIES",
    "FORTUNES_DIR",
    "LabelledTexts",
    "NOUN_LEXFILES",
    "Synset",
    "TEXT_SOURCES",
    "TextDomains",
    "WORDNET_DIR",
    "WordNetNouns",
    "ancestor_labels",
    "definition",
    "examples",
    "fortune_categories",
    "hypernym_path",
    "load_fortunes",
    "load_wordnet_examples",
    "load_wordnet_nouns",
    "read_fortunes",
    "read_wordnet",
    "text_domains",
    "wordnet_synonyms",
]
