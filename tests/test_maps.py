"""Map bundles: layout, round trip, scoped search against brute force, LRU, refusals, resume, extract, sources."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from mapkit import (
    CENTER,
    CRS,
    descriptor_field,
    descriptor_map,
    files_of,
    low_rank_map,
    pattern,
    small_tiling,
    write_geotiff,
    write_region,
    write_world_file_image,
    write_xyz,
)

from edge_geoloc.cli import main
from edge_geoloc.config import ConfigError
from edge_geoloc.geo import MapCRS
from edge_geoloc.mapbuild.build import (
    assemble,
    build_map,
    build_shard,
    pending_shards,
    plan_build,
    plan_from_descriptors,
    run_build,
    work_dir_for,
)
from edge_geoloc.mapbuild.extract import extract_corridor
from edge_geoloc.mapbuild.imagery import SourceError, open_imagery
from edge_geoloc.maps import BundleError, MapIndex, ShardGrid, hilbert_key
from edge_geoloc.maps.bundle import DESCRIPTORS, MANIFEST, Bundle, EncoderInfo, RegionInfo, shard_file
from edge_geoloc.world.region import Region


def brute_force(index: MapIndex, q: np.ndarray, scope, k: int) -> np.ndarray:
    """Tile ids of the k best in-scope tiles by float64 cosine over the whole tile table."""
    t = index.bundle.tiles
    d = np.asarray(index.bundle.descriptors, dtype=np.float64)
    s = d @ (q / np.linalg.norm(q))
    if scope is not None:
        e, n, r = scope
        s[(t["east"] - e) ** 2 + (t["north"] - n) ** 2 > r * r] = -np.inf
    best = np.argsort(-s, kind="stable")[:k]
    return t["id"][best[np.isfinite(s[best])]]


@pytest.fixture(scope="module")
def field_map(tmp_path_factory):
    return descriptor_map(tmp_path_factory.mktemp("maps") / "field")


def random_queries(desc: np.ndarray, tiling, n: int, seed: int):
    rng = np.random.default_rng(seed)
    ids = rng.integers(len(desc), size=n)
    q = desc[ids] + 0.25 * rng.standard_normal((n, desc.shape[1]))
    e, nn = tiling.centre(rng.integers(len(desc), size=n))
    radii = rng.choice([40.0, 150.0, 400.0, 900.0], size=n)
    return q, [(float(a), float(b), float(r)) for a, b, r in zip(e, nn, radii)]


# --- layout ---------------------------------------------------------------------------------------


def test_hilbert_curve_visits_every_cell_once_through_neighbours():
    y, x = np.indices((8, 8))
    keys = hilbert_key(3, x.ravel(), y.ravel())
    assert sorted(keys.tolist()) == list(range(64))
    order = np.argsort(keys)
    steps = np.abs(np.diff(x.ravel()[order])) + np.abs(np.diff(y.ravel()[order]))
    assert np.all(steps == 1)


def test_storage_order_is_shard_major_and_a_disc_is_few_runs():
    tiling = small_tiling(64, 64)
    grid = ShardGrid(tiling, 32)
    ids = np.arange(len(tiling))
    stored = ids[grid.storage_order(ids)]
    shard = grid.shard_of(stored)
    assert np.all(np.diff(shard) >= 0) and len(np.unique(shard)) == 4
    # A disc of ~200 tiles inside one shard: its rows form a handful of runs along the curve.
    pos = np.empty_like(stored)
    pos[stored] = np.arange(len(stored))
    e, n = tiling.centre(ids)
    ce, cn = tiling.centre(tiling.tile_id(16, 16))
    rows = np.sort(pos[(e - ce) ** 2 + (n - cn) ** 2 <= 250.0**2])
    runs = 1 + int(np.sum(np.diff(rows) != 1))
    assert len(rows) > 150 and runs <= 20


# --- bundle ---------------------------------------------------------------------------------------


def test_bundle_round_trip(field_map):
    path, tiling, desc = field_map
    b = Bundle(path, verify="full")
    m = b.manifest
    assert (m.tiles, m.encoder.descriptor_dim, m.crs) == (len(tiling), 16, CRS)
    assert m.tiling.tiling() == tiling and m.shards.count == 25
    ids = np.asarray(b.tiles["id"])
    assert sorted(ids.tolist()) == list(range(len(tiling)))
    # Descriptors come back as float16 of the input, row by row through the tile ids.
    assert np.array_equal(np.asarray(b.descriptors), desc[ids].astype(np.float16))
    e, n = tiling.centre(ids)
    assert np.array_equal(b.tiles["east"], e) and np.array_equal(b.tiles["north"], n)
    lat, lon = MapCRS(CRS).to_latlon(e, n)
    assert np.allclose(b.tiles["lat"], lat) and np.allclose(b.tiles["lon"], lon)
    # Each shard is one contiguous block of rows holding exactly its tiles.
    for pos in range(len(b.shards)):
        a, z = b.rows(pos)
        assert np.all(ShardGrid(tiling, 8).shard_of(ids[a:z]) == b.shards[pos]["id"])
    for pos in range(len(b.shards)):
        b.verify_shard(pos)


def test_scoped_search_equals_exact_scoped_search(field_map):
    path, tiling, desc = field_map
    index = MapIndex.open(path)
    q, scopes = random_queries(desc, tiling, 60, seed=1)
    same_graph = 0
    for qi, scope in zip(q, scopes):
        ref = brute_force(index, qi, scope, 5)
        exact = index.exact_search(qi, scope, k=5)
        auto = index.search(qi, scope, k=5)
        graph = index.search(qi, scope, k=5, method="hnsw")
        assert np.array_equal(exact.ids, ref) and np.array_equal(auto.ids, ref)
        same_graph += np.array_equal(graph.ids, ref)
        e, n, r = scope
        assert np.all((auto.east - e) ** 2 + (auto.north - n) ** 2 <= r * r)
        assert np.all(np.diff(auto.scores) <= 0) and auto.in_scope == exact.in_scope
    assert same_graph >= 57  # graphs are approximate; the filtered shortfall check keeps them close
    # Without a scope: the whole map.
    whole = index.search(q[0], None, k=5, method="hnsw")
    assert np.array_equal(whole.ids, brute_force(index, q[0], None, 5)) and whole.shards == 25


def test_batch_queries_equal_single_queries(field_map):
    path, tiling, desc = field_map
    index = MapIndex.open(path)
    q, scopes = random_queries(desc, tiling, 8, seed=2)
    for batch, singles in (
        (index.search_batch(q, scopes, k=4), [index.search(a, s, k=4) for a, s in zip(q, scopes)]),
        (index.search_batch(q, scopes[0], k=4), [index.search(a, scopes[0], k=4) for a in q]),
        (index.search_batch(q, None, k=4, method="hnsw"), [index.search(a, None, k=4, method="hnsw") for a in q]),
    ):
        for a, b in zip(batch, singles):
            assert np.array_equal(a.ids, b.ids) and np.allclose(a.scores, b.scores)


def test_shard_lru_stays_under_its_cap_and_changes_nothing(field_map):
    path, tiling, desc = field_map
    free = MapIndex.open(path)
    cap = MapIndex.open(path, memory_cap_mb=12.0)  # each graph counts hnswlib's 2.6 MB of label locks: ~4 fit
    q, _ = random_queries(desc, tiling, 12, seed=3)
    for qi in q:
        a, b = free.search(qi, None, k=5, method="hnsw"), cap.search(qi, None, k=5, method="hnsw")
        assert np.array_equal(a.ids, b.ids)
    assert len(free.loaded_shards()) == 25 and free.stats.evictions == 0
    assert cap.memory_bytes <= 12 * 2**20 and 0 < len(cap.loaded_shards()) < 25 and cap.stats.evictions > 0
    # A small scope loads only the shards it touches.
    scoped = MapIndex.open(path)
    e, n = tiling.centre(tiling.tile_id(4, 4))
    scoped.search(q[0], (e, n, 60.0), k=3, method="hnsw")
    assert scoped.loaded_shards() == [0]


def test_projected_graphs_find_what_exact_search_finds_on_low_rank_descriptors(tmp_path):
    path, desc = low_rank_map(tmp_path / "proj", small_tiling(24, 24))
    rng = np.random.default_rng(6)
    index = MapIndex.open(path, verify="full")
    assert index.manifest.hnsw.dim == 8 and len(list((path / "shards").glob("*.proj.npy"))) == 4
    q = desc[rng.integers(len(desc), size=30)] + 0.02 * rng.standard_normal((30, 32))
    same = sum(np.array_equal(index.search(v, None, k=5, method="hnsw").ids, brute_force(index, v, None, 5)) for v in q)
    assert same >= 28
    # The projection is checked like every shard file.
    bad = copy_bundle(path, tmp_path / "badproj")
    f = next((bad / "shards").glob("*.proj.npy"))
    data = bytearray(f.read_bytes())
    data[-3] ^= 0x10
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"proj\.npy: sha256"):
        MapIndex.open(bad).search(q[0], None, k=3, method="hnsw")


# --- refusals -------------------------------------------------------------------------------------


def copy_bundle(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_corrupt_or_truncated_files_are_refused(field_map, tmp_path):
    path, tiling, desc = field_map
    # A flipped byte in the descriptors: lazy opening refuses the shard when a search touches it.
    bad = copy_bundle(path, tmp_path / "flip")
    f = bad / DESCRIPTORS
    data = bytearray(f.read_bytes())
    data[-7] ^= 0x40
    f.write_bytes(bytes(data))
    index = MapIndex.open(bad)
    e, n = tiling.centre(np.asarray(index.bundle.tiles["id"])[-1])
    with pytest.raises(BundleError, match=r"descriptors.npy: rows .* fail their sha256"):
        index.search(desc[0], (e, n, 50.0), k=3)
    with pytest.raises(BundleError, match="sha256"):
        Bundle(bad, verify="full")
    # A truncated shard index: refused at open (size), before hnswlib ever parses it.
    cut = copy_bundle(path, tmp_path / "cut")
    g = cut / shard_file(Bundle(cut).shards[3]["id"])
    g.write_bytes(g.read_bytes()[:-100])
    with pytest.raises(BundleError, match=r"\.hnsw: .* bytes, the manifest says"):
        MapIndex.open(cut)
    # Same size, other bytes: refused when the shard is first loaded.
    flip = copy_bundle(path, tmp_path / "flipidx")
    g = flip / shard_file(Bundle(flip).shards[0]["id"])
    data = bytearray(g.read_bytes())
    data[len(data) // 2] ^= 0xFF
    g.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"\.hnsw: sha256 .* differs"):
        MapIndex.open(flip).search(desc[0], None, k=3, method="hnsw")
    # A truncated descriptor file: refused at open.
    short = copy_bundle(path, tmp_path / "short")
    f = short / DESCRIPTORS
    f.write_bytes(f.read_bytes()[:-64])
    with pytest.raises(BundleError, match="truncated"):
        MapIndex.open(short)


def test_unknown_format_and_mismatched_encoder_are_refused(field_map, tmp_path):
    path = field_map[0]
    other = copy_bundle(path, tmp_path / "v9")
    text = (other / MANIFEST).read_text().replace("edge-geoloc-map/1", "edge-geoloc-map/9")
    (other / MANIFEST).write_text(text)
    with pytest.raises(BundleError, match="format 'edge-geoloc-map/9' is not one this edge-geoloc reads"):
        MapIndex.open(other)
    with pytest.raises(BundleError, match="no map bundle here"):
        MapIndex.open(tmp_path)

    @dataclasses.dataclass
    class Aerial:
        sha256: str

    @dataclasses.dataclass
    class Card:  # the fields of runtime.card.ModelCard that a map is checked against
        model: str
        aerial: Aerial
        descriptor_dim: int = 16
        metric: str = "cosine"

    MapIndex.open(path, card=Card("field", Aerial("ab" * 32)))  # the pairing aerial encoder: accepted
    with pytest.raises(BundleError, match=r"built with aerial encoder abababababab.*pairs with aerial encoder cdcd"):
        MapIndex.open(path, card=Card("other", Aerial("cd" * 32)))
    with pytest.raises(BundleError, match="16-d cosine, the model card gives 32-d"):
        MapIndex.open(path, card=Card("field", Aerial("ab" * 32), descriptor_dim=32))


def test_bad_queries_and_scopes(field_map):
    path, tiling, desc = field_map
    index = MapIndex.open(path)
    q = desc[0].copy()
    q[3] = np.nan
    with pytest.raises(ValueError, match="descriptor 0 has 1 non-finite values"):
        index.search(q, None)
    with pytest.raises(ValueError, match="all zeros"):
        index.search(np.zeros(16), None)
    with pytest.raises(ValueError, match="dim 16"):
        index.search(np.ones(8), None)
    with pytest.raises(ValueError, match="radius must be a positive"):
        index.search(desc[0], (0.0, 0.0, -5.0))
    with pytest.raises(ValueError, match="centre must be finite"):
        index.search(desc[0], (np.nan, 0.0, 5.0))
    far = index.search(desc[0], (0.0, 0.0, 500.0), k=3)
    assert len(far) == 0 and "outside the map" in far.reason
    # A scope over the map but between tile centres: empty too, with the reason.
    e, n = tiling.centre(0)
    gap = index.search(desc[0], (e + 16.0, n - 16.0, 5.0), k=3)
    assert len(gap) == 0 and gap.reason


# --- build from imagery ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_model():
    pytest.importorskip("torch")  # the export that makes the model needs torch; the build does not
    from exportkit import small_export

    return small_export()


def test_geotiff_world_file_and_xyz_sources_put_pixels_where_they_belong(tmp_path):
    write_geotiff(tmp_path / "ortho.tif")
    write_world_file_image(tmp_path / "ortho.png")
    write_xyz(tmp_path / "xyz")
    regions = {
        "geotiff": write_region(tmp_path / "g.yaml", "kind: geotiff\npath: ortho.tif", 400),
        "worldfile": write_region(tmp_path / "w.yaml", "kind: worldfile\npath: ortho.png\ncrs: 'EPSG:3857'", 400),
        "xyz": write_region(tmp_path / "x.yaml", "kind: xyz\npath: xyz", 400),
    }
    crs = MapCRS(CRS)
    size, gsd = 32, 2.0
    for kind, region_file in regions.items():
        source = open_imagery(Region.load(region_file), region_file)
        tiling = source.tiling(64.0)
        assert tiling.n_rows >= 3 and tiling.n_cols >= 3, kind
        ids = np.array([0, len(tiling) // 2, len(tiling) - 1])
        east, north = tiling.centre(ids)
        tiles = source.render(east, north, size, gsd)
        c = (size - 1) / 2
        i, j = np.indices((size, size), dtype=np.float64)
        for t, (e, n) in enumerate(zip(east, north)):
            gamma = np.radians(crs.convergence_deg(*crs.to_latlon(e, n)))
            pe = e + gsd * (j - c) * np.cos(gamma) + gsd * (i - c) * np.sin(gamma)
            pn = n + gsd * (j - c) * np.sin(gamma) - gsd * (i - c) * np.cos(gamma)
            want = pattern(pe, pn).astype(float)
            err = np.abs(tiles[t].astype(float) - want).mean()
            shifted = np.abs(tiles[t].astype(float) - pattern(pe + gsd, pn).astype(float)).mean()
            assert err < 3.0 and shifted > 2 * err + 3, (kind, t, err, shifted)
    # Tiles reaching past the imagery are refused by name.
    source = open_imagery(Region.load(regions["geotiff"]), regions["geotiff"])
    e, n = crs.to_en(*CENTER)
    with pytest.raises(SourceError, match="reaches outside the imagery"):
        source.render(np.array([e + 170.0]), np.array([n]), size, gsd)


def test_region_imagery_section_is_validated(tmp_path):
    bad = write_region(tmp_path / "a.yaml", "kind: geotiff\npath: x.tif\ncolour: red", 400)
    with pytest.raises(ConfigError, match=r"a.yaml:\d+: unknown key 'imagery.colour'"):
        Region.load(bad)
    with pytest.raises(ConfigError, match="needs the CRS"):
        Region.load(write_region(tmp_path / "b.yaml", "kind: worldfile\npath: x.png", 400))
    with pytest.raises(ConfigError, match="synthetic world needs a style"):
        Region.load(write_region(tmp_path / "c.yaml", "kind: synthetic", 400))
    with pytest.raises(SourceError, match="no such imagery file"):
        region_file = write_region(tmp_path / "d.yaml", "kind: geotiff\npath: none.tif", 400)
        open_imagery(Region.load(region_file), region_file)


def test_interrupted_build_resumes_to_identical_bytes(small_model, tmp_path):
    write_geotiff(tmp_path / "ortho.tif")
    region = write_region(tmp_path / "r.yaml", "kind: geotiff\npath: ortho.tif", 400)
    opts = {"shard_m": 96.0, "batch": 4, "progress": False}
    clean = build_map(region, small_model, tmp_path / "clean", **opts)
    manifest = yaml.safe_load((clean / MANIFEST).read_text())
    total = manifest["tiles"]
    assert manifest["encoder"]["backend"] == "onnxruntime" and manifest["shards"]["count"] >= 4

    class Kill(Exception):
        pass

    before: dict[int, int] = {}  # rows on disk per shard when the build dies

    def die_after_five(shard, done):
        before[shard] = done
        if len(calls) == 4:
            raise Kill
        calls.append(done)

    calls: list[int] = []
    with pytest.raises(Kill):
        build_map(region, small_model, tmp_path / "resumed", on_batch=die_after_five, **opts)
    assert not (tmp_path / "resumed").exists() and work_dir_for(tmp_path / "resumed").exists()
    redone: list[tuple[int, int]] = []
    out = build_map(region, small_model, tmp_path / "resumed", on_batch=lambda s, d: redone.append((s, d)), **opts)
    assert files_of(out) == files_of(clean)
    assert not work_dir_for(out).exists()
    # Five batches were on disk when the build died: the resumed run started after each of them.
    assert all(d > before.get(s, 0) for s, d in redone)
    encoded = sum(max(d for s2, d in redone if s2 == s) - before.get(s, 0) for s in {s for s, _ in redone})
    assert len(calls) == 4 and encoded + sum(before.values()) == total
    # Killed in the middle of a batch (while rendering): that batch is lost and redone, nothing else.
    from edge_geoloc.mapbuild.imagery import RasterSource

    render, renders = RasterSource.render, []

    def dies_on_the_seventh_batch(self, *args):
        renders.append(1)
        if len(renders) == 7:
            raise Kill
        return render(self, *args)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RasterSource, "render", dies_on_the_seventh_batch)
        before.clear()
        with pytest.raises(Kill):
            build_map(region, small_model, tmp_path / "midbatch", on_batch=before.__setitem__, **opts)
    redone.clear()
    out = build_map(region, small_model, tmp_path / "midbatch", on_batch=lambda s, d: redone.append((s, d)), **opts)
    assert files_of(out) == files_of(clean) and all(d > before.get(s, 0) for s, d in redone)
    encoded = sum(max(d for s2, d in redone if s2 == s) - before.get(s, 0) for s in {s for s, _ in redone})
    assert encoded + sum(before.values()) == total
    # The map refuses a street encoder of another export, and searches with its own.
    from edge_geoloc.runtime import load_card

    card = load_card(small_model)
    index = MapIndex.open(out, card=card)
    other = dataclasses.replace(card, aerial=dataclasses.replace(card.aerial, sha256="0" * 64))
    with pytest.raises(BundleError, match="descriptors of different encoders are not comparable"):
        MapIndex.open(out, card=other)
    hit = index.search(np.asarray(index.bundle.descriptors[7], np.float32), None, k=1)
    assert hit.rows[0] == 7


def test_parallel_and_cluster_style_builds_equal_the_serial_one(tmp_path):
    serial, tiling, _ = descriptor_map(tmp_path / "serial")
    parallel, _, _ = descriptor_map(tmp_path / "parallel", workers=2)
    assert files_of(parallel) == files_of(serial)
    # The cluster path: plan, shard tasks in any order (as a Ray/Dask map would run them), assemble.
    work = plan_from_descriptors(
        tmp_path / "cluster",
        crs=CRS,
        tiling=tiling,
        tile_ids=np.arange(len(tiling)),
        descriptors=descriptor_field(tiling),
        encoder=EncoderInfo(model="field", aerial_sha256="ab" * 32, card_sha256="", descriptor_dim=16, backend="test"),
        region=RegionInfo("field", *CENTER, "descriptors"),
        tile_px=32,
        shard_tiles=8,
    )
    for sid in reversed(pending_shards(work)):
        build_shard(work, sid)
    assert pending_shards(work) == []
    assert files_of(assemble(work)) == files_of(serial)


def test_extract_corridor_writes_a_valid_smaller_bundle(field_map, tmp_path):
    path, tiling, desc = field_map
    crs = MapCRS(CRS)
    (e0, e1), (n0, n1) = tiling.centre(np.array([0, len(tiling) - 1]))
    lat, lon = crs.to_latlon(np.array([e0 + 100, e1 - 200]), np.array([n0 - 150, n1 + 300]))
    route = {"type": "Feature", "geometry": {"type": "LineString", "coordinates": [[lon[0], lat[0]], [lon[1], lat[1]]]}}
    (tmp_path / "route.geojson").write_text(json.dumps(route))
    assert main(["map", "extract", "--from", str(path), "--corridor", str(tmp_path / "route.geojson"),
                 "--buffer-m", "150", "--out", str(tmp_path / "small")]) == 0  # fmt: skip
    small = MapIndex.open(tmp_path / "small", verify="full")
    big = MapIndex.open(path)
    # Exactly the tiles within the buffer of the segment, with the same ids and descriptor bits.
    e, n = tiling.centre(np.arange(len(tiling)))
    p, q = np.array([e0 + 100, n0 - 150]), np.array([e1 - 200, n1 + 300])
    d = q - p
    t = np.clip(((e - p[0]) * d[0] + (n - p[1]) * d[1]) / (d @ d), 0, 1)
    want = np.flatnonzero((e - p[0] - t * d[0]) ** 2 + (n - p[1] - t * d[1]) ** 2 <= 150.0**2)
    ids = np.asarray(small.bundle.tiles["id"])
    assert sorted(ids.tolist()) == want.tolist() and 0 < len(ids) < len(tiling)
    assert np.array_equal(np.asarray(small.bundle.descriptors), desc[ids].astype(np.float16))
    assert small.manifest.region.source == "extract" and small.manifest.encoder == big.manifest.encoder
    # Searches inside the corridor agree with the big map restricted to the corridor.
    mid = (p + q) / 2
    res = small.search(desc[want[3]], (mid[0], mid[1], 400.0), k=5)
    ref = big.exact_search(desc[want[3]], (mid[0], mid[1], 400.0), k=len(tiling))
    assert np.array_equal(res.ids, ref.ids[np.isin(ref.ids, ids)][:5])
    # Outside the corridor: an empty result that says why.
    far = small.search(desc[0], (e0, n1, 60.0), k=5)
    assert len(far) == 0 and "corridor extract" in far.reason
    with pytest.raises(BundleError, match="no tile of"):
        lat2, lon2 = crs.to_latlon(e0 - 50_000, n0)
        (tmp_path / "far.geojson").write_text(json.dumps({"type": "Point", "coordinates": [float(lon2), float(lat2)]}))
        extract_corridor(path, tmp_path / "far.geojson", 100.0, tmp_path / "none")


def test_map_cli_info_and_refusals(field_map, tmp_path, capsys):
    path, _, _ = field_map
    assert main(["map", "info", str(path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "1440 tiles" in out and "all sha256 verified" in out
    assert main(["map", "info", str(tmp_path)]) == 1
    assert "no map bundle here" in capsys.readouterr().err


def test_plan_refuses_to_resume_with_other_settings(small_model, tmp_path):
    write_geotiff(tmp_path / "ortho.tif")
    region = write_region(tmp_path / "r.yaml", "kind: geotiff\npath: ortho.tif", 400)
    plan_build(region, small_model, tmp_path / "m", shard_m=96.0, batch=4)
    with pytest.raises(BundleError, match=r"other settings is there .*batch"):
        plan_build(region, small_model, tmp_path / "m", shard_m=96.0, batch=8)
    out = run_build(work_dir_for(tmp_path / "m"), progress=False)
    assert Bundle(out, verify="full").manifest.tiles > 0


def test_a_dataset_city_localized_through_its_map(small_model, tmp_path):
    from edge_geoloc.data.synth import SynthConfig, synthesize
    from edge_geoloc.data.vigor import VigorDataset
    from edge_geoloc.mapbuild.evaluate import evaluate_map

    region = tmp_path / "Mini.yaml"
    region.write_text("name: Mini\ncenter_lat: 60.0\ncenter_lon: 18.0\nsize_m: 200\nstyle: downtown\nseed: 2\n")
    cfg = SynthConfig(regions=[str(region)], panoramas_per_city=8, satellite_px=32, panorama_px=(16, 64), seed=1)
    synthesize(cfg, tmp_path / "ds", workers=1, progress=False)
    out = build_map(region, small_model, tmp_path / "map", progress=False)
    # The map tiles the world exactly as the dataset did: the same tile centres.
    ds = VigorDataset(tmp_path / "ds", split="cross_area")
    tiles = Bundle(out).tiles
    got = np.stack([tiles["lat"], tiles["lon"]], axis=1)
    want = np.stack([ds.sat_lat, ds.sat_lon], axis=1)  # as written in the file names (rounded)
    got, want = got[np.lexsort(got.T[::-1])], want[np.lexsort(want.T[::-1])]
    assert got.shape == want.shape and np.allclose(got, want, rtol=0, atol=1e-6)
    report = evaluate_map(out, small_model, tmp_path / "ds", scopes_m=(200.0, 60.0))
    assert report["city"] == "Mini" and report["panoramas"] == len(ds)
    for scope in ("200m", "60m"):
        r = report[scope]
        assert r["top1_equals_exact"] == 1.0
        assert set(r) == {"top1_equals_exact", "centre", "offset", "fused"} and 0 <= r["centre"]["acc@50m"] <= 100
    # With the prior within 100 m per axis and a 200 m scope, every panorama has candidates.
    assert report["200m"]["centre"]["no_candidate_pct"] == 0.0
