"""Metric refinement: per-frame registration of the frame's ground projection against the map imagery.

One synthetic town (``maps/synth/test-suburb.yaml``, 800 m; ``--quick``: a 360 m town of the same style).
The map imagery is the town's orthophoto capture (its own sun and season), read as grid-north-up windows
at 0.5 m/px, as the bundle's imagery layer serves them (:mod:`edge_geoloc.maps.ortho`).

- **Car**: places along a drive (the right lane), a 360-degree panorama 2 m up (256 x 1024 px), projected to
  a bird's-eye view of 20 m radius (:mod:`edge_geoloc.cameras.bev`) for the assumed heading.
- **UAV**: the demo drone's camera (``configs/camera/uav-demo.yaml``: 80 degrees, 15 degrees forward of
  nadir, not stabilized) at 100-150 m, roll and pitch up to 5 degrees, a 64 m patch at 0.5 m/px around the
  look point, rectified for the assumed heading (:mod:`edge_geoloc.cameras.rectify`).

Each frame is registered (:func:`edge_geoloc.localize.registration.register`) from an assumed place
``initial`` metres off in a random direction and an assumed heading off by ``heading`` degrees (random
sign), searching +-(1.5 x initial + 5) m and +-(heading + 4) degrees. Both methods: ``dense`` (masked NCC of
gradient-orientation fields) and ``features`` (SIFT + RANSAC similarity). Nuisances, one at a time at the
reference start (car 10 m / 5 deg, UAV 20 m / 5 deg), then all together:

- ``height``: the camera height assumed wrong (car +-0.2 m; UAV +-3 m, a barometer's error above ground);
- ``tilt``: pitch and roll of +-3 degrees not modelled (the car's panorama is tilted; the drone's attitude
  is off by that much: at 120 m, 3 degrees moves the ground under the camera by 6 m, which registration
  cannot tell from a position error);
- ``season``: the frame from another capture (sun, season, exposure: ``Appearance.sample``) than the map;
  off, the frame is lit as the map is;
- ``demo-cam`` (car only): the car demo's own camera, a 64 x 256 panorama over -45..45 degrees, instead of the
  272 x 1024 one (a row is 1.4 degrees: 1.2 m of ground at 10 m, 5 m at 20 m);
- ``cars``: parked cars and their shadows drawn into the ground image (a 1.5 m tall car seen from 2 m
  projects as a streak out to four times its distance, as the flat-ground projection smears it).

Reported per cell: position error median / p95 (m), for the car also cross-track and along-track (along-
track only where the registration says it is constrained, sigma <= 2 m), heading error median (deg),
success rate (UAV: within 2 m and 1 deg; car: cross-track within 1 m and along-track within 2 m where
constrained), ``consistent`` (the error inside the 99 % ellipse of the reported covariance: what the
filter is told is true) and the CPU ms per registration (median).

    .venv/bin/python benchmarks/refine.py            # 20 frames a cell, ~30 min on a loaded 2-core machine
    .venv/bin/python benchmarks/refine.py --quick    # small town, 3 frames a cell, one method per table: < 1 min
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "refine.json"
GSD = 0.5
INITIAL_M = (5.0, 10.0, 20.0, 40.0)
HEADING_DEG = (0.0, 5.0, 15.0)
NUISANCES = ("none", "height", "tilt", "season", "cars", "all", "demo-cam")
REFERENCE = {"car": (10.0, 5.0), "uav": (20.0, 5.0)}
PANO_RANGE = (-60.0, 30.0)  # the panorama camera's vertical range
WIDE_RANGE = (-66.0, 36.0)
DEMO_RANGE = (
    -45.0,
    45.0,
)  # the car demo's camera (sim/scenario.py DEMO_CAMERA: 64 x 256 px)  # rendered wider, so a tilted camera can be resampled from it
BEV_RADIUS_M = 20.0
UAV_PATCH_PX = 128


@dataclass(frozen=True)
class Shot:
    """One frame's truth (grid heading) and its nuisance draws."""

    east: float
    north: float
    heading: float
    height: float  # camera above ground
    roll: float = 0.0
    pitch: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class Nuisance:
    height_m: float = 0.0
    tilt_deg: float = 0.0
    season: bool = False
    cars: bool = False
    demo_camera: bool = False  # car: the car demo's 64 x 256 panorama (-45..45 degrees) instead of 272 x 1024

    @classmethod
    def named(cls, name: str, vehicle: str) -> Nuisance:
        dh = 0.2 if vehicle == "car" else 3.0
        return {
            "none": cls(),
            "height": cls(height_m=dh),
            "tilt": cls(tilt_deg=3.0),
            "season": cls(season=True),
            "cars": cls(cars=True),
            "all": cls(dh, 3.0, True, True),
            "demo-cam": cls(demo_camera=vehicle == "car"),
        }[name]


