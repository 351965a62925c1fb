"""GPS and odometry models: error statistics, outages, NMEA output, dead reckoning."""

from __future__ import annotations

import numpy as np
import pytest
from roadkit import grid_network, straight_line

from edge_geoloc.geo import MapCRS, angle_diff_deg
from edge_geoloc.geo.nmea import GGA, RMC, NmeaReader
from edge_geoloc.world.sensors import GpsModel, OdometryLog, OdometryModel, dead_reckon
from edge_geoloc.world.trajectory import drive

CRS = MapCRS("EPSG:32632")  # UTM 32N; the trajectories sit near 47 N, 9 E
ORIGIN = (500_000.0, 5_205_000.0)
QUIET = dict(bias_sigma_m=0.0, multipath_rate_hz=0.0, hdop_variation=0.0)


def _errors(log, traj):
    truth = traj.resample(log.t)
    return np.stack([log.east - truth.east, log.north - truth.north], axis=1)


@pytest.fixture(scope="module")
def city_drive():
    return drive(grid_network(ORIGIN), seed=2, duration_s=300.0)


# ---- GPS ---------------------------------------------------------------------------------------


def test_gps_white_noise_matches_sigma():
    traj = straight_line(400.0, 0.1, start=ORIGIN)
    log = GpsModel(sigma_m=3.0, rate_hz=10.0, seed=1, **QUIET).simulate(traj, CRS)
    err = _errors(log, traj)
    assert len(log) == 4001 and log.valid.all()
    np.testing.assert_allclose(err.std(axis=0), 3.0, rtol=0.05)
    np.testing.assert_allclose(err.mean(axis=0), 0.0, atol=0.2)
    assert abs(np.corrcoef(err[:-1, 0], err[1:, 0])[0, 1]) < 0.06  # white: no memory
    # HDOP stays nominal and tells the right sigma.
    np.testing.assert_allclose(log.hdop, 0.9)
    np.testing.assert_allclose(log.sigma_m(), 3.0, rtol=1e-2)


def test_gps_bias_is_a_slow_gauss_markov_drift():
    traj = straight_line(8000.0, 1.0, speed_mps=0.0, start=ORIGIN)
    model = GpsModel(sigma_m=0.0, bias_sigma_m=2.0, bias_tau_s=20.0, multipath_rate_hz=0.0, hdop_variation=0.0, seed=3)
    err = _errors(model.simulate(traj, CRS), traj)
    np.testing.assert_allclose(err.std(axis=0), 2.0, rtol=0.15)

    # Correlation exp(-lag / tau): about 0.95 a second apart, 1/e at tau, gone after 10 tau.
    def corr(lag):
        return np.mean([np.corrcoef(err[:-lag, k], err[lag:, k])[0, 1] for k in range(2)])

    assert corr(1) == pytest.approx(np.exp(-1 / 20), abs=0.03)
    assert corr(20) == pytest.approx(np.exp(-1), abs=0.1)
    assert abs(corr(200)) < 0.15
    # It drifts: steps between epochs are much smaller than the bias itself.
    assert np.diff(err[:, 0]).std() < 0.4 * err[:, 0].std()


def test_gps_outages_give_no_fix_epochs():
    traj = straight_line(120.0, 0.1, start=ORIGIN)
    log = GpsModel(outages=((30.0, 50.0), (100.0, 101.5)), seed=0).simulate(traj, CRS)
    in_outage = ((log.t >= 30.0) & (log.t < 50.0)) | ((log.t >= 100.0) & (log.t < 101.5))
    np.testing.assert_array_equal(~log.valid, in_outage)
    assert in_outage.sum() == 22
    assert np.all(np.isnan(log.lat[in_outage])) and np.all(np.isnan(log.east[in_outage]))
    assert np.all(np.isfinite(log.lat[~in_outage]))
    assert np.all(log.quality[in_outage] == 0) and np.all(log.quality[~in_outage] == 1)
    assert np.all(log.num_sats[in_outage] < 4) and np.all(log.num_sats[~in_outage] >= 4)
    assert np.all(np.isinf(log.sigma_m()[in_outage]))


