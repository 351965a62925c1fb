"""UAV queries: single-frame localization of drone frames against the map, by altitude, camera pitch and yaw.

Held-out synthetic towns (``maps/synth/test-*.yaml``, never seen by the drone branch nor the demo
model). In each, drone frames are rendered at random places and headings (each with its own time of
day) for every altitude (50, 100, 150, 300 m above ground) and camera pitch from nadir (0, 20, 40
degrees), through the demo drone lens, with the autopilot's attitude off by a little (roll/pitch
0.3 deg, height 0.7 m). Each frame goes once through the UAV loop's vision stage
(:class:`~edge_geoloc.localize.vision.uav.UavVision`: rectification, patches, scoped search, heading
search) with a fresh filter holding a prior 100 m off on each axis at most (VIGOR's +-100 m
protocol; scope 3 sigma + a tile), once with the yaw known (the autopilot's, 1 deg noise) and once
unknown (the 24-heading sweep). Reported per cell:

- R@1: the best (patch, tile) pair's tile is the tile nearest to that patch's true centre;
- error: metres between the truth and that pair's place (the tile centre less the patch offset):
  median and the share within 10 / 25 m; the single frame, no filter, no odometry;
- registered: the loop's refine stage (dense registration of the rectified ground patch against the map
  imagery around the filter's estimate and the best ``--register-candidates`` places) where its fit passes
  the uncalibrated quality (a GPS-denied start), else the retrieval's place: median and share within 10 m;
- heading error (yaw unknown): the rotation search's estimate against the true yaw, median and p90;
- frames/s: the vision stage's time per frame (rectify, encode, search, heading) on this machine.

The same is measured with the aerial branch itself as the drone encoder (zero-shot: what the
drone branch's training adds), unless ``--quick``; ``--aerial-only`` measures only that, for a model
that has no drone branch (the car demo model ``models/lite0-bev``: its pretrained aerial branch zero-shot).

    .venv/bin/python benchmarks/uav.py                  # 2 towns x 12 cells x 10 frames, a few minutes
    .venv/bin/python benchmarks/uav.py --quick          # 1 town, 4 frames a cell, drone branch only: under a minute
    .venv/bin/python benchmarks/uav.py --json PATH      # results elsewhere (default benchmarks/results/uav.json)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.config import strict_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "uav.json"
TOWNS = ("test-suburb", "test-downtown", "test-rural", "test-industrial")
ALTITUDES = (50.0, 100.0, 150.0, 300.0)
PITCHES = (0.0, 20.0, 40.0)


@dataclass(frozen=True)
class Shot:
    east: float
    north: float
    height: float
    yaw_grid: float
    roll: float
    pitch: float
    tilt: float
    seed: int


def plan_shots(world: Any, area: Any, n: int, height: float, tilt: float, seed: int, lens: Any) -> list[Shot]:
    """Drones placed so that what they look at is well inside the map's tiled ``area`` (100 m from its edges)."""
    from edge_geoloc.cameras.rectify import GroundView, look_point
    from edge_geoloc.cameras.uav import Mount, UavCamera

    rng = np.random.default_rng(seed)
    shots: list[Shot] = []
    while len(shots) < n:
        yaw = float(rng.uniform(0, 360))
        roll, pitch = (float(v) for v in rng.normal(0, 2.0, 2))
        R = UavCamera(lens=lens, mount=Mount(tilt_deg=tilt)).world_from_cam(roll, pitch, yaw)
        look = look_point(GroundView(R, height))
        target = rng.uniform(
            [world.east_min + 100, world.north_min + 100], [world.east_max - 100, world.north_max - 100]
        )
        e, nn = target - look
        if world.contains(e, nn, 20.0):
            shots.append(Shot(float(e), float(nn), height, yaw, roll, pitch, tilt, int(rng.integers(1 << 30))))
    return shots


_WORLD: Any = None
_LENS: Any = None


def _render(shot: Shot) -> np.ndarray:
    from edge_geoloc.cameras.uav import Mount, UavCamera
    from edge_geoloc.world.appearance import Appearance
    from edge_geoloc.world.camera import render_camera

    rng = np.random.default_rng(shot.seed)
    cam = UavCamera(lens=_LENS, mount=Mount(tilt_deg=shot.tilt))
    R = cam.world_from_cam(shot.roll, shot.pitch, shot.yaw_grid)
    return render_camera(
        _WORLD, _LENS, R, np.array([shot.east, shot.north, shot.height]), Appearance.sample(rng, "uav"), rng
    )


