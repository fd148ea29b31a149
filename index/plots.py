"""Codebook-usage figure: for each level, how many items each code holds (sorted)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from genrec.utils.io import atomic_output


def plot_usage(codes: np.ndarray, sizes: Sequence[int], path: str | Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers / CI
    import matplotlib.pyplot as plt

    from index.metrics import level_stats

    stats = level_stats(codes, sizes)
    fig, axes = plt.subplots(1, len(sizes), figsize=(3.2 * len(sizes), 2.8), squeeze=False)
    for level, (ax, k) in enumerate(zip(axes[0], sizes)):
        counts = np.sort(np.bincount(codes[:, level], minlength=k))[::-1]
        ax.bar(np.arange(k), counts, width=1.0, color="tab:blue")
        ax.set_title(f"level {level + 1}: {stats['codes_used'][level]}/{k} used\n"
                     f"perplexity {stats['perplexity'][level]:.1f}", fontsize=9)
        ax.set_xlabel("code (sorted by items)", fontsize=8)
        if level == 0:
            ax.set_ylabel("items", fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_output(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
