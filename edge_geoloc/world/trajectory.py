"""True poses over time: a vehicle driving the road graph, a UAV flying over the area.

A :class:`Trajectory` holds arrays sampled at a fixed ``dt``; positions are map-CRS east/north
metres and headings are clockwise from GRID north (what renderers and the map use). Convert with
:meth:`Trajectory.latlon` and :meth:`Trajectory.true_heading` at interfaces.

Ground vehicles (:func:`drive`) follow the centre of the right-hand lane of the road network,
cut corners with arcs, slow down for curvature (lateral acceleration and yaw-rate limits) and
accelerate or brake within comfortable limits; the path is smoothed so that curvature, hence yaw
rate, is continuous as with a real steering wheel. UAVs (:func:`fly`) follow straight legs
between waypoints (random or a lawnmower survey) with coordinated turns: the bank angle is
``atan(v * yaw_rate / g)`` and the turn radius follows from the maximum bank.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from edge_geoloc.geo import MapCRS, wrap_deg
from edge_geoloc.world.scene import RoadNetwork, World

G = 9.80665  # m/s^2
Bounds = tuple[float, float, float, float]  # east_min, north_min, east_max, north_max


@dataclass(frozen=True)
class Pose:
    """One interpolated sample of a trajectory."""

    t: float
    east: float
    north: float
    heading_deg: float
    speed_mps: float
    yaw_rate_dps: float
    altitude_m: float
    pitch_deg: float
    roll_deg: float


_ARRAYS = ("t", "east", "north", "heading_deg", "speed_mps", "yaw_rate_dps", "altitude_m", "pitch_deg", "roll_deg")
_ANGLES = ("heading_deg",)  # wrapped quantities, interpolated along the short arc


@dataclass
class Trajectory:
    """True poses sampled every ``dt`` seconds.

    ``heading_deg`` is clockwise from grid north in [0, 360); ``yaw_rate_dps`` is its rate
    (positive turning right); ``altitude_m`` is above ground (0 for ground vehicles; the camera
    mounting height is the renderer's business); ``pitch_deg`` positive nose up and ``roll_deg``
    positive right wing down (zeros for ground vehicles).
    """

    t: np.ndarray
    east: np.ndarray
    north: np.ndarray
    heading_deg: np.ndarray
    speed_mps: np.ndarray
    yaw_rate_dps: np.ndarray
    altitude_m: np.ndarray
    pitch_deg: np.ndarray
    roll_deg: np.ndarray
    kind: str = "ground"  # "ground" or "uav"
    fixed_dt: bool = True  # False: times need only increase (resampled onto a sensor's clock)

    def __post_init__(self) -> None:
        for name in _ARRAYS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        n = len(self.t)
        for name in _ARRAYS:
            arr = getattr(self, name)
            if arr.shape != (n,):
                raise ValueError(f"trajectory array '{name}' has shape {arr.shape}, expected ({n},) like 't'")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"trajectory array '{name}' holds NaN or infinite values")
        if n == 0:
            raise ValueError("a trajectory needs at least one sample")
        if n > 1:
            steps = np.diff(self.t)
            if np.any(steps <= 0):
                raise ValueError("trajectory times must increase")
            if self.fixed_dt and np.max(np.abs(steps - steps[0])) > 1e-6 * max(1.0, steps[0]) + 1e-9:
                raise ValueError("trajectory times must increase by a fixed dt (or pass fixed_dt=False)")
        if self.kind not in ("ground", "uav"):
            raise ValueError(f"trajectory kind must be 'ground' or 'uav', got {self.kind!r}")
        self.heading_deg = wrap_deg(self.heading_deg)

    # ---- basic properties
    def __len__(self) -> int:
        return len(self.t)

    @property
    def dt(self) -> float:
        """The sample spacing (the first one if ``fixed_dt`` is False); 0 for a single sample."""
        return float(self.t[1] - self.t[0]) if len(self) > 1 else 0.0

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0])

    @property
    def length_m(self) -> float:
        """Horizontal path length."""
        return float(np.sum(np.hypot(np.diff(self.east), np.diff(self.north))))

    def __getitem__(self, index: int | slice) -> Pose | Trajectory:
        """An integer gives a :class:`Pose`; a slice (any positive step) a shorter trajectory."""
        if isinstance(index, slice):
            if index.step is not None and index.step <= 0:
                raise ValueError("trajectory slices need a positive step (times must increase)")
            return replace(self, **{name: getattr(self, name)[index] for name in _ARRAYS})
        i = int(index)
        return Pose(**{name: float(getattr(self, name)[i]) for name in _ARRAYS})

    def between(self, t0: float, t1: float) -> Trajectory:
        """Samples with ``t0 <= t <= t1``."""
        i0, i1 = np.searchsorted(self.t, [t0, t1 + 1e-9])
        if i1 <= i0:
            raise ValueError(f"no trajectory samples between t={t0} and t={t1} (covers {self.t[0]}..{self.t[-1]})")
        return self[int(i0) : int(i1)]  # type: ignore[return-value]

    # ---- interpolation
    def resample(self, times: np.ndarray) -> Trajectory:
        """Poses at arbitrary increasing times (e.g. a sensor's clock), linearly interpolated.

        Headings interpolate along the short arc (359 -> 1 passes through 0, not 180).
        """
        times = np.atleast_1d(np.asarray(times, dtype=np.float64))
        lo, hi = self.t[0] - 1e-9, self.t[-1] + 1e-9
        if np.any((times < lo) | (times > hi)):
            bad = times[(times < lo) | (times > hi)][0]
            raise ValueError(f"time {bad:.3f} s is outside the trajectory ({self.t[0]:.3f}..{self.t[-1]:.3f} s)")
        out = {}
        for name in _ARRAYS:
            values = getattr(self, name)
            if name in _ANGLES:
                values = np.rad2deg(np.unwrap(np.deg2rad(values)))
            out[name] = np.interp(times, self.t, values)
        out["t"] = times
        return Trajectory(**out, kind=self.kind, fixed_dt=False)  # sensor clocks need not be uniform

    def at(self, t: float) -> Pose:
        """The pose at time ``t`` (interpolated; angles wrapped correctly)."""
        return self.resample(np.array([t]))[0]  # type: ignore[return-value]

    # ---- geography
    def latlon(self, crs: MapCRS) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 (lat, lon) of every sample."""
        return crs.to_latlon(self.east, self.north)

    def true_heading(self, crs: MapCRS) -> np.ndarray:
        """Headings clockwise from TRUE north (grid heading plus meridian convergence)."""
        lat, lon = self.latlon(crs)
        return crs.grid_to_true_heading(self.heading_deg, lat, lon)

    def velocity_en(self) -> tuple[np.ndarray, np.ndarray]:
        """Horizontal velocity (east, north) in m/s from speed and heading."""
        h = np.deg2rad(self.heading_deg)
        return self.speed_mps * np.sin(h), self.speed_mps * np.cos(h)

    # ---- persistence
    def save(self, path: str | Path) -> None:
        np.savez_compressed(
            path,
            kind=np.array(self.kind),
            fixed_dt=np.array(self.fixed_dt),
            **{name: getattr(self, name) for name in _ARRAYS},
        )

    @classmethod
    def load(cls, path: str | Path) -> Trajectory:
        with np.load(path) as data:
            missing = [name for name in (*_ARRAYS, "kind") if name not in data.files]
            if missing:
                raise ValueError(f"{path}: not a trajectory file, missing arrays {missing}")
            fixed = bool(data["fixed_dt"]) if "fixed_dt" in data.files else True
            return cls(**{name: data[name] for name in _ARRAYS}, kind=str(data["kind"]), fixed_dt=fixed)


def _check_fields_match() -> None:
    names = tuple(f.name for f in fields(Trajectory) if f.name not in ("kind", "fixed_dt"))
    assert names == _ARRAYS, names


_check_fields_match()


# ================================================================================================
# Ground vehicle


@dataclass(frozen=True)
class VehicleLimits:
    """Comfortable passenger-car limits used by :func:`drive` (and checked by the tests)."""

    lat_accel_mps2: float = 2.5  # lateral acceleration in turns
    yaw_rate_dps: float = 40.0
    accel_mps2: float = 1.5
    decel_mps2: float = 2.5
    turn_radius_m: float = 8.0  # preferred corner radius of the lane path at intersections
    min_speed_mps: float = 0.2  # crawling speed floor (the tight U-turn at a dead end)


_DS = 0.05  # dense path spacing, metres
_SMOOTH_M = 2.5  # box-filter length applied twice to the path: continuous curvature
_EDGE_MARGIN_M = 0.4  # corner arcs keep this far inside the carriageway edge (smoothing pulls inwards)


LANE_SPLIT_M = 8.0  # a carriageway this wide per lane pair carries one more lane each way


def right_lane_offset(width_m: np.ndarray | float) -> np.ndarray:
    """Offset of the outermost right lane's centre from the centre line, for a two-way road.

    The road graph does not carry lane counts, so each direction gets ``max(1, floor(width / 8))``
    lanes (the synthetic world's 16-22 m main roads have four lanes, its streets two): a quarter
    of the width on a two-lane street, three eighths on a four-lane road.
    """
    width = np.asarray(width_m, dtype=np.float64)
    per_direction = np.maximum(1.0, np.floor(width / LANE_SPLIT_M))
    return width / 2 * (1 - 1 / (2 * per_direction))


def _components(adj: list[list[int]]) -> np.ndarray:
    label = np.full(len(adj), -1, np.int64)
    for start in range(len(adj)):
        if label[start] >= 0 or not adj[start]:
            continue
        stack = [start]
        label[start] = start
        while stack:
            a = stack.pop()
            for b in adj[a]:
                if label[b] < 0:
                    label[b] = start
                    stack.append(b)
    return label


def _prune_cut_ends(
    nodes: np.ndarray, adj: list[set[int]], offset_of: dict[tuple[int, int], float], inside: Bounds
) -> None:
    """Keep the car inside the area: drop roads whose lanes leave it, then dead ends it cannot turn in.

    Roads run past the world's edge (they are drawn to it); a road whose lane centre lines (``o``
    either side of the centre line) reach outside is removed. A U-turn at a dead end is a
    semicircle of radius ``o`` ending level with the node; where it does not fit inside, the stub
    is removed too, repeatedly, back to where the car can turn. Edits ``adj`` in place.
    """
    box = np.array(inside, dtype=np.float64)
    for (a, b), o in offset_of.items():
        if b not in adj[a]:
            continue
        d = nodes[b] - nodes[a]
        n = np.array([d[1], -d[0]]) / np.linalg.norm(d)
        lanes = [nodes[a] + o * n, nodes[a] - o * n, nodes[b] + o * n, nodes[b] - o * n]
        if not all(_in_box(q, box) for q in lanes):
            adj[a].discard(b)
            adj[b].discard(a)
    queue = [n for n in range(len(adj)) if len(adj[n]) == 1]
    while queue:
        n = queue.pop()
        if len(adj[n]) != 1:
            continue
        (q,) = adj[n]
        d = nodes[n] - nodes[q]
        d = d / np.linalg.norm(d)
        o = float(offset_of[(min(n, q), max(n, q))])
        if _in_box(nodes[n] - o * d, box + np.array([o, o, -o, -o])):
            continue
        adj[n].discard(q)
        adj[q].discard(n)
        if len(adj[q]) == 1:
            queue.append(q)
    if not any(adj):
        raise ValueError("no road of the network lies far enough inside the area to drive on")


def _route(
    roads: RoadNetwork, adj: list[list[int]], rng: np.random.Generator, start: int, min_length_m: float
) -> list[int]:
    """Node sequence of a random drive: no immediate U-turn unless at a dead end; straight-ish preferred."""
    nodes = roads.nodes

    def stub_weight(cur: int, options: list[int]) -> np.ndarray:
        # Nobody drives into a stub of road that ends a few metres on (roads cut at the world's edge).
        short = np.linalg.norm(nodes[options] - nodes[cur], axis=1) < 15.0
        return np.where(short & np.array([len(adj[o]) == 1 for o in options]), 1e-6, 1.0)

    w0 = stub_weight(start, adj[start])
    route = [start, int(adj[start][int(rng.choice(len(w0), p=w0 / w0.sum()))])]
    length = float(np.hypot(*(nodes[route[1]] - nodes[route[0]])))
    while length < min_length_m:
        prev, cur = route[-2], route[-1]
        options = [n for n in adj[cur] if n != prev]
        if not options:
            nxt = prev  # dead end: turn around
        else:
            d_in = nodes[cur] - nodes[prev]
            d_in = d_in / np.linalg.norm(d_in)
            d_out = nodes[options] - nodes[cur]
            d_out = d_out / np.linalg.norm(d_out, axis=1, keepdims=True)
            # Drivers mostly go straight on and turn less often; they take a hairpin (a turn of more
            # than 120 degrees, back along a road that joins at a shallow angle) only when there is
            # no other way.
            cos_turn = d_out @ d_in
            w = np.exp(1.5 * cos_turn) * np.where(cos_turn < -0.5, 1e-6, 1.0) * stub_weight(cur, options)
            nxt = int(options[int(rng.choice(len(options), p=w / w.sum()))])
        route.append(nxt)
        length += float(np.hypot(*(nodes[nxt] - nodes[cur])))
    return route


def _arc(center: np.ndarray, radius: float, a0: float, a1: float, step_deg: float = 2.0) -> np.ndarray:
    """Points on a circle from math angle a0 to a1 (radians, counter-clockwise positive), ends excluded."""
    n = max(2, int(np.ceil(abs(np.rad2deg(a1 - a0)) / step_deg)))
    a = np.linspace(a0, a1, n + 1)[1:-1]
    return center + radius * np.stack([np.cos(a), np.sin(a)], axis=1)


def _intersect(q0: np.ndarray, u0: np.ndarray, q1: np.ndarray, u1: np.ndarray) -> np.ndarray | None:
    """Where the lines q0 + s u0 and q1 + t u1 cross; None when (nearly) parallel."""
    cross = u0[0] * u1[1] - u0[1] * u1[0]
    if abs(cross) < 1e-6:
        return None
    w = q1 - q0
    return q0 + (w[0] * u1[1] - w[1] * u1[0]) / cross * u0


def _in_box(q: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= q[0] <= box[2] and box[1] <= q[1] <= box[3])


def _unit(v: np.ndarray, default: np.ndarray) -> np.ndarray:
    n = float(np.hypot(*v))
    return v / n if n > 1e-9 else default


class _LanePiece:
    """An offset polyline between two fixed points: consecutive lane lines meet where they cross.

    Where a short segment on the inside of a turn would run backwards (its two joins cross over),
    the segment is dropped and its neighbours meet directly, as polygon offsetting does.
    """

    def __init__(self, start: np.ndarray, end: np.ndarray) -> None:
        self.start, self.end = start, end
        self.lines: list[tuple[np.ndarray, np.ndarray, int]] = []  # point, direction, route segment
        self.budget: list[float] = []  # per join (between lines i and i+1): how far a corner arc may cut
        self.fallback: list[np.ndarray] = []  # per join: where it is if the lines are parallel

    def add_line(self, point: np.ndarray, direction: np.ndarray, seg: int, budget: float, fallback: np.ndarray) -> None:
        if self.lines:
            self.budget.append(budget)
            self.fallback.append(fallback)
        self.lines.append((point, direction, seg))

    def vertices(self) -> list[np.ndarray]:
        joins = []
        for i in range(len(self.lines) - 1):
            (q0, u0, _), (q1, u1, _) = self.lines[i], self.lines[i + 1]
            x = _intersect(q0, u0, q1, u1)
            joins.append(self.fallback[i] if x is None else x)
        return [self.start, *joins, self.end]

    def solve(self) -> tuple[list[np.ndarray], list[int], list[float]]:
        """Vertices, the route segment each starts, and the corner budget at each (0 at the ends)."""
        verts = self.vertices()
        while len(self.lines) > 1:
            back = [i for i, (_, u, _) in enumerate(self.lines) if float((verts[i + 1] - verts[i]) @ u) <= 0.0]
            if not back:
                break
            i, m = back[0], len(self.lines)
            if 0 < i < m - 1:  # drop line i: joins i-1 and i become one
                self.budget[i - 1 : i + 1] = [min(self.budget[i - 1], self.budget[i])]
                self.fallback[i - 1 : i + 1] = [(verts[i] + verts[i + 1]) / 2]
                del self.lines[i]
            elif i == 0:  # the start is fixed: go straight from it to the join after the next
                u = _unit(verts[2] - verts[0], self.lines[1][1])
                self.lines[0:2] = [(self.start, u, self.lines[0][2])]
                del self.budget[0], self.fallback[0]
            else:  # the end is fixed: go straight to it from the join before the previous
                u = _unit(self.end - verts[m - 2], self.lines[m - 2][1])
                self.lines[m - 2 : m] = [(verts[m - 2], u, self.lines[m - 2][2])]
                del self.budget[m - 2], self.fallback[m - 2]
            verts = self.vertices()
        segs = [seg for _, _, seg in self.lines]
        return verts, [*segs, segs[-1]], [0.0, *self.budget, 0.0]


def _lane_polyline(
    roads: RoadNetwork,
    route: list[int],
    offsets: np.ndarray,
    widths: np.ndarray,
    limits: VehicleLimits,
    inside: Bounds | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The right-lane path through ``route``: offset lines joined and filleted by arcs, dead-end U-turns.

    ``offsets``/``widths`` are per route segment. Corner radii are limited by the segment lengths and
    by the carriageway: an arc cuts ``r (1 - cos(turn / 2))`` into the inside of the turn, which must
    keep the path on both roads. A dead-end U-turn is a semicircle that ends level with the node,
    pulled back further where needed to stay within ``inside`` (roads cut by the world's edge end
    in dead ends there). Returns the vertices and, per vertex, the route segment it starts (for
    per-segment attributes such as the cruise speed).
    """
    p = roads.nodes[route]
    d = np.diff(p, axis=0)
    seg_len = np.linalg.norm(d, axis=1)
    d = d / seg_len[:, None]
    right = np.stack([d[:, 1], -d[:, 0]], axis=1)  # heading + 90 degrees
    lane = p[:-1] + offsets[:, None] * right  # a point of each segment's lane line

    pts: list[np.ndarray] = []
    seg: list[int] = []
    fillet: list[float] = []  # corner budget per vertex; 0: keep the vertex as it is
    piece = _LanePiece(lane[0], p[-1] + offsets[-1] * right[-1])
    piece.add_line(lane[0], d[0], 0, 0.0, lane[0])

    def close(end: np.ndarray) -> None:
        piece.end = end
        v, s, b = piece.solve()
        pts.extend(v)
        seg.extend(s)
        fillet.extend(b)

    for k in range(1, len(route) - 1):
        d_in, d_out = d[k - 1], d[k]
        o_in, o_out = offsets[k - 1], offsets[k]
        a_in, a_out = p[k] + o_in * right[k - 1], p[k] + o_out * right[k]
        if route[k + 1] == route[k - 1]:
            # Dead end: a left U-turn on a semicircle that ends level with the node (never past it:
            # dead ends include roads cut at the world's edge).
            back = o_in
            if inside is not None:  # the whole semicircle (radius o_in) inside the area
                box = np.array(inside) + np.array([o_in, o_in, -o_in, -o_in])
                while back < seg_len[k - 1] and not _in_box(p[k] - back * d_in, box):
                    back += 0.25
            centre = p[k] - min(back, seg_len[k - 1]) * d_in
            u_in, u_out = centre + o_in * right[k - 1], centre + o_in * right[k]
            close(u_in)
            a0 = np.arctan2(*(u_in - centre)[::-1])
            arc = _arc(centre, o_in, a0, a0 + np.pi)
            pts.extend(arc)
            seg.extend([k - 1] * len(arc))
            fillet.extend([0.0] * len(arc))
            piece = _LanePiece(u_out, u_out)
            piece.add_line(u_out, d_out, k, 0.0, u_out)
            continue
        cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]  # > 0: a left turn
        # How far a corner arc may cut into the inside of the turn and stay on both carriageways:
        # right turns cut towards the kerb, left turns across the centre line.
        side = -1.0 if cross < 0 else 1.0
        budget = min(widths[k - 1] / 2 + side * o_in, widths[k] / 2 + side * o_out)
        budget = max(budget - _EDGE_MARGIN_M, 0.05)
        limit = 0.45 * min(seg_len[k - 1], seg_len[k])
        miter = _intersect(a_in, d_in, a_out, d_out)
        far = miter is None or max(abs(float((miter - p[k]) @ d_in)), abs(float((miter - p[k]) @ d_out))) > limit
        if far and abs(o_in - o_out) > 1e-6 and float(d_in @ d_out) > np.cos(np.deg2rad(30.0)):
            # Nearly straight on with a lane shift (a width change): a short ramp between the lanes.
            ramp = min(5.0, limit)
            r0, r1 = a_in - ramp * d_in, a_out + ramp * d_out
            piece.add_line(r0, _unit(r1 - r0, d_out), k, budget, r0)
            piece.add_line(a_out, d_out, k, budget, r1)
        elif far and cross > 0:
            # A sharp left turn between short segments: the outer miter would stick out; bevel it.
            piece.add_line(a_in, _unit(a_out - a_in, d_out), k, budget, a_in)
            piece.add_line(a_out, d_out, k, budget, a_out)
        else:  # miter (inner joins that run backwards are resolved by the piece)
            piece.add_line(a_out, d_out, k, budget, (a_in + a_out) / 2)
    close(p[-1] + offsets[-1] * right[-1])

    return _fillet(np.array(pts), np.array(seg), np.array(fillet), limits.turn_radius_m)


def _fillet(verts: np.ndarray, seg: np.ndarray, budget: np.ndarray, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Round each corner with a budget > 0 by a circular arc.

    The radius is at most ``radius_m`` and keeps the arc's cut into the inside of the corner,
    ``r (1 - cos(turn / 2))``, within the budget. Each segment's length is shared between the
    tangent lengths its two corners want, in proportion, so that a sharp corner next to a gentle
    one may use most of the segment between them.
    """
    v = np.diff(verts, axis=0)
    length = np.linalg.norm(v, axis=1)
    u = v / np.maximum(length, 1e-12)[:, None]
    n = len(verts)
    turn = np.zeros(n)
    turn[1:-1] = np.arccos(np.clip(np.sum(u[:-1] * u[1:], axis=1), -1.0, 1.0))
    active = (budget > 0) & (turn > np.deg2rad(0.5))
    active[[0, -1]] = False
    active[1:-1] &= (length[:-1] > 1e-6) & (length[1:] > 1e-6)
    half = np.tan(turn / 2)
    r_want = np.where(active, np.minimum(radius_m, budget / np.maximum(1.0 - np.cos(turn / 2), 1e-9)), 0.0)
    want = r_want * half  # tangent length each corner would like
    pair = want[:-1] + want[1:]
    share = np.minimum(1.0, length / np.maximum(pair, 1e-12))  # per segment
    # Corner i takes want[i] * share of the segment before it and of the segment after it.
    tangent = want * np.minimum(np.concatenate([[1.0], share]), np.concatenate([share, [1.0]]))
    out, out_seg = [verts[0]], [seg[0]]
    for i in range(1, n - 1):
        if not active[i] or tangent[i] <= 1e-9:
            out.append(verts[i])
            out_seg.append(seg[i])
            continue
        r = tangent[i] / half[i]
        v_in, v_out = u[i - 1], u[i]
        t0, t1 = verts[i] - tangent[i] * v_in, verts[i] + tangent[i] * v_out
        left = v_in[0] * v_out[1] - v_in[1] * v_out[0] > 0
        n_in = np.array([-v_in[1], v_in[0]]) if left else np.array([v_in[1], -v_in[0]])  # towards the centre
        centre = t0 + r * n_in
        a0 = np.arctan2(*(t0 - centre)[::-1])
        arc = _arc(centre, r, a0, a0 + (turn[i] if left else -turn[i]))
        out += [t0, *arc, t1]
        out_seg += [seg[i - 1]] * (1 + len(arc)) + [seg[i]]
    out.append(verts[-1])
    out_seg.append(seg[-1])
    return np.array(out), np.array(out_seg)


def _densify(poly: np.ndarray, ds: float, *extra: np.ndarray) -> tuple[np.ndarray, ...]:
    """Points every ``ds`` metres along a polyline; ``extra`` per-vertex labels carried forward."""
    keep = np.concatenate([[True], np.linalg.norm(np.diff(poly, axis=0), axis=1) > 1e-9])
    poly = poly[keep]
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(poly, axis=0), axis=1))])
    s_new = np.arange(0.0, s[-1], ds)
    pts = np.stack([np.interp(s_new, s, poly[:, 0]), np.interp(s_new, s, poly[:, 1])], axis=1)
    idx = np.searchsorted(s, s_new, side="right") - 1
    return (pts, *(e[keep][idx] for e in extra))


