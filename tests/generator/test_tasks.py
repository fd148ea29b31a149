"""Task formats (source/target tokens of every task) and their tokenised training data."""

from pathlib import Path

import numpy as np
import pytest

from genrec.data import RecDataset, format_code, leave_one_out
from genrec.data_pipeline import TrainSet, build_dataset_data, collate, encode_source, partition_sorted, shard_step
from genrec.tasks import TASKS, dataset_codes, get_task, parse_tasks, resolve_tasks
from genrec.tokenizer import build_tokenizer, task_token


def task_variants(task, codes, samples, num_items):
    """The tokenizer-path reference: variants of every training example (one per item for item tasks)."""
    if task.kind == "item":
        return [task.variants(codes, [i], i) for i in range(num_items)]
    return [task.variants(codes, s.history, s.target) for s in samples]


def _dataset(name="Toy", images=True, n_items=12, seed=0, long_user=True) -> RecDataset:
    rng = np.random.default_rng(seed)
    seqs = [list(rng.choice(n_items, size=int(rng.integers(3, 9)), replace=False)) for _ in range(15)]
    if long_user:
        seqs.append([i % n_items for i in range(30)])  # longer than the history cap
    text = [format_code([i % 5, i // 5, 0, 0], "text") for i in range(n_items)]
    text[3] = text[8]  # a shared text code: dedup must separate the two items
    image = [format_code([i, 1, 2, 3], "image") for i in range(n_items)] if images else None
    return RecDataset(name=name, dir=Path("."), users=[str(u) for u in range(len(seqs))],
                      sequences=[[int(x) for x in s] for s in seqs], num_items=n_items,
                      text_codes=text, image_codes=image)


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


def _flat(codes, items):
    return [t for i in items for t in codes[i]]


@pytest.mark.parametrize("name,src,tgt", [
    ("seqrec", "text", "text"), ("seqimage", "image", "image"),
    ("seqitem2image", "text", "image"), ("seqimage2item", "image", "text"),
])
def test_sequence_task_format(name, src, tgt):
    codes = dataset_codes(_dataset())
    history, target = [4, 0, 7], 2
    (variant,) = get_task(name).variants(codes, history, target)
    assert variant[0] == [task_token(name)] + _flat(codes[src], history)
    assert variant[1] == list(codes[tgt][target])


@pytest.mark.parametrize("name,src,tgt", [("item2image", "text", "image"), ("image2item", "image", "text")])
def test_item_task_format(name, src, tgt):
    codes = dataset_codes(_dataset())
    per_item = task_variants(get_task(name), codes, None, 12)
    assert len(per_item) == 12
    for item, (variant,) in enumerate(per_item):
        assert variant == ([task_token(name)] + list(codes[src][item]), list(codes[tgt][item]))


def test_fusion_tasks_have_both_directions():
    codes = dataset_codes(_dataset())
    h, t = [1, 2], 5
    a, b = get_task("fusionseqrec").variants(codes, h, t)
    assert a == ([task_token("fusionseqrec")] + _flat(codes["text"], h), list(codes["image"][t]))
    assert b == ([task_token("fusionseqrec")] + _flat(codes["image"], h), list(codes["text"][t]))
    fa, fb = get_task("fgfusionseqrec").variants(codes, h, t)
    assert fa[0][0] == task_token("fgfusion_text2image") and fb[0][0] == task_token("fgfusion_image2text")
    assert fa[0][1:] == a[0][1:] and fb[0][1:] == b[0][1:]


def test_dedup_makes_codes_unique_with_one_length():
    ds = _dataset()
    codes = dataset_codes(ds, dedup=True)
    assert len(set(codes["text"])) == ds.num_items
    assert {len(c) for c in codes["text"]} == {5} and codes["text"][8][-1] == "<e_1>"
    assert dataset_codes(ds, dedup=False)["text"][3] == dataset_codes(ds, dedup=False)["text"][8]
    assert codes["image"] == ds.image_codes  # already unique: unchanged


def test_parse_and_resolve_tasks():
    assert [t.name for t in parse_tasks("seqrec, seqimage")] == ["seqrec", "seqimage"]
    with pytest.raises(ValueError, match="unknown task 'seqrek'"):
        parse_tasks("seqrec,seqrek")
    with pytest.raises(ValueError, match="no tasks"):
        parse_tasks(" , ")
    with_img, without = _dataset("A"), _dataset("B", images=False)
    plan = resolve_tasks(parse_tasks("seqrec,seqimage"), [with_img, without])
    assert [t.name for t in plan["A"]] == ["seqrec", "seqimage"] and [t.name for t in plan["B"]] == ["seqrec"]
    with pytest.raises(ValueError, match="item2image needs .*codes, which none"):
        resolve_tasks(parse_tasks("seqrec,item2image"), [without])
    assert set(TASKS) >= {"seqrec", "seqimage", "item2image", "image2item", "fusionseqrec", "fgfusionseqrec"}


def test_split_uses_every_prefix_and_caps_history_at_the_most_recent():
    ds = _dataset()
    split = leave_one_out(ds.sequences, max_history=20)
    assert len(split.train) == sum(len(s) - 3 for s in ds.sequences)
    long_seq = ds.sequences[-1]
    last_train = [s for s in split.train if s.user == len(ds.sequences) - 1][-1]
    assert last_train.target == long_seq[-3] and last_train.history == tuple(long_seq[-23:-3])
    assert split.valid[-1].target == long_seq[-2] and split.valid[-1].history == tuple(long_seq[-22:-2])
    assert split.test[-1].target == long_seq[-1] and split.test[-1].history == tuple(long_seq[-21:-1])


def test_encoded_data_equals_the_tokenizer_path(tok):
    ds = _dataset()
    tasks = parse_tasks("seqrec,seqimage,item2image,image2item,fusionseqrec,fgfusionseqrec,seqitem2image")
    data = build_dataset_data(ds, tasks, tok, max_history=20, cache_dir=None)
    codes = dataset_codes(ds)
    split = ds.split(20)
    for part in data.train + data.valid:
        task = get_task(part.task)
        samples = None if task.kind == "item" else (split.train if part.split == "train" else split.valid)
        expected = task_variants(task, codes, samples, ds.num_items)
        assert len(part) == len(expected)
        for i, variants in enumerate(expected):
            for enc, (src, tgt) in zip(part.variants, variants, strict=True):
                assert enc.source(i).tolist() == encode_source(tok, src)
                assert enc.tgt[i].tolist() == encode_source(tok, tgt)
    assert not [p for p in data.valid if get_task(p.task).kind == "item"]
    # the capped history: 20 items of 5 text tokens, the task token and </s>
    seqrec = next(p for p in data.train if p.task == "seqrec")
    assert int(seqrec.variants[0].source_lengths().max()) == 2 + 20 * 5


def test_token_cache_is_reused_and_keyed_by_codes(tok, tmp_path, caplog):
    ds = _dataset()
    tasks = parse_tasks("seqrec,seqimage")
    first = build_dataset_data(ds, tasks, tok, cache_dir=tmp_path)
    caplog.set_level("INFO", logger="genrec.data_pipeline")
    second = build_dataset_data(ds, tasks, tok, cache_dir=tmp_path)
    assert "from cache" in caplog.text
    assert isinstance(second.train[0].variants[0].src, np.memmap)
    for a, b in zip(first.train + first.valid, second.train + second.valid):
        assert np.array_equal(a.variants[0].src, b.variants[0].src) and np.array_equal(a.items, b.items)
    changed = _dataset()
    changed.text_codes = [format_code([1, i, 2, 2], "text") for i in range(changed.num_items)]
    build_dataset_data(changed, tasks, tok, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 2
    build_dataset_data(ds, tasks, tok, max_history=5, cache_dir=tmp_path)
    assert len(list(tmp_path.iterdir())) == 3


def test_fusion_coin_is_seeded_per_epoch_and_index(tok):
    data = build_dataset_data(_dataset(), parse_tasks("seqrec,fusionseqrec"), tok, cache_dir=None)
    ts = TrainSet(data.train, seed=7)
    seqrec_n = len(data.train[0])
    c0, c0_again, c1 = ts.variant_choice(0), TrainSet(data.train, seed=7).variant_choice(0), ts.variant_choice(1)
    assert np.array_equal(c0, c0_again)
    assert not c0[:seqrec_n].any()  # one-direction tasks always use variant 0
    fusion = c0[seqrec_n:]
    assert 0.3 < fusion.mean() < 0.7 and not np.array_equal(fusion, c1[seqrec_n:])
    assert not np.array_equal(fusion, TrainSet(data.train, seed=8).variant_choice(0)[seqrec_n:])
    # the chosen direction decides the example's tokens
    g = seqrec_n + int(np.flatnonzero(fusion == 1)[0])
    src, tgt = ts.examples([g], c0)
    part, i = ts.locate(g)
    assert np.array_equal(src[0], part.variants[1].source(i)) and np.array_equal(tgt[0], part.variants[1].tgt[i])


def test_batches_depend_only_on_seed_and_epoch(tok):
    data = build_dataset_data(_dataset(), parse_tasks("seqrec,seqimage"), tok, cache_dir=None)
    ts = TrainSet(data.train, seed=1)
    for grouped in (False, True):
        a = ts.batches(3, 8, grouped)
        b = TrainSet(data.train, seed=1).batches(3, 8, grouped)
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
        assert sorted(np.concatenate(a).tolist()) == list(range(len(ts)))
    assert not np.array_equal(np.concatenate(ts.batches(0, 8)), np.concatenate(ts.batches(1, 8)))


def test_collate_pads_dynamically():
    srcs = [np.array([5, 6, 7, 1]), np.array([5, 1])]
    tgts = [np.array([10, 11, 1]), np.array([12, 13, 14, 1])]
    b = collate(srcs, tgts, pad_id=0, decoder_start_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 1], [5, 1, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert b["labels"].tolist() == [[10, 11, 1, -100], [12, 13, 14, 1]]
    assert b["decoder_input_ids"].tolist() == [[0, 10, 11, 0], [0, 12, 13, 14]]


def test_shard_step_covers_the_batch_once():
    idx = np.arange(100, 137)
    lengths = np.zeros(200, dtype=np.int64)
    lengths[idx] = np.random.default_rng(0).integers(3, 50, size=len(idx))
    for world, micro, cost in ((1, 37, 1e12), (1, 8, 1e12), (2, 8, 1e12), (3, 5, 1e12), (1, 37, 20), (2, 37, 20)):
        shards = [shard_step(idx, lengths, world, r, micro, cost) for r in range(world)]
        got = np.concatenate([c for s in shards for c in s])
        assert sorted(got.tolist()) == idx.tolist()
        assert all(len(c) <= micro for s in shards for c in s) and all(s for s in shards)
        if cost == 1e12:  # the fewest micro-batches
            assert max(len(s) for s in shards) == -(-(-(-len(idx) // world)) // micro)
        for s in shards:  # micro-batches are runs of the length-sorted order
            assert all(lengths[a].min() >= lengths[b].max() for a, b in zip(s, s[1:]))


def test_partition_minimises_padding_plus_forward_cost():
    import itertools

    rng = np.random.default_rng(1)
    for _ in range(20):
        lens = np.sort(rng.integers(1, 30, size=9))[::-1]
        cost, cap = float(rng.integers(0, 40)), int(rng.integers(2, 10))

        def total(cuts):
            return sum((b - a) * lens[a] + cost for a, b in cuts)

        best = min(total(list(zip((0,) + c, c + (9,)))) for k in range(9) for c in itertools.combinations(range(1, 9), k)
                   if all(b - a <= cap for a, b in zip((0,) + c, c + (9,))))
        cuts = partition_sorted(lens, cap, cost)
        assert cuts[0][0] == 0 and cuts[-1][1] == 9 and all(a[1] == b[0] for a, b in zip(cuts, cuts[1:]))
        assert total(cuts) == pytest.approx(best)
