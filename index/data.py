"""Embeddings of one or several datasets as one matrix, and the way back to per-dataset slices."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from genrec.data import DataError, load_dataset


@dataclass
class EmbeddingSet:
    """Rows of ``x`` are the items of ``names[0]``, then ``names[1]``, ... (``offsets`` marks the cuts)."""

    names: list[str]
    dirs: list[Path]
    paths: list[Path]
    offsets: list[int]  # len(names) + 1
    x: np.ndarray
    # False for rows that hold no real embedding (a missing image written as a zero row); they
    # get codes at export but must not shape the codebooks during training.
    valid: np.ndarray | None = None

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def slices(self) -> list[slice]:
        return [slice(a, b) for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def split(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Cut an array aligned with ``x`` back into one array per dataset."""
        if len(rows) != self.offsets[-1]:
            raise ValueError(f"expected {self.offsets[-1]} rows, got {len(rows)}")
        return {name: rows[s] for name, s in zip(self.names, self.slices())}


def load_embedding_set(root: str | Path, datasets: Sequence[str], embedding: str,
                       expect_dim: int | None = None) -> EmbeddingSet:
    """Load ``<root>/<ds>/<ds>.emb-<embedding>.npy`` for every dataset, validated and concatenated."""
    if not datasets:
        raise ValueError("no dataset given")
    parts, dirs, paths, offsets, masks = [], [], [], [0], []
    for name in datasets:
        ds = load_dataset(root, name)
        path = ds.embedding_path(embedding)
        if not path.is_file():
            have = ", ".join(ds.available_embeddings()) or "none"
            raise DataError(path, f"embedding file not found (embeddings available for {name}: {have})")
        x = ds.embedding(embedding)  # validates rows == items, finite values, 2-D float
        if x.shape[0] == 0:
            raise DataError(path, "has no rows: the dataset has no items to index")
        if expect_dim is not None and x.shape[1] != expect_dim:
            raise DataError(path, f"has dimension {x.shape[1]} but the quantizer expects {expect_dim}")
        if parts and x.shape[1] != parts[0].shape[1]:
            raise DataError(path, f"has dimension {x.shape[1]} but {datasets[0]}'s embeddings have "
                            f"{parts[0].shape[1]}: one shared quantizer needs one embedding size")
        mask = ds.embedding_mask(embedding)
        masks.append(np.ones(x.shape[0], dtype=bool) if mask is None else mask)
        parts.append(x)
        dirs.append(ds.dir)
        paths.append(path)
        offsets.append(offsets[-1] + x.shape[0])
    valid = np.concatenate(masks)
    if not valid.any():
        raise DataError(paths[0], "every row is masked as missing: nothing to train on")
    return EmbeddingSet(list(datasets), dirs, paths, offsets, np.concatenate(parts).astype(np.float32, copy=False),
                        valid)
