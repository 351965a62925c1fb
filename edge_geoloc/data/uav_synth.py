"""Synthetic drone datasets in the University-1652 layout: one map tile is one "building".

For each region, ``frames`` drone frames are rendered through the drone lens (with its distortion,
:class:`~edge_geoloc.cameras.uav.Lens`) from poses drawn at random: a target tile, a height
above ground in ``altitude_m``, a gimbal tilt from nadir in ``tilt_deg``, any heading, the airframe's
roll and pitch jittered; the drone is placed so that its camera looks at the tile (the look point,
:func:`~edge_geoloc.cameras.rectify.look_point`, within ``look_jitter_m`` of the tile centre), and
the frame gets its own appearance (``Appearance.sample(rng, 'uav')``: a time of day from the sun
bank, season, exposure, blur, noise), unlike the region's single map capture. The frame is written
as ``<split>/drone/<region>_<tile>/image-NN.jpeg``, the tile as the map renders it (true-north up,
the model's GSD) as ``<split>/satellite/<id>/<id>.png``; training regions go to ``train``
(``drone``, ``satellite``), held-out regions to ``test`` (``query_drone``, ``gallery_satellite``).
The pose of every frame is in ``<split>/drone_poses.csv`` and the lens in ``camera.yaml``.

The dataset is a function of (config, seed): each frame's pose, appearance and noise come from a
generator seeded by (seed, region, frame), so which worker renders what never changes a byte, and
a rerun skips frames already written (resume).
"""

from __future__ import annotations

import csv
import logging
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from edge_geoloc import __version__
from edge_geoloc.cameras.rectify import GroundView, look_point
from edge_geoloc.cameras.uav import Lens, Mount, UavCamera
from edge_geoloc.config import check, dump_config
from edge_geoloc.data.sample import write_rgb
from edge_geoloc.data.synth import image_rng, world_tiling
from edge_geoloc.data.university1652 import FOLDERS, POSE_COLUMNS, POSES_FILE

log = logging.getLogger(__name__)

_POSE, _SATELLITE = 10, 11  # seed purposes (distinct from the street dataset's)


def default_lens() -> Lens:
    """The demo drone's lens (edge_geoloc/configs/camera/uav-demo.yaml): 384 x 288, 80 degrees, mild barrel."""
    from edge_geoloc.sim.flight import DEMO_UAV_CAMERA

    return DEMO_UAV_CAMERA.lens


@dataclass(frozen=True)
class UavSynthConfig:
    """``edge-geoloc dataset uav``: what to render. Region paths are relative to the working directory."""

    train_regions: list[str] = field(default_factory=list)
    test_regions: list[str] = field(default_factory=list)
    frames: int = field(default=300, metadata=check(lambda v: v > 0, "a positive number of frames per region"))
    test_frames: int = field(default=100, metadata=check(lambda v: v > 0, "a positive number of frames per region"))
    lens: Lens = field(default_factory=default_lens)
    altitude_m: tuple[float, float] = field(
        default=(50.0, 300.0), metadata=check(lambda v: 5 <= v[0] <= v[1] <= 2000, "[low, high] metres above ground")
    )
    tilt_deg: tuple[float, float] = field(
        default=(0.0, 40.0), metadata=check(lambda v: 0 <= v[0] <= v[1] < 70, "[low, high] degrees from nadir")
    )
    attitude_sigma_deg: float = field(default=3.0, metadata=check(lambda v: 0 <= v <= 15, "degrees in [0, 15]"))
    look_jitter_m: float = field(default=16.0, metadata=check(lambda v: v >= 0, "metres >= 0"))
    tile_m: float = field(default=64.0, metadata=check(lambda v: v > 0, "a tile side in metres"))
    satellite_px: int = field(default=64, metadata=check(lambda v: 8 <= v <= 4096, "a size in [8, 4096] px"))
    seed: int = field(default=0, metadata=check(lambda v: v >= 0, "a non-negative integer"))
    jpeg_quality: int = field(default=92, metadata=check(lambda v: 50 <= v <= 100, "a JPEG quality in [50, 100]"))

    def __post_init__(self) -> None:
        if not self.train_regions and not self.test_regions:
            raise ValueError("give at least one region (train_regions or test_regions)")
        names = [Path(r).stem for r in [*self.train_regions, *self.test_regions]]
        if len(set(names)) != len(names):
            raise ValueError(f"region names repeat: {names}")


