"""Aerial tiles: geometry (centre, offsets, true-north rotation), shadows, anti-aliasing, errors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from worldkit import REGION, box_world

from edge_geoloc.world.aerial import aerial_capture, render_aerial
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.layout import generate_world
from edge_geoloc.world.region import Region
from edge_geoloc.world.scene import World

# Overhead sun (no cast shadows, flat ground lit at factor 1) and a neutral camera.
PLAIN = Appearance(sun_azimuth_deg=0.0, sun_elevation_deg=90.0, season=0.0, haze=0.0)
RED = (230, 30, 30)
BLUE = (30, 30, 230)


def redness_centroid(tile: np.ndarray, channel: int = 0) -> tuple[float, float]:
    """(row, col) of the red (or, channel 2, blue) roof's weighted centroid in pixel-index coordinates."""
    w = np.clip(tile[..., channel].astype(float) - tile[..., 1].astype(float) - 40.0, 0, None)
    rows, cols = np.indices(w.shape)
    total = w.sum()
    assert total > 0, "no red roof in the tile"
    return float((rows * w).sum() / total), float((cols * w).sum() / total)


def moved(world: World, region: Region, shift: tuple[float, float] = (0.0, 0.0)) -> World:
    """The same rasters placed around another region's centre (another CRS, another latitude)."""
    ce, cn = region.center_en()
    size = world.shape[1] * world.res_m
    return dataclasses.replace(
        world, region=region, crs=region.map_crs(), east_min=ce - size / 2, north_max=cn + size / 2, cache={}
    )


@pytest.mark.parametrize("gsd", [0.25, 0.4, 1.0])
def test_tile_centred_on_a_building_shows_it_at_the_centre_and_offsets_move_it(gsd):
    w = box_world([(12.0, -7.0, 8.0, 6.0, 10.0)], roof_rgb=[RED])
    ce, cn = REGION.center_en()
    be, bn = ce + 12.0, cn - 7.0
    size = 96
    c = (size - 1) / 2
    tile = render_aerial(w, be, bn, size, gsd, PLAIN)
    assert tile.shape == (size, size, 3) and tile.dtype == np.uint8
    row, col = redness_centroid(tile)
    assert abs(row - c) < 0.3 and abs(col - c) < 0.3
    # The roof covers its area in pixels (8 x 6 m).
    assert np.sum(tile[..., 0] > 150) == pytest.approx(48.0 / gsd**2, rel=0.25)
    # Move the tile 6 m east and 4 m south: the roof moves 6 m west and 4 m north in the image.
    row2, col2 = redness_centroid(render_aerial(w, be + 6.0, bn - 4.0, size, gsd, PLAIN))
    assert col2 == pytest.approx(c - 6.0 / gsd, abs=0.3)
    assert row2 == pytest.approx(c - 4.0 / gsd, abs=0.3)


def test_overlapping_tiles_agree_pixel_for_pixel():
    w = box_world([(0.0, 0.0, 10.0, 10.0, 15.0), (-20.0, 10.0, 6.0, 12.0, 6.0)], roof_rgb=[RED, (200, 200, 60)])
    ce, cn = REGION.center_en()
    app = dataclasses.replace(aerial_capture(w), blur_sigma_px=0.0)
    gsd, shift = 0.3, 8
    a = render_aerial(w, ce, cn, 128, gsd, app)
    b = render_aerial(w, ce + shift * gsd, cn, 128, gsd, app)
    # Equal up to a rounding step: the world is resampled at the same points in both tiles.
    assert np.abs(a[:, shift:].astype(int) - b[:, :-shift]).max() <= 1


@pytest.mark.parametrize("sun_az", [90.0, 180.0, 300.0])
def test_cast_shadows_fall_away_from_the_sun(sun_az):
    w = box_world([(0.0, 0.0, 10.0, 10.0, 20.0)])
    ce, cn = REGION.center_en()
    app = Appearance(sun_azimuth_deg=sun_az, sun_elevation_deg=45.0, season=0.0)
    gsd, size = 0.25, 320
    tile = render_aerial(w, ce, cn, size, gsd, app)
    c = (size - 1) / 2
    a = np.radians(sun_az)
    towards = np.array([np.sin(a), np.cos(a)])  # east, north

    def green_at(dist_m: float, direction: np.ndarray) -> float:
        col = c + direction[0] * dist_m / gsd
        row = c - direction[1] * dist_m / gsd
        return float(tile[round(row) - 2 : round(row) + 3, round(col) - 2 : round(col) + 3, 1].mean())

    lit = green_at(12.0, towards)
    shaded = green_at(12.0, -towards)  # 12 m from the centre, within the 20 m shadow behind the box
    beyond = green_at(35.0, -towards)  # past the shadow's end (20 m from the far wall, < 27.1 m)
    assert shaded < 0.6 * lit
    assert beyond == pytest.approx(lit, rel=0.1)


