"""The localization loop end to end on a small export and a map that pairs with it (see loopkit):
vision alone localizes, bad inputs (a video that ends, corrupt frames, a prior outside the map, a map
of another encoder, SIGINT), the budget, and the loop with torch blocked."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip("torch")  # making the small export needs torch; the loop itself does not

from exportkit import one_torch_thread, small_export  # noqa: F401 (autouse fixture)
from loopkit import CAMERA, frames_along_row, panorama, street_map, tiling, world

from edge_geoloc.localize.gnss import GpsFix, Prior
from edge_geoloc.localize.loop import Localizer, LoopConfig
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.localize.run import format_summary, open_models, run_loop
from edge_geoloc.localize.sources import Capture, ListSource, VideoSource
from edge_geoloc.mapbuild.build import build_from_descriptors
from edge_geoloc.maps import BundleError, MapIndex
from edge_geoloc.maps.bundle import EncoderInfo, RegionInfo

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model():
    export = small_export()
    return export, street_map(export)


@pytest.fixture(scope="module")
def opened(model):
    export, map_dir = model
    return open_models(export, map_dir, threads=1)


def localizer(opened, **cfg) -> Localizer:
    """A random-weight encoder's similarities differ in the fourth decimal (the exact view of a tile scores
    1.0, its neighbours 0.9995): a small softmax temperature, and no (random) offset head."""
    encoder, index, offset = opened
    config = LoopConfig(
        **{"budget_ms": None, "temperature": 1e-4, "use_offset": False, "trust_uncalibrated": True, **cfg}
    )  # no GPS to fit the mixture against in these tests: vision is taken on trust
    return Localizer(encoder, index, CAMERA, config, offset=offset)


class Fixes(Prior):
    def __init__(self, fixes):
        self.fixes = list(fixes)
        self.name = "test fixes"

    def poll(self, t):
        out = [f for f in self.fixes if f.t <= t]
        self.fixes = [f for f in self.fixes if f.t > t]
        return out


def test_without_a_prior_the_first_frame_searches_the_whole_map(opened):
    frames = frames_along_row(row=2, heading_grid=90.0)[:1]
    fixes = []
    run_loop(localizer(opened), Capture(ListSource(frames)), None, on_fix=lambda f, x: fixes.append(x))
    first = fixes[0]
    assert first.mode == "global" and first.source == "vision" and len(first.topk_ids) == 8
    assert first.topk_ids[0] == tiling().tile_id(2, 0)  # its own tile, out of 25, at one of the swept rolls
    assert math.hypot(first.east - frames[0].truth[0], first.north - frames[0].truth[1]) < 20.0


def test_vision_tracks_through_a_gps_outage_on_its_own_map(opened):
    """One GPS fix (with course) at the start, then none: every frame is localized by its scoped search,
    with odometry between frames."""
    frames = frames_along_row(row=2, heading_grid=90.0)
    e0, n0 = frames[0].truth
    start = GpsFix(0.0, 47.0, 9.0, e0, n0, 3.0, course_deg=90.0 + localizer(opened).convergence, speed_mps=32.0)
    odo = Odometry(np.arange(0, 5.01, 0.1), np.full(51, 32.0), np.zeros(51))  # 32 m/s east, one tile a second
    loc = localizer(opened, heading_dither_deg=0.0)  # exact views match only exact rolls
    fixes = []
    summary = run_loop(loc, Capture(ListSource(frames)), Fixes([start]), odo, on_fix=lambda f, x: fixes.append(x))
    assert summary["ended_by"] == "end of source" and summary["frames"] == len(frames)
    for i, (frame, fix) in enumerate(zip(frames, fixes)):
        assert fix.mode == "track" and fix.source == "vision"
        assert fix.topk_ids[0] == tiling().tile_id(2, i)  # its own tile's view ranks first
        assert math.hypot(fix.east - frame.truth[0], fix.north - frame.truth[1]) < 10.0
    assert abs((fixes[-1].heading_deg - loc.convergence - 90.0 + 180) % 360 - 180) < 10.0
    assert summary["deadline_misses"] == 0 and summary["corrupt_frames"] == 0
    assert summary["encodes"] == 3 * len(frames)  # the search view and two heading views per frame


def test_heading_views_rest_while_registrations_pass(opened):
    """A passed registration measures the heading itself: the two heading views then run only every
    ``refine.heading_views_every`` frames, and every frame again once a registration fails."""
    from edge_geoloc.localize.refine import RefineConfig

    frames = frames_along_row(row=2, heading_grid=90.0)
    e0, n0 = frames[0].truth
    start = GpsFix(0.0, 47.0, 9.0, e0, n0, 3.0, course_deg=90.0 + localizer(opened).convergence, speed_mps=32.0)
    for passing, rest, want in ((True, 5, 3 + 1 + 1 + 1 + 3), (True, 1, 3 * 5), (False, 5, 3 * 5)):
        loc = localizer(opened, heading_dither_deg=0.0, refine=RefineConfig(heading_views_every=rest))

        def registered(*_, loc=loc, passing=passing):  # as a passed registration leaves the refine stage
            loc.refiner.last_passed = passing

        odo = Odometry(np.arange(0, 5.01, 0.1), np.full(51, 32.0), np.zeros(51))  # read once: one per run
        s = run_loop(loc, Capture(ListSource(frames)), Fixes([start]), odo, on_fix=registered)
        # the first frame measures the heading (nothing registered yet), the next three rest, the fifth
        # (frames_seen 5) measures it again
        assert s["encodes"] == want, (passing, rest, s["encodes"])


def test_budget_drops_work_and_counts_misses(opened):
    frames = frames_along_row(row=1)
    start = GpsFix(0.0, 47.0, 9.0, frames[0].truth[0], frames[0].truth[1], 3.0, course_deg=90.0, speed_mps=30.0)
    loc = localizer(opened, budget_ms=1e-3)  # nothing fits: every frame is dropped before encoding
    s = run_loop(loc, Capture(ListSource(frames)), Fixes([start]))
    assert sum(s["skipped"].values()) == len(frames) and set(s["skipped"]) <= {"stale", "encode"}
    assert s["encodes"] == 0
    assert s["deadline_misses"] == len(frames) and s["fix_rate"] == 0.0
    assert set(s["sources"]) <= {"gps", "filter-only"}  # a position still comes out every frame
    # A budget that leaves room for the search view but not for the two heading views.
    loc = localizer(opened, budget_ms=1e4)

    def slow(*_):  # the cost model believes each encode takes 9 s: one view fits in 10 s, three do not
        loc.costs.per_image = 9000.0

    slow()
    odo = Odometry(np.arange(0, 5.01, 0.1), np.full(51, 32.0), np.zeros(51))  # keeps the heading known: no sweeps
    s = run_loop(loc, Capture(ListSource(frames)), Fixes([start]), odo, on_fix=slow)
    assert s["skipped"] == {"heading": len(frames)} and s["sources"].get("vision", 0) >= 1
    assert s["encodes"] == len(frames) and s["deadline_misses"] == 0
    loc = localizer(opened)  # no budget: nothing is skipped
    s = run_loop(loc, Capture(ListSource(frames)), Fixes([start]))
    assert s["skipped"] == {} and s["deadline_misses"] == 0


def test_a_video_that_ends_stops_cleanly_with_the_summary(opened, tmp_path):
    path = tmp_path / "drive.avi"
    frames = frames_along_row(row=3)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 2.0, (CAMERA.width_px, CAMERA.height_px))
    for f in frames:
        out.write(cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    out.release()
    start = GpsFix(0.0, 47.0, 9.0, frames[0].truth[0], frames[0].truth[1], 3.0, course_deg=90.0, speed_mps=30.0)
    s = run_loop(localizer(opened), Capture(VideoSource(str(path))), Fixes([start]))
    assert s["ended_by"] == "end of source" and s["frames"] == len(frames) and "error" not in s
    text = format_summary(s)
    assert "end of source" in text and "encode" in text and "p99" in text


def test_corrupt_frames_are_counted_and_skipped(opened, tmp_path):
    frames = frames_along_row(row=2)
    for i, f in enumerate(frames):
        cv2.imwrite(str(tmp_path / f"{i:04d}.png"), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR))
    (tmp_path / "0002.png").write_bytes(b"not a png at all")
    from edge_geoloc.localize.sources import ImageFolderSource

    start = GpsFix(0.0, 47.0, 9.0, frames[0].truth[0], frames[0].truth[1], 3.0)
    got = []
    s = run_loop(
        localizer(opened),
        Capture(ImageFolderSource(tmp_path, rate_hz=1.0)),
        Fixes([start]),
        on_fix=lambda f, x: got.append(x),
    )
    assert s["corrupt_frames"] == 1 and s["frames"] == len(frames)
    assert "corrupt frame" in got[2].note and got[2].east is not None  # the filter still gives a position
    # The next frame is encoded and searched as usual (whether the filter takes its fix is the filter's business).
    assert got[3].mode != "none" and len(got[3].topk_ids) == 8 and not got[3].skipped and got[3].note is None


def test_a_prior_outside_the_map_is_reported_and_the_filter_carries_on(opened, caplog):
    frames = frames_along_row(row=2)
    far = [
        GpsFix(float(t), 47.3, 9.4, frames[0].truth[0] + 30_000.0 + 32 * t, frames[0].truth[1], 3.0) for t in range(5)
    ]
    got = []
    with caplog.at_level("WARNING"):
        s = run_loop(localizer(opened), Capture(ListSource(frames)), Fixes(far), on_fix=lambda f, x: got.append(x))
    assert s["prior_outside_map"] == 5 and s["scope_outside_map"] == len(frames)
    assert sum("outside the map" in r.message for r in caplog.records) == 1  # reported once, not per fix
    assert all(g.east is not None and g.source in ("gps", "filter-only") for g in got)
    assert "outside the map" in got[0].note


def test_a_map_of_another_encoder_is_refused(opened, tmp_path):
    encoder, index, _ = opened
    t = tiling()
    ids = np.arange(len(t))
    other = build_from_descriptors(
        tmp_path / "other",
        crs=world().crs,
        tiling=t,
        tile_ids=ids,
        descriptors=np.asarray(index.desc[np.argsort(index.bundle.tiles["id"])], np.float32),
        encoder=EncoderInfo(
            model="other", aerial_sha256="cd" * 32, card_sha256="", descriptor_dim=encoder.descriptor_dim
        ),
        region=RegionInfo("box-world", 47.0, 9.0, "descriptors"),
        tile_px=32,
    )
    with pytest.raises(BundleError, match="rebuild the map with this model"):
        Localizer(encoder, MapIndex.open(other), CAMERA, warm_up=False)


# ---- the CLI in a subprocess, torch blocked ----------------------------------------------------------

BLOCK_TORCH = "import sys; sys.modules['torch'] = None; from edge_geoloc.cli import main; sys.exit(main(sys.argv[1:]))"


def write_folder(folder: Path, n: int) -> None:
    folder.mkdir()
    t = tiling()
    e, nn = t.centre(12)
    for i in range(n):
        img = panorama(float(e) + 0.5 * i, float(nn), 90.0)
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))


def cli(model, source: Path, out: Path, *extra: str) -> list[str]:
    export, map_dir = model
    return [sys.executable, "-c", BLOCK_TORCH, "run", "--map", str(map_dir), "--model", str(export), "--source",
            str(source), "--out", str(out), "--threads", "1", "--trust-uncalibrated", *extra]  # fmt: skip


def test_run_cli_with_torch_blocked_to_the_end(model, tmp_path):
    write_folder(tmp_path / "frames", 6)
    out, summary = tmp_path / "fixes.jsonl", tmp_path / "summary.json"
    p = subprocess.run(
        # no budget: on a loaded machine the first encode may not fit 100 ms, and this test is about imports
        cli(model, tmp_path / "frames", out, "--rate-hz", "2", "--summary-json", str(summary), "--budget-ms", "0"),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    s = json.loads(summary.read_text())
    assert len(rows) == s["frames"] == 6 and s["ended_by"] == "end of source"
    assert rows[0]["source"] == "vision" and rows[0]["lat"] is not None
    assert "vision fix rate" in p.stderr


def test_sigint_flushes_the_fixes_and_prints_the_summary(model, tmp_path):
    write_folder(tmp_path / "frames", 200)
    out = tmp_path / "fixes.jsonl"
    # Replayed at 4 frames a second (as if live): long enough to be interrupted mid-run.
    p = subprocess.Popen(
        cli(model, tmp_path / "frames", out, "--rate-hz", "4", "--realtime"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A shell running the suite in the background hands its children SIGINT ignored (and Python then
        # keeps it so): restore the default, as an interactive terminal has it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 3):
            time.sleep(0.1)
        assert p.poll() is None, p.stderr.read()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    lines = out.read_text().splitlines()
    assert 3 <= len(lines) < 200
    rows = [json.loads(line) for line in lines]  # every line whole: flushed, not cut
    assert [r["frame"] for r in rows] == list(range(len(rows)))
    assert "interrupted" in err and f"frames {len(rows)}" in err


def test_demo_writes_the_report_and_plots(model, tmp_path):
    """The demo end to end on a small town and the small export (the real one runs `make demo`)."""
    from edge_geoloc.sim.demo import DemoOptions, cached_map, run_demo
    from edge_geoloc.sim.scenario import Trip

    export, _ = model
    region = tmp_path / "town.yaml"
    region.write_text(
        "name: tiny-town\ncenter_lat: 45.487\ncenter_lon: -122.804\nsize_m: 260\nstyle: suburb\nseed: 7\nresolution_m: 0.5\n"
    )
    out = tmp_path / "demo"
    report = run_demo(
        DemoOptions(
            out, model=export, region=region, trip=Trip(0, 30.0, (10.0, 20.0), 1.0), workers=1,
            map_cache=tmp_path / "maps", progress=False,
        )
    )  # fmt: skip
    saved = json.loads((out / "report.json").read_text())
    for key in ("frames", "fix_rate", "median_error_m", "p95_error_m", "outage_median_error_m",
                "odometry_only_outage_median_error_m", "median_heading_error_deg", "fps", "deadline_misses"):  # fmt: skip
        assert key in saved and saved[key] == report[key]
    assert saved["frames"] == 31 and saved["outage_s"] == 10.0
    assert len((out / "fixes.jsonl").read_text().splitlines()) == 31
    for png in ("trajectory.png", "error.png"):
        img = cv2.imread(str(out / png))
        assert img is not None and img.shape[0] > 300 and img.std() > 10
    assert "GPS denied for 10 s" in (out / "report.md").read_text()
    # The next run reuses the cached map (opened, not built again).
    (cached,) = (p for p in (tmp_path / "maps").iterdir() if not p.name.startswith("."))  # not the build lock
    stamp = (cached / "manifest.yaml").stat().st_mtime_ns
    assert cached_map(region, export, tmp_path / "maps", workers=1, progress=False) == cached
    assert (cached / "manifest.yaml").stat().st_mtime_ns == stamp
    # A map cached before maps kept their imagery (no refinement) is built again, with the layer.
    manifest = yaml.safe_load((cached / "manifest.yaml").read_text())
    assert manifest.pop("ortho")
    (cached / "manifest.yaml").write_text(yaml.safe_dump(manifest))
    assert cached_map(region, export, tmp_path / "maps", workers=1, progress=False) == cached
    assert yaml.safe_load((cached / "manifest.yaml").read_text()).get("ortho")


def test_the_simulated_car_camera_is_rendered_at_the_street_encoders_resolution(model, tmp_path):
    """Finer than the demo camera's 64 x 256 only where the encoder takes more: a 96 x 384 input gets a
    96 x 384 panorama, a 180-degree one of 384 px twice that around; the small 16 x 64 export the demo's."""
    from exportkit import copy_export

    from edge_geoloc.sim.scenario import DEMO_CAMERA, car_camera

    export, _ = model
    assert car_camera() == DEMO_CAMERA and car_camera(export) == DEMO_CAMERA

    def with_street(name: str, height: int, width: int, fov: float) -> Path:
        out = copy_export(export, tmp_path / name)
        card = yaml.safe_load((out / "model.yaml").read_text())
        card["street"].update(
            height=height, width=width, fov_deg=fov, patch=16, attention_grid=[height // 16, width // 16]
        )
        (out / "model.yaml").write_text(yaml.safe_dump(card))
        return out

    cam = car_camera(with_street("s96", 96, 384, 360.0))
    assert (cam.height_px, cam.width_px) == (96, 384)
    assert (cam.height_m, cam.elevation_range_deg, cam.kind) == (2.0, (-45.0, 45.0), "panorama")
    cam = car_camera(with_street("half", 192, 384, 180.0))
    assert (cam.height_px, cam.width_px) == (192, 768)


def test_concurrent_demo_map_builds_share_one_bundle(model, tmp_path):
    """Two processes asking for the same cached map: one builds, the other waits and reuses it."""
    from concurrent.futures import ProcessPoolExecutor

    from edge_geoloc.sim.demo import cached_map

    export, _ = model
    region = tmp_path / "town.yaml"
    region.write_text(
        "name: lock-town\ncenter_lat: 45.487\ncenter_lon: -122.804\nsize_m: 200\nstyle: suburb\nseed: 3\nresolution_m: 0.5\n"
    )
    with ProcessPoolExecutor(2, mp_context=__import__("multiprocessing").get_context("fork")) as pool:
        jobs = [pool.submit(cached_map, region, export, tmp_path / "maps", 1, False) for _ in range(2)]
        a, b = (j.result(timeout=600) for j in jobs)
    assert a == b and (a / "manifest.yaml").exists()
    assert [p.name for p in (tmp_path / "maps").iterdir() if not p.name.startswith(".")] == [a.name]


def test_the_scope_widens_to_an_outages_while_gps_pins_the_filter(opened):
    """The vision mixture is fitted while GPS pins the filter; its searches then cover an outage-sized disc."""
    loc = localizer(opened)
    e, n = frames_along_row(row=2, heading_grid=90.0)[0].truth[:2]
    loc.filter.update_gps(0.0, e, n, 1.0)
    est = loc.filter.estimate()
    tracking = max(loc.scope_min, loc.cfg.scope_sigmas * est.sigma_m + loc.tiling.tile_m)
    assert tracking < loc.cfg.calibrate_scope_m
    assert loc.scope(0.5, est) == (est.east, est.north, loc.cfg.calibrate_scope_m)  # pinned: a fix 0.5 s ago
    assert loc.scope(0.5 + loc.cfg.pinned_within_s, est)[2] == tracking  # the fix is too old
    plain = localizer(opened, calibrate_scope_m=None)
    plain.filter.update_gps(0.0, e, n, 1.0)
    assert plain.scope(0.5, plain.filter.estimate())[2] == pytest.approx(tracking, rel=0.2)
