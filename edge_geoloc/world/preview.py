"""`edge-geoloc world preview`: look at a region's synthetic world and check that its views agree.

Writes ``overview.png`` (the aerial map of the area with a vehicle trajectory and the marked
points) and one sheet per marked point: the aerial tile centred there (with the heading as an
arrow), the street panorama, the limited-FoV vehicle camera and the UAV camera, all rendered at
the same place and heading.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.world.aerial import prepare_aerial, render_aerial
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import render_uav
from edge_geoloc.world.layout import generate_world
from edge_geoloc.world.region import Region
from edge_geoloc.world.street import render_panorama, render_pinhole
from edge_geoloc.world.trajectory import drive

log = logging.getLogger(__name__)

OVERVIEW_PX = 1024
TILE_M = 64.0
TILE_PX = 256


def _label(img: np.ndarray, text: str) -> np.ndarray:
    out = img.copy()
    cv2.rectangle(out, (0, 0), (8 + 8 * len(text), 20), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    return cv2.resize(img, (round(img.shape[1] * height / img.shape[0]), height), interpolation=cv2.INTER_AREA)


def _heading_arrow(tile: np.ndarray, heading_deg: float) -> np.ndarray:
    out = tile.copy()
    c = np.array([tile.shape[1] / 2, tile.shape[0] / 2])
    d = np.array([np.sin(np.radians(heading_deg)), -np.cos(np.radians(heading_deg))]) * tile.shape[0] * 0.2
    cv2.circle(out, tuple(int(v) for v in c), 5, (255, 40, 40), -1)
    cv2.arrowedLine(out, tuple(int(v) for v in c), tuple(int(v) for v in c + d), (255, 40, 40), 2, tipLength=0.3)
    return out


def write_png(path: Path, rgb: np.ndarray) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the image")


def preview(region_path: str | Path, out_dir: str | Path, points: int = 3, seed: int = 0) -> list[Path]:
    """Render the preview of a region; returns the files written."""
    region = Region.load(region_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log.info("generating the world of '%s' (%s, %g m)", region.name, region.style, region.size_m)
    world = generate_world(region)
    prepare_aerial(world)
    # Keep the route a tile's half-diagonal inside the world so every marked point gets its whole tile.
    traj = drive(world.roads, seed, duration_s=180.0, dt=0.5, area=world, margin_m=TILE_M * 0.72)
    ce, cn = region.center_en()
    gsd = (region.size_m - 2.0) / OVERVIEW_PX
    overview = render_aerial(world, ce, cn, OVERVIEW_PX, gsd, true_north=False)

    def to_px(e: np.ndarray, n: np.ndarray) -> np.ndarray:
        return np.stack([(e - (ce - OVERVIEW_PX * gsd / 2)) / gsd, ((cn + OVERVIEW_PX * gsd / 2) - n) / gsd], -1)

    line = to_px(traj.east, traj.north).round().astype(np.int32)
    cv2.polylines(overview, [line.reshape(-1, 1, 2)], False, (255, 230, 0), 2, cv2.LINE_AA)
    # Marked points evenly spaced along the distance driven (not time: the car may stop or turn).
    travelled = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(traj.east), np.diff(traj.north)))])
    picks = np.searchsorted(travelled, np.linspace(0, travelled[-1], points + 2)[1:-1])
    written = []
    rng = np.random.default_rng(seed)
    for k, i in enumerate(picks, 1):
        e, n, h = float(traj.east[i]), float(traj.north[i]), float(traj.heading_deg[i])
        px = to_px(np.array(e), np.array(n)).round().astype(int)
        cv2.circle(overview, (int(px[0]), int(px[1])), 9, (255, 40, 40), 2)
        cv2.putText(
            overview, str(k), (int(px[0]) + 10, int(px[1]) - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 40, 40), 2
        )
        street_app = Appearance.sample(rng, "street")
        tile = render_aerial(world, e, n, TILE_PX, TILE_M / TILE_PX, true_north=False)
        pano = render_panorama(world, e, n, h, app=street_app, rng=rng)
        pin = render_pinhole(world, e, n, h, fov_deg=90.0, width_px=256, height_px=192, app=street_app, rng=rng)
        uav = render_uav(world, e, n, 120.0, h, tilt_deg=0.0, app=Appearance.sample(rng, "uav"), rng=rng)
        row1 = np.concatenate(
            [
                _label(_heading_arrow(tile, h), f"aerial {TILE_M:g} m, heading {h:.0f}"),
                _label(_fit_height(pin, TILE_PX), "vehicle camera FoV 90"),
                _label(_fit_height(uav, TILE_PX), "UAV 120 m nadir, up = heading"),
            ],
            axis=1,
        )
        pano_row = _label(cv2.resize(pano, (row1.shape[1], round(row1.shape[1] / 4))), "panorama 360, centre = heading")
        sheet = np.concatenate([row1, pano_row], axis=0)
        path = out / f"point_{k}.png"
        write_png(path, sheet)
        written.append(path)
    path = out / "overview.png"
    write_png(path, _label(overview, f"{region.name}: {region.style}, {region.size_m:g} m, grid north up"))
    return [path, *written]
