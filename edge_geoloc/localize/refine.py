"""The loop's metric refinement stage: the frame's ground projection registered against the map imagery.

After the search, the vision stage's ground image (a panorama's bird's-eye view, a drone's rectified patch:
``VisionStage.ground``) for the best heading at hand (the frame's own heading measurement, else the
filter's) is registered (:func:`~edge_geoloc.localize.registration.register`) against the map's imagery
(:mod:`edge_geoloc.maps.ortho`) around the filter's estimate and around the retrieval's best candidate
places (a weak retrieval still leaves the filter's estimate to refine; a lost filter still has the
candidates). The best registration by quality is the frame's refinement:

- its quality passes the threshold calibrated while GPS pins the filter
  (:class:`~edge_geoloc.localize.calibrate.RegistrationCheck`): the registered place, a Gaussian with the
  registration's covariance (scaled as calibrated; a straight road leaves it long along the road), is the
  frame's position measurement in place of the tile mixture, and the registered heading (assumed + the
  rotation found) is a heading measurement: this works with the autopilot's yaw distrusted;
- no place passes (the threshold is known): the retrieval was not verified, so its mixture goes into the
  filter as weak evidence (the outlier weight raised to ``fail_outlier``);
- before calibration nothing changes (the registrations are only collected).

Timed as the ``register`` stage with the loop's stage timer; left out when it does not fit the budget (as
the heading views are). A bundle without imagery: refinement off (said once by the imagery reader).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from edge_geoloc.config import check
from edge_geoloc.geo.crs import wrap_deg
from edge_geoloc.localize.registration import METHODS, Registration, RegistrationConfig, compose, register

if TYPE_CHECKING:
    from edge_geoloc.localize.filter import Estimate
    from edge_geoloc.localize.loop import Localizer
    from edge_geoloc.localize.sources import Frame
    from edge_geoloc.localize.timer import StageTimer
    from edge_geoloc.localize.vision import Measurement

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineConfig:
    """``loop: {refine: {...}}`` in the run YAML."""

    enabled: bool = True
    # the GSD registration works at: a finer imagery layer is resampled to it (0.25 m/px costs 4x the pixels)
    gsd_m: float = field(default=0.5, metadata=check(lambda v: v > 0, "metres per pixel"))
    method: str = field(default="dense", metadata=check(lambda v: v in METHODS, "dense or features"))
    candidates: int = field(default=1, metadata=check(lambda v: v >= 0, "candidate places besides the filter's"))
    search_sigmas: float = 2.5  # around the filter's estimate: this many sigma (+ min_search_m) ...
    min_search_m: float = field(default=6.0, metadata=check(lambda v: v > 0, "metres"))
    max_search_m: float = field(default=30.0, metadata=check(lambda v: v > 0, "metres"))  # ... at most this
    max_heading_sigma_deg: float = 12.0  # a heading less sure than this is not registered (a sweep decides first)
    heading_sigma_deg: float = field(default=1.0, metadata=check(lambda v: v > 0, "degrees"))  # floor
    bev_radius_m: float = field(default=20.0, metadata=check(lambda v: v > 2, "metres"))  # street: flat ground
    patch_m: float = field(default=64.0, metadata=check(lambda v: v > 4, "metres"))  # UAV: patch side
    min_valid: float = 0.5  # share of the map window that must hold imagery
    fail_outlier: float = field(default=0.9, metadata=check(lambda v: 0 <= v < 1, "a weight in [0, 1)"))
    # Apply registrations before the threshold is calibrated at ``uncalibrated_quality`` (a GPS-denied start).
    trust_uncalibrated: bool = False
    uncalibrated_quality: float = 0.5
    # While registrations pass, the retrieval's heading views (two more encodes) run only every this many
    # frames: a passed registration measures the heading itself (about 1 deg against the views' 4) and
    # the frame time goes to it (1: the loop's ``heading_every`` regardless).
    heading_views_every: int = field(default=5, metadata=check(lambda v: v >= 1, "a positive frame count"))
    # A heading correction at least this large: project the frame again at the corrected heading and register
    # once more around the corrected place (registration.compose); smaller ones are exact enough.
    reproject_above_deg: float = field(default=3.0, metadata=check(lambda v: v > 0, "degrees"))


@dataclass
class GroundImage:
    """A frame projected to the ground: grid-north-up at the imagery's GSD; ``centre_en`` is the image centre's
    offset from the camera (metres, grid east/north; 0 for a BEV, the look point for a drone patch)."""

    image: np.ndarray
    mask: np.ndarray
    centre_en: np.ndarray
    heading_grid_deg: float  # the vehicle heading it was projected for


@dataclass
class Refinement:
    """The best registration of a frame, as the filter takes it (grid metres and degrees)."""

    east: float
    north: float
    cov: np.ndarray
    heading: tuple[float, float]  # vehicle heading (grid) and sigma
    quality: float
    passed: bool  # the quality passed the calibrated threshold
    calibrated: bool  # a threshold was known (False: collected only, nothing changes)


def open_imagery(index: Any) -> Any | None:
    """The map's imagery layer (:class:`edge_geoloc.maps.ortho.MapOrtho`), or None when the bundle has none
    (said once) or ``index`` holds no bundle: the one place the loop touches the layer's API."""
    bundle = getattr(index, "bundle", None)
    if bundle is None:
        return None
    from edge_geoloc.maps.ortho import MapOrtho

    return MapOrtho.open(bundle)


