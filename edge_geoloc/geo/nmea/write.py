"""NMEA 0183 writer: GGA/RMC/GSA/HDT/VTG sentences from a fix, so an autopilot or a ROS NMEA driver can
take the localization result as a GPS (the parser's inverse; the tests round-trip every sentence)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta, timezone

from edge_geoloc.geo.nmea.parse import KNOT_MPS, MINUTE_DECIMALS, _sentence


def _utc(when: datetime | time | float) -> tuple[str, datetime | None]:
    """``hhmmss.ss`` (rounded to centiseconds) and, for datetimes, the rounded datetime (for the date)."""
    if isinstance(when, int | float):
        if not (math.isfinite(when) and 0 <= when < 86400):
            raise ValueError(f"UTC time of day must be seconds in [0, 86400), got {when}")
        cs = round(when * 100) % 8_640_000
        hh, rem = divmod(cs, 360_000)
        mm, rem = divmod(rem, 6000)
        return f"{hh:02d}{mm:02d}{rem // 100:02d}.{rem % 100:02d}", None
    if isinstance(when, time):
        when = datetime.combine(date(2000, 1, 1), when)
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    rounded = when + timedelta(microseconds=5000)
    rounded = rounded.replace(microsecond=rounded.microsecond // 10000 * 10000)
    return f"{rounded:%H%M%S}.{rounded.microsecond // 10000:02d}", rounded


def format_coord(value: float | None, is_lat: bool, decimals: int = MINUTE_DECIMALS) -> tuple[str, str]:
    """Degrees -> (``ddmm.mmmmm`` or ``dddmm.mmmmm``, hemisphere); None -> two empty fields."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "", ""
    limit = 90.0 if is_lat else 180.0
    if not (math.isfinite(value) and -limit <= value <= limit):
        raise ValueError(f"{'latitude' if is_lat else 'longitude'} must be within [-{limit:g}, {limit:g}], got {value}")
    scale = 10**decimals
    units = round(abs(value) * 60 * scale)  # integer arithmetic: rounding carries minutes into degrees
    degrees, rem = divmod(units, 60 * scale)
    width = 2 if is_lat else 3
    text = f"{degrees:0{width}d}{rem // scale:02d}" + (f".{rem % scale:0{decimals}d}" if decimals > 0 else "")
    hemi = ("N" if value >= 0 else "S") if is_lat else ("E" if value >= 0 else "W")
    return text, hemi


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def format_gga(
    utc: datetime | time | float,
    lat: float | None,
    lon: float | None,
    quality: int = 1,
    num_sats: int | None = None,
    hdop: float | None = None,
    altitude_m: float | None = None,
    geoid_sep_m: float | None = None,
    talker: str = "GP",
    decimals: int = MINUTE_DECIMALS,
) -> str:
    """A GGA sentence. ``lat``/``lon`` None (or quality 0) writes the receiver's no-fix form."""
    if not 0 <= quality <= 9:
        raise ValueError(f"GGA fix quality must be 0..9, got {quality}")
    no_fix = quality == 0 or lat is None or lon is None
    lat_s, ns = format_coord(None if no_fix else lat, True, decimals)
    lon_s, ew = format_coord(None if no_fix else lon, False, decimals)
    return _sentence(
        talker,
        "GGA",
        [
            _utc(utc)[0],
            lat_s,
            ns,
            lon_s,
            ew,
            0 if no_fix else quality,
            "" if num_sats is None else f"{int(num_sats):02d}",
            _num(hdop, ".2f"),
            "" if no_fix else _num(altitude_m, ".2f"),
            "" if no_fix or altitude_m is None else "M",
            "" if no_fix else _num(geoid_sep_m, ".2f"),
            "" if no_fix or geoid_sep_m is None else "M",
            "",
            "",
        ],
    )


def format_rmc(
    utc: datetime,
    lat: float | None,
    lon: float | None,
    speed_mps: float | None = None,
    course_deg: float | None = None,
    valid: bool = True,
    mag_var_deg: float | None = None,
    mode: str | None = None,
    talker: str = "GP",
    decimals: int = MINUTE_DECIMALS,
) -> str:
    """An RMC sentence (NMEA 2.3, with the mode field). Invalid or no position -> status V, mode N."""
    if not isinstance(utc, datetime):
        raise ValueError(f"RMC needs a datetime (it carries the date), got {type(utc).__name__}")
    hhmmss, rounded = _utc(utc)
    ok = valid and lat is not None and lon is not None
    lat_s, ns = format_coord(lat if ok else None, True, decimals)
    lon_s, ew = format_coord(lon if ok else None, False, decimals)
    mode = mode if mode is not None else ("A" if ok else "N")
    if mode not in tuple("ADEFMNPRS"):
        raise ValueError(f"RMC mode must be one of A, D, E, F, M, N, P, R, S, got {mode!r}")
    return _sentence(
        talker,
        "RMC",
        [
            hhmmss,
            "A" if ok else "V",
            lat_s,
            ns,
            lon_s,
            ew,
            _num(None if speed_mps is None else speed_mps / KNOT_MPS, ".3f") if ok else "",
            _num(None if course_deg is None else course_deg % 360.0, ".2f") if ok else "",
            f"{rounded:%d%m%y}",
            _num(None if mag_var_deg is None else abs(mag_var_deg), ".1f"),
            "" if mag_var_deg is None else ("E" if mag_var_deg >= 0 else "W"),
            mode,
        ],
    )


def format_gsa(
    fix_type: int,
    prns: Iterable[int] = (),
    pdop: float | None = None,
    hdop: float | None = None,
    vdop: float | None = None,
    mode: str = "A",
    talker: str = "GP",
) -> str:
    """A GSA sentence: fix type 1 (none), 2 (2D) or 3 (3D), up to 12 satellite PRNs, DOPs."""
    if fix_type not in (1, 2, 3):
        raise ValueError(f"GSA fix type must be 1, 2 or 3, got {fix_type}")
    if mode not in ("A", "M"):
        raise ValueError(f"GSA mode must be 'A' or 'M', got {mode!r}")
    ids = [f"{int(p):02d}" for p in prns]
    if len(ids) > 12:
        raise ValueError(f"GSA holds at most 12 satellites, got {len(ids)}")
    return _sentence(
        talker,
        "GSA",
        [mode, fix_type, *ids, *[""] * (12 - len(ids)), _num(pdop, ".2f"), _num(hdop, ".2f"), _num(vdop, ".2f")],
    )


def format_hdt(heading_deg: float | None, talker: str = "GP") -> str:
    """An HDT sentence: heading clockwise from true north, wrapped to [0, 360)."""
    if heading_deg is not None and not math.isfinite(heading_deg):
        raise ValueError(f"heading must be finite, got {heading_deg}")
    text = "" if heading_deg is None else f"{heading_deg % 360.0:.2f}"
    if text == "360.00":
        text = "0.00"
    return _sentence(talker, "HDT", [text, "T"])


def format_vtg(course_deg: float | None, speed_mps: float | None, mode: str = "A", talker: str = "GP") -> str:
    """A VTG sentence (NMEA 2.3) with true course, knots and km/h; no magnetic course."""
    knots = None if speed_mps is None else speed_mps / KNOT_MPS
    kmh = None if speed_mps is None else speed_mps * 3.6
    course = None if course_deg is None else course_deg % 360.0
    return _sentence(
        talker, "VTG", [_num(course, ".2f"), "T", "", "M", _num(knots, ".3f"), "N", _num(kmh, ".3f"), "K", mode]
    )
