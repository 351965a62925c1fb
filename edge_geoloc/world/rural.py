"""Rural: a patchwork of fields (crop rows, tramlines, ploughed furrows, pasture) split like a
cadastre, one or two winding main roads with farm tracks off them, farmsteads (house, barns,
silos, machinery in a gravel yard), forest patches, hedgerows, ponds and sometimes a river."""

from __future__ import annotations

import numpy as np

from edge_geoloc.world.canvas import TEX_ONE, Plan, vary
from edge_geoloc.world.roads import RoadBuilder, RoadSpec, StreetGrower, crossing_curve, rect, resample
from edge_geoloc.world.scene import Material
from edge_geoloc.world.structures import (
    BuildingLook,
    blob,
    circle_polygon,
    clearance_px,
    draw_car,
    draw_hip_any,
    draw_pitched,
    plant,
    rect_shape,
)
from edge_geoloc.world.styles import (
    ROOF_METAL,
    ROOF_PITCHED,
    Ctx,
    base_palette,
    draw_roads,
    edge_frames,
    look,
    plan_index,
    principal_axis,
    scatter_trees,
    tree_kind,
)
from edge_geoloc.world.suburb import houses, shopping

# (name, material, base RGB, stripe amplitude, stripe period range m, weight)
FIELD_KINDS = (
    ("crop", Material.FIELD, (98, 138, 58), 12, (2.0, 3.5), 0.28),
    ("wheat", Material.FIELD, (196, 176, 108), 10, (2.0, 3.0), 0.18),
    ("ploughed", Material.FIELD, (122, 96, 72), 22, (1.2, 2.0), 0.14),
    ("stubble", Material.FIELD, (182, 164, 120), 12, (2.5, 4.0), 0.1),
    ("rapeseed", Material.FIELD, (205, 196, 78), 8, (2.0, 3.0), 0.04),
    ("pasture", Material.GRASS, (104, 140, 66), 0, (3.0, 4.0), 0.26),
)
_BLOCKED = Plan.STREET | Plan.BUILDING | Plan.WATER | Plan.RESERVED | Plan.GREEN


def _area(p: np.ndarray) -> float:
    return 0.5 * float(np.sum(p[:, 0] * np.roll(p[:, 1], -1) - np.roll(p[:, 0], -1) * p[:, 1]))


