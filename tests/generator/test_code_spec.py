"""One code specification: read by the data layer, the tokenizer and the trainer; task ids fixed."""

import json
import shutil

import numpy as np
import pytest

import genrec.tokenizer as tokenizer_module
from genrec.data import DataError, codes_to_json, format_code, load_codes
from genrec.data.codes import CodeSpec, load_code_spec, spec_path
from genrec.tokenizer import (
    RESERVED_TASK, TASK_SLOTS, VocabConfig, build_tokenizer, code_token_ids, load_tokenizer, tokenizer_code_spec,
)
from genrec.training import check_same_tokenizer, default_config, resolve_vocab, train

pytestmark = pytest.mark.usefixtures("one_thread")


def test_spec_letters_tokens_and_round_trip(tmp_path):
    spec = CodeSpec(levels=5, codes_per_level=4, dedup_tokens=2)
    assert spec.letters("text") == "abcde" and spec.dedup_letter("image") == "F"
    assert spec.tokens("text")[:5] == ["<a_0>", "<a_1>", "<a_2>", "<a_3>", "<b_0>"]
    assert spec.tokens("image")[-2:] == ["<F_0>", "<F_1>"] and len(spec.tokens("text")) == 5 * 4 + 2
    assert CodeSpec.from_json(spec.to_json(), "x") == spec
    for bad in ({"levels": 8}, {"levels": 2, "colour": 1}, {"levels": "4"}, [4]):
        with pytest.raises(DataError, match="spec.json"):
            CodeSpec.from_json(bad, tmp_path / "X.index.spec.json")
    assert spec_path(tmp_path / "X.index_lemb.json").name == "X.index_lemb.spec.json"


@pytest.mark.parametrize("code,message", [
    (["<a_1>", "<b_2>"], "code levels ab do not fit"),
    (["<a_1>", "<b_2>", "<c_9>"], "<c_9> is out of the code spec's range"),
    (["<a_1>", "<b_2>", "<c_3>", "<d_5>"], "<d_5> is out of the code spec's range"),
])
def test_code_file_is_checked_against_its_spec(tmp_path, code, message):
    path = tmp_path / "X.index_lemb.json"
    path.write_text(json.dumps(codes_to_json([tuple(code), tuple(code)])))
    spec_path(path).write_text(json.dumps(CodeSpec(levels=3, codes_per_level=4, dedup_tokens=2).to_json()))
    with pytest.raises(DataError, match=message) as e:
        load_codes(path, 2)
    assert "X.index_lemb.json" in str(e.value)


def test_dedup_level_needs_dedup_tokens(tmp_path):
    path = tmp_path / "X.index_lemb.json"
    path.write_text(json.dumps(codes_to_json([("<a_0>", "<b_0>"), ("<a_0>", "<b_1>")])))
    spec_path(path).write_text(json.dumps({"levels": 1, "codes_per_level": 4, "dedup_tokens": 0}))
    with pytest.raises(DataError, match="do not fit the code spec"):
        load_codes(path, 2)
    spec_path(path).write_text(json.dumps({"levels": 1, "codes_per_level": 4, "dedup_tokens": 2}))
    assert len(load_codes(path, 2)) == 2 and load_code_spec(path).levels == 1


def test_five_level_codes_fit_a_five_level_vocabulary():
    codes = [format_code([1, 2, 3, 4, 200], "text") + ("<f_3>",)]
    with pytest.raises(ValueError, match="levels than the vocabulary"):
        code_token_ids(build_tokenizer(), codes)  # read as 4 levels + dedup: <e_200> does not exist
    tok = build_tokenizer(VocabConfig(levels=5))
    assert code_token_ids(tok, codes).shape == (1, 6)
    assert tokenizer_code_spec(tok) == CodeSpec(levels=5)


