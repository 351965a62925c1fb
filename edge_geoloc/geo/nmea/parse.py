"""NMEA 0183 sentences: the records and a parser that never crashes on what a serial line delivers.

The device reads a GPS receiver's GGA/RMC/GSA (and HDT/VTG) and writes its own fixes back out as
GGA/RMC/HDT so that an autopilot or a ROS NMEA driver can take the localization result as a GPS.
Both ends live in this package (:mod:`.write` the writer, :mod:`.reader` the stream), device side (no numpy, no torch).

A sentence is ``$<talker:2><type:3>,<fields>*<checksum>``; the checksum is the XOR of every
character between ``$`` and ``*``, written as two uppercase hex digits. Latitude is ``ddmm.mmmmm``
and longitude ``dddmm.mmmmm`` with the hemisphere in the next field; five decimals of a minute
resolve 1.9 cm (worst-case rounding 0.9 cm). Empty position fields mean "no fix" and parse to
``None``, which is what a receiver writes during an outage (GGA quality 0, RMC status ``V``).

:func:`parse` raises :class:`NmeaError` whose ``reason`` says what was wrong;
:class:`NmeaReader` streams records from bytes, text, files, sockets' datagrams or serial reads,
counts bad sentences by reason and skips them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from enum import Enum

KNOT_MPS = 1852.0 / 3600.0  # one knot in m/s
MINUTE_DECIMALS = 5  # ddmm.mmmmm: 1.9 cm steps


class Reason(str, Enum):
    """Why a sentence was rejected (the keys of :attr:`NmeaReader.errors`)."""

    NOT_NMEA = "not_nmea"  # no '$', non-ASCII or non-printable bytes, a line too long, a bad address
    MISSING_CHECKSUM = "missing_checksum"
    BAD_CHECKSUM = "bad_checksum"
    UNKNOWN_SENTENCE = "unknown_sentence"  # well-formed but not a type this parser decodes (GSV, GLL...)
    FIELD_COUNT = "field_count"
    BAD_NUMBER = "bad_number"
    BAD_FIELD = "bad_field"  # a field with a value outside its domain (hemisphere 'Q', minutes >= 60...)


class NmeaError(ValueError):
    """A sentence that cannot be decoded; ``reason`` is a :class:`Reason`."""

    def __init__(self, reason: Reason, message: str, sentence: str = "") -> None:
        shown = sentence if len(sentence) <= 100 else sentence[:97] + "..."
        super().__init__(f"{reason.value}: {message}" + (f" in {shown!r}" if sentence else ""))
        self.reason = reason
        self.sentence = sentence


@dataclass(frozen=True)
class GGA:
    """Fix data. ``lat``/``lon`` are None without a fix (quality 0)."""

    talker: str
    time_utc: time | None
    lat: float | None
    lon: float | None
    quality: int  # 0 invalid, 1 GPS, 2 DGPS, 4 RTK fixed, 5 RTK float, 6 dead reckoning...
    num_sats: int | None
    hdop: float | None
    altitude_m: float | None  # above mean sea level
    geoid_sep_m: float | None
    dgps_age_s: float | None = None
    dgps_station: str = ""

    @property
    def has_fix(self) -> bool:
        return self.quality > 0 and self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class RMC:
    """Recommended minimum data: position, ground speed and course over true north, date."""

    talker: str
    time_utc: time | None
    valid: bool  # status 'A'; 'V' is a receiver warning (no fix)
    lat: float | None
    lon: float | None
    speed_knots: float | None
    course_deg: float | None  # track made good, clockwise from true north
    date_utc: date | None
    mag_var_deg: float | None = None  # east positive
    mode: str = ""  # NMEA 2.3+: A autonomous, D differential, E estimated, N not valid...

    @property
    def speed_mps(self) -> float | None:
        return None if self.speed_knots is None else self.speed_knots * KNOT_MPS

    @property
    def datetime_utc(self) -> datetime | None:
        if self.time_utc is None or self.date_utc is None:
            return None
        return datetime.combine(self.date_utc, self.time_utc)

    @property
    def has_fix(self) -> bool:
        return self.valid and self.lat is not None and self.lon is not None


@dataclass(frozen=True)
class GSA:
    """DOP and active satellites."""

    talker: str
    mode: str  # 'M' manual, 'A' automatic 2D/3D
    fix_type: int  # 1 no fix, 2 2D, 3 3D
    prns: tuple[int, ...]
    pdop: float | None
    hdop: float | None
    vdop: float | None
    system_id: int | None = None  # NMEA 4.11


@dataclass(frozen=True)
class HDT:
    """Heading, clockwise from true north (gyro, dual-antenna GNSS or this project's vision fix)."""

    talker: str
    heading_deg: float | None


@dataclass(frozen=True)
class VTG:
    """Course and speed over ground."""

    talker: str
    course_true_deg: float | None
    course_mag_deg: float | None
    speed_knots: float | None
    speed_kmh: float | None
    mode: str = ""

    @property
    def speed_mps(self) -> float | None:
        if self.speed_knots is not None:
            return self.speed_knots * KNOT_MPS
        return None if self.speed_kmh is None else self.speed_kmh / 3.6


NmeaRecord = GGA | RMC | GSA | HDT | VTG

# ------------------------------------------------------------------------------------------------
# Low-level pieces


def checksum(body: str) -> str:
    """XOR of the characters of ``body`` (what lies between '$' and '*') as two uppercase hex digits."""
    value = 0
    for ch in body.encode("ascii"):
        value ^= ch
    return f"{value:02X}"


def _sentence(talker: str, kind: str, fields: Iterable[object]) -> str:
    if not re.fullmatch(r"[A-Z0-9]{2}", talker):
        raise ValueError(f"NMEA talker id must be two uppercase letters or digits (GP, GN, ...), got {talker!r}")
    body = ",".join([talker + kind, *("" if f is None else str(f) for f in fields)])
    return f"${body}*{checksum(body)}"


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_TIME = re.compile(r"(\d{2})(\d{2})(\d{2})(?:\.(\d{1,6}))?")
_DATE = re.compile(r"(\d{2})(\d{2})(\d{2})")
_LAT = re.compile(r"(\d{1,2})(\d{2}(?:\.\d*)?)")
_LON = re.compile(r"(\d{1,3})(\d{2}(?:\.\d*)?)")


class _Fields:
    """Typed access to a sentence's fields; every failure is an NmeaError naming the field."""

    def __init__(self, kind: str, fields: list[str], sentence: str) -> None:
        self.kind, self.fields, self.sentence = kind, fields, sentence

    def fail(self, reason: Reason, message: str) -> NmeaError:
        return NmeaError(reason, f"{self.kind} {message}", self.sentence)

    def text(self, i: int) -> str:
        return self.fields[i]

    def number(self, i: int, what: str) -> float | None:
        text = self.fields[i]
        if text == "":
            return None
        if not _NUMBER.fullmatch(text):
            raise self.fail(Reason.BAD_NUMBER, f"field {i + 1} ({what}) is not a number: {text!r}")
        return float(text)

    def integer(self, i: int, what: str) -> int | None:
        value = self.number(i, what)
        if value is None:
            return None
        if value != int(value):
            raise self.fail(Reason.BAD_NUMBER, f"field {i + 1} ({what}) is not an integer: {self.fields[i]!r}")
        return int(value)

    def choice(self, i: int, what: str, allowed: str) -> str:
        text = self.fields[i]
        if text != "" and (len(text) != 1 or text not in allowed):
            raise self.fail(Reason.BAD_FIELD, f"field {i + 1} ({what}) must be one of {'/'.join(allowed)}: {text!r}")
        return text

    def utc_time(self, i: int) -> time | None:
        text = self.fields[i]
        if text == "":
            return None
        m = _TIME.fullmatch(text)
        if not m:
            raise self.fail(Reason.BAD_NUMBER, f"field {i + 1} (UTC time) is not hhmmss.ss: {text!r}")
        hh, mm, ss = int(m[1]), int(m[2]), int(m[3])
        if hh > 23 or mm > 59 or ss > 60:
            raise self.fail(Reason.BAD_FIELD, f"field {i + 1} (UTC time) out of range: {text!r}")
        micro = int((m[4] or "0").ljust(6, "0"))
        return time(hh, mm, min(ss, 59), micro, tzinfo=timezone.utc)  # a leap second 60 reads as 59

    def utc_date(self, i: int) -> date | None:
        text = self.fields[i]
        if text == "":
            return None
        m = _DATE.fullmatch(text)
        if not m:
            raise self.fail(Reason.BAD_NUMBER, f"field {i + 1} (UTC date) is not ddmmyy: {text!r}")
        day, month, yy = int(m[1]), int(m[2]), int(m[3])
        try:
            return date(2000 + yy if yy < 80 else 1900 + yy, month, day)  # GPS-era window 1980..2079
        except ValueError:
            raise self.fail(Reason.BAD_FIELD, f"field {i + 1} (UTC date) is not a calendar date: {text!r}") from None

    def coord(self, i: int, is_lat: bool) -> float | None:
        """Latitude (``ddmm.mmmm``, hemisphere N/S) or longitude (``dddmm.mmmm``, E/W) at fields i, i+1."""
        what = "latitude" if is_lat else "longitude"
        text, hemi = self.fields[i], self.fields[i + 1]
        if text == "" and hemi == "":
            return None
        if text == "" or hemi == "":
            raise self.fail(Reason.BAD_FIELD, f"{what} {text!r} with hemisphere {hemi!r}: one is missing")
        m = (_LAT if is_lat else _LON).fullmatch(text)
        if not m:
            raise self.fail(
                Reason.BAD_NUMBER, f"field {i + 1} ({what}) is not {'dd' if is_lat else 'ddd'}mm.mmmm: {text!r}"
            )
        degrees, minutes = int(m[1]), float(m[2])
        value = degrees + minutes / 60.0
        if minutes >= 60.0 or value > (90.0 if is_lat else 180.0):
            raise self.fail(Reason.BAD_FIELD, f"field {i + 1} ({what}) out of range: {text!r}")
        allowed = "NS" if is_lat else "EW"
        if hemi not in allowed or len(hemi) != 1:
            raise self.fail(
                Reason.BAD_FIELD, f"field {i + 2} ({what} hemisphere) must be {'/'.join(allowed)}: {hemi!r}"
            )
        return -value if hemi in "SW" else value


# ------------------------------------------------------------------------------------------------
# Parser


def _parse_gga(f: _Fields, talker: str) -> GGA:
    quality = f.integer(5, "fix quality")
    quality = 0 if quality is None else quality  # some receivers leave it empty without a fix
    if not 0 <= quality <= 9:
        raise f.fail(Reason.BAD_FIELD, f"field 6 (fix quality) must be 0..9: {f.text(5)!r}")
    lat, lon = f.coord(1, True), f.coord(3, False)
    if (lat is None) != (lon is None):
        raise f.fail(Reason.BAD_FIELD, "has a latitude without a longitude or the reverse")
    return GGA(
        talker=talker,
        time_utc=f.utc_time(0),
        lat=lat,
        lon=lon,
        quality=quality,
        num_sats=f.integer(6, "satellites"),
        hdop=f.number(7, "HDOP"),
        altitude_m=f.number(8, "altitude"),
        geoid_sep_m=f.number(10, "geoid separation"),
        dgps_age_s=f.number(12, "DGPS age"),
        dgps_station=f.text(13),
    )


def _parse_rmc(f: _Fields, talker: str) -> RMC:
    status = f.choice(1, "status", "AV")
    lat, lon = f.coord(2, True), f.coord(4, False)
    if (lat is None) != (lon is None):
        raise f.fail(Reason.BAD_FIELD, "has a latitude without a longitude or the reverse")
    mag = f.number(9, "magnetic variation")
    mag_dir = f.choice(10, "magnetic variation direction", "EW")
    mode = f.choice(11, "mode", "ADEFMNPRS") if len(f.fields) > 11 else ""
    return RMC(
        talker=talker,
        time_utc=f.utc_time(0),
        valid=status == "A" and mode != "N",
        lat=lat,
        lon=lon,
        speed_knots=f.number(6, "speed"),
        course_deg=f.number(7, "course"),
        date_utc=f.utc_date(8),
        mag_var_deg=None if mag is None else (-mag if mag_dir == "W" else mag),
        mode=mode,
    )


def _parse_gsa(f: _Fields, talker: str) -> GSA:
    fix_type = f.integer(1, "fix type")
    if fix_type not in (1, 2, 3):
        raise f.fail(Reason.BAD_FIELD, f"field 2 (fix type) must be 1, 2 or 3: {f.text(1)!r}")
    prns = tuple(p for p in (f.integer(i, "satellite PRN") for i in range(2, 14)) if p is not None)
    return GSA(
        talker=talker,
        mode=f.choice(0, "mode", "MA"),
        fix_type=fix_type,
        prns=prns,
        pdop=f.number(14, "PDOP"),
        hdop=f.number(15, "HDOP"),
        vdop=f.number(16, "VDOP"),
        system_id=f.integer(17, "system id") if len(f.fields) > 17 else None,
    )


def _parse_hdt(f: _Fields, talker: str) -> HDT:
    f.choice(1, "true marker", "T")
    heading = f.number(0, "heading")
    if heading is not None and not 0.0 <= heading <= 360.0:
        raise f.fail(Reason.BAD_FIELD, f"field 1 (heading) must be in [0, 360]: {f.text(0)!r}")
    return HDT(talker=talker, heading_deg=None if heading is None else heading % 360.0)


def _parse_vtg(f: _Fields, talker: str) -> VTG:
    if len(f.fields) == 4:  # NMEA 1.x: course true, course magnetic, knots, km/h without unit letters
        values = [f.number(i, w) for i, w in enumerate(("true course", "magnetic course", "knots", "km/h"))]
        return VTG(talker, *values)
    for i, unit in ((1, "T"), (3, "M"), (5, "N"), (7, "K")):
        f.choice(i, "unit", unit)
    return VTG(
        talker=talker,
        course_true_deg=f.number(0, "true course"),
        course_mag_deg=f.number(2, "magnetic course"),
        speed_knots=f.number(4, "speed knots"),
        speed_kmh=f.number(6, "speed km/h"),
        mode=f.choice(8, "mode", "ADEMNPS") if len(f.fields) > 8 else "",
    )


# sentence type -> (allowed field counts after the address, decoder)
_DECODERS = {
    "GGA": ((14,), _parse_gga),
    "RMC": ((11, 12, 13), _parse_rmc),  # NMEA 2.1 / 2.3 (mode) / 4.1 (navigational status)
    "GSA": ((17, 18), _parse_gsa),  # 18 with NMEA 4.11's system id
    "HDT": ((2,), _parse_hdt),
    "VTG": ((4, 8, 9), _parse_vtg),
}
SENTENCE_TYPES = tuple(_DECODERS)


def parse(sentence: str | bytes, require_checksum: bool = True) -> NmeaRecord:
    """Decode one sentence (trailing CR/LF allowed) into a typed record, or raise :class:`NmeaError`."""
    if isinstance(sentence, bytes | bytearray):
        try:
            sentence = bytes(sentence).decode("ascii")
        except UnicodeDecodeError:
            raise NmeaError(Reason.NOT_NMEA, "non-ASCII bytes") from None
    text = sentence.strip("\r\n")
    if not text.startswith("$"):
        raise NmeaError(Reason.NOT_NMEA, "does not start with '$'", text)
    if any(not (32 <= ord(c) < 127) for c in text):
        raise NmeaError(Reason.NOT_NMEA, "contains non-printable or non-ASCII characters", text)
    star = text.rfind("*")
    if star < 0:
        if require_checksum:
            raise NmeaError(Reason.MISSING_CHECKSUM, "no '*hh' checksum", text)
        body = text[1:]
    else:
        body, given = text[1:star], text[star + 1 :]
        if not re.fullmatch(r"[0-9A-Fa-f]{2}", given):
            raise NmeaError(Reason.MISSING_CHECKSUM, f"checksum must be two hex digits, got {given!r}", text)
        expected = checksum(body)
        if given.upper() != expected:
            raise NmeaError(Reason.BAD_CHECKSUM, f"checksum {given} but the sentence sums to {expected}", text)
    parts = body.split(",")
    address = parts[0]
    if not re.fullmatch(r"[A-Z0-9]{5}", address):
        if re.fullmatch(r"P[A-Z0-9]+", address):  # proprietary ($PUBX, $PGRME...): valid, not ours
            raise NmeaError(Reason.UNKNOWN_SENTENCE, f"proprietary sentence {address}", text)
        raise NmeaError(Reason.NOT_NMEA, f"address {address!r} is not talker(2) + type(3)", text)
    talker, kind = address[:2], address[2:]
    if kind not in _DECODERS:
        raise NmeaError(Reason.UNKNOWN_SENTENCE, f"sentence type {kind} is not decoded here", text)
    counts, decode = _DECODERS[kind]
    fields = parts[1:]
    if len(fields) not in counts:
        expected_counts = " or ".join(str(c) for c in counts)
        raise NmeaError(Reason.FIELD_COUNT, f"{kind} has {len(fields)} fields, expected {expected_counts}", text)
    return decode(_Fields(kind, fields, text), talker)
