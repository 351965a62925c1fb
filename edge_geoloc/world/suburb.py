"""Suburb: curvy collector roads, side streets grown off them (loops and cul-de-sacs), detached
houses with gable or hip roofs along the streets, driveways, gardens with pools and sheds, a
shopping strip with its parking lot, and many trees."""

from __future__ import annotations

import numpy as np

from edge_geoloc.world.canvas import Plan, vary
from edge_geoloc.world.roads import RoadBuilder, RoadSpec, StreetGrower, crossing_curve, rect
from edge_geoloc.world.scene import Material
from edge_geoloc.world.structures import (
    draw_car,
    draw_flat,
    draw_parking,
    draw_pitched,
    l_shape,
    rect_shape,
)
from edge_geoloc.world.styles import (
    ROOF_FLAT,
    ROOF_PITCHED,
    Ctx,
    base_palette,
    draw_roads,
    edge_frames,
    look,
    scatter_trees,
    street_trees,
    tree_kind,
)

_BLOCKED = Plan.STREET | Plan.BUILDING | Plan.WATER | Plan.PAVED | Plan.RESERVED


def dead_end_bulbs(ctx: Ctx, inset_m: float = 15.0) -> list[np.ndarray]:
    """Cul-de-sac turning circles at dead ends that are not where a road leaves the world."""
    assert ctx.streets is not None
    net = ctx.streets.network
    deg = ctx.streets.degree()
    out = []
    for n in np.nonzero(deg == 1)[0]:
        p = net.nodes[n]
        if np.all(p > inset_m) and np.all(p < ctx.size - inset_m):
            out.append(p)
    return out


def build_streets(ctx: Ctx) -> None:
    rng, size = ctx.rng, ctx.size
    collector = RoadSpec(
        width_m=round(float(rng.uniform(8.5, 10.5)), 1), kind=0, sidewalk_m=1.8, verge_m=2.5, crosswalks=True
    )
    residential = RoadSpec(
        width_m=round(float(rng.uniform(6.0, 7.5)), 1),
        kind=1,
        sidewalk_m=1.5,
        verge_m=float(rng.choice([0.0, 1.5, 2.5])),
        centre_line=False,
    )
    builder = RoadBuilder()
    grower = StreetGrower(rng, size, clearance_m=float(rng.uniform(50, 60)))
    base = rng.uniform(0, 180)
    angles = [base, base + 90 + rng.normal(0, 15)]
    if size >= 600 and rng.random() < 0.6:
        angles.append(base + 45 + rng.normal(0, 10))
    for ang in angles:
        through = size / 2 + rng.uniform(-0.2, 0.2, 2) * size
        pts = crossing_curve(rng, size, ang, wiggle_m=0.07 * size, n_ctrl=5, through=through)
        builder.add(pts, collector)
        grower.add_road(pts)
    for _ in range(int(500 * (size / 1000) ** 2) + 30):
        pts = grower.grow(curvature_deg=5.0, max_len_m=float(rng.uniform(120, 350)), min_len_m=45, p_join=0.5)
        if pts is not None:
            builder.add(pts, residential)
    ctx.streets = builder.build(size)
    ctx.bulbs = dead_end_bulbs(ctx)


def shopping(
    ctx: Ctx,
    count: int,
    front_m: tuple[float, float] = (70, 110),
    rows: tuple[int, int] = (1, 3),
    near: tuple[np.ndarray, float] | None = None,
) -> None:
    """Shops (or a village hall) with a parking lot in front, along main roads."""
    rng, plan = ctx.rng, ctx.plan
    frames = list(edge_frames(ctx, 12.0, kinds=(0,)))
    if near is not None:
        frames = [f for f in frames if np.hypot(*(f[0] - near[0])) <= near[1]]
    if not frames:
        return
    placed = 0
    for i in rng.permutation(len(frames)):
        if placed >= count:
            break
        p, u, corridor, _ = frames[int(i)]
        side = 1 if rng.random() < 0.5 else -1
        n = side * np.array([u[1], -u[0]])
        front, lot_depth = rng.uniform(*front_m), 16.5 * int(rng.integers(*rows)) + 2
        store_depth = rng.uniform(0.25, 0.4) * front
        depth = lot_depth + store_depth + 4
        c = p + n * (corridor / 2 + 3 + depth / 2)
        site = rect(c, u, front, depth)
        if not plan.is_free(site, 3.0, _BLOCKED):
            continue
        plan.mark_poly(site, Plan.RESERVED)
        ctx.canvas.fill(site, ctx.pid["driveway"])
        lot_c = p + n * (corridor / 2 + 3 + lot_depth / 2)
        draw_parking(ctx.canvas, plan, rng, ctx.paint, lot_c, u, front - 4, lot_depth, ctx.pid, rng.uniform(0.3, 0.8))
        store_c = p + n * (corridor / 2 + 3 + lot_depth + 2 + store_depth / 2)
        store = rect(store_c, u, front * rng.uniform(0.6, 0.9), store_depth)
        draw_flat(ctx.canvas, plan, rng, store, rng.uniform(5, 8), look(rng, ROOF_FLAT, (4, 5), (0, 6)), u, hvac=4)
        placed += 1


