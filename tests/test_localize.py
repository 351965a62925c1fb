"""The localization loop's parts without a model: particle filter, refine, frame sources, priors, outputs."""

from __future__ import annotations

import itertools
import math
import socket
import time

import cv2
import numpy as np
import pytest
from roadkit import grid_network

from edge_geoloc.cameras.rectify import rotate_offsets
from edge_geoloc.cameras.street import CameraModel, NorthAligner
from edge_geoloc.geo import MapCRS, angle_diff_deg
from edge_geoloc.geo.nmea import GGA, HDT, RMC, parse
from edge_geoloc.localize.calibrate import HeadingCheck, VisionCheck, candidates, heading_from_rolls, softmax_weights
from edge_geoloc.localize.filter import FilterConfig, ParticleFilter
from edge_geoloc.localize.gnss import NmeaFilePrior, NmeaStreamPrior, open_prior, sigma_from_hdop
from edge_geoloc.localize.loop import Fix
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.localize.outputs import FixWriter, NmeaOutput, fix_sentences
from edge_geoloc.localize.sources import Capture, Frame, FrameSource, ImageFolderSource, SourceLost, VideoSource
from edge_geoloc.runtime.preprocess import InputSpec
from edge_geoloc.sim.gnss import SimulatedGps
from edge_geoloc.world.sensors import GpsModel, OdometryModel, dead_reckon
from edge_geoloc.world.trajectory import drive

CRS = MapCRS("EPSG:32632")
ORIGIN = (500_000.0, 5_205_000.0)


@pytest.fixture(scope="module")
def city_drive():
    return drive(grid_network(ORIGIN), seed=3, duration_s=300.0)


def feed_odometry(pf: ParticleFilter, odo, t0: float, t1: float) -> None:
    for k in np.flatnonzero((odo.t > t0) & (odo.t <= t1)):
        pf.set_odometry(float(odo.t[k]), float(odo.speed_mps[k]), float(odo.yaw_rate_dps[k]))
    pf.predict(t1)


# ---- particle filter ---------------------------------------------------------------------------


def test_filter_converges_on_gps_from_a_wide_start(city_drive):
    traj = city_drive
    log = GpsModel(seed=1, multipath_rate_hz=0.0).simulate(traj, CRS)
    pf = ParticleFilter(FilterConfig(particles=400, seed=0))
    pf.init_gaussian(0.0, traj.east[0] + 150.0, traj.north[0] - 100.0, 200.0)  # no heading known
    for i in range(60):
        pf.update_gps(float(log.t[i]), float(log.east[i]), float(log.north[i]), float(log.sigma_m()[i]))
    est = pf.estimate()
    truth = traj.at(float(log.t[59]))
    assert math.hypot(est.east - truth.east, est.north - truth.north) < 6.0
    assert est.sigma_m < 6.0
    # Motion under GPS alone (no odometry, no course) still tells which way the car faces.
    assert abs(float(angle_diff_deg(est.heading_deg, truth.heading_deg))) < 20.0


def test_filter_gates_a_gps_jump_of_kilometres(city_drive):
    traj = city_drive
    log = GpsModel(seed=2, multipath_rate_hz=0.0).simulate(traj, CRS)
    odo = OdometryModel(seed=2).simulate(traj)
    pf = ParticleFilter(FilterConfig(particles=300, seed=1))
    sig = log.sigma_m()
    errors = []
    for i in range(120):
        t = float(log.t[i])
        feed_odometry(pf, odo, float(log.t[i - 1]) if i else -1.0, t)
        jump = 3000.0 if 60 <= i < 100 else 0.0  # spoofed or a wrong fix: 3 km east for 40 s
        applied = pf.update_gps(t, float(log.east[i]) + jump, float(log.north[i]), float(sig[i]))
        assert applied == (jump == 0.0)
        truth = traj.at(t)
        pf.update_vision(t, np.array([[truth.east, truth.north]]) + 5.0, np.ones(1), 16.0, math.pi * 100.0**2)
        est = pf.estimate()
        errors.append(math.hypot(est.east - truth.east, est.north - truth.north))
    assert pf.counts["gps_gated"] == 40 and pf.counts["gps_resets"] == 0
    assert max(errors[60:]) < 15.0  # never followed


