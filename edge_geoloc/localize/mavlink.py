"""The autopilot over MAVLink as the loop's event source: attitude, height above ground, GNSS and odometry.

pymavlink is the codec (the reference implementation: no MAVLink packing here). :class:`MavlinkLink`
opens ``--mavlink`` (see :func:`open_connection`), waits for the autopilot's heartbeat, reads in a
thread and turns messages into the events the loop already polls (``.attitude``, ``.odometry``,
``.prior``), each stamped on the loop's clock:

- ``ATTITUDE`` (``ATTITUDE_QUATERNION`` when no ATTITUDE comes) -> attitude samples (roll, pitch, yaw
  clockwise from true north) with the height above ground that is best at that moment;
- height above ground, in this order: a downward ``DISTANCE_SENSOR`` reading inside its own valid range
  (tilt-corrected; it measures the ground under the drone), ``ALTITUDE.altitude_terrain`` (the autopilot's
  own terrain-relative estimate), then ``GLOBAL_POSITION_INT.relative_alt`` (above home: right only over
  terrain as high as home; the summary counts which one was used);
- ``GPS_RAW_INT`` (``GPS2_RAW`` while the first has no fix) -> the GNSS prior: fix type, ``h_acc`` or else
  ``eph`` as HDOP -> sigma, satellites, course and speed; a fix type under 2 is the autopilot's GNSS-denied
  state (logged on each change, summed in the summary). Repeated epochs (a stream faster than the
  receiver) are dropped by their time stamp.
- ``VFR_HUD`` speed (``airspeed`` by default: what a drone still measures without GNSS) with the gyro's
  yaw rate (``ATTITUDE.yawspeed`` averaged until the next speed report) -> odometry samples.

Time: messages carry the autopilot's boot time; frames carry the companion's clock. :class:`ClockSync`
maps one to the other from ``TIMESYNC`` round trips (offset error <= round trip / 2) and, before any or
on a one-way link, from arrival times (the smallest arrival - boot time: late by the link's minimum
latency). The summary states the offset, its error bound and the method. A stream that stops is a gap
in the events: the UAV stage holds the last attitude, then counts the frames as skips ("attitude stale").

``--mavlink`` may also be a ``.tlog`` (a ground station's telemetry log: each message after its 8-byte
UNIX time stamp) for replays: its own arrival times, aligned with ``log_offset_s``.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_geoloc.cameras.uav import Attitude
from edge_geoloc.geo import MapCRS
from edge_geoloc.localize.gnss import GpsFix, Prior, sigma_from_hdop
from edge_geoloc.localize.odometry import OdometrySample

log = logging.getLogger(__name__)

COMPANION_COMPONENT = 191  # MAV_COMP_ID_ONBOARD_COMPUTER
UNKNOWN_U16 = 65535
# GPS_RAW_INT fix type -> GGA quality (the prior's UERE table): 2D/3D 1, DGPS 2, RTK float 5, RTK fixed 4, PPP 1.
FIX_TO_QUALITY = {2: 1, 3: 1, 4: 2, 5: 5, 6: 4, 7: 1, 8: 1}


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


@dataclass(frozen=True)
class MavlinkConfig:
    sysid: int | None = None  # the autopilot's system id (None: the first autopilot heartbeat's)
    wait_heartbeat_s: float = 10.0  # at open; 0: do not wait
    speed: str = "airspeed"  # VFR_HUD field that gives odometry speed (airspeed or groundspeed)
    rangefinder_max_age_s: float = 0.5  # an older downward reading no longer counts
    timesync_every_s: float = 1.0
    heartbeat_every_s: float = 1.0
    link_lost_s: float = 3.0  # no heartbeat for this long: the link is lost (logged, counted)
    log_offset_s: float = 0.0  # .tlog replays: added to seconds since the log's first message
    sync_wait_s: float = 0.25  # a frame waits (real time) at most this long for the attitude stream to pass it

    def __post_init__(self) -> None:
        if self.speed not in ("airspeed", "groundspeed"):
            raise ValueError(f"MAVLink odometry speed must be airspeed or groundspeed, got {self.speed!r}")


class ClockSync:
    """The autopilot's boot clock -> the loop's clock (see the module docstring)."""

    def __init__(self, window: int = 64) -> None:
        self._arrivals: deque[float] = deque(maxlen=window * 8)
        self._syncs: deque[tuple[float, float]] = deque(maxlen=window)  # (round trip, offset)

    def add_arrival(self, boot_s: float, arrival: float) -> None:
        self._arrivals.append(arrival - boot_s)

    def add_timesync(self, sent: float, remote_boot_s: float, received: float) -> None:
        rtt = received - sent
        if rtt >= 0:
            self._syncs.append((rtt, (sent + received) / 2.0 - remote_boot_s))

    def offset(self) -> float | None:
        """Loop time - boot time, or None before any sample."""
        if self._syncs:
            return min(self._syncs)[1]
        return min(self._arrivals) if self._arrivals else None

    def to_loop(self, boot_s: float, arrival: float) -> float:
        off = self.offset()
        return arrival if off is None else min(boot_s + off, arrival)  # never after it arrived

    def summary(self) -> dict[str, Any]:
        if self._syncs:
            rtt, off = min(self._syncs)
            return {
                "method": "timesync",
                "offset_s": round(off, 6),
                "error_s": round(rtt / 2, 6),
                "samples": len(self._syncs),
            }
        if self._arrivals:
            d = sorted(self._arrivals)
            return {
                "method": "arrival (one-way: late by the link's minimum latency)",
                "offset_s": round(d[0], 6),
                "jitter_s": round(d[len(d) // 2] - d[0], 6),
                "samples": len(d),
            }
        return {"method": "none (no timed message)"}


class _Events:
    """Time-stamped events handed out by time (thread-safe), each stream's times kept non-decreasing."""

    def __init__(self) -> None:
        self._q: deque[tuple[float, Any]] = deque()
        self._lock = threading.Lock()
        self._last = -math.inf
        self.count = 0

    def push(self, t: float, item: Any) -> None:
        with self._lock:
            self._last = t = max(t, self._last)
            self._q.append((t, item))
            self.count += 1

    def take(self, t: float) -> list[Any]:
        with self._lock:
            out = []
            while self._q and self._q[0][0] <= t:
                out.append(self._q.popleft()[1])
            return out


