"""Block-based styles. Downtown: a warped, rotated grid with avenues and a diagonal, blocks
filled edge to edge with buildings whose heights peak around a business centre, courtyards,
plazas, parks and surface car parks, street trees. Industrial: a wide-road grid with a curved
arterial and service cul-de-sacs, blocks split into plots, each with a large flat-roofed hall
(skylights, HVAC boxes, solar panels), a parking lot and a storage yard (containers, trailers,
heaps, tanks)."""

from __future__ import annotations

import cv2
import numpy as np

from edge_geoloc.world.canvas import TEX_ONE, Plan, vary
from edge_geoloc.world.roads import RoadBuilder, RoadSpec, StreetGrower, crossing_curve, perturbed_grid, rect
from edge_geoloc.world.scene import Material
from edge_geoloc.world.structures import (
    BuildingLook,
    blob,
    circle_polygon,
    draw_car,
    draw_flat,
    draw_hip_any,
    draw_parking,
    inner_points,
    plant,
)
from edge_geoloc.world.styles import (
    ROOF_FLAT,
    ROOF_METAL,
    Ctx,
    base_palette,
    components,
    draw_roads,
    frame_coords,
    inner_rect,
    look,
    mask_polygon,
    offset_polygon,
    principal_axis,
    scatter_trees,
    street_trees,
    tree_kind,
)
from edge_geoloc.world.suburb import dead_end_bulbs

_KERNEL3 = np.ones((3, 3), np.uint8)


def _grid_streets(ctx: Ctx, spacing, drop: float, main: RoadSpec, street: RoadSpec, diagonal: float, curve: float):
    rng, size = ctx.rng, ctx.size
    angle = float(rng.uniform(0, 90))
    builder = RoadBuilder()
    lines = perturbed_grid(rng, size, spacing, angle, float(rng.uniform(5, 22)), drop, 3, main, street)
    for pts, spec in lines:
        builder.add(pts, spec)
    through = size / 2 + rng.uniform(-0.2, 0.2, 2) * size
    if rng.random() < diagonal:
        builder.add(crossing_curve(rng, size, angle + 45 + rng.normal(0, 8), 0.01 * size, 3, through), main)
    if rng.random() < curve:
        builder.add(crossing_curve(rng, size, angle + rng.uniform(20, 70), 0.12 * size, 5, through), main)
    return builder, lines


# ----------------------------------------------------------------------------- downtown


def downtown(ctx: Ctx) -> None:
    rng, plan, size = ctx.rng, ctx.plan, ctx.size
    base_palette(ctx, Material.PLAZA, (172, 165, 152))
    main = RoadSpec(round(float(rng.uniform(16, 22)), 1), 0, float(rng.uniform(4, 5.5)), lanes=4, crosswalks=True)
    street = RoadSpec(round(float(rng.uniform(9, 12)), 1), 1, float(rng.uniform(3, 4.5)), crosswalks=True)
    builder, _ = _grid_streets(ctx, (70.0, 120.0), 0.06, main, street, 0.75, 0.35)
    ctx.streets = builder.build(size)
    draw_roads(ctx)
    cbd = size / 2 + rng.normal(0, 0.12 * size, 2)
    blocks = list(components(plan.free_mask(Plan.STREET), int(60 / plan.res**2)))
    for piece, origin in blocks:
        _downtown_block(ctx, piece, origin, cbd)
    green = ((plan.occ & Plan.GREEN) != 0) & plan.free_mask(Plan.STREET | Plan.BUILDING | Plan.WATER | Plan.PAVED)
    scatter_trees(ctx, tree_kind(rng, (2.5, 5.0), (7, 16)), rng.uniform(50, 90), green, Plan.STREET | Plan.BUILDING)
    street_trees(ctx, tree_kind(rng, (1.8, 3.0), (6, 10)), (8, 14), 0.55)


