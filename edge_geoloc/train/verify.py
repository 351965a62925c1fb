"""Spatial verification of a scoped retrieval: the loop's registration re-ranks the best candidates.

Inside a noisy-GPS scope, retrieval names tiles, not a position. On the vehicle the refine stage
(:mod:`edge_geoloc.localize.refine`) then registers the panorama's bird's-eye view against the map imagery
around the best candidates and keeps the best fit. This scores that pipeline on a VIGOR-layout test split
with the same pieces: each query's BEV (:func:`edge_geoloc.cameras.bev.panorama_to_bev`, the dataset's
camera height and elevation range, north-aligned) is registered (:func:`edge_geoloc.localize.registration.register`,
dense) inside each of its top-k tiles' imagery at the refine GSD; the candidate whose registration fits best
(peak NCC) wins, and its centre plus the registered offset is the position. ``k = 1`` refines the retrieval's
top-1 without re-ranking.

The window around a candidate is pieced together from the split's tiles (each pixel from the tile whose
centre is nearest, as a map's orthophoto would hold it), ``bev_radius_m + reach_m`` a side from the
candidate's centre: with VIGOR's half-tile stride every place lies within half a stride of its positive
tile's centre on each axis, and the search reaches a little beyond that. It needs what a vehicle knows and a dataset may not say: the camera height and
where the panorama's centre column looks; without them (the real VIGOR download) it is skipped, said once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edge_geoloc.cameras.bev import BevSpec, panorama_to_bev
from edge_geoloc.config import check
from edge_geoloc.localize.registration import RegistrationConfig, register

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VerifyConfig:
    """How many candidates are verified, and the registration's working geometry (the loop's defaults)."""

    k: int = field(default=10, metadata=check(lambda v: v >= 1, "at least one candidate"))
    gsd_m: float = field(default=0.5, metadata=check(lambda v: v > 0, "metres per pixel"))
    bev_radius_m: float = field(default=20.0, metadata=check(lambda v: v > 2, "metres"))
    reach_m: float = field(default=20.0, metadata=check(lambda v: v > 0, "metres"))  # search, each axis
    rotation_range_deg: float = 2.0  # heading known (aligned): only a small correction is searched

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"verification needs at least one candidate, got k={self.k}")


@dataclass
class Verified:
    """Per query: the chosen tile (index into the split's tiles), its registration quality, the position
    (east/north metres in the split's plane; NaN where the scope held no tile) and the top-k tiles by
    similarity it was chosen from (out-of-scope ones, when the scope holds fewer, last)."""

    tile: np.ndarray
    quality: np.ndarray
    position: np.ndarray
    candidates: np.ndarray  # (Q, k)


def bev_spec(ds: Any, cfg: VerifyConfig) -> BevSpec | None:
    """The BEV the refine stage would project for this dataset's panoramas; None when the dataset does not say
    the camera height or the panoramas' heading (then nothing can be verified)."""
    meta = getattr(ds, "meta", None)
    pano = getattr(meta, "panorama", None)
    if pano is None or pano.cam_height_m is None or getattr(ds, "heading_deg", None) is None:
        return None
    gsd = cfg.gsd_m
    size = 2 * round(cfg.bev_radius_m / gsd) + 1
    return BevSpec(size, gsd, float(pano.cam_height_m), cfg.bev_radius_m, tuple(pano.elevation_range_deg))


def mosaic_window(
    tiles: np.ndarray, tile_m: float, aerial_en: np.ndarray, j: int, gsd_m: float, half_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """The imagery ``half_m`` around tile ``j``'s centre at ``gsd_m`` (``2 * round(half_m / gsd_m) + 1`` pixels a
    side, north-up), each pixel from the nearest tile centre's image (``tiles``: (M, H, W, 3) north-up, ``tile_m``
    a side); the mask says where some tile covered it."""
    k = round(half_m / gsd_m)
    size = 2 * k + 1
    reach = half_m + tile_m / 2.0
    near = np.flatnonzero(np.abs(aerial_en - aerial_en[j]).max(axis=1) < reach)
    offs = aerial_en[near] - aerial_en[j]  # east, north of each tile's centre from the window's
    grid = (np.arange(size) - k) * gsd_m
    east, north = grid[None, :], -grid[:, None]
    d2 = np.stack([(east - oe) ** 2 + (north - on) ** 2 for oe, on in offs])
    owner = np.argmin(d2, axis=0)
    out = np.zeros((size, size, 3), np.uint8)
    valid = np.zeros((size, size), bool)
    src_gsd = tile_m / tiles.shape[2]
    f = gsd_m / src_gsd  # window pixels per tile pixel
    c = (tiles.shape[1] - 1) / 2.0
    ones = np.ones(tiles.shape[1:3], np.uint8)
    for n, (t, (oe, on)) in enumerate(zip(near, offs)):
        img = tiles[int(t)]
        # window pixel (x, y) -> tile pixel: east/north metres from the tile centre over the tile's GSD
        m = np.array([[f, 0.0, c - (k * gsd_m + oe) / src_gsd], [0.0, f, c - (k * gsd_m - on) / src_gsd]])
        src = cv2.GaussianBlur(img, (0, 0), 0.5 * f) if f > 1.0 + 1e-6 else img
        warped = cv2.warpAffine(src, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        inside = cv2.warpAffine(ones, m, (size, size), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        take = (owner == n) & (inside > 0)
        out[take] = warped[take]
        valid |= take
    return out, valid


def verify_candidates(
    ds: Any,
    queries: np.ndarray,
    sim: np.ndarray,
    tiles: np.ndarray,
    aerial_en: np.ndarray,
    cfg: VerifyConfig,
    spec: BevSpec,
) -> Verified:
    """Re-rank each query's top-``cfg.k`` tiles of ``sim`` (Q x M, already restricted to the scope: -inf
    outside) by registration. ``queries``: the dataset's panorama index of each row of ``sim`` (the panorama
    is read at its full resolution); ``tiles``: the split's tile images (any size; the model's are enough
    when they are as fine as the working GSD)."""
    gsd = spec.gsd_m
    half = cfg.bev_radius_m + cfg.reach_m
    rc = RegistrationConfig(method="dense", rotation_range_deg=cfg.rotation_range_deg, rotation_step_deg=2.0)
    k = min(cfg.k, sim.shape[1])
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    windows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    q = len(queries)
    out = Verified(np.full(q, -1), np.full(q, np.nan), np.full((q, 2), np.nan), top)
    for row, i in enumerate(tqdm(queries, desc=f"verify top-{k}", unit="query", leave=False)):
        cands = [int(j) for j in top[row] if np.isfinite(sim[row, j])]
        if not cands:
            continue
        bev, mask = panorama_to_bev(ds.street(int(i)), spec, centre_heading_deg=float(ds.heading_deg))
        best = None
        for j in cands:
            if j not in windows:
                windows[j] = mosaic_window(tiles, ds.tile_m, aerial_en, j, gsd, half)
            win, valid = windows[j]
            r = register(bev, win, gsd, gsd, mask, valid, config=rc)
            if best is None or r.quality > best[1].quality:
                best = (j, r)
        j, r = best  # type: ignore[misc]
        out.tile[row], out.quality[row] = j, r.quality
        out.position[row] = aerial_en[j] + (r.east_m, r.north_m)
    return out
