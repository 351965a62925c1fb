"""A simulated autopilot: the UAV demo's synthetic flight played as MAVLink over loopback UDP, and a
recorder of what the companion sends back (workstation wing; pymavlink writes every message).

:class:`AutopilotPlan` is what a flight controller would stream, on the flight's clock: ``ATTITUDE``
(the scenario's attitude log, 50 Hz, with the gyro's yaw rate from its odometry),
``GLOBAL_POSITION_INT`` (10 Hz, height above home from the attitude model's barometer), ``VFR_HUD``
(at the odometry's own samples: airspeed = the drive's ground speed from airspeed, off by the wind),
``GPS_RAW_INT`` (5 Hz, repeating the receiver's epochs, fix type 1 in the outage), ``HEARTBEAT`` and
``SYSTEM_TIME`` (1 Hz) and ``GPS_GLOBAL_ORIGIN`` (every 5 s). Its boot clock runs ``boot_at_start_s``
ahead of the flight (the autopilot was powered before take-off): the offset the companion must find.

:func:`run_autopilot` is the process: it sends the plan at ``speed`` times real time (the same factor
scales the companion's clock, so every rate holds on the flight's clock), answers ``TIMESYNC``, records each
``GPS_INPUT`` / ``ODOMETRY`` / ``VISION_POSITION_ESTIMATE`` it receives with its own receive time to a JSON
Lines file, and stops by itself after the flight (or when told). :class:`SimulatedAutopilot` starts it in a
separate (spawned) process and shares the flight clock with the companion side.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

POSITION_HZ, GPS_HZ = 10.0, 5.0
RECORDED = ("GPS_INPUT", "ODOMETRY", "VISION_POSITION_ESTIMATE")


@dataclass
class AutopilotPlan:
    """Everything the simulated autopilot sends, on the flight's clock (seconds from take-off)."""

    duration_s: float
    start_utc: datetime
    home: tuple[float, float, float]  # lat, lon, alt MSL
    att_t: np.ndarray
    roll_deg: np.ndarray
    pitch_deg: np.ndarray
    yaw_deg: np.ndarray  # true north (the magnetometer's, with its bias)
    yaw_rate_dps: np.ndarray
    height_m: np.ndarray  # above home (the barometer), at att_t
    odo_t: np.ndarray
    speed_mps: np.ndarray
    gps_t: np.ndarray
    gps_valid: np.ndarray
    gps_lat: np.ndarray
    gps_lon: np.ndarray
    gps_alt_m: np.ndarray
    gps_sigma_m: np.ndarray  # per axis
    gps_hdop: np.ndarray
    gps_course_deg: np.ndarray
    gps_speed_mps: np.ndarray
    gps_sats: np.ndarray
    boot_at_start_s: float = 60.0
    sysid: int = 1

    @classmethod
    def from_scenario(cls, sc: Any, boot_at_start_s: float = 60.0) -> AutopilotPlan:
        """The plan of a :class:`~edge_geoloc.sim.flight.UavScenario`: its attitude log, GNSS and odometry as
        they are, the CSV-driven demo's very samples (the attitude model streams at 50 Hz, as an autopilot
        sends ATTITUDE)."""
        att = sc.attitude()
        odo, gps = sc.odometry, sc.gps
        held = np.clip(np.searchsorted(odo.t, att.t, side="right") - 1, 0, len(odo.t) - 1)
        home_lat, home_lon = sc.crs.to_latlon(float(sc.trajectory.east[0]), float(sc.trajectory.north[0]))
        ground = float(np.nanmin(gps.altitude_m - np.interp(gps.t, sc.trajectory.t, sc.trajectory.altitude_m)))
        return cls(
            duration_s=float(sc.trajectory.t[-1]),
            start_utc=gps.start_utc,
            home=(float(home_lat), float(home_lon), ground if math.isfinite(ground) else 100.0),
            att_t=att.t,
            roll_deg=att.roll,
            pitch_deg=att.pitch,
            yaw_deg=att.yaw,
            yaw_rate_dps=np.asarray(odo.yaw_rate_dps)[held],
            height_m=att.height,
            odo_t=np.asarray(odo.t),
            speed_mps=np.asarray(odo.speed_mps),
            gps_t=np.asarray(gps.t),
            gps_valid=np.asarray(gps.valid, bool),
            gps_lat=np.asarray(gps.lat),
            gps_lon=np.asarray(gps.lon),
            gps_alt_m=np.asarray(gps.altitude_m),
            gps_sigma_m=gps.sigma_m(),
            gps_hdop=np.asarray(gps.hdop),
            gps_course_deg=np.asarray(gps.course_deg),
            gps_speed_mps=np.asarray(gps.speed_mps),
            gps_sats=np.asarray(gps.num_sats),
            boot_at_start_s=boot_at_start_s,
        )

    def schedule(self, lead_s: float) -> list[tuple[float, str, int]]:
        """(flight time, message, sample) in time order, from ``-lead_s`` to the end."""
        items: list[tuple[float, str, int]] = []
        end = self.duration_s
        items += [(float(t), "HEARTBEAT", 0) for t in np.arange(-lead_s, end + 1e-9, 1.0)]
        items += [(float(t), "SYSTEM_TIME", 0) for t in np.arange(-lead_s, end + 1e-9, 1.0)]
        items += [(float(t), "GPS_GLOBAL_ORIGIN", 0) for t in np.arange(-lead_s, end + 1e-9, 5.0)]
        items += [(float(t), "ATTITUDE", i) for i, t in enumerate(self.att_t)]
        pos_t = np.arange(min(0.0, float(self.att_t[0])), end + 1e-9, 1.0 / POSITION_HZ)  # with the attitude
        # Each carries the height of the attitude sample sent at the same time (1 us: the grids' rounding).
        at = np.minimum(np.searchsorted(self.att_t, pos_t - 1e-6), len(self.att_t) - 1)
        items += [(float(t), "GLOBAL_POSITION_INT", int(i)) for t, i in zip(pos_t, at)]
        items += [(float(t), "VFR_HUD", i) for i, t in enumerate(self.odo_t)]
        gps_send = np.arange(0.0, end + 1e-9, 1.0 / GPS_HZ)
        latest = np.searchsorted(self.gps_t, gps_send + 1e-9, side="right") - 1
        items += [(float(t), "GPS_RAW_INT", int(i)) for t, i in zip(gps_send, latest) if i >= 0]
        order = {
            "HEARTBEAT": 0,
            "SYSTEM_TIME": 1,
            "GPS_GLOBAL_ORIGIN": 2,
            "GPS_RAW_INT": 3,
            "GLOBAL_POSITION_INT": 4,  # the height first, then the attitude sample that carries it
            "ATTITUDE": 5,
            "VFR_HUD": 6,  # after the attitude of its tick: the companion stamps a speed report with it
        }
        return sorted(items, key=lambda x: (round(x[0], 6), order[x[1]]))  # one tick: the same microsecond

    def encode(self, mav: Any, kind: str, i: int, flight_t: float) -> Any:
        """The pymavlink message ``kind`` for sample ``i`` (sent at ``flight_t``)."""
        m = mav
        boot_ms = max(0, round((flight_t + self.boot_at_start_s) * 1000.0))
        if kind == "HEARTBEAT":
            return m.heartbeat_encode(2, 3, 0x81, 0, 4)  # quadrotor, ArduPilot, armed + custom mode, active
        if kind == "SYSTEM_TIME":
            utc = self.start_utc + timedelta(seconds=flight_t)
            return m.system_time_encode(round(utc.timestamp() * 1e6), boot_ms)
        if kind == "GPS_GLOBAL_ORIGIN":
            lat, lon, alt = self.home
            return m.gps_global_origin_encode(round(lat * 1e7), round(lon * 1e7), round(alt * 1000), 0)
        if kind == "ATTITUDE":
            r = math.radians
            yaw = (self.yaw_deg[i] + 180.0) % 360.0 - 180.0
            return m.attitude_encode(
                boot_ms, r(self.roll_deg[i]), r(self.pitch_deg[i]), r(yaw), 0.0, 0.0, r(self.yaw_rate_dps[i])
            )
        if kind == "GLOBAL_POSITION_INT":
            lat, lon, alt = self.home
            h = float(self.height_m[i])
            return m.global_position_int_encode(
                boot_ms, round(lat * 1e7), round(lon * 1e7), round((alt + h) * 1000), round(h * 1000), 0, 0, 0, 65535
            )
        if kind == "VFR_HUD":
            s = float(self.speed_mps[i])
            return m.vfr_hud_encode(s, s, 0, 50, 0.0, 0.0)
        if kind == "GPS_RAW_INT":
            epoch_us = round((float(self.gps_t[i]) + self.boot_at_start_s) * 1e6)
            if not self.gps_valid[i]:
                return m.gps_raw_int_encode(epoch_us, 1, 0, 0, 0, 65535, 65535, 65535, 65535, 0)
            course, speed = float(self.gps_course_deg[i]), float(self.gps_speed_mps[i])
            return m.gps_raw_int_encode(
                epoch_us, 3, round(self.gps_lat[i] * 1e7), round(self.gps_lon[i] * 1e7),
                round(self.gps_alt_m[i] * 1000), round(self.gps_hdop[i] * 100), 65535,
                round(speed * 100) if math.isfinite(speed) else 65535,
                round(course % 360.0 * 100) if math.isfinite(course) else 65535,
                int(self.gps_sats[i]), 0, round(float(self.gps_sigma_m[i]) * math.sqrt(2.0) * 1000),
            )  # fmt: skip
        raise ValueError(f"unknown message {kind}")


