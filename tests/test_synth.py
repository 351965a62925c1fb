"""Synthetic VIGOR-layout datasets: placement, labels, determinism, resume, the reader on what was written.

These tests drive the writer with FAKE world functions defined here (``fake_generate_world``,
``fake_render_aerial``, ``fake_render_panorama``): a hand-built world with known roads and
buildings, and renderers that paint simple position- and seed-dependent pictures. They test the
writer's own logic (placement, names, labels, seeds, resume), not the look of the world; the real
renderers are exercised end to end in ``test_synth_with_the_real_world``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_geoloc.cli import main
from edge_geoloc.config import ConfigError
from edge_geoloc.data import synth
from edge_geoloc.data.synth import (
    WALKABLE,
    Renderers,
    SynthConfig,
    load_synth_config,
    plan_city,
    synthesize,
)
from edge_geoloc.data.vigor import (
    VigorDataset,
    delta_to_pixel,
    metadata_path,
    open_protocol,
    read_metadata,
    vigor_latlon,
)
from edge_geoloc.geo import MapCRS, wrap_deg
from edge_geoloc.world.region import Region
from edge_geoloc.world.scene import Buildings, Material, RoadNetwork, Trees, World

# --- FAKE world functions (tests only) -------------------------------------------------------------

ROAD_W, SIDEWALK_W = 7.0, 2.5
BOXES = [(-32.0, 32.0), (-32.0, -32.0), (32.0, -32.0), (-96.0, 96.0), (96.0, -96.0)]  # 20 m boxes, 12 m high


def fake_generate_world(region: Region) -> World:
    """FAKE generate_world: grass, a road grid every 64 m plus a diagonal, sidewalks, box buildings."""
    res = 0.5
    ce, cn = region.center_en()
    size = region.size_m
    n = round(size / res)
    east_min, north_max = ce - size / 2, cn + size / 2
    rows, cols = np.indices((n, n))
    x = (cols + 0.5) * res - size / 2  # metres east of the centre
    y = size / 2 - (rows + 0.5) * res
    h = size / 2 - 4
    lines = [np.array([[-h, v], [h, v]]) for v in (-64.0, 0.0, 64.0)]
    lines += [np.array([[v, -h], [v, h]]) for v in (-64.0, 0.0, 64.0)]
    lines.append(np.array([[0.0, 0.0], [h, h]]))
    nodes = np.concatenate(lines) + np.array([ce, cn])
    edges = np.arange(len(nodes)).reshape(-1, 2)
    height = np.zeros((n, n), np.float32)
    material = np.full((n, n), Material.GRASS, np.uint8)
    obj = np.zeros((n, n), np.int32)
    for a, b in lines:
        d = b - a
        t = np.clip(((x - a[0]) * d[0] + (y - a[1]) * d[1]) / (d @ d), 0, 1)
        dist = np.hypot(x - a[0] - t * d[0], y - a[1] - t * d[1])
        material[(dist <= ROAD_W / 2 + SIDEWALK_W) & (material != Material.ROAD)] = Material.SIDEWALK
        material[dist <= ROAD_W / 2] = Material.ROAD
    footprints = []
    for k, (bx, by) in enumerate(BOXES):
        inside = (np.abs(x - bx) < 10) & (np.abs(y - by) < 10)
        height[inside], material[inside], obj[inside] = 12.0, Material.ROOF, k + 1
        footprints.append(np.array([[bx - 10, by - 10], [bx + 10, by - 10], [bx + 10, by + 10], [bx - 10, by + 10]]))
    m = material.astype(np.int32)
    albedo = (np.stack([m * 17, m * 29, m * 53], -1) % 256).astype(np.uint8)
    nb = len(BOXES)
    buildings = Buildings(
        footprint=footprints,
        height_m=np.full(nb, 12.0, np.float32),
        facade_rgb=np.zeros((nb, 3), np.uint8),
        window_rgb=np.zeros((nb, 3), np.uint8),
        floor_m=np.full(nb, 3.0, np.float32),
        window_spacing_m=np.full(nb, 2.5, np.float32),
    )
    trees = Trees(en=np.zeros((0, 2)), radius_m=np.zeros(0), height_m=np.zeros(0))
    roads = RoadNetwork(nodes, edges, np.full(len(edges), ROAD_W, np.float32), np.ones(len(edges), np.uint8))
    return World(
        region, region.map_crs(), res, east_min, north_max, height, material, albedo, obj, buildings, trees, roads
    )


def fake_render_aerial(world, east, north, size_px, gsd_m, app=None, rng=None, true_north=True):
    """FAKE render_aerial: the albedo under the tile (nearest pixel, grid-north-up) plus seeded noise."""
    world.require_inside(east, north, "aerial tile", margin_m=size_px * gsd_m / 2)
    off = (np.arange(size_px) + 0.5 - size_px / 2) * gsd_m
    r, c = world.to_pixel(east + off[None, :], north - off[:, None])
    img = world.albedo[r.astype(int), c.astype(int)].astype(np.int16)
    return np.clip(img + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)


CALLS: list[tuple[float, float, float]] = []  # (east, north, heading) of fake panoramas rendered in this process


def fake_render_panorama(
    world, east, north, heading_deg, height_px=128, width_px=512, cam_height_m=2.0,
    elevation_range_deg=(-45, 45), app=None, rng=None,
):  # fmt: skip
    """FAKE render_panorama: a ramp over azimuth (so the heading shows), tinted by the appearance, plus seeded noise."""
    CALLS.append((east, north, heading_deg))
    az = heading_deg + (np.arange(width_px) + 0.5 - width_px / 2) * 360.0 / width_px
    ramp = 128 + 100 * np.sin(np.radians(az))
    img = ramp[None, :, None] * np.asarray(app.white_balance)[None, None, :] * app.exposure
    img = np.repeat(img, height_px, axis=0) + rng.normal(0, 3, (height_px, width_px, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


FAKES = Renderers(fake_generate_world, fake_render_aerial, fake_render_panorama)

# --- fixtures -----------------------------------------------------------------------------------------------


def write_regions(folder: Path) -> list[str]:
    """Two cities: 60 N 18 E (3 degrees west of its UTM meridian: convergence -2.6 degrees) and 47 N 9 E."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, lat, lon in (("Nordby", 60.0, 18.0), ("Alpstadt", 47.0, 9.0)):
        p = folder / f"{name}.yaml"
        p.write_text(f"name: {name}\ncenter_lat: {lat}\ncenter_lon: {lon}\nsize_m: 256\nstyle: suburb\nseed: 1\n")
        paths.append(str(p))
    return paths


