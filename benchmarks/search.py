"""Region-scoped map search: edge-geoloc's bundle vs an exact scan, faiss (flat, HNSW) and usearch.

Maps of 10k, 100k and 1M tiles laid out like a real tiled area (the VIGOR tiling of the model's
64 m tiles, stride 32 m: 1M tiles is 32 x 32 km). Their descriptors are NOT isotropic random
vectors (nearest neighbours of those are meaningless): they are a model's descriptors of
synthetic-world tiles (one map bundle per demo region, built with ``edge-geoloc map build`` and
cached under ``maps/build/bench-base/``), tiled over the big area in copies of each world's tile
grid (flipped or turned, so repeated neighbourhoods occur as in a real country) with a per-copy
shift and per-tile noise scaled to the base set's nearest-neighbour distance. Descriptors of
dim 1000 are those embedded isometrically in 1000 dims, with the noise in all 1000.

Queries: a random tile's descriptor plus noise (the street-aerial gap, 1.5x the noise of the map),
scoped by a disc around a VIGOR-style noisy prior (the tile centre +-100 m on each axis) of radius
100 m, 500 m, 2 km, 10 km, or the whole map. Recall@k is against the exact scoped search (every
in-scope descriptor scored). Latencies: single queries, one thread, after a warm-up pass. HNSW
methods are run at increasing ef until recall@10 >= 0.99; the row is the first that reaches it
(or the last tried). usearch has no filter in Python: it is post-filtered (``count`` grown with
the scope's selectivity, capped).

    .venv/bin/python benchmarks/search.py            # 10k/100k/1M tiles (1M at the model's dim only)
    .venv/bin/python benchmarks/search.py --quick    # 10k tiles, a small world, under a minute
    .venv/bin/python benchmarks/search.py --memory   # 1M tiles: resident bytes per tile of graph variants
    .venv/bin/python benchmarks/search.py --memory --quick   # 20k tiles (make test; --quick runs it too)

The quick world repeats ~150 base tiles some 130 times each in one shard: near-duplicates that only
the per-tile noise orders, so a projected graph's quick recall is a smoke test, not a measurement.

``--memory`` builds the same map once per graph variant (HNSW dim: the per-shard PCA projection the
graph holds, and M), cached under ``runs/search-bench/`` so that a rerun does not rebuild it, then per
re-rank depth (graph candidates re-scored exactly per shard, in units of k): recall@10 against the
exact search and latencies per scope (exact and the variant alternating query by query, so a ratio
is from one run), and the resident memory (RSS, from ``/proc/self/smaps``) of a fresh process that
opens the bundle with a cold page cache and runs, in turn: one whole-map graph search (every shard
graph loaded), a drive across the map (queries every 100 m of a diagonal, 2 km scope), and every
benchmark query of every scope. RSS is split into anonymous pages (graphs, tables) and the pages of
``descriptors.npy`` and ``tiles.npy`` the searches mapped (see :mod:`edge_geoloc.maps.memory`).
"""

# ruff: noqa: E402 (thread counts are set before numpy is imported)
from __future__ import annotations

import os

for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")  # single-query latency on one thread

import argparse
import dataclasses
import gc
import math
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_geoloc.config import dump_config, strict_json
from edge_geoloc.geo import MapCRS, Tiling
from edge_geoloc.mapbuild.build import build_from_descriptors, build_map
from edge_geoloc.maps import MapIndex
from edge_geoloc.maps.bundle import DESCRIPTORS, TILES, Bundle, EncoderInfo, RegionInfo

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
REGIONS = ["demo-suburb", "demo-downtown", "demo-rural", "demo-industrial"]
SCOPES = [100.0, 500.0, 2000.0, 10000.0, None]
K = 10
REPEAT = 3  # runs per query; the fastest counts
CRS = "EPSG:32633"
CENTRE = (47.0, 15.0)
M = 16
EF_CONSTRUCTION = 100  # every graph library alike (edge-geoloc's default; 40-64 cost recall on repeated neighbourhoods)
COPY_SHIFT, TILE_NOISE, QUERY_NOISE = 0.6, 0.4, 0.6  # in units of the base set's median NN distance


def memory_bandwidth_gbs() -> float:
    """Read bandwidth of one core: the best of a few sums over a 256 MB array."""
    a = np.ones(32 * 2**20)
    best = min(_timed(a.sum) for _ in range(5))
    return a.nbytes / best / 1e9


def _timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


# --- descriptors --------------------------------------------------------------------------------


def find_model(arg: str | None) -> Path:
    """The demo model if it is there, else a random-weight export of the tiny config (made once, ~30 s).

    Random weights give descriptors with neighbourhoods of their own (similar tiles, similar
    descriptors) but a narrower spread than a trained model's; the JSON says which model was used.
    """
    if arg:
        if not (ROOT / arg / "model.yaml").exists() and not (Path(arg) / "model.yaml").exists():
            raise SystemExit(f"{arg}: no model.yaml (an export folder is expected)")
        return (ROOT / arg) if (ROOT / arg / "model.yaml").exists() else Path(arg).resolve()
    for cand in ("models/demo", "export/build/demo", "export/build/tiny-random"):
        if (ROOT / cand / "model.yaml").exists():
            return ROOT / cand
    print("no demo model (models/demo): exporting a random-weight tiny model to export/build/tiny-random", flush=True)
    import torch

    from edge_geoloc.export.onnx_export import export_model
    from edge_geoloc.model import load_model_config
    from edge_geoloc.model.vit import CrossViewModel
    from edge_geoloc.train.checkpoint import model_state, save_checkpoint

    torch.manual_seed(0)
    cfg = load_model_config("tiny")
    ckpt = Path(tempfile.mkdtemp()) / "tiny-random.pt"
    save_checkpoint(ckpt, {**model_state(cfg), "model": CrossViewModel(cfg).state_dict()})
    export_model(ckpt, ROOT / "export" / "build" / "tiny-random", parity_samples=2)
    return ROOT / "export" / "build" / "tiny-random"


