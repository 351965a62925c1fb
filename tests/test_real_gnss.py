"""Real receivers' NMEA logs (issue 15, findings 1, 2 and 4): one fix per epoch whatever the receiver's
sentence order or talkers, the sigma from the epoch's HDOP (GGA's, else GSA's), junk counted and skipped,
a log with nothing usable reported loudly (and refused with ``run --strict``), and the run loop never
raising on any of them."""

from __future__ import annotations

import math

import pytest
from nmeakit import log_text, neo_m8n, sentence, sirf, zed_f9p

from edge_geoloc.geo import MapCRS
from edge_geoloc.geo.nmea import KNOT_MPS
from edge_geoloc.localize.gnss import UERE_M, GpsFix, NmeaDecoder, NmeaFilePrior, sigma_from_hdop
from edge_geoloc.localize.odometry import OdometrySample
from edge_geoloc.localize.run import GNSS, ODOMETRY, events

CRS = MapCRS("EPSG:32633")
LAT, LON = 47.0, 16.3


def track(n: int) -> list[tuple[float, float]]:
    """Positions 5 m apart heading east."""
    return [(LAT, LON + i * 5.0 / (111320.0 * math.cos(math.radians(LAT)))) for i in range(n)]


def prior_of(tmp_path, text: str | bytes, name: str = "gps.nmea") -> NmeaFilePrior:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("ascii"))
    return NmeaFilePrior(path, CRS)


def test_zed_f9p_rmc_before_gga_is_one_fix_per_epoch_with_the_gga_hdop(tmp_path):
    prior = prior_of(tmp_path, log_text([zed_f9p(i, *p) for i, p in enumerate(track(29))]))
    fixes = prior.poll(1e9)
    assert len(fixes) == 29 and [f.t for f in fixes] == [float(i) for i in range(29)]
    assert all(f.sigma_m == pytest.approx(0.58 * UERE_M[1] / math.sqrt(2)) for f in fixes)  # 1.64 m, not 4.24
    assert all(f.course_deg == pytest.approx(87.5) and f.speed_mps == pytest.approx(5.0, abs=1e-3) for f in fixes)
    east0, north0 = CRS.to_en(LAT, LON)
    assert math.hypot(fixes[0].east - east0, fixes[0].north - north0) < 0.05
    s = prior.stats()
    assert s["epochs"] == 29 and s["no_fix_epochs"] == 0 and s["ok_GGA"] == 29 and s["ok_RMC"] == 29
    assert s["bad_unknown_sentence"] == 2 * 29 and prior.problem is None  # GSV and GLL: valid, not decoded


def test_sirf_gpgga_and_glgga_of_one_epoch_are_one_fix_from_the_first(tmp_path):
    prior = prior_of(tmp_path, log_text([sirf(i, *p) for i, p in enumerate(track(59))]))
    fixes = prior.poll(1e9)
    assert len(fixes) == 59  # not 118
    assert all(f.sigma_m == pytest.approx(0.9 * UERE_M[1] / math.sqrt(2)) and f.hdop == 0.9 for f in fixes)
    assert fixes[3].course_deg == pytest.approx(45.0) and fixes[3].speed_mps == pytest.approx(1.94 * KNOT_MPS)


def test_neo_m8n_gga_without_hdop_takes_the_epochs_gsa_hdop(tmp_path):
    epochs = [neo_m8n(i, *p, gsa_hdop=1.25 + 0.5 * (i % 2)) for i, p in enumerate(track(20))]
    fixes = prior_of(tmp_path, log_text(epochs)).poll(1e9)
    assert len(fixes) == 20
    assert [f.hdop for f in fixes[:4]] == [1.25, 1.75, 1.25, 1.75]  # each epoch its own GSA, not the last one
    assert fixes[1].sigma_m == pytest.approx(1.75 * UERE_M[1] / math.sqrt(2))
    assert fixes[0].course_deg is None  # RMC without a course, VTG without one either


