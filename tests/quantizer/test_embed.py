"""Text embeddings with the real bundled MiniLM; image embeddings with tiny random vision models."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from genrec.data import DataError, load_dataset
from index.embed import (ImageEmbedConfig, ImageEncoder, TextEmbedConfig, TextEncoder, _local_or_hub, embed_image,
                         embed_text, item_texts, main, output_name)

ITEMS = [
    {"title": "Fender acoustic guitar strings, phosphor bronze", "description": "Light gauge strings for acoustic guitars."},
    {"title": "Ernie Ball electric guitar strings", "description": "Nickel wound strings for electric guitar."},
    {"title": "Borosilicate glass laboratory beaker 500 ml", "description": ""},
    {"title": "", "description": "", "brand": "Acme", "categories": "Office, Paper"},
    {"title": "Stainless steel staples, 1000 count", "description": "Heavy duty staples for staple guns."},
]


def write_dataset(root: Path, name: str = "E", items: list[dict] = ITEMS) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    n = len(items)
    (d / f"{name}.inter.json").write_text(json.dumps({str(u): [(u + k) % n for k in range(3)] for u in range(n)}))
    (d / f"{name}.item.json").write_text(json.dumps({str(i): m for i, m in enumerate(items)}))
    return d


@pytest.fixture(scope="module")
def minilm() -> TextEncoder:
    return TextEncoder(max_length=128)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# -- text -------------------------------------------------------------------------------------


def test_item_texts_modes():
    meta = dict(enumerate(ITEMS))
    mean = item_texts(meta, "mean")
    assert mean[0] == [ITEMS[0]["title"], ITEMS[0]["description"]]
    assert mean[2] == [ITEMS[2]["title"]]  # an empty description is left out, not embedded as ""
    assert mean[3] == ["Acme Office, Paper"]  # nothing else: brand + categories
    concat = item_texts(meta, "concat")
    assert concat[1] == ["Ernie Ball electric guitar strings. Nickel wound strings for electric guitar."]
    assert item_texts({0: {"title": "", "description": None}}, "mean") == [[""]]
    with pytest.raises(ValueError, match="unknown text mode"):
        item_texts(meta, "sum")


def test_text_embedding_file(minilm, tmp_path, monkeypatch):
    write_dataset(tmp_path)
    # reuse the module's loaded model instead of loading the weights again
    monkeypatch.setattr("index.embed.TextEncoder", lambda *a, **k: minilm)
    summary = embed_text(TextEmbedConfig(data_root=tmp_path, dataset="E", batch_size=2), progress=False)
    path = tmp_path / "E" / "E.emb-all-MiniLM-L6-v2.npy"
    assert summary["output"] == str(path) and summary["mode"] == "concat" and summary["texts"] == 5
    concat = np.load(path)
    # concat (default): one text per item
    t_d = minilm.encode([ITEMS[0]["title"] + ". " + ITEMS[0]["description"]], progress=False)[0]
    np.testing.assert_allclose(concat[0], t_d, atol=1e-5)
    summary = embed_text(TextEmbedConfig(data_root=tmp_path, dataset="E", batch_size=2, mode="mean", name="mean"),
                         progress=False)
    assert summary["texts"] == 8
    emb = np.load(summary["output"])
    assert emb.shape == (5, 384) and emb.dtype == np.float32 and np.isfinite(emb).all()
    # the dataset loader finds and validates it
    ds = load_dataset(tmp_path, "E")
    assert ds.available_embeddings() == ["all-MiniLM-L6-v2", "mean"]
    assert ds.embedding("all-MiniLM-L6-v2").shape == (5, 384)

    # row = mean of the separately embedded title and description
    t, d = minilm.encode([ITEMS[0]["title"], ITEMS[0]["description"]], progress=False)
    np.testing.assert_allclose(emb[0], (t + d) / 2, atol=1e-5)
    np.testing.assert_allclose(emb[2], minilm.encode([ITEMS[2]["title"]], progress=False)[0], atol=1e-5)

    # semantics: the two guitar-string items are closer to each other than to the beaker or staples
    for e in (concat, emb):
        assert cos(e[0], e[1]) > max(cos(e[0], e[2]), cos(e[0], e[4])) + 0.2

    # determinism, and independence from batch size / padding
    again = embed_text(TextEmbedConfig(data_root=tmp_path, dataset="E", batch_size=64, mode="mean", name="again"),
                       progress=False)
    np.testing.assert_allclose(np.load(again["output"]), emb, atol=1e-5)
    embed_text(TextEmbedConfig(data_root=tmp_path, dataset="E", batch_size=2, mode="mean", name="same"),
               progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "E" / "E.emb-same.npy"), emb)

    # --normalize: unit rows, same directions
    norm = np.load(embed_text(TextEmbedConfig(data_root=tmp_path, dataset="E", normalize=True, mode="mean",
                                              name="n"), progress=False)["output"])
    np.testing.assert_allclose(np.linalg.norm(norm, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(norm, emb / np.linalg.norm(emb, axis=1, keepdims=True), atol=1e-5)

    # the two modes differ where an item has both fields
    assert concat.shape == emb.shape and not np.allclose(concat[0], emb[0], atol=1e-3)
    np.testing.assert_allclose(concat[2], emb[2], atol=1e-5)  # title only: both modes agree


def test_model_argument_local_or_hub(tmp_path):
    assert _local_or_hub(str(tmp_path)) == (str(tmp_path), True)
    assert _local_or_hub("BAAI/bge-small-en-v1.5") == ("BAAI/bge-small-en-v1.5", False)  # a hub id, dots and all
    for path in ("./missing", str(tmp_path / "missing"), "a/b/c"):
        with pytest.raises(FileNotFoundError, match="model folder not found"):
            _local_or_hub(path)
    assert output_name("BAAI/bge-small") == "BAAI-bge-small"
    with pytest.raises(ValueError):
        output_name("x.mask")


def test_text_cli_errors(tmp_path):
    (tmp_path / "E").mkdir()
    assert main(["text", "--data-root", str(tmp_path), "--dataset", "E"]) == 2  # no item.json
    write_dataset(tmp_path)
    assert main(["text", "--data-root", str(tmp_path), "--dataset", "E", "--model", str(tmp_path / "no-model")]) == 2


# -- images -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory) -> Path:
    """A randomly initialised CLIP vision tower with projection, saved like a real checkpoint."""
    import torch
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-clip")
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=16)
    CLIPVisionModelWithProjection(config).save_pretrained(path)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def make_images(folder: Path, names: dict[int, str]) -> None:
    """One distinct solid-with-stripes PNG per item; ``names`` maps item -> file stem."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for item, stem in names.items():
        arr = np.random.default_rng(item).integers(0, 256, size=(40, 48, 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{stem}.png")


@pytest.fixture
def image_dataset(tmp_path) -> tuple[Path, Path]:
    d = write_dataset(tmp_path / "data")
    (d / "E.item2id").write_text("".join(f"ASIN{i}\t{i}\n" for i in range(5)))
    imgs = tmp_path / "images"
    make_images(imgs, {0: "0", 1: "ASIN1", 4: "4"})  # item 1 found by ASIN; 2 missing
    (imgs / "3.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")  # 3 broken
    return tmp_path / "data", imgs


def test_image_missing_policy_fail(tiny_clip, image_dataset):
    root, imgs = image_dataset
    cfg = ImageEmbedConfig(encoder=str(tiny_clip), data_root=root, dataset="E", image_dir=imgs, on_missing="fail")
    with pytest.raises(DataError, match=r"2 of 5 items have no usable image \(1 missing, first \[2\]; 1 unreadable, first \[3\]\)"):
        embed_image(cfg, progress=False)
    assert not list((root / "E").glob("*.npy"))
    # the images are checked before the encoder is loaded: a bad encoder path is not even reached
    cfg.encoder = str(root / "no-such-encoder")
    with pytest.raises(DataError, match="2 of 5 items have no usable image"):
        embed_image(cfg, progress=False)
    assert main(["image", "--data-root", str(root), "--dataset", "E", "--encoder", str(tiny_clip),
                 "--image-dir", str(imgs), "--no-progress"]) == 2


def test_image_missing_policy_zero(tiny_clip, image_dataset):
    from PIL import Image

    root, imgs = image_dataset
    rc = main(["image", "--data-root", str(root), "--dataset", "E", "--encoder", str(tiny_clip), "--name", "clip",
               "--image-dir", str(imgs), "--on-missing", "zero", "--no-progress"])
    assert rc == 0
    emb = np.load(root / "E" / "E.emb-clip.npy")
    mask = np.load(root / "E" / "E.emb-clip.mask.npy")
    assert emb.shape == (5, 16) and emb.dtype == np.float32  # CLIP projection dim
    assert mask.tolist() == [True, True, False, False, True]
    assert not emb[2].any() and not emb[3].any()  # zero rows, never another item's image
    # each valid row is that item's own image, embedded alone
    enc = ImageEncoder(str(tiny_clip))
    for item, stem in ((0, "0"), (1, "ASIN1"), (4, "4")):
        alone = enc.encode([Image.open(imgs / f"{stem}.png").convert("RGB")])[0]
        np.testing.assert_allclose(emb[item], alone, atol=1e-5)
    assert len({emb[i].tobytes() for i in (0, 1, 4)}) == 3
    assert load_dataset(root, "E").embedding("clip").shape == (5, 16)
    # once every image exists, a "fail" run succeeds and removes the stale mask
    make_images(imgs, {2: "2", 3: "3"})
    (imgs / "3.jpg").unlink()
    embed_image(ImageEmbedConfig(encoder=str(tiny_clip), data_root=root, dataset="E", name="clip", image_dir=imgs,
                                 normalize=True), progress=False)
    assert not (root / "E" / "E.emb-clip.mask.npy").exists()
    np.testing.assert_allclose(np.linalg.norm(np.load(root / "E" / "E.emb-clip.npy"), axis=1), 1.0, atol=1e-5)


def test_other_vision_models(tmp_path, image_dataset):
    """A CLIP tower without projection gives its pooled output; a ViT goes through AutoModel."""
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTImageProcessor,
                              ViTModel)

    root, imgs = image_dataset
    make_images(imgs, {2: "2", 3: "3"})
    (imgs / "3.jpg").unlink()
    torch.manual_seed(0)
    tower = tmp_path / "tower"
    CLIPVisionModel(CLIPVisionConfig(hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=16)).save_pretrained(tower)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(tower)
    vit = tmp_path / "vit"
    ViTModel(ViTConfig(hidden_size=20, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2,
                       image_size=32, patch_size=16)).save_pretrained(vit)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit)
    for path, dim in ((tower, 24), (vit, 20)):
        out = embed_image(ImageEmbedConfig(encoder=str(path), data_root=root, dataset="E", image_dir=imgs),
                          progress=False)
        emb = np.load(out["output"])
        assert emb.shape == (5, dim) and np.isfinite(emb).all() and out["missing"] == 0


