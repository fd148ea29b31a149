"""Issue 12 (2-4): run folders are locked and never silently replaced; evaluation flags are validated
and results named by what produced them; mismatched runs, code files and id maps are refused."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from genrec.data import format_code, codes_to_json, load_dataset
from genrec.data.errors import DataError
from genrec.evaluate import main as evaluate_main
from genrec.finetune import main as finetune_main
from genrec.recommend import Recommender
from genrec.run_checks import code_fingerprints
from genrec.utils.runlock import RunLock, RunLockedError
from index.train import main as index_train_main
from test_evaluate import NAME, make_tiny_dataset, make_tiny_run
from test_training import _args, _cli_base, _write_codes

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[2]


# -- defect 2: run-folder lock -------------------------------------------------------------------
def test_lock_refuses_a_second_holder_until_released(tmp_path):
    lock = RunLock(tmp_path / "run")
    with pytest.raises(RunLockedError, match=rf"in use by another run \(pid {os.getpid()}"):
        RunLock(tmp_path / "run")
    lock.release()
    with RunLock(tmp_path / "run"):
        pass


def test_lock_of_a_killed_process_is_not_held(tmp_path):
    run = tmp_path / "run"
    code = ("import sys, time; from genrec.utils.runlock import RunLock; "
            f"l = RunLock({str(run)!r}); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=f"pid {proc.pid}"):
            RunLock(run)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
    # the dead process's pid is still in the file, but its flock went with it
    assert (run / ".lock").read_text().strip() == str(proc.pid)
    RunLock(run).release()


@pytest.fixture(scope="module")
def train_root(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("safety_data")
    shutil.copytree(synthetic_root / "Synthetic", out / "Synthetic")
    _write_codes(out / "Synthetic", "Synthetic", 64)
    return out


def _train_argv(root, tmp_path, *extra):
    base = {**_cli_base(root, tmp_path), "datasets": ["Synthetic"], "tasks": ["seqrec"], "run": "r"}
    return _args(base) + ["--max-steps", "2", "--eval-every-steps", "2", *extra]


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    return err.splitlines()[-1]


def test_second_training_in_a_locked_folder_fails(train_root, tmp_path, capsys):
    held = RunLock(tmp_path / "log" / "r")  # stands for a live run of another process
    assert finetune_main(_train_argv(train_root, tmp_path)) == 2
    assert "in use by another run" in _err(capsys)
    assert not (tmp_path / "log" / "r" / "config.json").exists()  # nothing of the live run was touched
    held.release()


def test_finished_run_is_not_replaced_without_overwrite(train_root, tmp_path, capsys):
    run = tmp_path / "log" / "r"
    assert finetune_main(_train_argv(train_root, tmp_path)) == 0
    capsys.readouterr()
    # the run recorded the code files it trained on
    config = json.loads((run / "config.json").read_text())
    codes = train_root / "Synthetic" / "Synthetic.index_lemb.json"
    assert config["code_files"]["Synthetic"]["text"]["file"] == str(codes)
    assert config["code_files"] == code_fingerprints(train_root, ["Synthetic"])
    # the lock went with the run: the refusal below is about the results, not the lock
    assert finetune_main(_train_argv(train_root, tmp_path)) == 2
    assert "already holds a run (best/, last/)" in _err(capsys)
    from genrec.utils.checkpoints import remove_all

    remove_all(run)  # the checkpoints go, best/ stays
    best = (run / "best" / "model.safetensors").stat().st_mtime_ns
    assert finetune_main(_train_argv(train_root, tmp_path)) == 2
    assert "already holds a run (best/)" in _err(capsys)
    assert (run / "best" / "model.safetensors").stat().st_mtime_ns == best
    assert finetune_main(_train_argv(train_root, tmp_path, "--resume", "--overwrite")) == 2
    assert "not both" in _err(capsys)
    (run / "eval").mkdir()
    (run / "eval" / "old.metrics.json").write_text("{}")
    assert finetune_main(_train_argv(train_root, tmp_path, "--overwrite")) == 0
    assert (run / "last").is_dir() and not (run / "eval").exists()


def test_index_train_into_an_existing_run_folder_is_refused(synthetic_root, tmp_path, capsys):
    run = tmp_path / "run"
    argv = ["--data-root", str(synthetic_root), "--dataset", "Synthetic", "--embedding", "synthetic-text",
            "--modality", "text", "--kind", "rqkmeans", "--codebook-size", "4", "--epochs", "1", "--threads", "1",
            "--no-progress", "--run-dir", str(run)]
    assert index_train_main(argv) == 0
    best = (run / "best" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert index_train_main(argv + ["--seed", "7"]) == 2
    assert "already holds a run (best/, last/)" in capsys.readouterr().err
    assert (run / "best" / "model.safetensors").read_bytes() == best
    held = RunLock(run)
    assert index_train_main(argv + ["--overwrite"]) == 2
    assert "in use by another run" in capsys.readouterr().err
    held.release()
    assert index_train_main(argv + ["--seed", "7", "--overwrite"]) == 0
    assert (run / "best" / "model.safetensors").read_bytes() != best


# -- defect 3: evaluation flags and result files -----------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety_eval")
    root = make_tiny_dataset(base / "data")
    return root, make_tiny_run(base / "run", root)


@pytest.mark.parametrize("flag,value,needle", [
    ("--batch-size", "-5", "--batch-size must be >= 0"),
    ("--max-users", "-3", "--max-users must be >= 0"),
    ("--beams", "0", "--beams must be >= 1"),
    ("--topk", "-1", "--topk must be >= 1"),
    ("--threads", "-2", "--num-threads must be >= 0"),
    ("--seed", "-1", "--seed must be >= 0"),
])
def test_evaluate_rejects_out_of_range_numbers(tiny, tmp_path, capsys, flag, value, needle):
    _, run = tiny
    assert evaluate_main(["--ckpt", str(run), "--dataset", NAME, "--no-progress", "--out-dir", str(tmp_path),
                          flag, value]) == 2
    assert needle in _err(capsys)
    assert not list(tmp_path.iterdir())


def test_evaluate_ends_the_process_group_it_ran_in(tiny, tmp_path):
    """Left to interpreter exit, gloo's threads sometimes abort the process (SIGABRT after every
    file was written; 1 launch in 25 here); the CLI destroys the group itself, also after an error."""
    import torch.distributed as dist

    _, run = tiny
    base = ["--ckpt", str(run), "--dataset", NAME, "--no-progress", "--out-dir", str(tmp_path)]
    try:
        for argv, code in ((["--topk", "4", "--beams", "4"], 0), (["--beams", "0"], 2)):
            dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}{code}", rank=0, world_size=1)
            assert evaluate_main(base + argv) == code
            assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_results_of_other_settings_are_not_mixed(tiny, tmp_path, capsys):
    _, run = tiny
    base = ["--ckpt", str(run), "--dataset", NAME, "--no-progress", "--out-dir", str(tmp_path), "--topk", "4"]
    assert evaluate_main(base + ["--beams", "4"]) == 0
    full = tmp_path / f"{NAME}-seqrec-test.metrics.json"
    first = full.read_text()
    # a subset and another checkpoint get their own files
    assert evaluate_main(base + ["--beams", "4", "--max-users", "5"]) == 0
    assert json.loads((tmp_path / f"{NAME}-seqrec-test-5users-seed0.metrics.json").read_text())["users"] == 5
    assert full.read_text() == first
    # other beams into the same file: refused, then replaced on request
    capsys.readouterr()
    assert evaluate_main(base + ["--beams", "6"]) == 2
    assert "other settings (beams 4 -> 6)" in _err(capsys) and full.read_text() == first
    assert evaluate_main(base + ["--beams", "6", "--overwrite"]) == 0
    assert json.loads(full.read_text())["beams"] == 6


def test_fusion_reads_the_subset_files_evaluate_wrote(tiny, tmp_path):
    from genrec.fusion import main as fusion_main

    root, run = tiny
    run2 = tmp_path / "run"
    shutil.copytree(run, run2)
    shutil.rmtree(run2 / "eval", ignore_errors=True)
    for task in ("seqrec", "seqimage"):
        assert evaluate_main(["--ckpt", str(run2), "--dataset", NAME, "--no-progress", "--task", task,
                              "--beams", "4", "--topk", "4", "--max-users", "6"]) == 0
    assert fusion_main(["--ckpt", str(run2), "--dataset", NAME, "--max-users", "6"]) == 0
    assert (run2 / "eval" / f"{NAME}-fused-test-6users-seed0.metrics.json").is_file()


@pytest.mark.parametrize("argv,needle", [
    (["text", "--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    (["text", "--max-length", "-1"], "argument --max-length: must be >= 1"),
    (["text", "--threads", "-1"], "argument --num-threads/--threads: must be >= 0"),
])
def test_embed_rejects_out_of_range_numbers(tmp_path, capsys, argv, needle):
    from index.embed import main as embed_main

    with pytest.raises(SystemExit) as e:
        embed_main([argv[0], "--data-root", str(tmp_path), "--dataset", "X", *argv[1:]])
    assert e.value.code == 2 and needle in capsys.readouterr().err


# -- defect 4: mismatches --------------------------------------------------------------------------
def _text_only_run(tiny, tmp_path, **config):
    root, run = tiny
    out = tmp_path / "textonly"
    shutil.copytree(run, out)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(tasks=["seqrec"], code_files=code_fingerprints(root, [NAME]), **config)
    cfg["code_files"][NAME].pop("image")
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_untrained_task_or_modality_is_refused(tiny, tmp_path, capsys):
    run = _text_only_run(tiny, tmp_path)
    assert evaluate_main(["--ckpt", str(run), "--dataset", NAME, "--no-progress", "--task", "seqimage"]) == 2
    assert "never trained task seqimage (it trained seqrec)" in _err(capsys)
    rec = Recommender(run, NAME, device="cpu", beams=4)
    assert rec.recommend([1, 2, 3], topk=3)  # what it trained works
    with pytest.raises(ValueError, match="never trained task seqimage"):
        rec.recommend([1, 2, 3], topk=3, task="fused")
    # the task list says seqimage, but the run had no image codes for this dataset
    cfg = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**cfg, "tasks": ["seqrec", "seqimage"]}))
    assert evaluate_main(["--ckpt", str(run), "--dataset", NAME, "--no-progress", "--task", "seqimage"]) == 2
    assert f"trained no image codes for dataset {NAME}" in _err(capsys)


def test_other_code_files_than_the_training_ones_are_refused(tiny, tmp_path, capsys, caplog):
    root, run = tiny
    data = tmp_path / "data"
    shutil.copytree(root, data)
    run = _text_only_run(tiny, tmp_path)
    path = data / NAME / f"{NAME}.index_lemb.json"
    codes = json.loads(path.read_text())
    keys = list(codes)
    codes = dict(zip(keys, [codes[k] for k in keys[1:] + keys[:1]]))  # shuffled: every item another's code
    path.write_text(json.dumps(codes))
    assert evaluate_main(["--ckpt", str(run), "--dataset", NAME, "--no-progress", "--data-root", str(data)]) == 2
    err = _err(capsys)
    assert str(path) in err and "not the ones run" in err and str(root / NAME / f"{NAME}.index_lemb.json") in err
    # a run from before fingerprints: a warning, and evaluation goes on
    cfg = json.loads((run / "config.json").read_text())
    del cfg["code_files"]
    (run / "config.json").write_text(json.dumps(cfg))
    assert evaluate_main(["--ckpt", str(run), "--dataset", NAME, "--no-progress", "--data-root", str(data),
                          "--beams", "3", "--topk", "3", "--max-users", "3"]) == 0
    assert "records no code-file fingerprints" in caplog.text


def _dataset(tmp_path, tiny) -> Path:
    root, _ = tiny
    data = tmp_path / "data"
    shutil.copytree(root, data)
    return data / NAME


def test_code_letters_of_the_wrong_modality_or_order_are_refused(tiny, tmp_path):
    d = _dataset(tmp_path, tiny)
    path = d / f"{NAME}.index_lemb.json"
    path.write_text(json.dumps(codes_to_json([format_code([i % 3, i, 1, 2], "image") for i in range(30)])))
    with pytest.raises(DataError, match="text codes are written with image level letters") as e:
        load_dataset(d.parent, NAME)
    assert str(path) in str(e.value)
    path.write_text(json.dumps({str(i): [f"<b_{i}>", f"<a_{i % 3}>", "<c_1>", "<d_2>"] for i in range(30)}))
    with pytest.raises(DataError, match=r"level letters bacd are not the levels in order \(expected abcd\)"):
        load_dataset(d.parent, NAME)


def test_user_listed_twice_in_inter_json_is_refused(tiny, tmp_path):
    d = _dataset(tmp_path, tiny)
    path = d / f"{NAME}.inter.json"
    text = path.read_text()
    path.write_text(text[:-1] + ', "0": [1, 2, 3, 4]}')
    with pytest.raises(DataError, match="key '0' appears twice") as e:
        load_dataset(d.parent, NAME)
    assert str(path) in str(e.value)


def test_two_ids_mapped_to_one_index_are_refused(tiny, tmp_path):
    d = _dataset(tmp_path, tiny)
    path = d / f"{NAME}.item2id"
    path.write_text(path.read_text() + "BDUPLICATE\t5\n")
    with pytest.raises(DataError, match=r"ids 'B000000005' and 'BDUPLICATE' are both mapped to index 5") as e:
        load_dataset(d.parent, NAME)
    assert str(path) in str(e.value)
    path.write_text("B1\t0\nB1\t1\n")
    with pytest.raises(DataError, match="'B1' is listed twice"):
        load_dataset(d.parent, NAME)