def test_gps_multipath_jumps_raise_hdop():
    traj = straight_line(2000.0, 1.0, start=ORIGIN)
    model = GpsModel(
        sigma_m=0.5,
        bias_sigma_m=0.0,
        hdop_variation=0.0,
        multipath_rate_hz=0.02,
        multipath_m=15.0,
        multipath_duration_s=5.0,
        seed=4,
    )
    log = model.simulate(traj, CRS)
    err = np.linalg.norm(_errors(log, traj), axis=1)
    jumped = err > 4.0  # 8 sigma of the white noise alone
    starts = np.flatnonzero(jumped[1:] & ~jumped[:-1])
    assert 20 <= len(starts) <= 65  # about rate * duration = 40 episodes
    assert 7.0 <= np.median(err[jumped]) <= 23.0  # sizes 0.5..1.5 x 15 m
    assert 0.05 <= jumped.mean() <= 0.2  # episodes last about 5 s
    # The receiver sees it: fewer satellites, higher HDOP, and HDOP tracks the error.
    assert np.median(log.hdop[jumped]) > 5 * np.median(log.hdop[~jumped])
    assert np.median(log.num_sats[jumped]) < np.median(log.num_sats[~jumped])
    assert np.corrcoef(log.hdop, err)[0, 1] > 0.8
    # HDOP x UERE is an honest error scale: per-axis errors normalised by it have unit spread.
    z = _errors(log, traj) / log.sigma_m()[:, None]
    assert 0.8 < z.std() < 1.25


def test_gps_course_is_from_true_north_and_speed_over_ground():
    # 3 degrees east of the zone's central meridian at 60 N: grid and true north differ by ~2.6 deg.
    crs = MapCRS.for_area(60.0, 9.0)
    e, n = crs.to_en(60.0, 12.0)
    traj = straight_line(200.0, 0.1, speed_mps=15.0, heading_deg=40.0, start=(float(e), float(n)))
    log = GpsModel(seed=5, rate_hz=5.0).simulate(traj, crs)
    true_heading = traj.resample(log.t).true_heading(crs)
    assert np.mean(angle_diff_deg(true_heading, 40.0)) > 2.0
    assert np.median(np.abs(angle_diff_deg(log.course_deg, true_heading))) < 0.5
    np.testing.assert_allclose(np.median(log.speed_mps), 15.0, atol=0.05)


def test_gps_is_deterministic_by_seed(city_drive):
    a = GpsModel(seed=7).simulate(city_drive, CRS)
    b = GpsModel(seed=7).simulate(city_drive, CRS)
    c = GpsModel(seed=8).simulate(city_drive, CRS)
    np.testing.assert_array_equal(a.east, b.east)
    assert not np.allclose(a.east, c.east)
    assert a.t[0] == city_drive.t[0] and a.t[-1] <= city_drive.t[-1]


def test_gps_log_writes_nmea_as_a_receiver_does(city_drive):
    model = GpsModel(seed=1, rate_hz=2.0, outages=((100.0, 110.0),))
    log = model.simulate(city_drive, CRS)
    lines = log.to_nmea(talker="GN", gsa=True)
    assert len(lines) == 3 * len(log)
    reader = NmeaReader("\r\n".join(lines) + "\r\n")
    records = list(reader)
    assert reader.bad == 0 and reader.records == {"GGA": len(log), "RMC": len(log), "GSA": len(log)}
    gga = [r for r in records if isinstance(r, GGA)]
    rmc = [r for r in records if isinstance(r, RMC)]
    for i, (g, r) in enumerate(zip(gga, rmc, strict=True)):
        assert g.talker == "GN"
        if log.valid[i]:
            assert g.has_fix and r.has_fix
            assert abs(g.lat - log.lat[i]) < 1e-7 and abs(g.lon - log.lon[i]) < 1e-7  # 5-decimal minutes
            assert g.hdop == pytest.approx(log.hdop[i], abs=0.005)
            assert r.speed_mps == pytest.approx(log.speed_mps[i], abs=1e-3)
        else:  # the outage: quality 0, empty position, status V
            assert not g.has_fix and g.lat is None and g.quality == 0
            assert not r.valid and r.lat is None
        when = log.utc(i)
        assert r.datetime_utc.replace(tzinfo=None) == when.replace(
            tzinfo=None, microsecond=when.microsecond // 10000 * 10000
        )


def test_gps_model_rejects_bad_config():
    with pytest.raises(ValueError, match="outage"):
        GpsModel(outages=((10.0, 5.0),))
    with pytest.raises(ValueError, match="sigma_m"):
        GpsModel(sigma_m=-1.0)
    with pytest.raises(ValueError, match="rate_hz"):
        GpsModel(rate_hz=0.0)


# ---- odometry ----------------------------------------------------------------------------------


