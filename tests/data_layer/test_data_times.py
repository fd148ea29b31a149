"""Interaction times: ``<ds>.time.json`` validation, leave-one-out samples with times, Amazon prepare."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from genrec.data import DataError, leave_one_out, load_dataset
from genrec.data.times import stable_time_order


def write_ds(root: Path, inter: dict, times: dict | None, name: str = "T") -> None:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.inter.json").write_text(json.dumps(inter))
    if times is not None:
        (d / f"{name}.time.json").write_text(json.dumps(times))


INTER = {"0": [0, 1, 2, 3], "1": [2, 1, 0]}
TIMES = {"0": [10, 20, 20, 30], "1": [5, 6, 7]}


def test_times_load_and_reach_the_split(tmp_path):
    write_ds(tmp_path, INTER, TIMES)
    ds = load_dataset(tmp_path, "T")
    assert ds.times == [[10, 20, 20, 30], [5, 6, 7]]
    split = ds.split(max_history=2, with_times=True)
    t0 = split.test[0]
    assert t0.history == (1, 2) and t0.times == (20, 20) and t0.target == 3
    assert split.valid[1].times == (5,)
    assert [s.times for s in split.train] == [(10,)]
    plain = ds.split(max_history=2)  # default: no times, as before
    assert plain.test[0].times is None and plain.test[0] == type(t0)(0, (1, 2), 3)


def test_missing_time_file_is_fine_but_a_time_split_is_not(tmp_path):
    write_ds(tmp_path, INTER, None)
    ds = load_dataset(tmp_path, "T")
    assert ds.times is None
    with pytest.raises(DataError, match=r"T\.time\.json: dataset T has no interaction times"):
        ds.split(with_times=True)


@pytest.mark.parametrize("times, message", [
    ({"0": [10, 20, 20, 30]}, "user 1 has no times"),
    ({"0": [10, 20, 20, 30], "1": [5, 6, 7], "9": [1, 2, 3]}, "user 9 is not in inter.json"),
    ({"1": [5, 6, 7], "0": [10, 20, 20, 30]}, "user 1: users are not in the order of inter.json"),
    ({"0": [10, 20, 30], "1": [5, 6, 7]}, "user 0: 3 times for 4 interactions"),
    ({"0": [10, "x", 20, 30], "1": [5, 6, 7]}, "user 0: time 'x' is not a number"),
    ({"0": [10, 20, 20, 30], "1": [5, -6, 7]}, "user 1: time -6 is negative"),
    ({"0": [10, True, 20, 30], "1": [5, 6, 7]}, "user 0: time True is not a number"),
    ({"0": [10, 20, 20, 30], "1": "5 6 7"}, "user 1: expected a list of times"),
])
def test_bad_time_files_name_the_file_and_the_user(tmp_path, times, message):
    write_ds(tmp_path, INTER, times)
    with pytest.raises(DataError, match=r"T\.time\.json: " + message):
        load_dataset(tmp_path, "T")


def test_float_times_are_kept(tmp_path):
    write_ds(tmp_path, INTER, {"0": [10.0, 20.5, 20.5, 30], "1": [5, 6, 7]})
    assert load_dataset(tmp_path, "T").times[0] == [10, 20.5, 20.5, 30]


def test_stable_time_order_breaks_ties_by_position():
    assert stable_time_order([3, 1, 3, 1, 2]) == [1, 3, 4, 0, 2]
    assert stable_time_order([]) == []


def test_leave_one_out_rejects_mismatched_times():
    with pytest.raises(ValueError, match="user 0 has 3 interactions but 2 times"):
        leave_one_out([[0, 1, 2]], times=[[1, 2]])


def test_amazon_prepare_writes_times_in_item_order(tmp_path):
    import gzip

    from genrec.data.dataset import load_id_map
    from genrec.data.prepare import PrepareConfig, prepare

    events = [("u1", "A", 10), ("u1", "C", 5), ("u1", "B", 5), ("u1", "A", 2),  # tie at 5: by asin, B first
              ("u2", "B", 1), ("u2", "C", 3), ("u2", "A", 2), ("u3", "C", 9), ("u3", "A", 8), ("u3", "B", 7)]
    reviews = tmp_path / "r.json.gz"
    with gzip.open(reviews, "wt") as f:
        for u, a, t in events:
            f.write(json.dumps({"reviewerID": u, "asin": a, "unixReviewTime": t}) + "\n")
    prepare(PrepareConfig(reviews=reviews, dataset="Toy", out=tmp_path / "out", k_core=3))
    ds = load_dataset(tmp_path / "out", "Toy")
    items = {v: k for k, v in ds.item2id.items()}
    users = {v: k for k, v in load_id_map(tmp_path / "out" / "Toy" / "Toy.user2id").items()}
    got = {users[u]: [(items[i], t) for i, t in zip(seq, ts)] for u, (seq, ts) in enumerate(zip(ds.sequences, ds.times))}
    assert got == {"u1": [("A", 2), ("B", 5), ("C", 5)], "u2": [("B", 1), ("A", 2), ("C", 3)],
                   "u3": [("B", 7), ("A", 8), ("C", 9)]}
