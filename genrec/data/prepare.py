"""Turn raw Amazon review dumps into a dataset folder, or link an existing one.

``python -m genrec.data prepare --reviews R --meta M --dataset NAME --out data`` reads the 2018
release (``<Category>.json.gz`` + ``meta_<Category>.json.gz``; 2014 files have the same review
keys and are read too) or the 2023 release (``<Category>.jsonl[.gz]`` +
``meta_<Category>.jsonl[.gz]``) and writes ``<out>/<NAME>/``:

- ``NAME.inter.json`` ``{user: [items, oldest first]}``, ``NAME.item.json`` (cleaned title,
  description, brand, categories, image), ``NAME.item2id`` / ``NAME.user2id`` (tab-separated) and
  ``NAME.image_urls.json`` (first valid image URL per item, ``null`` when there is none) and
  ``NAME.time.json`` (unix seconds of every interaction, parallel to ``inter.json``).

Processing order: drop items without metadata (unless ``--keep-items-without-meta``), sort every
user's events by (time, asin), keep the first of repeated (user, item) events, k-core filter to a
fixed point, then number users by (first event time, user id) and items by first appearance
walking the users in that order. Nothing depends on hash or set order, so the same input always
gives the same ids.

``python -m genrec.data prepare --p5 DIR --dataset NAME --out data`` reads the P5 / IDGenRec
layout instead: ``DIR/user_sequence.txt`` (line = ``user item item ...``, oldest first) and, when
present, ``DIR/item_generative_indexing_phase_0.txt`` (``ASIN name...``, becomes ``NAME.item.json``).
Ordering rule: users are numbered 0, 1, ... in file order; an item's index is its order of first
appearance scanning the users in file order and each user's items left to right (no filtering).
Empty lines and repeated users are errors naming the file and line. See docs/p5.md.

An existing dataset in ``<out>/<NAME>/`` is refused unless ``--overwrite``; with it, the codes
(``NAME.index*.json``) and embeddings (``NAME*.npy``, masks included) derived from the old data
are deleted, and each deletion is logged.

``python -m genrec.data link --from ../shared/data --dataset Scientific --out data`` makes
``data/Scientific/`` hold symlinks to the source files, so outputs (embeddings, codes) can be
written beside read-only data without copying it.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import html
import json
import logging
import os
import re
from collections import defaultdict
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

from genrec.data.derived import guard_dataset_dir
from genrec.data.errors import DataError
from genrec.data.times import time_path, write_times
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags
from genrec.utils.io import atomic_output, atomic_write_json

logger = logging.getLogger(__name__)

# -- reading raw JSON lines ---------------------------------------------------------------


def _open_text(path: Path):
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_json_lines(path: str | Path, allow_python_literals: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, record)`` for every non-blank line of a (gzipped) JSON-lines file.

    ``allow_python_literals`` accepts lines written as Python dict literals (the 2014 metadata
    files were), parsed with ``ast.literal_eval``, which evaluates no code.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    rec = None
                    if allow_python_literals:
                        try:
                            rec = ast.literal_eval(line.strip())
                        except (ValueError, SyntaxError, MemoryError, RecursionError):
                            rec = None
                    if rec is None:
                        raise DataError(path, f"line {lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(rec, dict):
                    raise DataError(path, f"line {lineno}: expected a JSON object, got {type(rec).__name__}")
                yield lineno, rec
    except (OSError, EOFError, UnicodeDecodeError) as e:
        # gzip raises on truncated or corrupt archives mid-stream; name the file instead of a traceback
        raise DataError(path, f"cannot read: {e}") from None


# -- release formats ----------------------------------------------------------------------

RELEASES = ("2018", "2023")


def detect_release(path: str | Path) -> str:
    """``2018`` (reviewerID/asin/unixReviewTime) or ``2023`` (user_id/parent_asin/timestamp)."""
    for lineno, rec in iter_json_lines(path):
        if "reviewerID" in rec:
            return "2018"
        if "user_id" in rec:
            return "2023"
        raise DataError(path, f"line {lineno}: cannot tell the release: expected 'reviewerID' (2018) or "
                        f"'user_id' (2023) among keys {sorted(rec)[:10]}")
    raise DataError(path, "no records")


def _review_fields(release: str) -> tuple[str, str, str]:
    return ("reviewerID", "asin", "unixReviewTime") if release == "2018" else ("user_id", "parent_asin", "timestamp")


def read_reviews(path: str | Path, release: str) -> list[tuple[str, str, int]]:
    """``[(user, asin, time)]`` in file order; times are only compared, so seconds vs ms is harmless."""
    path = Path(path)
    ukey, ikey, tkey = _review_fields(release)
    events = []
    intern: dict[str, str] = {}  # many events share a user or item string; keep one copy of each
    for lineno, rec in iter_json_lines(path):
        missing = [k for k in (ukey, ikey, tkey) if rec.get(k) in (None, "")]
        if missing:
            raise DataError(path, f"line {lineno}: missing {', '.join(missing)} (is this the {release} release?)")
        t = rec[tkey]
        if isinstance(t, bool) or not isinstance(t, (int, float, str)):
            raise DataError(path, f"line {lineno}: {tkey} {t!r} is not a number")
        try:
            t = int(t)
        except ValueError:
            raise DataError(path, f"line {lineno}: {tkey} {t!r} is not an integer timestamp") from None
        u, i = str(rec[ukey]), str(rec[ikey])
        events.append((intern.setdefault(u, u), intern.setdefault(i, i), t))
    if not events:
        raise DataError(path, "no reviews")
    return events


# -- item text ----------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """Collects text content, dropping tags and the bodies of script/style elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "li", "div", "tr"):
            self.parts.append(" ")

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


