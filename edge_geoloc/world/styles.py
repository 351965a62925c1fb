"""What each world style is made of: palettes, road specs and the shared placement helpers.

Colours are drawn per world around a style's base palette (and per object around that), so
two worlds of one style differ in colour and exact colour never identifies a place.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_geoloc.world.canvas import Canvas, Plan, vary
from edge_geoloc.world.roads import Streets, draw_streets
from edge_geoloc.world.scene import Material
from edge_geoloc.world.structures import BuildingLook, CarPaint, TreeKind, clearance_px, plant, scatter_points

ROOF_PITCHED = ((165, 82, 58), (140, 62, 48), (72, 74, 80), (95, 98, 108), (112, 82, 62), (150, 110, 80), (58, 60, 64))
ROOF_FLAT = ((170, 170, 168), (140, 140, 138), (195, 195, 190), (110, 110, 112), (180, 170, 150), (215, 215, 210))
ROOF_METAL = ((200, 203, 206), (160, 165, 170), (120, 130, 142), (185, 188, 190), (215, 218, 222), (140, 95, 80))
FACADES = (
    (210, 200, 180),
    (190, 180, 165),
    (160, 90, 70),
    (140, 80, 60),
    (220, 220, 215),
    (120, 125, 135),
    (230, 215, 180),
)
GLASS = ((60, 80, 100), (70, 95, 110), (40, 55, 70), (90, 110, 120), (55, 70, 65))


@dataclass
class Ctx:
    """Everything a style generator draws with."""

    rng: np.random.Generator
    canvas: Canvas
    plan: Plan
    pid: dict[str, int] = field(default_factory=dict)
    paint: CarPaint | None = None
    streets: Streets | None = None
    bulbs: list[np.ndarray] = field(default_factory=list)

    @property
    def size(self) -> float:
        return self.canvas.size


def base_palette(ctx: Ctx, ground: Material, ground_rgb) -> None:
    """Shared surface colours of a world; the ground entry must be palette id 0 (unpainted)."""
    rng, cv = ctx.rng, ctx.canvas
    p = ctx.pid
    p["ground"] = cv.entry(ground, vary(rng, ground_rgb, 0.06, 0.06))
    assert p["ground"] == 0, "the ground must be the first palette entry"
    p["grass"] = cv.entry(Material.GRASS, vary(rng, (86, 122, 58), 0.06, 0.06))
    p["lawn"] = cv.entry(Material.GRASS, vary(rng, (96, 138, 62), 0.06, 0.05))
    p["verge"] = cv.entry(Material.GRASS, vary(rng, (92, 125, 64), 0.06, 0.05))
    asphalt = rng.uniform(78, 112)
    p["road"] = cv.entry(Material.ROAD, vary(rng, (asphalt, asphalt, asphalt + 3), 0.03))
    p["track"] = cv.entry(Material.ROAD, vary(rng, (150, 135, 110), 0.05, 0.05))
    p["sidewalk"] = cv.entry(Material.SIDEWALK, vary(rng, (168, 162, 154), 0.04, 0.06))
    p["marking"] = cv.entry(Material.MARKING, vary(rng, (228, 228, 220), 0.02))
    yellow = rng.random() < 0.3
    p["centre"] = cv.entry(Material.MARKING, vary(rng, (225, 190, 60) if yellow else (228, 228, 220), 0.02))
    p["parking"] = cv.entry(Material.PARKING, vary(rng, (asphalt + 8, asphalt + 8, asphalt + 10), 0.03, 0.04))
    p["driveway"] = cv.entry(Material.PARKING, vary(rng, (165, 160, 152), 0.05, 0.06))
    p["soil"] = cv.entry(Material.SOIL, vary(rng, (128, 104, 80), 0.06, 0.06))
    p["gravel"] = cv.entry(Material.SOIL, vary(rng, (160, 150, 135), 0.04, 0.05))
    p["plaza"] = cv.entry(Material.PLAZA, vary(rng, (178, 168, 152), 0.05, 0.05))
    p["water"] = cv.entry(Material.WATER, vary(rng, (52, 78, 92), 0.08, 0.1))
    p["pool"] = cv.entry(Material.WATER, vary(rng, (85, 170, 200), 0.05))
    p["shrub"] = cv.entry(Material.SHRUB, vary(rng, (62, 96, 46), 0.07, 0.06))
    ctx.paint = CarPaint(cv, rng)


def tree_kind(rng: np.random.Generator, radius, height, cone: float = 0.0) -> TreeKind:
    return TreeKind(vary(rng, (62, 96, 44), 0.06, 0.05), radius, height, cone, vary(rng, (40, 66, 46), 0.05, 0.05))


def look(
    rng: np.random.Generator, roof_palette, floor: tuple[float, float], spacing: tuple[float, float]
) -> BuildingLook:
    """A building's colours and window grid, drawn per building."""
    roof = vary(rng, roof_palette[int(rng.integers(len(roof_palette)))], 0.05, 0.08)
    facade = vary(rng, FACADES[int(rng.integers(len(FACADES)))], 0.06, 0.08)
    window = vary(rng, GLASS[int(rng.integers(len(GLASS)))], 0.08, 0.1)
    return BuildingLook(roof, facade, window, float(rng.uniform(*floor)), float(rng.uniform(*spacing)))


