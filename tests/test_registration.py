"""Registration of a north-up ground image against a map window: known shifts and turns come back, a window
that does not contain the scene says so, a straight road is measured across only, bad inputs are refused."""

import math

import cv2
import numpy as np
import pytest

from edge_geoloc.localize.registration import RegistrationConfig, compose, register

GSD = 0.5


def texture(seed: int, size: int = 400) -> np.ndarray:
    """A town-like grey-level map: random blocks (roofs, lots) and lines (roads, kerbs), lightly blurred."""
    rng = np.random.default_rng(seed)
    img = np.full((size, size), 110, np.uint8)
    for _ in range(size // 2):
        x, y = rng.integers(0, size, 2)
        w, h = rng.integers(4, 30, 2)
        cv2.rectangle(img, (int(x), int(y)), (int(x + w), int(y + h)), int(rng.integers(20, 240)), -1)
    for _ in range(size // 20):
        p, q = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(img, tuple(int(v) for v in p), tuple(int(v) for v in q), int(rng.integers(0, 255)), 2)
    return cv2.GaussianBlur(img, (0, 0), 0.8)


def crop(img: np.ndarray, centre_xy: np.ndarray, size: int, turn_deg: float = 0.0) -> np.ndarray:
    """``size`` px of ``img`` around ``centre_xy`` (pixels), sampled along axes turned clockwise by ``turn_deg``:
    the scene appears turned counter-clockwise (a view made for a heading ``turn_deg`` short of the truth)."""
    a = math.radians(turn_deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = (size - 1) / 2.0
    m = np.hstack([rot, (np.asarray(centre_xy, float) - rot @ np.array([c, c]))[:, None]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)


def disc(size: int, radius_px: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (np.hypot(xx - (size - 1) / 2, yy - (size - 1) / 2) <= radius_px).astype(np.uint8) * 255


MAP = texture(0)
CENTRE = np.array([199.5, 199.5])  # the window's centre, pixels of MAP


def en_to_px(east_m: float, north_m: float) -> np.ndarray:
    return CENTRE + np.array([east_m, -north_m]) / GSD


@pytest.mark.parametrize("method", ["dense", "features"])
@pytest.mark.parametrize(("east", "north", "turn"), [(7.3, -11.8, 3.4), (-16.2, 4.6, -4.7), (0.4, 0.2, 0.0)])
def test_a_shifted_and_turned_view_comes_back_within_a_pixel_and_half_a_degree(method, east, north, turn):
    ground = crop(MAP, en_to_px(east, north), 96, turn)
    window = crop(MAP, CENTRE, 96 + 2 * 48)  # +-24 m of search
    cfg = RegistrationConfig(method=method, rotation_range_deg=6.0, rotation_step_deg=2.0)
    r = register(ground, window, GSD, GSD, ground_mask=disc(96, 46), config=cfg)
    assert r.note is None
    assert abs(r.east_m - east) < GSD and abs(r.north_m - north) < GSD, (r.east_m, r.north_m)
    assert abs(r.rotation_deg - turn) < 0.5, r.rotation_deg
    assert r.axes_m[0] < 2.0  # a textured crossing-rich scene is pinned down in both axes


def test_the_camera_off_the_patch_centre_is_what_is_reported():
    """A UAV patch is centred at the look point, ``pivot`` metres from the camera: a heading error turns it
    about the camera, and the camera's offset (not the patch centre's) is the answer."""
    cam = np.array([5.0, -3.0])  # where the camera really is, metres from where it was assumed
    pivot = np.array([-6.0, -10.0])  # the camera's offset from the patch centre (assumed heading)
    turn = 4.0
    a = math.radians(turn)
    # the patch centre is the camera plus the look vector turned by the heading error (clockwise on the compass)
    look = np.array([-pivot[0] * math.cos(a) - pivot[1] * math.sin(a), pivot[0] * math.sin(a) - pivot[1] * math.cos(a)])
    ground = crop(MAP, en_to_px(*(cam + look)), 80, turn)
    window = crop(MAP, en_to_px(*(-pivot)), 80 + 2 * 40)  # centred at the assumed patch centre
    r = register(ground, window, GSD, GSD, pivot_m=tuple(pivot), config=RegistrationConfig(rotation_range_deg=6))
    assert abs(r.east_m - cam[0]) < GSD and abs(r.north_m - cam[1]) < GSD, (r.east_m, r.north_m)
    assert abs(r.rotation_deg - turn) < 0.5


def test_registering_again_from_the_corrected_pose_adds_up_to_the_whole_correction():
    """The refine stage's second pass (a large heading correction): the frame projected again with the first
    correction applied, the window moved by it; the corrections compose to the truth."""
    east, north, turn = 7.0, -5.0, 9.0
    first = register(
        crop(MAP, en_to_px(east, north), 96, turn),
        crop(MAP, CENTRE, 96 + 2 * 48),
        GSD,
        GSD,
        ground_mask=disc(96, 46),
        config=RegistrationConfig(rotation_range_deg=12.0),
    )
    residual = turn - first.rotation_deg  # what the re-projected image is still turned by
    second = register(
        crop(MAP, en_to_px(east, north), 96, residual),
        crop(MAP, en_to_px(first.east_m, first.north_m), 96 + 2 * 12),  # the window at the corrected place
        GSD,
        GSD,
        ground_mask=disc(96, 46),
        config=RegistrationConfig(rotation_range_deg=2.0),
    )
    both = compose(first, second)
    assert abs(both.east_m - east) < GSD and abs(both.north_m - north) < GSD, (both.east_m, both.north_m)
    assert abs(both.rotation_deg - turn) < 0.5, both.rotation_deg
    assert (both.quality, both.method) == (second.quality, second.method)
    # the wide first search's covariance (a road's ridge shows there), unless the second's is wider
    wider = max((first.cov, second.cov), key=np.trace)
    assert both.cov is wider


def test_another_season_and_sun_still_registers():
    """Inverted contrast (snow against asphalt), a gamma and noise: the gradient orientation still agrees."""
    ground = crop(MAP, en_to_px(-9.0, 6.5), 96)
    rng = np.random.default_rng(1)
    other = 255.0 * (1.0 - (ground / 255.0) ** 0.6) + rng.normal(0, 8, ground.shape)
    other = np.clip(other, 0, 255).astype(np.uint8)
    r = register(other, crop(MAP, CENTRE, 192), GSD, GSD, ground_mask=disc(96, 46))
    assert abs(r.east_m + 9.0) < GSD and abs(r.north_m - 6.5) < GSD
    assert r.quality > 0.5


@pytest.mark.parametrize("method", ["dense", "features"])
def test_a_window_that_does_not_hold_the_scene_scores_low(method):
    cfg = RegistrationConfig(method=method)
    ground = crop(MAP, en_to_px(3.0, 2.0), 96)
    right = register(ground, crop(MAP, CENTRE, 192), GSD, GSD, config=cfg)
    wrong = register(ground, crop(texture(7), CENTRE, 192), GSD, GSD, config=cfg)
    assert right.quality > 2.0 * wrong.quality, (right.quality, wrong.quality)
    if method == "dense":
        assert right.quality > 0.8 and wrong.quality < 0.4
    else:
        assert wrong.note is not None  # no consistent similarity at all


def test_a_featureless_ground_image_is_a_failure_not_a_guess():
    flat = np.full((96, 96, 3), 128, np.uint8)
    for method in ("dense", "features"):
        r = register(flat, crop(MAP, CENTRE, 192), GSD, GSD, config=RegistrationConfig(method=method))
        assert r.quality == 0.0 and "featureless" in r.note
        assert r.axes_m[1] > 20.0  # the covariance spans the window: says nothing


def road_map(angle_deg: float, size: int = 400) -> np.ndarray:
    """Grass with one long straight road (kerbs and a centre line) crossing the centre, ``angle_deg``
    clockwise from north, and faint grass noise."""
    rng = np.random.default_rng(3)
    img = (90 + rng.normal(0, 3, (size, size))).astype(np.float32)
    a = math.radians(angle_deg)
    d = np.array([math.sin(a), -math.cos(a)])  # along the road, pixels (x right, y down)
    yy, xx = np.mgrid[:size, :size]
    across = (xx - size / 2) * -d[1] + (yy - size / 2) * d[0]
    img[np.abs(across) < 12] = 60  # asphalt, 6 m wide
    img[np.abs(across) < 0.8] = 220  # centre line
    return cv2.GaussianBlur(np.clip(img, 0, 255).astype(np.uint8), (0, 0), 0.8)


def test_a_straight_road_is_measured_across_and_not_along():
    angle = 30.0
    road = road_map(angle)
    c = np.array([199.5, 199.5])
    ground = crop(road, c + np.array([3.0, 2.0]), 64)
    mask = disc(64, 30)
    r = register(ground, crop(road, c, 64 + 2 * 40), GSD, GSD, ground_mask=mask)
    ev, vec = np.linalg.eigh(r.cov)
    major = vec[:, 1]  # east/north
    bearing = math.degrees(math.atan2(major[0], major[1])) % 180.0
    assert abs(bearing - angle) < 10.0, bearing
    assert math.sqrt(ev[1]) > 4.0 * math.sqrt(ev[0])
    # across the road the offset is right: the true offset's cross-track component
    along = np.array([math.sin(math.radians(angle)), math.cos(math.radians(angle))])
    true = np.array([3.0, -2.0]) * GSD
    got = np.array([r.east_m, r.north_m])
    cross = lambda v: v - (v @ along) * along  # noqa: E731
    assert np.linalg.norm(cross(got) - cross(true)) < GSD


def test_bad_inputs_are_refused_with_what_was_expected():
    ground = crop(MAP, CENTRE, 64)
    with pytest.raises(ValueError, match="non-empty"):
        register(ground, np.zeros((0, 0, 3), np.uint8), GSD, GSD)
    with pytest.raises(ValueError, match=r"0.5 m/px against a map window at 1 m/px"):
        register(ground, crop(MAP, CENTRE, 128), 0.5, 1.0)
    with pytest.raises(ValueError, match="smaller than the ground image"):
        register(ground, crop(MAP, CENTRE, 32), GSD, GSD)
    with pytest.raises(ValueError, match="mask of shape"):
        register(ground, crop(MAP, CENTRE, 128), GSD, GSD, ground_mask=np.ones((10, 10), np.uint8))
    with pytest.raises(ValueError, match="method must be one of dense, features"):
        RegistrationConfig(method="orb")