def _downtown_block(ctx: Ctx, piece: np.ndarray, origin: tuple[int, int], cbd: np.ndarray) -> None:
    rng, plan = ctx.rng, ctx.plan
    poly = mask_polygon(plan, piece, origin)
    if poly is None:
        return
    poly = offset_polygon(poly, plan.res / 2)
    area = float(piece.sum()) * plan.res**2
    u = principal_axis(poly)
    r = rng.random()
    if area > 2500 and r < 0.06:
        _plaza(ctx, poly, u, area)
    elif area > 2500 and r < 0.13:
        _park(ctx, poly, piece, area)
    elif area > 1200 and r < 0.18 and _parking_block(ctx, piece, origin, u):
        return
    else:
        _building_block(ctx, piece, origin, u, cbd)


def _parking_block(ctx: Ctx, piece: np.ndarray, origin, u: np.ndarray) -> bool:
    """A surface car park filling the block, if a large enough rectangle fits."""
    plan = ctx.plan
    a, b = frame_coords(piece, origin, plan, u)
    fit = inner_rect(_erode_m(piece, 1.5, plan.res), a, b, u)
    if fit is None or fit[2] <= 18 or fit[1] <= 18:
        return False
    draw_parking(ctx.canvas, plan, ctx.rng, ctx.paint, fit[0], u, fit[1], fit[2], ctx.pid, ctx.rng.uniform(0.4, 0.95))
    return True


def _erode_m(mask: np.ndarray, metres: float, res: float) -> np.ndarray:
    """A boolean mask shrunk by about ``metres``."""
    k = max(1, round(metres / res))
    return cv2.erode(mask.view(np.uint8), _KERNEL3, iterations=k).view(bool)


def _building_block(ctx: Ctx, piece: np.ndarray, origin, u: np.ndarray, cbd: np.ndarray) -> None:
    rng, plan, size = ctx.rng, ctx.plan, ctx.size
    m = _erode_m(piece, 0.5, plan.res).view(np.uint8)
    dist = cv2.distanceTransform(np.pad(m, 1), cv2.DIST_L2, 3)[1:-1, 1:-1] * plan.res
    depth = rng.uniform(14, 26)
    inside = m.view(bool)
    ring = inside & (dist <= depth) if dist.max() > depth * 1.25 else inside
    a, b = frame_coords(piece, origin, plan, u)
    lab = np.full(piece.shape, -1, np.int64)
    cuts = []
    for coord in (a, b):
        lo, hi = (
            float(coord[inside].min()) if inside.any() else 0.0,
            float(coord[inside].max()) if inside.any() else 0.0,
        )
        c = [lo + rng.uniform(8, 30)]
        while c[-1] < hi:
            c.append(c[-1] + rng.uniform(12, 36))
        cuts.append(np.array(c))
    lab[ring] = np.searchsorted(cuts[0], a[ring]) * 4096 + np.searchsorted(cuts[1], b[ring])
    # Lots: the cells of the cut grid within the ring (connected pieces of each cell).
    labels = lab[ring]
    rr, cc = np.nonzero(ring)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    for idx in np.split(order, bounds):
        r0, r1, c0, c1 = rr[idx].min(), rr[idx].max() + 1, cc[idx].min(), cc[idx].max() + 1
        cell = lab[r0:r1, c0:c1] == labels[idx[0]]
        for comp, o2 in components(cell, int(40 / plan.res**2)):
            sub_origin = (origin[0] + r0 + o2[0], origin[1] + c0 + o2[1])
            bpoly = mask_polygon(plan, comp, sub_origin, 1.2)
            if bpoly is None:
                continue
            bpoly = offset_polygon(bpoly, plan.res / 2)
            _downtown_building(ctx, bpoly, float(comp.sum()) * plan.res**2, u, cbd, size)
    court = inside & ~ring
    for comp, o2 in components(court, int(30 / plan.res**2)):
        cpoly = mask_polygon(plan, comp, (origin[0] + o2[0], origin[1] + o2[1]))
        if cpoly is None:
            continue
        kind = rng.random()
        if kind < 0.45:
            ctx.canvas.fill(cpoly, ctx.pid["lawn"])
            plan.mark_poly(cpoly, Plan.GREEN)
        elif kind < 0.7:
            ctx.canvas.fill(cpoly, ctx.pid["parking"])
            plan.mark_poly(cpoly, Plan.PAVED)
            for p in inner_points(rng, cpoly, int(rng.integers(0, 6)), 3.0):
                draw_car(ctx.canvas, ctx.paint, p, u if rng.random() < 0.5 else np.array([-u[1], u[0]]))


