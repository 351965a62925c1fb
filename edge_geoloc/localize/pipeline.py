"""The per-frame pipeline: frame -> north-aligned views -> encode -> scoped search -> refine -> heading
-> particle filter -> :class:`Fix`, every stage timed, inside a real-time budget.

Modes, chosen per frame from the filter's state:

- ``track``: the filter knows where it is and which way it faces. One view rolled to the filter's
  heading is encoded and searched within a disc of ``scope_sigmas`` sigma (plus a tile) around the
  filter's position (at least ``calibrate_scope_m`` while GPS pins it: :meth:`Localizer.scope`); every
  ``heading_every`` frames two more views at +-``heading_window_deg`` measure the heading (two
  encodes, no search), unless the model turned out blind to heading
  (:class:`~edge_geoloc.localize.refine.HeadingCheck`, checked against GPS course while there is one).
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
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from edge_geoloc.geo.crs import angle_diff_deg, wrap_deg
from edge_geoloc.localize.camera import CameraModel, NorthAligner
from edge_geoloc.localize.filter import Estimate, FilterConfig, ParticleFilter
from edge_geoloc.localize.prior import GpsFix, OdometrySample
from edge_geoloc.localize.refine import (
    Candidates,
    HeadingCheck,
    VisionCheck,
    candidates,
    heading_from_rolls,
    rotate_offsets,
)
from edge_geoloc.localize.sources import Frame

log = logging.getLogger(__name__)

# predict: the filter brought to the frame's time, with the GPS and odometry updates since the last frame.
STAGES = ("predict", "encode", "search", "refine", "heading", "filter")


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

    def __post_init__(self) -> None:
        if self.budget_ms is not None and not self.budget_ms > 0:
            raise ValueError(f"budget_ms must be positive (or None), got {self.budget_ms}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if self.sweep_rolls < 3:
            raise ValueError(f"sweep_rolls must be >= 3, got {self.sweep_rolls}")
        if self.heading_every < 0:
            raise ValueError(f"heading_every must be >= 0, got {self.heading_every}")


@dataclass
class Fix:
    """One output record per frame (DESIGN.md, "Fix"). Positions are None before the first fix."""

    frame: int
    t: float
    time: str | None
    lat: float | None
    lon: float | None
    east: float | None
    north: float | None
    sigma_m: float | None
    heading_deg: float | None  # clockwise from TRUE north
    heading_sigma_deg: float | None
    source: str  # vision | gps | filter-only | none
    mode: str  # track | sweep | global | none
    topk_ids: list[int] = field(default_factory=list)
    topk_scores: list[float] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)
    total_ms: float = 0.0
    deadline_missed: bool = False
    skipped: list[str] = field(default_factory=list)
    vision: dict[str, float] | None = None  # the candidates' fused position and evidence (also when refused)
    speed_mps: float | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None, nd: int) -> float | None:
            return None if v is None else round(float(v), nd)

        out = {
            "frame": self.frame,
            "t": round(self.t, 3),
            "time": self.time,
            "lat": r(self.lat, 8),
            "lon": r(self.lon, 8),
            "east": r(self.east, 2),
            "north": r(self.north, 2),
            "sigma_m": r(self.sigma_m, 2),
            "heading_deg": r(self.heading_deg, 2),
            "heading_sigma_deg": r(self.heading_sigma_deg, 2),
            "source": self.source,
            "mode": self.mode,
            "topk": {"ids": self.topk_ids, "scores": [round(s, 4) for s in self.topk_scores]},
            "stages_ms": {k: round(v, 2) for k, v in self.stages_ms.items()},
            "total_ms": round(self.total_ms, 2),
            "deadline_missed": self.deadline_missed,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        if self.vision is not None:
            out["vision"] = {k: round(v, 3) for k, v in self.vision.items()}
        if self.speed_mps is not None:
            out["speed_mps"] = round(self.speed_mps, 2)
        if self.note:
            out["note"] = self.note
        return out


class LoopStats:
    """Counters and per-stage timings for the summary."""

    def __init__(self) -> None:
        self.frames = 0
        self.sources: dict[str, int] = {}
        self.modes: dict[str, int] = {}
        self.corrupt = 0
        self.stale = 0
        self.deadline_misses = 0
        self.skipped: dict[str, int] = {}
        self.outside_map = 0
        self.prior_outside_map = 0
        self.stages: dict[str, list[float]] = {s: [] for s in STAGES}
        self.total: list[float] = []
        self.encodes = 0

    def add(self, fix: Fix) -> None:
        self.frames += 1
        self.sources[fix.source] = self.sources.get(fix.source, 0) + 1
        self.modes[fix.mode] = self.modes.get(fix.mode, 0) + 1
        self.deadline_misses += int(fix.deadline_missed)
        for s in fix.skipped:
            self.skipped[s] = self.skipped.get(s, 0) + 1
        for k, v in fix.stages_ms.items():
            self.stages.setdefault(k, []).append(v)
        self.total.append(fix.total_ms)

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float]) -> dict[str, float]:
            if not values:
                return {"n": 0}
            a = np.asarray(values)
            return {
                "n": len(a),
                "p50": round(float(np.percentile(a, 50)), 2),
                "p99": round(float(np.percentile(a, 99)), 2),
                "mean": round(float(a.mean()), 2),
            }

        busy_s = sum(self.total) / 1000.0
        return {
            "frames": self.frames,
            "fix_rate": round(self.sources.get("vision", 0) / self.frames, 4) if self.frames else 0.0,
            "sources": dict(sorted(self.sources.items())),
            "modes": dict(sorted(self.modes.items())),
            "deadline_misses": self.deadline_misses,
            "skipped": dict(sorted(self.skipped.items())),
            "corrupt_frames": self.corrupt,
            "stale_frames": self.stale,
            "scope_outside_map": self.outside_map,
            "prior_outside_map": self.prior_outside_map,
            "encodes": self.encodes,
            "fps": round(self.frames / busy_s, 2) if busy_s > 0 else None,
            "stages_ms": {k: pct(v) for k, v in self.stages.items() if v},
            "total_ms": pct(self.total),
        }


class Localizer:
    """The loop's per-frame work (see the module docstring). Feed GPS and odometry events in time order."""

    def __init__(
        self,
        encoder: Any,
        index: Any,
        camera: CameraModel,
        config: LoopConfig | None = None,
        filter_config: FilterConfig | None = None,
        offset: Any = None,
        start_utc: datetime | None = None,
        warm_up: bool = True,
    ) -> None:
        self.cfg = config or LoopConfig()
        index.refuse_mismatch(encoder.card)  # a map of another aerial encoder is refused here, not mid-run
        self.encoder, self.index, self.camera, self.offset = encoder, index, camera, offset
        self.crs = index.crs
        self.tiling = index.tiling
        self.aligner = NorthAligner(camera, encoder.spec)
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
        self.rejections = 0  # consecutive refused vision fixes
        self._gps_applied = False  # a GPS fix was applied since the last frame
        self._event_ms = 0.0  # GPS and odometry updates since the last frame (counted in its "predict")
        self._cost: dict[str, float] = {}
        self._enc_per_image = 0.0
        self._frames_seen = 0
        self._outside_logged = False
        self.heading_check = HeadingCheck()
        self.vision_check = VisionCheck(lo=tile / 8.0, hi=tile)
        self._frame_checked = False
        self._rng = np.random.default_rng(0)  # heading dither
        if warm_up:
            self._warm_up()

    # --- cost model for the budget ----------------------------------------------------------------

    def _warm_up(self) -> None:
        """One encode before the first frame: ONNX Runtime's first run is slow, and it seeds the cost model."""
        spec = self.encoder.spec
        dummy = np.zeros((spec.height, spec.width, 3), np.uint8)
        self.encoder.encode([dummy], is_panorama=False)
        t0 = time.perf_counter()
        self.encoder.encode([dummy, dummy], is_panorama=False)
        self._enc_per_image = (time.perf_counter() - t0) * 500.0

    def _note_cost(self, stage: str, ms: float) -> None:
        old = self._cost.get(stage)
        self._cost[stage] = ms if old is None else 0.8 * old + 0.2 * ms

    def _cost_of(self, *stages: str) -> float:
        return sum(self._cost.get(s, 1.0) for s in stages)

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

    # --- headings ---------------------------------------------------------------------------------

    def camera_true(self, vehicle_grid_deg: float) -> float:
        return float(wrap_deg(vehicle_grid_deg + self.convergence + self.camera.mount_heading_deg))

    def vehicle_grid(self, camera_true_deg: float) -> float:
        return float(wrap_deg(camera_true_deg - self.convergence - self.camera.mount_heading_deg))

    # --- the frame --------------------------------------------------------------------------------

    def process(self, frame: Frame) -> Fix:
        events_ms, self._event_ms = self._event_ms, 0.0
        t_start = time.perf_counter() - events_ms / 1000.0  # the events since the last frame count against it
        budget = self.cfg.budget_ms
        stages: dict[str, float] = {}
        skipped: list[str] = []
        note: str | None = None

        def elapsed() -> float:
            return (time.perf_counter() - t_start) * 1000.0

        def fits(ms: float) -> bool:
            return budget is None or elapsed() + ms <= budget

        def timed(stage: str, t0: float) -> None:
            ms = (time.perf_counter() - t0) * 1000.0
            stages[stage] = stages.get(stage, 0.0) + ms

        t0 = time.perf_counter()
        self.filter.predict(frame.t)
        timed("predict", t0)
        stages["predict"] += events_ms
        self._frames_seen += 1
        mode, vision, cands = "none", None, None
        applied = False
        max_age = self.cfg.max_age_ms if self.cfg.max_age_ms is not None else budget
        if frame.image is None:
            self.stats.corrupt += 1
            note = f"corrupt frame: {frame.error}"
            skipped.append("corrupt")
        elif max_age is not None and frame.captured and (time.monotonic() - frame.captured) * 1000.0 > max_age:
            self.stats.stale += 1
            skipped.append("stale")
        else:
            if not self._frame_checked:  # a camera model that does not fit the frames is a setup error: stop
                self.camera.check_frame(frame.image)
                self._frame_checked = True
            mode, vision, cands, applied, note = self._vision(frame, stages, skipped, fits, timed)
        fix = self._fix(frame, mode, vision, cands, applied, stages, skipped, note, elapsed())
        self.stats.add(fix)
        return fix

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
        if self.cfg.calibrate_scope_m is not None and self._gps_pinned(t, est):
            radius = max(radius, self.cfg.calibrate_scope_m)
        return est.east, est.north, radius

    def _plan(self, t: float) -> tuple[str, list[float], tuple[float, float, float] | None, Estimate | None]:
        """Mode, assumed camera headings (true north) of the views, and the scope."""
        if not self.filter.initialized:
            return "global", self._sweep(0.0), None, None
        est = self.filter.estimate()
        scope = self.scope(t, est)
        sweep = (
            est.heading_sigma_deg > self.cfg.sweep_above_deg
            and self.camera.rollable
            and self._heading_usable() is not False  # a model blind to heading cannot sweep for it
        )
        cam = self.camera_true(est.heading_deg)
        headings = self._sweep(cam) if sweep else [cam]
        if scope is None:
            return "global", headings, None, est
        return ("sweep" if sweep else "track"), headings, scope, est

    def _apply_vision(
        self, t: float, cands: Any, sigma_c: float, area: float, mode: str, heading_meas: Any, est: Estimate | None
    ) -> tuple[bool, float]:
        """The candidate mixture into the filter: it initializes an empty filter, updates a running one, and
        re-seeds part of the cloud from a global search the filter refused; returns (applied, evidence)."""
        f = self.filter
        if not f.initialized:
            hdg, hsig = heading_meas if heading_meas is not None else (None, None)
            f.init_mixture(t, cands.centres, cands.weights, sigma_c, hdg, hsig)
            f.counts["vision_accepted"] += 1
            f.last_vision_t = t
            return True, float("nan")
        outlier = self.vision_check.outlier(f.cfg.vision_outlier)
        applied, evidence = f.update_vision(t, cands.centres, cands.weights, sigma_c, area, outlier)
        if not applied and mode == "global":
            hdg, hsig = heading_meas if heading_meas is not None else (est.heading_deg, est.heading_sigma_deg)
            f.init_mixture(t, cands.centres, cands.weights, sigma_c, hdg, hsig, self.cfg.reseed_fraction)
        elif applied:
            self.rejections = 0
        else:
            self.rejections += 1
        return applied, evidence

    def _heading_usable(self) -> bool | None:
        """The heading check's verdict (None: not yet known, or checks turned off)."""
        return self.heading_check.usable if self.cfg.check_heading else None

    def _gps_pinned(self, t: float, est: Estimate | None) -> bool:
        """Whether GPS holds the filter close to the truth now: its estimate can stand in for the truth."""
        last = self.filter.last_gps_t
        return (
            est is not None
            and last is not None
            and t - last <= self.cfg.pinned_within_s
            and est.sigma_m < self.cfg.calibrate_below_m
        )

    def _sweep(self, start: float) -> list[float]:
        n = self.cfg.sweep_rolls if self.camera.rollable else 1
        return [float(wrap_deg(start + i * 360.0 / n)) for i in range(n)]

    def _vision(self, frame: Frame, stages: dict, skipped: list, fits: Any, timed: Any) -> tuple:
        cfg = self.cfg
        mode, headings, scope, est = self._plan(frame.t)
        check = self.heading_check
        every = cfg.heading_every if self._heading_usable() is not False else cfg.unusable_heading_every
        measure = mode == "track" and self.camera.rollable and cfg.heading_every > 0 and self._frames_seen % every == 0
        dither = 0.0
        if measure:  # the search view doubles as the heading window's centre, dithered (see HeadingCheck)
            amp = cfg.heading_window_deg / 2.0 if cfg.heading_dither_deg is None else cfg.heading_dither_deg
            dither = float(self._rng.uniform(-amp, amp))
            headings = [float(wrap_deg(headings[0] + dither))]
        rest = self._cost_of("search", "refine", "filter")
        if not fits(self._enc_per_image * len(headings) + rest):
            skipped.append("encode")
            return mode, None, None, False, None
        t0 = time.perf_counter()
        base = self.aligner.base(frame.image)
        views = self.aligner.views(base, headings)
        desc = self.encoder.encode(views, is_panorama=False)
        self.stats.encodes += len(views)
        timed("encode", t0)
        self._note_cost("encode", stages["encode"])
        self._enc_per_image = 0.8 * self._enc_per_image + 0.2 * stages["encode"] / len(views)

        t0 = time.perf_counter()
        results = [self.index.search(d, scope, cfg.k) for d in desc]
        best = int(np.argmax([r.scores[0] if len(r) else -np.inf for r in results]))
        res = results[best]
        timed("search", t0)
        self._note_cost("search", stages["search"])
        if not len(res):
            self.stats.outside_map += 1
            return mode, None, None, False, f"no vision fix: {res.reason}"

        t0 = time.perf_counter()
        offsets = None
        if self.offset is not None and cfg.use_offset:
            if fits(self._cost_of("offset", "filter")):
                t1 = time.perf_counter()
                aerial = np.asarray(self.index.desc[res.rows], dtype=np.float32)
                offsets = rotate_offsets(self.offset.predict(desc[best], aerial), self.convergence)
                self._note_cost("offset", (time.perf_counter() - t1) * 1000.0)
            else:
                skipped.append("offset")
        area = self.map_area if scope is None else math.pi * scope[2] ** 2
        if self._gps_pinned(frame.t, est):  # fitted on the places the filter is given (offsets included)
            places = candidates(res.ids, res.scores, res.east, res.north, 1.0, 1.0, offsets, self.tiling.tile_m / 2)
            self.vision_check.add(res.scores, places.east, places.north, (est.east, est.north), area)
        sigma_c = self.vision_check.sigma(self.sigma_c)
        temperature = self.vision_check.temperature(cfg.temperature)
        cands = candidates(
            res.ids, res.scores, res.east, res.north, temperature, sigma_c, offsets, self.tiling.tile_m / 2
        )
        timed("refine", t0)
        self._note_cost("refine", stages["refine"])

        heading_meas: tuple[float, float] | None = None  # vehicle grid heading, sigma
        if mode in ("sweep", "global") and len(headings) > 1 and self._heading_usable() is not False:
            heading_meas = (self.vehicle_grid(headings[best]), 360.0 / len(headings) / 2.0)
        elif measure:
            delta = cfg.heading_window_deg
            if fits(2 * self._enc_per_image + self._cost_of("filter")):
                t0 = time.perf_counter()
                side = self.aligner.views(base, [headings[0] - delta, headings[0] + delta])
                sd = self.encoder.encode(side, is_panorama=False)
                self.stats.encodes += 2
                a = np.asarray(self.index.desc[int(res.rows[0])], dtype=np.float32)
                a /= max(float(np.linalg.norm(a)), 1e-12)
                scores = np.array([sd[0] @ a, desc[best] @ a, sd[1] @ a])
                hf = heading_from_rolls(headings[0], delta, scores)
                if hf is not None:
                    if self._gps_pinned(frame.t, est) and est.heading_sigma_deg < cfg.heading_check_below_deg:
                        check.add(dither, float(angle_diff_deg(hf.heading_deg, headings[0] - dither)))
                    if self._heading_usable() is not False:
                        heading_meas = (self.vehicle_grid(hf.heading_deg), check.sigma(cfg.heading_sigma_deg))
                timed("heading", t0)
                self._note_cost("heading", stages["heading"])
            else:
                skipped.append("heading")

        t0 = time.perf_counter()
        f = self.filter
        fe, fn = cands.fused()
        applied, evidence = self._apply_vision(frame.t, cands, sigma_c, area, mode, heading_meas, est)
        if heading_meas is not None and (applied or mode != "track"):
            f.update_heading(frame.t, *heading_meas)
        timed("filter", t0)
        self._note_cost("filter", stages["filter"])
        vision = {"east": fe, "north": fn, "evidence": evidence, "top_score": float(res.scores[0])}
        return mode, vision, cands, applied, None

    def _fix(
        self,
        frame: Frame,
        mode: str,
        vision: dict | None,
        cands: Candidates | None,
        applied: bool,
        stages: dict[str, float],
        skipped: list[str],
        note: str | None,
        total_ms: float,
    ) -> Fix:
        when = None
        if self.start_utc is not None:
            when = (self.start_utc + timedelta(seconds=float(frame.t))).astimezone(timezone.utc)
            when = when.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        source = "vision" if applied else ("gps" if self._gps_applied else "filter-only")
        self._gps_applied = False
        missed = self.cfg.budget_ms is not None and total_ms > self.cfg.budget_ms
        ids = [] if cands is None else [int(v) for v in cands.ids]
        scores = [] if cands is None else [float(v) for v in cands.scores]
        if not self.filter.initialized:
            return Fix(
                frame.index, frame.t, when, None, None, None, None, None, None, None, "none", mode, ids, scores,
                stages, total_ms, missed, skipped, vision, None, note,
            )  # fmt: skip
        est = self.filter.estimate()
        lat, lon = self.crs.to_latlon(est.east, est.north)
        return Fix(
            frame.index,
            frame.t,
            when,
            float(lat),
            float(lon),
            est.east,
            est.north,
            est.sigma_m,
            float(wrap_deg(est.heading_deg + self.convergence)),
            est.heading_sigma_deg,
            source,
            mode,
            ids,
            scores,
            stages,
            total_ms,
            missed,
            skipped,
            vision,
            est.speed_mps,
            note,
        )

    def summary(self) -> dict[str, Any]:
        return {
            **self.stats.summary(),
            "filter": dict(self.filter.counts),
            "vision_heading": self.heading_check.summary(),
            "vision_position": self.vision_check.summary(
                self.cfg.temperature, self.sigma_c, self.filter.cfg.vision_outlier
            ),
        }
