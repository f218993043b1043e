"""Tests of otalign.modalities.text.labelled: the seeded per-label cap keeps what it says, in order."""

import pytest

from otalign.modalities.text.labelled import cap_per_label


def test_cap_keeps_at_most_per_label_items_of_each_label_in_order():
    labels = [0] * 7 + [1] * 2 + [2] * 5 + [0, 1, 2]
    kept = cap_per_label(labels, 3, seed=0)
    assert kept == sorted(kept) and len(set(kept)) == len(kept)
    counts = {label: sum(labels[i] == label for i in kept) for label in set(labels)}
    assert counts == {0: 3, 1: 3, 2: 3}
    assert sorted(i for i in kept if labels[i] == 1) == [i for i, l in enumerate(labels) if l == 1]
    few = cap_per_label(labels, 1, seed=0)
    assert sorted(labels[i] for i in few) == [0, 1, 2]


def test_cap_is_seeded_and_none_keeps_everything():
    labels = [i % 4 for i in range(200)]
    assert cap_per_label(labels, 10, seed=3) == cap_per_label(labels, 10, seed=3)
    assert cap_per_label(labels, 10, seed=3) != cap_per_label(labels, 10, seed=4)
    assert cap_per_label(labels, None, seed=0) == list(range(200))
    assert cap_per_label(labels, 1000, seed=0) == list(range(200))


@pytest.mark.parametrize("bad", [0, -1, 2.5, "3"])
def test_cap_rejects_a_bad_count(bad):
    with pytest.raises(ValueError, match="per_lexfile/per_category"):
        cap_per_label([0, 1], bad, seed=0)