class Town:
    """The world, its map capture and the frames' renders (cached per shot and appearance)."""

    def __init__(self, quick: bool) -> None:
        from edge_geoloc.world.aerial import aerial_capture, prepare_aerial
        from edge_geoloc.world.layout import generate_world
        from edge_geoloc.world.region import Region

        region = Region.load(ROOT / "maps" / "synth" / "test-suburb.yaml")
        if quick:
            region = replace(region, name="refine-quick", size_m=360.0)
        self.world = generate_world(region)
        self.map_app = aerial_capture(self.world)
        prepare_aerial(self.world, self.map_app, GSD)
        self._renders: dict[tuple[str, int, bool], np.ndarray] = {}

    def window(self, east: float, north: float, half_px: int) -> np.ndarray:
        """The map imagery around (east, north): grid-north-up, 2 * half_px + 1 pixels, as MapOrtho.window."""
        from edge_geoloc.world.aerial import render_aerial

        return render_aerial(self.world, east, north, 2 * half_px + 1, GSD, self.map_app, true_north=False)

    def appearance(self, shot: Shot, season: bool, kind: str) -> Any:
        from edge_geoloc.world.appearance import Appearance

        if not season:
            return self.map_app
        return Appearance.sample(np.random.default_rng(shot.seed + 7919), kind)


def car_shots(town: Town, n: int, seed: int) -> list[Shot]:
    from edge_geoloc.world.trajectory import drive

    w = town.world
    traj = drive(w.roads, seed, 30.0 * n + 60.0, area=w)
    margin = 40.0 * 1.5 + 5.0 + BEV_RADIUS_M + 5.0
    idx = [i for i in range(0, len(traj), 30) if w.contains(traj.east[i], traj.north[i], margin)]
    pick = np.random.default_rng(seed).choice(idx, size=min(n, len(idx)), replace=False)
    return [Shot(float(traj.east[i]), float(traj.north[i]), float(traj.heading_deg[i]), 2.0, seed=int(i)) for i in pick]


def uav_shots(town: Town, n: int, seed: int) -> list[Shot]:
    w, rng = town.world, np.random.default_rng(seed)
    shots: list[Shot] = []
    while len(shots) < n:
        e = rng.uniform(w.east_min, w.east_max)
        nn = rng.uniform(w.north_min, w.north_max)
        if w.contains(e, nn, 150.0):
            shots.append(
                Shot(e, nn, rng.uniform(0, 360), rng.uniform(100, 150), *rng.uniform(-5, 5, 2), seed=len(shots))
            )
    return shots