def test_task_token_ids_are_pinned_and_do_not_shift(monkeypatch, tmp_path):
    tok = build_tokenizer()
    pinned = ["seqrec", "seqimage", "seqitem2image", "seqimage2item", "item2image", "image2item",
              "fusionseqrec", "fgfusion_text2image", "fgfusion_image2text"]
    assert tok.convert_tokens_to_ids([f"<task_{t}>" for t in pinned]) == list(range(3, 3 + len(pinned)))
    assert tok.convert_tokens_to_ids("<a_0>") == 3 + TASK_SLOTS
    tok.save_pretrained(str(tmp_path))
    assert tokenizer_code_spec(load_tokenizer(tmp_path)) == CodeSpec()
    # a task appended to the registry takes the next reserved slot; nothing else moves
    monkeypatch.setattr(tokenizer_module, "_REGISTRY_TASK_TOKENS",
                        tokenizer_module._REGISTRY_TASK_TOKENS + ("<task_newtask>",))
    grown = build_tokenizer()
    old, new = tok.get_vocab(), grown.get_vocab()
    assert len(old) == len(new) and new["<task_newtask>"] == old[RESERVED_TASK.format(len(pinned))]
    assert all(new[t] == i for t, i in old.items() if not t.startswith("<task_reserved_"))
    check_same_tokenizer(grown, tok, "an older pretraining run")  # the slot was reserved there
    with pytest.raises(ValueError, match="differs"):
        check_same_tokenizer(grown, build_tokenizer(VocabConfig(levels=5)), "x")


def _five_level_root(synthetic_root, tmp_path, with_spec=True):
    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "Synthetic", root / "Synthetic")
    rng = np.random.default_rng(0)
    codes = [format_code([*rng.integers(0, 6, size=4), 100 + i], "text") for i in range(64)]
    path = root / "Synthetic" / "Synthetic.index_lemb.json"
    path.write_text(json.dumps(codes_to_json(codes)))
    if with_spec:
        spec_path(path).write_text(json.dumps(CodeSpec(levels=5).to_json()))
    return root


def _cfg(root, tmp_path, **kw):
    base = dict(datasets=["Synthetic"], data_root=str(root), output_dir=str(tmp_path / "log"), preset="tiny",
                tasks=["seqrec"], batch_size=128, micro_batch_size=128, num_threads=1, progress=False,
                cache_dir="none", select_metric="valid_loss", valid_users=20, eval_users=10, eval_beams=3, epochs=1,
                run="r")
    return default_config("finetune", **{**base, **kw})


def test_a_five_level_quantizer_trains_the_generator(synthetic_root, tmp_path):
    root = _five_level_root(synthetic_root, tmp_path)
    assert resolve_vocab(_cfg(root, tmp_path)).levels == 5
    summary = train(_cfg(root, tmp_path))
    assert summary["step"] > 0
    tok = load_tokenizer(tmp_path / "log" / "r" / "tokenizer")
    assert tokenizer_code_spec(tok).levels == 5 and "<f_0>" in tok.get_vocab()


def test_codes_beyond_the_default_grammar_fail_before_training(synthetic_root, tmp_path):
    root = _five_level_root(synthetic_root, tmp_path, with_spec=False)
    with pytest.raises(ValueError, match="spec.json beside it"):
        train(_cfg(root, tmp_path))
    assert not (tmp_path / "log" / "r" / "checkpoints").exists()


def test_datasets_of_different_code_specs_are_refused(synthetic_root, tmp_path):
    root = _five_level_root(synthetic_root, tmp_path)
    shutil.copytree(synthetic_root / "Synthetic", root / "Other")
    for f in (root / "Other").iterdir():
        f.rename(f.with_name(f.name.replace("Synthetic", "Other")))
    codes = [format_code([i % 8, i // 8, 1, 2], "text") for i in range(64)]
    path = root / "Other" / "Other.index_lemb.json"
    path.write_text(json.dumps(codes_to_json(codes)))
    spec_path(path).write_text(json.dumps(CodeSpec(levels=4, codes_per_level=512).to_json()))
    with pytest.raises(DataError, match="share one code vocabulary"):
        resolve_vocab(_cfg(root, tmp_path, datasets=["Synthetic", "Other"]))
    (root / "Synthetic" / "Synthetic.index_lemb.spec.json").unlink()
    (root / "Synthetic" / "Synthetic.index_lemb.json").write_text(json.dumps(codes_to_json(codes)))
    # one spec: the vocabulary widens to it
    assert resolve_vocab(_cfg(root, tmp_path, datasets=["Synthetic", "Other"])).codes_per_level == 512
