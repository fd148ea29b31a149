"""The sampled evaluation protocol (--eval-negatives): metrics, negatives, N=0 = full ranking, labels."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import load_benchmark
from genrec.baselines import NotApplicable, SequenceData, evaluate
from genrec.baselines.cli import main as cli_main
from genrec.baselines.registry import MODELS
from genrec.baselines.sampled_eval import EvalNegatives, protocol_name, ranks_among_candidates
from genrec.data import Sample
from genrec.metrics import metrics_from_ranks, ranks_from_scores

pytestmark = pytest.mark.usefixtures("one_thread")

from conftest import BASELINE_METRICS as METRICS  # noqa: E402
from conftest import baseline_args as _args  # noqa: E402






# -- (1) hand-computed metrics -------------------------------------------------------------------
SCORES = torch.tensor([
    # items: 0    1    2    3    4    5    6    7
    [0.9, 0.0, 0.5, 0.0, 0.0, 0.1, 0.0, 0.7],  # user 0, target 2: .9 (item 0) and .7 (item 7) ahead -> rank 3
    [0.0, 0.3, 0.0, 0.2, 0.8, 0.0, 0.1, 9.0],  # user 1, target 4: item 7 scores higher but is no candidate -> 1
    [0.4, 0.0, 0.0, 0.4, 0.0, 0.0, 0.2, 0.0],  # user 2, target 3: tie with item 0 counts against it -> rank 2
])
TARGETS = [2, 4, 3]
NEGATIVES = [[0, 5, 7], [1, 3, 6], [0, 6, 1]]


def test_hand_computed_ranks_and_metrics():
    ranks = ranks_among_candidates(SCORES, torch.tensor(TARGETS), torch.tensor(NEGATIVES))
    assert ranks.tolist() == [3, 1, 2]
    m = metrics_from_ranks(ranks, ks=(1, 2, 5))
    assert m["HR@1"] == pytest.approx(1 / 3) and m["HR@2"] == pytest.approx(2 / 3) and m["HR@5"] == 1.0
    assert m["NDCG@1"] == pytest.approx(1 / 3)
    assert m["NDCG@2"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert m["NDCG@5"] == pytest.approx((1 / math.log2(4) + 1 + 1 / math.log2(3)) / 3)


def test_evaluate_uses_each_users_own_negatives_whatever_the_batch_order():
    # histories of decreasing length: evaluate sorts them, so batch rows are not user order
    samples = [Sample(u, (7,) * (5 - u), TARGETS[u]) for u in range(3)]

    def score(inputs, lengths):
        return SCORES[5 - lengths]  # the history length says which user a row is

    negs = EvalNegatives([[2, 4, 3]] * 3, 8, 3, seed=0)
    negs.table = torch.tensor(NEGATIVES)  # the hand-picked negatives in place of the drawn ones
    for batch_size in (1, 2, 3):
        m = evaluate(score, samples, batch_size=batch_size, ks=(1, 5), negatives=negs)
        assert m["HR@1"] == pytest.approx(1 / 3) and m["HR@5"] == 1.0 and m["users"] == 3
        assert m["NDCG@5"] == pytest.approx((0.5 + 1 + 1 / math.log2(3)) / 3)
    full = evaluate(score, samples, ks=(1, 5))  # the same scores, all 8 items: item 7 ranks above user 1's target
    assert full["HR@1"] == 0.0


def test_a_negative_equal_to_the_target_is_refused():
    with pytest.raises(ValueError, match="equals the target"):
        ranks_among_candidates(SCORES, torch.tensor(TARGETS), torch.tensor([[0, 2, 7], [1, 3, 6], [0, 6, 1]]))


# -- (2) the negatives -------------------------------------------------------------------------
def test_negatives_avoid_the_users_items_and_are_reproducible():
    rng = np.random.default_rng(0)
    n_items = 40
    # dense users (up to 29 of 40 items) leave few free items: collisions would show
    seqs = [rng.choice(n_items, size=int(rng.integers(3, 30)), replace=True).tolist() for _ in range(60)]
    a = EvalNegatives(seqs, n_items, 10, seed=3)
    b = EvalNegatives(seqs, n_items, 10, seed=3)
    assert a.table.shape == (60, 10) and torch.equal(a.table, b.table)
    for u, row in enumerate(a.table.tolist()):
        assert len(set(row)) == 10 and not set(row) & set(seqs[u]) and all(0 <= i < n_items for i in row)
    # a user's sample depends on the seed and the user only, not on the other users
    assert torch.equal(EvalNegatives(seqs[:7], n_items, 10, seed=3).table, a.table[:7])
    assert not torch.equal(EvalNegatives(seqs, n_items, 10, seed=4).table, a.table)


def test_negatives_are_uniform_over_the_unseen_items():
    seen = [0, 3, 4, 9]
    counts = np.zeros(12)
    for seed in range(3000):
        for i in EvalNegatives([seen], 12, 2, seed=seed).table[0].tolist():
            counts[i] += 1
    assert counts[seen].sum() == 0
    expected = 3000 * 2 / 8
    assert np.all(np.abs(counts[[i for i in range(12) if i not in seen]] - expected) < 0.1 * expected)


def test_every_model_and_split_window_gets_the_same_negatives(syn):
    a = SequenceData.from_dataset(syn, max_len=50).eval_negatives(5, 0)
    b = SequenceData.from_dataset(syn, max_len=7).eval_negatives(5, 0)
    assert torch.equal(a.table, b.table)
    for u, row in enumerate(a.table.tolist()):
        assert not set(row) & set(syn.sequences[u])  # neither the valid nor the test target


def test_bad_numbers_of_negatives(syn):
    with pytest.raises(ValueError, match="must be 0"):
        protocol_name(-1)
    assert protocol_name(0) == "full" and protocol_name(100) == "sampled-100"
    # Synthetic: 64 items, the densest user has 14 of them, so 50 unseen items
    EvalNegatives(syn.sequences, syn.num_items, 49)
    with pytest.raises(ValueError, match="too many: user .* only 50 items"):
        EvalNegatives(syn.sequences, syn.num_items, 50)
    with pytest.raises(ValueError, match="outside 0..3"):
        EvalNegatives([[1, 7]], 4, 1)
    with pytest.raises(ValueError, match="too many"):
        MODELS["popularity"](syn, 0.0, _args(eval_negatives=64))


# -- (3) N = 0 is the full ranking, unchanged --------------------------------------------------
def test_all_other_items_as_negatives_equals_full_ranking():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(0, 5, (6, 9), generator=g).float()  # many ties
    targets = torch.tensor([0, 3, 8, 2, 2, 5])
    others = torch.stack([torch.tensor([i for i in range(9) if i != t]) for t in targets.tolist()])
    assert torch.equal(ranks_among_candidates(scores, targets, others), ranks_from_scores(scores, targets))


@pytest.mark.parametrize("name,kw", [("popularity", {}), ("sasrec", {"epochs": 1, "batch_size": 64})])
def test_zero_negatives_gives_the_full_ranking_numbers_exactly(syn, name, kw):
    before = MODELS[name](syn, 0.0, _args(**kw))
    zero = MODELS[name](syn, 0.0, _args(eval_negatives=0, **kw))
    assert before["protocol"] == zero["protocol"] == "full"
    for m in METRICS:
        assert zero[m] == before[m] and zero["valid"][m] == before["valid"][m]
    if name == "popularity":  # and both are the plain full-ranking evaluation
        data = SequenceData.from_dataset(syn)
        from genrec.baselines import Popularity
        assert evaluate(Popularity(data).score, data.test)["NDCG@10"] == before["NDCG@10"]


# -- (4) end to end ------------------------------------------------------------------------------
def test_sasrec_cli_with_five_negatives_writes_a_labelled_result(synthetic_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["train", "--model", "sasrec", "--dataset", "Synthetic", "--data-root", str(synthetic_root),
            "--epochs", "1", "--batch-size", "64", "--cpu", "--threads", "1", "--eval-negatives", "5",
            "--output-dir", str(out)]
    assert cli_main(argv) == 0
    res = json.loads((out / "result.json").read_text())
    assert res["protocol"] == "sampled-5" and res["users"] == 200
    assert res["HR@5"] <= res["HR@10"] == 1.0  # 6 candidates: every target is in the top 10
    assert 0 < res["NDCG@5"] <= res["NDCG@10"] <= 1
    assert res["train_config"]["eval_negatives"] == 5
    # resuming that checkpoint under the full protocol would mix the two model selections
    assert cli_main(argv[:-4] + ["--output-dir", str(out)]) == 2
    assert "different model/dataset configuration" in capsys.readouterr().err
    assert cli_main(argv[:-3] + ["-1"]) == 2
    assert "must be 0 (full ranking)" in capsys.readouterr().err


def test_results_table_keeps_sampled_rows_apart(synthetic_root, tmp_path):
    bench = load_benchmark("results")
    out = tmp_path / "out"
    common = ["--datasets", "Synthetic", "--budget-minutes", "0.05", "--epochs", "1", "--batch-size", "64",
              "--threads", "1", "--cpu", "--data-root", str(synthetic_root), "--out", str(out)]
    assert bench.main(common + ["--models", "popularity", "sasrec"]) == 0
    assert bench.main(common + ["--models", "popularity", "sasrec", "genrec", "--eval-negatives", "5", "--merge"]) == 0
    runs = json.loads((out / "results.json").read_text())["runs"]["Synthetic"]
    assert {k: r.get("protocol") for k, r in runs.items()} == {
        "popularity": "full", "sasrec": "full", "popularity (sampled-5)": "sampled-5",
        "sasrec (sampled-5)": "sampled-5", "genrec (sampled-5)": "sampled-5"}
    assert runs["genrec (sampled-5)"]["status"] == "n/a" and "beam search" in runs["genrec (sampled-5)"]["reason"]
    for name in ("popularity", "sasrec"):  # the target among 6 ranks no worse than among all 64 items
        assert runs[f"{name} (sampled-5)"]["HR@1"] >= runs[name]["HR@1"]
    md = (out / "results.md").read_text()
    assert "rows marked sampled-5: sampled" in md.splitlines()[0]
    assert "| sasrec (sampled-5) | " in md and "| sasrec | " in md and "Krichene & Rendle" in md
    pop, sas = runs["popularity (sampled-5)"]["NDCG@10"], runs["sasrec (sampled-5)"]["NDCG@10"]
    assert f"| {sas / pop:.2f}x |" in md.split("| sasrec (sampled-5) |")[1].splitlines()[0]


def test_genrec_refuses_the_sampled_protocol_before_training(syn):
    with pytest.raises(NotApplicable, match="beam search"):
        MODELS["genrec"](syn, 0.0, _args(set=["eval_negatives=100"]))