def small_config(tmp_path: Path, **kw) -> SynthConfig:
    base = dict(
        regions=write_regions(tmp_path / "maps"),
        panoramas_per_city=12,
        satellite_px=32,
        panorama_px=(16, 64),
        seed=7,
    )
    base.update(kw)
    return SynthConfig(**base)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# --- tests ----------------------------------------------------------------------------------------------------


def test_config_file_overrides_and_errors(tmp_path):
    write_regions(tmp_path / "maps")
    cfg_file = tmp_path / "synth.yaml"
    cfg_file.write_text("regions: [maps/Nordby.yaml]\npanoramas_per_city: 50\ntile_m: 48\n")
    cfg = load_synth_config(cfg_file)
    assert cfg.regions == [str(tmp_path / "maps" / "Nordby.yaml")]  # relative to the config file
    assert cfg.tile_m == 48.0 and cfg.panoramas_per_city == 50 and cfg.satellite_px == 256
    cfg = load_synth_config(cfg_file, regions=["a.yaml", "b.yaml"], panoramas=9, seed=3)
    assert cfg.regions == ["a.yaml", "b.yaml"] and cfg.panoramas_per_city == 9 and cfg.seed == 3
    cfg_file.write_text("regions: [maps/Nordby.yaml]\npanoramas: 50\n")
    with pytest.raises(ConfigError, match=rf"{cfg_file}:2: unknown key 'panoramas'"):
        load_synth_config(cfg_file)
    cfg_file.write_text("regions: [maps/Nordby.yaml]\nsame_area_test_fraction: 1.5\n")
    with pytest.raises(ConfigError, match=rf"{cfg_file}:2: key 'same_area_test_fraction': expected a fraction"):
        load_synth_config(cfg_file)
    with pytest.raises(ConfigError, match="key 'regions': expected at least one region"):
        load_synth_config(None)
    cfg_file.write_text("regions: [a.yaml]\ncross_area_train: [A]\ncross_area_test: [A]\n")
    with pytest.raises(ConfigError, match="train and test cities overlap"):
        load_synth_config(cfg_file)