@dataclass(frozen=True)
class Playback:
    """How the simulated autopilot plays its plan: to the companion's UDP ``port`` on ``host``, at ``speed``
    times real time from ``-lead_s`` (flight time), recording what it receives to ``record``."""

    port: int
    record: str
    speed: float = 1.0
    lead_s: float = 2.0
    host: str = "127.0.0.1"


def run_autopilot(plan: AutopilotPlan, play: Playback, m_ref: Any, stop: Any = None, ready: Any = None) -> None:
    """The simulated autopilot's process (see the module docstring): flight time = (monotonic - ``m_ref``) x
    ``play.speed``; it streams from ``-play.lead_s`` to the end of the flight (+1 s), then only heartbeats and
    listens until ``stop`` (or ten minutes), and writes ``play.record``. With ``ready`` (an event), ``m_ref`` is a
    shared value the parent sets once this process is up and says so."""
    from edge_geoloc.localize.mavlink import pymavlink

    speed, lead_s = play.speed, play.lead_s
    mavutil = pymavlink()
    conn = mavutil.mavlink_connection(f"udpout:{play.host}:{play.port}", source_system=plan.sysid, source_component=1)
    mav = conn.mav
    if ready is not None:  # imports done and the socket open: the parent starts the clock now
        ready.set()
        while m_ref.value == 0.0 and not (stop is not None and stop.is_set()):
            time.sleep(0.005)
        m_ref = m_ref.value

    def flight_now() -> float:
        return (time.monotonic() - m_ref) * speed

    records: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    sched = plan.schedule(lead_s)
    i, end = 0, plan.duration_s + 1.0
    # Stops by itself, whatever happens: the flight, then up to ten minutes more (real time) of listening for
    # a companion that fell behind (its late messages are still the flight's), unless told to stop (the demo
    # and the tests always do, when their loop ends).
    deadline = time.monotonic() + (end + lead_s) / speed + 600.0
    next_beat = end
    while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        now = flight_now()
        while i < len(sched) and sched[i][0] <= now:
            t, kind, k = sched[i]
            conn.mav.send(plan.encode(mav, kind, k, t))
            counts[kind] = counts.get(kind, 0) + 1
            i += 1
        if now >= next_beat:  # after the flight: heartbeats only, the link stays up
            conn.mav.send(plan.encode(mav, "HEARTBEAT", 0, now))
            next_beat = now + 1.0
        wait = ((sched[i][0] if i < len(sched) else next_beat) - flight_now()) / speed
        if conn.select(max(0.0, min(wait, 0.02))):
            while (msg := conn.recv_msg()) is not None:
                _received(plan, conn, msg, flight_now(), records, counts)
    Path(play.record).write_text("".join(json.dumps(r) + "\n" for r in records) + json.dumps({"sent": counts}) + "\n")
    conn.close()


