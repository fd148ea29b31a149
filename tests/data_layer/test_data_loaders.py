"""Bad input to the dataset loaders: every case fails with a DataError naming the file and problem."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from genrec.data import DataError, load_codes, load_dataset, load_embeddings, load_inter_json
from genrec.data.dataset import load_recbole


def make_ds(root: Path, name: str = "T", inter=None, items: int | None = 4, codes=None, image_codes=None) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    inter = inter if inter is not None else {"0": [0, 1, 2], "1": [1, 2, 3, 0], "2": [3, 2, 1]}
    (d / f"{name}.inter.json").write_text(inter if isinstance(inter, str) else json.dumps(inter))
    if items is not None:
        (d / f"{name}.item.json").write_text(json.dumps({str(i): {"title": f"item {i}"} for i in range(items)}))
    if codes is not None:
        (d / f"{name}.index_lemb.json").write_text(codes if isinstance(codes, str) else json.dumps(codes))
    if image_codes is not None:
        (d / f"{name}.index_vitemb.json").write_text(json.dumps(image_codes))
    return d


def text_codes(n: int, dup: bool = False) -> dict:
    return {str(i): [f"<a_{0 if dup and i < 2 else i}>", "<b_1>", "<c_2>", "<d_3>"] for i in range(n)}


# -- malformed JSON ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["inter", "item", "codes"])
def test_malformed_json_names_file_and_position(tmp_path, which):
    bad = '{"0": [0, 1, 2],\n "1": [1, 2'
    if which == "inter":
        make_ds(tmp_path, inter=bad)
        fname = "T.inter.json"
    elif which == "item":
        d = make_ds(tmp_path)
        (d / "T.item.json").write_text(bad)
        fname = "T.item.json"
    else:
        make_ds(tmp_path, codes=bad)
        fname = "T.index_lemb.json"
    with pytest.raises(DataError, match=rf"{fname}: malformed JSON at line 2 column \d+") as e:
        load_dataset(tmp_path, "T")
    assert e.value.path.endswith(fname)


def test_wrong_json_shapes(tmp_path):
    make_ds(tmp_path, inter=[[0, 1, 2]])
    with pytest.raises(DataError, match="expected a JSON object"):
        load_dataset(tmp_path, "T")
    make_ds(tmp_path, inter={"0": [0, "x", 2]})
    with pytest.raises(DataError, match="item id 'x' is not an integer"):
        load_dataset(tmp_path, "T")
    make_ds(tmp_path, inter={"0": [0, -1, 2]})
    with pytest.raises(DataError, match="negative"):
        load_dataset(tmp_path, "T")
    make_ds(tmp_path, inter={"0": 5})
    with pytest.raises(DataError, match="expected a list"):
        load_dataset(tmp_path, "T")
    make_ds(tmp_path, inter={})
    with pytest.raises(DataError, match="empty"):
        load_dataset(tmp_path, "T")


def test_missing_dataset_and_files(tmp_path):
    with pytest.raises(DataError, match="dataset folder not found"):
        load_dataset(tmp_path, "Nope")
    (tmp_path / "Empty").mkdir()
    with pytest.raises(DataError, match="no interactions"):
        load_dataset(tmp_path, "Empty")


# -- item ids out of range or missing ----------------------------------------------------------


def test_interaction_item_out_of_range_of_item_json(tmp_path):
    make_ds(tmp_path, inter={"0": [0, 1, 7]}, items=4)
    with pytest.raises(DataError, match=r"T.inter.json: item id 7 is out of range: T.item.json lists 4 items"):
        load_dataset(tmp_path, "T")


def test_item_json_with_gaps(tmp_path):
    d = make_ds(tmp_path)
    (d / "T.item.json").write_text(json.dumps({"0": {}, "1": {}, "3": {}, "4": {}}))
    with pytest.raises(DataError, match=r"T.item.json: item ids must be 0..3 without gaps \(missing: \[2\]\)"):
        load_dataset(tmp_path, "T")


def test_code_file_ids_out_of_range(tmp_path):
    codes = text_codes(4)
    codes["9"] = ["<a_9>", "<b_1>", "<c_2>", "<d_3>"]
    make_ds(tmp_path, codes=codes)
    with pytest.raises(DataError, match=r"T.index_lemb.json: 1 item ids out of range 0..3 \(first: \[9\]\)"):
        load_dataset(tmp_path, "T")


def test_code_file_missing_items(tmp_path):
    codes = text_codes(4)
    del codes["2"]
    make_ds(tmp_path, codes=codes)
    with pytest.raises(DataError, match=r"T.index_lemb.json: 1 of 4 items have no code \(first: \[2\]\)"):
        load_dataset(tmp_path, "T")


def test_code_file_bad_tokens_and_lengths(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>", "b_2"]}))
    with pytest.raises(DataError, match="item 1: malformed code token 'b_2'"):
        load_codes(path)
    path.write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<a_1>"]}))
    with pytest.raises(DataError, match="item 1: code has 1 tokens, item 0 has 2"):
        load_codes(path)
    path.write_text(json.dumps({"0": ["<a_1>", "<b_2>"], "1": ["<A_1>", "<B_2>"]}))
    with pytest.raises(DataError, match="level letters AB differ"):
        load_codes(path)
    path.write_text(json.dumps({"x": ["<a_1>"]}))
    with pytest.raises(DataError, match="item id 'x' is not an integer"):
        load_codes(path)
    # the string form "<a_1><b_2>" is accepted
    path.write_text(json.dumps({"0": "<a_1><b_2>", "1": ["<a_3>", "<b_4>"]}))
    assert load_codes(path) == [("<a_1>", "<b_2>"), ("<a_3>", "<b_4>")]


def test_explicit_code_path_is_validated_against_items(tmp_path):
    make_ds(tmp_path)
    other = tmp_path / "img.json"
    other.write_text(json.dumps({str(i): [f"<A_{i}>", "<B_0>"] for i in range(3)}))  # 3 codes, 4 items
    with pytest.raises(DataError, match=r"img.json: 1 of 4 items have no code"):
        load_dataset(tmp_path, "T", image_codes=other)


# -- embeddings -------------------------------------------------------------------------------


def test_embedding_row_count_and_dimension(tmp_path):
    d = make_ds(tmp_path)
    np.save(d / "T.emb-m.npy", np.zeros((3, 8), dtype=np.float32))
    ds = load_dataset(tmp_path, "T")
    assert ds.available_embeddings() == ["m"]
    with pytest.raises(DataError, match=r"T.emb-m.npy: has 3 rows but the dataset has 4 items"):
        ds.embedding("m")
    np.save(d / "T.emb-m.npy", np.zeros((4, 8), dtype=np.float64))
    with pytest.raises(DataError, match="has dimension 8, expected 16"):
        load_embeddings(d / "T.emb-m.npy", 4, 16)
    emb = load_embeddings(d / "T.emb-m.npy", 4, 8)
    assert emb.dtype == np.float32 and emb.shape == (4, 8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_embedding_nan_inf_rows(tmp_path, bad):
    arr = np.ones((5, 3), dtype=np.float32)
    arr[1, 2] = bad
    arr[4, 0] = bad
    np.save(tmp_path / "e.npy", arr)
    with pytest.raises(DataError, match=r"e.npy: 2 rows contain NaN or inf \(first rows: \[1, 4\]\)"):
        load_embeddings(tmp_path / "e.npy", 5)


def test_embedding_not_an_array(tmp_path):
    with pytest.raises(DataError, match="embedding file not found"):
        load_embeddings(tmp_path / "none.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(DataError, match="not a valid .npy array"):
        load_embeddings(tmp_path / "junk.npy")
    np.save(tmp_path / "flat.npy", np.zeros(4, dtype=np.float32))
    with pytest.raises(DataError, match="expected a 2-D"):
        load_embeddings(tmp_path / "flat.npy")
    np.save(tmp_path / "int.npy", np.zeros((4, 2), dtype=np.int64))
    with pytest.raises(DataError, match="floating-point"):
        load_embeddings(tmp_path / "int.npy")
    np.save(tmp_path / "obj.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="not a valid .npy array"):
        load_embeddings(tmp_path / "obj.npy")


# -- users too short for leave-one-out ----------------------------------------------------------


def test_users_with_fewer_than_three_interactions(tmp_path):
    make_ds(tmp_path, inter={"0": [0, 1, 2], "u7": [1, 2], "u8": [3]})
    with pytest.raises(DataError, match=r"T.inter.json: 2 users have fewer than 3 interactions.*\['u7', 'u8'\]"):
        load_dataset(tmp_path, "T")
    users, seqs = load_inter_json(tmp_path / "T" / "T.inter.json", min_interactions=1)
    assert users == ["0", "u7", "u8"] and seqs[1] == [1, 2]


# -- duplicate codes ----------------------------------------------------------------------------


def test_duplicate_codes_warn_with_count(tmp_path, caplog):
    make_ds(tmp_path, codes=text_codes(4, dup=True))
    with caplog.at_level(logging.WARNING, logger="genrec.data"):
        ds = load_dataset(tmp_path, "T")
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("2 of 4 items share their code" in m for m in warned), warned
    stats = ds.stats()["text_codes"]
    assert stats["distinct"] == 3 and stats["duplicate_items"] == 1 and stats["items_sharing_a_code"] == 2


def test_unique_codes_do_not_warn(tmp_path, caplog):
    make_ds(tmp_path, codes=text_codes(4), image_codes={str(i): [f"<A_{i}>", "<B_0>"] for i in range(4)})
    with caplog.at_level(logging.WARNING, logger="genrec.data"):
        ds = load_dataset(tmp_path, "T")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert ds.codes("image")[3] == ("<A_3>", "<B_0>")
    with pytest.raises(ValueError, match="unknown modality"):
        ds.codes("audio")


def test_missing_modality_is_a_clear_error(tmp_path):
    make_ds(tmp_path)
    with pytest.raises(DataError, match="has no text codes"):
        load_dataset(tmp_path, "T").codes("text")


# -- RecBole-style .inter reconstruction --------------------------------------------------------


def write_recbole(d: Path, name: str, sequences: dict[str, list[int]], cap: int = 50) -> None:
    """Write train/valid/test files the way the MQL4GRec release does (train rows newest target first)."""
    head = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
    train, valid, test = [head], [head], [head]
    for user, s in sequences.items():
        for i in range(len(s) - 3, 0, -1):
            train.append(f"{user}\t{' '.join(map(str, s[max(0, i - cap):i]))}\t{s[i]}\n")
        n = len(s)
        valid.append(f"{user}\t{' '.join(map(str, s[max(0, n - 2 - cap):n - 2]))}\t{s[n - 2]}\n")
        test.append(f"{user}\t{' '.join(map(str, s[max(0, n - 1 - cap):n - 1]))}\t{s[n - 1]}\n")
    (d / f"{name}.train.inter").write_text("".join(train))
    (d / f"{name}.valid.inter").write_text("".join(valid))
    (d / f"{name}.test.inter").write_text("".join(test))


def test_recbole_reconstruction_with_capped_history(tmp_path):
    d = tmp_path / "R"
    d.mkdir()
    seqs = {"0": [5, 1, 2, 3, 4, 0, 6, 7], "1": [2, 3, 4], "10": [7, 6, 5, 4], "2": [1, 0, 2, 5, 3]}
    write_recbole(d, "R", seqs, cap=2)  # histories capped far below the sequence lengths
    ds = load_dataset(tmp_path, "R")  # no inter.json: the RecBole files are used
    assert dict(zip(ds.users, ds.sequences)) == seqs
    assert ds.users == ["0", "1", "2", "10"]  # numeric order, not string order


def test_recbole_inconsistent_files(tmp_path):
    d = tmp_path / "R"
    d.mkdir()
    write_recbole(d, "R", {"0": [1, 2, 3, 4]})
    test = (d / "R.test.inter").read_text().replace("1 2 3\t4", "1 9 3\t4")
    (d / "R.test.inter").write_text(test)
    with pytest.raises(DataError, match="R.test.inter: user 0: test history does not match"):
        load_recbole(d, "R")
    (d / "R.valid.inter").write_text("user\titems\n")
    with pytest.raises(DataError, match="R.valid.inter: unexpected RecBole header"):
        load_recbole(d, "R")
    write_recbole(d, "R", {"0": [1, 2, 3, 4]})
    (d / "R.train.inter").write_text((d / "R.train.inter").read_text() + "0\t1 x\t3\n")
    with pytest.raises(DataError, match="R.train.inter: line 3: item ids must be integers"):
        load_recbole(d, "R")
