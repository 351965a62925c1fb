"""`edge-geoloc run`: the on-device loop from the command line (registration imports nothing heavy).

Frame sources are the device's own (camera, video, stream, GStreamer, image folder); another wing may
plug in a source by prefix (:func:`register_source`: the simulation adds ``synthetic:REGION.yaml``
with its simulated GNSS, odometry and attitude), so the device wing never imports it.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge_geoloc.config import strict_json
from edge_geoloc.localize.autopilot_io import add_arguments as add_autopilot_arguments
from edge_geoloc.localize.autopilot_io import open_autopilot


@dataclass
class RunInputs:
    """What a source plug-in hands the loop: frames and the event streams that go with them."""

    source: Any  # a FrameSource
    prior: Any = None  # a Prior (GNSS); None: as --gps says
    odometry: Any = None
    attitude: Any = None
    start_utc: datetime | None = None


# prefix of --source -> function(args, camera or None, map index) -> RunInputs
SOURCE_PLUGINS: dict[str, Callable[[argparse.Namespace, Any, Any], RunInputs]] = {}


def register_source(prefix: str, open_inputs: Callable[[argparse.Namespace, Any, Any], RunInputs]) -> None:
    """Let ``--source PREFIX...`` be opened by ``open_inputs`` (registered at CLI start-up, imports nothing)."""
    SOURCE_PLUGINS[prefix] = open_inputs


def _loop_config(args: argparse.Namespace, base: Any) -> Any:
    """The --config file's loop settings with the command line's on top."""
    over: dict[str, Any] = {}
    if args.budget_ms is not None:
        over["budget_ms"] = args.budget_ms if args.budget_ms > 0 else None
    if args.k is not None:
        over["k"] = args.k
    if args.heading_every is not None:
        over["heading_every"] = args.heading_every
    if args.trust_uncalibrated:
        over["trust_uncalibrated"] = True
    return replace(base, **over)


def _inputs(args: argparse.Namespace, camera: Any, index: Any) -> RunInputs:
    from edge_geoloc.localize.gnss import open_prior
    from edge_geoloc.localize.sources import open_source

    plugin = next((f for prefix, f in SOURCE_PLUGINS.items() if args.source.startswith(prefix)), None)
    if plugin is not None:
        inputs = plugin(args, camera, index)
        if inputs.prior is None:
            inputs.prior = open_prior(args.gps, index.crs, args.gps_offset_s)
        return inputs
    if args.gps == "sim":
        raise ValueError("--gps sim needs a synthetic source (--source synthetic:REGION.yaml)")
    source = open_source(args.source, rate_hz=args.rate_hz, retries=args.retries)
    t0 = getattr(source, "_t0", time.monotonic())
    prior = open_prior(args.gps, index.crs, args.gps_offset_s, clock=lambda: time.monotonic() - t0)
    return RunInputs(source, prior, start_utc=datetime.now(timezone.utc) if source.live else None)


def _run(args: argparse.Namespace) -> int:
    from edge_geoloc.cameras.street import CameraModel
    from edge_geoloc.cameras.uav import UavCamera, is_uav_camera
    from edge_geoloc.localize.attitude import AttitudeLog
    from edge_geoloc.localize.loop import Localizer
    from edge_geoloc.localize.odometry import Odometry
    from edge_geoloc.localize.outputs import FixWriter, NmeaOutput
    from edge_geoloc.localize.run import format_summary, open_models, run_loop
    from edge_geoloc.localize.settings import load_run_config
    from edge_geoloc.localize.sources import Capture

    uav = is_uav_camera(args.camera)  # a drone camera: the UAV vision stage (edge_geoloc/localize/vision/uav.py)
    camera = UavCamera.load(args.camera) if uav else CameraModel.load(args.camera) if args.camera else CameraModel()
    settings = load_run_config(args.config)
    config = _loop_config(args, settings.loop)
    branch = "drone" if uav else "street"
    encoder, index, offset = open_models(
        args.model, args.map, backend=args.backend, threads=args.threads, branch=branch
    )
    inputs = _inputs(args, camera if args.camera else None, index)
    problem = getattr(inputs.prior, "problem", None)  # a GNSS log with nothing usable in it (gnss.py)
    if problem:
        if args.strict:
            print(f"{problem} (--strict: refused)", file=sys.stderr)
            inputs.prior.close()
            return 2
        print(f"warning: {problem}", file=sys.stderr)
    odometry = Odometry.from_csv(args.odometry) if args.odometry else inputs.odometry
    attitude = AttitudeLog.from_csv(args.attitude) if args.attitude else inputs.attitude
    auto = open_autopilot(args, index.crs, inputs.source)  # --mavlink, --mavlink-out, --log (autopilot_io.py)
    if auto is not None:
        odometry = odometry if args.odometry else auto.odometry or odometry
        attitude = attitude if args.attitude else auto.attitude or attitude
        if auto.prior is not None and args.gps == "none":
            inputs.prior.close()
            inputs.prior = auto.prior
    start_utc = datetime.fromisoformat(args.start_utc) if args.start_utc else inputs.start_utc
    if uav and attitude is None:
        print("no --attitude: every UAV frame will be skipped (attitude missing)", file=sys.stderr)
    localizer = Localizer(
        encoder, index, camera, config, settings.filter, offset, start_utc, stage_config=settings.uav if uav else None
    )
    writer = FixWriter(args.out)
    nmea = NmeaOutput(args.nmea_out) if args.nmea_out else None
    capture = Capture(inputs.source, mode=args.mode, realtime=args.realtime)
    print(
        f"localizing {inputs.source.name} on {args.map} ({encoder!r}); Ctrl-C stops and prints the summary",
        file=sys.stderr,
    )
    summary = run_loop(
        localizer,
        capture,
        inputs.prior,
        odometry,
        writer,
        nmea,
        max_frames=args.max_frames,
        attitude=attitude,
        outputs=auto.outputs if auto is not None else (),
    )
    print(format_summary(summary), file=sys.stderr)
    if args.summary_json:
        Path(args.summary_json).write_text(strict_json(summary, indent=1) + "\n")
    if summary["ended_by"] == "interrupted":
        return 130
    return 1 if summary["ended_by"] in ("source lost", "source stalled") else 0


def register(sub: argparse._SubParsersAction) -> None:
    r = sub.add_parser("run", help="the on-device localization loop: camera + map (+ GPS) -> fixes")
    r.add_argument("--map", required=True, help="map bundle folder (edge-geoloc map build)")
    r.add_argument("--model", required=True, help="export folder with model.yaml (the street encoder)")
    r.add_argument(
        "--source",
        required=True,
        help="camera index, video file, rtsp:// URL, GStreamer pipeline ('... ! appsink'), image folder,"
        " or a plug-in's (the workstation's synthetic:REGION.yaml)",
    )
    r.add_argument(
        "--camera", help="camera model YAML (default: a 360-degree panorama facing forward; kind: uav for a drone)"
    )
    r.add_argument("--config", help="loop.yaml: loop, filter and uav settings (edge_geoloc/localize/settings.py)")
    r.add_argument("--attitude", help="UAV: autopilot CSV t,roll_deg,pitch_deg,yaw_deg,height_m (frames' clock)")
    r.add_argument(
        "--gps",
        default="none",
        help="none, an NMEA log file, udp://HOST:PORT, serial:DEVICE[:BAUD] (or what a source plug-in offers)",
    )
    r.add_argument("--gps-offset-s", type=float, default=0.0, help="added to an NMEA log's times (replays)")
    r.add_argument(
        "--strict",
        action="store_true",
        help="refuse (exit 2) a --gps log with no valid NMEA sentence, only bad ones at its start, or no fix",
    )
    r.add_argument(
        "--trust-uncalibrated",
        action="store_true",
        help="accept vision fixes before the mixture was fitted against GPS (a GPS-denied start; default: refused)",
    )
    r.add_argument("--odometry", help="odometry CSV: t,speed_mps,yaw_rate_dps (on the frames' clock)")
    r.add_argument("--budget-ms", type=float, help="per-frame budget; 0: none (default: --config's, 100)")
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
    r.add_argument("--k", type=int, help="candidates per search (default: --config's, 8)")
    r.add_argument("--heading-every", type=int, help="frames between heading measurements, 0: never (default 1)")
    add_autopilot_arguments(r)
    r.set_defaults(func=_run)