def _received(plan: AutopilotPlan, conn: Any, msg: Any, flight_t: float, records: list, counts: dict) -> None:
    kind = msg.get_type()
    boot_ns = round((flight_t + plan.boot_at_start_s) * 1e9)
    if kind == "TIMESYNC" and msg.tc1 == 0:  # the companion asks: answer with the boot clock
        conn.mav.send(conn.mav.timesync_encode(boot_ns, msg.ts1))
        counts["TIMESYNC answered"] = counts.get("TIMESYNC answered", 0) + 1
    elif kind in RECORDED:
        rec = {k: v for k, v in msg.to_dict().items() if k != "mavpackettype"}
        rec.update(type=kind, received_flight_s=flight_t, version=1 if msg.get_msgbuf()[0] == 0xFE else 2)
        records.append(_finite(rec))
    elif kind == "HEARTBEAT":
        counts["companion heartbeats"] = counts.get("companion heartbeats", 0) + 1


def _finite(rec: dict[str, Any]) -> dict[str, Any]:
    """JSON without NaN: None in its place (ODOMETRY's unknowns)."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v

    return {k: clean(v) for k, v in rec.items()}


class SimulatedAutopilot:
    """:func:`run_autopilot` in a spawned process, sending to the companion's UDP ``port`` on loopback.

    :meth:`clock` is the flight clock, which the demo also gives the companion (its frames are stamped on it):
    the offset to the autopilot's boot clock is ``-plan.boot_at_start_s``."""

    def __init__(self, plan: AutopilotPlan, play: Playback) -> None:
        if not play.speed > 0:
            raise ValueError(f"simulated autopilot speed must be positive, got {play.speed}")
        self.plan, self.play = plan, play
        self.record, self.speed, self.lead_s = Path(play.record), play.speed, play.lead_s
        self._ctx = mp.get_context("spawn")  # a fresh interpreter: no forked threads or ONNX Runtime pools
        self._stop, self._ready = self._ctx.Event(), self._ctx.Event()
        self._shared_ref = self._ctx.Value("d", 0.0)
        self.m_ref = math.inf  # the flight clock stands still (at -inf) until the process is up
        self.proc: Any = None

    def start(self, timeout_s: float = 60.0) -> None:
        """Start the process and, once it is up (imports done, socket open), the flight clock: the stream begins
        at ``-lead_s``, that is ``lead_s / speed`` real seconds from then."""
        self.proc = self._ctx.Process(
            target=run_autopilot,
            args=(self.plan, self.play, self._shared_ref, self._stop, self._ready),
            name="simulated autopilot",
            daemon=True,
        )
        self.proc.start()
        if not self._ready.wait(timeout_s):
            self.stop(2.0)
            raise RuntimeError(f"the simulated autopilot did not start within {timeout_s:g} s")
        self.m_ref = time.monotonic() + self.lead_s / self.speed
        self._shared_ref.value = self.m_ref

    def clock(self) -> float:
        return (time.monotonic() - self.m_ref) * self.speed

    def stop(self, timeout_s: float = 10.0) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """Tell it to stop (it also stops by itself after the flight); (received records, sent counts)."""
        self._stop.set()
        if self.proc is not None:
            self.proc.join(timeout_s)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(2.0)
        if not self.record.is_file():
            return [], {}
        lines = [json.loads(s) for s in self.record.read_text().splitlines() if s.strip()]
        return lines[:-1], lines[-1].get("sent", {}) if lines else {}


