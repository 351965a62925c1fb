"""The loop for drone frames: attitude -> rectified ortho patches -> drone encoder -> the same map -> filter.

Per frame (:class:`UavLocalizer`, the vehicle :class:`~edge_geoloc.localize.pipeline.Localizer` with
its vision stage replaced; prediction, GPS/odometry events, the particle filter, the budget, the
statistics and the Fix records are the vehicle loop's own):

1. **Attitude.** The latest autopilot sample at or before the frame (roll, pitch, yaw, height above
   ground). Older than ``max_age_s`` it is stale: the last good one is used for ``hold_s`` more, then
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
   GPS pins the filter, :class:`~edge_geoloc.localize.refine.VisionCheck`). The tile grid is 32 m;
   patches 16 m apart put candidate positions every 16 m, and the soft targets the drone branch was
   trained on make scores fall off smoothly between them.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.config import check
from edge_geoloc.geo.crs import angle_diff_deg, wrap_deg
from edge_geoloc.localize.filter import FilterConfig
from edge_geoloc.localize.pipeline import Localizer, LoopConfig
from edge_geoloc.localize.rectify import GroundView, Rectifier, look_point, offsets_en
from edge_geoloc.localize.refine import VisionCheck, candidates, heading_from_rolls
from edge_geoloc.localize.sources import Frame
from edge_geoloc.localize.uav_camera import Attitude, UavCamera

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


class AttitudeLog:
    """Autopilot attitude samples handed out by time (a synthetic log or a CSV ``t,roll_deg,pitch_deg,yaw_deg,height_m``;
    an empty or NaN yaw means none)."""

    def __init__(
        self,
        t: np.ndarray,
        roll_deg: np.ndarray,
        pitch_deg: np.ndarray,
        yaw_deg: np.ndarray,
        height_m: np.ndarray,
        name: str = "attitude",
    ) -> None:
        self.t = np.asarray(t, np.float64)
        self.roll, self.pitch = np.asarray(roll_deg, np.float64), np.asarray(pitch_deg, np.float64)
        self.yaw, self.height = np.asarray(yaw_deg, np.float64), np.asarray(height_m, np.float64)
        if not len(self.t) == len(self.roll) == len(self.pitch) == len(self.yaw) == len(self.height):
            raise ValueError(f"{name}: attitude columns differ in length")
        if len(self.t) > 1 and np.any(np.diff(self.t) <= 0):
            raise ValueError(f"{name}: attitude times must increase")
        self.name = name
        self._i = 0

    @classmethod
    def from_csv(cls, path: str | Path) -> AttitudeLog:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"attitude {path}: no such file (expected CSV t,roll_deg,pitch_deg,yaw_deg,height_m)"
            )
        rows = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            cols = [c.strip() for c in line.split(",")]
            try:
                if len(cols) != 5:
                    raise ValueError
                rows.append([float(c) if c else float("nan") for c in cols])
            except ValueError:
                if n == 1:
                    continue  # header
                raise ValueError(
                    f"{path}:{n}: expected 't,roll_deg,pitch_deg,yaw_deg,height_m', got {line!r}"
                ) from None
        if not rows:
            raise ValueError(f"{path}: no attitude rows")
        a = np.asarray(rows)
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], str(path))

    def poll(self, t: float) -> list[Attitude]:
        j = int(np.searchsorted(self.t, t, side="right"))
        out = []
        for k in range(self._i, j):
            yaw = float(self.yaw[k])
            h = float(self.height[k])
            out.append(
                Attitude(
                    float(self.t[k]),
                    float(self.roll[k]),
                    float(self.pitch[k]),
                    yaw if math.isfinite(yaw) else None,
                    h if math.isfinite(h) else None,
                )
            )
        self._i = max(self._i, j)
        return out


class UavLocalizer(Localizer):
    """The loop for drone frames (see the module docstring); ``encoder`` is the export's drone branch."""

    def __init__(
        self,
        encoder: Any,
        index: Any,
        camera: UavCamera,
        attitude: Any,
        config: LoopConfig | None = None,
        filter_config: FilterConfig | None = None,
        uav: UavConfig | None = None,
        start_utc: datetime | None = None,
        warm_up: bool = True,
    ) -> None:
        drone = encoder.card.branch("drone")
        super().__init__(encoder, index, camera, config, filter_config, None, start_utc, warm_up)
        self.uav = uav or UavConfig()
        self.attitude = attitude
        self.rect = Rectifier(camera.lens, drone.width, drone.gsd_m)
        self.up_deg = -self.convergence  # true-north-up patches, as the map's tiles
        # Shifted patches place candidates between tile centres: let the fitted spread go below a stride's quarter.
        self.vision_check = VisionCheck(lo=self.tiling.tile_m / 16.0, hi=self.tiling.tile_m)
        self._att: Attitude | None = None
        self._att_logged: set[str] = set()
        self.stats.attitude_held = 0  # type: ignore[attr-defined]
        g = self.uav.crop_grid // 2
        steps = np.arange(-g, g + 1) * self.uav.crop_step_m
        ru = np.stack(np.meshgrid(steps, steps[::-1]), -1).reshape(-1, 2)
        self.grid_ru = ru[np.argsort(np.hypot(ru[:, 0], ru[:, 1]), kind="stable")]  # the centre patch first

    def _warm_up(self) -> None:
        spec = self.encoder.spec
        dummy = np.zeros((spec.height, spec.width, 3), np.uint8)
        self.encoder.encode([dummy], is_panorama=False)
        t0 = time.perf_counter()
        self.encoder.encode([dummy] * 4, is_panorama=False)
        self._enc_per_image = (time.perf_counter() - t0) * 250.0

    # --- attitude ---------------------------------------------------------------------------------

    def _attitude_at(self, t: float) -> tuple[Attitude | None, str | None]:
        if self.attitude is not None:
            for a in self.attitude.poll(t):
                if math.isfinite(a.roll_deg) and math.isfinite(a.pitch_deg):
                    self._att = a
        a = self._att
        if a is None:
            return None, "attitude missing"
        age = t - a.t
        cfg = self.camera.attitude
        if age > cfg.max_age_s + cfg.hold_s:
            return None, "attitude stale"
        if age > cfg.max_age_s:
            self.stats.attitude_held += 1  # type: ignore[attr-defined]
        return a, None

    def _skip(self, skipped: list, reason: str, detail: str) -> tuple:
        skipped.append(reason)
        if reason not in self._att_logged:
            log.warning("UAV frame skipped (%s): %s", reason, detail)
            self._att_logged.add(reason)
        return "none", None, None, False, f"no vision fix: {reason}: {detail}"

    # --- the vision stage -------------------------------------------------------------------------

    def _vision(self, frame: Frame, stages: dict, skipped: list, fits: Any, timed: Any) -> tuple:
        cfg, ucfg, cam = self.cfg, self.uav, self.camera
        att, why = self._attitude_at(frame.t)
        if att is None:
            return self._skip(skipped, why or "attitude missing", f"no usable autopilot attitude at t {frame.t:.2f} s")
        lo, hi = cam.altitude_range_m
        if att.height_m is None or not lo <= att.height_m <= hi:
            return self._skip(skipped, "altitude", f"height above ground {att.height_m} m outside [{lo:g}, {hi:g}] m")
        R0 = cam.world_from_cam(att.roll_deg, att.pitch_deg, 0.0)
        tilt = cam.tilt_from_nadir_deg(R0)
        if tilt > cam.max_tilt_deg:
            return self._skip(skipped, "oblique", f"optical axis {tilt:.0f} deg from nadir (max {cam.max_tilt_deg:g})")
        sky = cam.sky_fraction(R0)
        if sky > cam.max_sky_fraction:
            return self._skip(skipped, "sky", f"{100 * sky:.0f} % of the frame is above the horizon")
        lp0 = look_point(GroundView(R0, att.height_m), ucfg.look_factor)
        if lp0 is None:
            return self._skip(skipped, "sky", "the optical axis does not reach the ground")

        # Mode, scope and heading hypotheses (grid north).
        est = self.filter.estimate() if self.filter.initialized else None
        yaw_known = cam.yaw_trusted and att.yaw_deg is not None
        scope = None if est is None else self.scope(frame.t, est)
        mode = "global" if scope is None else "track"
        dither = 0.0
        if yaw_known:
            headings = [float(wrap_deg(att.yaw_deg - self.convergence))]
        elif est is None or est.heading_sigma_deg > ucfg.sweep_above_deg:
            mode = "sweep" if mode == "track" else mode
            headings = [float(h) for h in np.arange(ucfg.sweep_steps) * 360.0 / ucfg.sweep_steps]
        else:
            d = ucfg.heading_window_deg
            # The window is dithered so the heading check can tell a measurement from an echo (HeadingCheck).
            dither = float(self._rng.uniform(-d / 2, d / 2)) if cfg.check_heading else 0.0
            headings = [float(wrap_deg(est.heading_deg + dither + o)) for o in (-d, 0.0, d)]
        n_enc = len(headings) + len(self.grid_ru) - 1
        if not fits(self._enc_per_image * n_enc + self._cost_of("search", "refine", "filter")):
            skipped.append("encode")
            return mode, None, None, False, None

        # Heading: the look-point patch under each hypothesis.
        t0 = time.perf_counter()
        views = {h: GroundView(cam.world_from_cam(att.roll_deg, att.pitch_deg, h), att.height_m) for h in headings}
        centres = {h: look_point(views[h], ucfg.look_factor) for h in headings}
        first = [self.rect.rectify(frame.image, views[h], centres[h][None], self.up_deg) for h in headings]
        timed("rectify", t0)
        t0 = time.perf_counter()
        hd = self.encoder.encode([p.images[0] for p in first], is_panorama=False)
        self.stats.encodes += len(headings)
        timed("encode", t0)
        t0 = time.perf_counter()
        if len(headings) == 1 or (mode != "sweep" and len(headings) == 3):
            centre_i = 0 if len(headings) == 1 else 1
            res0 = self.index.search(hd[centre_i], scope, cfg.k)
            best_i = centre_i
            results = {centre_i: res0}
        else:  # sweep: every hypothesis searched
            rs = self.index.search_batch(hd, scope, cfg.k)
            results = dict(enumerate(rs))
            best_i = int(np.argmax([r.scores[0] if len(r) else -np.inf for r in rs]))
        timed("search", t0)
        res = results[best_i]
        if not len(res):
            self.stats.outside_map += 1
            return mode, None, None, False, f"no vision fix: {res.reason}"
        heading_meas: tuple[float, float] | None = None
        t0 = time.perf_counter()
        if yaw_known:
            heading_meas = (headings[0], ucfg.yaw_sigma_deg)
        else:
            tile = np.asarray(self.index.desc[int(res.rows[0])], np.float32)
            tile /= max(float(np.linalg.norm(tile)), 1e-12)
            s = hd @ tile
            n = len(headings)
            step = ucfg.heading_window_deg if n == 3 else 360.0 / n
            i = best_i if n != 3 else int(np.argmax(s))
            trio = np.array([s[(i - 1) % n], s[i], s[(i + 1) % n]]) if n > 3 or i == 1 else None
            hf = heading_from_rolls(headings[i], step, trio) if trio is not None else None
            if hf is not None:
                heading_meas = (hf.heading_deg, max(ucfg.heading_sigma_deg, step / 4 if n > 3 else 0.0))
                if n == 3 and self._gps_pinned(frame.t, est) and est.heading_sigma_deg < cfg.heading_check_below_deg:
                    self.heading_check.add(dither, float(angle_diff_deg(hf.heading_deg, est.heading_deg)))
            elif n == 3:  # the peak is at the window's edge: the truth is further; a wider sigma says so
                heading_meas = (headings[i], step)
            best_i = i
        timed("heading", t0)
        h_best = headings[best_i]

        # Position: a grid of patches at the best hypothesis (its look-point patch is already encoded).
        t0 = time.perf_counter()
        lp = centres[h_best]
        grid_en = lp[None] + offsets_en(self.grid_ru, self.up_deg)
        rest = self.rect.rectify(frame.image, views[h_best], grid_en[1:], self.up_deg)
        keep = np.nonzero(rest.valid_fraction >= ucfg.min_visible)[0]
        timed("rectify", t0)
        t0 = time.perf_counter()
        desc = [hd[best_i][None]]
        if len(keep):
            desc.append(self.encoder.encode(list(rest.images[keep]), is_panorama=False))
            self.stats.encodes += len(keep)
        desc_all = np.concatenate(desc)
        patch_en = np.concatenate([lp[None], grid_en[1:][keep]])
        timed("encode", t0)
        self._note_cost("encode", stages.get("encode", 0.0))
        self._enc_per_image = 0.8 * self._enc_per_image + 0.2 * stages.get("encode", 0.0) / max(1, n_enc)
        t0 = time.perf_counter()
        rs = [res if best_i in results and j == 0 else None for j in range(len(desc_all))]
        todo = [j for j, r in enumerate(rs) if r is None]
        if todo:
            for j, r in zip(todo, self.index.search_batch(desc_all[todo], scope, cfg.k)):
                rs[j] = r
        timed("search", t0)
        self._note_cost("search", stages["search"])

        t0 = time.perf_counter()
        ids, scores, east, north = [], [], [], []
        for r, c in zip(rs, patch_en):
            if r is None or not len(r):
                continue
            ids.append(r.ids)
            scores.append(r.scores)
            east.append(r.east - c[0])
            north.append(r.north - c[1])
        ids_a, sc, ea, na = (np.concatenate(v) for v in (ids, scores, east, north))
        order = np.argsort(-sc, kind="stable")
        ids_a, sc, ea, na = ids_a[order], sc[order], ea[order], na[order]
        area = self.map_area if scope is None else math.pi * scope[2] ** 2
        if self._gps_pinned(frame.t, est):
            self.vision_check.add(sc, ea, na, (est.east, est.north), area)
        sigma_c = self.vision_check.sigma(self.sigma_c)
        temperature = self.vision_check.temperature(cfg.temperature)
        cands = candidates(ids_a, sc, ea, na, temperature, sigma_c)
        timed("refine", t0)
        self._note_cost("refine", stages["refine"])

        t0 = time.perf_counter()
        f = self.filter
        fe, fn = cands.fused()
        applied, evidence = self._apply_vision(frame.t, cands, sigma_c, area, mode, heading_meas, est)
        # Vision headings from a drone branch the check found blind (they echo the assumed heading) are not
        # used: they would drag the filter's heading wherever it already drifts.
        trusted = yaw_known or self._heading_usable() is not False
        if heading_meas is not None and trusted and (applied or yaw_known or mode == "sweep"):
            f.update_heading(frame.t, *heading_meas)
        timed("filter", t0)
        self._note_cost("filter", stages["filter"])
        vision = {
            "east": fe,
            "north": fn,
            "evidence": evidence,
            "top_score": float(sc[0]),
            "best_east": float(ea[0]),  # the best (patch, tile) pair's place: that tile's centre less the patch offset
            "best_north": float(na[0]),
            "best_tile": float(ids_a[0]),
            "patches": float(len(desc_all)),
            "heading_grid_deg": float("nan") if heading_meas is None else heading_meas[0],
        }
        return mode, vision, cands, applied, None

    # --- headings (the filter tracks the airframe's yaw: no mounting offset) ------------------------

    def camera_true(self, vehicle_grid_deg: float) -> float:
        return float(wrap_deg(vehicle_grid_deg + self.convergence))

    def vehicle_grid(self, camera_true_deg: float) -> float:
        return float(wrap_deg(camera_true_deg - self.convergence))

    def summary(self) -> dict[str, Any]:
        out = super().summary()
        out["attitude_held_frames"] = self.stats.attitude_held  # type: ignore[attr-defined]
        return out


def open_uav_models(
    model_dir: str | Path, map_dir: str | Path, backend: str = "auto", threads: int | None = None
) -> tuple:
    """(drone encoder, map index) from an export with a drone branch and a map of its aerial encoder."""
    from edge_geoloc.maps import MapIndex
    from edge_geoloc.runtime import open_encoder

    options = {} if threads is None else {"intra_op_threads": threads}
    encoder = open_encoder(model_dir, "drone", backend=backend, **options)
    index = MapIndex.open(map_dir, card=encoder.card)
    return encoder, index