def test_filter_without_vision_gates_a_short_jump_but_follows_a_returning_receiver(city_drive):
    traj = city_drive
    log = GpsModel(seed=4, multipath_rate_hz=0.0).simulate(traj, CRS)
    sig = log.sigma_m()
    pf = ParticleFilter(FilterConfig(particles=300, seed=2))
    for i in range(40):
        jump = 2000.0 if 20 <= i < 25 else 0.0  # five wild fixes: fewer than gps_reset_after
        pf.update_gps(float(log.t[i]), float(log.east[i]) + jump, float(log.north[i]), float(sig[i]))
    assert pf.counts["gps_gated"] == 5 and pf.counts["gps_resets"] == 0
    # The filter is then put 500 m off (as if it drifted through a long outage); the receiver comes back.
    pf.init_gaussian(80.0, float(log.east[80]) + 500.0, float(log.north[80]), 5.0)
    for i in range(80, 86):
        pf.update_gps(float(log.t[i]), float(log.east[i]), float(log.north[i]), float(sig[i]))
    assert pf.counts["gps_resets"] == 1  # after gps_reacquire_fixes consistent fixes
    est = pf.estimate()
    truth = traj.at(float(log.t[85]))
    assert math.hypot(est.east - truth.east, est.north - truth.north) < 10.0


def test_filter_back_from_an_outage_faces_the_receivers_course(city_drive):
    """A filter that drifted through an outage may face the wrong way too: re-initialized at the returning
    receiver, it takes the receiver's course, not its own stale heading (which would drive it off again)."""
    traj = city_drive
    log = GpsModel(seed=4, multipath_rate_hz=0.0).simulate(traj, CRS)
    sig = log.sigma_m()
    pf = ParticleFilter(FilterConfig(particles=300, seed=2))
    truth = traj.at(float(log.t[80]))
    pf.init_gaussian(80.0, truth.east + 500.0, truth.north, 5.0, truth.heading_deg + 40.0, 2.0, truth.speed_mps)
    for i in range(80, 86):
        course = traj.at(float(log.t[i])).heading_deg
        pf.update_gps(float(log.t[i]), float(log.east[i]), float(log.north[i]), float(sig[i]), course, 3.0)
        if pf.counts["gps_resets"]:
            break
    assert pf.counts["gps_resets"] == 1 and i == 82  # the three consistent fixes it takes
    est, truth = pf.estimate(), traj.at(float(log.t[i]))
    assert abs(float(angle_diff_deg(est.heading_deg, truth.heading_deg))) < 8.0  # the course, not its own +40
    assert math.hypot(est.east - truth.east, est.north - truth.north) < 10.0


@pytest.mark.parametrize("vision_sees", ["receiver", "filter"])
def test_filter_lets_vision_decide_between_itself_and_a_disagreeing_receiver(city_drive, vision_sees):
    """The filter is put 30 m off while the receiver stays right. Vision that sees the receiver's place
    lets the filter follow the receiver after gps_reset_after fixes; vision that sees the filter's own
    place keeps the receiver gated (a jump)."""
    traj = city_drive
    log = GpsModel(seed=2, multipath_rate_hz=0.0).simulate(traj, CRS)
    odo = OdometryModel(seed=2).simulate(traj)
    pf = ParticleFilter(FilterConfig(particles=300, seed=1))
    sig = log.sigma_m()
    area = math.pi * 100.0**2
    shift = np.array([30.0, 0.0])
    for i in range(60):
        t = float(log.t[i])
        feed_odometry(pf, odo, float(log.t[i - 1]) if i else -1.0, t)
        if i == 40:  # the filter jumps 30 m east (a bad update); heading and motion states are kept
            pf.x[:, 0] += shift[0]
        pf.update_gps(t, float(log.east[i]), float(log.north[i]), float(sig[i]))
        truth = traj.at(t)
        seen = np.array([truth.east, truth.north]) + (shift if vision_sees == "filter" and i >= 40 else 0.0)
        pf.update_vision(t, seen[None, :], np.ones(1), 16.0, area)
    est = pf.estimate()
    truth = traj.at(float(log.t[59]))
    err = math.hypot(est.east - truth.east, est.north - truth.north)
    if vision_sees == "receiver":
        assert err < 10.0
    else:
        assert pf.counts["gps_resets"] == 0 and pf.counts["gps_gated"] == 20
        assert abs(err - 30.0) < 10.0


