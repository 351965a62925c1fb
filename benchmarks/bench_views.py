"""Render timings of the synthetic world's views on one core: street panorama, vehicle pinhole
camera and UAV camera, with the aerial tile as the peer they are compared with.

Each view is timed at random road positions of a generated world once the world's caches (ray
caster tables, slopes, the sun's shadow raster, the aerial capture) are warm. Times are the
process's CPU time (one thread: OpenCV is set to one), which other jobs on a shared machine
disturb far less than wall time; the best of ``--repeat`` runs per position, then the median and
90th percentile over positions (wall-time medians go to the JSON). Prints a
table, writes JSON (``--json``) and, on a full run, the committed table
``benchmarks/results/views.md``.

    .venv/bin/python benchmarks/bench_views.py            # 1000 m worlds, all styles
    .venv/bin/python benchmarks/bench_views.py --quick    # a small world, a few positions
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from edge_geoloc.config import strict_json
from edge_geoloc.world.aerial import prepare_aerial, render_aerial
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import render_uav
from edge_geoloc.world.layout import generate_world
from edge_geoloc.world.raycast import prepare_views
from edge_geoloc.world.region import Region
from edge_geoloc.world.street import render_panorama, render_pinhole

RESULTS = Path(__file__).parent / "results"

VIEWS = {
    "panorama 512x128": lambda w, e, n, h, app: render_panorama(w, e, n, h, app=app),
    "pinhole 256x128 FoV 90": lambda w, e, n, h, app: render_pinhole(w, e, n, h, fov_deg=90.0, app=app),
    "pinhole 256x128 FoV 180": lambda w, e, n, h, app: render_pinhole(w, e, n, h, fov_deg=180.0, app=app),
    "UAV 256x256 nadir 120 m": lambda w, e, n, h, app: render_uav(w, e, n, 120.0, h, app=app),
    "UAV 256x256 tilt 45 100 m": lambda w, e, n, h, app: render_uav(w, e, n, 100.0, h, tilt_deg=45.0, app=app),
    "aerial 256x256 (peer)": lambda w, e, n, h, app: render_aerial(w, e, n, 256, 0.5),
}


def road_positions(world, count: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Points on the road graph, 150 m or more inside the world, with the road's heading."""
    net = world.roads
    out = []
    while len(out) < count:
        a, b = net.nodes[net.edges[rng.integers(len(net.edges))]]
        p = a + rng.uniform(0.2, 0.8) * (b - a)
        if world.contains(p[0], p[1], margin_m=min(150.0, world.region.size_m / 4)):
            out.append((float(p[0]), float(p[1]), float(np.degrees(np.arctan2(*(b - a))) % 360)))
    return out


def bench_style(style: str, size_m: float, positions: int, repeat: int, seed: int) -> dict[str, dict]:
    region = Region(name=f"bench-{style}", center_lat=47.37, center_lon=8.54, size_m=size_m, style=style, seed=seed)
    t0 = time.perf_counter()
    world = generate_world(region)
    gen_s = time.perf_counter() - t0
    app = Appearance(sun_azimuth_deg=135.0, sun_elevation_deg=45.0)
    t0 = time.perf_counter()
    prepare_views(world, [app])
    prepare_aerial(world, max_gsd_m=0.5)
    warm_s = time.perf_counter() - t0
    pts = road_positions(world, positions, np.random.default_rng(seed))
    out: dict[str, dict] = {"_world": {"generate_s": gen_s, "warm_caches_s": warm_s, "shape": list(world.shape)}}
    for name, view in VIEWS.items():
        view(world, *pts[0], app)  # first call: any remaining lazy cache
        cpu, wall = [], []
        for e, n, h in pts:
            c_best, w_best = np.inf, np.inf
            for _ in range(repeat):
                c0, w0 = time.process_time(), time.perf_counter()
                view(world, e, n, h, app)
                c_best = min(c_best, time.process_time() - c0)
                w_best = min(w_best, time.perf_counter() - w0)
            cpu.append(c_best)
            wall.append(w_best)
        ms, wall_ms = np.array(cpu) * 1e3, np.array(wall) * 1e3
        out[name] = {
            "median_ms": float(np.median(ms)),
            "p90_ms": float(np.percentile(ms, 90)),
            "wall_median_ms": float(np.median(wall_ms)),
            "n": len(ms),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a 300 m suburb and 3 positions (smoke run)")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--styles", default="downtown,suburb,rural,industrial")
    ap.add_argument("--size-m", type=float, default=1000.0)
    ap.add_argument("--positions", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    cv2.setNumThreads(1)  # one core: numpy here is single-threaded, OpenCV is not by default
    styles = ["suburb"] if args.quick else args.styles.split(",")
    size_m = 300.0 if args.quick else args.size_m
    positions, repeat = (3, 1) if args.quick else (args.positions, args.repeat)
    results = {}
    for style in styles:
        results[style] = bench_style(style, size_m, positions, repeat, args.seed)
        print(f"{style}: world {results[style]['_world']['shape']} generated in "
              f"{results[style]['_world']['generate_s']:.1f} s, caches warmed in {results[style]['_world']['warm_caches_s']:.1f} s")  # fmt: skip
    header = "| view | " + " | ".join(f"{s} median / p90 ms" for s in styles) + " |"
    lines = [header, "|" + "---|" * (len(styles) + 1)]
    for name in VIEWS:
        cells = [f"{results[s][name]['median_ms']:.1f} / {results[s][name]['p90_ms']:.1f}" for s in styles]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    print(table)
    load = os.getloadavg()[0]
    meta = {
        "size_m": size_m,
        "positions": positions,
        "repeat": repeat,
        "machine": platform.processor() or platform.machine(),
        "load_average_1min": load,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(strict_json({"meta": meta, "results": results}, indent=2))
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "views.md").write_text(
            "# View render timings (one core, warm caches)\n\n"
            f"`.venv/bin/python benchmarks/bench_views.py`: {size_m:g} m worlds (seed {args.seed}), {positions} road "
            f"positions per style, best of {repeat} runs per position; CPU time of one thread on a shared "
            f"{os.cpu_count()}-core machine (load average {load:.1f} at the end), so compare rows within one "
            "run.\n\n" + table + "\n"
        )


if __name__ == "__main__":
    main()
