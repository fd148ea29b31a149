"""Baselines: every model trains and evaluates, masks, negatives, resume, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from genrec.baselines import (
    IdGPT, IdGPTConfig, MmTransformer4Rec, MmTransformerConfig, NegativeSampler, NotApplicable, SASRec,
    SASRecConfig, SequenceData, causal_padding_mask,
)
from genrec.baselines.cli import main as cli_main
from genrec.baselines.data import PAD, pad_right
from genrec.baselines.registry import ENTRY_CONFIGS, MODELS, build_model, resolved_model_config
from genrec.data import DataError, load_dataset

torch.set_num_threads(1)  # the test machine is shared; one thread avoids OpenMP spin contention

from conftest import BASELINE_METRICS as METRICS  # noqa: E402
from conftest import baseline_args as _args  # noqa: E402
from conftest import free_port  # noqa: E402






# follows the registry: a model added there is trained here (the generator's entry has its own tests,
# tests/baselines/test_genrec_entry.py); the timed fixture serves the time-aware models too
@pytest.mark.parametrize("name", [n for n in MODELS if n not in ENTRY_CONFIGS])
def test_every_baseline_trains_one_epoch(timed, name):
    out = MODELS[name](timed, 0.0, _args(epochs=1, batch_size=64))
    assert out["users"] == timed.num_users
    for m in METRICS:
        assert 0.0 <= out[m] <= 1.0
    assert out["HR@1"] <= out["HR@5"] <= out["HR@10"]
    assert out["NDCG@5"] <= out["NDCG@10"] <= out["HR@10"]
    assert out["train_seconds"] >= 0
    if name == "popularity":
        assert out["params"] == 0
    else:
        assert out["params"] > 0 and out["steps"] == 4 and out["epochs"] == 1.0  # 200 rows / 64


def test_sasrec_beats_popularity_after_short_training(syn):
    pop = MODELS["popularity"](syn, 0.0, _args())
    sas = MODELS["sasrec"](syn, 0.0, _args(epochs=15, batch_size=64, lr=1e-2, eval_every_epochs=5, set=["dropout=0.2"]))
    # measured: about 3x popularity's NDCG@10 (0.52 vs 0.18) on both splits
    assert sas["valid"]["NDCG@10"] > 2 * pop["valid"]["NDCG@10"]
    assert sas["NDCG@10"] > 2 * pop["NDCG@10"]


def test_training_pairs_follow_the_split(syn):
    data = SequenceData.from_dataset(syn, max_len=5)
    seq = syn.sequences[0]
    train = seq[:-2][-6:]
    row = int((data.users == 0).nonzero()[0])
    n = len(train) - 1
    assert data.inputs[row, :n].tolist() == [i + 1 for i in train[:-1]]
    assert data.targets[row, :n].tolist() == [i + 1 for i in train[1:]]
    assert (data.inputs[row, n:] == PAD).all() and (data.targets[row, n:] == PAD).all()
    assert data.valid[0].history == tuple(seq[:-2][-5:]) and data.valid[0].target == seq[-2]
    assert data.test[0].history == tuple(seq[:-1][-5:]) and data.test[0].target == seq[-1]


# -- negatives ---------------------------------------------------------------------------------
def test_negative_sampler_never_returns_an_interacted_item():
    rng = np.random.default_rng(0)
    n_items = 30
    # dense users (27 of 30 items) force many collisions and resampling rounds
    user_items = [rng.choice(n_items, size=int(rng.integers(1, 28)), replace=False).tolist() for _ in range(50)]
    sampler = NegativeSampler(user_items, n_items)
    users = torch.arange(50).repeat(20)
    neg = sampler.sample(users, 7, torch.Generator().manual_seed(1))
    assert neg.shape == (1000, 7) and neg.min() >= 0 and neg.max() < n_items
    for u, row in zip(users.tolist(), neg.tolist()):
        assert not set(row) & set(user_items[u])
    # the vectorised membership test agrees with Python sets
    items = torch.randint(n_items, (50, 30))
    got = sampler.interacted(torch.arange(50).view(-1, 1), items)
    want = torch.tensor([[i in set(user_items[u]) for i in row] for u, row in enumerate(items.tolist())])
    assert torch.equal(got, want)


def test_negative_sampler_rejects_a_user_with_every_item():
    with pytest.raises(ValueError, match="interacted with all"):
        NegativeSampler([[0, 1, 2], [0]], 3)


# -- masks and padding -------------------------------------------------------------------------
def test_mask_has_no_fully_masked_row_and_masks_padding_keys():
    inputs = pad_right([[3, 4, 5], [7], [1, 2, 3, 4, 5]])
    mask = causal_padding_mask(inputs)
    assert not mask.all(dim=-1).any()  # every query row keeps at least one key
    assert mask[1, 0, 0].item() is False and mask[1, 4, 1:].all()  # padded keys are masked
    assert torch.equal(mask[2], torch.ones(5, 5, dtype=torch.bool).triu(1))  # no padding: causal only


def _models(syn):
    text = syn.embedding("synthetic-text")
    image = syn.embedding("synthetic-image")
    torch.manual_seed(0)
    yield SASRec(syn.num_items, 12, SASRecConfig(dropout=0.3))
    yield MmTransformer4Rec(syn.num_items, 12, MmTransformerConfig(), text, image)
    yield IdGPT(syn.num_items, 12, IdGPTConfig(), text)


def test_padding_is_ignored_by_every_model(syn):
    seqs = [[3, 9, 1], [5], [7, 2, 8, 4, 6]]
    short = pad_right(seqs)  # width 5
    long = pad_right(seqs, 12)  # 7 more padding columns
    lengths = torch.tensor([3, 1, 5])
    for model in _models(syn):
        model.eval()
        a, b = model.encode(short), model.encode(long)
        for i, n in enumerate(lengths.tolist()):
            assert torch.allclose(a[i, :n], b[i, :n], atol=1e-5), type(model).__name__
        assert torch.isfinite(b).all()
        assert torch.allclose(model.score(short, lengths), model.score(long, lengths), atol=1e-4)
        # padded targets do not enter the loss
        targets = pad_right([[9, 1, 4], [2], [2, 8, 4, 6, 1]])
        with torch.no_grad():
            l1 = model(short, targets)
            l2 = model(long, pad_right([[9, 1, 4], [2], [2, 8, 4, 6, 1]], 12))
        assert torch.allclose(l1, l2, atol=1e-5)


def test_scores_cover_every_item_and_only_items(syn):
    for model in _models(syn):
        model.eval()
        scores = model.score(pad_right([[1, 2]]), torch.tensor([2]))
        assert scores.shape == (1, syn.num_items)


def test_gpt_output_layer_is_tied_and_text_init_uses_text(syn):
    text = syn.embedding("synthetic-text")
    model = IdGPT(syn.num_items, 12, IdGPTConfig(hidden=32), text)
    assert model.item_weights().data_ptr() == model.gpt.wte.weight[1:].data_ptr()
    # items that share a topic start closer than items that do not
    topics = json.loads((syn.dir / "Synthetic.topics.json").read_text())
    topic = torch.tensor([topics[str(i)] for i in range(syn.num_items)])
    w = torch.nn.functional.normalize(model.item_weights().detach(), dim=1)
    sim = w @ w.T
    same = topic[:, None] == topic[None, :]
    off = ~torch.eye(len(topic), dtype=torch.bool)
    assert sim[same & off].mean() > sim[~same].mean() + 0.2


# -- checkpoint / resume -------------------------------------------------------------------------
def test_resume_equals_uninterrupted(syn, tmp_path):
    # BCE exercises the negative sampler; dropout exercises the restored torch RNG; the stop at
    # step 3 is in the middle of epoch 1 (4 batches per epoch).
    common = dict(batch_size=64, epochs=2, set=["dropout=0.3"])
    full = MODELS["sasrec-bce"](syn, 0.0, _args(**common, output_dir=str(tmp_path / "full")))
    part = MODELS["sasrec-bce"](syn, 0.0, _args(**common, max_steps=3, output_dir=str(tmp_path / "resumed")))
    assert part["steps"] == 3 and part["stop_reason"] == "max_steps"
    resumed = MODELS["sasrec-bce"](syn, 0.0, _args(**common, output_dir=str(tmp_path / "resumed")))
    assert resumed["steps"] == full["steps"] == 8
    a = load_file(tmp_path / "full" / "last" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    oa = load_file(tmp_path / "full" / "last" / "optimizer.safetensors")
    ob = load_file(tmp_path / "resumed" / "last" / "optimizer.safetensors")
    exp_avg = [k for k in oa if k.endswith(".exp_avg")]
    assert exp_avg and all(torch.equal(oa[k], ob[k]) for k in exp_avg)
    assert not (tmp_path / "full" / "last" / "trainer.pt").exists()  # no pickle in a checkpoint
    assert (tmp_path / "full" / "best" / "model.safetensors").is_file()


def test_early_stopping_and_a_resumed_run_stays_stopped(syn, tmp_path):
    # lr 0: the second validation cannot improve on the first, so patience 1 stops after 2 epochs
    args = _args(epochs=50, batch_size=64, lr=0.0, patience=1, output_dir=str(tmp_path))
    first = MODELS["sasrec"](syn, 0.0, args)
    assert first["stop_reason"] == "early_stopping" and first["steps"] == 8 and first["best_epoch"] == 1.0
    again = MODELS["sasrec"](syn, 0.0, args)
    assert again["stop_reason"] == "early_stopping" and again["steps"] == 8
    assert again["NDCG@10"] == first["NDCG@10"]


def test_resume_refuses_another_model_config(syn, tmp_path):
    MODELS["sasrec"](syn, 0.0, _args(epochs=1, batch_size=64, output_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="different model"):
        MODELS["sasrec"](syn, 0.0, _args(epochs=2, batch_size=64, output_dir=str(tmp_path), set=["hidden=32"]))


# -- bad input --------------------------------------------------------------------------------------
@pytest.fixture
def syn_copy(synthetic_root, tmp_path):
    shutil.copytree(synthetic_root / "Synthetic", tmp_path / "Synthetic")
    return tmp_path


def test_image_features_requested_on_a_dataset_without_them(syn_copy):
    (syn_copy / "Synthetic" / "Synthetic.emb-synthetic-image.npy").unlink()
    ds = load_dataset(syn_copy, "Synthetic")
    with pytest.raises(DataError, match=r"Synthetic\.emb-clip\.npy.*image embeddings 'clip' not found"):
        build_model(MmTransformerConfig(image_emb="clip"), ds, 10)
    # "auto" falls back to text only
    cfg = resolved_model_config("mmtransformer", _args(), ds)
    assert cfg.image_emb == "none"
    assert build_model(cfg, ds, 10).modalities == ["text"]


def test_mismatched_embedding_rows(syn_copy):
    path = syn_copy / "Synthetic" / "Synthetic.emb-synthetic-image.npy"
    np.save(path, np.zeros((7, 4), dtype=np.float32))
    ds = load_dataset(syn_copy, "Synthetic")
    with pytest.raises(DataError, match=r"emb-synthetic-image\.npy.*7 rows.*64 items"):
        build_model(MmTransformerConfig(), ds, 10)
    with pytest.raises(DataError, match="expected"):
        MmTransformer4Rec(ds.num_items, 10, MmTransformerConfig(), np.zeros((5, 3), dtype=np.float32))


def test_model_without_any_text_embedding_is_not_applicable(syn_copy):
    for p in (syn_copy / "Synthetic").glob("*.emb-*.npy"):
        p.unlink()
    ds = load_dataset(syn_copy, "Synthetic")
    with pytest.raises(NotApplicable, match="no text embeddings"):
        MODELS["mmtransformer"](ds, 0.0, _args(epochs=1))
    with pytest.raises(NotApplicable):
        MODELS["gpt-textinit"](ds, 0.0, _args(epochs=1))


def test_cli_reports_bad_input_in_one_line(synthetic_root, capsys):
    assert cli_main(["train", "--model", "nope", "--dataset", "Synthetic", "--data-root", str(synthetic_root)]) == 2
    assert "unknown model" in capsys.readouterr().err
    assert cli_main(["train", "--model", "sasrec", "--dataset", "Missing", "--data-root", str(synthetic_root)]) == 2
    assert "dataset folder not found" in capsys.readouterr().err
    assert cli_main(["train", "--model", "sasrec", "--dataset", "Synthetic", "--data-root", str(synthetic_root),
                     "--set", "nonsense=1"]) == 2
    assert "unknown setting" in capsys.readouterr().err


# -- slow: several processes, real data ---------------------------------------------------------------
@pytest.mark.slow
def test_two_cpu_processes_train_and_gather_every_user(synthetic_root, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), "-m", "genrec.baselines",
           "train", "--model", "sasrec-bce", "--dataset", "Synthetic", "--data-root", str(synthetic_root), "--cpu",
           "--epochs", "2", "--batch-size", "64", "--output-dir", str(tmp_path / "run")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["world_size"] == 2
    assert result["users"] == 200  # the ranks' shards were gathered, none lost or doubled
    assert result["steps"] == 8  # global batches: the step count does not depend on the world size
    state = json.loads((tmp_path / "run" / "last" / "trainer_state.json").read_text())
    assert state["world_size"] == 2


@pytest.mark.slow
def test_sasrec_beats_popularity_on_instruments(shared_data):
    ds = load_dataset(shared_data, "Instruments")
    pop = MODELS["popularity"](ds, 0.0, _args())
    sas = MODELS["sasrec"](ds, 3.0, _args(num_threads=1))
    assert sas["NDCG@10"] > 2 * pop["NDCG@10"]


def test_distillation_from_a_baseline_run(syn, tmp_path):
    from genrec.baselines.base import distill_kl_mean

    torch.manual_seed(0)
    h, w = torch.randn(5, 4), torch.randn(9, 4)
    assert float(distill_kl_mean(h, w, h, w, 2.0, chunk=2)) == pytest.approx(0.0, abs=1e-6)
    h_t = torch.randn(5, 4)
    ls, lt = torch.log_softmax(h @ w.T / 2.0, -1), torch.log_softmax(h_t @ w.T / 2.0, -1)
    want = float((lt.exp() * (lt - ls)).sum(-1).mean())
    assert float(distill_kl_mean(h, w, h_t, w, 2.0, chunk=2)) == pytest.approx(want, rel=1e-5)

    common = dict(epochs=2, batch_size=64)
    teacher = tmp_path / "teacher"
    MODELS["sasrec"](syn, 0.0, _args(**common, output_dir=str(teacher), set=["hidden=32"]))
    plain = MODELS["sasrec"](syn, 0.0, _args(**common))
    alpha0 = MODELS["sasrec"](syn, 0.0, _args(**common, distill_from=str(teacher), distill_alpha=0.0))
    assert alpha0["NDCG@10"] == pytest.approx(plain["NDCG@10"])  # the soft term weighs nothing
    student = MODELS["sasrec"](syn, 0.0, _args(**common, distill_from=str(teacher), distill_alpha=0.8,
                                               output_dir=str(tmp_path / "student")))
    assert 0 <= student["NDCG@10"] <= 1 and student["NDCG@10"] != pytest.approx(plain["NDCG@10"])
    state = json.loads((tmp_path / "student" / "last" / "trainer_state.json").read_text())
    assert state["run_config"]["distill"]["alpha"] == 0.8
    with pytest.raises(FileNotFoundError, match="--distill-from"):
        MODELS["sasrec"](syn, 0.0, _args(**common, distill_from=str(tmp_path / "nope")))
    with pytest.raises(ValueError, match="alpha"):
        MODELS["sasrec"](syn, 0.0, _args(**common, distill_from=str(teacher), distill_alpha=2.0))


def test_presets_come_from_the_checked_in_toml_and_bad_ones_name_the_entry(tmp_path):
    from genrec.baselines.sasrec import SASRecConfig
    from genrec.baselines.settings import PRESETS_FILE, TRAIN_DEFAULTS, load_presets

    models, train = load_presets()
    assert PRESETS_FILE.name == "presets.toml" and set(models) == set(train) == set(TRAIN_DEFAULTS)
    assert models["sasrec-bce"] == SASRecConfig(loss="bce", dropout=0.3)
    assert train["sasrec-bce"] == {"batch_size": 128, "lr": 1e-3, "eval_every_epochs": 5, "patience": 8}
    for body, message in (('[x]\nmodel = "lstm"\n', "model = 'lstm'"),
                          ('[x]\nmodel = "sasrec"\nhiden = 3\n', "unknown settings \\['hiden'\\]"),
                          ('[x]\nmodel = "gpt"\ntrain = { learning_rate = 1 }\n', "train.learning_rate"),
                          ('[x\n', "cannot read presets")):
        bad = tmp_path / "bad.toml"
        bad.write_text(body)
        with pytest.raises(ValueError, match=message) as e:
            load_presets(bad)
        assert "bad.toml" in str(e.value)


def test_item_embeddings_of_a_run_are_its_item_table_and_feed_the_quantizer(syn_copy, tmp_path):
    from genrec.baselines.embeddings import item_embeddings

    ds = load_dataset(syn_copy, "Synthetic")
    run = tmp_path / "run"
    MODELS["sasrec"](ds, 0.0, _args(epochs=1, batch_size=64, output_dir=str(run)))
    assert cli_main(["embeddings", "--run", str(run), "--dataset", "Synthetic", "--data-root", str(syn_copy),
                     "--name", "cf"]) == 0
    table = np.load(syn_copy / "Synthetic" / "Synthetic.emb-cf.npy")
    weights = load_file(str(run / "best" / "model.safetensors"))["item_emb.weight"][1:]  # row 0 is padding
    assert table.shape == (ds.num_items, weights.shape[1]) and np.allclose(table, weights.numpy())
    assert np.array_equal(item_embeddings(run, ds), table)
    from index.data import load_embedding_set  # the quantizer reads it like any other embedding

    assert load_embedding_set(syn_copy, ["Synthetic"], "cf").x.shape == table.shape
    assert cli_main(["embeddings", "--run", str(tmp_path / "nothing"), "--dataset", "Synthetic",
                     "--data-root", str(syn_copy)]) == 2
