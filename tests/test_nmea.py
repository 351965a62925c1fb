"""NMEA 0183: real-world sentences, write -> parse round trips, and a reader that survives garbage."""

from __future__ import annotations

import io
from datetime import date, datetime, time, timezone

import numpy as np
import pytest

from edge_geoloc.geo.nmea import (
    GGA,
    GSA,
    HDT,
    RMC,
    VTG,
    NmeaError,
    NmeaReader,
    Reason,
    checksum,
    format_coord,
    format_gga,
    format_gsa,
    format_hdt,
    format_rmc,
    format_vtg,
    parse,
)

# Published sentences with their receivers' checksums.
CLASSIC_GGA = "$GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,*47"  # NMEA reference example
CLASSIC_RMC = "$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A"
CLASSIC_GSA = "$GPGSA,A,3,04,05,,09,12,,,24,,,,,2.5,1.3,2.1*39"
CLASSIC_VTG = "$GPVTG,054.7,T,034.4,M,005.5,N,010.2,K*48"
UBLOX_GGA = "$GPGGA,092725.00,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,*5B"  # u-blox protocol spec
UBLOX_RMC = "$GPRMC,083559.00,A,4717.11437,N,00833.91522,E,0.004,77.52,091202,,,A*57"
# A ship's GNSS compass log (NOAA R/V Ronald H. Brown, ATOMIC 2020): 8-decimal minutes, DGPS, mode D.
SHIP = [
    "$GPHDT,74.20,T*34",
    "$GPGGA,195959.00,1541.31258893,N,05130.51204125,W,2,06,1.5,9.2,M,-37.6,M,4.0,0138*7E",
    "$GPVTG,147.44,T,164.31,M,0.26,N,0.49,K,D*2C",
    "$GPRMC,195959.00,A,1541.31258893,N,05130.51204125,W,0.26,147.44,140120,16.9,W,D*0B",
    "$GPGSA,M,3,14,16,26,27,29,31,,,,,,,2.7,1.5,2.3*34",
]
SHIP_OTHER = [  # valid sentences of types this parser does not decode
    "$GPGLL,1541.31258893,N,05130.51204125,W,195959.00,A,D*7B",
    "$GPZDA,195959.00,14,01,2020,00,00*6A",
    "$GPGSV,3,1,12,03,09,280,,04,11,322,,08,11,209,35,14,68,160,42*70",
]
# A bicycle logger (milliseconds, single-digit satellite count).
BIKE = [
    "$GPGGA,232348.000,3621.6309,N,13636.8487,E,1,6,1.35,190.4,M,35.1,M,,*52",
    "$GPGSA,A,3,24,18,12,22,13,15,,,,,,,1.60,1.35,0.86*06",
    "$GPRMC,232348.000,A,3621.6309,N,13636.8487,E,0.70,343.18,050515,,,A*64",
]
PUBLISHED = [CLASSIC_GGA, CLASSIC_RMC, CLASSIC_GSA, CLASSIC_VTG, UBLOX_GGA, UBLOX_RMC, *SHIP, *SHIP_OTHER, *BIKE]


@pytest.mark.parametrize("sentence", PUBLISHED)
def test_checksums_of_published_sentences(sentence):
    body, given = sentence[1:].split("*")
    assert checksum(body) == given


def test_parse_the_reference_gga_and_rmc():
    g = parse(CLASSIC_GGA)
    assert isinstance(g, GGA) and g.talker == "GP" and g.has_fix
    assert g.time_utc == time(12, 35, 19, tzinfo=timezone.utc)
    assert g.lat == pytest.approx(48 + 7.038 / 60, abs=1e-12)
    assert g.lon == pytest.approx(11 + 31.0 / 60, abs=1e-12)
    assert (g.quality, g.num_sats, g.hdop, g.altitude_m, g.geoid_sep_m) == (1, 8, 0.9, 545.4, 46.9)
    assert g.dgps_age_s is None
    r = parse(CLASSIC_RMC)
    assert isinstance(r, RMC) and r.valid and r.mode == ""  # NMEA 2.1: no mode field
    assert r.date_utc == date(1994, 3, 23)
    assert r.datetime_utc == datetime(1994, 3, 23, 12, 35, 19, tzinfo=timezone.utc)
    assert r.speed_knots == 22.4 and r.speed_mps == pytest.approx(22.4 * 1852 / 3600)
    assert r.course_deg == 84.4 and r.mag_var_deg == -3.1  # 3.1 W


