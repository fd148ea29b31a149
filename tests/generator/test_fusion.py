"""Late fusion rules by hand, and the genrec.fusion CLI on evaluation outputs."""

import json
import math

import pytest

from genrec.evaluate import main as evaluate_main
from genrec.evaluate import read_predictions, write_predictions
from genrec.fusion import FusionConfig, fuse_lists, fuse_predictions
from genrec.fusion import main as fusion_main
from genrec.metrics import metrics_from_ranks, ranks_from_lists

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = ([1, 2, 3], [math.log(0.5), math.log(0.2), math.log(0.1)])
IMAGE = ([3, 4, 1], [math.log(0.6), math.log(0.3), math.log(0.05)])


def test_prob_rule_mixes_renormalised_distributions():
    items, scores = fuse_lists([TEXT, IMAGE], FusionConfig(rule="prob"))
    t = {1: 0.5 / 0.8, 2: 0.2 / 0.8, 3: 0.1 / 0.8}      # text list renormalised over its items
    i = {3: 0.6 / 0.95, 4: 0.3 / 0.95, 1: 0.05 / 0.95}  # image list likewise
    expect = {k: 0.5 * t.get(k, 0) + 0.5 * i.get(k, 0) for k in (1, 2, 3, 4)}  # equal-weight mixture
    assert items == [3, 1, 4, 2]
    assert [math.exp(s) for s in scores] == pytest.approx([expect[k] for k in items])
    assert sum(math.exp(s) for s in scores) == pytest.approx(1.0)  # a distribution over the fused items


def test_prob_rule_is_invariant_to_a_constant_per_list():
    """A modality whose codes have an extra token (every score lower by a constant) is not drowned out."""
    shifted = (IMAGE[0], [s - 30.0 for s in IMAGE[1]])
    a_items, a_scores = fuse_lists([TEXT, shifted], FusionConfig(rule="prob"))
    b_items, b_scores = fuse_lists([TEXT, IMAGE], FusionConfig(rule="prob"))
    assert a_items == b_items and a_scores == pytest.approx(b_scores)
    raw_items, _ = fuse_lists([TEXT, shifted], FusionConfig(rule="rawprob"))
    assert raw_items == [1, 2, 3, 4]  # the raw sum follows the text list alone


def test_rawprob_rule_sums_probabilities():
    items, scores = fuse_lists([TEXT, IMAGE], FusionConfig(rule="rawprob"))
    # equal weights 1/2: 3: (0.1 + 0.6) / 2, 1: (0.5 + 0.05) / 2, 4: 0.3 / 2 (image only), 2: 0.2 / 2 (text only)
    assert items == [3, 1, 4, 2]
    assert [math.exp(s) for s in scores] == pytest.approx([0.35, 0.275, 0.15, 0.1])


def test_prob_rules_weights_and_topk():
    items, scores = fuse_lists([TEXT, IMAGE], FusionConfig(rule="rawprob", weights=(1.0, 0.0)))
    assert items == [1, 2, 3] and scores == pytest.approx(TEXT[1])  # image weight 0: text alone
    items, scores = fuse_lists([TEXT, IMAGE], FusionConfig(rule="rawprob", weights=(2.0, 1.0), topk=2))
    # weights 2/3 and 1/3: 1: (1.0 + 0.05) / 3, 3: (0.2 + 0.6) / 3 -> 1 first
    assert items == [1, 3] and [math.exp(s) for s in scores] == pytest.approx([1.05 / 3, 0.8 / 3])


def test_prob_rules_are_stable_for_tiny_probabilities():
    a = ([7], [-2000.0])
    b = ([7, 8], [-2000.0, -2001.0])
    items, scores = fuse_lists([a, b], FusionConfig(rule="rawprob"))
    assert items == [7, 8]
    assert scores[0] == pytest.approx(-2000.0)  # the mean of two equal probabilities
    items, scores = fuse_lists([a, b], FusionConfig(rule="prob"))
    p7 = 1 / (1 + math.exp(-1))
    assert items == [7, 8] and math.exp(scores[0]) == pytest.approx((1 + p7) / 2)


def test_rrf_rule():
    items, scores = fuse_lists([TEXT, IMAGE], FusionConfig(rule="rrf", rrf_k=60))
    expect = {1: 1 / 61 + 1 / 63, 2: 1 / 62, 3: 1 / 63 + 1 / 61, 4: 1 / 62}
    # 1 and 3 tie, 2 and 4 tie: ascending item id breaks ties
    assert items == [1, 3, 2, 4]
    assert scores == pytest.approx([expect[i] for i in items])


def test_published_rule():
    items, scores = fuse_lists([TEXT, IMAGE], FusionConfig(rule="published", bonus=1.0))
    expect = {1: (math.log(0.5) + math.log(0.05)) / 2 + 1, 3: (math.log(0.1) + math.log(0.6)) / 2 + 1,
              2: math.log(0.2), 4: math.log(0.3)}
    assert items == sorted(expect, key=lambda i: (-expect[i], i))
    assert scores == pytest.approx(sorted(expect.values(), reverse=True))