@dataclass(frozen=True)
class FramePose:
    """One frame's plan: where the drone is and where it looks."""

    index: int
    tile: int
    tile_east: float
    tile_north: float
    east: float
    north: float
    height_m: float
    roll_deg: float
    pitch_deg: float
    yaw_grid_deg: float
    tilt_deg: float


def plan_frame(world: Any, tiling: Any, tiles: np.ndarray, cfg: UavSynthConfig, name: str, i: int) -> FramePose:
    """Frame ``i`` of a region: a target tile and a pose whose camera looks at it (deterministic)."""
    rng = image_rng(cfg.seed, name, _POSE, i)
    for _ in range(100):
        tile = int(rng.choice(tiles))
        te, tn = (float(v) for v in tiling.centre(tile))
        h = float(rng.uniform(*cfg.altitude_m))
        tilt = float(rng.uniform(*cfg.tilt_deg))
        yaw = float(rng.uniform(0.0, 360.0))
        s = cfg.attitude_sigma_deg
        roll, pitch = (float(v) for v in np.clip(rng.normal(0.0, s, 2), -2 * s, 2 * s))
        R = UavCamera(lens=cfg.lens, mount=Mount(tilt_deg=tilt)).world_from_cam(roll, pitch, yaw)
        look = look_point(GroundView(R, h))
        if look is None:
            continue
        target = np.array([te, tn]) + rng.uniform(-cfg.look_jitter_m, cfg.look_jitter_m, 2)
        e, n = target - look
        if world.contains(e, n, 20.0):
            return FramePose(i, tile, te, tn, float(e), float(n), h, roll, pitch, yaw, tilt)
    raise ValueError(f"region {name}: no pose found for frame {i} inside the world (is the region large enough?)")


def building_id(region: str, tile: int) -> str:
    return f"{region}_{tile:05d}"


def _region_job(args: tuple[str, str, UavSynthConfig, str, bool]) -> list[dict[str, Any]]:
    """Render one region's frames and tiles (in a worker); returns its pose rows."""
    import cv2

    from edge_geoloc.world.aerial import render_aerial
    from edge_geoloc.world.appearance import Appearance
    from edge_geoloc.world.camera import render_camera
    from edge_geoloc.world.layout import generate_world
    from edge_geoloc.world.region import Region

    cv2.setNumThreads(1)
    region_file, split, cfg, out_s, progress = args
    out = Path(out_s)
    region = Region.load(region_file)
    world = generate_world(region)
    return render_region(world, split, cfg, out, progress, render_camera, render_aerial, Appearance)


