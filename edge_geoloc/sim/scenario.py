"""GPS-denied drives in the synthetic world: what the demo and the navigation benchmark run.

A :class:`Scenario` is a region's world, a vehicle's true drive, the simulated GNSS receiver with
an outage window, the vehicle's odometry, and the roof-mounted 360-degree camera. It runs the real
loop (:class:`~edge_geoloc.localize.loop.Localizer`) on rendered frames, and :func:`evaluate`
compares the fixes with the truth. The odometry-only baseline is the same particle filter fed the
same GPS and odometry without vision (:func:`replay_without_vision`): during the outage it can
only dead-reckon, which is exactly what vision must beat.

Workstation wing: it renders the world and drives the device loop, which never imports it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.cameras.street import CameraModel
from edge_geoloc.geo.crs import angle_diff_deg
from edge_geoloc.localize.attitude import AttitudeLog
from edge_geoloc.localize.filter import FilterConfig, ParticleFilter
from edge_geoloc.localize.loop import Fix, Localizer, LoopConfig
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.localize.run import ODOMETRY, events, run_loop
from edge_geoloc.localize.sources import Capture, Frame
from edge_geoloc.runtime.card import load_card
from edge_geoloc.sim.frames import SyntheticSource
from edge_geoloc.sim.gnss import SimulatedGps

log = logging.getLogger(__name__)

DEMO_CAMERA = CameraModel(kind="panorama", fov_deg=360.0, width_px=256, height_px=64, height_m=2.0)


def car_camera(model_dir: str | Path | None = None) -> CameraModel:
    """The simulated car's roof camera for the export at ``model_dir``: :data:`DEMO_CAMERA`, rendered finer
    where the street encoder takes more pixels than its 64 x 256 (the encoder's input width over its FoV, the
    rows over the camera's elevation range). Blurring a coarser frame up to the input would hide what a finer
    model sees; a smaller input is resized down from ``DEMO_CAMERA``'s frame, as a real camera's would be."""
    if model_dir is None:
        return DEMO_CAMERA
    street = load_card(model_dir).street
    width = max(DEMO_CAMERA.width_px, round(street.width * 360.0 / street.fov_deg))
    lo, hi = DEMO_CAMERA.elevation_range_deg
    return replace(DEMO_CAMERA, width_px=width, height_px=round(width * (hi - lo) / 360.0))


@dataclass
class Scenario:
    world: Any
    trajectory: Any
    gps: Any  # GpsLog
    odometry: Any  # OdometryLog
    outage: tuple[float, float] | None
    camera: CameraModel
    app: Any  # the drive's appearance (time of day, season)
    rate_hz: float
    seed: int

    @property
    def crs(self) -> Any:
        return self.world.crs

    def source(self) -> SyntheticSource:
        return SyntheticSource(self.world, self.trajectory, self.camera, self.rate_hz, app=self.app, seed=self.seed)

    def attitude(self) -> AttitudeLog | None:
        """The autopilot's attitude stream (a car has none; a flight's, :mod:`edge_geoloc.sim.flight`)."""
        return None

    def in_outage(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        if self.outage is None:
            return np.zeros(t.shape, bool)
        return (t >= self.outage[0]) & (t < self.outage[1])


@dataclass(frozen=True)
class Trip:
    """What a drive and a flight have in common: the seed (route, sensors, appearance), the length, the GNSS
    outage (seconds from the start; None: no outage) and the camera's frame rate."""

    seed: int = 0
    duration_s: float = 420.0
    outage: tuple[float, float] | None = (60.0, 360.0)
    rate_hz: float = 2.0


def make_scenario(
    world: Any,
    trip: Trip = Trip(),
    camera: CameraModel = DEMO_CAMERA,
    margin_m: float = 48.0,
    speed_mps: tuple[float, float] = (6.0, 12.0),
) -> Scenario:
    """A drive through ``world`` (see :class:`Trip`: its length, GPS outage, frame rate and seed).

    ``margin_m`` keeps the car that far inside the world (a map tile's half-diagonal: the map covers it).
    """
    from edge_geoloc.world.appearance import Appearance
    from edge_geoloc.world.sensors import GpsModel, OdometryModel
    from edge_geoloc.world.trajectory import drive

    seed, outage = trip.seed, trip.outage
    rng = np.random.default_rng(seed)
    traj = drive(world.roads, rng, trip.duration_s, dt=0.1, speed_mps=speed_mps, area=world, margin_m=margin_m)
    gps = GpsModel(seed=seed, outages=() if outage is None else (outage,)).simulate(traj, world.crs)
    odo = OdometryModel(seed=seed + 1, speed_scale_error=0.015, yaw_rate_bias_dps=0.05).simulate(traj)
    app = Appearance.sample(rng, "street")
    return Scenario(world, traj, gps, odo, outage, camera, app, trip.rate_hz, seed)


