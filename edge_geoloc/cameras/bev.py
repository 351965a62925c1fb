"""Bird's-eye view of a panorama's ground: the street view projected onto a flat ground plane.

A street panorama sees the road surface around the camera from a few metres up; projected onto
the ground it becomes a small, north-up "aerial" image of the camera's surroundings at a chosen
GSD, which lines up with the map's orthophoto pixel for pixel where the ground is flat and
unoccluded. Retrieval can feed it to the aerial encoder (Panorama-BEV's co-retrieval) and the
refinement registers it against the map imagery.

Geometry (equirectangular, as the renderers and VIGOR write it): column c looks at azimuth
``centre + (c + 0.5 - W/2) * 360/W`` (clockwise from true north), row r at elevation
``top - (r + 0.5) * (top - bottom)/H``. A ground point d metres away lies at elevation
``-atan(h / d)`` below a camera h metres up.

What it cannot see, and masks: points beyond ``radius_m`` (a few rows of pixels near the horizon
smear tens of metres, and the flat-ground assumption breaks first there), points nearer than the
lowest row's elevation reaches, and (not masked: the projection cannot know) anything standing
on the ground (parked cars, walls) is smeared outward as if it were paint. A camera height that
is wrong by dh scales every distance by ``h / (h + dh)``; an unmodelled pitch or roll tilts the
ground plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@dataclass(frozen=True)
class BevSpec:
    """Where the bird's-eye view is sampled (north-up, centred on the camera)."""

    size_px: int = 64
    gsd_m: float = 0.5
    cam_height_m: float = 2.0
    radius_m: float = 16.0
    elevation_range_deg: tuple[float, float] = (-45.0, 45.0)

    def __post_init__(self) -> None:
        if self.size_px < 2 or self.gsd_m <= 0 or self.cam_height_m <= 0 or self.radius_m <= 0:
            raise ValueError(f"BEV spec needs a positive size, GSD, camera height and radius, got {self}")
        lo, hi = self.elevation_range_deg
        if not -90.0 <= lo < min(hi, 0.0):
            raise ValueError(f"elevation range {self.elevation_range_deg}: the panorama must see below the horizon")


@lru_cache(maxsize=16)
def ground_maps(spec: BevSpec, pano_h: int, pano_w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(map_x, map_y) float32 panorama coordinates for each BEV pixel of a north-centred panorama,
    and the mask (uint8, 255 where the ground is seen within the radius). The model's BEV sampler
    (:class:`edge_geoloc.model.vit.BevSampler`) uses the same maps."""
    s = spec.size_px
    offsets = (np.arange(s) + 0.5 - s / 2) * spec.gsd_m
    east = np.broadcast_to(offsets[None, :], (s, s))
    north = np.broadcast_to(-offsets[:, None], (s, s))
    dist = np.hypot(east, north)
    azimuth = np.degrees(np.arctan2(east, north))  # clockwise from north, (-180, 180]
    elevation = -np.degrees(np.arctan2(spec.cam_height_m, np.maximum(dist, 1e-6)))
    lo, hi = spec.elevation_range_deg
    map_x = (azimuth / 360.0 * pano_w + pano_w / 2 - 0.5) % pano_w
    map_y = (hi - elevation) / (hi - lo) * pano_h - 0.5
    seen = (dist <= spec.radius_m) & (map_y <= pano_h - 1)
    return map_x.astype(np.float32), map_y.astype(np.float32), np.where(seen, 255, 0).astype(np.uint8)


def panorama_to_bev(
    panorama: np.ndarray, spec: BevSpec, centre_heading_deg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """The north-up ground view (size x size, the panorama's dtype and channels) and its mask.

    ``centre_heading_deg``: where the panorama's centre column looks (true, clockwise from north);
    0 for the north-aligned panoramas of the datasets. Masked pixels are 0."""
    if panorama.ndim not in (2, 3) or panorama.shape[0] < 2 or panorama.shape[1] < 4:
        raise ValueError(f"a panorama is an (H, W[, C]) image, got shape {panorama.shape}")
    h, w = panorama.shape[:2]
    map_x, map_y, mask = ground_maps(spec, h, w)
    if centre_heading_deg:
        map_x = (map_x - centre_heading_deg / 360.0 * w) % w
    # Wrap the seam: one column of the other edge on each side, so interpolation across it is right.
    padded = np.concatenate([panorama[:, -1:], panorama, panorama[:, :1]], axis=1)
    bev = cv2.remap(padded, map_x + 1.0, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    bev[mask == 0] = 0
    return bev, mask
