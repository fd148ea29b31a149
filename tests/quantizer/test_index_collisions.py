"""Collision resolution: unique codes guaranteed, optimal within candidates, dedup-token alternative."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from index.collisions import AssignmentPolicy, DedupTokenPolicy, beam_candidates, get_policy
from index.config import QuantizerConfig
from index.quantizers import build_quantizer




def fitted_kmeans(x: torch.Tensor, levels: int, size: int, seed: int = 0):
    model = build_quantizer(QuantizerConfig(kind="rqkmeans", levels=levels, codebook_size=size, kmeans_iters=20),
                            x.shape[1])
    model.fit_codebooks(x, torch.Generator().manual_seed(seed))
    return model


def test_identical_embeddings_all_get_unique_codes():
    torch.manual_seed(0)
    x = torch.randn(300, 8)
    x[:120] = x[0]  # 120 identical items: the worst case for any resolver
    x[120:180] = x[120] + 1e-7
    model = fitted_kmeans(x, levels=3, size=8)
    z = model.latent(x)
    nearest = model.rq.encode(z).numpy()
    assert len(np.unique(nearest, axis=0)) < 200
    res = AssignmentPolicy(beam=4).resolve(z, model.rq, nearest)
    assert res.codes.shape == (300, 3)
    assert len(np.unique(res.codes, axis=0)) == 300
    assert res.report["after"]["duplicate_items"] == 0
    assert res.report["before"]["duplicate_items"] == 300 - len(np.unique(nearest, axis=0))
    # items that did not collide keep their nearest code
    _, inv, counts = np.unique(nearest, axis=0, return_inverse=True, return_counts=True)
    alone = counts[inv.reshape(-1)] == 1
    assert np.array_equal(res.codes[alone], nearest[alone])
    assert res.report["moved"] == int((res.codes != nearest).any(1).sum())
    assert sum(res.report["levels_changed"].values()) == res.report["moved"]
    assert res.report["beam"] >= 120  # the beam had to widen beyond its start


def test_more_items_than_possible_codes_is_an_error():
    x = torch.randn(20, 4)
    model = fitted_kmeans(x, levels=2, size=4)  # 16 possible codes
    z = model.latent(x)
    with pytest.raises(ValueError, match="only 16 distinct codes"):
        AssignmentPolicy().resolve(z, model.rq, model.rq.encode(z).numpy())


@pytest.mark.parametrize("objective", ["distance", "prefix"])
def test_assignment_is_optimal_against_brute_force(objective):
    torch.manual_seed(3)
    x = torch.randn(9, 4)
    x[:4] = x[0]
    x[4:6] = x[4] + 1e-6
    model = fitted_kmeans(x, levels=2, size=3)
    z = model.latent(x)
    nearest = model.rq.encode(z).numpy()
    res = AssignmentPolicy(beam=1, objective=objective).resolve(z, model.rq, nearest)
    _, inv, counts = np.unique(nearest, axis=0, return_inverse=True, return_counts=True)
    colliding = np.flatnonzero(counts[inv.reshape(-1)] > 1)
    taken = {tuple(c) for c in np.delete(nearest, colliding, axis=0)}
    free = [c for c in itertools.product(range(3), range(3)) if c not in taken]
    cost = np.array([[float(model.rq.path_costs(z[i:i + 1], torch.tensor([c])).item()) for c in free]
                     for i in colliding])
    lost = np.array([[2 - (c[0] == nearest[i, 0]) * (1 + (c[1] == nearest[i, 1])) for c in free] for i in colliding])

    def key(p):
        rows = range(len(colliding))
        total = sum(cost[r, p[r]] for r in rows)
        return (sum(lost[r, p[r]] for r in rows), total) if objective == "prefix" else (0, total)

    best = min(key(p) for p in itertools.permutations(range(len(free)), len(colliding)))
    got_cost = float(model.rq.path_costs(z[colliding], torch.as_tensor(res.codes[colliding])).sum())
    got_lost = sum(2 - (a[0] == b[0]) * (1 + (a[1] == b[1])) for a, b in zip(res.codes[colliding], nearest[colliding]))
    assert got_cost == pytest.approx(best[1], rel=1e-9, abs=1e-9)
    if objective == "prefix":
        assert got_lost == best[0]
        # one member of every colliding group keeps the nearest code
        assert res.report["moved"] == res.report["before"]["duplicate_items"]


def test_prefix_objective_moves_only_the_last_level_when_it_can():
    torch.manual_seed(2)
    x = torch.randn(200, 6)
    x[:6] = x[0]
    x[6:10] = x[6]
    model = fitted_kmeans(x, levels=3, size=16)
    z = model.latent(x)
    nearest = model.rq.encode(z).numpy()
    res = AssignmentPolicy().resolve(z, model.rq, nearest)
    assert len(np.unique(res.codes, axis=0)) == 200
    assert res.report["moved"] == res.report["before"]["duplicate_items"]
    assert set(res.report["first_changed_level"]) == {"3"}
    with pytest.raises(ValueError, match="objective"):
        AssignmentPolicy(objective="nearest")


def test_beam_candidates_are_sorted_and_include_the_nearest_code():
    torch.manual_seed(1)
    x = torch.randn(40, 5)
    model = fitted_kmeans(x, levels=3, size=4)
    z = model.latent(x)
    codes, costs = beam_candidates(z, model.rq, beam=64)  # 64 = all codes: exhaustive
    assert codes.shape == (40, 64, 3)
    assert np.all(np.diff(costs, axis=1) >= -1e-9)
    for i in range(40):
        assert len({tuple(c) for c in codes[i]}) == 64
    exact = model.rq.path_costs(z, torch.as_tensor(codes[:, 0])).numpy()
    np.testing.assert_allclose(costs[:, 0], exact, rtol=1e-5, atol=1e-6)


def test_dedup_token_appends_a_counter():
    x = torch.randn(30, 4)
    x[:5] = x[0]
    model = fitted_kmeans(x, levels=2, size=4)
    z = model.latent(x)
    nearest = model.rq.encode(z).numpy()
    res = get_policy("dedup-token").resolve(z, model.rq, nearest)
    assert isinstance(res, type(DedupTokenPolicy().resolve(z, model.rq, nearest)))
    assert res.codes.shape == (30, 3)
    assert np.array_equal(res.codes[:, :2], nearest)
    assert len(np.unique(res.codes, axis=0)) == 30
    assert res.codes[0, 2] == 0 and sorted(res.codes[:5, 2]) == [0, 1, 2, 3, 4]


def test_unknown_policy():
    with pytest.raises(ValueError, match="unknown collision policy"):
        get_policy("random")
