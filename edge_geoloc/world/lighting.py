"""Sun light on the world's top surfaces: slope shading and cast shadows, shared by all renderers.

Cast shadows use a sweep instead of ray marching: the height raster is rotated so that the sun
lies along +x, then a pixel at position x is in shadow iff some pixel nearer the sun rises above
the sun ray through it, i.e. ``max_{x' > x} (h(x') - x' r tan(el)) > h(x) - x r tan(el)``. A
reversed running maximum gives that for every pixel at once, O(pixels) per sun position.

Results are cached in ``world.cache`` per (sun, resolution): a street-view dataset draws its sun
from a small bank (:data:`~edge_geoloc.world.appearance.STREET_SUN_BANK`), so a few shadow rasters serve every view.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_geoloc.world.appearance import AMBIENT, Appearance, seasonal_albedo
from edge_geoloc.world.scene import World

_MAX_CACHED_SHADOWS = 8


def cast_shadow(height: np.ndarray, res_m: float, sun_azimuth_deg: float, sun_elevation_deg: float) -> np.ndarray:
    """Light factor per pixel of a north-up height raster: 1 sunlit, 0 in a cast shadow."""
    h, w = height.shape
    if sun_elevation_deg >= 89.9:
        return np.ones((h, w), dtype=np.float32)
    az = np.radians(sun_azimuth_deg)
    d = np.array([np.sin(az), -np.cos(az)])  # towards the sun in (col, row)
    p = np.array([-d[1], d[0]])
    side = int(np.ceil(np.hypot(h, w))) + 2
    c_src = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    c_dst = np.array([(side - 1) / 2.0, (side - 1) / 2.0])
    # dst (u, v) -> src = c_src + (u - cu) d + (v - cv) p
    to_src = np.array(
        [
            [d[0], p[0], c_src[0] - c_dst[0] * d[0] - c_dst[1] * p[0]],
            [d[1], p[1], c_src[1] - c_dst[0] * d[1] - c_dst[1] * p[1]],
        ]
    )
    rot = cv2.warpAffine(
        height.astype(np.float32),
        to_src,
        (side, side),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    drop = np.float32(res_m * np.tan(np.radians(sun_elevation_deg)))
    g = rot - drop * np.arange(side, dtype=np.float32)[None, :]
    # Highest sun-ray obstruction strictly nearer the sun (larger u).
    suffix = np.maximum.accumulate(g[:, ::-1], axis=1)[:, ::-1]
    blocker = np.empty_like(suffix)
    blocker[:, :-1] = suffix[:, 1:]
    blocker[:, -1] = -np.inf
    # Soft edge over 0.3 m of height margin avoids speckle from interpolation.
    lit_rot = np.clip((g - blocker) / 0.3 + 1.0, 0.0, 1.0)
    to_dst = cv2.invertAffineTransform(to_src)
    lit = cv2.warpAffine(lit_rot, to_dst, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderValue=1.0)
    return lit.astype(np.float32)


def _height_at(world: World, res_m: float) -> np.ndarray:
    if abs(res_m - world.res_m) < 1e-9:
        return world.height
    key = ("height", round(res_m, 6))
    if key not in world.cache:
        h, w = world.shape
        scale = world.res_m / res_m
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        world.cache[key] = cv2.resize(world.height, size, interpolation=cv2.INTER_AREA)
    return world.cache[key]


def sun_shadow(world: World, app: Appearance, res_m: float | None = None) -> np.ndarray:
    """Cached cast-shadow light factor of the world for the appearance's sun, at ``res_m`` m/px."""
    res_m = world.res_m if res_m is None else float(res_m)
    key = ("shadow", round(app.sun_azimuth_deg, 3), round(app.sun_elevation_deg, 3), round(res_m, 6))
    cache = world.cache.setdefault("shadows", {})
    if key not in cache:
        if len(cache) >= _MAX_CACHED_SHADOWS:
            cache.pop(next(iter(cache)))
        cache[key] = cast_shadow(_height_at(world, res_m), res_m, app.sun_azimuth_deg, app.sun_elevation_deg)
    return cache[key]


