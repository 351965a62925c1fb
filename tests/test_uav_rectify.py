"""Drone camera geometry and ground-plane rectification: a distorted lens renders where it projects,
and painted ground markers land where their east/north say in the rectified patch (within a pixel)."""

import numpy as np
import pytest
from worldkit import REGION, box_world

from edge_geoloc.cameras.rectify import GroundView, Rectifier, look_point, offsets_en, patch_axes
from edge_geoloc.cameras.uav import Lens, Mount, UavCamera, is_uav_camera, world_from_body
from edge_geoloc.config import ConfigError
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import render_camera, uav_pose

CE, CN = REGION.center_en()
CLEAR = Appearance(haze=0.0, sun_elevation_deg=70.0)
LENS = Lens.from_fov(320, 240, 80.0, k1=-0.18, k2=0.04, p1=0.002, p2=-0.001)
# Painted 4 m squares on the grass (height 0 boxes), each its own colour: (east, north) offsets from the centre.
MARKERS = {
    (255, 0, 0): (-22.0, 14.0),
    (0, 0, 255): (18.0, 20.0),
    (255, 255, 0): (10.0, -16.0),
    (0, 255, 255): (-12.0, -8.0),
}


@pytest.fixture(scope="module")
def marker_world():
    boxes = [(de, dn, 4.0, 4.0, 0.0) for de, dn in MARKERS.values()]
    return box_world(boxes, roof_rgb=list(MARKERS), size_m=240.0)


def centroid(img, rgb, tol=60):
    d = np.abs(img.astype(int) - np.array(rgb)).sum(axis=-1)
    rows, cols = np.nonzero(d < tol)
    assert len(rows) > 4, f"marker {rgb} not found"
    return np.array([cols.mean(), rows.mean()])


def test_lens_distortion_matches_opencv_and_round_trips():
    import cv2

    rng = np.random.default_rng(1)
    pts = np.concatenate([rng.uniform(-0.8, 0.8, (200, 2)), np.ones((200, 1))], 1)
    ours = LENS.project_cam(pts)
    theirs = cv2.projectPoints(pts, np.zeros(3), np.zeros(3), LENS.K, LENS.dist)[0].reshape(-1, 2)
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    uv = rng.uniform([0, 0], [319, 239], (200, 2))
    back = LENS.distort(LENS.undistort(uv))
    np.testing.assert_allclose(back, uv, atol=1e-6)
    rays = LENS.pixel_rays()
    assert rays.shape == (240, 320, 3)
    np.testing.assert_allclose(LENS.project_cam(rays[17, 203][None]), [[203, 17]], atol=1e-6)


def test_lens_that_folds_over_is_refused():
    with pytest.raises(ValueError, match="folds the image"):
        Lens.from_fov(640, 480, 100.0, k1=-0.6)


def test_attitude_and_mount_compose_like_uav_pose():
    cam = UavCamera(lens=LENS, mount=Mount(tilt_deg=30.0, roll_deg=4.0))
    R = cam.world_from_cam(0.0, 0.0, 70.0)
    R_ref, _ = uav_pose(0, 0, 100, 70.0, tilt_deg=30.0, roll_deg=4.0)
    np.testing.assert_allclose(R, R_ref, atol=1e-12)
    # Nose up by 10 degrees tilts a nadir camera 10 degrees forward; a stabilized mount cancels it.
    nadir = UavCamera(lens=LENS)
    assert nadir.tilt_from_nadir_deg(nadir.world_from_cam(0.0, 10.0, 0.0)) == pytest.approx(10.0)
    assert nadir.world_from_cam(0.0, 10.0, 0.0)[:, 2][1] > 0  # looking ahead of a northbound drone
    gimbal = UavCamera(lens=LENS, mount=Mount(stabilized=True))
    np.testing.assert_allclose(gimbal.world_from_cam(8.0, 10.0, 0.0)[:, 2], [0, 0, -1], atol=1e-12)
    # Right wing down turns the body's right (y) axis downwards.
    np.testing.assert_allclose(world_from_body(90.0, 0.0, 0.0)[:, 1], [0, 0, -1], atol=1e-12)


def test_sky_fraction_grows_past_the_horizon():
    cam = UavCamera(lens=LENS, mount=Mount(tilt_deg=45.0))
    assert cam.sky_fraction(cam.world_from_cam(0.0, 0.0, 0.0)) == 0.0
    assert cam.sky_fraction(cam.world_from_cam(0.0, 45.0, 0.0)) > 0.3  # axis at the horizon: about half is sky


def test_rendered_markers_project_where_the_lens_says(marker_world):
    cam = UavCamera(lens=LENS, mount=Mount(tilt_deg=20.0))
    R = cam.world_from_cam(3.0, -2.0, 35.0)
    pos = np.array([CE + 2.0, CN - 5.0, 70.0])
    img = render_camera(marker_world, LENS, R, pos, CLEAR)
    for rgb, (de, dn) in MARKERS.items():
        p = np.array([CE + de, CN + dn, 0.0]) - pos
        expected = LENS.project_cam((p @ R)[None])[0]
        assert np.linalg.norm(centroid(img, rgb) - expected) < 1.0, rgb