def base_grids(model: Path, quick: bool) -> tuple[list[np.ndarray], str]:
    """The model's descriptors of each demo region's tiles as (rows, cols, D) grids, via cached map bundles."""
    from edge_geoloc.runtime.card import sha256_of
    from edge_geoloc.world.region import Region

    tag = sha256_of(model / "model.yaml")[:12]
    grids = []
    for name in REGIONS[:1] if quick else REGIONS:
        region_file = ROOT / "maps" / f"{name}.yaml"
        if quick:  # a 400 m version of the world: seconds instead of a minute
            tmp = Path(tempfile.mkdtemp()) / f"{name}-400.yaml"
            dump_config(dataclasses.replace(Region.load(region_file), size_m=400.0), tmp)
            region_file, name = tmp, f"{name}-400"
        out = ROOT / "maps" / "build" / "bench-base" / f"{name}-{tag}"
        if not (out / "manifest.yaml").exists():
            build_map(region_file, model, out, workers=2, progress=False, overwrite=True)
        b = Bundle(out)
        t = b.manifest.tiling
        row, col = np.divmod(np.asarray(b.tiles["id"]), t.n_cols)
        grid = np.zeros((t.n_rows, t.n_cols, b.dim), dtype=np.float32)
        grid[row, col] = np.asarray(b.descriptors, dtype=np.float32)
        grids.append(grid)
    return grids, f"{model.relative_to(ROOT)} ({tag})"


def dihedral(grid: np.ndarray, v: int) -> np.ndarray:
    g = np.rot90(grid, v % 4, axes=(0, 1))
    return g[:, ::-1] if v >= 4 else g


def extend(grids: list[np.ndarray], side: int, dim: int, seed: int) -> tuple[Tiling, np.ndarray, float]:
    """A side x side tiling covered by perturbed copies of the base grids; descriptors in tiling id order."""
    rng = np.random.default_rng(seed)
    base = np.concatenate([g.reshape(-1, g.shape[-1]) for g in grids])
    sample = base[rng.choice(len(base), min(len(base), 2000), replace=False)]
    sim = sample @ base.T
    sim[np.arange(len(sample)), np.argmax(sim, axis=1)] = -np.inf  # itself
    scale = float(np.median(np.sqrt(np.maximum(0, 2 - 2 * sim.max(axis=1)))))
    d0 = base.shape[1]
    embed = None
    if dim != d0:
        q, _ = np.linalg.qr(rng.standard_normal((dim, d0)))
        embed = q.T.astype(np.float32)  # (d0, dim), orthonormal rows: an isometry
    e, n = MapCRS(CRS).to_en(*CENTRE)
    s = 32.0
    tiling = Tiling(float(e), float(n) - (side - 1) * s + 1e-6, float(e) + (side - 1) * s - 1e-6, float(n), 64.0)
    out = np.empty((side, side, dim), dtype=np.float32)
    p = min(min(g.shape[0], g.shape[1]) for g in grids)
    for r0 in range(0, side, p):
        for c0 in range(0, side, p):
            patch = dihedral(grids[rng.integers(len(grids))], int(rng.integers(8)))[:p, :p]
            h, w = min(p, side - r0), min(p, side - c0)
            x = patch[:h, :w].reshape(-1, d0)
            if embed is not None:
                x = x @ embed
            shift = rng.standard_normal(dim).astype(np.float32)
            x = x + COPY_SHIFT * scale * shift / np.linalg.norm(shift)
            x = x + (TILE_NOISE * scale / math.sqrt(dim)) * rng.standard_normal(x.shape).astype(np.float32)
            out[r0 : r0 + h, c0 : c0 + w] = x.reshape(h, w, dim)
    out = out.reshape(-1, dim)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    # Every method indexes the values a map stores (float16), so exact means the same ranking for all.
    return tiling, out.astype(np.float16).astype(np.float32), scale


def make_queries(tiling: Tiling, desc: np.ndarray, n: int, scale: float, seed: int):
    rng = np.random.default_rng(seed + 1)
    ids = rng.integers(len(desc), size=n)
    q = desc[ids] + (QUERY_NOISE * scale / math.sqrt(desc.shape[1])) * rng.standard_normal((n, desc.shape[1])).astype(
        np.float32
    )
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    e, nn = tiling.centre(ids)
    prior = np.stack([e, nn], axis=1) + rng.uniform(-100, 100, (n, 2))
    return q.astype(np.float32), prior


def scope_ids(tiling: Tiling, scope) -> np.ndarray | None:
    """Tiling ids of tiles whose centres lie in the disc (what the baselines filter with)."""
    if scope is None:
        return None
    e, n, r = scope
    ids = tiling.in_box(e - r, n - r, e + r, n + r)
    ce, cn = tiling.centre(ids)
    return ids[(ce - e) ** 2 + (cn - n) ** 2 <= r * r]


# --- methods ------------------------------------------------------------------------------------


