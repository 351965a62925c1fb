"""Buildings, roofs, parking lots, cars and trees: the objects the style generators place.

Roofs are height profiles, so the shared lighting shades their slopes: a gable is
``eave + tan(pitch) * (half width - |distance from the ridge|)`` per wing (an L-shaped house is
two wings whose gables meet in valleys by taking the maximum), a hip roof also slopes from the
gable ends, and an irregular footprint gets a hip roof from its distance transform. Flat roofs
carry parapets, HVAC boxes, penthouses, skylights or solar panels so they are not blank.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.world.canvas import TEX_ONE, Canvas, Plan, vary
from edge_geoloc.world.roads import rect
from edge_geoloc.world.scene import Material

CAR_COLOURS = (
    (235, 235, 232),
    (225, 226, 228),
    (25, 25, 28),
    (40, 40, 45),
    (165, 168, 172),
    (120, 122, 128),
    (150, 30, 28),
    (35, 55, 115),
    (25, 70, 50),
    (200, 170, 60),
    (90, 60, 40),
    (60, 90, 140),
)


@dataclass
class Wing:
    """One rectangular part of a building in its frame: u in [u0, u1], v in [v0, v1]."""

    u0: float
    u1: float
    v0: float
    v1: float
    ridge_along_u: bool = True


@dataclass
class Shape:
    """A building outline in a frame (origin ``c``, unit axis ``u``; v is 90 degrees left of u)."""

    c: np.ndarray
    u: np.ndarray
    wings: list[Wing]
    polygon: np.ndarray  # (K, 2) local metres

    @property
    def v(self) -> np.ndarray:
        return np.array([-self.u[1], self.u[0]])


def rect_shape(c, u, length: float, width: float) -> Shape:
    c, u = np.asarray(c, float), np.asarray(u, float)
    w = Wing(-length / 2, length / 2, -width / 2, width / 2, True)
    return Shape(c, u, [w], _frame_poly(c, u, [(w.u0, w.v0), (w.u1, w.v0), (w.u1, w.v1), (w.u0, w.v1)]))


def l_shape(c, u, length: float, width: float, wing_len: float, wing_w: float, end: int, side: int) -> Shape:
    """A main wing (length x width) plus a perpendicular wing at one ``end`` (+-1) on one ``side``."""
    c, u = np.asarray(c, float), np.asarray(u, float)
    hl, hw = length / 2, width / 2
    main = Wing(-hl, hl, -hw, hw, True)
    ua, ub = (hl - wing_w, hl) if end > 0 else (-hl, -hl + wing_w)
    va, vb = (0.0, hw + wing_len) if side > 0 else (-hw - wing_len, 0.0)
    wing = Wing(ua, ub, va, vb, False)
    # Outline: walk the union's corners in the frame, then mirror as needed.
    corners = [(-hl, -hw), (hl, -hw), (hl, hw + wing_len), (hl - wing_w, hw + wing_len), (hl - wing_w, hw), (-hl, hw)]
    corners = [(a * end, b * side) for a, b in corners]
    if end * side < 0:
        corners = corners[::-1]
    return Shape(c, u, [main, wing], _frame_poly(c, u, corners))


def _frame_poly(c: np.ndarray, u: np.ndarray, pts) -> np.ndarray:
    v = np.array([-u[1], u[0]])
    return np.array([c + a * u + b * v for a, b in pts])


def shape_in_window(canvas: Canvas, shape: Shape, win) -> tuple[np.ndarray, np.ndarray]:
    """Frame coordinates (a along u, b along v) of the window's pixel centres."""
    x, y = canvas.centres(win)
    dx, dy = x - np.float32(shape.c[0]), y - np.float32(shape.c[1])
    u, v = shape.u.astype(np.float32), shape.v.astype(np.float32)
    return dx * u[0] + dy * u[1], dx * v[0] + dy * v[1]


def pitched_heights(shape: Shape, a: np.ndarray, b: np.ndarray, eave: float, pitch_deg: float, hip: bool) -> np.ndarray:
    """Top-surface height of gable (or hip) roofs over the wings, the maximum where wings meet."""
    t = np.float32(np.tan(np.radians(pitch_deg)))
    out = np.full(np.broadcast(a, b).shape, -np.inf, np.float32)
    for w in shape.wings:
        ca, cb = (w.u0 + w.u1) / 2, (w.v0 + w.v1) / 2
        ha, hb = (w.u1 - w.u0) / 2, (w.v1 - w.v0) / 2
        da, db = ha - np.abs(a - np.float32(ca)), hb - np.abs(b - np.float32(cb))
        inside = (da >= -0.3) & (db >= -0.3)
        across = db if w.ridge_along_u else da
        if hip:
            across = np.minimum(da, db)
        h = eave + t * np.maximum(across, 0)
        out = np.where(inside, np.maximum(out, h), out)
    return np.where(np.isfinite(out), out, eave).astype(np.float32)


