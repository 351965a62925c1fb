"""Sensor models along a true trajectory: a GNSS receiver and wheel/gyro odometry.

The GPS-denied tests need sensors that fail the way real ones do:

- :class:`GpsModel`: white noise whose size follows the satellite geometry (HDOP), a slowly
  drifting bias (first-order Gauss-Markov per axis: ionosphere, ephemeris), multipath episodes
  (a sudden offset of several metres that holds for seconds, with fewer satellites and a higher
  HDOP), and outage windows (tunnels, jamming) in which the receiver reports no fix. The log
  writes NMEA GGA/RMC the way a receiver does, including the no-fix sentences.
- :class:`OdometryModel`: speed with a scale error (tyre radius) and noise, yaw rate with noise
  and a bias that random-walks (a MEMS gyro). :func:`dead_reckon` integrates it: the
  odometry-only baseline whose drift the vision fixes must beat.

HDOP is reported so that ``hdop * GpsModel.uere_m`` is the horizontal RMS error (DRMS) of the
white-noise, bias and multipath parts together; the per-axis sigma is that over sqrt(2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone

import numpy as np

from edge_geoloc.geo import MapCRS
from edge_geoloc.geo.nmea import format_gga, format_gsa, format_rmc
from edge_geoloc.world.trajectory import Trajectory

DEFAULT_START_UTC = datetime(2024, 6, 21, 10, 0, 0, tzinfo=timezone.utc)


def _gauss_markov(rng: np.random.Generator, n: int, dt: float, sigma: float, tau: float, dims: int = 1) -> np.ndarray:
    """Stationary first-order Gauss-Markov process: std ``sigma``, correlation ``exp(-lag / tau)``."""
    out = np.zeros((n, dims))
    if sigma <= 0 or n == 0:
        return out
    phi = np.exp(-dt / tau)
    drive = rng.normal(0.0, sigma * np.sqrt(1 - phi**2), (n, dims))
    out[0] = rng.normal(0.0, sigma, dims)
    for i in range(1, n):  # a short loop: sensor logs are thousands of samples, not millions
        out[i] = phi * out[i - 1] + drive[i]
    return out


def _sample_times(traj: Trajectory, rate_hz: float) -> np.ndarray:
    if not rate_hz > 0:
        raise ValueError(f"sensor rate_hz must be positive, got {rate_hz}")
    n = int(np.floor(traj.duration_s * rate_hz + 1e-9)) + 1
    return traj.t[0] + np.arange(n) / rate_hz


@dataclass
class GpsLog:
    """What a receiver reported, one row per epoch. Invalid epochs have NaN positions."""

    t: np.ndarray  # seconds on the trajectory's clock
    lat: np.ndarray
    lon: np.ndarray
    east: np.ndarray  # map CRS, for the filter (NaN when invalid)
    north: np.ndarray
    altitude_m: np.ndarray  # above mean sea level
    valid: np.ndarray  # bool: a fix
    hdop: np.ndarray
    quality: np.ndarray  # GGA fix quality: 1 GPS fix, 0 none
    num_sats: np.ndarray
    speed_mps: np.ndarray  # speed over ground
    course_deg: np.ndarray  # course over ground, clockwise from TRUE north
    uere_m: float  # hdop * uere_m = horizontal RMS error
    start_utc: datetime = DEFAULT_START_UTC  # UTC at t = 0

    def __len__(self) -> int:
        return len(self.t)

    def sigma_m(self) -> np.ndarray:
        """Per-axis 1-sigma error the receiver's HDOP implies (inf without a fix)."""
        return np.where(self.valid, self.hdop * self.uere_m / np.sqrt(2.0), np.inf)

    def utc(self, i: int) -> datetime:
        return self.start_utc + timedelta(seconds=float(self.t[i]))

    def to_nmea(self, talker: str = "GP", gsa: bool = False) -> list[str]:
        """NMEA lines (no line ends) as the receiver writes them: GGA then RMC (then GSA) per epoch.

        Outage epochs give the no-fix forms: GGA quality 0 with empty position, RMC status V.
        """
        lines = []
        for i in range(len(self)):
            when = self.utc(i)
            ok = bool(self.valid[i])
            lat = float(self.lat[i]) if ok else None
            lon = float(self.lon[i]) if ok else None
            hdop = float(self.hdop[i]) if ok else 99.99
            lines.append(
                format_gga(
                    when,
                    lat,
                    lon,
                    quality=int(self.quality[i]),
                    num_sats=int(self.num_sats[i]),
                    hdop=hdop,
                    altitude_m=float(self.altitude_m[i]) if ok else None,
                    geoid_sep_m=0.0 if ok else None,
                    talker=talker,
                )
            )
            lines.append(
                format_rmc(
                    when,
                    lat,
                    lon,
                    speed_mps=float(self.speed_mps[i]) if ok else None,
                    course_deg=float(self.course_deg[i]) if ok else None,
                    valid=ok,
                    talker=talker,
                )
            )
            if gsa:
                prns = list(range(1, int(self.num_sats[i]) + 1))[:12]
                dops = (hdop * 1.6, hdop, hdop * 1.3) if ok else (None, None, None)
                lines.append(format_gsa(3 if ok else 1, prns if ok else (), *dops, talker=talker))
        return lines


