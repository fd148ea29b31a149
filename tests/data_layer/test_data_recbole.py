"""RecBole atomic files -> our dataset format (``prepare --recbole``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrec.data import DataError, load_dataset
from genrec.data.__main__ import main as data_main
from genrec.data.dataset import load_id_map
from genrec.data.recbole import prepare_recbole, read_atomic

INTER_HEAD = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
# u1 ties at t=5 (file order: c before a); u4 has 2 events and item z one: both removed by the 3-core
ROWS = [("u1", "c", 5), ("u1", "a", 5), ("u1", "b", 1), ("u1", "z", 9),
        ("u2", "a", 2), ("u2", "b", 3), ("u2", "c", 4),
        ("u3", "b", 7), ("u3", "c", 6), ("u3", "a", 8), ("u3", "a", 9),  # repeated a: the first is kept
        ("u4", "a", 1), ("u4", "b", 2)]
ITEM = ("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tscore:float\n"
        "a\tThe A Movie\t1995\tComedy Drama\t0.5\n"
        "b\tB\t1990\tDrama\t0.1\n"
        "c\tSee\t\tHorror\t0.2\n")


def write_src(d: Path, rows=ROWS, item: str | None = ITEM, head: str = INTER_HEAD) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "R.inter").write_text(head + "".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in rows))
    if item is not None:
        (d / "R.item").write_text(item)
    return d


def test_prepare_recbole_orders_filters_and_maps(tmp_path):
    src = write_src(tmp_path / "src")
    stats = prepare_recbole(src, "R", tmp_path / "out", min_count=3)
    assert (stats["users"], stats["items"], stats["interactions"], stats["duplicate_events"]) == (3, 3, 9, 1)
    ds = load_dataset(tmp_path / "out", "R")
    items = {v: k for k, v in ds.item2id.items()}
    users = {v: k for k, v in load_id_map(tmp_path / "out" / "R" / "R.user2id").items()}
    got = {users[u]: [(items[i], t) for i, t in zip(s, ts)] for u, (s, ts) in enumerate(zip(ds.sequences, ds.times))}
    assert got == {"u1": [("b", 1), ("c", 5), ("a", 5)],  # tie kept in file order
                   "u2": [("a", 2), ("b", 3), ("c", 4)], "u3": [("c", 6), ("b", 7), ("a", 8)]}
    assert [users[u] for u in range(3)] == ["u1", "u2", "u3"]  # by first event time
    assert ds.item2id == {"b": 0, "c": 1, "a": 2}  # by first appearance
    meta = json.loads((tmp_path / "out" / "R" / "R.item.json").read_text())
    assert meta[str(ds.item2id["a"])] == {"title": "The A Movie", "description": "release year: 1995", "brand": "",
                                          "categories": "Comedy, Drama", "image": None}
    assert meta[str(ds.item2id["c"])]["description"] == ""  # empty year: nothing to say


def test_without_timestamps_file_order_and_no_time_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "R.inter").write_text("user_id:token\titem_id:token\n" + "".join(f"u{u}\t{i}\n" for u in range(3) for i in "cab"))
    stats = prepare_recbole(src, "R", tmp_path / "out", min_count=3)
    assert not stats["has_times"] and not (tmp_path / "out" / "R" / "R.time.json").exists()
    ds = load_dataset(tmp_path / "out", "R")
    assert ds.times is None and ds.sequences == [[0, 1, 2]] * 3 and ds.item2id == {"c": 0, "a": 1, "b": 2}


@pytest.mark.parametrize("head, rows, message", [
    ("user_id:token\titem_id:token\ttimestamp:datetime\n", [], r"R\.inter: header column 3 'timestamp': unknown field type 'datetime'"),
    ("user_id:token\titem_id\n", [], r"R\.inter: header column 2 'item_id': expected 'name:type'"),
    (INTER_HEAD, [("u1", "a", "soon")], r"R\.inter: line 2: column 'timestamp' \(float\): 'soon' is not a number"),
    (INTER_HEAD, [("u1", "a", -3)], r"R\.inter: line 2: user u1: negative timestamp"),
    (INTER_HEAD, [("u1", "a", "")], r"R\.inter: line 2: user u1: missing or non-finite timestamp"),
    ("user_id:token\tasin:token\n", [], r"R\.inter: no 'item_id' column"),
])
def test_bad_atomic_files_name_the_file_and_problem(tmp_path, head, rows, message):
    src = tmp_path / "src"
    src.mkdir()
    body = "".join(f"{u}\t{i}\t4\t{t}\n" for u, i, t in rows)
    (src / "R.inter").write_text(head + body)
    with pytest.raises(DataError, match=message):
        prepare_recbole(src, "R", tmp_path / "out", min_count=3)
    assert not (tmp_path / "out" / "R").exists()  # nothing written half-way


def test_unknown_type_in_item_file_and_cli_exit_code(tmp_path, caplog):
    src = write_src(tmp_path / "src", item="item_id:token\ttitle:text\na\tx\n")
    with pytest.raises(DataError, match=r"R\.item: header column 2 'title': unknown field type 'text'"):
        read_atomic(src / "R.item")
    assert data_main(["prepare", "--recbole", str(src), "--dataset", "R", "--out", str(tmp_path / "o")]) == 2
    assert "unknown field type 'text'" in caplog.text
    assert not (tmp_path / "o" / "R").exists()


def test_cli_prepare_recbole(tmp_path, capsys):
    src = write_src(tmp_path / "src")
    rc = data_main(["prepare", "--recbole", str(src), "--dataset", "R", "--out", str(tmp_path / "o"), "--min-count", "3"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["users"] == 3
    assert data_main(["prepare", "--dataset", "R", "--out", str(tmp_path / "o")]) == 2  # neither source


@pytest.mark.slow
def test_ml100k_through_the_atomic_reader(shared_data, tmp_path):
    src = shared_data / "ml-100k"
    if not (src / "ml-100k.inter").is_file():
        pytest.skip("ml-100k atomic files are not present")
    stats = prepare_recbole(src, "ml-100k", tmp_path, min_count=5)
    # every ml-100k user has >= 20 ratings; the 5-core drops the items rated fewer than 5 times
    assert stats["users"] == 943 and stats["duplicate_events"] == 0
    assert stats["items"] == 1349 and stats["interactions"] == 99287
    ds = load_dataset(tmp_path, "ml-100k")
    assert ds.num_users == 943 and ds.num_items == 1349 and len(ds.times) == 943
    assert all(ts == sorted(ts) for ts in ds.times)
    assert stats["items_with_title"] == 1349
    meta = ds.item_meta[ds.item2id["1"]]
    assert meta["title"] == "Toy Story" and meta["categories"] == "Animation, Children's, Comedy"
    assert meta["description"] == "release year: 1995"
    # a 3-core keeps more of the 1,682 items
    full = prepare_recbole(src, "ml-100k", tmp_path / "all", min_count=3)
    assert (full["users"], full["items"], full["raw_events"]) == (943, 1473, 100000)