def test_parse_ship_log_southern_western_hemispheres_dgps_and_heading():
    hdt, gga, vtg, rmc, gsa = (parse(s) for s in SHIP)
    assert isinstance(hdt, HDT) and hdt.heading_deg == 74.2
    assert gga.lat == pytest.approx(15 + 41.31258893 / 60, abs=1e-12)
    assert gga.lon == pytest.approx(-(51 + 30.51204125 / 60), abs=1e-12)
    assert gga.quality == 2 and gga.dgps_age_s == 4.0 and gga.dgps_station == "0138" and gga.geoid_sep_m == -37.6
    assert isinstance(vtg, VTG) and vtg.course_true_deg == 147.44 and vtg.mode == "D"
    assert vtg.speed_mps == pytest.approx(0.26 * 1852 / 3600)
    assert rmc.valid and rmc.mode == "D" and rmc.mag_var_deg == -16.9 and rmc.date_utc == date(2020, 1, 14)
    assert isinstance(gsa, GSA) and gsa.mode == "M" and gsa.fix_type == 3
    assert gsa.prns == (14, 16, 26, 27, 29, 31) and (gsa.pdop, gsa.hdop, gsa.vdop) == (2.7, 1.5, 2.3)
    classic = parse(CLASSIC_GSA)
    assert classic.prns == (4, 5, 9, 12, 24)


def test_parse_bike_log_and_ublox_fractional_times():
    g = parse(BIKE[0])
    assert g.time_utc == time(23, 23, 48, 0, tzinfo=timezone.utc) and g.num_sats == 6
    assert g.lon == pytest.approx(136 + 36.8487 / 60)
    u = parse(UBLOX_RMC)
    assert u.time_utc == time(8, 35, 59, tzinfo=timezone.utc) and u.date_utc == date(2002, 12, 9)
    quarter = _signed("GPGGA,092725.25,4717.11399,N,00833.91590,E,1,08,1.01,499.6,M,48.0,M,,")
    assert parse(quarter).time_utc.microsecond == 250000


def test_format_gga_writes_the_reference_fields():
    line = format_gga(
        datetime(2024, 1, 1, 12, 35, 19, tzinfo=timezone.utc), 48 + 7.038 / 60, 11 + 31 / 60, 1, 8, 0.9, 545.4, 46.9
    )
    assert line == "$GPGGA,123519.00,4807.03800,N,01131.00000,E,1,08,0.90,545.40,M,46.90,M,,*59"
    assert checksum(line[1:-3]) == line[-2:]


def test_no_fix_sentences_as_a_receiver_writes_them():
    when = datetime(2024, 6, 21, 10, 0, 5, tzinfo=timezone.utc)
    gga = format_gga(when, None, None, quality=0, num_sats=0, hdop=99.99)
    assert gga.startswith("$GPGGA,100005.00,,,,,0,00,99.99,,,,,,*")
    rmc = format_rmc(when, None, None)
    assert rmc.startswith("$GPRMC,100005.00,V,,,,,,,210624,,,N*")
    g, r = parse(gga), parse(rmc)
    assert not g.has_fix and g.lat is None and g.lon is None and g.quality == 0
    assert not r.has_fix and not r.valid and r.speed_knots is None and r.date_utc == date(2024, 6, 21)
    # Quality 0 hides a position even when one is given: no fix is no fix.
    assert parse(format_gga(when, 47.0, 9.0, quality=0)).lat is None
    gsa = parse(format_gsa(1))
    assert gsa.fix_type == 1 and gsa.prns == () and gsa.hdop is None
    assert parse(format_hdt(None)).heading_deg is None


def test_round_trip_positions_to_a_centimetre():
    rng = np.random.default_rng(0)
    lats = np.concatenate(
        [rng.uniform(-90, 90, 400), [0.0, 89.9999999999, -89.9999999999, 47.999999999, -0.0000001, 90.0]]
    )
    lons = np.concatenate(
        [rng.uniform(-180, 180, 400), [0.0, 179.9999999999, -179.9999999999, 8.999999999, 0.0000001, -180.0]]
    )
    when = datetime(2024, 3, 1, 23, 59, 59, 996000)
    for lat, lon in zip(lats, lons, strict=True):
        g = parse(format_gga(when, lat, lon, 1, 9, 0.8, 400.0, 47.0))
        r = parse(format_rmc(when, lat, lon, 5.0, 123.4))
        for rec in (g, r):
            assert abs(rec.lat - lat) <= 0.5e-5 / 60 + 1e-12  # half a step of 1e-5 minutes: 0.93 cm
            assert abs(rec.lon - lon) <= 0.5e-5 / 60 + 1e-12
    # Centisecond rounding carries into the next second, minute, hour and day.
    assert parse(format_rmc(when, 1.0, 2.0)).datetime_utc == datetime(2024, 3, 2, tzinfo=timezone.utc)


