"""HR@K / NDCG@K against hand-computed values; full ranking with pessimistic ties."""

import math

import numpy as np
import pytest
import torch

from genrec.metrics import format_table, metrics_from_ranks, ranks_from_lists, ranks_from_scores


def test_ranks_from_lists():
    ranked = [[5, 3, 9], [1, 2], [], [7, 7, 4]]
    assert ranks_from_lists(ranked, [3, 8, 1, 4]).tolist() == [2, 0, 0, 3]
    assert ranks_from_lists([[4, 4, 4]], [4]).tolist() == [1]  # first occurrence counts
    with pytest.raises(ValueError):
        ranks_from_lists([[1]], [1, 2])


def test_metrics_hand_computed():
    # ranks of 5 users: 1, 2, absent, 5, 11
    m = metrics_from_ranks([1, 2, 0, 5, 11], ks=(1, 5, 10, 20))
    assert m["users"] == 5
    assert m["HR@1"] == pytest.approx(1 / 5)
    assert m["HR@5"] == pytest.approx(3 / 5)
    assert m["HR@10"] == pytest.approx(3 / 5)
    assert m["HR@20"] == pytest.approx(4 / 5)
    assert m["NDCG@1"] == pytest.approx(1 / 5)
    # NDCG@5 = (1/log2(2) + 1/log2(3) + 1/log2(6)) / 5
    assert m["NDCG@5"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6)) / 5)
    assert m["NDCG@10"] == pytest.approx(m["NDCG@5"])
    assert m["NDCG@20"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(6) + 1 / math.log2(12)) / 5)
    # bounds: NDCG@K <= HR@K, both monotone in K
    for a, b in ((1, 5), (5, 10), (10, 20)):
        assert m[f"HR@{a}"] <= m[f"HR@{b}"] and m[f"NDCG@{a}"] <= m[f"NDCG@{b}"]
        assert m[f"NDCG@{b}"] <= m[f"HR@{b}"]


def test_metrics_accepts_arrays_and_rejects_empty():
    a = metrics_from_ranks(np.array([1, 0, 3]), ks=(1, 5))
    b = metrics_from_ranks(torch.tensor([1, 0, 3]), ks=(1, 5))
    c = metrics_from_ranks([1, 0, 3], ks=(1, 5))
    assert a == b == c
    assert a["HR@1"] == pytest.approx(1 / 3) and a["NDCG@5"] == pytest.approx((1 + 0.5) / 3)
    with pytest.raises(ValueError):
        metrics_from_ranks([], ks=(1,))


def test_ranks_from_scores_full_ranking_and_pessimistic_ties():
    scores = torch.tensor([
        [0.1, 0.9, 0.5, 0.3],   # target 2 (0.5): only item 1 above -> rank 2
        [0.2, 0.2, 0.2, 0.2],   # constant scorer: every item ties -> worst rank 4
        [0.7, 0.1, 0.7, 0.0],   # target 0 ties with item 2 -> rank 2 (pessimistic)
        [0.3, 0.9, 0.8, 0.1],   # target 3 last -> rank 4
    ])
    targets = torch.tensor([2, 1, 0, 3])
    assert ranks_from_scores(scores, targets).tolist() == [2, 4, 2, 4]
    exclude = torch.zeros_like(scores, dtype=torch.bool)
    exclude[0, 1] = True      # removing the item ranked above the target
    exclude[2, 2] = True      # removing the tied item
    assert ranks_from_scores(scores, targets, exclude).tolist() == [1, 4, 1, 4]
    m = metrics_from_ranks(ranks_from_scores(scores, targets), ks=(1, 2))
    assert m["HR@1"] == 0 and m["HR@2"] == pytest.approx(0.5)
    assert m["NDCG@2"] == pytest.approx((2 / math.log2(3)) / 4)


def test_format_table():
    table = format_table({"a": {"HR@1": 0.1, "HR@5": 0.2, "HR@10": 0.3, "NDCG@5": 0.15, "NDCG@10": 0.2}})
    lines = table.splitlines()
    assert lines[0] == "| run | HR@1 | HR@5 | HR@10 | NDCG@5 | NDCG@10 |"
    assert lines[2] == "| a | 0.1000 | 0.2000 | 0.3000 | 0.1500 | 0.2000 |"
    assert "-" in format_table({"b": {"HR@1": 0.5}}).splitlines()[2]
