"""`edge-geoloc demo` and the ``synthetic:REGION.yaml`` source of `edge-geoloc run` (workstation wing;
registration imports nothing heavy). The synthetic source is a plug-in of the device's `run` command
(:func:`edge_geoloc.localize.cli.register_source`): rendered frames, the simulated GNSS (``--gps sim``),
the drive's odometry (``--odometry-sim``) and, for a drone camera, the simulated autopilot attitude."""

from __future__ import annotations

import argparse
from typing import Any

from edge_geoloc.localize.cli import RunInputs, register_source


def synthetic_inputs(args: argparse.Namespace, camera: Any, index: Any) -> RunInputs:
    """``--source synthetic:REGION.yaml``: a drive (or, with a drone camera, a flight) through the region."""
    from edge_geoloc.localize.odometry import Odometry
    from edge_geoloc.sim.flight import make_uav_scenario
    from edge_geoloc.sim.gnss import SimulatedGps
    from edge_geoloc.sim.scenario import Trip, car_camera, load_world, make_scenario

    uav = getattr(camera, "kind", None) == "uav"
    trip = Trip(args.seed, args.duration, tuple(args.outage) if args.outage else None, args.rate_hz)
    world = load_world(args.source[len("synthetic:") :])
    sc = (make_uav_scenario if uav else make_scenario)(world, trip, camera=camera or car_camera(args.model))
    return RunInputs(
        sc.source(),
        prior=SimulatedGps(sc.gps) if args.gps == "sim" else None,
        odometry=Odometry.from_log(sc.odometry) if args.odometry_sim else None,
        attitude=sc.attitude(),
        start_utc=sc.gps.start_utc,
    )


def _demo(args: argparse.Namespace) -> int:
    uav = args.vehicle == "uav"
    if (args.mavlink or args.log) and not uav:
        raise SystemExit("edge-geoloc demo: --mavlink and --log need --vehicle uav (a car has no autopilot)")
    from edge_geoloc.sim.demo import DemoOptions, run_demo
    from edge_geoloc.sim.scenario import Trip

    # Per vehicle: output folder, camera rate and budget defaults (a drone's frame encodes several patches).
    out_default, rate, budget = ("out/demo-uav", 1.0, 500.0) if uav else ("out/demo", 2.0, 100.0)
    options = DemoOptions(
        out=out_default if uav and args.out == "out/demo" else args.out,
        model=args.model,
        region=args.region,
        trip=Trip(args.seed, args.duration, tuple(args.outage), args.rate_hz or rate),
        budget_ms=budget if args.budget_ms is None else args.budget_ms or None,
        workers=args.workers,
        map_cache=args.map_cache,
        progress=not args.quiet,
    )
    if not uav:
        run_demo(options)
        return 0
    from edge_geoloc.sim.uav_demo import UavFlight, run_uav_demo

    run_uav_demo(
        options, UavFlight(args.altitude, mavlink=args.mavlink, mavlink_speed=args.mavlink_speed, log=args.log)
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    register_source("synthetic:", synthetic_inputs)
    r = sub.choices["run"]  # the device's run command: the synthetic source's own options
    r.add_argument("--odometry-sim", action="store_true", help="synthetic source: use the drive's odometry")
    r.add_argument("--seed", type=int, default=0, help="synthetic source: the drive")
    r.add_argument("--duration", type=float, default=300.0, help="synthetic source: seconds")
    r.add_argument("--outage", type=float, nargs=2, metavar=("START", "END"), help="synthetic source: GPS outage")

    d = sub.add_parser("demo", help="GPS-denied drive through a synthetic town with the demo model; report + plots")
    d.add_argument("--out", default="out/demo", help="report folder")
    d.add_argument("--model", help="export folder (default: the car's models/lite0-bev-s96, the UAV's models/demo)")
    d.add_argument("--region", help="region YAML (default: maps/demo-suburb.yaml)")
    d.add_argument("--duration", type=float, default=420.0, help="seconds of driving")
    d.add_argument("--outage", type=float, nargs=2, default=(60.0, 360.0), metavar=("START", "END"), help="GPS outage")
    d.add_argument("--rate-hz", type=float, default=None, help="camera frames per second (default: car 2, uav 1)")
    d.add_argument("--vehicle", choices=("car", "uav"), default="car", help="a car with a 360 camera, or a drone")
    d.add_argument("--altitude", type=float, default=120.0, help="uav: metres above ground")
    autopilot = d.add_mutually_exclusive_group()  # where the UAV's autopilot data come from (default: the logs)
    autopilot.add_argument(
        "--mavlink",
        action="store_true",
        help="uav: the sensors come from a simulated autopilot over MAVLink (loopback UDP), fixes go back as GPS_INPUT",
    )
    log_help = "uav: attitude, height and GNSS replayed from the flight written as a PX4 ULog (ulg) or ArduPilot"
    autopilot.add_argument(
        "--log", choices=("ulg", "bin"), help=log_help + " DataFlash log (bin), as `run --log` reads"
    )
    d.add_argument("--mavlink-speed", type=float, default=4.0, help="uav --mavlink: times real time the flight plays")
    d.add_argument("--seed", type=int, default=0, help="the drive, its sensors and the appearance")
    d.add_argument(
        "--budget-ms", type=float, default=None, help="per-frame budget; 0: none (default: car 100, uav 500)"
    )
    d.add_argument("--workers", type=int, default=2, help="processes rendering frames and building the map")
    d.add_argument("--map-cache", default=None, help="where map bundles are cached (default: maps/build)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=_demo)