class Refiner:
    """The refine stage of one loop (see the module docstring)."""

    def __init__(self, loop: Localizer, imagery: Any, cfg: RefineConfig) -> None:
        self.loop, self.imagery, self.cfg = loop, imagery, cfg
        self.counts = {"registered": 0, "passed": 0, "failed": 0, "skipped_budget": 0, "no_ground": 0}
        self.on = cfg.enabled and imagery is not None
        self.last_passed = False  # the latest frame's registration passed (the heading views may rest)
        self.gsd = max(cfg.gsd_m, imagery.gsd_m) if imagery is not None else cfg.gsd_m

    def window(self, east: float, north: float, half_m: float) -> tuple[np.ndarray, np.ndarray]:
        """The imagery around a point at the working GSD (the layer's when coarser): smoothed against aliasing
        and resampled about the centre pixel, which stays on the point."""
        img, valid = self.imagery.window(east, north, half_m)
        f = self.gsd / self.imagery.gsd_m
        if f <= 1.0 + 1e-6:
            return img, valid
        k = round(half_m / self.gsd)
        c_in, c_out = (img.shape[0] - 1) / 2.0, float(k)
        m = np.array([[f, 0.0, c_in - f * c_out], [0.0, f, c_in - f * c_out]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        out = cv2.warpAffine(cv2.GaussianBlur(img, (0, 0), 0.5 * f), m, (2 * k + 1, 2 * k + 1), flags=flags)
        ok = cv2.warpAffine(
            valid.astype(np.uint8), m, (2 * k + 1, 2 * k + 1), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP
        )
        return out, ok > 0

    def _places(self, est: Estimate | None, m: Measurement) -> list[tuple[float, float, float]]:
        """(east, north, search radius) of each place to register around: the filter's estimate, then the best
        candidates not already inside its disc."""
        c = self.cfg
        places = []
        if est is not None:
            r = min(c.max_search_m, c.min_search_m + c.search_sigmas * est.sigma_m)
            places.append((est.east, est.north, r))
        order = np.argsort(-m.cands.weights, kind="stable")
        for j in order[: c.candidates]:
            e, n = float(m.cands.east[j]), float(m.cands.north[j])
            if all(math.hypot(e - p[0], n - p[1]) > p[2] for p in places):
                places.append((e, n, min(c.max_search_m, max(c.min_search_m, 2.0 * m.sigma_c))))
        return places

    def _heading(self, m: Measurement, est: Estimate | None) -> tuple[float, float] | None:
        if m.heading is not None:
            return m.heading
        if est is not None and est.heading_sigma_deg <= self.cfg.max_heading_sigma_deg:
            return est.heading_deg, est.heading_sigma_deg
        return None

    def run(self, frame: Frame, m: Measurement, timer: StageTimer) -> None:
        """Register the frame and leave the outcome on ``m.refined`` (None: nothing usable)."""
        self.last_passed = False
        if not self.on or m.cands is None:
            return
        loop = self.loop
        if not timer.fits(loop.costs.of("register", "filter")):
            timer.skip("register")
            self.counts["skipped_budget"] += 1
            return
        est = m.est
        heading = self._heading(m, est)
        if heading is None:
            return
        with timer.stage("register"):
            g = loop.vision.ground(frame, heading[0], self.gsd, self.cfg)
            if g is None:
                self.counts["no_ground"] += 1
                return
            tried = self._register(g, self._places(est, m), heading[1])
            if not tried:
                return
            m.refined = self._decide(frame.t, est, g, self._reproject(frame, g, tried), heading)

    def _register(
        self, g: GroundImage, places: list[tuple[float, float, float]], heading_sigma: float
    ) -> list[tuple[float, float, Registration]]:
        gsd = self.gsd
        span = min(15.0, max(2.0, 2.0 * heading_sigma + 2.0))
        rc = RegistrationConfig(method=self.cfg.method, rotation_range_deg=span, rotation_step_deg=min(2.0, span))
        half = (g.image.shape[0] // 2) * gsd
        out = []
        for e, n, radius in places:
            win, valid = self.window(e + g.centre_en[0], n + g.centre_en[1], half + radius)
            if valid.mean() < self.cfg.min_valid:
                continue
            r = register(g.image, win, gsd, gsd, g.mask, valid, pivot_m=(-g.centre_en[0], -g.centre_en[1]), config=rc)
            out.append((e, n, r))
            self.counts["registered"] += 1
        return out

    def _reproject(
        self, frame: Frame, g: GroundImage, tried: list[tuple[float, float, Registration]]
    ) -> list[tuple[float, float, Registration]]:
        """The best registration, when its heading correction is large, done again from the corrected heading
        and place (:func:`~edge_geoloc.localize.registration.compose`); kept when it fits at least as well."""
        e, n, r = max(tried, key=lambda x: x[2].quality)
        if abs(r.rotation_deg) < self.cfg.reproject_above_deg:
            return tried
        g2 = self.loop.vision.ground(frame, float(wrap_deg(g.heading_grid_deg + r.rotation_deg)), self.gsd, self.cfg)
        if g2 is None:
            return tried
        again = self._register(g2, [(e + r.east_m, n + r.north_m, self.cfg.min_search_m)], 0.0)
        if not again or again[0][2].quality < r.quality:
            return tried
        return [(e, n, compose(r, again[0][2]))]

    def _decide(
        self,
        t: float,
        est: Estimate | None,
        g: GroundImage,
        tried: list[tuple[float, float, Registration]],
        heading: tuple[float, float],
    ) -> Refinement:
        loop, check_ = self.loop, self.loop.registration_check
        e, n, r = max(tried, key=lambda x: x[2].quality)
        place = (e + r.east_m, n + r.north_m)
        hdg = float(wrap_deg(g.heading_grid_deg + r.rotation_deg))
        if loop.gps_pinned(t, est) and est is not None:
            check_.add(r.quality, place, r.cov, (est.east, est.north), est.cov, hdg, est.heading_deg)
        threshold = check_.threshold()
        if threshold is None and self.cfg.trust_uncalibrated:
            threshold = self.cfg.uncalibrated_quality
        # a threshold never reached (registration was never right here, e.g. a low panorama): nothing changes
        known = threshold is not None and math.isfinite(threshold)
        passed = known and r.quality >= threshold
        self.counts["passed" if passed else "failed"] += int(known)
        self.last_passed = passed
        hsig = max(self.cfg.heading_sigma_deg, check_.heading_sigma(self.cfg.heading_sigma_deg))
        cov = r.cov * check_.cov_scale()
        return Refinement(place[0], place[1], cov, (hdg, hsig), r.quality, passed, known)

    def summary(self) -> dict[str, Any]:
        if not self.on:
            return {"refine": {"on": False}}
        return {"refine": {"on": True, **self.counts, "check": self.loop.registration_check.summary()}}
