"""Retrieval recall exactly as VIGOR's and TransGeo's reference code computes it.

A query's rank is the number of references *strictly* more similar than its positive, so ties
count in the query's favour; a hit at k means ``rank < k``. R@1% uses ``k = int(0.01 M) + 1``
for M references (VIGOR's ``validate_top``); TransGeo's variant, ``M // 100``, is an option.
The hit rate (VIGOR) counts a query when no reference other than its semi-positives is strictly
more similar than its positive.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RECALL_KS = (1, 5, 10)


def _as_positive_sets(positives: np.ndarray | Sequence, n_queries: int, n_refs: int) -> np.ndarray:
    """Positives as a (Q, P) int array, padded with -1 where a query has fewer positives."""
    if isinstance(positives, np.ndarray) and positives.ndim in (1, 2) and positives.dtype != object:
        pos = (positives[:, None] if positives.ndim == 1 else positives).astype(np.int64)
    else:
        rows = [np.atleast_1d(np.asarray(p, dtype=np.int64)) for p in positives]
        width = max((len(r) for r in rows), default=1)
        pos = np.full((len(rows), width), -1, dtype=np.int64)
        for i, r in enumerate(rows):
            pos[i, : len(r)] = r
    if pos.shape[0] != n_queries:
        raise ValueError(f"positives has {pos.shape[0]} queries, similarity has {n_queries}")
    valid = pos >= 0
    if not np.all(valid.any(axis=1)):
        raise ValueError(f"query {int(np.flatnonzero(~valid.any(axis=1))[0])} has no positive reference")
    if np.any(pos >= n_refs):
        raise ValueError(f"positive index {int(pos.max())} out of range for {n_refs} references")
    return pos


def ranks(similarity: np.ndarray, positives: np.ndarray | Sequence, exclude: np.ndarray | None = None) -> np.ndarray:
    """Number of references strictly more similar than each query's (best) positive.

    With several positives per query, the best-scoring one counts and the others are not
    competitors. ``exclude`` (Q, K) lists further references that do not count (semi-positives
    for the hit rate); -1 pads.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be queries x references, got shape {sim.shape}")
    q, m = sim.shape
    pos = _as_positive_sets(positives, q, m)
    rows = np.arange(q)[:, None]
    pos_sim = np.where(pos >= 0, sim[rows, np.maximum(pos, 0)], -np.inf).max(axis=1)
    if np.any(np.isnan(sim)):
        raise ValueError("similarity contains NaN")
    better = sim > pos_sim[:, None]
    skip = np.zeros_like(better)
    for idx in (pos, exclude):
        if idx is None:
            continue
        idx = np.asarray(idx, dtype=np.int64).reshape(q, -1)
        skip[np.broadcast_to(rows, idx.shape)[idx >= 0], idx[idx >= 0]] = True
    return np.sum(better & ~skip, axis=1)


def top_percent_k(n_refs: int, convention: str = "vigor") -> int:
    """The k of R@1%: VIGOR ``int(0.01 M) + 1``; TransGeo ``M // 100`` (at least 1)."""
    if convention == "vigor":
        return int(n_refs * 0.01) + 1
    if convention == "transgeo":
        return max(1, n_refs // 100)
    raise ValueError(f"R@1% convention must be 'vigor' or 'transgeo', got {convention!r}")


def retrieval_metrics(
    similarity: np.ndarray,
    positives: np.ndarray | Sequence,
    semi_positives: np.ndarray | None = None,
    top_percent: str = "vigor",
) -> dict[str, float]:
    """R@1, R@5, R@10, R@1% (and hit rate with semi-positives), in percent.

    ``similarity``: queries x references (higher is more similar). ``positives``: each query's
    positive reference index, or several per query (a list of lists, or a (Q, P) array padded
    with -1). ``semi_positives``: (Q, 3) indices (-1 pads) or None.
    """
    sim = np.asarray(similarity)
    r = ranks(sim, positives)
    out = {f"R@{k}": float(np.mean(r < k) * 100.0) for k in RECALL_KS}
    out["R@1%"] = float(np.mean(r < top_percent_k(sim.shape[1], top_percent)) * 100.0)
    if semi_positives is not None:
        semi = np.asarray(semi_positives, dtype=np.int64)
        if semi.shape[0] != sim.shape[0]:
            raise ValueError(f"semi_positives has {semi.shape[0]} queries, similarity has {sim.shape[0]}")
        out["hit_rate"] = float(np.mean(ranks(sim, positives, exclude=semi) < 1) * 100.0)
    return out
