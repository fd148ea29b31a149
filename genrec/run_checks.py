"""Does a run folder match what it is asked to do? Checks shared by evaluation and recommendation.

A training run records in its ``config.json`` the sha256 of every code file it trained on
(``code_files``: dataset -> modality -> file and hash) next to its task list. Decoding with other
codes, or with a task or modality the model never learned, produces confident nonsense, so both
are errors here rather than quietly worse numbers.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence

logger = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def code_fingerprints(data_root: str | Path, datasets: Sequence[str], text_codes: str | None = None,
                      image_codes: str | None = None) -> dict[str, dict[str, dict[str, str]]]:
    """``{dataset: {modality: {"file", "sha256"}}}`` for the code files training reads."""
    from genrec.data.dataset import code_paths

    out: dict[str, dict[str, dict[str, str]]] = {}
    for name in datasets:
        paths = code_paths(Path(data_root) / name, name, text_codes, image_codes)
        out[name] = {m: {"file": str(p), "sha256": file_sha256(p)} for m, p in paths.items() if p is not None}
    return out


def check_code_files(config: dict[str, Any], run_dir: Path, dataset: Any) -> None:
    """Raise ValueError when ``dataset``'s code files are not the ones the run trained on."""
    recorded = config.get("code_files")
    if recorded is None:
        logger.warning("run %s records no code-file fingerprints (trained before they were recorded): cannot "
                       "check that %s's code files are the ones it trained on", run_dir, dataset.name)
        return
    mine = recorded.get(dataset.name)
    if mine is None:  # a dataset the run never trained on: load_dataset already warned
        return
    for modality, path in (("text", dataset.text_codes_path), ("image", dataset.image_codes_path)):
        want = mine.get(modality)
        if path is None or want is None:
            continue
        got = file_sha256(path)
        if got != want["sha256"]:
            raise ValueError(f"{path}: these {modality} codes are not the ones run {run_dir} trained on "
                             f"({want['file']}, sha256 {want['sha256'][:12]}..., this file {got[:12]}...); "
                             "decode with the training code file, or train a run on this one")


def check_trained(config: dict[str, Any], run_dir: Path, dataset: str, tasks: Iterable[str],
                  modalities: Iterable[str]) -> None:
    """Raise ValueError for a task the run never trained, or a modality it had no codes for."""
    tasks, modalities = list(tasks), list(modalities)
    trained = config.get("tasks")
    if trained:
        missing = [t for t in tasks if t not in trained]
        if missing:
            raise ValueError(f"run {run_dir} never trained task {', '.join(missing)} (it trained "
                             f"{', '.join(trained)}): its model would decode tokens it never learned")
    mine = (config.get("code_files") or {}).get(dataset)
    if mine is not None:
        absent = sorted(set(m for m in modalities if m not in mine))
        if absent:
            raise ValueError(f"run {run_dir} trained no {', '.join(absent)} codes for dataset {dataset} "
                             f"(it had only {', '.join(sorted(mine)) or 'no'} code files)")
