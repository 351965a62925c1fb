"""Opening a MAVLink connection to the autopilot (``--mavlink``, ``--mavlink-out``): pymavlink set up for MAVLink 2
with the common dialect, the connection strings the CLI accepts, and one-line errors naming the connection
(a serial port that does not exist, a UDP port another program holds, a refused TCP connection)."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

COMPANION_COMPONENT = 191  # MAV_COMP_ID_ONBOARD_COMPUTER


class MavlinkError(RuntimeError):
    """A MAVLink connection that cannot be used, in one line naming it."""


def pymavlink() -> Any:
    """pymavlink's ``mavutil`` speaking MAVLink 2 with the common dialect (pymavlink picks both from the
    environment at import: set here before it is imported; a v1 autopilot's frames still parse)."""
    os.environ.setdefault("MAVLINK_DIALECT", "common")
    os.environ["MAVLINK20"] = "1"
    try:
        from pymavlink import mavutil
    except ImportError:
        raise MavlinkError("MAVLink needs pymavlink (pip install 'edge-geoloc[mavlink]')") from None
    if mavutil.mavlink.WIRE_PROTOCOL_VERSION != "2.0":  # imported before, in MAVLink 1
        mavutil.set_dialect(mavutil.current_dialect)
    return mavutil


def _host_port(text: str, spec: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise MavlinkError(f"{option} {spec}: expected HOST:PORT after the scheme, got {text!r}")
    return host or "0.0.0.0", int(port)


def _check_udp_free(host: str, port: int, spec: str, option: str) -> None:
    """pymavlink binds with SO_REUSEADDR, which on Linux can share a port silently: probe without it."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.bind((host, port))
    except OSError as err:
        if err.errno == errno.EADDRINUSE:
            raise MavlinkError(
                f"{option} {spec}: UDP port {port} on {host} is already in use by another program"
                " (MAVProxy, mavlink-router, a ground station?): stop it or pick another port"
            ) from None
        raise MavlinkError(f"{option} {spec}: cannot listen on {host}:{port}: {err.strerror}") from None
    finally:
        probe.close()


def open_connection(spec: str, option: str = "--mavlink", component: int = COMPANION_COMPONENT) -> Any:
    """A pymavlink connection for ``spec``:

    ``udp:HOST:PORT`` / ``udpin:HOST:PORT`` (listen: the autopilot or a router sends here; answers go to
    whoever sent), ``udpout:HOST:PORT`` (send first), ``tcp:HOST:PORT`` (connect), ``tcpin:HOST:PORT``,
    ``serial:DEVICE[:BAUD]`` (a TELEM port; default 57600 baud), or a ``.tlog`` file (replay)."""
    mavutil = pymavlink()
    text = spec.strip()
    scheme, _, rest = text.partition(":")
    try:
        if scheme in ("udp", "udpin"):
            host, port = _host_port(rest, spec, option)
            _check_udp_free(host, port, spec, option)
            return mavutil.mavlink_connection(f"udpin:{host}:{port}", source_component=component)
        if scheme == "udpout":
            host, port = _host_port(rest, spec, option)
            return mavutil.mavlink_connection(f"udpout:{host}:{port}", source_component=component)
        if scheme in ("tcp", "tcpin"):
            host, port = _host_port(rest, spec, option)
            return mavutil.mavlink_connection(f"{scheme}:{host}:{port}", source_component=component, retries=1)
        if scheme == "serial":
            device, sep, baud = rest.rpartition(":")
            device, baud = (device, int(baud)) if sep and baud.isdigit() else (rest, 57600)
            if not device:
                raise MavlinkError(f"{option} {spec}: expected serial:DEVICE[:BAUD]")
            if not os.path.exists(device):
                raise MavlinkError(
                    f"{option} {spec}: serial port {device} does not exist (wiring, or the device name: ls /dev/ttyTHS*"
                    " /dev/ttyUSB* /dev/ttyACM*)"
                )
            return mavutil.mavlink_connection(device, baud=baud, source_component=component)
        if text.lower().endswith(".tlog"):
            if not Path(text).is_file():
                raise MavlinkError(f"{option} {spec}: no such telemetry log")
            return mavutil.mavlink_connection(text, notimestamps=False)
    except MavlinkError:
        raise
    except (OSError, ValueError) as err:  # pyserial's SerialException is an OSError; refused TCP too
        raise MavlinkError(f"{option} {spec}: cannot open: {err}") from None
    raise MavlinkError(
        f"{option} {spec}: not a MAVLink connection (udp:HOST:PORT, udpout:HOST:PORT, tcp:HOST:PORT,"
        " serial:DEVICE[:BAUD] or a .tlog file)"
    )
