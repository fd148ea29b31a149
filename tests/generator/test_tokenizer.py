import re

import pytest
import torch

from genrec.tokenizer import (
    EOS, PAD, TASK_SLOTS, TASK_TOKENS, UNK, VocabConfig, build_tokenizer, code_token_ids, load_tokenizer,
    task_token,
)
from genrec.training import check_same_tokenizer


def parse_generated(text: str) -> tuple[str, ...]:
    """Code tokens in a decoded string (``decode`` puts spaces between tokens)."""
    return tuple(re.findall(r"<[a-hA-H]_\d+>", text))


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def test_special_ids_match_the_contract(tok):
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_ids_to_tokens([0, 1, 2]) == [PAD, EOS, UNK]


@pytest.mark.parametrize("text", [
    "<a_12><b_7><c_3><d_200>",
    "<a_12> <b_7>  <c_3>\t<d_200>",
    "<A_0><B_255><C_9><D_17><E_3>",
])
def test_code_string_is_one_id_per_code_token(tok, text):
    tokens = parse_generated(text)
    ids = tok(text)["input_ids"]
    assert ids[-1] == tok.eos_token_id  # the post-processor closes every sequence
    assert ids[:-1] == tok.convert_tokens_to_ids(list(tokens))
    assert len(ids) - 1 == len(tokens)
    assert tok.unk_token_id not in ids


def test_every_vocabulary_token_is_a_single_piece(tok):
    vocab = tok.get_vocab()
    assert len(vocab) == len(tok) == 3 + TASK_SLOTS + 8 * 256 + 2 * 64
    for token, idx in vocab.items():
        if token in (PAD, EOS, UNK):
            continue
        assert tok(token, add_special_tokens=False)["input_ids"] == [idx], token


def test_dedicated_task_tokens(tok):
    ids = [tok.convert_tokens_to_ids(task_token(t)) for t in TASK_TOKENS]
    assert len(set(ids)) == len(TASK_TOKENS) and tok.unk_token_id not in ids
    # a task token followed by codes stays separate, and unknown words never become a task token
    src = task_token("seqrec") + "<a_1><b_2>"
    assert tok(src, add_special_tokens=False)["input_ids"] == [ids[0], tok.convert_tokens_to_ids("<a_1>"),
                                                                tok.convert_tokens_to_ids("<b_2>")]
    assert tok("seqrec", add_special_tokens=False)["input_ids"] == [tok.unk_token_id]


def test_save_and_load_round_trip(tok, tmp_path):
    tok.save_pretrained(str(tmp_path))
    loaded = load_tokenizer(tmp_path)
    assert loaded.get_vocab() == tok.get_vocab()
    assert (loaded.pad_token_id, loaded.eos_token_id, loaded.unk_token_id) == (0, 1, 2)
    text = task_token("fusionseqrec") + "<a_5><b_6><c_7><d_8> <A_1><B_2><C_3><D_4>"
    assert loaded(text)["input_ids"] == tok(text)["input_ids"]
    ids = tok(text)["input_ids"]
    assert parse_generated(loaded.decode(ids, skip_special_tokens=True)) == parse_generated(text)
    check_same_tokenizer(tok, loaded, "round trip")  # does not raise


def test_same_ids_when_pretraining_and_finetuning_build_it():
    # both entry points build the tokenizer from the same VocabConfig, independently of the data
    a, b = build_tokenizer(VocabConfig()), build_tokenizer(VocabConfig())
    assert a.get_vocab() == b.get_vocab()
    check_same_tokenizer(a, b, "pretraining")


def test_a_different_vocabulary_is_rejected():
    a = build_tokenizer(VocabConfig())
    b = build_tokenizer(VocabConfig(dedup_tokens=8))
    with pytest.raises(ValueError, match="differs"):
        check_same_tokenizer(a, b, "log/x/tokenizer")


def test_code_token_ids(tok):
    codes = [("<a_1>", "<b_2>", "<c_3>", "<d_4>"), ("<a_255>", "<b_0>", "<c_0>", "<d_0>")]
    ids = code_token_ids(tok, codes)
    assert ids.dtype == torch.long and ids.shape == (2, 4)
    assert ids[0].tolist() == tok.convert_tokens_to_ids(list(codes[0]))
    with pytest.raises(ValueError, match="not in the tokenizer"):
        code_token_ids(tok, [("<a_300>", "<b_0>", "<c_0>", "<d_0>")])
