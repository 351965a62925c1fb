"""Aerial (orthophoto) tiles of the synthetic world: any size, ground sample distance and centre.

A region's map imagery is one capture: the world lit once by the capture's sun and season
(:func:`~edge_geoloc.world.lighting.orthophoto`, cached), from which every tile is resampled
(so overlapping tiles agree exactly), then passed through the capture's camera effects. The
capture is drawn from the region seed, independently of the street views' appearances, because
real orthophotos and street images are taken at different times.

Tiles are north-up. With ``true_north`` the tile is rotated by the meridian convergence at its
centre so that up is true north (as real map tiles and VIGOR's satellite images are); otherwise
up is grid north of the map CRS.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_geoloc.world.appearance import Appearance, camera_effects
from edge_geoloc.world.lighting import orthophoto
from edge_geoloc.world.scene import World


def aerial_capture(world: World) -> Appearance:
    """The world's map imagery capture (sun, season, camera), fixed by the region seed."""
    if "aerial_capture" not in world.cache:
        world.cache["aerial_capture"] = Appearance.sample(np.random.default_rng(world.region.seed), "aerial")
    return world.cache["aerial_capture"]


def prepare_aerial(world: World, app: Appearance | None = None, max_gsd_m: float = 2.0) -> None:
    """Build the capture and its pyramid up to ``max_gsd_m`` now (about 2 s for a 1 km world at
    0.25 m/px), e.g. in a parent process before forking tile workers, which then share it."""
    app = aerial_capture(world) if app is None else app
    _level(world, app, _level_for(world, max_gsd_m))


def _level_for(world: World, gsd_m: float) -> int:
    """The coarsest pyramid level whose pixels are no larger than ``gsd_m``."""
    return max(0, int(np.floor(np.log2(gsd_m / world.res_m) + 1e-9)))


def _level(world: World, app: Appearance, k: int) -> np.ndarray:
    """Pyramid level k of the lit world (level 0: the orthophoto; each level halves it, INTER_AREA)."""
    base = orthophoto(world, app)
    pyr = world.cache.get("aerial_pyramid")
    if pyr is None or pyr[0] is not base:
        pyr = (base, [base])
        world.cache["aerial_pyramid"] = pyr
    levels = pyr[1]
    while len(levels) <= k:
        prev = levels[-1]
        h, w = prev.shape[:2]
        if h < 2 or w < 2:
            break
        levels.append(cv2.resize(prev, (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return levels[min(k, len(levels) - 1)]


def tile_corners_en(
    world: World, east: float, north: float, size_px: int, gsd_m: float, true_north: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Grid east/north of a tile's four footprint corners (top-left, top-right, bottom-right,
    bottom-left), with the tile rotated by the meridian convergence when ``true_north``."""
    gamma = _convergence_rad(world, east, north) if true_north else 0.0
    half = size_px * gsd_m / 2.0
    dx = np.array([-half, half, half, -half])
    dy = np.array([half, half, -half, -half])
    cg, sg = np.cos(gamma), np.sin(gamma)
    return east + dx * cg - dy * sg, north + dx * sg + dy * cg


def _convergence_rad(world: World, east: float, north: float) -> float:
    lat, lon = world.crs.to_latlon(east, north)
    return float(np.radians(world.crs.convergence_deg(lat, lon)))


def render_aerial(
    world: World,
    east: float,
    north: float,
    size_px: int,
    gsd_m: float,
    app: Appearance | None = None,
    rng: np.random.Generator | None = None,
    true_north: bool = True,
) -> np.ndarray:
    """An aerial tile (uint8 RGB, ``size_px`` x ``size_px``) centred at (east, north) of the map CRS.

    ``gsd_m``: metres per pixel. ``app``: the capture (default :func:`aerial_capture`); ``rng``
    adds the capture's sensor noise. A tile whose footprint leaves the world raises ValueError.
    """
    if int(size_px) != size_px or size_px < 1:
        raise ValueError(f"aerial tile size must be a positive number of pixels, got {size_px!r}")
    if not (np.isfinite(gsd_m) and gsd_m > 0):
        raise ValueError(f"aerial ground sample distance must be a positive number of metres, got {gsd_m!r}")
    if not (np.isfinite(east) and np.isfinite(north)):
        raise ValueError(f"aerial tile centre must be finite, got east {east!r}, north {north!r}")
    size_px = int(size_px)
    app = aerial_capture(world) if app is None else app
    gamma = _convergence_rad(world, east, north) if true_north else 0.0
    ce, cn = tile_corners_en(world, east, north, size_px, gsd_m, true_north)
    world.require_inside(
        ce,
        cn,
        f"aerial tile of {size_px} px at {gsd_m:g} m/px centred at east {east:.1f}, north {north:.1f}:"
        f" its footprint corner",
    )
    src = _level(world, app, _level_for(world, gsd_m))
    # Pixel size of this level in metres (exact extents, whatever rounding the halving did).
    sx = (world.east_max - world.east_min) / src.shape[1]
    sy = (world.north_max - world.north_min) / src.shape[0]
    cg, sg = np.cos(gamma), np.sin(gamma)
    # Destination pixel (j, i) -> offsets from the centre (dx right, dy up) -> grid east/north ->
    # source pixel; cv2 puts pixel centres at integers, the world at integer + 0.5.
    c = (size_px - 1) / 2.0
    # east = e0 + gsd*(j - c)*cg + gsd*(i - c)*sg ; north = n0 + gsd*(j - c)*sg - gsd*(i - c)*cg
    m = np.array(
        [
            [gsd_m * cg / sx, gsd_m * sg / sx, 0.0],
            [-gsd_m * sg / sy, gsd_m * cg / sy, 0.0],
        ]
    )
    m[0, 2] = (east - world.east_min) / sx - 0.5 - c * (m[0, 0] + m[0, 1])
    m[1, 2] = (world.north_max - north) / sy - 0.5 - c * (m[1, 0] + m[1, 1])
    tile = cv2.warpAffine(
        src, m, (size_px, size_px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )
    return camera_effects(tile, app, rng)