def clip_halfplane(poly: np.ndarray, point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Sutherland-Hodgman: the part of a convex polygon where (x - point) . normal >= 0."""
    out = []
    d = (poly - point) @ normal
    for i in range(len(poly)):
        j = (i + 1) % len(poly)
        if d[i] >= 0:
            out.append(poly[i])
        if (d[i] >= 0) != (d[j] >= 0):
            t = d[i] / (d[i] - d[j])
            out.append(poly[i] + t * (poly[j] - poly[i]))
    return np.array(out) if len(out) >= 3 else np.zeros((0, 2))


def split_fields(rng: np.random.Generator, size: float, grid_deg: float) -> list[np.ndarray]:
    """Recursive cuts of the (slightly enlarged) square into convex field parcels, cut mostly
    across their long side and along a regional field orientation, as cadastres look."""
    m = 20.0
    stack = [np.array([[-m, -m], [size + m, -m], [size + m, size + m], [-m, size + m]], float)]
    out = []
    g = np.radians(grid_deg)
    axes = [np.array([np.sin(g), np.cos(g)]), np.array([np.cos(g), -np.sin(g)])]
    while stack:
        p = stack.pop()
        area = abs(_area(p))
        if area < rng.uniform(1.5e4, 6e4) or len(out) > 400:
            out.append(p)
            continue
        long_axis = principal_axis(p)
        # Cut line perpendicular to the long axis, snapped to the regional grid most of the time.
        normal = long_axis
        if rng.random() < 0.7:
            normal = max(axes, key=lambda a: abs(a @ long_axis))
        ang = rng.normal(0, np.radians(4))
        normal = np.array(
            [np.cos(ang) * normal[0] - np.sin(ang) * normal[1], np.sin(ang) * normal[0] + np.cos(ang) * normal[1]]
        )
        proj = p @ long_axis
        point = p.mean(axis=0) + long_axis * rng.uniform(-0.2, 0.2) * (proj.max() - proj.min())
        a, b = clip_halfplane(p, point, normal), clip_halfplane(p, point, -normal)
        if len(a) and len(b):
            stack.extend([a, b])
        else:
            out.append(p)
    return out


def _draw_field(ctx: Ctx, poly: np.ndarray) -> tuple[str, np.ndarray]:
    rng, canvas = ctx.rng, ctx.canvas
    weights = np.array([k[5] for k in FIELD_KINDS])
    name, mat, rgb, amp, period, _ = FIELD_KINDS[int(rng.choice(len(FIELD_KINDS), p=weights / weights.sum()))]
    u = principal_axis(poly)
    if rng.random() < 0.3:
        u = np.array([-u[1], u[0]])
    pid = canvas.entry(mat, vary(rng, rgb, 0.07, 0.08))
    per = np.float32(rng.uniform(*period))
    tram = np.float32(rng.uniform(15, 24))
    amp_f, tram_on = float(amp), name in ("crop", "wheat", "rapeseed") and rng.random() < 0.8
    win = canvas.window(poly)
    if win is None:
        return name, u
    mask = canvas.poly_mask(poly, win)
    if amp_f > 0:
        x, y = canvas.centres(win)
        # Rows run along u: stripes vary across it.
        across = y * np.float32(u[0]) - x * np.float32(u[1])
        tex = TEX_ONE + np.float32(amp_f) * np.sin(across * (np.float32(2 * np.pi) / per))
        if tram_on:
            tex = tex - 30 * (np.abs(np.mod(across, tram) - tram / 2) < 0.35)
        canvas.put(win, mask, pid, np.float32(0), np.clip(tex, 0, 255).astype(np.uint8))
    else:
        canvas.put(win, mask, pid, np.float32(0), TEX_ONE)
    return name, u


def generate(ctx: Ctx) -> None:
    rng, plan, canvas, size = ctx.rng, ctx.plan, ctx.canvas, ctx.size
    base_palette(ctx, Material.GRASS, (98, 130, 64))
    grid_deg = float(rng.uniform(0, 90))
    parcels = split_fields(rng, size, grid_deg)
    forests = []
    for p in parcels:
        if rng.random() < 0.13:
            canvas.fill(p, ctx.pid["shrub"])
            forests.append(p)
        else:
            _draw_field(ctx, p)
    for p in parcels:  # grass margins between fields
        canvas.line(np.vstack([p, p[:1]]), rng.uniform(1.5, 3.5), ctx.pid["grass"])
    # River, then roads over it (bridges).
    if rng.random() < 0.45:
        river = crossing_curve(rng, size, grid_deg + rng.uniform(20, 70), 0.1 * size, 6)
        w = float(rng.uniform(10, 25))
        canvas.line(river, w + 6, ctx.pid["grass"])
        canvas.line(river, w, ctx.pid["water"])
        plan.mark_line(river, w + 4, Plan.WATER)
        bank = resample(river, 9.0)
        side = rng.choice([-1, 1], len(bank))
        d = np.gradient(bank, axis=0)
        n = np.stack([d[:, 1], -d[:, 0]], axis=1) / np.maximum(np.hypot(*d.T), 1e-9)[:, None]
        banks = bank + n * (side * (w / 2 + 4))[:, None]
        keep = rng.random(len(banks)) < 0.5
        ctx_trees = banks[keep]
    else:
        ctx_trees = np.zeros((0, 2))
    main = RoadSpec(round(float(rng.uniform(5.5, 7.0)), 1), 0, 1.0)
    track = RoadSpec(3.2, 2, track=True, centre_line=False)
    builder = RoadBuilder()
    grower = StreetGrower(rng, size, clearance_m=110.0)
    base = float(rng.uniform(0, 180))
    for k in range(1 if rng.random() < 0.5 else 2):
        through = size / 2 + rng.uniform(-0.15, 0.15, 2) * size
        pts = crossing_curve(rng, size, base + k * rng.uniform(60, 120), 0.1 * size, 6, through)
        builder.add(pts, main)
        grower.add_road(pts)
    for _ in range(int(12 * (size / 1000) ** 2) + 1):
        pts = grower.grow(3.0, float(rng.uniform(150, 500)), 60.0, 0.3)
        if pts is not None:
            builder.add(pts, track)
    ctx.streets = builder.build(size)
    draw_roads(ctx)
    for p in forests:
        plan.mark_poly(p, Plan.GREEN)
    # A hamlet along a main road, then farmsteads along roads and tracks.
    frames = list(edge_frames(ctx, 50.0, kinds=(0,)))
    if frames and rng.random() < 0.7:
        centre = frames[int(rng.integers(len(frames)))][0]
        radius = float(rng.uniform(60, 140)) * min(1.0, size / 600)
        shopping(ctx, 1, (30, 45), (1, 2), near=(centre, radius))  # village hall or shop with its car park
        houses(ctx, near=(centre, radius), kinds=(0, 2))
    n_farms = int(rng.poisson(6 * (size / 1000) ** 2)) + (1 if rng.random() < 0.7 else 0)
    _farmsteads(ctx, n_farms)
    for _ in range(int(rng.poisson(2 * (size / 1000) ** 2))):
        c = rng.uniform(0.1, 0.9, 2) * size
        pond = blob(rng, c, rng.uniform(10, 28))
        if plan.is_free(pond, 8.0, _BLOCKED):
            canvas.fill(pond, ctx.pid["water"])
            plan.mark_poly(pond, Plan.WATER)
            ring = resample(np.vstack([pond, pond[:1]]), 7.0)
            ctx_trees = np.vstack([ctx_trees, (ring - c) * 1.25 + c])
    # Trees: forests, hedgerows, river banks and pond rims, a few lone trees.
    forest_mask = ((plan.occ & Plan.GREEN) != 0) & plan.free_mask(Plan.STREET | Plan.BUILDING | Plan.WATER)
    conifers = float(rng.uniform(0.1, 0.8))
    scatter_trees(ctx, tree_kind(rng, (2.5, 4.5), (12, 24), conifers), 330.0, forest_mask, Plan.STREET, 0.6)
    hedges = []
    for p in parcels:
        if rng.random() < 0.35:
            e = int(rng.integers(len(p)))
            hedges.append(resample(np.array([p[e], p[(e + 1) % len(p)]]), rng.uniform(5, 8)))
    pts = np.vstack([*hedges, ctx_trees]) if hedges else ctx_trees
    if len(pts):
        inside = np.all((pts > 0) & (pts < size), axis=1)
        pts = pts[inside]
        dist = clearance_px(plan, Plan.STREET | Plan.BUILDING | Plan.WATER)
        r_px, c_px = plan_index(plan, pts)
        radius = rng.uniform(2.0, 4.0, len(pts))
        ok = dist[r_px, c_px] * plan.res >= radius
        plant(canvas, rng, pts[ok], tree_kind(rng, (2.0, 4.0), (8, 16)), 0.7, radius[ok])
    open_land = plan.free_mask(_BLOCKED)
    scatter_trees(ctx, tree_kind(rng, (3.0, 5.5), (9, 18)), 0.6, open_land, Plan.STREET | Plan.BUILDING)


def _farmsteads(ctx: Ctx, count: int) -> None:
    rng, plan, canvas = ctx.rng, ctx.plan, ctx.canvas
    frames = list(edge_frames(ctx, 25.0, kinds=(0, 2)))
    placed = 0
    for i in rng.permutation(len(frames)):
        if placed >= count:
            break
        p, u, corridor, _ = frames[int(i)]
        n = (1 if rng.random() < 0.5 else -1) * np.array([u[1], -u[0]])
        front, depth = rng.uniform(60, 110), rng.uniform(50, 80)
        setback = rng.uniform(8, 16)
        c = p + n * (corridor / 2 + setback + depth / 2)
        yard = rect(c, u, front, depth)
        if not plan.is_free(yard, 6.0, _BLOCKED):
            continue
        canvas.fill(yard, ctx.pid["gravel"])
        access = rect(p + n * (corridor / 2 + setback / 2 + 0.5), n, setback + 1.5, 4.0)
        canvas.fill(access, ctx.pid["track"])
        plan.mark_poly(access, Plan.RESERVED)
        _farm_buildings(ctx, c, u, n, front, depth)
        plan.mark_poly(yard, Plan.RESERVED)
        placed += 1


def _farm_buildings(ctx: Ctx, c: np.ndarray, u: np.ndarray, n: np.ndarray, front: float, depth: float) -> None:
    rng, plan, canvas = ctx.rng, ctx.plan, ctx.canvas
    side = 1 if rng.random() < 0.5 else -1
    # Farmhouse near the road at one end of the yard.
    hl, hw = rng.uniform(10, 15), rng.uniform(8, 10)
    house_c = c + u * side * (front / 2 - hl / 2 - 3) - n * (depth / 2 - hw / 2 - 3)
    house = rect_shape(house_c, u, hl, hw)
    draw_pitched(
        canvas,
        plan,
        rng,
        house,
        rng.uniform(4, 6),
        rng.uniform(35, 45),
        rng.random() < 0.3,
        look(rng, ROOF_PITCHED, (2.8, 3.2), (2.5, 3.5)),
    )
    # Barns and sheds wherever they fit in the yard, along or across it.
    placed, want = 0, int(rng.integers(2, 5))
    for _ in range(14):
        if placed >= want:
            break
        bl_len, bl_w = rng.uniform(18, 45), rng.uniform(10, 22)
        axis = u if rng.random() < 0.6 else n
        off = u * rng.uniform(-front / 2, front / 2) + n * rng.uniform(-depth / 2, depth / 2)
        barn = rect_shape(c + off, axis, bl_len, bl_w)
        rel = barn.polygon - c
        if np.any(np.abs(rel @ u) > front / 2) or np.any(np.abs(rel @ n) > depth / 2):
            continue
        if plan.is_free(barn.polygon, 3.0, Plan.BUILDING | Plan.STREET):
            bl = look(rng, ROOF_METAL + ROOF_PITCHED[:2], (4.0, 5.0), (0.0, 6.0))
            draw_pitched(canvas, plan, rng, barn, rng.uniform(4, 7), rng.uniform(14, 25), False, bl)
            placed += 1
    # Silos.
    for _ in range(int(rng.integers(0, 4))):
        r = rng.uniform(2.5, 4.0)
        pc = (
            c
            + u * rng.uniform(-front / 2 + r + 2, front / 2 - r - 2)
            + n * rng.uniform(-depth / 2 + r + 2, depth / 2 - r - 2)
        )
        silo = circle_polygon(pc, r, 20)
        if plan.is_free(silo, 1.5, Plan.BUILDING):
            sl = BuildingLook(vary(rng, (190, 192, 195), 0.04, 0.08), (190, 190, 190), (190, 190, 190), 4.0, 0.0)
            draw_hip_any(canvas, plan, rng, silo, rng.uniform(10, 18), 30, r * 0.58, sl)
    # Machinery in the yard.
    for _ in range(int(rng.integers(0, 4))):
        pc = c + u * rng.uniform(-front / 3, front / 3) + n * rng.uniform(-depth / 3, depth / 3)
        box = rect(pc, u, 6, 3)
        if plan.is_free(box, 1.0, Plan.BUILDING):
            draw_car(
                canvas, ctx.paint, pc, u if rng.random() < 0.5 else n, rng.uniform(4, 7), rng.uniform(2.2, 2.8), 2.5
            )
            plan.mark_poly(box, Plan.PAVED)
    pts = house_c + rng.normal(0, 10, (int(rng.integers(2, 7)), 2))
    dist = clearance_px(plan, Plan.BUILDING | Plan.STREET)
    r_px, c_px = plan_index(plan, pts)
    ok = (dist[r_px, c_px] * plan.res >= 3.0) & np.all((pts > 0) & (pts < ctx.size), axis=1)
    plant(canvas, rng, pts[ok], tree_kind(rng, (2.5, 4.5), (8, 15)), 0.8)
