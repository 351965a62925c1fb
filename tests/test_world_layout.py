"""The world layout generator: determinism, road graph, buildings off the roads, style contrast."""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_geoloc.world.layout import generate_world
from edge_geoloc.world.region import STYLES, Region
from edge_geoloc.world.roads import RoadBuilder, RoadSpec
from edge_geoloc.world.scene import VEGETATION, Material, World

MAPS = Path(__file__).resolve().parents[1] / "maps"
SIZE_M, RES_M = 300.0, 0.5


def region(style: str, seed: int = 0, size_m: float = SIZE_M, res_m: float = RES_M) -> Region:
    return Region(
        name=f"test-{style}",
        center_lat=47.37,
        center_lon=8.54,
        size_m=size_m,
        style=style,
        seed=seed,
        resolution_m=res_m,
    )


@functools.cache
def world(style: str, seed: int = 0) -> World:
    return generate_world(region(style, seed))


def carriageway_mask(w: World, shrink_m: float = 0.0) -> np.ndarray:
    """Raster of the road carriageways drawn straight from the RoadNetwork vectors."""
    mask = np.zeros(w.shape, np.uint8)
    net = w.roads
    for (a, b), width in zip(net.edges, net.width_m):
        r, c = w.to_pixel(net.nodes[[a, b], 0], net.nodes[[a, b], 1])
        pts = np.round(np.stack([c - 0.5, r - 0.5], axis=1) * 8).astype(np.int32)
        thick = max(1, int((width - 2 * shrink_m) / w.res_m))
        cv2.polylines(mask, [pts], False, 1, thick, cv2.LINE_8, 3)
    return mask.astype(bool)


