"""The synthetic world of a region: ``generate_world(region) -> World``.

A style generator (downtown, suburb, rural, industrial) lays out roads, buildings, lots, fields,
water and trees as vectors, deciding where things fit on a fixed 0.5 m plan grid, and paints
them into the region's rasters at its resolution. The world is a deterministic function of
(style, seed, size, resolution); the vector layout does not depend on the resolution.

What the vectors mean here: ``Buildings.height_m`` is the top of the building's raster (ridge,
penthouse or roof box), its footprint the outline of the walls; ``Trees`` lists trees and garden
shrubs alike (shrubs are low crowns with material SHRUB). Street space (ROAD, SIDEWALK, MARKING
pixels) is always at height 0 and no building stands on a carriageway; tree crowns may reach over
sidewalks and kerbs, never over a road's centre line.
"""

from __future__ import annotations

import numpy as np

from edge_geoloc.world import rural, suburb, urban
from edge_geoloc.world.canvas import Canvas, Plan
from edge_geoloc.world.region import STYLES, Region
from edge_geoloc.world.scene import Buildings, RoadNetwork, Trees, World
from edge_geoloc.world.styles import Ctx
from edge_geoloc.world.textures import finish_albedo

GENERATORS = {
    "downtown": urban.downtown,
    "suburb": suburb.generate,
    "rural": rural.generate,
    "industrial": urban.industrial,
}


def _seed(region: Region, salt: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(region.seed), STYLES.index(region.style), round(region.size_m * 1000), salt])


def generate_world(region: Region) -> World:
    """Lay out and paint the world of a region (see the module docstring)."""
    if region.style not in GENERATORS:
        raise ValueError(f"region '{region.name}': no generator for style {region.style!r}; expected one of {STYLES}")
    crs = region.map_crs()
    ce, cn = region.center_en()
    layout_rng = np.random.default_rng(_seed(region, 0))
    texture_rng = np.random.default_rng(_seed(region, round(region.resolution_m * 1e6) + 1))
    canvas = Canvas(region.size_m, region.resolution_m, texture_rng)
    ctx = Ctx(rng=layout_rng, canvas=canvas, plan=Plan(canvas.size))
    GENERATORS[region.style](ctx)
    rgb_lut, mat_lut, obj_lut = canvas.luts()
    albedo, material = finish_albedo(canvas.pal, canvas.tex, rgb_lut, mat_lut, texture_rng, canvas.res)
    obj = np.take(obj_lut, canvas.pal)
    _exact_heights(canvas, obj)
    east_min, north_min = ce - canvas.size / 2, cn - canvas.size / 2
    origin = np.array([east_min, north_min])
    assert ctx.streets is not None
    net = ctx.streets.network
    roads = RoadNetwork(nodes=net.nodes + origin, edges=net.edges, width_m=net.width_m, kind=net.kind)
    return World(
        region=region,
        crs=crs,
        res_m=canvas.res,
        east_min=east_min,
        north_max=north_min + canvas.size,
        height=canvas.height,
        material=material,
        albedo=albedo,
        obj=obj,
        buildings=_buildings(canvas, origin),
        trees=_trees(canvas, origin),
        roads=roads,
    )


def _exact_heights(canvas: Canvas, obj: np.ndarray) -> None:
    """Set each building's height to the top of its raster (roof ridge, penthouse, HVAC box)."""
    for k, b in enumerate(canvas.buildings, start=1):
        win = canvas.window(b["footprint"], 1.0)
        if win is None:
            continue
        r0, r1, c0, c1 = win
        mine = obj[r0:r1, c0:c1] == k
        if mine.any():
            b["height"] = float(canvas.height[r0:r1, c0:c1][mine].max())


def _buildings(canvas: Canvas, origin: np.ndarray) -> Buildings:
    b = canvas.buildings
    return Buildings(
        footprint=[d["footprint"] + origin for d in b],
        height_m=np.array([d["height"] for d in b], np.float32),
        facade_rgb=np.array([d["facade"] for d in b], np.uint8).reshape(-1, 3),
        window_rgb=np.array([d["window"] for d in b], np.uint8).reshape(-1, 3),
        floor_m=np.array([d["floor"] for d in b], np.float32),
        window_spacing_m=np.array([d["spacing"] for d in b], np.float32),
    )


def _trees(canvas: Canvas, origin: np.ndarray) -> Trees:
    t = np.array(canvas.trees, np.float64).reshape(-1, 4)
    return Trees(en=t[:, :2] + origin, radius_m=t[:, 2].copy(), height_m=t[:, 3].copy())
