"""Tests of otalign.modalities.text.domains: three sources as domains, with comparable WordNet labels."""

from pathlib import Path

import pytest

from otalign.modalities.text import domains as T
from otalign.modalities.text.fortunes import FORTUNES_DIR
from otalign.modalities.text.wordnet import NOUN_LEXFILES, WORDNET_DIR

HAS_WORDNET = (WORDNET_DIR / "data.noun").is_file()
HAS_FORTUNES = (FORTUNES_DIR / "startrek.dat").is_file()
needs_wordnet = pytest.mark.skipif(not HAS_WORDNET, reason="Debian wordnet-base is not installed")
needs_fortunes = pytest.mark.skipif(not HAS_FORTUNES, reason="Debian fortunes is not installed")


@needs_wordnet
@needs_fortunes
def test_text_domains_structure():
    data = T.text_domains(per_class=3)
    n = len(data.texts)
    assert data.labels.shape == data.domains.shape == (n,)
    assert data.sources == T.TEXT_SOURCES and set(data.domains.tolist()) == {0, 1, 2}
    assert data.classes[:26] == NOUN_LEXFILES
    wordnet = data.domains < 2
    assert (data.labels[wordnet] < 26).all() and (data.labels[~wordnet] >= 26).all()
    assert int((data.domains == 0).sum()) == 26 * 3
    only = T.text_domains(["fortunes"], per_class=2)
    assert set(only.domains.tolist()) == {2}  # ids do not depend on the chosen sources
    with pytest.raises(ValueError, match="sources"):
        T.text_domains(["tweets"])


def test_missing_files_name_the_package(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="wordnet-base"):
        T.text_domains(["definitions"], wordnet_root=tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        T.text_domains(["fortunes"], fortunes_root=tmp_path)