@dataclass
class BuildingLook:
    roof_rgb: tuple[int, int, int]
    facade: tuple[int, int, int]
    window: tuple[int, int, int]
    floor_m: float
    window_spacing_m: float


def draw_pitched(
    canvas: Canvas,
    plan: Plan,
    rng: np.random.Generator,
    shape: Shape,
    eave: float,
    pitch_deg: float,
    hip: bool,
    look: BuildingLook,
    solar: bool = False,
) -> int:
    """A house or barn with a gable/hip roof; shingle rows along the ridge show in the texture."""
    win = canvas.window(shape.polygon, 0.5)
    if win is None:
        return 0
    a, b = shape_in_window(canvas, shape, win)
    h = pitched_heights(shape, a, b, eave, pitch_deg, hip)
    mask = canvas.poly_mask(shape.polygon, win)
    if not mask.any():
        return 0
    top = float(h[mask].max())
    obj = canvas.add_building(shape.polygon, top, look.facade, look.window, look.floor_m, look.window_spacing_m)
    pid = canvas.entry(Material.ROOF, look.roof_rgb, obj)
    # Shingle / panel rows: stripes parallel to the ridge, spaced by the height (so along the slope).
    period = np.float32(rng.uniform(0.35, 0.7) * np.tan(np.radians(pitch_deg)))
    rows = np.sin((h - np.float32(eave)) * np.float32(2 * np.pi) / period)
    tex = (TEX_ONE + rng.uniform(4, 12) * rows).astype(np.uint8)
    canvas.put(win, mask, pid, h, tex)
    if solar:
        w = shape.wings[0]
        ln, sgn = (w.u1 - w.u0) * rng.uniform(0.3, 0.6), (1 if rng.random() < 0.5 else -1)
        wb = (w.v1 - w.v0) / 2
        sa, sb = rng.uniform(w.u0 + 1, max(w.u0 + 1.01, w.u1 - 1 - ln)), (w.v0 + w.v1) / 2 + sgn * wb / 2
        panel = mask & (a >= sa) & (a <= sa + ln) & (np.abs(b - np.float32(sb)) < wb * 0.3)
        ppid = canvas.entry(Material.ROOF, vary(rng, (40, 48, 70), 0.05), obj)
        grid = (np.sin(a * np.float32(2 * np.pi / 1.0)) > 0.9) | (np.sin(b * np.float32(2 * np.pi / 1.6)) > 0.93)
        canvas.put(win, panel, ppid, h, np.where(grid, 165, 118))
    plan.mark_poly(shape.polygon, Plan.BUILDING)
    return obj


def _footprint(canvas: Canvas, polygon: np.ndarray) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """The canvas window around a footprint and the footprint's mask in it; None where none of it is drawn."""
    win = canvas.window(polygon, 1.0)
    if win is None:
        return None
    mask = canvas.poly_mask(polygon, win)
    return (win, mask) if mask.any() else None


def draw_hip_any(
    canvas: Canvas,
    plan: Plan,
    rng: np.random.Generator,
    polygon: np.ndarray,
    eave: float,
    pitch_deg: float,
    rise_cap: float,
    look: BuildingLook,
    material: Material = Material.ROOF,
    building: bool = True,
) -> int:
    """A hip (or mansard, where ``rise_cap`` flattens the top) roof over any footprint, from the
    footprint's distance transform; on a round footprint it is a cone (silos, tanks, heaps)."""
    found = _footprint(canvas, polygon)
    if found is None:
        return 0
    win, mask = found
    dist = cv2.distanceTransform(np.pad(mask.view(np.uint8), 1), cv2.DIST_L2, 3)[1:-1, 1:-1] * np.float32(canvas.res)
    t = np.float32(np.tan(np.radians(pitch_deg)))
    h = np.float32(eave) + np.minimum(dist * t, np.float32(rise_cap))
    top = float(h[mask].max())
    obj = (
        canvas.add_building(polygon, top, look.facade, look.window, look.floor_m, look.window_spacing_m)
        if building
        else 0
    )
    pid = canvas.entry(material, look.roof_rgb, obj)
    period = np.float32(rng.uniform(0.35, 0.7) * t)
    tex = (TEX_ONE + rng.uniform(4, 10) * np.sin((h - np.float32(eave)) * np.float32(2 * np.pi) / period)).astype(
        np.uint8
    )
    flat_top = h >= np.float32(eave + rise_cap - 1e-3)
    tex[flat_top] = TEX_ONE
    canvas.put(win, mask, pid, h, tex)
    plan.mark_poly(polygon, Plan.BUILDING if building else Plan.PAVED)
    return obj


