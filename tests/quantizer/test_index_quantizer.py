"""RQ-VAE / RQ-KMeans building blocks: residuals, straight-through gradients, Sinkhorn, k-means init."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from index.checkpoint import load_model, save_checkpoint
from index.config import QuantizerConfig, TrainConfig
from index.kmeans import kmeans
from index.quantizers import build_quantizer
from index.sinkhorn import sinkhorn_assign, sinkhorn_plan



TINY = dict(levels=3, codebook_size=8, code_dim=4, hidden_dims=(16, 8), kmeans_iters=10)


def tiny_model(kind: str = "rqvae", input_dim: int = 12, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_quantizer(QuantizerConfig(kind=kind, **{**TINY, **kw}), input_dim)


def test_residuals_reconstruct_the_input():
    model = tiny_model()
    x = torch.randn(50, 12)
    model.fit_codebooks(x, torch.Generator().manual_seed(0))
    z = model.latent(x)
    out = model.rq(z)
    chosen = sum(cb[out.codes[:, level]] for level, cb in enumerate(model.rq.codebooks))
    torch.testing.assert_close(chosen + out.residual, z, rtol=0, atol=1e-5)
    torch.testing.assert_close(model.rq.decode(out.codes), chosen)
    # nearest code at every level: no other codeword is closer to that level's residual
    residual = z
    for level, cb in enumerate(model.rq.codebooks):
        d = ((residual[:, None, :] - cb[None]) ** 2).sum(-1)
        assert torch.equal(d.argmin(1), out.codes[:, level])
        residual = residual - cb[out.codes[:, level]]


def test_straight_through_gradient_reaches_the_encoder():
    model = tiny_model()
    x = torch.randn(32, 12)
    model.fit_codebooks(x, torch.Generator().manual_seed(0))
    z = model.latent(x)
    z.retain_grad()
    out = model.rq(z)
    target = torch.randn_like(out.quantized)
    ((out.quantized - target) ** 2).sum().backward()
    # STE: d quantized / d z is the identity, so z receives exactly the gradient of quantized
    torch.testing.assert_close(z.grad, 2 * (out.quantized - target).detach())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())

    model.zero_grad()
    losses = model(x)
    losses["loss"].backward()
    assert model.encoder[0].weight.grad.abs().sum() > 0
    assert model.rq.codebooks[0].grad.abs().sum() > 0  # codebook term trains the codewords


def test_sinkhorn_balances_a_crowded_assignment():
    torch.manual_seed(0)
    n, k = 256, 16
    d = torch.rand(n, k)
    d[:, 0] -= 2.0  # every item's nearest code is code 0
    assert torch.bincount(d.argmin(1), minlength=k).max() == n
    counts = torch.bincount(sinkhorn_assign(d, 0.003, iters=50), minlength=k)
    assert counts.sum() == n and counts.min() >= n // k - 4 and counts.max() <= n // k + 4
    plan = sinkhorn_plan(d, 0.003, iters=50).exp()
    # the last step normalises items exactly; codes are balanced up to the remaining iterations' error
    torch.testing.assert_close(plan.sum(1), torch.full((n,), 1 / n, dtype=plan.dtype))
    torch.testing.assert_close(plan.sum(0), torch.full((k,), 1 / k, dtype=plan.dtype), rtol=0.1, atol=0)


def test_sinkhorn_is_stable_for_tiny_epsilon_and_large_distances():
    d = torch.rand(64, 8) * 1e6
    plan = sinkhorn_plan(d, 1e-6, iters=20)
    assert torch.isfinite(plan).all()
    with pytest.raises(ValueError):
        sinkhorn_assign(d, 0.0)


def test_kmeans_needs_at_least_as_many_points_as_codes():
    with pytest.raises(ValueError, match="at least as many points as codes"):
        kmeans(torch.randn(5, 3), 8)
    with pytest.raises(ValueError, match="NaN"):
        kmeans(torch.tensor([[0.0, float("nan")]] * 9), 8)


def test_kmeans_handles_duplicate_points():
    x = torch.cat([torch.zeros(30, 3), torch.randn(3, 3)])
    centroids, assign = kmeans(x, 8, iters=20)
    assert torch.isfinite(centroids).all() and assign.shape == (33,)


def test_kmeans_init_is_persisted_and_never_repeated(tmp_path):
    model = tiny_model()
    x = torch.randn(40, 12)
    assert not bool(model.rq.initialised)
    assert model.fit_codebooks(x, torch.Generator().manual_seed(0))
    assert bool(model.rq.initialised)
    before = [cb.detach().clone() for cb in model.rq.codebooks]
    cfg = TrainConfig(datasets=("X",), embedding="e", quantizer=model.cfg)
    save_checkpoint(tmp_path / "ck", model, {"config": cfg.to_dict(), "input_dim": 12, "modality": "text",
                                             "kind": "rqvae", "datasets": ["X"], "embedding": "e"})
    loaded, _ = load_model(tmp_path / "ck")
    assert bool(loaded.rq.initialised)
    # a second init (what resuming would do) must be a no-op
    assert not loaded.fit_codebooks(torch.randn(40, 12) * 10, torch.Generator().manual_seed(1))
    for a, b in zip(before, loaded.rq.codebooks):
        assert torch.equal(a, b.detach())


def test_rqkmeans_shares_the_interface():
    model = tiny_model("rqkmeans", input_dim=6)
    x = torch.randn(60, 6)
    model.fit_codebooks(x, torch.Generator().manual_seed(0))
    codes = model.encode(x)
    assert codes.shape == (60, 3) and codes.max() < 8
    err0 = (x - model.rq.codebooks[0][codes[:, 0]]).pow(2).sum(1).mean()
    err = (x - model.reconstruct(x)).pow(2).sum(1).mean()
    assert err < err0 < x.pow(2).sum(1).mean()  # every level removes error
    assert not model.trainable and not list(p for n, p in model.named_parameters() if "encoder" in n)


def test_config_validation_and_per_level_defaults():
    assert QuantizerConfig().sinkhorn_eps == (0.0, 0.0, 0.0, 0.003)
    assert QuantizerConfig(levels=3).sinkhorn_eps == (0.0, 0.0, 0.003)
    with pytest.raises(ValueError, match="sinkhorn_eps"):
        QuantizerConfig(levels=3, sinkhorn_eps=(0, 0)).validate()
    with pytest.raises(ValueError, match="kind"):
        QuantizerConfig(kind="vq").validate()
    with pytest.raises(ValueError, match="dataset"):
        TrainConfig(embedding="e").validate()


def test_default_rqvae_shape_matches_the_paper():
    model = build_quantizer(QuantizerConfig(), 384)
    sizes = [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)]
    assert sizes == [2048, 1024, 512, 256, 128, 64, 32]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [64, 128, 256, 512, 1024, 2048, 384]
    assert model.rq.sizes == [256] * 4 and model.rq.dim == 32
    assert not isinstance(model.encoder[-1], torch.nn.ReLU)
    assert np.allclose([float(m.bias.detach().abs().sum()) for m in model.encoder if isinstance(m, torch.nn.Linear)], 0)


def test_cli_flags_override_a_json_config(tmp_path):
    import json

    from index.train import build_parser, config_from_args

    path = tmp_path / "cfg.json"
    path.write_text(json.dumps({"datasets": ["A"], "embedding": "e", "epochs": 7,
                                "quantizer": {"codebook_size": 16, "beta": 0.5}}))
    args = build_parser().parse_args(["--config", str(path), "--levels", "3", "--lr", "0.01", "--no-progress"])
    cfg = config_from_args(args)
    assert cfg.datasets == ("A",) and cfg.epochs == 7 and cfg.lr == 0.01 and cfg.progress is False
    assert cfg.quantizer.codebook_size == 16 and cfg.quantizer.beta == 0.5 and cfg.quantizer.levels == 3
    assert cfg.quantizer.sinkhorn_eps == (0.0, 0.0, 0.003)  # per-level default follows --levels
    cfg = config_from_args(build_parser().parse_args(["--datasets", "A,B", "--embedding", "e",
                                                      "--sinkhorn-eps", "0,0.01,0,0.003"]))
    assert cfg.datasets == ("A", "B") and cfg.quantizer.sinkhorn_eps == (0.0, 0.01, 0.0, 0.003)
    with pytest.raises(ValueError, match="either --dataset or --datasets"):
        config_from_args(build_parser().parse_args(["--dataset", "A", "--datasets", "B", "--embedding", "e"]))
    path.write_text(json.dumps({"quantizer": {"codebooks": 3}}))
    with pytest.raises(ValueError, match="unknown QuantizerConfig fields: codebooks"):
        config_from_args(build_parser().parse_args(["--config", str(path)]))


def test_cosine_distance_is_never_negative():
    # 1 - cos(x, x) rounds below zero in float32; k-means++ samples with these as weights
    from index.distances import Cosine

    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(0)) * 37.0
    assert (Cosine().pairwise(x, x) >= 0).all() and (Cosine().rowwise(x, x) >= 0).all()