@dataclass
class Record:
    """One frame of a scenario run: the fix and the truth at its time."""

    t: float
    east: float
    north: float
    sigma_m: float
    heading_deg: float  # true north
    source: str
    mode: str
    truth_east: float
    truth_north: float
    truth_heading_deg: float  # true north
    vision_east: float = float("nan")
    vision_north: float = float("nan")
    total_ms: float = 0.0
    deadline_missed: bool = False


@dataclass
class RunResult:
    records: list[Record]
    summary: dict[str, Any]
    fixes: list[Fix] = field(default_factory=list)

    def arrays(self) -> dict[str, np.ndarray]:
        keys = Record.__dataclass_fields__
        return {k: np.array([getattr(r, k) for r in self.records]) for k in keys}


def run_scenario(
    sc: Scenario,
    encoder: Any,
    index: Any,
    offset: Any = None,
    config: LoopConfig | None = None,
    filter_config: FilterConfig | None = None,
    use_gps: bool = True,
    use_odometry: bool = True,
    progress: Callable[[Frame, Fix], None] | None = None,
    writer: Any = None,
    frames: list[Frame] | None = None,
    localizer: Localizer | None = None,
    events: Any = None,
    source: Any = None,
    outputs: Sequence[Any] = (),
) -> RunResult:
    """The real loop over the scenario's rendered frames (rendered in the capture thread, in lockstep).

    ``localizer``: one already built (a drone camera's, or with other settings) instead of the default.
    ``events``: where GNSS, odometry and attitude come from instead of the scenario's logs (anything with
    ``.prior``, ``.odometry``, ``.attitude``: the MAVLink link of the simulated autopilot); ``source``: the
    frame source instead of the frames (paced ones); ``outputs``: more fix outputs (MAVLink)."""
    from edge_geoloc.localize.sources import ListSource

    loc = localizer or Localizer(encoder, index, sc.camera, config, filter_config, offset, start_utc=sc.gps.start_utc)
    src = source or (ListSource(frames, "pre-rendered") if frames is not None else sc.source())
    records: list[Record] = []
    fixes: list[Fix] = []
    conv = loc.convergence

    def on_fix(frame: Frame, fix: Fix) -> None:
        pose = frame.truth if frame.truth is not None else sc.trajectory.at(frame.t)
        v = fix.vision or {}
        records.append(
            Record(
                fix.t,
                np.nan if fix.east is None else fix.east,
                np.nan if fix.north is None else fix.north,
                np.nan if fix.sigma_m is None else fix.sigma_m,
                np.nan if fix.heading_deg is None else fix.heading_deg,
                fix.source,
                fix.mode,
                pose.east,
                pose.north,
                float((pose.heading_deg + conv) % 360.0),
                v.get("east", np.nan),
                v.get("north", np.nan),
                fix.total_ms,
                fix.deadline_missed,
            )
        )
        fixes.append(fix)
        if progress is not None:
            progress(frame, fix)

    if events is not None:
        prior, odometry, attitude = events.prior, events.odometry, events.attitude
    else:
        prior = SimulatedGps(sc.gps) if use_gps else None
        odometry, attitude = (Odometry.from_log(sc.odometry) if use_odometry else None), sc.attitude()
    summary = run_loop(
        loc,
        Capture(src, mode="lockstep"),
        prior,
        odometry,
        writer=writer,
        on_fix=on_fix,
        attitude=attitude,
        outputs=outputs,
    )
    return RunResult(records, summary, fixes)


def replay_without_vision(sc: Scenario, times: np.ndarray, filter_config: FilterConfig | None = None) -> np.ndarray:
    """The odometry-only baseline: the same filter on the same GPS and odometry, no vision; (T, 2) east/north."""
    pf = ParticleFilter(filter_config)
    gps = SimulatedGps(sc.gps)
    odo = Odometry.from_log(sc.odometry)
    out = np.full((len(times), 2), np.nan)
    conv = 0.0
    for i, t in enumerate(times):
        for _, kind, ev in events(t, gps, odo):
            if kind == ODOMETRY:
                pf.set_odometry(ev.t, ev.speed_mps, ev.yaw_rate_dps)
            else:
                if conv == 0.0:
                    conv = float(sc.crs.convergence_deg(ev.lat, ev.lon))
                course = None if ev.course_deg is None else ev.course_deg - conv
                pf.update_gps(ev.t, ev.east, ev.north, ev.sigma_m, course, ev.course_sigma_deg())
        if pf.initialized:
            pf.predict(float(t))
            est = pf.estimate()
            out[i] = est.east, est.north
    return out


def _stats(err: np.ndarray) -> dict[str, float | None]:
    err = err[np.isfinite(err)]
    if err.size == 0:
        return {"median": None, "p95": None, "max": None}
    return {
        "median": round(float(np.median(err)), 2),
        "p95": round(float(np.percentile(err, 95)), 2),
        "max": round(float(err.max()), 2),
    }


