"""genrec.recommend: the Python function and the CLI, history parsing and errors."""

import math

import pytest

from genrec.recommend import Recommender, main, recommend
from test_evaluate import NAME, make_tiny_dataset, make_tiny_run

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    base = tmp_path_factory.mktemp("rec")
    root = make_tiny_dataset(base / "data")
    return make_tiny_run(base / "run", root)


@pytest.fixture(scope="module")
def rec(run):
    return Recommender(run, NAME, device="cpu")


def test_recommend_ids_and_original_ids_agree(rec):
    a = rec.recommend([1, 2, 5], topk=5)
    b = rec.recommend(["B000000001", "B000000002", "B000000005"], topk=5)
    assert a == b and len(a) == 5
    assert [r.rank for r in a] == [1, 2, 3, 4, 5]
    assert len({r.item for r in a}) == 5
    assert all(r.title == f"Item number {r.item}" for r in a)
    assert all(r.original_id == (f"B{r.item:09d}" if r.item != 3 else "7") for r in a)
    assert [r.score for r in a] == sorted((r.score for r in a), reverse=True)
    assert all(r.score < 0 for r in a)


def test_recommend_matches_evaluation_decoder(rec):
    """The same source as evaluation builds for a user with this history gives the same list."""
    from genrec.evaluation import build_sources, rank_samples
    from genrec.data import Sample
    from genrec.tasks import get_task

    history = [3, 8, 13]
    src = build_sources(rec.run.tokenizer, get_task("seqrec"), rec.codes, [Sample(0, tuple(history), 0)])
    ranked, _ = rank_samples(rec.run.model, rec.run.tokenizer, rec._trie("text"), src, beams=20, topk=7)
    assert [r.item for r in rec.recommend(history, topk=7)] == ranked[0]


def test_exclude_history_fused_and_image(rec):
    history = [0, 1, 2, 3, 4, 5]
    full = [r.item for r in rec.recommend(history, topk=20)]
    kept = [r.item for r in rec.recommend(history, topk=6, exclude_history=True)]
    assert kept == [i for i in full if i not in history][:6]
    fused = rec.recommend(history, topk=8, task="fused")
    text = {r.item: r.score for r in rec.recommend(history, topk=8)}
    image = {r.item: r.score for r in rec.recommend(history, topk=8, task="seqimage")}
    for r in fused:  # each list renormalised over its items, then an equal-weight mixture (genrec.fusion "prob")
        expect = sum(0.5 * math.exp(s[r.item]) / sum(math.exp(x) for x in s.values()) for s in (text, image) if r.item in s)
        assert math.exp(r.score) == pytest.approx(expect, rel=1e-5)
    assert len(fused) == 8


@pytest.mark.parametrize("history,kind,needle", [
    ([], "auto", "empty history"),
    ([99], "auto", "item ids 0..29"),
    (["-1"], "auto", "item ids 0..29"),
    (["B999999999"], "auto", "unknown item 'B999999999'"),
    (["7"], "auto", "both item id 7 and the original id of item 3"),
    (["B000000001"], "id", "unknown item id"),
    ([4], "asin", "unknown item '4'"),
])
def test_history_errors(rec, history, kind, needle):
    with pytest.raises(ValueError, match=needle):
        rec.recommend(history, history_type=kind)


def test_ambiguous_entry_resolves_with_type(rec):
    assert rec.resolve_history(["7"], "id") == [7]
    assert rec.resolve_history(["7"], "asin") == [3]
    with pytest.raises(ValueError):
        rec.recommend([1], topk=0)
    with pytest.raises(ValueError):
        rec.recommend([1], task="audio")


def test_function_and_cli(run, capsys):
    recs = recommend(run, NAME, history=[1, "B000000002"], topk=3, device="cpu")
    assert len(recs) == 3
    assert main(["--ckpt", str(run), "--dataset", NAME, "--history", "1,B000000002", "--topk", "3", "--cpu"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("| rank | item | original id")
    assert len(out) == 5 and f"| 1 | {recs[0].item} |" in out[2] and recs[0].title in out[2]
    assert main(["--ckpt", str(run), "--dataset", NAME, "--history", "12345", "--cpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown item id '12345'" in err and "Traceback" not in err
    assert main(["--ckpt", str(run), "--dataset", NAME, "--cpu"]) == 2
    assert "empty history" in capsys.readouterr().err
    assert main(["--ckpt", str(run / "missing"), "--dataset", NAME, "--history", "1"]) == 2


def test_all_digit_asin_beyond_the_item_ids_is_an_original_id(rec, monkeypatch):
    """An ISBN-style ASIN is no valid item id (30 items here), so auto reads it as the original id."""
    monkeypatch.setitem(rec.dataset.item2id, "1938146905", 5)
    assert rec.resolve_history(["1938146905", "1"], "auto") == [5, 1]
    assert rec.resolve_history([1938146905], "auto") == [5]
    with pytest.raises(ValueError, match="unknown item id"):
        rec.resolve_history(["1938146905"], "id")
    with pytest.raises(ValueError, match="both item id 7"):  # a valid id that is also an ASIN stays ambiguous
        rec.resolve_history(["7"], "auto")