def test_noise_free_odometry_dead_reckons_onto_the_truth(city_drive):
    odo = OdometryModel.perfect(rate_hz=10.0).simulate(city_drive)
    np.testing.assert_allclose(odo.speed_mps, city_drive.resample(odo.t).speed_mps)
    dr = dead_reckon(odo, city_drive.east[0], city_drive.north[0], city_drive.heading_deg[0])
    truth = city_drive.resample(dr.t)
    assert city_drive.length_m > 2000.0
    assert np.max(np.hypot(dr.east - truth.east, dr.north - truth.north)) < 0.5
    assert np.max(np.abs(angle_diff_deg(dr.heading_deg, truth.heading_deg))) < 0.2


def test_yaw_rate_bias_turns_the_heading_at_the_bias_rate():
    traj = straight_line(100.0, 0.1, speed_mps=10.0, heading_deg=0.0)
    odo = OdometryModel(0.0, 0.0, 0.2, 0.0, 0.0, rate_hz=10.0).simulate(traj)
    dr = dead_reckon(odo, traj.east[0], traj.north[0], 0.0)
    np.testing.assert_allclose(dr.heading_deg, np.mod(0.2 * odo.t, 360.0), atol=1e-9)
    # A constant turn rate: an arc of radius v / w, ending 20 degrees off north.
    radius = 10.0 / np.deg2rad(0.2)
    end = np.array([radius * (1 - np.cos(np.deg2rad(20.0))), radius * np.sin(np.deg2rad(20.0))])
    np.testing.assert_allclose([dr.east[-1] - traj.east[0], dr.north[-1] - traj.north[0]], end, atol=1e-3)
    drift = np.hypot(dr.east - traj.resample(dr.t).east, dr.north - traj.resample(dr.t).north)
    assert drift[-1] > 100.0 and np.all(np.diff(drift) >= 0)


def test_speed_scale_error_stretches_the_distance():
    traj = straight_line(60.0, 0.1, speed_mps=12.0)
    odo = OdometryModel(
        speed_scale_error=0.02, speed_noise_mps=0.0, yaw_rate_bias_walk_dps=0.0, yaw_rate_noise_dps=0.0
    ).simulate(traj)
    dr = dead_reckon(odo, traj.east[0], traj.north[0], traj.heading_deg[0])
    assert dr.length_m == pytest.approx(1.02 * traj.length_m, rel=1e-9)


def test_yaw_bias_random_walk_and_noise_statistics():
    traj = straight_line(2000.0, 0.1, speed_mps=5.0)
    walk = OdometryModel(yaw_rate_bias_walk_dps=0.01, yaw_rate_noise_dps=0.0, seed=2).simulate(traj)
    steps = np.diff(walk.yaw_rate_dps)  # the bias's increments: 0.01 * sqrt(0.1 s) each
    assert steps.std() == pytest.approx(0.01 * np.sqrt(0.1), rel=0.05)
    noisy = OdometryModel(yaw_rate_bias_walk_dps=0.0, yaw_rate_noise_dps=0.3, speed_noise_mps=0.1, seed=2).simulate(
        traj
    )
    assert noisy.yaw_rate_dps.std() == pytest.approx(0.3, rel=0.05)
    assert (noisy.speed_mps - 5.0 * 1.01).std() == pytest.approx(0.1, rel=0.05)
    a = OdometryModel(seed=9).simulate(traj)
    np.testing.assert_array_equal(a.yaw_rate_dps, OdometryModel(seed=9).simulate(traj).yaw_rate_dps)


def test_dead_reckon_drifts_with_a_biased_gyro(city_drive):
    odo = OdometryModel(yaw_rate_bias_dps=0.2, seed=3).simulate(city_drive)
    dr = dead_reckon(odo, city_drive.east[0], city_drive.north[0], city_drive.heading_deg[0])
    truth = city_drive.resample(dr.t)
    err = np.hypot(dr.east - truth.east, dr.north - truth.north)
    assert err[100] < 5.0  # fine for ten seconds...
    assert err.max() > 100.0  # ...lost within five minutes


def test_dead_reckon_rejects_bad_logs():
    with pytest.raises(ValueError, match="increase"):
        dead_reckon(OdometryLog(np.array([0.0, 1.0, 1.0]), np.ones(3), np.zeros(3)), 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="empty"):
        dead_reckon(OdometryLog(np.zeros(0), np.zeros(0), np.zeros(0)), 0.0, 0.0, 0.0)
