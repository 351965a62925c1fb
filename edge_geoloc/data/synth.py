"""Synthetic datasets in VIGOR's layout: one region is one city.

The dataset is a function of (config, seed) alone. Everything random is drawn from generators
seeded by ``(seed, city, purpose, index)``: panorama positions and the same-area split per city,
and one generator per image, so that which worker renders what, in which order, or whether a run
was interrupted and resumed, never changes a byte.

Per city:

- the world (``generate_world(region)``) is built once, in the parent, before workers fork;
- satellite tiles are every tile of a :class:`~edge_geoloc.geo.Tiling` (side T, stride T/2) laid
  over the world inset so each tile lies inside it, rendered true-north-up with the region's single
  aerial capture (``render_aerial``'s default appearance);
- panoramas stand on streets and sidewalks (road centre lines plus a lateral offset within the
  carriageway and sidewalk, kept only where the raster says road/sidewalk/plaza and no building is
  within a metre), length-weighted over the network so they spread over the whole area, at most
  ``max_panoramas_per_tile`` per positive tile (VIGOR's "balanced" sampling); each is
  north-aligned: rendered with the grid heading ``-convergence`` so its centre column faces TRUE
  north, with its own street appearance (``Appearance.sample(rng, 'street')``);
- labels are VIGOR's: sat1 the nearest tile centre, sat2-4 the semi-positives, (dy, dx) computed from
  the lat/lon written in the file names (:mod:`edge_geoloc.data.vigor`).

Images are written under a temporary name and renamed, so a file that exists is complete and a
rerun skips it (resume). Split files and ``splits/edge_geoloc.yaml`` are written last.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from tqdm import tqdm

from edge_geoloc import __version__
from edge_geoloc.config import ConfigError, check, from_mapping, read_yaml, to_mapping
from edge_geoloc.data.sample import write_rgb
from edge_geoloc.data.vigor import (
    VIGOR_HALF_PX,
    VIGOR_SAT_PX,
    CityMeta,
    PanoramaMeta,
    VigorMeta,
    delta_to_pixel,
    label_lines,
    labels_from_names,
    pano_filename,
    satellite_filename,
    write_city_splits,
    write_metadata,
)
from edge_geoloc.geo import MapCRS, Tiling
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.region import Region
from edge_geoloc.world.scene import Material, World

log = logging.getLogger(__name__)

SYNTH_VERSION = 1
LOCK_NAME = ".edge_geoloc_synth.yaml"  # the config a partly written dataset was started with
# Street-camera ground: paved roads, markings, sidewalks, plazas, parking, and unpaved tracks (soil).
WALKABLE = (Material.ROAD, Material.MARKING, Material.SIDEWALK, Material.PLAZA, Material.PARKING, Material.SOIL)
BUILDING_CLEARANCE_M = 1.0  # a camera this close to a wall sees nothing but the wall
_CITY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

# Purposes in the seed key: changing one stream never shifts another.
_POSITIONS, _SPLIT, _SATELLITE, _PANORAMA = 0, 1, 2, 3


@dataclass(frozen=True)
class SynthConfig:
    """``edge-geoloc dataset synth --config``: what to generate. Region paths are relative to the config file."""

    regions: list[str] = field(default_factory=list)
    panoramas_per_city: int = field(default=200, metadata=check(lambda v: v > 0, "a positive integer"))
    tile_m: float = field(default=64.0, metadata=check(lambda v: 4 <= v <= 1000, "a tile side in [4, 1000] m"))
    satellite_px: int = field(default=256, metadata=check(lambda v: 16 <= v <= 4096, "a size in [16, 4096] px"))
    panorama_px: tuple[int, int] = field(  # [height, width]
        default=(128, 512), metadata=check(lambda v: v[0] >= 8 and v[1] >= 16, "[height, width] of at least [8, 16]")
    )
    elevation_range_deg: tuple[float, float] = field(
        default=(-45.0, 45.0),
        metadata=check(lambda v: -90 <= v[0] < v[1] <= 90, "[bottom, top] degrees with -90 <= bottom < top <= 90"),
    )
    cam_height_m: float = field(default=2.0, metadata=check(lambda v: 0.5 <= v <= 10, "a height in [0.5, 10] m"))
    sidewalk_m: float = field(default=3.0, metadata=check(lambda v: 0 <= v <= 20, "a width in [0, 20] m"))
    same_area_test_fraction: float = field(default=0.5, metadata=check(lambda v: 0 < v < 1, "a fraction in (0, 1)"))
    max_panoramas_per_tile: int = field(default=2, metadata=check(lambda v: v >= 1, "a positive integer"))
    # Road-sparse regions (rural) cannot hold many panoramas at a few per tile: with fewer_ok a city takes
    # as many as its streets' tiles allow (logged) instead of failing.
    fewer_ok: bool = False
    seed: int = field(default=0, metadata=check(lambda v: v >= 0, "a non-negative integer"))
    cross_area_train: list[str] = field(default_factory=list)
    cross_area_test: list[str] = field(default_factory=list)
    jpeg_quality: int = field(default=95, metadata=check(lambda v: 50 <= v <= 100, "a JPEG quality in [50, 100]"))

    def __post_init__(self) -> None:
        if not self.regions:
            raise ValueError("key 'regions': expected at least one region YAML (maps/<name>.yaml)")
        overlap = set(self.cross_area_train) & set(self.cross_area_test)
        if overlap:
            raise ValueError(f"cross-area train and test cities overlap: {sorted(overlap)}")


def load_synth_config(
    path: str | Path | None = None,
    *,
    regions: Sequence[str] | None = None,
    panoramas: int | None = None,
    seed: int | None = None,
) -> SynthConfig:
    """The config file (if any) with command-line overrides, validated; region paths made usable from here."""
    data: Any = (read_yaml(path) or {}) if path is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    if path is not None and isinstance(data.get("regions"), list):
        base = Path(path).parent
        data["regions"] = [
            str(base / r) if isinstance(r, str) and not Path(r).is_absolute() else r for r in data["regions"]
        ]
    for key, value in (
        ("regions", list(regions) if regions else None),
        ("panoramas_per_city", panoramas),
        ("seed", seed),
    ):
        if value is not None:
            data[key] = value
    return from_mapping(SynthConfig, data, str(path) if path is not None else "<command line>")


@dataclass(frozen=True)
class Renderers:
    """The world functions the writer calls (the real ones by default; tests may pass their own)."""

    generate_world: Callable[[Region], World]
    render_aerial: Callable[..., np.ndarray]
    render_panorama: Callable[..., np.ndarray]


def default_renderers() -> Renderers:
    from edge_geoloc.world.aerial import render_aerial
    from edge_geoloc.world.layout import generate_world
    from edge_geoloc.world.street import render_panorama

    return Renderers(generate_world, render_aerial, render_panorama)


def image_rng(seed: int, city: str, purpose: int, index: int = 0) -> np.random.Generator:
    """A generator that depends on (seed, city, purpose, index) only, not on worker scheduling."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(zlib.crc32(city.encode()), purpose, index)))


