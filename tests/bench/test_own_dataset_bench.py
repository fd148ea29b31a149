"""benchmarks/bench_own_dataset.py: the dump it writes from a prepared dataset goes through
``prepare`` back to the same sequences, item text included."""

import json

from conftest import load_benchmark


def test_written_dump_prepares_back_to_the_same_sequences(synthetic_root, tmp_path):
    from genrec.data.prepare import PrepareConfig, prepare

    bench = load_benchmark("bench_own_dataset")
    src = synthetic_root / "Synthetic"
    reviews, meta, expected = bench.write_dump(src, "Dump", tmp_path / "dump")
    # thresholds below the fixture's rarest item, so that nothing is filtered and the sequences must match
    prepare(PrepareConfig(reviews=reviews, meta=meta, dataset="Dump", out=tmp_path / "data", user_k=3, item_k=1))
    got = bench.sequences_by_original_id(tmp_path / "data" / "Dump", "Dump")
    assert got == expected and len(got) == len(json.loads((src / "Synthetic.inter.json").read_text()))
    items = json.loads((src / "Synthetic.item.json").read_text())
    out_items = json.loads((tmp_path / "data" / "Dump" / "Dump.item.json").read_text())
    item2id = dict(line.split("\t") for line in (tmp_path / "data" / "Dump" / "Dump.item2id").read_text().splitlines())
    i = next(iter(items))
    assert out_items[item2id[f"B{int(i):09d}"].strip()]["title"] == items[i]["title"]


def test_the_evaluate_stage_keeps_the_result_row_not_only_the_header(tmp_path):
    bench = load_benchmark("bench_own_dataset")
    log = tmp_path / "evaluate.log"
    log.write_text("INFO loading\n| run | HR@10 | NDCG@10 |\n|---|---|---|\n| X seqrec (test, 5 users) | 0.2000 | 0.1000 |\n"
                   "0.5 users/s; wrote x\n")
    assert bench._metrics(log) == "| run | HR@10 | NDCG@10 | | X seqrec (test, 5 users) | 0.2000 | 0.1000 |"
    log.write_text("no table\n")
    assert bench._metrics(log) == ""
