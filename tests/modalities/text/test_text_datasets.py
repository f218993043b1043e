"""Tests of otalign.modalities.text.datasets against the Debian files read independently: WordNet labels and
hierarchy (offsets are byte positions in data.noun), fortunes by category, domains, and the missing-package errors."""

from pathlib import Path

import pytest
import torch

from otalign.modalities.text import datasets as D

HAS_WORDNET = (D.WORDNET_DIR / "data.noun").is_file()
HAS_FORTUNES = (D.FORTUNES_DIR / "startrek.dat").is_file()
needs_wordnet = pytest.mark.skipif(not HAS_WORDNET, reason="Debian wordnet-base is not installed")
needs_fortunes = pytest.mark.skipif(not HAS_FORTUNES, reason="Debian fortunes is not installed")


def raw_line(offset):
    """The data.noun line of a synset, found by seeking to its byte offset (WordNet's own indexing)."""
    with open(D.WORDNET_DIR / "data.noun", "rb") as f:
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
    return D.load_wordnet_nouns(depth=4)


@needs_wordnet
def test_wordnet_labels_match_the_data_file(nouns):
    n = len(nouns.texts)
    assert n > 80_000 and len(nouns.lemmas) == n
    for field in (nouns.synsets, nouns.lexfiles, nouns.ancestors, nouns.depths):
        assert field.shape == (n,) and field.dtype == torch.int64
    assert set(nouns.lexfiles.tolist()) == set(range(26)) and len(D.NOUN_LEXFILES) == 26
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
    coarse, _ = D.ancestor_labels(nouns.paths, 2)
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
    part = D.load_wordnet_nouns(depth=6, lexfiles=["noun.animal", "noun.plant"], per_lexfile=30, seed=0)
    assert len(part.texts) == 60 and set(part.lexfiles.tolist()) == {2, 17}
    assert torch.equal(part.synsets, part.synsets.sort().values)
    again = D.load_wordnet_nouns(depth=6, lexfiles=["noun.animal", "noun.plant"], per_lexfile=30, seed=0)
    other = D.load_wordnet_nouns(depth=6, lexfiles=["noun.animal", "noun.plant"], per_lexfile=30, seed=1)
    assert torch.equal(part.synsets, again.synsets) and not torch.equal(part.synsets, other.synsets)
    sentences = D.load_wordnet_examples(per_lexfile=5)
    assert len(sentences.texts) == 26 * 5 and sentences.classes == D.NOUN_LEXFILES
    assert all(t and '"' not in t for t in sentences.texts)
    gloss = 'a tangible entity; an entity that casts a shadow; "it was full of objects"; "a second one"'
    assert D.definition(gloss) == "a tangible entity; an entity that casts a shadow"
    assert D.examples(gloss) == ["it was full of objects", "a second one"]
    with pytest.raises(ValueError, match="lexfiles"):
        D.load_wordnet_nouns(lexfiles=["noun.dinosaur"])


@needs_fortunes
def test_fortunes_by_category():
    quotes = D.load_fortunes()
    assert not set(quotes.classes) & set(D.EXCLUDED_FORTUNE_CATEGORIES)
    assert quotes.classes == tuple(sorted(quotes.classes)) and "startrek" in quotes.classes
    assert quotes.labels.shape == (len(quotes.texts),) and quotes.labels.dtype == torch.int64
    counts = torch.bincount(quotes.labels, minlength=len(quotes.classes))
    assert (counts >= 20).all()
    raw = (D.FORTUNES_DIR / "startrek").read_text(encoding="utf-8", errors="replace")
    records = [r for r in raw.split("\n%\n") if r.strip() and r.strip() != "%"]
    assert int(counts[quotes.classes.index("startrek")]) == len(records)
    assert all(t == " ".join(t.split()) and "\x08" not in t for t in quotes.texts)
    startrek = D.load_fortunes(["startrek"])
    with_authors = D.load_fortunes(["startrek"], strip_attribution=False)
    assert len(startrek.texts) == len(with_authors.texts)
    assert all(full.startswith(short) for short, full in zip(startrek.texts, with_authors.texts))
    for record, short, full in zip(records, startrek.texts, with_authors.texts):
        has_author = any(line.lstrip().startswith("-- ") for line in record.strip().split("\n")[1:])
        assert (len(short) < len(full)) == has_author
    short = D.load_fortunes(["startrek", "linux"], max_chars=200, per_category=10)
    assert len(short.texts) == 20 and all(len(t) <= 200 for t in short.texts)
    with pytest.raises(ValueError, match="categories"):
        D.load_fortunes(["no-such-category"])


@needs_wordnet
@needs_fortunes
def test_text_domains_structure():
    data = D.text_domains(per_class=3)
    n = len(data.texts)
    assert data.labels.shape == data.domains.shape == (n,)
    assert data.sources == D.TEXT_SOURCES and set(data.domains.tolist()) == {0, 1, 2}
    assert data.classes[:26] == D.NOUN_LEXFILES
    wordnet = data.domains < 2
    assert (data.labels[wordnet] < 26).all() and (data.labels[~wordnet] >= 26).all()
    assert int((data.domains == 0).sum()) == 26 * 3
    only = D.text_domains(["fortunes"], per_class=2)
    assert set(only.domains.tolist()) == {2}  # ids do not depend on the chosen sources
    with pytest.raises(ValueError, match="sources"):
        D.text_domains(["tweets"])


def test_read_fortunes_parses_records_overstrike_and_attribution(tmp_path: Path):
    path = tmp_path / "demo"
    path.write_text("one\n\tline two\n%\nYour whole ____\b\b\b\bBODY and _\bf_\bo_\bo!\n\t\t-- Someone\n%\n")
    (tmp_path / "demo.dat").write_bytes(b"")
    assert D.read_fortunes(path) == ["one line two", "Your whole BODY and foo!"]
    assert D.read_fortunes(path, strip_attribution=False)[1] == "Your whole BODY and foo! -- Someone"
    assert D.fortune_categories(tmp_path) == ("demo",)
    loaded = D.load_fortunes(root=tmp_path, min_count=1)
    assert loaded.classes == ("demo",) and loaded.labels.tolist() == [0, 0]
    assert D.load_fortunes(root=tmp_path, min_count=3).texts == []


def test_missing_debian_files_name_the_package(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        D.load_wordnet_nouns(root=tmp_path)
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        D.wordnet_synonyms(root=tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        D.load_fortunes(root=tmp_path)
