import numpy as np
import pytest

from edge_geoloc.train.augment import circular_shift, mirror, rotate90
from edge_geoloc.train.sampler import GeoBatchSampler, neighbour_lists


def grid_samples(n_side=12, spacing=10.0):
    """Samples on a grid; each touches the 4 tiles of a coarse tiling (like VIGOR labels)."""
    ij = np.array([(i, j) for i in range(n_side) for j in range(n_side)], dtype=float)
    pos = ij * spacing
    tiles = np.stack([(ij[:, 0] // 2) * 100 + ij[:, 1] // 2 + d for d in (0, 1, 100, 101)], axis=1).astype(np.int64)
    return pos, tiles


def test_batches_are_overlap_free_full_and_deterministic():
    pos, tiles = grid_samples()
    sampler = GeoBatchSampler(pos, tiles, batch_size=8, neighbours=3, seed=5)
    batches = sampler.batches(0)
    assert len(batches) > 0 and all(len(b) == 8 for b in batches)
    seen = np.concatenate(batches)
    assert len(np.unique(seen)) == len(seen)  # no sample twice in an epoch
    for b in batches:
        t = tiles[b].ravel()
        assert len(np.unique(t)) == len(t), "two samples of a batch share a tile"
    again = GeoBatchSampler(pos, tiles, batch_size=8, neighbours=3, seed=5).batches(0)
    assert all(np.array_equal(x, y) for x, y in zip(batches, again))
    other = sampler.batches(1)
    assert not all(np.array_equal(x, y) for x, y in zip(batches, other))


def test_neighbour_batches_are_spatially_tighter_than_random():
    pos, tiles = grid_samples(40)
    spread = {}
    for k in (0, 3):
        batches = GeoBatchSampler(pos, tiles, batch_size=8, neighbours=k, seed=1).batches(0)
        # Mean distance from each sample to its closest batch-mate.
        d = [np.linalg.norm(pos[b][:, None] - pos[b][None], axis=-1) + np.diag([np.inf] * len(b)) for b in batches]
        spread[k] = np.mean([x.min(axis=1).mean() for x in d])
    assert spread[3] < 0.6 * spread[0]
    nn = neighbour_lists(pos, 4)
    assert set(nn[0].tolist()) == {1, 40, 41, 2} or set(nn[0].tolist()) == {1, 40, 41, 80}


def test_rotate_mirror_keep_alignment_and_offsets():
    # A panorama with a marker at azimuth 90 (east) and an aerial tile with a marker east of the centre.
    w = 64
    az = lambda c: (c + 0.5 - w / 2) * 360 / w  # noqa: E731 - azimuth of a column's centre
    col = lambda a: round(a * w / 360 + w / 2 - 0.5) % w  # noqa: E731
    pano = np.zeros((4, w, 3), np.uint8)
    east_col = 47  # azimuth 87.2
    pano[:, east_col] = 255
    aerial = np.zeros((9, 9, 3), np.uint8)
    aerial[4, 8] = 255
    off = np.array([3.0, 1.0])  # 3 m east, 1 m north of the tile centre
    s, a, o = rotate90(pano, aerial, off, 1)  # turn the world 90 degrees clockwise: east goes south
    assert s[0, col(az(east_col) + 90), 0] == 255 and a[8, 4, 0] == 255
    assert np.allclose(o, [1.0, -3.0])
    s, a, o = mirror(pano, aerial, off)  # east <-> west
    assert s[0, col(-az(east_col)), 0] == 255 and a[4, 0, 0] == 255
    assert np.allclose(o, [-3.0, 1.0])
    with pytest.raises(ValueError, match="multiple of 4"):
        rotate90(pano[:, :62], aerial, off, 1)


def test_circular_shift_heading_change():
    pano = np.arange(16 * 3, dtype=np.uint8).reshape(1, 16, 3)
    out, dh = circular_shift(pano, 4)
    assert dh == -90.0 and np.array_equal(out[0, 4], pano[0, 0])