def test_panoramas_on_streets_spread_and_balanced(tmp_path):
    cfg = small_config(tmp_path, panoramas_per_city=40, max_panoramas_per_tile=2)
    world = fake_generate_world(Region.load(cfg.regions[0]))
    plan = plan_city(world, cfg)
    e, n = plan.pano_en[:, 0], plan.pano_en[:, 1]
    rows, cols = (np.floor(v).astype(int) for v in world.to_pixel(e, n))
    assert np.isin(world.material[rows, cols], WALKABLE).all()
    # Never inside (or within a metre of) a building.
    for fp in world.buildings.footprint:
        dx = np.maximum(np.maximum(fp[:, 0].min() - e, e - fp[:, 0].max()), 0)
        dy = np.maximum(np.maximum(fp[:, 1].min() - n, n - fp[:, 1].max()), 0)
        assert np.hypot(dx, dy).min() >= 0.9
    # Within the tiled area, at most 2 per positive tile, spread over it.
    assert plan.tiling.contains(e, n).all()
    positive = plan.tiling.covering(e, n)[0][:, 0]
    assert np.bincount(positive).max() <= 2 and len(set(positive)) >= 20
    t = plan.tiling
    assert np.ptp(e) > 0.8 * (t.east_max - t.east_min) and np.ptp(n) > 0.8 * (t.north_max - t.north_min)
    # Every tile lies inside the world.
    _, te, tn = t.centres()
    assert world.contains(te, tn, margin_m=cfg.tile_m / 2).all()
    # Same-area split: half the panoramas each side.
    assert plan.same_area_test.sum() == 20
    # Asking for more than the streets hold under the cap fails clearly.
    with pytest.raises(ValueError, match=r"placed only .* of 400 panoramas .* at most 1 per tile"):
        plan_city(world, small_config(tmp_path, panoramas_per_city=400, max_panoramas_per_tile=1))


def test_region_too_small_for_tiles(tmp_path):
    region = Region(name="Tiny", center_lat=47.0, center_lon=9.0, size_m=100.0, style="suburb")
    with pytest.raises(ValueError, match=r"'Tiny' \(100 x 100 m\) is too small for 96 m tiles"):
        plan_city(fake_generate_world(region), small_config(tmp_path, tile_m=96.0))