def _downtown_building(ctx: Ctx, poly: np.ndarray, area: float, u: np.ndarray, cbd: np.ndarray, size: float) -> None:
    rng, canvas, plan = ctx.rng, ctx.canvas, ctx.plan
    d = float(np.hypot(*(poly.mean(axis=0) - cbd)))
    f = np.exp(-((d / (0.3 * size)) ** 2))
    h = (12 + 45 * f) * np.exp(rng.normal(0, 0.45))
    h = float(np.clip(min(h, 7 * np.sqrt(area)), 7, 220))
    bl = look(rng, ROOF_FLAT, (3.2, 4.2), (1.4, 3.0))
    if h > 40 and rng.random() < 0.5:
        bl.facade = vary(rng, ((70, 95, 115), (95, 120, 125), (60, 70, 85))[int(rng.integers(3))], 0.06)
    h = max(2, round(h / bl.floor_m)) * bl.floor_m
    if h < 24 and rng.random() < 0.25:
        bl.roof_rgb = vary(rng, ((92, 96, 104), (150, 80, 60), (75, 78, 85))[int(rng.integers(3))], 0.05, 0.06)
        draw_hip_any(canvas, plan, rng, poly, h, rng.uniform(35, 55), rng.uniform(2.5, 4.5), bl)
        return
    tower = area > 900 and h > 45 and rng.random() < 0.6
    podium = float(rng.uniform(12, 24)) if tower else h
    obj = draw_flat(
        canvas,
        plan,
        rng,
        poly,
        podium,
        bl,
        u,
        hvac=int(area // 250) + int(rng.integers(0, 3)),
        penthouse=(not tower) and h > 30 and rng.random() < 0.6,
        solar=rng.random() < 0.05,
    )
    if tower and obj:
        inset = offset_polygon(poly, -float(rng.uniform(4, 9)))
        if _valid_inset(poly, inset):
            tl = BuildingLook(vary(rng, bl.roof_rgb, 0.05, 0.08), bl.facade, bl.window, bl.floor_m, bl.window_spacing_m)
            draw_flat(canvas, plan, rng, inset, h, tl, u, hvac=2, penthouse=rng.random() < 0.5, into=obj)


def _valid_inset(poly: np.ndarray, inset: np.ndarray) -> bool:
    """An inward offset is usable if it kept its orientation, a fair area and lies inside."""

    def area(p: np.ndarray) -> float:
        return 0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))

    a0, a1 = area(poly), area(inset)
    if a0 == 0 or a1 / a0 < 0.2:
        return False
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    return all(cv2.pointPolygonTest(contour, (float(x), float(y)), False) > 0 for x, y in inset)