_WS = re.compile(r"\s+")


def clean_text(value: Any, max_chars: int = 2000) -> str:
    """HTML-unescape, strip tags, collapse whitespace, and truncate to ``max_chars``.

    Lists are joined with spaces. Long text is cut at a word boundary when one is near the limit,
    never blanked (the reference blanked texts of 2,000+ characters, losing their information).
    ``max_chars <= 0`` disables truncation.
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = " ".join(clean_text(v, 0) for v in value)
    text = str(value)
    if "<" in text or "&" in text:
        parser = _TextExtractor()
        parser.feed(text)
        parser.close()
        text = html.unescape("".join(parser.parts))  # second pass: dumps hold doubly escaped "&amp;amp;"
    text = _WS.sub(" ", text).strip()
    if max_chars > 0 and len(text) > max_chars:
        cut = text[:max_chars]
        space = cut.rfind(" ")
        text = (cut[:space] if space >= max_chars * 0.8 else cut).rstrip()
    return text


def _valid_url(u: Any) -> bool:
    return isinstance(u, str) and u.strip().lower().startswith(("http://", "https://")) and " " not in u.strip()


def first_image_url(rec: dict, release: str) -> str | None:
    """The first valid image URL, preferring high resolution; ``None`` when there is none."""
    if release == "2023":
        for img in rec.get("images") or []:
            if isinstance(img, dict):
                for key in ("hi_res", "large", "thumb"):
                    if _valid_url(img.get(key)):
                        return img[key].strip()
        return None
    for key in ("imageURLHighRes", "imageURL", "imUrl"):
        urls = rec.get(key)
        for u in [urls] if isinstance(urls, str) else (urls or []):
            if _valid_url(u):
                return u.strip()
    return None


def _flatten(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _flatten(v)]
    return [str(value)]


def _categories(values: list[str], max_chars: int) -> str:
    seen: list[str] = []
    for v in values:
        v = clean_text(v, 0)
        if v and v not in seen:
            seen.append(v)
    return clean_text(", ".join(seen), max_chars)


def item_fields(rec: dict, release: str, max_chars: int) -> dict[str, Any]:
    """``{title, description, brand, categories, image}`` from one metadata record.

    2023: ``description`` falls back to ``features`` when empty; ``brand`` is ``store`` (or the
    ``details`` Brand). 2018/2014: ``category`` / nested ``categories`` lists are flattened.
    """
    if release == "2023":
        desc = clean_text(rec.get("description"), max_chars) or clean_text(rec.get("features"), max_chars)
        details = rec.get("details") if isinstance(rec.get("details"), dict) else {}
        brand = rec.get("store") or details.get("Brand") or details.get("brand")
        cats = _flatten(rec.get("categories"))
    else:
        desc = clean_text(rec.get("description"), max_chars)
        brand = rec.get("brand")
        cats = _flatten(rec.get("category") if rec.get("category") is not None else rec.get("categories"))
    return {
        "title": clean_text(rec.get("title"), max_chars),
        "description": desc,
        "brand": clean_text(brand, max_chars),
        "categories": _categories(cats, max_chars),
        "image": first_image_url(rec, release),
    }


def read_meta(path: str | Path, release: str, wanted: set[str], max_chars: int) -> dict[str, dict[str, Any]]:
    """Cleaned fields for the asins in ``wanted``; the first record of a repeated asin wins."""
    path = Path(path)
    key = "asin" if release == "2018" else "parent_asin"
    out: dict[str, dict[str, Any]] = {}
    for lineno, rec in iter_json_lines(path, allow_python_literals=(release == "2018")):
        asin = rec.get(key)
        if asin in (None, ""):
            raise DataError(path, f"line {lineno}: missing {key}")
        asin = str(asin)
        if asin in wanted and asin not in out:
            out[asin] = item_fields(rec, release, max_chars)
    return out


# -- filtering and numbering -----------------------------------------------------------------


def user_sequences(events: list[tuple[str, str, int]]) -> dict[str, list[tuple[int, str]]]:
    """Per user, ``[(time, asin)]`` sorted by (time, asin), keeping the first of repeated items."""
    by_user: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for u, i, t in events:
        by_user[u].append((t, i))
    out = {}
    for u, evs in by_user.items():
        evs.sort()
        seen: set[str] = set()
        kept = []
        for t, i in evs:
            if i not in seen:
                seen.add(i)
                kept.append((t, i))
        out[u] = kept
    return out


def k_core(seqs: dict[str, list[tuple[int, str]]], user_k: int, item_k: int) -> dict[str, list[tuple[int, str]]]:
    """Drop users with fewer than ``user_k`` and items with fewer than ``item_k`` events until stable."""
    seqs = dict(seqs)
    while True:
        counts: dict[str, int] = defaultdict(int)
        for evs in seqs.values():
            for _, i in evs:
                counts[i] += 1
        rare = {i for i, c in counts.items() if c < item_k}
        changed = False
        nxt = {}
        for u, evs in seqs.items():
            if rare:
                kept = [e for e in evs if e[1] not in rare]
                changed |= len(kept) != len(evs)
            else:
                kept = evs
            if len(kept) >= user_k:
                nxt[u] = kept
            else:
                changed = True
        seqs = nxt
        if not changed:
            return seqs


def number(seqs: dict[str, list[tuple[int, str]]]) -> tuple[list[str], list[str], list[list[int]]]:
    """Users ordered by (first event time, user id); items numbered by first appearance in that walk."""
    users = sorted(seqs, key=lambda u: (seqs[u][0][0], u))
    item2id: dict[str, int] = {}
    sequences = []
    for u in users:
        sequences.append([item2id.setdefault(i, len(item2id)) for _, i in seqs[u]])
    items = sorted(item2id, key=item2id.__getitem__)
    return users, items, sequences


# -- the prepare command ---------------------------------------------------------------------


@dataclass
class PrepareConfig:
    reviews: Path
    dataset: str
    out: Path = Path("data")
    meta: Path | None = None
    release: str = "auto"
    k_core: int = 5
    user_k: int | None = None
    item_k: int | None = None
    max_text_chars: int = 2000
    keep_items_without_meta: bool = False
    overwrite: bool = False


def _write_id_map(path: Path, ids: list[str]) -> None:
    for s in ids:
        if "\t" in s or "\n" in s:
            raise DataError(path, f"original id {s!r} contains a tab or newline")
    with atomic_output(path) as tmp:
        tmp.write_text("".join(f"{s}\t{k}\n" for k, s in enumerate(ids)), encoding="utf-8")


def prepare(cfg: PrepareConfig) -> dict[str, Any]:
    """Run the whole conversion; returns summary statistics (also logged)."""
    user_k = cfg.k_core if cfg.user_k is None else cfg.user_k
    item_k = cfg.k_core if cfg.item_k is None else cfg.item_k
    if user_k < 3:
        raise ValueError(f"users need at least 3 interactions for leave-one-out; got user k-core {user_k}")
    if item_k < 1:
        raise ValueError(f"item k-core must be >= 1, got {item_k}")
    release = detect_release(cfg.reviews) if cfg.release == "auto" else cfg.release
    if release not in RELEASES:
        raise ValueError(f"unknown release {release!r}; expected one of {RELEASES} or 'auto'")

    events = read_reviews(cfg.reviews, release)
    stats: dict[str, Any] = {"release": release, "raw_events": len(events)}
    meta: dict[str, dict[str, Any]] | None = None
    if cfg.meta is not None:
        meta = read_meta(cfg.meta, release, {i for _, i, _ in events}, cfg.max_text_chars)
        if not cfg.keep_items_without_meta:
            before = len(events)
            events = [e for e in events if e[1] in meta]
            stats["events_without_meta"] = before - len(events)
    seqs = user_sequences(events)
    stats["duplicate_events"] = len(events) - sum(len(s) for s in seqs.values())
    seqs = k_core(seqs, user_k, item_k)
    if not seqs:
        raise DataError(cfg.reviews, f"no users left after the {user_k}/{item_k}-core filter")
    users, items, sequences = number(seqs)

    empty = {"title": "", "description": "", "brand": "", "categories": "", "image": None}
    item_json = {str(k): dict((meta or {}).get(asin, empty)) for k, asin in enumerate(items)}
    image_urls = {k: v["image"] for k, v in item_json.items()}

    dir = cfg.out / cfg.dataset
    dir.mkdir(parents=True, exist_ok=True)
    deleted = guard_dataset_dir(dir, cfg.dataset, cfg.overwrite)
    stats["deleted"] = [p.name for p in deleted]
    atomic_write_json(dir / f"{cfg.dataset}.inter.json", {str(u): s for u, s in enumerate(sequences)})
    atomic_write_json(dir / f"{cfg.dataset}.item.json", item_json, indent=1)
    atomic_write_json(dir / f"{cfg.dataset}.image_urls.json", image_urls, indent=1)
    _write_id_map(dir / f"{cfg.dataset}.item2id", items)
    _write_id_map(dir / f"{cfg.dataset}.user2id", users)
    # 2023 dumps give milliseconds; time.json is unix seconds (the order was fixed above, in ms)
    div = 1000 if release == "2023" else 1
    write_times(time_path(dir, cfg.dataset), [str(u) for u in range(len(users))],
                [[t // div for t, _ in seqs[u]] for u in users])

    n_inter = sum(len(s) for s in sequences)
    stats.update({
        "users": len(users), "items": len(items), "interactions": n_inter,
        "mean_seq_len": round(n_inter / len(users), 4), "user_k": user_k, "item_k": item_k,
        "items_with_title": sum(bool(v["title"]) for v in item_json.values()),
        "items_with_image": sum(v is not None for v in image_urls.values()),
        "out": str(dir),
    })
    logger.info("prepared %s: %d users, %d items, %d interactions", cfg.dataset, len(users), len(items), n_inter)
    return stats


# -- the link command ------------------------------------------------------------------------


def link_dataset(src_root: str | Path, name: str, out_root: str | Path) -> list[Path]:
    """Mirror ``src_root/name`` under ``out_root/name``: real folders, one symlink per file.

    Existing links to the same target are kept; a different existing file is an error, so real
    outputs are never overwritten. Returns the links created.
    """
    src = (Path(src_root) / name).resolve()
    if not src.is_dir():
        raise DataError(src, f"source dataset folder not found (looked for {name} under {Path(src_root)})")
    dst = Path(out_root) / name
    created = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        rel = Path(dirpath).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        for fname in sorted(filenames):
            target = Path(dirpath) / fname
            link = dst / rel / fname
            if link.is_symlink():
                if Path(os.readlink(link)) == target:
                    continue
                raise DataError(link, f"exists and links to {os.readlink(link)}, not {target}")
            if link.exists():
                raise DataError(link, "exists and is not a link; refusing to replace it")
            link.symlink_to(target)
            created.append(link)
    return created


# -- CLI -------------------------------------------------------------------------------------


@dataclass
class PrepareArgs:
    """The flags of ``python -m genrec.data prepare``."""

    reviews: str | None = flag(None, "<Category>.json.gz (2018) or <Category>.jsonl[.gz] (2023)")
    recbole: str | None = flag(None, "read RecBole atomic files DIR/<dataset>.inter and .item instead "
                               "(genrec.data.recbole)", metavar="DIR")
    p5: str | None = flag(None, "P5/IDGenRec folder with user_sequence.txt (+ optional "
                          "item_generative_indexing_phase_0.txt); users numbered in file order, items by first "
                          "appearance (see docs/p5.md)", metavar="DIR")
    meta: str | None = flag(None, "meta_<Category>.json.gz / .jsonl[.gz] (item text and images)")
    dataset: str = flag("", "output dataset name (folder and file prefix)", required=True)
    out: str = flag("data", "data root; files go to <out>/<dataset>/")
    release: str = flag("auto", "review dump release", choices=("auto",) + RELEASES)
    k_core: int = flag(5, "minimum events per user and per item", aliases=("--min-count",))
    user_k: int | None = flag(None, "override the user threshold (>= 3)")
    item_k: int | None = flag(None, "override the item threshold")
    max_text_chars: int = flag(2000, "truncate each text field to this many characters (0 = no limit)")
    keep_items_without_meta: bool = flag(False, "keep items that have no metadata record (otherwise they are dropped "
                                         "before k-core)")
    overwrite: bool = flag(False, "replace an existing dataset; deletes its codes (*.index*.json) and "
                           "embeddings (*.npy)")


@dataclass
class LinkArgs:
    """The flags of ``python -m genrec.data link``."""

    src: str = flag("", "source data root, e.g. ../shared/data", flag="--from", required=True)
    dataset: list[str] = flag([], "dataset name(s)", nargs="+", required=True)
    out: str = flag("data", "data root the links go to")


def _run_prepare(ns: argparse.Namespace) -> int:
    args = PrepareArgs(**given_flags(ns, PrepareArgs))
    sources = [n for n, v in (("--reviews", args.reviews), ("--recbole", args.recbole), ("--p5", args.p5)) if v]
    if len(sources) != 1:
        raise ValueError("prepare needs exactly one of --reviews (Amazon dumps), --recbole DIR (RecBole atomic "
                         f"files) or --p5 DIR (P5 folder){'; got ' + ', '.join(sources) if sources else ''}")
    if args.meta and not args.reviews:
        raise ValueError("--meta goes with --reviews; --recbole and --p5 read item text from their own folder")
    if args.recbole:
        from genrec.data.recbole import prepare_recbole

        print(json.dumps(prepare_recbole(args.recbole, args.dataset, args.out, args.k_core), indent=2))
        return 0
    if args.p5 is not None:
        from genrec.data.p5 import prepare_p5

        print(json.dumps(prepare_p5(args.p5, args.dataset, args.out, args.overwrite), indent=2))
        return 0
    cfg = PrepareConfig(
        reviews=Path(args.reviews), meta=Path(args.meta) if args.meta else None, dataset=args.dataset,
        out=Path(args.out), release=args.release, k_core=args.k_core, user_k=args.user_k, item_k=args.item_k,
        max_text_chars=args.max_text_chars, keep_items_without_meta=args.keep_items_without_meta,
        overwrite=args.overwrite,
    )
    print(json.dumps(prepare(cfg), indent=2))
    return 0


def _run_link(ns: argparse.Namespace) -> int:
    args = LinkArgs(**given_flags(ns, LinkArgs))
    for name in args.dataset:
        created = link_dataset(args.src, name, args.out)
        logger.info("%s: %d new links under %s", name, len(created), Path(args.out) / name)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="convert Amazon 2018/2023 review dumps or a P5 folder into a dataset folder",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_flags(p, PrepareArgs)
    p.set_defaults(func=_run_prepare)

    link = sub.add_parser("link", help="make <out>/<dataset>/ hold symlinks to a read-only dataset folder")
    add_dataclass_flags(link, LinkArgs)
    link.set_defaults(func=_run_link)
