"""GPS-denied flights in the synthetic world: what the UAV demo and benchmark run.

A :class:`UavScenario` is the vehicle :class:`~edge_geoloc.sim.scenario.Scenario` with a drone:
a flight (:func:`~edge_geoloc.world.trajectory.fly`) at ``altitude_m``, the drone camera (lens,
mount), the autopilot's attitude and height (:class:`AttitudeModel`: roll/pitch noise, a
magnetometer yaw bias, barometric height noise), the receiver with its outage and the drone's
odometry (ground speed from airspeed, off by the wind: a scale error; the gyro's yaw rate with a
bias). Frames are rendered with the TRUE attitude; the loop only gets the autopilot's.
Evaluation, the odometry-only baseline and frame rendering are the vehicle scenario's.

World-side imports (rendering) happen inside functions: the loop itself stays device-side.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.cameras.uav import UavCamera
from edge_geoloc.localize.attitude import AttitudeLog
from edge_geoloc.sim.frames import SyntheticSource
from edge_geoloc.sim.scenario import Scenario, Trip

log = logging.getLogger(__name__)

# The demo drone's camera (384 x 288, 80 degrees across, mild barrel distortion, a gimbal 15 degrees forward
# of nadir that does not cancel the airframe's roll and pitch; the yaw not trusted): one YAML, also for `run`.
DEMO_UAV_CAMERA_FILE = Path(__file__).resolve().parent.parent / "configs" / "camera" / "uav-demo.yaml"
DEMO_UAV_CAMERA = UavCamera.load(DEMO_UAV_CAMERA_FILE)


@dataclass(frozen=True)
class AttitudeModel:
    """The autopilot's attitude and height estimates: noise, a yaw bias (a badly calibrated magnetometer).

    The errors are slow, as an attitude estimator's are (gyro bias, levelling, barometer drift): each is a
    first-order Gauss-Markov process with the given sigma and correlation time ``noise_tau_s`` (0: white
    noise). Slow errors make what a frame sees independent of which 50 Hz sample it lands on: over a live link
    a millisecond of clock offset picks the neighbouring sample, and white noise would make that a fresh draw.
    ``rate_hz`` is the stream's rate (an autopilot sends ATTITUDE at 50 Hz; the simulated autopilot streams
    this very log)."""

    roll_pitch_sigma_deg: float = 0.3
    yaw_sigma_deg: float = 1.0
    yaw_bias_deg: float = 0.0
    height_sigma_m: float = 0.7  # barometer / rangefinder noise
    height_bias_m: float = 0.0
    rate_hz: float = 50.0
    noise_tau_s: float = 2.0
    yaw: bool = True  # False: the autopilot gives no yaw at all
    seed: int = 0

    def simulate(self, traj: Any, crs: Any) -> AttitudeLog:
        """Samples along ``traj`` at ``rate_hz``; yaw clockwise from TRUE north."""
        rng = np.random.default_rng(self.seed)
        t = np.arange(traj.t[0], traj.t[-1] + 1e-9, 1.0 / self.rate_hz)
        tr = traj.resample(t)
        n = len(t)

        def noise(sigma: float) -> np.ndarray:
            return gauss_markov(rng, n, sigma, 1.0 / self.rate_hz, self.noise_tau_s)

        yaw = tr.true_heading(crs) + self.yaw_bias_deg + noise(self.yaw_sigma_deg)
        return AttitudeLog(
            t,
            tr.roll_deg + noise(self.roll_pitch_sigma_deg),
            tr.pitch_deg + noise(self.roll_pitch_sigma_deg),
            np.mod(yaw, 360.0) if self.yaw else np.full(n, np.nan),
            tr.altitude_m + self.height_bias_m + noise(self.height_sigma_m),
            "simulated autopilot",
        )


def gauss_markov(rng: np.random.Generator, n: int, sigma: float, dt: float, tau_s: float) -> np.ndarray:
    """``n`` samples ``dt`` apart of a stationary first-order Gauss-Markov process (standard deviation ``sigma``,
    correlation time ``tau_s``; 0: white noise): x[k] = a x[k-1] + sqrt(1 - a^2) sigma w[k], a = exp(-dt/tau)."""
    w = rng.normal(0.0, sigma, n)
    if tau_s <= 0:
        return w
    a = float(np.exp(-dt / tau_s))
    b = float(np.sqrt(1.0 - a * a))
    x = w.copy()  # x[0] = w[0]: the stationary distribution from the start
    for k in range(1, n):
        x[k] = a * x[k - 1] + b * w[k]
    return x


class UavSource(SyntheticSource):
    """The synthetic world seen by the drone camera along a flight (true attitude), at ``rate_hz``."""

    def render(self, i: int) -> tuple[np.ndarray, Any]:
        from edge_geoloc.world.camera import render_camera

        rng = np.random.default_rng([self.seed, i])
        pose = self.trajectory.at(float(self.times[i]))
        cam: UavCamera = self.camera
        R = cam.world_from_cam(pose.roll_deg, pose.pitch_deg, pose.heading_deg)
        image = render_camera(
            self.world, cam.lens, R, np.array([pose.east, pose.north, pose.altitude_m]), self.app, rng
        )
        return image, pose


@dataclass
class UavScenario(Scenario):
    attitude_model: AttitudeModel | None = None
    altitude_m: float = 120.0

    def source(self) -> UavSource:
        return UavSource(self.world, self.trajectory, self.camera, self.rate_hz, app=self.app, seed=self.seed)

    def attitude(self) -> AttitudeLog | None:
        """A fresh attitude stream (each run polls its own)."""
        assert self.attitude_model is not None
        return self.attitude_model.simulate(self.trajectory, self.crs)


# A drone's camera runs slower than a car's: each frame is several patch encodes.
UAV_TRIP = Trip(rate_hz=1.0)


def make_uav_scenario(
    world: Any,
    trip: Trip = UAV_TRIP,
    camera: UavCamera = DEMO_UAV_CAMERA,
    altitude_m: float = 120.0,
    speed_mps: float = 12.0,
    margin_m: float = 160.0,
    attitude: AttitudeModel | None = None,
) -> UavScenario:
    """A flight over ``world`` (see :class:`~edge_geoloc.sim.scenario.Trip`: its length, GPS outage, frame rate
    and seed).

    ``margin_m`` keeps the drone that far inside the world, so that what it looks at stays on the map.
    """
    from edge_geoloc.world.appearance import Appearance
    from edge_geoloc.world.sensors import GpsModel, OdometryModel
    from edge_geoloc.world.trajectory import fly

    seed, outage = trip.seed, trip.outage
    rng = np.random.default_rng(seed)
    traj = fly(world, rng, trip.duration_s, dt=0.1, altitude_m=altitude_m, speed_mps=speed_mps, margin_m=margin_m)
    gps = GpsModel(seed=seed, outages=() if outage is None else (outage,), multipath_rate_hz=0.0).simulate(
        traj, world.crs
    )
    # Ground speed from airspeed is off by the wind (a few percent); a MEMS gyro drifts.
    odo = OdometryModel(
        seed=seed + 1, speed_scale_error=0.03, speed_noise_mps=0.3, yaw_rate_bias_dps=0.08, yaw_rate_noise_dps=0.2
    ).simulate(traj)
    app = Appearance.sample(rng, "uav")
    att = attitude or AttitudeModel(seed=seed + 2)
    return UavScenario(world, traj, gps, odo, outage, camera, app, trip.rate_hz, seed, att, altitude_m)