def draw_flat(
    canvas: Canvas,
    plan: Plan,
    rng: np.random.Generator,
    polygon: np.ndarray,
    height: float,
    look: BuildingLook,
    axis: np.ndarray,
    parapet: bool = True,
    hvac: int = 0,
    penthouse: bool = False,
    skylights: bool = False,
    solar: bool = False,
    into: int = 0,
) -> int:
    """A flat-roofed building of any footprint with roof details (same object id as the building).

    ``into``: paint a part (a tower on its podium) of an already registered building."""
    found = _footprint(canvas, polygon)
    if found is None:
        return 0
    win, mask = found
    top = height + (3.5 if penthouse else (2.2 if hvac else (0.6 if parapet else 0.0)))
    if into:
        obj = into
        canvas.buildings[obj - 1]["height"] = max(canvas.buildings[obj - 1]["height"], top)
    else:
        obj = canvas.add_building(polygon, top, look.facade, look.window, look.floor_m, look.window_spacing_m)
    pid = canvas.entry(Material.ROOF, look.roof_rgb, obj)
    x, y = canvas.centres(win)
    u = axis / np.hypot(*axis)
    a = x * np.float32(u[0]) + y * np.float32(u[1])
    b = y * np.float32(u[0]) - x * np.float32(u[1])
    # Membrane seams or gravel: a few stripe/noise kinds, chosen per building.
    kind = rng.integers(3)
    if kind == 0:
        tex = TEX_ONE + 6 * np.sin(a * np.float32(2 * np.pi / rng.uniform(1.0, 2.5)))
    elif kind == 1:
        tex = TEX_ONE + canvas.trng.normal(0, 10, mask.shape).astype(np.float32)
    else:
        tex = TEX_ONE + 8 * (np.sin(a * np.float32(2 * np.pi / 5.0)) > 0.96) - 4 * (np.sin(b * np.float32(0.9)) > 0.97)
    canvas.put(win, mask, pid, np.float32(height), np.broadcast_to(tex, mask.shape).astype(np.uint8))
    if parapet:
        rim = canvas.entry(Material.ROOF, vary(rng, look.roof_rgb, 0.03, 0.08), obj)
        ring = mask & ~_eroded(mask, 0.5 / canvas.res)
        canvas.put(win, ring, rim, np.float32(height + 0.6), TEX_ONE)
    inner = inner_points(rng, polygon, 8, 3.0)
    if skylights:
        spid = canvas.entry(Material.ROOF, vary(rng, (205, 215, 220), 0.03), obj)
        period = rng.uniform(8, 14)
        band = (np.mod(b, np.float32(period)) < 1.6) & (np.mod(a, np.float32(6.0)) < 5.0)
        canvas.put(win, mask & band & _eroded(mask, 2.0 / canvas.res), spid, np.float32(height + 0.3), TEX_ONE)
    if solar:
        spid = canvas.entry(Material.ROOF, vary(rng, (38, 45, 68), 0.05), obj)
        period = rng.uniform(2.5, 3.5)
        band = (np.mod(b, np.float32(period)) < 1.7) & (np.mod(a, np.float32(12.0)) < 11.0)
        canvas.put(win, mask & band & _eroded(mask, 3.0 / canvas.res), spid, np.float32(height + 0.4), 118)
    boxes = hvac + (1 if penthouse else 0)
    for k in range(min(boxes, len(inner))):
        is_pent = penthouse and k == 0
        bl, bw = (rng.uniform(5, 9), rng.uniform(4, 7)) if is_pent else (rng.uniform(1.5, 4.5), rng.uniform(1.2, 3))
        box = rect(inner[k], u, bl, bw)
        if not np.all(_inside(polygon, box, margin=0.8)):
            continue
        bh = height + (3.5 if is_pent else rng.uniform(1.2, 2.2))
        bpid = canvas.entry(Material.ROOF, vary(rng, (175, 175, 172) if not is_pent else look.roof_rgb, 0.05, 0.1), obj)
        canvas.fill(box, bpid, bh, TEX_ONE + int(rng.integers(-6, 7)))
    plan.mark_poly(polygon, Plan.BUILDING)
    return obj


