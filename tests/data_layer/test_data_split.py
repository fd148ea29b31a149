"""Leave-one-out split on a hand-made example."""

from __future__ import annotations

import pytest

from genrec.data import Sample, leave_one_out, training_sequences


def test_leave_one_out_by_hand():
    seqs = [[10, 11, 12, 13, 14], [20, 21, 22]]
    split = leave_one_out(seqs, max_history=20)
    assert split.train == [Sample(0, (10,), 11), Sample(0, (10, 11), 12)]  # user 1 has no training sample
    assert split.valid == [Sample(0, (10, 11, 12), 13), Sample(1, (20,), 21)]
    assert split.test == [Sample(0, (10, 11, 12, 13), 14), Sample(1, (20, 21), 22)]  # includes the valid item
    assert training_sequences(seqs) == [[10, 11, 12], [20]]


def test_history_cap_keeps_most_recent():
    split = leave_one_out([[1, 2, 3, 4, 5, 6]], max_history=2)
    assert [s.history for s in split.train] == [(1,), (1, 2), (2, 3)]
    assert split.valid[0] == Sample(0, (3, 4), 5)
    assert split.test[0] == Sample(0, (4, 5), 6)
    assert leave_one_out([[1, 2, 3, 4, 5, 6]], max_history=0).test[0].history == (1, 2, 3, 4, 5)


def test_no_target_leaks_into_training():
    seqs = [[1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4]]
    split = leave_one_out(seqs)
    for u, s in enumerate(seqs):
        train_targets = [x.target for x in split.train if x.user == u]
        assert train_targets == s[1:-2]
        assert all(s[-1] not in x.history and s[-2] not in x.history for x in split.train if x.user == u)


def test_too_short_sequence_is_rejected():
    with pytest.raises(ValueError, match="user 1 has 2 interactions; leave-one-out needs at least 3"):
        leave_one_out([[1, 2, 3], [1, 2]])


def test_popularity_counts_every_training_occurrence_and_nothing_held_out():
    from collections import Counter

    from genrec.data import leave_one_out, popularity_counts, training_sequences

    seqs = [[0, 1, 2, 3, 4], [2, 2, 5], [1, 3, 0, 5]]
    counts = popularity_counts(training_sequences(seqs), 6)
    # training targets plus each sequence's first item (never a target): the same counts
    split = leave_one_out(seqs)
    want = Counter(s.target for s in split.train) + Counter(s[0] for s in seqs)
    assert counts.tolist() == [float(want.get(i, 0)) for i in range(6)]
    assert counts.tolist() == [1.0, 2.0, 2.0, 1.0, 0.0, 0.0]  # the validation and test items (3, 4 / 2, 5 / 0, 5) left out
