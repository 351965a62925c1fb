"""Position priors (a GNSS receiver, or none) and odometry, as time-stamped events for the filter.

Priors (:func:`open_prior` parses ``--gps``):

- ``none``: GPS denied; the loop localizes from vision alone (and odometry, when given).
- an NMEA 0183 file (replayed on its own clock: seconds since its first sentence, plus an offset);
- ``udp://HOST:PORT`` (NMEA over UDP, port 10110 by convention) or ``serial:/dev/ttyUSB0[:BAUD]``
  (needs pyserial): live, stamped with the loop's clock on arrival;
- the simulated receiver of a synthetic drive (:class:`SimulatedGps`).

One receiver epoch (the sentences sharing a UTC time) is one fix (:class:`NmeaDecoder`): GGA gives
position, fix quality and HDOP; RMC (else VTG) gives course and speed over ground (a heading measurement
while moving); the epoch's GSA HDOP fills a GGA without one. Checksums are verified and bad sentences
are counted by reason and skipped (:class:`~edge_geoloc.geo.nmea.NmeaReader`); a log or port that yields
no valid sentence is reported (``problem``), and ``run --strict`` refuses such a log.

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
from edge_geoloc.geo.nmea import GGA, GSA, RMC, VTG, NmeaReader, Reason

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


@dataclass
class _Epoch:
    """The sentences of one receiver epoch (one UTC time) merged: position and quality from the first GGA
    with a fix, course/speed/date from RMC (else VTG), HDOP from GGA or else GSA."""

    time_utc: Any  # datetime.time of the epoch
    t: float  # on the prior's clock: when its first sentence arrived
    gga: GGA | None = None
    gga_seen: bool = False  # a GGA (maybe without a fix) was in this epoch
    rmc: RMC | None = None
    vtg: VTG | None = None
    gsa_hdop: float | None = None
    emitted: bool = False  # a live stream hands the fix out as soon as it has one; later sentences are merged away


class NmeaDecoder:
    """NMEA records -> :class:`GpsFix` es, **one per epoch** (the sentences sharing a UTC time).

    Receivers send several sentences per epoch, in their own order: a u-blox ZED-F9P (NMEA 4.1, talker
    GN) RMC, VTG, GGA, GSA; a NEO-M8N GGA, RMC, GSA, VTG; a SiRFstarV ``$GPGGA`` and ``$GLGGA`` of the same
    second. They are merged into one fix: position, quality and HDOP from the first GGA with a fix, HDOP
    from the epoch's GSA when the GGA has none (GSA carries no time: it belongs to the epoch it arrives
    in), course and speed from RMC (else VTG). An epoch whose GGA has no fix is counted (``no_fix``), not
    a fix; a receiver that sends RMC only gives one fix per valid RMC (default HDOP). Timed sentences
    close the previous epoch; :meth:`flush` closes the last (a file's end) or, with ``partial=True``,
    hands out an epoch that already has its position (a live stream, so a fix is not held a second)."""

    def __init__(self, crs: MapCRS) -> None:
        self.crs = crs
        self.no_fix = 0  # epochs the receiver reported without a fix
        self.epochs = 0
        self.saw_gga = False
        self.unprojectable = 0  # fixes whose lat/lon the map CRS cannot project (the far side of the earth)
        self._epoch: _Epoch | None = None

    def record(self, rec: Any, t: float) -> list[GpsFix]:
        """One decoded sentence arriving at ``t``; returns the fixes of the epochs it closed."""
        out: list[GpsFix] = []
        when = getattr(rec, "time_utc", None)
        if isinstance(rec, GGA | RMC) and when is not None:
            if self._epoch is None or self._epoch.time_utc != when:
                out += self._close()
                self._epoch = _Epoch(when, float(t))
                self.epochs += 1
        ep = self._epoch
        if ep is None:  # untimed sentences (GSA, VTG, HDT) before the first epoch, or a GGA without a time
            return out
        if isinstance(rec, GGA):
            self.saw_gga = True
            ep.gga_seen = True
            if ep.gga is None and rec.has_fix:
                ep.gga = rec
        elif isinstance(rec, RMC):
            if ep.rmc is None or (not ep.rmc.has_fix and rec.has_fix):
                ep.rmc = rec
        elif isinstance(rec, GSA):
            if ep.gsa_hdop is None and rec.hdop is not None and rec.hdop > 0:
                ep.gsa_hdop = rec.hdop
        elif isinstance(rec, VTG) and ep.vtg is None:
            ep.vtg = rec
        return out

    def flush(self, partial: bool = False) -> list[GpsFix]:
        """Close the open epoch (``partial``: hand it out only if it has a position, keep it open)."""
        if not partial:
            return self._close()
        ep = self._epoch
        if ep is None or ep.emitted or (ep.gga is None and not (not self.saw_gga and ep.rmc is not None)):
            return []
        fix = self._fix_of(ep)
        ep.emitted = True
        return [] if fix is None else [fix]

    def _close(self) -> list[GpsFix]:
        ep, self._epoch = self._epoch, None
        if ep is None or ep.emitted:
            return []
        fix = self._fix_of(ep)
        if fix is None and (ep.gga_seen or (ep.rmc is not None and not ep.rmc.has_fix)):
            self.no_fix += 1
        return [] if fix is None else [fix]

    def _fix_of(self, ep: _Epoch) -> GpsFix | None:
        rmc = ep.rmc if ep.rmc is not None and ep.rmc.has_fix else None
        if ep.gga is not None:
            gga = ep.gga
            hdop = gga.hdop if gga.hdop is not None and gga.hdop > 0 else ep.gsa_hdop
            return self._fix(ep.t, gga.lat, gga.lon, gga.quality, hdop, rmc, ep.vtg)
        if rmc is not None and not self.saw_gga:  # a receiver that sends RMC only
            return self._fix(ep.t, rmc.lat, rmc.lon, 1, ep.gsa_hdop, rmc, ep.vtg)
        return None

    def _fix(
        self, t: float, lat: float, lon: float, quality: int, hdop: float | None, rmc: RMC | None, vtg: VTG | None
    ) -> GpsFix | None:
        east, north = self.crs.to_en(lat, lon)
        if not (math.isfinite(east) and math.isfinite(north)):  # a position the map's projection cannot hold
            self.unprojectable += 1
            return None
        sigma = sigma_from_hdop(hdop, quality)
        if rmc is not None:
            course, speed = rmc.course_deg, rmc.speed_mps
        elif vtg is not None and vtg.mode != "N":
            course, speed = vtg.course_true_deg, vtg.speed_mps
        else:
            course = speed = None
        if course is not None and not (math.isfinite(course) and 0.0 <= course <= 360.0):
            course = None
        if speed is not None and not (math.isfinite(speed) and speed >= 0.0):
            speed = None
        return GpsFix(float(t), lat, lon, float(east), float(north), float(sigma), quality, hdop, course, speed)


def _seconds_of_day(rec: Any) -> float | None:
    tt = getattr(rec, "time_utc", None)
    if tt is None:
        return None
    return tt.hour * 3600 + tt.minute * 60 + tt.second + tt.microsecond * 1e-6


SILENT_AFTER_BAD = 50  # bad sentences (or runs of junk) before the first good one that make a log suspect
SILENT_AFTER_S = 10.0  # a live receiver that has sent nothing decodable for this long is reported


def reader_counts(reader: NmeaReader) -> str:
    """What a reader skipped, by reason, for one-line messages (``bad_checksum 12, not_nmea 3``)."""
    bad = {f"{r.value} {n}" for r, n in reader.errors.most_common()}
    return ", ".join(sorted(bad)) if bad else "nothing decodable"


class _NmeaPrior(_Queue):
    """NMEA decoded into fixes (a log or a live stream): one reader, one decoder, one ``problem`` line."""

    def __init__(self, crs: MapCRS, reader: NmeaReader) -> None:
        super().__init__()
        self.reader = reader
        self.decoder = NmeaDecoder(crs)
        self.problem: str | None = None

    def stats(self) -> dict[str, Any]:
        return {
            "source": self.name,
            "fixes": self.fixes,
            "epochs": self.decoder.epochs,
            "no_fix_epochs": self.decoder.no_fix,
            **({"unprojectable": self.decoder.unprojectable} if self.decoder.unprojectable else {}),
            **self.reader.summary(),
            **({"problem": self.problem} if self.problem else {}),
        }


class NmeaFilePrior(_NmeaPrior):
    """An NMEA log replayed on its own clock: t = UTC seconds since its first timed sentence + ``offset_s``.

    ``problem`` says (one line naming the file) when the log is not usable as a GNSS source: no valid
    sentence at all, :data:`SILENT_AFTER_BAD` bad ones before the first good one (a binary file, the wrong
    baud rate), or not one fix in it. ``run`` prints it as a warning; with ``--strict`` it refuses the log."""

    def __init__(self, path: str | Path, crs: MapCRS, offset_s: float = 0.0) -> None:
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"--gps {path}: is a folder (expected an NMEA 0183 log file, 'none', udp:// or serial:)")
        if not path.is_file():
            raise FileNotFoundError(
                f"GPS log {path}: no such file (expected an NMEA 0183 log, 'none', udp://HOST:PORT or serial:DEVICE)"
            )
        self.name = f"nmea file {path}"
        self.path = path
        super().__init__(crs, NmeaReader(path.read_bytes().splitlines(keepends=True)))  # line by line: counted
        decoder = self.decoder
        first: float | None = None
        last = None
        day = 0.0
        bad_before_good: int | None = None
        for rec in self.reader:
            if bad_before_good is None:  # junk before the first good sentence (valid but unknown types do not count)
                bad_before_good = self.reader.bad - self.reader.errors[Reason.UNKNOWN_SENTENCE]
            sod = _seconds_of_day(rec)
            if sod is None:
                decoder.record(rec, 0.0)  # untimed (GSA, VTG): belongs to the open epoch
                continue
            if last is not None and sod < last - 43200:  # passed midnight UTC
                day += 86400.0
            last = sod
            first = sod if first is None else first
            for fix in decoder.record(rec, sod + day - first + offset_s):
                self._push(fix)
        for fix in decoder.flush():
            self._push(fix)
        size = path.stat().st_size
        if self.reader.good == 0:
            self.problem = (
                f"--gps {path}: no valid NMEA 0183 sentence in {size} bytes (skipped: {reader_counts(self.reader)});"
                " expected lines like $GPGGA,...*hh with valid checksums"
            )
        elif bad_before_good is not None and bad_before_good >= SILENT_AFTER_BAD:
            self.problem = (
                f"--gps {path}: the first {bad_before_good} sentences are all bad (skipped: "
                f"{reader_counts(self.reader)}); expected NMEA 0183 from the start (a binary log or the wrong baud rate?)"
            )
        elif self.fixes == 0:
            self.problem = (
                f"--gps {path}: no position fix in {decoder.epochs} epochs ({decoder.no_fix} without a fix);"
                " the receiver never had one in this log"
            )


class NmeaStreamPrior(_NmeaPrior):
    """Live NMEA from UDP datagrams or a serial port, read in a thread and stamped on arrival."""

    def __init__(self, spec: str, crs: MapCRS, clock: Any = time.monotonic) -> None:
        super().__init__(crs, NmeaReader())
        self.clock = clock
        self.spec = spec
        self.silent_after_s = SILENT_AFTER_S
        self.bytes = 0
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
            self._port = open_serial(spec, "--gps", "reading NMEA from", timeout=0.2)
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
        started = time.monotonic()
        while not self._stop.is_set():
            data = self._read()
            if not self.problem and self.reader.good == 0 and time.monotonic() - started > self.silent_after_s:
                self.problem = (
                    f"--gps {self.spec}: no valid NMEA sentence in {self.silent_after_s:g} s"
                    f" ({self.bytes} bytes; skipped: {reader_counts(self.reader)}); check the port, baud rate and"
                    " that the receiver outputs NMEA"
                )
                log.warning("%s", self.problem)
            if not data:
                continue
            self.bytes += len(data)
            now = float(self.clock())
            for rec in self.reader.feed(data):
                for fix in self.decoder.record(rec, now):
                    self._push(fix)
            for fix in self.decoder.flush(partial=True):  # no waiting for the next epoch: a fix is due now
                self._push(fix)

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


def open_serial(spec: str, option: str, doing: str, **options: Any) -> Any:
    """A pyserial port for ``serial:DEVICE[:BAUD]`` (pyserial is imported only here: an optional dependency)."""
    device, baud = _serial_spec(spec)
    try:
        import serial  # pyserial
    except ImportError:
        raise RuntimeError(f"{option} {spec}: {doing} a serial port needs pyserial (pip install pyserial)") from None
    return serial.Serial(device, baud, **options)


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
