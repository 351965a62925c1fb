"""The per-frame loop: events -> predict -> the camera's vision stage -> particle filter -> :class:`Fix`,
every stage timed, inside a real-time budget.

The loop owns the events (GNSS, odometry, attitude), the filter, the budget and its stage timer, the
calibration of the vision mixture and the Fix. What turns a frame into a measurement (a position
mixture and maybe a heading) is the camera's vision stage, picked by camera kind
(:mod:`edge_geoloc.localize.vision`): the street stage (panorama/pinhole, below) or the UAV stage
(:mod:`edge_geoloc.localize.vision.uav`).

Street modes, chosen per frame from the filter's state:

- ``track``: the filter knows where it is and which way it faces. One view rolled to the filter's
  heading is encoded and searched within a disc of ``scope_sigmas`` sigma (plus a tile) around the
  filter's position (at least ``calibrate_scope_m`` while GPS pins it: :meth:`Localizer.scope`); every
  ``heading_every`` frames two more views at +-``heading_window_deg`` measure the heading (two
  encodes, no search), unless the model turned out blind to heading
  (:class:`~edge_geoloc.localize.calibrate.HeadingCheck`, checked against GPS course while there is one).
- ``sweep``: the heading is unknown (sigma above ``sweep_above_deg``: no GPS course yet, or just
  re-localized): ``sweep_rolls`` views around the circle are encoded and searched; the best roll
  gives the heading.
- ``global``: no prior at all, or lost (the position sigma grew past what a scope can cover): the
  whole map is searched and the filter is seeded (or partly re-seeded) from its best candidates.
  Vision refused many frames in a row does not by itself mean lost: a weak model is more often the
  one that is wrong, and the filter's own covariance (odometry errors are particle states) already
  says how far it may be off; spreading the particles on refusals let chance matches drag it away.

Budget (``budget_ms``): before each stage that can be left out, the loop checks the time spent
plus the stage's running cost against the budget; work that does not fit is dropped for this frame
(the heading views first, then the offset head, then vision altogether), never queued. A frame whose
total still exceeds the budget counts as a deadline miss. A frame older than the budget when it
reaches the loop (the capture ran ahead) is not encoded at all.

Uninformative frames (``vision_uninformative`` in the summary): a frame that cannot show a place (blank,
black, blown out: :mod:`edge_geoloc.localize.sanity`) is not encoded; a mixture is kept out of the filter
while it has not been fitted against GPS (unless ``trust_uncalibrated``), when the fitted outlier weight
says vision is blind here, or when its top score does not stand out of the map's score distribution by
the margin calibrated on GPS-pinned frames (:class:`~edge_geoloc.localize.calibrate.SeparationCheck`).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from edge_geoloc.cameras.uav import Attitude
from edge_geoloc.geo.crs import wrap_deg
from edge_geoloc.localize.calibrate import (
    Candidates,
    HeadingCheck,
    RegistrationCheck,
    SeparationCheck,
    VisionCheck,
    candidates,
)
from edge_geoloc.localize.filter import Estimate, FilterConfig, ParticleFilter
from edge_geoloc.localize.fix import STAGES, Fix, LoopStats
from edge_geoloc.localize.gnss import GpsFix
from edge_geoloc.localize.odometry import OdometrySample
from edge_geoloc.localize.refine import RefineConfig, Refiner, open_imagery
from edge_geoloc.localize.sanity import image_problem
from edge_geoloc.localize.sources import Frame
from edge_geoloc.localize.timer import StageCosts, StageTimer
from edge_geoloc.localize.vision import Measurement, make_stage

__all__ = ["STAGES", "Fix", "Localizer", "LoopConfig", "LoopStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    budget_ms: float | None = 100.0  # None: no budget
    k: int = 8  # candidates kept from a search
    temperature: float = 0.03  # similarity softmax over the top-k
    candidate_sigma_m: float | None = None  # spread of one candidate before calibration (default: tile side / 4)
    calibrate_below_m: float = 5.0  # filter sigma under which the mixture is fitted to the truth (VisionCheck)
    calibrate_scope_m: float | None = (
        160.0  # search radius while fitting: an outage's scope, not GPS's (None: as tracking)
    )
    pinned_within_s: float = 2.0  # ... and only with a GPS fix this recent (not a filter merely sure of itself)
    scope_sigmas: float = 3.0
    scope_min_m: float | None = None  # default 1.5 tiles
    scope_max_m: float = 1500.0  # beyond this the filter counts as lost: global search
    heading_window_deg: float = 12.0
    heading_every: int = 1  # frames between heading measurements in track mode (0: never)
    heading_sigma_deg: float = 5.0  # floor; the heading check's measured residual when larger
    heading_dither_deg: float | None = None  # +- this random offset of the heading window (default: half of it)
    check_heading: bool = True  # False: always use vision headings as configured (benchmarks of their cost)
    heading_check_below_deg: float = 4.0  # filter heading sigma under which vision headings are checked
    unusable_heading_every: int = 10  # frames between (check-only) heading measurements once found unusable
    sweep_above_deg: float = 25.0
    sweep_rolls: int = 8
    reseed_fraction: float = 0.25  # share of particles re-seeded from a global search while lost
    use_offset: bool = True
    max_age_ms: float | None = None  # frames older than this are not encoded (default: the budget)
    # Vision fixes only from a mixture fitted against GPS (VisionCheck); True: also before (a GPS-denied start,
    # the operator's call: the configured temperature, spread and outlier weight are then taken on trust).
    trust_uncalibrated: bool = False
    uninformative_outlier: float = 0.9  # a fitted outlier weight at or above this: vision says nothing here
    # the separation margin: this quantile of the GPS-pinned frames whose top tile was right (0: the lowest; the
    # 5 % quantile cost the car demo a third of its outage vision fixes and 5 m of outage median error)
    flat_quantile: float = 0.0
    check_image: bool = True  # blank, black or blown-out frames are not encoded (localize/sanity.py)
    refine: RefineConfig = field(default_factory=RefineConfig)  # registration against the map imagery

    def __post_init__(self) -> None:
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise ValueError(f"budget_ms must be positive (or None), got {self.budget_ms}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.sweep_rolls < 3:
            raise ValueError(f"sweep_rolls must be >= 3, got {self.sweep_rolls}")
        if self.heading_every < 0:
            raise ValueError(f"heading_every must be >= 0, got {self.heading_every}")


class Localizer:
    """The loop's per-frame work (see the module docstring). Feed GNSS, odometry and attitude events in time
    order (:func:`edge_geoloc.localize.run.run_loop` does), then :meth:`process` each frame.

    ``stage_config``: the vision stage's own options (:class:`~edge_geoloc.localize.vision.uav.UavConfig`
    for a drone camera; the street stage has none beyond ``config``). ``imagery``: the map imagery the refine
    stage registers against (default: the bundle's layer, :func:`~edge_geoloc.localize.refine.open_imagery`)."""

    def __init__(
        self,
        encoder: Any,
        index: Any,
        camera: Any,
        config: LoopConfig | None = None,
        filter_config: FilterConfig | None = None,
        offset: Any = None,
        start_utc: datetime | None = None,
        warm_up: bool = True,
        stage_config: Any = None,
        imagery: Any = None,
    ) -> None:
        self.cfg = config or LoopConfig()
        index.refuse_mismatch(encoder.card)  # a map of another aerial encoder is refused here, not mid-run
        self.encoder, self.index, self.camera, self.offset = encoder, index, camera, offset
        self.crs = index.crs
        self.tiling = index.tiling
        self.filter = ParticleFilter(filter_config)
        tile = self.tiling.tile_m
        self.sigma_c = self.cfg.candidate_sigma_m or tile / 4.0
        self.scope_min = self.cfg.scope_min_m or 1.5 * tile
        t = self.tiling
        self.bounds = (
            t.east_min - tile / 2,
            t.north_max - (t.n_rows - 1) * t.stride_m - tile / 2,
            t.east_min + (t.n_cols - 1) * t.stride_m + tile / 2,
            t.north_max + tile / 2,
        )
        self.map_area = (self.bounds[2] - self.bounds[0]) * (self.bounds[3] - self.bounds[1])
        ce, cn = (self.bounds[0] + self.bounds[2]) / 2, (self.bounds[1] + self.bounds[3]) / 2
        lat, lon = self.crs.to_latlon(ce, cn)
        self.convergence = float(self.crs.convergence_deg(lat, lon))  # true = grid + this (varies < 0.2 deg over 20 km)
        self.start_utc = start_utc
        self.stats = LoopStats()
        self.costs = StageCosts()
        self.attitude: Attitude | None = None  # the latest usable autopilot attitude (an event)
        self.rejections = 0  # consecutive refused vision fixes
        self.frames_seen = 0
        self._gps_applied = False  # a GPS fix was applied since the last frame
        self._event_ms = 0.0  # GNSS, odometry and attitude updates since the last frame (counted in its "predict")
        self._outside_logged = False
        self._frame_checked = False
        self.rng = np.random.default_rng(0)  # heading dither
        self.vision = make_stage(self, camera, stage_config)
        self.heading_check = HeadingCheck()
        self.vision_check = VisionCheck(lo=tile / self.vision.spread_floor_div, hi=tile)
        self.separation_check = SeparationCheck(self.cfg.flat_quantile)
        self.registration_check = RegistrationCheck()
        if imagery is None and self.cfg.refine.enabled:
            imagery = open_imagery(index)
        self.refiner = Refiner(self, imagery, self.cfg.refine)
        self.uninformative: dict[str, int] = {"uncalibrated": 0, "outlier": 0, "flat": 0, "image": 0}
        self._separation = float("nan")  # this frame's (set by mixture)
        self._reference = self._reference_sample(index)
        if warm_up:
            self._warm_up()

    @staticmethod
    def _reference_sample(index: Any, n: int = 256) -> np.ndarray | None:
        """A fixed random sample of the map's descriptors (float32, L2-normalized): the distribution a
        query's top score is measured against (:class:`SeparationCheck`)."""
        desc = getattr(index, "desc", None)
        if desc is None or len(desc) < 16:
            return None
        rows = np.sort(np.random.default_rng(12345).choice(len(desc), min(n, len(desc)), replace=False))
        ref = np.asarray(desc[rows], dtype=np.float32)
        return ref / np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)

    def separation(self, query: np.ndarray | None, top_score: float) -> float:
        """How many standard deviations ``top_score`` stands above the query's scores on the map's sample."""
        if query is None or self._reference is None:
            return float("nan")
        s = self._reference @ np.asarray(query, dtype=np.float32).ravel()
        sd = float(s.std())
        return (float(top_score) - float(s.mean())) / sd if sd > 1e-9 else float("nan")

    def _warm_up(self) -> None:
        """Encodes before the first frame: ONNX Runtime's first run is slow, and it seeds the cost model."""
        spec = self.encoder.spec
        dummy = np.zeros((spec.height, spec.width, 3), np.uint8)
        self.encoder.encode([dummy], is_panorama=False)
        n = self.vision.warm_batch
        t0 = time.perf_counter()
        self.encoder.encode([dummy] * n, is_panorama=False)
        self.costs.per_image = (time.perf_counter() - t0) * 1000.0 / n

    # --- events -----------------------------------------------------------------------------------

    def inside_map(self, east: float, north: float) -> bool:
        b = self.bounds
        return b[0] <= east <= b[2] and b[1] <= north <= b[3]

    def feed_gps(self, fix: GpsFix) -> bool:
        """A receiver fix; returns whether the filter took it (it may be gated)."""
        t0 = time.perf_counter()
        if not self.inside_map(fix.east, fix.north):
            self.stats.prior_outside_map += 1
            if not self._outside_logged:
                log.warning(
                    "GPS prior at east %.0f, north %.0f lies outside the map (east %.0f..%.0f, north %.0f..%.0f):"
                    " no vision fixes there; the filter carries on",
                    fix.east,
                    fix.north,
                    *self.bounds[::2],
                    *self.bounds[1::2],
                )
                self._outside_logged = True
        else:
            self._outside_logged = False
        course = None if fix.course_deg is None else float(wrap_deg(fix.course_deg - self.convergence))
        applied = self.filter.update_gps(fix.t, fix.east, fix.north, fix.sigma_m, course, fix.course_sigma_deg())
        self._gps_applied |= applied
        self._event_ms += (time.perf_counter() - t0) * 1000.0
        return applied

    def feed_odometry(self, sample: OdometrySample) -> None:
        t0 = time.perf_counter()
        self.filter.set_odometry(sample.t, sample.speed_mps, sample.yaw_rate_dps)
        self._event_ms += (time.perf_counter() - t0) * 1000.0

    def feed_attitude(self, sample: Attitude) -> None:
        """An autopilot attitude sample; one without roll or pitch is ignored (the last good one holds)."""
        if math.isfinite(sample.roll_deg) and math.isfinite(sample.pitch_deg):
            self.attitude = sample

    # --- what the vision stages share -----------------------------------------------------------------

    def scope(self, t: float, est: Estimate) -> tuple[float, float, float] | None:
        """The search disc (east, north, radius) around the filter: ``scope_sigmas`` sigma plus a tile, at
        least ``scope_min``; None when that exceeds ``scope_max_m`` (lost: search the whole map).

        While GPS pins the filter (when the mixture is fitted, :class:`VisionCheck`) the radius is at least
        ``calibrate_scope_m``: a disc as small as GPS allows holds few tiles, any of which is near the
        truth, so a weak model would look sharp there and be trusted too much when an outage widens the
        disc."""
        radius = self.cfg.scope_sigmas * est.sigma_m + self.tiling.tile_m
        if radius > self.cfg.scope_max_m:
            return None
        radius = max(radius, self.scope_min)
        if self.cfg.calibrate_scope_m is not None and self.gps_pinned(t, est):
            radius = max(radius, self.cfg.calibrate_scope_m)
        return est.east, est.north, radius

    def heading_usable(self) -> bool | None:
        """The heading check's verdict (None: not yet known, or checks turned off)."""
        return self.heading_check.usable if self.cfg.check_heading else None

    def gps_pinned(self, t: float, est: Estimate | None) -> bool:
        """Whether GPS holds the filter close to the truth now: its estimate can stand in for the truth."""
        last = self.filter.last_gps_t
        return (
            est is not None
            and last is not None
            and t - last <= self.cfg.pinned_within_s
            and est.sigma_m < self.cfg.calibrate_below_m
        )

    def mixture(
        self,
        t: float,
        est: Estimate | None,
        scope: tuple[float, float, float] | None,
        ids: np.ndarray,
        scores: np.ndarray,
        east: np.ndarray,
        north: np.ndarray,
        offsets: np.ndarray | None = None,
        query: np.ndarray | None = None,
    ) -> tuple[Candidates, float, float]:
        """Candidate places -> the calibrated mixture: (candidates, component spread, scope area). While GPS
        pins the filter, the places are first fitted against its estimate (:class:`VisionCheck`), and the
        top score's separation (``query``: the descriptor that gave it) is kept with whether the top tile
        was right (:class:`SeparationCheck`)."""
        area = self.map_area if scope is None else math.pi * scope[2] ** 2
        half = self.tiling.tile_m / 2  # an offset keeps the camera inside its tile
        self._separation = self.separation(query, float(scores[0])) if len(scores) else float("nan")
        if self.gps_pinned(t, est):  # fitted on the places the filter is given (offsets included)
            places = candidates(ids, scores, east, north, 1.0, 1.0, offsets, half)
            self.vision_check.add(scores, places.east, places.north, (est.east, est.north), area)
            right = math.hypot(east[0] - est.east, north[0] - est.north) <= self.tiling.tile_m
            self.separation_check.add(self._separation, right)
        sigma_c = self.vision_check.sigma(self.sigma_c)
        temperature = self.vision_check.temperature(self.cfg.temperature)
        return candidates(ids, scores, east, north, temperature, sigma_c, offsets, half), sigma_c, area

    # --- the frame --------------------------------------------------------------------------------

    def process(self, frame: Frame) -> Fix:
        events_ms, self._event_ms = self._event_ms, 0.0
        timer = StageTimer(self.cfg.budget_ms, self.costs, events_ms)
        with timer.stage("predict", note=False):
            self.filter.predict(frame.t)
        timer.stages["predict"] += events_ms
        self.frames_seen += 1
        m, applied, vision = Measurement("none"), False, None
        self._separation = float("nan")
        max_age = self.cfg.max_age_ms if self.cfg.max_age_ms is not None else self.cfg.budget_ms
        problem = None
        if frame.image is None:
            self.stats.corrupt += 1
            m.note = f"corrupt frame: {frame.error}"
            timer.skip("corrupt")
        elif max_age is not None and frame.captured and (time.monotonic() - frame.captured) * 1000.0 > max_age:
            self.stats.stale += 1
            timer.skip("stale")
        elif self.cfg.check_image and (problem := image_problem(frame.image)) is not None:
            self.uninformative["image"] += 1
            m.note = f"vision uninformative: {problem}"
            timer.skip("image")
        else:
            if not self._frame_checked:  # a camera model that does not fit the frames is a setup error: stop
                self.camera.check_frame(frame.image)
                self._frame_checked = True
            m = self.vision.measure(frame, timer)
            if m.cands is not None:
                self.refiner.run(frame, m, timer)
                applied, vision = self._fuse(frame.t, m, timer)
        fix = self._fix(frame, m, applied, vision, timer.stages, timer.skipped, timer.elapsed())
        self.stats.add(fix)
        return fix

    def uninformative_reason(self) -> str | None:
        """Why this frame's mixture must not become a fix though it has candidates, or None: the mixture
        was never fitted against GPS (unless ``trust_uncalibrated``), the fitted outlier weight says vision
        is blind here, or the top score does not stand out of the map's distribution by the calibrated
        margin (a frame the map cannot explain)."""
        if not self.vision_check.fitted and not self.cfg.trust_uncalibrated:
            return "uncalibrated"
        if self.vision_check.fitted and self.vision_check.outlier(0.0) >= self.cfg.uninformative_outlier:
            return "outlier"
        margin = self.separation_check.margin()
        if margin is not None and not self._separation >= margin:  # NaN (no query) counts as flat only if calibrated
            return "flat" if math.isfinite(self._separation) or not math.isfinite(margin) else None
        return None

    def _fuse(self, t: float, m: Measurement, timer: StageTimer) -> tuple[bool, dict[str, float]]:
        """The filter stage: a passed registration (:mod:`~edge_geoloc.localize.refine`) as a Gaussian and its
        heading; else the measurement's mixture (and heading, as the stage said) into the filter, as weak
        evidence when registration failed everywhere, unless the frame is uninformative
        (:meth:`uninformative_reason`: nothing goes in, counted)."""
        r = m.refined
        with timer.stage("filter"):
            fe, fn = m.cands.fused()
            reason = self.uninformative_reason()
            if r is not None and r.passed and self.filter.initialized:
                applied, evidence = self.filter.update_position(t, r.east, r.north, r.cov, m.area)
                self.rejections = 0 if applied else self.rejections + 1
                if applied:
                    self.filter.update_heading(t, *r.heading)
            elif reason is not None:
                self.uninformative[reason] += 1
                m.note = m.note or f"vision uninformative: {reason}"
                applied, evidence = False, float("nan")
            else:
                unverified = r is not None and r.calibrated and not r.passed
                outlier = self.cfg.refine.fail_outlier if unverified else None
                applied, evidence = self._apply_vision(t, m.cands, m.sigma_c, m.area, m.mode, m.heading, m.est, outlier)
                feed = m.heading_update == "always" or (m.heading_update == "if_applied" and applied)
                if m.heading is not None and feed:
                    self.filter.update_heading(t, *m.heading)
        vision = {"east": fe, "north": fn, "evidence": evidence, "top_score": m.top_score, **m.extra}
        if math.isfinite(self._separation):
            vision["separation"] = self._separation
        if r is not None:
            vision.update(refine_quality=r.quality, refine_east=r.east, refine_north=r.north, refined=float(r.passed))
        return applied, vision

    def _apply_vision(
        self,
        t: float,
        cands: Candidates,
        sigma_c: float,
        area: float,
        mode: str,
        heading_meas: tuple[float, float] | None,
        est: Estimate | None,
        outlier: float | None = None,
    ) -> tuple[bool, float]:
        """The candidate mixture into the filter: it initializes an empty filter, updates a running one, and
        re-seeds part of the cloud from a global search the filter refused; returns (applied, evidence).
        ``outlier``: the uniform weight instead of the calibrated one (an unverified retrieval's)."""
        f = self.filter
        if not f.initialized:
            hdg, hsig = heading_meas if heading_meas is not None else (None, None)
            f.init_mixture(t, cands.centres, cands.weights, sigma_c, hdg, hsig)
            f.counts["vision_accepted"] += 1
            f.last_vision_t = t
            return True, float("nan")
        outlier = max(self.vision_check.outlier(f.cfg.vision_outlier), outlier or 0.0)
        applied, evidence = f.update_vision(t, cands.centres, cands.weights, sigma_c, area, outlier)
        if not applied and mode == "global":
            hdg, hsig = heading_meas if heading_meas is not None else (est.heading_deg, est.heading_sigma_deg)
            f.init_mixture(t, cands.centres, cands.weights, sigma_c, hdg, hsig, self.cfg.reseed_fraction)
        elif applied:
            self.rejections = 0
        else:
            self.rejections += 1
        return applied, evidence

    def _fix(
        self,
        frame: Frame,
        m: Measurement,
        applied: bool,
        vision: dict[str, float] | None,
        stages: dict[str, float],
        skipped: list[str],
        total_ms: float,
    ) -> Fix:
        when = None
        if self.start_utc is not None:
            when = (self.start_utc + timedelta(seconds=float(frame.t))).astimezone(timezone.utc)
            when = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        source = "vision" if applied else ("gps" if self._gps_applied else "filter-only")
        self._gps_applied = False
        record: dict[str, Any] = {
            "frame": frame.index,
            "t": frame.t,
            "time": when,
            "mode": m.mode,
            "topk_ids": [] if m.cands is None else [int(v) for v in m.cands.ids],
            "topk_scores": [] if m.cands is None else [float(v) for v in m.cands.scores],
            "stages_ms": stages,
            "total_ms": total_ms,
            "deadline_missed": self.cfg.budget_ms is not None and total_ms > self.cfg.budget_ms,
            "skipped": skipped,
            "vision": vision,
            "note": m.note,
        }
        if not self.filter.initialized:
            return Fix(
                lat=None, lon=None, east=None, north=None, sigma_m=None, heading_deg=None, heading_sigma_deg=None,
                source="none", **record,
            )  # fmt: skip
        est = self.filter.estimate()
        lat, lon = self.crs.to_latlon(est.east, est.north)
        return Fix(
            lat=float(lat),
            lon=float(lon),
            east=est.east,
            north=est.north,
            sigma_m=est.sigma_m,
            heading_deg=float(wrap_deg(est.heading_deg + self.convergence)),
            heading_sigma_deg=est.heading_sigma_deg,
            source=source,
            speed_mps=est.speed_mps,
            **record,
        )

    def summary(self) -> dict[str, Any]:
        return {
            **self.stats.summary(),
            "filter": dict(self.filter.counts),
            "vision_heading": self.heading_check.summary(),
            "vision_position": self.vision_check.summary(
                self.cfg.temperature, self.sigma_c, self.filter.cfg.vision_outlier
            ),
            "vision_separation": self.separation_check.summary(),
            # frames with candidates (or an image) that were kept out of the filter, by reason
            "vision_uninformative": {"total": sum(self.uninformative.values()), **self.uninformative},
            **self.vision.summary(),
            **self.refiner.summary(),
        }
