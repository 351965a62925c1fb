"""Column ray casting of the 2.5D world: the one engine behind the street panorama, the pinhole
camera and the UAV camera.

Every vertical line of the world projects onto rays of a single azimuth, so all rays of a camera
that share an azimuth (an image column of an equirectangular view; a line through the nadir point
of a UAV frame) lie in one vertical plane, and one march along the ground resolves occlusion for
all of them at once (the "voxel space" method). Rays are grouped into azimuth bins no wider than
the finest pixel; per bin we sample the height raster at distances ``d_k`` (fine near, coarse far,
never coarser than a ray's footprint on the tops for a camera high above them), project each
sample's top to ``tan(elevation) = (h_k - z_cam) / d_k`` and keep a running maximum (the bin's
horizon): a ray is covered by the first sample whose horizon reaches its elevation. The horizons of
all bins laid end to end are sorted, so one ``searchsorted`` of the (sorted) rays finds every ray's
sample. The march is shared, the hit is not: every ray gets its own exact hit (flat tops
analytically, walls at a distance refined by bisection and the building's footprint edge) along
its own direction, so geometry is exact to well under a pixel even where the march is coarse, and
pinhole and UAV frames need no resampling.

Costs grow with bins x samples (the march) plus rays (the hits): a 512 x 128 panorama marches
512 bins x ~190 samples; a nadir UAV frame needs a bin per pixel of its outer ring (~1100).

Tree crowns are not height-field columns but analytic ellipsoids on trunks (a height field would
draw them as green pillars down to the ground), composited with a depth test; their pixels are
removed from the height raster the march uses and the ground beneath is drawn in the crown's shade.

Local coordinates: ``x`` east and ``y`` north in metres from the raster's north-west corner, so a
raster cell is ``(row, col) = (floor(-y / res), floor(x / res))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_geoloc.world.appearance import AMBIENT, Appearance, seasonal_albedo
from edge_geoloc.world.lighting import sun_shadow, surface_slope, top_colour, top_light
from edge_geoloc.world.scene import Material, World

WALL_JUMP_M = 0.3  # a rise steeper than this within one raster cell is a wall, not a slope
MAX_ELEVATION_DEG = 89.9  # rays are kept within +-this so that tan(elevation) stays finite
MAX_BINS = 8192
VIEW_SHADOW_RES_M = 0.5  # cast shadows for street and UAV views: coarser than the rasters, interpolated near
_BARK_RGB = np.array([0.30, 0.24, 0.19], np.float32)
_CAR_GLASS_RGB = np.array([0.10, 0.12, 0.15], np.float32)


@dataclass
class _Tables:
    """Per-world arrays the caster needs, built once and cached in ``world.cache``."""

    height: np.ndarray  # (H + 2, W + 2) float32, tree crowns removed, zero border (outside = flat ground)
    facade: np.ndarray  # (NB + 1, 3) float32 0..1, row 0 unused
    window: np.ndarray  # (NB + 1, 3) float32
    floor_m: np.ndarray  # (NB + 1,)
    spacing_m: np.ndarray  # (NB + 1,)
    edges: np.ndarray  # (NB + 1, Kmax, 4) local footprint edges x0, y0, x1, y1 (NaN padding)
    normals: np.ndarray  # (NB + 1, Kmax, 2) outward unit normals of the edges
    tree_xy: np.ndarray  # (T, 2) local crown centres
    tree_r: np.ndarray  # (T,) crown radius
    tree_rz: np.ndarray  # (T,) crown vertical semi-axis
    tree_zc: np.ndarray  # (T,) crown centre height
    tree_albedo: np.ndarray  # (T, 3) uint8 crown colour as the aerial view sees it
    hmax: float  # highest top of the world
    mean_albedo: np.ndarray  # (3,) float32 colour of the ground beyond the world's edge


def crown_shape(
    radius_m: np.ndarray, height_m: np.ndarray, conifer: np.ndarray | bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(vertical semi-axis, centre height) of a tree crown: an ellipsoid whose top is the tree's
    height, on a trunk of at least a fifth of that height. A conifer's crown is a spindle over the
    height its cone takes in the height raster (``min(1.6 r, 0.8 h)``)."""
    radius_m, height_m = np.asarray(radius_m, np.float32), np.asarray(height_m, np.float32)
    rz = np.where(conifer, 0.5 * np.minimum(1.6 * radius_m, 0.8 * height_m), np.minimum(radius_m * 1.1, 0.4 * height_m))
    return rz.astype(np.float32), (height_m - rz).astype(np.float32)


def _conifers(world: World, tree_xy: np.ndarray) -> np.ndarray:
    """Which trees the height raster draws as cones: their top falls off steeply from the centre
    (a cone drops by about 0.8 r at half the radius, a broadleaf dome by at most 0.2 r)."""
    t = world.trees
    r_m = np.asarray(t.radius_m, np.float64)
    res, (h, w) = world.res_m, world.shape
    rows = np.clip((-tree_xy[:, 1] / res).astype(np.intp), 0, h - 1)
    cols = np.clip((tree_xy[:, 0] / res).astype(np.intp), 0, w - 1)
    cols_half = np.clip(((tree_xy[:, 0] + 0.5 * r_m) / res).astype(np.intp), 0, w - 1)
    ids = len(world.buildings) + 1 + np.arange(len(r_m))
    mine = (world.obj[rows, cols] == ids) & (world.obj[rows, cols_half] == ids)
    drop = (world.height[rows, cols] - world.height[rows, cols_half]) / np.maximum(r_m, 1e-3)
    return mine & (drop > 0.45)


