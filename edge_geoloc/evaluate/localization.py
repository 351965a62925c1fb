"""Meter-level localization: position from the retrieved tile, errors, and GPS-scoped search.

VIGOR's protocol for a noisy GPS: the prior is the true position plus uniform noise of
+-100 m on each axis, and only references whose centres lie inside a +-200 m box around the
prior are candidates. Circular scopes (1000, 500, 200 m around the prior) are reported too.
Positions are east/north metres in the map CRS.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACCURACY_THRESHOLDS_M = (1, 3, 5, 10, 25, 50)


@dataclass(frozen=True)
class Scope:
    """A search region around a prior: a square box (half side) or a circle (radius), metres."""

    kind: str  # "box" | "circle" | "all"
    size_m: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("box", "circle", "all"):
            raise ValueError(f"scope kind must be box, circle or all, got {self.kind!r}")
        if self.kind != "all" and not self.size_m > 0:
            raise ValueError(f"a {self.kind} scope needs a positive size, got {self.size_m}")

    @property
    def name(self) -> str:
        if self.kind == "all":
            return "all"
        return f"box{self.size_m:g}m" if self.kind == "box" else f"{self.size_m:g}m"

    def mask(self, prior_en: np.ndarray, ref_en: np.ndarray) -> np.ndarray:
        """(Q, M) True where reference centres lie inside each query's scope."""
        prior_en = np.asarray(prior_en, dtype=np.float64).reshape(-1, 2)
        ref_en = np.asarray(ref_en, dtype=np.float64).reshape(-1, 2)
        if self.kind == "all":
            return np.ones((len(prior_en), len(ref_en)), dtype=bool)
        d = ref_en[None, :, :] - prior_en[:, None, :]
        if self.kind == "box":
            return np.all(np.abs(d) <= self.size_m, axis=-1)
        return np.sum(d * d, axis=-1) <= self.size_m**2


VIGOR_SCOPE = Scope("box", 200.0)
CIRCULAR_SCOPES = (Scope("circle", 1000.0), Scope("circle", 500.0), Scope("circle", 200.0))


def noisy_prior(true_en: np.ndarray, noise_m: float = 100.0, seed: int = 0) -> np.ndarray:
    """VIGOR's simulated GPS: the truth plus uniform noise in [-noise_m, noise_m] on each axis."""
    rng = np.random.default_rng(seed)
    true_en = np.asarray(true_en, dtype=np.float64).reshape(-1, 2)
    return true_en + rng.uniform(-noise_m, noise_m, true_en.shape)


def restrict(similarity: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Similarity with out-of-scope references set to -inf (never retrieved, never ranked above)."""
    sim = np.asarray(similarity, dtype=np.float64)
    if mask.shape != sim.shape:
        raise ValueError(f"scope mask shape {mask.shape} does not match similarity {sim.shape}")
    return np.where(mask, sim, -np.inf)


def predict_positions(
    similarity: np.ndarray,
    ref_en: np.ndarray,
    offsets_en: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Best reference per query and the predicted position: its centre (+ predicted offset).

    ``offsets_en`` (Q, 2): the offset head's prediction for each query *relative to the
    retrieved tile*, or None for the tile centre alone. Queries whose scope held no reference
    get index -1 and a NaN position.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    best = np.argmax(sim, axis=1)
    empty = ~np.isfinite(sim[np.arange(len(sim)), best])
    pos = np.asarray(ref_en, dtype=np.float64)[best].copy()
    if offsets_en is not None:
        pos += np.asarray(offsets_en, dtype=np.float64).reshape(-1, 2)
    pos[empty] = np.nan
    best[empty] = -1
    return best, pos


def localization_metrics(
    errors_m: np.ndarray, thresholds_m: tuple[float, ...] = ACCURACY_THRESHOLDS_M
) -> dict[str, float]:
    """Share of queries (percent) within each threshold, median/mean/p95 error in metres.

    A NaN error (no candidate in scope) counts as a miss at every threshold and as infinitely
    large for the percentiles.
    """
    err = np.asarray(errors_m, dtype=np.float64).ravel()
    if err.size == 0:
        raise ValueError("no errors to summarize")
    err = np.where(np.isnan(err), np.inf, err)
    out = {f"acc@{t:g}m": float(np.mean(err <= t) * 100.0) for t in thresholds_m}
    big = np.where(np.isfinite(err), err, 1e15)  # percentiles of a sample with misses stay defined
    for name, q in (("median_m", 50), ("p95_m", 95)):
        value = float(np.percentile(big, q))
        out[name] = value if value < 1e14 else float("inf")
    finite = err[np.isfinite(err)]
    out["mean_m"] = float(finite.mean()) if finite.size else float("inf")
    out["no_candidate_pct"] = float(np.mean(~np.isfinite(err)) * 100.0)
    return out


def top_candidates(similarity: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (Q, k) and similarities (Q, k) of each query's k best references, best first."""
    sim = np.asarray(similarity, dtype=np.float64)
    k = max(1, min(k, sim.shape[1]))
    top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
    top = np.take_along_axis(top, order, axis=1)
    return top, np.take_along_axis(sim, top, axis=1)


def fuse(positions: np.ndarray, similarities: np.ndarray, temperature: float = 0.05) -> np.ndarray:
    """Similarity-weighted mean of candidate positions (Q, k, 2) with weights softmax(s / T).

    Dense tiles overlap (each point lies in four), so how the similarity falls off among
    neighbouring tiles carries the position inside the best one. Candidates with similarity
    -inf (out of scope) get no weight; a query with none gives NaN, not a guess.
    """
    s = np.asarray(similarities, dtype=np.float64)
    finite = np.isfinite(s)
    logits = np.where(finite, s / temperature, -np.inf)
    peak = np.max(logits, axis=1, keepdims=True)
    w = np.where(finite, np.exp(logits - np.where(np.isfinite(peak), peak, 0.0)), 0.0)
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.sum(np.asarray(positions, dtype=np.float64) * w[..., None], axis=1) / total
    out[total[:, 0] == 0] = np.nan
    return out


def fuse_topk(similarity: np.ndarray, ref_en: np.ndarray, k: int = 5, temperature: float = 0.05) -> np.ndarray:
    """:func:`fuse` over each query's top-k reference centres."""
    top, sims = top_candidates(similarity, k)
    return fuse(np.asarray(ref_en, dtype=np.float64)[top], sims, temperature)
