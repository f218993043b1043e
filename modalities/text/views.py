"""Two views of a text: dropout views (SimCSE) and token-level augmentations, all seeded by a ``torch.Generator``.

* :func:`dropout_views`: the same batch encoded twice by an encoder in train mode; the two dropout masks make the
  two views (in eval mode the views are equal).
* Token-level augmentations act on whitespace-separated words (the output joins words with single spaces):
  :class:`RandomDeletion`, :class:`RandomSwap`, :class:`SynonymReplacement` (WordNet synonyms from Debian's
  ``wordnet-base`` files when present; otherwise it leaves texts unchanged and says so with ``available=False``),
  :class:`TextCompose`. Each is called ``aug(texts, generator=None)`` on one string or a list of strings; with a
  generator the output depends only on the generator's state. Two views of texts:
  :class:`otalign.modalities.views.TwoViews` (``otalign.modalities.text.TwoViews``).

Example::

    >>> from otalign.modalities.views import TwoViews
    >>> g = torch.Generator().manual_seed(0)
    >>> views = TwoViews(TextCompose([RandomDeletion(0.1), RandomSwap(1)]))
    >>> first, second = views(["the quick brown fox jumps"], generator=g)
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor

from ..seeding import seeded
from .wordnet import wordnet_synonyms

Texts = Union[str, Sequence[str]]
_EDGE_PUNCTUATION = re.compile(r"^(\W*)(.*?)(\W*)$")


def dropout_views(
    encoder: Callable, texts: Texts, generator: Optional[torch.Generator] = None
) -> tuple[Tensor, Tensor]:
    """SimCSE views: ``texts`` tokenised once and encoded twice, ``(z0, z1)`` each ``(B, feature_dim)``.

    The encoder must be in train mode for the views to differ (dropout is the augmentation); in eval mode they are
    equal. With ``generator`` the dropout masks depend only on its state (the global RNG is restored after).

    Example::

        >>> encoder = tiny_bert(seed=0).train()
        >>> z0, z1 = dropout_views(encoder, ["a cat sat", "it rained"], torch.Generator().manual_seed(0))
    """
    batch = encoder.tokenize(texts) if hasattr(encoder, "tokenize") else texts
    device = getattr(encoder, "device", torch.device("cpu"))
    with seeded(generator, device):
        return encoder(batch), encoder(batch)


def _as_list(texts: Texts) -> tuple[list[str], bool]:
    if isinstance(texts, str):
        return [texts], True
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        raise TypeError("texts: expected a string or a sequence of strings")
    return texts, False


def _uniform(n: int, generator: Optional[torch.Generator]) -> list[float]:
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(n, generator=generator, device=device, dtype=torch.float64).tolist()


def _randint(high: int, generator: Optional[torch.Generator]) -> int:
    device = generator.device if generator is not None else torch.device("cpu")
    return int(torch.randint(high, (1,), generator=generator, device=device))


class TextAugmentation:
    """Base class: ``aug(texts, generator=None)`` maps a string to a string or a list to a list, one text at a
    time through :meth:`words` (the text's words in, the new words out)."""

    def __call__(self, texts: Texts, generator: Optional[torch.Generator] = None) -> Union[str, list[str]]:
        items, single = _as_list(texts)
        out = [" ".join(self.words(text.split(), generator)) for text in items]
        return out[0] if single else out

    def words(self, words: list[str], generator: Optional[torch.Generator]) -> list[str]:
        raise NotImplementedError


class RandomDeletion(TextAugmentation):
    """Delete each word with probability ``p``; when every word would go, one word drawn at random stays."""

    def __init__(self, p: float = 0.1):
        if not 0 <= p <= 1:
            raise ValueError(f"p: expected a probability, got {p}")
        self.p = float(p)

    def words(self, words: list[str], generator: Optional[torch.Generator]) -> list[str]:
        if not words:
            return words
        kept = [w for w, u in zip(words, _uniform(len(words), generator)) if u >= self.p]
        return kept if kept else [words[_randint(len(words), generator)]]

    def __repr__(self) -> str:
        return f"RandomDeletion(p={self.p:g})"


class RandomSwap(TextAugmentation):
    """Swap two word positions drawn at random, ``n_swaps`` times (texts with fewer than two words are kept)."""

    def __init__(self, n_swaps: int = 1):
        if not isinstance(n_swaps, int) or n_swaps < 0:
            raise ValueError(f"n_swaps: expected an int >= 0, got {n_swaps!r}")
        self.n_swaps = n_swaps

    def words(self, words: list[str], generator: Optional[torch.Generator]) -> list[str]:
        words = list(words)
        if len(words) < 2:
            return words
        for _ in range(self.n_swaps):
            i = _randint(len(words), generator)
            j = (i + 1 + _randint(len(words) - 1, generator)) % len(words)  # j != i
            words[i], words[j] = words[j], words[i]
        return words

    def __repr__(self) -> str:
        return f"RandomSwap(n_swaps={self.n_swaps})"


class SynonymReplacement(TextAugmentation):
    """Replace each word that has synonyms with probability ``p`` by one of them, drawn uniformly.

    A word is looked up lower-cased without the punctuation at its ends; the punctuation is kept and a capital
    first letter is carried over to the synonym.

    Args:
        p: replacement probability per word with synonyms.
        lexicon: ``"wordnet"`` (:func:`~otalign.modalities.text.wordnet.wordnet_synonyms` from Debian's
            ``wordnet-base`` files) or a mapping ``word -> synonyms``.
        root: the WordNet folder (default ``/usr/share/wordnet``).

    Attributes:
        available: ``False`` when the WordNet files are missing; the augmentation then returns texts unchanged
            (whitespace normalised).

    Example::

        >>> SynonymReplacement(1.0, lexicon={"big": ("large",)})("A big dog.")
        'A large dog.'
    """

    def __init__(self, p: float = 0.1, lexicon: Union[str, Mapping[str, Sequence[str]]] = "wordnet", root=None):
        if not 0 <= p <= 1:
            raise ValueError(f"p: expected a probability, got {p}")
        self.p = float(p)
        if isinstance(lexicon, str):
            if lexicon != "wordnet":
                raise ValueError(f"lexicon: expected 'wordnet' or a mapping, got {lexicon!r}")
            try:
                lexicon = wordnet_synonyms(root)
            except FileNotFoundError:
                lexicon = {}
                self.available = False
            else:
                self.available = True
        else:
            self.available = True
        self.lexicon = {str(k).lower(): tuple(v) for k, v in lexicon.items() if len(v)}

    def words(self, words: list[str], generator: Optional[torch.Generator]) -> list[str]:
        out = []
        draws = _uniform(len(words), generator)
        for word, u in zip(words, draws):
            before, core, after = _EDGE_PUNCTUATION.match(word).groups()
            synonyms = self.lexicon.get(core.lower())
            if synonyms and u < self.p:
                new = synonyms[_randint(len(synonyms), generator)]
                if core[:1].isupper():
                    new = new[:1].upper() + new[1:]
                word = before + new + after
            out.append(word)
        return out

    def __repr__(self) -> str:
        return f"SynonymReplacement(p={self.p:g}, words={len(self.lexicon)}, available={self.available})"


class TextCompose(TextAugmentation):
    """Apply text augmentations in sequence, passing the same generator along."""

    def __init__(self, augmentations: Sequence[TextAugmentation]):
        for a in augmentations:
            if not isinstance(a, TextAugmentation):
                raise TypeError(f"augmentations: expected TextAugmentation instances, got {type(a).__name__}")
        self.augmentations = list(augmentations)

    def words(self, words: list[str], generator: Optional[torch.Generator]) -> list[str]:
        for a in self.augmentations:
            words = a.words(words, generator)
        return words

    def __repr__(self) -> str:
        return f"TextCompose({self.augmentations!r})"


__all__ = [
    "RandomDeletion",
    "RandomSwap",
    "SynonymReplacement",
    "TextAugmentation",
    "TextCompose",
    "dropout_views",
]