def tilted_panorama(
    wide: np.ndarray, pitch_deg: float, roll_deg: float, out_range: tuple = PANO_RANGE, width: int | None = None
) -> np.ndarray:
    """The panorama (``out_range`` of elevation, ``width`` px around) a camera pitched (nose up) and rolled (right
    down) would see, from a level one rendered over ``WIDE_RANGE``: each output pixel's ray turned by the tilt,
    looked up in the level panorama (shrunk first when the output is coarser)."""
    if width is not None and width < wide.shape[1]:
        f = wide.shape[1] / width
        wide = cv2.resize(wide, (width, round(wide.shape[0] / f)), interpolation=cv2.INTER_AREA)
    step = (WIDE_RANGE[1] - WIDE_RANGE[0]) / wide.shape[0]  # degrees per row of the level panorama
    h, w = round((out_range[1] - out_range[0]) / step), wide.shape[1]
    az = np.radians((np.arange(w) + 0.5 - w / 2) * 360.0 / w)[None, :]
    el = np.radians(out_range[1] - (np.arange(h) + 0.5) * (out_range[1] - out_range[0]) / h)[:, None]
    d = np.stack(np.broadcast_arrays(np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)), -1)
    p, r = math.radians(pitch_deg), math.radians(roll_deg)
    pitch = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])  # about right
    roll = np.array([[math.cos(r), 0, math.sin(r)], [0, 1, 0], [-math.sin(r), 0, math.cos(r)]])  # about forward
    d = d @ (pitch @ roll).T
    az_w = np.degrees(np.arctan2(d[..., 0], d[..., 1]))
    el_w = np.degrees(np.arcsin(np.clip(d[..., 2], -1, 1)))
    mx = (az_w / 360.0 * w + w / 2 - 0.5) % w
    my = (WIDE_RANGE[1] - el_w) / (WIDE_RANGE[1] - WIDE_RANGE[0]) * wide.shape[0] - 0.5
    return cv2.remap(wide, mx.astype(np.float32), my.astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def paint_cars(img: np.ndarray, mask: np.ndarray, rng: np.random.Generator, smear: float, heading: float) -> None:
    """Parked cars (1.8 x 4.5 m) along both kerbs near the camera and their shadows, in a north-up ground
    image centred on the camera; ``smear`` > 1 stretches each car outward from the camera (a BEV's flat-ground
    projection of a 1.5 m tall car seen from 2 m: out to 4x its distance)."""
    s = img.shape[0]
    c = (s - 1) / 2.0
    a = math.radians(heading)
    fwd, right = np.array([math.sin(a), math.cos(a)]), np.array([math.cos(a), -math.sin(a)])
    for _ in range(8):
        centre = fwd * rng.uniform(-18, 18) + right * rng.choice([-1, 1]) * rng.uniform(3.5, 5.0)
        corners = np.array([centre + fwd * u * 2.25 + right * v * 0.9 for u, v in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
        if smear > 1:
            corners = np.concatenate([corners, corners * smear])
        px = np.stack([c + corners[:, 0] / GSD, c - corners[:, 1] / GSD], -1)
        hull = cv2.convexHull(px.astype(np.float32)).astype(np.int32)
        shadow = hull + np.array([4, 3], np.int32)
        over = np.zeros(mask.shape, np.uint8)
        cv2.fillConvexPoly(over, shadow, 1)
        img[(over > 0) & (mask > 0)] = (img[(over > 0) & (mask > 0)] * 0.45).astype(np.uint8)
        colour = tuple(int(v) for v in rng.integers(20, 235, 3))
        over[:] = 0
        cv2.fillConvexPoly(over, hull, 1)
        img[(over > 0) & (mask > 0)] = colour


def car_ground(town: Town, shot: Shot, nz: Nuisance, assumed_heading: float) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The BEV (grid-north-up for the assumed heading), its mask and the pivot (the camera: the centre)."""
    from edge_geoloc.cameras.bev import BevSpec, panorama_to_bev
    from edge_geoloc.world.street import render_panorama

    key = ("car", shot.seed, nz.season)
    if key not in town._renders:
        app = town.appearance(shot, nz.season, "street")
        town._renders[key] = render_panorama(
            town.world, shot.east, shot.north, shot.heading, 272, 1024, shot.height, WIDE_RANGE, app=app
        )
    rng = np.random.default_rng(shot.seed)
    sign = rng.choice([-1.0, 1.0], 3)
    rng_ = DEMO_RANGE if nz.demo_camera else PANO_RANGE
    pano = tilted_panorama(
        town._renders[key], sign[0] * nz.tilt_deg, sign[1] * nz.tilt_deg, rng_, 256 if nz.demo_camera else None
    )
    size = int(2 * round(BEV_RADIUS_M / GSD) + 1)
    spec = BevSpec(size, GSD, shot.height + sign[2] * nz.height_m, BEV_RADIUS_M, rng_)
    bev, mask = panorama_to_bev(pano, spec, centre_heading_deg=assumed_heading)
    if nz.cars:
        paint_cars(bev, mask, rng, 4.0, shot.heading)
    return bev, mask, (0.0, 0.0)


def uav_ground(town: Town, shot: Shot, nz: Nuisance, assumed_heading: float) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The rectified patch around the look point for the assumed heading (and attitude, height), its mask
    and the pivot (the camera's offset from the patch centre)."""
    from edge_geoloc.cameras.rectify import GroundView, Rectifier, look_point
    from edge_geoloc.cameras.uav import UavCamera
    from edge_geoloc.world.camera import render_camera

    cam = UavCamera.load(ROOT / "edge_geoloc" / "configs" / "camera" / "uav-demo.yaml")
    key = ("uav", shot.seed, nz.season)
    if key not in town._renders:
        R = cam.world_from_cam(shot.roll, shot.pitch, shot.heading)
        app = town.appearance(shot, nz.season, "uav")
        pos = np.array([shot.east, shot.north, shot.height])
        town._renders[key] = render_camera(town.world, cam.lens, R, pos, app, np.random.default_rng(shot.seed))
    rng = np.random.default_rng(shot.seed)
    sign = rng.choice([-1.0, 1.0], 3)
    view = GroundView(
        cam.world_from_cam(shot.roll + sign[0] * nz.tilt_deg, shot.pitch + sign[1] * nz.tilt_deg, assumed_heading),
        shot.height + sign[2] * nz.height_m,
    )
    lp = look_point(view, 1.0)
    p = Rectifier(cam.lens, UAV_PATCH_PX, GSD).rectify(town._renders[key], view, lp[None], 0.0)
    img, mask = p.images[0].copy(), p.valid[0].astype(np.uint8) * 255
    if nz.cars:
        paint_cars(img, mask, rng, 1.0, shot.heading)
    return img, mask, (-float(lp[0]), -float(lp[1]))


def register_one(town: Town, vehicle: str, shot: Shot, method: str, initial: float, heading: float, nz: Nuisance):
    """One registration from a start ``initial`` m and ``heading`` deg off: (row of errors, ms)."""
    from edge_geoloc.localize.refine import RefineConfig
    from edge_geoloc.localize.registration import RegistrationConfig, compose, register

    rng = np.random.default_rng(shot.seed * 1009 + int(initial) * 7 + int(heading))
    a = rng.uniform(0, 2 * math.pi)
    off = initial * np.array([math.sin(a), math.cos(a)])
    dh = heading * float(rng.choice([-1.0, 1.0]))
    assumed_heading = (shot.heading - dh) % 360.0
    make = car_ground if vehicle == "car" else uav_ground
    ground, mask, pivot = make(town, shot, nz, assumed_heading)
    reach_px = round((1.5 * initial + 5.0) / GSD)
    centre = np.array([shot.east, shot.north]) - off + np.asarray(pivot) * -1.0  # the assumed patch centre
    window = town.window(float(centre[0]), float(centre[1]), ground.shape[0] // 2 + reach_px)
    cfg = RegistrationConfig(method=method, rotation_range_deg=heading + 4.0, rotation_step_deg=2.0)
    t0 = time.process_time()
    r = register(ground, window, GSD, GSD, ground_mask=mask, pivot_m=pivot, config=cfg)
    ms = (time.process_time() - t0) * 1000.0
    loop = RefineConfig()
    if abs(r.rotation_deg) >= loop.reproject_above_deg:  # as the loop's refine stage: project again, register again
        ground, mask, pivot = make(town, shot, nz, (assumed_heading + r.rotation_deg) % 360.0)
        at = np.array([shot.east, shot.north]) - off + np.array([r.east_m, r.north_m]) - np.asarray(pivot)
        window = town.window(float(at[0]), float(at[1]), ground.shape[0] // 2 + round(loop.min_search_m / GSD))
        again = RegistrationConfig(method=method, rotation_range_deg=2.0, rotation_step_deg=2.0)
        t0 = time.process_time()
        r2 = register(ground, window, GSD, GSD, ground_mask=mask, pivot_m=pivot, config=again)
        ms += (time.process_time() - t0) * 1000.0
        r = compose(r, r2) if r2.quality >= r.quality else r
    err = np.array([r.east_m, r.north_m]) - off
    h = math.radians(shot.heading)
    along_u = np.array([math.sin(h), math.cos(h)])
    along, cross = float(err @ along_u), float(err @ np.array([along_u[1], -along_u[0]]))
    sigma_along = math.sqrt(float(along_u @ r.cov @ along_u))
    maha = float(err @ np.linalg.solve(r.cov, err))
    herr = abs(((r.rotation_deg - dh) + 180.0) % 360.0 - 180.0)
    return {
        "err": float(np.hypot(*err)),
        "cross": abs(cross),
        "along": abs(along),
        "constrained": sigma_along <= 2.0,
        "heading": herr,
        "consistent": maha <= 9.21,
        "quality": r.quality,
        "ms": ms,
    }


def summarize(rows: list[dict], vehicle: str) -> dict[str, Any]:
    err = np.array([r["err"] for r in rows])
    con = [r for r in rows if r["constrained"]]
    if vehicle == "car":
        ok = [r["cross"] <= 1.0 and (r["along"] <= 2.0 or not r["constrained"]) for r in rows]
    else:
        ok = [r["err"] <= 2.0 and r["heading"] <= 1.0 for r in rows]
    return {
        "frames": len(rows),
        "median_m": float(np.median(err)),
        "p95_m": float(np.percentile(err, 95)),
        "cross_median_m": float(np.median([r["cross"] for r in rows])),
        "along_median_m": float(np.median([r["along"] for r in con])) if con else None,
        "constrained": len(con) / len(rows),
        "heading_median_deg": float(np.median([r["heading"] for r in rows])),
        "success": float(np.mean(ok)),
        "consistent": float(np.mean([r["consistent"] for r in rows])),
        "ms_median": float(np.median([r["ms"] for r in rows])),
    }


def run_cells(town: Town, shots: dict[str, list[Shot]], methods: tuple[str, ...], quick: bool) -> list[dict]:
    from tqdm import tqdm

    cells = []
    for vehicle in shots:
        for method in methods:
            grid = [(i, h, "none") for i in INITIAL_M for h in HEADING_DEG]
            if quick:
                grid = [(*REFERENCE[vehicle], "none")]
            grid += [(*REFERENCE[vehicle], n) for n in NUISANCES[1:] if vehicle == "car" or n != "demo-cam"]
            cells += [(vehicle, method, *g) for g in grid]
    out = []
    for vehicle, method, initial, heading, nuisance in tqdm(cells, desc="cells", mininterval=10):
        nz = Nuisance.named(nuisance, vehicle)
        rows = [register_one(town, vehicle, s, method, initial, heading, nz) for s in shots[vehicle]]
        out.append(
            {"vehicle": vehicle, "method": method, "initial_m": initial, "heading_deg": heading, "nuisance": nuisance}
            | summarize(rows, vehicle)
        )
    return out


def table(rows: list[dict]) -> str:
    head = (
        f"{'vehicle':7} {'method':8} {'init m':>6} {'hdg':>4} {'nuisance':8} {'med m':>6} {'p95 m':>6} {'cross':>6}"
        f" {'along*':>6} {'constr':>6} {'hdg med':>7} {'success':>7} {'consist':>7} {'ms':>6}"
    )
    lines = [head]
    for r in rows:
        along = "-" if r["along_median_m"] is None else f"{r['along_median_m']:.2f}"
        lines.append(
            f"{r['vehicle']:7} {r['method']:8} {r['initial_m']:6.0f} {r['heading_deg']:4.0f} {r['nuisance']:8}"
            f" {r['median_m']:6.2f} {r['p95_m']:6.1f} {r['cross_median_m']:6.2f} {along:>6}"
            f" {100 * r['constrained']:5.0f}% {r['heading_median_deg']:7.2f} {100 * r['success']:6.0f}%"
            f" {100 * r['consistent']:6.0f}% {r['ms_median']:6.1f}"
        )
    lines.append("along*: median along-track error where the registration says along-track is constrained (sigma<=2 m)")
    return "\n".join(lines)


def side_by_side(ground: np.ndarray, mask: np.ndarray, window: np.ndarray, r: Any, label: str) -> np.ndarray:
    """[ground image | map window with the registered footprint | the two blended where registered], 3x up."""
    s, w = ground.shape[0], window.shape[0]
    c = (w - 1) / 2.0 + np.array([r.east_m, -r.north_m]) / GSD  # where the ground image's centre landed (px)
    a = math.radians(-r.rotation_deg)
    m = cv2.getRotationMatrix2D(((s - 1) / 2.0, (s - 1) / 2.0), math.degrees(a), 1.0)
    m[:, 2] += c - (s - 1) / 2.0
    placed = cv2.warpAffine(ground, m, (w, w))
    placed_mask = cv2.warpAffine(mask, m, (w, w), flags=cv2.INTER_NEAREST) > 0
    blend = window.copy()
    blend[placed_mask] = (0.5 * window[placed_mask] + 0.5 * placed[placed_mask]).astype(np.uint8)
    framed = window.copy()
    cv2.circle(framed, (round(c[0]), round(c[1])), s // 2, (255, 40, 40), 1)
    pad = np.zeros((w, w, 3), np.uint8)
    o = (w - s) // 2
    pad[o : o + s, o : o + s] = ground
    row = np.concatenate([pad, np.full((w, 4, 3), 255, np.uint8), framed, np.full((w, 4, 3), 255, np.uint8), blend], 1)
    row = cv2.resize(row, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
    cv2.putText(row, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2)
    return row


def pictures(town: Town, shots: dict[str, list[Shot]], out_dir: Path) -> list[Path]:
    """One car and one UAV frame, 10 / 20 m and 5 degrees off, registered (dense), as PNGs."""
    from edge_geoloc.localize.registration import RegistrationConfig, register

    paths = []
    for vehicle, make in (("car", car_ground), ("uav", uav_ground)):
        shot = shots[vehicle][0]
        initial, heading = REFERENCE[vehicle]
        off = initial * np.array([0.6, 0.8])
        ground, mask, pivot = make(town, shot, Nuisance(season=True), (shot.heading - heading) % 360.0)
        centre = np.array([shot.east, shot.north]) - off - np.asarray(pivot)
        window = town.window(float(centre[0]), float(centre[1]), ground.shape[0] // 2 + round((initial + 8) / GSD))
        cfg = RegistrationConfig(rotation_range_deg=heading + 4.0)
        r = register(ground, window, GSD, GSD, ground_mask=mask, pivot_m=pivot, config=cfg)
        err = math.hypot(r.east_m - off[0], r.north_m - off[1])
        label = (
            f"{vehicle}: {initial:g} m / {heading:g} deg off -> error {err:.2f} m, "
            f"{abs(r.rotation_deg - heading):.2f} deg, NCC {r.quality:.2f}"
        )
        img = side_by_side(ground, mask, window, r, label)
        path = out_dir / f"refine_{vehicle}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small town, 3 frames a cell, the dense method")
    parser.add_argument("--frames", type=int, default=None, help="frames per cell (default 20; quick 3)")
    parser.add_argument("--pictures", action="store_true", help="write refine_car.png / refine_uav.png and stop")
    parser.add_argument("--vehicle", choices=("car", "uav", "both"), default="both")
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    t0, load = time.perf_counter(), os.getloadavg()[0]
    n = args.frames or (3 if args.quick else 20)
    town = Town(args.quick)
    shots = {"car": car_shots(town, n, 1), "uav": uav_shots(town, n, 2)}
    if args.pictures:
        print("\n".join(str(p) for p in pictures(town, shots, RESULTS.parent)))
        return
    shots = shots if args.vehicle == "both" else {args.vehicle: shots[args.vehicle]}
    methods = ("dense",) if args.quick else ("dense", "features")
    rows = run_cells(town, shots, methods, args.quick)
    text = table(rows)
    print(text)
    notes = [
        load_line(load),
        "CPU ms per registration: process time of one thread (cv2.setNumThreads(1)), the frame's projection not"
        " included; a model-training job shared this machine during full runs",
        "no real orthophoto: none with a clear licence ships in the installed packages and nothing else can be"
        " downloaded here (see README, Metric refinement)",
    ]
    out = args.json or RESULTS
    write_json(out, rows, notes, t0, quick=args.quick, frames_per_cell=n)
    if not args.quick and args.json is None and args.vehicle == "both":
        write_markdown(RESULTS.with_suffix(".md"), "Metric refinement (benchmarks/refine.py)", text + "\n\n" + notes[0])


if __name__ == "__main__":
    main()
