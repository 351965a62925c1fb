"""Latency of the localization loop with the demo model: per stage p50/p99 and end-to-end frames/s.

Frames of a drive through the demo town are rendered first (rendering is the simulator's cost, not
the loop's), then the real loop (:class:`edge_geoloc.localize.Localizer`: north-aligned views,
encode on ONNX Runtime, scoped search, refine, heading, particle filter with GPS and odometry
updates) runs on them one after another, as fast as it can, under the per-frame budget. Variants
side by side, interleaved frame by frame: the default loop (heading views every frame, resting to
every 5th while registrations pass), the heading views every frame regardless, every 5th frame,
never, and without refinement. Target: >= 20 frames/s with p99 under the 100 ms budget on 2 cores.

    .venv/bin/python benchmarks/loop_latency.py            # 600 frames per variant
    .venv/bin/python benchmarks/loop_latency.py --quick    # 60 frames, under a minute
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results" / "loop_latency.json"
# (label, heading every n frames, refine: registration against the map imagery when the map has it,
#  heading views every n frames while registrations pass: RefineConfig.heading_views_every)
VARIANTS = (
    ("default (heading every frame, every 5th registered)", 1, True, 5),
    ("heading every frame regardless", 1, True, 1),
    ("heading every 5th frame", 5, True, 1),
    ("no heading", 0, True, 1),
    ("heading every frame, no refine", 1, False, 1),
)


def run_interleaved(sc, frames, encoder, index, offset, budget_ms: float, repeats: int) -> list[dict]:
    """Every variant steps through the same frames in turn (frame by frame), so load changes hit all alike."""
    from edge_geoloc.localize.loop import Localizer, LoopConfig
    from edge_geoloc.localize.odometry import Odometry
    from edge_geoloc.localize.refine import RefineConfig
    from edge_geoloc.localize.run import ODOMETRY, events
    from edge_geoloc.sim.gnss import SimulatedGps

    stages: list[dict[str, list[float]]] = [{} for _ in VARIANTS]
    totals: list[list[float]] = [[] for _ in VARIANTS]
    misses = [0] * len(VARIANTS)
    encodes = [0] * len(VARIANTS)
    for _ in range(repeats):
        runs = [
            (
                Localizer(  # the heading stage as configured, whatever the heading check would say: its cost
                    encoder,
                    index,
                    sc.camera,
                    LoopConfig(
                        budget_ms=budget_ms,
                        heading_every=every,
                        check_heading=False,
                        refine=RefineConfig(enabled=refine, heading_views_every=rest),
                    ),
                    offset=offset,
                ),
                SimulatedGps(sc.gps),
                Odometry.from_log(sc.odometry),
            )
            for _, every, refine, rest in VARIANTS
        ]
        for frame in frames:
            for v, (loc, gps, odo) in enumerate(runs):
                for _, kind, event in events(frame.t, gps, odo):
                    (loc.feed_odometry if kind == ODOMETRY else loc.feed_gps)(event)
                fix = loc.process(frame)
                for k, ms in fix.stages_ms.items():
                    stages[v].setdefault(k, []).append(ms)
                totals[v].append(fix.total_ms)
                misses[v] += int(fix.deadline_missed)
        for v, (loc, _, _) in enumerate(runs):
            encodes[v] += loc.stats.encodes

    def pct(values: list[float]) -> dict[str, float]:
        a = np.asarray(values)
        return {"p50": round(float(np.percentile(a, 50)), 2), "p99": round(float(np.percentile(a, 99)), 2)}

    rows = []
    for v, (label, every, refine, rest) in enumerate(VARIANTS):
        t = np.asarray(totals[v])
        rows.append(
            {
                "variant": label,
                "heading_every": every,
                "refine": refine,
                "heading_views_every_registered": rest,
                "frames": len(t),
                "fps": round(len(t) / (t.sum() / 1000.0), 1),
                "total_ms": pct(totals[v]),
                "deadline_misses": misses[v],
                "stages_ms": {k: pct(x) for k, x in stages[v].items()},
                "encodes_per_frame": round(encodes[v] / len(t), 2),
            }
        )
    return rows


def format_table(rows: list[dict], notes: list[str]) -> str:
    stages = ["predict", "encode", "search", "refine", "heading", "register", "filter"]
    w = max(len(r["variant"]) for r in rows) + 2
    head = f"{'variant':<{w}}{'fps':>7}{'p50 ms':>9}{'p99 ms':>9}{'miss':>6}{'enc/fr':>8}  " + "  ".join(
        f"{s + ' p50/p99':>18}" for s in stages
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = []
        for s in stages:
            st = r["stages_ms"].get(s)
            cells.append(f"{st['p50']:>8.2f}/{st['p99']:<9.2f}" if st else f"{'-':>18}")
        lines.append(
            f"{r['variant']:<{w}}{r['fps']:>7.1f}{r['total_ms']['p50']:>9.2f}{r['total_ms']['p99']:>9.2f}"
            f"{r['deadline_misses']:>6}{r['encodes_per_frame']:>8.2f}  " + "  ".join(cells)
        )
    return "\n".join([*lines, "", *notes])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 frames per variant (< 1 minute)")
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--model", help="export folder (default: the car demo model, models/lite0-bev-s96)")
    parser.add_argument("--note", default="", help="a line for the results (where a --model came from)")
    parser.add_argument("--region", default=str(ROOT / "maps" / "demo-suburb.yaml"))
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--map-cache", type=Path, default=None, help="where the map is cached (default: maps/build)")
    args = parser.parse_args(argv)

    from edge_geoloc.localize.run import open_models
    from edge_geoloc.sim.demo import DEMO_MODEL, MAP_CACHE, cached_map, find_export
    from edge_geoloc.sim.scenario import Trip, car_camera, load_world, make_scenario, render_frames

    t0 = time.perf_counter()
    try:
        model = find_export(args.model or DEMO_MODEL)
    except FileNotFoundError as err:
        print(f"loop_latency: {err}; nothing to measure")
        return 0
    load_before = os.getloadavg()[0]
    region = Path(args.region)
    map_dir = cached_map(region, model, args.map_cache or MAP_CACHE, workers=2, progress=False)
    n = 60 if args.quick else 300
    sc = make_scenario(
        load_world(region),
        Trip(seed=1, duration_s=n / 2.0, outage=(n / 8.0, n / 2.0), rate_hz=2.0),
        camera=car_camera(model),
    )
    frames = render_frames(sc, workers=2)
    encoder, index, offset = open_models(model, map_dir, threads=args.threads)
    repeats = 1 if args.quick else 2
    rows = run_interleaved(sc, frames, encoder, index, offset, args.budget_ms, repeats)
    notes = [
        f"model {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model} ({encoder!r}, {args.threads} threads),"
        f" map {map_dir.name} ({index.n_tiles} tiles), budget {args.budget_ms:g} ms; 'register': the refine stage's"
        f" registration against the map imagery ({'on' if index.bundle.manifest.ortho else 'off: the map has none'})",
        f"{len(frames)} pre-rendered frames x {repeats} per variant, variants interleaved frame by frame: a drive with"
        f" GPS for {sc.outage[0]:g} s, then denied; wheel/gyro odometry at 10 Hz; fps = frames / summed per-frame"
        " time (the loop alone, back to back; the time of GPS and odometry updates counts in predict)",
        load_line(load_before) + " (a shared machine: other jobs inflate the tails)",
        *([args.note] if args.note else []),
    ]
    table = format_table(rows, notes)
    print("\n" + table)
    out = args.json or RESULTS
    write_json(out, rows, notes, t0, threads=args.threads)
    if args.json is None and not args.quick:
        write_markdown(RESULTS.with_suffix(".md"), "Loop latency (benchmarks/loop_latency.py)", table)
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
