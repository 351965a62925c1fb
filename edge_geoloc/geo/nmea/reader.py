"""NMEA 0183 streaming reader: records from bytes, text, files, datagrams or serial reads; bad input is
counted by reason and skipped, never raised (a serial line delivers junk as a matter of course)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO

from edge_geoloc.geo.nmea.parse import NmeaError, NmeaRecord, Reason, parse

Source = bytes | str | IO[bytes] | IO[str] | Iterable[bytes | str] | None


class NmeaReader:
    """Records from a stream of NMEA text; bad input is counted by :class:`Reason` and skipped.

    ``source`` may be bytes or str (a whole capture), a binary or text file-like (read in chunks),
    or an iterable of bytes/str chunks (lines, datagrams, serial reads); or None and :meth:`feed`
    the data as it arrives. Lines may end in CR, LF or CRLF. A line that holds junk before a '$'
    or two sentences run together is split at each '$': the junk counts once as ``not_nmea`` and
    the sentences are decoded. A line longer than ``max_line`` without an end (binary junk) is
    dropped as ``not_nmea`` without buffering it.
    """

    def __init__(self, source: Source = None, *, require_checksum: bool = True, max_line: int = 512) -> None:
        self.source = source
        self.require_checksum = require_checksum
        self.max_line = max_line
        self.errors: Counter[Reason] = Counter()
        self.records: Counter[str] = Counter()  # decoded sentences by type
        self.last_error: NmeaError | None = None
        self._buffer = b""
        self._overflow = False  # inside a line that already exceeded max_line

    @property
    def bad(self) -> int:
        """Sentences (or runs of junk) skipped so far."""
        return sum(self.errors.values())

    @property
    def good(self) -> int:
        return sum(self.records.values())

    def __iter__(self) -> Iterator[NmeaRecord]:
        for chunk in self._chunks():
            yield from self.feed(chunk)
        yield from self.flush()

    def _chunks(self) -> Iterator[bytes | str]:
        src = self.source
        if src is None:
            return
        if isinstance(src, bytes | bytearray | str):
            yield src
        elif hasattr(src, "read"):
            while True:
                chunk = src.read(4096)
                if not chunk:
                    return
                yield chunk
        else:
            yield from src

    def feed(self, data: bytes | str) -> list[NmeaRecord]:
        """Add data; return the records completed by it (a partial last line waits for the next feed)."""
        if isinstance(data, str):
            data = data.encode("utf-8", errors="replace")
        out: list[NmeaRecord] = []
        buf = self._buffer + bytes(data)
        start = 0
        for m in re.finditer(rb"[\r\n]", buf):
            self._line(buf[start : m.start()], out)
            start = m.end()
        rest = buf[start:]
        if len(rest) > self.max_line:
            if not self._overflow:
                self._skip(NmeaError(Reason.NOT_NMEA, f"line longer than {self.max_line} bytes without an end"))
            self._overflow = True
            rest = b""
        self._buffer = rest
        return out

    def flush(self) -> list[NmeaRecord]:
        """Decode what is left in the buffer (a last line without a line end)."""
        out: list[NmeaRecord] = []
        rest, self._buffer = self._buffer, b""
        self._line(rest, out)
        return out

    def _line(self, line: bytes, out: list[NmeaRecord]) -> None:
        if self._overflow:  # the end of a line that was already counted as too long
            self._overflow = False
            return
        if not line.strip():
            return
        if len(line) > self.max_line:
            self._skip(NmeaError(Reason.NOT_NMEA, f"line longer than {self.max_line} bytes"))
            return
        pieces = line.split(b"$")
        if pieces[0].strip():
            self._skip(NmeaError(Reason.NOT_NMEA, "junk before '$'", pieces[0].decode("ascii", "replace")))
        for piece in pieces[1:]:
            try:
                record = parse(b"$" + piece.rstrip(b" \t"), self.require_checksum)
            except NmeaError as err:
                self._skip(err)
                continue
            self.records[type(record).__name__] += 1
            out.append(record)

    def _skip(self, err: NmeaError) -> None:
        self.errors[err.reason] += 1
        self.last_error = err

    def summary(self) -> dict[str, int]:
        """Counts for logs and reports: decoded per type and skipped per reason."""
        return {
            **{f"ok_{k}": v for k, v in sorted(self.records.items())},
            **{f"bad_{r.value}": n for r, n in self.errors.items()},
        }
