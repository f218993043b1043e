"""Tests of otalign.modalities.text.views: SimCSE dropout views, and seeded token-level augmentations that do what
they say."""

from collections import Counter
from pathlib import Path

import pytest
import torch

from otalign.modalities.text import views as V

TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "a big car drove slowly down the old road",
    "she sells sea shells by the sea shore",
    "time flies like an arrow",
]
HAS_WORDNET = Path("/usr/share/wordnet/data.noun").is_file()


def gen(seed):
    return torch.Generator().manual_seed(seed)


def is_subsequence(short, long):
    it = iter(long)
    return all(word in it for word in short)


def test_dropout_views_differ_in_train_mode_and_agree_in_eval_mode():
    pytest.importorskip("transformers")
    from otalign.modalities.text import tiny_bert

    encoder = tiny_bert(seed=0, dropout=0.1)
    encoder.train()
    z0, z1 = V.dropout_views(encoder, TEXTS, gen(0))
    assert z0.shape == z1.shape == (4, encoder.feature_dim)
    assert not torch.allclose(z0, z1)
    w0, w1 = V.dropout_views(encoder, TEXTS, gen(0))
    assert torch.equal(z0, w0) and torch.equal(z1, w1)  # seeded
    encoder.eval()
    with torch.no_grad():
        e0, e1 = V.dropout_views(encoder, TEXTS, gen(0))
    assert torch.equal(e0, e1)


AUGMENTATIONS = {
    "deletion": lambda: V.RandomDeletion(0.3),
    "swap": lambda: V.RandomSwap(2),
    "synonyms": lambda: V.SynonymReplacement(0.5, lexicon={"quick": ("fast", "speedy"), "big": ("large",),
                                                           "old": ("aged", "former"), "sea": ("ocean",)}),
    "compose": lambda: V.TextCompose([V.RandomSwap(1), V.RandomDeletion(0.2)]),
}


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_token_augmentations_are_seeded(name):
    aug = AUGMENTATIONS[name]()
    state = torch.get_rng_state()
    a, b, c = aug(TEXTS, gen(0)), aug(TEXTS, gen(0)), aug(TEXTS, gen(1))
    assert torch.equal(torch.get_rng_state(), state)
    assert isinstance(a, list) and len(a) == len(TEXTS) and all(isinstance(t, str) for t in a)
    assert a == b and a != c and a != TEXTS
    assert isinstance(aug(TEXTS[0], gen(0)), str)


def test_random_deletion_keeps_a_subsequence():
    for seed in range(10):
        for text, out in zip(TEXTS, V.RandomDeletion(0.5)(TEXTS, gen(seed))):
            assert is_subsequence(out.split(), text.split()) and len(out.split()) >= 1
    assert V.RandomDeletion(0.0)(TEXTS, gen(0)) == TEXTS
    survivors = V.RandomDeletion(1.0)(TEXTS, gen(0))
    assert all(len(s.split()) == 1 and s in t.split() for s, t in zip(survivors, TEXTS))
    words = " ".join(["w"] * 4000)
    kept = len(V.RandomDeletion(0.25)(words, gen(0)).split())
    assert 2800 < kept < 3200


def test_random_swap_permutes_words():
    for seed in range(10):
        for text, out in zip(TEXTS, V.RandomSwap(3)(TEXTS, gen(seed))):
            assert Counter(out.split()) == Counter(text.split())
    one = V.RandomSwap(1)("a b c d e f", gen(0)).split()
    assert sum(x != y for x, y in zip(one, "a b c d e f".split())) == 2
    assert V.RandomSwap(0)(TEXTS, gen(0)) == TEXTS
    assert V.RandomSwap(5)("alone", gen(0)) == "alone"


def test_synonym_replacement_uses_the_lexicon_and_keeps_case_and_punctuation():
    lexicon = {"big": ("large",), "dog": ("hound",)}
    aug = V.SynonymReplacement(1.0, lexicon=lexicon)
    assert aug.available
    assert aug("A Big dog, a big (dog).", gen(0)) == "A Large hound, a large (hound)."
    assert V.SynonymReplacement(0.0, lexicon=lexicon)("a big dog", gen(0)) == "a big dog"


@pytest.mark.skipif(not HAS_WORDNET, reason="Debian wordnet-base is not installed")
def test_wordnet_synonyms_replace_words_by_wordnet_synonyms():
    aug = V.SynonymReplacement(1.0)
    assert aug.available and "automobile" in aug.lexicon["car"]
    out = aug("car", gen(0))
    assert out in aug.lexicon["car"]


def test_synonym_replacement_without_wordnet_is_flagged_and_passes_through(tmp_path):
    aug = V.SynonymReplacement(1.0, root=tmp_path)
    assert not aug.available
    assert aug(["a  big   car"], gen(0)) == ["a big car"]


def test_errors():
    with pytest.raises(ValueError, match="p"):
        V.RandomDeletion(1.5)
    with pytest.raises(ValueError, match="n_swaps"):
        V.RandomSwap(-1)
    with pytest.raises(TypeError, match="texts"):
        V.RandomSwap(1)([1, 2])
    with pytest.raises(ValueError, match="lexicon"):
        V.SynonymReplacement(0.1, lexicon="thesaurus")
