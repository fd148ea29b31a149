"""Shared fixtures: a tiny synthetic dataset, and the real datasets when they are present."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmark modules (benchmarks.genrec_entry) import from the checkout
    sys.path.insert(0, str(REPO))
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Data root holding a small ``Synthetic`` dataset (200 users, 64 items); treat it as read-only."""
    from genrec.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("data")
    generate_synthetic(root, "Synthetic", num_users=200, num_items=64, num_topics=8, seed=0)
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is fastest, and on a shared machine extra threads only wait.

    Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load_benchmark(name: str):
    """Import ``benchmarks/<name>.py`` (a script folder, not a package) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{name}", REPO / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def train_tiny_run(synthetic_root: Path, tmp_path: Path, **train_kw) -> Path:
    """A tiny seqrec run on a copy of the synthetic dataset with random 4-level text codes; its folder."""
    import json
    import shutil

    import numpy as np

    from genrec.data import codes_to_json, format_code
    from genrec.training import default_config, train

    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    rng = np.random.default_rng(0)
    codes = [format_code([*rng.integers(0, 6, size=3), i], "text") for i in range(64)]
    (root / "Synthetic" / "Synthetic.index_lemb.json").write_text(json.dumps(codes_to_json(codes)))
    train(default_config("finetune", **{
        "datasets": ["Synthetic"], "data_root": str(root), "output_dir": str(tmp_path / "log"), "run": "r",
        "preset": "tiny", "tasks": ["seqrec"], "epochs": 1, "batch_size": 64, "micro_batch_size": 64,
        "num_threads": 1, "progress": False, "cache_dir": "none", "eval_users": 10, "eval_beams": 3, **train_kw}))
    return tmp_path / "log" / "r"


BASELINE_METRICS = ("HR@1", "HR@5", "HR@10", "NDCG@5", "NDCG@10")


def baseline_args(**kw):
    """The argparse namespace the baselines' registry reads, CPU and seed 0 unless given."""
    import argparse

    return argparse.Namespace(**{"set": [], "seed": 0, "cpu": True, **kw})


@pytest.fixture(scope="module")
def syn(synthetic_root):
    """The synthetic fixture dataset, loaded."""
    from genrec.data import load_dataset

    return load_dataset(synthetic_root, "Synthetic")


@pytest.fixture(scope="session")
def timed_root(synthetic_root, tmp_path_factory) -> Path:
    """The synthetic fixture plus synthetic timestamps (random gaps, many ties)."""
    import json
    import shutil

    import numpy as np

    root = tmp_path_factory.mktemp("timed")
    shutil.copytree(synthetic_root / "Synthetic", root / "Synthetic")
    inter = json.loads((root / "Synthetic" / "Synthetic.inter.json").read_text())
    rng = np.random.default_rng(0)
    times = {}
    for u, seq in inter.items():
        gaps = rng.choice([0, 0, 60, 3600, 86_400, 10 * 86_400], size=len(seq))
        times[u] = (1_000_000_000 + np.cumsum(gaps)).tolist()
    (root / "Synthetic" / "Synthetic.time.json").write_text(json.dumps(times))
    return root


@pytest.fixture(scope="module")
def timed(timed_root):
    """The timed fixture dataset, loaded (every baseline, time-aware or not, trains on it)."""
    from genrec.data import load_dataset

    return load_dataset(timed_root, "Synthetic")


def free_port() -> int:
    """A free local TCP port for a two-process launch (the default 29500 may be taken by another run)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
