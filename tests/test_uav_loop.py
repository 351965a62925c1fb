"""The UAV loop end to end on a small export with a drone branch and a map that pairs with it (see uavkit):
frames over tile centres localize, the unknown-yaw sweep finds the heading, bad attitude/altitude/sky
frames are counted skips (never a fix), and `edge-geoloc run --camera uav.yaml` works with torch blocked."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # making the small export needs torch; the loop itself does not

from exportkit import one_torch_thread  # noqa: F401 (autouse fixture)
from uavkit import CAMERA, HEIGHT, drone_export, drone_map, frame, tiling

from edge_geoloc.cameras.uav import AttitudeConfig, Mount
from edge_geoloc.config import dump_config
from edge_geoloc.localize.attitude import AttitudeLog
from edge_geoloc.localize.loop import Localizer, LoopConfig
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.localize.run import open_models, run_loop
from edge_geoloc.localize.sources import Capture, Frame, ListSource
from edge_geoloc.localize.vision.uav import UavConfig

ROOT = Path(__file__).resolve().parents[1]
BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from edge_geoloc.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="module")
def model():
    export = drone_export()
    return export, drone_map(export)


@pytest.fixture(scope="module")
def opened(model):
    return open_models(*model, threads=1, branch="drone")[:2]


def row_frames(yaw: float, row: int = 2) -> list[Frame]:
    t = tiling()
    ids = t.tile_id(np.full(t.n_cols, row), np.arange(t.n_cols))
    east, north = t.centre(ids)
    return [
        Frame(i, float(i), frame(float(e), float(n), yaw), truth=(float(e), float(n)))
        for i, (e, n) in enumerate(zip(east, north))
    ]


def attitude(n: int, yaw: float | None, height: float = HEIGHT, t0: float = 0.0, rate: float = 10.0) -> AttitudeLog:
    t = t0 + np.arange(int(n * rate)) / rate
    return AttitudeLog(
        t, np.zeros(len(t)), np.zeros(len(t)), np.full(len(t), np.nan if yaw is None else yaw), np.full(len(t), height)
    )


def run(opened, frames, att, camera=CAMERA, odometry=True, **uav):
    encoder, index = opened
    loc = Localizer(
        encoder,
        index,
        camera,
        LoopConfig(budget_ms=None, temperature=1e-4, trust_uncalibrated=True),
        stage_config=UavConfig(**uav),
    )
    odo = Odometry(np.arange(0, 6.01, 0.1), np.full(61, 32.0), np.zeros(61)) if odometry else None  # 32 m/s east
    fixes = []
    summary = run_loop(loc, Capture(ListSource(frames)), None, odo, on_fix=lambda f, x: fixes.append(x), attitude=att)
    return fixes, summary, loc


def test_frames_over_tile_centres_localize_with_the_yaw_known(opened):
    frames = row_frames(90.0)
    fixes, summary, loc = run(opened, frames, attitude(6, 90.0 + 0.0))
    for i, (_f, x) in enumerate(zip(frames, fixes)):
        assert x.source == "vision" and x.mode == ("global" if i == 0 else "track")
        assert x.topk_ids[0] == tiling().tile_id(2, i)  # its own tile's patch ranks first
    last = fixes[-1]
    assert math.hypot(last.east - frames[-1].truth[0], last.north - frames[-1].truth[1]) < 3.0
    assert abs((last.heading_deg - loc.convergence - 90.0 + 180) % 360 - 180) < 3.0  # the trusted yaw
    assert summary["skipped"] == {} and summary["encodes"] == 9 * len(frames)  # 3 x 3 patches a frame


def test_with_the_yaw_unknown_the_sweep_finds_the_heading(opened):
    frames = row_frames(180.0)[:2]
    cam = replace(CAMERA, attitude=AttitudeConfig(yaw="untrusted"))
    fixes, _summary, loc = run(opened, frames, attitude(3, 40.0), camera=cam, odometry=False, sweep_steps=4)
    first = fixes[0]
    assert first.mode == "global" and first.source == "vision"
    assert first.topk_ids[0] == tiling().tile_id(2, 0)
    # The best of the four hypotheses (180), moved by the parabola through its neighbours 90 degrees away
    # (random weights score those nearly alike): the right quadrant, not the autopilot's 40 degrees.
    assert abs(((first.heading_deg - loc.convergence - 180.0) + 180) % 360 - 180) < 25.0


def test_missing_and_stale_attitude_are_counted_skips(opened):
    frames = row_frames(90.0)
    late = attitude(6, 90.0, t0=2.5)  # nothing before 2.5 s: frames 0..2 have no attitude
    fixes, summary, _ = run(opened, frames, late)
    assert [x.source for x in fixes[:3]] == ["none"] * 3 and all("attitude missing" in x.skipped for x in fixes[:3])
    assert fixes[3].source == "vision"
    once = AttitudeLog(np.array([0.0]), np.zeros(1), np.zeros(1), np.array([90.0]), np.array([HEIGHT]))
    fixes, summary, _loc = run(opened, frames, once)  # one sample at 0 s: held up to 0.25 + 2 s, then stale
    assert [x.source == "vision" for x in fixes] == [True, True, True, False, False]
    assert summary["skipped"] == {"attitude stale": 2} and summary["attitude_held_frames"] == 2
    assert all(x.source != "vision" for x in fixes[3:])


@pytest.mark.parametrize(
    "height, pitch, camera, reason",
    [
        (5000.0, 0.0, CAMERA, "altitude"),
        (float("nan"), 0.0, CAMERA, "altitude"),
        (HEIGHT, 70.0, CAMERA, "oblique"),
        (HEIGHT, 80.0, replace(CAMERA, max_tilt_deg=84.0, max_sky_fraction=0.3), "sky"),
    ],
)
def test_implausible_altitude_oblique_and_sky_frames_never_fix(opened, height, pitch, camera, reason):
    frames = row_frames(90.0)[:3]
    t = np.arange(30) / 10
    att = AttitudeLog(t, np.zeros(30), np.full(30, pitch), np.full(30, 90.0), np.full(30, height))
    fixes, summary, _ = run(opened, frames, att, camera=camera)
    assert all(x.source == "none" and x.east is None for x in fixes)
    assert summary["skipped"] == {reason: 3} and summary["encodes"] == 0
    assert reason in fixes[0].note


def test_run_cli_with_a_uav_camera_and_torch_blocked(model, tmp_path):
    export, map_dir = model
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = row_frames(90.0)
    for f in frames:
        cv2.imwrite(str(folder / f"{f.index:04d}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    (tmp_path / "attitude.csv").write_text(
        "t,roll_deg,pitch_deg,yaw_deg,height_m\n" + "".join(f"{0.5 * i},0,0,90,{HEIGHT}\n" for i in range(12))
    )
    dump_config(replace(CAMERA, mount=Mount()), tmp_path / "uav.yaml")
    out, summary = tmp_path / "fixes.jsonl", tmp_path / "summary.json"
    cmd = [sys.executable, "-c", BLOCK_TORCH, "run", "--map", str(map_dir), "--model", str(export), "--source",
           str(folder), "--camera", str(tmp_path / "uav.yaml"), "--attitude", str(tmp_path / "attitude.csv"),
           "--rate-hz", "1", "--threads", "1", "--budget-ms", "0", "--trust-uncalibrated", "--out", str(out), "--summary-json", str(summary)]  # fmt: skip
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    s = json.loads(summary.read_text())
    assert len(rows) == s["frames"] == 5 and s["ended_by"] == "end of source"
    assert all(r["source"] == "vision" for r in rows) and rows[0]["lat"] is not None
    assert rows[0]["vision"]["patches"] == 9.0


def test_attitude_csv_errors_name_the_line(tmp_path):
    bad = tmp_path / "att.csv"
    bad.write_text("t,roll_deg,pitch_deg,yaw_deg,height_m\n0,0,0,,50\n1,0,zero,0,50\n")
    with pytest.raises(ValueError, match=r"att\.csv:3"):
        AttitudeLog.from_csv(bad)
    bad.write_text("0,0,0,,50\n")
    assert AttitudeLog.from_csv(bad).poll(1.0)[0].yaw_deg is None  # an empty yaw: none


@pytest.mark.parametrize("log", [None, "bin"])
def test_uav_demo_writes_the_report_and_plots(model, tmp_path, log):
    """`edge-geoloc demo --vehicle uav [--log bin]` end to end on a small town with the small export's drone
    branch; replayed from the flight's DataFlash log, the report sets it beside the simulated logs' run."""
    from edge_geoloc.sim.demo import DemoOptions
    from edge_geoloc.sim.scenario import Trip
    from edge_geoloc.sim.uav_demo import UavFlight, run_uav_demo

    export, _ = model
    region = tmp_path / "town.yaml"
    region.write_text(
        "name: tiny-town\ncenter_lat: 45.487\ncenter_lon: -122.804\nsize_m: 600\nstyle: suburb\nseed: 7\nresolution_m: 0.5\n"
    )
    out = tmp_path / "demo-uav"
    options = DemoOptions(
        out, model=export, region=region, trip=Trip(0, 30.0, (10.0, 20.0), 0.5), budget_ms=None, workers=1,
        map_cache=tmp_path / "maps", progress=False,
    )  # fmt: skip
    report = run_uav_demo(options, UavFlight(altitude_m=60.0, log=log))
    saved = json.loads((out / "report.json").read_text())
    for key in ("frames", "fix_rate", "median_error_m", "p95_error_m", "outage_median_error_m",
                "odometry_only_outage_median_error_m", "median_heading_error_deg", "fps", "deadline_misses"):  # fmt: skip
        assert key in saved and saved[key] == report[key]
    assert saved["vehicle"] == "uav" and saved["altitude_m"] == 60.0 and saved["frames"] == 16
    assert saved["loop"]["encodes"] > 0  # frames were rectified and encoded, not all skipped
    assert len((out / "fixes.jsonl").read_text().splitlines()) == 16
    for png in ("trajectory.png", "error.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] > 300 and img.std() > 10
    page = (out / "report.md").read_text()
    assert "UAV demo: town, GPS denied for 10 s" in page
    if log:
        assert (out / "flight.bin").is_file() and saved["inputs"] == "flight log (.bin)"
        assert saved["flight_log"]["kind"] == "ArduPilot DataFlash" and saved["flight_log"]["gnss_no_fix"] > 0
        assert set(saved["csv_driven"]) == {"outage_median_error_m", "outage_p95_error_m", "fix_rate"}
        assert "the same frames on the simulated logs" in page and "--log bin" in page
    else:
        assert "csv_driven" not in saved and "flight_log" not in saved