def surface_slope(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Cached slopes (dh/deast, dh/dnorth) of top surfaces; walls (jumps) count as flat."""
    if "slope" not in world.cache:
        h = world.height.astype(np.float32)
        ge = cv2.Sobel(h, cv2.CV_32F, 1, 0, ksize=3) / (8.0 * world.res_m)
        gn = -cv2.Sobel(h, cv2.CV_32F, 0, 1, ksize=3) / (8.0 * world.res_m)
        steep = np.hypot(ge, gn) > 2.5  # a wall edge, not a roof or crown slope
        ge[steep] = 0.0
        gn[steep] = 0.0
        world.cache["slope"] = (ge, gn)
    return world.cache["slope"]


def _light_factor(ne: np.ndarray, nn: np.ndarray, lit: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Irradiance factor from surface normal components (-slope) and the cast-shadow light."""
    ndots = (ne * s[0] + nn * s[1] + s[2]) / np.sqrt(ne * ne + nn * nn + 1.0)
    # Normalize so that flat, sunlit ground has factor 1 whatever the sun elevation.
    return (AMBIENT + (1 - AMBIENT) * np.clip(ndots, 0, None) / max(s[2], 0.2) * lit).astype(np.float32)


def top_light(
    world: World,
    app: Appearance,
    rows: np.ndarray,
    cols: np.ndarray,
    res_m: float | None = None,
    lit: np.ndarray | None = None,
) -> np.ndarray:
    """Irradiance factor of top surfaces at raster indices (slope shading times cast shadow).

    ``lit`` replaces the cast-shadow lookup (a renderer that magnifies the ground interpolates it)."""
    ge, gn = surface_slope(world)
    s = app.sun_vector()
    if lit is None:
        shadow = sun_shadow(world, app, res_m)
        if shadow.shape == world.shape:
            lit = shadow[rows, cols]
        else:
            f = shadow.shape[0] / world.shape[0]
            lit = shadow[
                np.minimum((rows * f).astype(np.intp), shadow.shape[0] - 1),
                np.minimum((cols * f).astype(np.intp), shadow.shape[1] - 1),
            ]
    return _light_factor(-ge[rows, cols], -gn[rows, cols], lit, s)


def top_colour(
    world: World, app: Appearance, rows: np.ndarray, cols: np.ndarray, res_m: float | None = None
) -> np.ndarray:
    """Lit RGB (float 0..1) of top surfaces at raster indices, with the season applied."""
    albedo = seasonal_albedo(world.albedo[rows, cols], world.material[rows, cols], app.season)
    return albedo * top_light(world, app, rows, cols, res_m)[:, None]


def orthophoto(world: World, app: Appearance) -> np.ndarray:
    """Cached lit top-surface colours of the whole world (float32 RGB), an orthophoto capture.

    Same light as :func:`top_colour`, computed over row bands of the rasters (slices, not index
    gathers), which keeps a 4000 x 4000 world to a fraction of a second and bounded memory.
    """
    key = ("ortho", app.sun_azimuth_deg, app.sun_elevation_deg, app.season)
    if world.cache.get("ortho_key") != key:
        world.cache.pop("ortho", None)  # free the old capture before building the new one
        ge, gn = surface_slope(world)
        shadow = sun_shadow(world, app)
        s = app.sun_vector()
        out = np.empty((*world.shape, 3), np.float32)
        band = 256
        for r0 in range(0, world.shape[0], band):
            r1 = min(r0 + band, world.shape[0])
            albedo = seasonal_albedo(world.albedo[r0:r1], world.material[r0:r1], app.season)
            light = _light_factor(-ge[r0:r1], -gn[r0:r1], shadow[r0:r1], s)
            np.multiply(albedo, light[..., None], out=out[r0:r1])
        world.cache["ortho"] = out
        world.cache["ortho_key"] = key
    return world.cache["ortho"]
