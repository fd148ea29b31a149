"""Load a prepared dataset folder ``<root>/<ds>/`` into one validated object.

Files read (all optional except the interactions):

- ``<ds>.inter.json``: ``{user_id: [item_id, ...]}`` chronological; or RecBole-style
  ``<ds>.train.inter`` / ``.valid.inter`` / ``.test.inter`` when no ``inter.json`` exists.
- ``<ds>.item.json``: ``{item_id: {title, description, brand, categories, image?}}``.
- ``<ds>.index_lemb.json`` (text codes), ``<ds>.index_vitemb.json`` (image codes).
- ``<ds>.emb-<model>.npy``: row i = item i (``<ds>.emb-<model>.mask.npy`` marks valid rows).
- ``<ds>.item2id`` / ``<ds>.user2id``: ``original_id<TAB>index`` maps.
- ``<ds>.time.json``: ``{user_id: [unix seconds, ...]}`` parallel to ``inter.json`` (``genrec.data.times``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genrec.data.codes import CODE_FILE, Codes, count_duplicates, load_codes
from genrec.data.errors import DataError
from genrec.data.jsonio import read_json
from genrec.data.split import Split, leave_one_out
from genrec.data.times import load_times, time_path

logger = logging.getLogger(__name__)

MIN_INTERACTIONS = 3


@dataclass
class RecDataset:
    name: str
    dir: Path
    users: list[str]
    sequences: list[list[int]]
    num_items: int
    item_meta: dict[int, dict[str, Any]] | None = None
    text_codes: Codes | None = None
    image_codes: Codes | None = None
    text_codes_path: Path | None = None
    image_codes_path: Path | None = None
    item2id: dict[str, int] | None = None
    times: list[list[int | float]] | None = None  # parallel to sequences, when <ds>.time.json exists
    _emb_cache: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    # -- derived views -----------------------------------------------------------------
    @property
    def num_users(self) -> int:
        return len(self.sequences)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def split(self, max_history: int = 20, with_times: bool = False) -> Split:
        """Leave-one-out samples; ``with_times`` attaches times (an error when there are none)."""
        if with_times and self.times is None:
            raise DataError(time_path(self.dir, self.name), f"dataset {self.name} has no interaction times "
                            "(file not found); prepare it with times, e.g. python -m genrec.data prepare --recbole")
        return leave_one_out(self.sequences, max_history, self.times if with_times else None)

    def codes(self, modality: str) -> Codes:
        codes = self.text_codes if modality == "text" else self.image_codes if modality == "image" else None
        if modality not in ("text", "image"):
            raise ValueError(f"unknown modality {modality!r}; expected 'text' or 'image'")
        if codes is None:
            raise DataError(self.dir, f"dataset {self.name} has no {modality} codes "
                            f"(expected {self.name}.{'index_lemb' if modality == 'text' else 'index_vitemb'}.json)")
        return codes

    def item_title(self, item: int) -> str | None:
        if not self.item_meta:
            return None
        meta = self.item_meta.get(item)
        return None if meta is None else (meta.get("title") or None)

    # -- embeddings ----------------------------------------------------------------------
    def embedding_path(self, model: str) -> Path:
        return self.dir / f"{self.name}.emb-{model}.npy"

    def available_embeddings(self) -> list[str]:
        prefix = f"{self.name}.emb-"
        names = []
        for p in sorted(self.dir.glob(f"{prefix}*.npy")):
            stem = p.name[len(prefix):-len(".npy")]
            if not stem.endswith(".mask"):
                names.append(stem)
        return names

    def embedding(self, model: str) -> np.ndarray:
        """The ``[num_items, dim]`` float32 embedding matrix, validated (row count, finiteness)."""
        if model not in self._emb_cache:
            self._emb_cache[model] = load_embeddings(self.embedding_path(model), self.num_items)
        return self._emb_cache[model]

    def embedding_mask(self, model: str) -> np.ndarray | None:
        """Boolean ``[num_items]`` mask of rows that hold a real embedding, or None if no mask file exists.

        ``index.embed image --on-missing zero`` writes zero rows for items whose image is missing or
        broken, plus this mask; consumers must not treat those rows as real image features.
        """
        path = self.dir / f"{self.name}.emb-{model}.mask.npy"
        if not path.is_file():
            return None
        try:
            mask = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(path, f"not a valid .npy array: {e}") from None
        if mask.shape != (self.num_items,):
            raise DataError(path, f"mask has shape {mask.shape}, expected ({self.num_items},)")
        return mask.astype(bool)

    def stats(self) -> dict[str, Any]:
        lengths = [len(s) for s in self.sequences]
        out: dict[str, Any] = {
            "dataset": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "mean_seq_len": round(sum(lengths) / len(lengths), 4),
            "min_seq_len": min(lengths),
            "max_seq_len": max(lengths),
            "sparsity": round(1 - self.num_interactions / (self.num_users * self.num_items), 6),
            "modalities": {
                "text_codes": self.text_codes is not None,
                "image_codes": self.image_codes is not None,
                "item_text": self.item_meta is not None,
                "embeddings": self.available_embeddings(),
            },
        }
        for modality, codes, path in (("text", self.text_codes, self.text_codes_path),
                                      ("image", self.image_codes, self.image_codes_path)):
            if codes is not None:
                out[f"{modality}_codes"] = {
                    "file": path.name if path else None,
                    "levels": len(codes[0]),
                    "distinct": len(set(codes)),
                    # items beyond the first with each code (the README's "262 duplicates")
                    "duplicate_items": len(codes) - len(set(codes)),
                    "items_sharing_a_code": count_duplicates(codes),
                }
        return out


# -- individual loaders ------------------------------------------------------------------
def load_embeddings(path: str | Path, num_items: int | None = None, dim: int | None = None) -> np.ndarray:
    """Load and validate an ``.npy`` embedding matrix (row i = item i)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "embedding file not found")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(path, f"not a valid .npy array: {e}") from None
    if arr.ndim != 2:
        raise DataError(path, f"expected a 2-D [items, dim] array, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise DataError(path, f"expected floating-point embeddings, got dtype {arr.dtype}")
    if num_items is not None and arr.shape[0] != num_items:
        raise DataError(path, f"has {arr.shape[0]} rows but the dataset has {num_items} items (row i must be item i)")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(path, f"has dimension {arr.shape[1]}, expected {dim}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
    if bad.size:
        raise DataError(path, f"{bad.size} rows contain NaN or inf (first rows: {bad[:5].tolist()})")
    return arr


def load_inter_json(path: str | Path, min_interactions: int = MIN_INTERACTIONS) -> tuple[list[str], list[list[int]]]:
    path = Path(path)
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object {user_id: [item_id, ...]}")
    users: list[str] = []
    sequences: list[list[int]] = []
    for user, items in raw.items():
        if not isinstance(items, list):
            raise DataError(path, f"user {user}: expected a list of item ids, got {type(items).__name__}")
        seq = []
        for x in items:
            if isinstance(x, bool) or not isinstance(x, (int, str)):
                raise DataError(path, f"user {user}: item id {x!r} is not an integer")
            try:
                v = int(x)
            except ValueError:
                raise DataError(path, f"user {user}: item id {x!r} is not an integer") from None
            if v < 0:
                raise DataError(path, f"user {user}: item id {v} is negative")
            seq.append(v)
        users.append(str(user))
        sequences.append(seq)
    _check_sequences(path, users, sequences, min_interactions)
    return users, sequences


def _check_sequences(path: Path, users: list[str], sequences: list[list[int]], min_interactions: int) -> None:
    if not sequences:
        raise DataError(path, "no users / interactions: the dataset is empty")
    short = [u for u, s in zip(users, sequences) if len(s) < min_interactions]
    if short:
        raise DataError(path, f"{len(short)} users have fewer than {min_interactions} interactions, which "
                        f"leave-one-out cannot split (first: {short[:5]}); filter them when preparing the data")


def _read_recbole(path: Path) -> dict[str, list[tuple[list[int], int]]]:
    rows: dict[str, list[tuple[list[int], int]]] = {}
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        expected = ["user_id:token", "item_id_list:token_seq", "item_id:token"]
        if header != expected:
            raise DataError(path, f"unexpected RecBole header {header}; expected {expected}")
        for lineno, line in enumerate(f, start=2):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise DataError(path, f"line {lineno}: expected 3 tab-separated fields, got {len(parts)}")
            try:
                hist = [int(x) for x in parts[1].split()]
                target = int(parts[2])
            except ValueError:
                raise DataError(path, f"line {lineno}: item ids must be integers") from None
            rows.setdefault(parts[0], []).append((hist, target))
    return rows


def load_recbole(dir: Path, name: str, min_interactions: int = MIN_INTERACTIONS) -> tuple[list[str], list[list[int]]]:
    """Rebuild full sequences from RecBole ``.train/.valid/.test.inter`` files.

    Training rows are written newest-target first; reversed, their targets follow the oldest
    history item. Histories may be capped (50 in the MQL4GRec release), so the sequence is
    built from targets, not from the longest history.
    """
    train = _read_recbole(dir / f"{name}.train.inter")
    valid = _read_recbole(dir / f"{name}.valid.inter")
    test = _read_recbole(dir / f"{name}.test.inter")
    orphans = sorted(set(train) - set(test))
    if orphans:
        raise DataError(dir / f"{name}.train.inter", f"{len(orphans)} users have training rows but no test row "
                        f"(first: {orphans[:5]}); the three files must cover the same users")
    users, sequences = [], []
    for user in sorted(test, key=lambda u: (len(u), u) if u.isdigit() else (math.inf, u)):
        rows = list(reversed(train.get(user, [])))
        if user not in valid:
            raise DataError(dir / f"{name}.valid.inter", f"user {user} is in the test file but not the validation file")
        if rows:
            seq = [rows[0][0][0]] + [t for _, t in rows]
        else:
            seq = list(valid[user][0][0][-1:])
        seq.append(valid[user][0][1])
        seq.append(test[user][0][1])
        hist = test[user][0][0]
        if seq[-1 - len(hist):-1] != hist:
            raise DataError(dir / f"{name}.test.inter", f"user {user}: test history does not match the training rows")
        users.append(user)
        sequences.append(seq)
    _check_sequences(dir / f"{name}.test.inter", users, sequences, min_interactions)
    return users, sequences


def load_item_meta(path: Path) -> dict[int, dict[str, Any]]:
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise DataError(path, "expected a JSON object {item_id: {title, description, ...}}")
    meta = {}
    for key, value in raw.items():
        try:
            item = int(key)
        except ValueError:
            raise DataError(path, f"item id {key!r} is not an integer") from None
        if not isinstance(value, dict):
            raise DataError(path, f"item {item}: expected an object with title/description, got {type(value).__name__}")
        meta[item] = value
    ids = sorted(meta)
    if ids != list(range(len(ids))):
        missing = sorted(set(range(ids[-1] + 1)) - set(ids))
        raise DataError(path, f"item ids must be 0..{len(ids) - 1} without gaps (missing: {missing[:5]})")
    return meta


def load_id_map(path: Path) -> dict[str, int]:
    """``original_id<TAB>index`` lines; one index per id and one id per index."""
    out: dict[str, int] = {}
    owner: dict[int, str] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 2 or not parts[1].strip().lstrip("-").isdigit():
                raise DataError(path, f"line {lineno}: expected 'original_id<TAB>index'")
            key, index = parts[0], int(parts[1])
            if key in out:
                raise DataError(path, f"line {lineno}: id {key!r} is listed twice (indices {out[key]} and {index})")
            if index in owner:
                raise DataError(path, f"line {lineno}: ids {owner[index]!r} and {key!r} are both mapped to index {index}")
            out[key], owner[index] = index, key
    return out


def _item_map_from_user_sequence(path: Path) -> dict[str, int]:
    """``user_sequence.txt`` (line = user ASIN then item ASINs): item j = j-th distinct ASIN seen."""
    out: dict[str, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            for asin in line.split()[1:]:
                if asin not in out:
                    out[asin] = len(out)
    return out


def _check_id_bound(inter_src: Path, dir: Path, name: str, users: list[str], sequences: list[list[int]],
                    item2id: dict[str, int] | None) -> None:
    """Without ``item.json`` the item count comes from ``item2id`` (or the distinct ids seen).

    Taking ``max id + 1`` unchecked would let one stray id of 10^12 make every later step (code
    validation, embedding checks) walk ``range(max id)``; ids must stay below a count that some
    file actually lists.
    """
    if item2id is not None:
        bound, source = len(item2id), f"{name}.item2id lists {len(item2id)} items"
    else:
        distinct = len({i for s in sequences for i in s})
        bound, source = distinct, f"the interactions hold {distinct} distinct items (no {name}.item.json or {name}.item2id)"
    offenders = []
    for user, seq in zip(users, sequences):
        offenders.extend((user, i) for i in seq if i >= bound)
        if len(offenders) >= 5:
            break
    if offenders:
        first = ", ".join(f"user {u} item {i}" for u, i in offenders[:5])
        raise DataError(inter_src, f"item ids beyond the item count: {source}, so ids must be below {bound} "
                                   f"(first offenders: {first})")


def _default_code_path(dir: Path, name: str, modality: str) -> Path | None:
    explicit = dir / f"{name}.{CODE_FILE[modality]}.json"
    if explicit.is_file():
        return explicit
    if modality == "text":
        # A single other code file (e.g. ``Office.index_rqkmeans.json``) is taken as the text codes.
        others = [p for p in sorted(dir.glob(f"{name}.index*.json"))
                  if CODE_FILE["image"] not in p.name and not p.name.endswith(".spec.json")]
        if len(others) == 1:
            return others[0]
    return None


def code_paths(dir: Path, name: str, text_codes: str | Path | None = None,
               image_codes: str | Path | None = None) -> dict[str, Path | None]:
    """The code file of each modality that :func:`load_dataset` reads (None: the modality is absent)."""
    return {
        "text": Path(text_codes) if text_codes else _default_code_path(dir, name, "text"),
        "image": Path(image_codes) if image_codes else _default_code_path(dir, name, "image"),
    }


def load_dataset(
    root: str | Path,
    name: str,
    *,
    text_codes: str | Path | None = None,
    image_codes: str | Path | None = None,
    min_interactions: int = MIN_INTERACTIONS,
) -> RecDataset:
    """Load ``<root>/<name>/``; explicit ``text_codes``/``image_codes`` paths override discovery."""
    dir = Path(root) / name
    if not dir.is_dir():
        raise DataError(dir, f"dataset folder not found (looked for {name} under {Path(root).resolve()})")
    inter = dir / f"{name}.inter.json"
    if inter.is_file():
        users, sequences = load_inter_json(inter, min_interactions)
        inter_src = inter
    elif (dir / f"{name}.test.inter").is_file():
        users, sequences = load_recbole(dir, name, min_interactions)
        inter_src = dir / f"{name}.test.inter"
    else:
        raise DataError(dir, f"no interactions: expected {name}.inter.json or {name}.train/valid/test.inter")

    meta_path = dir / f"{name}.item.json"
    item_meta = load_item_meta(meta_path) if meta_path.is_file() else None
    max_id = max(max(s) for s in sequences)
    if item_meta is not None:
        num_items = len(item_meta)
        if max_id >= num_items:
            raise DataError(inter_src, f"item id {max_id} is out of range: {meta_path.name} lists {num_items} items")
    else:
        item2id_early = None
        if (dir / f"{name}.item2id").is_file():
            item2id_early = load_id_map(dir / f"{name}.item2id")
        _check_id_bound(inter_src, dir, name, users, sequences, item2id_early)
        num_items = max_id + 1

    paths = code_paths(dir, name, text_codes, image_codes)
    loaded: dict[str, Codes | None] = {}
    for modality, path in paths.items():
        if path is None:
            loaded[modality] = None
            continue
        codes = load_codes(path, num_items, modality)
        dup = count_duplicates(codes)
        if dup:
            logger.warning("%s: %d of %d items share their code with another item; use "
                           "genrec.data.make_codes_unique (dedup token) or re-export unique codes", path, dup, num_items)
        loaded[modality] = codes

    times = None
    if time_path(dir, name).is_file():
        times = load_times(time_path(dir, name), users, sequences)
    item2id = None
    if item_meta is None and item2id_early is not None:
        item2id = item2id_early
    elif (dir / f"{name}.item2id").is_file():
        item2id = load_id_map(dir / f"{name}.item2id")
    elif (dir / "user_sequence.txt").is_file():
        item2id = _item_map_from_user_sequence(dir / "user_sequence.txt")
    return RecDataset(
        name=name, dir=dir, users=users, sequences=sequences, num_items=num_items, item_meta=item_meta,
        text_codes=loaded["text"], image_codes=loaded["image"],
        text_codes_path=paths["text"], image_codes_path=paths["image"], item2id=item2id, times=times,
    )
