"""Trajectories: a vehicle on the road graph, a UAV over the area, and the Trajectory helpers."""

from __future__ import annotations

import numpy as np
import pytest
from roadkit import edge_distances, grid_network, single_road, straight_line

from edge_geoloc.geo import MapCRS, angle_diff_deg
from edge_geoloc.world.scene import RoadNetwork
from edge_geoloc.world.trajectory import G, Trajectory, VehicleLimits, drive, fly

LIMITS = VehicleLimits()


@pytest.fixture(scope="module")
def grid():
    return grid_network()


@pytest.fixture(scope="module")
def grid_drive(grid):
    return drive(grid, seed=3, duration_s=400.0, dt=0.1)


def _velocity_heading(traj: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Direction of motion between samples, and the heading at the middle of each step."""
    motion = np.rad2deg(np.arctan2(np.diff(traj.east), np.diff(traj.north)))
    mid = traj.heading_deg[:-1] + angle_diff_deg(traj.heading_deg[1:], traj.heading_deg[:-1]) / 2
    return motion, mid


# ---- ground vehicle --------------------------------------------------------------------------


def test_drive_keeps_to_the_right_lane_and_on_the_carriageway(grid, grid_drive):
    tr = grid_drive
    dist, lateral = edge_distances(grid, tr.east, tr.north)
    # Everywhere (corners and U-turns included) the car is on some road's carriageway.
    assert np.max(np.min(dist - grid.width_m[None] / 2, axis=1)) <= 0.0
    # Away from junctions it is exactly on the centre of the right-hand lane: a quarter width
    # right of the centre line, in its direction of travel.
    node_dist = np.min(np.linalg.norm(np.stack([tr.east, tr.north], 1)[:, None] - grid.nodes[None], axis=2), axis=1)
    far = node_dist > 15.0
    assert far.mean() > 0.5
    k = np.argmin(dist, axis=1)[far]
    rows = np.flatnonzero(far)
    edge_dir = grid.nodes[grid.edges[k, 1]] - grid.nodes[grid.edges[k, 0]]
    h = np.deg2rad(tr.heading_deg[far])
    along = np.sign(np.sin(h) * edge_dir[:, 0] + np.cos(h) * edge_dir[:, 1])
    right_of_travel = lateral[rows, k] * along
    np.testing.assert_allclose(right_of_travel, grid.width_m[k] / 4, atol=0.02)


def test_drive_visits_many_roads_and_turns_only_at_dead_ends(grid, grid_drive):
    tr = grid_drive
    dist, _ = edge_distances(grid, tr.east, tr.north)
    assert len(np.unique(np.argmin(dist, axis=1))) >= 8  # it does take turns
    # A heading reversal within 30 m of travel is a U-turn: only at the dead end (node 17).
    s = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(tr.east), np.diff(tr.north)))])
    unwrapped = np.rad2deg(np.unwrap(np.deg2rad(tr.heading_deg)))
    ahead = np.searchsorted(s, s + 30.0).clip(max=len(s) - 1)
    reversal = np.abs(unwrapped[ahead] - unwrapped) > 150.0
    where = np.stack([tr.east[reversal], tr.north[reversal]], 1)
    if len(where):
        assert np.max(np.linalg.norm(where - grid.nodes[17], axis=1)) < 35.0


def test_drive_heading_is_continuous_and_along_the_motion(grid_drive):
    tr = grid_drive
    step = np.abs(angle_diff_deg(tr.heading_deg[1:], tr.heading_deg[:-1]))
    assert step.max() <= LIMITS.yaw_rate_dps * tr.dt * 1.05
    motion, mid = _velocity_heading(tr)
    moving = tr.speed_mps[:-1] > 1.0
    assert np.max(np.abs(angle_diff_deg(motion, mid))[moving]) < 0.5
    # Yaw rate is the time derivative of heading.
    rate = angle_diff_deg(tr.heading_deg[1:], tr.heading_deg[:-1]) / tr.dt
    np.testing.assert_allclose(rate, (tr.yaw_rate_dps[1:] + tr.yaw_rate_dps[:-1]) / 2, atol=1.5)


def test_drive_speed_yaw_rate_and_acceleration_stay_within_limits(grid_drive):
    tr = grid_drive
    assert tr.speed_mps.max() <= 14.0 + 1e-9
    assert tr.speed_mps.min() >= LIMITS.min_speed_mps - 1e-9
    assert 8.0 <= np.median(tr.speed_mps) <= 14.0  # cruising most of the time
    assert np.abs(tr.yaw_rate_dps).max() <= LIMITS.yaw_rate_dps * 1.01
    lateral = np.deg2rad(np.abs(tr.yaw_rate_dps)) * tr.speed_mps
    assert lateral.max() <= LIMITS.lat_accel_mps2 * 1.01
    accel = np.diff(tr.speed_mps) / tr.dt
    assert accel.max() <= LIMITS.accel_mps2 * 1.01 and accel.min() >= -LIMITS.decel_mps2 * 1.01
    # It slows down for corners: the slowest samples are turning, the fastest go straight.
    slow = tr.speed_mps < 5.0
    assert slow.any() and np.median(np.abs(tr.yaw_rate_dps[slow])) > 10.0
    assert np.median(np.abs(tr.yaw_rate_dps[tr.speed_mps > 12.0])) < 1.0
    # Path length agrees with the integrated speed.
    assert tr.length_m == pytest.approx(np.sum((tr.speed_mps[1:] + tr.speed_mps[:-1]) / 2 * tr.dt), rel=2e-3)


def test_drive_is_deterministic_by_seed(grid):
    a = drive(grid, seed=5, duration_s=60.0)
    b = drive(grid, seed=5, duration_s=60.0)
    c = drive(grid, seed=6, duration_s=60.0)
    np.testing.assert_array_equal(a.east, b.east)
    np.testing.assert_array_equal(a.heading_deg, b.heading_deg)
    assert not np.allclose(a.east, c.east)
    assert len(a) == 601 and a.t[-1] == pytest.approx(60.0)


def test_drive_turns_around_at_dead_ends_without_passing_them():
    road = single_road(80.0, 6.0)
    tr = drive(road, seed=0, duration_s=120.0, start_node=0)
    assert tr.east.min() >= -1e-6 and tr.east.max() <= 80.0 + 1e-6  # never beyond the road's ends
    assert np.abs(tr.north).max() <= 3.0  # on the carriageway
    # Eastbound in the southern lane, westbound in the northern one: right-hand traffic.
    east_bound = np.abs(angle_diff_deg(tr.heading_deg, 90.0)) < 0.01
    west_bound = np.abs(angle_diff_deg(tr.heading_deg, 270.0)) < 0.01
    assert east_bound.any() and west_bound.any()
    np.testing.assert_allclose(tr.north[east_bound], -1.5, atol=0.05)
    np.testing.assert_allclose(tr.north[west_bound], 1.5, atol=0.05)
    assert np.abs(tr.yaw_rate_dps).max() <= LIMITS.yaw_rate_dps * 1.01


def test_drive_lane_offset_and_start_node(grid):
    tr = drive(grid, seed=1, duration_s=30.0, start_node=5, lane_offset_m=0.0)
    assert np.hypot(tr.east[0] - grid.nodes[5, 0], tr.north[0] - grid.nodes[5, 1]) < 1e-6
    dist, _ = edge_distances(grid, tr.east, tr.north)
    node_dist = np.min(np.linalg.norm(np.stack([tr.east, tr.north], 1)[:, None] - grid.nodes[None], axis=2), axis=1)
    assert np.max(np.min(dist, axis=1)[node_dist > 15.0]) < 0.02  # on the centre line


def test_drive_rejects_bad_input(grid):
    empty = RoadNetwork(np.zeros((0, 2)), np.zeros((0, 2), np.int64), np.zeros(0, np.float32), np.zeros(0, np.uint8))
    with pytest.raises(ValueError, match="no edges"):
        drive(empty, 0, 10.0)
    with pytest.raises(ValueError, match="speed_mps"):
        drive(grid, 0, 10.0, speed_mps=(10.0, 5.0))
    with pytest.raises(ValueError, match="start_node 99"):
        drive(grid, 0, 10.0, start_node=99)
    with pytest.raises(ValueError, match="duration_s and dt"):
        drive(grid, 0, -1.0)


# ---- UAV ---------------------------------------------------------------------------------------

BOX = (1000.0, 2000.0, 2000.0, 2800.0)


@pytest.mark.parametrize("pattern", ["waypoints", "lawnmower"])
def test_fly_stays_inside_with_coordinated_turns(pattern):
    tr = fly(BOX, seed=2, duration_s=400.0, dt=0.1, altitude_m=120.0, speed_mps=12.0, pattern=pattern, margin_m=20.0)
    assert tr.kind == "uav"
    assert tr.east.min() >= BOX[0] + 20 and tr.east.max() <= BOX[2] - 20
    assert tr.north.min() >= BOX[1] + 20 and tr.north.max() <= BOX[3] - 20
    # Coordinated turns: tan(roll) = v * yaw_rate / g, bank never beyond the limit.
    np.testing.assert_allclose(
        np.tan(np.deg2rad(tr.roll_deg)), tr.speed_mps * np.deg2rad(tr.yaw_rate_dps) / G, atol=1e-9
    )
    assert np.abs(tr.roll_deg).max() <= 25.0 + 1e-6 and np.abs(tr.roll_deg).max() > 20.0
    motion, mid = _velocity_heading(tr)
    assert np.max(np.abs(angle_diff_deg(motion, mid))) < 0.2
    step = np.abs(angle_diff_deg(tr.heading_deg[1:], tr.heading_deg[:-1]))
    assert step.max() <= np.rad2deg(G * np.tan(np.deg2rad(25.0)) / 12.0) * tr.dt * 1.01
    # Altitude wanders smoothly around the set altitude; pitch is the flight-path angle.
    assert np.abs(tr.altitude_m - 120.0).max() < 6.0 and tr.altitude_m.std() > 0.3
    climb = np.diff(tr.altitude_m) / tr.dt
    pitch_mid = np.rad2deg(np.arctan2(climb, 12.0))
    np.testing.assert_allclose(pitch_mid, (tr.pitch_deg[1:] + tr.pitch_deg[:-1]) / 2, atol=0.02)


def test_lawnmower_flies_parallel_lines_at_the_spacing():
    tr = fly(BOX, seed=0, duration_s=600.0, pattern="lawnmower", line_spacing_m=150.0, altitude_jitter_m=0.0)
    level = np.abs(tr.roll_deg) < 0.5
    east_west = level & (np.abs(np.sin(np.deg2rad(tr.heading_deg))) > 0.9999)  # the box is wider than tall
    assert east_west.mean() > 0.6
    lines = np.unique(np.round(tr.north[east_west], 0))
    gaps = np.diff(np.unique(np.round(lines / 5) * 5))
    assert np.all(np.abs(gaps - 150.0) < 6.0)
    np.testing.assert_allclose(tr.altitude_m, 120.0)


def test_fly_is_deterministic_and_rejects_small_areas():
    a = fly(BOX, seed=4, duration_s=60.0)
    b = fly(BOX, seed=4, duration_s=60.0)
    np.testing.assert_array_equal(a.east, b.east)
    assert not np.allclose(a.east, fly(BOX, seed=5, duration_s=60.0).east)
    with pytest.raises(ValueError, match="too small"):
        fly((0.0, 0.0, 150.0, 150.0), seed=0, duration_s=10.0)
    with pytest.raises(ValueError, match="pattern"):
        fly(BOX, seed=0, duration_s=10.0, pattern="spiral")


# ---- the Trajectory type -----------------------------------------------------------------------


def test_interpolation_wraps_headings_and_rejects_times_outside():
    tr = straight_line(10.0, 1.0, heading_deg=0.0)
    tr.heading_deg[:] = np.where(tr.t < 5, 358.0, 2.0)
    pose = tr.at(4.5)
    assert pose.heading_deg == pytest.approx(0.0, abs=1e-9)
    assert pose.east == pytest.approx(tr.east[0])
    assert pose.north == pytest.approx(tr.north[0] + 45.0)
    assert tr.at(4.75).heading_deg == pytest.approx(1.0)
    assert tr.at(4.25).heading_deg == pytest.approx(359.0)
    with pytest.raises(ValueError, match="outside the trajectory"):
        tr.at(10.5)


def test_latlon_and_true_heading_use_the_map_crs():
    # 3 degrees east of the UTM zone's central meridian at 60 N: convergence of about 2.6 degrees.
    crs = MapCRS.for_area(60.0, 9.0)
    east, north = crs.to_en(60.0, 12.0)
    tr = straight_line(10.0, 1.0, heading_deg=0.0, start=(float(east), float(north)))
    lat, lon = tr.latlon(crs)
    assert lat[0] == pytest.approx(60.0, abs=1e-9) and lon[0] == pytest.approx(12.0, abs=1e-9)
    true = tr.true_heading(crs)
    expected = crs.grid_to_true_heading(0.0, lat, lon)
    np.testing.assert_allclose(true, expected)
    assert 2.0 < true[0] < 3.0


def test_slicing_between_resample_and_save(tmp_path):
    tr = straight_line(10.0, 0.5)
    part = tr[4:10]
    assert isinstance(part, Trajectory) and len(part) == 6 and part.t[0] == pytest.approx(2.0)
    assert tr[::2].dt == pytest.approx(1.0)
    assert tr[3].east == tr.east[3]
    win = tr.between(2.0, 4.0)
    assert win.t[0] == pytest.approx(2.0) and win.t[-1] == pytest.approx(4.0)
    assert tr.length_m == pytest.approx(100.0)
    odd = tr.resample(np.array([0.0, 0.3, 2.0]))
    assert not odd.fixed_dt and odd.north[1] == pytest.approx(tr.north[0] + 3.0 * np.cos(np.deg2rad(30)))
    tr.save(tmp_path / "t.npz")
    back = Trajectory.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.east, tr.east)
    assert back.kind == "ground"


def test_trajectory_validation():
    tr = straight_line(3.0, 1.0)
    with pytest.raises(ValueError, match="fixed dt"):
        Trajectory(**{**_arrays(tr), "t": np.array([0.0, 1.0, 3.0, 4.0])})
    with pytest.raises(ValueError, match="NaN"):
        Trajectory(**{**_arrays(tr), "east": np.array([0.0, np.nan, 1.0, 2.0])})
    with pytest.raises(ValueError, match="shape"):
        Trajectory(**{**_arrays(tr), "north": np.zeros(3)})
    wrapped = Trajectory(**{**_arrays(tr), "heading_deg": np.array([-90.0, 360.0, 725.0, 0.0])})
    np.testing.assert_allclose(wrapped.heading_deg, [270.0, 0.0, 5.0, 0.0])


def _arrays(tr: Trajectory) -> dict:
    names = ("t", "east", "north", "heading_deg", "speed_mps", "yaw_rate_dps", "altitude_m", "pitch_deg", "roll_deg")
    return {n: getattr(tr, n).copy() for n in names}


# ---- a generated world (when the layout generator is there) -------------------------------------


def test_drive_on_a_generated_world():
    layout = pytest.importorskip("edge_geoloc.world.layout")
    if not hasattr(layout, "generate_world"):
        pytest.skip("edge_geoloc.world.layout has no generate_world yet")
    from edge_geoloc.world.region import Region

    region = Region(name="traj-test", center_lat=47.0, center_lon=9.0, size_m=400.0, style="suburb", seed=3)
    world = layout.generate_world(region)
    roads = world.roads
    tr = drive(roads, seed=0, duration_s=120.0, area=world)
    dist, _ = edge_distances(roads, tr.east, tr.north)
    assert np.max(np.min(dist - roads.width_m[None] / 2, axis=1)) <= 0.0
    assert np.all(world.contains(tr.east, tr.north))
    assert np.abs(tr.yaw_rate_dps).max() <= LIMITS.yaw_rate_dps * 1.01
    uav = fly(world, seed=0, duration_s=60.0, speed_mps=10.0, margin_m=10.0)
    assert np.all(world.contains(uav.east, uav.north, margin_m=10.0))
