import numpy as np
import pytest
from pyproj import Geod

from edge_geoloc.geo import MapCRS, Tiling, angle_diff_deg, geodesic_distance_m, haversine_m, utm_epsg, vigor_iou


def test_utm_zone_of_centre():
    assert utm_epsg(40.7, -74.0) == 32618
    assert utm_epsg(-33.9, 151.2) == 32756
    assert MapCRS.for_area(48.1, 11.6).to_string() == "EPSG:32632"
    with pytest.raises(ValueError, match="outside UTM"):
        utm_epsg(85.0, 0.0)


def test_latlon_round_trip_within_a_millimetre():
    crs = MapCRS.for_area(37.77, -122.42)
    rng = np.random.default_rng(0)
    lat = 37.77 + rng.uniform(-0.05, 0.05, 1000)
    lon = -122.42 + rng.uniform(-0.05, 0.05, 1000)
    east, north = crs.to_en(lat, lon)
    lat2, lon2 = crs.to_latlon(east, north)
    e2, n2 = crs.to_en(lat2, lon2)
    assert np.max(np.hypot(e2 - east, n2 - north)) < 1e-3
    assert np.max(geodesic_distance_m(lat, lon, lat2, lon2)) < 1e-3


def test_projected_distance_matches_geodesic():
    crs = MapCRS.for_area(52.5, 13.4)
    e, n = crs.to_en([52.50, 52.51], [13.40, 13.41])
    grid = np.hypot(e[1] - e[0], n[1] - n[0])
    k = crs.scale_factor(52.505, 13.405)
    true = geodesic_distance_m(52.50, 13.40, 52.51, 13.41)
    assert abs(grid / k - true) < 0.05  # grid metres / point scale factor = true metres
    assert abs(haversine_m(52.50, 13.40, 52.51, 13.41) - true) < 0.005 * true


def test_grid_convergence_several_degrees_at_high_latitude():
    # Zone 33N (central meridian 15E) at 60N, 3 degrees east of the meridian: ~2.6 degrees.
    crs = MapCRS("EPSG:32633")
    lat, lon = 60.0, 18.0
    gamma = float(crs.convergence_deg(lat, lon))
    assert 2.4 < gamma < 2.8
    # Grid north, followed on the ellipsoid, has a true azimuth of +gamma.
    e, n = crs.to_en(lat, lon)
    lat2, lon2 = crs.to_latlon(e, n + 200.0)
    az, _, _ = Geod(ellps="WGS84").inv(lon, lat, float(lon2), float(lat2))
    assert abs(az - gamma) < 0.01
    assert float(crs.true_to_grid_heading(gamma, lat, lon)) == pytest.approx(0.0, abs=1e-9)
    assert float(crs.grid_to_true_heading(0.0, lat, lon)) == pytest.approx(gamma)
    # Round trip, wrapped to [0, 360).
    h = np.array([0.0, 1.0, 90.0, 359.5])
    back = crs.grid_to_true_heading(crs.true_to_grid_heading(h, lat, lon), lat, lon)
    assert np.allclose(angle_diff_deg(back, h), 0, atol=1e-9)
    assert np.all((back >= 0) & (back < 360))
    # West of the meridian the sign flips.
    assert float(crs.convergence_deg(60.0, 12.0)) < -2.4


def test_geographic_crs_is_refused():
    with pytest.raises(ValueError, match="projected"):
        MapCRS("EPSG:4326")


def test_every_point_in_exactly_four_tiles():
    tiling = Tiling.around(500_000.0, 4_000_000.0, size_m=300.0, tile_m=60.0)
    _ids, ce, cn = tiling.centres()
    rng = np.random.default_rng(1)
    e = rng.uniform(tiling.east_min, tiling.east_max, 3000)
    n = rng.uniform(tiling.north_min, tiling.north_max, 3000)
    # Include points exactly on tile borders and on the area's corners.
    e = np.concatenate([e, [tiling.east_min, tiling.east_max, tiling.east_min + 30.0, tiling.east_min + 60.0]])
    n = np.concatenate([n, [tiling.north_min, tiling.north_max, tiling.north_max - 30.0, tiling.north_max - 90.0]])
    half = tiling.tile_m / 2
    inside = (
        (e[:, None] >= ce[None] - half)
        & (e[:, None] < ce[None] + half)
        & (n[:, None] > cn[None] - half)
        & (n[:, None] <= cn[None] + half)
    )
    assert np.all(inside.sum(axis=1) == 4)
    cov, offsets, iou = tiling.covering(e, n)
    for i in range(len(e)):
        assert set(cov[i]) == set(np.flatnonzero(inside[i]))
    # Offsets are from each tile's centre; the positive is the nearest centre.
    cov_e, cov_n = tiling.centre(cov)
    assert np.allclose(offsets[..., 0], e[:, None] - cov_e)
    assert np.allclose(offsets[..., 1], n[:, None] - cov_n)
    d = np.hypot(offsets[..., 0], offsets[..., 1])
    assert np.all(d[:, 0] <= d.min(axis=1) + 1e-9)
    assert np.all(np.diff(iou[:, 1:], axis=1) <= 1e-12)


def test_vigor_iou_hand_cases():
    # Same square: IoU 1. Offset half a side in one axis: overlap 1/2 -> (1/2)/(3/2) = 1/3.
    assert vigor_iou(0.0, 0.0, 60.0) == pytest.approx(1.0)
    assert vigor_iou(30.0, 0.0, 60.0) == pytest.approx(1 / 3)
    # Half a side in both axes: overlap 1/4 -> (1/4)/(7/4) = 1/7.
    assert vigor_iou(-30.0, 30.0, 60.0) == pytest.approx(1 / 7)
    assert vigor_iou(60.0, 0.0, 60.0) == pytest.approx(0.0)
    # The covering tiles of a point at a tile centre: positive IoU 1, then 1/3, 1/3, 1/7.
    tiling = Tiling(0.0, 0.0, 120.0, 120.0, 60.0)
    _ids, offsets, iou = tiling.covering(60.0, 60.0)
    assert iou[0] == pytest.approx([1.0, 1 / 3, 1 / 3, 1 / 7])
    assert np.allclose(offsets[0, 0], 0.0)


def test_tiles_in_box_and_errors():
    tiling = Tiling(0.0, 0.0, 120.0, 120.0, 60.0)
    assert tiling.n_cols == 6 and tiling.n_rows == 6  # centres every 30 m from 0 to 150
    ids = tiling.in_box(0.0, 0.0, 30.0, 30.0)
    e, n = tiling.centre(ids)
    assert sorted(zip(e.tolist(), n.tolist())) == [(0.0, 0.0), (0.0, 30.0), (30.0, 0.0), (30.0, 30.0)]
    assert len(tiling.in_box(1000.0, 1000.0, 1001.0, 1001.0)) == 0
    with pytest.raises(ValueError, match="outside the tiled area"):
        tiling.covering(-5.0, 10.0)
    with pytest.raises(IndexError, match="outside this tiling"):
        tiling.centre(36)
    with pytest.raises(ValueError, match="empty area"):
        Tiling(0.0, 0.0, 0.0, 10.0, 5.0)