@pytest.mark.parametrize("style", STYLES)
def test_same_region_gives_identical_world_and_other_seed_differs(style):
    a, b = world(style), generate_world(region(style))
    for name in ("height", "material", "albedo", "obj"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert np.array_equal(a.roads.nodes, b.roads.nodes) and np.array_equal(a.roads.edges, b.roads.edges)
    assert len(a.buildings) == len(b.buildings) and len(a.trees) == len(b.trees)
    other = world(style, 1)
    assert not np.array_equal(a.material, other.material)
    assert not np.array_equal(a.roads.nodes.shape, other.roads.nodes.shape) or not np.allclose(
        a.roads.nodes, other.roads.nodes
    )


@pytest.mark.parametrize("style", STYLES)
def test_raster_covers_the_region_square_at_its_resolution(style):
    w = world(style)
    ce, cn = w.region.center_en()
    assert w.shape == (round(SIZE_M / RES_M),) * 2 and w.res_m == RES_M
    assert w.east_min == pytest.approx(ce - SIZE_M / 2) and w.north_max == pytest.approx(cn + SIZE_M / 2)
    assert w.height.dtype == np.float32 and w.albedo.dtype == np.uint8 and w.obj.dtype == np.int32


@pytest.mark.parametrize("style", STYLES)
def test_road_graph_is_connected_inside_the_world_and_not_only_a_grid(style):
    w = world(style)
    net = w.roads
    assert len(net.edges) >= 10
    assert np.all(w.contains(net.nodes[:, 0], net.nodes[:, 1]))
    seen, stack, adj = {0}, [0], net.neighbours()
    while stack:
        for m in adj[stack.pop()]:
            if m not in seen:
                seen.add(m)
                stack.append(m)
    assert len(seen) == len(net.nodes), "road network is not connected"
    assert all(len(a) > 0 for a in adj)
    d = net.nodes[net.edges[:, 1]] - net.nodes[net.edges[:, 0]]
    assert np.all(np.hypot(*d.T) > 0.4)
    # Directions modulo 90 degrees spread over many bins: curves, rotated or warped grids, diagonals.
    ang = np.mod(np.degrees(np.arctan2(d[:, 1], d[:, 0])), 90.0)
    assert len(np.unique(np.floor(ang / 5))) >= 5


@pytest.mark.parametrize("style", STYLES)
def test_buildings_stay_off_the_roads_and_street_space_is_open(style):
    w = world(style)
    road = carriageway_mask(w)
    building = (w.obj >= 1) & (w.obj <= len(w.buildings))
    assert not np.any(road & building)
    # Street surfaces are at ground level, and the centre lines are drivable: road or markings, height 0.
    street = np.isin(w.material, (Material.ROAD, Material.SIDEWALK, Material.MARKING))
    assert np.all(w.height[street] == 0)
    core = carriageway_mask(w, shrink_m=1.0)
    assert np.mean(np.isin(w.material[core], (Material.ROAD, Material.MARKING))) > 0.97


@pytest.mark.parametrize("style", STYLES)
def test_object_ids_materials_and_vectors_agree(style):
    w = world(style)
    nb, nt = len(w.buildings), len(w.trees)
    building = (w.obj >= 1) & (w.obj <= nb)
    assert np.array_equal(building, w.material == Material.ROOF)
    tree = w.obj > nb
    assert w.obj.max() <= nb + nt
    assert np.all(np.isin(w.material[tree], (Material.TREE, Material.SHRUB)))
    assert np.all(w.obj[w.material == Material.TREE] > nb)
    present = np.zeros(nb + 1, bool)
    present[np.unique(w.obj[building])] = True
    assert present[1:].all(), "every building has pixels"
    for k in range(1, nb + 1, max(1, nb // 15)):
        assert w.buildings.height_m[k - 1] == pytest.approx(float(w.height[w.obj == k].max()), abs=1e-4)
        fp = w.buildings.footprint[k - 1]
        rows, cols = np.nonzero(w.obj == k)
        e, n = w.to_en(rows.mean() + 0.5, cols.mean() + 0.5)
        assert fp[:, 0].min() - 1 <= e <= fp[:, 0].max() + 1 and fp[:, 1].min() - 1 <= n <= fp[:, 1].max() + 1
    assert w.buildings.facade_rgb.shape == (nb, 3) and np.all(w.buildings.floor_m > 2)
    if nt:
        # A tree's crown top is its height where no taller object covers it.
        r, c = w.to_pixel(w.trees.en[:, 0], w.trees.en[:, 1])
        top = w.height[r.astype(int), c.astype(int)]
        assert np.mean(np.abs(top - w.trees.height_m) < 0.3) > 0.7


def test_styles_differ_in_cover_height_and_vegetation():
    stats = {}
    for style in STYLES:
        w = world(style)
        roof = w.material == Material.ROOF
        stats[style] = (
            roof.mean(),
            w.height[roof].mean() if roof.any() else 0.0,
            np.isin(w.material, VEGETATION).mean(),
        )
    cover = {s: v[0] for s, v in stats.items()}
    height = {s: v[1] for s, v in stats.items()}
    veg = {s: v[2] for s, v in stats.items()}
    assert cover["downtown"] > cover["industrial"] > cover["suburb"] > cover["rural"]
    assert height["downtown"] > 1.5 * height["industrial"] and height["industrial"] > 1.5 * height["suburb"]
    assert veg["rural"] > veg["suburb"] > max(veg["industrial"], veg["downtown"])
    assert veg["downtown"] < 0.25 and veg["rural"] > 0.7


def test_styles_have_their_features():
    def share(w, mat):
        return np.mean(w.material == mat)

    down, sub, rur, ind = (world(s) for s in ("downtown", "suburb", "rural", "industrial"))
    assert share(down, Material.MARKING) > 0.003 and share(down, Material.SIDEWALK) > 0.05
    assert share(ind, Material.CAR) > 0.002 and share(ind, Material.PARKING) > 0.05
    assert share(rur, Material.FIELD) > 0.3
    assert share(sub, Material.TREE) > 0.03 and len(sub.buildings) > 40
    # Suburb roofs are pitched (sloped height profiles); industrial roofs are flat.
    ge_sub = np.abs(np.diff(sub.height, axis=1))[(sub.material == Material.ROOF)[:, 1:]]
    assert np.mean((ge_sub > 0.05) & (ge_sub < 1.0)) > 0.5


def test_layout_does_not_depend_on_resolution():
    a = generate_world(region("suburb", 3, 200.0, 0.5))
    b = generate_world(region("suburb", 3, 200.0, 1.0))
    assert len(a.buildings) == len(b.buildings) > 5
    assert all(np.allclose(p, q) for p, q in zip(a.buildings.footprint, b.buildings.footprint))
    assert np.allclose(a.roads.nodes, b.roads.nodes)


def test_road_builder_splits_crossings_and_t_junctions_and_clips():
    spec = RoadSpec(8.0, 1, 2.0)
    b = RoadBuilder()
    b.add(np.array([[-50.0, 50.0], [150.0, 50.0]]), spec)  # leaves the 100 m world on both sides
    b.add(np.array([[30.0, 10.0], [30.0, 90.0]]), spec)  # crosses it at (30, 50)
    b.add(np.array([[70.0, 90.0], [70.0, 50.1]]), spec)  # ends 0.1 m from it: a T-junction
    b.add(np.array([[5.0, 5.0], [8.0, 5.0]]), spec)  # an isolated stub: dropped
    streets = b.build(100.0, margin_m=0.5)
    net = streets.network
    assert len(net.edges) == 6  # 3 pieces of the long road, 2 of the crossing one, the T stem
    deg = streets.degree()
    crossing = np.argmin(np.hypot(*(net.nodes - [30.0, 50.0]).T))
    tee = np.argmin(np.hypot(*(net.nodes - [70.0, 50.0]).T))
    assert np.allclose(net.nodes[crossing], [30, 50]) and deg[crossing] == 4
    assert np.hypot(*(net.nodes[tee] - [70.0, 50.0])) < 0.2 and deg[tee] == 3
    assert net.nodes[:, 0].min() == pytest.approx(0.5) and net.nodes[:, 0].max() == pytest.approx(99.5)


def test_demo_regions_load_and_differ():
    regions = [Region.load(p) for p in sorted(MAPS.glob("demo-*.yaml"))]
    assert {r.style for r in regions} == set(STYLES)
    assert all(r.size_m == 1000 for r in regions)
    assert len({(r.center_lat, r.center_lon) for r in regions}) == len(regions)
    assert len({r.seed for r in regions}) == len(regions)