def test_true_north_tiles_are_rotated_by_the_meridian_convergence():
    # 70 N, 24 E: 3 degrees west of zone 35's central meridian, convergence about -2.8 degrees.
    arctic = Region(name="arctic", center_lat=70.0, center_lon=24.0, size_m=200.0, style="rural", seed=0)
    crs = arctic.map_crs()
    gamma = float(crs.convergence_deg(70.0, 24.0))
    assert gamma < -2.0
    g = np.radians(gamma)
    dist = 50.0
    # Markers due true north (red) and due true east (blue) of the centre: grid azimuth = true - convergence.
    north = dist * np.array([np.sin(-g), np.cos(-g)])
    east = dist * np.array([np.sin(np.pi / 2 - g), np.cos(np.pi / 2 - g)])
    w = moved(box_world([(*north, 3.0, 3.0, 0.0), (*east, 3.0, 3.0, 0.0)], roof_rgb=[RED, BLUE]), arctic)
    ce, cn = arctic.center_en()
    size, gsd = 256, 0.5
    c = (size - 1) / 2
    tile = render_aerial(w, ce, cn, size, gsd, PLAIN, true_north=True)
    assert redness_centroid(tile) == pytest.approx((c - dist / gsd, c), abs=0.3)
    assert redness_centroid(tile, 2) == pytest.approx((c, c + dist / gsd), abs=0.3)
    tile = render_aerial(w, ce, cn, size, gsd, PLAIN, true_north=False)
    assert redness_centroid(tile) == pytest.approx((c - north[1] / gsd, c + north[0] / gsd), abs=0.3)
    assert redness_centroid(tile, 2) == pytest.approx((c - east[1] / gsd, c + east[0] / gsd), abs=0.3)
    assert north[0] / gsd > 4.0  # the two conventions differ by several pixels here


def test_coarse_gsd_averages_instead_of_aliasing():
    w = box_world([])
    w.albedo[:] = 0
    w.albedo[:, ::2] = 255  # 0.5 m stripes at 0.25 m/px
    ce, cn = REGION.center_en()
    for gsd in (0.5, 1.0, 2.0):
        tile = render_aerial(w, ce + 0.125, cn, 64, gsd, PLAIN).astype(float)
        assert abs(tile.mean() - 127.5) < 6 and tile.std() < 8, gsd


def test_tiles_leaving_the_world_fail_clearly():
    w = box_world([], size_m=200.0)
    ce, cn = REGION.center_en()
    with pytest.raises(ValueError, match=r"aerial tile of 128 px at 0.5 m/px.*outside the world 'box-world'"):
        render_aerial(w, ce + 80.0, cn, 128, 0.5)  # centre inside, footprint 32 m past the east edge
    with pytest.raises(ValueError, match="outside the world"):
        render_aerial(w, ce + 500.0, cn - 500.0, 16, 0.5)
    render_aerial(w, ce + 67.0, cn, 128, 0.5)  # just inside
    with pytest.raises(ValueError, match="positive number of pixels"):
        render_aerial(w, ce, cn, 0, 0.5)
    with pytest.raises(ValueError, match="ground sample distance"):
        render_aerial(w, ce, cn, 64, -1.0)


def test_default_capture_comes_from_the_region_seed():
    small = Region(
        name="cap", center_lat=47.37, center_lon=8.54, size_m=150.0, style="suburb", seed=5, resolution_m=0.5
    )
    w = generate_world(small)
    app = aerial_capture(w)
    assert app == Appearance.sample(np.random.default_rng(5), "aerial")
    ce, cn = small.center_en()
    a = render_aerial(w, ce, cn, 128, 0.6)
    assert np.array_equal(a, render_aerial(w, ce, cn, 128, 0.6, app))
    noisy = [render_aerial(w, ce, cn, 128, 0.6, rng=np.random.default_rng(1)) for _ in range(2)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], a)
    other = Appearance.sample(np.random.default_rng(6), "aerial")
    assert not np.array_equal(a, render_aerial(w, ce, cn, 128, 0.6, other))
