"""Street panorama and vehicle pinhole camera: geometry against hand-computed angles on box worlds."""

import numpy as np
import pytest
from worldkit import REGION, box_world

from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import PinholeCamera, project, uav_pose
from edge_geoloc.world.street import render_panorama, render_pinhole

RED, BLUE = (230, 30, 30), (30, 40, 230)
CLEAR = Appearance(haze=0.0, sun_elevation_deg=60.0)  # no fade, no blur, no noise
CE, CN = REGION.center_en()
ROW_DEG = 90.0 / 128  # default panorama: 128 rows over -45..45 degrees


def reddish(img):
    img = img.astype(int)
    return img[..., 0] > 2 * img[..., 1] + 20


def bluish(img):
    img = img.astype(int)
    return img[..., 2] > 2 * img[..., 1] + 20


def east_building(dist_m, height_m, colour=RED):
    """A box whose west wall is ``dist_m`` due east of the world centre, 20 m long north-south."""
    return (dist_m + 5.0, 0.0, 10.0, 20.0, height_m)


def expected_row(elevation_deg, top_deg=45.0, row_deg=ROW_DEG):
    """Continuous row (pixel centres at integers) of an elevation in an equirectangular image."""
    return (top_deg - elevation_deg) / row_deg - 0.5


@pytest.mark.parametrize(("dist", "height"), [(25.0, 12.0), (60.0, 30.0), (8.0, 6.0), (90.0, 40.0)])
def test_building_due_east_at_azimuth_90_and_its_height_sets_its_elevation(dist, height):
    world = box_world([east_building(dist, height)], facade_rgb=[RED], window_spacing_m=0)
    pano = render_panorama(world, CE, CN, 0.0, app=CLEAR)
    red = reddish(pano)
    cols = np.nonzero(red.any(axis=0))[0]
    # Azimuth 90 with heading 0: between columns 383 and 384 (512 columns, 0.703 deg each).
    assert cols.mean() == pytest.approx(256 + 128 - 0.5, abs=0.5)
    half_width = np.degrees(np.arctan(10.0 / dist))
    assert (cols.max() - cols.min() + 1) * 360 / 512 == pytest.approx(2 * half_width, abs=2 * 360 / 512)
    # Top edge at atan((h - 2) / d), bottom at atan(-2 / d): within a pixel, in the column at azimuth 90.
    rows = np.nonzero(red[:, 383])[0]
    assert abs(rows.min() - expected_row(np.degrees(np.arctan((height - 2.0) / dist)))) <= 1.0
    assert abs(rows.max() - expected_row(np.degrees(np.arctan(-2.0 / dist)))) <= 1.0

    turned = reddish(render_panorama(world, CE, CN, 90.0, app=CLEAR))
    assert np.nonzero(turned.any(axis=0))[0].mean() == pytest.approx(255.5, abs=0.5)  # the centre column
    np.testing.assert_array_equal(turned, np.roll(red, -128, axis=1))


def test_heading_is_clockwise_from_grid_north():
    world = box_world([(0.0, 30.0, 10.0, 4.0, 15.0)], facade_rgb=[RED], window_spacing_m=0)  # due north
    for heading, col in ((0.0, 255.5), (90.0, 127.5), (270.0, 383.5)):
        cols = np.nonzero(reddish(render_panorama(world, CE, CN, heading, app=CLEAR)).any(axis=0))[0]
        assert cols.mean() == pytest.approx(col, abs=0.5)


def test_near_low_building_hides_the_lower_part_of_a_far_tall_one():
    near_d, near_h, far_d, far_h = 15.0, 5.0, 40.0, 20.0
    world = box_world(
        [east_building(near_d, near_h), east_building(far_d, far_h)],
        facade_rgb=[BLUE, RED],
        window_spacing_m=0,
    )
    pano = render_panorama(world, CE, CN, 0.0, app=CLEAR)
    near_rows = np.nonzero(bluish(pano)[:, 383])[0]
    far_rows = np.nonzero(reddish(pano)[:, 383])[0]
    near_top = expected_row(np.degrees(np.arctan((near_h - 2) / near_d)))
    assert abs(near_rows.min() - near_top) <= 1.0
    assert abs(far_rows.min() - expected_row(np.degrees(np.arctan((far_h - 2) / far_d)))) <= 1.0
    # The far building continues right down to the near one's top and not below it.
    assert abs(far_rows.max() + 1 - near_rows.min()) <= 1
    assert far_rows.max() < near_top
    # Without the near building the far one reaches down to its foot.
    alone = box_world([east_building(far_d, far_h)], facade_rgb=[RED], window_spacing_m=0)
    alone_rows = np.nonzero(reddish(render_panorama(alone, CE, CN, 0.0, app=CLEAR))[:, 383])[0]
    assert abs(alone_rows.max() - expected_row(np.degrees(np.arctan(-2.0 / far_d)))) <= 1.0