# --- planning -------------------------------------------------------------------------------------


def world_tiling(world: World, tile_m: float) -> Tiling:
    """The VIGOR tiling of a world with every tile (rotated to true north) inside the world's rasters.

    Tile centres run from T/2 (plus a margin for the true-north rotation) inside one edge to at most
    as far inside the other. The tiled area, where every point lies in exactly four tiles, spans from
    the first to the last centre (less a micrometre, so that :class:`Tiling` adds no column of
    centres past it).
    """
    e0, n0, e1, n1 = world.bounds()
    corners_lat, corners_lon = world.crs.to_latlon([e0, e1, e0, e1], [n0, n0, n1, n1])
    gamma = np.radians(np.max(np.abs(world.crs.convergence_deg(corners_lat, corners_lon))))
    margin = tile_m / 2 * (np.cos(gamma) + np.sin(gamma) - 1) + 2 * world.res_m
    stride = tile_m / 2
    inset = tile_m / 2 + margin
    n_cols = int(np.floor((e1 - e0 - 2 * inset) / stride + 1e-9)) + 1
    n_rows = int(np.floor((n1 - n0 - 2 * inset) / stride + 1e-9)) + 1
    if min(n_cols, n_rows) < 2:
        raise ValueError(
            f"region '{world.region.name}' ({e1 - e0:.0f} x {n1 - n0:.0f} m) is too small for {tile_m:g} m tiles: "
            f"it needs about {2 * inset + stride:.0f} m a side"
        )
    eps = 1e-6
    east_min, north_max = e0 + inset, n1 - inset
    tiling = Tiling(
        east_min, north_max - (n_rows - 1) * stride + eps, east_min + (n_cols - 1) * stride - eps, north_max, tile_m
    )
    assert (tiling.n_cols, tiling.n_rows) == (n_cols, n_rows)
    return tiling


