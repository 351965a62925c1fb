"""Spatial verification of a scoped retrieval: the mosaic window lines up with the orthophoto the tiles were
cut from, and a panorama rendered from that orthophoto is found in the right tile to the decimetre even when
retrieval ranked wrong tiles first; a dataset that does not state its camera cannot be verified."""

import math
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from test_registration import texture

from edge_geoloc.data.vigor import PanoramaMeta
from edge_geoloc.train.verify import VerifyConfig, bev_spec, mosaic_window, verify_candidates

GSD = 0.5  # the orthophoto's and the tiles' metres per pixel
TILE_M, STRIDE_M = 64.0, 32.0
ORTHO = cv2.cvtColor(texture(3, size=800), cv2.COLOR_GRAY2RGB)  # 400 m a side
C0 = (ORTHO.shape[0] - 1) / 2.0  # pixel of (east, north) = (0, 0)
PANO = PanoramaMeta(height_px=128, width_px=512, elevation_range_deg=(-45.0, 45.0), center_heading_deg=0.0,
                    cam_height_m=2.0)  # fmt: skip


def px(east: float, north: float) -> tuple[float, float]:
    return C0 + east / GSD, C0 - north / GSD


def cut_tiles() -> tuple[np.ndarray, np.ndarray]:
    """VIGOR-style tiles (64 m, half-tile stride) of the middle 256 m, and their centres (east, north)."""
    side = round(TILE_M / GSD)
    centres = [(e, n) for n in np.arange(96.0, -97.0, -STRIDE_M) for e in np.arange(-96.0, 97.0, STRIDE_M)]
    tiles = []
    for e, n in centres:
        x, y = px(e, n)
        m = np.array([[1.0, 0.0, x - (side - 1) / 2.0], [0.0, 1.0, y - (side - 1) / 2.0]])
        tiles.append(cv2.warpAffine(ORTHO, m, (side, side), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP))
    return np.stack(tiles), np.asarray(centres)


TILES, CENTRES = cut_tiles()


def render_panorama(east: float, north: float) -> np.ndarray:
    """The equirectangular panorama a camera ``cam_height_m`` above flat painted ground at (east, north) sees,
    north-aligned (the inverse of the BEV projection, written out independently); a plain sky above."""
    h, w = PANO.height_px, PANO.width_px
    lo, hi = PANO.elevation_range_deg
    az = np.radians((np.arange(w) + 0.5 - w / 2) * 360.0 / w)[None, :]
    el = np.radians(hi - (np.arange(h) + 0.5) * (hi - lo) / h)[:, None]
    ground = el < -math.radians(0.5)
    dist = np.where(ground, PANO.cam_height_m / np.tan(np.maximum(-el, 1e-3)), 0.0)
    x, y = px(east, north)
    map_x = (x + dist * np.sin(az) / GSD).astype(np.float32)
    map_y = (y - dist * np.cos(az) / GSD).astype(np.float32)
    pano = cv2.remap(ORTHO, map_x, map_y, cv2.INTER_LINEAR)
    pano[~np.broadcast_to(ground, (h, w))] = 200
    return pano


class OnePanoramaSplit:
    """The reader surface verification uses (a VigorDataset's), over panoramas rendered here."""

    def __init__(self, places: list[tuple[float, float]], cam_height_m: float | None = 2.0) -> None:
        self.places = places
        self.tile_m = TILE_M
        self.heading_deg = 0.0
        pano = PanoramaMeta(**{**PANO.__dict__, "cam_height_m": cam_height_m})
        self.meta = SimpleNamespace(panorama=pano)

    def street(self, i: int) -> np.ndarray:
        return render_panorama(*self.places[i])


def test_the_mosaic_window_is_the_orthophoto_around_the_tile_centre():
    j = int(np.flatnonzero((CENTRES == (32.0, -32.0)).all(axis=1))[0])
    win, valid = mosaic_window(TILES, TILE_M, CENTRES, j, GSD, 36.0)
    assert win.shape == (145, 145, 3) and valid.all()
    x, y = px(32.0, -32.0)
    m = np.array([[1.0, 0.0, x - 72], [0.0, 1.0, y - 72]])
    ref = cv2.warpAffine(ORTHO, m, (145, 145), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.abs(win.astype(int) - ref.astype(int)).max() <= 1
    # at twice the GSD: the same place, smoothed (correlation with the orthophoto shrunk by area)
    coarse, _ = mosaic_window(TILES, TILE_M, CENTRES, j, 2 * GSD, 36.0)
    shrunk = cv2.resize(ORTHO, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    cx, cy = (x - 0.5) / 2, (y - 0.5) / 2
    m2 = np.array([[1.0, 0.0, cx - 36], [0.0, 1.0, cy - 36]])
    ref2 = cv2.warpAffine(shrunk, m2, (73, 73), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    assert np.corrcoef(coarse[..., 0].ravel(), ref2[..., 0].ravel())[0, 1] > 0.9


def test_registration_finds_the_right_tile_and_place_where_retrieval_ranked_it_last():
    places = [(40.3, -21.7), (-13.6, 9.2)]
    ds = OnePanoramaSplit(places)
    cfg = VerifyConfig(k=5)
    spec = bev_spec(ds, cfg)
    assert spec is not None and spec.cam_height_m == 2.0
    truth = np.asarray(places)
    nearest = [int(np.argmin(np.abs(CENTRES - p).max(axis=1))) for p in truth]
    sim = np.full((2, len(CENTRES)), -np.inf)
    for row, p in enumerate(truth):
        far = np.argsort(-np.abs(CENTRES - p).max(axis=1))  # the farthest tiles rank first
        sim[row, far[:4]] = [0.9, 0.8, 0.7, 0.6]
        sim[row, nearest[row]] = 0.1
    v = verify_candidates(ds, np.arange(2), sim, TILES, CENTRES, cfg, spec)
    assert list(v.tile) == nearest
    assert np.linalg.norm(v.position - truth, axis=1).max() < 0.5, v.position
    # k = 1 refines the retrieval's (wrong) top-1: far off, and a worse fit than the right tile's
    one = verify_candidates(ds, np.arange(2), sim, TILES, CENTRES, VerifyConfig(k=1), spec)
    assert (np.linalg.norm(one.position - truth, axis=1) > 20).all()
    assert (one.quality < v.quality).all()


def test_a_query_without_candidates_in_scope_has_no_position():
    ds = OnePanoramaSplit([(0.0, 0.0)])
    spec = bev_spec(ds, VerifyConfig())
    v = verify_candidates(ds, np.arange(1), np.full((1, len(CENTRES)), -np.inf), TILES, CENTRES, VerifyConfig(), spec)
    assert v.tile[0] == -1 and np.isnan(v.position).all()


def test_a_dataset_without_its_camera_height_cannot_be_verified():
    assert bev_spec(OnePanoramaSplit([(0.0, 0.0)], cam_height_m=None), VerifyConfig()) is None
    with pytest.raises(ValueError, match="at least one candidate"):
        VerifyConfig(k=0)