def _init() -> None:
    import cv2

    cv2.setNumThreads(1)


def render_all(world: Any, lens: Any, shots: list[Shot], workers: int) -> list[np.ndarray]:
    import cv2

    from edge_geoloc.world.raycast import prepare_views

    global _WORLD, _LENS
    _WORLD, _LENS = world, lens
    from edge_geoloc.world.appearance import Appearance

    prepare_views(world, [])
    # Grouped by sun: the renderer caches a few suns' shadow rasters (each costs about a second).
    suns = [Appearance.sample(np.random.default_rng(s.seed), "uav") for s in shots]
    order = sorted(range(len(shots)), key=lambda i: (suns[i].sun_azimuth_deg, suns[i].sun_elevation_deg))
    if workers <= 1:
        images = [_render(shots[i]) for i in order]
    else:
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)  # no OpenCV pool at fork (as data/synth.py)
        try:
            with mp.get_context("fork").Pool(workers, initializer=_init) as pool:
                images = pool.map(_render, [shots[i] for i in order], chunksize=8)
        finally:
            cv2.setNumThreads(threads)
    out: list[np.ndarray] = [np.empty(0)] * len(shots)
    for i, img in zip(order, images):
        out[i] = img
    return out


def evaluate_frames(
    encoder: Any,
    index: Any,
    lens: Any,
    shots: list[Shot],
    images: list[np.ndarray],
    yaw_known: bool,
    seed: int,
    candidates: int = 5,
) -> list[dict]:
    """One pass of the UAV vision stage per frame, with a fresh filter at a prior up to 100 m off."""
    from edge_geoloc.cameras.uav import AttitudeConfig, Mount, UavCamera
    from edge_geoloc.localize.attitude import AttitudeLog
    from edge_geoloc.localize.filter import FilterConfig, ParticleFilter
    from edge_geoloc.localize.loop import Localizer, LoopConfig
    from edge_geoloc.localize.refine import RefineConfig
    from edge_geoloc.localize.sources import Frame

    rng = np.random.default_rng(seed)
    rows = []
    locs: dict[float, Any] = {}
    for i, (s, img) in enumerate(zip(shots, images)):
        if s.tilt not in locs:
            cam = UavCamera(
                lens=lens,
                mount=Mount(tilt_deg=s.tilt),
                attitude=AttitudeConfig(yaw="trusted" if yaw_known else "untrusted"),
            )
            refine = RefineConfig(candidates=candidates, trust_uncalibrated=True)
            locs[s.tilt] = Localizer(
                encoder, index, cam, LoopConfig(budget_ms=None, trust_uncalibrated=True, refine=refine)
            )
        loc = locs[s.tilt]
        conv = loc.convergence
        t = 10.0 * (i + 1)
        yaw_true = (s.yaw_grid + conv) % 360.0
        attitude = AttitudeLog(
            np.array([t]),
            np.array([s.roll + rng.normal(0, 0.3)]),
            np.array([s.pitch + rng.normal(0, 0.3)]),
            np.array([(yaw_true + rng.normal(0, 1.0)) % 360.0]),
            np.array([s.height + rng.normal(0, 0.7)]),
        )
        for sample in attitude.poll(t):  # the autopilot's attitude arrives as an event before the frame
            loc.feed_attitude(sample)
        loc.filter = ParticleFilter(FilterConfig(seed=i))
        prior = np.array([s.east, s.north]) + rng.uniform(-100, 100, 2)
        loc.filter.init_gaussian(t, float(prior[0]), float(prior[1]), 50.0, None, None, 10.0)
        t0 = time.perf_counter()
        fix = loc.process(Frame(i, t, img))
        ms = (time.perf_counter() - t0) * 1000.0
        row: dict[str, Any] = {
            "ms": ms,
            "skipped": ",".join(fix.skipped) or None,
            "hit": False,
            "error_m": float("nan"),
            "registered_error_m": float("nan"),
            "heading_error_deg": float("nan"),
        }
        v = fix.vision
        if v is not None:
            best = np.array([v["best_east"], v["best_north"]])
            tile = int(v["best_tile"])
            te, tn = loc.tiling.centre(tile)
            centre = np.array([s.east, s.north]) + (np.array([te, tn]) - best)  # that patch's true centre
            if loc.tiling.contains(centre[0], centre[1]):
                row["hit"] = bool(loc.tiling.covering(centre[0], centre[1])[0][0, 0] == tile)
            row["error_m"] = float(np.hypot(*(best - [s.east, s.north])))
            place = np.array([v["refine_east"], v["refine_north"]]) if v.get("refined") == 1.0 else best
            row["registered_error_m"] = float(np.hypot(*(place - [s.east, s.north])))
            if not yaw_known and np.isfinite(v["heading_grid_deg"]):
                row["heading_error_deg"] = float(abs((v["heading_grid_deg"] - s.yaw_grid + 180.0) % 360.0 - 180.0))
        rows.append(row)
    return rows


