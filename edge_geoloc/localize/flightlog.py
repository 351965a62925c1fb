"""The autopilot's own flight log as the loop's attitude, height and GNSS (replays, GPS-denied tests).

- PX4 ULog (``.ulg``, read with pyulog): ``vehicle_attitude`` (quaternion), ``distance_sensor`` (downward,
  inside its range), ``vehicle_local_position`` (``dist_bottom`` when valid, else ``-z``: height above the
  EKF origin), ``vehicle_gps_position`` or ``sensor_gps`` (``eph`` in metres is the 1-sigma horizontal
  accuracy; ``lat``/``lon`` in 1e-7 degrees, or ``latitude_deg``/``longitude_deg`` in newer logs).
- ArduPilot DataFlash (``.bin``, read with pymavlink's DFReader): ``ATT`` (degrees), ``RFND`` (downward,
  status Good), ``BARO`` (``Alt``: height above the take-off point), ``GPS`` instance 0 (``Status`` 3+ is a
  3D fix; ``HDop`` with the UERE of its fix kind gives sigma).

Height above ground per attitude sample, in this order: a downward rangefinder reading from the last
0.5 s (tilt-corrected), then the log's height above the take-off point / origin (right over terrain as high
as take-off only; the summary counts which one was used).

Time: seconds since the log's first timestamp plus ``offset_s`` (``--log-offset-s``): the log's time base
aligned with the frames'. A file that is not such a log, or is corrupt, is one clear error naming it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.geo import MapCRS
from edge_geoloc.localize.attitude import AttitudeLog
from edge_geoloc.localize.gnss import GpsFix, Prior, sigma_from_hdop
from edge_geoloc.localize.mavlink import FIX_TO_QUALITY, quaternion_to_euler_deg

log = logging.getLogger(__name__)

RANGE_MAX_AGE_S = 0.5
DOWNWARD = 25  # MAV_SENSOR_ROTATION_PITCH_270 / PX4 ROTATION_DOWNWARD_FACING
ULOG_TOPICS = ["vehicle_attitude", "distance_sensor", "vehicle_local_position", "vehicle_gps_position", "sensor_gps"]


class FlightLogError(ValueError):
    """A flight log that cannot be read, in one line naming it."""


class LogPrior(Prior):
    """GNSS fixes from a flight log, handed out by time."""

    def __init__(self, fixes: list[GpsFix], name: str, no_fix: int) -> None:
        self.fixes = sorted(fixes, key=lambda f: f.t)
        self.name, self.no_fix = name, no_fix
        self._i = 0

    def poll(self, t: float) -> list[GpsFix]:
        j = self._i
        while j < len(self.fixes) and self.fixes[j].t <= t:
            j += 1
        out, self._i = self.fixes[self._i : j], j
        return out

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, "fixes": len(self.fixes), "no_fix_epochs": self.no_fix}


@dataclass
class FlightLog:
    """What a flight log gives the loop: attitude (with height), the GNSS prior, and a summary."""

    attitude: AttitudeLog
    prior: LogPrior
    summary: dict[str, Any] = field(default_factory=dict)


def open_flight_log(path: str | Path, crs: MapCRS, offset_s: float = 0.0) -> FlightLog:
    """A ``.ulg`` (PX4) or ``.bin`` (ArduPilot) flight log (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FlightLogError(f"--log {path}: no such file (a PX4 .ulg or an ArduPilot .bin)")
    suffix = path.suffix.lower()
    if suffix == ".ulg":
        raw = _read_ulog(path)
    elif suffix == ".bin":
        raw = _read_dataflash(path)
    else:
        raise FlightLogError(f"--log {path}: unknown log type {suffix!r} (a PX4 .ulg or an ArduPilot .bin)")
    return _assemble(path, raw, crs, offset_s)


def _assemble(path: Path, raw: dict[str, Any], crs: MapCRS, offset_s: float) -> FlightLog:
    att_t, roll, pitch, yaw = raw["attitude"]
    if len(att_t) == 0:
        raise FlightLogError(f"--log {path}: no attitude in the log ({raw['kind']}: {raw['attitude_topic']})")
    t0 = raw["t0"]
    order = np.argsort(att_t, kind="stable")
    att_t, roll, pitch, yaw = (np.asarray(a, np.float64)[order] for a in (att_t, roll, pitch, yaw))
    keep = np.concatenate([[True], np.diff(att_t) > 0])  # strictly increasing times
    att_t, roll, pitch, yaw = att_t[keep], roll[keep], pitch[keep], yaw[keep]
    heights, used = _heights(att_t, roll, pitch, raw["range"], raw["height"])
    t = att_t - t0 + offset_s
    attitude = AttitudeLog(t, roll, pitch, np.mod(yaw, 360.0), heights, f"{path} attitude")
    fixes, no_fix = [], 0
    for g in raw["gnss"]:
        if g["fix_type"] < 2:
            no_fix += 1
            continue
        east, north = crs.to_en(g["lat"], g["lon"])
        quality = FIX_TO_QUALITY.get(int(g["fix_type"]), 1)
        sigma = g["eph_m"] / math.sqrt(2.0) if g.get("eph_m") else sigma_from_hdop(g.get("hdop"), quality)
        fixes.append(
            GpsFix(float(g["t"] - t0 + offset_s), g["lat"], g["lon"], float(east), float(north), float(sigma), quality,
                   g.get("hdop"), g.get("course_deg"), g.get("speed_mps"))
        )  # fmt: skip
    summary = {
        "log": str(path),
        "kind": raw["kind"],
        "attitude_samples": len(t),
        "gnss_fixes": len(fixes),
        "gnss_no_fix": no_fix,
        "height_from": dict(used),
        "duration_s": round(float(att_t[-1] - att_t[0]), 2),
        **raw.get("notes", {}),
    }
    return FlightLog(attitude, LogPrior(fixes, f"{raw['kind']} {path}", no_fix), summary)


def _heights(
    t: np.ndarray,
    roll: np.ndarray,
    pitch: np.ndarray,
    rng: tuple[np.ndarray, np.ndarray],
    hgt: tuple[np.ndarray, np.ndarray],
) -> tuple[np.ndarray, Counter[str]]:
    out = np.full(len(t), np.nan)
    used: Counter[str] = Counter()
    rt, rd = (np.asarray(a, np.float64) for a in rng)
    ht, hv = (np.asarray(a, np.float64) for a in hgt)
    tilt = np.cos(np.radians(roll)) * np.cos(np.radians(pitch))
    for i, ti in enumerate(t):
        j = int(np.searchsorted(rt, ti, side="right")) - 1
        if j >= 0 and ti - rt[j] <= RANGE_MAX_AGE_S and math.isfinite(rd[j]):
            out[i] = rd[j] * tilt[i]
            used["rangefinder"] += 1
            continue
        k = int(np.searchsorted(ht, ti, side="right")) - 1
        if k >= 0 and ti - ht[k] <= 2.0 and math.isfinite(hv[k]):
            out[i] = hv[k]
            used["above_take_off"] += 1
        else:
            used["none"] += 1
    return out, used


def _read_ulog(path: Path) -> dict[str, Any]:
    try:
        from pyulog import ULog
    except ImportError:
        raise FlightLogError(
            f"--log {path}: reading a ULog needs pyulog (pip install 'edge-geoloc[mavlink]')"
        ) from None
    try:
        ulog = ULog(str(path), ULOG_TOPICS, disable_str_exceptions=True)
    except Exception as err:  # pyulog raises ULogException, struct.error, IndexError... on a bad file
        raise FlightLogError(f"--log {path}: not a readable PX4 ULog ({type(err).__name__}: {err})") from None
    notes: dict[str, Any] = {}
    if ulog.file_corruption:
        notes["corrupt_parts_skipped"] = True
        log.warning("--log %s: the ULog is partly corrupt; pyulog skipped what it could not read", path)

    def topic(name: str) -> dict[str, np.ndarray] | None:
        found = [d for d in ulog.data_list if d.name == name and d.multi_id == 0]
        return found[0].data if found else None

    att = topic("vehicle_attitude")
    if att is None:
        raise FlightLogError(f"--log {path}: no vehicle_attitude topic in the ULog (logged topics: {_names(ulog)})")
    euler = np.array([quaternion_to_euler_deg(*q) for q in zip(*(att[f"q[{i}]"] for i in range(4)))]).reshape(-1, 3)
    rng_t, rng_d = np.array([]), np.array([])
    ds = topic("distance_sensor")
    if ds is not None:
        ok = (ds["orientation"] == DOWNWARD) & (ds["current_distance"] >= ds["min_distance"])
        ok &= ds["current_distance"] <= ds["max_distance"]
        if "signal_quality" in ds:
            ok &= ds["signal_quality"] != 0  # 0: invalid (-1: unknown, kept)
        rng_t, rng_d = ds["timestamp"][ok] / 1e6, ds["current_distance"][ok].astype(np.float64)
    hgt_t, hgt = np.array([]), np.array([])
    lp = topic("vehicle_local_position")
    if lp is not None:
        valid = lp["dist_bottom_valid"].astype(bool) if "dist_bottom_valid" in lp else np.zeros(len(lp["z"]), bool)
        hgt_t = lp["timestamp"] / 1e6
        hgt = np.where(valid, lp.get("dist_bottom", -lp["z"]), -lp["z"]).astype(np.float64)
    gnss = []
    gp = topic("vehicle_gps_position") or topic("sensor_gps")
    if gp is not None:
        latlon = ("lat", "lon", 1e-7) if "lat" in gp else ("latitude_deg", "longitude_deg", 1.0)
        for i in range(len(gp["timestamp"])):
            vel_ok = bool(gp["vel_ned_valid"][i]) if "vel_ned_valid" in gp else True
            gnss.append({
                "t": gp["timestamp"][i] / 1e6,
                "fix_type": int(gp["fix_type"][i]),
                "lat": float(gp[latlon[0]][i]) * latlon[2],
                "lon": float(gp[latlon[1]][i]) * latlon[2],
                "eph_m": float(gp["eph"][i]) if "eph" in gp else None,
                "hdop": float(gp["hdop"][i]) if "hdop" in gp else None,
                "course_deg": math.degrees(float(gp["cog_rad"][i])) % 360.0 if vel_ok and "cog_rad" in gp else None,
                "speed_mps": float(gp["vel_m_s"][i]) if vel_ok and "vel_m_s" in gp else None,
            })  # fmt: skip
    return {
        "kind": "PX4 ULog",
        "attitude_topic": "vehicle_attitude",
        "t0": ulog.start_timestamp / 1e6,
        "attitude": (att["timestamp"] / 1e6, euler[:, 0], euler[:, 1], euler[:, 2]),
        "range": (rng_t, rng_d),
        "height": (hgt_t, hgt),
        "gnss": gnss,
        "notes": notes,
    }


def _names(ulog: Any) -> str:
    return ", ".join(sorted({d.name for d in ulog.data_list})) or "none"


@contextlib.contextmanager
def _captured_output() -> Iterator[list[str]]:
    """stdout and stderr of this block, at the file-descriptor level (C extensions print there too): the
    text lands in the yielded list's first item when the block ends."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    out = [""]
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            out[0] = tmp.read().decode("utf-8", "replace")


def _read_dataflash(path: Path) -> dict[str, Any]:
    try:
        from edge_geoloc.localize.mavlink import pymavlink

        pymavlink()
        from pymavlink.DFReader import DFReader_binary
    except ImportError:
        raise FlightLogError(
            f"--log {path}: reading a DataFlash log needs pymavlink (pip install 'edge-geoloc[mavlink]')"
        ) from None
    att: list[tuple[float, float, float, float]] = []
    rng: list[tuple[float, float]] = []
    baro: list[tuple[float, float]] = []
    gnss: list[dict[str, Any]] = []
    try:
        with _captured_output() as noise:  # DFReader (and its C indexer) print a line per bad byte
            reader = DFReader_binary(str(path), zero_time_base=True)
            while (m := reader.recv_match(type=["ATT", "RFND", "BARO", "GPS"])) is not None:
                kind, us = m.get_type(), getattr(m, "TimeUS", None)
                if us is None:
                    continue
                t = us / 1e6
                if kind == "ATT":
                    att.append((t, float(m.Roll), float(m.Pitch), float(m.Yaw)))
                elif kind == "RFND" and getattr(m, "Orient", DOWNWARD) == DOWNWARD and getattr(m, "Stat", 4) == 4:
                    rng.append((t, float(m.Dist)))
                elif kind == "BARO" and getattr(m, "I", 0) == 0:
                    baro.append((t, float(m.Alt)))
                elif kind == "GPS" and getattr(m, "I", 0) == 0:
                    gnss.append({
                        "t": t, "fix_type": int(m.Status), "lat": float(m.Lat), "lon": float(m.Lng),
                        "hdop": float(m.HDop), "course_deg": float(m.GCrs) % 360.0, "speed_mps": float(m.Spd),
                    })  # fmt: skip
    except Exception as err:  # DFReader raises struct.error, KeyError, ... on a damaged file
        raise FlightLogError(
            f"--log {path}: not a readable ArduPilot DataFlash log ({type(err).__name__}: {err})"
        ) from None
    garbage = noise[0].count("bad header")
    if not att:
        formats = sorted(n for n in getattr(reader, "name_to_id", {}) if n != "FMT")
        what = f"message types {', '.join(formats)}" if formats else "no DataFlash records at all"
        raise FlightLogError(f"--log {path}: no ATT (attitude) messages in the DataFlash log ({what})")
    a = np.asarray(att)
    r = np.asarray(rng).reshape(-1, 2)
    b = np.asarray(baro).reshape(-1, 2)
    first = min(x[0] for x in (att[0], *(rng[:1]), *(baro[:1]), *((g["t"],) for g in gnss[:1])))
    return {
        "kind": "ArduPilot DataFlash",
        "attitude_topic": "ATT",
        "t0": first,
        "attitude": (a[:, 0], a[:, 1], a[:, 2], a[:, 3]),
        "range": (r[:, 0], r[:, 1]),
        "height": (b[:, 0], b[:, 1]),
        "gnss": gnss,
        "notes": {"garbage_bytes_skipped": garbage} if garbage else {},
    }