def draw_roads(ctx: Ctx) -> None:
    assert ctx.streets is not None
    draw_streets(ctx.canvas, ctx.plan, ctx.streets, ctx.pid, ctx.bulbs, ctx.rng)


def edge_frames(ctx: Ctx, step_m: float, kinds=(0, 1, 2)) -> Iterator[tuple[np.ndarray, np.ndarray, float, int]]:
    """Points every ``step_m`` along the road chains (curves included) with their direction:
    (point, unit direction, corridor width, kind)."""
    assert ctx.streets is not None
    nodes = ctx.streets.network.nodes
    for path, k in ctx.streets.chains():
        spec = ctx.streets.specs[k]
        if spec.kind not in kinds:
            continue
        pts = nodes[path]
        seg = np.diff(pts, axis=0)
        seg_len = np.hypot(*seg.T)
        s = np.concatenate([[0.0], np.cumsum(seg_len)])
        for t in np.arange(step_m / 2, s[-1], step_m):
            i = min(int(np.searchsorted(s, t, side="right")) - 1, len(seg) - 1)
            u = seg[i] / max(seg_len[i], 1e-9)
            yield pts[i] + u * (t - s[i]), u, spec.corridor_m(), spec.kind


def street_trees(ctx: Ctx, kind: TreeKind, spacing: tuple[float, float], prob: float, kinds=(0, 1)) -> int:
    """Trees in the sidewalk (or verge) next to the kerb, their crowns off the carriageway."""
    assert ctx.streets is not None
    rng, net = ctx.rng, ctx.streets.network
    clear = ctx.streets.junction_clearance()
    pts, radii = [], []
    for e, (a, b) in enumerate(net.edges):
        spec = ctx.streets.spec(e)
        strip = spec.verge_m if spec.verge_m > 0 else spec.sidewalk_m
        if spec.kind not in kinds or strip < 1.5 or rng.random() > prob:
            continue
        p, q = net.nodes[a], net.nodes[b]
        d = q - p
        length = float(np.hypot(*d))
        u = d / max(length, 1e-9)
        n = np.array([u[1], -u[0]])
        off = spec.width_m / 2 + strip / 2
        r = min(kind.radius[1], max(kind.radius[0], strip / 2 + 0.5))
        t = clear[a] + 2.0
        while t < length - clear[b] - 2.0:
            for side in (-1, 1):
                pts.append(p + u * t + side * n * off)
                radii.append(r * rng.uniform(0.85, 1.0))
            t += rng.uniform(*spacing)
    if not pts:
        return 0
    pts_arr = np.array(pts)
    # Crowns may reach over a roof (the taller surface wins) but trunks stand clear of walls.
    keep_free = clearance_px(ctx.plan, Plan.BUILDING | Plan.WATER)
    r_px, c_px = plan_index(ctx.plan, pts_arr)
    ok = keep_free[r_px, c_px] * ctx.plan.res >= np.array(radii) * 0.3
    return plant(ctx.canvas, rng, pts_arr[ok], kind, 0.9, np.array(radii)[ok])