def test_written_dataset_reads_back_with_exact_labels(tmp_path):
    cfg = small_config(tmp_path)
    CALLS.clear()
    report = synthesize(cfg, tmp_path / "ds", workers=1, renderers=FAKES, progress=False)
    assert report.panoramas == 24 and report.satellites == 2 * 36 and report.rendered_panoramas == 24
    meta = read_metadata(tmp_path / "ds")
    assert meta is not None and list(meta.cities) == ["Nordby", "Alpstadt"]
    assert meta.label_gsd_m == 0.1 and meta.tile_m == 64.0 and meta.stride_m == 32.0 and meta.satellite_px == 32
    assert meta.satellite_gsd_m == 2.0 and meta.aerial_north == "true"
    assert (meta.panorama.height_px, meta.panorama.width_px) == (16, 64)
    assert meta.panorama.center_heading_deg == 0.0 and meta.panorama.north == "true"
    assert meta.cities["Nordby"].region == Region.load(cfg.regions[0]) and meta.seed == 7
    assert meta.cross_area_train == ["Nordby"] and meta.cross_area_test == ["Alpstadt"]
    assert 0.05 < meta.cities["Nordby"].label_error_px < 1.5  # VIGOR's sphere vs the ellipsoid, recorded

    ds = VigorDataset(tmp_path / "ds", split="cross_area")
    assert len(ds) == 24 and ds.num_aerial == 72 and ds.heading_deg == 0.0
    for ci, region_file in enumerate(cfg.regions):
        world = fake_generate_world(Region.load(region_file))
        plan = plan_city(world, cfg)  # the exact map positions the writer used
        crs = MapCRS(meta.cities[plan.name].crs)
        mine = ds.pano_city == ci
        assert [p.name for p in np.array(ds.pano_paths)[mine]] == plan.pano_names
        for k in range(4):
            sat = ds.label[mine, k]
            lat, lon = vigor_latlon(ds.sat_lat[sat], ds.sat_lon[sat], ds.delta_px[mine, k], ds.label_gsd_m)
            e, n = crs.to_en(lat, lon)
            err_px = np.hypot(e - plan.pano_en[:, 0], n - plan.pano_en[:, 1]) / ds.label_gsd_m
            assert err_px.max() < 1.0
        # The positive is the nearest tile centre (in the map grid).
        _, ce, cn = plan.tiling.centres()
        local = ds.label[mine, 0] - np.flatnonzero(ds.sat_city == ci)[0]
        d2 = (ce[None, :] - plan.pano_en[:, :1]) ** 2 + (cn[None, :] - plan.pano_en[:, 1:]) ** 2
        assert np.array_equal(local, np.argmin(d2, axis=1))
        # North-aligned: rendered with the grid heading that faces true north.
        gamma = crs.convergence_deg(*crs.to_latlon(plan.pano_en[:, 0], plan.pano_en[:, 1]))
        assert np.allclose(plan.pano_heading_grid, wrap_deg(-gamma))
        rendered = {(round(c[0], 6), round(c[1], 6)): c[2] for c in CALLS}
        headings = [rendered[round(e, 6), round(n, 6)] for e, n in plan.pano_en]
        assert np.allclose(headings, plan.pano_heading_grid)
        if plan.name == "Nordby":
            assert np.allclose(headings, 2.6, atol=0.05)  # convergence -2.6 degrees at 60 N, 18 E

    s = ds[5]
    assert s.street.shape == (16, 64, 3) and s.aerial.shape == (32, 32, 3) and s.aerial_gsd_m == 2.0
    assert np.all(ds.iou[:, 0] >= ds.iou[:, 1:].max(axis=1))
    train, test = VigorDataset(tmp_path / "ds"), VigorDataset(tmp_path / "ds", split="same_area_test")
    assert len(train) + len(test) == 24 and len(test) == 12
    assert open_protocol(tmp_path / "ds", "cross_area", "test").cities == ["Alpstadt"]


def test_same_config_same_bytes_whatever_the_workers(tmp_path):
    cfg = small_config(tmp_path)
    synthesize(cfg, tmp_path / "a", workers=1, renderers=FAKES, progress=False)
    synthesize(cfg, tmp_path / "b", workers=2, renderers=FAKES, progress=False)
    a, b = tree_digest(tmp_path / "a"), tree_digest(tmp_path / "b")
    assert a == b and len(a) == 24 + 72 + 2 * 4 + 2  # images, split files, metadata and lock
    other = small_config(tmp_path, seed=8)
    synthesize(other, tmp_path / "c", workers=1, renderers=FAKES, progress=False)
    c = tree_digest(tmp_path / "c")
    assert not set(k for k in c if "panorama/" in k) & set(k for k in a if "panorama/" in k)


class Interrupted(Exception):
    pass


def test_resume_after_a_partial_run(tmp_path):
    cfg = small_config(tmp_path)
    synthesize(cfg, tmp_path / "full", workers=1, renderers=FAKES, progress=False)
    calls = {"n": 0}

    def crashing_panorama(*args, **kwargs):  # FAKE renderer that dies after 5 panoramas
        calls["n"] += 1
        if calls["n"] > 5:
            raise Interrupted
        return fake_render_panorama(*args, **kwargs)

    out = tmp_path / "part"
    with pytest.raises(Interrupted):
        synthesize(cfg, out, workers=1, renderers=Renderers(fake_generate_world, fake_render_aerial, crashing_panorama))
    assert len(list(out.glob("*/panorama/*.jpg"))) == 5 and not metadata_path(out).exists()
    tiles_before = len(list(out.glob("*/satellite/*.png")) + list(out.glob("*/satellite/*.jpg")))
    assert tiles_before > 0  # cities render one at a time: the first city's tiles, then its panoramas
    # A leftover temporary file from a killed writer is harmless.
    (out / "Alpstadt" / "panorama" / ".junk.jpg.tmp").write_bytes(b"half")
    report = synthesize(cfg, out, workers=2, renderers=FAKES, progress=False)
    assert report.rendered_panoramas == 19 and report.rendered_satellites == report.satellites - tiles_before
    done = tree_digest(out)
    done.pop("Alpstadt/panorama/.junk.jpg.tmp")
    assert done == tree_digest(tmp_path / "full")
    with pytest.raises(ValueError, match="started with another config"):
        synthesize(small_config(tmp_path, seed=99), out, workers=1, renderers=FAKES, progress=False)