def tables(world: World) -> _Tables:
    """The caster's cached view of a world."""
    tab = world.cache.get("raycast")
    if tab is not None:
        return tab
    nb = len(world.buildings)
    res = world.res_m
    is_tree = world.obj > nb
    height = world.height.astype(np.float32)
    if np.any(is_tree):
        height = np.where(is_tree, np.float32(0.0), height)
    b = world.buildings
    facade = np.full((nb + 1, 3), 0.6, np.float32)
    window = np.full((nb + 1, 3), 0.2, np.float32)
    floor_m = np.full(nb + 1, 3.0, np.float32)
    spacing_m = np.zeros(nb + 1, np.float32)
    if nb:
        facade[1:] = b.facade_rgb / 255.0
        window[1:] = b.window_rgb / 255.0
        floor_m[1:] = np.maximum(b.floor_m, 0.5)
        spacing_m[1:] = b.window_spacing_m
    kmax = max((len(f) for f in b.footprint), default=1)
    edges = np.full((nb + 1, kmax, 4), np.nan)
    normals = np.zeros((nb + 1, kmax, 2))
    for i, fp in enumerate(b.footprint):
        v = np.asarray(fp, np.float64).reshape(-1, 2) - (world.east_min, world.north_max)
        w = np.roll(v, -1, axis=0)
        seg = w - v
        length = np.maximum(np.hypot(seg[:, 0], seg[:, 1]), 1e-9)
        signed_area = 0.5 * np.sum(v[:, 0] * w[:, 1] - w[:, 0] * v[:, 1])
        out = np.stack([seg[:, 1], -seg[:, 0]], axis=1) / length[:, None]  # outward if counter-clockwise
        if signed_area < 0:
            out = -out
        edges[i + 1, : len(v)] = np.concatenate([v, w], axis=1)
        normals[i + 1, : len(v)] = out
    t = world.trees
    tree_xy = np.asarray(t.en, np.float64).reshape(-1, 2) - (world.east_min, world.north_max)
    rz, zc = crown_shape(t.radius_m, t.height_m, _conifers(world, tree_xy))
    rows = np.clip((-tree_xy[:, 1] / res).astype(np.intp), 0, world.shape[0] - 1)
    cols = np.clip((tree_xy[:, 0] / res).astype(np.intp), 0, world.shape[1] - 1)
    tab = _Tables(
        height=np.pad(height, 1),
        facade=facade,
        window=window,
        floor_m=floor_m,
        spacing_m=spacing_m,
        edges=edges,
        normals=normals,
        tree_xy=tree_xy.astype(np.float32),
        tree_r=np.asarray(t.radius_m, np.float32),
        tree_rz=rz,
        tree_zc=zc,
        tree_albedo=world.albedo[rows, cols],
        hmax=float(world.height.max(initial=0.0)),
        mean_albedo=world.albedo.reshape(-1, 3)[::97].astype(np.float32).mean(axis=0) / 255.0,
    )
    world.cache["raycast"] = tab
    return tab


@lru_cache(maxsize=64)
def _march_cached(max_range_m: float, res_m: float, el_step_rad: float, dz_m: float, frac: float) -> np.ndarray:
    out = [0.02]
    d = 0.02
    lo = res_m
    while d < max_range_m:
        fp = el_step_rad * (dz_m * dz_m + d * d) / dz_m
        d += max(lo, min(frac * d, fp) if frac > 0 else fp)
        out.append(min(d, max_range_m))
    arr = np.asarray(out, np.float32)
    arr.flags.writeable = False
    return arr


def march_distances(
    max_range_m: float, res_m: float, el_step_rad: float, dz_m: float, frac: float | None
) -> np.ndarray:
    """Sample distances along a bin: a raster cell apart near the camera, then growing with
    distance (``frac * d``, a column's width or two: walls are refined to their exact distance, so
    only objects narrower than a step can be missed) but never wider than a ray's footprint on tops
    ``dz_m`` below the camera (which bounds the error of a UAV's view of a roof's far edge)."""
    return _march_cached(
        round(float(max_range_m), 2),
        float(res_m),
        round(float(el_step_rad), 7),
        round(float(dz_m), 2),
        float(frac or 0),
    )