def _plaza(ctx: Ctx, poly: np.ndarray, u: np.ndarray, area: float) -> None:
    """Paved square: tile joints, rows of trees, a fountain."""
    rng, canvas = ctx.rng, ctx.canvas
    win = canvas.window(poly)
    if win is None:
        return
    mask = canvas.poly_mask(poly, win)
    x, y = canvas.centres(win)
    a = x * np.float32(u[0]) + y * np.float32(u[1])
    b = y * np.float32(u[0]) - x * np.float32(u[1])
    tile = np.float32(rng.uniform(1.5, 4.0))
    joint = (np.mod(a, tile) < 0.2) | (np.mod(b, tile) < 0.2)
    pid = canvas.entry(Material.PLAZA, vary(ctx.rng, (185, 175, 160), 0.06, 0.06))
    canvas.put(win, mask, pid, np.float32(0), np.where(joint, TEX_ONE - 22, TEX_ONE).astype(np.uint8))
    ctx.plan.mark_poly(poly, Plan.PAVED)
    c = poly.mean(axis=0)
    if area > 4000:
        r = rng.uniform(4, 7)
        canvas.circle(c, r + 1.0, ctx.pid["sidewalk"])
        canvas.circle(c, r, ctx.pid["pool"])
    v = np.array([-u[1], u[0]])
    step = rng.uniform(8, 12)
    grid = [c + i * step * u + j * step * v for i in range(-12, 13) for j in range(-12, 13) if abs(i) + abs(j) > 1]
    pts = np.array(grid)
    contour = poly.astype(np.float32).reshape(-1, 1, 2)
    ok = np.array([cv2.pointPolygonTest(contour, (float(p[0]), float(p[1])), True) > 4.0 for p in pts])
    plant(canvas, rng, pts[ok], tree_kind(rng, (2.5, 3.5), (7, 11)), 0.5)


def _park(ctx: Ctx, poly: np.ndarray, piece: np.ndarray, area: float) -> None:
    """Lawn with footpaths and maybe a pond; trees are scattered on it later."""
    rng, canvas, plan = ctx.rng, ctx.canvas, ctx.plan
    canvas.fill(poly, ctx.pid["lawn"])
    plan.mark_poly(poly, Plan.GREEN)
    c = poly.mean(axis=0)
    for k in rng.choice(len(poly), size=min(3, len(poly)), replace=False):
        canvas.line(np.array([c, poly[k]]), 2.5, ctx.pid["sidewalk"])
        plan.mark_line(np.array([c, poly[k]]), 2.5, Plan.PAVED)
    if rng.random() < 0.5 and area > 5000:
        pond = blob(rng, c + rng.normal(0, 5, 2), rng.uniform(8, 0.25 * np.sqrt(area)))
        canvas.fill(pond, ctx.pid["water"])
        plan.mark_poly(pond, Plan.WATER)


# ----------------------------------------------------------------------------- industrial


CONTAINER_COLOURS = ((170, 50, 40), (40, 80, 140), (60, 120, 70), (200, 120, 40), (120, 120, 125), (210, 200, 190))


def industrial(ctx: Ctx) -> None:
    rng, plan, size = ctx.rng, ctx.plan, ctx.size
    base_palette(ctx, Material.GRASS, (120, 128, 80))
    main = RoadSpec(round(float(rng.uniform(16, 20)), 1), 0, 2.5, lanes=4, crosswalks=True)
    street = RoadSpec(round(float(rng.uniform(11, 13)), 1), 1, 2.0)
    service = RoadSpec(8.0, 1, 1.5)
    builder, lines = _grid_streets(ctx, (160.0, 260.0), 0.12, main, street, 0.3, 0.6)
    grower = StreetGrower(rng, size, clearance_m=80.0)
    for pts, _ in lines:
        grower.add_road(pts)
    for _ in range(int(25 * (size / 1000) ** 2) + 2):
        pts = grower.grow(1.5, float(rng.uniform(80, 200)), 60.0, 0.3)
        if pts is not None:
            builder.add(pts, service)
    ctx.streets = builder.build(size)
    ctx.bulbs = dead_end_bulbs(ctx)
    draw_roads(ctx)
    for piece, origin in list(components(plan.free_mask(Plan.STREET), int(200 / plan.res**2))):
        _industrial_block(ctx, piece, origin)
    free = plan.free_mask(Plan.STREET | Plan.BUILDING | Plan.PAVED | Plan.WATER | Plan.RESERVED)
    scatter_trees(ctx, tree_kind(rng, (2.0, 4.5), (6, 13)), rng.uniform(4, 12), free, Plan.STREET | Plan.BUILDING)
    street_trees(ctx, tree_kind(rng, (1.8, 3.0), (6, 10)), (10, 18), 0.3)


