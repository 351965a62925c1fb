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

The connection (opening it, its errors) is :mod:`~edge_geoloc.localize.mavlink_connection`; the messages'
fields -> events and the clock mapping, :mod:`~edge_geoloc.localize.mavlink_decode`; this module holds the
link: heartbeats, time sync round trips, the reader thread, sending, and the summary.

``--mavlink`` may also be a ``.tlog`` (a ground station's telemetry log: each message after its 8-byte
UNIX time stamp) for replays: its own arrival times, aligned with ``log_offset_s``.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_geoloc.cameras.uav import Attitude
from edge_geoloc.geo import MapCRS
from edge_geoloc.localize.gnss import GpsFix, Prior
from edge_geoloc.localize.mavlink_connection import COMPANION_COMPONENT, MavlinkError, open_connection, pymavlink
from edge_geoloc.localize.mavlink_decode import (
    FIX_TO_QUALITY,
    ClockSync,
    TelemetryDecoder,
    TimedEvents,
    quaternion_to_euler_deg,
)
from edge_geoloc.localize.odometry import OdometrySample

__all__ = [
    "COMPANION_COMPONENT",
    "FIX_TO_QUALITY",
    "ClockSync",
    "MavlinkConfig",
    "MavlinkError",
    "MavlinkLink",
    "open_connection",
    "pymavlink",
    "quaternion_to_euler_deg",
]

log = logging.getLogger(__name__)


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


class _AttitudeView:
    def __init__(self, events: TimedEvents, link: MavlinkLink) -> None:
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

    def __init__(self, events: TimedEvents, link: MavlinkLink) -> None:
        self.link, self.events = link, events
        self.name = f"mavlink {link.spec}"

    def poll(self, t: float) -> list[GpsFix]:
        self.link.wait_until(t)
        return self.events.take(t)

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, **self.link.summary()}

    def close(self) -> None:
        self.link.close()


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
        self.counts: Counter[str] = Counter()
        self.decoder = TelemetryDecoder(crs, self.sync, self.counts, self.cfg.speed, self.cfg.rangefinder_max_age_s)
        d = self.decoder
        self.attitude, self.odometry = _AttitudeView(d.attitude, self), _OdometryView(d.odometry, self)
        self.prior = _GnssView(d.gnss, self)
        self.other_systems: Counter[int] = Counter()
        self.sysid: int | None = self.cfg.sysid
        self.autopilot: str | None = None
        self.version: int | None = None  # 1 or 2: the autopilot's frames
        self._send_lock = threading.Lock()
        self._heard = threading.Event()
        self._stop = threading.Event()
        self._closed = False
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

    @property
    def origin(self) -> tuple[float, float, float] | None:
        """The autopilot's local origin (lat, lon, alt MSL): ``GPS_GLOBAL_ORIGIN``, else ``HOME_POSITION``."""
        return self.decoder.origin

    @property
    def last_attitude(self) -> Attitude | None:
        return self.decoder.last_attitude

    @property
    def heights(self) -> Counter[str]:
        """Which height above ground each attitude sample carried (rangefinder, terrain, relative to home)."""
        return self.decoder.heights

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
        """Hold a frame at ``t`` until the attitude stream has passed it: a sample after ``t`` has been read, so
        everything the autopilot sent up to ``t`` has been too, whatever the order of a tick's messages (the
        speed report of the tick at ``t`` may follow its ATTITUDE). At most ``sync_wait_s``: a busy reader
        thread must not make a frame see older events than its time; a stream that stopped costs the wait
        once per frame (then the staleness rules)."""
        if self.replay or self._closed or not self._heard.is_set() or self.decoder.attitude.last > t:
            return
        deadline = time.monotonic() + self.cfg.sync_wait_s
        self.waited += 1
        while self.decoder.attitude.last <= t:
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
        self.decoder.decode(kind, msg, arrival)

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
        d = self.decoder
        out: dict[str, Any] = {
            "autopilot": None if self.sysid is None else f"{self.autopilot} (system {self.sysid})",
            "mavlink_version": self.version,
            "attitude_samples": d.attitude.count,
            "odometry_samples": d.odometry.count,
            "gnss_fixes": d.gnss.count,
            "height_from": dict(d.heights),
            "gnss_denied_s": round(d.denied_until(float(self.clock())), 2),
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