def test_custom_vertical_range_and_camera_height():
    world = box_world([east_building(20.0, 10.0)], facade_rgb=[RED], window_spacing_m=0)
    pano = render_panorama(world, CE, CN, 0.0, height_px=100, width_px=400, cam_height_m=1.5,
                           elevation_range_deg=(-30.0, 60.0), app=CLEAR)  # fmt: skip
    assert pano.shape == (100, 400, 3) and pano.dtype == np.uint8
    rows = np.nonzero(reddish(pano)[:, 299])[0]  # azimuth 90 lies between columns 299 and 300
    top = expected_row(np.degrees(np.arctan(8.5 / 20.0)), top_deg=60.0, row_deg=0.9)
    assert abs(rows.min() - top) <= 1.0


def test_sky_above_ground_below_and_sun_side_walls_brighter():
    app = Appearance(haze=0.0, sun_azimuth_deg=90.0, sun_elevation_deg=30.0)
    world = box_world([(30.0, 0.0, 10.0, 10.0, 10.0), (-30.0, 0.0, 10.0, 10.0, 10.0)], facade_rgb=[RED, RED],
                      window_spacing_m=0)  # fmt: skip
    pano = render_panorama(world, CE, CN, 0.0, app=app).astype(int)
    sky, ground = pano[5, 100], pano[120, 100]
    assert sky[2] > sky[1] > sky[0] - 20 and sky[2] > 150  # blue-ish and bright
    assert ground[1] > ground[0] and ground[1] > ground[2]  # grass
    # The building east of the camera shows its west wall (away from an eastern sun), the one west its east wall.
    west_wall, east_wall = pano[60, 383, 0], pano[60, 127, 0]
    assert east_wall > 1.5 * west_wall


def test_cast_shadow_climbs_a_sunlit_wall_to_the_height_the_sun_clears():
    # Sun due south at 30 deg; a 10 m block 10 m south of a tall building shades its south wall
    # below 10 - 10 tan(30) = 4.2 m. The camera stands east of the gap and looks at that wall.
    app = Appearance(haze=0.0, sun_azimuth_deg=180.0, sun_elevation_deg=30.0)
    tall = (0.0, 18.0, 20.0, 10.0, 25.0)  # south face at north = 13
    low = (0.0, 0.0, 20.0, 6.0, 10.0)  # north face at north = 3
    east, north = CE + 25.0, CN + 8.0
    az = np.degrees(np.arctan2(-20.0, 5.0)) % 360  # the wall point at east offset 5
    dist = np.hypot(20.0, 5.0)
    col = round(az * 512 / 360 + 255.5) % 512  # heading 0

    def brightness(world, z):
        pano = render_panorama(world, east, north, 0.0, app=app).astype(int)
        return pano[round(expected_row(np.degrees(np.arctan((z - 2.0) / dist)))), col, 0]

    shaded = box_world([tall, low], facade_rgb=[RED, BLUE], window_spacing_m=0)
    open_world = box_world([tall], facade_rgb=[RED], window_spacing_m=0)
    assert brightness(shaded, 8.0) > 2 * brightness(shaded, 1.5)  # lit above 4.2 m, shaded below
    assert brightness(open_world, 1.5) == pytest.approx(brightness(shaded, 8.0), abs=3)


def test_tree_crown_on_a_trunk_occludes_what_is_behind_it():
    dist, radius, height = 20.0, 3.0, 10.0
    world = box_world([east_building(40.0, 20.0)], facade_rgb=[RED], window_spacing_m=0,
                      trees=[(dist, 0.0, radius, height)])  # fmt: skip
    pano = render_panorama(world, CE, CN, 0.0, app=CLEAR).astype(int)
    col = pano[:, 383]
    green = (col[:, 1] > col[:, 0] + 10) & (col[:, 1] > col[:, 2])
    # The crown's top is the tangent from the camera to the crown ellipsoid (semi-axes r, rz around zc).
    from edge_geoloc.world.raycast import crown_shape

    rz, zc = (float(v) for v in crown_shape(radius, height))
    ts = np.linspace(-np.pi / 2, np.pi / 2, 20001)
    top_el = np.max(np.degrees(np.arctan2(zc + rz * np.sin(ts) - 2.0, dist - radius * np.cos(ts))))
    crown_rows = np.nonzero(green[: int(expected_row(0.0))])[0]
    assert abs(crown_rows.min() - expected_row(top_el)) <= 1.0
    # The building shows above the crown; below the crown a dark trunk, not a green pillar.
    assert reddish(pano[: crown_rows.min(), 383][None])[0].any()
    trunk_row = round(expected_row(np.degrees(np.arctan((1.0 - 2.0) / dist))))
    trunk = col[trunk_row]
    assert trunk[1] < 110 and trunk[0] > trunk[2]  # brownish bark


def test_pinhole_edges_match_the_field_of_view():
    # Two thin towers at azimuth +-40 degrees from the heading, 30 m away.
    az = np.radians([50.0, -30.0])
    heading = 10.0
    boxes = [(30 * np.sin(a), 30 * np.cos(a), 1.0, 1.0, 20.0) for a in az]
    world = box_world(boxes, facade_rgb=[RED, BLUE], window_spacing_m=0)
    img = render_pinhole(world, CE, CN, heading, fov_deg=90.0, width_px=256, height_px=128, app=CLEAR)
    f = 128.0  # (256 / 2) / tan(45 deg)
    assert np.nonzero(reddish(img).any(axis=0))[0].mean() == pytest.approx(127.5 + f * np.tan(np.radians(40)), abs=1.0)
    assert np.nonzero(bluish(img).any(axis=0))[0].mean() == pytest.approx(127.5 - f * np.tan(np.radians(40)), abs=1.0)