def _industrial_block(ctx: Ctx, piece: np.ndarray, origin) -> None:
    rng, plan = ctx.rng, ctx.plan
    poly = mask_polygon(plan, piece, origin)
    if poly is None:
        return
    u = principal_axis(poly)
    a, b = frame_coords(piece, origin, plan, u)
    inside = piece
    cuts = []
    for coord, span in ((a, (60, 130)), (b, (50, 110))):
        lo, hi = float(coord[inside].min()), float(coord[inside].max())
        c = [lo + rng.uniform(*span)]
        while c[-1] < hi - span[0] * 0.5:
            c.append(c[-1] + rng.uniform(*span))
        cuts.append(np.array(c[:-1] if len(c) > 1 and c[-1] > hi else c))
    gap = 1.5  # fence strips between plots
    sep = np.zeros(piece.shape, bool)
    for coord, c in zip((a, b), cuts):
        for pos in c:
            sep |= np.abs(coord - np.float32(pos)) < gap
    plots = inside & ~sep
    for comp, o2 in components(plots, int(800 / plan.res**2)):
        sub_origin = (origin[0] + o2[0], origin[1] + o2[1])
        pa, pb = frame_coords(comp, sub_origin, plan, u)
        _plot(ctx, comp, sub_origin, pa, pb, u)


def _plot(ctx: Ctx, comp: np.ndarray, origin, a: np.ndarray, b: np.ndarray, u: np.ndarray) -> None:
    rng, canvas, plan = ctx.rng, ctx.canvas, ctx.plan
    poly = mask_polygon(plan, comp, origin)
    if poly is None:
        return
    if rng.random() < 0.75:
        yard = canvas.entry(Material.PARKING, vary(rng, (150, 148, 142), 0.05, 0.08))
        canvas.fill(poly, yard)
        plan.mark_poly(poly, Plan.PAVED)
    else:
        plan.mark_poly(poly, Plan.RESERVED)
    fit = inner_rect(_erode_m(comp, float(rng.uniform(3, 8)), plan.res), a, b, u)
    if fit is None or min(fit[1], fit[2]) < 20:
        return
    centre, length, width = fit
    v = np.array([-u[1], u[0]])
    # Split the depth (across u): parking strip, hall, storage yard.
    strips = []
    rest = width
    park = 16.5 * int(rng.integers(1, 3)) + 1 if width > 55 and rng.random() < 0.8 else 0.0
    rest -= park
    yard = float(rng.uniform(15, 30)) if rest > 50 and rng.random() < 0.7 else 0.0
    rest -= yard
    order = [("park", park), ("hall", rest), ("yard", yard)]
    if rng.random() < 0.5:
        order = order[::-1]
    pos = -width / 2
    for name, w in order:
        if w > 0:
            strips.append((name, centre + v * (pos + w / 2), w))
            pos += w
    for name, c, w in strips:
        if name == "hall":
            _hall(ctx, c, u, length * rng.uniform(0.7, 1.0), w - 2.0)
        elif name == "park":
            draw_parking(canvas, plan, rng, ctx.paint, c, u, length, w, ctx.pid, rng.uniform(0.3, 0.9))
        else:
            _storage(ctx, c, u, length, w)