def test_filter_with_odometry_and_vision_stays_bounded_where_odometry_drifts(city_drive):
    """Five minutes without GPS: biased odometry drifts tens of metres; noisy vision (with 20 % wrong
    places 150-400 m away) keeps the filter within the targets."""
    traj = city_drive
    odo = OdometryModel(seed=5, speed_scale_error=0.03, yaw_rate_bias_dps=0.15).simulate(traj)
    start = traj.at(0.0)
    dr = dead_reckon(odo, start.east, start.north, start.heading_deg)
    dr_err = np.hypot(dr.east - traj.resample(dr.t).east, dr.north - traj.resample(dr.t).north)
    assert dr_err[-1] > 30.0
    rng = np.random.default_rng(0)
    pf = ParticleFilter(FilterConfig(particles=300, seed=3))
    pf.init_gaussian(0.0, start.east, start.north, 3.0, start.heading_deg, 3.0)
    errors = []
    for t in np.arange(0.5, 300.0, 0.5):
        feed_odometry(pf, odo, t - 0.5, t)
        truth = traj.at(float(t))
        good = np.array([truth.east, truth.north]) + rng.normal(0, 8.0, 2)
        if rng.random() < 0.2:
            a = rng.uniform(0, 2 * np.pi)
            good = good + rng.uniform(150, 400) * np.array([np.cos(a), np.sin(a)])
        cands = good + np.array([[0.0, 0.0], [32.0, 0.0], [0.0, -32.0]])
        pf.update_vision(float(t), cands, np.array([0.7, 0.15, 0.15]), 16.0, math.pi * 120.0**2)
        est = pf.estimate()
        errors.append(math.hypot(est.east - truth.east, est.north - truth.north))
    errors = np.array(errors)
    assert np.median(errors) <= 10.0 and np.percentile(errors, 95) <= 25.0
    assert pf.counts["vision_rejected"] > 0  # the far outliers were refused


def test_filter_heading_update_and_gate():
    pf = ParticleFilter(FilterConfig(particles=500, seed=4))
    pf.init_gaussian(0.0, 0.0, 0.0, 2.0, 100.0, 20.0)
    assert pf.update_heading(0.0, 110.0, 3.0)
    est = pf.estimate()
    assert abs(est.heading_deg - 110.0) < 3.0 and est.heading_sigma_deg < 6.0
    assert not pf.update_heading(0.0, 290.0, 3.0)  # the opposite way: gated
    assert pf.counts["heading_gated"] == 1
    # Across north: 355 and 5 degrees are 10 apart, not 350.
    pf.init_gaussian(0.0, 0.0, 0.0, 2.0, 355.0, 5.0)
    assert pf.update_heading(0.0, 5.0, 4.0)
    assert abs(float(angle_diff_deg(pf.estimate().heading_deg, 1.0))) < 4.0


def test_filter_vision_evidence_refuses_chance_agreement():
    pf = ParticleFilter(FilterConfig(particles=400, seed=5))
    pf.init_gaussian(0.0, 0.0, 0.0, 5.0, 0.0, 5.0)
    area = math.pi * 150.0**2
    ok, evidence = pf.update_vision(0.0, np.array([[3.0, -2.0]]), np.ones(1), 16.0, area)
    assert ok and evidence > 10
    ok, evidence = pf.update_vision(0.0, np.array([[120.0, 60.0]]), np.ones(1), 16.0, area)
    assert not ok and evidence < 1e-3
    with pytest.raises(RuntimeError, match="no estimate"):
        ParticleFilter().estimate()
    with pytest.raises(ValueError, match="at least 16 particles"):
        FilterConfig(particles=4)


def test_filter_motion_model_without_odometry_tracks_a_straight_drive():
    pf = ParticleFilter(FilterConfig(particles=400, seed=6))
    pf.init_gaussian(0.0, 0.0, 0.0, 2.0, 90.0, 5.0, speed_mps=10.0)
    for t in np.arange(1.0, 31.0, 1.0):
        pf.update_gps(float(t), 10.0 * t, 0.0, 2.0)
    pf.predict(35.0)  # five seconds on the motion model alone
    est = pf.estimate()
    assert abs(est.east - 350.0) < 15.0 and abs(est.north) < 10.0
    assert abs(est.speed_mps - 10.0) < 1.5


# ---- refine --------------------------------------------------------------------------------------


