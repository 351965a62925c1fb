"""Region-scoped search of a map bundle: only tiles whose centres lie in the scope, fast.

A scope is a disc ``(east, north, radius_m)`` around the GPS prior; ``None`` searches the whole map
(re-localization after being lost). Per query:

1. the scope's shards: a shard wholly inside the disc takes part whole; for a shard the disc cuts,
   its in-scope tiles come from the shard's local grid (integer arithmetic, no distance to every tile);
2. per shard, the cheaper of two strategies by a cost model (microseconds, defaults measured with
   ``benchmarks/search.py``): an exact scan of the in-scope descriptors, contiguous in storage
   (float16 -> float32 and one matrix-vector product), or the shard's HNSW graph; a cut shard's
   graph is searched for ``k / fraction`` neighbours and filtered to the scope afterwards (hnswlib's
   own filter is a Python callback per visited node: 20 ms at 2% selectivity); a graph on a PCA
   projection adds a third, a scan of the in-scope rows' int8 projections (derived when the shard's
   graph loads, 64 B a tile at 64 dims) whose best ``rerank`` x k rows go on to step 3: a cut shard's
   graph would walk ``rerank`` x k / fraction neighbours for them;
3. every candidate is re-scored exactly against the stored descriptors and the best ``k`` kept;
4. a cut shard whose filtered graph results fell short of ``k`` while still scoring above the
   current k-th best is scanned exactly, so a strategy choice never loses a tile that an exact
   scan of the scope would have ranked.

Shard graphs are loaded on first use and kept in an LRU under a memory cap (a Jetson shares 4-16 GB
between CPU and GPU). A search reads the descriptor rows it scans or re-ranks, and its results' tile-table
rows, with positioned reads into scratch buffers (``descriptor_access="read"``, the default): those pages
stay in the kernel's page cache, shared and reclaimable, and out of the process's RSS (at 1M tiles the
memory map's pages cost ~240 B a tile of RSS after searches all over the city; results are identical).
``descriptor_access="map"`` reads them through the memory maps instead, mapping only the pages it reads
(:mod:`edge_geoloc.maps.memory`). A graph built on a PCA projection of the descriptors
(``map build --hnsw-dim``) costs a fraction of a full one; its candidates are re-ranked exactly on
the float16 descriptors (``rerank`` x k per shard). Scores are cosine similarities.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.maps.bundle import DESCRIPTORS, TILE_DTYPE, TILES, Bundle, BundleError, check_encoder
from edge_geoloc.maps.graph import graph_dim, graph_queries, project, quantize
from edge_geoloc.maps.memory import RowReader, advise_random, evict
from edge_geoloc.maps.search import _LRU, CostModel, SearchResult, _Graph, _Part, _Stats

try:  # OpenCV converts float16 with F16C, 2-3x numpy's scalar loop
    import cv2

    cv2.multiply(np.zeros((1, 2), np.float16), 1.0, dtype=cv2.CV_32F)

    def _to_f32(block: np.ndarray, out: np.ndarray) -> np.ndarray:
        return cv2.multiply(block, 1.0, dst=out, dtype=cv2.CV_32F)

except Exception:  # pragma: no cover - an OpenCV without float16

    def _to_f32(block: np.ndarray, out: np.ndarray) -> np.ndarray:
        np.copyto(out, block)
        return out


Scope = tuple[float, float, float]  # east, north, radius in metres (map CRS)

CHUNK_ROWS = 1024  # float32 rows converted at a time: stays in L2
ACCESS = ("read", "map")  # how a search reads descriptor and tile rows (see the module docstring)


class MapIndex:
    """Scoped search over an opened map bundle (see the module docstring)."""

    def __init__(
        self,
        bundle: Bundle,
        memory_cap_mb: float = 2048.0,
        ef_search: int | None = None,
        cost: CostModel | None = None,
        rerank: int | None = None,
        descriptor_access: str = "read",
    ) -> None:
        if descriptor_access not in ACCESS:
            raise ValueError(f"descriptor_access must be one of {', '.join(ACCESS)}, got {descriptor_access!r}")
        self.bundle = bundle
        self.descriptor_access = descriptor_access
        self.manifest = bundle.manifest
        self.tiling = self.manifest.tiling.tiling()
        self.grid = bundle.grid
        self.crs = bundle.crs
        self.dim = bundle.dim
        self.hdim = self.manifest.hnsw.dim
        self.lifted = self.manifest.hnsw.lifted
        self.ef_search = ef_search or self.manifest.hnsw.ef_search
        self.cost = cost or CostModel()
        # Candidates re-scored per shard: k when the graph holds the descriptors themselves, 2 x k when it
        # holds a PCA projection (its ranking is approximate). At 1M tiles 2 x k keeps recall@10 >= 0.994 at
        # every scope (the projected scan's candidates rank better than the graph's alone) and is as fast
        # as the full graph at 2 km; 4 x k is slower for no recall there (benchmarks/results/search_memory.md).
        self.rerank = rerank or (1 if self.hdim == self.dim else 2)
        # How far a graph's approximate score may sit below the exact one (float rounding, or the
        # variance a projection drops) when deciding whether a short cut shard needs a scan.
        self.margin = 1e-3 if self.hdim == self.dim else 0.1
        # The dimension a graph query is costed at (a projected graph's is floored: see CostModel).
        self._graph_cost_dim = (
            self.hdim
            if self.hdim == self.dim
            else max(graph_dim(self.manifest.hnsw), self.cost.projected_graph_min_dim)
        )
        self.stats = _Stats()
        self.cache = _LRU(int(memory_cap_mb * 2**20), self.stats)
        # Plain ndarray views of the memory maps (np.memmap's per-access bookkeeping costs microseconds).
        for name, array in ((DESCRIPTORS, bundle.descriptors), (TILES, bundle.tiles)):
            evict(bundle.path / name)  # verification read it whole: a search maps only the pages it reads
            advise_random(array)
        self.desc = np.asarray(bundle.descriptors)
        tiles = np.asarray(bundle.tiles)
        self._ids, self._east, self._north = tiles["id"], tiles["east"], tiles["north"]
        self._lat, self._lon = tiles["lat"], tiles["lon"]
        shards = bundle.shards
        self._starts, self._counts = shards["start"].tolist(), shards["count"].tolist()
        self._shard_pos = bundle.shard_pos.tolist()
        t = self.tiling
        self._geo = (t.east_min, t.north_max, t.stride_m, t.n_rows, t.n_cols, self.grid.shard_tiles, self.grid.n_cols)
        self._buf = np.empty((CHUNK_ROWS, self.dim), dtype=np.float32)
        n = CHUNK_ROWS if self.hdim < self.dim else 0  # projected scans: gathered codes, then as float32
        self._c8, self._cbuf = np.empty((n, self.hdim), dtype=np.int8), np.empty((n, self.hdim), dtype=np.float32)
        # Positioned reads (descriptor_access "read"): one reader per file, float16 and tile-row scratch.
        self._reader = self._tile_reader = None
        if descriptor_access == "read":
            self._reader = RowReader(bundle.path / DESCRIPTORS)
            self._tile_reader = RowReader(bundle.path / TILES)
            for r, a in ((self._reader, bundle.descriptors), (self._tile_reader, bundle.tiles)):
                if (r.offset, r.shape, r.dtype) != (a.offset, a.shape, a.dtype):  # the file changed since opening
                    raise BundleError(f"{r.path}: header gives {r.dtype} {r.shape} at byte {r.offset}, not the map's")
            self._h16 = np.empty((CHUNK_ROWS, self.dim), dtype=np.float16)
            self._held = np.zeros(0, np.int64)  # the rows _h16 holds (the last block scanned)
            self._r16 = np.empty((CHUNK_ROWS, self.dim), dtype=np.float16)
            self._tbuf = np.empty(64, dtype=TILE_DTYPE)

    @classmethod
    def open(
        cls,
        path: str | Path,
        card: Any = None,
        *,
        verify: str = "lazy",
        memory_cap_mb: float = 2048.0,
        ef_search: int | None = None,
        cost: CostModel | None = None,
        rerank: int | None = None,
        descriptor_access: str = "read",
    ) -> MapIndex:
        """Open a bundle; with ``card`` (a ModelCard or an export folder) refuse a map of another aerial encoder.

        ``descriptor_access``: ``read`` (positioned reads, out of RSS) or ``map`` (through the memory maps)."""
        bundle = Bundle(path, verify=verify)
        if card is not None:
            if isinstance(card, (str, Path)):
                from edge_geoloc.runtime.card import load_card

                card = load_card(card)
            check_encoder(bundle.manifest, card, str(path))
        return cls(
            bundle,
            memory_cap_mb=memory_cap_mb,
            ef_search=ef_search,
            cost=cost,
            rerank=rerank,
            descriptor_access=descriptor_access,
        )

    # --- shard state ------------------------------------------------------------------------------

    @property
    def n_tiles(self) -> int:
        return self.bundle.n_tiles

    def _index(self, pos: int) -> _Graph:
        key = ("index", pos)
        graph = self.cache.get(key)
        if graph is None:
            index = self.bundle.load_index(pos)
            s = self.bundle.shards[pos]
            # Beside what it saves, hnswlib keeps per element a mutex, a label-map entry, its level, a link
            # pointer and a visited mark (~100 B), and per graph 65,536 label locks (2.6 MB): measured RSS at
            # 1M tiles in 16 shards is ~140 B a tile above the files (benchmarks/search.py --memory).
            nbytes = int(s["index_bytes"]) + 100 * int(s["count"]) + 65536 * 40
            if self.hdim < self.dim:
                mean, basis = self.bundle.load_projection(pos)
                codes, scale = quantize(self._projections(pos, mean, basis))
                graph = _Graph(index, mean, basis, codes, scale)
                nbytes += mean.nbytes + basis.nbytes + codes.nbytes + scale.nbytes
            else:
                graph = _Graph(index)
            self.cache.put(key, graph, nbytes)
            self.stats.loads += 1
        return graph

    def _projections(self, pos: int, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
        """float32 projections of a shard's rows in row order (the rows a projected scan scores), read from the
        descriptor file a block at a time and left out of the page cache, as verification leaves them."""
        a, b = self.bundle.rows(pos)
        y = np.empty((b - a, self.hdim), np.float32)
        s = 0
        for block in self.bundle.read_rows(a, b):
            x = np.frombuffer(block, self.bundle.descriptors.dtype).reshape(-1, self.dim)
            y[s : s + len(x)] = project(x, mean, basis)
            s += len(x)
        return y

    def _slots(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """The shard's local grid both ways: slot[row - r0, col - c0] = local row of that tile (-1 where
        absent), and cell[local row] = (row - r0) * width + (col - c0)."""
        key = ("slots", pos)
        slots = self.cache.get(key)
        if slots is None:
            sid = int(self.bundle.shards[pos]["id"])
            r0, r1, c0, c1 = self.grid.cell(sid)
            a, b = self.bundle.rows(pos)
            t, f = self.bundle.tiles, self.bundle.path / TILES  # read, then evicted: pages not needed again
            ids = np.fromfile(f, t.dtype, b - a, offset=t.offset + a * t.itemsize)["id"]
            evict(f, t.offset + a * t.itemsize, (b - a) * t.itemsize)
            row, col = self.tiling.row_col(ids)
            cells = ((row - r0) * (c1 - c0) + (col - c0)).astype(np.int32)
            grid = np.full((r1 - r0, c1 - c0), -1, dtype=np.int32)
            grid.ravel()[cells] = np.arange(b - a, dtype=np.int32)
            slots = (grid, cells)
            self.cache.put(key, slots, grid.nbytes + cells.nbytes)
        return slots

    def loaded_shards(self) -> list[int]:
        return [int(self.bundle.shards[k[1]]["id"]) for k in self.cache.items if k[0] == "index"]

    @property
    def memory_bytes(self) -> int:
        """Bytes held by loaded graphs (with a projected map's int8 projections) and slot tables (the LRU's
        accounting; descriptors stay on disk)."""
        return self.cache.bytes

    # --- scope -> parts ---------------------------------------------------------------------------

    def scope_parts(self, scope: Scope | None) -> list[_Part]:
        """The shards a scope touches, each whole or cut (with its in-scope count)."""
        if scope is None:
            return [_Part(p, a, c, True, c) for p, (a, c) in enumerate(zip(self._starts, self._counts))]
        e, n, r = scope
        e0, n1, s, n_rows, n_cols, st, g_cols = self._geo
        # Tiling rows and columns whose centres the disc's bounding box holds.
        c_lo = max(0, math.ceil((e - r - e0) / s - 1e-9))
        c_hi = min(n_cols - 1, math.floor((e + r - e0) / s + 1e-9))
        r_lo = max(0, math.ceil((n1 - n - r) / s - 1e-9))
        r_hi = min(n_rows - 1, math.floor((n1 - n + r) / s + 1e-9))
        if c_lo > c_hi or r_lo > r_hi:
            return []
        parts = []
        r2 = r * r
        for sr in range(r_lo // st, r_hi // st + 1):
            for sc in range(c_lo // st, c_hi // st + 1):
                pos = self._shard_pos[sr * g_cols + sc]
                if pos < 0:
                    continue
                r0, c0 = sr * st, sc * st
                r1, c1 = min(r0 + st, n_rows) - 1, min(c0 + st, n_cols) - 1  # inclusive
                start, count = self._starts[pos], self._counts[pos]
                fe = max(abs(e0 + c0 * s - e), abs(e0 + c1 * s - e))
                fn = max(abs(n1 - r0 * s - n), abs(n1 - r1 * s - n))
                if fe * fe + fn * fn <= r2:  # the shard's farthest tile centre is inside: all of it
                    parts.append(_Part(pos, start, count, True, count))
                    continue
                box = (max(r0, r_lo), min(r1, r_hi), max(c0, c_lo), min(c1, c_hi), r0, c0)
                if box[0] > box[1] or box[2] > box[3]:
                    continue
                if count < (r1 - r0 + 1) * (c1 - c0 + 1):  # a sparse shard (an extract): list its tiles
                    part = _Part(pos, start, count, False, 0, box)
                    part.local = self._disc_rows(part, scope)
                    part.n = len(part.local)
                else:  # dense: count the disc's columns row by row
                    rows = np.arange(box[0], box[1] + 1)
                    w2 = r2 - (n1 - rows * s - n) ** 2
                    w = np.sqrt(np.maximum(w2, 0.0))
                    lo = np.maximum(np.ceil((e - w - e0) / s - 1e-9), box[2])
                    hi = np.minimum(np.floor((e + w - e0) / s + 1e-9), box[3])
                    part = _Part(
                        pos, start, count, False, int(np.sum(np.where(w2 >= 0, np.maximum(hi - lo + 1, 0), 0))), box
                    )
                if part.n == count:
                    part.whole = True
                if part.n > 0:
                    parts.append(part)
        return parts

    def _disc_rows(self, p: _Part, scope: Scope) -> np.ndarray:
        """Sorted local rows of a cut shard's tiles whose centres lie in the disc."""
        if p.local is None:
            e, n, r = scope
            e0, n1, s = self._geo[:3]
            lr0, lr1, lc0, lc1, r0, c0 = p.box
            de2 = (e0 + np.arange(lc0, lc1 + 1) * s - e) ** 2
            dn2 = (n1 - np.arange(lr0, lr1 + 1) * s - n) ** 2
            inside = dn2[:, None] + de2[None, :] <= r * r
            local = self._slots(p.pos)[0][lr0 - r0 : lr1 - r0 + 1, lc0 - c0 : lc1 - c0 + 1][inside]
            p.local = np.sort(local[local >= 0])
        return p.local

    def _in_disc(self, p: _Part, rows: np.ndarray, scope: Scope) -> np.ndarray:
        """Which rows of cut part ``p`` have their tile centre in the disc (the same arithmetic as
        :meth:`_disc_rows`, from the shard's grid rather than the memory-mapped tile table)."""
        e, n, r = scope
        e0, n1, s = self._geo[:3]
        grid, cells = self._slots(p.pos)
        row, col = np.divmod(cells[rows - p.start], grid.shape[1])
        return (e0 + (p.box[5] + col) * s - e) ** 2 + (n1 - (p.box[4] + row) * s - n) ** 2 <= r * r

    def _choose(self, parts: list[_Part], k: int, method: str) -> None:
        """Per part: scan, projected scan or graph (and how many graph neighbours), by the cost model."""
        kc = k * self.rerank
        for p in parts:
            if method == "exact" or p.count <= 2 * kc:  # a graph of a handful of tiles is no faster, and hnswlib
                p.method = "scan"  # may fail to return k of them
                continue
            frac = p.n / p.count
            p.k = min(p.count, math.ceil(kc / frac * (1.0 if p.whole else self.cost.oversample)))
            if method == "hnsw":
                p.method = "hnsw"
                continue
            graph = (
                math.inf
                if not p.whole and frac < self.cost.min_fraction
                else self.cost.hnsw_us(max(self.ef_search, p.k), self._graph_cost_dim)
            )
            if self.cost.scan_us(p.n, self.dim) <= graph:
                p.method = "scan"
            elif self.hdim < self.dim and self.cost.projected_us(p.n, self.hdim) <= graph:
                # Where a projected graph would serve the part, a scan of its rows' projections if cheaper: the
                # same ranking, exact rather than walked, and the same k * rerank rows to re-score. A part that
                # is scanned exactly stays so (on near-duplicate tiles a projection cannot rank them).
                p.method = "projected"
            else:
                p.method = "hnsw"

    # --- scoring ----------------------------------------------------------------------------------

    def _rows16(self, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """float16 descriptor rows (sorted): read into ``out`` (default: the scratch, at most CHUNK_ROWS
        rows), or from the memory map."""
        if self._reader is None:
            n = len(rows)
            return self.desc[rows[0] : rows[-1] + 1] if n and rows[-1] - rows[0] == n - 1 else self.desc[rows]
        if out is None:
            self._held = rows
            return self._reader.read(rows, self._h16)
        return self._reader.read(rows, out)

    def _candidates16(self, rows: np.ndarray) -> np.ndarray:
        """float16 rows (sorted) to re-score: those the last scanned block holds from it, the rest read (a
        scope's scan candidates cost no second read)."""
        if self._reader is None:
            return self._rows16(rows)
        n, held = len(rows), self._held
        if n > CHUNK_ROWS:
            return self._reader.read(rows, np.empty((n, self.dim), np.float16))
        if len(held) == 0:
            return self._reader.read(rows, self._r16)
        pos = np.minimum(np.searchsorted(held, rows), len(held) - 1)
        hit = held[pos] == rows
        if hit.all():
            return self._h16[pos]
        out = self._r16[:n]
        miss = ~hit
        out[miss] = self._reader.read(rows[miss], np.empty((n, self.dim), np.float16))
        out[hit] = self._h16[pos[hit]]
        return out

    def _score_rows(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Exact scores (n, m) of descriptor rows (sorted) against queries q (m, D)."""
        out = np.empty((len(rows), q.shape[0]), dtype=np.float32)
        self.stats.rows_scored += len(rows)
        for s in range(0, len(rows), CHUNK_ROWS):
            e = min(len(rows), s + CHUNK_ROWS)
            buf = _to_f32(self._rows16(rows[s:e]), self._buf[: e - s])
            np.dot(buf, q.T, out=out[s:e])
        return out

    def _rescore(self, rows: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Final scores of candidate rows against one query, each computed alone (an element-wise
        product summed per row): a tile's score does not depend on which other rows share the call,
        so every strategy ranks the same candidates identically."""
        if len(rows) == 0:
            return np.zeros(0, np.float32)
        self.stats.rows_scored += len(rows)
        if len(rows) <= CHUNK_ROWS:
            block = _to_f32(self._candidates16(rows), self._buf[: len(rows)])
        else:
            block = self._candidates16(rows).astype(np.float32)
        return np.einsum("ij,j->i", block, q)

    def _tiles_of(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """(ids, east, north, lat, lon) of result rows (any order), from the tile table."""
        if self._tile_reader is None:
            return self._ids[rows], self._east[rows], self._north[rows], self._lat[rows], self._lon[rows]
        order = np.argsort(rows, kind="stable")
        if len(self._tbuf) < len(rows):
            self._tbuf = np.empty(len(rows), dtype=TILE_DTYPE)
        got = self._tile_reader.read(rows[order], self._tbuf)
        t = np.empty(len(rows), dtype=TILE_DTYPE)
        t[order] = got
        return tuple(np.ascontiguousarray(t[f]) for f in ("id", "east", "north", "lat", "lon"))

    def _graph(self, p: _Part, q: np.ndarray, k: int) -> list[tuple[np.ndarray, float]]:
        """Per query: the shard graph's ``k`` nearest rows and the approximate score of the last."""
        g = self._index(p.pos)
        g.index.set_ef(max(self.ef_search, k))
        labels, dist = g.index.knn_query(graph_queries(q, g.basis, self.lifted), k=k)
        worst = 1.0 - dist[:, -1]
        if g.mean is not None:  # the graph ranks q . (x - mean): add q . mean back
            worst = worst + q @ g.mean
        return [(labels[j].astype(np.int64), float(worst[j])) for j in range(len(q))]

    def _projected(self, p: _Part, q: np.ndarray, scope: Scope | None) -> tuple[np.ndarray, np.ndarray]:
        """(rows, approximate scores (n, m)) of a part's in-scope rows by their int8 projections: ranked as the
        shard's graph ranks them (q . mean, the same for every row of the shard, left out)."""
        g = self._index(p.pos)
        codes = g.codes
        assert codes is not None and g.basis is not None and g.scale is not None
        local = None if p.whole else self._disc_rows(p, scope)  # type: ignore[arg-type]
        n = p.count if local is None else len(local)
        w = (q @ g.basis * g.scale).T  # (d, m): the code scale folded into the query
        out = np.empty((n, len(q)), np.float32)
        for s in range(0, n, CHUNK_ROWS):  # gathered and converted a block at a time: stays in L2
            e = min(n, s + CHUNK_ROWS)
            block = codes[s:e] if local is None else np.take(codes, local[s:e], axis=0, out=self._c8[: e - s])
            np.copyto(self._cbuf[: e - s], block)
            np.dot(self._cbuf[: e - s], w, out=out[s:e])
        self.stats.rows_projected += n
        return p.start + (np.arange(n) if local is None else local), out

    def _verify(self, parts: Sequence[_Part]) -> None:
        done = self.bundle._verified
        for p in parts:
            if p.pos not in done:
                self.bundle.verify_shard(p.pos)

    # --- search -----------------------------------------------------------------------------------

    def _check_queries(self, descriptors: np.ndarray) -> np.ndarray:
        q = np.asarray(descriptors, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(
                f"expected descriptors of dim {self.dim} (this map's encoder), got shape {np.shape(descriptors)}"
            )
        norm2 = np.einsum("ij,ij->i", q, q)
        if not np.all(np.isfinite(norm2)):  # a NaN or inf anywhere makes the squared norm non-finite
            i = int(np.argmax(~np.isfinite(norm2)))
            raise ValueError(
                f"descriptor {i} has {int(np.sum(~np.isfinite(q[i])))} non-finite values (NaN or inf); not searching with it"
            )
        if np.any(norm2 == 0):
            raise ValueError(f"descriptor {int(np.argmax(norm2 == 0))} is all zeros; not searching with it")
        return np.ascontiguousarray(q / np.sqrt(norm2)[:, None])

    def _check_scope(self, scope: Scope | None) -> Scope | None:
        if scope is None:
            return None
        try:
            e, n, r = (float(v) for v in scope)
        except (TypeError, ValueError):
            raise ValueError(f"scope must be None or (east, north, radius_m), got {scope!r}") from None
        if not (math.isfinite(e) and math.isfinite(n)):
            raise ValueError(f"scope centre must be finite, got east {e}, north {n}")
        if not (math.isfinite(r) and r > 0):
            raise ValueError(f"scope radius must be a positive number of metres, got {r}")
        return e, n, r

    def _empty(self, scope: Scope | None, reason: str) -> SearchResult:
        z = np.zeros(0)
        return SearchResult(
            np.zeros(0, np.int64), np.zeros(0, np.float32), z, z, z, z, np.zeros(0, np.int64), 0, "none", reason
        )

    def _outside_reason(self, scope: Scope) -> str:
        t = self.tiling
        e, n, r = scope
        return (
            f"no tile centre of this map within {r:g} m of east {e:.1f}, north {n:.1f}: the scope lies outside the"
            f" map's tiles (east {t.east_min:.0f}..{t.east_min + (t.n_cols - 1) * t.stride_m:.0f},"
            f" north {t.north_max - (t.n_rows - 1) * t.stride_m:.0f}..{t.north_max:.0f}"
            f"{', a corridor extract' if self.manifest.region.source == 'extract' else ''})"
        )

    def search(
        self, descriptor: np.ndarray, scope: Scope | None = None, k: int = 10, method: str = "auto"
    ) -> SearchResult:
        """The ``k`` best tiles for one descriptor within ``scope`` (None: the whole map).

        ``method``: ``auto`` (cost model per shard), ``exact`` (scan everything in scope: the reference),
        ``hnsw`` (graphs wherever possible).
        """
        return self.search_batch(
            np.asarray(descriptor)[None, :] if np.ndim(descriptor) == 1 else descriptor, scope, k, method
        )[0]

    def exact_search(self, descriptor: np.ndarray, scope: Scope | None = None, k: int = 10) -> SearchResult:
        """Exact scoped search (every in-scope descriptor scored): the reference for recall."""
        return self.search(descriptor, scope, k, method="exact")

    def search_batch(
        self,
        descriptors: np.ndarray,
        scopes: Scope | Sequence[Scope | None] | None = None,
        k: int = 10,
        method: str = "auto",
    ) -> list[SearchResult]:
        """One result per descriptor; ``scopes``: None or one scope for all, or one per descriptor."""
        if method not in ("auto", "exact", "hnsw"):
            raise ValueError(f"method must be auto, exact or hnsw, got {method!r}")
        if not (isinstance(k, (int, np.integer)) and k >= 1):
            raise ValueError(f"k must be a positive integer, got {k!r}")
        q = self._check_queries(descriptors)
        shared = scopes is None or (len(scopes) == 3 and all(np.isscalar(v) for v in scopes))  # type: ignore[arg-type]
        if shared:
            return self._search_shared(q, self._check_scope(scopes), int(k), method)  # type: ignore[arg-type]
        if len(scopes) != len(q):  # type: ignore[arg-type]
            raise ValueError(f"{len(q)} descriptors but {len(scopes)} scopes")  # type: ignore[arg-type]
        return [
            self._search_shared(q[i : i + 1], self._check_scope(s), int(k), method)[0] for i, s in enumerate(scopes)
        ]  # type: ignore[arg-type]

    def _search_shared(self, q: np.ndarray, scope: Scope | None, k: int, method: str) -> list[SearchResult]:
        m = len(q)
        self.stats.queries += m
        parts = self.scope_parts(scope)
        if not parts:
            return [self._empty(scope, self._outside_reason(scope)) for _ in range(m)]  # type: ignore[arg-type]
        self._choose(parts, k, method)
        self._verify(parts)
        n_in = sum(p.n for p in parts)
        # Candidates per query: (rows, exact scores); the graph parts' filtered shortfalls for the check.
        cand_rows: list[list[np.ndarray]] = [[] for _ in range(m)]
        short: list[list[tuple[_Part, float]]] = [[] for _ in range(m)]

        want = k * self.rerank
        scan = [p for p in parts if p.method == "scan"]
        if scan:
            rows = np.concatenate(
                [
                    np.arange(p.start, p.start + p.count) if p.whole else p.start + self._disc_rows(p, scope)
                    for p in scan
                ]  # type: ignore[arg-type]
            )
            # 2k by the fast (BLAS) scores; the final re-scoring picks k, so near-ties at rank k fall the
            # same way whatever strategy found them.
            for j, best in enumerate(_best(rows, self._score_rows(rows, q), 2 * k)):
                cand_rows[j].append(best)
        # Per shard, the best k * rerank by the projections (what a perfect graph of the shard would return;
        # pooling them across shards instead lost recall: 0.79 on the whole 1M-tile bench map).
        for p in (p for p in parts if p.method == "projected"):
            for j, best in enumerate(_best(*self._projected(p, q, scope), want)):
                cand_rows[j].append(best)
        for p in (p for p in parts if p.method == "hnsw"):
            for j, (lab, worst) in enumerate(self._graph(p, q, p.k)):
                if not p.whole:
                    lab = lab[self._in_disc(p, lab, scope)]  # type: ignore[arg-type]
                    if len(lab) < min(want, p.n):  # filtered results ran short: maybe more in scope
                        short[j].append((p, worst))
                cand_rows[j].append(lab[:want])

        results = []
        for j in range(m):
            rows_j = np.unique(np.concatenate([np.zeros(0, np.int64), *cand_rows[j]]))
            scores_j = self._rescore(rows_j, q[j])
            # A cut shard whose filtered graph results ran short while the worst of them still beat the
            # k-th best: ask its graph for 4x more, then scan it if that is short too.
            for p, worst in short[j]:
                tau = np.partition(scores_j, len(scores_j) - k)[len(scores_j) - k] if len(scores_j) >= k else -np.inf
                if worst < tau - self.margin:
                    continue
                extra = None
                if p.k * 4 < p.count:
                    ((lab, worst2),) = self._graph(p, q[j : j + 1], p.k * 4)
                    lab = lab[self._in_disc(p, lab, scope)]  # type: ignore[arg-type]
                    if len(lab) >= min(want, p.n) or worst2 < tau - self.margin:
                        extra = lab[:want]
                if extra is None:
                    self.stats.fallback_scans += 1
                    rows_x = p.start + self._disc_rows(p, scope)  # type: ignore[arg-type]
                    sx = self._score_rows(rows_x, q[j : j + 1])[:, 0]
                    extra = rows_x[np.argpartition(-sx, min(2 * k, len(sx)) - 1)[: 2 * k]]
                extra = np.setdiff1d(extra, rows_j)
                rows_j = np.concatenate([rows_j, extra])
                scores_j = np.concatenate([scores_j, self._rescore(extra, q[j])])
            order = np.lexsort((rows_j, -scores_j))[:k]  # ties broken by row: deterministic
            rows_k = rows_j[order]
            ids, east, north, lat, lon = self._tiles_of(rows_k)
            kinds = {p.method for p in parts}
            used = "mixed" if len(kinds) > 1 else kinds.pop()
            self.stats.methods[used] = self.stats.methods.get(used, 0) + 1
            results.append(
                SearchResult(
                    ids=ids,
                    scores=scores_j[order].astype(np.float32),
                    east=east,
                    north=north,
                    lat=lat,
                    lon=lon,
                    rows=rows_k,
                    in_scope=n_in,
                    method=used,
                    shards=len(parts),
                )
            )
        return results

    def refuse_mismatch(self, card: Any) -> None:
        """Raise :class:`BundleError` unless ``card`` (a street encoder's ModelCard) pairs with this map."""
        check_encoder(self.manifest, card, str(self.bundle.path))


def _best(rows: np.ndarray, scores: np.ndarray, n: int) -> list[np.ndarray]:
    """Per query (a column of ``scores``): the ``n`` best of ``rows`` (any order), all of them when fewer."""
    if n >= len(rows):
        return [rows] * scores.shape[1]
    top = np.argpartition(-scores, n - 1, axis=0)[:n]
    return [rows[top[:, j]] for j in range(scores.shape[1])]


__all__ = ["BundleError", "CostModel", "MapIndex", "Scope", "SearchResult"]