def test_format_coord_carries_rounding_into_degrees():
    assert format_coord(47.9999999999, True) == ("4800.00000", "N")
    assert format_coord(-8.9999999999, False) == ("00900.00000", "W")
    assert format_coord(0.5, True, decimals=2) == ("0030.00", "N")
    with pytest.raises(ValueError, match="latitude"):
        format_coord(91.0, True)


def test_writers_round_trip_speed_course_heading_and_dops():
    when = datetime(2024, 6, 21, 10, 0, 0, 250000, tzinfo=timezone.utc)
    r = parse(format_rmc(when, 47.1, 9.2, speed_mps=13.4, course_deg=-10.0, mag_var_deg=2.5, talker="GN"))
    assert r.talker == "GN" and r.speed_mps == pytest.approx(13.4, abs=1e-3) and r.course_deg == 350.0
    assert r.mag_var_deg == 2.5 and r.mode == "A" and r.time_utc.microsecond == 250000
    assert parse(format_hdt(359.999)).heading_deg == 0.0  # wraps, never 360.00
    assert parse(format_hdt(-90.0, talker="HE")).heading_deg == 270.0
    v = parse(format_vtg(54.7, 2.83))
    assert v.speed_mps == pytest.approx(2.83, abs=1e-3) and v.speed_kmh == pytest.approx(2.83 * 3.6, abs=1e-3)
    s = parse(format_gsa(3, [4, 5, 9, 12, 24], 2.5, 1.3, 2.1))
    assert s.prns == (4, 5, 9, 12, 24) and s.hdop == 1.3
    with pytest.raises(ValueError, match="talker"):
        format_hdt(10.0, talker="gps")
    with pytest.raises(ValueError, match="12 satellites"):
        format_gsa(3, range(1, 14))


@pytest.mark.parametrize(
    ("sentence", "reason"),
    [
        (CLASSIC_GGA[:-2] + "48", Reason.BAD_CHECKSUM),
        (CLASSIC_GGA.replace("4807.038", "4807.039"), Reason.BAD_CHECKSUM),  # a flipped digit in transit
        (CLASSIC_GGA.split("*")[0], Reason.MISSING_CHECKSUM),
        (CLASSIC_GGA[:-1], Reason.MISSING_CHECKSUM),  # truncated: one hex digit
        ("$GPGSV,3,1,12,03,09,280,,04,11,322,,08,11,209,35,14,68,160,42*70", Reason.UNKNOWN_SENTENCE),
        ("$PUBX,00*33", Reason.UNKNOWN_SENTENCE),
        ("GPGGA,123519,4807.038,N", Reason.NOT_NMEA),
        ("$GP\x01GA*00", Reason.NOT_NMEA),
        ("$G*47", Reason.NOT_NMEA),
        ("", Reason.NOT_NMEA),
    ],
)
def test_parse_rejects_with_a_reason(sentence, reason):
    with pytest.raises(NmeaError) as err:
        parse(sentence)
    assert err.value.reason == reason
    assert reason.value in str(err.value)


def _signed(body: str) -> str:
    return f"${body}*{checksum(body)}"


@pytest.mark.parametrize(
    ("body", "reason", "words"),
    [
        ("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,", Reason.FIELD_COUNT, "13 fields, expected 14"),
        ("GPHDT,74.20", Reason.FIELD_COUNT, "expected 2"),
        ("GPGGA,123519,4807.0x8,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", Reason.BAD_NUMBER, "latitude"),
        ("GPGGA,123519,4807.038,N,01131.000,E,1,08,nan,545.4,M,46.9,M,,", Reason.BAD_NUMBER, "HDOP"),
        ("GPGGA,12:35:19,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", Reason.BAD_NUMBER, "UTC time"),
        ("GPGGA,123519,4807.038,Q,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", Reason.BAD_FIELD, "hemisphere"),
        ("GPGGA,123519,4867.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", Reason.BAD_FIELD, "out of range"),
        ("GPGGA,123519,4807.038,,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", Reason.BAD_FIELD, "missing"),
        ("GPGGA,253519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,", Reason.BAD_FIELD, "UTC time"),
        ("GPRMC,123519,X,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W", Reason.BAD_FIELD, "status"),
        ("GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,320394,003.1,W", Reason.BAD_FIELD, "calendar"),
        ("GPHDT,374.0,T", Reason.BAD_FIELD, "heading"),
        ("GPGSA,A,4,04,05,,09,12,,,24,,,,,2.5,1.3,2.1", Reason.BAD_FIELD, "fix type"),
    ],
)
def test_parse_rejects_bad_fields_with_correct_checksums(body, reason, words):
    with pytest.raises(NmeaError) as err:
        parse(_signed(body))
    assert err.value.reason == reason
    assert words in str(err.value)


