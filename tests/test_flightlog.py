"""Flight logs as sources (edge_geoloc/localize/flightlog.py): a PX4 ULog written by pyulog's own writer and an
ArduPilot DataFlash log packed by pymavlink's DFMessage, read back into attitude, height and GNSS on the log's
time base plus --log-offset-s; corrupt or foreign files are one clear error naming them.

Neither pyulog's nor pymavlink's wheel ships a real flight log (their sample logs live in their source
repositories only), so every log here is written by the libraries' writers from a known flight."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_geoloc.geo import MapCRS
from edge_geoloc.localize.flightlog import FlightLogError, open_flight_log
from edge_geoloc.sim.flightlogs import FlightRecord, write_dataflash, write_ulog

CRS = MapCRS.for_area(47.37, 8.54)
BOOT = 250.0  # the log starts 250 s after the autopilot booted


def record() -> FlightRecord:
    t = BOOT + np.arange(0, 5, 0.1)
    g = BOOT + np.arange(0, 5, 1.0)
    n = len(t)
    return FlightRecord(
        t, np.full(n, 5.0), np.full(n, -3.0), np.linspace(350, 370, n) % 360, t, np.full(n, 80.0),
        g, np.array([3, 3, 4, 1, 1]), 47.37 + 1e-5 * np.arange(5), np.full(5, 8.54), np.full(5, 2.0),
        np.full(5, 1.1), np.full(5, 45.0), np.full(5, 12.0), range_t=t[:20], range_m=np.full(20, 35.0),
    )  # fmt: skip


@pytest.mark.parametrize(
    "writer, suffix, kind", [(write_ulog, ".ulg", "PX4 ULog"), (write_dataflash, ".bin", "ArduPilot DataFlash")]
)
def test_a_written_log_replays_as_attitude_height_and_gnss(tmp_path, writer, suffix, kind):
    path = writer(tmp_path / f"flight{suffix}", record())
    fl = open_flight_log(path, CRS, offset_s=2.0)
    a = fl.attitude
    assert fl.summary["kind"] == kind and len(a.t) == 50
    assert a.t[:3] == pytest.approx([2.0, 2.1, 2.2])  # seconds since the log's start + the offset
    assert a.roll == pytest.approx(np.full(50, 5.0), abs=1e-3) and a.pitch == pytest.approx(np.full(50, -3.0), abs=1e-3)
    assert a.yaw[0] == pytest.approx(350.0, abs=0.01) and a.yaw[-1] == pytest.approx(10.0, abs=0.01)  # wrapped
    tilt = math.cos(math.radians(5.0)) * math.cos(math.radians(-3.0))
    # The rangefinder (last reading 1.9 s into the log) counts for 0.5 s more, then the height above take-off.
    assert a.height[:25] == pytest.approx(np.full(25, 35.0 * tilt), abs=1e-3) and a.height[25:] == pytest.approx(80.0)
    assert fl.summary["height_from"] == {"rangefinder": 25, "above_take_off": 25}
    fixes = fl.prior.poll(1e9)
    assert [f.t for f in fixes] == pytest.approx([2.0, 3.0, 4.0]) and fl.prior.stats()["no_fix_epochs"] == 2
    assert [f.lat for f in fixes] == pytest.approx([47.37, 47.37001, 47.37002]) and fixes[0].lon == pytest.approx(8.54)
    assert fixes[0].course_deg == pytest.approx(45.0, abs=1e-4) and fixes[0].speed_mps == pytest.approx(12.0)
    if suffix == ".ulg":  # PX4's eph: the horizontal 1-sigma in metres
        assert fixes[0].sigma_m == pytest.approx(2.0 / math.sqrt(2))
    else:  # ArduPilot's HDop with the UERE of a 3D fix (4 m) / DGPS (1.2 m)
        assert fixes[0].sigma_m == pytest.approx(1.1 * 4.0 / math.sqrt(2)) and fixes[2].sigma_m == pytest.approx(
            1.1 * 1.2 / math.sqrt(2)
        )
    east, north = CRS.to_en(47.37, 8.54)
    assert (fixes[0].east, fixes[0].north) == pytest.approx((float(east), float(north)))


def test_corrupt_foreign_and_missing_logs_are_one_line_errors_naming_them(tmp_path):
    garbage = np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "junk.ulg").write_bytes(garbage)
    with pytest.raises(FlightLogError, match=r"--log .*junk.ulg: not a readable PX4 ULog"):
        open_flight_log(tmp_path / "junk.ulg", CRS)
    (tmp_path / "junk.bin").write_bytes(garbage)
    with pytest.raises(
        FlightLogError,
        match=r"--log .*junk.bin: no ATT \(attitude\) messages in the DataFlash log \(no DataFlash records at all\)",
    ):
        open_flight_log(tmp_path / "junk.bin", CRS)
    good = write_dataflash(tmp_path / "good.bin", record()).read_bytes()
    (tmp_path / "cut.bin").write_bytes(good[: len(good) // 2] + garbage[:600] + good[len(good) // 2 :])
    fl = open_flight_log(tmp_path / "cut.bin", CRS)  # garbage in the middle: skipped and counted, the rest read
    assert fl.summary["garbage_bytes_skipped"] > 0 and len(fl.attitude.t) >= 45
    ulog = write_ulog(tmp_path / "good.ulg", record()).read_bytes()
    (tmp_path / "cut.ulg").write_bytes(ulog[:200])
    with pytest.raises(FlightLogError, match=r"cut.ulg: (not a readable PX4 ULog|no vehicle_attitude topic)"):
        open_flight_log(tmp_path / "cut.ulg", CRS)
    with pytest.raises(FlightLogError, match=r"--log .*nope.ulg: no such file"):
        open_flight_log(tmp_path / "nope.ulg", CRS)
    (tmp_path / "flight.csv").write_text("t\n")
    with pytest.raises(FlightLogError, match=r"unknown log type '.csv'"):
        open_flight_log(tmp_path / "flight.csv", CRS)


@pytest.mark.parametrize("kind, roll_tol", [("ulg", 1e-4), ("bin", 0.006)])  # DataFlash ATT: centidegrees
def test_the_uav_demos_flight_replays_from_its_own_log_as_the_simulated_logs_give_it(tmp_path, kind, roll_tol):
    """`demo --vehicle uav --log ulg|bin`: the flight written as the autopilot's log and read back gives, at each
    frame, the attitude, height and GNSS fixes the CSV-driven run polls (to the log format's precision)."""
    from edge_geoloc.sim.flight import make_uav_scenario
    from edge_geoloc.sim.flightlogs import replay_log
    from edge_geoloc.sim.gnss import SimulatedGps
    from edge_geoloc.sim.scenario import Trip, load_world

    region = tmp_path / "town.yaml"
    region.write_text(
        "name: tiny-town\ncenter_lat: 45.487\ncenter_lon: -122.804\nsize_m: 600\nstyle: suburb\nseed: 7\nresolution_m: 0.5\n"
    )
    sc = make_uav_scenario(load_world(region), Trip(3, 40.0, (10.0, 25.0), 1.0), altitude_m=60.0)
    replay = replay_log(sc, kind, tmp_path)
    assert (tmp_path / f"flight.{kind}").is_file() and replay.summary["gnss_no_fix"] > 0  # the outage is in the log
    csv_att, csv_gps = sc.attitude(), SimulatedGps(sc.gps)
    for t in np.arange(0.0, 40.0, 1.0):
        want, got = csv_att.poll(t)[-1], replay.attitude.poll(t)[-1]
        assert got.t == pytest.approx(want.t, abs=1e-5)
        assert (got.roll_deg, got.pitch_deg) == pytest.approx((want.roll_deg, want.pitch_deg), abs=roll_tol)
        assert abs((got.yaw_deg - want.yaw_deg + 180) % 360 - 180) < roll_tol
        assert got.height_m == pytest.approx(want.height_m, abs=0.01)
        fixes, logged = csv_gps.poll(t), replay.prior.poll(t)
        assert [f.t for f in logged] == pytest.approx([f.t for f in fixes], abs=1e-5)
        assert [c for f in logged for c in (f.east, f.north)] == pytest.approx(
            [c for f in fixes for c in (f.east, f.north)], abs=0.02
        )
    assert not [f for f in SimulatedGps(sc.gps).poll(40.0) if 10.0 <= f.t < 25.0]  # none in the outage, either way
