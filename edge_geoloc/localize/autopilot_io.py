"""`edge-geoloc run`'s autopilot options: ``--mavlink`` (attitude, height, GNSS, odometry from the flight
controller), ``--mavlink-out`` (fixes back to it as GPS_INPUT / ODOMETRY / VISION_POSITION_ESTIMATE) and ``--log`` (a PX4 ULog or
ArduPilot DataFlash log as the same sources, for replays). Kept apart from cli.py so that the command's
other options do not grow around it; nothing here is imported until one of these options is given.

Precedence, per stream: an explicit CSV (``--attitude``, ``--odometry``) or ``--gps`` other than ``none``,
then ``--log``, then ``--mavlink``, then what a source plug-in gives.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class AutopilotStreams:
    prior: Any = None
    odometry: Any = None
    attitude: Any = None
    outputs: list[Any] = field(default_factory=list)


def add_arguments(r: argparse.ArgumentParser) -> None:
    g = r.add_argument_group("autopilot (MAVLink, flight logs)")
    g.add_argument(
        "--mavlink",
        help="the flight controller: udp:HOST:PORT (listen), udpout:HOST:PORT, tcp:HOST:PORT, serial:DEVICE[:BAUD],"
        " or a .tlog to replay: attitude, height, GNSS and odometry (see edge_geoloc/localize/mavlink.py)",
    )
    g.add_argument("--mavlink-sysid", type=int, help="the autopilot's system id (default: the first autopilot heard)")
    g.add_argument(
        "--mavlink-out",
        nargs="?",
        const="same",
        help="send fixes to the autopilot (GPS_INPUT): on the --mavlink connection (no value) or another one",
    )
    g.add_argument(
        "--mavlink-out-messages",
        default="gps_input",
        help="comma-separated: gps_input, odometry, vision_position_estimate (default gps_input)",
    )
    g.add_argument("--mavlink-rate-hz", type=float, default=10.0, help="at most this many fixes a second (10)")
    g.add_argument("--mavlink-max-sigma-m", type=float, default=30.0, help="a worse fix goes out as 'no fix' (30)")
    g.add_argument(
        "--mavlink-gps-id", type=int, default=0, help="GPS_INPUT gps_id: 0 GPS_TYPE, 1 GPS2_TYPE (ArduPilot)"
    )
    g.add_argument(
        "--mavlink-speed", choices=("airspeed", "groundspeed"), default="airspeed", help="VFR_HUD field for odometry"
    )
    g.add_argument("--log", help="a PX4 .ulg or ArduPilot .bin flight log: attitude, height and GNSS (replays)")
    g.add_argument(
        "--log-offset-s", type=float, default=0.0, help="added to the log's (or .tlog's) seconds since its start"
    )


def open_autopilot(args: argparse.Namespace, crs: Any, source: Any) -> AutopilotStreams | None:
    """The streams and outputs the autopilot options ask for (None: none was given). Errors are one line."""
    if not (args.mavlink or args.log or args.mavlink_out):
        return None
    streams = AutopilotStreams()
    t0 = getattr(source, "_t0", None) or time.monotonic()  # the live source's clock: frames and events alike

    def clock() -> float:
        return time.monotonic() - t0

    link = None
    if args.mavlink:
        from edge_geoloc.localize.mavlink import MavlinkConfig, MavlinkLink

        cfg = MavlinkConfig(sysid=args.mavlink_sysid, speed=args.mavlink_speed, log_offset_s=args.log_offset_s)
        link = MavlinkLink(args.mavlink, crs, clock=clock, config=cfg)
        streams.prior, streams.odometry, streams.attitude = link.prior, link.odometry, link.attitude
        print(f"MAVLink: {link.summary()['autopilot']} on {args.mavlink}", file=sys.stderr)
    if args.log:
        from edge_geoloc.localize.flightlog import open_flight_log

        flight = open_flight_log(args.log, crs, args.log_offset_s)
        streams.prior, streams.attitude = flight.prior, flight.attitude
        print(f"flight log: {flight.summary}", file=sys.stderr)
    if args.mavlink_out:
        from edge_geoloc.localize.mavlink import MavlinkConfig, MavlinkLink
        from edge_geoloc.localize.mavlink_out import MavlinkOutput, OutputConfig

        config = OutputConfig(
            messages=tuple(m.strip() for m in args.mavlink_out_messages.split(",") if m.strip()),
            rate_hz=args.mavlink_rate_hz,
            max_sigma_m=args.mavlink_max_sigma_m,
            gps_id=args.mavlink_gps_id,
        )
        if args.mavlink_out == "same":
            if link is None or link.replay:
                raise ValueError("--mavlink-out without a value sends on the --mavlink connection: give a live one")
            streams.outputs.append(MavlinkOutput(link, config, clock=clock))
        else:
            out_link = MavlinkLink(
                args.mavlink_out,
                crs,
                clock=clock,
                config=MavlinkConfig(sysid=args.mavlink_sysid),
                option="--mavlink-out",
            )
            streams.outputs.append(MavlinkOutput(out_link, config, clock=clock, owns_link=True))
    return streams
