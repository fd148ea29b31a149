"""Evaluation: evaluate_samples, the genrec.evaluate CLI on a run folder, shared codes, two processes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import free_port

from genrec.data import codes_to_json, format_code, load_dataset
from genrec.decoding import CodeTrie, generate_with_trie, pad_sources
from genrec.evaluate import main as evaluate_main
from genrec.evaluate import read_predictions
from genrec.evaluation import build_sources, evaluate_samples, leaves_to_items, load_run
from genrec.metrics import metrics_from_ranks, ranks_from_lists
from genrec.model import build_model
from genrec.tasks import dataset_codes, get_task
from genrec.tokenizer import build_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]
NAME = "Tiny"
SHARED = (4, 11)  # items 4 and 11 share their text code


def make_tiny_dataset(root: Path, name: str = NAME, num_users: int = 37, num_items: int = 30, seed: int = 0) -> Path:
    """Interactions, titles, original ids, text codes (one shared pair) and unique image codes."""
    rng = np.random.default_rng(seed)
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    seqs = {str(u): rng.integers(0, num_items, size=int(rng.integers(3, 9))).tolist() for u in range(num_users)}
    seqs["0"][-1] = SHARED[1]  # a test target whose code is shared
    (d / f"{name}.inter.json").write_text(json.dumps(seqs))
    (d / f"{name}.item.json").write_text(json.dumps(
        {str(i): {"title": f"Item number {i}", "description": ""} for i in range(num_items)}))
    # original ids: ASIN-like strings, plus one all-digit id that is also a valid item id ("7" -> item 3)
    orig = {f"B{i:09d}": i for i in range(num_items)}
    orig.pop(f"B{3:09d}")
    orig["7"] = 3
    (d / f"{name}.item2id").write_text("".join(f"{k}\t{v}\n" for k, v in orig.items()))
    text = [format_code([i % 3, (i // 3) % 4, i % 5, i], "text") for i in range(num_items)]
    text[SHARED[1]] = text[SHARED[0]]
    (d / f"{name}.index_lemb.json").write_text(json.dumps(codes_to_json(text)))
    image = [format_code([i % 2, (i * 7) % 5, i, 0], "image") for i in range(num_items)]
    (d / f"{name}.index_vitemb.json").write_text(json.dumps(codes_to_json(image)))
    return root


def make_tiny_run(run_dir: Path, data_root: Path, *, dedup: bool = True, seed: int = 0, datasets=(NAME,)) -> Path:
    """A run folder as the training loop writes it: config.json, tokenizer/, best/ (random tiny model)."""
    tok = build_tokenizer()
    torch.manual_seed(seed)
    model = build_model("tiny", tok, initializer_factor=3.0)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = {"datasets": list(datasets), "data_root": str(data_root), "tasks": ["seqrec", "seqimage"],
              "preset": "tiny", "max_history": 20, "dedup_codes": dedup, "text_codes": None,
              "image_codes": None, "seed": seed}
    (run_dir / "config.json").write_text(json.dumps(config, indent=2))
    tok.save_pretrained(str(run_dir / "tokenizer"))
    model.save_pretrained(str(run_dir / "best"))
    return run_dir


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("evaldata"))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_root):
    return make_tiny_run(tmp_path_factory.mktemp("runs") / "tiny", data_root)


def _reference(run, codes, sources, beams, topk):
    """generate + trie callback (one padded batch), mapped to items the same way."""
    trie = CodeTrie.from_codes(run.tokenizer, codes)
    ids, mask = pad_sources(sources)
    res = generate_with_trie(run.model, ids, mask, trie, beams)
    return leaves_to_items(trie, res.leaves, res.scores, topk)


def test_evaluate_samples_matches_generate(run_dir, data_root):
    run = load_run(run_dir)
    ds = run.load_dataset(NAME)
    codes = run.codes(ds)
    samples = ds.split(20).test
    task = get_task("seqrec")
    sources = build_sources(run.tokenizer, task, codes, samples)
    targets = [s.target for s in samples]
    metrics, ranked, scores = evaluate_samples(run.model, run.tokenizer, codes["text"], sources, targets,
                                               beams=8, topk=8, batch_size=5, ks=(1, 5, 10))
    n = 12  # the reference is slow: compare the first users
    ref_items, ref_scores = _reference(run, codes["text"], sources[:n], 8, 8)
    assert ranked[:n] == ref_items
    assert np.allclose([s for r in scores[:n] for s in r], [s for r in ref_scores for s in r], atol=2e-4, rtol=2e-5)
    assert metrics == metrics_from_ranks(ranks_from_lists(ranked, targets), (1, 5, 10))
    assert metrics["users"] == len(samples) == ds.num_users
    assert all(len(r) == 8 and len(set(r)) == 8 for r in ranked)
    for r, s in zip(ranked, scores):
        assert s == sorted(s, reverse=True)
    # the source is the task token then the history's codes (5 tokens each after dedup) then </s>
    assert sources[0][0] == run.tokenizer.convert_tokens_to_ids("<task_seqrec>")
    assert len(sources[0]) == 1 + 5 * len(samples[0].history) + 1


def test_evaluate_samples_rejects_bad_input(run_dir):
    run = load_run(run_dir)
    codes = run.codes(run.load_dataset(NAME))["text"]
    with pytest.raises(ValueError):
        evaluate_samples(run.model, run.tokenizer, codes, [[5, 1]], [1, 2])
    with pytest.raises(ValueError):
        evaluate_samples(run.model, run.tokenizer, codes, [], [])


def test_cli_writes_metrics_and_predictions(run_dir, capsys):
    assert evaluate_main(["--ckpt", str(run_dir), "--dataset", NAME, "--task", "seqimage", "--beams", "6",
                          "--topk", "6", "--no-progress", "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "| Tiny seqimage (test, 37 users) |" in out
    record = json.loads((run_dir / "eval" / f"{NAME}-seqimage-test.metrics.json").read_text())
    preds = read_predictions(run_dir / "eval" / f"{NAME}-seqimage-test.predictions.jsonl")
    assert record["users"] == len(preds) == 37 and record["processes"] == 1
    assert record["target_modality"] == "image" and record["code_levels"] == 4 and record["unique_codes"]
    assert sorted(p["user_index"] for p in preds) == list(range(37))
    ranks = ranks_from_lists([p["items"] for p in preds], [p["target"] for p in preds])
    assert [p["rank"] for p in preds] == ranks.tolist()
    assert record["metrics"] == pytest.approx(metrics_from_ranks(ranks, (1, 5, 10, 20)))
    assert not list((run_dir / "eval").glob("*.tmp"))  # atomic writes leave nothing behind


def test_popularity_penalty_reorders_by_hand():
    from genrec.evaluation import penalise_popularity

    counts = np.array([0, 3, 7, 0])  # log1p: 0, log 4, log 8, 0
    items, scores = penalise_popularity([[2, 1, 3]], [[-1.0, -1.5, -2.0]], counts, 0.5)
    # -1 - .5 log 8 = -2.040, -1.5 - .5 log 4 = -2.193, -2 - 0 = -2.0
    assert items == [[3, 2, 1]]
    assert scores[0] == pytest.approx([-2.0, -1.0 - 0.5 * np.log(8), -1.5 - 0.5 * np.log(4)])
    assert penalise_popularity([[2, 1, 3]], [[-1.0, -1.5, -2.0]], counts, 0.0)[0] == [[2, 1, 3]]
    with pytest.raises(ValueError, match="finite"):
        penalise_popularity([[1]], [[0.0]], counts, float("nan"))


def test_cli_popularity_penalty_is_its_own_result(run_dir, data_root, tmp_path, capsys):
    from genrec.evaluate import training_counts

    base = ["--ckpt", str(run_dir), "--dataset", NAME, "--beams", "8", "--topk", "8", "--no-progress",
            "--out-dir", str(tmp_path)]
    assert evaluate_main(base) == 0
    assert evaluate_main([*base, "--popularity-penalty", "2"]) == 0
    plain = read_predictions(tmp_path / f"{NAME}-seqrec-test.predictions.jsonl")
    pen = read_predictions(tmp_path / f"{NAME}-seqrec-test-pop2.predictions.jsonl")
    record = json.loads((tmp_path / f"{NAME}-seqrec-test-pop2.metrics.json").read_text())
    counts = training_counts(load_dataset(data_root, NAME))
    for a, b in zip(plain, pen):
        assert sorted(a["items"]) == sorted(b["items"])  # the same decoded items, reordered
        want = sorted(a["items"], key=lambda i: -(a["scores"][a["items"].index(i)] - 2 * np.log1p(counts[i])))
        assert b["items"] == want
    assert any(a["items"] != b["items"] for a, b in zip(plain, pen))  # the penalty did reorder
    ranks = ranks_from_lists([p["items"] for p in pen], [p["target"] for p in pen])
    assert record["popularity_penalty"] == 2
    assert record["metrics"] == pytest.approx(metrics_from_ranks(ranks, (1, 5, 10, 20)))
    capsys.readouterr()
    assert evaluate_main([*base, "--popularity-penalty", "nan"]) == 2
    assert "--popularity-penalty must be a finite number" in capsys.readouterr().err


def test_cli_subset_and_valid_split(run_dir, tmp_path):
    assert evaluate_main(["--ckpt", str(run_dir), "--dataset", NAME, "--split", "valid", "--max-users", "9",
                          "--beams", "4", "--topk", "4", "--no-progress", "--out-dir", str(tmp_path)]) == 0
    # a subset is named by its size and seed: it never replaces the full result
    record = json.loads((tmp_path / f"{NAME}-seqrec-valid-9users-seed0.metrics.json").read_text())
    assert record["users"] == 9 and not record["all_users"]


@pytest.mark.parametrize("argv,needle", [
    (["--task", "item2image"], "sequence task"),
    (["--task", "nope"], "unknown task"),
    (["--task", "fusionseqrec", "--direction", "2"], "direction"),
    (["--dataset", "Missing"], "dataset folder not found"),
    (["--checkpoint", "last"], "no saved model"),
])
def test_cli_errors_are_one_line(run_dir, capsys, argv, needle):
    assert evaluate_main(["--ckpt", str(run_dir), "--no-progress", "--dataset", NAME, *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_cli_missing_run(tmp_path, capsys):
    assert evaluate_main(["--ckpt", str(tmp_path / "nope")]) == 2
    assert "run folder not found" in capsys.readouterr().err


def test_shared_codes_without_dedup(tmp_path, data_root):
    """dedup_codes=false: a code names several items; each item is its own entry with the beam's
    score, in ascending id; the ground truth is the true item."""
    run_dir = make_tiny_run(tmp_path / "nodedup", data_root, dedup=False, seed=1)
    run = load_run(run_dir)
    ds = run.load_dataset(NAME)
    codes = run.codes(ds)
    assert codes["text"][SHARED[0]] == codes["text"][SHARED[1]] and len(codes["text"][0]) == 4
    samples = ds.split(20).test
    sources = build_sources(run.tokenizer, get_task("seqrec"), codes, samples)
    targets = [s.target for s in samples]
    assert targets[0] == SHARED[1]
    _, ranked, scores = evaluate_samples(run.model, run.tokenizer, codes["text"], sources, targets,
                                         beams=30, topk=40, batch_size=16)
    for items, sc in zip(ranked, scores):
        assert len(items) == 30 == len(set(items))  # 29 distinct codes, one of them expands to 2 items
        k = items.index(SHARED[0])
        assert items[k + 1] == SHARED[1] and sc[k] == sc[k + 1]
    rank = ranks_from_lists(ranked, targets)[0]
    assert ranked[0][rank - 1] == SHARED[1]
    # topk cuts inside an expanded code too
    _, short, _ = evaluate_samples(run.model, run.tokenizer, codes["text"], sources[:3], targets[:3],
                                   beams=5, topk=5, batch_size=2)
    assert all(len(r) == 5 for r in short)


def test_two_processes_count_each_user_once(run_dir, tmp_path):
    """accelerate launch with two real CPU processes (the working form from stack-notes): 37 users
    in batches of 4 split unevenly; metrics and predictions equal the single-process run."""
    single = tmp_path / "single"
    assert evaluate_main(["--ckpt", str(run_dir), "--dataset", NAME, "--beams", "5", "--topk", "5",
                          "--batch-size", "4", "--no-progress", "--out-dir", str(single)]) == 0
    multi = tmp_path / "multi"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "genrec.evaluate", "--ckpt", str(run_dir),
           "--dataset", NAME, "--beams", "5", "--topk", "5", "--batch-size", "4", "--no-progress", "--cpu",
           "--out-dir", str(multi)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a = json.loads((single / f"{NAME}-seqrec-test.metrics.json").read_text())
    b = json.loads((multi / f"{NAME}-seqrec-test.metrics.json").read_text())
    assert b["processes"] == 2 and a["processes"] == 1
    assert b["users"] == a["users"] == 37
    assert b["metrics"] == pytest.approx(a["metrics"])
    pa = read_predictions(single / f"{NAME}-seqrec-test.predictions.jsonl")
    pb = read_predictions(multi / f"{NAME}-seqrec-test.predictions.jsonl")
    assert [p["user_index"] for p in pb] == list(range(37))
    assert [p["items"] for p in pa] == [p["items"] for p in pb]


def test_dataset_codes_match_training_policy(data_root):
    ds = load_dataset(data_root, NAME)
    assert len(dataset_codes(ds, dedup=True)["text"][0]) == 5
    assert len(dataset_codes(ds, dedup=False)["text"][0]) == 4


@pytest.mark.parametrize("task_name", ["seqrec", "seqimage", "fusionseqrec", "item2image", "image2item"])
def test_one_source_encoder_equals_the_task_definition(data_root, task_name):
    """Evaluation, fusion and recommend encode with training's vectorised encoder; it must spell
    exactly the task's tokens (each direction), ``</s>`` closing."""
    from genrec.data import Sample

    tok = build_tokenizer()
    ds = load_dataset(data_root, NAME)
    codes = dataset_codes(ds, dedup=True)
    task = get_task(task_name)
    samples = ds.split(20).test if task.kind == "seq" else [Sample(-1, (i,), i) for i in range(ds.num_items)]
    for direction in range(len(task.directions)):
        got = build_sources(tok, task, codes, samples, direction)
        want = [list(tok.convert_tokens_to_ids(task.variants(codes, s.history, s.target)[direction][0]))
                + [tok.eos_token_id] for s in samples]
        assert got == want