def evaluate(sc: Scenario, result: RunResult, baseline: np.ndarray | None = None) -> dict[str, Any]:
    """Errors against the truth: overall, during the outage, the odometry-only baseline, heading, fix rate."""
    a = result.arrays()
    err = np.hypot(a["east"] - a["truth_east"], a["north"] - a["truth_north"])
    herr = np.abs(angle_diff_deg(a["heading_deg"], a["truth_heading_deg"]))
    herr = np.where(np.isfinite(a["heading_deg"]), herr, np.nan)
    out_mask = sc.in_outage(a["t"])
    gps = sc.gps
    gps_err = np.hypot(*(np.stack([gps.east, gps.north]) - np.stack(_truth_at(sc, gps.t))))
    vision_err = np.hypot(a["vision_east"] - a["truth_east"], a["vision_north"] - a["truth_north"])
    total = _stats(err)
    outage = _stats(err[out_mask])
    report: dict[str, Any] = {
        "frames": len(err),
        "fix_rate": round(float(np.mean(a["source"] == "vision")), 4) if len(err) else 0.0,
        "median_error_m": total["median"],
        "p95_error_m": total["p95"],
        "max_error_m": total["max"],
        "outage_s": None if sc.outage is None else round(sc.outage[1] - sc.outage[0], 1),
        "outage_median_error_m": outage["median"],
        "outage_p95_error_m": outage["p95"],
        "outage_max_error_m": outage["max"],
        "outage_fix_rate": round(float(np.mean(a["source"][out_mask] == "vision")), 4) if out_mask.any() else None,
        "median_heading_error_deg": _stats(herr)["median"],
        "p95_heading_error_deg": _stats(herr)["p95"],
        "vision_candidate_median_error_m": _stats(vision_err)["median"],
        "gps_median_error_m": _stats(gps_err)["median"],
        "sigma_coverage": round(float(np.mean(err[np.isfinite(err)] <= 2.0 * a["sigma_m"][np.isfinite(err)])), 3)
        if np.isfinite(err).any()
        else None,
        "fps": result.summary.get("fps"),
        "deadline_misses": result.summary.get("deadline_misses"),
        "distance_km": round(sc.trajectory.length_m / 1000.0, 2),
    }
    if baseline is not None:
        berr = np.hypot(baseline[:, 0] - a["truth_east"], baseline[:, 1] - a["truth_north"])
        b = _stats(berr[out_mask])
        report["odometry_only_outage_median_error_m"] = b["median"]
        report["odometry_only_outage_p95_error_m"] = b["p95"]
        report["odometry_only_outage_max_error_m"] = b["max"]
        report["_baseline_error"] = berr
    report["_error"] = err
    report["_heading_error"] = herr
    return report


def _truth_at(sc: Scenario, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    tr = sc.trajectory.resample(np.clip(times, sc.trajectory.t[0], sc.trajectory.t[-1]))
    return tr.east, tr.north


def public(report: dict[str, Any]) -> dict[str, Any]:
    """The report without its per-frame arrays (keys starting with '_')."""
    return {k: v for k, v in report.items() if not k.startswith("_")}


def load_world(region_path: str | Path) -> Any:
    from edge_geoloc.world.layout import generate_world
    from edge_geoloc.world.region import Region

    return generate_world(Region.load(region_path))


_RENDER: SyntheticSource | None = None  # set in the parent before forking render workers


def _render_one(i: int) -> tuple[int, np.ndarray]:
    assert _RENDER is not None
    return i, _RENDER.render(i)[0]


def _render_init() -> None:
    import cv2

    cv2.setNumThreads(1)  # one process per core already


def render_frames(sc: Scenario, workers: int = 2, progress: bool = False) -> list[Frame]:
    """Every frame of the drive, rendered ahead by ``workers`` forked processes (the loop is then timed alone)."""
    import multiprocessing as mp

    from tqdm import tqdm

    from edge_geoloc.world.raycast import prepare_views

    global _RENDER
    src = sc.source()
    prepare_views(sc.world, [sc.app])  # shared by the forked workers
    images: list[np.ndarray | None] = [None] * len(src)
    bar = tqdm(total=len(src), unit="frame", desc="rendering camera frames", disable=not progress)
    if workers <= 1:
        for i in range(len(src)):
            images[i] = src.render(i)[0]
            bar.update()
    else:
        import cv2

        _RENDER = src
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # no OpenCV pool at fork: a child inheriting one mid-use deadlocks (as in data/synth.py)
        try:
            with mp.get_context("fork").Pool(workers, initializer=_render_init) as pool:
                for i, image in pool.imap_unordered(_render_one, range(len(src)), chunksize=4):
                    images[i] = image
                    bar.update()
        finally:
            _RENDER = None
            cv2.setNumThreads(threads)
    bar.close()
    return [Frame(i, float(t), images[i], truth=sc.trajectory.at(float(t))) for i, t in enumerate(src.times)]
