"""genrec.significance: per-user NDCG and the paired comparison, against hand-computed values."""

import math

import numpy as np
import pytest

from genrec.significance import align_users, ndcg_at_k, paired_comparison


def test_ndcg_at_k_by_hand():
    got = ndcg_at_k([1, 2, 10, 11, 0], k=10)
    assert got.tolist() == pytest.approx([1.0, 1 / math.log2(3), 1 / math.log2(11), 0.0, 0.0])
    assert ndcg_at_k([3], k=2).tolist() == [0.0]
    for bad in ([-1], [1.5], [float("nan")], [[1, 2]]):
        with pytest.raises(ValueError):
            ndcg_at_k(bad)


def test_paired_t_test_and_difference_by_hand():
    b = np.array([0.0, 0.0, 0.0, 0.0])
    a = np.array([1.0, 2.0, 3.0, 4.0])
    out = paired_comparison(a, b, n_resamples=2000)
    # d = 1..4: mean 2.5, sample sd sqrt(5/3), t = 2.5 / (sd / 2), two-sided with 3 degrees of freedom
    from scipy.stats import t as student_t

    t = 2.5 / (math.sqrt(5 / 3) / 2)
    assert out["diff"] == 2.5 and out["mean_a"] == 2.5 and out["mean_b"] == 0.0
    assert out["t_pvalue"] == pytest.approx(2 * student_t.sf(t, 3))
    assert 1.0 <= out["diff_low"] <= 2.5 <= out["diff_high"] <= 4.0
    assert "ratio" not in out  # B scores nothing: no ratio
    assert out["users_a_better"] == 4 and out["users_b_better"] == 0


def test_interval_brackets_the_true_difference_with_the_normal_width():
    rng = np.random.default_rng(3)
    b = rng.random(4000)
    a = b + 0.02 + rng.normal(0, 0.2, b.size)
    out = paired_comparison(a, b, seed=1)
    d = a - b
    half = 1.96 * d.std(ddof=1) / math.sqrt(d.size)
    assert out["diff_low"] < 0.02 < out["diff_high"]
    assert (out["diff_high"] - out["diff_low"]) / 2 == pytest.approx(half, rel=0.1)
    assert out["ratio"] == pytest.approx(a.mean() / b.mean())
    assert out["ratio_low"] < out["ratio"] < out["ratio_high"]
    assert out["t_pvalue"] < 0.01
    # no real difference: p-values far from significance, interval across 0
    same = paired_comparison(b + rng.normal(0, 0.2, b.size), b, seed=1)
    assert same["diff_low"] < 0 < same["diff_high"] and same["ratio_low"] < 1 < same["ratio_high"]


def test_identical_scores_and_bad_input():
    a = np.array([0.5, 0.0, 1.0])
    out = paired_comparison(a, a.copy())
    assert (out["diff"], out["diff_low"], out["diff_high"], out["t_pvalue"], out["ratio"]) == (0, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="one length"):
        paired_comparison(a, a[:2])
    with pytest.raises(ValueError, match="NaN"):
        paired_comparison(a, np.array([0.5, np.nan, 1.0]))
    with pytest.raises(ValueError, match="at least 2 users"):
        paired_comparison(a[:1], a[:1])


def test_align_users_pairs_by_user_and_refuses_other_users():
    users, va, vb = align_users({2: 0.2, 1: 0.1}, {1: 1.0, 2: 2.0})
    assert users == [1, 2] and va.tolist() == [0.1, 0.2] and vb.tolist() == [1.0, 2.0]
    with pytest.raises(ValueError, match="1 only in genrec, 0 only in sasrec"):
        align_users({1: 0.0, 3: 0.0}, {1: 0.0}, "genrec", "sasrec")
