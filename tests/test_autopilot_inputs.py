"""The simulated autopilot's inputs to the UAV loop equal the CSV-driven run's, frame by frame.

The MAVLink-driven demo once missed the CSV demo's outage error because the simulated autopilot streamed a
second draw of the attitude noise (re-simulated at 50 Hz), and its speed reports went out before the attitude
sample of their tick (odometry stamped 20 ms early). Here the plan is played into a ground station's telemetry
log (pymavlink packs each message), replayed through the device's MAVLink link, and compared at every frame
with what the simulated logs give: attitude, height, GNSS fixes and odometry samples."""

from __future__ import annotations

import struct

import numpy as np
import pytest

pytest.importorskip("pymavlink")

from edge_geoloc.localize.mavlink import MavlinkConfig, MavlinkLink, pymavlink
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.sim.autopilot import AutopilotPlan
from edge_geoloc.sim.flight import AttitudeModel, gauss_markov, make_uav_scenario
from edge_geoloc.sim.gnss import SimulatedGps
from edge_geoloc.sim.scenario import Trip, load_world

LEAD_S = 2.0


def test_attitude_errors_are_slow_with_the_stated_sigma_and_white_without_a_time_constant():
    x = gauss_markov(np.random.default_rng(4), 200_000, 0.3, 0.02, 2.0)
    assert x.std() == pytest.approx(0.3, rel=0.05)
    lag = 50  # 1 s: correlation exp(-1 / 2)
    assert np.corrcoef(x[:-lag], x[lag:])[0, 1] == pytest.approx(np.exp(-0.5), abs=0.03)
    assert np.std(np.diff(x)) < 0.2 * 0.3  # neighbouring 50 Hz samples nearly agree (white: 1.41 x 0.3)
    white = gauss_markov(np.random.default_rng(4), 1000, 0.3, 0.02, 0.0)
    assert np.array_equal(white, np.random.default_rng(4).normal(0.0, 0.3, 1000))


def test_the_simulated_autopilot_sends_the_csv_runs_attitude_gnss_and_odometry(tmp_path):
    region = tmp_path / "town.yaml"
    region.write_text(
        "name: tiny-town\ncenter_lat: 45.487\ncenter_lon: -122.804\nsize_m: 600\nstyle: suburb\nseed: 7\nresolution_m: 0.5\n"
    )
    sc = make_uav_scenario(
        load_world(region), Trip(1, 30.0, (8.0, 20.0), 1.0), altitude_m=60.0, attitude=AttitudeModel(seed=5)
    )
    plan = AutopilotPlan.from_scenario(sc)
    mav = pymavlink().mavlink.MAVLink(None, srcSystem=plan.sysid, srcComponent=1)
    tlog = tmp_path / "flight.tlog"
    with open(tlog, "wb") as f:  # as a ground station records it: arrival time (us, big-endian), then the frame
        for t, kind, i in plan.schedule(LEAD_S):
            f.write(struct.pack(">Q", round((1.7e9 + t) * 1e6)) + plan.encode(mav, kind, i, t).pack(mav))
    link = MavlinkLink(str(tlog), sc.crs, config=MavlinkConfig(wait_heartbeat_s=0, log_offset_s=-LEAD_S))
    assert link.summary()["time_sync"]["offset_s"] == pytest.approx(-plan.boot_at_start_s, abs=1e-6)
    csv_att, csv_gps, csv_odo = sc.attitude(), SimulatedGps(sc.gps), Odometry.from_log(sc.odometry)
    for t in np.arange(0.0, 30.0, 1.0):  # the frames' times
        want, got = csv_att.poll(t)[-1], link.attitude.poll(t)[-1]  # the sample each frame is rectified with
        assert got.t == pytest.approx(want.t, abs=1e-6)
        assert (got.roll_deg, got.pitch_deg) == pytest.approx((want.roll_deg, want.pitch_deg), abs=1e-4)
        assert abs((got.yaw_deg - want.yaw_deg + 180) % 360 - 180) < 1e-4
        assert got.height_m == pytest.approx(want.height_m, abs=1e-3)  # GLOBAL_POSITION_INT: millimetres
        fixes, sent = csv_gps.poll(t), link.prior.poll(t)
        assert [f.t for f in sent] == pytest.approx([f.t for f in fixes], abs=1e-6)
        assert [c for f in sent for c in (f.east, f.north)] == pytest.approx(
            [c for f in fixes for c in (f.east, f.north)], abs=0.01
        )
        odo, heard = csv_odo.poll(t), link.odometry.poll(t)
        assert [o.t for o in heard] == pytest.approx([o.t for o in odo], abs=1e-6)  # not a tick early
        assert [o.speed_mps for o in heard] == pytest.approx([o.speed_mps for o in odo], abs=1e-5)
        assert [o.yaw_rate_dps for o in heard] == pytest.approx([o.yaw_rate_dps for o in odo], abs=1e-5)
    link.close()
