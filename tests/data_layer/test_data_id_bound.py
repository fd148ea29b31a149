"""Item ids far beyond the item count (no item.json) are rejected without walking range(max id)."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from genrec.data import DataError, load_dataset
from genrec.data.codes import load_codes

REPO = Path(__file__).resolve().parents[2]


def _instruments_layout(root: Path, huge: int) -> Path:
    dir = root / "Toy"
    dir.mkdir(parents=True)
    inter = {"0": [0, 1, 2], "1": [1, 2, huge], "2": [2, 0, 1]}
    (dir / "Toy.inter.json").write_text(json.dumps(inter))
    (dir / "Toy.index_lemb.json").write_text(json.dumps({str(i): [f"<a_{i}>", "<b_0>"] for i in range(3)}))
    return dir


def test_huge_id_is_rejected_naming_the_offender(tmp_path):
    _instruments_layout(tmp_path, 10**12)
    with pytest.raises(DataError, match=r"Toy.inter.json.*below 4.*user 1 item 1000000000000"):
        load_dataset(tmp_path, "Toy")


def test_item2id_sets_the_bound(tmp_path):
    dir = _instruments_layout(tmp_path, 4)
    (dir / "Toy.index_lemb.json").unlink()
    with pytest.raises(DataError, match=r"4 distinct items.*below 4.*user 1 item 4"):  # 0,1,2,4: a gap, no item list
        load_dataset(tmp_path, "Toy")
    (dir / "Toy.item2id").write_text("".join(f"A{i}\t{i}\n" for i in range(5)))
    assert load_dataset(tmp_path, "Toy").num_items == 5  # item 3 is listed, just never bought
    (dir / "Toy.inter.json").write_text(json.dumps({"0": [0, 1, 2], "1": [1, 2, 5]}))
    with pytest.raises(DataError, match=r"Toy.item2id lists 5 items.*user 1 item 5"):
        load_dataset(tmp_path, "Toy")


def _vm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 64 << 30


def test_code_file_without_item_count_is_bounded_by_its_length(tmp_path):
    path = tmp_path / "codes.json"
    path.write_text(json.dumps({"0": ["<a_0>"], "1": ["<a_1>"], str(10**12): ["<a_2>"]}))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_bytes() + (3 << 30), hard))
    try:  # an unbounded version hits MemoryError here instead of taking the machine's memory
        with pytest.raises(DataError, match=r"out of range 0..2 \(first: \[1000000000000\]"):
            load_codes(path)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_stats_cli_is_bounded(tmp_path):
    _instruments_layout(tmp_path, 10**12)

    def limit() -> None:  # the unbounded version grows at ~160 MB/s: fail it fast, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    proc = subprocess.run([sys.executable, "-m", "genrec.data", "stats", "--data-root", str(tmp_path), "--dataset", "Toy"],
                          capture_output=True, text=True, timeout=120, preexec_fn=limit, cwd=REPO,
                          env={"PYTHONPATH": str(REPO), "OPENBLAS_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2, proc.stderr[-500:]
    assert "first offenders: user 1 item 1000000000000" in proc.stderr
    assert "Traceback" not in proc.stderr
