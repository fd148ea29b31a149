"""Collision policies: make every item's code unique after nearest-code assignment.

``assign`` (default) fixes the published resolver's defects (stale rankings after changing level 3,
a 2-round cap, leftover duplicates). For the items that share a code it lists candidate full codes by
beam searches over the residual tree below each prefix of the item's nearest code, scored with the
quantizer's own distances (the sum over levels of residual-to-codeword distance, recomputed for
every candidate path, so no ranking goes stale), and then solves one exact minimum-cost assignment
of all those items to distinct codes that no other item holds (sparse Jonker-Volgenant,
``scipy.sparse.csgraph.min_weight_full_bipartite_matching``). If no full assignment exists the beam
doubles; at a beam equal to the number of possible codes every code is a candidate, so the loop ends
with unique codes whenever items <= possible codes (no round cap).

``dedup-token`` keeps the codes and appends a 5th token counting earlier duplicates (TIGER), via
``genrec.data.make_codes_unique``.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from tqdm.auto import tqdm

from genrec.data import format_code, make_codes_unique, parse_code
from index.metrics import collision_stats, group_sizes
from index.quantizers import ResidualQuantizer

logger = logging.getLogger(__name__)


@dataclass
class Resolution:
    codes: np.ndarray  # [n, levels] (or levels + 1 for the dedup token), int64, unique rows
    report: dict[str, Any]


class CollisionPolicy(Protocol):
    name: str

    def resolve(self, z: torch.Tensor, rq: ResidualQuantizer, codes: np.ndarray) -> Resolution: ...


@torch.no_grad()
def beam_candidates(z: torch.Tensor, rq: ResidualQuantizer, beam: int, prefix: np.ndarray | None = None,
                    chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The ``beam`` cheapest full codes per item by path cost: (codes [n, B, L], costs [n, B]) ascending.

    With ``prefix`` [n, d] the search starts below that fixed prefix (its path cost included).
    """
    out_codes, out_costs = [], []
    depth = 0 if prefix is None else prefix.shape[1]
    for start in range(0, z.shape[0], chunk):
        zc = z[start:start + chunk]
        n, d = zc.shape
        residual = zc
        score = torch.zeros(n, dtype=torch.float64, device=z.device)
        codes = torch.zeros(n, 0, dtype=torch.long, device=z.device)
        if depth:
            codes = torch.as_tensor(prefix[start:start + chunk], dtype=torch.long, device=z.device)
            for level in range(depth):
                q = rq.codebooks[level][codes[:, level]]
                score = score + rq.distance.rowwise(residual, q).double()
                residual = residual - q
        residual, score, codes = residual[:, None, :], score[:, None], codes[:, None, :]  # one beam each
        for cb in list(rq.codebooks)[depth:]:
            b, k = residual.shape[1], cb.shape[0]
            dist = rq.distance.pairwise(residual.reshape(n * b, d), cb).reshape(n, b, k).double()
            total = (score[:, :, None] + dist).reshape(n, b * k)
            width = min(beam, b * k)
            score, flat = torch.topk(total, width, dim=1, largest=False, sorted=True)
            parent, code = flat // k, flat % k
            residual = residual.gather(1, parent[:, :, None].expand(-1, -1, d)) - cb[code]
            codes = torch.cat([codes.gather(1, parent[:, :, None].expand(-1, -1, codes.shape[2])),
                               code[:, :, None]], dim=2)
        out_codes.append(codes.cpu().numpy())
        out_costs.append(score.cpu().numpy())
    return np.concatenate(out_codes), np.concatenate(out_costs)


def _capacity(rq: ResidualQuantizer) -> int:
    return math.prod(rq.sizes)


OBJECTIVES = ("prefix", "distance")

# Candidate (item, code) pairs one assignment round may build: each costs about 100 bytes through
# np.unique and the sparse matrix, so the default keeps a round near 1 GB and a few minutes.
DEFAULT_MAX_CANDIDATES = 10_000_000


def candidate_count(colliding: int, levels: int, beam: int) -> int:
    """Candidates of one round: each colliding item's own code plus a beam per prefix depth."""
    return colliding * (1 + levels * beam)


def assignment_beams(colliding: int, levels: int, start: int, capacity: int, max_candidates: int) -> list[int]:
    """The beams the doubling search would try (``start`` .. ``capacity``) that fit ``max_candidates``."""
    beams, beam = [], min(start, capacity)
    while candidate_count(colliding, levels, beam) <= max_candidates:
        beams.append(beam)
        if beam >= capacity:
            break
        beam = min(capacity, beam * 2)
    return beams