class _AttitudeView:
    def __init__(self, events: _Events, link: MavlinkLink) -> None:
        self.events, self.link = events, link

    def poll(self, t: float) -> list[Attitude]:
        self.link.wait_until(t)
        return self.events.take(t)


class _OdometryView(_AttitudeView):
    def poll(self, t: float) -> list[OdometrySample]:  # type: ignore[override]
        self.link.wait_until(t)
        return self.events.take(t)


class _GnssView(Prior):
    """The GNSS prior; its stats are the whole link's summary, and closing it closes the link."""

    def __init__(self, link: MavlinkLink) -> None:
        self.link = link
        self.events = _Events()
        self.name = f"mavlink {link.spec}"

    def poll(self, t: float) -> list[GpsFix]:
        self.link.wait_until(t)
        return self.events.take(t)

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, **self.link.summary()}

    def close(self) -> None:
        self.link.close()


def quaternion_to_euler_deg(w: float, x: float, y: float, z: float) -> tuple[float, float, float]:
    """Aerospace Z-Y-X (roll, pitch, yaw) in degrees from a body-to-NED quaternion."""
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return math.degrees(roll), math.degrees(pitch), math.degrees(yaw)


class MavlinkLink:
    """One MAVLink connection to the autopilot: the event source (see the module docstring) and the way out
    for :class:`~edge_geoloc.localize.mavlink_out.MavlinkOutput`."""

    def __init__(
        self,
        spec: str,
        crs: MapCRS,
        clock: Callable[[], float] = time.monotonic,
        config: MavlinkConfig | None = None,
        option: str = "--mavlink",
        connection: Any = None,
    ) -> None:
        self.spec, self.crs, self.clock, self.cfg, self.option = spec, crs, clock, config or MavlinkConfig(), option
        self.mavutil = pymavlink()
        self.mav = self.mavutil.mavlink
        self.conn = connection if connection is not None else open_connection(spec, option)
        self.replay = spec.strip().lower().endswith(".tlog")
        self.sync = ClockSync()
        self._att, self._odo = _Events(), _Events()
        self.attitude, self.odometry = _AttitudeView(self._att, self), _OdometryView(self._odo, self)
        self.prior = _GnssView(self)
        self.counts: Counter[str] = Counter()
        self.heights: Counter[str] = Counter()
        self.other_systems: Counter[int] = Counter()
        self.sysid: int | None = self.cfg.sysid
        self.autopilot: str | None = None
        self.version: int | None = None  # 1 or 2: the autopilot's frames
        self.origin: tuple[float, float, float] | None = None  # GPS_GLOBAL_ORIGIN / HOME_POSITION (lat, lon, alt)
        self.last_attitude: Attitude | None = None
        self._send_lock = threading.Lock()
        self._heard = threading.Event()
        self._stop = threading.Event()
        self._closed = False
        self._range: tuple[float, float] | None = None  # (time, height)
        self._terrain: tuple[float, float] | None = None
        self._relative: tuple[float, float] | None = None
        self._att_t = -math.inf  # last ATTITUDE (quaternions only fill in without one)
        self._yaw_rates: list[float] = []
        self._prev_speed: tuple[float, float] | None = None
        self._gps_seen: dict[str, Any] = {}
        self._gps_fix: dict[str, bool] = {}
        self._denied_since: float | None = None
        self.denied_s = 0.0
        self._last_heartbeat: float | None = None
        self._lost = False
        self._pending_sync: dict[int, float] = {}
        self._t0_replay: float | None = None
        self.waited = 0  # frames that waited for the stream, and those that waited in vain
        self.wait_timeouts = 0
        if self.replay:
            self._read_all()
        else:
            if hasattr(self.conn, "port") and hasattr(self.conn.port, "setsockopt"):  # ride out a busy reader
                try:
                    self.conn.port.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
                except OSError:
                    pass
            self._thread = threading.Thread(target=self._run, name=f"mavlink {spec}", daemon=True)
            self._thread.start()
            if self.cfg.wait_heartbeat_s > 0:
                self.wait_for_autopilot(self.cfg.wait_heartbeat_s)

    # --- reading ------------------------------------------------------------------------------------

    def wait_for_autopilot(self, timeout_s: float) -> None:
        """Block until the autopilot's heartbeat; a clear error naming the link (and what was heard) else."""
        if self._heard.wait(timeout_s):
            return
        self.close()
        others = f"; heard only system(s) {sorted(self.other_systems)}" if self.other_systems else ""
        want = f"system {self.sysid}" if self.sysid is not None else "an autopilot"
        raise MavlinkError(
            f"{self.option} {self.spec}: no heartbeat from {want} within {timeout_s:g} s{others}"
            " (wiring, baud rate, the autopilot's MAVLink port settings, or --mavlink-sysid)"
        )

    def wait_until(self, t: float) -> None:
        """Hold a frame at ``t`` until the attitude stream has passed it (everything sent before that sample
        has been read too), at most ``sync_wait_s``: a busy reader thread must not make a frame see older
        events than its time; a stream that stopped costs the wait once per frame (then the staleness rules)."""
        if self.replay or self._closed or not self._heard.is_set() or self._att._last >= t:
            return
        deadline = time.monotonic() + self.cfg.sync_wait_s
        self.waited += 1
        while self._att._last < t:
            if time.monotonic() >= deadline or self._closed:
                self.wait_timeouts += 1
                return
            time.sleep(0.001)

    def _run(self) -> None:
        next_beat = next_sync = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if self._heard.is_set() and now >= next_beat:
                self._send_heartbeat()
                next_beat = now + self.cfg.heartbeat_every_s
            if self._heard.is_set() and self.cfg.timesync_every_s > 0 and now >= next_sync:
                self._send_timesync()
                next_sync = now + self.cfg.timesync_every_s
            try:
                msg = self.conn.recv_match(blocking=True, timeout=0.1)
            except OSError as err:
                if self._stop.is_set():
                    return
                self.counts["read_errors"] += 1
                if self.counts["read_errors"] == 1:
                    log.error("%s %s: read failed: %s", self.option, self.spec, err)
                time.sleep(0.1)
                continue
            if msg is not None:
                self.handle(msg, float(self.clock()))
            self._check_link()

    def _read_all(self) -> None:
        msgs = []
        while (msg := self.conn.recv_match(blocking=False)) is not None:
            stamp = float(getattr(msg, "_timestamp", 0.0))
            self._t0_replay = stamp if self._t0_replay is None else self._t0_replay
            msgs.append((msg, stamp - self._t0_replay + self.cfg.log_offset_s))
        # A replay may look ahead: the whole log's clock offset first, so every event is stamped with it.
        if self.sysid is None:
            self.sysid = next((m.get_srcSystem() for m, _ in msgs if self._is_autopilot(m)), None)
        for msg, t in msgs:
            boot = getattr(msg, "time_boot_ms", None)
            if boot is not None and msg.get_srcSystem() == self.sysid:
                self.sync.add_arrival(boot / 1000.0, t)
        for msg, t in msgs:
            self.handle(msg, t)
        if not self._heard.is_set():
            others = f" (only system(s) {sorted(self.other_systems)})" if self.other_systems else ""
            raise MavlinkError(f"{self.option} {self.spec}: no autopilot heartbeat in the telemetry log{others}")

    def _check_link(self) -> None:
        if self._last_heartbeat is None:
            return
        quiet = time.monotonic() - self._last_heartbeat
        if quiet > self.cfg.link_lost_s and not self._lost:
            self._lost = True
            self.counts["link_lost"] += 1
            log.warning("%s %s: no heartbeat from the autopilot for %.1f s: link lost", self.option, self.spec, quiet)

    def handle(self, msg: Any, arrival: float) -> None:
        """One received message, ``arrival`` on the loop's clock (public: replays and tests feed it)."""
        kind = msg.get_type()
        if kind == "BAD_DATA":
            self.counts["bad_data"] += 1
            return
        src, comp = msg.get_srcSystem(), msg.get_srcComponent()
        if kind == "HEARTBEAT":
            self._heartbeat(msg, src, comp)
            return
        if kind == "TIMESYNC":
            self._timesync(msg, arrival)
            return
        if src != self.sysid:  # another system's, or before the autopilot's heartbeat
            self.counts["other_system_messages"] += 1
            return
        self.counts[kind] += 1
        if self.version is None:
            self.version = 1 if msg.get_msgbuf()[0] == 0xFE else 2
            if self.version == 1:
                log.warning(
                    "%s %s: the autopilot (system %d) speaks MAVLink 1: GPS_INPUT goes out as MAVLink 1 without its"
                    " yaw extension, and ODOMETRY (id 331) cannot be sent; set SERIALn_PROTOCOL=2 (ArduPilot) or"
                    " MAV_PROTO_VER=2 (PX4)",
                    self.option,
                    self.spec,
                    src,
                )
        boot = getattr(msg, "time_boot_ms", None)
        if boot is not None:
            self.sync.add_arrival(boot / 1000.0, arrival)
        handler = getattr(self, "_on_" + kind.lower(), None)
        if handler is not None:
            handler(msg, arrival)

    def _is_autopilot(self, msg: Any) -> bool:
        """A vehicle's autopilot heartbeat (not a ground station's, a companion's, a gimbal's)."""
        m = self.mav
        if msg.get_type() != "HEARTBEAT" or msg.autopilot == m.MAV_AUTOPILOT_INVALID:
            return False
        return msg.type not in (m.MAV_TYPE_GCS, m.MAV_TYPE_ONBOARD_CONTROLLER, m.MAV_TYPE_GIMBAL, m.MAV_TYPE_ADSB)

    def _heartbeat(self, msg: Any, src: int, comp: int) -> None:
        m = self.mav
        if not self._is_autopilot(msg):
            return
        if self.sysid is None:
            self.sysid = src
        if src != self.sysid:
            if src not in self.other_systems:
                log.warning(
                    "%s %s: heartbeat from system %d ignored (listening to system %d; --mavlink-sysid %d if that is"
                    " the autopilot)",
                    self.option,
                    self.spec,
                    src,
                    self.sysid,
                    src,
                )
            self.other_systems[src] += 1
            return
        self.counts["HEARTBEAT"] += 1
        self.autopilot = {m.MAV_AUTOPILOT_ARDUPILOTMEGA: "ArduPilot", m.MAV_AUTOPILOT_PX4: "PX4"}.get(
            msg.autopilot, f"autopilot type {msg.autopilot}"
        )
        if self._lost:
            log.warning("%s %s: autopilot heartbeat back", self.option, self.spec)
        self._lost = False
        self._last_heartbeat = time.monotonic()
        if not self._heard.is_set():
            self.conn.mav.srcSystem = src  # the companion speaks as part of the same vehicle
            self._heard.set()

    def _timesync(self, msg: Any, arrival: float) -> None:
        if msg.get_srcSystem() != self.sysid:
            return
        if msg.tc1 == 0:  # the autopilot asks (PX4 does): answer with our clock, as the protocol says
            self.send(self.conn.mav.timesync_encode(int(self.clock() * 1e9), msg.ts1))
            self.counts["timesync_answered"] += 1
            return
        sent = self._pending_sync.pop(msg.ts1, None)
        if sent is not None:
            self.sync.add_timesync(sent, msg.tc1 / 1e9, arrival)
            self.counts["timesync_replies"] += 1

    def _on_attitude(self, msg: Any, arrival: float) -> None:
        self._att_t = arrival
        self._attitude(
            msg.time_boot_ms,
            math.degrees(msg.roll),
            math.degrees(msg.pitch),
            math.degrees(msg.yaw),
            msg.yawspeed,
            arrival,
        )

    def _on_attitude_quaternion(self, msg: Any, arrival: float) -> None:
        if arrival - self._att_t < 0.5:  # ATTITUDE is coming: one attitude stream, not two
            return
        roll, pitch, yaw = quaternion_to_euler_deg(msg.q1, msg.q2, msg.q3, msg.q4)
        self._attitude(msg.time_boot_ms, roll, pitch, yaw, msg.yawspeed, arrival)

    def _attitude(self, boot_ms: int, roll: float, pitch: float, yaw: float, yawspeed: float, arrival: float) -> None:
        t = self.sync.to_loop(boot_ms / 1000.0, arrival)
        height = self._height(t, roll, pitch)
        a = Attitude(t, roll, pitch, yaw % 360.0, height)
        self.last_attitude = a
        self._att.push(t, a)
        if math.isfinite(yawspeed):
            self._yaw_rates.append(math.degrees(yawspeed))

    def _height(self, t: float, roll: float, pitch: float) -> float | None:
        fresh = self.cfg.rangefinder_max_age_s
        if self._range is not None and t - self._range[0] <= fresh:
            self.heights["rangefinder"] += 1
            return self._range[1] * math.cos(math.radians(roll)) * math.cos(math.radians(pitch))
        if self._terrain is not None and t - self._terrain[0] <= 2.0:
            self.heights["altitude_terrain"] += 1
            return self._terrain[1]
        if self._relative is not None and t - self._relative[0] <= 2.0:
            self.heights["relative_to_home"] += 1
            return self._relative[1]
        self.heights["none"] += 1
        return None

    def _on_distance_sensor(self, msg: Any, arrival: float) -> None:
        if msg.orientation != self.mav.MAV_SENSOR_ROTATION_PITCH_270:
            return
        if msg.min_distance <= msg.current_distance <= msg.max_distance and msg.current_distance > 0:
            self._range = (self.sync.to_loop(msg.time_boot_ms / 1000.0, arrival), msg.current_distance / 100.0)
        else:
            self.counts["rangefinder_out_of_range"] += 1

    def _on_altitude(self, msg: Any, arrival: float) -> None:
        h = float(msg.altitude_terrain)
        if math.isfinite(h) and h > -1000.0:  # -1000: unknown
            self._terrain = (self.sync.to_loop(msg.time_usec / 1e6, arrival) if msg.time_usec < 1e13 else arrival, h)

    def _on_global_position_int(self, msg: Any, arrival: float) -> None:
        self._relative = (self.sync.to_loop(msg.time_boot_ms / 1000.0, arrival), msg.relative_alt / 1000.0)

    def _on_vfr_hud(self, msg: Any, arrival: float) -> None:
        """An odometry sample per speed report, for the interval since the previous one: that report's speed
        and the gyro's mean yaw rate over the interval, stamped at its start (the filter holds a sample
        forward, so a rate stamped at the interval's end would lag by one interval)."""
        speed = float(getattr(msg, self.cfg.speed))
        last = self.last_attitude
        t = last.t if last is not None and arrival - last.t <= 0.1 else arrival
        rates, self._yaw_rates = self._yaw_rates, []
        prev, self._prev_speed = self._prev_speed, (t, speed) if math.isfinite(speed) else None
        if prev is not None and rates:
            self._odo.push(prev[0], OdometrySample(prev[0], max(0.0, prev[1]), sum(rates) / len(rates)))

    def _on_system_time(self, msg: Any, arrival: float) -> None:
        if msg.time_unix_usec > 1.5e15:  # a real date: the autopilot's UTC, for the summary
            self.counts["system_time_utc"] += 1

    def _on_gps_global_origin(self, msg: Any, arrival: float) -> None:
        self.origin = (msg.latitude / 1e7, msg.longitude / 1e7, msg.altitude / 1000.0)

    def _on_home_position(self, msg: Any, arrival: float) -> None:
        if self.origin is None:
            self.origin = (msg.latitude / 1e7, msg.longitude / 1e7, msg.altitude / 1000.0)

    def _on_gps_raw_int(self, msg: Any, arrival: float) -> None:
        self._gnss("gps1", msg, arrival)

    def _on_gps2_raw(self, msg: Any, arrival: float) -> None:
        self._gnss("gps2", msg, arrival)

    def _gnss(self, which: str, msg: Any, arrival: float) -> None:
        key = (msg.time_usec, msg.lat, msg.lon, msg.fix_type)
        if self._gps_seen.get(which) == key:  # the same epoch again (a stream faster than the receiver)
            self.counts[f"{which}_repeated"] += 1
            return
        self._gps_seen[which] = key
        has_fix = msg.fix_type >= 2
        if which == "gps1":
            self._denial(has_fix, msg.fix_type, arrival)
        self._gps_fix[which] = has_fix
        if not has_fix:
            self.counts[f"{which}_no_fix"] += 1
            return
        if which == "gps2" and self._gps_fix.get("gps1", False):  # one receiver at a time: no double counting
            return
        t = self.sync.to_loop(msg.time_usec / 1e6, arrival) if 0 < msg.time_usec < 1e13 else arrival
        lat, lon = msg.lat / 1e7, msg.lon / 1e7
        east, north = self.crs.to_en(lat, lon)
        quality = FIX_TO_QUALITY.get(msg.fix_type, 1)
        hdop = None if msg.eph == UNKNOWN_U16 else msg.eph / 100.0
        h_acc = getattr(msg, "h_acc", 0) or 0
        sigma = h_acc / 1000.0 / math.sqrt(2.0) if h_acc > 0 else sigma_from_hdop(hdop, quality)
        course = None if msg.cog == UNKNOWN_U16 else msg.cog / 100.0
        speed = None if msg.vel == UNKNOWN_U16 else msg.vel / 100.0
        fix = GpsFix(t, lat, lon, float(east), float(north), float(sigma), quality, hdop, course, speed)
        self.prior.events.push(t, fix)

    def _denial(self, has_fix: bool, fix_type: int, t: float) -> None:
        if not has_fix and self._denied_since is None:
            self._denied_since = t
            self.counts["gnss_lost"] += 1
            log.warning("autopilot GNSS: no fix (fix type %d) from t %.1f s", fix_type, t)
        elif has_fix and self._denied_since is not None:
            self.denied_s += t - self._denied_since
            log.warning("autopilot GNSS: fix back at t %.1f s after %.1f s", t, t - self._denied_since)
            self._denied_since = None

    # --- sending ------------------------------------------------------------------------------------

    def send(self, msg: Any) -> bool:
        """Send one message in the autopilot's MAVLink version; False when it cannot go (counted)."""
        v1 = self.version == 1
        if v1 and msg.get_msgId() > 255:
            self.counts[f"not_sent_v1_{msg.get_type()}"] += 1
            return False
        try:
            with self._send_lock:
                self.conn.mav.send(msg, force_mavlink1=v1)
        except (OSError, ValueError) as err:
            self.counts["send_errors"] += 1
            if self.counts["send_errors"] == 1:
                log.error("%s %s: send failed: %s", self.option, self.spec, err)
            return False
        return True

    def _send_heartbeat(self) -> None:
        m = self.mav
        self.send(self.conn.mav.heartbeat_encode(m.MAV_TYPE_ONBOARD_CONTROLLER, m.MAV_AUTOPILOT_INVALID, 0, 0, 4))

    def _send_timesync(self) -> None:
        now = float(self.clock())
        ns = int(now * 1e9)
        self._pending_sync[ns] = now
        if len(self._pending_sync) > 16:
            self._pending_sync.pop(next(iter(self._pending_sync)))
        self.send(self.conn.mav.timesync_encode(0, ns))

    # --- the end --------------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        denied = self.denied_s + (0.0 if self._denied_since is None else float(self.clock()) - self._denied_since)
        out: dict[str, Any] = {
            "autopilot": None if self.sysid is None else f"{self.autopilot} (system {self.sysid})",
            "mavlink_version": self.version,
            "attitude_samples": self._att.count,
            "odometry_samples": self._odo.count,
            "gnss_fixes": self.prior.events.count,
            "height_from": dict(self.heights),
            "gnss_denied_s": round(denied, 2),
            "time_sync": self.sync.summary(),
            "frames_waited_for_the_stream": self.waited,
            "waits_in_vain": self.wait_timeouts,
            "messages_lost": int(getattr(self.conn, "mav_loss", 0)),  # sequence-number gaps
            "messages": dict(sorted(self.counts.items())),
        }
        if self.other_systems:
            out["ignored_systems"] = dict(self.other_systems)
        return out

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if not self.replay and threading.current_thread() is not getattr(self, "_thread", None):
            self._thread.join(timeout=2.0)
        try:
            self.conn.close()
        except OSError:
            pass