def render_region(
    world: Any,
    split: str,
    cfg: UavSynthConfig,
    out: Path,
    progress: bool,
    render_camera: Any,
    render_aerial: Any,
    appearance: Any,
) -> list[dict[str, Any]]:
    """Frames and tiles of one world into ``out/split`` (skipping files already there); its pose rows."""
    name = world.region.name
    qname, gname = FOLDERS[split]
    tiling = world_tiling(world, cfg.tile_m)
    ids, te, tn = tiling.centres()
    inner = world.contains(te, tn, cfg.tile_m)
    tiles = ids[inner]
    n = cfg.frames if split == "train" else cfg.test_frames
    plans = [plan_frame(world, tiling, tiles, cfg, name, i) for i in range(n)]
    apps = [appearance.sample(image_rng(cfg.seed, name, _POSE + 100, i), "uav") for i in range(n)]
    # Render grouped by sun: the renderer caches a few suns' shadow rasters, each costs a second to build.
    order = sorted(range(n), key=lambda i: (apps[i].sun_azimuth_deg, apps[i].sun_elevation_deg, i))
    done: set[int] = set()
    for i in tqdm(order, desc=f"{name} ({split})", unit="frame", disable=not progress, leave=False):
        pose = plans[i]
        b = building_id(name, pose.tile)
        path = out / split / qname / b / f"image-{i:05d}.jpeg"
        if not path.exists():
            rng = image_rng(cfg.seed, name, _POSE + 200, i)
            R = UavCamera(lens=cfg.lens, mount=Mount(tilt_deg=pose.tilt_deg)).world_from_cam(
                pose.roll_deg, pose.pitch_deg, pose.yaw_grid_deg
            )
            image = render_camera(world, cfg.lens, R, np.array([pose.east, pose.north, pose.height_m]), apps[i], rng)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_rgb(path, image, cfg.jpeg_quality)
        if pose.tile not in done:
            sat = out / split / gname / b / f"{b}.png"
            if not sat.exists():
                sat.parent.mkdir(parents=True, exist_ok=True)
                size = cfg.satellite_px
                write_rgb(sat, render_aerial(world, pose.tile_east, pose.tile_north, size, cfg.tile_m / size))
            done.add(pose.tile)
    rows = []
    for i, (pose, app) in enumerate(zip(plans, apps)):
        lat, lon = world.crs.to_latlon(pose.east, pose.north)
        conv = float(world.crs.convergence_deg(lat, lon))
        rows.append(
            {
                "image": str(Path(qname) / building_id(name, pose.tile) / f"image-{i:05d}.jpeg"),
                "building": building_id(name, pose.tile),
                "region": name,
                "east": round(pose.east, 3),
                "north": round(pose.north, 3),
                "height_m": round(pose.height_m, 3),
                "roll_deg": round(pose.roll_deg, 4),
                "pitch_deg": round(pose.pitch_deg, 4),
                "yaw_deg": round((pose.yaw_grid_deg + conv) % 360.0, 4),
                "convergence_deg": round(conv, 6),
                "mount_tilt_deg": round(pose.tilt_deg, 4),
                "tile_east": round(pose.tile_east, 3),
                "tile_north": round(pose.tile_north, 3),
                "sun_azimuth_deg": app.sun_azimuth_deg,
                "sun_elevation_deg": app.sun_elevation_deg,
            }
        )
    return rows


def write_poses(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(POSE_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)


def synthesize_uav(cfg: UavSynthConfig, out: str | Path, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Render the dataset (see the module docstring); returns a small report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(UavCamera(lens=cfg.lens), out / "camera.yaml")
    dump_config(cfg, out / "uav_synth.yaml")
    jobs = [(r, "train", cfg, str(out), progress and workers <= 1) for r in cfg.train_regions]
    jobs += [(r, "test", cfg, str(out), progress and workers <= 1) for r in cfg.test_regions]
    t0 = time.perf_counter()
    rows: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    bar = tqdm(total=len(jobs), desc="regions", unit="region", disable=not progress)
    if workers <= 1:
        results = map(_region_job, jobs)
        for job, r in zip(jobs, results):
            rows[job[1]] += r
            bar.update()
    else:
        with mp.get_context("fork").Pool(workers, maxtasksperchild=1) as pool:
            for job, r in zip(jobs, pool.imap(_region_job, jobs)):
                rows[job[1]] += r
                bar.update()
    bar.close()
    for split, r in rows.items():
        if r:
            write_poses(out / split / POSES_FILE, r)
    seconds = time.perf_counter() - t0
    report = {
        "generator": f"edge-geoloc {__version__} uav-synth/1",
        "frames": {k: len(v) for k, v in rows.items()},
        "buildings": {k: len({row["building"] for row in v}) for k, v in rows.items()},
        "seconds": round(seconds, 1),
    }
    log.info("UAV dataset in %s: %s", out, report)
    return report


def load_uav_synth_config(path: str | Path | None = None, **overrides: Any) -> UavSynthConfig:
    """The config file (if any) with command-line overrides (keys of :class:`UavSynthConfig`; None: keep)."""
    from edge_geoloc.config import ConfigError, from_mapping, read_yaml

    data: Any = (read_yaml(path) or {}) if path is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return from_mapping(UavSynthConfig, data, str(path) if path is not None else "<command line>")
