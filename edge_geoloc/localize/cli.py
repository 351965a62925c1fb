"""`edge-geoloc run` (the on-device loop) and `edge-geoloc demo` (registration imports nothing heavy)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from edge_geoloc.localize.camera import CameraModel
    from edge_geoloc.localize.outputs import FixWriter, NmeaOutput
    from edge_geoloc.localize.pipeline import Localizer, LoopConfig
    from edge_geoloc.localize.prior import Odometry, open_prior
    from edge_geoloc.localize.run import format_summary, open_models, run_loop
    from edge_geoloc.localize.sources import Capture, open_source
    from edge_geoloc.localize.uav_camera import UavCamera, is_uav_camera

    uav = is_uav_camera(args.camera)  # a drone camera: the UAV loop (edge_geoloc/localize/uav.py)
    camera = UavCamera.load(args.camera) if uav else CameraModel.load(args.camera) if args.camera else CameraModel()
    config = LoopConfig(
        budget_ms=args.budget_ms if args.budget_ms > 0 else None,
        k=args.k,
        heading_every=args.heading_every,
    )
    if uav:
        from edge_geoloc.localize.uav import AttitudeLog, UavLocalizer, open_uav_models

        encoder, index = open_uav_models(args.model, args.map, backend=args.backend, threads=args.threads)
        offset, attitude = None, AttitudeLog.from_csv(args.attitude) if args.attitude else None
    else:
        encoder, index, offset = open_models(args.model, args.map, backend=args.backend, threads=args.threads)
    start_utc = datetime.fromisoformat(args.start_utc) if args.start_utc else None
    odometry = Odometry.from_csv(args.odometry) if args.odometry else None
    if args.source.startswith("synthetic:"):
        from edge_geoloc.localize.prior import SimulatedGps
        from edge_geoloc.localize.scenario import DEMO_CAMERA, load_world, make_scenario

        if uav:
            from edge_geoloc.localize.uav_scenario import make_uav_scenario as make_scenario
        sc = make_scenario(
            load_world(args.source[len("synthetic:") :]),
            seed=args.seed,
            duration_s=args.duration,
            outage=tuple(args.outage) if args.outage else None,
            rate_hz=args.rate_hz,
            camera=camera if args.camera else DEMO_CAMERA,
        )
        if uav:
            attitude = attitude or sc.attitude()
        source = sc.source()
        prior = SimulatedGps(sc.gps) if args.gps == "sim" else open_prior(args.gps, index.crs, args.gps_offset_s)
        odometry = odometry or (Odometry.from_log(sc.odometry) if args.odometry_sim else None)
        start_utc = start_utc or sc.gps.start_utc
    else:
        if args.gps == "sim":
            raise ValueError("--gps sim needs a synthetic source (--source synthetic:REGION.yaml)")
        source = open_source(args.source, rate_hz=args.rate_hz, retries=args.retries)
        t0 = getattr(source, "_t0", time.monotonic())
        prior = open_prior(args.gps, index.crs, args.gps_offset_s, clock=lambda: time.monotonic() - t0)
        if start_utc is None and source.live:
            start_utc = datetime.now(timezone.utc)
    if uav:
        if attitude is None:
            print("no --attitude: every UAV frame will be skipped (attitude missing)", file=sys.stderr)
        localizer = UavLocalizer(encoder, index, camera, attitude, config, start_utc=start_utc)
    else:
        localizer = Localizer(encoder, index, camera, config, offset=offset, start_utc=start_utc)
    writer = FixWriter(args.out)
    nmea = NmeaOutput(args.nmea_out) if args.nmea_out else None
    capture = Capture(source, mode=args.mode, realtime=args.realtime)
    print(f"localizing {source.name} on {args.map} ({encoder!r}); Ctrl-C stops and prints the summary", file=sys.stderr)
    summary = run_loop(localizer, capture, prior, odometry, writer, nmea, max_frames=args.max_frames)
    print(format_summary(summary), file=sys.stderr)
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary, indent=1) + "\n")
    if summary["ended_by"] == "interrupted":
        return 130
    return 1 if summary["ended_by"] in ("source lost", "source stalled") else 0


def _demo(args: argparse.Namespace) -> int:
    uav = args.vehicle == "uav"
    if uav:
        from edge_geoloc.localize.uav_demo import run_uav_demo as run
    else:
        from edge_geoloc.demo import run_demo as run
    # Per vehicle: output folder, camera rate and budget defaults (a drone's frame encodes several patches).
    out_default, rate, budget = ("out/demo-uav", 1.0, 500.0) if uav else ("out/demo", 2.0, 100.0)
    run(
        out=out_default if uav and args.out == "out/demo" else args.out,
        model=args.model,
        region=args.region,
        duration_s=args.duration,
        outage=tuple(args.outage),
        rate_hz=args.rate_hz or rate,
        seed=args.seed,
        budget_ms=budget if args.budget_ms is None else args.budget_ms or None,
        workers=args.workers,
        map_cache=args.map_cache,
        progress=not args.quiet,
        **({"altitude_m": args.altitude} if uav else {}),
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="the on-device localization loop: camera + map (+ GPS) -> fixes")
    r.add_argument("--map", required=True, help="map bundle folder (edge-geoloc map build)")
    r.add_argument("--model", required=True, help="export folder with model.yaml (the street encoder)")
    r.add_argument(
        "--source",
        required=True,
        help="camera index, video file, rtsp:// URL, GStreamer pipeline ('... ! appsink'), image folder,"
        " or synthetic:REGION.yaml",
    )
    r.add_argument(
        "--camera", help="camera model YAML (default: a 360-degree panorama facing forward; kind: uav for a drone)"
    )
    r.add_argument("--attitude", help="UAV: autopilot CSV t,roll_deg,pitch_deg,yaw_deg,height_m (frames' clock)")
    r.add_argument(
        "--gps",
        default="none",
        help="none, an NMEA log file, udp://HOST:PORT, serial:DEVICE[:BAUD], or sim (synthetic)",
    )
    r.add_argument("--gps-offset-s", type=float, default=0.0, help="added to an NMEA log's times (replays)")
    r.add_argument("--odometry", help="odometry CSV: t,speed_mps,yaw_rate_dps (on the frames' clock)")
    r.add_argument("--odometry-sim", action="store_true", help="use the synthetic drive's odometry")
    r.add_argument("--budget-ms", type=float, default=100.0, help="per-frame budget; 0: none")
    r.add_argument("--out", default="-", help="JSON Lines fixes ('-': stdout)")
    r.add_argument("--nmea-out", help="GGA/RMC/HDT per fix to udp://HOST:PORT, serial:DEVICE[:BAUD] or a file")
    r.add_argument("--summary-json", help="also write the summary as JSON here")
    r.add_argument(
        "--mode", choices=("latest", "lockstep"), help="capture: latest frame wins (live default) or every frame"
    )
    r.add_argument("--realtime", action="store_true", help="replay a file or folder at its own pace (as if live)")
    r.add_argument("--max-frames", type=int, help="stop after this many frames")
    r.add_argument(
        "--rate-hz", type=float, default=10.0, help="frame rate of a folder without times / of synthetic frames"
    )
    r.add_argument("--retries", type=int, default=5, help="reopen attempts when a live source stops delivering")
    r.add_argument("--start-utc", help="UTC of t = 0 (ISO 8601) for fix times; live sources use the clock")
    r.add_argument("--backend", default="auto", help="auto, tensorrt, onnxruntime-cuda, onnxruntime")
    r.add_argument("--threads", type=int, help="ONNX Runtime threads (default: cores, at most 4)")
    r.add_argument("--k", type=int, default=8, help="candidates per search")
    r.add_argument("--heading-every", type=int, default=1, help="frames between heading measurements (0: never)")
    r.add_argument("--seed", type=int, default=0, help="synthetic source: the drive")
    r.add_argument("--duration", type=float, default=300.0, help="synthetic source: seconds")
    r.add_argument("--outage", type=float, nargs=2, metavar=("START", "END"), help="synthetic source: GPS outage")
    r.set_defaults(func=_run)

    d = sub.add_parser("demo", help="GPS-denied drive through a synthetic town with the demo model; report + plots")
    d.add_argument("--out", default="out/demo", help="report folder")
    d.add_argument("--model", help="export folder (default: the committed demo model in models/demo)")
    d.add_argument("--region", help="region YAML (default: maps/demo-suburb.yaml)")
    d.add_argument("--duration", type=float, default=420.0, help="seconds of driving")
    d.add_argument("--outage", type=float, nargs=2, default=(60.0, 360.0), metavar=("START", "END"), help="GPS outage")
    d.add_argument("--rate-hz", type=float, default=None, help="camera frames per second (default: car 2, uav 1)")
    d.add_argument("--vehicle", choices=("car", "uav"), default="car", help="a car with a 360 camera, or a drone")
    d.add_argument("--altitude", type=float, default=120.0, help="uav: metres above ground")
    d.add_argument("--seed", type=int, default=0, help="the drive, its sensors and the appearance")
    d.add_argument(
        "--budget-ms", type=float, default=None, help="per-frame budget; 0: none (default: car 100, uav 500)"
    )
    d.add_argument("--workers", type=int, default=2, help="processes rendering frames and building the map")
    d.add_argument("--map-cache", default=None, help="where map bundles are cached (default: maps/build)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)
