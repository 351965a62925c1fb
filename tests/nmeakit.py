"""NMEA logs shaped like real receivers' (issue 15): the sentence sets and orders of a u-blox ZED-F9P
(NMEA 4.11, talker GN, RMC before GGA, GSA with a system id), a SiRFstarV ($GPGGA and $GLGGA of the same
epoch) and a u-blox NEO-M8N (GGA, RMC, GSA, VTG; here with the GGA's HDOP left empty), written with their
own checksums, so the tests read what a receiver writes rather than what our writer writes."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from edge_geoloc.geo.nmea import KNOT_MPS, checksum

DAY = date(2026, 12, 7)


def sentence(body: str) -> str:
    return f"${body}*{checksum(body)}"


def _dm(value: float, lat: bool) -> tuple[str, str]:
    hemi = ("N" if value >= 0 else "S") if lat else ("E" if value >= 0 else "W")
    total = round(abs(value) * 60.0, 5)  # in minutes, rounded as written: 46.9999999 deg is 47 deg 00.00000'
    deg, minutes = int(total // 60), total - 60 * int(total // 60)
    return (f"{deg:02d}" if lat else f"{deg:03d}") + f"{minutes:08.5f}", hemi


def _hms(t: datetime) -> str:
    return t.strftime("%H%M%S.") + f"{t.microsecond // 10000:02d}"


def epoch_time(i: int, start: datetime | None = None) -> datetime:
    return (start or datetime(2026, 12, 7, 10, 0, 0, tzinfo=timezone.utc)) + timedelta(seconds=i)


def zed_f9p(i: int, lat: float, lon: float, hdop: float = 0.58, course: float = 87.5, speed_mps: float = 5.0,
            fix: bool = True) -> list[str]:  # fmt: skip
    """One epoch of a ZED-F9P at default output: RMC, VTG, GGA, GSA x2 (GPS, Galileo), GSV, GLL."""
    t = epoch_time(i)
    la, ns = _dm(lat, True) if fix else ("", "")
    lo, ew = _dm(lon, False) if fix else ("", "")
    kn = f"{speed_mps / KNOT_MPS:.3f}" if fix else ""
    cog = f"{course:.2f}" if fix else ""
    d = t.strftime("%d%m%y")
    status, mode, q = ("A", "A", "1") if fix else ("V", "N", "0")
    return [
        sentence(f"GNRMC,{_hms(t)},{status},{la},{ns},{lo},{ew},{kn},{cog},{d},,,{mode},V"),
        sentence(f"GNVTG,{cog},T,,M,{kn},N,{'' if not fix else f'{speed_mps * 3.6:.3f}'},K,{mode}"),
        sentence(
            f"GNGGA,{_hms(t)},{la},{ns},{lo},{ew},{q},{12 if fix else 0:02d},{hdop if fix else 99.99},"
            f"{'312.4' if fix else ''},M,{'47.1' if fix else ''},M,,"
        ),
        sentence(f"GNGSA,A,{3 if fix else 1},02,05,13,15,18,20,29,,,,,,1.02,{hdop if fix else 99.99},0.84,1"),
        sentence("GNGSA,A,3,03,05,24,25,,,,,,,,,1.02,0.58,0.84,3"),
        sentence("GPGSV,3,1,11,02,41,302,44,05,25,227,38,13,61,068,47,15,33,117,41,1"),
        sentence(f"GNGLL,{la},{ns},{lo},{ew},{_hms(t)},{status},{mode}"),
    ]


def sirf(i: int, lat: float, lon: float, hdop: float = 0.9, glonass_hdop: float = 1.4) -> list[str]:
    """One epoch of a SiRFstarV: $GPGGA and $GLGGA (its GLONASS solution) of the same second, GSA, RMC."""
    t = epoch_time(i)
    la, ns = _dm(lat, True)
    lo, ew = _dm(lon, False)
    gl_la, _ = _dm(lat + 2e-5, True)  # the GLONASS solution lies a couple of metres off
    return [
        sentence(f"GPGGA,{_hms(t)},{la},{ns},{lo},{ew},1,09,{hdop},212.0,M,47.0,M,,0000"),
        sentence(f"GLGGA,{_hms(t)},{gl_la},{ns},{lo},{ew},1,06,{glonass_hdop},212.0,M,47.0,M,,0000"),
        sentence("GPGSA,A,3,04,07,08,10,16,20,23,,,,,,1.8,0.9,1.5"),
        sentence(f"GPRMC,{_hms(t)},A,{la},{ns},{lo},{ew},1.94,45.00,{t.strftime('%d%m%y')},,,A"),
    ]


def neo_m8n(i: int, lat: float, lon: float, gsa_hdop: float = 1.25, fix: bool = True) -> list[str]:
    """One epoch of a NEO-M8N: GGA (HDOP field empty, as some configurations leave it), RMC, GSA, VTG."""
    t = epoch_time(i)
    la, ns = _dm(lat, True) if fix else ("", "")
    lo, ew = _dm(lon, False) if fix else ("", "")
    q, status = ("1", "A") if fix else ("0", "V")
    return [
        sentence(f"GPGGA,{_hms(t)},{la},{ns},{lo},{ew},{q},08,,105.2,M,46.9,M,,"),
        sentence(f"GPRMC,{_hms(t)},{status},{la},{ns},{lo},{ew},0.05,,{t.strftime('%d%m%y')},,,{'A' if fix else 'N'}"),
        sentence(f"GPGSA,A,{3 if fix else 1},21,26,16,31,29,,,,,,,,2.10,{gsa_hdop},1.70"),
        sentence("GPVTG,,T,,M,0.05,N,0.09,K,A"),
    ]


def log_text(epochs: list[list[str]], end: str = "\r\n") -> str:
    return "".join(s + end for ep in epochs for s in ep)
