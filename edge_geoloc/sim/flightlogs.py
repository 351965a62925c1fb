"""Flight logs of a simulated flight, written with the logging libraries' own writers (workstation wing):
PX4 ULog with pyulog's ``ULog.write_ulog`` (its own format and subscription records, filled here), ArduPilot
DataFlash with pymavlink's ``DFMessage.get_msgbuf`` packer (FMT records first, then data). What the
device's readers (:mod:`edge_geoloc.localize.flightlog`) replay, in tests and for the UAV demo's replays.

:class:`FlightRecord` holds the samples (times in seconds since boot); ArduPilot's record layouts are its
own field types (``ATT`` centidegrees, ``GPS`` ``L`` = 1e-7 degrees, ``RFND`` centimetres) with the columns
the reader needs.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class FlightRecord:
    """Samples of one flight (seconds since the autopilot's boot); GNSS ``fix_type`` as MAVLink's."""

    att_t: np.ndarray
    roll_deg: np.ndarray
    pitch_deg: np.ndarray
    yaw_deg: np.ndarray
    height_t: np.ndarray
    height_m: np.ndarray  # above take-off (barometer / EKF origin)
    gps_t: np.ndarray
    gps_fix_type: np.ndarray
    gps_lat: np.ndarray
    gps_lon: np.ndarray
    gps_eph_m: np.ndarray  # 1-sigma horizontal accuracy (ULog) ...
    gps_hdop: np.ndarray  # ... HDOP (DataFlash)
    gps_course_deg: np.ndarray
    gps_speed_mps: np.ndarray
    range_t: np.ndarray = field(default_factory=lambda: np.array([]))
    range_m: np.ndarray = field(default_factory=lambda: np.array([]))

    @classmethod
    def from_plan(cls, plan: Any, boot_s: float | None = None) -> FlightRecord:
        """The simulated autopilot's plan (:class:`~edge_geoloc.sim.autopilot.AutopilotPlan`) as its log."""
        b = plan.boot_at_start_s if boot_s is None else boot_s
        valid = np.asarray(plan.gps_valid, bool)
        return cls(
            plan.att_t + b, plan.roll_deg, plan.pitch_deg, plan.yaw_deg, plan.att_t + b, plan.height_m,
            plan.gps_t + b, np.where(valid, 3, 1), np.where(valid, plan.gps_lat, 0.0), np.where(valid, plan.gps_lon, 0.0),
            np.where(valid, plan.gps_sigma_m * math.sqrt(2.0), 99.0), np.where(valid, plan.gps_hdop, 99.0),
            np.nan_to_num(plan.gps_course_deg), np.nan_to_num(plan.gps_speed_mps),
        )  # fmt: skip


def _euler_to_quaternion(roll: np.ndarray, pitch: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    r, p, y = (np.radians(a) / 2 for a in (roll, pitch, yaw))
    cr, sr, cp, sp, cy, sy = np.cos(r), np.sin(r), np.cos(p), np.sin(p), np.cos(y), np.sin(y)
    return np.stack(
        [
            cr * cp * cy + sr * sp * sy,
            sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
        ],
        1,
    )


def write_ulog(path: str | Path, rec: FlightRecord) -> Path:
    """A PX4 ULog of ``rec`` written by pyulog (topics as PX4 logs them, the fields the reader uses)."""
    from pyulog import ULog

    def us(t: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(t) * 1e6).astype(np.uint64)

    q = _euler_to_quaternion(rec.roll_deg, rec.pitch_deg, rec.yaw_deg)
    topics: dict[str, tuple[list[tuple[str, str]], dict[str, np.ndarray]]] = {
        "vehicle_attitude": (
            [("uint64_t", "timestamp"), ("float[4]", "q")],
            {"timestamp": us(rec.att_t), **{f"q[{i}]": q[:, i] for i in range(4)}},
        ),
        "vehicle_local_position": (
            [("uint64_t", "timestamp"), ("float", "z"), ("float", "dist_bottom"), ("bool", "dist_bottom_valid")],
            {"timestamp": us(rec.height_t), "z": -rec.height_m, "dist_bottom": rec.height_m,
             "dist_bottom_valid": np.zeros(len(rec.height_t))},
        ),
        "vehicle_gps_position": (
            [("uint64_t", "timestamp"), ("int32_t", "lat"), ("int32_t", "lon"), ("float", "eph"), ("float", "hdop"),
             ("float", "vel_m_s"), ("float", "cog_rad"), ("bool", "vel_ned_valid"), ("uint8_t", "fix_type")],
            {"timestamp": us(rec.gps_t), "lat": np.round(rec.gps_lat * 1e7), "lon": np.round(rec.gps_lon * 1e7),
             "eph": rec.gps_eph_m, "hdop": rec.gps_hdop, "vel_m_s": rec.gps_speed_mps,
             "cog_rad": np.radians(rec.gps_course_deg), "vel_ned_valid": rec.gps_fix_type >= 3,
             "fix_type": rec.gps_fix_type},
        ),
    }  # fmt: skip
    if len(rec.range_t):
        topics["distance_sensor"] = (
            [("uint64_t", "timestamp"), ("float", "min_distance"), ("float", "max_distance"),
             ("float", "current_distance"), ("int8_t", "signal_quality"), ("uint8_t", "orientation")],
            {"timestamp": us(rec.range_t), "min_distance": np.full(len(rec.range_t), 0.2),
             "max_distance": np.full(len(rec.range_t), 100.0), "current_distance": rec.range_m,
             "signal_quality": np.full(len(rec.range_t), -1), "orientation": np.full(len(rec.range_t), 25)},
        )  # fmt: skip
    ulog = ULog(None)  # an empty log, filled through pyulog's own records and written by its writer
    ulog._file_version = 1
    ulog._start_timestamp = int(us(np.array([rec.att_t[0]]))[0])
    ulog._msg_info_dict.update(sys_name="PX4", ver_hw="SITL")
    ulog._msg_info_dict_types.update(sys_name="char[3]", ver_hw="char[4]")
    for msg_id, (name, (fields, data)) in enumerate(topics.items()):
        spec = name + ":" + "".join(f"{typ} {fname};" for typ, fname in fields)
        ulog._message_formats[name] = ULog.MessageFormat(spec.encode(), None)
        added = ULog._MessageAddLogged(struct.pack("<BH", 0, msg_id) + name.encode(), None, ulog._message_formats)
        rows = np.zeros(len(data["timestamp"]), dtype=added.dtype)
        for key, values in data.items():
            rows[key] = values
        added.buffer = bytearray(rows.tobytes())
        ulog._data_list.append(ULog.Data(added))
    ulog.write_ulog(str(path))
    return Path(path)


# ArduPilot's record layouts (its field types; the columns the reader needs).
DF_FORMATS = {
    "ATT": (130, "QccC", "TimeUS,Roll,Pitch,Yaw"),
    "BARO": (131, "QBf", "TimeUS,I,Alt"),
    "RFND": (132, "QBCBB", "TimeUS,Instance,Dist,Stat,Orient"),
    "GPS": (133, "QBBIHBcLLeff", "TimeUS,I,Status,GMS,GWk,NSats,HDop,Lat,Lng,Alt,Spd,GCrs"),
}


def write_dataflash(path: str | Path, rec: FlightRecord) -> Path:
    """An ArduPilot DataFlash log of ``rec``: every record packed by pymavlink's ``DFMessage.get_msgbuf``."""
    from edge_geoloc.localize.mavlink import pymavlink

    pymavlink()
    from pymavlink.DFReader import DFFormat, DFMessage

    fmt_fmt = DFFormat(0x80, "FMT", 89, "BBnNZ", "Type,Length,Name,Format,Columns")
    formats = {name: DFFormat(tid, name, 0, f, cols) for name, (tid, f, cols) in DF_FORMATS.items()}
    out = bytearray()
    for name, f in formats.items():
        f.len = 3 + struct.calcsize(f.msg_struct)
        out += DFMessage(fmt_fmt, [f.type, f.len, name, f.format, ",".join(f.columns)], False, None).get_msgbuf()

    def pack(name: str, values: list[Any]) -> None:
        buf = DFMessage(formats[name], values, False, None).get_msgbuf()  # values in engineering units
        if buf is None:
            raise ValueError(f"DataFlash {name}: values {values} do not pack")
        out.extend(buf)

    rows: list[tuple[float, str, list[Any]]] = []
    for i, t in enumerate(rec.att_t):
        rows.append((t, "ATT", [rec.roll_deg[i], rec.pitch_deg[i], rec.yaw_deg[i] % 360.0]))
    for i, t in enumerate(rec.height_t):
        rows.append((t, "BARO", [0, rec.height_m[i]]))
    for i, t in enumerate(rec.range_t):
        rows.append((t, "RFND", [0, rec.range_m[i], 4, 25]))
    for i, t in enumerate(rec.gps_t):
        ok = rec.gps_fix_type[i] >= 3
        rows.append((t, "GPS", [0, int(rec.gps_fix_type[i]), 0, 0, 12 if ok else 0, rec.gps_hdop[i],
                                rec.gps_lat[i], rec.gps_lon[i], 100.0, rec.gps_speed_mps[i], rec.gps_course_deg[i]]))  # fmt: skip
    for t, name, values in sorted(rows, key=lambda r: r[0]):
        pack(name, [round(t * 1e6), *(float(v) if isinstance(v, np.floating) else v for v in values)])
    Path(path).write_bytes(bytes(out))
    return Path(path)


@dataclass
class LogReplay:
    """The events of the UAV demo's flight-log replay: attitude (with height) and GNSS from the log as the
    device reads it, odometry from the scenario (neither log format carries the airspeed-and-gyro odometry)."""

    attitude: Any
    prior: Any
    odometry: Any
    summary: dict[str, Any]


def replay_log(sc: Any, kind: str, out_dir: Path) -> LogReplay:
    """The flight of ``sc`` written as the autopilot's own log (``ulg``: PX4 ULog by pyulog; ``bin``: ArduPilot
    DataFlash by pymavlink) to ``out_dir/flight.<kind>``, then read back by the device's reader
    (:func:`~edge_geoloc.localize.flightlog.open_flight_log`) on the flight's clock: the log's first sample
    is the flight's first attitude sample, so ``--log-offset-s`` is that sample's flight time."""
    from edge_geoloc.localize.flightlog import open_flight_log
    from edge_geoloc.localize.odometry import Odometry
    from edge_geoloc.sim.autopilot import AutopilotPlan

    writers = {"ulg": write_ulog, "bin": write_dataflash}
    if kind not in writers:
        raise ValueError(f"flight log kind must be ulg (PX4) or bin (ArduPilot), got {kind!r}")
    plan = AutopilotPlan.from_scenario(sc)
    path = writers[kind](Path(out_dir) / f"flight.{kind}", FlightRecord.from_plan(plan))
    logged = open_flight_log(path, sc.crs, offset_s=float(plan.att_t[0]))
    return LogReplay(logged.attitude, logged.prior, Odometry.from_log(sc.odometry), logged.summary)
