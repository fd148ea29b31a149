"""mHC residual streams: Sinkhorn-Knopp, identity initialisation, gradients, training and resume."""

from __future__ import annotations

import argparse
import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from genrec.baselines import SASRec, SASRecConfig, TiSASRec, TiSASRecConfig
from genrec.baselines.cli import main as cli_main
from genrec.baselines.mhc import MHCMixer, sinkhorn_log
from genrec.baselines.registry import MODELS
from genrec.data import load_dataset

torch.set_num_threads(1)


def _args(**kw) -> argparse.Namespace:
    base = dict(set=[], seed=0, cpu=True)
    base.update(kw)
    return argparse.Namespace(**base)


def test_sinkhorn_is_doubly_stochastic_on_adversarial_logits():
    g = torch.Generator().manual_seed(0)
    B, n = 64, 4
    offsets = torch.randn(B, n, 1, generator=g) * 1e4 + torch.randn(B, 1, n, generator=g) * 1e4
    perm = torch.stack([torch.eye(n)[torch.randperm(n, generator=g)] for _ in range(B)])
    cases = {
        "huge row and column offsets": offsets + torch.randn(B, n, n, generator=g),
        "one huge entry per row and column": perm * 1e4 - 1e4 * (1 - perm),
        "huge constant": torch.full((B, n, n), 1e6),
        "tiny range": torch.randn(B, n, n, generator=g) * 1e-6,
        "moderate noise": torch.randn(B, n, n, generator=g),
    }
    for name, logits in cases.items():
        p = sinkhorn_log(logits, iters=20)
        assert torch.isfinite(p).all(), name
        assert (p >= 0).all(), name
        assert torch.allclose(p.sum(-1), torch.ones(B, n), atol=1e-3), name
        assert torch.allclose(p.sum(-2), torch.ones(B, n), atol=1e-5), name
    # very wide random logits: still finite, gradients finite (no overflow in the log domain)
    wild = (torch.randn(B, n, n, generator=g) * 1e4).requires_grad_()
    p = sinkhorn_log(wild, iters=20)
    p.pow(2).sum().backward()
    assert torch.isfinite(p).all() and torch.isfinite(wild.grad).all()
    assert torch.allclose(p.sum(-2), torch.ones(B, n), atol=1e-5)
    with pytest.raises(ValueError):
        sinkhorn_log(wild, iters=0)


@pytest.mark.parametrize("kind", ["sasrec", "tisasrec"])
def test_identity_init_equals_the_plain_model(kind):
    torch.manual_seed(0)
    cls, cfg_cls = (SASRec, SASRecConfig) if kind == "sasrec" else (TiSASRec, TiSASRecConfig)
    plain = cls(30, 8, cfg_cls(blocks=3, heads=2, dropout=0.0)).eval()
    torch.manual_seed(0)
    mhc = cls(30, 8, cfg_cls(blocks=3, heads=2, dropout=0.0, residual="mhc", streams=4)).eval()
    missing, unexpected = mhc.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("mhc.") for k in missing)
    inputs = torch.tensor([[1, 2, 3, 4, 0, 0], [5, 6, 7, 8, 9, 10]])
    kw = {} if kind == "sasrec" else {"times": torch.tensor([[0, 5, 5, 90, 0, 0], [1, 2, 3, 4, 50, 60]])}
    a, b = plain.encode(inputs, **kw), mhc.encode(inputs, **kw)
    assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()
    assert not torch.allclose(a, torch.zeros_like(a))


def test_gradients_reach_all_three_projections():
    torch.manual_seed(0)
    model = SASRec(30, 8, SASRecConfig(blocks=2, dropout=0.0, residual="mhc", streams=4))
    inputs = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 7, 8, 9]])
    targets = torch.tensor([[2, 3, 4, 5, 0], [6, 7, 8, 9, 10]])
    model(inputs, targets).backward()
    for mixer in model.mhc.mixers:
        # from the identity start, the pre/post projections learn at once
        assert mixer.pre.weight.grad.abs().sum() > 0 and mixer.post.weight.grad.abs().sum() > 0
    # the residual-mixing projection needs streams that differ (at the start they are copies, and a
    # doubly stochastic matrix maps identical streams to themselves): after a few steps it learns too
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        model(inputs, targets).backward()
        opt.step()
    opt.zero_grad()
    model(inputs, targets).backward()
    for mixer in model.mhc.mixers:
        for proj in (mixer.pre, mixer.post, mixer.res):
            assert proj.weight.grad.abs().sum() > 0, proj


def test_mixer_keeps_identical_streams_identical_at_init():
    m = MHCMixer(d=6, n=4, layer=1)
    x = torch.randn(2, 3, 1, 6).expand(2, 3, 4, 6)
    h_pre, h_post, h_res = m.coefficients(x)
    assert torch.allclose(h_pre.sum(-1), torch.ones(2, 3)) and torch.allclose(h_post, torch.ones(2, 3, 4))
    assert torch.allclose(h_res, torch.eye(4).expand_as(h_res), atol=2e-3)
    assert h_pre[0, 0].argmax() == 1  # layer 1 reads stream 1


def test_mhc_trains_and_resumes_bit_identically(synthetic_root, tmp_path):
    ds = load_dataset(synthetic_root, "Synthetic")
    common = dict(batch_size=64, epochs=2, residual="mhc", streams=4, set=["dropout=0.3", "loss=bce"])
    full = MODELS["sasrec-bce"](ds, 0.0, _args(**common, output_dir=str(tmp_path / "full")))
    assert full["model_config"]["residual"] == "mhc" and full["model_config"]["streams"] == 4
    MODELS["sasrec-bce"](ds, 0.0, _args(**common, max_steps=3, output_dir=str(tmp_path / "resumed")))
    resumed = MODELS["sasrec-bce"](ds, 0.0, _args(**common, output_dir=str(tmp_path / "resumed")))
    assert resumed["steps"] == full["steps"] == 8
    a = load_file(tmp_path / "full" / "last" / "model.safetensors")
    b = load_file(tmp_path / "resumed" / "last" / "model.safetensors")
    assert any("mhc" in k for k in a) and all(torch.equal(a[k], b[k]) for k in a)


def test_residual_flags_on_a_model_without_them(synthetic_root, capsys):
    assert cli_main(["train", "--model", "gpt", "--dataset", "Synthetic", "--data-root", str(synthetic_root),
                     "--residual", "mhc", "--epochs", "1"]) == 2
    assert "has no --residual option" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown residual"):
        SASRec(10, 5, dataclasses.replace(SASRecConfig(), residual="hyper"))