def evaluate_gps_input(records: list[dict[str, Any]], sc: Any, speed: float) -> dict[str, Any]:
    """What the "autopilot" received against the truth: GPS_INPUT position error (whole flight and in the
    outage), message rate, share sent as no fix, and the latency from the fix's time to its receipt."""
    gi = [r for r in records if r["type"] == "GPS_INPUT"]
    if not gi:
        return {"gps_input_messages": 0}
    epoch = datetime(1980, 1, 6, tzinfo=timezone.utc)
    start = sc.gps.start_utc
    t_fix = np.array([(r["time_week"] * 604800 + r["time_week_ms"] / 1000.0 - 18.0) for r in gi])
    t_fix -= (start - epoch).total_seconds()
    ok = np.array([r["fix_type"] >= 3 for r in gi])
    lat = np.array([r["lat"] / 1e7 for r in gi])
    lon = np.array([r["lon"] / 1e7 for r in gi])
    east, north = sc.crs.to_en(lat, lon)
    tr = sc.trajectory.resample(np.clip(t_fix, sc.trajectory.t[0], sc.trajectory.t[-1]))
    err = np.hypot(np.asarray(east) - tr.east, np.asarray(north) - tr.north)
    out_mask = sc.in_outage(t_fix)
    received = np.array([r["received_flight_s"] for r in gi])
    latency_ms = (received - t_fix) / speed * 1000.0

    def stats(e: np.ndarray) -> dict[str, float | None]:
        e = e[np.isfinite(e)]
        if not e.size:
            return {"median": None, "p95": None}
        return {"median": round(float(np.median(e)), 2), "p95": round(float(np.percentile(e, 95)), 2)}

    span = float(received.max() - received.min())
    behind = float(np.median(received - t_fix))
    return {
        "loop_kept_up": bool(behind < 1.0),  # median receipt within a second (flight clock) of the frame
        "gps_input_messages": len(gi),
        "gps_input_no_fix": int((~ok).sum()),
        "gps_input_rate_hz": round((len(gi) - 1) / span, 3) if span > 0 else None,
        "gps_input_error_m": stats(err[ok]),
        "gps_input_outage_error_m": stats(err[ok & out_mask]),
        "gps_input_outage_no_fix": int((~ok & out_mask).sum()),
        "gps_input_latency_ms": {
            "p50": round(float(np.percentile(latency_ms, 50)), 1),
            "p99": round(float(np.percentile(latency_ms, 99)), 1),
        },
        "odometry_messages": sum(r["type"] == "ODOMETRY" for r in records),
        "mavlink_versions": sorted({r["version"] for r in gi}),
    }