def recall(got: list[np.ndarray], ref: list[np.ndarray], k: int) -> tuple[float, float]:
    r10, r1, n = 0.0, 0.0, 0
    for g, r in zip(got, ref):
        if len(r) == 0:
            continue
        n += 1
        r10 += len(np.intersect1d(g[:k], r[:k])) / min(k, len(r))
        r1 += float(len(g) > 0 and g[0] == r[0])
    return r10 / max(n, 1), r1 / max(n, 1)


def time_interleaved(
    fns: list, q: np.ndarray, scopes: list, warm: int = 20, repeat: int = REPEAT
) -> list[tuple[list, np.ndarray, np.ndarray]]:
    """Per method: results, CPU milliseconds of the querying thread and wall milliseconds, per query.

    This machine is shared: other jobs preempt the benchmark and share its caches, which inflates
    times at random. So the methods alternate query by query, each query runs ``repeat`` times and
    its fastest run counts (as ``bench_views.py`` does), and the thread's CPU time (what a query
    costs on a core of its own) is reported beside the wall clock.
    """
    for i in range(min(len(q), warm)):
        for fn in fns:
            fn(q[i], scopes[i])  # warm-up (loads shards, checks checksums, fills caches)
    out = [([], [], []) for _ in fns]
    for qi, s in zip(q, scopes):
        for fn, (res, cpu, wall) in zip(fns, out):
            best_c = best_w = None
            for _ in range(repeat):
                c, t = time.thread_time_ns(), time.perf_counter_ns()
                ids = fn(qi, s)
                dc, dw = time.thread_time_ns() - c, time.perf_counter_ns() - t
                best_c = dc if best_c is None else min(best_c, dc)
                best_w = dw if best_w is None else min(best_w, dw)
            cpu.append(best_c)
            wall.append(best_w)
            res.append(ids)
    return [(res, np.asarray(cpu) * 1e-6, np.asarray(wall) * 1e-6) for res, cpu, wall in out]


def pick_ef(make_fn, efs: tuple[int, ...], q: np.ndarray, scopes: list, ref: list) -> tuple[int, object]:
    """The smallest ef whose recall@10 reaches 0.99 (else the last tried; a sweep stops past 200 ms a query)."""
    for ef in efs:
        fn = make_fn(ef)
        t = time.perf_counter()
        got = [fn(v, sc) for v, sc in zip(q, scopes)]
        slow = (time.perf_counter() - t) / len(q) > 0.2
        if recall(got, ref, K)[0] >= 0.99 or slow:
            break
    return ef, fn


def row(tiles, dim, scope, method, rec, ts, bytes_per_tile, **extra) -> dict:
    cpu, wall = ts
    return {
        "tiles": tiles,
        "dim": dim,
        "scope_m": scope,
        "method": method,
        "recall_at_10": round(rec[0], 4),
        "recall_at_1": round(rec[1], 4),
        "p50_ms": round(float(np.percentile(cpu, 50)), 4),
        "p99_ms": round(float(np.percentile(cpu, 99)), 4),
        "wall_p50_ms": round(float(np.percentile(wall, 50)), 4),
        "wall_p99_ms": round(float(np.percentile(wall, 99)), 4),
        "bytes_per_tile": round(bytes_per_tile, 1),
        **extra,
    }


def build_bench_bundle(out: Path, tiling: Tiling, desc: np.ndarray, **graph) -> None:
    """A bundle of the benchmark's descriptors (2 processes); ``graph``: progress, hnsw_dim, M."""
    build_from_descriptors(
        out,
        workers=2,
        overwrite=True,
        crs=CRS,
        tiling=tiling,
        tile_ids=np.arange(len(desc)),
        descriptors=desc,
        encoder=EncoderInfo(
            model="bench", aerial_sha256="0" * 64, card_sha256="", descriptor_dim=desc.shape[1], backend="bench"
        ),
        region=RegionInfo("bench", *CENTRE, "descriptors"),
        tile_px=64,
        ef_construction=EF_CONSTRUCTION,
        **graph,
    )