def _running_limit(v2: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """``out[i] = min(v2[i], out[i-1] + gain[i-1])``, vectorized: the accelerate-forward pass.

    Unrolled, ``out[i] = min_j (v2[j] + G[i] - G[j])`` with ``G`` the running sum of ``gain``.
    """
    g = np.concatenate([[0.0], np.cumsum(gain)])
    return g + np.minimum.accumulate(v2 - g)


def _box_smooth(pts: np.ndarray, n: int) -> np.ndarray:
    """Moving average over ``n`` points; the ends are extended straight so they do not shrink."""
    if n < 2 or len(pts) < 3:
        return pts
    h = n // 2
    head = pts[0] + (pts[0] - pts[1]) * np.arange(h, 0, -1)[:, None]
    tail = pts[-1] + (pts[-1] - pts[-2]) * np.arange(1, h + 1)[:, None]
    ext = np.concatenate([head, pts, tail])
    c = np.cumsum(np.concatenate([np.zeros((1, 2)), ext]), axis=0)
    win = 2 * h + 1
    return (c[win:] - c[:-win]) / win


def drive(
    roads: RoadNetwork,
    seed: int | np.random.Generator,
    duration_s: float,
    dt: float = 0.1,
    speed_mps: tuple[float, float] = (8.0, 14.0),
    start_node: int | None = None,
    lane_offset_m: float | None = None,
    area: World | Bounds | None = None,
    margin_m: float = 1.0,
    limits: VehicleLimits = VehicleLimits(),
) -> Trajectory:
    """A vehicle driving the road graph for ``duration_s`` seconds, sampled every ``dt``.

    It starts at ``start_node`` (default: a random through node of the largest connected part of
    the network) already moving, picks a random way at each intersection (mostly straight on;
    no U-turn unless at a dead end, no hairpin unless there is no other way), cruises at a speed
    drawn from ``speed_mps`` for each stretch between intersections, slows for corners within
    ``limits``, and keeps to the centre of the right lane: ``lane_offset_m`` right of the centre
    line (default :func:`right_lane_offset` of each road's width).

    Pass ``area`` (the world, or its bounds) to keep the car ``margin_m`` inside it: roads of the
    synthetic world run to its edge, so roads whose lanes leave the area and the stubs cut by it
    are not driven. Without ``area`` the car drives every edge of ``roads``.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lo, hi = float(speed_mps[0]), float(speed_mps[1])
    if not 0 < lo <= hi:
        raise ValueError(f"speed_mps must be a range (low, high) with 0 < low <= high, got {speed_mps}")
    if not (duration_s > 0 and dt > 0):
        raise ValueError(f"duration_s and dt must be positive, got {duration_s} and {dt}")
    if lane_offset_m is not None and lane_offset_m < 0:
        raise ValueError(f"lane_offset_m must be >= 0 (metres right of the centre line), got {lane_offset_m}")
    nodes = np.asarray(roads.nodes, dtype=np.float64)
    edges = np.asarray(roads.edges, dtype=np.int64).reshape(-1, 2)
    lengths = np.linalg.norm(nodes[edges[:, 1]] - nodes[edges[:, 0]], axis=1) if len(edges) else np.zeros(0)
    usable = (edges[:, 0] != edges[:, 1]) & (lengths > 1e-3) if len(edges) else np.zeros(0, bool)
    if not np.any(usable):
        raise ValueError("the road network has no edges of non-zero length: nothing to drive on")
    if lane_offset_m is None and np.any(np.asarray(roads.width_m)[usable] <= 0):
        raise ValueError("road widths must be positive to place the right lane (or give lane_offset_m)")
    adj_sets: list[set[int]] = [set() for _ in range(len(nodes))]
    edge_of: dict[tuple[int, int], int] = {}
    for e in np.flatnonzero(usable):
        a, b = int(edges[e, 0]), int(edges[e, 1])
        adj_sets[a].add(b)
        adj_sets[b].add(a)
        edge_of.setdefault((min(a, b), max(a, b)), int(e))
    inside = None
    if area is not None:
        e0, n0, e1, n1 = _bounds_of(area)
        inside = (e0 + margin_m, n0 + margin_m, e1 - margin_m, n1 - margin_m)
        width = np.asarray(roads.width_m, dtype=np.float64)
        lane = right_lane_offset(width) if lane_offset_m is None else np.full(len(width), float(lane_offset_m))
        offset_of = {k: float(lane[e]) for k, e in edge_of.items()}
        _prune_cut_ends(nodes, adj_sets, offset_of, inside)
    adj = [sorted(s) for s in adj_sets]
    if start_node is None:
        label = _components(adj)
        roots, counts = np.unique(label[label >= 0], return_counts=True)
        biggest = roots[np.argmax(counts)]
        candidates = np.flatnonzero(label == biggest)
        through = candidates[[len(adj[c]) >= 2 for c in candidates]]  # not a dead end at the world's edge
        start_node = int(rng.choice(through if len(through) else candidates))
    elif not (0 <= start_node < len(nodes)) or not adj[start_node]:
        raise ValueError(
            f"start_node {start_node} is not a node with a road (network has {len(nodes)} nodes; "
            "roads too close to the area's edge are not driven)"
        )

    # Corner cutting shortens the lane path a little against the centre line: ask for a margin.
    route = _route(roads, adj, rng, int(start_node), 1.2 * duration_s * hi + 200.0)
    seg_edges = np.array([edge_of[(min(a, b), max(a, b))] for a, b in itertools.pairwise(route)])
    widths = np.asarray(roads.width_m, dtype=np.float64)[seg_edges]
    offsets = right_lane_offset(widths) if lane_offset_m is None else np.full(len(seg_edges), float(lane_offset_m))

    poly, seg_of_vertex = _lane_polyline(roads, route, offsets, widths, limits, inside)
    # Cruise speed per stretch between intersections (a new choice where the node degree is not 2).
    degree = np.array([len(a) for a in adj])
    stretch = np.cumsum(np.concatenate([[1], degree[route[1:-1]] != 2])) - 1
    cruise_seg = rng.uniform(lo, hi, int(stretch[-1]) + 1)[stretch]

    pts, seg_of_point = _densify(poly, _DS, seg_of_vertex)
    n_smooth = round(_SMOOTH_M / _DS) | 1
    pts = _box_smooth(_box_smooth(pts, n_smooth), n_smooth)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    # Heading from the path tangent, curvature from its derivative.
    de, dn = np.gradient(pts[:, 0], s), np.gradient(pts[:, 1], s)
    heading = np.unwrap(np.arctan2(de, dn))  # radians clockwise from grid north, unwrapped
    kappa = np.gradient(heading, s)  # rad/m, positive turning right

    ak = np.maximum(np.abs(kappa), 1e-9)
    v = np.minimum.reduce(
        [cruise_seg[seg_of_point], np.sqrt(limits.lat_accel_mps2 / ak), np.deg2rad(limits.yaw_rate_dps) / ak]
    )
    v = np.maximum(v, limits.min_speed_mps)
    # Acceleration limits: accelerate forwards, and brake early enough (the same pass run backwards).
    ds2 = 2 * np.diff(s)
    v2 = _running_limit(v**2, limits.accel_mps2 * ds2)
    v2 = _running_limit(v2[::-1], limits.decel_mps2 * ds2[::-1])[::-1]
    v = np.sqrt(v2)
    t_dense = np.concatenate([[0.0], np.cumsum(np.diff(s) * 2 / (v[1:] + v[:-1]))])
    n = int(np.floor(duration_s / dt + 1e-9)) + 1
    times = np.arange(n) * dt
    if t_dense[-1] < times[-1]:  # cannot happen (speeds never exceed the high end), kept as a guard
        raise RuntimeError("route too short for the requested duration")
    s_t = np.interp(times, t_dense, s)
    speed = np.interp(s_t, s, v)
    return Trajectory(
        t=times,
        east=np.interp(s_t, s, pts[:, 0]),
        north=np.interp(s_t, s, pts[:, 1]),
        heading_deg=np.rad2deg(np.interp(s_t, s, heading)),
        speed_mps=speed,
        yaw_rate_dps=np.rad2deg(np.interp(s_t, s, kappa)) * speed,
        altitude_m=np.zeros(n),
        pitch_deg=np.zeros(n),
        roll_deg=np.zeros(n),
        kind="ground",
    )


# ================================================================================================
# UAV


def _bounds_of(area: World | Bounds) -> Bounds:
    if isinstance(area, World):
        return area.bounds()
    b = tuple(float(v) for v in area)
    if len(b) != 4 or not (b[2] > b[0] and b[3] > b[1]):
        raise ValueError(f"bounds must be (east_min, north_min, east_max, north_max) with max > min, got {area}")
    return b  # type: ignore[return-value]


def _lawnmower(box: Bounds, spacing: float) -> np.ndarray:
    """Boustrophedon waypoints: lines along the longer side of the box, ``spacing`` apart."""
    e0, n0, e1, n1 = box
    along_east = (e1 - e0) >= (n1 - n0)
    across = np.arange(n0 if along_east else e0, (n1 if along_east else e1) + 1e-6, spacing)
    wps = []
    for i, c in enumerate(across):
        a, b = (e0, e1) if along_east else (n0, n1)
        if i % 2:
            a, b = b, a
        wps += [(a, c), (b, c)] if along_east else [(c, a), (c, b)]
    return np.array(wps, dtype=np.float64)


class _Legs:
    """Straight legs between successive waypoints, and when to turn onto the next one."""

    def __init__(self, start: np.ndarray, waypoints: Iterator[np.ndarray], radius: float) -> None:
        self.waypoints, self.radius = waypoints, radius
        self.a, self.b, self.c = start, next(waypoints), next(waypoints)
        self._update()

    def _update(self) -> None:
        d = self.b - self.a
        self.length = float(np.hypot(*d))
        self.ue, self.un = float(d[0]) / self.length, float(d[1]) / self.length
        self.bearing = math.atan2(self.ue, self.un)
        nxt = math.atan2(*(self.c - self.b))
        turn = abs((nxt - self.bearing + math.pi) % (2 * math.pi) - math.pi)
        # Turn early by the fillet's tangent length (at most one radius for turns of 90 degrees and more).
        self.switch_m = self.radius * min(math.tan(min(turn, math.radians(179.0)) / 2), 1.0)

    def advance(self) -> None:
        self.a, self.b, self.c = self.b, self.c, next(self.waypoints)
        self._update()

    def track(self, e: float, n: float) -> tuple[float, float]:
        """Cross-track error (positive right of the leg) and along-track distance left to its end."""
        re, rn = e - float(self.a[0]), n - float(self.a[1])
        return re * self.un - rn * self.ue, self.length - (re * self.ue + rn * self.un)


def fly(
    area: World | Bounds,
    seed: int | np.random.Generator,
    duration_s: float,
    dt: float = 0.1,
    altitude_m: float = 120.0,
    speed_mps: float = 12.0,
    pattern: str = "waypoints",
    margin_m: float = 20.0,
    max_bank_deg: float = 25.0,
    line_spacing_m: float | None = None,
    altitude_jitter_m: float = 1.5,
) -> Trajectory:
    """A UAV flying over ``area`` (a world or (east_min, north_min, east_max, north_max)).

    It follows straight legs between waypoints (``pattern='waypoints'``: random ones;
    ``'lawnmower'``: survey lines along the longer side, ``line_spacing_m`` apart, flown back and
    forth) with a vector-field line follower, turning at most at ``max_bank_deg`` (coordinated
    turns, radius ``v^2 / (g tan bank)``). The whole flight stays at least ``margin_m`` inside the
    area. Altitude varies smoothly around ``altitude_m`` (std ``altitude_jitter_m``); pitch is the
    flight-path angle.
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if pattern not in ("waypoints", "lawnmower"):
        raise ValueError(f"pattern must be 'waypoints' or 'lawnmower', got {pattern!r}")
    if not (duration_s > 0 and dt > 0 and speed_mps > 0 and altitude_m > 0):
        raise ValueError("duration_s, dt, speed_mps and altitude_m must be positive")
    if not 5.0 <= max_bank_deg <= 60.0:
        raise ValueError(f"max_bank_deg must be in [5, 60], got {max_bank_deg}")
    e0, n0, e1, n1 = _bounds_of(area)
    v = float(speed_mps)
    omega_max = G * np.tan(np.deg2rad(max_bank_deg)) / v  # rad/s
    radius = v / omega_max
    inset = margin_m + 2.2 * radius  # worst case: a 180-degree turn swings 2r off the leg
    box = (e0 + inset, n0 + inset, e1 - inset, n1 - inset)
    if box[2] - box[0] < 3 * radius or box[3] - box[1] < 3 * radius:
        raise ValueError(
            f"area {e1 - e0:.0f} x {n1 - n0:.0f} m is too small to fly at {v:g} m/s (turn radius {radius:.0f} m) "
            f"with a {margin_m:g} m margin: it needs at least {2 * inset + 3 * radius:.0f} m a side"
        )
    if pattern == "lawnmower":
        spacing = line_spacing_m if line_spacing_m is not None else max(2.5 * radius, altitude_m)
        if spacing <= 0:
            raise ValueError(f"line_spacing_m must be positive, got {spacing}")
        survey = _lawnmower(box, spacing)
        if rng.random() < 0.5:  # start from either end of the survey (the seed picks)
            survey = survey[::-1]
        survey = np.concatenate([survey, survey[::-1][1:]])  # there and back, repeated as long as needed
        start = survey[0]
        waypoints = (survey[i % (len(survey) - 1)] for i in itertools.count(1))
    else:
        start = rng.uniform(box[:2], box[2:])

        def random_waypoints() -> Iterator[np.ndarray]:
            last = start
            while True:
                for _ in range(100):  # legs at least 3 turn radii long, so that turns can complete
                    w = rng.uniform(box[:2], box[2:])
                    if np.linalg.norm(w - last) >= 3 * radius:
                        break
                last = w
                yield w

        waypoints = random_waypoints()

    legs = _Legs(np.asarray(start, dtype=np.float64), waypoints, radius)
    sub = int(np.ceil(dt / 0.05))  # integrate at <= 50 ms
    h = dt / sub
    n = int(np.floor(duration_s / dt + 1e-9)) + 1
    pe, pn = float(start[0]), float(start[1])
    chi = legs.bearing  # radians clockwise from grid north
    omega = 0.0
    chi_inf, k_path, k_chi = math.radians(60.0), 1.0 / radius, 0.8
    lag = 1.0 - math.exp(-h / 0.6)  # roll dynamics (0.6 s): bank, hence yaw rate, changes smoothly
    east, north, heading, yaw = (np.empty(n) for _ in range(4))
    for i in range(n):
        east[i], north[i], heading[i], yaw[i] = pe, pn, chi, omega
        for _ in range(sub):
            e_y, along_left = legs.track(pe, pn)
            if along_left <= legs.switch_m:
                legs.advance()
                e_y, along_left = legs.track(pe, pn)
            chi_cmd = legs.bearing - chi_inf * 2 / math.pi * math.atan(k_path * e_y)  # vector field
            err = (chi_cmd - chi + math.pi) % (2 * math.pi) - math.pi
            omega += (min(max(k_chi * err, -omega_max), omega_max) - omega) * lag
            chi_mid = chi + omega * h / 2
            pe += v * h * math.sin(chi_mid)
            pn += v * h * math.cos(chi_mid)
            chi += omega * h
    times = np.arange(n) * dt
    # Smooth altitude wander: a few random sinusoids (periods 30..180 s), scaled to the wanted std.
    periods = rng.uniform(30.0, 180.0, 4)
    phases = rng.uniform(0, 2 * np.pi, 4)
    amps = rng.uniform(0.5, 1.0, 4)
    amps *= altitude_jitter_m / np.sqrt(np.sum(amps**2) / 2)
    w = 2 * np.pi / periods
    alt = altitude_m + np.sum(amps * np.sin(np.outer(times, w) + phases), axis=1)
    climb = np.sum(amps * w * np.cos(np.outer(times, w) + phases), axis=1)
    return Trajectory(
        t=times,
        east=east,
        north=north,
        heading_deg=np.rad2deg(heading),
        speed_mps=np.full(n, v),
        yaw_rate_dps=np.rad2deg(yaw),
        altitude_m=alt,
        pitch_deg=np.rad2deg(np.arctan2(climb, v)),
        roll_deg=np.rad2deg(np.arctan(v * yaw / G)),
        kind="uav",
    )