@dataclass(frozen=True)
class GpsModel:
    """A GNSS receiver's errors. Sigmas are per axis (east, north) in metres at nominal HDOP."""

    sigma_m: float = 2.0  # white noise per axis
    bias_sigma_m: float = 1.5  # Gauss-Markov bias per axis, stationary std
    bias_tau_s: float = 120.0  # bias correlation time
    multipath_rate_hz: float = 0.01  # expected multipath episodes per second
    multipath_m: float = 10.0  # typical jump size (drawn in [0.5, 1.5] x this, random direction)
    multipath_duration_s: float = 5.0  # mean episode length (exponential)
    outages: tuple[tuple[float, float], ...] = ()  # (t_start, t_end) seconds without a fix
    rate_hz: float = 1.0
    hdop_nominal: float = 0.9
    hdop_variation: float = 0.1  # log-std of the slow geometry change (tau 300 s)
    num_sats_nominal: int = 10
    speed_sigma_mps: float = 0.1  # Doppler velocity noise per axis
    vertical_factor: float = 1.7  # vertical error / horizontal per-axis error
    ground_msl_m: float = 100.0  # terrain height above mean sea level (the world is flat; GGA altitude = this + AGL)
    seed: int = 0
    start_utc: datetime = field(default=DEFAULT_START_UTC)

    def __post_init__(self) -> None:
        for name in (
            "sigma_m",
            "bias_sigma_m",
            "multipath_rate_hz",
            "multipath_m",
            "speed_sigma_mps",
            "hdop_variation",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"GpsModel.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("bias_tau_s", "multipath_duration_s", "rate_hz", "hdop_nominal"):
            if not getattr(self, name) > 0:
                raise ValueError(f"GpsModel.{name} must be > 0, got {getattr(self, name)}")
        if self.num_sats_nominal < 4:
            raise ValueError(f"GpsModel.num_sats_nominal must be >= 4 (a 3D fix), got {self.num_sats_nominal}")
        outages = tuple((float(a), float(b)) for a, b in self.outages)
        for a, b in outages:
            if not b > a:
                raise ValueError(f"GPS outage window ({a}, {b}) must have t_end > t_start")
        object.__setattr__(self, "outages", outages)
        if self.sigma_m == 0 and self.bias_sigma_m == 0:
            object.__setattr__(
                self, "_uere", 1e-3 / self.hdop_nominal
            )  # a perfect receiver: HDOP still means something
        else:
            object.__setattr__(self, "_uere", np.sqrt(2 * (self.sigma_m**2 + self.bias_sigma_m**2)) / self.hdop_nominal)

    @property
    def uere_m(self) -> float:
        """User equivalent range error: ``hdop * uere_m`` is the horizontal RMS error at nominal conditions."""
        return float(self._uere)  # type: ignore[attr-defined]

    def with_outages(self, *windows: tuple[float, float]) -> GpsModel:
        return replace(self, outages=tuple(windows))

    def in_outage(self, t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros(t.shape, bool)
        for a, b in self.outages:
            out |= (t >= a) & (t < b)
        return out

    def simulate(self, traj: Trajectory, crs: MapCRS) -> GpsLog:
        """Receiver output along ``traj`` at ``rate_hz`` (epochs from the trajectory's first time)."""
        rng = np.random.default_rng(self.seed)
        times = _sample_times(traj, self.rate_hz)
        truth = traj.resample(times)
        n, dt = len(times), 1.0 / self.rate_hz
        # Satellite geometry: a slow log-normal wander of HDOP around nominal.
        geometry = np.exp(_gauss_markov(rng, n, dt, self.hdop_variation, 300.0)[:, 0])
        white = rng.normal(0.0, self.sigma_m, (n, 2)) * geometry[:, None]
        bias = _gauss_markov(rng, n, dt, self.bias_sigma_m, self.bias_tau_s, dims=2)
        jump, seen = self._multipath(rng, n, dt)
        error = white + bias + jump
        # HDOP as the receiver reports it: geometry, inflated by multipath (fewer, reflected signals)
        # by about as much as the jump, as far as the receiver can tell (``seen``).
        axis2 = (self.sigma_m * geometry) ** 2 + self.bias_sigma_m**2 + seen**2 / 2
        hdop = self.hdop_nominal * np.sqrt(axis2 / max(self.sigma_m**2 + self.bias_sigma_m**2, 1e-12))
        if self.sigma_m == 0 and self.bias_sigma_m == 0:
            hdop = self.hdop_nominal * geometry
        num_sats = np.clip(np.round(self.num_sats_nominal * self.hdop_nominal / hdop), 4, 24).astype(np.int64)
        valid = ~self.in_outage(times)
        east = truth.east + error[:, 0]
        north = truth.north + error[:, 1]
        lat, lon = crs.to_latlon(east, north)
        vertical = (
            rng.normal(0.0, self.sigma_m, n) * geometry
            + _gauss_markov(rng, n, dt, self.bias_sigma_m, self.bias_tau_s)[:, 0]
        )
        alt = self.ground_msl_m + truth.altitude_m + self.vertical_factor * vertical
        # Doppler velocity in the true-north frame: speed over ground and course.
        course_true = np.deg2rad(truth.true_heading(crs))
        ve = truth.speed_mps * np.sin(course_true) + rng.normal(0, self.speed_sigma_mps, n)
        vn = truth.speed_mps * np.cos(course_true) + rng.normal(0, self.speed_sigma_mps, n)
        nan = np.where(valid, 1.0, np.nan)
        return GpsLog(
            t=times,
            lat=lat * nan,
            lon=lon * nan,
            east=east * nan,
            north=north * nan,
            altitude_m=alt * nan,
            valid=valid,
            hdop=np.where(valid, np.round(hdop, 2), 99.99),
            quality=valid.astype(np.int64),
            num_sats=np.where(valid, num_sats, rng.integers(0, 4, n)),
            speed_mps=np.hypot(ve, vn) * nan,
            course_deg=np.mod(np.rad2deg(np.arctan2(ve, vn)), 360.0) * nan,
            uere_m=self.uere_m,
            start_utc=self.start_utc,
        )

    def _multipath(self, rng: np.random.Generator, n: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Offsets of multipath episodes (Poisson starts, exponential lengths, random direction) and
        the size the receiver believes each has (the true size off by a log-normal factor, sd 0.3)."""
        jump, seen = np.zeros((n, 2)), np.zeros(n)
        if self.multipath_rate_hz <= 0 or self.multipath_m <= 0:
            return jump, seen
        p_start = 1.0 - np.exp(-self.multipath_rate_hz * dt)
        starts = rng.random(n) < p_start
        size = rng.uniform(0.5, 1.5, n) * self.multipath_m
        angle = rng.uniform(0, 2 * np.pi, n)
        length = np.maximum(1, np.round(rng.exponential(self.multipath_duration_s, n) / dt)).astype(np.int64)
        belief = size * np.exp(rng.normal(0.0, 0.3, n))
        i = 0
        while i < n:
            if starts[i]:
                j = min(n, i + int(length[i]))
                jump[i:j] = size[i] * np.array([np.sin(angle[i]), np.cos(angle[i])])
                seen[i:j] = belief[i]
                i = j
            else:
                i += 1
        return jump, seen


@dataclass
class OdometryLog:
    """Wheel speed and gyro yaw rate (positive turning right, i.e. clockwise seen from above)."""

    t: np.ndarray
    speed_mps: np.ndarray
    yaw_rate_dps: np.ndarray

    def __len__(self) -> int:
        return len(self.t)

    def between(self, t0: float, t1: float) -> OdometryLog:
        keep = (self.t >= t0) & (self.t <= t1)
        return OdometryLog(self.t[keep], self.speed_mps[keep], self.yaw_rate_dps[keep])


@dataclass(frozen=True)
class OdometryModel:
    """Wheel odometry and a yaw-rate gyro."""

    speed_scale_error: float = 0.01  # measured = true * (1 + this): tyre radius, calibration
    speed_noise_mps: float = 0.05
    yaw_rate_bias_dps: float = 0.0  # bias at t = 0
    yaw_rate_bias_walk_dps: float = 0.005  # bias random walk, deg/s per sqrt(s)
    yaw_rate_noise_dps: float = 0.1
    rate_hz: float = 10.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("speed_noise_mps", "yaw_rate_bias_walk_dps", "yaw_rate_noise_dps"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"OdometryModel.{name} must be >= 0, got {getattr(self, name)}")
        if not self.rate_hz > 0:
            raise ValueError(f"OdometryModel.rate_hz must be > 0, got {self.rate_hz}")
        if not self.speed_scale_error > -1:
            raise ValueError(f"OdometryModel.speed_scale_error must be > -1, got {self.speed_scale_error}")

    @classmethod
    def perfect(cls, rate_hz: float = 10.0) -> OdometryModel:
        """No errors at all: dead reckoning then follows the truth (up to integration error)."""
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, rate_hz)

    def simulate(self, traj: Trajectory) -> OdometryLog:
        rng = np.random.default_rng(self.seed)
        times = _sample_times(traj, self.rate_hz)
        truth = traj.resample(times)
        n, dt = len(times), 1.0 / self.rate_hz
        speed = truth.speed_mps * (1 + self.speed_scale_error) + rng.normal(0, self.speed_noise_mps, n)
        walk = np.concatenate([[0.0], np.cumsum(rng.normal(0, self.yaw_rate_bias_walk_dps * np.sqrt(dt), n - 1))])
        bias = self.yaw_rate_bias_dps + walk
        yaw = truth.yaw_rate_dps + bias + rng.normal(0, self.yaw_rate_noise_dps, n)
        return OdometryLog(t=times, speed_mps=np.maximum(speed, 0.0), yaw_rate_dps=yaw)


def dead_reckon(odometry: OdometryLog, start_east: float, start_north: float, start_heading_deg: float) -> Trajectory:
    """Integrate speed and yaw rate from a known start pose (heading clockwise from grid north).

    Trapezoidal in heading and in velocity: exact for a constant turn rate at a constant speed up
    to second order in the step, so noise-free odometry reproduces the truth to centimetres.
    Irregular sample spacing is allowed (each step uses its own dt); the output keeps the odometry's
    times (use ``Trajectory.resample`` for other clocks).
    """
    t = np.asarray(odometry.t, dtype=np.float64)
    if len(t) == 0:
        raise ValueError("odometry log is empty")
    v = np.asarray(odometry.speed_mps, dtype=np.float64)
    w = np.deg2rad(np.asarray(odometry.yaw_rate_dps, dtype=np.float64))
    dt = np.diff(t)
    if np.any(dt <= 0):
        raise ValueError("odometry times must increase")
    heading = np.deg2rad(start_heading_deg) + np.concatenate([[0.0], np.cumsum((w[1:] + w[:-1]) / 2 * dt)])
    ve, vn = v * np.sin(heading), v * np.cos(heading)
    east = start_east + np.concatenate([[0.0], np.cumsum((ve[1:] + ve[:-1]) / 2 * dt)])
    north = start_north + np.concatenate([[0.0], np.cumsum((vn[1:] + vn[:-1]) / 2 * dt)])
    zeros = np.zeros(len(t))
    return Trajectory(
        t=t,
        east=east,
        north=north,
        heading_deg=np.rad2deg(heading),
        speed_mps=v,
        yaw_rate_dps=np.rad2deg(w),
        altitude_m=zeros,
        pitch_deg=zeros,
        roll_deg=zeros,
        kind="ground",
        fixed_dt=False,  # odometry clocks may jitter
    )