@pytest.mark.parametrize("pitch", [0.0, 12.0, -4.0])
def test_pinhole_geometry_agrees_with_the_camera_model(pitch):
    # A wide wall due north; its top edge in the centre column lands where project() says.
    dist, height = 30.0, 14.0
    world = box_world([(0.0, dist + 2.0, 40.0, 4.0, height)], facade_rgb=[RED], window_spacing_m=0)
    img = render_pinhole(world, CE, CN, 0.0, fov_deg=70.0, pitch_deg=pitch, width_px=256, height_px=192, app=CLEAR)
    cam = PinholeCamera.from_fov(256, 192, 70.0)
    R, pos = uav_pose(CE, CN, 2.0, 0.0, tilt_deg=90.0 + pitch)
    uv, front = project(cam, R, pos, [[CE, CN + dist, height], [CE, CN + dist, 0.0]])
    assert front.all() and uv[:, 0] == pytest.approx(127.5)
    rows = np.nonzero(reddish(img)[:, 127])[0]
    assert abs(rows.min() - uv[0, 1]) <= 1.0  # top edge
    assert abs(rows.max() - uv[1, 1]) <= 1.0  # foot of the wall


def test_wide_fov_is_an_equirectangular_crop_and_360_is_the_panorama():
    world = box_world([east_building(25.0, 12.0), (0.0, 30.0, 4.0, 4.0, 8.0)], facade_rgb=[RED, BLUE])
    pano = render_panorama(world, CE, CN, 30.0, app=CLEAR)
    full = render_pinhole(world, CE, CN, 30.0, fov_deg=360.0, width_px=512, height_px=128, app=CLEAR)
    np.testing.assert_array_equal(full, pano)
    half = render_pinhole(world, CE, CN, 30.0, fov_deg=180.0, width_px=256, height_px=128, app=CLEAR)
    # Same angular pitch (0.703 deg) and vertical range: the middle half of the panorama.
    np.testing.assert_array_equal(half, pano[:, 128:384])


def test_views_are_deterministic_and_noise_follows_the_generator():
    world = box_world([east_building(25.0, 12.0)])
    app = Appearance(noise_sigma=3.0, blur_sigma_px=0.6)
    a = render_panorama(world, CE, CN, 0.0, app=app, rng=np.random.default_rng(1))
    b = render_panorama(world, CE, CN, 0.0, app=app, rng=np.random.default_rng(1))
    c = render_panorama(world, CE, CN, 0.0, app=app, rng=np.random.default_rng(2))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)


def test_views_outside_the_world_or_with_impossible_arguments_fail_clearly():
    world = box_world([])
    with pytest.raises(ValueError, match="outside the world"):
        render_panorama(world, CE + 150.0, CN, 0.0)
    with pytest.raises(ValueError, match="outside the world"):
        render_pinhole(world, CE, CN - 101.0, 0.0)
    with pytest.raises(ValueError, match="size"):
        render_panorama(world, CE, CN, 0.0, width_px=0)
    with pytest.raises(ValueError, match="fov"):
        render_pinhole(world, CE, CN, 0.0, fov_deg=0.0)
    with pytest.raises(ValueError, match="fov"):
        render_pinhole(world, CE, CN, 0.0, fov_deg=400.0)
    with pytest.raises(ValueError, match="elevation_range"):
        render_panorama(world, CE, CN, 0.0, elevation_range_deg=(30.0, -30.0))
    with pytest.raises(ValueError, match="camera height"):
        render_panorama(world, CE, CN, 0.0, cam_height_m=0.0)
    with pytest.raises(ValueError, match="heading"):
        render_pinhole(world, CE, CN, float("nan"))
    with pytest.raises(ValueError, match="zenith or nadir"):
        render_pinhole(world, CE, CN, 0.0, fov_deg=360.0, width_px=256, height_px=128, pitch_deg=10.0)


def test_full_sphere_panorama_reaches_sky_and_ground():
    world = box_world([east_building(10.0, 30.0)], facade_rgb=[RED], window_spacing_m=0)
    pano = render_panorama(world, CE, CN, 0.0, height_px=256, width_px=512, elevation_range_deg=(-90.0, 90.0),
                           app=CLEAR).astype(int)  # fmt: skip
    assert pano[0, :, 2].min() > 150  # zenith: sky all round
    assert (pano[-1, :, 1] > pano[-1, :, 2]).all()  # nadir: the grass under the camera
    rows = np.nonzero(reddish(pano)[:, 383])[0]
    assert abs(rows.min() - expected_row(np.degrees(np.arctan(28.0 / 10.0)), 90.0, 180.0 / 256)) <= 1.0
