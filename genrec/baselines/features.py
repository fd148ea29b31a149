"""Pick and validate the item-embedding matrices a content-aware baseline reads.

``"auto"`` picks a known embedding if the dataset has one (text is required, image optional);
a name given explicitly must exist. Every failure is a ``DataError`` naming the file and problem.
"""

from __future__ import annotations

import numpy as np

from genrec.data import DataError, RecDataset

TEXT_PREFERENCE = ("all-MiniLM-L6-v2", "synthetic-text")
IMAGE_PREFERENCE = ("clip-vit-l14", "clip", "synthetic-image")
_IMAGE_HINTS = ("image", "clip", "vit")


class NotApplicable(DataError):
    """The dataset lacks what a model needs (e.g. no text embeddings): a benchmark reports "n/a"."""


def _is_image(name: str) -> bool:
    return any(h in name.lower() for h in _IMAGE_HINTS)


def resolve_embedding(dataset: RecDataset, name: str | None, modality: str, required: bool) -> str | None:
    """The embedding name to load for ``modality`` (or None for an optional one that is absent)."""
    available = dataset.available_embeddings()
    if name in (None, "", "none"):
        if required:
            raise ValueError(f"a {modality} embedding is required")
        return None
    if name != "auto":
        if name not in available:
            raise DataError(dataset.embedding_path(name),
                            f"{modality} embeddings {name!r} not found for dataset {dataset.name} "
                            f"(available: {available or 'none'})")
        return name
    preference = TEXT_PREFERENCE if modality == "text" else IMAGE_PREFERENCE
    for cand in preference:
        if cand in available:
            return cand
    fallback = [a for a in available if _is_image(a) == (modality == "image")]
    if fallback:
        return fallback[0]
    if required:
        raise NotApplicable(dataset.dir, f"dataset {dataset.name} has no {modality} embeddings "
                        f"({dataset.name}.emb-<model>.npy; available: {available or 'none'})")
    return None


def load_features(dataset: RecDataset, name: str) -> np.ndarray:
    """``[num_items, d]`` float32, each column standardised (encoders differ wildly in scale)."""
    emb = dataset.embedding(name)  # DataError naming the file on wrong row count, NaN/inf, bad dtype
    std = emb.std(axis=0)
    return ((emb - emb.mean(axis=0)) / np.where(std > 0, std, 1.0)).astype(np.float32)
