"""Tests of otalign.modalities.text.wordnet against Debian's WordNet files read independently: labels and hierarchy
(offsets are byte positions in data.noun), subsets, examples, and the missing-package error."""

from pathlib import Path

import pytest
import torch

from otalign.modalities.text import wordnet as W

HAS_WORDNET = (W.WORDNET_DIR / "data.noun").is_file()
needs_wordnet = pytest.mark.skipif(not HAS_WORDNET, reason="Debian wordnet-base is not installed")


def raw_line(offset):
    """The data.noun line of a synset, found by seeking to its byte offset (WordNet's own indexing)."""
    with open(W.WORDNET_DIR / "data.noun", "rb") as f:
        f.seek(offset)
        return f.readline().decode("utf-8")


def first_hypernym(line):
    fields = line.split(" | ")[0].split()
    n_words = int(fields[3], 16)
    start = 4 + 2 * n_words
    pointers = fields[start + 1 :]
    for i in range(0, 4 * int(fields[start]), 4):
        if pointers[i] in ("@", "@i"):
            return int(pointers[i + 1])
    return None


@pytest.fixture(scope="module")
def nouns():
    if not HAS_WORDNET:
        pytest.skip("Debian wordnet-base is not installed")
    return W.load_wordnet_nouns(depth=4)


@needs_wordnet
def test_wordnet_labels_match_the_data_file(nouns):
    n = len(nouns.texts)
    assert n > 80_000 and len(nouns.lemmas) == n
    for field in (nouns.synsets, nouns.lexfiles, nouns.ancestors, nouns.depths):
        assert field.shape == (n,) and field.dtype == torch.int64
    assert set(nouns.lexfiles.tolist()) == set(range(26)) and len(W.NOUN_LEXFILES) == 26
    assert (nouns.depths >= 4).all()
    for i in torch.linspace(0, n - 1, 40).long().tolist():
        line = raw_line(int(nouns.synsets[i]))
        fields = line.split()
        assert int(fields[0]) == int(nouns.synsets[i])
        assert int(fields[1]) == int(nouns.lexfiles[i]) + 3  # lexicographer file numbers 03 .. 28 are nouns
        assert fields[4].replace("_", " ") == nouns.lemmas[i]
        assert line.split(" | ")[1].startswith(nouns.texts[i])
        assert '"' not in nouns.texts[i]  # examples are not part of the definition


@needs_wordnet
def test_wordnet_ancestors_follow_the_hypernym_chain(nouns):
    n = len(nouns.texts)
    for i in torch.linspace(0, n - 1, 40).long().tolist():
        chain = [int(nouns.synsets[i])]
        while (parent := first_hypernym(raw_line(chain[-1]))) is not None:
            chain.append(parent)
        chain.reverse()
        assert chain[0] == 1740  # entity
        assert tuple(chain) == nouns.paths[i] and len(chain) - 1 == int(nouns.depths[i])
        assert int(nouns.ancestor_synsets[nouns.ancestors[i]]) == chain[4]
        assert nouns.ancestor_names[nouns.ancestors[i]] == raw_line(chain[4]).split()[4].replace("_", " ")


@needs_wordnet
def test_wordnet_levels_are_nested_but_lexfiles_are_not_a_level(nouns):
    coarse, _ = W.ancestor_labels(nouns.paths, 2)
    parent_of = {}
    for mid, top in zip(nouns.ancestors.tolist(), coarse.tolist()):
        assert parent_of.setdefault(mid, top) == top  # the depth-4 ancestor determines the depth-2 one
    lexfiles_of = {}
    for mid, lexfile in zip(nouns.ancestors.tolist(), nouns.lexfiles.tolist()):
        lexfiles_of.setdefault(mid, set()).add(lexfile)
    assert any(len(s) > 1 for s in lexfiles_of.values())  # as documented: a topic label, not a tree level
    assert len(nouns.ancestor_names) == len(nouns.ancestor_synsets) == int(nouns.ancestors.max()) + 1


@needs_wordnet
def test_wordnet_subsets_and_examples():
    part = W.load_wordnet_nouns(depth=6, lexfiles=["noun.animal", "noun.plant"], per_lexfile=30, seed=0)
    assert len(part.texts) == 60 and set(part.lexfiles.tolist()) == {2, 17}
    assert torch.equal(part.synsets, part.synsets.sort().values)
    again = W.load_wordnet_nouns(depth=6, lexfiles=["noun.animal", "noun.plant"], per_lexfile=30, seed=0)
    other = W.load_wordnet_nouns(depth=6, lexfiles=["noun.animal", "noun.plant"], per_lexfile=30, seed=1)
    assert torch.equal(part.synsets, again.synsets) and not torch.equal(part.synsets, other.synsets)
    sentences = W.load_wordnet_examples(per_lexfile=5)
    assert len(sentences.texts) == 26 * 5 and sentences.classes == W.NOUN_LEXFILES
    assert all(t and '"' not in t for t in sentences.texts)
    gloss = 'a tangible entity; an entity that casts a shadow; "it was full of objects"; "a second one"'
    assert W.definition(gloss) == "a tangible entity; an entity that casts a shadow"
    assert W.examples(gloss) == ["it was full of objects", "a second one"]
    with pytest.raises(ValueError, match="lexfiles"):
        W.load_wordnet_nouns(lexfiles=["noun.dinosaur"])


def test_missing_wordnet_files_name_the_package(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        W.load_wordnet_nouns(root=tmp_path)
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        W.wordnet_synonyms(root=tmp_path)