@pytest.mark.parametrize(
    "roll, pitch, yaw, tilt, height, at",
    [
        (0.0, 0.0, 0.0, 0.0, 60.0, (4.0, -3.0)),
        (4.0, -3.0, 127.0, 0.0, 80.0, (4.0, -3.0)),
        (-2.0, 5.0, 300.0, 35.0, 55.0, (40.0, -30.0)),  # oblique: 40 degrees from nadir, looking north-west
    ],
)
def test_rectified_markers_land_within_a_pixel(marker_world, roll, pitch, yaw, tilt, height, at):
    cam = UavCamera(lens=LENS, mount=Mount(tilt_deg=tilt))
    R = cam.world_from_cam(roll, pitch, yaw)
    drone = np.array([CE + at[0], CN + at[1]])
    img = render_camera(marker_world, LENS, R, np.array([*drone, height]), CLEAR)
    gsd, size = 0.5, 160
    rect = Rectifier(LENS, size, gsd)
    view = GroundView(R, height)
    checked = 0
    for up in (0.0, yaw):  # north-up and camera-up
        centre = np.zeros(2) - drone + np.array([CE, CN])  # patch centred on the world centre
        patch = rect.rectify(img, view, centre[None], up)
        right, upv = patch_axes(up)
        c = (size - 1) / 2
        for rgb, (de, dn) in MARKERS.items():
            rel = np.array([CE + de, CN + dn]) - drone - centre
            expected = np.array([c + rel @ right / gsd, c - rel @ upv / gsd])
            if not patch.valid[0, round(expected[1]), round(expected[0])]:
                continue  # outside this frame's footprint
            assert np.linalg.norm(centroid(patch.images[0], rgb) - expected) < 1.0, (rgb, up)
            checked += 1
    assert checked >= 6  # most markers are inside the footprint in both patches: the test checks something


def test_mask_covers_what_the_frame_cannot_see():
    cam = UavCamera(lens=LENS)
    rect = Rectifier(LENS, 64, 1.0)
    view = GroundView(cam.world_from_cam(0.0, 0.0, 0.0), 50.0)
    img = np.full((240, 320, 3), 200, np.uint8)
    far = rect.rectify(img, view, np.array([[500.0, 0.0]]), 0.0)
    assert not far.valid.any() and (far.images == rect.fill).all()
    near = rect.rectify(img, view, np.zeros((1, 2)), 0.0)
    assert near.valid.all() and (near.images == 200).all()  # nadir at 50 m: the footprint is ~84 x 63 m
    # Looking above the horizon: the axis never reaches the ground.
    up = GroundView(UavCamera(lens=LENS, mount=Mount(tilt_deg=89.0)).world_from_cam(0.0, 10.0, 0.0), 50.0)
    assert look_point(up) is None


def test_offsets_turn_with_the_patch():
    np.testing.assert_allclose(offsets_en([[0.0, 10.0]], 90.0), [[10.0, 0.0]], atol=1e-12)  # up faces east
    np.testing.assert_allclose(offsets_en([[10.0, 0.0]], 0.0), [[10.0, 0.0]], atol=1e-12)


def test_bad_inputs_fail_clearly(tmp_path):
    rect = Rectifier(LENS, 64, 1.0)
    view = GroundView(np.eye(3), 50.0)
    with pytest.raises(ValueError, match="calibrated for 320x240"):
        rect.rectify(np.zeros((100, 100, 3), np.uint8), view, np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match="height above ground"):
        rect.rectify(np.zeros((240, 320, 3), np.uint8), GroundView(np.eye(3), -3.0), np.zeros((1, 2)), 0.0)
    bad = tmp_path / "uav.yaml"
    bad.write_text("kind: uav\nlens: {width_px: 320, height_px: 240, fx: 200, fy: 200, cx: 160, cy: 120, k9: 1}\n")
    assert is_uav_camera(bad)
    with pytest.raises(ConfigError, match="k9"):
        UavCamera.load(bad)
    with pytest.raises(ValueError, match="does not match"):
        UavCamera(lens=LENS).check_frame(np.zeros((480, 640, 3), np.uint8))


def test_fine_frames_are_low_passed_before_sampling():
    """A frame much finer than the patch GSD is sampled from a pyramid level, not point-wise (no aliasing):
    a one-pixel checkerboard comes out as an even grey, not as a speckle of black and white."""
    rect = Rectifier(LENS, 64, 1.0)
    view = GroundView(UavCamera(lens=LENS).world_from_cam(0.0, 0.0, 0.0), 100.0)  # ~0.6 m/px at nadir
    checker = ((np.indices((240, 320)).sum(axis=0) % 2) * 255).astype(np.uint8)
    patch = rect.rectify(np.repeat(checker[..., None], 3, axis=2), view, np.zeros((1, 2)), 0.0).images[0]
    assert abs(patch.mean() - 127.5) < 3 and patch.std() < 20
