"""General perspective camera and the UAV view: poses, projection, and renders that land where
the camera model says."""

import numpy as np
import pytest
from worldkit import REGION, box_world

from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import (
    PinholeCamera,
    ground_ray_intersection,
    project,
    render_camera,
    render_uav,
    uav_pose,
)

RED, BLUE = (230, 30, 30), (30, 40, 230)
CLEAR = Appearance(haze=0.0, sun_elevation_deg=60.0)
CE, CN = REGION.center_en()


def reddish(img):
    img = img.astype(int)
    return img[..., 0] > 2 * img[..., 1] + 20


def box_corners(de, dn, w, d, h):
    e0, e1, n0, n1 = CE + de - w / 2, CE + de + w / 2, CN + dn - d / 2, CN + dn + d / 2
    return np.array([[e0, n0, h], [e1, n0, h], [e1, n1, h], [e0, n1, h]])


def test_from_fov_and_projection_round_trip():
    cam = PinholeCamera.from_fov(320, 240, 90.0)
    assert cam.fx == pytest.approx(160.0) and cam.fy == cam.fx
    assert (cam.cx, cam.cy) == (159.5, 119.5)
    R, pos = uav_pose(100.0, 200.0, 80.0, 30.0, tilt_deg=35.0, roll_deg=5.0)
    np.testing.assert_allclose(R.T @ R, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    uv = rng.uniform([0, 0], [320, 240], (50, 2))
    ground = ground_ray_intersection(cam, R, pos, uv)
    np.testing.assert_allclose(ground[:, 2], 0.0, atol=1e-9)
    back, front = project(cam, R, pos, ground)
    assert front.all()
    np.testing.assert_allclose(back, uv, atol=1e-6)
    # A point on the optical axis lands on the principal point; one behind the camera is flagged.
    axis = pos + 10 * R[:, 2]
    (u, v), ok = project(cam, R, pos, [axis])[0][0], project(cam, R, pos, [pos - R[:, 2]])[1]
    assert (u, v) == pytest.approx((cam.cx, cam.cy)) and not ok[0]


def test_uav_pose_axes():
    R, pos = uav_pose(0.0, 0.0, 120.0, 0.0)
    np.testing.assert_allclose(R[:, 2], [0, 0, -1], atol=1e-12)  # looks straight down
    np.testing.assert_allclose(-R[:, 1], [0, 1, 0], atol=1e-12)  # image up is north
    np.testing.assert_allclose(R[:, 0], [1, 0, 0], atol=1e-12)  # image right is east
    np.testing.assert_allclose(pos, [0, 0, 120])
    R, _ = uav_pose(0.0, 0.0, 120.0, 90.0)
    np.testing.assert_allclose(-R[:, 1], [1, 0, 0], atol=1e-12)  # heading east: image up is east
    R, _ = uav_pose(0.0, 0.0, 120.0, 90.0, tilt_deg=45.0)
    np.testing.assert_allclose(R[:, 2], [np.sqrt(0.5), 0, -np.sqrt(0.5)], atol=1e-12)  # oblique forward
    R, _ = uav_pose(0.0, 0.0, 120.0, 0.0, tilt_deg=90.0)
    np.testing.assert_allclose(R[:, 2], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(R[:, 1], [0, 0, -1], atol=1e-12)  # horizontal camera: image down is down


@pytest.mark.parametrize(("altitude", "heading", "offset"), [(100.0, 0.0, (0.0, 0.0)), (60.0, 0.0, (5.0, 0.0)),
                                                              (250.0, 0.0, (10.0, -20.0)), (100.0, 33.0, (5.0, 5.0))])  # fmt: skip
def test_uav_nadir_roof_corners_land_where_the_camera_model_says(altitude, heading, offset):
    box = (20.0, 10.0, 12.0, 8.0, 15.0)
    world = box_world([box], roof_rgb=[RED], facade_rgb=[BLUE], window_spacing_m=0)
    east, north = CE + offset[0], CN + offset[1]
    img = render_uav(world, east, north, altitude, heading, fov_deg=60.0, app=CLEAR)
    cam = PinholeCamera.from_fov(256, 256, 60.0)
    R, pos = uav_pose(east, north, altitude, heading)
    corners, front = project(cam, R, pos, box_corners(*box))
    assert front.all()
    roof = reddish(img)
    rows, cols = np.nonzero(roof)
    if heading == 0.0:  # an axis-aligned rectangle: compare its extent
        assert abs(cols.min() - corners[:, 0].min()) <= 1.5 and abs(cols.max() - corners[:, 0].max()) <= 1.5
        assert abs(rows.min() - corners[:, 1].min()) <= 1.5 and abs(rows.max() - corners[:, 1].max()) <= 1.5
    # Every projected corner has roof pixels within two pixels, and the roof's area matches.
    for u, v in corners:
        assert np.min(np.hypot(cols - u, rows - v)) <= 2.0
    x, y = corners[:, 0], corners[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    half_perimeter = 0.5 * np.sum(np.hypot(x - np.roll(x, 1), y - np.roll(y, 1)))
    assert abs(roof.sum() - area) <= half_perimeter + 1  # pixel centres inside the roof's outline


def test_heading_rotates_the_nadir_image():
    world = box_world(
        [(20.0, 10.0, 12.0, 8.0, 15.0), (-25.0, 30.0, 8.0, 20.0, 6.0), (5.0, -30.0, 30.0, 6.0, 0.0)],
        roof_rgb=[RED, (240, 240, 60), (250, 250, 250)],
        trees=[(-10.0, -10.0, 4.0, 9.0)],
    )
    north_up = render_uav(world, CE, CN, 120.0, 0.0, app=CLEAR).astype(int)
    east_up = render_uav(world, CE, CN, 120.0, 90.0, app=CLEAR).astype(int)
    # Heading east puts what lay right (east) at the top: the north-up image turned anticlockwise.
    turned = np.rot90(north_up, k=1)
    assert np.mean(np.abs(east_up - turned)) < 2.0
    assert np.mean(np.abs(east_up - north_up)) > 5.0  # the comparison means something
    r0, c0 = np.argwhere(reddish(north_up)).mean(axis=0)
    r1, c1 = np.argwhere(reddish(east_up)).mean(axis=0)
    assert c0 > 127.5 and r0 < 127.5  # north-east of the camera: upper right in a north-up frame
    assert c1 < 127.5 and r1 < 127.5  # upper left when the image's up is east


def test_oblique_view_ground_patch_and_facade():
    patch = (0.0, 60.0, 8.0, 8.0, 0.0)  # a red patch painted on the ground, 60 m north
    tower = (25.0, 60.0, 10.0, 10.0, 30.0)
    world = box_world([patch, tower], roof_rgb=[RED, (200, 200, 200)], facade_rgb=[BLUE, BLUE], window_spacing_m=0)
    altitude, heading, tilt = 80.0, 0.0, 45.0
    cam = PinholeCamera.from_fov(256, 256, 60.0)
    R, pos = uav_pose(CE, CN, altitude, heading, tilt)
    img = render_camera(world, cam, R, pos, app=CLEAR)
    corners, front = project(cam, R, pos, box_corners(*patch))
    rows, cols = np.nonzero(reddish(img))
    assert front.all()
    assert abs(cols.min() - corners[:, 0].min()) <= 1.5 and abs(cols.max() - corners[:, 0].max()) <= 1.5
    assert abs(rows.min() - corners[:, 1].min()) <= 1.5 and abs(rows.max() - corners[:, 1].max()) <= 1.5
    # The tower's south facade (facing the camera) shows between its roof and its foot.
    (u_top, v_top), (_, v_foot) = project(cam, R, pos, [[CE + 25.0, CN + 55.0, 30.0], [CE + 25.0, CN + 55.0, 0.0]])[0]
    mid = img[round((v_top + v_foot) / 2), round(u_top)].astype(int)
    assert mid[2] > mid[1] + 20  # blue facade


def test_sky_above_the_horizon():
    world = box_world([])
    img = render_uav(world, CE, CN, 50.0, 0.0, tilt_deg=85.0, fov_deg=60.0, app=CLEAR).astype(int)
    cam = PinholeCamera.from_fov(256, 256, 60.0)
    R, pos = uav_pose(CE, CN, 50.0, 0.0, 85.0)
    v_horizon = project(cam, R, pos, [[CE, CN + 1e7, 50.0]])[0][0, 1]
    assert 20 < v_horizon < 236
    sky, ground = img[int(v_horizon) - 10, 128], img[int(v_horizon) + 30, 128]
    assert sky[2] > sky[1] > sky[0] - 20 and sky[2] > 150
    assert ground[1] > ground[2]


def test_camera_outside_the_world_or_bad_pose_fails_clearly():
    world = box_world([])
    with pytest.raises(ValueError, match="outside the world"):
        render_uav(world, CE + 500.0, CN, 100.0, 0.0)
    cam = PinholeCamera.from_fov(64, 64, 60.0)
    R, pos = uav_pose(CE, CN, -5.0, 0.0)
    with pytest.raises(ValueError, match="height above ground"):
        render_camera(world, cam, R, pos)
    with pytest.raises(ValueError, match="rotation"):
        render_camera(world, cam, 2 * R, np.array([CE, CN, 50.0]))
    with pytest.raises(ValueError, match="FoV"):
        PinholeCamera.from_fov(64, 64, 180.0)
    with pytest.raises(ValueError, match="size"):
        PinholeCamera.from_fov(0, 64, 60.0)
    with pytest.raises(ValueError, match="tilt"):
        render_uav(world, CE, CN, 100.0, 0.0, tilt_deg=95.0)
    with pytest.raises(ValueError, match="heading"):
        render_uav(world, CE, CN, 100.0, float("inf"))
