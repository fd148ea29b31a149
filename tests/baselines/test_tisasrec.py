"""TiSASRec: interval matrices, time-aware attention, training with times, resume, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from genrec.baselines import SequenceData, TiSASRec, TiSASRecConfig
from genrec.baselines.cli import main as cli_main
from genrec.baselines.data import PAD
from genrec.baselines.registry import MODELS
from genrec.baselines.tisasrec import TimeAwareAttention, interval_matrix
from genrec.data import DataError, load_dataset

torch.set_num_threads(1)

from conftest import BASELINE_METRICS as METRICS  # noqa: E402
from conftest import baseline_args as _args  # noqa: E402




def test_interval_matrix_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    B, L, k = 5, 7, 4
    times = torch.randint(0, 40, (B, L), generator=g).sort(dim=1).values * 7
    times[1] = 1234  # one row where every time is equal
    lengths = [7, 3, 1, 6, 7]
    keep = torch.arange(L)[None] < torch.tensor(lengths)[:, None]
    got = interval_matrix(times, keep, k)
    for b in range(B):
        n = lengths[b]
        ts = times[b, :n].tolist()
        nz = [abs(x - y) for x in ts for y in ts if x != y]
        s = min(nz) if nz else 1
        for i in range(L):
            for j in range(L):
                want = min(math.floor(abs(ts[i] - ts[j]) / s + 0.5), k) if i < n and j < n else 0
                assert got[b, i, j] == want, (b, i, j)


def test_vectorised_attention_equals_the_explicit_sum():
    torch.manual_seed(0)
    B, L, d, H, R = 3, 6, 8, 2, 5
    att = TimeAwareAttention(d, H, dropout=0.0)
    x, q_in = torch.randn(B, L, d), torch.randn(B, L, d)
    pos_k, pos_v, int_k, int_v = torch.randn(L, d), torch.randn(L, d), torch.randn(R, d), torch.randn(R, d)
    intervals = torch.randint(0, R, (B, L, L))
    mask = torch.ones(L, L, dtype=torch.bool).triu(1)[None].expand(B, L, L).clone()
    mask[0, :, 4:] = True  # padding keys in row 0
    got = att(q_in, x, pos_k, pos_v, int_k, int_v, intervals, mask)
    dh = d // H
    Q, K, V = att.q(q_in), att.k(x) + pos_k, att.v(x) + pos_v
    Kf = K[:, None, :, :] + int_k[intervals]  # [B, L(query), L(key), d]
    Vf = V[:, None, :, :] + int_v[intervals]
    want = torch.empty(B, L, d)
    for h in range(H):
        sl = slice(h * dh, (h + 1) * dh)
        e = (Q[:, :, None, sl] * Kf[..., sl]).sum(-1) / math.sqrt(dh)
        a = e.masked_fill(mask, float("-inf")).softmax(-1)
        want[..., sl] = (a[..., None] * Vf[..., sl]).sum(2)
    assert torch.allclose(got, want, atol=1e-5)


def test_data_carries_times_aligned_with_inputs(timed):
    data = SequenceData.from_dataset(timed, max_len=5, with_times=True)
    for r in range(data.num_train_rows):
        u = int(data.users[r])
        part = timed.sequences[u][:-2][-6:]
        ts = timed.times[u][: len(timed.sequences[u]) - 2][-6:]
        n = len(part) - 1
        assert (data.inputs[r, :n] - 1).tolist() == part[:-1]
        assert data.times[r, :n].tolist() == ts[:-1]
    assert data.test[0].times == tuple(timed.times[0][:-1][-5:])
    assert SequenceData.from_dataset(timed, max_len=5).times is None  # only when asked


def test_times_change_the_output_and_padding_does_not(timed):
    torch.manual_seed(0)
    model = TiSASRec(timed.num_items, 8, TiSASRecConfig(dropout=0.0, time_span=16)).eval()
    inputs = torch.tensor([[3, 5, 7, 9, PAD, PAD]])
    times = torch.tensor([[0, 10, 10, 50, 0, 0]])
    h = model.encode(inputs, times)
    h2 = model.encode(inputs, torch.tensor([[0, 30, 40, 41, 0, 0]]))
    assert not torch.allclose(h[0, 1:4], h2[0, 1:4])
    hp = model.encode(inputs[:, :4], times[:, :4])
    assert torch.allclose(h[0, :4], hp[0], atol=1e-6)
    with pytest.raises(ValueError, match="needs the interaction times"):
        model.encode(inputs)


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_tisasrec_trains_one_epoch(timed, loss):
    out = MODELS["tisasrec"](timed, 0.0, _args(epochs=1, batch_size=64, set=[f"loss={loss}"]))
    assert out["users"] == timed.num_users and out["epochs"] == 1
    for m in METRICS:
        assert 0.0 <= out[m] <= 1.0
    assert out["model_config"]["time_span"] == 256


def test_tisasrec_resume_equals_uninterrupted(timed, tmp_path):
    common = dict(batch_size=64, epochs=2, set=["dropout=0.3", "loss=bce"])
    full = MODELS["tisasrec"](timed, 0.0, _args(**common, output_dir=str(tmp_path / "full")))
    part = MODELS["tisasrec"](timed, 0.0, _args(**common, max_steps=3, output_dir=str(tmp_path / "resumed")))
    assert part["steps"] == 3 and part["stop_reason"] == "max_steps"
    resumed = MODELS["tisasrec"](timed, 0.0, _args(**common, output_dir=str(tmp_path / "resumed")))
    assert resumed["steps"] == full["steps"] == 8
    a = load_file(tmp_path / "full" / "last" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "last" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert {m: resumed[m] for m in METRICS} == {m: full[m] for m in METRICS}


def test_tisasrec_without_times_is_a_clear_error(synthetic_root, capsys):
    ds = load_dataset(synthetic_root, "Synthetic")
    with pytest.raises(DataError, match=r"Synthetic\.time\.json: dataset Synthetic has no interaction times"):
        MODELS["tisasrec"](ds, 0.0, _args(epochs=1))
    assert cli_main(["train", "--model", "tisasrec", "--dataset", "Synthetic", "--data-root", str(synthetic_root),
                     "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "Synthetic.time.json" in err and "no interaction times" in err and "Traceback" not in err