def _eroded(mask: np.ndarray, px: float) -> np.ndarray:
    k = max(1, round(px))
    return cv2.erode(mask.view(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)).view(bool)


def _inside(polygon: np.ndarray, pts: np.ndarray, margin: float = 0.0) -> np.ndarray:
    poly = polygon.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(poly, (float(p[0]), float(p[1])), True) >= margin for p in pts], bool)


def inner_points(rng: np.random.Generator, polygon: np.ndarray, count: int, margin: float) -> np.ndarray:
    """Up to ``count`` random points at least ``margin`` inside a polygon (vector test, so the
    layout does not depend on the raster resolution)."""
    lo, hi = polygon.min(axis=0), polygon.max(axis=0)
    cand = rng.uniform(lo, hi, (count * 4, 2))
    return cand[_inside(polygon, cand, margin)][:count]


def blob(rng: np.random.Generator, c: np.ndarray, radius: float, n: int = 24) -> np.ndarray:
    """A pond-like closed outline: a circle with smooth random radius."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = radius * (1 + 0.18 * np.sin(2 * t + rng.uniform(0, 6)) + 0.1 * np.sin(3 * t + rng.uniform(0, 6)))
    r *= np.exp(rng.normal(0, 0.04, n))
    return c + np.stack([r * np.cos(t), r * np.sin(t)], axis=1)


def circle_polygon(c: np.ndarray, r: float, n: int = 24) -> np.ndarray:
    """A regular n-gon approximating a circle (silos, tanks, heaps)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return c + r * np.stack([np.cos(t), np.sin(t)], axis=1)


# ----------------------------------------------------------------------------- parking and cars


class CarPaint:
    """Palette entries for car colours (a few per world, drawn from a common distribution)."""

    def __init__(self, canvas: Canvas, rng: np.random.Generator):
        self.pids = [canvas.entry(Material.CAR, vary(rng, c, 0.04, 0.05)) for c in CAR_COLOURS]
        self.weights = np.array([3, 3, 3, 2, 3, 2, 1.2, 1.2, 0.6, 0.4, 0.5, 0.8])
        self.weights /= self.weights.sum()
        self.rng = rng

    def pick(self) -> int:
        return self.pids[int(self.rng.choice(len(self.pids), p=self.weights))]


def draw_car(canvas: Canvas, paint: CarPaint, c, u, length: float = 4.5, width: float = 1.8, height: float = 1.5):
    """A car as a ~1.5 m box with darker windscreen and rear window bands."""
    rng = paint.rng
    u = np.asarray(u, float) / np.hypot(*u)
    pid = paint.pick()
    canvas.fill(rect(c, u, length, width), pid, height * 0.85, TEX_ONE)
    canvas.fill(rect(np.asarray(c) - u * 0.1 * length, u, length * 0.5, width * 0.86), pid, height, TEX_ONE + 6)
    glass = 0.55 if rng.random() < 0.8 else 0.75
    canvas.fill(
        rect(np.asarray(c) + u * 0.2 * length, u, length * 0.14, width * 0.8), pid, height * 0.95, int(TEX_ONE * glass)
    )
    canvas.fill(
        rect(np.asarray(c) - u * 0.37 * length, u, length * 0.1, width * 0.8), pid, height * 0.9, int(TEX_ONE * 0.7)
    )