def plan_index(plan: Plan, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.clip((pts[:, 0] / plan.res).astype(int), 0, plan.n - 1)
    r = np.clip(((plan.size - pts[:, 1]) / plan.res).astype(int), 0, plan.n - 1)
    return r, c


def scatter_trees(
    ctx: Ctx,
    kind: TreeKind,
    density_per_ha: float,
    allowed: np.ndarray,
    keep_off: int,
    factor: float = 0.8,
    material: Material = Material.TREE,
) -> int:
    """Trees at random on plan cells where ``allowed``, crowns kept off the ``keep_off`` layers."""
    area_ha = float(allowed.sum()) * ctx.plan.res**2 / 1e4
    count = int(ctx.rng.poisson(density_per_ha * area_ha))
    pts = scatter_points(ctx.rng, ctx.plan, count, allowed)
    if not len(pts):
        return 0
    dist = clearance_px(ctx.plan, keep_off)
    r_px, c_px = plan_index(ctx.plan, pts)
    radius = ctx.rng.uniform(*kind.radius, len(pts))
    ok = dist[r_px, c_px] * ctx.plan.res >= radius * 0.9
    return plant(ctx.canvas, ctx.rng, pts[ok], kind, factor, radius[ok], material)


def components(mask: np.ndarray, min_px: int) -> Iterator[tuple[np.ndarray, tuple[int, int]]]:
    """Connected pieces of a plan mask: (piece mask cropped to its box, (row0, col0))."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=4)
    for k in range(1, n):
        x, y, w, h, area = stats[k]
        if area < min_px:
            continue
        yield labels[y : y + h, x : x + w] == k, (int(y), int(x))


def mask_polygon(plan: Plan, piece: np.ndarray, origin: tuple[int, int], eps_px: float = 1.5) -> np.ndarray | None:
    """The outline of a plan mask piece as a local-metre polygon (largest outer contour)."""
    contours, _ = cv2.findContours(piece.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    cnt = max(contours, key=cv2.contourArea)
    cnt = cv2.approxPolyDP(cnt, eps_px, True).reshape(-1, 2)
    if len(cnt) < 3:
        return None
    return plan.to_local(cnt[:, 1] + origin[0], cnt[:, 0] + origin[1])


def principal_axis(poly: np.ndarray) -> np.ndarray:
    """Unit vector along the long side of a polygon's minimum-area rectangle."""
    (_, _), (w, h), ang = cv2.minAreaRect(poly.astype(np.float32))
    a = np.radians(ang)
    u = np.array([np.cos(a), np.sin(a)])
    if w < h:
        u = np.array([-u[1], u[0]])
    return u


def frame_coords(piece: np.ndarray, origin: tuple[int, int], plan: Plan, u: np.ndarray):
    """(a, b) metres of a plan piece's cells along u and across it (v = u rotated left)."""
    rows = (np.arange(piece.shape[0]) + origin[0])[:, None]
    cols = (np.arange(piece.shape[1]) + origin[1])[None, :]
    x = (cols + 0.5) * plan.res
    y = plan.size - (rows + 0.5) * plan.res
    return x * u[0] + y * u[1], y * u[0] - x * u[1]


def inner_rect(piece: np.ndarray, a: np.ndarray, b: np.ndarray, u: np.ndarray, fit: float = 0.995):
    """A large rectangle aligned with u inside a plan piece: (centre local, length, width) or None.

    Shrinks the piece's (a, b) bounding box about the piece centroid until it lies inside."""
    if not piece.any():
        return None
    aa, bb = a[piece], b[piece]
    ca, cb = float(np.median(aa)), float(np.median(bb))
    lo_a, hi_a, lo_b, hi_b = aa.min(), aa.max(), bb.min(), bb.max()
    scale = 1.0
    for _ in range(14):
        a0, a1 = ca + (lo_a - ca) * scale, ca + (hi_a - ca) * scale
        b0, b1 = cb + (lo_b - cb) * scale, cb + (hi_b - cb) * scale
        inside = (a >= a0) & (a <= a1) & (b >= b0) & (b <= b1)
        n_in = int(inside.sum())
        if n_in and (inside & piece).sum() >= fit * n_in:
            v = np.array([-u[1], u[0]])
            ac, bc = (a0 + a1) / 2, (b0 + b1) / 2
            return ac * u + bc * v, float(a1 - a0), float(b1 - b0)
        scale *= 0.9
    return None


def offset_polygon(poly: np.ndarray, d: float) -> np.ndarray:
    """A polygon moved outwards by ``d`` metres (inwards for d < 0), mitred at the corners."""
    poly = np.asarray(poly, float)
    area = 0.5 * np.sum(poly[:, 0] * np.roll(poly[:, 1], -1) - np.roll(poly[:, 0], -1) * poly[:, 1])
    e = np.roll(poly, -1, axis=0) - poly
    e /= np.maximum(np.hypot(*e.T), 1e-9)[:, None]
    # Outward normal of each edge: right of travel for counter-clockwise polygons.
    n = np.stack([e[:, 1], -e[:, 0]], axis=1) * (1.0 if area > 0 else -1.0)
    n_prev = np.roll(n, 1, axis=0)
    bis = n + n_prev
    denom = 1.0 + np.sum(n * n_prev, axis=1)
    scale = np.where(denom > 0.3, 1.0 / np.maximum(denom, 1e-9), 1.0 / 0.3)
    return poly + d * bis * scale[:, None]
