"""MAVLink telemetry -> the loop's events: attitude (with the height above ground best at that moment),
odometry and GNSS fixes, each stamped on the loop's clock by :class:`ClockSync` (see
:mod:`edge_geoloc.localize.mavlink` for which message gives what, and why). pymavlink decodes the frames;
this module reads the decoded messages' fields."""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter, deque
from typing import Any

from edge_geoloc.cameras.uav import Attitude
from edge_geoloc.geo import MapCRS
from edge_geoloc.localize.gnss import GpsFix, sigma_from_hdop
from edge_geoloc.localize.odometry import OdometrySample

log = logging.getLogger(__name__)

UNKNOWN_U16 = 65535
MAV_SENSOR_ROTATION_PITCH_270 = 25  # a DISTANCE_SENSOR looking down
# GPS_RAW_INT fix type -> GGA quality (the prior's UERE table): 2D/3D 1, DGPS 2, RTK float 5, RTK fixed 4, PPP 1.
FIX_TO_QUALITY = {2: 1, 3: 1, 4: 2, 5: 5, 6: 4, 7: 1, 8: 1}


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


class TimedEvents:
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

    @property
    def last(self) -> float:
        """The latest time pushed (-inf before any)."""
        return self._last

    def take(self, t: float) -> list[Any]:
        with self._lock:
            out = []
            while self._q and self._q[0][0] <= t:
                out.append(self._q.popleft()[1])
            return out


def quaternion_to_euler_deg(w: float, x: float, y: float, z: float) -> tuple[float, float, float]:
    """Aerospace Z-Y-X (roll, pitch, yaw) in degrees from a body-to-NED quaternion."""
    roll = math.atan2(2 * (w * x + y * z), 1 - 2 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2 * (w * y - z * x))))
    yaw = math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))
    return math.degrees(roll), math.degrees(pitch), math.degrees(yaw)


class TelemetryDecoder:
    """One autopilot's messages (already filtered to its system id) -> attitude, odometry and GNSS events.

    ``speed_field``: the ``VFR_HUD`` field that gives odometry speed (``airspeed``: what a drone still measures
    without GNSS); ``counts`` is shared with the link (one summary)."""

    def __init__(
        self,
        crs: MapCRS,
        sync: ClockSync,
        counts: Counter[str],
        speed_field: str = "airspeed",
        rangefinder_max_age_s: float = 0.5,
    ) -> None:
        self.crs, self.sync, self.counts = crs, sync, counts
        self.speed_field, self.rangefinder_max_age_s = speed_field, rangefinder_max_age_s
        self.attitude, self.odometry, self.gnss = TimedEvents(), TimedEvents(), TimedEvents()
        self.heights: Counter[str] = Counter()
        self.origin: tuple[float, float, float] | None = None  # GPS_GLOBAL_ORIGIN / HOME_POSITION (lat, lon, alt)
        self.last_attitude: Attitude | None = None
        self.denied_s = 0.0
        self._range: tuple[float, float] | None = None  # (time, height)
        self._terrain: tuple[float, float] | None = None
        self._relative: tuple[float, float] | None = None
        self._att_t = -math.inf  # last ATTITUDE (quaternions only fill in without one)
        self._yaw_rates: list[tuple[float, float]] = []  # (time, deg/s) of each attitude sample
        self._prev_speed: tuple[float, float] | None = None
        self._gps_seen: dict[str, Any] = {}
        self._gps_fix: dict[str, bool] = {}
        self._denied_since: float | None = None

    def decode(self, kind: str, msg: Any, arrival: float) -> None:
        """One message of the autopilot's, ``arrival`` on the loop's clock; kinds without a use are ignored."""
        handler = getattr(self, "_on_" + kind.lower(), None)
        if handler is not None:
            handler(msg, arrival)

    def denied_until(self, now: float) -> float:
        """Seconds the autopilot's GNSS had no fix, counting an outage still going at ``now``."""
        return self.denied_s + (0.0 if self._denied_since is None else now - self._denied_since)

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
        self.attitude.push(t, a)
        if math.isfinite(yawspeed):
            self._yaw_rates.append((t, math.degrees(yawspeed)))

    def _height(self, t: float, roll: float, pitch: float) -> float | None:
        fresh = self.rangefinder_max_age_s
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
        if msg.orientation != MAV_SENSOR_ROTATION_PITCH_270:
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
        forward, so a rate stamped at the interval's end would lag by one interval). VFR_HUD carries no time: it
        is stamped with the latest attitude sample's, and the interval takes the gyro samples before that time
        (the one at it opens the next), whichever order the autopilot sends a tick's messages in."""
        speed = float(getattr(msg, self.speed_field))
        last = self.last_attitude
        t = last.t if last is not None and arrival - last.t <= 0.1 else arrival
        rates = [r for ts, r in self._yaw_rates if ts < t]
        self._yaw_rates = [(ts, r) for ts, r in self._yaw_rates if ts >= t]
        prev, self._prev_speed = self._prev_speed, (t, speed) if math.isfinite(speed) else None
        if prev is not None and rates:
            self.odometry.push(prev[0], OdometrySample(prev[0], max(0.0, prev[1]), sum(rates) / len(rates)))

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
        self.gnss.push(t, fix)

    def _denial(self, has_fix: bool, fix_type: int, t: float) -> None:
        if not has_fix and self._denied_since is None:
            self._denied_since = t
            self.counts["gnss_lost"] += 1
            log.warning("autopilot GNSS: no fix (fix type %d) from t %.1f s", fix_type, t)
        elif has_fix and self._denied_since is not None:
            self.denied_s += t - self._denied_since
            log.warning("autopilot GNSS: fix back at t %.1f s after %.1f s", t, t - self._denied_since)
            self._denied_since = None