def draw_parking(
    canvas: Canvas,
    plan: Plan,
    rng: np.random.Generator,
    paint: CarPaint,
    c,
    u,
    length: float,
    depth: float,
    pids: dict[str, int],
    occupancy: float,
) -> int:
    """A parking lot (``length`` along u, ``depth`` across): double rows of 2.5 m bays on 6.5 m
    aisles, painted bay lines, and cars in a share ``occupancy`` of the bays. Returns cars drawn."""
    c, u = np.asarray(c, float), np.asarray(u, float) / np.hypot(*u)
    v = np.array([-u[1], u[0]])
    canvas.fill(rect(c, u, length, depth), pids["parking"])
    plan.mark_poly(rect(c, u, length, depth), Plan.PAVED)
    # Across the depth, units of bay (5 m) | aisle (6.5 m) | bay (5 m), back to back.
    unit = 16.5
    n_units = max(1, int((depth - 1.0) // unit))
    bay_w = 2.6
    n_bays = int((length - 2) // bay_w)
    u0 = -(n_bays * bay_w) / 2
    cars = 0
    for k in range(n_units):
        for row_off in (2.5, 14.0):
            row_c = -(n_units * unit) / 2 + k * unit + row_off
            for i in range(n_bays + 1):
                p = c + u * (u0 + i * bay_w) + v * row_c
                canvas.line(np.array([p - v * 2.4, p + v * 2.4]), 0.15, pids["marking"])
            for i in range(n_bays):
                if rng.random() >= occupancy:
                    continue
                p = c + u * (u0 + (i + 0.5) * bay_w + rng.normal(0, 0.12)) + v * (row_c + rng.normal(0, 0.15))
                heading = v if rng.random() < 0.5 else -v
                draw_car(canvas, paint, p, heading, rng.uniform(4.2, 4.9), rng.uniform(1.75, 1.9))
                cars += 1
    return cars


# ----------------------------------------------------------------------------- trees


def scatter_points(
    rng: np.random.Generator, plan: Plan, count: int, allowed: np.ndarray, clearance_px: np.ndarray | None = None
) -> np.ndarray:
    """Random local points on plan cells where ``allowed`` (bool plan-grid mask)."""
    rr, cc = np.nonzero(allowed)
    if not len(rr) or count <= 0:
        return np.zeros((0, 2))
    pick = rng.integers(0, len(rr), count)
    jitter = rng.uniform(-0.5, 0.5, (count, 2)) * plan.res
    return plan.to_local(rr[pick], cc[pick]) + jitter


def thin(points: np.ndarray, radius: np.ndarray, factor: float = 0.8) -> np.ndarray:
    """Greedy Poisson-disc thinning: keep points whose crowns overlap earlier ones by at most
    (1 - factor). Returns the kept indices."""
    cell = max(float(radius.max()) * 2, 1.0) if len(radius) else 1.0
    grid: dict[tuple[int, int], list[int]] = {}
    keep = []
    for i, (p, r) in enumerate(zip(points, radius)):
        gx, gy = int(p[0] // cell), int(p[1] // cell)
        ok = True
        for x in (gx - 1, gx, gx + 1):
            for y in (gy - 1, gy, gy + 1):
                for j in grid.get((x, y), ()):
                    if (points[j, 0] - p[0]) ** 2 + (points[j, 1] - p[1]) ** 2 < (factor * (r + radius[j])) ** 2:
                        ok = False
                        break
                if not ok:
                    break
            if not ok:
                break
        if ok:
            keep.append(i)
            grid.setdefault((gx, gy), []).append(i)
    return np.array(keep, np.int64)


@dataclass
class TreeKind:
    rgb: tuple[int, int, int]
    radius: tuple[float, float]
    height: tuple[float, float]
    cone: float = 0.0  # share of conifers
    conifer_rgb: tuple[int, int, int] = (40, 68, 45)


def plant(
    canvas: Canvas,
    rng: np.random.Generator,
    points: np.ndarray,
    kind: TreeKind,
    factor: float = 0.8,
    radius: np.ndarray | None = None,
    material: Material = Material.TREE,
) -> int:
    """Plant trees of a kind at candidate points (thinned so crowns do not merge too much)."""
    if not len(points):
        return 0
    r = rng.uniform(*kind.radius, len(points)) if radius is None else radius
    keep = thin(points, r, factor)
    points, r = points[keep], r[keep]
    cone = rng.random(len(points)) < kind.cone
    h = rng.uniform(*kind.height, len(points))
    if material == Material.TREE:
        h = np.where(cone, np.maximum(h, r * 1.2 + 1.5) * 1.25, np.maximum(h, r * 1.2 + 1.5))
    pids = []
    for (x, y), ri, hi, ci in zip(points, r, h, cone):
        rgb = vary(rng, kind.conifer_rgb if ci else kind.rgb, 0.07, 0.1)
        pids.append(canvas.tree_entry(rgb, x, y, ri, hi, material))
    canvas.stamp_trees(points, r, h, pids, cone)
    return len(points)


def clearance_px(plan: Plan, bits: int) -> np.ndarray:
    """Distance (plan pixels) from each free plan cell to the nearest cell holding ``bits``."""
    free = ((plan.occ & bits) == 0).astype(np.uint8)
    return cv2.distanceTransform(free, cv2.DIST_L2, 3)