def walkable(world: World, east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Where a street camera may stand: road, sidewalk or plaza at ground level, no building within a metre."""
    rows, cols = world.to_pixel(east, north)
    rows, cols = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
    h, w = world.shape
    k = max(1, round(BUILDING_CLEARANCE_M / world.res_m))
    ok = (rows >= k) & (rows < h - k) & (cols >= k) & (cols < w - k)
    r, c = np.where(ok, rows, k), np.where(ok, cols, k)
    ok &= np.isin(world.material[r, c], np.asarray(WALKABLE, dtype=world.material.dtype))
    ok &= world.height[r, c] <= 0.3
    n_buildings = len(world.buildings)
    for dr in (-k, 0, k):
        for dc in (-k, 0, k):
            obj = world.obj[r + dr, c + dc]
            ok &= ~((obj >= 1) & (obj <= n_buildings))
    return ok


def sample_positions(
    world: World,
    tiling: Tiling,
    n: int,
    rng: np.random.Generator,
    sidewalk_m: float,
    max_per_tile: int,
    max_rounds: int = 60,
    fewer_ok: bool = False,
) -> np.ndarray:
    """``n`` street-camera positions (east, north), uniform along the road network, at most ``max_per_tile``
    per positive tile."""
    roads = world.roads
    a, b = roads.nodes[roads.edges[:, 0]], roads.nodes[roads.edges[:, 1]]
    seg = b - a
    length = np.hypot(seg[:, 0], seg[:, 1])
    usable = length > 1e-6
    if not np.any(usable):
        raise ValueError(f"region '{world.region.name}': the world has no roads to place panoramas on")
    a, seg, length = a[usable], seg[usable], length[usable]
    half_reach = roads.width_m[usable].astype(np.float64) / 2 + sidewalk_m
    normal = np.stack([-seg[:, 1], seg[:, 0]], axis=1) / length[:, None]
    prob = length / length.sum()
    counts = np.zeros(len(tiling), dtype=np.int64)
    reached = np.zeros(len(tiling), dtype=bool)  # tiles with street ground in their positive zone
    chosen: list[np.ndarray] = []
    for _ in range(max_rounds):
        m = max(256, 4 * (n - len(chosen)))
        e = rng.choice(len(prob), size=m, p=prob)
        t = rng.random(m)
        lateral = rng.uniform(-1.0, 1.0, m) * half_reach[e]
        pts = a[e] + t[:, None] * seg[e] + lateral[:, None] * normal[e]
        pts = pts[tiling.contains(pts[:, 0], pts[:, 1])]
        pts = pts[walkable(world, pts[:, 0], pts[:, 1])]
        if not len(pts):
            continue
        positive = tiling.covering(pts[:, 0], pts[:, 1])[0][:, 0]
        reached[positive] = True
        for p, tile in zip(pts, positive):
            if counts[tile] < max_per_tile:
                counts[tile] += 1
                chosen.append(p)
                if len(chosen) == n:
                    return np.asarray(chosen)
    if fewer_ok and chosen:
        log.info("region '%s': %d of %d panoramas fit at %d per tile", world.region.name, len(chosen), n, max_per_tile)
        return np.asarray(chosen)
    raise ValueError(
        f"region '{world.region.name}': placed only {len(chosen)} of {n} panoramas on its streets with at most "
        f"{max_per_tile} per tile ({int(reached.sum())} of {len(tiling)} tiles have streets nearest their centre); "
        "ask for fewer panoramas, raise max_panoramas_per_tile or use a larger region"
    )


def label_pixel_error(
    crs: MapCRS, tile_en: np.ndarray, pano_en: np.ndarray, deltas_px: np.ndarray, tile_m: float
) -> np.ndarray:
    """Distance (pixels of the 640-px convention) between each label's pixel ``(320 + dy, 320 - dx)`` and
    where the panorama really is in its tile, a tile rendered true-north-up (rotated by the convergence
    at its centre, as ``render_aerial`` does) with ``tile_m / 640`` grid metres a pixel.

    ``tile_en`` (..., 2) tile centres, ``pano_en`` (N, 2), ``deltas_px`` (..., 2). What remains is VIGOR's
    sphere against the ellipsoid and the grid's scale factor: about 0.25 % of the offset at mid latitudes.
    """
    tile_en = np.asarray(tile_en, dtype=np.float64)
    pano = np.asarray(pano_en, dtype=np.float64).reshape(len(pano_en), *([1] * (tile_en.ndim - 2)), 2)
    gamma = np.radians(crs.convergence_deg(*crs.to_latlon(tile_en[..., 0], tile_en[..., 1])))
    d = pano - tile_en
    right = d[..., 0] * np.cos(gamma) + d[..., 1] * np.sin(gamma)
    up = -d[..., 0] * np.sin(gamma) + d[..., 1] * np.cos(gamma)
    scale = VIGOR_SAT_PX / tile_m
    true_px = np.stack([VIGOR_HALF_PX - up * scale, VIGOR_HALF_PX + right * scale], axis=-1)
    err = true_px - delta_to_pixel(deltas_px, VIGOR_SAT_PX)
    return np.hypot(err[..., 0], err[..., 1])


@dataclass
class CityPlan:
    """Everything about one city's files except the pixels: names, positions, headings, labels, split."""

    name: str
    region: Region
    crs: str
    tiling: Tiling
    sat_names: list[str]
    sat_en: np.ndarray  # (M, 2)
    pano_names: list[str]
    pano_en: np.ndarray  # (N, 2)
    pano_heading_grid: np.ndarray  # (N,) grid heading that puts true north at the centre column
    label_lines: list[str]
    same_area_test: np.ndarray  # (N,) bool
    label_error_px: float  # see label_pixel_error


def plan_city(world: World, cfg: SynthConfig) -> CityPlan:
    name = world.region.name
    tiling = world_tiling(world, cfg.tile_m)
    _, sat_e, sat_n = tiling.centres()
    sat_lat, sat_lon = world.crs.to_latlon(sat_e, sat_n)
    sat_names = [satellite_filename(la, lo) for la, lo in zip(sat_lat, sat_lon)]
    if len(set(sat_names)) != len(sat_names):
        raise ValueError(f"region '{name}': two tile centres round to the same file name")

    pos = sample_positions(
        world,
        tiling,
        cfg.panoramas_per_city,
        image_rng(cfg.seed, name, _POSITIONS),
        cfg.sidewalk_m,
        cfg.max_panoramas_per_tile,
        fewer_ok=cfg.fewer_ok,
    )
    lat, lon = world.crs.to_latlon(pos[:, 0], pos[:, 1])
    heading_grid = world.crs.true_to_grid_heading(np.zeros(len(pos)), lat, lon)
    pano_names = [pano_filename(f"{i:06d}", la, lo) for i, (la, lo) in enumerate(zip(lat, lon))]

    cover, _, _ = tiling.covering(pos[:, 0], pos[:, 1])
    sat_en = np.stack([sat_e, sat_n], axis=1)
    deltas = labels_from_names(pano_names, sat_names, cover, cfg.tile_m / VIGOR_SAT_PX)
    lines = label_lines(pano_names, sat_names, cover, deltas)
    label_error = label_pixel_error(world.crs, sat_en[cover], pos, deltas, cfg.tile_m)

    n = len(pano_names)
    n_test = min(n - 1, max(1, round(n * cfg.same_area_test_fraction))) if n > 1 else 0
    test = np.zeros(n, dtype=bool)
    test[image_rng(cfg.seed, name, _SPLIT).permutation(n)[:n_test]] = True
    return CityPlan(
        name=name,
        region=world.region,
        crs=world.crs.to_string(),
        tiling=tiling,
        sat_names=sat_names,
        sat_en=sat_en,
        pano_names=pano_names,
        pano_en=pos,
        pano_heading_grid=heading_grid,
        label_lines=lines,
        same_area_test=test,
        label_error_px=float(label_error.max()),
    )


# --- rendering (parent or forked workers) -----------------------------------------------------------


@dataclass
class _Job:
    cfg: SynthConfig
    out: Path
    worlds: list[World]
    plans: list[CityPlan]
    renderers: Renderers


_JOB: _Job | None = None  # set in the parent before forking; workers inherit it


def _task_path(job: _Job, task: tuple[int, int, int]) -> Path:
    ci, purpose, i = task
    plan = job.plans[ci]
    if purpose == _SATELLITE:
        return job.out / plan.name / "satellite" / plan.sat_names[i]
    return job.out / plan.name / "panorama" / plan.pano_names[i]


def _render(task: tuple[int, int, int]) -> int:
    job = _JOB
    assert job is not None, "the synth job is set before rendering"
    ci, purpose, i = task
    cfg, plan, world, r = job.cfg, job.plans[ci], job.worlds[ci], job.renderers
    rng = image_rng(cfg.seed, plan.name, purpose, i)
    if purpose == _SATELLITE:
        east, north = plan.sat_en[i]
        image = r.render_aerial(
            world, float(east), float(north), cfg.satellite_px, cfg.tile_m / cfg.satellite_px, rng=rng
        )
        expected = (cfg.satellite_px, cfg.satellite_px, 3)
    else:
        east, north = plan.pano_en[i]
        image = r.render_panorama(
            world,
            float(east),
            float(north),
            float(plan.pano_heading_grid[i]),
            height_px=cfg.panorama_px[0],
            width_px=cfg.panorama_px[1],
            cam_height_m=cfg.cam_height_m,
            elevation_range_deg=tuple(cfg.elevation_range_deg),
            app=Appearance.sample(rng, "street"),
            rng=rng,
        )
        expected = (*cfg.panorama_px, 3)
    image = np.asarray(image)
    if image.shape != expected or image.dtype != np.uint8:
        what = "render_aerial" if purpose == _SATELLITE else "render_panorama"
        raise RuntimeError(f"{what} returned {image.dtype} {image.shape}, expected uint8 {expected}")
    write_rgb(_task_path(job, task), image, cfg.jpeg_quality)
    return purpose


def _worker_init() -> None:
    cv2.setNumThreads(1)  # one process per core already


def _street_sun(cfg: SynthConfig, plan: CityPlan, i: int) -> tuple[float, float]:
    """The sun of panorama i's appearance (the first draw of its generator, as in :func:`_render`)."""
    app = Appearance.sample(image_rng(cfg.seed, plan.name, _PANORAMA, i), "street")
    return app.sun_azimuth_deg, app.sun_elevation_deg


def _schedule(job: _Job, tasks: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """Tasks in an order that reuses the renderers' caches: by city, panoramas grouped by sun position
    (each new sun costs a cast-shadow pass over the whole world). Order changes no pixel."""

    def key(task: tuple[int, int, int]) -> tuple:
        ci, purpose, i = task
        sun = _street_sun(job.cfg, job.plans[ci], i) if purpose == _PANORAMA else (0.0, 0.0)
        return (ci, purpose, sun, i)

    return sorted(tasks, key=key)


def _run_tasks(tasks: list[tuple[int, int, int]], workers: int, desc: str, progress: bool) -> float:
    """Render ``tasks``; the first of each city in the parent, so that workers inherit the world caches it fills."""
    if not tasks:
        return 0.0
    start = time.perf_counter()
    first: dict[int, tuple[int, int, int]] = {}
    for task in tasks:
        first.setdefault(task[0], task)
    for task in first.values():
        _render(task)
    warmed = set(first.values())
    rest = [task for task in tasks if task not in warmed]
    bar = dict(total=len(tasks), initial=len(warmed), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
    if workers <= 1 or len(rest) < 2:
        with tqdm(**bar) as pbar:
            for task in rest:
                _render(task)
                pbar.update()
        return time.perf_counter() - start
    # Fork with no OpenCV worker thread alive: a child that inherits the pool's mutex held by a thread
    # mid-task blocks on it forever (seen here as workers hung at 0 s of CPU).
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        n = min(workers, len(rest))
        chunk = max(1, min(16, len(rest) // (n * 8)))
        with mp.get_context("fork").Pool(n, initializer=_worker_init) as pool, tqdm(**bar) as pbar:
            for _ in pool.imap_unordered(_render, rest, chunksize=chunk):
                pbar.update()
    finally:
        cv2.setNumThreads(threads)
    return time.perf_counter() - start


# --- the whole dataset ------------------------------------------------------------------------------


@dataclass
class SynthReport:
    out: Path
    cities: list[str]
    panoramas: int
    satellites: int
    rendered_panoramas: int
    rendered_satellites: int
    world_s: float
    satellite_s: float
    panorama_s: float
    total_s: float
    workers: int

    def summary(self) -> str:
        def rate(n: int, s: float) -> str:
            return f"{n / s:.1f}/s" if n and s > 0 else "-"

        skipped = self.panoramas + self.satellites - self.rendered_panoramas - self.rendered_satellites
        return (
            f"wrote {self.out}: {len(self.cities)} cities, {self.panoramas} panoramas, {self.satellites} satellite "
            f"tiles ({skipped} already there) in {self.total_s:.1f} s with {self.workers} worker(s): worlds "
            f"{self.world_s:.1f} s, tiles {rate(self.rendered_satellites, self.satellite_s)}, "
            f"panoramas {rate(self.rendered_panoramas, self.panorama_s)}"
        )


def _identity(cfg: SynthConfig, regions: list[Region]) -> dict[str, Any]:
    """What the dataset is a function of: the config with region files replaced by their content."""
    mapping = to_mapping(cfg)
    mapping["regions"] = [to_mapping(r) for r in regions]
    return {"generator": _generator(), "config": mapping}


def _generator() -> str:
    return f"edge-geoloc {__version__} synth/{SYNTH_VERSION}"


def _check_lock(out: Path, identity: dict[str, Any]) -> bool:
    """Whether ``out`` holds a dataset started with this identity; refuses another dataset or a foreign folder."""
    lock = out / LOCK_NAME
    if lock.exists():
        if yaml.safe_load(lock.read_text()) != yaml.safe_load(yaml.safe_dump(identity, sort_keys=False)):
            raise ValueError(
                f"{out} holds a dataset started with another config or generator ({lock}); "
                "resume only with the same config and seed, or write to a new --out"
            )
        return True
    if out.exists() and any(out.iterdir()):
        raise ValueError(
            f"{out} is not empty and holds no synthetic dataset in progress ({LOCK_NAME}): use a new --out"
        )
    return False


def _cross_area(cfg: SynthConfig, names: list[str]) -> tuple[list[str], list[str]]:
    for key in ("cross_area_train", "cross_area_test"):
        unknown = [c for c in getattr(cfg, key) if c not in names]
        if unknown:
            raise ConfigError(f"key '{key}': city {unknown[0]!r} is not one of the regions {names}")
    train, test = list(cfg.cross_area_train), list(cfg.cross_area_test)
    if not train and not test:
        train, test = (names[:-1], names[-1:]) if len(names) > 1 else (names, [])
    elif not train:
        train = [c for c in names if c not in test]
    elif not test:
        test = [c for c in names if c not in train]
    return train, test


def synthesize(
    cfg: SynthConfig,
    out: str | Path,
    *,
    workers: int = 2,
    renderers: Renderers | None = None,
    progress: bool = True,
) -> SynthReport:
    """Write (or finish writing) the dataset of ``cfg`` under ``out``."""
    global _JOB
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    start = time.perf_counter()
    out = Path(out)
    regions = [Region.load(p) for p in cfg.regions]
    names = [r.name for r in regions]
    for name in names:
        if not _CITY_NAME.match(name):
            raise ValueError(f"region name {name!r} cannot be a VIGOR city folder: use letters, digits, '_', '.', '-'")
    for region, path in zip(regions, cfg.regions):
        imagery = getattr(region, "imagery", None)
        if imagery is not None and imagery.kind != "synthetic":
            raise ValueError(
                f"{path}: region '{region.name}' uses {imagery.kind} imagery; synth renders synthetic worlds"
            )
    if len(set(names)) != len(names):
        raise ValueError(f"region names must be unique (they are the city folders), got {names}")
    cross_train, cross_test = _cross_area(cfg, names)
    identity = _identity(cfg, regions)
    resuming = _check_lock(out, identity)
    renderers = renderers or default_renderers()

    # Plan every city first (each world is built, planned and dropped), so a config that cannot be
    # planned leaves nothing behind; then render city by city with one world in memory at a time: 56
    # worlds of 0.5-1 km held at once took 20 GB and the OOM killer hung the worker pool.
    t = time.perf_counter()
    plans = []
    for region in tqdm(regions, desc="plans", unit="city", disable=not progress, dynamic_ncols=True):
        plans.append(plan_city(renderers.generate_world(region), cfg))
    world_s = time.perf_counter() - t
    out.mkdir(parents=True, exist_ok=True)
    if not resuming:
        (out / LOCK_NAME).write_text(yaml.safe_dump(identity, sort_keys=False))
    for plan in plans:
        (out / plan.name / "panorama").mkdir(parents=True, exist_ok=True)
        (out / plan.name / "satellite").mkdir(parents=True, exist_ok=True)

    sat_tasks = [(ci, _SATELLITE, i) for ci, p in enumerate(plans) for i in range(len(p.sat_names))]
    pano_tasks = [(ci, _PANORAMA, i) for ci, p in enumerate(plans) for i in range(len(p.pano_names))]
    satellite_s = panorama_s = 0.0
    rendered_sat = rendered_pano = 0
    worlds: list[World | None] = [None] * len(plans)
    try:
        for ci, region in enumerate(regions):
            _JOB = _Job(cfg, out, worlds, plans, renderers)  # type: ignore[arg-type]
            sat_todo = [task for task in sat_tasks if task[0] == ci and not _task_path(_JOB, task).exists()]
            pano_todo = [task for task in pano_tasks if task[0] == ci and not _task_path(_JOB, task).exists()]
            if not sat_todo and not pano_todo:
                continue
            t = time.perf_counter()
            worlds[ci] = renderers.generate_world(region)
            world_s += time.perf_counter() - t
            pano_todo = _schedule(_JOB, pano_todo)
            satellite_s += _run_tasks(sat_todo, workers, f"{region.name} tiles", progress)
            panorama_s += _run_tasks(pano_todo, workers, f"{region.name} panoramas", progress)
            rendered_sat += len(sat_todo)
            rendered_pano += len(pano_todo)
            worlds[ci] = None
    finally:
        _JOB = None

    cities: dict[str, CityMeta] = {}
    for plan in plans:
        write_city_splits(out, plan.name, plan.sat_names, plan.label_lines, plan.same_area_test)
        n_test = int(plan.same_area_test.sum())
        cities[plan.name] = CityMeta(
            region=plan.region,
            crs=plan.crs,
            panoramas=len(plan.pano_names),
            satellites=len(plan.sat_names),
            same_area_train=len(plan.pano_names) - n_test,
            same_area_test=n_test,
            label_error_px=round(plan.label_error_px, 4),
        )
    write_metadata(
        out,
        VigorMeta(
            generator=_generator(),
            label_gsd_m=cfg.tile_m / VIGOR_SAT_PX,
            tile_m=cfg.tile_m,
            stride_m=cfg.tile_m / 2,
            satellite_px=cfg.satellite_px,
            satellite_gsd_m=cfg.tile_m / cfg.satellite_px,
            panorama=PanoramaMeta(
                height_px=cfg.panorama_px[0],
                width_px=cfg.panorama_px[1],
                elevation_range_deg=tuple(cfg.elevation_range_deg),
                center_heading_deg=0.0,
                north="true",
                cam_height_m=cfg.cam_height_m,
            ),
            cities=cities,
            aerial_north="true",
            cross_area_train=cross_train,
            cross_area_test=cross_test,
            seed=cfg.seed,
            config=identity["config"],
        ),
    )
    return SynthReport(
        out=out,
        cities=names,
        panoramas=len(pano_tasks),
        satellites=len(sat_tasks),
        rendered_panoramas=rendered_pano,
        rendered_satellites=rendered_sat,
        world_s=world_s,
        satellite_s=satellite_s,
        panorama_s=panorama_s,
        total_s=time.perf_counter() - start,
        workers=workers,
    )
