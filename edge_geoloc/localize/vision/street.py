"""The street vision stage (a vehicle's panorama or pinhole camera): north-aligned views -> encode ->
scoped search -> offsets -> mixture, and a heading from rolled views (the modes and the budget order are
described in :mod:`edge_geoloc.localize.loop`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_geoloc.cameras.bev import BevSpec, panorama_to_bev
from edge_geoloc.cameras.rectify import rotate_offsets
from edge_geoloc.cameras.street import CameraModel, NorthAligner
from edge_geoloc.geo.crs import angle_diff_deg, wrap_deg
from edge_geoloc.localize.calibrate import heading_from_rolls
from edge_geoloc.localize.filter import Estimate
from edge_geoloc.localize.refine import GroundImage, RefineConfig
from edge_geoloc.localize.sources import Frame
from edge_geoloc.localize.timer import StageTimer
from edge_geoloc.localize.vision import Measurement, register_stage

if TYPE_CHECKING:
    from edge_geoloc.localize.loop import Localizer


class StreetVision:
    """Panorama or pinhole frames of a vehicle (see the module docstring)."""

    warm_batch = 2
    spread_floor_div = 8.0

    def __init__(self, loop: Localizer, camera: CameraModel, options: Any = None) -> None:
        if options is not None:
            raise ValueError(f"the street vision stage takes no stage options, got {options!r}")
        self.loop, self.camera = loop, camera
        self.aligner = NorthAligner(camera, loop.encoder.spec)

    def camera_true(self, vehicle_grid_deg: float) -> float:
        return float(wrap_deg(vehicle_grid_deg + self.loop.convergence + self.camera.mount_heading_deg))

    def vehicle_grid(self, camera_true_deg: float) -> float:
        return float(wrap_deg(camera_true_deg - self.loop.convergence - self.camera.mount_heading_deg))

    def _sweep(self, start: float) -> list[float]:
        n = self.loop.cfg.sweep_rolls if self.camera.rollable else 1
        return [float(wrap_deg(start + i * 360.0 / n)) for i in range(n)]

    def _plan(self, t: float) -> tuple[str, list[float], tuple[float, float, float] | None, Estimate | None]:
        """Mode, assumed camera headings (true north) of the views, and the scope."""
        loop = self.loop
        if not loop.filter.initialized:
            return "global", self._sweep(0.0), None, None
        est = loop.filter.estimate()
        scope = loop.scope(t, est)
        sweep = (
            est.heading_sigma_deg > loop.cfg.sweep_above_deg
            and self.camera.rollable
            and loop.heading_usable() is not False  # a model blind to heading cannot sweep for it
        )
        cam = self.camera_true(est.heading_deg)
        headings = self._sweep(cam) if sweep else [cam]
        if scope is None:
            return "global", headings, None, est
        return ("sweep" if sweep else "track"), headings, scope, est

    def measure(self, frame: Frame, timer: StageTimer) -> Measurement:
        loop, cfg, costs = self.loop, self.loop.cfg, self.loop.costs
        mode, headings, scope, est = self._plan(frame.t)
        every = cfg.heading_every if loop.heading_usable() is not False else cfg.unusable_heading_every
        if loop.refiner.last_passed:  # the registration measured the heading: the views rest (RefineConfig)
            every = max(every, cfg.refine.heading_views_every)
        rolls = mode == "track" and self.camera.rollable and cfg.heading_every > 0 and loop.frames_seen % every == 0
        dither = 0.0
        if rolls:  # the search view doubles as the heading window's centre, dithered (see HeadingCheck)
            amp = cfg.heading_window_deg / 2.0 if cfg.heading_dither_deg is None else cfg.heading_dither_deg
            dither = float(loop.rng.uniform(-amp, amp))
            headings = [float(wrap_deg(headings[0] + dither))]
        if not timer.fits(costs.per_image * len(headings) + costs.of("search", "refine", "filter")):
            timer.skip("encode")
            return Measurement(mode)
        with timer.stage("encode"):
            base = self.aligner.base(frame.image)
            desc = loop.encoder.encode(self.aligner.views(base, headings), is_panorama=False)
            loop.stats.encodes += len(headings)
        costs.note_encode(timer.stages["encode"], len(headings))
        with timer.stage("search"):
            results = [loop.index.search(d, scope, cfg.k) for d in desc]
            best = int(np.argmax([r.scores[0] if len(r) else -np.inf for r in results]))
            res = results[best]
        if not len(res):
            loop.stats.outside_map += 1
            return Measurement(mode, note=f"no vision fix: {res.reason}")
        with timer.stage("refine"):
            offsets = self._offsets(desc[best], res.rows, timer)
            cands, sigma_c, area = loop.mixture(
                frame.t, est, scope, res.ids, res.scores, res.east, res.north, offsets, query=desc[best]
            )
        heading = None  # vehicle grid heading, sigma
        if mode in ("sweep", "global") and len(headings) > 1 and loop.heading_usable() is not False:
            heading = (self.vehicle_grid(headings[best]), 360.0 / len(headings) / 2.0)
        elif rolls:
            heading = self._heading(frame.t, est, base, headings[0], dither, desc[best], int(res.rows[0]), timer)
        update = "always" if mode != "track" else "if_applied"
        return Measurement(mode, cands, sigma_c, area, heading, update, est, float(res.scores[0]))

    def _offsets(self, query: np.ndarray, rows: np.ndarray, timer: StageTimer) -> np.ndarray | None:
        """The offset head's east/north offsets of the candidates from their tile centres (when it fits)."""
        loop = self.loop
        if loop.offset is None or not loop.cfg.use_offset:
            return None
        if not timer.fits(loop.costs.of("offset", "filter")):
            timer.skip("offset")
            return None
        t0 = time.perf_counter()
        aerial = np.asarray(loop.index.desc[rows], dtype=np.float32)
        offsets = rotate_offsets(loop.offset.predict(query, aerial), loop.convergence)
        loop.costs.note("offset", (time.perf_counter() - t0) * 1000.0)
        return offsets

    def _heading(
        self,
        t: float,
        est: Estimate | None,
        base: np.ndarray,
        centre_deg: float,
        dither: float,
        query: np.ndarray,
        row: int,
        timer: StageTimer,
    ) -> tuple[float, float] | None:
        """Views at +-``heading_window_deg`` around the search view, scored against the best tile: a parabola's
        vertex is the heading (checked against GPS-pinned headings, :class:`HeadingCheck`)."""
        loop, cfg = self.loop, self.loop.cfg
        delta = cfg.heading_window_deg
        if not timer.fits(2 * loop.costs.per_image + loop.costs.of("filter")):
            timer.skip("heading")
            return None
        heading = None
        with timer.stage("heading"):
            side = loop.encoder.encode(
                self.aligner.views(base, [centre_deg - delta, centre_deg + delta]), is_panorama=False
            )
            loop.stats.encodes += 2
            a = np.asarray(loop.index.desc[row], dtype=np.float32)
            a /= max(float(np.linalg.norm(a)), 1e-12)
            hf = heading_from_rolls(centre_deg, delta, np.array([side[0] @ a, query @ a, side[1] @ a]))
            if hf is not None:
                if loop.gps_pinned(t, est) and est.heading_sigma_deg < cfg.heading_check_below_deg:
                    loop.heading_check.add(dither, float(angle_diff_deg(hf.heading_deg, centre_deg - dither)))
                if loop.heading_usable() is not False:
                    heading = (self.vehicle_grid(hf.heading_deg), loop.heading_check.sigma(cfg.heading_sigma_deg))
        return heading

    def ground(self, frame: Frame, heading_grid_deg: float, gsd_m: float, cfg: RefineConfig) -> GroundImage | None:
        """The panorama's bird's-eye view (:mod:`edge_geoloc.cameras.bev`) within ``bev_radius_m``, grid-north-up
        for a vehicle heading; a pinhole camera sees too little ground around it: None."""
        cam = self.camera
        if cam.kind != "panorama":
            return None
        size = 2 * round(cfg.bev_radius_m / gsd_m) + 1
        spec = BevSpec(size, gsd_m, cam.height_m, cfg.bev_radius_m, cam.elevation_range_deg)
        # the panorama's centre column looks along the camera: the vehicle heading plus the mount's (grid)
        bev, mask = panorama_to_bev(frame.image, spec, centre_heading_deg=heading_grid_deg + cam.mount_heading_deg)
        return GroundImage(bev, mask, np.zeros(2), heading_grid_deg)

    def summary(self) -> dict[str, Any]:
        return {}


register_stage("panorama", StreetVision)
register_stage("pinhole", StreetVision)
