"""``python -m genrec.data prepare --p5 DIR``: the P5 / IDGenRec layout into a dataset folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrec.data import DataError, load_dataset
from genrec.data.__main__ import main as data_main
from genrec.data.dataset import load_id_map
from genrec.data.p5 import prepare_p5


def write_p5(dir: Path, lines: list[str], names: list[str] | None = None) -> Path:
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "user_sequence.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    if names is not None:
        (dir / "item_generative_indexing_phase_0.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return dir


LINES = ["uB X Y Z", "uA Z W X V", "uC V Q Y"]


def test_ordering_rule_users_in_file_order_items_by_first_appearance(tmp_path):
    src = write_p5(tmp_path / "p5", LINES, ["X ex", "Y why", "Z zed", "W dub", "V vee", "Q queue"])
    assert data_main(["prepare", "--p5", str(src), "--dataset", "Toy", "--out", str(tmp_path / "data")]) == 0
    dir = tmp_path / "data" / "Toy"
    inter = json.loads((dir / "Toy.inter.json").read_text())
    assert inter == {"0": [0, 1, 2], "1": [2, 3, 0, 4], "2": [4, 5, 1]}
    assert load_id_map(dir / "Toy.item2id") == {"X": 0, "Y": 1, "Z": 2, "W": 3, "V": 4, "Q": 5}
    assert load_id_map(dir / "Toy.user2id") == {"uB": 0, "uA": 1, "uC": 2}
    meta = json.loads((dir / "Toy.item.json").read_text())
    assert meta["3"] == {"title": "dub", "asin": "W"}
    ds = load_dataset(tmp_path / "data", "Toy")
    assert ds.num_items == 6 and ds.item_title(5) == "queue"


def test_names_file_is_optional(tmp_path):
    stats = prepare_p5(write_p5(tmp_path / "p5", LINES), "Toy", tmp_path / "data")
    assert stats["items"] == 6 and not stats["item_names"]
    assert not (tmp_path / "data" / "Toy" / "Toy.item.json").exists()


@pytest.mark.parametrize("lines, line, what", [
    (["u1 a b c", "", "u2 a b c"], 2, "empty line"),
    (["u1 a b c", "u2 a b c", "u1 d e f"], 3, "already appears on line 1"),
    (["u1 a b"], 1, "at least 3"),
])
def test_bad_lines_name_file_and_line(tmp_path, lines, line, what, caplog):
    src = write_p5(tmp_path / "p5", lines)
    with pytest.raises(DataError, match=f"user_sequence.txt.*line {line}: .*{what}"):
        prepare_p5(src, "Toy", tmp_path / "data")
    assert data_main(["prepare", "--p5", str(src), "--dataset", "Toy", "--out", str(tmp_path / "data")]) == 2
    assert f"line {line}" in caplog.text


def test_unnamed_item_is_an_error(tmp_path):
    src = write_p5(tmp_path / "p5", LINES, ["X ex"])
    with pytest.raises(DataError, match="item_generative_indexing_phase_0.txt.*5 of 6 items"):
        prepare_p5(src, "Toy", tmp_path / "data")


def test_cli_needs_exactly_one_source(tmp_path):
    assert data_main(["prepare", "--dataset", "Toy", "--out", str(tmp_path)]) == 2


@pytest.mark.slow
def test_rebuilds_shared_beauty_exactly(shared_data, tmp_path):
    src = shared_data / "Beauty"
    if not (src / "user_sequence.txt").is_file():
        pytest.skip("Beauty/user_sequence.txt is not present")
    stats = prepare_p5(src, "Beauty", tmp_path)
    assert stats["users"] == 22363 and stats["items"] == 12101
    built = json.loads((tmp_path / "Beauty" / "Beauty.inter.json").read_text())
    assert built == json.loads((src / "Beauty.inter.json").read_text())