def test_heading_from_rolls_is_the_parabola_vertex():
    # Scores of a parabola peaking 4 degrees above the assumed heading, sampled at -10, 0, +10.
    s = [-((x - 4.0) ** 2) for x in (-10.0, 0.0, 10.0)]
    fix = heading_from_rolls(100.0, 10.0, np.array(s))
    assert fix is not None and abs(fix.heading_deg - 104.0) < 1e-9 and fix.curvature > 0
    assert heading_from_rolls(100.0, 10.0, np.array([1.0, 0.0, 1.0])) is None  # a trough: no peak
    fix = heading_from_rolls(358.0, 10.0, np.array([0.0, 0.5, 0.9]))  # rising to the right: clipped to the window
    assert fix is not None and 358.0 < fix.heading_deg + (360 if fix.heading_deg < 180 else 0) <= 368.0


def test_heading_check_tells_a_real_heading_measurement_from_an_echo():
    rng = np.random.default_rng(1)
    real, echo = HeadingCheck(), HeadingCheck()
    for i in range(40):
        u = rng.uniform(-6, 6)
        real.add(u, rng.normal(0, 3.0))  # sees the heading: the dither does not show up
        echo.add(u, u + rng.normal(0, 1.0))  # returns what it was given
        if i == 10:
            assert real.usable is None and real.sigma(5.0) == 5.0  # too few samples: trusted, default sigma
    assert real.usable is True and 2.0 < real.sigma(1.0) < 4.0
    assert echo.usable is False and echo.summary()["slope"] > 0.8


def test_vision_check_fits_the_mixture_to_the_truth():
    rng = np.random.default_rng(2)
    sharp, blind = VisionCheck(lo=8.0, hi=64.0), VisionCheck(lo=8.0, hi=64.0)
    assert sharp.sigma(16.0) == 16.0 and sharp.temperature(0.03) == 0.03  # before any data: the defaults
    area = math.pi * 100.0**2
    for _ in range(40):
        truth = rng.uniform(-500, 500, 2)
        # A good model: its best tile lies ~12 m from the camera (6 m per axis) and scores clearly higher.
        good = truth + rng.normal(0, 6.0, 2)
        far = truth + rng.uniform(40, 90, (7, 2)) * rng.choice([-1, 1], (7, 2))
        cands = np.vstack([good, far])
        sharp.add(np.r_[0.9, rng.uniform(0.6, 0.7, 7)], cands[:, 0], cands[:, 1], tuple(truth), area)
        # A blind one: eight places anywhere in the scope, scores that say nothing.
        anywhere = truth + rng.uniform(-90, 90, (8, 2))
        blind.add(rng.uniform(0.6, 0.7, 8), anywhere[:, 0], anywhere[:, 1], tuple(truth), area)
    assert sharp.temperature(0.03) <= 0.03 and 4.0 < sharp.sigma(16.0) < 12.0
    assert blind.sigma(16.0) > 25.0 or blind.temperature(0.03) >= 0.2
    assert sharp.outlier(0.3) <= 0.3 and blind.outlier(0.3) >= 0.3  # the blind one's top-k often miss
    assert sharp.summary(0.03, 16.0, 0.3)["fitted"]


def test_candidates_weights_and_offsets():
    w = softmax_weights(np.array([0.9, 0.8, 0.5]), 0.1)
    assert np.isclose(w.sum(), 1.0) and np.isclose(w[0] / w[1], math.e)
    c = candidates(
        np.array([7, 8]), np.array([0.9, 0.8]), np.array([100.0, 132.0]), np.array([50.0, 50.0]), 0.1, 16.0,
        offsets_en=np.array([[5.0, -3.0], [100.0, 0.0]]), max_offset_m=32.0,
    )  # fmt: skip
    assert np.allclose(c.east, [105.0, 164.0]) and np.allclose(c.north, [47.0, 50.0])  # the 100 m offset clipped
    fe, _fn = c.fused()
    assert np.isclose(fe, c.weights @ c.east)
    # An offset pointing true north in a tile drawn with a convergence of 90 degrees points grid west.
    assert np.allclose(rotate_offsets(np.array([[0.0, 10.0]]), 90.0), [[-10.0, 0.0]])


