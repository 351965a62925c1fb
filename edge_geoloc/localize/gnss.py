"""Position priors (a GNSS receiver, or none) and odometry, as time-stamped events for the filter.

Priors (:func:`open_prior` parses ``--gps``):

- ``none``: GPS denied; the loop localizes from vision alone (and odometry, when given).
- an NMEA 0183 file (replayed on its own clock: seconds since its first sentence, plus an offset);
- ``udp://HOST:PORT`` (NMEA over UDP, port 10110 by convention) or ``serial:/dev/ttyUSB0[:BAUD]``
  (needs pyserial): live, stamped with the loop's clock on arrival;
- the simulated receiver of a synthetic drive (:class:`SimulatedGps`).

GGA gives position, fix quality and HDOP; RMC gives course and speed over ground (a heading
measurement while moving); GSA's HDOP fills a GGA without one. Checksums are verified and bad
sentences are counted by reason and skipped (:class:`~edge_geoloc.geo.nmea.NmeaReader`).

HDOP and fix quality become a per-axis sigma in metres: ``hdop * UERE(quality) / sqrt(2)``, with
the user equivalent range error of each kind of fix (:data:`UERE_M`).
"""

from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_geoloc.geo import MapCRS
from edge_geoloc.geo.nmea import GGA, GSA, RMC, NmeaReader

log = logging.getLogger(__name__)

# User equivalent range error per GGA fix quality: hdop * UERE is the horizontal RMS error (DRMS).
UERE_M = {
    1: 4.0,  # autonomous GPS (SPS)
    2: 1.2,  # differential GPS
    3: 3.0,  # PPS
    4: 0.03,  # RTK fixed
    5: 0.4,  # RTK float
    6: 30.0,  # dead reckoning: the receiver's own estimate, trusted little
    7: 10.0,  # manual input
    8: 4.0,  # simulator
    9: 1.5,  # SBAS
}
DEFAULT_HDOP = 1.5  # a receiver that omits HDOP
MIN_COURSE_SPEED_MPS = 2.0  # below this, course over ground says little about heading


def sigma_from_hdop(hdop: float | None, quality: int) -> float | None:
    """Per-axis 1-sigma in metres from HDOP and GGA fix quality; None without a fix (quality 0)."""
    if quality <= 0:
        return None
    if quality not in UERE_M:
        raise ValueError(f"GGA fix quality must be 0..9, got {quality}")
    h = DEFAULT_HDOP if hdop is None or not math.isfinite(hdop) or hdop <= 0 else float(hdop)
    return h * UERE_M[quality] / math.sqrt(2.0)


@dataclass(frozen=True)
class GpsFix:
    """One receiver fix in the map CRS. ``course_deg`` is clockwise from TRUE north."""

    t: float
    lat: float
    lon: float
    east: float
    north: float
    sigma_m: float  # per axis, 1-sigma
    quality: int = 1
    hdop: float | None = None
    course_deg: float | None = None
    speed_mps: float | None = None

    def course_sigma_deg(self) -> float | None:
        """How well course over ground gives the heading: None when too slow to tell."""
        if self.course_deg is None or self.speed_mps is None or self.speed_mps < MIN_COURSE_SPEED_MPS:
            return None
        return max(2.0, math.degrees(0.3 / self.speed_mps))  # 0.3 m/s velocity noise, plus crab/slip


class Prior:
    """A time-ordered stream of GPS fixes; :meth:`poll` returns those up to ``t`` not returned yet."""

    name = "none"

    def poll(self, t: float) -> list[GpsFix]:
        return []

    def stats(self) -> dict[str, Any]:
        return {"source": self.name}

    def close(self) -> None:
        pass


class _Queue(Prior):
    """Fixes kept in time order, handed out by time."""

    def __init__(self) -> None:
        self._pending: deque[GpsFix] = deque()
        self._lock = threading.Lock()
        self.fixes = 0

    def _push(self, fix: GpsFix) -> None:
        with self._lock:
            self._pending.append(fix)
            self.fixes += 1

    def poll(self, t: float) -> list[GpsFix]:
        out = []
        with self._lock:
            while self._pending and self._pending[0].t <= t:
                out.append(self._pending.popleft())
        return out


class NmeaDecoder:
    """NMEA records -> :class:`GpsFix` es: GGA for the fix; the RMC of the same epoch (before or after
    it) for course and speed; GSA's HDOP when the GGA has none. A GGA's fix is held until its epoch's
    RMC or the next epoch arrives (:meth:`flush` at the end)."""

    def __init__(self, crs: MapCRS) -> None:
        self.crs = crs
        self.rmc: RMC | None = None
        self.gsa_hdop: float | None = None
        self.no_fix = 0  # epochs the receiver reported without a fix
        self.saw_gga = False
        self._pending: tuple[GGA, float] | None = None

    def record(self, rec: Any, t: float) -> list[GpsFix]:
        out: list[GpsFix] = []
        if isinstance(rec, GSA):
            self.gsa_hdop = rec.hdop
            return out
        if isinstance(rec, RMC):
            self.rmc = rec
            if self._pending is not None and self._pending[0].time_utc == rec.time_utc:
                out += self.flush()
            elif not self.saw_gga and rec.has_fix:  # a receiver that sends RMC only
                out.append(self._fix(t, rec.lat, rec.lon, 1, None, rec))
            return out
        if isinstance(rec, GGA):
            self.saw_gga = True
            out += self.flush()
            if not rec.has_fix:
                self.no_fix += 1
                return out
            self._pending = (rec, t)
            if self.rmc is not None and self.rmc.time_utc == rec.time_utc:  # RMC came first
                out += self.flush()
        return out

    def flush(self) -> list[GpsFix]:
        if self._pending is None:
            return []
        rec, t = self._pending
        self._pending = None
        rmc = self.rmc if self.rmc is not None and self.rmc.time_utc == rec.time_utc else None
        hdop = rec.hdop if rec.hdop is not None else self.gsa_hdop
        return [self._fix(t, rec.lat, rec.lon, rec.quality, hdop, rmc)]

    def _fix(self, t: float, lat: float, lon: float, quality: int, hdop: float | None, rmc: RMC | None) -> GpsFix:
        east, north = self.crs.to_en(lat, lon)
        sigma = sigma_from_hdop(hdop, quality)
        course = rmc.course_deg if rmc is not None and rmc.has_fix else None
        speed = rmc.speed_mps if rmc is not None and rmc.has_fix else None
        return GpsFix(float(t), lat, lon, float(east), float(north), float(sigma), quality, hdop, course, speed)