def summarize(rows: list[dict]) -> dict[str, Any]:
    err = np.array([r["error_m"] for r in rows])
    reg = np.array([r["registered_error_m"] for r in rows])
    herr = np.array([r["heading_error_deg"] for r in rows])
    ms = np.array([r["ms"] for r in rows])
    ok = np.isfinite(err)
    out = {
        "frames": len(rows),
        "R@1": round(100.0 * float(np.mean([r["hit"] for r in rows])), 1),
        "median_error_m": round(float(np.median(np.where(ok, err, np.inf))), 1) if ok.any() else None,
        "within_10m": round(100.0 * float(np.mean(ok & (err <= 10))), 1),
        "within_25m": round(100.0 * float(np.mean(ok & (err <= 25))), 1),
        "registered_median_m": round(float(np.median(np.where(ok, reg, np.inf))), 1) if ok.any() else None,
        "registered_within_10m": round(100.0 * float(np.mean(ok & (reg <= 10))), 1),
        "skipped": int(sum(r["skipped"] is not None for r in rows)),
        "fps": round(1000.0 / float(ms.mean()), 1),
    }
    if np.isfinite(herr).any():
        h = herr[np.isfinite(herr)]
        out["heading_median_deg"] = round(float(np.median(h)), 1)
        out["heading_p90_deg"] = round(float(np.percentile(h, 90)), 1)
        out["heading_within_5deg"] = round(100.0 * float(np.mean(herr <= 5)), 1)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="1 town, 4 frames a cell, drone branch only (under a minute)")
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help=f"results JSON (default {RESULTS.relative_to(ROOT)}; --quick: .quick.json)",
    )
    ap.add_argument("--model", type=Path, default=None, help="export with a drone branch (default: the demo model)")
    ap.add_argument("--frames", type=int, default=None, help="frames per cell (default 10, quick 4)")
    ap.add_argument("--towns", nargs="+", default=None, help=f"held-out towns (default {TOWNS[:2]}, quick {TOWNS[:1]})")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--register-candidates", type=int, default=5, help="places the refine stage registers at besides the filter's"
    )
    ap.add_argument("--map-cache", type=Path, default=None, help="map bundles (default maps/build; built when missing)")
    ap.add_argument(
        "--aerial-only",
        action="store_true",
        help="only the aerial branch as the drone encoder (zero-shot), for a model with no drone branch (lite0-bev)",
    )
    ap.add_argument(
        "--drone-only", action="store_true", help="skip the zero-shot aerial comparison (measured on its own before)"
    )
    args = ap.parse_args()
    if args.drone_only and args.aerial_only:
        ap.error("--drone-only and --aerial-only exclude each other")

    from edge_geoloc.maps import MapIndex
    from edge_geoloc.runtime import load_card, open_encoder
    from edge_geoloc.sim.demo import MAP_CACHE, UAV_DEMO_MODEL, cached_map
    from edge_geoloc.sim.flight import DEMO_UAV_CAMERA
    from edge_geoloc.sim.scenario import load_world
    from edge_geoloc.sim.uav_demo import find_uav_export

    t_all = time.perf_counter()
    if args.aerial_only:
        from edge_geoloc.sim.demo import find_export

        model = find_export(args.model or UAV_DEMO_MODEL)
    else:
        model = find_uav_export(args.model or UAV_DEMO_MODEL)
    card = load_card(model)
    if not args.aerial_only:
        card.branch("drone")  # a clear error when the export has no drone branch
    towns = args.towns or (TOWNS[:1] if args.quick else TOWNS[:2])
    n = args.frames or (4 if args.quick else 10)
    encoders = {} if args.aerial_only else {"drone": open_encoder(model, "drone", intra_op_threads=args.workers)}
    if (not args.quick and not args.drone_only) or args.aerial_only:
        encoders["aerial (zero-shot)"] = open_encoder(model, "aerial", intra_op_threads=args.workers)
    lens = DEMO_UAV_CAMERA.lens
    cells: dict[tuple, list[dict]] = {}
    for k, town in enumerate(towns):
        region = ROOT / "maps" / "synth" / f"{town}.yaml"
        index = MapIndex.open(
            cached_map(region, model, args.map_cache or MAP_CACHE, args.workers, progress=False), card=card
        )
        world = load_world(region)
        shots = [
            s
            for a in ALTITUDES
            for p in PITCHES
            for s in plan_shots(world, index.tiling, n, a, p, 1000 * k + int(a) + int(p), lens)
        ]
        t0 = time.perf_counter()
        images = render_all(world, lens, shots, args.workers)
        print(f"{town}: rendered {len(images)} frames in {time.perf_counter() - t0:.1f} s")
        for name, enc in encoders.items():
            for yaw_known in (True, False):
                rows = evaluate_frames(
                    enc, index, lens, shots, images, yaw_known, seed=k, candidates=args.register_candidates
                )
                for s, r in zip(shots, rows):
                    cells.setdefault((name, yaw_known, s.height, s.tilt), []).append(r)
    table = []
    for (name, yaw_known, alt, tilt), rows in cells.items():
        table.append(
            {
                "encoder": name,
                "yaw": "known" if yaw_known else "unknown",
                "altitude_m": alt,
                "pitch_deg": tilt,
                **summarize(rows),
            }
        )
    pooled = []
    for name in encoders:
        for yk in ("known", "unknown"):
            rows = [
                r
                for (nm, y, _, _), rr in cells.items()
                if nm == name and ("known" if y else "unknown") == yk
                for r in rr
            ]
            pooled.append({"encoder": name, "yaw": yk, **summarize(rows)})
    result = {
        "benchmark": "uav",
        "quick": args.quick,
        "arguments": "".join(f" {a}" for a in sys.argv[1:]),
        "model": str(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model),
        "towns": list(towns),
        "frames_per_cell": n,
        "prior": "uniform +-100 m per axis, scope 3 sigma (50 m) + a tile",
        "register_candidates": args.register_candidates,
        "lens": f"{lens.width_px}x{lens.height_px}, fx {lens.fx:.1f}, k1 {lens.k1}, k2 {lens.k2}",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": list(os.getloadavg())},
        "seconds": round(time.perf_counter() - t_all, 1),
        "pooled": pooled,
        "cells": table,
    }
    path = args.json or (RESULTS.with_suffix(".quick.json") if args.quick else RESULTS)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(strict_json(result, indent=1) + "\n")
    md = markdown(result)
    if not args.quick:
        path.with_suffix(".md").write_text(md)
    print(md)
    print(f"wrote {path}")
    return 0


