"""Temporal filter over east, north and heading: a particle filter (numpy, a few hundred particles).

Why particles rather than an EKF: a retrieval result is not a Gaussian. The top-k tiles of a scoped
search are a mixture (the right tile and its overlapping neighbours, sometimes a look-alike block
300 m away); the filter weighs each particle by that mixture plus an outlier floor, so a wrong tile
costs little, and two candidate places can coexist until motion tells them apart. The odometry's
real error modes are states of each particle: a speed scale factor (tyre radius) and a gyro bias
that random-walks, so a long GPS outage is bridged by odometry whose scale and bias the vision
fixes have been correcting.

Per particle: east, north (map CRS metres), heading (degrees clockwise from GRID north), speed,
yaw rate, gyro bias (deg/s) and odometry scale. Prediction uses the latest odometry sample (speed,
yaw rate) when odometry is given, else a motion model (speed and yaw rate random walks).

Updates, each gated so that one bad measurement is counted and ignored rather than followed:

- GPS (Gaussian, per-axis sigma from HDOP): refused when its Mahalanobis distance to the cloud
  exceeds ``gate_chi2``. Who is wrong when they keep disagreeing? Vision votes: each vision update
  during a streak of consistent gated fixes adds the log-odds of its mixture at the filter's place
  over the receiver's (a receiver's place beyond the searched disc counts as chance). While that sum
  favours the filter (and vision was applied within ``vision_trust_s``), the receiver stays gated: a
  jump (multipath, spoofing). Otherwise ``gps_reset_after`` consistent fixes re-initialize the filter
  at the receiver. A receiver coming back after an outage (no fix received for
  ``reacquire_after_s``) may find the filter drifted: ``gps_reacquire_fixes`` consistent fixes
  re-initialize it there, facing the receiver's course over ground.
- Vision (the candidate mixture): applied when it explains the particles better than chance
  (``min_evidence`` times a uniform spread over the searched area), else refused.
- Heading (vision rotation search, GPS course over ground): Gaussian with a wrapped difference and
  an outlier floor; vision headings are refused beyond ``heading_gate_sigmas``, GPS course is not.

``sigma_m`` is the 1-sigma semi-major axis of the particles' position covariance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edge_geoloc.geo.crs import angle_diff_deg, wrap_deg

E, N, H, V, W, B, S = range(7)  # particle state columns


@dataclass(frozen=True)
class FilterConfig:
    particles: int = 600
    seed: int = 0
    # odometry prediction
    speed_noise_mps: float = 0.15  # per prediction step, per particle
    yaw_rate_noise_dps: float = 0.5
    scale_sigma: float = 0.02  # initial spread of the odometry's speed scale factor
    gyro_bias_sigma_dps: float = 0.1  # initial spread of the gyro bias
    gyro_bias_walk_dps: float = 0.01  # per sqrt(s); more than a MEMS gyro's, so resampling cannot collapse the bias
    position_diffusion_m: float = 0.15  # per sqrt(s): slip, lane changes
    heading_diffusion_deg: float = 0.3  # per sqrt(s)
    # motion model without odometry
    speed_walk_mps: float = 1.5  # per sqrt(s)
    yaw_rate_walk_dps: float = 15.0  # per sqrt(s): a car turns a corner in a few seconds
    yaw_rate_tau_s: float = 3.0  # yaw rate decays towards straight driving
    max_speed_mps: float = 60.0
    max_step_s: float = 0.25  # longer predictions are split into steps
    # measurements
    gate_chi2: float = 13.8  # 2 dof, 99.9 %
    heading_gate_sigmas: float = 4.0
    heading_outlier: float = 0.05
    vision_outlier: float = 0.3  # weight of the uniform component of a vision mixture
    min_evidence: float = 2.0  # a vision mixture must explain the particles this much better than chance
    gps_reset_after: int = 8
    vision_trust_s: float = 20.0
    reacquire_after_s: float = 30.0
    gps_reacquire_fixes: int = 3
    vision_power: float = 0.5  # tempering: successive frames' errors are correlated (the same wrong block)
    resample_ess: float = 0.5

    def __post_init__(self) -> None:
        if self.particles < 16:
            raise ValueError(f"a particle filter needs at least 16 particles, got {self.particles}")
        if not 0 <= self.vision_outlier < 1:
            raise ValueError(f"vision_outlier must be in [0, 1), got {self.vision_outlier}")


@dataclass(frozen=True)
class Estimate:
    t: float
    east: float
    north: float
    sigma_m: float  # 1-sigma semi-major axis
    cov: np.ndarray  # (2, 2)
    heading_deg: float  # grid north
    heading_sigma_deg: float
    speed_mps: float


class ParticleFilter:
    """See the module docstring. Not initialized until :meth:`init_gaussian` or :meth:`init_mixture`."""

    def __init__(self, config: FilterConfig | None = None) -> None:
        self.cfg = config or FilterConfig()
        self.rng = np.random.default_rng(self.cfg.seed)
        self.x = np.zeros((self.cfg.particles, 7))
        self.w = np.full(self.cfg.particles, 1.0 / self.cfg.particles)
        self.t: float | None = None
        self.odometry: tuple[float, float] | None = None  # latest (speed, yaw rate), held until the next sample
        self.counts = {
            "gps_accepted": 0,
            "gps_gated": 0,
            "gps_resets": 0,
            "vision_accepted": 0,
            "vision_rejected": 0,
            "heading_accepted": 0,
            "heading_gated": 0,
            "resamples": 0,
        }
        self.gps_streak = 0  # consecutive gated GPS fixes that agree with each other
        self._gps_offset: np.ndarray | None = None  # the last gated fix's offset from the estimate
        self._gps_seen_t: float | None = None  # the last fix received, applied or gated
        self._streak_after_gap = False  # the current streak began right after the receiver had no fix
        self._vision_vs_gps = 0.0  # log-odds, summed over the streak's vision updates: filter over receiver
        self.last_vision_t: float | None = None
        self.last_gps_t: float | None = None

    @property
    def initialized(self) -> bool:
        return self.t is not None

    # --- initialization -------------------------------------------------------------------------

    def _fill_motion(self, n: int, heading: float | None, heading_sigma: float | None) -> np.ndarray:
        out = np.zeros((n, 7))
        if heading is None or heading_sigma is None or heading_sigma >= 180:
            out[:, H] = self.rng.uniform(0, 360, n)
        else:
            out[:, H] = wrap_deg(heading + self.rng.normal(0, heading_sigma, n))
        out[:, B] = self.rng.normal(0, self.cfg.gyro_bias_sigma_dps, n)
        out[:, S] = 1.0 + self.rng.normal(0, self.cfg.scale_sigma, n)
        return out

    def init_gaussian(
        self,
        t: float,
        east: float,
        north: float,
        sigma_m: float,
        heading_deg: float | None = None,
        heading_sigma_deg: float | None = None,
        speed_mps: float | None = None,
    ) -> None:
        """Particles around a position (and a heading, a speed; None: any heading, any speed up to 25 m/s)."""
        n = self.cfg.particles
        self.x = self._fill_motion(n, heading_deg, heading_sigma_deg)
        self.x[:, E] = east + self.rng.normal(0, sigma_m, n)
        self.x[:, N] = north + self.rng.normal(0, sigma_m, n)
        self.x[:, V] = self.rng.uniform(0.0, 25.0, n) if speed_mps is None else max(0.0, speed_mps)
        self.w[:] = 1.0 / n
        self.t = float(t)

    def init_mixture(
        self,
        t: float,
        centres: np.ndarray,
        weights: np.ndarray,
        sigma_m: float,
        heading_deg: float | None = None,
        heading_sigma_deg: float | None = None,
        fraction: float = 1.0,
    ) -> None:
        """Particles drawn around candidate places (re-localization); ``fraction`` < 1 replaces only that share."""
        centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        p = np.asarray(weights, dtype=np.float64)
        p = p / p.sum()
        n = self.cfg.particles if not self.initialized else max(1, round(fraction * self.cfg.particles))
        which = self.rng.choice(len(centres), size=n, p=p)
        new = self._fill_motion(n, heading_deg, heading_sigma_deg)
        new[:, V] = self.rng.uniform(0.0, 25.0, n)
        new[:, E] = centres[which, 0] + self.rng.normal(0, sigma_m, n)
        new[:, N] = centres[which, 1] + self.rng.normal(0, sigma_m, n)
        if not self.initialized or n >= self.cfg.particles:
            self.x = new
            self.w[:] = 1.0 / self.cfg.particles
        else:
            keep = self.rng.choice(self.cfg.particles, size=self.cfg.particles - n, p=self.w)
            new[:, V] = np.average(self.x[:, V], weights=self.w)
            self.x = np.concatenate([self.x[keep], new])
            self.w[:] = 1.0 / self.cfg.particles
        self.t = float(t) if self.t is None else max(self.t, float(t))

    # --- prediction ------------------------------------------------------------------------------

    def set_odometry(self, t: float, speed_mps: float, yaw_rate_dps: float) -> None:
        """A new odometry sample: predict up to its time with the previous one, then hold this one."""
        if self.initialized:
            self.predict(t)
        self.odometry = (float(speed_mps), float(yaw_rate_dps))

    def predict(self, t: float) -> None:
        if not self.initialized or t <= self.t:  # late events are applied at the current time
            return
        dt_total = float(t) - self.t
        steps = max(1, math.ceil(dt_total / self.cfg.max_step_s - 1e-9))
        for _ in range(steps):
            self._step(dt_total / steps)
        self.t = float(t)

    def _step(self, dt: float) -> None:
        c, x, n, rng = self.cfg, self.x, len(self.x), self.rng
        if self.odometry is not None:
            v_m, w_m = self.odometry
            x[:, V] = np.maximum(0.0, v_m / x[:, S] + rng.normal(0, c.speed_noise_mps, n))
            x[:, W] = w_m - x[:, B] + rng.normal(0, c.yaw_rate_noise_dps, n)
            x[:, B] += rng.normal(0, c.gyro_bias_walk_dps * math.sqrt(dt), n)
        else:
            x[:, V] = np.clip(x[:, V] + rng.normal(0, c.speed_walk_mps * math.sqrt(dt), n), 0.0, c.max_speed_mps)
            x[:, W] = x[:, W] * math.exp(-dt / c.yaw_rate_tau_s) + rng.normal(0, c.yaw_rate_walk_dps * math.sqrt(dt), n)
        mid = np.radians(x[:, H] + x[:, W] * dt / 2)
        x[:, E] += x[:, V] * np.sin(mid) * dt + rng.normal(0, c.position_diffusion_m * math.sqrt(dt), n)
        x[:, N] += x[:, V] * np.cos(mid) * dt + rng.normal(0, c.position_diffusion_m * math.sqrt(dt), n)
        x[:, H] = wrap_deg(x[:, H] + x[:, W] * dt + rng.normal(0, c.heading_diffusion_deg * math.sqrt(dt), n))

    # --- estimates -------------------------------------------------------------------------------

    def estimate(self) -> Estimate:
        if not self.initialized:
            raise RuntimeError("the filter has no estimate before its first fix")
        w = self.w
        p = self.x[:, [E, N]]
        mean = w @ p
        d = p - mean
        cov = (d * w[:, None]).T @ d
        sigma = math.sqrt(max(float(np.linalg.eigvalsh(cov)[-1]), 0.0))
        h = np.radians(self.x[:, H])
        cs, sn = float(w @ np.cos(h)), float(w @ np.sin(h))
        r = min(1.0, math.hypot(cs, sn))
        heading = float(wrap_deg(math.degrees(math.atan2(sn, cs))))
        hsig = math.degrees(math.sqrt(-2.0 * math.log(r))) if r > 1e-12 else 180.0
        return Estimate(
            float(self.t),
            float(mean[0]),
            float(mean[1]),
            sigma,
            cov,
            heading,
            min(hsig, 180.0),
            float(w @ self.x[:, V]),
        )

    # --- updates ---------------------------------------------------------------------------------

    def _reweight(self, log_l: np.ndarray) -> None:
        lw = np.log(np.maximum(self.w, 1e-300)) + log_l
        lw -= lw.max()
        w = np.exp(lw)
        self.w = w / w.sum()
        if 1.0 / float(np.sum(self.w**2)) < self.cfg.resample_ess * len(self.w):
            self._resample()

    def _degenerate(self, log_l: np.ndarray) -> bool:
        """Whether weighting by ``log_l`` would leave only a handful of particles carrying the weight."""
        w = np.exp(log_l - log_l.max()) * self.w
        return 1.0 / float(np.sum((w / w.sum()) ** 2)) < max(10.0, 0.02 * len(w))

    def _resample(self) -> None:
        n = len(self.w)
        positions = (self.rng.random() + np.arange(n)) / n
        idx = np.minimum(np.searchsorted(np.cumsum(self.w), positions), n - 1)
        self.x = self.x[idx]
        self.w = np.full(n, 1.0 / n)
        # Roughening keeps copies of one particle from staying identical.
        self.x[:, E] += self.rng.normal(0, 0.1, n)
        self.x[:, N] += self.rng.normal(0, 0.1, n)
        self.x[:, H] = wrap_deg(self.x[:, H] + self.rng.normal(0, 0.1, n))
        self.x[:, B] += self.rng.normal(0, 0.005, n)
        self.x[:, S] += self.rng.normal(0, 0.001, n)
        self.counts["resamples"] += 1

    def mahalanobis2(self, east: float, north: float, sigma_m: float) -> float:
        """Squared Mahalanobis distance of a position measurement from the cloud."""
        est = self.estimate()
        s = est.cov + np.eye(2) * sigma_m**2
        d = np.array([east - est.east, north - est.north])
        return float(d @ np.linalg.solve(s, d))

    def update_gps(
        self,
        t: float,
        east: float,
        north: float,
        sigma_m: float,
        course_deg: float | None = None,
        course_sigma_deg: float | None = None,
    ) -> bool:
        """A GPS fix (course: GRID heading). Returns whether it was applied; initializes the filter if needed."""
        if not (math.isfinite(east) and math.isfinite(north) and sigma_m > 0):
            raise ValueError(f"GPS fix must be finite with a positive sigma, got ({east}, {north}) +- {sigma_m}")
        if not self.initialized:
            self.init_gaussian(t, east, north, sigma_m, course_deg, course_sigma_deg)  # any speed
            self.counts["gps_accepted"] += 1
            self.last_gps_t = float(t)
            return True
        self.predict(t)
        seen, self._gps_seen_t = self._gps_seen_t, float(t)
        if self.mahalanobis2(east, north, sigma_m) > self.cfg.gate_chi2:
            self.counts["gps_gated"] += 1
            est = self.estimate()
            offset = np.array([east - est.east, north - est.north])
            agrees = self._gps_offset is not None and float(np.linalg.norm(offset - self._gps_offset)) <= max(
                4.0 * sigma_m + 0.2 * est.sigma_m, 10.0
            )
            if not agrees or self.gps_streak == 0:
                self.gps_streak = 0
                self._vision_vs_gps = 0.0
                self._streak_after_gap = seen is None or t - seen >= self.cfg.reacquire_after_s
            self.gps_streak += 1
            self._gps_offset = offset
            if self.gps_streak >= self._gps_reset_count(t):
                # Re-initialized at the receiver, facing its course over ground when it has one: after a long
                # outage the filter's heading may be as wrong as its position.
                if course_deg is not None and course_sigma_deg is not None:
                    self.init_gaussian(t, east, north, sigma_m, course_deg, course_sigma_deg)
                else:
                    self.init_gaussian(t, east, north, sigma_m, est.heading_deg, max(est.heading_sigma_deg, 10.0))
                self.counts["gps_resets"] += 1
                self.gps_streak, self._gps_offset = 0, None
                self.last_gps_t = float(t)
                return True
            return False
        self.gps_streak, self._gps_offset = 0, None
        d2 = (self.x[:, E] - east) ** 2 + (self.x[:, N] - north) ** 2
        log_l = -0.5 * d2 / sigma_m**2
        if self._degenerate(log_l):
            # The fix is far sharper than the cloud (a wide start, the end of an outage): weighting would
            # leave one or two particles. Draw positions from the fix instead; keep the particles' motion.
            self._resample()
            n = len(self.w)
            self.x[:, E] = east + self.rng.normal(0, sigma_m, n)
            self.x[:, N] = north + self.rng.normal(0, sigma_m, n)
        else:
            self._reweight(log_l)
        self.counts["gps_accepted"] += 1
        self.last_gps_t = float(t)
        if course_deg is not None and course_sigma_deg is not None:
            # Course over ground while moving is trusted (not gated): it is what corrects a heading the
            # filter has become too sure of after a long outage.
            self.update_heading(t, course_deg, course_sigma_deg, gate=False)
        return True

    def _gps_reset_count(self, t: float) -> int | float:
        """Consistent gated fixes it takes to re-initialize at the GPS (inf: never, for now)."""
        c = self.cfg
        if self._streak_after_gap:
            return c.gps_reacquire_fixes  # back from an outage: the filter may have drifted
        recent = self.last_vision_t is not None and t - self.last_vision_t <= c.vision_trust_s
        # A jump: vision decides, when what it saw during the streak favours the filter's place over
        # the receiver's (merely having applied vision lately is not a vote: a weak model's updates are
        # applied near wherever the filter is).
        return math.inf if recent and self._vision_vs_gps > 0 else c.gps_reset_after

    @staticmethod
    def _mixture_ratio(
        east: np.ndarray, north: np.ndarray, centres: np.ndarray, weights: np.ndarray, sigma_m: float, area_m2: float
    ) -> np.ndarray:
        c = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
        a = np.asarray(weights, dtype=np.float64)
        a = a / a.sum()
        d2 = (east[:, None] - c[None, :, 0]) ** 2 + (north[:, None] - c[None, :, 1]) ** 2
        dens = (np.exp(-0.5 * d2 / sigma_m**2) @ a) / (2 * math.pi * sigma_m**2)
        return dens * area_m2

    def vision_evidence_at(
        self, centres: np.ndarray, weights: np.ndarray, sigma_m: float, area_m2: float, east: float, north: float
    ) -> float:
        """The candidate mixture's density at one place over a uniform density on the searched area."""
        one = np.array([float(east)]), np.array([float(north)])
        return float(self._mixture_ratio(*one, centres, weights, sigma_m, area_m2)[0])

    def vision_evidence(self, centres: np.ndarray, weights: np.ndarray, sigma_m: float, area_m2: float) -> np.ndarray:
        """Per particle: the candidate mixture's density over a uniform density on the searched area."""
        return self._mixture_ratio(self.x[:, E], self.x[:, N], centres, weights, sigma_m, area_m2)

    def update_vision(
        self,
        t: float,
        centres: np.ndarray,
        weights: np.ndarray,
        sigma_m: float,
        area_m2: float,
        outlier: float | None = None,
    ) -> tuple[bool, float]:
        """A vision mixture over candidate places; returns (applied, evidence ratio over chance).

        ``outlier``: the weight of the uniform component (default ``vision_outlier``)."""
        self.predict(t)
        ratio = self.vision_evidence(centres, weights, sigma_m, area_m2)
        evidence = float(self.w @ ratio)
        if evidence < self.cfg.min_evidence:
            self.counts["vision_rejected"] += 1
            return False, evidence
        eps = self.cfg.vision_outlier if outlier is None else outlier
        if self.gps_streak > 0 and self._gps_offset is not None:
            self._vision_vs_gps += self._vote(centres, weights, sigma_m, area_m2, eps, evidence)
        self._reweight(self.cfg.vision_power * np.log(eps + (1 - eps) * ratio))
        self.counts["vision_accepted"] += 1
        self.last_vision_t = float(t)
        return True, evidence

    def _vote(
        self, centres: np.ndarray, weights: np.ndarray, sigma_m: float, area_m2: float, eps: float, evidence: float
    ) -> float:
        """A disagreeing receiver: log-odds that this vision mixture sees the filter's place rather than the
        receiver's. A place beyond the searched disc (centred on the filter) counts as chance: the candidates
        cannot see it."""
        est = self.estimate()
        off = self._gps_offset
        at_gps = 1.0
        if float(np.hypot(*off)) < math.sqrt(area_m2 / math.pi):
            at_gps = self.vision_evidence_at(centres, weights, sigma_m, area_m2, est.east + off[0], est.north + off[1])
        return math.log((eps + (1 - eps) * evidence) / (eps + (1 - eps) * at_gps))

    def update_position(
        self, t: float, east: float, north: float, cov: np.ndarray, area_m2: float
    ) -> tuple[bool, float]:
        """A Gaussian position measurement with a full covariance (a verified map registration: long along a
        straight road); returns (applied, evidence ratio over chance on ``area_m2``), refused below
        ``min_evidence`` as a vision mixture is. Applied as an ensemble Kalman update (perturbed observations):
        each particle moves by the gain of the cloud's covariance against the measurement's, so an axis the
        measurement does not constrain keeps the cloud's own spread, and a measurement far sharper than the
        cloud does not leave a handful of particles (as weighting would)."""
        self.predict(t)
        cov = np.asarray(cov, np.float64)
        d = self.x[:, [E, N]] - np.array([east, north])
        m2 = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
        dens = np.exp(-0.5 * m2) / (2 * math.pi * math.sqrt(max(float(np.linalg.det(cov)), 1e-12)))
        evidence = float(self.w @ (dens * area_m2))
        if evidence < self.cfg.min_evidence:
            self.counts["vision_rejected"] += 1
            return False, evidence
        p = self.estimate().cov + np.eye(2) * 1e-6
        gain = p @ np.linalg.inv(p + cov)
        z = np.array([east, north]) + self.rng.multivariate_normal(np.zeros(2), cov, len(self.w))
        self.x[:, [E, N]] += (z - self.x[:, [E, N]]) @ gain.T
        self.counts["vision_accepted"] += 1
        self.last_vision_t = float(t)
        return True, evidence

    def update_heading(self, t: float, heading_deg: float, sigma_deg: float, gate: bool = True) -> bool:
        """A heading measurement (GRID north). Returns whether it was applied."""
        self.predict(t)
        est = self.estimate()
        spread = math.hypot(sigma_deg, min(est.heading_sigma_deg, 90.0))
        if gate and abs(float(angle_diff_deg(heading_deg, est.heading_deg))) > self.cfg.heading_gate_sigmas * spread:
            self.counts["heading_gated"] += 1
            return False
        d = angle_diff_deg(heading_deg, self.x[:, H])
        eps = self.cfg.heading_outlier
        # A mixture of densities over the circle: the measurement (Gaussian) or an outlier (uniform).
        gauss = np.exp(-0.5 * (d / sigma_deg) ** 2) / (sigma_deg * math.sqrt(2 * math.pi))
        log_l = np.log(eps / 360.0 + (1 - eps) * gauss)
        if self._degenerate(log_l):  # far sharper than the cloud: draw headings from the measurement
            self._resample()
            self.x[:, H] = wrap_deg(heading_deg + self.rng.normal(0, sigma_deg, len(self.w)))
        else:
            self._reweight(log_l)
        self.counts["heading_accepted"] += 1
        return True