def test_camera_model_yaml_and_north_alignment(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text("kind: panorama\nmount_heading_deg: 90\nwidth_px: 128\nheight_px: 32\n")
    cam = CameraModel.load(path)
    assert cam.camera_heading(350.0) == 80.0 and cam.vehicle_heading(80.0) == 350.0
    path.write_text("kind: panorama\nfov_deg: 90\n")
    with pytest.raises(ValueError, match="360 degrees"):
        CameraModel.load(path)
    path.write_text("kind: fisheye\n")
    with pytest.raises(ValueError, match="kind"):
        CameraModel.load(path)
    # A panorama whose camera faces 90 degrees: the aligned view shows, at its centre, what was a quarter turn left.
    w = 64
    pano = np.zeros((16, w, 3), np.uint8)
    pano[:, w // 4] = 255  # the column looking at camera heading - 90 = north
    spec = InputSpec(16, w, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    view = NorthAligner(CameraModel(), spec).views(pano, [90.0])[0]
    assert view[:, w // 2].min() == 255 and view[:, w // 4].max() == 0
    CameraModel().check_frame(pano)  # 64 x 16 over 90 degrees of elevation: a panorama
    with pytest.raises(ValueError, match="not a 360-degree panorama"):
        CameraModel().check_frame(np.zeros((480, 640, 3), np.uint8))  # a pinhole frame
    CameraModel(kind="pinhole", fov_deg=90.0).check_frame(np.zeros((480, 640, 3), np.uint8))


# ---- sources ---------------------------------------------------------------------------------------


def write_video(path, n: int = 12, size=(64, 32)) -> None:
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, size)
    assert out.isOpened()
    for i in range(n):
        out.write(np.full((size[1], size[0], 3), 20 * i % 255, np.uint8))
    out.release()


def test_video_file_ends_cleanly_with_times(tmp_path):
    path = tmp_path / "clip.avi"
    write_video(path, n=12)
    src = VideoSource(str(path))
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    assert len(frames) == 12 and not src.live
    assert all(f.image is not None and f.image.shape == (32, 64, 3) for f in frames)
    assert np.allclose(np.diff([f.t for f in frames]), 0.1, atol=0.02)
    with pytest.raises(FileNotFoundError, match="no such file"):
        VideoSource(str(tmp_path / "missing.mp4"))


class FlakyCamera:
    """A VideoCapture stand-in for hardware that dies: ``frames`` good reads, then failures; reopening
    succeeds ``reopen_ok`` times (each reopened capture gives ``frames`` again)."""

    opened = 0

    def __init__(self, *args, frames: int = 3, reopen_ok: int = 0):
        FlakyCamera.opened += 1
        self.left = frames
        self.alive = FlakyCamera.opened <= 1 + reopen_ok

    def isOpened(self):
        return self.alive

    def read(self):
        if self.alive and self.left > 0:
            self.left -= 1
            return True, np.full((24, 96, 3), 100, np.uint8)
        return False, None

    def get(self, prop):
        return 30.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self):
        pass


def test_live_camera_that_disappears_is_retried_then_reported():
    FlakyCamera.opened = 0
    src = VideoSource(0, retries=2, retry_delay_s=0.01, capture_factory=lambda *a: FlakyCamera(*a, frames=3))
    got = [src.read() for _ in range(3)]
    assert all(f.image is not None for f in got) and src.live
    with pytest.raises(SourceLost, match="lost after 2 attempts"):
        src.read()
    assert FlakyCamera.opened == 3  # the first open and two retries
    # One that comes back after a reopen keeps delivering.
    FlakyCamera.opened = 0
    src = VideoSource(
        0, retries=3, retry_delay_s=0.01, capture_factory=lambda *a: FlakyCamera(*a, frames=2, reopen_ok=1)
    )
    frames = [src.read() for _ in range(4)]
    assert all(f.image is not None for f in frames) and src.reopened == 1


def test_corrupt_frames_are_delivered_as_errors(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), np.full((16, 64, 3), 50 * i, np.uint8))
    (tmp_path / "001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(200)))  # a truncated PNG
    (tmp_path / "timestamps.csv").write_text("name,seconds\n000.png,10.0\n001.png,10.5\n002.png,11.25\n")
    src = ImageFolderSource(tmp_path)
    frames = [src.read() for _ in range(3)]
    assert src.read() is None
    assert [f.t for f in frames] == [10.0, 10.5, 11.25]
    assert frames[1].image is None and "cannot decode" in frames[1].error
    assert frames[0].image is not None and frames[2].image.shape == (16, 64, 3)
    (tmp_path / "timestamps.csv").write_text("000.png,1\n001.png,2\n")
    with pytest.raises(ValueError, match="no time for 1 image"):
        ImageFolderSource(tmp_path)


class Counter(FrameSource):
    """Frames as fast as asked (or paced like a camera), numbered."""

    def __init__(self, n: int, live: bool, period_s: float = 0.0):
        self.n, self.live, self.period, self.i = n, live, period_s, 0
        self.name = "counter"

    def read(self):
        if self.i >= self.n:
            return None
        time.sleep(self.period)
        self.i += 1
        return Frame(self.i - 1, float(self.i - 1), np.zeros((4, 4, 3), np.uint8))


def test_capture_latest_frame_wins_and_lockstep_keeps_all():
    cap = Capture(Counter(40, live=True, period_s=0.002))  # live: latest mode
    seen = []
    while (f := cap.get(timeout=2.0)) is not None:
        seen.append(f.index)
        time.sleep(0.02)  # a slow loop
    cap.stop()
    assert cap.mode == "latest" and cap.dropped > 10
    assert seen == sorted(seen) and seen[-1] == 39 and len(seen) + cap.dropped == 40
    cap = Capture(Counter(30, live=False))
    seen = []
    while (f := cap.get(timeout=2.0)) is not None:
        seen.append(f.index)
    cap.stop()
    assert cap.mode == "lockstep" and seen == list(range(30)) and cap.dropped == 0


# ---- priors and odometry ---------------------------------------------------------------------------


def test_sigma_from_hdop_and_fix_quality():
    assert sigma_from_hdop(1.0, 1) == pytest.approx(4.0 / math.sqrt(2))
    assert sigma_from_hdop(2.0, 4) == pytest.approx(2 * 0.03 / math.sqrt(2))  # RTK fixed
    assert sigma_from_hdop(None, 2) == pytest.approx(1.5 * 1.2 / math.sqrt(2))
    assert sigma_from_hdop(1.0, 0) is None
    with pytest.raises(ValueError, match=r"0\.\.9"):
        sigma_from_hdop(1.0, 12)


def test_nmea_log_with_garbage_and_bad_checksums(tmp_path, city_drive):
    log = GpsModel(seed=7, outages=((20.0, 30.0),)).simulate(city_drive[:600], CRS)  # 60 s
    lines = log.to_nmea(gsa=True)
    assert lines[3].startswith("$GPGGA")
    bad = lines[3][:-2] + ("00" if lines[3][-2:] != "00" else "11")  # a GGA with a wrong checksum
    lines = [*lines[:3], bad, "\x00\xff binary noise", "$GPGGA,garbage*12", "hello", *lines[4:]]
    path = tmp_path / "gps.nmea"
    path.write_text("\r\n".join(lines) + "\r\n")
    prior = NmeaFilePrior(path, CRS, offset_s=5.0)
    fixes = prior.poll(1e9)
    stats = prior.stats()
    assert stats["bad_bad_checksum"] >= 1 and stats["bad_not_nmea"] >= 2
    assert len(fixes) == int(log.valid.sum()) - 1  # the corrupted epoch's GGA is lost, its RMC alone does not count
    assert stats["no_fix_epochs"] == int((~log.valid).sum())
    assert fixes[0].t == pytest.approx(5.0) and all(b.t > a.t for a, b in itertools.pairwise(fixes))
    i = int(np.flatnonzero(log.valid)[3])
    f = next(f for f in fixes if abs(f.t - 5.0 - (log.t[i] - log.t[0])) < 1e-6)
    assert math.hypot(f.east - log.east[i], f.north - log.north[i]) < 0.05  # ddmm.mmmmm resolution
    assert f.course_deg == pytest.approx(log.course_deg[i], abs=0.01) and f.speed_mps > 0
    assert f.sigma_m == pytest.approx(sigma_from_hdop(log.hdop[i], 1))
    with pytest.raises(FileNotFoundError, match="no such file"):
        open_prior(str(tmp_path / "nope.nmea"), CRS)


def test_nmea_over_udp_is_stamped_on_arrival():
    clock = [0.0]
    prior = NmeaStreamPrior("udp://127.0.0.1:0", CRS, clock=lambda: clock[0])
    try:
        lat, lon = CRS.to_latlon(*ORIGIN)
        from edge_geoloc.geo.nmea import format_gga

        clock[0] = 12.5
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(
            b"junk\r\n" + (format_gga(3600.0, float(lat), float(lon), hdop=1.0) + "\r\n").encode(),
            ("127.0.0.1", prior.port),
        )
        sock.close()
        deadline = time.monotonic() + 3.0
        fixes = []
        while not fixes and time.monotonic() < deadline:
            fixes = prior.poll(100.0)
            time.sleep(0.01)
    finally:
        prior.close()
    assert len(fixes) == 1 and fixes[0].t == 12.5
    assert abs(fixes[0].east - ORIGIN[0]) < 0.05 and prior.stats()["bad_not_nmea"] == 1


def test_serial_without_pyserial_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("serial") is not None:
        pytest.skip("pyserial is installed here")
    with pytest.raises(RuntimeError, match="pip install pyserial"):
        open_prior("serial:/dev/ttyUSB0:9600", CRS)
    with pytest.raises(ValueError, match="udp://HOST:PORT"):
        open_prior("udp://nohost", CRS)


def test_simulated_gps_and_odometry_are_handed_out_by_time(city_drive):
    log = GpsModel(seed=8, outages=((10.0, 20.0),)).simulate(city_drive[:400], CRS)
    gps = SimulatedGps(log)
    first = gps.poll(9.5)
    assert [f.t for f in first] == list(np.arange(0.0, 10.0))
    assert gps.poll(20.5)[0].t == 20.0  # nothing in the outage
    odo = Odometry(np.array([0.0, 0.1, 0.2]), np.ones(3), np.zeros(3))
    assert len(odo.poll(0.15)) == 2 and len(odo.poll(0.15)) == 0 and len(odo.poll(1.0)) == 1
    with pytest.raises(ValueError, match="times must increase"):
        Odometry(np.array([0.0, 0.0]), np.ones(2), np.zeros(2))


# ---- outputs -------------------------------------------------------------------------------------


def sample_fix(**kw) -> Fix:
    lat, lon = CRS.to_latlon(*ORIGIN)
    base = dict(
        frame=3, t=1.5, time="2024-06-21T10:00:01.500Z", lat=float(lat), lon=float(lon), east=ORIGIN[0],
        north=ORIGIN[1], sigma_m=4.0, heading_deg=271.25, heading_sigma_deg=2.0, source="vision", mode="track",
        topk_ids=[5, 6], topk_scores=[0.91, 0.83], stages_ms={"encode": 8.0}, total_ms=12.0, speed_mps=9.0,
    )  # fmt: skip
    base.update(kw)
    return Fix(**base)


def test_fix_json_lines_carry_the_design_fields(tmp_path):
    path = tmp_path / "fixes.jsonl"
    w = FixWriter(path)
    w.write(sample_fix())
    w.write(sample_fix(frame=4, source="filter-only", deadline_missed=True))
    w.close()
    import json

    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for key in ("time", "lat", "lon", "east", "north", "sigma_m", "heading_deg", "heading_sigma_deg", "topk",
                "source", "stages_ms", "deadline_missed"):  # fmt: skip
        assert key in rows[0]
    assert rows[0]["topk"] == {"ids": [5, 6], "scores": [0.91, 0.83]}
    assert rows[1]["source"] == "filter-only" and rows[1]["deadline_missed"] is True


def test_nmea_out_sentences_parse_back(tmp_path):
    fix = sample_fix()
    gga, rmc, hdt = (parse(s) for s in fix_sentences(fix))
    assert isinstance(gga, GGA) and gga.quality == 1 and abs(gga.lat - fix.lat) < 1e-7
    assert gga.hdop == pytest.approx(4.0 * math.sqrt(2) / 4.0, abs=0.01)
    assert isinstance(rmc, RMC) and rmc.valid and rmc.course_deg == pytest.approx(271.25)
    assert isinstance(hdt, HDT) and hdt.heading_deg == pytest.approx(271.25)
    dr = parse(fix_sentences(sample_fix(source="filter-only"))[0])
    assert dr.quality == 6  # dead reckoning: the autopilot sees an estimated fix
    none = fix_sentences(sample_fix(lat=None, lon=None, heading_deg=None))
    assert parse(none[0]).quality == 0 and len(none) == 2
    out = NmeaOutput(str(tmp_path / "out.nmea"))
    out.send(fix)
    out.close()
    assert len((tmp_path / "out.nmea").read_text().splitlines()) == 3
    # UDP: a listener receives the three sentences in one datagram.
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2.0)
    out = NmeaOutput(f"udp://127.0.0.1:{rx.getsockname()[1]}")
    out.send(fix)
    out.close()
    data = rx.recv(4096).decode()
    rx.close()
    assert data.count("\r\n") == 3 and data.startswith("$GPGGA")
