"""Hand-made road networks and trajectories with known geometry, for trajectory and sensor tests."""

from __future__ import annotations

import numpy as np

from edge_geoloc.world.scene import RoadNetwork
from edge_geoloc.world.trajectory import Trajectory

SPACING_M = 100.0
MAIN_W, STREET_W, LANE_W = 9.0, 6.0, 4.0


def grid_network(origin: tuple[float, float] = (0.0, 0.0)) -> RoadNetwork:
    """A 4 x 4 grid of streets 100 m apart (the second row a wider main road), a diagonal lane
    from the south-west corner in two edges (a bend), and a 61 m dead-end spur to the east."""
    xs = np.arange(4) * SPACING_M
    nodes = [(x, y) for y in xs for x in xs]

    def idx(i: int, j: int) -> int:
        return j * 4 + i

    edges, widths, kinds = [], [], []
    for j in range(4):
        for i in range(4):
            if i < 3:
                edges.append((idx(i, j), idx(i + 1, j)))
                widths.append(MAIN_W if j == 1 else STREET_W)
                kinds.append(0 if j == 1 else 1)
            if j < 3:
                edges.append((idx(i, j), idx(i, j + 1)))
                widths.append(STREET_W)
                kinds.append(1)
    nodes.append((50.0, 45.0))
    edges += [(idx(0, 0), 16), (16, idx(1, 1))]
    widths += [LANE_W, LANE_W]
    kinds += [2, 2]
    nodes.append((360.0, 210.0))
    edges.append((idx(3, 2), 17))
    widths.append(LANE_W)
    kinds.append(2)
    return RoadNetwork(
        nodes=np.array(nodes) + np.asarray(origin),
        edges=np.array(edges, np.int64),
        width_m=np.array(widths, np.float32),
        kind=np.array(kinds, np.uint8),
    )


def single_road(length_m: float = 80.0, width_m: float = 6.0) -> RoadNetwork:
    """One straight road due east: both ends are dead ends."""
    return RoadNetwork(
        nodes=np.array([[0.0, 0.0], [length_m, 0.0]]),
        edges=np.array([[0, 1]], np.int64),
        width_m=np.array([width_m], np.float32),
        kind=np.array([1], np.uint8),
    )


def edge_distances(roads: RoadNetwork, east: np.ndarray, north: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per sample and edge: unsigned distance to the centre-line segment, and the signed lateral
    offset (positive right of the edge's a->b direction) of the closest point."""
    p = np.stack([east, north], axis=1)[:, None, :]
    a = roads.nodes[roads.edges[:, 0]][None]
    b = roads.nodes[roads.edges[:, 1]][None]
    ab = b - a
    t = np.clip(np.sum((p - a) * ab, -1) / np.sum(ab * ab, -1), 0.0, 1.0)
    closest = a + t[..., None] * ab
    dist = np.linalg.norm(p - closest, axis=-1)
    u = ab / np.linalg.norm(ab, axis=-1, keepdims=True)
    lateral = (p - a)[..., 0] * u[..., 1] - (p - a)[..., 1] * u[..., 0]
    return dist, lateral


def straight_line(
    duration_s: float, dt: float, speed_mps: float = 10.0, heading_deg: float = 30.0, start=(500_000.0, 5_200_000.0)
) -> Trajectory:
    """Constant speed and heading from ``start`` (map CRS metres): sensor statistics without turns."""
    n = round(duration_s / dt) + 1
    t = np.arange(n) * dt
    h = np.deg2rad(heading_deg)
    zeros = np.zeros(n)
    return Trajectory(
        t=t,
        east=start[0] + speed_mps * t * np.sin(h),
        north=start[1] + speed_mps * t * np.cos(h),
        heading_deg=np.full(n, heading_deg),
        speed_mps=np.full(n, speed_mps),
        yaw_rate_dps=zeros,
        altitude_m=zeros,
        pitch_deg=zeros,
        roll_deg=zeros,
    )