def test_single_list_items_and_ties_are_deterministic():
    a = ([5, 9], [-1.0, -2.0])
    b = ([9, 5], [-1.0, -2.0])
    for rule in ("prob", "rawprob", "rrf", "published"):
        items, _ = fuse_lists([a, b], FusionConfig(rule=rule))
        assert items == [5, 9], rule  # symmetric evidence: tie broken by item id
    items, _ = fuse_lists([([], []), ([4], [-3.0])], FusionConfig())
    assert items == [4]


def test_bad_config():
    with pytest.raises(ValueError):
        fuse_lists([TEXT, IMAGE], FusionConfig(rule="max"))
    with pytest.raises(ValueError):
        fuse_lists([TEXT, IMAGE], FusionConfig(weights=(1.0,)))
    with pytest.raises(ValueError):
        fuse_lists([TEXT, IMAGE], FusionConfig(weights=(0.0, 0.0)))


def _records(lists, targets):
    return [{"user": str(u), "user_index": u, "target": t, "items": i, "scores": s}
            for u, ((i, s), t) in enumerate(zip(lists, targets))]


def test_fuse_predictions_metrics_side_by_side():
    text = _records([TEXT, ([2, 1], [-1.0, -2.0])], [3, 4])
    image = _records([IMAGE, ([4], [-0.5])], [3, 4])
    rows, fused = fuse_predictions(text, image, FusionConfig(rule="prob"), ks=(1, 5))
    assert rows["text"] == metrics_from_ranks([3, 0], (1, 5))
    assert rows["image"] == metrics_from_ranks([1, 1], (1, 5))
    assert rows["fused-prob"] == metrics_from_ranks([1, 1], (1, 5))
    assert set(rows) == {"text", "image", "fused-prob", "fused-rawprob", "fused-rrf", "fused-published"}
    assert [f["rank"] for f in fused] == [1, 1] and fused[0]["items"] == [3, 1, 4, 2]
    with pytest.raises(ValueError, match="same"):
        fuse_predictions(text, list(reversed(image)), FusionConfig())
    with pytest.raises(ValueError, match="users"):
        fuse_predictions(text, image[:1], FusionConfig())


def test_cli_on_evaluated_run(tmp_path, capsys):
    from test_evaluate import NAME, make_tiny_dataset, make_tiny_run

    root = make_tiny_dataset(tmp_path / "data")
    run = make_tiny_run(tmp_path / "run", root)
    for task in ("seqrec", "seqimage"):
        assert evaluate_main(["--ckpt", str(run), "--dataset", NAME, "--task", task, "--beams", "6", "--topk", "6",
                              "--no-progress"]) == 0
    capsys.readouterr()
    assert fusion_main(["--ckpt", str(run), "--dataset", NAME, "--rule", "rrf", "--topk", "10"]) == 0
    out = capsys.readouterr().out
    assert "seqrec (text)" in out and "seqimage (image)" in out and "fused-rrf *" in out
    record = json.loads((run / "eval" / f"{NAME}-fused-test.metrics.json").read_text())
    text = read_predictions(run / "eval" / f"{NAME}-seqrec-test.predictions.jsonl")
    image = read_predictions(run / "eval" / f"{NAME}-seqimage-test.predictions.jsonl")
    fused = read_predictions(run / "eval" / f"{NAME}-fused-test.predictions.jsonl")
    assert record["rule"] == "rrf" and record["users"] == len(fused) == len(text)
    assert record["metrics"] == record["compare"]["fused-rrf"]
    targets = [r["target"] for r in text]
    assert record["compare"]["text"] == pytest.approx(
        metrics_from_ranks(ranks_from_lists([r["items"] for r in text], targets), (1, 5, 10, 20)))
    for t, i, f in zip(text, image, fused):
        assert set(f["items"]) <= set(t["items"]) | set(i["items"])
        assert len(f["items"]) == min(10, len(set(t["items"]) | set(i["items"])))
    # mismatched users and missing files are one-line errors
    write_predictions(run / "eval" / f"{NAME}-seqimage-valid.predictions.jsonl", image[:3])
    write_predictions(run / "eval" / f"{NAME}-seqrec-valid.predictions.jsonl", text[:4])
    assert fusion_main(["--ckpt", str(run), "--dataset", NAME, "--split", "valid"]) == 2
    assert "users" in capsys.readouterr().err
    assert fusion_main(["--ckpt", str(tmp_path / "none"), "--dataset", NAME]) == 2
    assert "genrec.evaluate first" in capsys.readouterr().err
    assert fusion_main(["--ckpt", str(run), "--dataset", NAME, "--weights", "1,x"]) == 2


def test_auto_rule_follows_the_runs_objective(tmp_path):
    import json

    from genrec.fusion import rule_for_run

    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({"objective": "constrained"}))
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.json").write_text(json.dumps({"lr": 1e-3}))  # a run from before the objective existed
    assert rule_for_run(tmp_path / "c") == "rawprob"
    assert rule_for_run(tmp_path / "old") == "prob"
