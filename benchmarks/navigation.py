"""GPS-denied navigation: how far off the car is after minutes without GPS, with and without vision.

Held-out synthetic towns (``maps/synth/test-*.yaml``: the cross-area test cities the demo model
never saw in training), several drives each. Every drive has GPS (noise, bias, multipath) for its
first minute, then none for five minutes, then GPS again; wheel/gyro odometry throughout (1.5 %
speed scale error, a gyro bias that random-walks). The real loop runs on rendered 360-degree camera
frames at 2 Hz. Compared, in the outage:

- odometry + vision: the loop (particle filter fed odometry, vision fixes and, outside the outage, GPS);
- odometry only: the same filter fed the same odometry and GPS, no vision (dead reckoning in the outage).

Reported per drive and pooled: position error median/p95/max in the outage, the error over time
since GPS was lost (30 s bins), heading error, vision fix rate, loop frames/s. Target: in a
5-minute outage the filtered median <= 10 m and p95 <= 25 m, while odometry alone drifts past them.

    .venv/bin/python benchmarks/navigation.py            # 4 towns x 6 drives, 7 minutes each
    .venv/bin/python benchmarks/navigation.py --quick    # 1 town, 1 drive of 3 minutes (2-minute outage), under a minute
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results" / "navigation.json"
TOWNS = ("test-suburb", "test-downtown", "test-rural", "test-industrial")
BIN_S = 30.0
TARGET_MEDIAN_M, TARGET_P95_M = 10.0, 25.0

if TYPE_CHECKING:
    from edge_geoloc.cameras.street import CameraModel


def error_over_time(t: np.ndarray, err: np.ndarray, outage: tuple[float, float]) -> list[float | None]:
    """Median error per BIN_S since the outage began."""
    out = []
    for a in np.arange(outage[0], outage[1], BIN_S):
        m = (t >= a) & (t < min(a + BIN_S, outage[1])) & np.isfinite(err)
        out.append(round(float(np.median(err[m])), 2) if m.any() else None)
    return out


def run_drive(
    town: str, seed: int, duration: float, outage: tuple[float, float], rate: float, model: Path, camera: CameraModel
) -> dict:
    from edge_geoloc.localize.run import open_models
    from edge_geoloc.sim.demo import MAP_CACHE, cached_map
    from edge_geoloc.sim.scenario import (
        Trip,
        evaluate,
        load_world,
        make_scenario,
        public,
        render_frames,
        replay_without_vision,
        run_scenario,
    )

    region = ROOT / "maps" / "synth" / f"{town}.yaml"
    map_dir = cached_map(region, model, MAP_CACHE, workers=2, progress=False)
    sc = make_scenario(load_world(region), Trip(seed, duration, outage, rate), camera=camera)
    frames = render_frames(sc, workers=2)
    encoder, index, offset = open_models(model, map_dir, threads=2)
    res = run_scenario(sc, encoder, index, offset, frames=frames)
    t = np.array([r.t for r in res.records])
    base = replay_without_vision(sc, t)
    rep = evaluate(sc, res, base)
    row = {
        "town": town,
        "seed": seed,
        **public(rep),
        "error_over_time_m": {
            "bin_s": BIN_S,
            "vision_and_odometry": error_over_time(t, rep["_error"], outage),
            "odometry_only": error_over_time(t, rep["_baseline_error"], outage),
        },
    }
    row["_outage_errors"] = rep["_error"][sc.in_outage(t)]
    row["_baseline_outage_errors"] = rep["_baseline_error"][sc.in_outage(t)]
    row["_t"], row["_err"], row["_base"] = t, rep["_error"], rep["_baseline_error"]
    return row


def pooled(rows: list[dict]) -> dict:
    e = np.concatenate([r["_outage_errors"] for r in rows])
    b = np.concatenate([r["_baseline_outage_errors"] for r in rows])
    e, b = e[np.isfinite(e)], b[np.isfinite(b)]
    med, p95 = float(np.median(e)), float(np.percentile(e, 95))
    return {
        "drives": len(rows),
        "outage_frames": len(e),
        "outage_median_error_m": round(med, 2),
        "outage_p95_error_m": round(p95, 2),
        "odometry_only_outage_median_error_m": round(float(np.median(b)), 2),
        "odometry_only_outage_p95_error_m": round(float(np.percentile(b, 95)), 2),
        "median_heading_error_deg": round(float(np.median([r["median_heading_error_deg"] for r in rows])), 2),
        "fix_rate": round(float(np.mean([r["fix_rate"] for r in rows])), 3),
        # Per drive: where vision helped and where it hurt (a weak model's wrong matches can pull a filter
        # away from odometry that happened to be good).
        "drives_vision_lower_p95": sum(r["outage_p95_error_m"] < r["odometry_only_outage_p95_error_m"] for r in rows),
        "drives_vision_lower_median": sum(
            r["outage_median_error_m"] < r["odometry_only_outage_median_error_m"] for r in rows
        ),
        "target_met": bool(med <= TARGET_MEDIAN_M and p95 <= TARGET_P95_M),
    }


def format_table(rows: list[dict], total: dict, notes: list[str]) -> str:
    head = (
        f"{'town':<16}{'seed':>5}{'km':>6}{'outage s':>9}  {'vision+odometry med/p95/max m':>30}"
        f"  {'odometry only med/p95/max m':>28}{'hdg med':>8}{'fix %':>7}{'fps':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['town']:<16}{r['seed']:>5}{r['distance_km']:>6.2f}{r['outage_s']:>9.0f}  "
            f"{r['outage_median_error_m']:>10.1f}{r['outage_p95_error_m']:>10.1f}{r['outage_max_error_m']:>10.1f}  "
            f"{r['odometry_only_outage_median_error_m']:>9.1f}{r['odometry_only_outage_p95_error_m']:>10.1f}"
            f"{r['odometry_only_outage_max_error_m']:>9.1f}{r['median_heading_error_deg']:>8.1f}"
            f"{100 * r['fix_rate']:>7.1f}{r['fps'] or 0:>6.1f}"
        )
    lines.append("-" * len(head))
    lines.append(
        f"pooled over {total['drives']} drives ({total['outage_frames']} outage frames): vision+odometry median"
        f" {total['outage_median_error_m']} m, p95 {total['outage_p95_error_m']} m; odometry only median"
        f" {total['odometry_only_outage_median_error_m']} m, p95 {total['odometry_only_outage_p95_error_m']} m;"
        f" target (median <= {TARGET_MEDIAN_M:g} m, p95 <= {TARGET_P95_M:g} m) {'MET' if total['target_met'] else 'NOT MET'}"
    )
    lines.append(
        f"vision+odometry below odometry only: p95 in {total['drives_vision_lower_p95']} of {total['drives']} drives,"
        f" median in {total['drives_vision_lower_median']}"
    )
    lines.append("")
    lines.append(f"error over time since GPS was lost (median per {BIN_S:g} s bin, metres):")
    for r in rows:
        eo = r["error_over_time_m"]
        fmt = lambda v: "    -" if v is None else f"{v:5.1f}"  # noqa: E731
        lines.append(
            f"  {r['town']:<15} {r['seed']:>2} vision+odometry " + " ".join(fmt(v) for v in eo["vision_and_odometry"])
        )
        lines.append(f"  {'':<15} {'':>2} odometry only   " + " ".join(fmt(v) for v in eo["odometry_only"]))
    return "\n".join([*lines, "", *notes])


def plot(rows: list[dict], outages: list[tuple[float, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(10, 5))
    for r, (a, b) in zip(rows, outages):
        m = (r["_t"] >= a) & (r["_t"] < b)
        ax.plot(r["_t"][m] - a, r["_err"][m], color="red", lw=0.9, alpha=0.7)
        ax.plot(r["_t"][m] - a, r["_base"][m], color="goldenrod", lw=0.9, ls="--", alpha=0.7)
    ax.plot([], [], color="red", label="odometry + vision")
    ax.plot([], [], color="goldenrod", ls="--", label="odometry only")
    ax.axhline(TARGET_MEDIAN_M, color="grey", lw=0.6, ls=":")
    ax.axhline(TARGET_P95_M, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("seconds since GPS was lost")
    ax.set_ylabel("position error (m)")
    ax.set_title(f"GPS-denied drives in held-out towns ({len(rows)} drives)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one town, one 3-minute drive (< 1 minute)")
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--model", help="export folder (default: the car demo model, models/lite0-bev-s96)")
    parser.add_argument("--note", default="", help="a line for the results (where a --model came from)")
    parser.add_argument("--towns", nargs="+", default=None, help=f"default {' '.join(TOWNS)}")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="drives per town (default 1 to 6)")
    args = parser.parse_args(argv)

    from edge_geoloc.sim.demo import DEMO_MODEL, find_export
    from edge_geoloc.sim.scenario import car_camera

    t0 = time.perf_counter()
    try:
        model = find_export(args.model or DEMO_MODEL)
    except FileNotFoundError as err:
        print(f"navigation: {err}; nothing to measure")
        return 0
    load_before = os.getloadavg()[0]
    if args.quick:
        towns, seeds, duration, outage, rate = args.towns or TOWNS[:1], args.seeds or [1], 180.0, (30.0, 150.0), 1.0
    else:
        towns, seeds, duration, outage, rate = (
            args.towns or TOWNS,
            args.seeds or [1, 2, 3, 4, 5, 6],
            420.0,
            (60.0, 360.0),
            2.0,
        )
    cam = car_camera(model)
    rows = []
    for town in towns:
        for seed in seeds:
            row = run_drive(town, seed, duration, outage, rate, model, cam)
            rows.append(row)
            print(
                f"  {town} seed {seed}: outage median {row['outage_median_error_m']} m (odometry only"
                f" {row['odometry_only_outage_median_error_m']} m) ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    total = pooled(rows)
    notes = [
        f"model {model.relative_to(ROOT) if model.is_relative_to(ROOT) else model}; drives of {duration:g} s,"
        f" GPS denied {outage[0]:g}..{outage[1]:g} s, camera {rate:g} Hz (360-degree panorama"
        f" {cam.height_px} x {cam.width_px}, {cam.height_m:g} m up),"
        " odometry 10 Hz; loop budget 100 ms",
        load_line(load_before),
        *([args.note] if args.note else []),
    ]
    table = format_table(rows, total, notes)
    print("\n" + table)
    out = args.json or RESULTS
    clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
    write_json(out, clean, notes, t0, quick=args.quick, pooled=total)
    if args.json is None and not args.quick:
        write_markdown(RESULTS.with_suffix(".md"), "GPS-denied navigation (benchmarks/navigation.py)", table)
        plot(rows, [outage] * len(rows), RESULTS.with_suffix(".png"))
    print(f"wrote {out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
