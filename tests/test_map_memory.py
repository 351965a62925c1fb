"""A map's memory: a search maps only the descriptor pages it reads, the kernel's counts are read right,
and graphs on a PCA projection find the exact search's tiles once re-ranked deeply enough."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from mapkit import descriptor_map, low_rank_map, small_tiling

from edge_geoloc.maps import BundleError, MapIndex
from edge_geoloc.maps.bundle import DESCRIPTORS, TILES
from edge_geoloc.maps.memory import resident
from edge_geoloc.maps.search import CostModel

linux = pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="reads /proc/self/smaps")


def drop_page_cache(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as fh:
                os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


@pytest.fixture(scope="module")
def wide_map(tmp_path_factory):
    """9,216 tiles of 64-d descriptors (1.2 MB, 288 pages) in 4 shards, graphs on a 16-d projection."""
    return descriptor_map(
        tmp_path_factory.mktemp("memory") / "wide", small_tiling(96, 96), dim=64, shard_tiles=24, hnsw_dim=16
    )


@linux
def test_resident_counts_anonymous_pages_and_a_files_mapped_pages(tmp_path):
    import mmap

    r0 = resident()
    # 16 MB written into a fresh anonymous mapping (numpy's allocator could reuse pages already resident)
    block = mmap.mmap(-1, 16 * 2**20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    np.frombuffer(block, dtype=np.uint8)[:] = 1
    r1 = resident()
    assert r1.anon - r0.anon >= 15 * 2**20 and r1.rss - r0.rss >= 15 * 2**20
    f = tmp_path / "a.npy"
    np.save(f, np.arange(2**20, dtype=np.int64))  # 8 MB
    drop_page_cache(tmp_path)
    mm = np.load(f, mmap_mode="r")
    assert resident([f]).files[str(f)] == 0  # mapped, nothing read yet
    assert int(mm[: 2**19].sum()) == (2**19 - 1) * 2**18  # read half of it
    got = resident([f]).files[str(f)]
    assert 4 * 2**20 <= got <= 8 * 2**20 + 4096
    del mm
    block.close()


@linux
def test_a_scoped_search_maps_only_the_descriptor_pages_it_reads(wide_map):
    path, tiling, desc = wide_map
    files = [path / DESCRIPTORS, path / TILES]
    drop_page_cache(path)
    r0 = resident(files)
    index = MapIndex.open(path)  # lazy verification: each shard hashed at its first search
    e, n = tiling.centre(tiling.tile_id(48, 48))  # the corner four shards meet: all four verified
    for method in ("exact", "hnsw", "auto"):
        got = index.search(desc[tiling.tile_id(48, 48)], (e, n, 300.0), k=10, method=method)
        assert got.ids[0] == tiling.tile_id(48, 48)
    assert len(index.bundle._verified) == 4
    used = resident(files) - r0
    size = (path / DESCRIPTORS).stat().st_size
    # A 300 m disc holds ~280 of 9,216 tiles (3%): its rows and the re-ranked ones, a few pages each
    # side for the kernel's fault-around; hashing 4 whole shards through the memory map would map 100%.
    assert used.files[str(path / DESCRIPTORS)] <= 0.25 * size
    assert used.files[str(path / TILES)] <= 0.3 * (path / TILES).stat().st_size


def test_a_projected_graph_finds_the_exact_tiles_when_re_ranked_deeply_enough(wide_map):
    path, tiling, desc = wide_map
    rng = np.random.default_rng(3)
    q = desc[rng.integers(len(desc), size=40)] + 0.05 * rng.standard_normal((40, desc.shape[1]))
    scopes = [None, *[(float(a), float(b), 900.0) for a, b in zip(*tiling.centre(rng.integers(len(desc), size=19)))]]
    assert MapIndex.open(path).rerank == 2  # a projected graph's default (benchmarks/results/search_memory.md)
    agree = {}
    for depth in (1, 8):
        index = MapIndex.open(path, rerank=depth)
        assert index.rerank == depth
        hits = 0
        for i, v in enumerate(q):
            scope = scopes[i % len(scopes)]
            exact = index.exact_search(v, scope, k=10).ids
            hits += len(np.intersect1d(index.search(v, scope, k=10, method="hnsw").ids, exact))
        agree[depth] = hits / (10 * len(q))
    # 16 of 64 dims keep the field's structure, not the per-tile noise that orders close tiles: the
    # graph's own top 10 misses some; 8 x 10 candidates per shard re-scored exactly find nearly all.
    assert agree[8] >= 0.97
    assert agree[8] > agree[1]


def test_a_lifted_projected_graph_scores_exactly_the_projections_inner_product():
    from edge_geoloc.maps.bundle import HnswInfo
    from edge_geoloc.maps.graph import build_graph, graph_queries

    rng = np.random.default_rng(7)
    # Clustered unit descriptors (200 centres, tiles scattered around them) in 64 dims, a graph on 12.
    centres = rng.standard_normal((200, 64))
    x = centres[rng.integers(200, size=6000)] + 0.4 * rng.standard_normal((6000, 64))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    q = x[rng.integers(len(x), size=60)].astype(np.float32) + 0.05 * rng.standard_normal((60, 64)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    index, proj = build_graph(x, HnswInfo(dim=12, M=12, ef_construction=80, lifted=True), first_label=1000)
    assert proj.shape == (64, 13) and index.get_current_count() == len(x) and index.dim == 13
    mean, basis = proj[:, 0], proj[:, 1:]
    index.set_ef(128)
    labels, dist = index.knn_query(graph_queries(q, basis, lifted=True), k=20)
    y = (x.astype(np.float32) - mean) @ basis
    projected = (q @ basis) @ y.T  # what the graph must rank by: q . (x - mean) in the projection
    # The lifting coordinate changes no score (the query's is 0), and the graph finds the projection's top 20.
    np.testing.assert_allclose(1.0 - dist, np.take_along_axis(projected, labels - 1000, axis=1), atol=1e-4)
    best = np.argsort(-projected, axis=1)[:, :20] + 1000
    assert np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(labels, best)]) >= 0.95
    with pytest.raises(ValueError, match="needs a projection"):
        build_graph(x, HnswInfo(dim=64, lifted=True), 0)


@pytest.fixture(scope="module")
def low_rank(tmp_path_factory):
    """1,296 tiles in 9 shards of 144, 32-d descriptors of rank ~6, graphs on an 8-d projection."""
    tiling = small_tiling(36, 36)
    path, desc = low_rank_map(tmp_path_factory.mktemp("memory") / "low", tiling)
    return path, tiling, desc


def test_a_projected_map_scans_projections_and_finds_exact_search_s_tiles(low_rank):
    path, tiling, desc = low_rank
    # Exact scans priced out and projected scans at next to nothing: every shard of more than 2 x 4k tiles
    # that its graph would serve is served by a scan of its projections.
    index = MapIndex.open(path, cost=CostModel(scan_ns_per_element=1e6, projected_ns_per_element=0.0))
    rng = np.random.default_rng(8)
    tiles = rng.integers(len(desc), size=24)
    q = desc[tiles] + 0.02 * rng.standard_normal((24, desc.shape[1]))
    centres = list(zip(*tiling.centre(tiles)))
    scopes = [None, *[(float(e), float(n), r) for (e, n), r in zip(centres, (150.0, 300.0, 500.0) * 8)]][:24]
    for v, scope in zip(q, scopes):
        auto, exact = index.search(v, scope, k=5), index.exact_search(v, scope, k=5)
        assert np.array_equal(auto.ids, exact.ids) and auto.scores.tobytes() == exact.scores.tobytes()
        assert auto.method in ("projected", "mixed") and exact.method == "scan"
        parts = index.scope_parts(scope)
        index._choose(parts, 5, "auto")
        assert any(p.method == "projected" and p.whole == (scope is None) for p in parts)  # cut and whole shards
    assert index.stats.rows_projected > 0 and index.stats.methods["projected"] > 0
    # Several queries share one scope: one projected scan scores them all, results as one by one.
    for a, b in zip(index.search_batch(q[:6], scopes[1], k=5), [index.search(v, scopes[1], k=5) for v in q[:6]]):
        assert np.array_equal(a.ids, b.ids) and a.scores.tobytes() == b.scores.tobytes()


def test_a_projected_shard_s_codes_are_its_graph_s_vectors_and_count_in_the_lru(low_rank):
    path, _, _ = low_rank
    index = MapIndex.open(path)
    g = index._index(0)
    s = index.bundle.shards[0]
    count, h = int(s["count"]), index.hdim
    assert g.codes.shape == (count, h) and g.codes.dtype == np.int8
    # The codes decode to the projections the graph holds (its first h coordinates; the last lifts), row by row.
    held = g.index.get_items(np.arange(count) + int(s["start"]), return_type="numpy")[:, :h]
    assert np.all(np.abs(g.codes * g.scale - held) <= g.scale / 2 + 1e-5)
    # The LRU entry counts the codes and the projection beside the graph.
    graph_only = int(s["index_bytes"]) + 100 * count + 65536 * 40
    extra = g.codes.nbytes + g.scale.nbytes + g.mean.nbytes + g.basis.nbytes
    assert index.cache.items[("index", 0)][1] == graph_only + extra == index.memory_bytes


def same_result(a, b) -> None:
    """Two SearchResults equal bit for bit (scores compared as bytes, not within a tolerance)."""
    for f in ("ids", "scores", "east", "north", "lat", "lon", "rows"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f
    assert (a.in_scope, a.method, a.shards, a.reason) == (b.in_scope, b.method, b.shards, b.reason)


def test_read_and_map_descriptor_access_give_identical_results(wide_map):
    path, tiling, desc = wide_map
    read = MapIndex.open(path, rerank=4)
    mapped = MapIndex.open(path, rerank=4, descriptor_access="map")
    assert read.descriptor_access == "read" and mapped.descriptor_access == "map"
    rng = np.random.default_rng(11)
    tiles = rng.integers(len(desc), size=12)
    q = desc[tiles] + 0.05 * rng.standard_normal((12, desc.shape[1]))
    centres = list(zip(*tiling.centre(tiles)))
    scopes = [None, *[(float(e), float(n), r) for (e, n), r in zip(centres, (60.0, 150.0, 400.0, 900.0) * 3)]]
    for method in ("auto", "exact", "hnsw"):
        for k in (1, 10, 100):  # 100: more result rows than the tile scratch holds at first
            for v, sc in zip(q, scopes):
                same_result(read.search(v, sc, k, method), mapped.search(v, sc, k, method))
    # 700 x 2 scan candidates: re-scored in one block larger than the float32 scratch
    same_result(read.search(q[0], None, 700, "exact"), mapped.search(q[0], None, 700, "exact"))
    for a, b in zip(read.search_batch(q, scopes[: len(q)]), mapped.search_batch(q, scopes[: len(q)])):
        same_result(a, b)
    outside = (tiling.east_min - 5000.0, tiling.north_max + 5000.0, 100.0)
    same_result(read.search(q[0], outside), mapped.search(q[0], outside))
    with pytest.raises(ValueError, match="descriptor_access must be one of read, map"):
        MapIndex.open(path, descriptor_access="mmap")


@linux
def test_read_access_keeps_descriptor_and_tile_pages_out_of_rss(wide_map, tmp_path):
    import shutil

    src, tiling, desc = wide_map
    path = shutil.copytree(src, tmp_path / "copy")  # a path no earlier test's index maps
    files = [path / DESCRIPTORS, path / TILES]
    e, n = tiling.centre(tiling.tile_id(48, 48))
    for access in ("read", "map"):
        drop_page_cache(path)
        r0 = resident(files)
        index = MapIndex.open(path, descriptor_access=access)
        for method in ("exact", "hnsw", "auto"):
            assert index.search(desc[tiling.tile_id(48, 48)], (e, n, 300.0), 10, method).ids[0] == tiling.tile_id(
                48, 48
            )
            assert len(index.search(desc[0], None, 10, method)) == 10
        used = (resident(files) - r0).files
        if access == "read":  # positioned reads: the pages sit in the page cache, none in this process
            assert used[str(path / DESCRIPTORS)] == 0 and used[str(path / TILES)] == 0
        else:
            assert used[str(path / DESCRIPTORS)] > 0 and used[str(path / TILES)] > 0
        del index


def test_a_file_truncated_under_an_open_index_is_refused_naming_file_and_row(wide_map, tmp_path):
    import shutil

    src, _, desc = wide_map
    n = len(desc)
    for name in (DESCRIPTORS, TILES):
        path = shutil.copytree(src, tmp_path / name)
        index = MapIndex.open(path)
        last = int(index.bundle.tiles["id"][-1])
        assert index.search(desc[last], None, 10, "exact").rows[0] == n - 1  # every shard verified and read
        reader = index._reader if name == DESCRIPTORS else index._tile_reader
        os.truncate(path / name, reader.offset + (n - 1) * reader.row_bytes + 3)  # the last row cut short
        with pytest.raises(BundleError, match=rf"{name}: row {n - 1}: the file ends at byte .* bytes short"):
            index.search(desc[last], None, 10, "exact")


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_row_reader_reads_any_sorted_rows_of_any_npy_version(tmp_path, version):
    from numpy.lib import format as npy

    from edge_geoloc.maps.bundle import TILE_DTYPE
    from edge_geoloc.maps.memory import RowReader

    rng = np.random.default_rng(5)
    tiles = np.zeros(3000, TILE_DTYPE)
    tiles["id"], tiles["east"] = np.arange(3000), rng.standard_normal(3000)
    arrays = {"desc.npy": rng.standard_normal((3000, 24)).astype(np.float16), "tiles.npy": tiles}
    for name, a in arrays.items():
        with open(tmp_path / name, "wb") as f:
            npy.write_array(f, a, version=version)
        out = np.empty_like(a)
        # the default coalescing, every row read alone, everything through the scratch
        for gap, solo in ((4096, 4096), (0, 1), (1 << 20, 1 << 30)):
            reader = RowReader(tmp_path / name, gap=gap, solo=solo)
            assert (reader.shape, reader.dtype) == (a.shape, a.dtype)
            # scattered rows, rows sharing pages, runs with gaps, contiguous runs, the first and the last row
            for rows in (
                np.sort(rng.choice(3000, 50, replace=False)),
                np.sort(rng.choice(3000, 400, replace=False)),
                np.arange(100, 900, 3),
                np.concatenate([np.arange(10, 200), np.arange(205, 260), np.arange(2000, 2010)]),
                np.arange(2000, 3000),
                np.array([0, 1, 2, 70, 71, 1500, 2999]),
                np.array([7]),
            ):
                got = reader.read(rows, out)
                assert got.tobytes() == a[rows].tobytes()
            for bad in (np.array([5, 3]), np.arange(200, 100, -1), np.array([4, 4, 5])):
                with pytest.raises(ValueError, match="sorted"):
                    reader.read(bad, out)
