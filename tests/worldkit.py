"""Hand-built worlds with known geometry, for renderer and sensor tests."""

from __future__ import annotations

import numpy as np

from edge_geoloc.world.region import Region
from edge_geoloc.world.scene import Buildings, Material, RoadNetwork, Trees, World

REGION = Region(name="box-world", center_lat=47.0, center_lon=9.0, size_m=200.0, style="suburb", seed=0)


def box_world(
    boxes: list[tuple[float, float, float, float, float]] = (),
    size_m: float = 200.0,
    res_m: float = 0.25,
    *,
    roof_rgb: list[tuple[int, int, int]] | None = None,
    facade_rgb: list[tuple[int, int, int]] | None = None,
    window_spacing_m: float = 2.5,
    trees: list[tuple[float, float, float, float]] = (),
) -> World:
    """Flat grass of side ``size_m`` centred on REGION's centre with box buildings and trees.

    ``boxes``: (east_offset, north_offset, width_east, depth_north, height), offsets of the box
    centre from the world centre in metres. Roofs are light grey, facades beige with windows,
    unless ``roof_rgb`` / ``facade_rgb`` give one colour per box (``window_spacing_m`` 0: no
    windows). A box of height 0 is a flat painted patch on the ground. ``trees``: (east_offset,
    north_offset, crown_radius, height), drawn into the rasters as paraboloid domes.
    """
    crs = REGION.map_crs()
    ce, cn = REGION.center_en()
    n = round(size_m / res_m)
    height = np.zeros((n, n), np.float32)
    material = np.full((n, n), Material.GRASS, np.uint8)
    albedo = np.empty((n, n, 3), np.uint8)
    albedo[:] = (70, 120, 60)
    obj = np.zeros((n, n), np.int32)
    east_min, north_max = ce - size_m / 2, cn + size_m / 2
    footprints = []
    for k, (de, dn, w, d, h) in enumerate(boxes):
        c0 = round((size_m / 2 + de - w / 2) / res_m)
        c1 = round((size_m / 2 + de + w / 2) / res_m)
        r0 = round((size_m / 2 - dn - d / 2) / res_m)
        r1 = round((size_m / 2 - dn + d / 2) / res_m)
        height[r0:r1, c0:c1] = h
        material[r0:r1, c0:c1] = Material.ROOF
        albedo[r0:r1, c0:c1] = (180, 180, 185) if roof_rgb is None else roof_rgb[k]
        obj[r0:r1, c0:c1] = k + 1
        e0, e1 = ce + de - w / 2, ce + de + w / 2
        n0, n1 = cn + dn - d / 2, cn + dn + d / 2
        footprints.append(np.array([[e0, n0], [e1, n0], [e1, n1], [e0, n1]]))
    nb = len(boxes)
    buildings = Buildings(
        footprint=footprints,
        height_m=np.array([b[4] for b in boxes], np.float32),
        facade_rgb=np.tile(np.array([[200, 180, 150]], np.uint8), (nb, 1))
        if facade_rgb is None
        else np.array(facade_rgb, np.uint8).reshape(nb, 3),
        window_rgb=np.tile(np.array([[60, 80, 110]], np.uint8), (nb, 1)),
        floor_m=np.full(nb, 3.0, np.float32),
        window_spacing_m=np.full(nb, window_spacing_m, np.float32),
    )
    yy, xx = np.mgrid[0:n, 0:n]
    px, py = (xx + 0.5) * res_m - size_m / 2, size_m / 2 - (yy + 0.5) * res_m  # cell centres, offsets from centre
    for i, (de, dn, r, h) in enumerate(trees):
        d2 = ((px - de) ** 2 + (py - dn) ** 2) / (r * r)
        prof = h - min(0.8 * r, 0.6 * h) * d2
        m = (d2 <= 1.0) & (prof > height)
        height[m] = prof[m]
        material[m] = Material.TREE
        albedo[m] = (50, 95, 45)
        obj[m] = nb + 1 + i
    trees = Trees(
        en=np.array([(ce + t[0], cn + t[1]) for t in trees], np.float64).reshape(-1, 2),
        radius_m=np.array([t[2] for t in trees], np.float64),
        height_m=np.array([t[3] for t in trees], np.float64),
    )
    roads = RoadNetwork(
        nodes=np.zeros((0, 2)),
        edges=np.zeros((0, 2), np.int64),
        width_m=np.zeros(0, np.float32),
        kind=np.zeros(0, np.uint8),
    )
    return World(REGION, crs, res_m, east_min, north_max, height, material, albedo, obj, buildings, trees, roads)
