"""Where fixes go: JSON Lines (a file or stdout) and NMEA sentences for an autopilot or a ROS NMEA driver.

JSON Lines: one :meth:`Fix.to_json` object per line, flushed per line, so a run that is stopped
(SIGINT, power) leaves whole lines behind.

NMEA (``--nmea-out``): per fix a GGA (quality 1 for a vision or GPS fix, 6 "estimated" while the
filter only dead-reckons, 0 before the first fix; HDOP = sigma * sqrt(2) / UERE so that a consumer
that multiplies HDOP by its UERE gets the filter's sigma back), an RMC (speed and course from the
filter) and an HDT (heading, true north). Destinations: ``udp://HOST:PORT``, ``serial:DEVICE[:BAUD]``
(pyserial) or a file path (appended).
"""

from __future__ import annotations

import math
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from edge_geoloc.config import strict_json
from edge_geoloc.geo.nmea import format_gga, format_hdt, format_rmc
from edge_geoloc.localize.fix import Fix
from edge_geoloc.localize.gnss import UERE_M, _host_port, open_serial


class FixWriter:
    """JSON Lines to a path, or to stdout with ``-``."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = None if path in (None, "-") else Path(path)
        self._own = self.path is not None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[str] = open(self.path, "w")
        else:
            self._f = sys.stdout
        self.written = 0

    def write(self, fix: Fix) -> None:
        self._f.write(strict_json(fix.to_json(), separators=(",", ":")) + "\n")
        self._f.flush()
        self.written += 1

    def close(self) -> None:
        if self._own and not self._f.closed:
            self._f.close()


def fix_sentences(fix: Fix, talker: str = "GP") -> list[str]:
    """GGA, RMC and HDT for one fix (no line ends)."""
    when = datetime.fromisoformat(fix.time.replace("Z", "+00:00")) if fix.time else datetime.now(timezone.utc)
    if fix.lat is None or fix.lon is None:
        return [
            format_gga(when, None, None, quality=0, talker=talker),
            format_rmc(when, None, None, valid=False, talker=talker),
        ]
    quality = 1 if fix.source in ("vision", "gps") else 6
    hdop = min(99.99, max(0.01, (fix.sigma_m or 0.0) * math.sqrt(2.0) / UERE_M[1]))
    out = [
        format_gga(when, fix.lat, fix.lon, quality=quality, hdop=hdop, talker=talker),
        format_rmc(
            when,
            fix.lat,
            fix.lon,
            speed_mps=fix.speed_mps,
            course_deg=fix.heading_deg,
            mode="A" if quality == 1 else "E",
            talker=talker,
        ),
    ]
    if fix.heading_deg is not None:
        out.append(format_hdt(fix.heading_deg, talker=talker))
    return out


class NmeaOutput:
    """Sends each fix's sentences to UDP, a serial port or a file (see the module docstring)."""

    def __init__(self, spec: str, talker: str = "GP") -> None:
        self.spec, self.talker = spec, talker
        self.sent = 0
        self.errors = 0
        self._sock: socket.socket | None = None
        self._port: Any = None
        self._file: IO[str] | None = None
        if spec.startswith("udp://"):
            self._addr = _host_port(spec[len("udp://") :], "udp://HOST:PORT")
            self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        elif spec.startswith("serial:"):
            self._port = open_serial(spec, "--nmea-out", "writing to", timeout=0.5, write_timeout=0.5)
        else:
            self._file = open(spec, "a")

    def send(self, fix: Fix) -> None:
        data = "".join(s + "\r\n" for s in fix_sentences(fix, self.talker))
        try:
            if self._sock is not None:
                self._sock.sendto(data.encode("ascii"), self._addr)
            elif self._port is not None:
                self._port.write(data.encode("ascii"))
            else:
                self._file.write(data)
                self._file.flush()
            self.sent += 1
        except OSError:  # a consumer that went away must not stop the loop
            self.errors += 1

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        if self._port is not None:
            self._port.close()
        if self._file is not None:
            self._file.close()