def _seconds_of_day(rec: Any) -> float | None:
    tt = getattr(rec, "time_utc", None)
    if tt is None:
        return None
    return tt.hour * 3600 + tt.minute * 60 + tt.second + tt.microsecond * 1e-6


class NmeaFilePrior(_Queue):
    """An NMEA log replayed on its own clock: t = UTC seconds since its first timed sentence + ``offset_s``."""

    def __init__(self, path: str | Path, crs: MapCRS, offset_s: float = 0.0) -> None:
        super().__init__()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"GPS log {path}: no such file (expected an NMEA 0183 log, 'none', udp://HOST:PORT or serial:DEVICE)"
            )
        self.name = f"nmea file {path}"
        self.reader = NmeaReader(path.read_bytes())
        decoder = NmeaDecoder(crs)
        first: float | None = None
        last = None
        day = 0.0
        for rec in self.reader:
            sod = _seconds_of_day(rec)
            if sod is None:
                continue
            if last is not None and sod < last - 43200:  # passed midnight UTC
                day += 86400.0
            last = sod
            first = sod if first is None else first
            for fix in decoder.record(rec, sod + day - first + offset_s):
                self._push(fix)
        for fix in decoder.flush():
            self._push(fix)
        self.decoder = decoder

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, "fixes": self.fixes, "no_fix_epochs": self.decoder.no_fix, **self.reader.summary()}


class NmeaStreamPrior(_Queue):
    """Live NMEA from UDP datagrams or a serial port, read in a thread and stamped on arrival."""

    def __init__(self, spec: str, crs: MapCRS, clock: Any = time.monotonic) -> None:
        super().__init__()
        self.reader = NmeaReader()
        self.decoder = NmeaDecoder(crs)
        self.clock = clock
        self._stop = threading.Event()
        if spec.startswith("udp://"):
            host, port = _host_port(spec[len("udp://") :], "udp://HOST:PORT")
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._sock.bind((host, port))
            self._sock.settimeout(0.2)
            self.port = self._sock.getsockname()[1]
            self._read = self._read_udp
            self.name = f"nmea udp {host}:{self.port}"
        elif spec.startswith("serial:"):
            device, baud = _serial_spec(spec)
            try:
                import serial  # pyserial
            except ImportError:
                raise RuntimeError(
                    f"--gps {spec}: reading NMEA from a serial port needs pyserial (pip install pyserial)"
                ) from None
            self._port = serial.Serial(device, baud, timeout=0.2)
            self._read = self._port.read_all if hasattr(self._port, "read_all") else lambda: self._port.read(4096)
            self.name = f"nmea serial {device} at {baud} baud"
        else:
            raise ValueError(f"not an NMEA stream: {spec!r} (expected udp://HOST:PORT or serial:DEVICE[:BAUD])")
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _read_udp(self) -> bytes:
        try:
            return self._sock.recv(65536)
        except TimeoutError:
            return b""
        except OSError:
            return b""

    def _run(self) -> None:
        while not self._stop.is_set():
            data = self._read()
            if not data:
                continue
            now = float(self.clock())
            for rec in self.reader.feed(data):
                for fix in self.decoder.record(rec, now):
                    self._push(fix)
            for fix in self.decoder.flush():  # no waiting for the next read: a fix is due now
                self._push(fix)

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, "fixes": self.fixes, "no_fix_epochs": self.decoder.no_fix, **self.reader.summary()}

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        if hasattr(self, "_sock"):
            self._sock.close()
        if hasattr(self, "_port"):
            self._port.close()


def _host_port(text: str, form: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected {form}, got {text!r}")
    return host or "0.0.0.0", int(port)


def _serial_spec(spec: str) -> tuple[str, int]:
    rest = spec[len("serial:") :]
    device, sep, baud = rest.rpartition(":")
    if sep and baud.isdigit():
        return device, int(baud)
    if not rest:
        raise ValueError(f"expected serial:DEVICE[:BAUD], got {spec!r}")
    return rest, 9600


def open_prior(spec: str | None, crs: MapCRS, offset_s: float = 0.0, clock: Any = time.monotonic) -> Prior:
    """A prior from a ``--gps`` string: none, an NMEA file, udp://HOST:PORT or serial:DEVICE[:BAUD]."""
    text = (spec or "none").strip()
    if text.lower() in ("none", "denied", ""):
        return Prior()
    if text.startswith(("udp://", "serial:")):
        return NmeaStreamPrior(text, crs, clock=clock)
    return NmeaFilePrior(text, crs, offset_s=offset_s)
