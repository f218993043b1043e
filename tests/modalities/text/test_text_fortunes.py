"""Tests of otalign.modalities.text.fortunes against Debian's fortune files read independently: quotes by
category, record parsing (overstrike, attribution), and the missing-package error."""

from pathlib import Path

import pytest
import torch

from otalign.modalities.text import fortunes as F

HAS_FORTUNES = (F.FORTUNES_DIR / "startrek.dat").is_file()
needs_fortunes = pytest.mark.skipif(not HAS_FORTUNES, reason="Debian fortunes is not installed")


@needs_fortunes
def test_fortunes_by_category():
    quotes = F.load_fortunes()
    assert not set(quotes.classes) & set(F.EXCLUDED_FORTUNE_CATEGORIES)
    assert quotes.classes == tuple(sorted(quotes.classes)) and "startrek" in quotes.classes
    assert quotes.labels.shape == (len(quotes.texts),) and quotes.labels.dtype == torch.int64
    counts = torch.bincount(quotes.labels, minlength=len(quotes.classes))
    assert (counts >= 20).all()
    raw = (F.FORTUNES_DIR / "startrek").read_text(encoding="utf-8", errors="replace")
    records = [r for r in raw.split("\n%\n") if r.strip() and r.strip() != "%"]
    assert int(counts[quotes.classes.index("startrek")]) == len(records)
    assert all(t == " ".join(t.split()) and "\x08" not in t for t in quotes.texts)
    startrek = F.load_fortunes(["startrek"])
    with_authors = F.load_fortunes(["startrek"], strip_attribution=False)
    assert len(startrek.texts) == len(with_authors.texts)
    assert all(full.startswith(short) for short, full in zip(startrek.texts, with_authors.texts))
    for record, short, full in zip(records, startrek.texts, with_authors.texts):
        has_author = any(line.lstrip().startswith("-- ") for line in record.strip().split("\n")[1:])
        assert (len(short) < len(full)) == has_author
    short = F.load_fortunes(["startrek", "linux"], max_chars=200, per_category=10)
    assert len(short.texts) == 20 and all(len(t) <= 200 for t in short.texts)
    with pytest.raises(ValueError, match="categories"):
        F.load_fortunes(["no-such-category"])


def test_read_fortunes_parses_records_overstrike_and_attribution(tmp_path: Path):
    path = tmp_path / "demo"
    path.write_text("one\n\tline two\n%\nYour whole ____\b\b\b\bBODY and _\bf_\bo_\bo!\n\t\t-- Someone\n%\n")
    (tmp_path / "demo.dat").write_bytes(b"")
    assert F.read_fortunes(path) == ["one line two", "Your whole BODY and foo!"]
    assert F.read_fortunes(path, strip_attribution=False)[1] == "Your whole BODY and foo! -- Someone"
    assert F.fortune_categories(tmp_path) == ("demo",)
    loaded = F.load_fortunes(root=tmp_path, min_count=1)
    assert loaded.classes == ("demo",) and loaded.labels.tolist() == [0, 0]
    assert F.load_fortunes(root=tmp_path, min_count=3).texts == []


def test_missing_fortune_files_name_the_package(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="apt-get install fortunes"):
        F.load_fortunes(root=tmp_path)