@dataclass
class Rays:
    """Rays from one camera centre, grouped into azimuth bins that share a march.

    Bin ``j`` is centred on azimuth ``az0 + j * step`` (radians, clockwise from grid north). Each
    ray has its bin, its exact azimuth and ``tan(elevation)``. ``el_step`` is the finest elevation
    spacing of neighbouring rays and ``pixel_rad`` a pixel's typical angular size.
    """

    az0: float
    step: float
    n_bins: int
    bin: np.ndarray
    azimuth: np.ndarray
    tan_el: np.ndarray
    el_step: float
    pixel_rad: float
    on_bin_centres: bool = False  # every ray looks exactly along its bin's centre azimuth
    uniform_rows: tuple[float, float, int] | None = None  # every bin: (lowest elevation, step, count)

    @property
    def full_circle(self) -> bool:
        return abs(self.step * self.n_bins - 2 * np.pi) < 1e-6

    @classmethod
    def equirect(cls, az_first: float, az_step: float, width: int, el_top: float, el_step: float, height: int) -> Rays:
        """Columns at azimuth ``az_first + j * az_step``, rows at elevation ``el_top - i * el_step``
        (pixel centres); rays in column-major order from the bottom row up (the caster's order)."""
        el = el_top - el_step * np.arange(height - 1, -1, -1)
        if np.max(np.abs(el)) > np.pi / 2 + 1e-9:
            raise ValueError(
                f"an equirectangular view cannot look past the zenith or nadir: its rows span elevations "
                f"{np.degrees(el[0]):.1f}..{np.degrees(el[-1]):.1f} degrees"
            )
        rows = (float(el[0]), float(el_step), int(height))
        lim = np.radians(MAX_ELEVATION_DEG)
        el = np.clip(el, -lim, lim)  # the last tenth of a degree at the poles: sky or the ground below
        step = float(az_step)
        if abs(step * width - 2 * np.pi) < 1e-6:
            step = 2 * np.pi / width
        bins = np.repeat(np.arange(width), height)
        return cls(
            az0=float(az_first),
            step=step,
            n_bins=int(width),
            bin=bins,
            azimuth=az_first + step * bins,
            tan_el=np.tile(np.tan(el), width),
            el_step=float(el_step),
            pixel_rad=float(min(az_step, el_step)),
            on_bin_centres=True,
            uniform_rows=rows,
        )

    @classmethod
    def from_directions(cls, dirs_enu: np.ndarray) -> Rays:
        """Rays of an image (H, W, 3 directions in east/north/up), binned at the image's finest
        azimuth spacing. An image around the nadir or zenith spans the full circle."""
        x, y, z = dirs_enu[..., 0], dirs_enu[..., 1], dirs_enu[..., 2]
        az = np.arctan2(x, y)
        hor = np.hypot(x, y)
        lim = np.tan(np.radians(MAX_ELEVATION_DEG))
        tan_el = np.clip(z / np.maximum(hor, 1e-12), -lim, lim)
        centre = float(np.arctan2(np.sum(x), np.sum(y)))
        rel = np.mod(az - centre + np.pi, 2 * np.pi) - np.pi
        full = float(rel.max() - rel.min()) > np.pi
        # Angular extents of the pixels, from every s-th pixel (the field is smooth).
        sub = max(1, min(dirs_enu.shape[:2]) // 48)
        el_sub = np.arctan(tan_el[::sub, ::sub])
        g_az, g_el = _pixel_extent(rel[::sub, ::sub]) / sub, _pixel_extent(el_sub) / sub
        g_az = g_az[g_az < 1.0 / sub]  # a wrap seam is no pixel's extent
        el_step = max(float(np.percentile(g_el, 5)), 1e-5)
        step = max(float(g_az.min()) if g_az.size else el_step, 1e-5)
        if full:
            n = min(int(np.ceil(2 * np.pi / step)), MAX_BINS)
            step = 2 * np.pi / n
            az0 = centre - np.pi + 0.5 * step
            bins = np.floor((rel + np.pi) / step).astype(np.int64) % n
        else:
            span = float(rel.max() - rel.min())
            n = min(int(np.ceil(span / step)) + 1, MAX_BINS)
            step = max(span / max(n - 1, 1), 1e-9)
            az0 = centre + float(rel.min())
            bins = np.clip(np.rint((rel - rel.min()) / step).astype(np.int64), 0, n - 1)
        return cls(
            az0=az0,
            step=step,
            n_bins=n,
            bin=bins.ravel(),
            azimuth=az.ravel(),
            tan_el=tan_el.ravel(),
            el_step=el_step,
            pixel_rad=float(np.median(g_el)),
        )


def _pixel_extent(a: np.ndarray) -> np.ndarray:
    """Per-pixel angular extent of an angle map: the norm of its gradient over the pixel grid."""
    gy = np.zeros_like(a)
    gx = np.zeros_like(a)
    if a.shape[0] > 1:
        gy = np.gradient(a, axis=0)
    if a.shape[1] > 1:
        gx = np.gradient(a, axis=1)
    return np.hypot(gx, gy).ravel()


_TAN_LIMIT = 1000.0  # |tan(elevation)| of every ray is below tan(89.9 deg) = 573
_BIN_STRIDE = 2 * _TAN_LIMIT + 2.0


def _bin_key(bins: np.ndarray, tan_el: np.ndarray) -> np.ndarray:
    """Sort key of (bin, tan(elevation)): bins in order, and within a bin from the bottom up."""
    return bins * _BIN_STRIDE + np.clip(np.asarray(tan_el, np.float64), -_TAN_LIMIT, _TAN_LIMIT)


def _cummax(a: np.ndarray) -> np.ndarray:
    """Running maximum down axis 0 (row by row: several times faster than ufunc.accumulate on axis 0)."""
    out = a.copy()
    for k in range(1, len(out)):
        np.maximum(out[k - 1], out[k], out=out[k])
    return out


def _sample(hp: np.ndarray, res: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Heights at local points from the zero-padded raster (outside the world: flat ground)."""
    r = np.clip(np.floor(-y / res).astype(np.intp) + 1, 0, hp.shape[0] - 1)
    c = np.clip(np.floor(x / res).astype(np.intp) + 1, 0, hp.shape[1] - 1)
    return hp[r, c]


def _sample_march(hp: np.ndarray, res: float, cx: float, cy: float, d: np.ndarray, sa: np.ndarray, ca: np.ndarray):
    """Heights at distances ``d`` (K,) along bins (C,) from (cx, cy): the march's one big gather.

    Works in padded pixel units; truncation towards zero is the floor for every point that can
    hit the raster (a point left of or above the padding lands on it or is clamped to it)."""
    hgt, wid = hp.shape
    col = (d[:, None] * (sa / np.float32(res))[None, :] + np.float32(cx / res + 1.0)).astype(np.intp)
    row = (d[:, None] * (-ca / np.float32(res))[None, :] + np.float32(-cy / res + 1.0)).astype(np.intp)
    np.clip(col, 0, wid - 1, out=col)
    np.clip(row, 0, hgt - 1, out=row)
    row *= wid
    row += col
    return hp.ravel().take(row)


def _cells(world: World, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raster (row, col) of local points, clamped to the world."""
    r = np.clip(np.floor(-y / world.res_m).astype(np.intp), 0, world.shape[0] - 1)
    c = np.clip(np.floor(x / world.res_m).astype(np.intp), 0, world.shape[1] - 1)
    return r, c


def _shadow_at(world: World, app: Appearance, res: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    shadow = sun_shadow(world, app, res)
    r = np.clip(np.floor(-y / res).astype(np.intp), 0, shadow.shape[0] - 1)
    c = np.clip(np.floor(x / res).astype(np.intp), 0, shadow.shape[1] - 1)
    return shadow[r, c]


def sky_colour(app: Appearance, tan_el: np.ndarray, sin_az: np.ndarray, cos_az: np.ndarray) -> np.ndarray:
    """Sky radiance (0..1 RGB) by elevation, from the horizon's colour to the zenith's, with a glow
    around the sun."""
    horizon, zenith = app.sky_rgb()
    t = np.maximum(tan_el, 0.0).astype(np.float32)
    cos_el = 1.0 / np.sqrt(1.0 + t * t)
    sin_el = t * cos_el
    s = np.sqrt(sin_el)[:, None]
    sun = app.sun_vector()
    cos_sun = cos_el * (sin_az * sun[0] + cos_az * sun[1]) + sin_el * sun[2]
    glow = np.exp((cos_sun - 1.0) * 12.0) * 0.35 + np.exp((cos_sun - 1.0) * 400.0) * 0.6
    return (horizon + s * (zenith - horizon) + glow[:, None] * np.array([1.0, 0.95, 0.85])).astype(np.float32)


def _hash01(*keys: np.ndarray) -> np.ndarray:
    """Cheap deterministic noise in [0, 1) from integer keys (foliage and facade texture)."""
    h = np.zeros(np.shape(keys[0]), np.uint32)
    for k, mult in zip(keys, (0x9E3779B1, 0x85EBCA77, 0xC2B2AE3D, 0x27D4EB2F)):
        h = (h ^ (np.asarray(k).astype(np.int64).astype(np.uint32) * np.uint32(mult))) * np.uint32(0x2C1B3C6D)
        h ^= h >> np.uint32(15)
    return (h & np.uint32(0xFFFFFF)).astype(np.float32) / np.float32(0x1000000)


def _value_noise(key: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Smooth 3D value noise in [0, 1] (trilinear between hashed lattice values, unit cells)."""
    x0, y0, z0 = np.floor(x), np.floor(y), np.floor(z)
    fx, fy, fz = x - x0, y - y0, z - z0
    fx, fy, fz = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy), fz * fz * (3 - 2 * fz)
    out = np.zeros(np.shape(x), np.float32)
    for dx in (0, 1):
        wx = fx if dx else 1 - fx
        for dy in (0, 1):
            wy = fy if dy else 1 - fy
            for dz in (0, 1):
                wz = fz if dz else 1 - fz
                out += (wx * wy * wz) * _hash01(key, x0 + dx, y0 + dy, z0 + dz)
    return out


def _run_indices(start: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For runs ``[start_i, start_i + count_i)``: (run of each element, element index)."""
    run = np.repeat(np.arange(len(count)), count)
    first = np.cumsum(count) - count
    return run, start[run] + (np.arange(len(run)) - first[run])


def cast(
    world: World,
    app: Appearance,
    east: float,
    north: float,
    cam_z: float,
    rays: Rays,
    max_range_m: float,
    frac: float | None = 0.02,
    shadow_res_m: float | None = None,
    haze_scale_m: float = 250.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Trace ``rays`` from (east, north, cam_z): float RGB (N, 3) in 0..1 before the camera's
    effects, and each ray's horizontal hit distance (inf for sky), in the rays' order."""
    tab = tables(world)
    res = world.res_m
    shadow_res = _shadow_res(world, shadow_res_m)
    cz = np.float32(cam_z)
    cx, cy = float(east - world.east_min), float(north - world.north_max)

    # Sort rays by bin and, within a bin, from the bottom up (equirectangular views come sorted):
    # searches of sorted queries are fast, and the trees find a bin's rays as a contiguous run.
    key = _bin_key(rays.bin, rays.tan_el)
    order = None if np.all(key[1:] >= key[:-1]) else np.argsort(key, kind="stable")

    def sort(a: np.ndarray) -> np.ndarray:
        return a if order is None else a[order]

    key, bin_s, az_s = sort(key), sort(rays.bin), sort(rays.azimuth)
    tan_s = sort(rays.tan_el).astype(np.float32)
    n_bins = rays.n_bins
    bin_start = np.searchsorted(key, np.arange(n_bins + 1) * _BIN_STRIDE - _BIN_STRIDE / 2, side="left")
    b_az = rays.az0 + rays.step * np.arange(n_bins)
    sa, ca = np.sin(b_az).astype(np.float32), np.cos(b_az).astype(np.float32)
    if rays.on_bin_centres:
        sin_s, cos_s = sa[bin_s], ca[bin_s]
    else:
        sin_s, cos_s = np.sin(az_s).astype(np.float32), np.cos(az_s).astype(np.float32)

    # Nothing past the ground hit of the highest ray can be seen.
    top_tan = float(tan_s.max(initial=-np.inf))
    if top_tan < 0:
        max_range_m = min(max_range_m, cam_z / -top_tan + 2 * res)
    # A camera high above everything (UAV) marches in steps of a ray's footprint on the tops, taken
    # at least half-way down to the ground so that a downtown tower does not make steps tiny.
    dz = max(cam_z - tab.hmax, 0.5 * cam_z, 1.0)
    d = march_distances(max_range_m, res, rays.el_step, dz, frac)

    # March: heights at every (distance, bin).
    h = _sample_march(tab.height, res, cx, cy, d, sa, ca)
    h_prev = np.empty_like(h)
    h_prev[0] = _sample(tab.height, res, np.float32(cx), np.float32(cy))
    h_prev[1:] = h[:-1]
    d_prev = np.concatenate([[0.0], d[:-1]]).astype(np.float32)

    # Walls: refine rises between two samples, unless the rise stays hidden behind nearer tops
    # even at the nearest distance it could have (the unrefined horizon is a lower bound).
    t_top = (h - cz) / d[:, None]
    ck, cc = np.nonzero(h - h_prev > WALL_JUMP_M)
    if len(ck):
        raw = _cummax(t_top)
        with np.errstate(divide="ignore"):
            best = (h[ck, cc] - cz) / d_prev[ck]
        seen = (ck == 0) | (best > raw[np.maximum(ck - 1, 0), cc])
        ck, cc = ck[seen], cc[seen]
    wall = _refine_walls(world, tab, cx, cy, sa[cc], ca[cc], d_prev[ck], d[ck], h_prev[ck, cc], h[ck, cc])
    ok = wall.pop("ok")
    wall = {k: v[ok] for k, v in wall.items()}
    wk, wc = ck[ok], cc[ok]
    wall_id = np.full(h.shape, -1, np.int32)
    wall_id[wk, wc] = np.arange(len(wk), dtype=np.int32)

    # Occlusion: the running maximum of the projected tops (a wall's top edge at its exact
    # distance) is non-decreasing along each bin, so the sample that first covers a ray is found by
    # one search of all bins' horizons laid end to end.
    t_top[wk, wc] = np.maximum(t_top[wk, wc], (wall["h_top"] - cz) / wall["d"])
    horizon = _cummax(t_top)
    n_k = len(d)
    marks = _bin_key(np.arange(n_bins)[:, None], horizon.T).ravel()
    pos = np.searchsorted(marks, key, side="left") - bin_s * n_k
    ray = np.nonzero(pos < n_k)[0]
    pk, pc = pos[ray], bin_s[ray]
    m = tan_s[ray]
    hk = h[pk, pc]
    dk, dp = d[pk], d_prev[pk]
    # A ray covered by a flat top meets it where its height is reached, within the sample's span.
    surf_h, d_lo, d_hi = hk, dp, dk
    # Rays covered by a sample behind a wall: on the wall between its foot and its top; under
    # its foot, on the ground before it; over its top, on what lies behind (a top below the
    # camera, or a further face of a building that rises above it).
    aw = np.nonzero(wall_id[pk, pc] >= 0)[0]
    widx = wall_id[pk[aw], pc[aw]]
    w_d, w_lo, w_top = wall["d"][widx], wall["h_lo"][widx], wall["h_top"][widx]
    z_wall = cz + w_d * m[aw]
    below = z_wall < w_lo - 1e-3
    over = z_wall > w_top + 1e-3
    on_wall = ~below & ~over
    far_wall = over & (hk[aw] >= cz)
    if len(aw):
        surf_h, d_lo, d_hi = hk.copy(), dp.copy(), dk.copy()
        surf_h[aw] = np.where(below, w_lo, hk[aw])
        d_lo[aw] = np.where(below, dp[aw], w_d)
        d_hi[aw] = np.where(below, w_d, dk[aw])
    with np.errstate(divide="ignore", invalid="ignore"):
        depth_r = (surf_h - cz) / m
    depth_r = np.minimum(np.maximum(np.where(np.isfinite(depth_r), depth_r, d_hi), d_lo), d_hi)
    walls_r = aw[on_wall | far_wall]
    wall_of = widx[on_wall | far_wall]
    depth_r[walls_r] = np.where(on_wall, w_d, dk[aw])[on_wall | far_wall]
    z_hit = np.where(on_wall, z_wall, cz + dk[aw] * m[aw])[on_wall | far_wall]

    colour = np.empty((len(ray), 3), np.float32)
    surf = np.ones(len(ray), bool)
    surf[walls_r] = False
    px = cx + depth_r * sin_s[ray]
    py = cy + depth_r * cos_s[ray]
    if np.any(surf):
        foot = np.float32(rays.pixel_rad) * depth_r[surf] * np.sqrt(1.0 + m[surf] * m[surf])
        colour[surf] = _top_colour(world, app, tab, px[surf], py[surf], foot, shadow_res)
    if len(walls_r):
        colour[walls_r] = _wall_colour(
            world,
            app,
            tab,
            wall,
            wall_of,
            px[walls_r],
            py[walls_r],
            z_hit,
            depth_r[walls_r],
            m[walls_r],
            rays.pixel_rad,
            shadow_res,
        )

    n = len(tan_s)
    rgb = np.zeros((n, 3), np.float32)
    depth = np.full(n, np.inf, np.float32)
    rgb[ray] = colour
    depth[ray] = depth_r

    _composite_trees(
        world,
        app,
        tab,
        cx,
        cy,
        float(cam_z),
        rays,
        key,
        bin_start,
        tan_s,
        sin_s,
        cos_s,
        sa,
        ca,
        rgb,
        depth,
        d,
        horizon,
        max_range_m,
        shadow_res,
    )

    # The haze of distance, then the sky where nothing was hit.
    with np.errstate(invalid="ignore"):  # sky rays (inf * 0 without haze) are drawn over below
        clear = np.exp(depth * np.sqrt(1.0 + tan_s * tan_s) * np.float32(-app.haze / haze_scale_m))
    rgb *= clear[:, None]
    rgb += (1.0 - clear)[:, None] * app.sky_rgb()[0].astype(np.float32)
    sky = np.nonzero(np.isinf(depth))[0]
    if len(sky):
        rgb[sky] = sky_colour(app, tan_s[sky], sin_s[sky], cos_s[sky])
    if order is not None:
        out_rgb, out_depth = np.empty_like(rgb), np.empty_like(depth)
        out_rgb[order], out_depth[order] = rgb, depth
        return out_rgb, out_depth
    return rgb, depth


def _bilinear(raster: np.ndarray, col: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Bilinear samples (float32) of a raster at continuous (col, row), cell centres at +0.5."""
    h, w = raster.shape[:2]
    u = np.minimum(np.maximum(col - 0.5, 0.0), w - 1.001)
    v = np.minimum(np.maximum(row - 0.5, 0.0), h - 1.001)
    c0, r0 = u.astype(np.intp), v.astype(np.intp)
    fc, fr = (u - c0).astype(np.float32), (v - r0).astype(np.float32)
    flat = raster.reshape(h * w, -1)
    i = r0 * w + c0
    if raster.ndim == 3:
        fr, fc = fr[:, None], fc[:, None]
    else:
        flat = flat[:, 0]
    a, b = flat.take(i, axis=0).astype(np.float32), flat.take(i + 1, axis=0).astype(np.float32)
    top = a + fc * (b - a)
    a, b = flat.take(i + w, axis=0).astype(np.float32), flat.take(i + w + 1, axis=0).astype(np.float32)
    return top + fr * (a + fc * (b - a) - top)


def _top_colour(
    world: World,
    app: Appearance,
    tab: _Tables,
    x: np.ndarray,
    y: np.ndarray,
    footprint_m: np.ndarray,
    shadow_res: float,
) -> np.ndarray:
    """Lit top-surface colour at local points (lighting.top_colour); where a ray's footprint is
    well under a raster cell (the road at the camera's feet) the albedo is interpolated
    bilinearly so that cells do not show as blocks. Ground under crowns lies in their shade;
    beyond the world's edge is plain ground."""
    r, c = _cells(world, x, y)
    col = np.empty((len(x), 3), np.float32)
    magnified = footprint_m < 0.6 * world.res_m  # cells larger than ~2 pixels would show as blocks
    far = np.nonzero(~magnified)[0]
    near = np.nonzero(magnified)[0]
    if len(far):
        col[far] = top_colour(world, app, r[far], c[far], shadow_res)
    if len(near):
        xn, yn = x[near], y[near]
        smooth = _bilinear(world.albedo, xn / world.res_m, -yn / world.res_m)
        shadow = sun_shadow(world, app, shadow_res)
        lit = _bilinear(shadow, xn / shadow_res, -yn / shadow_res)
        rn, cn = r[near], c[near]
        light = top_light(world, app, rn, cn, shadow_res, lit=lit)
        col[near] = seasonal_albedo(smooth, world.material[rn, cn], app.season) * light[:, None]
    col[world.obj[r, c] > len(world.buildings)] *= 0.7  # the crown's ambient shade (its cast shadow is lit's)
    beyond = (x < 0) | (x > world.shape[1] * world.res_m) | (y > 0) | (y < -world.shape[0] * world.res_m)
    if np.any(beyond):
        col[beyond] = tab.mean_albedo * (1.0 - 0.1 * app.season)
    return col


def _refine_walls(
    world: World,
    tab: _Tables,
    cx: float,
    cy: float,
    sa: np.ndarray,
    ca: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    h_lo: np.ndarray,
    h_hi: np.ndarray,
) -> dict[str, np.ndarray]:
    """Exact distance, face normal and along-wall coordinate of rises between two samples.

    Bisection brackets the first point above the rise's mid-height to a quarter cell, then the
    ray's entry into that cell (slab test) gives the face; a building's footprint edge, where it
    agrees, replaces the raster's staircase so that oblique walls stay straight.
    """
    res = world.res_m
    hp = tab.height
    lo = lo.astype(np.float64)
    hi = hi.astype(np.float64)
    sa64, ca64 = sa.astype(np.float64), ca.astype(np.float64)
    thr = 0.5 * (h_lo + h_hi)
    if len(lo):
        iters = int(np.ceil(np.log2(max(float(np.max(hi - lo)) / (0.25 * res), 1.0))))
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            up = _sample(hp, res, cx + mid * sa64, cy + mid * ca64) > thr
            hi = np.where(up, mid, hi)
            lo = np.where(up, lo, mid)
    xh, yh = cx + hi * sa64, cy + hi * ca64
    top = _sample(hp, res, xh, yh)
    base = _sample(hp, res, cx + lo * sa64, cy + lo * ca64)
    ok = top - base > WALL_JUMP_M
    # Slab entry into the cell that holds the hit.
    row, col = np.floor(-yh / res), np.floor(xh / res)
    with np.errstate(divide="ignore", invalid="ignore"):
        tx = np.where(sa64 > 0, (col * res - cx) / sa64, np.where(sa64 < 0, ((col + 1) * res - cx) / sa64, -np.inf))
        ty = np.where(ca64 > 0, (-(row + 1) * res - cy) / ca64, np.where(ca64 < 0, (-row * res - cy) / ca64, -np.inf))
    face_x = tx >= ty
    d_wall = np.clip(np.maximum(tx, ty), lo, hi)
    nx = np.where(face_x, -np.sign(sa64), 0.0)
    ny = np.where(face_x, 0.0, -np.sign(ca64))
    ux = np.where(face_x, 0.0, 1.0)  # along-wall direction
    uy = np.where(face_x, 1.0, 0.0)
    px, py = cx + d_wall * sa64, cy + d_wall * ca64
    u = px * ux + py * uy
    r_i = np.clip(row.astype(np.intp), 0, world.shape[0] - 1)
    c_i = np.clip(col.astype(np.intp), 0, world.shape[1] - 1)
    obj = world.obj[r_i, c_i]
    nb = len(world.buildings)
    bld = np.where((obj >= 1) & (obj <= nb), obj, 0)
    sel = np.nonzero(ok & (bld > 0))[0]
    if len(sel):
        e = tab.edges[bld[sel]]  # (S, K, 4)
        p = np.stack([px[sel], py[sel]], axis=1)[:, None, :]
        a, b = e[..., :2], e[..., 2:]
        ab = b - a
        tt = np.clip(np.sum((p - a) * ab, -1) / np.maximum(np.sum(ab * ab, -1), 1e-12), 0, 1)
        gap = a + tt[..., None] * ab - p
        dist = np.hypot(gap[..., 0], gap[..., 1])
        best = np.argmin(np.where(np.isnan(dist), np.inf, dist), axis=1)
        pick = np.arange(len(sel))
        nrm = tab.normals[bld[sel], best]
        v0, v1 = a[pick, best], b[pick, best]
        dn = sa64[sel] * nrm[:, 0] + ca64[sel] * nrm[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            t_line = ((v0[:, 0] - cx) * nrm[:, 0] + (v0[:, 1] - cy) * nrm[:, 1]) / dn
        agree = (dn < -1e-3) & (np.abs(t_line - d_wall[sel]) < 1.5 * res)
        s2 = sel[agree]
        d_wall[s2] = t_line[agree]
        nx[s2], ny[s2] = nrm[agree, 0], nrm[agree, 1]
        tang = (v1 - v0)[agree]
        tang /= np.maximum(np.hypot(tang[:, 0], tang[:, 1]), 1e-9)[:, None]
        ux[s2], uy[s2] = tang[:, 0], tang[:, 1]
        px[s2], py[s2] = cx + d_wall[s2] * sa64[s2], cy + d_wall[s2] * ca64[s2]
        u[s2] = (px[s2] - v0[agree, 0]) * tang[:, 0] + (py[s2] - v0[agree, 1]) * tang[:, 1]
    f32 = np.float32
    return {
        "ok": ok,
        "d": d_wall.astype(f32),
        "h_lo": base.astype(f32),
        "h_top": top.astype(f32),
        "nx": nx.astype(f32),
        "ny": ny.astype(f32),
        "ux": ux.astype(f32),
        "uy": uy.astype(f32),
        "u": u.astype(f32),
        "x": px.astype(f32),
        "y": py.astype(f32),
        "bld": bld.astype(np.int32),
        "r": r_i,
        "c": c_i,
    }


def _wall_shadow_top(world: World, tab: _Tables, app: Appearance, wall: dict[str, np.ndarray]) -> np.ndarray:
    """Per wall hit: the height below which the wall lies in a cast shadow (the highest sun ray
    that something between the wall and the sun blocks); -inf for walls facing away from the sun.

    Marches from just in front of the wall towards the sun in growing steps (the sweep of
    :func:`edge_geoloc.world.lighting.cast_shadow` serves the ground, not vertical faces)."""
    out = np.full(len(wall["d"]), -np.inf, np.float32)
    el = np.radians(app.sun_elevation_deg)
    if el >= np.radians(89.9):
        return out
    sun = app.sun_vector()
    sh = np.hypot(sun[0], sun[1])
    sx, sy = sun[0] / sh, sun[1] / sh
    sel = np.nonzero(wall["nx"] * sx + wall["ny"] * sy > 0)[0]
    if not len(sel):
        return out
    reach = min(400.0, (tab.hmax + 1.0) / np.tan(el))  # nothing further can shade a wall
    t = 0.5 * 1.12 ** np.arange(int(np.ceil(np.log(max(reach, 0.6) / 0.5) / np.log(1.12))) + 1)
    x0 = wall["x"][sel] + 0.3 * wall["nx"][sel]
    y0 = wall["y"][sel] + 0.3 * wall["ny"][sel]
    x, y = x0[:, None] + t * sx, y0[:, None] + t * sy
    r, c = _cells(world, x, y)
    inside = (x >= 0) & (y <= 0) & (x < world.shape[1] * world.res_m) & (y > -world.shape[0] * world.res_m)
    h = np.where(inside, world.height[r, c], np.float32(0.0))  # trees shade walls too
    out[sel] = np.max(h - (t * np.tan(el)).astype(np.float32), axis=1)
    return out


def _wall_colour(
    world: World,
    app: Appearance,
    tab: _Tables,
    wall: dict[str, np.ndarray],
    widx: np.ndarray,
    px: np.ndarray,
    py: np.ndarray,
    z: np.ndarray,
    depth: np.ndarray,
    m: np.ndarray,
    pixel_rad: float,
    shadow_res: float,
) -> np.ndarray:
    """Colour of wall hits: per-building facade with windows by storey and pitch, lit by the sun
    through the wall's normal; other rises (cars, hedges) take their top's colour."""
    sun = app.sun_vector()
    nx, ny = wall["nx"][widx], wall["ny"][widx]
    facing = np.clip(nx * sun[0] + ny * sun[1], 0, None)
    if "shadow_top" not in wall:
        wall["shadow_top"] = _wall_shadow_top(world, tab, app, wall)
    lit = np.clip((z - wall["shadow_top"][widx]) / 0.3 + 1.0, 0.0, 1.0)
    light = AMBIENT * 0.85 + (1 - AMBIENT) * facing / max(float(sun[2]), 0.2) * lit
    light = np.minimum(light, 1.5)[:, None]
    bld = wall["bld"][widx]
    is_bld = bld > 0
    out = np.empty((len(widx), 3), np.float32)
    if np.any(is_bld):
        sel = np.nonzero(is_bld)[0]
        b, wi = bld[sel], widx[sel]
        zb = z[sel]
        # Along-wall coordinate of this ray's own hit (its bin's hit plus the offset along the wall).
        ub = wall["u"][wi] + (px[sel] - wall["x"][wi]) * wall["ux"][wi] + (py[sel] - wall["y"][wi]) * wall["uy"][wi]
        floor, pitch = tab.floor_m[b], tab.spacing_m[b]
        has_win = pitch > 0
        safe_pitch = np.where(has_win, pitch, np.float32(1.0))
        zs, us = zb / floor, ub / safe_pitch
        storey, bay = np.floor(zs), np.floor(us)
        zf, uf = zs - storey, us - bay
        win = (zf > 0.3) & (zf < 0.8) & (uf > 0.2) & (uf < 0.75) & has_win & (zb > 1.0) & (zb < wall["h_top"][wi] - 0.5)
        facade, glass = tab.facade[b], tab.window[b]
        # One draw per (building, storey, bay): a little variation of the wall and of each pane.
        noise = _hash01(b, storey, bay)
        pane = np.float32(0.85) + np.float32(0.3) * (noise * 13.7 % 1.0)
        grain = np.float32(0.93) + np.float32(0.1) * noise
        shade = np.where(win, pane, grain)[:, None]
        base = np.where(win[:, None], glass, facade) * shade
        # Once a window shrinks under about two pixels the pattern aliases: blend to the mean wall.
        slope2 = 1.0 + m[sel] * m[sel]
        foot = np.float32(pixel_rad) * depth[sel] * slope2
        size = np.where(has_win, np.minimum(pitch, floor), floor)
        mix = np.clip((foot - 0.25 * size) / (0.5 * size), 0.0, 1.0)[:, None]
        share = np.where(has_win, np.float32(0.275), np.float32(0.0))[:, None]
        out[sel] = base + mix * (facade + share * (glass - facade) - base)
    other = np.nonzero(~is_bld)[0]
    if len(other):
        wi = widx[other]
        r, c = wall["r"][wi], wall["c"][wi]
        alb = seasonal_albedo(world.albedo[r, c], world.material[r, c], app.season) * 0.85
        top = wall["h_top"][wi]
        glass = (world.material[r, c] == Material.CAR) & (z[other] > top - 0.6) & (z[other] < top - 0.1)
        alb[glass] = _CAR_GLASS_RGB
        out[other] = alb
    return out * light


def _first_ray(
    rays: Rays, key: np.ndarray, bin_start: np.ndarray, bins: np.ndarray, tan_el: np.ndarray, above: bool
) -> np.ndarray:
    """Index (in the sorted rays) of the first ray of each bin whose tan(elevation) is above
    (``above``) or at least ``tan_el``: a search, or arithmetic where every bin has the same rows."""
    if rays.uniform_rows is None:
        return np.searchsorted(key, _bin_key(bins, tan_el), side="right" if above else "left")
    el0, step, n = rays.uniform_rows
    x = (np.arctan(tan_el) - el0) / step
    row = np.floor(x) + 1 if above else np.ceil(x)
    return bin_start[bins] + np.clip(row, 0, n).astype(np.intp)


def _horizon_before(d: np.ndarray, horizon: np.ndarray, bins: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """The height-field horizon (tan) of each bin from the samples nearer than ``dist``."""
    k = np.searchsorted(d, dist, side="left") - 1
    return np.where(k >= 0, horizon[np.maximum(k, 0), bins], -np.inf).astype(np.float32)


def _composite_trees(
    world: World,
    app: Appearance,
    tab: _Tables,
    cx: float,
    cy: float,
    cam_z: float,
    rays: Rays,
    key: np.ndarray,
    bin_start: np.ndarray,
    tan_s: np.ndarray,
    sin_s: np.ndarray,
    cos_s: np.ndarray,
    sa: np.ndarray,
    ca: np.ndarray,
    rgb: np.ndarray,
    depth: np.ndarray,
    d: np.ndarray,
    horizon: np.ndarray,
    max_range_m: float,
    shadow_res: float,
) -> None:
    """Draw ellipsoid crowns on trunks into ``rgb`` (sorted rays) where nearer than ``depth``.

    The bins' height-field horizons (``horizon`` at march distances ``d``) cull what nearer tops
    already hide: rays no higher than the horizon in front of a crown never reach it."""
    if len(tab.tree_r) == 0:
        return
    n_bins = rays.n_bins
    rel_all = tab.tree_xy - np.array([cx, cy], np.float32)
    dist = np.hypot(rel_all[:, 0], rel_all[:, 1])
    near = np.nonzero(dist < max_range_m + tab.tree_r)[0]
    if len(near) == 0:
        return
    rel, dist, r_t = rel_all[near], dist[near], tab.tree_r[near]
    # Bins the crown's silhouette can touch.
    alpha = np.arctan2(rel[:, 0], rel[:, 1])
    half = np.where(dist > r_t, np.arcsin(np.clip(r_t / np.maximum(dist, 1e-6), 0, 1)), np.pi)
    centre = rays.az0 + rays.step * (n_bins - 1) / 2
    jc = (n_bins - 1) / 2 + (np.mod(alpha - centre + np.pi, 2 * np.pi) - np.pi) / rays.step
    j0 = np.ceil(jc - half / rays.step - 0.5).astype(np.int64)
    j1 = np.floor(jc + half / rays.step + 0.5).astype(np.int64)
    if rays.full_circle:
        count = np.minimum(j1 - j0 + 1, n_bins)
    else:
        j0, j1 = np.maximum(j0, 0), np.minimum(j1, n_bins - 1)
        count = np.maximum(j1 - j0 + 1, 0)
    ti, jj = _run_indices(j0, count)
    if len(ti) == 0:
        return
    if rays.full_circle:
        jj = np.mod(jj, n_bins)
    tree = near[ti]
    rx, ry = rel[ti, 0], rel[ti, 1]
    s_j, c_j = sa[jj], ca[jj]
    t0 = rx * s_j + ry * c_j
    lat = rx * c_j - ry * s_j
    r = r_t[ti]
    rz, zc = tab.tree_rz[tree], tab.tree_zc[tree]
    z_rel = zc - np.float32(cam_z)

    # Crowns: the bin's vertical plane cuts the ellipsoid in an ellipse (a, b); from outside it the
    # two tangent rays bound the candidate rays, each then solved exactly along its own azimuth.
    a2 = r * r - lat * lat
    crown = a2 > -((rays.step * t0) ** 2)  # a bin's edge rays may still graze it
    a = np.sqrt(np.maximum(a2, 1e-6))
    b = rz * a / r
    outside = crown & (t0 > a)
    den = np.where(outside, t0 * t0 - a * a, 1.0)
    disc = np.sqrt(np.maximum(t0 * t0 * b * b + a * a * z_rel * z_rel - a * a * b * b, 0.0))
    pad = 2.0 * rays.el_step * (1.0 + ((t0 * z_rel) / den) ** 2)
    hidden_below = _horizon_before(d, horizon, jj, t0 - a)
    m_lo = np.maximum((t0 * z_rel - disc) / den - pad, hidden_below)
    m_hi = (t0 * z_rel + disc) / den + pad
    i0 = np.where(outside, _first_ray(rays, key, bin_start, jj, m_lo, above=True), bin_start[jj])
    i1 = np.where(outside, _first_ray(rays, key, bin_start, jj, m_hi, above=True), bin_start[jj + 1])
    n_px = np.where(crown, np.maximum(i1 - i0, 0), 0)
    pair, ray = _run_indices(i0, n_px)
    tid = tree[pair]
    sp, cp, mm = sin_s[ray], cos_s[ray], tan_s[ray]
    qx, qy = rx[pair], ry[pair]
    x0 = qx * sp + qy * cp  # this ray's own slice through the crown
    l0 = qx * cp - qy * sp
    rr = r[pair]
    ap2 = rr * rr - l0 * l0
    ok = ap2 > 0
    ap = np.sqrt(np.maximum(ap2, 1e-6))
    bp = rz[pair] * ap / rr
    zp = z_rel[pair]
    qa = 1.0 / (ap * ap) + mm * mm / (bp * bp)
    qb = x0 / (ap * ap) + mm * zp / (bp * bp)
    qc = x0 * x0 / (ap * ap) + zp * zp / (bp * bp) - 1.0
    qd = qb * qb - qa * qc
    sq = np.sqrt(np.maximum(qd, 0.0))
    t_hit = (qb - sq) / qa
    t_hit = np.where(t_hit > 0, t_hit, (qb + sq) / qa)
    ok &= (qd >= 0) & (t_hit > 0)
    tid, ray, t_hit, mm, sp, cp = tid[ok], ray[ok], t_hit[ok], mm[ok], sp[ok], cp[ok]
    hx, hy = cx + t_hit * sp, cy + t_hit * cp
    hz = np.float32(cam_z) + mm * t_hit
    txy = tab.tree_xy[tid]
    nrm = np.stack(
        [
            (hx - txy[:, 0]) / tab.tree_r[tid] ** 2,
            (hy - txy[:, 1]) / tab.tree_r[tid] ** 2,
            (hz - tab.tree_zc[tid]) / tab.tree_rz[tid] ** 2,
        ],
        axis=1,
    )
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-9)
    sun = app.sun_vector()
    lit = _shadow_at(world, app, shadow_res, txy[:, 0], txy[:, 1])
    light = (
        AMBIENT * (0.75 + 0.25 * nrm[:, 2])
        + (1 - AMBIENT) * np.clip(nrm @ sun, 0, None) / max(float(sun[2]), 0.2) * lit
    )
    # Foliage: clumps (smooth noise at 0.8 m) with fine leaf grain (0.2 m cells, sub-pixel from afar).
    clumps = _value_noise(tid, hx / 0.8, hy / 0.8, hz / 0.8)
    grain = _hash01(tid, np.floor(hx / 0.2), np.floor(hy / 0.2), np.floor(hz / 0.2))
    leaf = 0.62 + 0.45 * clumps + 0.12 * grain
    albedo = seasonal_albedo(tab.tree_albedo[tid], np.full(len(tid), Material.TREE, np.uint8), app.season)
    crown_rgb = albedo * (np.minimum(light, 1.3) * leaf)[:, None]

    # Trunks: a vertical post under the crown, at least a bin wide.
    trunk_r = np.maximum(0.12 + 0.015 * (zc + rz), 0.5 * rays.step * t0)
    trunk = (np.abs(lat) < trunk_r + 0.5 * rays.step * t0) & (t0 > trunk_r)
    t_tr = t0 - np.sqrt(np.maximum(trunk_r * trunk_r - lat * lat, 0.0))
    safe_t = np.maximum(t_tr, 1e-3)
    m_bot = np.maximum(-np.float32(cam_z) / safe_t, _horizon_before(d, horizon, jj, t_tr) + 1e-7)
    k0 = _first_ray(rays, key, bin_start, jj, m_bot, above=False)
    k1 = _first_ray(rays, key, bin_start, jj, (zc - 0.6 * rz - np.float32(cam_z)) / safe_t, above=True)
    tpair, tray = _run_indices(k0, np.where(trunk, np.maximum(k1 - k0, 0), 0))
    own_lat = rx[tpair] * cos_s[tray] - ry[tpair] * sin_s[tray]
    keep = np.abs(own_lat) < trunk_r[tpair]
    tpair, tray = tpair[keep], tray[keep]
    facing = np.clip(-(sin_s[tray] * sun[0] + cos_s[tray] * sun[1]), 0, 1)  # we see the sunny flank
    trunk_rgb = _BARK_RGB * (AMBIENT + (1 - AMBIENT) * facing)[:, None]

    idx = np.concatenate([ray, tray])
    dep = np.concatenate([t_hit, t_tr[tpair]]).astype(np.float32)
    colour = np.concatenate([crown_rgb, trunk_rgb]).astype(np.float32)
    order = np.lexsort((dep, idx))
    idx, dep, colour = idx[order], dep[order], colour[order]
    first = np.ones(len(idx), bool)
    first[1:] = idx[1:] != idx[:-1]
    front = first & (dep < depth[idx])
    idx = idx[front]
    depth[idx] = dep[front]
    rgb[idx] = colour[front]


def render_directions(
    world: World,
    app: Appearance,
    east: float,
    north: float,
    cam_z: float,
    dirs_enu: np.ndarray,
    max_range_m: float,
    frac: float | None,
    haze_scale_m: float,
) -> np.ndarray:
    """Float RGB (H, W, 3) of a camera with one centre and per-pixel ray directions (H, W, 3)."""
    rays = Rays.from_directions(dirs_enu)
    rgb, _ = cast(world, app, east, north, cam_z, rays, max_range_m, frac=frac, haze_scale_m=haze_scale_m)
    return rgb.reshape(dirs_enu.shape)


def render_equirect(
    world: World,
    app: Appearance,
    east: float,
    north: float,
    cam_z: float,
    az_first: float,
    az_step: float,
    width: int,
    el_top: float,
    el_step: float,
    height: int,
    max_range_m: float,
    frac: float | None,
    haze_scale_m: float,
) -> np.ndarray:
    """Float RGB (H, W, 3) of an equirectangular window: column j looks at azimuth
    ``az_first + j * az_step``, row i at elevation ``el_top - i * el_step`` (radians)."""
    rays = Rays.equirect(az_first, az_step, width, el_top, el_step, height)
    rgb, _ = cast(world, app, east, north, cam_z, rays, max_range_m, frac=frac, haze_scale_m=haze_scale_m)
    return np.ascontiguousarray(rgb.reshape(width, height, 3)[:, ::-1].transpose(1, 0, 2))


def prepare_views(
    world: World, apps: tuple[Appearance, ...] | list[Appearance] = (), shadow_res_m: float | None = None
) -> None:
    """Build the caster's tables, the surface slopes and the street shadow rasters of ``apps``'
    suns now (about a second for a 1 km world), e.g. in a parent process before forking view
    workers, which then share them. The shadow cache keeps a few suns only
    (:data:`edge_geoloc.world.lighting._MAX_CACHED_SHADOWS`): render views grouped by sun."""
    tables(world)
    surface_slope(world)
    for app in apps:
        sun_shadow(world, app, _shadow_res(world, shadow_res_m))


def _shadow_res(world: World, shadow_res_m: float | None) -> float:
    return max(world.res_m, VIEW_SHADOW_RES_M) if shadow_res_m is None else float(shadow_res_m)