def edge_geoloc_rows(
    tiling: Tiling, desc: np.ndarray, q: np.ndarray, scopes_all: dict, workdir: Path, bandwidth: float
):
    """The bundle (float16 descriptors, per-shard hnswlib graphs, built with 2 processes): exact and auto rows."""
    n, dim = desc.shape
    n_queries = len(q)
    out = workdir / f"map-{n}-{dim}"
    t0 = time.perf_counter()
    build_bench_bundle(out, tiling, desc, M=M)
    build_s = time.perf_counter() - t0
    disk = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    index = MapIndex.open(out, memory_cap_mb=1e6)
    index.search(q[0], None, K, method="hnsw")  # warm: every shard graph loaded and checked
    index.exact_search(q[0], None, K)  # warm: every descriptor page touched and checked
    # Reference: the exact scoped search, the same descriptors (float16) scored exhaustively. Then the
    # smallest ef reaching recall@10 >= 0.99, and a timed pass alternating exact and edge-geoloc query
    # by query, so that the load of this shared machine falls on both alike.
    refs, rows = {}, []
    for s in SCOPES:
        nq = n_queries if s is None or s <= 2000 else max(20, n_queries // 4)
        qs, scs = q[:nq], scopes_all[s][:nq]
        refs[s] = [index.exact_search(v, sc, K).ids for v, sc in zip(qs, scs)]

        def ours(ef):
            index.ef_search = ef
            return lambda d, scope: index.search(d, scope, K).ids

        ef, _ = pick_ef(ours, (16, 32, 64, 128), qs, scs, refs[s])
        (_, *t_exact), (got, *t_ours) = time_interleaved(
            [lambda v, sc: index.exact_search(v, sc, K).ids, lambda v, sc: index.search(v, sc, K).ids], qs, scs
        )
        in_scope = np.mean([len(scope_ids(tiling, sc)) if sc else n for sc in scs])
        bound = in_scope * dim * 2 / (bandwidth * 1e9) * 1e3
        rows.append(
            row(
                n,
                dim,
                s,
                "exact",
                (1.0, 1.0),
                t_exact,
                2 * dim,
                tiles_in_scope=round(float(in_scope)),
                bandwidth_bound_ms=round(bound, 4),
            )
        )
        rows.append(
            row(
                n,
                dim,
                s,
                "edge-geoloc",
                recall(got, refs[s], K),
                t_ours,
                disk / n,
                ef=ef,
                build_s=round(build_s, 2),
                methods=strategies(index, qs, scs),
            )
        )
        print(_fmt(rows[-2]), flush=True)
        print(_fmt(rows[-1]), flush=True)
    index = None  # release the shard graphs and memory maps before measuring in a fresh process
    gc.collect()
    resident = resident_per_tile(out)
    budget = 1.2 * (2 * dim + 2 * M * 4)
    for r in rows:
        if r["method"] == "edge-geoloc":
            r.update(resident, memory_budget_bytes_per_tile=round(budget, 1))
    shutil.rmtree(out, ignore_errors=True)
    return refs, rows


def strategies(index: MapIndex, q: np.ndarray, scopes: list) -> dict[str, int]:
    """How many queries the cost model answered by scans, graphs or both."""
    index.stats.methods.clear()
    for v, sc in zip(q, scopes):
        index.search(v, sc, K)
    return dict(index.stats.methods)


def resident_per_tile(bundle: Path) -> dict:
    """Resident memory of an opened bundle with every shard graph loaded and every descriptor touched,
    measured in a fresh process (this one holds the benchmark's arrays)."""
    import subprocess
    import sys

    code = f"""
import os, numpy as np
from edge_geoloc.maps import MapIndex
def rss():
    return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
r0 = rss()
index = MapIndex.open({str(bundle)!r}, memory_cap_mb=1e6)
q = np.asarray(index.desc[0], np.float32)
index.search(q, None, k=10, method='hnsw')   # every shard graph
index.exact_search(q, None, k=10)            # every descriptor page
print(rss() - r0, index.memory_bytes, index.n_tiles)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    delta, graph, n = (int(v) for v in out)
    return {
        "resident_bytes_per_tile": round(delta / n, 1),
        "resident_how": "RSS added by opening the bundle in a fresh process, every shard loaded and every row touched",
        "graph_bytes_per_tile": round(graph / n, 1),
    }


def run_map(
    tiles: int, dim: int, grids, n_queries: int, seed: int, workdir: Path, bandwidth: float, methods: set[str]
) -> list[dict]:
    import faiss

    faiss.omp_set_num_threads(1)
    side = round(math.sqrt(tiles))
    tiling, desc, scale = extend(grids, side, dim, seed)
    n = len(desc)
    q, prior = make_queries(tiling, desc, n_queries, scale, seed)
    rows: list[dict] = []
    print(f"\n== {n} tiles, dim {dim}, {n_queries} queries (base NN distance {scale:.4f})", flush=True)

    scopes_all = {s: [None if s is None else (float(p[0]), float(p[1]), s) for p in prior] for s in SCOPES}
    refs, ours = edge_geoloc_rows(tiling, desc, q, scopes_all, workdir, bandwidth)
    rows += ours

    def ids_in(sc):
        return scope_ids(tiling, sc)

    def selector(sel: np.ndarray):
        """faiss's cheapest selector for this scope: a hash set of few ids, a bitmap of many."""
        if len(sel) * 64 < n:
            return faiss.IDSelectorBatch(sel)
        mask = np.zeros(n, dtype=bool)
        mask[sel] = True
        bits = np.packbits(mask, bitorder="little")
        out = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bits))
        out.referenced = bits  # keep the bitmap alive as long as the selector
        return out

    if "faiss-flat" in methods:
        t0 = time.perf_counter()
        flat = faiss.IndexFlatIP(dim)
        flat.add(desc)
        build_s = time.perf_counter() - t0
        resident = flat.ntotal * dim * 4

        def flat_search(v, sc):
            sel = ids_in(sc)
            if sel is None:
                return flat.search(v[None], K)[1][0]
            params = faiss.SearchParameters(sel=selector(sel))
            return flat.search(v[None], K, params=params)[1][0]

        for s in SCOPES:
            nq = min(len(refs[s]), 60 if n >= 1_000_000 else len(refs[s]))
            ((got, *ts),) = time_interleaved([lambda v, sc: _valid(flat_search(v, sc))], q[:nq], scopes_all[s][:nq])
            rows.append(
                row(
                    n,
                    dim,
                    s,
                    "faiss-flat",
                    recall(got, refs[s][:nq], K),
                    ts,
                    4 * dim,
                    build_s=round(build_s, 2),
                    resident_bytes_per_tile=round(resident / n, 1),
                    resident_how="the library's own size of the index",
                )
            )
            print(_fmt(rows[-1]), flush=True)
        del flat
        gc.collect()

    def graph_rows(method, search, efs, build_s, size, resident, note=None) -> None:
        """A graph library's rows: per scope, the smallest ef reaching the recall target (untimed), then timed."""
        for s in SCOPES:
            nq = min(len(refs[s]), 60 if n >= 1_000_000 else len(refs[s]))
            ef, fn = pick_ef(
                lambda ef: lambda v, sc: search(v, sc, ef), efs(s), q[:nq], scopes_all[s][:nq], refs[s][:nq]
            )
            ((got, *ts),) = time_interleaved([fn], q[:nq], scopes_all[s][:nq])
            extra = {} if note is None else {"note": note(s)}
            rows.append(
                row(
                    n, dim, s, method, recall(got, refs[s][:nq], K), ts, size / n, ef=ef, build_s=round(build_s, 2),
                    resident_bytes_per_tile=round(resident / n, 1),
                    resident_how="the library's own size of the index", **extra,
                )
            )  # fmt: skip
            print(_fmt(rows[-1]), flush=True)

    if "faiss-hnsw" in methods:
        t0 = time.perf_counter()
        faiss.omp_set_num_threads(2)
        hnsw = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = EF_CONSTRUCTION
        hnsw.add(desc)
        faiss.omp_set_num_threads(1)
        build_s = time.perf_counter() - t0
        size = faiss.serialize_index(hnsw).nbytes
        resident = size  # faiss holds what it serializes (vectors, levels, links)

        def hnsw_search(v, sc, ef):
            sel = ids_in(sc)
            params = (
                faiss.SearchParametersHNSW(efSearch=ef)
                if sel is None
                else faiss.SearchParametersHNSW(efSearch=ef, sel=selector(sel))
            )
            return hnsw.search(v[None], K, params=params)[1][0]

        graph_rows(
            "faiss-hnsw",
            lambda v, sc, ef: _valid(hnsw_search(v, sc, ef)),
            lambda s: (32, 64, 128, 256, 1024, 4096),
            build_s,
            size,
            resident,
        )
        del hnsw
        gc.collect()

    if "usearch" in methods:
        from usearch.index import Index

        t0 = time.perf_counter()
        us = Index(ndim=dim, metric="ip", dtype="f16", connectivity=M, expansion_add=EF_CONSTRUCTION)
        us.add(np.arange(n), desc, threads=2)
        build_s = time.perf_counter() - t0
        size = us.serialized_length
        resident = us.memory_usage

        def us_search(v, sc, ef):
            sel = ids_in(sc)
            if sel is None:
                us.expansion_search = ef
                return np.asarray(us.search(v, K, threads=1).keys)
            count = int(min(n, 8192, math.ceil(K * n / max(len(sel), 1) * 2)))
            us.expansion_search = max(ef, count)
            keys = np.asarray(us.search(v, count, threads=1).keys)
            lo, hi = sel.min(), sel.max()  # sel is sorted row by row: a range check, then membership
            keys = keys[(keys >= lo) & (keys <= hi)]
            return keys[np.isin(keys, sel, assume_unique=True)][:K]

        graph_rows(
            "usearch",
            us_search,
            lambda s: (32, 64, 128, 256, 1024) if s is None else (32,),
            build_s,
            size,
            resident,
            note=lambda s: "post-filtered, count <= 8192" if s else "",
        )
        del us
        gc.collect()
    return rows


