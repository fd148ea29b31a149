"""Training data for the generator: tokenise every (dataset, task, split) once, cache, batch.

Token ids are built with numpy from a per-item code-id table instead of calling the tokenizer on
every sample: a source is ``[task token] + codes of the history, oldest first + [</s>]`` and a
target is ``codes of the item + [</s>]``, exactly what
``tokenizer.convert_tokens_to_ids(task.variants(...)[k][0]) + [eos]`` gives (``encode_source``;
checked on a few samples of every part at build time). Encoded parts are cached as ``.npy``
files keyed by a hash of everything they depend on and memory-mapped on load, so several
processes share one copy. Batches are formed per epoch from ``(seed, epoch)`` only, so every
process and every resumed run sees the same order, and each fusion sample's direction is a
seeded coin of ``(seed, epoch, index)``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from genrec.data.codes import Codes
from genrec.data.dataset import RecDataset
from genrec.data.split import Sample
from genrec.tasks import Task, dataset_codes
from genrec.tokenizer import code_token_ids
from genrec.utils.io import atomic_dir

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
LABEL_PAD = -100


def encode_source(tokenizer, tokens: Sequence[str]) -> list[int]:
    """Token ids of a source (or target) token list, with the closing ``</s>``."""
    return list(tokenizer.convert_tokens_to_ids(list(tokens))) + [tokenizer.eos_token_id]


@dataclass
class Encoded:
    """One direction of one part: ragged sources (flat + offsets) and fixed-length targets."""

    src: np.ndarray      # int32 [total source tokens]
    offsets: np.ndarray  # int64 [n + 1]
    tgt: np.ndarray      # int32 [n, target length incl. </s>]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def source(self, i: int) -> np.ndarray:
        return self.src[self.offsets[i]:self.offsets[i + 1]]

    def source_lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sources(self) -> list[list[int]]:
        return [self.source(i).tolist() for i in range(len(self))]


@dataclass
class Part:
    """The encoded examples of one task on one dataset split; ``variants`` = one per direction."""

    dataset: str
    task: str
    split: str
    variants: list[Encoded]
    items: np.ndarray   # int64 [n]: target item of each example
    users: np.ndarray   # int64 [n]: user index (-1 for item tasks)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class DatasetData:
    """Everything training and validation need from one dataset."""

    name: str
    codes: dict[str, Codes]   # dedup applied when the run asks for it
    tasks: list[Task]
    train: list[Part]
    valid: list[Part]


# -- encoding ------------------------------------------------------------------------------
def _encode_sources(task_id: int, eos: int, src_codes: np.ndarray, hist_flat: np.ndarray,
                    hist_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised ``[task] + codes(history) + [eos]`` for every sample at once: (flat ids, offsets)."""
    n = len(hist_len)
    width = src_codes.shape[1]
    src_len = hist_len * width + 2
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(src_len, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.int32)
    body = np.ones(len(flat), dtype=bool)
    body[offsets[:-1]] = False
    body[offsets[1:] - 1] = False
    flat[body] = src_codes[hist_flat].reshape(-1)
    flat[offsets[:-1]] = task_id
    flat[offsets[1:] - 1] = eos
    return flat, offsets


def _encode_direction(task_id: int, eos: int, src_codes: np.ndarray, tgt_codes: np.ndarray,
                      hist_flat: np.ndarray, hist_len: np.ndarray, targets: np.ndarray) -> Encoded:
    flat, offsets = _encode_sources(task_id, eos, src_codes, hist_flat, hist_len)
    tgt = np.empty((len(hist_len), tgt_codes.shape[1] + 1), dtype=np.int32)
    tgt[:, :-1] = tgt_codes[targets]
    tgt[:, -1] = eos
    return Encoded(flat, offsets, tgt)


