"""The visual fix back to the autopilot over MAVLink (``--mavlink-out``), so that its EKF flies on it when
GNSS is denied.

``GPS_INPUT`` (ArduPilot ``GPS_TYPE=14`` / ``GPS2_TYPE=14``; PX4's MAVLink GPS input), per fix:

- ``fix_type`` 3 (3D) while the fix is usable, 1 (no fix) when it is not: no position yet, sigma above
  ``max_sigma_m``, or dead reckoning (no vision or GNSS measurement) for longer than ``max_dead_reckoning_s``.
  The loop measures no altitude, so 2D would be the truthful type; ArduPilot's and PX4's EKFs fuse only 3D
  fixes, so 3D is sent with the altitude flagged as absent (``ignore_flags``, below), and the autopilot must
  take its height from the barometer (ArduPilot ``EK3_SRC1_POSZ=1``; PX4 ``EKF2_GPS_CTRL`` without bit 1).
- ``lat``/``lon`` in 1e-7 degrees; ``horiz_accuracy`` = the fix's per-axis 1-sigma in metres (what both EKFs
  use as the position noise); ``hdop`` = sigma * sqrt(2) / 4 m (the NMEA output's convention: HDOP times a
  4 m UERE gives the horizontal RMS error back).
- ``vn``/``ve`` from the filter's speed along its heading; ``speed_accuracy`` = hypot(``speed_sigma_mps``,
  speed x heading sigma in radians). Without a speed or heading both are flagged absent.
- ``time_week``/``time_week_ms``: GPS time of the frame (UTC + ``GPS_LEAP_S``); ``time_usec``: its UNIX time.
- ``satellites_visible``: the constant ``satellites`` (there are none; 10 passes both autopilots' minimum of
  6 and is documented as fake), 0 without a fix.
- ``yaw`` (MAVLink 2 extension, centidegrees, 36000 = north): the fix's heading when its sigma is under
  ``yaw_max_sigma_deg``, else 0 (= not available).
- ``ignore_flags``: ALT | VDOP | VEL_VERT | VERTICAL_ACCURACY always (no vertical position or velocity),
  plus VEL_HORIZ | SPEED_ACCURACY without a velocity; a no-fix message flags everything.

``ODOMETRY`` (option; PX4 EKF2 external vision ``EKF2_EV_CTRL`` bit 0, ArduPilot ``VISO_TYPE``): x north and
y east of the autopilot's EKF origin (``GPS_GLOBAL_ORIGIN`` or ``HOME_POSITION``; ArduPilot's flat-earth
metres per degree), z and the attitude unknown (NaN), the position covariance sigma^2 on x and y. Only
usable fixes go out, and not before the origin is known (counted).

``VISION_POSITION_ESTIMATE`` (option; PX4 EKF2 ``EKF2_EV_CTRL`` bit 0, ArduPilot ``VISO_TYPE=1``, MAVLink): the
same position and covariance as ODOMETRY (x north, y east, z NaN; roll, pitch and yaw NaN: the loop measures
no attitude), for autopilots or firmware that take the older message. Both stamp ``usec`` on the loop's clock,
the one the companion's TIMESYNC answers carry, so the autopilot can map it to its own.

Messages are rate-limited to ``rate_hz`` (the autopilots expect 5-10 Hz; the loop sends one per frame up to
that). Each send records the latency from the frame's capture time to the message (loop clock / ``scale``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from edge_geoloc.localize.fix import Fix
from edge_geoloc.localize.mavlink import MavlinkLink

GPS_EPOCH = datetime(1980, 1, 6, tzinfo=timezone.utc)
GPS_LEAP_S = 18  # GPS - UTC since 2017-01-01 (no leap second announced since)
WEEK_S = 604800
UERE_HDOP_M = 4.0  # HDOP = horizontal RMS / this (as the NMEA output)
LATLON_TO_M = 0.011131884502145034  # metres per 1e-7 degree of latitude (ArduPilot's Location)
LOCAL_MESSAGES = ("odometry", "vision_position_estimate")  # in the autopilot's local frame: need its origin
MESSAGES = ("gps_input", *LOCAL_MESSAGES)


@dataclass(frozen=True)
class OutputConfig:
    messages: tuple[str, ...] = ("gps_input",)
    rate_hz: float = 10.0
    max_sigma_m: float = 30.0
    max_dead_reckoning_s: float = 10.0
    satellites: int = 10
    gps_id: int = 0  # ArduPilot: the GPS instance (0: GPS_TYPE, 1: GPS2_TYPE)
    speed_sigma_mps: float = 0.5
    yaw_max_sigma_deg: float = 5.0

    def __post_init__(self) -> None:
        bad = [m for m in self.messages if m not in MESSAGES]
        if bad or not self.messages:
            raise ValueError(f"MAVLink output messages must be among {', '.join(MESSAGES)}, got {list(self.messages)}")
        if not self.rate_hz > 0:
            raise ValueError(f"MAVLink output rate must be positive, got {self.rate_hz}")


def gps_time(when: datetime) -> tuple[int, int]:
    """(GPS week, milliseconds into it) of a UTC time."""
    s = (when - GPS_EPOCH).total_seconds() + GPS_LEAP_S
    week = int(s // WEEK_S)
    return week, round((s - week * WEEK_S) * 1000.0)


def fix_utc(fix: Fix) -> datetime | None:
    return None if not fix.time else datetime.fromisoformat(fix.time.replace("Z", "+00:00"))


class MavlinkOutput:
    """Sends each fix to the autopilot over ``link`` (see the module docstring); ``send``/``close``/``stats``
    like the other outputs of :func:`~edge_geoloc.localize.run.run_loop`."""

    def __init__(
        self,
        link: MavlinkLink,
        config: OutputConfig | None = None,
        clock: Callable[[], float] | None = None,
        scale: float = 1.0,
        owns_link: bool = False,
    ) -> None:
        self.link, self.cfg = link, config or OutputConfig()
        self.clock, self.scale, self.owns_link = clock or link.clock, scale, owns_link
        self.counts: Counter[str] = Counter()
        self.latency_ms: list[float] = []
        self._last_sent: float | None = None
        self._first: float | None = None
        self._last_measured: float | None = None

    def usable(self, fix: Fix) -> str | None:
        """Why ``fix`` goes out as "no fix" (None: it is usable)."""
        if fix.source in ("vision", "gps"):
            self._last_measured = fix.t
        if fix.lat is None or fix.sigma_m is None:
            return "no position"
        if fix.sigma_m > self.cfg.max_sigma_m:
            return "sigma"
        if self._last_measured is None or fix.t - self._last_measured > self.cfg.max_dead_reckoning_s:
            return "dead reckoning"
        return None

    def gps_input(self, fix: Fix, why_not: str | None) -> Any:
        """The GPS_INPUT message for ``fix`` (``why_not``: sent as no fix)."""
        mav, m = self.link.conn.mav, self.link.mav
        when = fix_utc(fix)
        week, week_ms = gps_time(when) if when is not None else (0, 0)
        usec = round(when.timestamp() * 1e6) if when is not None else int(fix.t * 1e6)
        if why_not is not None:
            everything = 0xFF
            return mav.gps_input_encode(usec, self.cfg.gps_id, everything, week_ms, week, m.GPS_FIX_TYPE_NO_FIX,
                                        0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)  # fmt: skip
        flags = (
            m.GPS_INPUT_IGNORE_FLAG_ALT
            | m.GPS_INPUT_IGNORE_FLAG_VDOP
            | m.GPS_INPUT_IGNORE_FLAG_VEL_VERT
            | m.GPS_INPUT_IGNORE_FLAG_VERTICAL_ACCURACY
        )
        vn = ve = speed_acc = 0.0
        heading, speed = fix.heading_deg, fix.speed_mps
        if heading is not None and speed is not None and math.isfinite(speed):
            vn, ve = speed * math.cos(math.radians(heading)), speed * math.sin(math.radians(heading))
            hsig = math.radians(fix.heading_sigma_deg or 180.0)
            speed_acc = math.hypot(self.cfg.speed_sigma_mps, speed * min(hsig, math.pi))
        else:
            flags |= m.GPS_INPUT_IGNORE_FLAG_VEL_HORIZ | m.GPS_INPUT_IGNORE_FLAG_SPEED_ACCURACY
        yaw = 0
        if (
            heading is not None
            and fix.heading_sigma_deg is not None
            and fix.heading_sigma_deg <= self.cfg.yaw_max_sigma_deg
        ):
            yaw = round(heading * 100.0) % 36000 or 36000
        sigma = float(fix.sigma_m)
        hdop = min(99.99, sigma * math.sqrt(2.0) / UERE_HDOP_M)
        return mav.gps_input_encode(
            usec, self.cfg.gps_id, flags, week_ms, week, m.GPS_FIX_TYPE_3D_FIX,
            round(fix.lat * 1e7), round(fix.lon * 1e7), 0.0, hdop, 0.0,
            vn, ve, 0.0, speed_acc, sigma, 0.0, self.cfg.satellites, yaw,
        )  # fmt: skip

    def local_pose(self, fix: Fix) -> tuple[float, float, list[float]] | None:
        """(north, east) of ``fix`` in metres from the autopilot's EKF origin and the pose covariance (the upper
        triangle of x, y, z, roll, pitch, yaw, row by row: sigma^2 on x and y, NaN where not measured); None
        before the origin is known."""
        origin = self.link.origin
        if origin is None:
            return None
        lat0, lon0, _ = origin
        north = (fix.lat - lat0) * 1e7 * LATLON_TO_M
        east = (fix.lon - lon0) * 1e7 * LATLON_TO_M * max(0.01, math.cos(math.radians(lat0)))
        nan = float("nan")
        var = float(fix.sigma_m) ** 2
        return north, east, [var, 0, 0, 0, 0, 0, var, 0, 0, 0, 0, nan, 0, 0, 0, nan, 0, 0, nan, 0, nan]

    def local_message(self, kind: str, fix: Fix) -> Any | None:
        """``kind`` (one of :data:`LOCAL_MESSAGES`) for ``fix`` in the autopilot's local NED frame, or None before
        its origin is known: ODOMETRY (velocity unknown) or VISION_POSITION_ESTIMATE (the older message)."""
        pose = self.local_pose(fix)
        if pose is None:
            return None
        north, east, cov = pose
        nan, usec = float("nan"), int(fix.t * 1e6)
        mav, m = self.link.conn.mav, self.link.mav
        if kind == "vision_position_estimate":
            return mav.vision_position_estimate_encode(usec, north, east, nan, nan, nan, nan, cov, 0)
        velocity = [nan] + [0.0] * 20  # unknown (first element NaN)
        return mav.odometry_encode(
            usec, m.MAV_FRAME_LOCAL_NED, m.MAV_FRAME_BODY_FRD, north, east, nan, [nan, nan, nan, nan],
            nan, nan, nan, nan, nan, nan, cov, velocity, 0, m.MAV_ESTIMATOR_TYPE_VISION, 0,
        )  # fmt: skip

    def send(self, fix: Fix) -> None:
        why_not = self.usable(fix)
        if self._last_sent is not None and fix.t - self._last_sent < 1.0 / self.cfg.rate_hz - 1e-9:
            self.counts["rate_limited"] += 1
            return
        sent = False
        if "gps_input" in self.cfg.messages:
            ok = self.link.send(self.gps_input(fix, why_not))
            sent |= ok
            self.counts["gps_input" if why_not is None else f"gps_input_no_fix ({why_not})"] += int(ok)
        for kind in LOCAL_MESSAGES:
            if kind in self.cfg.messages and why_not is None:
                msg = self.local_message(kind, fix)
                if msg is None:
                    self.counts[f"{kind}_no_origin"] += 1
                elif self.link.send(msg):
                    sent = True
                    self.counts[kind] += 1
        if sent:
            self._last_sent = fix.t
            self._first = fix.t if self._first is None else self._first
            self.latency_ms.append((float(self.clock()) - fix.t) / self.scale * 1000.0)

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"to": self.link.spec, **dict(sorted(self.counts.items()))}
        lat = np.asarray(self.latency_ms)
        if lat.size:
            out["latency_ms"] = {
                "p50": round(float(np.percentile(lat, 50)), 2),
                "p99": round(float(np.percentile(lat, 99)), 2),
            }
        if self._first is not None and self._last_sent is not None and self._last_sent > self._first:
            n = len(self.latency_ms)
            out["rate_hz"] = round((n - 1) / (self._last_sent - self._first), 3)
        return out

    def close(self) -> None:
        if self.owns_link:
            self.link.close()
