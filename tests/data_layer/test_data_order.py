"""genrec.data stats: the share of sequences sorted by item id / original id, and the warning."""

from __future__ import annotations

import json
import logging
import random
import shutil

import pytest

from genrec.data.__main__ import main
from genrec.data.order import SUSPICIOUS_SHARE, order_check, random_order_share


def _stats(root, name, capsys) -> dict:
    assert main(["stats", "--data-root", str(root), "--dataset", name]) == 0
    return json.loads(capsys.readouterr().out)


def _copy(src_root, tmp_path, name, sort_key=None, shuffle_ids=False):
    dst = tmp_path / name
    shutil.copytree(src_root / "Synthetic", dst)
    for p in list(dst.iterdir()):
        p.rename(dst / p.name.replace("Synthetic", name))
    inter = json.loads((dst / f"{name}.inter.json").read_text())
    if shuffle_ids:  # original ids in another order than item ids, as in real id maps
        items = sorted({i for s in inter.values() for i in s})
        asins = [f"B{random.Random(i).randrange(10**9):09d}" for i in items]
        (dst / f"{name}.item2id").write_text("".join(f"{a}\t{i}\n" for a, i in zip(asins, items)))
    id2orig = {int(line.split("\t")[1]): line.split("\t")[0]
               for line in (dst / f"{name}.item2id").read_text().splitlines()}
    if sort_key == "id":
        inter = {u: sorted(s) for u, s in inter.items()}
    elif sort_key == "orig":
        inter = {u: sorted(s, key=lambda i: id2orig[i]) for u, s in inter.items()}
    (dst / f"{name}.inter.json").write_text(json.dumps(inter))
    return tmp_path


def test_chronological_copy_passes(synthetic_root, tmp_path, capsys, caplog):
    root = _copy(synthetic_root, tmp_path, "Chrono", shuffle_ids=True)
    with caplog.at_level(logging.WARNING, logger="genrec.data"):
        order = _stats(root, "Chrono", capsys)["order"]
    assert order["users_checked"] > 100
    assert order["sorted_by_item_id"] < SUSPICIOUS_SHARE and order["sorted_by_original_id"] < SUSPICIOUS_SHARE
    assert order["warning"] is None and "sorted" not in caplog.text


@pytest.mark.parametrize("key,field", [("id", "sorted_by_item_id"), ("orig", "sorted_by_original_id")])
def test_sorted_copy_is_flagged(synthetic_root, tmp_path, capsys, caplog, key, field):
    root = _copy(synthetic_root, tmp_path, "Sorted", sort_key=key, shuffle_ids=True)
    with caplog.at_level(logging.WARNING, logger="genrec.data"):
        order = _stats(root, "Sorted", capsys)["order"]
    assert order[field] == 1.0
    other = "sorted_by_original_id" if key == "id" else "sorted_by_item_id"
    assert order[other] < SUSPICIOUS_SHARE  # the two orders really differ in this copy
    assert order["warning"] and "not by time" in order["warning"]
    assert "probably sorted by id" in caplog.text


def test_random_order_share_and_short_sequences():
    assert random_order_share([[1, 2, 3]]) == pytest.approx(1 / 6)
    assert random_order_share([[4, 4, 5]]) == pytest.approx(1 / 3)  # 2 of 6 orders of a multiset are sorted
    out = order_check([[1, 2], [3, 1]])  # fewer than 3 items: not counted
    assert out["users_checked"] == 0 and out["sorted_by_item_id"] is None and out["warning"] is None
    # all-digit original ids compare as numbers: "10" after "9"
    out = order_check([[0, 1, 2]] * 3, {0: "8", 1: "9", 2: "10"})
    assert out["sorted_by_original_id"] == 1.0


@pytest.mark.slow
def test_real_datasets_are_not_flagged(shared_data, capsys):
    for name in ("Beauty", "Instruments"):
        assert _stats(shared_data, name, capsys)["order"]["warning"] is None