def test_checksum_may_be_optional_and_lowercase():
    assert parse(CLASSIC_GGA.split("*")[0], require_checksum=False).lat == pytest.approx(48.1173)
    assert parse(CLASSIC_RMC[:-2] + "6a").valid  # hex digits in either case


# ---- the streaming reader -----------------------------------------------------------------------


def _stream() -> tuple[bytes, int]:
    """Good sentences mixed with what serial lines deliver; returns the bytes and the number of good ones."""
    rng = np.random.default_rng(1)
    good = [s.encode() for s in (CLASSIC_GGA, CLASSIC_RMC, *SHIP, *BIKE, UBLOX_GGA)]
    parts = [
        b"\xff\xfe\x00binary junk\x13\x37\r\n",  # junk line
        good[0] + b"\r\n",
        CLASSIC_RMC[:30].encode() + good[2] + b"\n",  # a sentence cut short, the next glued on
        good[1].replace(b"*6A", b"*6B") + b"\r\n",  # bad checksum
        b"$GPGSV,3,1,12,03,09,280,,04,11,322,,08,11,209,35,14,68,160,42*70\r",  # unknown type, CR only
        b"\r\n\r\n",  # empty lines are not errors
        *(g + b"\r\n" for g in good[3:]),
        bytes(rng.integers(0, 256, 3000, dtype=np.uint8)),  # a burst of random bytes
        b"\n" + good[1] + b"\n",
        CLASSIC_GGA.replace("4807.038", "4807.0\xe9".encode("latin-1").decode("latin-1")).encode("latin-1") + b"\n",
        good[0][:-4],  # the capture ends mid-sentence
    ]
    return b"".join(parts), len(good)  # each good sentence arrives intact exactly once


def test_reader_skips_garbage_and_counts_by_reason():
    data, n_good = _stream()
    reader = NmeaReader(data)
    records = list(reader)
    assert len(records) == n_good == reader.good
    assert reader.errors[Reason.BAD_CHECKSUM] >= 1
    assert reader.errors[Reason.UNKNOWN_SENTENCE] == 1
    assert reader.errors[Reason.NOT_NMEA] >= 2
    assert reader.errors[Reason.MISSING_CHECKSUM] >= 2  # the cut sentence and the truncated end
    assert reader.bad == sum(reader.errors.values()) and reader.last_error is not None
    assert reader.records["GGA"] >= 3 and reader.records["RMC"] >= 2 and reader.records["HDT"] == 1
    summary = reader.summary()
    assert summary["ok_GGA"] == reader.records["GGA"] and summary["bad_bad_checksum"] >= 1


@pytest.mark.parametrize("chunk", [1, 7, 64, 4096])
def test_reader_gives_the_same_records_however_the_bytes_arrive(chunk):
    data, _ = _stream()
    whole = list(NmeaReader(data))
    chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    assert list(NmeaReader(chunks)) == whole
    assert list(NmeaReader(io.BytesIO(data))) == whole
    pushed = NmeaReader()
    out = [r for c in chunks for r in pushed.feed(c)] + pushed.flush()
    assert out == whole


def test_reader_reads_text_files_and_drops_endless_lines():
    text = "\n".join([CLASSIC_GGA, CLASSIC_RMC, *SHIP]) + "\n"
    assert len(list(NmeaReader(io.StringIO(text)))) == 7
    assert len(list(NmeaReader(text.splitlines()))) == 7
    reader = NmeaReader(max_line=200)
    assert reader.feed(b"A" * 5000) == []  # no line end: not buffered forever
    assert reader.feed(b"B" * 5000) == []
    out = reader.feed(b"tail\n" + CLASSIC_GGA.encode() + b"\n")
    assert len(out) == 1 and reader.errors[Reason.NOT_NMEA] == 1


def test_reader_never_crashes_on_mutated_sentences():
    rng = np.random.default_rng(7)
    base = [s.encode() for s in PUBLISHED]
    reader = NmeaReader()
    for _ in range(2000):
        s = bytearray(base[int(rng.integers(len(base)))])
        for _ in range(int(rng.integers(1, 4))):
            op, i = int(rng.integers(3)), int(rng.integers(len(s)))
            if op == 0:
                s[i] = int(rng.integers(0, 256))
            elif op == 1:
                del s[i]
            else:
                s.insert(i, int(rng.choice(list(b",.*$-0123456789ABCDEFNSEW"))))
        reader.feed(bytes(s) + b"\r\n")
    assert reader.good + reader.bad >= 2000
    assert reader.bad > 1500  # a mutation almost always breaks the checksum