def markdown(r: dict[str, Any]) -> str:
    def row(c: dict) -> str:
        head = f"| {c['encoder']} | {c['yaw']} |" + (
            f" {c['altitude_m']:g} | {c['pitch_deg']:g} |" if "altitude_m" in c else ""
        )
        h = f"{c.get('heading_median_deg', '-')} / {c.get('heading_p90_deg', '-')}"
        return (
            f"{head} {c['frames']} | {c['R@1']} | {c['median_error_m']} | {c['within_10m']} | {c['within_25m']} |"
            f" {c.get('registered_median_m', '-')} | {c.get('registered_within_10m', '-')} | {h} | {c['skipped']} |"
            f" {c['fps']} |"
        )

    cols = (
        "| frames | R@1 % | median error m | <= 10 m % | <= 25 m % | registered median m | registered <= 10 m % |"
        " heading median / p90 deg | skipped | frames/s |"
    )
    sep = "|---|---|---|---|---|---|---|---|---|---|"
    lines = [
        f"# UAV queries: single-frame localization ({', '.join(r['towns'])}, {r['frames_per_cell']} frames a cell)",
        "",
        f"Model `{r['model']}`; prior {r['prior']}; registered at the filter's estimate and"
        f" {r.get('register_candidates', '-')} candidate places; lens {r['lens']}; machine {r['machine']['platform']},"
        f" {r['machine']['cpus']} CPUs, load {[round(v, 1) for v in r['machine']['load_avg']]}; {r['seconds']} s.",
        f"Reproduce: `.venv/bin/python benchmarks/uav.py{r.get('arguments', '')}`",
        "",
        "Pooled over altitudes and pitches:",
        "",
        "| encoder | yaw " + cols,
        "|---|---" + sep,
        *[row(c) for c in r["pooled"]],
        "",
        "By altitude and camera pitch from nadir:",
        "",
        "| encoder | yaw | altitude m | pitch deg " + cols,
        "|---|---|---|---" + sep,
        *[row(c) for c in r["cells"]],
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