def test_images_from_urls_with_cache(tiny_clip, image_dataset, tmp_path):
    root, imgs = image_dataset
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(imgs))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = {"0": f"{base}/0.png", "1": f"{base}/ASIN1.png", "2": None, "3": f"{base}/gone.png", "4": f"{base}/4.png"}
    (root / "E" / "E.image_urls.json").write_text(json.dumps(urls))
    cache = tmp_path / "cache"
    cfg = ImageEmbedConfig(encoder=str(tiny_clip), data_root=root, dataset="E", urls=Path("E.image_urls.json"),
                           cache_dir=cache, on_missing="zero", name="web")
    try:
        first = embed_image(cfg, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert first["missing"] == 2 and len(list(cache.iterdir())) == 3
    mask = np.load(root / "E" / "E.emb-web.mask.npy")
    assert mask.tolist() == [True, True, False, False, True]
    emb = np.load(first["output"])
    # the server is gone: a second run is served from the cache and gives the same rows
    second = embed_image(cfg, progress=False)
    np.testing.assert_array_equal(np.load(second["output"]), emb)
    (root / "E" / "E.image_urls.json").write_text(json.dumps({"0": "ftp://x/y.png"}))
    with pytest.raises(DataError, match="not an http"):
        embed_image(cfg, progress=False)


def test_image_config_errors(tiny_clip, image_dataset):
    root, imgs = image_dataset
    with pytest.raises(ValueError, match="exactly one of"):
        embed_image(ImageEmbedConfig(encoder=str(tiny_clip), data_root=root, dataset="E"), progress=False)
    with pytest.raises(DataError, match="image folder not found"):
        embed_image(ImageEmbedConfig(encoder=str(tiny_clip), data_root=root, dataset="E",
                                     image_dir=imgs / "none"), progress=False)


def test_no_progress_silences_the_weight_loading_bar(tmp_path):
    """--no-progress: no bar at all on stderr, transformers' "Loading weights" included (fresh process)."""
    import os
    import subprocess
    import sys

    write_dataset(tmp_path)
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "index.embed", "text", "--data-root", str(tmp_path), "--dataset", "E", "--threads", "1"]
    quiet = subprocess.run(cmd + ["--no-progress", "--name", "q"], capture_output=True, text=True, env=env, cwd=repo)
    assert quiet.returncode == 0, quiet.stderr
    assert "Loading weights" not in quiet.stderr and "it/s" not in quiet.stderr and "%|" not in quiet.stderr
