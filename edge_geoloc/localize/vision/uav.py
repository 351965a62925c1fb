"""The UAV vision stage: attitude -> rectified ortho patches -> drone encoder -> the same map -> filter.

Per frame (:class:`UavVision`, the vision stage of ``kind: uav`` cameras; prediction, the GNSS,
odometry and attitude events, the particle filter, the budget, the statistics and the Fix records are
the loop's own, :class:`~edge_geoloc.localize.loop.Localizer`):

1. **Attitude.** The latest autopilot sample at or before the frame (roll, pitch, yaw, height above
   ground; an event fed like GNSS). Older than ``max_age_s`` it is stale: the last good one is used for ``hold_s`` more, then
   frames are skipped ("attitude stale"); none at all: "attitude missing". A height outside the
   camera's ``altitude_range_m`` (or none): "altitude". An optical axis more than ``max_tilt_deg``
   from nadir: "oblique"; a frame more than ``max_sky_fraction`` sky: "sky". Each is a counted skip
   with a note, never a fix.
2. **Heading hypotheses.** Yaw trusted: the autopilot's yaw (one hypothesis; it is also fed to the
   filter as a heading measurement). Yaw unknown or distrusted: while the filter's heading is
   uncertain (no GPS course yet), a *sweep* of ``sweep_steps`` headings around the circle; then
   *tracking*: the filter's heading and +-``heading_window_deg``. A patch rectified for an assumed
   heading is north-up exactly when the assumption is right, and the drone encoder (north-up,
   trained with a ranking term against turned patches) scores it highest on its tile: the best
   hypothesis, refined by a parabola through its neighbours, is the heading measurement, fused with
   the gyro's yaw rate in the filter.
3. **Patches.** North-up (true north, as the map's tiles) 64 m patches around the look point (where
   the optical axis meets the ground, pulled to at most one height from the nadir), on a
   ``crop_grid`` x ``crop_grid`` grid ``crop_step_m`` apart, each kept if ``min_visible`` of it is
   in the footprint. A patch centred at c (from the nadir) that matches tile t says the drone is at
   ``t - c``: the scores of every (patch, tile) pair form the position mixture given to the filter,
   softmax-weighted as the vehicle's candidates (temperature, spread and outlier weight fitted while
   GPS pins the filter, :class:`~edge_geoloc.localize.calibrate.VisionCheck`). The tile grid is 32 m;
   patches 16 m apart put candidate positions every 16 m, and the soft targets the drone branch was
   trained on make scores fall off smoothly between them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_geoloc.cameras.rectify import GroundView, Rectifier, look_point, offsets_en
from edge_geoloc.cameras.uav import Attitude, UavCamera
from edge_geoloc.config import check
from edge_geoloc.geo.crs import angle_diff_deg, wrap_deg
from edge_geoloc.localize.calibrate import heading_from_rolls
from edge_geoloc.localize.filter import Estimate
from edge_geoloc.localize.refine import GroundImage, RefineConfig
from edge_geoloc.localize.sources import Frame
from edge_geoloc.localize.timer import StageTimer
from edge_geoloc.localize.vision import Measurement, register_stage

if TYPE_CHECKING:
    from edge_geoloc.localize.loop import Localizer

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UavConfig:
    crop_grid: int = field(default=3, metadata=check(lambda v: v in (1, 3, 5), "1, 3 or 5 patches a side"))
    crop_step_m: float = field(default=16.0, metadata=check(lambda v: v > 0, "metres"))
    min_visible: float = field(default=0.75, metadata=check(lambda v: 0 < v <= 1, "a share in (0, 1]"))
    look_factor: float = field(default=1.0, metadata=check(lambda v: v >= 0, "heights"))
    sweep_steps: int = field(default=24, metadata=check(lambda v: v >= 4, "at least 4 headings"))
    sweep_above_deg: float = 20.0
    heading_window_deg: float = field(default=8.0, metadata=check(lambda v: 0 < v < 45, "degrees in (0, 45)"))
    heading_sigma_deg: float = field(default=4.0, metadata=check(lambda v: v > 0, "degrees"))
    yaw_sigma_deg: float = field(default=2.0, metadata=check(lambda v: v > 0, "degrees"))  # a trusted autopilot yaw


class UavVision:
    """Drone frames (see the module docstring); the loop's encoder is the export's drone branch, or its aerial
    branch itself used as the drone encoder (zero-shot: a model with no drone branch yet)."""

    warm_batch = 4
    spread_floor_div = 16.0  # shifted patches place candidates between tile centres: below a stride's quarter

    def __init__(self, loop: Localizer, camera: UavCamera, options: UavConfig | None = None) -> None:
        patch = loop.encoder.card.branch("aerial" if loop.encoder.branch == "aerial" else "drone")
        self.loop, self.camera, self.cfg = loop, camera, options or UavConfig()
        self.rect = Rectifier(camera.lens, patch.width, patch.gsd_m)
        self.up_deg = -loop.convergence  # true-north-up patches, as the map's tiles
        self.held = 0  # frames that used an attitude older than max_age_s
        self._ground_rect: Rectifier | None = None  # the refine stage's patches (the imagery's GSD)
        self._logged: set[str] = set()
        g = self.cfg.crop_grid // 2
        steps = np.arange(-g, g + 1) * self.cfg.crop_step_m
        ru = np.stack(np.meshgrid(steps, steps[::-1]), -1).reshape(-1, 2)
        self.grid_ru = ru[np.argsort(np.hypot(ru[:, 0], ru[:, 1]), kind="stable")]  # the centre patch first

    def _skip(self, timer: StageTimer, reason: str, detail: str) -> Measurement:
        timer.skip(reason)
        if reason not in self._logged:
            log.warning("UAV frame skipped (%s): %s", reason, detail)
            self._logged.add(reason)
        return Measurement("none", note=f"no vision fix: {reason}: {detail}")

    def _unusable(self, t: float) -> tuple[str, str] | None:
        """Why the attitude at ``t`` cannot rectify this frame (reason, detail), or None."""
        att, cam = self.loop.attitude, self.camera
        age = None if att is None else t - att.t
        if att is None or age > cam.attitude.max_age_s + cam.attitude.hold_s:
            return (
                "attitude missing" if att is None else "attitude stale",
                f"no usable autopilot attitude at t {t:.2f} s",
            )
        if age > cam.attitude.max_age_s:
            self.held += 1
        lo, hi = cam.altitude_range_m
        if att.height_m is None or not lo <= att.height_m <= hi:
            return "altitude", f"height above ground {att.height_m} m outside [{lo:g}, {hi:g}] m"
        R0 = cam.world_from_cam(att.roll_deg, att.pitch_deg, 0.0)
        tilt = cam.tilt_from_nadir_deg(R0)
        if tilt > cam.max_tilt_deg:
            return "oblique", f"optical axis {tilt:.0f} deg from nadir (max {cam.max_tilt_deg:g})"
        sky = cam.sky_fraction(R0)
        if sky > cam.max_sky_fraction:
            return "sky", f"{100 * sky:.0f} % of the frame is above the horizon"
        if look_point(GroundView(R0, att.height_m), self.cfg.look_factor) is None:
            return "sky", "the optical axis does not reach the ground"
        return None

    def _hypotheses(self, att: Attitude, est: Estimate | None, scope: Any, yaw_known: bool) -> tuple[str, list, float]:
        """Mode, heading hypotheses (grid north) and the heading window's dither."""
        loop, ucfg = self.loop, self.cfg
        mode = "global" if scope is None else "track"
        if yaw_known:
            return mode, [float(wrap_deg(att.yaw_deg - loop.convergence))], 0.0
        if est is None or est.heading_sigma_deg > ucfg.sweep_above_deg:
            steps = np.arange(ucfg.sweep_steps) * 360.0 / ucfg.sweep_steps
            return ("sweep" if mode == "track" else mode), [float(h) for h in steps], 0.0
        d = ucfg.heading_window_deg
        # The window is dithered so the heading check can tell a measurement from an echo (HeadingCheck).
        dither = float(loop.rng.uniform(-d / 2, d / 2)) if loop.cfg.check_heading else 0.0
        return mode, [float(wrap_deg(est.heading_deg + dither + o)) for o in (-d, 0.0, d)], dither

    def measure(self, frame: Frame, timer: StageTimer) -> Measurement:
        loop, cam, costs = self.loop, self.camera, self.loop.costs
        why = self._unusable(frame.t)
        if why is not None:
            return self._skip(timer, *why)
        att = loop.attitude
        est = loop.filter.estimate() if loop.filter.initialized else None
        yaw_known = cam.yaw_trusted and att.yaw_deg is not None
        scope = None if est is None else loop.scope(frame.t, est)
        mode, headings, dither = self._hypotheses(att, est, scope, yaw_known)
        n_enc = len(headings) + len(self.grid_ru) - 1
        if not timer.fits(costs.per_image * n_enc + costs.of("search", "refine", "filter")):
            timer.skip("encode")
            return Measurement(mode)
        # Heading: the look-point patch under each hypothesis.
        with timer.stage("rectify", note=False):
            views = {h: GroundView(cam.world_from_cam(att.roll_deg, att.pitch_deg, h), att.height_m) for h in headings}
            centres = {h: look_point(views[h], self.cfg.look_factor) for h in headings}
            first = [self.rect.rectify(frame.image, views[h], centres[h][None], self.up_deg) for h in headings]
        with timer.stage("encode", note=False):
            hd = loop.encoder.encode([p.images[0] for p in first], is_panorama=False)
            loop.stats.encodes += len(headings)
        with timer.stage("search", note=False):
            results, best_i = self._search_hypotheses(hd, mode, scope)
        res = results[best_i]
        if not len(res):
            loop.stats.outside_map += 1
            return Measurement(mode, note=f"no vision fix: {res.reason}")
        with timer.stage("heading", note=False):
            heading, best_i = self._heading(frame.t, est, hd, headings, best_i, int(res.rows[0]), yaw_known, dither)
        h_best = headings[best_i]
        first_result = res if best_i in results else None
        m = self._position(frame, timer, views[h_best], centres[h_best], hd[best_i], first_result, n_enc, est, scope)
        m.mode, m.heading, m.est = mode, heading, est
        m.extra["heading_grid_deg"] = float("nan") if heading is None else heading[0]
        # Vision headings from a drone branch the check found blind (they echo the assumed heading) are not
        # used: they would drag the filter's heading wherever it already drifts.
        trusted = yaw_known or loop.heading_usable() is not False
        m.heading_update = "never" if not trusted else "always" if yaw_known or mode == "sweep" else "if_applied"
        return m

    def _search_hypotheses(self, hd: np.ndarray, mode: str, scope: Any) -> tuple[dict[int, Any], int]:
        """Search results by hypothesis: the centre one while tracking (or the one yaw), every one in a sweep."""
        index, k = self.loop.index, self.loop.cfg.k
        if len(hd) == 1 or (mode != "sweep" and len(hd) == 3):
            centre_i = 0 if len(hd) == 1 else 1
            return {centre_i: index.search(hd[centre_i], scope, k)}, centre_i
        rs = index.search_batch(hd, scope, k)
        return dict(enumerate(rs)), int(np.argmax([r.scores[0] if len(r) else -np.inf for r in rs]))

    def _heading(
        self,
        t: float,
        est: Estimate | None,
        hd: np.ndarray,
        headings: list[float],
        best_i: int,
        row: int,
        yaw_known: bool,
        dither: float,
    ) -> tuple[tuple[float, float] | None, int]:
        """The heading measurement (grid north, sigma) and the best hypothesis: the trusted yaw, or the
        hypotheses' scores against the best tile refined by a parabola through the peak's neighbours."""
        ucfg = self.cfg
        if yaw_known:
            return (headings[0], ucfg.yaw_sigma_deg), best_i
        tile = np.asarray(self.loop.index.desc[row], np.float32)
        tile /= max(float(np.linalg.norm(tile)), 1e-12)
        s = hd @ tile
        n = len(headings)
        step = ucfg.heading_window_deg if n == 3 else 360.0 / n
        i = best_i if n != 3 else int(np.argmax(s))
        trio = np.array([s[(i - 1) % n], s[i], s[(i + 1) % n]]) if n > 3 or i == 1 else None
        hf = heading_from_rolls(headings[i], step, trio) if trio is not None else None
        if hf is not None:
            loop = self.loop
            if n == 3 and loop.gps_pinned(t, est) and est.heading_sigma_deg < loop.cfg.heading_check_below_deg:
                loop.heading_check.add(dither, float(angle_diff_deg(hf.heading_deg, est.heading_deg)))
            return (hf.heading_deg, max(ucfg.heading_sigma_deg, step / 4 if n > 3 else 0.0)), i
        if n == 3:  # the peak is at the window's edge: the truth is further; a wider sigma says so
            return (headings[i], step), i
        return None, i

    def _position(
        self,
        frame: Frame,
        timer: StageTimer,
        view: GroundView,
        lp: np.ndarray,
        first_desc: np.ndarray,
        first_result: Any,
        n_enc: int,
        est: Estimate | None,
        scope: Any,
    ) -> Measurement:
        """A grid of patches at the best hypothesis (its look-point patch is already encoded) -> the mixture
        of every (patch, tile) pair: a patch centred at c that matches tile t says the drone is at t - c."""
        loop, costs = self.loop, self.loop.costs
        with timer.stage("rectify", note=False):
            grid_en = lp[None] + offsets_en(self.grid_ru, self.up_deg)
            rest = self.rect.rectify(frame.image, view, grid_en[1:], self.up_deg)
            keep = np.nonzero(rest.valid_fraction >= self.cfg.min_visible)[0]
        with timer.stage("encode"):
            desc = [first_desc[None]]
            if len(keep):
                desc.append(loop.encoder.encode(list(rest.images[keep]), is_panorama=False))
                loop.stats.encodes += len(keep)
            desc_all = np.concatenate(desc)
            patch_en = np.concatenate([lp[None], grid_en[1:][keep]])
        costs.note_encode(timer.stages.get("encode", 0.0), max(1, n_enc))
        with timer.stage("search"):
            rs = [first_result if j == 0 else None for j in range(len(desc_all))]
            todo = [j for j, r in enumerate(rs) if r is None]
            if todo:
                for j, r in zip(todo, loop.index.search_batch(desc_all[todo], scope, loop.cfg.k)):
                    rs[j] = r
        with timer.stage("refine"):
            found = [(r, c, d) for r, c, d in zip(rs, patch_en, desc_all) if r is not None and len(r)]
            ids = np.concatenate([r.ids for r, _, _ in found])
            sc = np.concatenate([r.scores for r, _, _ in found])
            ea = np.concatenate([r.east - c[0] for r, c, _ in found])
            na = np.concatenate([r.north - c[1] for r, c, _ in found])
            patch = np.concatenate([np.full(len(r), j) for j, (r, _, _) in enumerate(found)])
            order = np.argsort(-sc, kind="stable")
            ids, sc, ea, na = ids[order], sc[order], ea[order], na[order]
            query = found[int(patch[order[0]])][2]  # the patch whose pair scored best
            cands, sigma_c, area = loop.mixture(frame.t, est, scope, ids, sc, ea, na, query=query)
        extra = {
            "best_east": float(ea[0]),  # the best (patch, tile) pair's place: that tile's centre less the patch offset
            "best_north": float(na[0]),
            "best_tile": float(ids[0]),
            "patches": float(len(desc_all)),
        }
        return Measurement("track", cands, sigma_c, area, top_score=float(sc[0]), extra=extra)

    def ground(self, frame: Frame, heading_grid_deg: float, gsd_m: float, cfg: RefineConfig) -> GroundImage | None:
        """A grid-north-up ``patch_m`` patch at the imagery's GSD around the look point, rectified for the
        attitude's roll and pitch and a vehicle heading (None without a usable attitude)."""
        att = self.loop.attitude
        if att is None or att.height_m is None:
            return None
        view = GroundView(self.camera.world_from_cam(att.roll_deg, att.pitch_deg, heading_grid_deg), att.height_m)
        lp = look_point(view, self.cfg.look_factor)
        size = round(cfg.patch_m / gsd_m)
        if lp is None:
            return None
        if self._ground_rect is None or (self._ground_rect.size_px, self._ground_rect.gsd_m) != (size, gsd_m):
            self._ground_rect = Rectifier(self.camera.lens, size, gsd_m)
        p = self._ground_rect.rectify(frame.image, view, lp[None], 0.0)
        return GroundImage(p.images[0], p.valid[0].astype(np.uint8) * 255, lp, heading_grid_deg)

    def summary(self) -> dict[str, Any]:
        return {"attitude_held_frames": self.held}


register_stage("uav", UavVision)