def _valid(ids: np.ndarray) -> np.ndarray:
    return ids[ids >= 0]


def _fmt(r: dict) -> str:
    scope = "none" if r["scope_m"] is None else f"{r['scope_m']:g} m"
    extra = (
        f"ef {r['ef']}" if "ef" in r else f"bound {r['bandwidth_bound_ms']:.3f} ms" if "bandwidth_bound_ms" in r else ""
    )
    return (
        f"  {r['method']:<12} {scope:>8}  R@10 {r['recall_at_10']:.3f}  R@1 {r['recall_at_1']:.3f}"
        f"  p50 {r['p50_ms']:8.3f} ms  p99 {r['p99_ms']:8.3f} ms  {r['bytes_per_tile']:7.1f} B/tile  {extra}"
    )


def table(rows: list[dict]) -> str:
    lines = [
        "| tiles | dim | scope | method | R@10 | R@1 | p50 ms | p99 ms | bytes/tile (disk) | resident B/tile | build s | note |",
        "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        scope = "none" if r["scope_m"] is None else f"{r['scope_m']:g} m"
        note = []
        if "ef" in r:
            note.append(f"ef {r['ef']}")
        if "bandwidth_bound_ms" in r:
            note.append(f"{r['tiles_in_scope']} tiles in scope, bandwidth bound {r['bandwidth_bound_ms']:.3f} ms")
        if r.get("note"):
            note.append(r["note"])
        lines.append(
            f"| {r['tiles']} | {r['dim']} | {scope} | {r['method']} | {r['recall_at_10']:.3f} | {r['recall_at_1']:.3f} |"
            f" {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['bytes_per_tile']:.0f} | {r.get('resident_bytes_per_tile', '')} |"
            f" {r.get('build_s', '')} | {'; '.join(note)} |"
        )
    return "\n".join(lines)


# --- resident memory of graph variants (--memory) ------------------------------------------------

VARIANTS = "256:16,64:16:2/4,32:16:4/8"  # HNSW dim : M [: re-rank depths] (256: today's full-dimension graph)
RERANKS = "2,4,8"  # graph candidates re-ranked per shard, in units of k (full-dimension graphs: 1)
CACHE = ROOT / "runs" / "search-bench"


def cached_bundle(
    tiling: Tiling, desc: np.ndarray, hdim: int, m: int, cache: Path, log: bool
) -> tuple[Path, float | None]:
    """The bundle of ``desc`` with a graph of ``hdim`` dims and ``M = m``, built once per content (seconds, or None)."""
    import hashlib

    key = hashlib.sha256(desc.astype(np.float16).tobytes()).hexdigest()[:12]
    n, dim = desc.shape
    out = cache / f"map-{n}-{dim}-{key}-h{hdim}{'-lifted' if hdim < dim else ''}-m{m}-efc{EF_CONSTRUCTION}"
    if (out / "manifest.yaml").exists():
        return out, None
    if log:
        print(f"  building {out.name} (2 processes)", flush=True)
    t0 = time.perf_counter()
    build_bench_bundle(out, tiling, desc, progress=log, hnsw_dim=None if hdim >= dim else hdim, M=m)
    return out, time.perf_counter() - t0


def drive(tiling: Tiling, desc: np.ndarray, scale: float, seed: int, step_m: float = 100.0):
    """Queries along the map's diagonal every ``step_m``: (descriptors, scopes of 2 km around a noisy prior)."""
    rng = np.random.default_rng(seed + 2)
    t = tiling
    length = math.hypot(t.east_max - t.east_min, t.north_max - t.north_min)
    f = np.arange(0.0, 1.0, step_m / length)
    e = t.east_min + f * (t.east_max - t.east_min)
    n = t.north_max - f * (t.north_max - t.north_min)
    ids = t.in_box(e.min(), n.min(), e.max(), n.max())  # nearest tile centre of each point
    ce, cn = t.centre(ids)
    near = np.array([ids[np.argmin((ce - a) ** 2 + (cn - b) ** 2)] for a, b in zip(e, n)])
    q = desc[near] + (QUERY_NOISE * scale / math.sqrt(desc.shape[1])) * rng.standard_normal(
        (len(near), desc.shape[1])
    ).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    prior = np.stack([e, n], axis=1) + rng.uniform(-100, 100, (len(e), 2))
    return q.astype(np.float32), [(float(a), float(b), 2000.0) for a, b in prior]


_RSS_CHILD = """
import json, sys, numpy as np
from edge_geoloc.maps import MapIndex
from edge_geoloc.maps.memory import resident
path, work, rerank, access = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
files = [path + '/' + f for f in ({files!r})]
spec = json.load(open(work + '/workload.json'))
data = np.load(work + '/workload.npz')
r0 = resident(files)
# 'default': the product's default descriptor access (what a device gets), else the one named
options = {{}} if access == 'default' else {{'descriptor_access': access}}
index = MapIndex.open(path, memory_cap_mb=1e6, rerank=rerank, **options)
stages = {{'open': resident(files) - r0}}
index.search(data['drive_q'][0], None, k=10, method='hnsw')
stages['graphs'] = resident(files) - r0
index.ef_search = spec['ef'][str(2000.0)]
for v, sc in zip(data['drive_q'], spec['drive_scopes']):
    index.search(v, sc, k=10)
stages['drive'] = resident(files) - r0
for s, scopes in spec['scopes'].items():
    index.ef_search = spec['ef'][s]
    for v, sc in zip(data['q'], scopes):
        index.search(v, sc, k=10)
stages['scattered'] = resident(files) - r0
print(json.dumps({{k: {{'rss': v.rss, 'anon': v.anon, **v.files}} for k, v in stages.items()}}
                 | {{'lru': index.memory_bytes, 'tiles': index.n_tiles, 'access': index.descriptor_access}}))
"""


def drop_page_cache(folder: Path) -> None:
    """Evict a bundle's files from the page cache (clean pages; no root needed): a fresh process starts cold,
    as a device does after boot, and maps only the pages it reads rather than cached neighbours too."""
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def measure_resident(bundle: Path, work: Path, rerank: int, access: str = "default") -> dict:
    """RSS stages of a fresh process on ``bundle`` (see the module docstring), bytes per tile; ``access``:
    the index's descriptor access ('default': MapIndex's own, what a device runs), reported back."""
    import json
    import subprocess
    import sys

    drop_page_cache(bundle)
    code = _RSS_CHILD.format(files=[DESCRIPTORS, TILES])
    out = subprocess.run(
        [sys.executable, "-c", code, str(bundle), str(work), str(rerank), access], capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"resident measurement failed:\n{out.stderr}")
    res = json.loads(out.stdout.strip().splitlines()[-1])
    n = res["tiles"]
    per = {
        stage: {Path(k).stem: round(v / n, 1) for k, v in vals.items()}
        for stage, vals in res.items()
        if isinstance(vals, dict)
    }
    return {"resident": per, "lru_bytes_per_tile": round(res["lru"] / n, 1), "access": res["access"]}


def memory_rows(args: argparse.Namespace, grids: list[np.ndarray], d0: int, on_rows=None) -> list[dict]:
    """Per graph variant and re-rank depth: recall@10, p50/p99 beside exact, RSS per tile (see the docstring);
    ``on_rows(rows)`` after each (a 1M-tile run takes an hour on a shared machine: results are kept as they come)."""
    import json

    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [20_000] if args.quick else [1_000_000]
    variants = [v.split(":") for v in args.variants.split(",")]
    default_reranks = [int(r) for r in args.reranks.split(",")]
    cache = Path(tempfile.mkdtemp(prefix="edge-geoloc-search-mem-")) if args.quick else CACHE
    rows = []
    try:
        for tiles in sizes:
            side = round(math.sqrt(tiles))
            tiling, desc, scale = extend(grids, side, d0, args.seed)
            n = len(desc)
            nq = args.queries or (40 if args.quick else 100)
            q, prior = make_queries(tiling, desc, nq, scale, args.seed)
            dq, dscopes = drive(tiling, desc, scale, args.seed)
            scopes = {s: [None if s is None else (float(p[0]), float(p[1]), s) for p in prior] for s in SCOPES}
            nqs = {s: nq if s is None or s <= 2000 else max(20, nq // 4) for s in SCOPES}
            print(f"\n== memory: {n} tiles, dim {d0}, {nq} queries a scope, drive of {len(dq)}", flush=True)
            work = Path(tempfile.mkdtemp(prefix="edge-geoloc-search-work-"))
            np.savez(work / "workload.npz", q=q, drive_q=dq)
            refs: dict = {}
            for spec in variants:
                hdim, m = min(int(spec[0]), d0), int(spec[1])
                reranks = [int(r) for r in spec[2].split("/")] if len(spec) > 2 else default_reranks
                path, build_s = cached_bundle(tiling, desc, hdim, m, cache, log=not args.quick)
                disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                for rr in reranks if hdim < d0 else [1]:
                    index = MapIndex.open(path, memory_cap_mb=1e6, rerank=rr)
                    if not refs:
                        refs = {s: [index.exact_search(v, sc, K).ids for v, sc in zip(q[: nqs[s]], scopes[s])]
                                for s in SCOPES}  # fmt: skip
                    efs, per_scope = {}, {}
                    for s in SCOPES:
                        qs, scs = q[: nqs[s]], scopes[s][: nqs[s]]

                        def ours(ef, index=index):
                            index.ef_search = ef
                            return lambda d, scope: index.search(d, scope, K).ids

                        efs[str(s)], _ = pick_ef(ours, (16, 32, 64, 128), qs, scs, refs[s])
                        index.ef_search = efs[str(s)]
                        (_, *t_exact), (got, *t_ours) = time_interleaved(
                            [
                                lambda v, sc, index=index: index.exact_search(v, sc, K).ids,
                                lambda v, sc, index=index: index.search(v, sc, K).ids,
                            ],
                            qs,
                            scs,
                        )
                        rec = recall(got, refs[s], K)
                        index.stats.rows_scored = index.stats.fallback_scans = 0
                        for v, sc in zip(qs, scs):
                            index.search(v, sc, K)
                        read = {
                            "rows_read_per_query": round(index.stats.rows_scored / len(qs), 1),
                            "fallback_scans": index.stats.fallback_scans,
                        }
                        per_scope[s] = (rec, t_ours, t_exact, read)
                    (work / "workload.json").write_text(
                        json.dumps(
                            {
                                "ef": efs,
                                "drive_scopes": dscopes,
                                "scopes": {str(s): scopes[s][: nqs[s]] for s in SCOPES},
                            }
                        )
                    )
                    index = None
                    gc.collect()
                    mem = measure_resident(path, work, rr)
                    for s, (rec, t_ours, t_exact, read) in per_scope.items():
                        p50, p50x = float(np.percentile(t_ours[0], 50)), float(np.percentile(t_exact[0], 50))
                        r = row(n, d0, s, f"hnsw {hdim}d M{m} rerank {rr}k", rec, t_ours, disk / n, ef=efs[str(s)])
                        r.update(
                            hnsw_dim=hdim,
                            M=m,
                            rerank=rr,
                            exact_p50_ms=round(p50x, 4),
                            ratio_to_exact=round(p50 / p50x, 4),
                            build_s=None if build_s is None else round(build_s, 1),
                            resident_bytes_per_tile=mem["resident"]["drive"]["rss"],
                            **read,
                            **mem,
                        )
                        rows.append(r)
                    print(_fmt_memory(rows[-len(SCOPES) :]), flush=True)
                    if on_rows is not None:
                        on_rows(rows)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        if args.quick:
            shutil.rmtree(cache, ignore_errors=True)
    return rows


def _fmt_memory(rows: list[dict]) -> str:
    r0 = rows[0]
    res = r0["resident"]
    head = (
        f"  {r0['method']} ({r0.get('access', 'map')} access): resident B/tile graphs {res['graphs']['rss']:.0f} (anon {res['graphs']['anon']:.0f}),"
        f" drive {res['drive']['rss']:.0f}, scattered {res['scattered']['rss']:.0f}"
        f" (descriptors {res['scattered']['descriptors']:.0f}, tiles {res['scattered']['tiles']:.0f})"
    )
    lines = [head]
    for r in rows:
        scope = "none" if r["scope_m"] is None else f"{r['scope_m']:g} m"
        lines.append(
            f"    {scope:>8}  R@10 {r['recall_at_10']:.3f}  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms"
            f"  exact p50 {r['exact_p50_ms']:.3f} ms  ratio {r['ratio_to_exact']:.3f}  ef {r['ef']}"
        )
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    lines = [
        "| tiles | HNSW dim | M | re-rank | scope | R@10 | p50 ms | p99 ms | exact p50 ms | ratio | ef |"
        " RSS B/tile: graphs loaded | + drive | + scattered | of which anon | descriptors | tiles | disk B/tile |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        res = r["resident"]
        sc = res["scattered"]
        scope = "none" if r["scope_m"] is None else f"{r['scope_m']:g} m"
        lines.append(
            f"| {r['tiles']} | {r['hnsw_dim']} | {r['M']} | {r['rerank']}k | {scope} | {r['recall_at_10']:.3f} |"
            f" {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['exact_p50_ms']:.3f} | {r['ratio_to_exact']:.3f} | {r['ef']} |"
            f" {res['graphs']['rss']:.0f} | {res['drive']['rss']:.0f} | {sc['rss']:.0f} | {sc['anon']:.0f} |"
            f" {sc['descriptors']:.0f} | {sc['tiles']:.0f} | {r['bytes_per_tile']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10k tiles, one small world, fewer queries (under a minute)")
    ap.add_argument("--json", default=None, help="write the rows here (default: benchmarks/results/search.json)")
    ap.add_argument(
        "--model", default=None, help="exported model (default: models/demo, else export/build/demo, else tiny-random)"
    )
    ap.add_argument("--sizes", default=None, help="comma-separated tile counts (default 10000,100000,1000000)")
    ap.add_argument("--methods", default="faiss-flat,faiss-hnsw,usearch", help="baselines to run")
    ap.add_argument("--queries", type=int, default=None, help="queries per scope")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory", action="store_true", help="resident bytes per tile of graph variants (1M tiles)")
    ap.add_argument("--variants", default=VARIANTS, help=f"--memory: HNSW dim:M[:r1/r2] (default {VARIANTS})")
    ap.add_argument("--note", default=None, help="--memory: a line for the results' notes (what shared the machine)")
    ap.add_argument("--reranks", default=RERANKS, help=f"--memory: re-rank depths in units of k (default {RERANKS})")
    args = ap.parse_args()
    t_start = time.perf_counter()
    load0 = [round(v, 2) for v in os.getloadavg()]
    model = find_model(args.model)
    grids, source = base_grids(model, args.quick)
    d0 = grids[0].shape[-1]
    if args.memory:
        return memory_main(args, grids, d0, source, t_start, load0)
    sizes = (
        [int(s) for s in args.sizes.split(",")]
        if args.sizes
        else ([10_000] if args.quick else [10_000, 100_000, 1_000_000])
    )
    methods = set(args.methods.split(",")) if args.methods else set()
    bandwidth = memory_bandwidth_gbs()
    work = Path(tempfile.mkdtemp(prefix="edge-geoloc-search-bench-"))
    rows = []
    try:
        for tiles in sizes:
            for dim in (d0, 1000) if not args.quick else (d0,):
                if dim == 1000 and tiles > 100_000:
                    continue  # 1M x 1000 float32 baselines alone would need 12 GB
                nq = args.queries or (40 if args.quick else 100 if tiles >= 1_000_000 else 200)
                rows += run_map(tiles, dim, grids, nq, args.seed, work, bandwidth, methods)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    memory = []
    if args.quick:  # make test: the --memory path too, one projected variant at 20k tiles
        memory = memory_rows(
            argparse.Namespace(**{**vars(args), "variants": "32:16", "reranks": "4", "queries": 20}), grids, d0
        )
        print("\n" + memory_table(memory))
    result = {
        "benchmark": "search",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "cpu": _cpu_name(),
        "memory_bandwidth_gbs": round(bandwidth, 2),
        "load_average_at_start": load0,
        "descriptors": source,
        "k": K,
        "hnsw": {"M": M, "ef_construction": EF_CONSTRUCTION},
        "quick": args.quick,
        "seconds": round(time.perf_counter() - t_start, 1),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "peak_rss_gb": round(_peak_rss_gb(), 2),
        "rows": rows,
        **({"memory_rows": memory} if memory else {}),
    }
    print("\n" + table(rows))
    path = Path(args.json) if args.json else RESULTS / ("search.quick.json" if args.quick else "search.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_json(result, indent=1))
    if not args.quick and not args.json:
        (RESULTS / "search.md").write_text(
            f"# Scoped map search\n\n{source} descriptors; {result['machine']}; {result['cpu']};"
            f" read bandwidth {bandwidth:.1f} GB/s; k = {K}; HNSW M {M}, ef_construction {EF_CONSTRUCTION}.\n\n"
            + table(rows)
            + "\n"
        )
    print(f"wrote {path} ({result['seconds']} s)")


def memory_main(args, grids, d0: int, source: str, t_start: float, load0: list[float]) -> None:
    from _results import write_json, write_markdown

    name = "search_memory.quick.json" if args.quick else "search_memory.json"
    path = Path(args.json) if args.json else RESULTS / name

    def write(rows: list[dict]) -> None:
        notes = [
            f"descriptors: {source}, tiled over the area as described in the module docstring",
            "RSS of a fresh process after opening with a cold page cache; stages are cumulative",
            f"load average at start {load0}, now {[round(v, 2) for v in os.getloadavg()]} ({os.cpu_count()} CPUs)",
            *([args.note] if args.note else []),
        ]
        write_json(path, rows, notes, t_start, k=K, ef_construction=EF_CONSTRUCTION, quick=args.quick)
        if not args.quick and not args.json:
            title = "Resident memory of a map's graph variants"
            write_markdown(RESULTS / "search_memory.md", title, memory_table(rows))

    rows = memory_rows(args, grids, d0, on_rows=write)
    print("\n" + memory_table(rows))
    print(f"wrote {path}")


def _peak_rss_gb() -> float:
    """Peak resident memory of this process or its largest child (the bundle build workers), GB."""
    import resource

    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 2**20


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()
