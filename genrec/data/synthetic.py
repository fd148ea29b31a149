"""The embedded default dataset: small, synthetic, deterministic, needs no download.

Items belong to latent topics. Text and image embeddings are noisy views of the topic (plus an
item-specific part), and titles/descriptions are built from topic words, so a real text encoder
also sees the topics. Users move between topics by a sparse transition matrix, pick items by
within-topic popularity, and often follow an item's fixed "successor". A sequence model can learn
these regularities; a popularity ranking cannot, which is what the quickstart demonstrates.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genrec.data.derived import guard_dataset_dir
from genrec.utils.cli_args import add_dataclass_flags, flag, given_flags
from genrec.utils.io import atomic_save_npy, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)

_TOPICS = [
    ("guitar", "acoustic strings fretboard strum chord"),
    ("drum", "snare cymbal stick beat percussion"),
    ("microphone", "vocal condenser studio recording cable"),
    ("keyboard", "piano synth keys midi octave"),
    ("amplifier", "tube watt speaker gain tone"),
    ("violin", "bow rosin orchestra classical string"),
    ("trumpet", "brass valve mouthpiece jazz horn"),
    ("pedal", "effect distortion reverb delay stomp"),
    ("ukulele", "soprano tenor nylon island small"),
    ("headphone", "monitor closed back studio mixing"),
    ("flute", "woodwind silver key embouchure band"),
    ("tuner", "clip chromatic pitch display battery"),
]
_ADJECTIVES = ["pro", "classic", "compact", "deluxe", "vintage", "premium", "student", "travel", "stage", "studio"]
_BRANDS = ["Acme", "Orion", "Vega", "Nimbus", "Helix", "Lumen", "Zephyr", "Atlas"]


@dataclass
class SyntheticConfig:
    num_users: int = flag(1200, "users")
    num_items: int = flag(400, "items (>= 2 * --num-topics)")
    num_topics: int = flag(8, f"item topics (at most {len(_TOPICS)})")
    min_len: int = flag(5, "shortest sequence (>= 3)")
    max_len: int = flag(14, "longest sequence")
    text_dim: int = flag(64, "width of the synthetic text embedding")
    image_dim: int = flag(48, "width of the synthetic image embedding")
    successor_prob: float = flag(0.4, "chance that the next item is the current item's fixed successor")
    seed: int = flag(0, "random seed")


@dataclass
class SyntheticArgs:
    """The flags of ``python -m genrec.data synthetic`` besides :class:`SyntheticConfig`'s."""

    out: str = flag("data", "data root; the dataset goes to <out>/<name>/")
    name: str = flag("Synthetic", "dataset name")
    overwrite: bool = flag(False, "replace an existing dataset; deletes its codes (*.index*.json) and "
                           "embeddings (*.npy)")


def _title(rng: np.random.Generator, topic: int, item: int) -> tuple[str, str, str]:
    noun, words = _TOPICS[topic % len(_TOPICS)]
    adj = _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
    brand = _BRANDS[rng.integers(len(_BRANDS))]
    title = f"{brand} {adj} {noun} model {item:04d}"
    picked = rng.choice(words.split(), size=3, replace=False)
    desc = f"A {adj} {noun} for players who care about {picked[0]}, {picked[1]} and {picked[2]}."
    return title, desc, brand


def generate_synthetic(root: str | Path, name: str = "Synthetic", overwrite: bool = False, **overrides) -> Path:
    """Write the synthetic dataset under ``<root>/<name>/`` and return that folder.

    An existing dataset there is refused unless ``overwrite``; then its codes and embeddings
    (derived from the old items) are deleted first.
    """
    cfg = SyntheticConfig(**overrides)
    if cfg.num_topics > len(_TOPICS):
        raise ValueError(f"num_topics must be at most {len(_TOPICS)}")
    if cfg.num_items < 2 * cfg.num_topics or cfg.min_len < 3 or cfg.max_len < cfg.min_len:
        raise ValueError("need num_items >= 2 * num_topics and 3 <= min_len <= max_len")
    rng = np.random.default_rng(cfg.seed)
    T, N = cfg.num_topics, cfg.num_items
    topic = np.arange(N) % T
    rng.shuffle(topic)

    # Embeddings: a shared topic centre seen through two different random "sensors".
    centres = rng.normal(size=(T, 32))
    text = centres[topic] @ rng.normal(size=(32, cfg.text_dim)) + 0.6 * rng.normal(size=(N, cfg.text_dim))
    image = centres[topic] @ rng.normal(size=(32, cfg.image_dim)) + 0.6 * rng.normal(size=(N, cfg.image_dim))

    # Sparse topic transitions: stay, move to one favourite neighbour, or jump anywhere.
    trans = np.full((T, T), 0.1 / T)
    for t in range(T):
        trans[t, t] += 0.35
        trans[t, (t + 1) % T] += 0.55
    trans /= trans.sum(axis=1, keepdims=True)
    popularity = rng.zipf(1.6, size=N).clip(max=50).astype(float)
    members = [np.flatnonzero(topic == t) for t in range(T)]
    successor = np.array([rng.choice(members[(topic[i] + 1) % T]) for i in range(N)])

    sequences: dict[str, list[int]] = {}
    for u in range(cfg.num_users):
        length = int(rng.integers(cfg.min_len, cfg.max_len + 1))
        t = int(rng.integers(T))
        cur = int(rng.choice(members[t], p=popularity[members[t]] / popularity[members[t]].sum()))
        seq = [cur]
        while len(seq) < length:
            if rng.random() < cfg.successor_prob and successor[cur] not in seq:
                cur = int(successor[cur])
            else:
                t = int(rng.choice(T, p=trans[topic[cur]]))
                cand = members[t]
                p = popularity[cand] * np.array([c not in seq for c in cand])
                if p.sum() == 0:
                    continue
                cur = int(rng.choice(cand, p=p / p.sum()))
            seq.append(cur)
        sequences[str(u)] = seq

    items = {}
    for i in range(N):
        title, desc, brand = _title(rng, int(topic[i]), i)
        items[str(i)] = {"title": title, "description": desc, "brand": brand,
                         "categories": f"Musical Instruments,{_TOPICS[int(topic[i])][0].title()}"}
    out = Path(root) / name
    out.mkdir(parents=True, exist_ok=True)
    guard_dataset_dir(out, name, overwrite)
    atomic_write_json(out / f"{name}.inter.json", sequences)
    atomic_write_json(out / f"{name}.item.json", items, indent=1)
    atomic_save_npy(out / f"{name}.emb-synthetic-text.npy", text.astype(np.float32))
    atomic_save_npy(out / f"{name}.emb-synthetic-image.npy", image.astype(np.float32))
    atomic_write_text(out / f"{name}.item2id", "".join(f"SYN{i:07d}\t{i}\n" for i in range(N)))
    atomic_write_json(out / f"{name}.topics.json", {str(i): int(t) for i, t in enumerate(topic)})
    logger.info("wrote synthetic dataset %s: %d users, %d items", out, cfg.num_users, N)
    return out


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synthetic", help="write the embedded synthetic default dataset")
    add_dataclass_flags(p, SyntheticArgs)
    add_dataclass_flags(p, SyntheticConfig)

    def run(ns: argparse.Namespace) -> int:
        args = SyntheticArgs(**given_flags(ns, SyntheticArgs))
        generate_synthetic(args.out, args.name, overwrite=args.overwrite, **given_flags(ns, SyntheticConfig))
        return 0

    p.set_defaults(func=run)
