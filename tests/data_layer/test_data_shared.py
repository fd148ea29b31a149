"""The loaders on the real shared datasets (skipped when ../shared/data is absent)."""

from __future__ import annotations

import json
import logging

import pytest

from genrec.data import load_dataset
from genrec.data.dataset import load_recbole

# users, items, interactions as published in ../shared/data/README.md
README_STATS = {
    "Instruments": (17_112, 6_250, 136_226),
    "Scientific": (8_317, 4_344, 58_492),
    "Office": (4_905, 2_420, 53_258),
    "Beauty": (22_363, 12_101, 198_502),
}


def _dataset(shared_data, name):
    if not (shared_data / name).is_dir():
        pytest.skip(f"{name} is not in the shared data")
    return load_dataset(shared_data, name)


@pytest.mark.parametrize("name", sorted(README_STATS))
def test_shared_dataset_stats_match_readme(shared_data, name):
    ds = _dataset(shared_data, name)
    users, items, inter = README_STATS[name]
    stats = ds.stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (users, items, inter)
    assert stats["mean_seq_len"] == pytest.approx(inter / users, abs=1e-4)
    assert stats["min_seq_len"] >= 3
    if inter > 100_000:
        return  # splitting the two big datasets costs seconds and checks nothing new
    split = ds.split(20)
    assert len(split.test) == len(split.valid) == users
    assert len(split.train) == inter - 3 * users  # n - 3 training samples per user


def test_instruments_codes(shared_data, caplog):
    if not (shared_data / "Instruments").is_dir():
        pytest.skip("Instruments is not in the shared data")
    with caplog.at_level(logging.WARNING, logger="genrec.data"):
        ds = load_dataset(shared_data, "Instruments")
    text, image = ds.stats()["text_codes"], ds.stats()["image_codes"]
    # README: 6,250 items, 5,988 distinct text codes (262 duplicates); image codes unique
    assert (text["distinct"], text["duplicate_items"]) == (5_988, 262)
    assert image["distinct"] == 6_250 and image["duplicate_items"] == 0
    assert any("share their code" in r.getMessage() for r in caplog.records)
    assert len(ds.item2id) == 6_250 and sorted(ds.item2id.values()) == list(range(6_250))


def test_instruments_recbole_files_rebuild_inter_json(shared_data):
    d = shared_data / "Instruments"
    if not (d / "Instruments.test.inter").is_file():
        pytest.skip("Instruments RecBole files are not in the shared data")
    users, seqs = load_recbole(d, "Instruments")
    inter = json.loads((d / "Instruments.inter.json").read_text())
    assert dict(zip(users, seqs)) == {u: [int(x) for x in s] for u, s in inter.items()}
    assert users == list(inter)  # same user order


def test_scientific_and_office_item_text(shared_data):
    for name in ("Scientific", "Office"):
        ds = _dataset(shared_data, name)
        assert ds.item_meta is not None and len(ds.item_meta) == ds.num_items
        assert ds.item_title(0)


def test_beauty_item_map_from_user_sequence(shared_data):
    ds = _dataset(shared_data, "Beauty")
    assert ds.item2id is not None and len(ds.item2id) == ds.num_items
    assert ds.text_codes is not None and len(ds.text_codes) == ds.num_items  # the single rqvae code file


def test_beauty_titles_from_p5_names(shared_data, tmp_path):
    from genrec.data.p5_titles import NAMES_FILE, write_titles

    dir = tmp_path / "Beauty"
    dir.mkdir()
    for f in ("Beauty.inter.json", "user_sequence.txt", NAMES_FILE):
        (dir / f).symlink_to(shared_data / "Beauty" / f)
    meta = json.loads(write_titles(tmp_path, "Beauty").read_text())
    assert len(meta) == 12101
    assert sum(not m["title"] for m in meta.values()) == 1  # one item has an empty name in the file
    ds = load_dataset(tmp_path, "Beauty")
    assert ds.item2id[meta["0"]["asin"]] == 0 and ds.item2id[meta["12100"]["asin"]] == 12100