def houses(ctx: Ctx, near: tuple[np.ndarray, float] | None = None, kinds=(0, 1)) -> int:
    """Detached houses along the streets, with driveways, parked cars, pools and sheds.

    ``near``: (point, radius) to build only around a village centre."""
    rng, plan, canvas = ctx.rng, ctx.plan, ctx.canvas
    roof_pal = [vary(rng, ROOF_PITCHED[int(rng.integers(len(ROOF_PITCHED)))], 0.04) for _ in range(4)]
    count = 0
    for p, u, corridor, kind in edge_frames(ctx, 3.0, kinds=kinds):
        if near is not None and np.hypot(*(p - near[0])) > near[1]:
            continue
        if kind == 0 and near is None and rng.random() < 0.5:
            continue
        for side in (-1, 1) if rng.random() < 0.5 else (1, -1):
            n = side * np.array([u[1], -u[0]])
            length, width = rng.uniform(10, 17), rng.uniform(8, 11)
            setback = rng.uniform(5, 9)
            along = rng.random() < 0.8
            if along:
                axis, half_depth = u, width / 2
            else:
                axis, half_depth = n, length / 2
            c = p + n * (corridor / 2 + setback + half_depth)
            v = np.array([-axis[1], axis[0]])
            if rng.random() < 0.35:
                end = 1 if rng.random() < 0.5 else -1
                back = -1 if (n @ v) < 0 else 1  # the wing goes away from the street
                shape = l_shape(
                    c, axis, length, width, rng.uniform(4, 8), rng.uniform(5, 7), end, back if along else end
                )
            else:
                shape = rect_shape(c, axis, length, width)
            if not plan.is_free(shape.polygon, 3.5, _BLOCKED | Plan.GREEN):
                continue
            if near is not None:
                # Out in the country the house gets a garden cut out of the field around it.
                lot_depth = setback + 2 * half_depth + rng.uniform(8, 15)
                lot = rect(p + n * (corridor / 2 + lot_depth / 2), u, (length if along else width) + 8, lot_depth)
                canvas.fill(lot, ctx.pid["lawn"])
            bl = look(rng, ROOF_PITCHED, (2.7, 3.1), (2.5, 4.0))
            bl.roof_rgb = vary(rng, roof_pal[int(rng.integers(len(roof_pal)))], 0.03, 0.05)
            eave = 3.0 * int(rng.integers(1, 3)) + rng.uniform(0.3, 0.8)
            draw_pitched(
                canvas, plan, rng, shape, eave, rng.uniform(25, 42), rng.random() < 0.35, bl, rng.random() < 0.15
            )
            count += 1
            # Driveway from the street to the house front, maybe with a car on it.
            lat = (1 if rng.random() < 0.5 else -1) * (length / 2 - 2.0 if along else width / 2 + 2.0)
            start = p + u * lat + n * corridor / 2
            dw = rect(start + n * setback / 2, n, setback, 3.0)
            if plan.is_free(dw, 0.0, Plan.BUILDING | Plan.RESERVED | Plan.WATER):
                canvas.fill(dw, ctx.pid["driveway"])
                plan.mark_poly(dw, Plan.PAVED)
                if rng.random() < 0.45 and setback > 5.5:
                    draw_car(canvas, ctx.paint, start + n * setback * 0.55, n if rng.random() < 0.5 else -n)
            # Back garden: a pool or a shed.
            back = c + n * (half_depth + rng.uniform(5, 8))
            r = rng.random()
            if r < 0.12:
                pool = rect(back, u, rng.uniform(7, 10), rng.uniform(3.5, 5))
                deck = rect(back, u, 11.0, 7.0)
                if plan.is_free(deck, 1.0, _BLOCKED):
                    canvas.fill(deck, ctx.pid["plaza"])
                    canvas.fill(pool, ctx.pid["pool"])
                    plan.mark_poly(deck, Plan.PAVED)
            elif r < 0.35:
                shed = rect_shape(back + u * rng.uniform(-4, 4), u, rng.uniform(2.5, 4), rng.uniform(2, 3))
                if plan.is_free(shed.polygon, 1.0, _BLOCKED):
                    sl = look(rng, ROOF_PITCHED, (2.4, 2.6), (0, 0))
                    draw_pitched(canvas, plan, rng, shed, 2.2, rng.uniform(15, 25), False, sl)
    return count


def generate(ctx: Ctx) -> None:
    rng = ctx.rng
    base_palette(ctx, Material.GRASS, (90, 125, 60))
    build_streets(ctx)
    draw_roads(ctx)
    shopping(ctx, max(1, round(2 * (ctx.size / 1000) ** 2)) if rng.random() < 0.8 else 0)
    houses(ctx)
    street_trees(ctx, tree_kind(rng, (2.0, 3.5), (6, 11)), (9, 16), 0.6)
    free = ctx.plan.free_mask(_BLOCKED)
    scatter_trees(ctx, tree_kind(rng, (2.0, 5.0), (6, 15), cone=0.15), rng.uniform(18, 35), free, _BLOCKED)
    shrub = tree_kind(rng, (0.7, 1.4), (0.8, 1.8))
    scatter_trees(ctx, shrub, rng.uniform(25, 50), free, _BLOCKED, 1.0, Material.SHRUB)