class AssignmentPolicy:
    """Exact reassignment of colliding items to unused codes, over beam-searched candidates.

    Candidates for an item: for every depth d, the best codes that keep its nearest code's first d
    tokens (a beam search below that prefix). Objective ``prefix`` (default) first keeps the longest
    prefix of each item's nearest code, then minimises the extra path distance, so exactly one item
    of each colliding group keeps the code and the others move as deep in the tree as possible.
    ``distance`` minimises the total path distance alone (items may then trade codes, and a
    colliding item may even end up closer than its greedy code).
    """

    name = "assign"

    def __init__(self, beam: int = 16, objective: str = "prefix", max_candidates: int = DEFAULT_MAX_CANDIDATES,
                 progress: bool | None = None):
        if beam < 1:
            raise ValueError(f"beam must be positive, got {beam}")
        if max_candidates < 1:
            raise ValueError(f"max_candidates must be positive, got {max_candidates}")
        self.max_candidates = max_candidates
        self.progress = progress
        if objective not in OBJECTIVES:
            raise ValueError(f"objective {objective!r}: expected one of {', '.join(OBJECTIVES)}")
        self.beam = beam
        self.objective = objective

    def resolve(self, z: torch.Tensor, rq: ResidualQuantizer, codes: np.ndarray) -> Resolution:
        codes = np.asarray(codes, dtype=np.int64)
        n, levels = codes.shape
        capacity = _capacity(rq)
        if n > capacity:
            raise ValueError(f"{n} items cannot all get unique codes: {levels} levels x {rq.sizes} codes give only "
                             f"{capacity} distinct codes")
        before = collision_stats(codes)
        orig_cost = rq.path_costs(z, torch.as_tensor(codes, device=z.device)).cpu().numpy()
        sizes = group_sizes(codes)
        colliding = np.flatnonzero(sizes > 1)
        new = codes.copy()
        beam = min(capacity, max(self.beam, 2 * int(sizes.max(initial=1))))
        rounds = 0
        if colliding.size:
            taken = codes[sizes == 1]
            zc = z[torch.as_tensor(colliding, device=z.device)]
            beams = assignment_beams(len(colliding), levels, beam, capacity, self.max_candidates)
            if not beams:
                raise ValueError(self._too_big(len(colliding), n, levels, beam, capacity))
            logger.info("assign: %d of %d items collide; %d of %d possible codes are free (load %.0f%%); up to %d "
                        "rounds, beam %d..%d, at most %d candidates per round (limit %d)",
                        len(colliding), n, capacity - len(taken), capacity, 100 * n / capacity, len(beams),
                        beams[0], beams[-1], candidate_count(len(colliding), levels, beams[-1]), self.max_candidates)
            # progress None: tqdm decides (shown on a terminal, silent in logs and tests)
            bar = tqdm(beams, desc="assign", unit="round", disable=None if self.progress is None else not self.progress)
            for beam in bar:
                rounds += 1
                bar.set_postfix(beam=beam, candidates=candidate_count(len(colliding), levels, beam))
                assignment = self._solve(zc, rq, codes[colliding], orig_cost[colliding], taken, beam)
                if assignment is not None:
                    new[colliding] = assignment
                    break
                logger.info("no full assignment with beam %d", beam)
            bar.close()
            if assignment is None:
                if beam >= capacity:  # unreachable while n <= capacity; kept as a hard guard
                    raise RuntimeError("no unique assignment exists although items <= possible codes")
                raise ValueError(self._too_big(len(colliding), n, levels, beam * 2, capacity))
        if np.unique(new, axis=0).shape[0] != n:
            raise RuntimeError("collision resolution left duplicate codes (bug)")
        new_cost = rq.path_costs(z, torch.as_tensor(new, device=z.device)).cpu().numpy()
        report = movement_report(codes, new, orig_cost, new_cost)
        report.update(policy=self.name, objective=self.objective, beam=beam, rounds=rounds,
                      before=before, after=collision_stats(new))
        return Resolution(new, report)

    def _too_big(self, m: int, n: int, levels: int, beam: int, capacity: int) -> str:
        return (f"the codebook is too tight for --policy assign: {m} of {n} items collide in {capacity} possible codes "
                f"(load {100 * n / capacity:.0f}%), and beam {beam} would need {candidate_count(m, levels, beam)} "
                f"candidates, over the limit of {self.max_candidates} (--max-candidates); use --policy dedup-token "
                "(a 5th token, no search) or a larger codebook")

    def _solve(self, z: torch.Tensor, rq: ResidualQuantizer, orig: np.ndarray, orig_cost: np.ndarray,
               taken: np.ndarray, beam: int) -> np.ndarray | None:
        m, levels = orig.shape
        # The item's own code first (a beam can miss the greedy path), then every depth's beam.
        found = [(orig[:, None, :], orig_cost[:, None])]
        for depth in range(levels):
            found.append(beam_candidates(z, rq, beam, prefix=orig[:, :depth] if depth else None))
        cand = np.concatenate([c for c, _ in found], axis=1)
        cost = np.concatenate([c for _, c in found], axis=1)
        width = cand.shape[1]
        rows = np.repeat(np.arange(m), width)
        extra = (cost - orig_cost[:, None]).reshape(-1)
        kept = np.cumprod(cand == orig[:, None, :], axis=2).sum(axis=2).reshape(-1)  # shared prefix length
        flat = cand.reshape(-1, levels)
        uniq, inverse = np.unique(np.concatenate([taken, flat]), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        cand_id = inverse[len(taken):]
        free = ~np.isin(cand_id, inverse[:len(taken)])
        rows, cand_id, extra, kept = rows[free], cand_id[free], extra[free], kept[free]
        # One edge per (item, code); duplicates (same code from several depths) have equal costs.
        _, first = np.unique(rows * len(uniq) + cand_id, return_index=True)
        rows, cand_id, extra, kept = rows[first], cand_id[first], extra[first], kept[first]
        cols, col = np.unique(cand_id, return_inverse=True)
        if len(cols) < m:
            return None
        weights = extra - extra.min()
        if self.objective == "prefix":
            # Lexicographic: one level of prefix lost must outweigh any possible sum of distances.
            big = m * (float(weights.max()) + 1.0)
            weights = weights + big * (levels - kept)
        # The sparse solver needs non-zero weights; a constant shift does not move the optimum
        # because every item is matched exactly once.
        weights = weights + 1.0
        graph = csr_matrix((weights, (rows, col.reshape(-1))), shape=(m, len(cols)))
        try:
            r, c = min_weight_full_bipartite_matching(graph)
        except ValueError:
            return None
        if len(r) != m:
            return None
        out = np.empty_like(orig)
        out[r] = uniq[cols[c]]
        return out


class DedupTokenPolicy:
    """Keep the nearest codes; append a dedup level (``<e_k>``/``<E_k>``) where codes repeat."""

    name = "dedup-token"

    def resolve(self, z: torch.Tensor, rq: ResidualQuantizer, codes: np.ndarray) -> Resolution:
        codes = np.asarray(codes, dtype=np.int64)
        tokens = [format_code(c, "text") for c in codes]
        unique_tokens, _ = make_codes_unique(tokens)
        new = np.array([parse_code(t) for t in unique_tokens], dtype=np.int64)
        report = {"policy": self.name, "before": collision_stats(codes), "after": collision_stats(new),
                  "moved": 0, "levels": int(new.shape[1])}
        return Resolution(new, report)


def movement_report(old: np.ndarray, new: np.ndarray, old_cost: np.ndarray, new_cost: np.ndarray) -> dict[str, Any]:
    """How far the resolution moved items: count, extra path cost, and which levels changed."""
    changed = old != new
    moved = changed.any(axis=1)
    extra = (new_cost - old_cost)[moved]
    first_level = changed[moved].argmax(axis=1) + 1
    n_levels = changed[moved].sum(axis=1)
    mean_cost = float(old_cost.mean()) if len(old_cost) else 0.0
    return {
        "moved": int(moved.sum()),
        "moved_fraction": float(moved.mean()) if len(moved) else 0.0,
        "extra_cost_mean": float(extra.mean()) if extra.size else 0.0,
        "extra_cost_max": float(extra.max()) if extra.size else 0.0,
        # scale: the mean path cost of all items' nearest codes
        "mean_path_cost": mean_cost,
        "extra_cost_mean_relative": float(extra.mean() / mean_cost) if extra.size and mean_cost > 0 else 0.0,
        "levels_changed": {str(k): int(v) for k, v in sorted(Counter(n_levels.tolist()).items())},
        "first_changed_level": {str(k): int(v) for k, v in sorted(Counter(first_level.tolist()).items())},
    }


POLICIES: dict[str, type] = {"assign": AssignmentPolicy, "dedup-token": DedupTokenPolicy}


def get_policy(name: str, **kwargs: Any) -> CollisionPolicy:
    """``assign`` takes ``beam``, ``objective``, ``max_candidates``, ``progress``; ``dedup-token`` nothing."""
    if name == "assign":
        return AssignmentPolicy(**kwargs)
    if name == "dedup-token":
        return DedupTokenPolicy()
    raise ValueError(f"unknown collision policy {name!r}; expected one of {', '.join(POLICIES)}")