class PacedSource:
    """Pre-rendered frames released on a clock: frame i when ``clock()`` (running ``speed`` times real time)
    reaches its time plus ``delay_s`` (capture to the loop: exposure, readout, transfer; the frame keeps its
    capture time), as a camera on the companion stamped on the flight clock. A live frame source."""

    live = True

    def __init__(
        self, frames: list[Any], clock: Any, speed: float = 1.0, name: str = "paced frames", delay_s: float = 0.1
    ) -> None:
        self.frames, self.clock, self.speed, self.name, self.delay_s = frames, clock, speed, name, delay_s
        self._i = 0

    def read(self) -> Any:
        from edge_geoloc.localize.sources import Frame

        if self._i >= len(self.frames):
            return None
        f = self.frames[self._i]
        self._i += 1
        while (wait := f.t + self.delay_s - self.clock()) > 0:  # the camera pipeline's delay (flight clock)
            time.sleep(min(wait / self.speed, 0.05))
        return Frame(f.index, f.t, f.image, f.error, f.truth)

    def close(self) -> None:
        pass


def run_through_mavlink(
    sc: Any,
    frames: list[Any],
    localizer: Any,
    out_dir: Path,
    speed: float,
    meta: dict[str, Any],
    show: Any = None,
    writer: Any = None,
    output: Any = None,
) -> Any:
    """The UAV demo's loop with every sensor through MAVLink: the simulated autopilot (a separate process)
    streams the flight to the companion's link on loopback UDP, frames are released on the flight clock,
    fixes go back as GPS_INPUT; ``meta["mavlink"]`` gets what the autopilot received against the truth."""
    from edge_geoloc.localize.mavlink import MavlinkConfig, MavlinkLink
    from edge_geoloc.localize.mavlink_out import MavlinkOutput, OutputConfig
    from edge_geoloc.sim.scenario import run_scenario

    plan = AutopilotPlan.from_scenario(sc)
    box: dict[str, SimulatedAutopilot] = {}
    link = MavlinkLink(
        "udp:127.0.0.1:0", sc.crs, clock=lambda: box["ap"].clock(), config=MavlinkConfig(wait_heartbeat_s=0)
    )
    port = link.conn.port.getsockname()[1]
    ap = box["ap"] = SimulatedAutopilot(plan, Playback(port, str(out_dir / "autopilot.jsonl"), speed=speed))
    ap.start()
    try:
        link.wait_for_autopilot(60.0)
        out = MavlinkOutput(link, output or OutputConfig(), clock=ap.clock, scale=speed)
        paced = PacedSource(frames, ap.clock, speed, name="frames on the flight clock")
        result = run_scenario(
            sc, None, None, progress=show, writer=writer, localizer=localizer, events=link, source=paced, outputs=[out]
        )
    finally:
        records, sent = ap.stop()
        link.close()
    offset = link.sync.offset()
    meta["mavlink"] = {
        "speed": speed,
        **evaluate_gps_input(records, sc, speed),
        "companion_out": out.stats(),
        "link": link.summary(),
        "time_sync_error_ms": None if offset is None else round((offset + plan.boot_at_start_s) * 1000.0, 3),
        "autopilot_sent": sent,
    }
    return result
