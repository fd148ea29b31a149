"""P5-style item names -> item.json (Beauty ships no item.json)."""

from __future__ import annotations

import json

import pytest

from genrec.data import DataError, load_dataset
from genrec.data.__main__ import main as data_main
from genrec.data.p5_titles import NAMES_FILE, write_titles


def _write(dir, names: str, sequences: str = "u1 A B C\nu2 C D B\n"):
    dir.mkdir(parents=True, exist_ok=True)
    (dir / "user_sequence.txt").write_text(sequences)
    # the interactions in our format: item id = order of first appearance in user_sequence.txt
    (dir / "Toy.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [2, 3, 1]}))
    (dir / NAMES_FILE).write_text(names)


def test_titles_follow_the_user_sequence_item_ids(tmp_path):
    _write(tmp_path / "Toy", "D delta name\nB bee\nA the a item\nC\n")
    out = write_titles(tmp_path, "Toy")
    meta = json.loads(out.read_text())
    assert meta == {"0": {"title": "the a item", "asin": "A"}, "1": {"title": "bee", "asin": "B"},
                    "2": {"title": "", "asin": "C"}, "3": {"title": "delta name", "asin": "D"}}
    ds = load_dataset(tmp_path, "Toy")
    assert ds.item_meta[3]["title"] == "delta name" and ds.num_items == 4
    with pytest.raises(DataError, match="already exists"):
        write_titles(tmp_path, "Toy")


def test_missing_or_conflicting_names_are_errors(tmp_path, caplog):
    _write(tmp_path / "Toy", "A a\nB b\nC c\n")
    with pytest.raises(DataError, match=r"1 of 4 items .* have no name.*'D'"):
        write_titles(tmp_path, "Toy")
    _write(tmp_path / "Toy", "A a\nB b\nC c\nD d\nA other\n")
    with pytest.raises(DataError, match="line 5: ASIN A already named"):
        write_titles(tmp_path, "Toy")
    assert not (tmp_path / "Toy" / "Toy.item.json").exists()


def test_cli_reports_a_missing_file_in_one_line(tmp_path, caplog):
    (tmp_path / "Toy").mkdir()
    assert data_main(["titles", "--data-root", str(tmp_path), "--dataset", "Toy"]) == 2
    assert "user_sequence.txt: file not found" in caplog.text


def test_no_interactions_says_how_to_make_them(tmp_path, caplog, capsys):
    _write(tmp_path / "Toy", "A a\nB b\nC c\nD d\n")
    (tmp_path / "Toy" / "Toy.inter.json").unlink()
    assert data_main(["titles", "--data-root", str(tmp_path), "--dataset", "Toy"]) == 2
    assert "no interactions" in caplog.text
    assert "python -m genrec.data prepare" in caplog.text and "python -m genrec.data link" in caplog.text
    assert "Traceback" not in caplog.text and not (tmp_path / "Toy" / "Toy.item.json").exists()
    with pytest.raises(SystemExit):
        data_main(["titles", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Must exist first" in help_text and "user_sequence.txt" in help_text and "inter.json" in help_text