def test_bad_checksums_partial_lines_binary_junk_and_no_fix_epochs(tmp_path):
    epochs = [zed_f9p(i, *p, fix=not 10 <= i < 14) for i, p in enumerate(track(30))]
    epochs[5][2] = epochs[5][2][:-2] + ("00" if not epochs[5][2].endswith("00") else "11")  # GGA bad checksum
    epochs[7].insert(1, "$GNGGA,100007.00,4700.000")  # a line cut mid-sentence (a dropped byte run)
    epochs[8].insert(0, "\x00\xff\xfe\xb5b\x01\x07\x5c\x00")  # UBX binary between sentences
    epochs[20][2] = epochs[20][2][:40]  # the epoch's GGA cut short: the epoch has an RMC only
    text = log_text(epochs).encode("latin-1")
    prior = prior_of(tmp_path, text)
    fixes = prior.poll(1e9)
    s = prior.stats()
    # 30 epochs: 4 without a fix, 5 and 20 lost their GGA (an RMC alone is not a fix once GGAs are seen).
    assert len(fixes) == 24 and s["epochs"] == 30 and s["no_fix_epochs"] == 4
    assert s["bad_bad_checksum"] == 1 and s["bad_not_nmea"] >= 1 and s["bad_missing_checksum"] >= 2
    assert {round(f.t) for f in fixes} == set(range(30)) - {5, 10, 11, 12, 13, 20}
    assert prior.problem is None


def test_rmc_only_receiver_gives_a_fix_per_valid_rmc_with_the_default_sigma(tmp_path):
    epochs = [[s for s in sirf(i, *p) if "RMC" in s] for i, p in enumerate(track(10))]
    fixes = prior_of(tmp_path, log_text(epochs)).poll(1e9)
    assert len(fixes) == 10 and fixes[0].sigma_m == pytest.approx(sigma_from_hdop(None, 1))


def test_garbage_as_gps_is_a_problem_that_names_the_file_and_the_reasons(tmp_path):
    import numpy as np

    prior = prior_of(tmp_path, np.random.default_rng(0).bytes(20000), "random.bin")
    assert prior.poll(1e9) == []
    assert prior.problem.startswith(f"--gps {tmp_path / 'random.bin'}: no valid NMEA 0183 sentence in 20000 bytes")
    assert "not_nmea" in prior.problem and prior.stats()["problem"] == prior.problem
    # Valid sentences after 60 bad ones: usable, but suspect (a wrong baud rate at the start).
    junk = "".join(sentence(f"GPXXX,{i}")[:-3] + "*00\r\n" for i in range(60))
    prior = prior_of(tmp_path, junk + log_text([zed_f9p(i, *p) for i, p in enumerate(track(5))]), "late.nmea")
    assert len(prior.poll(1e9)) == 5 and "the first 60 sentences are all bad" in prior.problem
    prior = prior_of(tmp_path, log_text([neo_m8n(i, *p, fix=False) for i, p in enumerate(track(8))]), "indoor.nmea")
    assert prior.problem.endswith("no position fix in 8 epochs (8 without a fix); the receiver never had one in this log")


def test_live_stream_decoder_hands_the_epoch_out_once_it_has_a_position():
    from edge_geoloc.geo.nmea import NmeaReader

    dec, reader = NmeaDecoder(CRS), NmeaReader()
    out = []
    for i, (lat, lon) in enumerate(track(3)):
        lines = sirf(i, lat, lon)
        # Each read delivers part of an epoch: GPGGA | GLGGA + GSA | RMC (a datagram per sentence group).
        for chunk in (lines[:1], lines[1:3], lines[3:]):
            for rec in reader.feed("".join(s + "\r\n" for s in chunk)):
                out += dec.record(rec, float(i))
            out += dec.flush(partial=True)
    out += dec.flush()
    assert [f.t for f in out] == [0.0, 1.0, 2.0] and all(f.hdop == 0.9 for f in out)


def test_events_of_one_epoch_never_compare_payloads():
    """Two fixes and an odometry sample at the same time (the heapq TypeError of the old loop)."""

    class Two:
        name = "two"

        def poll(self, t):
            return [GpsFix(1.0, LAT, LON, 0.0, 0.0, 2.0), GpsFix(1.0, LAT, LON, 1.0, 0.0, 3.0)]

    class Odo:
        def poll(self, t):
            return [OdometrySample(1.0, 3.0, 0.0)]

    ev = events(1.0, Two(), Odo())
    assert [k for _, k, _ in ev] == [ODOMETRY, GNSS, GNSS] and [e.east for _, k, e in ev if k == GNSS] == [0.0, 1.0]
