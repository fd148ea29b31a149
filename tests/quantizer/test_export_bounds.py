"""generate_codes: a tight codebook fails fast with an estimate; exports leave no temp files and
replace codes and report together."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from index import generate_codes, train
from index.collisions import AssignmentPolicy, assignment_beams, candidate_count
from index.config import QuantizerConfig
from index.quantizers import build_quantizer

TINY = ["--hidden-dims", "32,16", "--code-dim", "8", "--levels", "2", "--codebook-size", "8",
        "--batch-size", "16", "--eval-every", "1", "--kmeans-iters", "5", "--threads", "1", "--no-progress"]




@pytest.fixture(scope="module")
def ckpt(synthetic_root, tmp_path_factory) -> Path:
    """A 2-level x 8 quantizer: 64 possible codes for the 64 synthetic items, as tight as it gets."""
    run = tmp_path_factory.mktemp("q") / "run"
    assert train.main(["--data-root", str(synthetic_root), "--dataset", "Synthetic", "--embedding", "synthetic-text",
                       "--modality", "text", "--run-dir", str(run), "--epochs", "1", *TINY]) == 0
    return run / "best"


def test_beam_schedule_is_bounded_by_the_candidate_limit():
    assert assignment_beams(1000, 4, 16, 65536, 10**9) == [16 * 2**k for k in range(13)]
    beams = assignment_beams(20000, 4, 16, 65536, 10_000_000)
    assert beams[0] == 16 and candidate_count(20000, 4, beams[-1]) <= 10_000_000 < candidate_count(20000, 4, beams[-1] * 2)
    assert assignment_beams(20000, 4, 16, 65536, 1000) == []


def test_tight_codebook_fails_fast_suggesting_dedup_token():
    x = torch.randn(60, 4, generator=torch.Generator().manual_seed(0))
    x[:40] = x[0]  # 40 identical items in 64 possible codes
    model = build_quantizer(QuantizerConfig(kind="rqkmeans", levels=2, codebook_size=8, kmeans_iters=5), 4)
    model.fit_codebooks(x, torch.Generator().manual_seed(0))
    z = model.latent(x)
    nearest = model.rq.encode(z).numpy()
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"too tight.*collide in 64 possible codes.*--policy dedup-token"):
        AssignmentPolicy(beam=4, max_candidates=500).resolve(z, model.rq, nearest)
    assert time.perf_counter() - t0 < 5
    # with room it still resolves every collision
    res = AssignmentPolicy(beam=4, max_candidates=10**6).resolve(z, model.rq, nearest)
    assert len(np.unique(res.codes, axis=0)) == 60


def test_cli_tight_codebook_is_a_clear_error(ckpt, synthetic_root, tmp_path, capsys):
    rc = generate_codes.main(["--ckpt", str(ckpt), "--data-root", str(synthetic_root), "--out", str(tmp_path),
                              "--max-candidates", "10", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "--policy dedup-token" in err and "--max-candidates" in err
    assert not list(tmp_path.iterdir())  # nothing written
    assert generate_codes.main(["--ckpt", str(ckpt), "--data-root", str(synthetic_root), "--out", str(tmp_path),
                                "--max-candidates", "0"]) == 2


def _hidden(dir: Path) -> list[str]:
    return sorted(p.name for p in dir.iterdir() if p.name.startswith("."))


def test_failed_report_write_keeps_old_codes_and_report_and_no_temp(ckpt, synthetic_root, tmp_path, monkeypatch):
    out = tmp_path / "codes"
    args = ["--ckpt", str(ckpt), "--data-root", str(synthetic_root), "--out", str(out), "--dedup-token"]
    assert generate_codes.main(args) == 0
    codes, report = out / "Synthetic.index_lemb.json", out / "Synthetic.lemb-report.json"
    old_codes, old_report = codes.read_bytes(), report.read_bytes()
    assert json.loads(old_report)["code_sha256"] == hashlib.sha256(old_codes).hexdigest()
    (out / ".Synthetic.index_lemb.json.x1y2.tmp").write_bytes(b"")  # left by a kill -9 of an earlier export

    real = Path.write_text

    def failing(self, text, *a, **kw):
        if self.name.startswith(".Synthetic.lemb-report.json."):
            raise OSError("disk full")
        return real(self, text, *a, **kw)

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(OSError, match="disk full"):
        generate_codes.export(generate_codes.config_from_args(generate_codes.build_parser().parse_args(
            ["--ckpt", str(ckpt), "--data-root", str(synthetic_root), "--out", str(out), "--no-progress"])))
    assert codes.read_bytes() == old_codes and report.read_bytes() == old_report  # one unit: neither replaced
    assert _hidden(out) == []  # the stale temp was removed, and the failed write left none


def test_sigterm_during_an_atomic_write_leaves_no_temp_file(tmp_path):
    import subprocess
    import sys

    code = ("import os, signal, sys\n"
            "from genrec.utils.io import atomic_outputs, terminate_as_exit\n"
            "with terminate_as_exit():\n"
            "    with atomic_outputs([sys.argv[1] + '/a.json', sys.argv[1] + '/b.json']) as (a, b):\n"
            "        a.write_text('{}')\n"
            "        os.kill(os.getpid(), signal.SIGTERM)\n"
            "        b.write_text('{}')\n")
    repo = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=repo, capture_output=True, timeout=60,
                          env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 143, proc.stderr
    assert list(tmp_path.iterdir()) == []
