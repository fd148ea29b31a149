"""Raw Amazon dump conversion (2018 and 2023 releases) and the ``link`` command."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from genrec.data import DataError, load_dataset
from genrec.data.__main__ import main as data_main
from genrec.data.dataset import load_id_map
from genrec.data.prepare import PrepareConfig, clean_text, k_core, link_dataset, prepare


def write_jsonl_gz(path: Path, records: list, raw_lines: list[str] = ()) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        for line in raw_lines:
            f.write(line + "\n")
    return path


# Users u1..u4 and items A..E; every user and item has >= 3 events after dedup, except
# u5 (2 events) and item F (bought once, by u1) which the 3-core must remove.
EVENTS = [
    # user, asin, time
    ("u1", "B", 20), ("u1", "A", 10), ("u1", "C", 30), ("u1", "F", 35), ("u1", "A", 40),  # A repeated
    ("u2", "C", 5), ("u2", "A", 5), ("u2", "D", 7),  # tie at t=5 broken by asin: A before C
    ("u3", "D", 1), ("u3", "B", 2), ("u3", "E", 3), ("u3", "C", 4),
    ("u4", "E", 50), ("u4", "D", 51), ("u4", "B", 52), ("u4", "A", 53), ("u4", "E", 54),
    ("u5", "A", 60), ("u5", "E", 61),
    ("u6", "E", 70), ("u6", "B", 71), ("u6", "D", 72),
]


def meta_2018(asin: str) -> dict:
    return {
        "asin": asin,
        "title": f"Item &amp; {asin} <b>bold</b>",
        "description": [f"First line of {asin}.", "<p>Second   line</p>"],
        "brand": "Acme",
        "category": ["Industrial &amp; Scientific", "Lab", "Lab"],
        "imageURL": ["not a url", f"https://img.example/{asin}.jpg"],
        "imageURLHighRes": [],
    }


def meta_2023(asin: str) -> dict:
    return {
        "parent_asin": asin,
        "title": f"Item {asin}",
        "description": [] if asin == "B" else [f"About {asin}"],
        "features": [f"feature of {asin}"],
        "store": "Acme Store",
        "categories": ["Office Products", "Paper"],
        "images": [{"thumb": f"https://img.example/{asin}_t.jpg", "large": f"https://img.example/{asin}_l.jpg",
                    "hi_res": None if asin == "C" else f"https://img.example/{asin}_h.jpg"}],
    }


@pytest.fixture
def raw_2018(tmp_path: Path) -> tuple[Path, Path]:
    reviews = write_jsonl_gz(tmp_path / "Tools.json.gz", [
        {"reviewerID": u, "asin": a, "unixReviewTime": t, "overall": 5.0} for u, a, t in EVENTS])
    # item A has two metadata records: the first must win
    metas = [meta_2018(a) for a in "ABCDEF"] + [dict(meta_2018("A"), title="a later duplicate")]
    meta = write_jsonl_gz(tmp_path / "meta_Tools.json.gz", metas)
    return reviews, meta


@pytest.fixture
def raw_2023(tmp_path: Path) -> tuple[Path, Path]:
    reviews = write_jsonl_gz(tmp_path / "Office.jsonl.gz", [
        {"user_id": u, "parent_asin": a, "asin": a + "-v", "timestamp": t * 1000, "rating": 4.0}
        for u, a, t in EVENTS])
    meta = write_jsonl_gz(tmp_path / "meta_Office.jsonl.gz", [meta_2023(a) for a in "ABCDEF"])
    return reviews, meta


def run(reviews: Path, meta: Path | None, out: Path, name: str = "Toy", **kw) -> dict:
    return prepare(PrepareConfig(reviews=reviews, meta=meta, dataset=name, out=out, k_core=3, **kw))


EXPECTED_USERS = ["u3", "u2", "u1", "u4", "u6"]  # by first event time: 1, 5, 10, 50, 70
# u3: D B E C; u2: A C D; u1: A B C (F dropped by the item core, repeated A dropped); u4: E D B A; u6: E B D
EXPECTED_ITEMS = ["D", "B", "E", "C", "A"]
EXPECTED_SEQS = [[0, 1, 2, 3], [4, 3, 0], [4, 1, 3], [2, 0, 1, 4], [2, 1, 0]]


@pytest.mark.parametrize("release", ["2018", "2023"])
def test_prepare_both_releases(release, raw_2018, raw_2023, tmp_path):
    reviews, meta = raw_2018 if release == "2018" else raw_2023
    stats = run(reviews, meta, tmp_path / "out")
    assert stats["release"] == release  # auto-detected
    assert stats["duplicate_events"] == 2  # u1's and u4's repeated items
    assert (stats["users"], stats["items"], stats["interactions"]) == (5, 5, 17)
    dir = tmp_path / "out" / "Toy"
    inter = json.loads((dir / "Toy.inter.json").read_text())
    assert inter == {str(k): s for k, s in enumerate(EXPECTED_SEQS)}
    item2id = load_id_map(dir / "Toy.item2id")
    assert item2id == {a: k for k, a in enumerate(EXPECTED_ITEMS)}
    assert load_id_map(dir / "Toy.user2id") == {u: k for k, u in enumerate(EXPECTED_USERS)}
    ds = load_dataset(tmp_path / "out", "Toy")  # the output passes the loader's validation
    assert ds.num_items == 5 and ds.item2id == item2id

    items = json.loads((dir / "Toy.item.json").read_text())
    urls = json.loads((dir / "Toy.image_urls.json").read_text())
    a = items[str(item2id["A"])]
    if release == "2018":
        assert a["title"] == "Item & A bold"
        assert a["description"] == "First line of A. Second line"
        assert a["categories"] == "Industrial & Scientific, Lab"
        assert a["brand"] == "Acme"
        assert urls[str(item2id["A"])] == "https://img.example/A.jpg"  # first *valid* URL
    else:
        assert a["description"] == "About A" and a["brand"] == "Acme Store"
        assert items[str(item2id["B"])]["description"] == "feature of B"  # features when no description
        assert urls[str(item2id["A"])] == "https://img.example/A_h.jpg"
        assert urls[str(item2id["C"])] == "https://img.example/C_l.jpg"  # no hi_res: next size
    assert a["image"] == urls[str(item2id["A"])]


def test_prepare_is_deterministic_under_input_order(raw_2018, tmp_path):
    reviews, meta = raw_2018
    shuffled = write_jsonl_gz(tmp_path / "shuffled.json.gz", [
        {"reviewerID": u, "asin": a, "unixReviewTime": t} for u, a, t in reversed(EVENTS)])
    run(reviews, meta, tmp_path / "a")
    run(shuffled, meta, tmp_path / "b")
    for suffix in ("inter.json", "item.json", "item2id", "user2id", "image_urls.json"):
        assert (tmp_path / "a" / "Toy" / f"Toy.{suffix}").read_bytes() == (tmp_path / "b" / "Toy" / f"Toy.{suffix}").read_bytes()


def test_items_without_meta_are_dropped_unless_kept(raw_2018, tmp_path):
    reviews, _ = raw_2018
    meta = write_jsonl_gz(tmp_path / "meta_partial.json.gz", [meta_2018(a) for a in "ABCDF"])  # no E
    stats = run(reviews, meta, tmp_path / "a")
    assert stats["events_without_meta"] == 5
    assert "E" not in load_id_map(tmp_path / "a" / "Toy" / "Toy.item2id")
    stats = run(reviews, meta, tmp_path / "b", keep_items_without_meta=True)
    ids = load_id_map(tmp_path / "b" / "Toy" / "Toy.item2id")
    items = json.loads((tmp_path / "b" / "Toy" / "Toy.item.json").read_text())
    assert items[str(ids["E"])]["title"] == "" and items[str(ids["E"])]["image"] is None


def test_k_core_reaches_a_fixed_point():
    # Removing item Z (1 event) leaves user w with 2 events; dropping w leaves item Y with 2: cascade.
    seqs = {
        "w": [(1, "X"), (2, "Y"), (3, "Z")],
        "p": [(1, "X"), (2, "Y"), (3, "Q")], "q": [(1, "X"), (2, "Y"), (3, "Q")],
        "r": [(1, "X"), (2, "Q"), (3, "R")], "s": [(1, "Q"), (2, "R"), (3, "X")], "t": [(1, "R"), (2, "Q"), (3, "X")],
    }
    out = k_core(seqs, 3, 3)
    counts: dict[str, int] = {}
    for evs in out.values():
        assert len(evs) >= 3
        for _, i in evs:
            counts[i] = counts.get(i, 0) + 1
    assert all(c >= 3 for c in counts.values())
    assert "w" not in out and "Y" not in counts and "Z" not in counts


def test_clean_text_truncates_instead_of_blanking():
    long = "word " * 1000
    out = clean_text(long, max_chars=100)
    assert 80 <= len(out) <= 100 and out.startswith("word word")
    assert clean_text(long, max_chars=0) == long.strip()
    assert clean_text("a&amp;amp;b <br/>c\n\t d <script>x=1</script>") == "a&b c d"
    assert clean_text("5 < 6 and 7 > 3") == "5 < 6 and 7 > 3"  # a bare '<' is text, not a tag
    assert clean_text(["x", None, "y"]) == "x y" and clean_text(None) == ""


def test_malformed_line_names_file_and_line(raw_2018, tmp_path):
    _, meta = raw_2018
    bad = write_jsonl_gz(tmp_path / "bad.json.gz",
                         [{"reviewerID": "u", "asin": "A", "unixReviewTime": 1}], raw_lines=['{"reviewerID": "u", '])
    with pytest.raises(DataError, match=r"bad\.json\.gz: line 2: malformed JSON"):
        run(bad, meta, tmp_path / "out")
    missing = write_jsonl_gz(tmp_path / "missing.json.gz", [{"reviewerID": "u", "asin": "A"}])
    with pytest.raises(DataError, match=r"missing\.json\.gz: line 1: missing unixReviewTime"):
        run(missing, meta, tmp_path / "out", release="2018")
    truncated = tmp_path / "truncated.json.gz"
    truncated.write_bytes((tmp_path / "bad.json.gz").read_bytes()[:-12])
    with pytest.raises(DataError, match="truncated.json.gz"):
        run(truncated, meta, tmp_path / "out", release="2018")


def test_2014_python_literal_meta_is_read(tmp_path):
    reviews = write_jsonl_gz(tmp_path / "r.json.gz", [
        {"reviewerID": u, "asin": a, "unixReviewTime": t} for u, a, t in EVENTS])
    lines = [repr({"asin": a, "title": f"Old {a}", "categories": [["Beauty", "Skin"]], "imUrl": f"http://x/{a}.jpg"})
             for a in "ABCDEF"]
    meta = write_jsonl_gz(tmp_path / "meta.json.gz", [], raw_lines=lines)
    run(reviews, meta, tmp_path / "out")
    items = json.loads((tmp_path / "out" / "Toy" / "Toy.item.json").read_text())
    assert items["0"] == {"title": "Old D", "description": "", "brand": "", "categories": "Beauty, Skin",
                          "image": "http://x/D.jpg"}


def test_cli_prepare_and_errors(raw_2023, tmp_path, capsys):
    reviews, meta = raw_2023
    rc = data_main(["prepare", "--reviews", str(reviews), "--meta", str(meta), "--dataset", "Toy",
                    "--out", str(tmp_path / "out"), "--k-core", "3"])
    assert rc == 0 and json.loads(capsys.readouterr().out)["users"] == 5
    # nobody survives a 10-core: one clear error, exit code 2
    assert data_main(["prepare", "--reviews", str(reviews), "--dataset", "Toy", "--out", str(tmp_path / "o2"),
                      "--k-core", "10"]) == 2
    assert data_main(["prepare", "--reviews", str(reviews), "--dataset", "Toy", "--out", str(tmp_path / "o3"),
                      "--user-k", "2"]) == 2
    assert data_main(["prepare", "--reviews", str(tmp_path / "nope.json.gz"), "--dataset", "Toy"]) == 2


def test_link_mirrors_files_and_refuses_to_clobber(tmp_path):
    src = tmp_path / "shared" / "DS"
    (src / "indexes" / "a").mkdir(parents=True)
    (src / "DS.inter.json").write_text('{"0": [0, 1, 2]}')
    (src / "indexes" / "a" / "DS.index.json").write_text("{}")
    created = link_dataset(tmp_path / "shared", "DS", tmp_path / "data")
    assert len(created) == 2
    link = tmp_path / "data" / "DS" / "indexes" / "a" / "DS.index.json"
    assert link.is_symlink() and link.resolve() == (src / "indexes" / "a" / "DS.index.json").resolve()
    assert not (tmp_path / "data" / "DS" / "indexes").is_symlink()  # real folder: outputs can go beside
    assert link_dataset(tmp_path / "shared", "DS", tmp_path / "data") == []  # idempotent
    (src / "DS.item.json").write_text("{}")
    (tmp_path / "data" / "DS" / "DS.item.json").write_text("mine")
    with pytest.raises(DataError, match="not a link"):
        link_dataset(tmp_path / "shared", "DS", tmp_path / "data")
    assert (tmp_path / "data" / "DS" / "DS.item.json").read_text() == "mine"
    assert data_main(["link", "--from", str(tmp_path / "shared"), "--dataset", "Missing", "--out", str(tmp_path)]) == 2
