"""Road networks for the synthetic world: generators, graph clean-up, and the street raster.

Roads are built in the world's local frame (x east, y north, metres from the south-west corner of
the raster) as polylines; :class:`RoadBuilder` turns them into a planar graph (crossings and
T-junctions become nodes), clips it to the world and keeps the largest connected component, so
what trajectories drive along is exactly what is drawn. Curves are chains of short straight edges.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from edge_geoloc.world.scene import RoadNetwork

_SNAP_M = 0.5  # nodes closer than this are one node
_TJUNCTION_M = 0.3  # a road end this close to another road joins it


@dataclass(frozen=True)
class RoadSpec:
    """How a road looks: carriageway width, graph kind, sidewalk and verge widths, markings."""

    width_m: float
    kind: int  # 0 main, 1 street, 2 lane/track
    sidewalk_m: float = 0.0
    verge_m: float = 0.0  # grass strip between carriageway and sidewalk
    centre_line: bool = True
    lanes: int = 2  # lanes in total (4+: dashed lane dividers and a double centre line)
    crosswalks: bool = False
    track: bool = False  # unpaved farm track

    def corridor_m(self) -> float:
        """Full width of the street space (carriageway, verges, sidewalks)."""
        return self.width_m + 2.0 * (self.verge_m + self.sidewalk_m)


@dataclass
class Streets:
    """A road graph plus the per-edge specs the raster is drawn from."""

    network: RoadNetwork  # in local coordinates until :func:`to_map`
    specs: list[RoadSpec]
    spec_of_edge: np.ndarray  # (E,) index into specs

    def spec(self, edge: int) -> RoadSpec:
        return self.specs[int(self.spec_of_edge[edge])]

    def degree(self) -> np.ndarray:
        deg = np.zeros(len(self.network.nodes), np.int64)
        np.add.at(deg, self.network.edges.ravel(), 1)
        return deg

    def junction_clearance(self) -> np.ndarray:
        """Per node: how far from it the junction area reaches (half the widest corridor + 1 m)."""
        clear = np.zeros(len(self.network.nodes))
        for e, (a, b) in enumerate(self.network.edges):
            c = self.spec(e).corridor_m() / 2.0 + 1.0
            clear[a] = max(clear[a], c)
            clear[b] = max(clear[b], c)
        return clear

    def chains(self) -> list[tuple[list[int], int]]:
        """Maximal paths through degree-2 nodes with one spec: (node list, spec index)."""
        nodes, edges = self.network.nodes, self.network.edges
        adj: list[list[tuple[int, int]]] = [[] for _ in range(len(nodes))]
        for e, (a, b) in enumerate(edges):
            adj[a].append((b, e))
            adj[b].append((a, e))
        used = np.zeros(len(edges), bool)

        def is_break(n: int) -> bool:
            if len(adj[n]) != 2:
                return True
            return self.spec_of_edge[adj[n][0][1]] != self.spec_of_edge[adj[n][1][1]]

        out = []
        starts = [n for n in range(len(nodes)) if is_break(n)] + list(range(len(nodes)))
        for s in starts:
            for nb, e in adj[s]:
                if used[e]:
                    continue
                path, cur, edge = [s], nb, e
                while True:
                    used[edge] = True
                    path.append(cur)
                    if is_break(cur) or cur == s:
                        break
                    nxt = [(m, f) for m, f in adj[cur] if not used[f]]
                    if not nxt:
                        break
                    cur, edge = nxt[0]
                out.append((path, int(self.spec_of_edge[e])))
        return out


class _NodeIndex:
    """Node positions with snapping: a point within _SNAP_M of a node is that node."""

    def __init__(self) -> None:
        self.pts: list[tuple[float, float]] = []
        self._grid: dict[tuple[int, int], list[int]] = {}

    def get(self, x: float, y: float) -> int:
        cx, cy = int(np.floor(x / _SNAP_M)), int(np.floor(y / _SNAP_M))
        for gx in (cx - 1, cx, cx + 1):
            for gy in (cy - 1, cy, cy + 1):
                for i in self._grid.get((gx, gy), ()):
                    px, py = self.pts[i]
                    if (px - x) ** 2 + (py - y) ** 2 < _SNAP_M**2:
                        return i
        self.pts.append((float(x), float(y)))
        self._grid.setdefault((cx, cy), []).append(len(self.pts) - 1)
        return len(self.pts) - 1


class RoadBuilder:
    """Collects road polylines and turns them into a clean, connected, planar :class:`Streets`."""

    def __init__(self) -> None:
        self.lines: list[tuple[np.ndarray, RoadSpec]] = []

    def add(self, pts: np.ndarray, spec: RoadSpec) -> None:
        pts = np.asarray(pts, dtype=np.float64)
        if len(pts) >= 2:
            self.lines.append((pts, spec))

    def build(self, size_m: float, margin_m: float = 0.5) -> Streets:
        specs = sorted({s for _, s in self.lines}, key=lambda s: (s.kind, -s.width_m, repr(s)))
        spec_id = {s: i for i, s in enumerate(specs)}
        index = _NodeIndex()
        seg_a, seg_b, seg_s = [], [], []
        for pts, spec in self.lines:
            for p, q in itertools.pairwise(pts):
                seg_a.append(p)
                seg_b.append(q)
                seg_s.append(spec_id[spec])
        if not seg_a:
            raise ValueError("the road generator produced no roads")
        a, b = _planar_segments(np.array(seg_a), np.array(seg_b), np.array(seg_s))
        a, b, s = _clip_segments(a[0], a[1], b, margin_m, size_m - margin_m)
        edges, kept = [], []
        for p, q, k in zip(a, b, s):
            i, j = index.get(*p), index.get(*q)
            if i != j:
                edges.append((min(i, j), max(i, j)))
                kept.append(k)
        if not edges:
            raise ValueError("no road lies inside the world")
        edges_arr = np.array(edges, np.int64)
        kept_arr = np.array(kept, np.int64)
        _, first = np.unique(edges_arr, axis=0, return_index=True)
        first.sort()
        edges_arr, kept_arr = edges_arr[first], kept_arr[first]
        nodes = np.array(index.pts)
        edges_arr, kept_arr, nodes = _largest_component(edges_arr, kept_arr, nodes)
        network = RoadNetwork(
            nodes=nodes,
            edges=edges_arr,
            width_m=np.array([specs[k].width_m for k in kept_arr], np.float32),
            kind=np.array([specs[k].kind for k in kept_arr], np.uint8),
        )
        return Streets(network, specs, kept_arr)


def _cross(ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray) -> np.ndarray:
    return ax * by - ay * bx


def _planar_segments(
    p: np.ndarray, q: np.ndarray, spec: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray]:
    """Split segments where they cross or where one ends on another; returns ((a, b), spec)."""
    n = len(p)
    cell = 40.0
    lo = np.floor(np.minimum(p, q) / cell).astype(int)
    hi = np.floor(np.maximum(p, q) / cell).astype(int)
    grid: dict[tuple[int, int], list[int]] = {}
    for i in range(n):
        for gx in range(lo[i, 0], hi[i, 0] + 1):
            for gy in range(lo[i, 1], hi[i, 1] + 1):
                grid.setdefault((gx, gy), []).append(i)
    splits: list[list[float]] = [[] for _ in range(n)]
    d = q - p
    for i in range(n):
        cand: set[int] = set()
        for gx in range(lo[i, 0], hi[i, 0] + 1):
            for gy in range(lo[i, 1], hi[i, 1] + 1):
                cand.update(grid[(gx, gy)])
        js = np.array(sorted(j for j in cand if j > i), dtype=np.int64)
        if not len(js):
            continue
        r, s = d[i], d[js]
        denom = _cross(r[0], r[1], s[:, 0], s[:, 1])
        qp = p[js] - p[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = _cross(qp[:, 0], qp[:, 1], s[:, 0], s[:, 1]) / denom
            u = _cross(qp[:, 0], qp[:, 1], r[0], r[1]) / denom
        li, lj = float(np.hypot(*r)), np.hypot(s[:, 0], s[:, 1])
        ok = np.abs(denom) > 1e-9
        # Tolerances in metres turned into segment parameters.
        ti, tj = _TJUNCTION_M / max(li, 1e-9), _TJUNCTION_M / np.maximum(lj, 1e-9)
        hit = ok & (t > -ti) & (t < 1 + ti) & (u > -tj) & (u < 1 + tj)
        for k in np.nonzero(hit)[0]:
            tk, uk, j = float(t[k]), float(u[k]), int(js[k])
            ends_i = tk <= ti or tk >= 1 - ti
            ends_j = uk <= tj[k] or uk >= 1 - tj[k]
            if ends_i and ends_j:
                continue  # shared or touching end points: the node index merges them
            if not ends_i:
                splits[i].append(min(max(tk, 0.0), 1.0))
            if not ends_j:
                splits[j].append(min(max(uk, 0.0), 1.0))
    out_a, out_b, out_s = [], [], []
    for i in range(n):
        ts = [0.0, *sorted(splits[i]), 1.0]
        pts = p[i] + np.array(ts)[:, None] * d[i]
        out_a.extend(pts[:-1])
        out_b.extend(pts[1:])
        out_s.extend([spec[i]] * (len(ts) - 1))
    return (np.array(out_a), np.array(out_b)), np.array(out_s)


def _clip_segments(
    a: np.ndarray, b: np.ndarray, spec: np.ndarray, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Liang-Barsky clipping of segments a->b to the square [lo, hi]^2."""
    d = b - a
    t0 = np.zeros(len(a))
    t1 = np.ones(len(a))
    keep = np.ones(len(a), bool)
    for k in (0, 1):
        for pk, qk in ((-d[:, k], a[:, k] - lo), (d[:, k], hi - a[:, k])):
            parallel = np.abs(pk) < 1e-12
            keep &= ~(parallel & (qk < 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                r = qk / pk
            t0 = np.where(~parallel & (pk < 0), np.maximum(t0, r), t0)
            t1 = np.where(~parallel & (pk > 0), np.minimum(t1, r), t1)
    keep &= t0 < t1
    a2 = a + t0[:, None] * d
    b2 = a + t1[:, None] * d
    return a2[keep], b2[keep], spec[keep]


def _largest_component(
    edges: np.ndarray, spec: np.ndarray, nodes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parent = list(range(len(nodes)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[ra] = rb
    roots = np.array([find(int(a)) for a in edges[:, 0]])
    # Largest by total length, so a long road beats a tangle of tiny stubs.
    length = np.hypot(*(nodes[edges[:, 0]] - nodes[edges[:, 1]]).T)
    labels, inv = np.unique(roots, return_inverse=True)
    best = labels[np.argmax(np.bincount(inv, weights=length))]
    keep = roots == best
    edges, spec = edges[keep], spec[keep]
    used = np.unique(edges)
    remap = np.full(len(nodes), -1, np.int64)
    remap[used] = np.arange(len(used))
    return remap[edges], spec, nodes[used]


# ----------------------------------------------------------------------------- generators


def resample(pts: np.ndarray, step_m: float) -> np.ndarray:
    """A polyline resampled at (about) even spacing, keeping its ends."""
    pts = np.asarray(pts, np.float64)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    if s[-1] <= 0:
        return pts[:1]
    n = max(1, int(np.ceil(s[-1] / step_m)))
    t = np.linspace(0.0, s[-1], n + 1)
    return np.stack([np.interp(t, s, pts[:, 0]), np.interp(t, s, pts[:, 1])], axis=1)


def catmull_rom(ctrl: np.ndarray, step_m: float = 6.0) -> np.ndarray:
    """A smooth curve through control points (centripetal-free, uniform Catmull-Rom)."""
    ctrl = np.asarray(ctrl, np.float64)
    if len(ctrl) < 3:
        return resample(ctrl, step_m)
    ext = np.vstack([2 * ctrl[0] - ctrl[1], ctrl, 2 * ctrl[-1] - ctrl[-2]])
    out = [ctrl[:1]]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        n = max(2, int(np.ceil(np.hypot(*(p2 - p1)) / step_m)))
        t = np.linspace(0, 1, n + 1)[1:, None]
        out.append(
            0.5
            * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2 + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3)
        )
    return np.vstack(out)


def crossing_curve(
    rng: np.random.Generator, size_m: float, angle_deg: float, wiggle_m: float, n_ctrl: int = 5, through=None
) -> np.ndarray:
    """A smooth road crossing the whole square roughly along ``angle_deg`` (clockwise from north)."""
    c = np.full(2, size_m / 2.0) if through is None else np.asarray(through, float)
    a = np.radians(angle_deg)
    d = np.array([np.sin(a), np.cos(a)])
    n = np.array([d[1], -d[0]])
    half = size_m * 0.8
    t = np.linspace(-half, half, n_ctrl)
    off = rng.normal(0.0, wiggle_m, n_ctrl)
    off[n_ctrl // 2] = 0.0  # pass through the given point
    ctrl = c + t[:, None] * d + off[:, None] * n
    return catmull_rom(ctrl, 6.0)


def perturbed_grid(
    rng: np.random.Generator,
    size_m: float,
    spacing_m: tuple[float, float],
    angle_deg: float,
    warp_m: float,
    drop: float,
    main_every: int,
    main: RoadSpec,
    street: RoadSpec,
) -> list[tuple[np.ndarray, RoadSpec]]:
    """A rotated grid with irregular spacing, warped by a smooth field, with dropped segments.

    Both families are sampled at every crossing's exact parameters, so crossings coincide.
    """
    c = size_m / 2.0
    half = size_m / np.sqrt(2.0) + spacing_m[1]

    def positions() -> np.ndarray:
        start = -half + rng.uniform(0, spacing_m[0])
        vals = [start]
        while vals[-1] < half:
            vals.append(vals[-1] + rng.uniform(*spacing_m))
        return np.array(vals)

    us, vs = positions(), positions()
    a = np.radians(angle_deg)
    ax_u = np.array([np.cos(a), -np.sin(a)])  # grid "east" axis
    ax_v = np.array([np.sin(a), np.cos(a)])  # grid "north" axis
    k = rng.uniform(0.6, 1.6, 4) * 2 * np.pi / size_m
    ph = rng.uniform(0, 2 * np.pi, 4)

    def to_xy(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        du = warp_m * (np.sin(k[0] * v + ph[0]) + 0.5 * np.sin(k[1] * (u + v) + ph[1]))
        dv = warp_m * (np.sin(k[2] * u + ph[2]) + 0.5 * np.sin(k[3] * (u - v) + ph[3]))
        return c + (u + du)[:, None] * ax_u + (v + dv)[:, None] * ax_v

    out = []
    main_u = rng.integers(main_every) if main_every else -1
    main_v = rng.integers(main_every) if main_every else -1
    for family, fixed, along in ((0, us, vs), (1, vs, us)):
        for i, f in enumerate(fixed):
            is_main = main_every > 0 and i % main_every == (main_u if family == 0 else main_v)
            spec = main if is_main else street
            run: list[np.ndarray] = []
            for j in range(len(along) - 1):
                if not is_main and rng.random() < drop:
                    if len(run) >= 2:
                        out.append((np.vstack(run), spec))
                    run = []
                    continue
                t = np.linspace(along[j], along[j + 1], max(2, int((along[j + 1] - along[j]) / 15.0)) + 1)
                pts = to_xy(np.full_like(t, f), t) if family == 0 else to_xy(t, np.full_like(t, f))
                run = [pts] if not run else [*run, pts[1:]]
            if len(run) >= 1 and sum(len(r) for r in run) >= 2:
                out.append((np.vstack(run), spec))
    return out


class StreetGrower:
    """Grows side streets off existing roads: curvy, ending in a cul-de-sac or joining a road.

    Streets keep ``clearance_m`` from other roads so that lots fit between them; a growing street
    that comes that close to a road ahead of it joins it (a loop) with probability ``p_join``.
    """

    def __init__(self, rng: np.random.Generator, size_m: float, clearance_m: float, step_m: float = 8.0):
        self.rng, self.size, self.clear, self.step = rng, size_m, clearance_m, step_m
        self.cell = clearance_m
        self.grid: dict[tuple[int, int], list[tuple[float, float, int]]] = {}
        self.samples: list[tuple[np.ndarray, np.ndarray, int]] = []  # (point, direction, street id)
        self.n_streets = 0
        self.dead_ends: list[np.ndarray] = []

    def add_road(self, pts: np.ndarray, seedable: bool = True) -> int:
        sid = self.n_streets
        self.n_streets += 1
        pts = resample(pts, 4.0)
        for p, q in itertools.pairwise(pts):
            d = q - p
            d = d / max(np.hypot(*d), 1e-9)
            key = (int(p[0] // self.cell), int(p[1] // self.cell))
            self.grid.setdefault(key, []).append((float(p[0]), float(p[1]), sid))
            if seedable and 0 < p[0] < self.size and 0 < p[1] < self.size:
                self.samples.append((p, d, sid))
        return sid

    def nearest(self, p: np.ndarray, skip: int, skip_near: tuple[int, np.ndarray, float] | None):
        """Nearest road sample within clearance (not of street ``skip``; not of ``skip_near``'s
        street within its radius of its point)."""
        best, best_d = None, self.clear
        cx, cy = int(p[0] // self.cell), int(p[1] // self.cell)
        for gx in (cx - 1, cx, cx + 1):
            for gy in (cy - 1, cy, cy + 1):
                for x, y, sid in self.grid.get((gx, gy), ()):
                    if sid == skip:
                        continue
                    if skip_near is not None and sid == skip_near[0]:
                        if (x - skip_near[1][0]) ** 2 + (y - skip_near[1][1]) ** 2 < skip_near[2] ** 2:
                            continue
                    dd = np.hypot(x - p[0], y - p[1])
                    if dd < best_d:
                        best, best_d = np.array([x, y]), dd
        return best, best_d

    def grow(self, curvature_deg: float, max_len_m: float, min_len_m: float, p_join: float) -> np.ndarray | None:
        """Try one street from a random point of an existing road; its polyline or None."""
        if not self.samples:
            return None
        rng = self.rng
        p0, d0, parent = self.samples[int(rng.integers(len(self.samples)))]
        side = 1.0 if rng.random() < 0.5 else -1.0
        h = np.arctan2(d0[0], d0[1]) + side * np.pi / 2 + rng.normal(0, np.radians(8))
        pts = [p0]
        dh = 0.0
        me = self.n_streets
        skip_near = (parent, p0, self.clear * 1.1)
        joined = False
        for _ in range(int(max_len_m / self.step)):
            dh = 0.75 * dh + rng.normal(0, np.radians(curvature_deg))
            h += dh
            p = pts[-1] + self.step * np.array([np.sin(h), np.cos(h)])
            if not (0 <= p[0] <= self.size and 0 <= p[1] <= self.size):
                pts.append(p)
                break
            near, _dist = self.nearest(p, me, skip_near)
            if near is not None:
                ahead = near - pts[-1]
                cosang = (ahead @ np.array([np.sin(h), np.cos(h)])) / max(np.hypot(*ahead), 1e-9)
                if cosang > 0.6 and rng.random() < p_join and len(pts) > 2:
                    pts.append(near)
                    joined = True
                break
            pts.append(p)
        pts_arr = np.array(pts)
        length = np.sum(np.hypot(*np.diff(pts_arr, axis=0).T)) if len(pts_arr) > 1 else 0.0
        if length < min_len_m:
            return None
        end = pts_arr[-1]
        if not joined and 0 < end[0] < self.size and 0 < end[1] < self.size:
            self.dead_ends.append(end)
        self.add_road(pts_arr)
        return pts_arr


# ----------------------------------------------------------------------------- raster


def draw_streets(canvas, plan, streets: Streets, colours: dict[str, int], bulbs: list[np.ndarray], rng) -> None:
    """Sidewalks, verges, carriageways, cul-de-sac bulbs and markings into the canvas and plan.

    ``colours``: palette ids for 'sidewalk', 'verge', 'road', 'track', 'marking', 'centre'.
    """
    net = streets.network
    nodes, edges = net.nodes, net.edges
    deg = streets.degree()
    clear = streets.junction_clearance()
    for e, (a, b) in enumerate(edges):
        s = streets.spec(e)
        if s.sidewalk_m > 0:
            canvas.line(nodes[[a, b]], s.corridor_m(), colours["sidewalk"])
        plan.mark_line(nodes[[a, b]], s.corridor_m())
    for p in bulbs:
        canvas.circle(p, _BULB_M + 2.0, colours["sidewalk"])
        plan.mark_circle(p, _BULB_M + 2.0)
    for e, (a, b) in enumerate(edges):
        s = streets.spec(e)
        if s.verge_m > 0:
            pa, pb = _shorten(nodes[a], nodes[b], clear[a] if deg[a] > 2 else 0.0, clear[b] if deg[b] > 2 else 0.0)
            if pa is not None:
                canvas.line(np.array([pa, pb]), s.width_m + 2 * s.verge_m, colours["verge"], round_caps=False)
    for e, (a, b) in enumerate(edges):
        s = streets.spec(e)
        canvas.line(nodes[[a, b]], s.width_m, colours["track" if s.track else "road"])
    for p in bulbs:
        canvas.circle(p, _BULB_M, colours["road"])
    for path, k in streets.chains():
        spec = streets.specs[k]
        pts = nodes[path]
        cut0 = clear[path[0]] if deg[path[0]] > 2 else 0.0
        cut1 = clear[path[-1]] if deg[path[-1]] > 2 else 0.0
        _draw_markings(canvas, pts, spec, cut0, cut1, colours)
        if spec.crosswalks:
            for end, cut in ((pts, cut0), (pts[::-1], cut1)):
                if cut > 0:
                    _draw_crosswalk(canvas, end, spec, cut, colours["marking"])


_BULB_M = 9.0  # cul-de-sac turning circle radius (carriageway)


def _shorten(p: np.ndarray, q: np.ndarray, c0: float, c1: float):
    d = q - p
    length = float(np.hypot(*d))
    if length <= c0 + c1 + 0.5:
        return None, None
    u = d / length
    return p + u * c0, q - u * c1


def _offset_polyline(pts: np.ndarray, off: float) -> np.ndarray:
    """Polyline shifted sideways (right of travel for off > 0) with averaged vertex normals."""
    d = np.diff(pts, axis=0)
    d /= np.maximum(np.hypot(*d.T), 1e-9)[:, None]
    n_seg = np.stack([d[:, 1], -d[:, 0]], axis=1)
    n = np.vstack([n_seg[:1], n_seg[:-1] + n_seg[1:], n_seg[-1:]])
    n /= np.maximum(np.hypot(*n.T), 1e-9)[:, None]
    return pts + off * n


def _dashes(pts: np.ndarray, cut0: float, cut1: float, dash: float, gap: float) -> list[np.ndarray]:
    """Pieces of a polyline: dashes of ``dash`` m every ``dash + gap`` m, skipping the ends."""
    seg = np.hypot(*np.diff(pts, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    total = s[-1]
    out = []
    t = cut0 + (gap / 2 if gap > 0 else 0.0)
    while t < total - cut1:
        t1 = min(t + dash, total - cut1)
        ts = np.concatenate([[t], s[(s > t) & (s < t1)], [t1]])
        out.append(np.stack([np.interp(ts, s, pts[:, 0]), np.interp(ts, s, pts[:, 1])], axis=1))
        if gap <= 0:
            break
        t += dash + gap
    return out


def _draw_markings(canvas, pts: np.ndarray, spec: RoadSpec, cut0: float, cut1: float, colours) -> None:
    if spec.track or not spec.centre_line or spec.width_m < 5.5:
        return
    line_w = max(0.15, canvas.res)
    if spec.lanes >= 4:
        for off in (-0.18, 0.18):
            for piece in _dashes(_offset_polyline(pts, off), cut0, cut1, 1e9, 0.0):
                canvas.line(piece, line_w, colours["centre"])
        lane = spec.width_m / spec.lanes
        for k in range(1, spec.lanes // 2):
            for side in (-1, 1):
                for piece in _dashes(_offset_polyline(pts, side * k * lane), cut0, cut1, 3.0, 6.0):
                    canvas.line(piece, line_w, colours["marking"])
    else:
        for piece in _dashes(pts, cut0, cut1, 3.0, 5.0):
            canvas.line(piece, line_w, colours["centre"])
    if spec.kind == 0 and spec.width_m >= 8:
        for side in (-1, 1):
            edge = _offset_polyline(pts, side * (spec.width_m / 2 - 0.5))
            for piece in _dashes(edge, cut0, cut1, 1e9, 0.0):
                canvas.line(piece, line_w, colours["marking"])


def _draw_crosswalk(canvas, pts: np.ndarray, spec: RoadSpec, clear: float, colour: int) -> None:
    """Zebra stripes across the road just outside the junction at the start of ``pts``."""
    depth = 3.0
    seg = np.diff(pts, axis=0)
    seg_len = np.hypot(*seg.T)
    s = np.concatenate([[0.0], np.cumsum(seg_len)])
    at = clear - spec.sidewalk_m / 2 + depth / 2
    if s[-1] < at + depth:
        return
    i = min(int(np.searchsorted(s, at, side="right")) - 1, len(seg) - 1)
    u = seg[i] / max(seg_len[i], 1e-9)
    n = np.array([u[1], -u[0]])
    centre = pts[i] + u * (at - s[i])
    half = spec.width_m / 2 - 0.4
    for off in np.arange(-half + 0.25, half, 1.0):
        canvas.fill(rect(centre + n * off, u, depth, 0.5), colour)


def rect(c: np.ndarray, u: np.ndarray, length: float, width: float) -> np.ndarray:
    """Rectangle polygon centred at c, ``length`` along the unit vector u, ``width`` across."""
    c, u = np.asarray(c, float), np.asarray(u, float)
    n = np.array([u[1], -u[0]])
    hl, hw = u * length / 2, n * width / 2
    return np.array([c - hl - hw, c + hl - hw, c + hl + hw, c - hl + hw])