def _hall(ctx: Ctx, c: np.ndarray, u: np.ndarray, length: float, width: float) -> None:
    rng = ctx.rng
    poly = rect(c, u, length, width)
    if rng.random() < 0.3 and length > 50:
        # L-shaped hall: cut one corner away.
        v = np.array([-u[1], u[0]])
        cl, cw = length * rng.uniform(0.3, 0.5), width * rng.uniform(0.3, 0.5)
        su, sv = (1 if rng.random() < 0.5 else -1), (1 if rng.random() < 0.5 else -1)
        hl, hw = length / 2, width / 2
        pts = [(-hl, -hw), (hl, -hw), (hl, hw - cw), (hl - cl, hw - cw), (hl - cl, hw), (-hl, hw)]
        pts = [(x * su, y * sv) for x, y in pts]
        if su * sv < 0:
            pts = pts[::-1]
        poly = np.array([c + x * u + y * v for x, y in pts])
    bl = look(rng, ROOF_METAL, (4.5, 6.0), (0.0, 8.0))
    area = length * width
    draw_flat(
        ctx.canvas,
        ctx.plan,
        rng,
        poly,
        float(rng.uniform(7, 15)),
        bl,
        u,
        parapet=rng.random() < 0.6,
        hvac=int(area // 600) + 1,
        skylights=rng.random() < 0.5,
        solar=rng.random() < 0.2,
    )


def _storage(ctx: Ctx, c: np.ndarray, u: np.ndarray, length: float, width: float) -> None:
    """A gravel or concrete yard with containers, trailers, heaps or tanks."""
    rng, canvas, plan = ctx.rng, ctx.canvas, ctx.plan
    canvas.fill(rect(c, u, length, width), ctx.pid["gravel" if rng.random() < 0.6 else "driveway"])
    v = np.array([-u[1], u[0]])
    kind = rng.random()
    if kind < 0.4:  # containers in rows, stacked
        rows = int((width - 4) // 4.0)
        for i in range(rows):
            n = int((length - 4) // 13.0)
            for j in range(n):
                if rng.random() < 0.25:
                    continue
                p = c + u * (-length / 2 + 2 + 13.0 * (j + 0.5)) + v * (-width / 2 + 2 + 4.0 * (i + 0.5))
                colour = vary(rng, CONTAINER_COLOURS[int(rng.integers(len(CONTAINER_COLOURS)))], 0.05, 0.05)
                bl = BuildingLook(colour, colour, colour, 2.6, 0.0)
                stack = 2.6 * int(rng.integers(1, 4))
                draw_flat(canvas, plan, rng, rect(p, u, 12.2, 2.44), stack, bl, u, parapet=False)
    elif kind < 0.65:  # trailers in a row
        n = int((length - 4) // 3.6)
        for j in range(n):
            if rng.random() < 0.3:
                continue
            p = c + u * (-length / 2 + 2 + 3.6 * (j + 0.5))
            draw_car(canvas, ctx.paint, p, v if rng.random() < 0.5 else -v, min(13.6, width - 3), 2.5, 3.8)
    elif kind < 0.85:  # heaps of sand, gravel or scrap
        for _ in range(int(rng.integers(1, 4))):
            p = c + u * rng.uniform(-length / 3, length / 3) + v * rng.uniform(-width / 4, width / 4)
            r = min(width / 3, rng.uniform(4, 9))
            heap = BuildingLook(vary(rng, (150, 130, 100), 0.1, 0.1), (0, 0, 0), (0, 0, 0), 3.0, 0.0)
            draw_hip_any(canvas, plan, rng, circle_polygon(p, r), 0.0, 35, r, heap, Material.SOIL, building=False)
    else:  # storage tanks
        r = min(width / 2 - 2, rng.uniform(5, 10))
        if r < 3:
            return
        n = max(1, int(length // (2 * r + 4)))
        for j in range(min(n, 4)):
            p = c + u * (-length / 2 + (2 * r + 4) * (j + 0.5))
            tank = BuildingLook(vary(rng, (215, 215, 210), 0.03, 0.05), (210, 210, 205), (210, 210, 205), 3.0, 0.0)
            draw_hip_any(canvas, plan, rng, circle_polygon(p, r), float(rng.uniform(8, 15)), 12, 1.5, tank)