def _task_token_id(tokenizer, token: str) -> int:
    task_id = tokenizer.convert_tokens_to_ids(token)
    if task_id == tokenizer.unk_token_id:
        raise ValueError(f"task token {token} is not in the tokenizer's vocabulary")
    return task_id


def _histories(samples: Sequence[Sample]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    hist_len = np.fromiter((len(s.history) for s in samples), dtype=np.int64, count=len(samples))
    flat = np.fromiter((i for s in samples for i in s.history), dtype=np.int64, count=int(hist_len.sum()))
    targets = np.fromiter((s.target for s in samples), dtype=np.int64, count=len(samples))
    users = np.fromiter((s.user for s in samples), dtype=np.int64, count=len(samples))
    return flat, hist_len, targets, users


def encode_part(task: Task, split: str, dataset: str, tokenizer, code_ids: dict[str, np.ndarray],
                samples: Sequence[Sample] | None, num_items: int) -> Part:
    """Encode one task on one split; item tasks use every item once (history = the item itself)."""
    eos = tokenizer.eos_token_id
    if task.kind == "item":
        flat = np.arange(num_items, dtype=np.int64)
        hist_len = np.ones(num_items, dtype=np.int64)
        targets, users = flat, np.full(num_items, -1, dtype=np.int64)
    else:
        flat, hist_len, targets, users = _histories(samples or [])
    variants = []
    for d in task.directions:
        variants.append(_encode_direction(_task_token_id(tokenizer, d.token), eos, code_ids[d.source],
                                          code_ids[d.target], flat, hist_len, targets))
    return Part(dataset, task.name, split, variants, targets, users)


def build_sources(tokenizer, task: Task, codes: dict[str, Codes], samples: Sequence[Sample], direction: int = 0
                  ) -> list[list[int]]:
    """Token ids (with ``</s>``) of each sample's source for one direction of ``task``: the encoding
    training uses, for evaluation, fusion and ``recommend`` (item tasks: history = the one item)."""
    if not samples:
        return []
    d = task.directions[direction]
    flat, hist_len, _, _ = _histories(samples)
    # only the items the histories name: one recommend call must not convert the whole catalogue
    used, local = np.unique(flat, return_inverse=True)
    table = codes[d.source]
    src_codes = code_token_ids(tokenizer, [table[i] for i in used]).numpy().astype(np.int32).reshape(len(used), -1)
    ids, offsets = _encode_sources(_task_token_id(tokenizer, d.token), tokenizer.eos_token_id, src_codes,
                                   local.reshape(-1), hist_len)
    return [ids[offsets[i]:offsets[i + 1]].tolist() for i in range(len(samples))]


def _self_check(part: Part, task: Task, codes: dict[str, Codes], tokenizer, histories: Sequence[Sample] | None) -> None:
    """The vectorised encoding must equal the tokenizer path on a few samples (cheap guard)."""
    n = len(part)
    for i in sorted({0, n // 2, n - 1}) if n else []:
        if task.kind == "item":
            expected = task.variants(codes, [i], i)
        else:
            s = histories[i]
            expected = task.variants(codes, s.history, s.target)
        for enc, (src, tgt) in zip(part.variants, expected):
            if enc.source(i).tolist() != encode_source(tokenizer, src) or enc.tgt[i].tolist() != encode_source(tokenizer, tgt):
                raise AssertionError(f"{part.dataset}/{part.task}: vectorised encoding differs from the tokenizer at sample {i}")


# -- cache --------------------------------------------------------------------------------
def _digest(h: "hashlib._Hash", arr: np.ndarray) -> None:
    h.update(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())


def cache_key(ds: RecDataset, codes: dict[str, Codes], tasks: Sequence[Task], max_history: int, tokenizer) -> str:
    """Hash of everything the encoded arrays depend on: sequences, codes, tasks, cap, vocabulary."""
    h = hashlib.sha256()
    h.update(json.dumps({"version": CACHE_VERSION, "dataset": ds.name, "max_history": max_history,
                         "num_items": ds.num_items,
                         "tasks": [[t.name, t.kind, [[d.source, d.target, d.token] for d in t.directions]] for t in tasks],
                         }, sort_keys=True).encode())
    _digest(h, np.fromiter((len(s) for s in ds.sequences), dtype=np.int64, count=len(ds.sequences)))
    _digest(h, np.fromiter((i for s in ds.sequences for i in s), dtype=np.int64))
    for modality in sorted(codes):
        h.update(modality.encode())
        h.update("\n".join(" ".join(c) for c in codes[modality]).encode())
    vocab = tokenizer.get_vocab()
    h.update(json.dumps(sorted(vocab.items(), key=lambda kv: kv[1])).encode())
    return h.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("GENREC_CACHE", Path.home() / ".cache" / "genrec")) / "tokens"


def _save_parts(folder: Path, parts: dict[str, list[Part]]) -> None:
    manifest = {}
    with atomic_dir(folder) as tmp:
        for split, plist in parts.items():
            for j, p in enumerate(plist):
                stem = f"{split}.{j}"
                np.save(tmp / f"{stem}.items.npy", p.items)
                np.save(tmp / f"{stem}.users.npy", p.users)
                for v, enc in enumerate(p.variants):
                    np.save(tmp / f"{stem}.v{v}.src.npy", enc.src)
                    np.save(tmp / f"{stem}.v{v}.off.npy", enc.offsets)
                    np.save(tmp / f"{stem}.v{v}.tgt.npy", enc.tgt)
                manifest.setdefault(split, []).append({"stem": stem, "dataset": p.dataset, "task": p.task,
                                                       "variants": len(p.variants)})
        (tmp / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")


def _load_parts(folder: Path) -> dict[str, list[Part]]:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    out: dict[str, list[Part]] = {}
    for split, entries in manifest.items():
        for e in entries:
            stem = folder / e["stem"]
            load = lambda suffix: np.load(f"{stem}.{suffix}.npy", mmap_mode="r")  # noqa: E731
            variants = [Encoded(load(f"v{v}.src"), load(f"v{v}.off"), load(f"v{v}.tgt")) for v in range(e["variants"])]
            out.setdefault(split, []).append(Part(e["dataset"], e["task"], split, variants, load("items"), load("users")))
    return out


def build_dataset_data(ds: RecDataset, tasks: Sequence[Task], tokenizer, *, max_history: int = 20,
                       dedup: bool = True, cache_dir: str | Path | None = None, write_cache: bool = True) -> DatasetData:
    """Encode ``tasks`` on ``ds`` (train: every prefix; valid: the leave-one-out validation target).

    ``cache_dir=None`` disables the cache. Raises ValueError when a code token is missing from the
    tokenizer's vocabulary (a checkpoint built for other codes).
    """
    codes = dataset_codes(ds, dedup=dedup)
    needed = {m for t in tasks for m in t.modalities}
    code_ids = {}
    for m in sorted(needed):
        if m not in codes:
            raise ValueError(f"dataset {ds.name} has no {m} codes, needed by "
                             f"{', '.join(t.name for t in tasks if m in t.modalities)}")
        try:
            code_ids[m] = code_token_ids(tokenizer, codes[m]).numpy().astype(np.int32)
        except ValueError as e:
            raise ValueError(f"dataset {ds.name} {m} codes do not fit the tokenizer: {e}") from None
    folder = None
    if cache_dir is not None:
        folder = Path(cache_dir) / f"{ds.name}-{cache_key(ds, codes, tasks, max_history, tokenizer)[:24]}"
        if (folder / "manifest.json").is_file():
            try:
                parts = _load_parts(folder)
                logger.info("%s: loaded encoded samples from cache %s", ds.name, folder)
                return DatasetData(ds.name, codes, list(tasks), parts.get("train", []), parts.get("valid", []))
            except (OSError, ValueError, KeyError) as e:
                logger.warning("ignoring unreadable token cache %s (%s)", folder, e)
    split = ds.split(max_history)
    parts: dict[str, list[Part]] = {"train": [], "valid": []}
    for task in tasks:
        for name, samples in (("train", split.train), ("valid", split.valid)):
            if task.kind == "item" and name == "valid":
                continue  # item tasks train on every item; nothing is held out for them
            part = encode_part(task, name, ds.name, tokenizer, code_ids, samples, ds.num_items)
            _self_check(part, task, codes, tokenizer, samples)
            parts[name].append(part)
    if folder is not None and write_cache:
        try:
            _save_parts(folder, parts)
        except OSError as e:
            logger.warning("could not write token cache %s (%s); continuing without it", folder, e)
    return DatasetData(ds.name, codes, list(tasks), parts["train"], parts["valid"])


# -- training set, batches, collation -------------------------------------------------------
class TrainSet:
    """All training parts as one index space, with per-epoch seeded batches and fusion coins."""

    def __init__(self, parts: Sequence[Part], seed: int):
        self.parts = [p for p in parts if len(p)]
        self.seed = seed
        sizes = np.array([len(p) for p in self.parts], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(sizes)])
        self.n_variants = np.repeat(np.array([len(p.variants) for p in self.parts], dtype=np.int64), sizes)
        # source/target lengths per (example, variant); variant 1 falls back to 0 for one-direction parts
        self._src_len = np.zeros((len(self), 2), dtype=np.int64)
        self._tgt_len = np.zeros((len(self), 2), dtype=np.int64)
        for p, s in zip(self.parts, self.starts[:-1]):
            for v, enc in enumerate(p.variants[:2]):
                self._src_len[s:s + len(p), v] = enc.source_lengths()
                self._tgt_len[s:s + len(p), v] = enc.tgt.shape[1]
            if len(p.variants) == 1:
                self._src_len[s:s + len(p), 1] = self._src_len[s:s + len(p), 0]
                self._tgt_len[s:s + len(p), 1] = self._tgt_len[s:s + len(p), 0]

    def __len__(self) -> int:
        return int(self.starts[-1])

    def variant_choice(self, epoch: int) -> np.ndarray:
        """Which direction each example uses this epoch: a fair seeded coin for two-direction tasks."""
        rng = np.random.default_rng([self.seed, epoch, 0xC01])
        return (rng.integers(0, 1 << 30, size=len(self)) % self.n_variants).astype(np.int64)

    def source_lengths(self, choice: np.ndarray) -> np.ndarray:
        return self._src_len[np.arange(len(self)), choice]

    def target_tokens(self, idx: np.ndarray, choice: np.ndarray) -> int:
        """Number of label tokens of the given examples (every target token counts, </s> included)."""
        return int(self._tgt_len[idx, choice[idx]].sum())

    def batches(self, epoch: int, batch_size: int, group_by_length: bool = False,
                choice: np.ndarray | None = None, mega: int = 32) -> list[np.ndarray]:
        """The epoch's global batches (example indices), a function of ``(seed, epoch)`` only.

        Without ``group_by_length`` batches are plain random draws (the training step still sorts
        each batch by length into micro-batches, which removes most padding at no statistical
        cost). With it (Hugging Face's length-grouped sampling), a random permutation is cut into
        mega-chunks of ``mega`` batches, each sorted by source length and cut into batches, and the
        batch order is shuffled: batches then hold similar lengths even without micro-batching,
        at the price of less random batch composition.
        """
        from genrec.utils.batching import length_grouped

        rng = np.random.default_rng([self.seed, epoch, 0xBA7])
        perm = rng.permutation(len(self))
        if group_by_length:
            lengths = self.source_lengths(self.variant_choice(epoch) if choice is None else choice)
            return length_grouped(perm, lengths, batch_size, mega, rng.permutation)
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]

    def locate(self, g: int) -> tuple[Part, int]:
        k = int(np.searchsorted(self.starts, g, side="right") - 1)
        return self.parts[k], int(g - self.starts[k])

    def examples(self, idx: Sequence[int], choice: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        srcs, tgts = [], []
        for g in idx:
            part, i = self.locate(int(g))
            enc = part.variants[int(choice[g]) if len(part.variants) > 1 else 0]
            srcs.append(enc.source(i))
            tgts.append(enc.tgt[i])
        return srcs, tgts

    def target_keys(self, idx: Sequence[int], choice: np.ndarray) -> list[tuple[str, str]]:
        """``(dataset, target modality)`` of each example: which trie its target belongs to."""
        from genrec.tasks import get_task

        out = []
        for g in idx:
            part, _ = self.locate(int(g))
            v = int(choice[g]) if len(part.variants) > 1 else 0
            out.append((part.dataset, get_task(part.task).directions[v].target))
        return out


def collate(srcs: Sequence[np.ndarray], tgts: Sequence[np.ndarray], pad_id: int = 0,
            decoder_start_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad to the longest source/target of this batch; labels pad with -100 (ignored by the loss)."""
    b = len(srcs)
    s_len = max(len(s) for s in srcs)
    t_len = max(len(t) for t in tgts)
    input_ids = np.full((b, s_len), pad_id, dtype=np.int64)
    attention = np.zeros((b, s_len), dtype=np.int64)
    labels = np.full((b, t_len), LABEL_PAD, dtype=np.int64)
    dec = np.full((b, t_len), pad_id, dtype=np.int64)
    for i, (s, t) in enumerate(zip(srcs, tgts)):
        input_ids[i, :len(s)] = s
        attention[i, :len(s)] = 1
        labels[i, :len(t)] = t
        dec[i, 0] = decoder_start_id
        dec[i, 1:len(t)] = t[:-1]
    return {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(attention),
            "decoder_input_ids": torch.from_numpy(dec), "labels": torch.from_numpy(labels)}


def partition_sorted(lengths: np.ndarray, max_size: int, forward_cost: float) -> list[tuple[int, int]]:
    """Cut a length-sorted (longest first) run into micro-batches ``[start, end)``.

    Minimises the padded source tokens (``size * longest``) plus ``forward_cost`` tokens per
    micro-batch (the fixed cost of one forward/backward), with at most ``max_size`` examples
    each: a small dynamic programme, exact, O(n * max_size).
    """
    n = len(lengths)
    lens = np.asarray(lengths, dtype=np.float64)
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    back = np.zeros(n + 1, dtype=np.int64)
    for end in range(1, n + 1):
        lo = max(0, end - max_size)
        starts = np.arange(lo, end)
        cost = best[lo:end] + (end - starts) * lens[lo:end] + forward_cost
        k = int(np.argmin(cost))
        best[end] = cost[k]
        back[end] = lo + k
    cuts, end = [], n
    while end > 0:
        cuts.append((int(back[end]), end))
        end = int(back[end])
    return cuts[::-1]


def shard_step(idx: np.ndarray, lengths: np.ndarray, world: int, rank: int, micro_batch_size: int,
               forward_cost: float = 1e12) -> list[np.ndarray]:
    """This process's micro-batches of one global batch.

    The batch is sorted by source length (longest first) and dealt to the processes in turn, so
    each gets the same mix of lengths; each process then cuts its share into micro-batches of
    similar length (``partition_sorted``). With the default ``forward_cost`` that is the fewest
    micro-batches of at most ``micro_batch_size``; a realistic cost (about 100 tokens on a CPU)
    trades a few more forward passes for much less padding. Needs ``len(idx) >= world``.
    """
    order = idx[np.argsort(-lengths[idx], kind="stable")][rank::world]
    return [order[a:b] for a, b in partition_sorted(lengths[order], micro_batch_size, forward_cost)]