def test_output_folder_is_claimed_only_once_planned(tmp_path):
    out = tmp_path / "ds"
    too_many = small_config(tmp_path, panoramas_per_city=400, max_panoramas_per_tile=1)
    with pytest.raises(ValueError, match=r"placed only .* \(\d+ of 36 tiles have streets"):
        synthesize(too_many, out, workers=1, renderers=FAKES, progress=False)
    assert not out.exists()
    report = synthesize(small_config(tmp_path, panoramas_per_city=3), out, workers=1, renderers=FAKES, progress=False)
    assert report.panoramas == 6
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("someone else's")
    with pytest.raises(ValueError, match="not empty and holds no synthetic dataset"):
        synthesize(small_config(tmp_path), foreign, workers=1, renderers=FAKES, progress=False)


def test_cli_synth_and_info(tmp_path, monkeypatch, capsys):
    regions = write_regions(tmp_path / "maps")
    monkeypatch.setattr(synth, "default_renderers", lambda: FAKES)  # FAKE renderers behind the CLI
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml.safe_dump({"satellite_px": 32, "panorama_px": [16, 64], "cross_area_test": ["Nordby"]}))
    out = tmp_path / "ds"
    args = ["dataset", "synth", "--out", str(out), "--config", str(cfg_file), "--regions", *regions]
    assert main([*args, "--panoramas", "6", "--workers", "2", "--seed", "3", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "12 panoramas, 72 satellite tiles" in printed and "panoramas" in printed
    meta = read_metadata(out)
    assert meta is not None and meta.cross_area_test == ["Nordby"] and meta.cross_area_train == ["Alpstadt"]
    assert main(["dataset", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "split='same_area_test': 3 panoramas, 36 satellite images" in info
    assert main(["dataset", "synth", "--out", str(tmp_path / "x")]) == 1
    assert "expected at least one region" in capsys.readouterr().err


def test_synth_with_the_real_world(tmp_path):
    """End to end with the real layout and renderers; labels checked against the aerial renderer's own geometry."""
    from edge_geoloc.world.aerial import tile_corners_en
    from edge_geoloc.world.layout import generate_world

    region = tmp_path / "r.yaml"
    region.write_text("name: Mini\ncenter_lat: 60.0\ncenter_lon: 18.0\nsize_m: 160\nstyle: downtown\nseed: 2\n")
    cfg = SynthConfig(regions=[str(region)], panoramas_per_city=6, satellite_px=32, panorama_px=(16, 64), seed=1)
    synthesize(cfg, tmp_path / "ds", workers=2, progress=False)
    ds = VigorDataset(tmp_path / "ds", split="cross_area")
    assert len(ds) == 6 and ds.street(0).shape == (16, 64, 3) and ds.aerial(0).shape == (32, 32, 3)
    assert np.std(ds.street(1).astype(float)) > 1.0  # a picture, not a constant
    world = generate_world(Region.load(region))
    plan = plan_city(world, cfg)
    worst = 0.0
    for i, (e, n) in enumerate(plan.pano_en):
        for k in range(4):
            # Where the panorama is in a 640-px version of the tile, from render_aerial's corners (true north up).
            tl, tr, _, bl = np.stack(tile_corners_en(world, *plan.sat_en[ds.label[i, k]], 640, 0.1), axis=1)
            col, row = np.linalg.solve(np.stack([(tr - tl) / 640, (bl - tl) / 640], axis=1), [e - tl[0], n - tl[1]])
            err = float(np.hypot(*(np.array([row, col]) - delta_to_pixel(ds.delta_px[i, k]))))
            assert err < (1.0 if k == 0 else 1.5), (i, k, err)  # VIGOR's sphere: ~0.36 % of the offset at 60 N
            worst = max(worst, err)
    meta = read_metadata(tmp_path / "ds")
    assert meta is not None and meta.cities["Mini"].label_error_px == pytest.approx(worst, abs=1e-3)
