"""What a scoped search returns and what it decides with: the search result, the per-shard cost model
(exact scan, projected scan or HNSW graph), and the LRU that keeps loaded shard graphs under a memory cap
(:class:`~edge_geoloc.maps.index.MapIndex` uses them; split out to keep the search itself readable)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class CostModel:
    """Microseconds of the two strategies on one query (ratios matter, not absolute values).

    Defaults measured with ``benchmarks/search.py`` data (thread CPU time, one core of a shared
    AMD EPYC): a 65k-tile hnswlib graph at D=256 answers in 14 us at ef 16, 69 us at ef 128,
    265 us at ef 512; scanning float16 rows costs 0.19 us a row contiguous, 0.27 us gathered.

    Projected maps (graphs on a PCA projection, re-ranked ``rerank`` x k) add a third strategy, a scan of
    the in-scope rows' int8 projections where the graph would otherwise serve a part, and cost their graphs
    by what they measure: on the 1M-tile bench map (``runs/proj_cost.py``, the same shared machine) a 65-d
    lifted graph costs 330 ns per ef (5 ns per ef and dim: the visits and their links, not the dot
    products, dominate), a 256-d one 500 ns; int8 rows gathered, converted and scored 0.3-0.4 ns an element.
    """

    scan_base_us: float = 10.0
    scan_ns_per_element: float = 1.0  # per descriptor element scanned (float16 -> float32, dot)
    hnsw_base_us: float = 8.0  # per shard graph query (the Python call, result arrays)
    hnsw_ns_per_ef_dim: float = 2.0  # per ef per graph dimension
    min_fraction: float = 0.02  # a cut shard with less of its tiles in scope is never searched by its graph
    oversample: float = 1.5  # graph neighbours asked of a cut shard: oversample * k / (fraction in scope)
    projected_ns_per_element: float = 0.35  # per int8 projection element scanned (gathered, -> float32, dot)
    projected_graph_min_dim: int = 160  # a projected graph costs per ef as if it had at least this many dims

    def scan_us(self, n: int, dim: int) -> float:
        return self.scan_base_us + n * dim * self.scan_ns_per_element * 1e-3

    def hnsw_us(self, ef: int, dim: int) -> float:
        return self.hnsw_base_us + ef * dim * self.hnsw_ns_per_ef_dim * 1e-3

    def projected_us(self, n: int, dim: int) -> float:
        return self.scan_base_us + n * dim * self.projected_ns_per_element * 1e-3


@dataclass
class SearchResult:
    """The best tiles of one query, best first (at most k; empty with a ``reason`` when nothing is in scope)."""

    ids: np.ndarray  # tiling tile ids (row * n_cols + col)
    scores: np.ndarray  # cosine similarity, float32
    east: np.ndarray
    north: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    rows: np.ndarray  # rows of descriptors.npy
    in_scope: int  # tiles considered
    method: str  # "scan", "projected", "hnsw", "mixed" or "none"
    reason: str | None = None
    shards: int = 0  # shards touched

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class _Part:
    """One shard's share of a scope: the whole shard, or the part a disc cuts out of it."""

    pos: int
    start: int
    count: int
    whole: bool
    n: int  # tiles in scope (for a cut dense shard, counted row by row without listing them)
    box: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)  # rows lr0..lr1, cols lc0..lc1, shard r0, c0
    local: np.ndarray | None = None  # in-scope local rows, listed when a scan needs them
    method: str = "scan"
    k: int = 0


@dataclass
class _Stats:
    loads: int = 0
    evictions: int = 0
    queries: int = 0
    rows_scored: int = 0  # descriptor rows read for exact scores (their pages are what a search maps)
    rows_projected: int = 0  # rows scored by their int8 projections (held in memory) before re-ranking
    fallback_scans: int = 0  # cut shards scanned because their filtered graph results ran short
    methods: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Graph:
    """A loaded shard graph; for a projected one, its projection and the int8 codes of its rows' projections."""

    index: Any
    mean: np.ndarray | None = None  # (D,)
    basis: np.ndarray | None = None  # (D, d)
    codes: np.ndarray | None = None  # (count, d) int8, row order: ``codes * scale`` ~ ``(x - mean) @ basis``
    scale: np.ndarray | None = None  # (d,)


class _LRU:
    """Loaded shard graphs and slot tables under a byte cap."""

    def __init__(self, cap_bytes: int, stats: _Stats) -> None:
        self.cap = cap_bytes
        self.items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.stats = stats

    def get(self, key: Any) -> Any:
        hit = self.items.get(key)
        if hit is None:
            return None
        self.items.move_to_end(key)
        return hit[0]

    def put(self, key: Any, value: Any, nbytes: int) -> None:
        self.items[key] = (value, nbytes)
        self.bytes += nbytes
        while self.bytes > self.cap and len(self.items) > 1:
            _, (_, b) = self.items.popitem(last=False)
            self.bytes -= b
            self.stats.evictions += 1
