"""The UAV loop on a real autopilot link: the simulated autopilot (a spawned process, pymavlink) streams a
five-second flight over loopback UDP, the loop localizes the small export's frames on the attitude and
height it sends, and the fixes go back as GPS_INPUT, which the autopilot records. And `edge-geoloc run
--log flight.ulg` replays a PX4 log (written by pyulog) as the attitude source, torch blocked.
Bounded: the flight plays at twice real time and the autopilot stops by itself."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # making the small export needs torch; the loop itself does not

from exportkit import one_torch_thread  # noqa: F401 (autouse fixture)
from uavkit import CAMERA, HEIGHT, drone_export, drone_map, frame, tiling

from edge_geoloc.cameras.uav import Mount
from edge_geoloc.config import dump_config
from edge_geoloc.localize.loop import Localizer, LoopConfig
from edge_geoloc.localize.mavlink import MavlinkConfig, MavlinkLink
from edge_geoloc.localize.mavlink_out import MavlinkOutput, OutputConfig
from edge_geoloc.localize.run import open_models, run_loop
from edge_geoloc.localize.sources import Capture, Frame
from edge_geoloc.sim.autopilot import AutopilotPlan, PacedSource, Playback, SimulatedAutopilot
from edge_geoloc.sim.flightlogs import FlightRecord, write_ulog

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from edge_geoloc.cli import main; sys.exit(main(sys.argv[1:]))"
START = datetime(2026, 5, 4, 12, 0, 0, tzinfo=timezone.utc)
SPEED = 2.0


@pytest.fixture(scope="module")
def model():
    export = drone_export()
    return export, drone_map(export)


def flight(crs):
    """Row 2 of the tile grid flown east at 32 m/s (one tile centre a second), yaw 90, 40 m up, GNSS denied."""
    t = tiling()
    ids = t.tile_id(np.full(t.n_cols, 2), np.arange(t.n_cols))
    east, north = t.centre(ids)
    frames = [
        Frame(i, float(i), frame(float(e), float(n), 90.0), truth=(float(e), float(n)))
        for i, (e, n) in enumerate(zip(east, north))
    ]
    # Flying before the first frame (it has an attitude); the attitude stream drops out after 1.5 s.
    att_t = np.arange(-1.0, 1.5, 0.02)
    odo_t = np.arange(0.0, 5.0, 0.1)
    gps_t = np.arange(0.0, 5.0, 1.0)
    n, g = len(att_t), len(gps_t)
    lat0, lon0 = crs.to_latlon(float(east[0]), float(north[0]))
    zero = np.zeros(n)
    plan = AutopilotPlan(
        5.0, START, (float(lat0), float(lon0), 100.0), att_t, zero, zero, np.full(n, 90.0), zero, np.full(n, HEIGHT),
        odo_t, np.full(len(odo_t), 32.0), gps_t, np.zeros(g, bool), *(np.zeros(g) for _ in range(8)),
    )  # fmt: skip
    return frames, plan


def test_the_loop_flies_on_the_simulated_autopilot_over_loopback(model, tmp_path):
    encoder, index, _ = open_models(*model, threads=1, branch="drone")
    frames, plan = flight(index.crs)
    box: dict[str, SimulatedAutopilot] = {}
    link = MavlinkLink(
        "udp:127.0.0.1:0", index.crs, clock=lambda: box["ap"].clock(), config=MavlinkConfig(wait_heartbeat_s=0)
    )
    ap = box["ap"] = SimulatedAutopilot(
        plan, Playback(link.conn.port.getsockname()[1], str(tmp_path / "ap.jsonl"), SPEED)
    )
    t0 = time.monotonic()
    ap.start()
    try:
        link.wait_for_autopilot(30.0)
        loc = Localizer(
            encoder,
            index,
            CAMERA,
            LoopConfig(budget_ms=None, temperature=1e-4, trust_uncalibrated=True),
            start_utc=START,
        )
        out = MavlinkOutput(link, OutputConfig(), clock=ap.clock, scale=SPEED)
        fixes = []
        summary = run_loop(
            loc, Capture(PacedSource(frames, ap.clock, SPEED), mode="lockstep"), link.prior, link.odometry,
            on_fix=lambda f, x: fixes.append(x), attitude=link.attitude, outputs=[out],
        )  # fmt: skip
    finally:
        records, sent = ap.stop()
        link.close()
    assert time.monotonic() - t0 < 60.0
    # The dropped attitude stream: held for frames 2 and 3 (0.5 and 1.5 s old), frame 4 (2.5 s) skipped.
    assert [x.source for x in fixes] == ["vision"] * 4 + ["filter-only"] and "attitude stale" in fixes[4].skipped
    assert summary["skipped"] == {"attitude stale": 1} and summary["attitude_held_frames"] == 2
    gi = [r for r in records if r["type"] == "GPS_INPUT"]
    assert len(gi) == 5 and all(r["fix_type"] == 3 and r["version"] == 2 for r in gi)  # 1 s dead reckoning: usable
    for r, f in zip(gi, frames):  # what the autopilot got is where the drone was
        east, north = index.crs.to_en(r["lat"] / 1e7, r["lon"] / 1e7)
        assert math.hypot(float(east) - f.truth[0], float(north) - f.truth[1]) < 5.0
    ms = [r["time_week_ms"] for r in gi]  # the frames' times, 1 s apart, in GPS time
    assert np.diff(ms).tolist() == [1000] * 4 and ms[0] == ((24 + 12) * 3600 + 18) * 1000
    link_summary = summary["gps"]
    sync = link_summary["time_sync"]
    assert sync["method"] == "timesync" and abs(sync["offset_s"] + plan.boot_at_start_s) < 0.05
    assert link_summary["autopilot"] == "ArduPilot (system 1)" and link_summary["attitude_samples"] == 125
    assert link_summary["height_from"].get("relative_to_home", 0) >= 120 and link_summary["gnss_fixes"] == 0
    assert summary["outputs"][0]["gps_input"] == 5 and sent["ATTITUDE"] == 125
    assert link_summary["waits_in_vain"] >= 2  # frames 2-4: the stopped stream was waited for (0.25 s), once each


def test_run_replays_a_px4_log_as_the_attitude_source(model, tmp_path):
    export, map_dir = model
    folder = tmp_path / "frames"
    folder.mkdir()
    frames, _ = flight(open_models(*model, threads=1, branch="drone")[1].crs)
    for f in frames:
        cv2.imwrite(str(folder / f"{f.index:04d}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    t = 30.0 + np.arange(0, 6, 0.1)  # the log starts 30 s after boot; frames are 1 s apart from 0
    n = len(t)
    rec = FlightRecord(t, np.zeros(n), np.zeros(n), np.full(n, 90.0), t, np.full(n, HEIGHT), np.array([30.0]), np.array([1]),
                       np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1))  # fmt: skip
    write_ulog(tmp_path / "flight.ulg", rec)
    dump_config(replace(CAMERA, mount=Mount()), tmp_path / "uav.yaml")
    out, summary = tmp_path / "fixes.jsonl", tmp_path / "summary.json"
    cmd = [sys.executable, "-c", BLOCK_TORCH, "run", "--map", str(map_dir), "--model", str(export), "--source",
           str(folder), "--camera", str(tmp_path / "uav.yaml"), "--log", str(tmp_path / "flight.ulg"),
           "--rate-hz", "1", "--threads", "1", "--budget-ms", "0", "--trust-uncalibrated", "--out", str(out),
           "--summary-json", str(summary)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    s = json.loads(summary.read_text())
    assert len(rows) == 5 and all(r["source"] == "vision" for r in rows)
    assert s["gps"]["source"].startswith("PX4 ULog") and s["gps"]["no_fix_epochs"] == 1
    bad = subprocess.run(
        [*cmd[:-4], "--mavlink", "serial:/dev/ttyNOPE:921600"], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert (
        bad.returncode != 0
        and "--mavlink serial:/dev/ttyNOPE:921600: serial port /dev/ttyNOPE does not exist" in bad.stderr
    )
    assert "Traceback" not in bad.stderr
