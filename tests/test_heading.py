import numpy as np
import pytest

from edge_geoloc.cameras.street import roll_to_heading
from edge_geoloc.geo import angle_diff_deg
from edge_geoloc.localize.heading import aerial_polar_profile, align_profiles, rotation_search, street_azimuth_profile


def smooth_panorama(seed: int = 0, w: int = 128) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cols = np.cumsum(rng.normal(0, 12, (w, 3)), axis=0)
    cols -= np.linspace(0, 1, w)[:, None] * (cols[-1] - cols[0])  # make it wrap smoothly
    cols = np.clip(cols - cols.min() + 20, 0, 255)
    return np.broadcast_to(cols[None], (16, w, 3)).astype(np.uint8).copy()


def column_encoder(batch: np.ndarray) -> np.ndarray:
    """A stand-in encoder (test fake) that is sensitive to rotation, like a north-aligned model."""
    d = batch.astype(np.float32).mean(axis=1).reshape(len(batch), -1)
    d -= d.mean(axis=1, keepdims=True)
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def test_roll_to_heading_convention():
    pano = smooth_panorama()
    w = pano.shape[1]
    # Rolling by 90 degrees makes the centre column show what was a quarter turn to the right.
    rolled = roll_to_heading(pano, 90.0)
    assert np.array_equal(rolled[:, w // 2], pano[:, w // 2 + w // 4])
    assert np.array_equal(roll_to_heading(pano, 360.0), pano)


@pytest.mark.parametrize("heading", [0.0, 37.0, 141.3, 260.0, 355.0])
def test_rotation_search_finds_the_heading(heading):
    north = smooth_panorama(1)
    aerial = column_encoder(north[None])[0]  # what the matched tile's descriptor would be
    query = roll_to_heading(north, heading)
    est = rotation_search(query, aerial, column_encoder)
    assert abs(float(angle_diff_deg(est.heading_deg, heading))) < 1.5
    assert est.margin > 0 and est.encodes == 12 + 9
    # With a prior near the truth only the window is searched.
    est = rotation_search(query, aerial, column_encoder, coarse_steps=7, prior_deg=heading + 20.0)
    assert abs(float(angle_diff_deg(est.heading_deg, heading))) < 1.5


@pytest.mark.parametrize("shift_bins", [0, 5, 17, 31])
def test_profile_alignment(shift_bins):
    rng = np.random.default_rng(4)
    n = 32
    aerial = np.convolve(np.tile(rng.random(n), 3), np.ones(3) / 3, "same")[n : 2 * n]
    street = np.roll(aerial, -shift_bins)  # street column t sees aerial bin t + shift
    est = align_profiles(street, aerial)
    assert abs(float(angle_diff_deg(est.heading_deg, shift_bins * 360 / n))) < 3.0
    with pytest.raises(ValueError, match="same number of bins"):
        align_profiles(street[:-1], aerial)


def test_polar_profile_points_at_the_bright_patch():
    grid = np.zeros((8, 8))
    grid[3:5, 7] = 1.0  # due east of the centre
    p = aerial_polar_profile(grid, (3.5, 3.5), bins=16)
    az = (np.arange(16) + 0.5 - 8) * 360 / 16
    assert abs(az[int(np.argmax(p))] - 90) <= 360 / 16
    s = street_azimuth_profile(np.ones((2, 16)))
    assert np.allclose(s, 1 / 16)
