"""Ground-plane rectification: a drone frame warped into ortho patches at the map's GSD (numpy + OpenCV).

Given the lens, the camera's rotation (attitude and mount) and its height above the ground, every
ground point (east, north, 0) has one pixel: ``distort(K, R^T (P - C))``. A patch is a square grid of
ground points (its centre, its side in pixels, the map's GSD, and the direction its up side faces),
each looked up in the frame with one ``cv2.remap`` (bilinear): the distortion, the perspective and
the rotation are composed into one lookup, so the frame is interpolated once.

Patches are placed relative to the point below the drone (the nadir; the drone's position is
unknown, that is what the map is for). ``up_deg`` is the patch's up direction, clockwise from grid
north: ``-convergence`` gives a true-north-up patch like the map's tiles; the yaw gives camera-up.
With the yaw unknown, a patch rectified for an assumed yaw is north-up exactly when the
assumption is right: the heading search (:mod:`edge_geoloc.localize.vision.uav`) tries several.

What cannot be seen is masked (filled with ``fill``, the normalization's mean colour, so it enters
the encoder as zeros): ground outside the frame, points behind the camera or above the horizon,
and ground seen more obliquely than ``max_off_nadir_deg`` (too foreshortened to be worth anything).
Buildings lean away from the nadir in the patch: that parallax is real and the drone branch is
trained with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.cameras.uav import Lens

# The normalization mean (ImageNet, as the model card's) in uint8: a masked pixel enters the encoder as 0.
MEAN_FILL = (124, 116, 104)


@dataclass(frozen=True)
class GroundView:
    """Where a frame was taken from, relative to the point below the camera: rotation and height."""

    R_world_from_cam: np.ndarray  # (3, 3) columns: the camera's x, y, z in east/north/up
    height_m: float  # camera above the ground plane

    @property
    def position(self) -> np.ndarray:
        return np.array([0.0, 0.0, self.height_m])


@dataclass(frozen=True)
class Patches:
    """Ortho patches of one frame: ``images`` (N, S, S, 3) uint8, ``valid`` (N, S, S) bool, and each
    patch centre's east/north offset from the nadir (N, 2), metres, map grid."""

    images: np.ndarray
    valid: np.ndarray
    centres_en: np.ndarray
    up_deg: np.ndarray  # (N,)

    @property
    def valid_fraction(self) -> np.ndarray:
        return self.valid.reshape(len(self.valid), -1).mean(axis=1)


def patch_axes(up_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """(right, up) unit vectors of a patch in grid east/north, its up side facing ``up_deg``."""
    a = math.radians(up_deg)
    return np.array([math.cos(a), -math.sin(a)]), np.array([math.sin(a), math.cos(a)])


def patch_ground(centre_en: np.ndarray, up_deg: float, size_px: int, gsd_m: float) -> np.ndarray:
    """(S, S, 2) east/north of every pixel centre of a patch (row 0 at its up side, as a north-up tile)."""
    right, up = patch_axes(up_deg)
    c = (size_px - 1) / 2.0
    j = (np.arange(size_px) - c) * gsd_m
    i = (c - np.arange(size_px)) * gsd_m
    return (
        np.asarray(centre_en, np.float64)[None, None, :]
        + j[None, :, None] * right[None, None, :]
        + i[:, None, None] * up[None, None, :]
    )


def offsets_en(offsets_ru: np.ndarray, up_deg: float) -> np.ndarray:
    """(N, 2) offsets given as (right, up) metres in a patch frame -> grid east/north."""
    right, up = patch_axes(up_deg)
    o = np.asarray(offsets_ru, np.float64).reshape(-1, 2)
    return o[:, :1] * right[None, :] + o[:, 1:2] * up[None, :]


class Rectifier:
    """Warps frames of one lens into ortho patches of ``size_px`` at ``gsd_m`` (see the module docstring)."""

    def __init__(
        self,
        lens: Lens,
        size_px: int,
        gsd_m: float,
        max_off_nadir_deg: float = 70.0,
        fill: tuple[int, int, int] = MEAN_FILL,
    ) -> None:
        if size_px < 2 or not gsd_m > 0:
            raise ValueError(f"a patch needs size_px >= 2 and gsd_m > 0, got {size_px} px at {gsd_m} m/px")
        if not 0 < max_off_nadir_deg < 90:
            raise ValueError(f"max_off_nadir_deg must be in (0, 90), got {max_off_nadir_deg}")
        self.lens = lens
        self.size_px = int(size_px)
        self.gsd_m = float(gsd_m)
        self.max_off_nadir_deg = float(max_off_nadir_deg)
        self.fill = tuple(int(v) for v in fill)
        self._r_valid = lens.validity_radius()
        self.max_level = 4

    def ground_to_pixels(self, view: GroundView, ground_en: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (..., 2) of ground points (..., 2) (east/north from the nadir) and whether each is seen."""
        g = np.asarray(ground_en, np.float64)
        h = float(view.height_m)
        p = np.concatenate([g, np.full((*g.shape[:-1], 1), -h)], axis=-1)  # P - C, C = (0, 0, h)
        cam = p @ np.asarray(view.R_world_from_cam, np.float64)  # R^T (P - C), row-wise
        z = cam[..., 2]
        front = z > 1e-6
        zs = np.where(front, z, 1.0)
        xy = cam[..., :2] / zs[..., None]
        inside_model = np.hypot(xy[..., 0], xy[..., 1]) <= self._r_valid
        uv = self.lens.distort(xy)
        lens = self.lens
        in_image = (uv[..., 0] >= 0) & (uv[..., 0] <= lens.width_px - 1) & (uv[..., 1] >= 0)
        in_image &= uv[..., 1] <= lens.height_px - 1
        near = np.hypot(g[..., 0], g[..., 1]) <= h * math.tan(math.radians(self.max_off_nadir_deg))
        return uv, front & inside_model & in_image & near

    def rectify(
        self,
        image: np.ndarray,
        view: GroundView,
        centres_en: np.ndarray,
        up_deg: float | np.ndarray,
        size_px: int | None = None,
    ) -> Patches:
        """Patches centred at ``centres_en`` (N, 2) from the nadir, their up side facing ``up_deg`` (one or N)."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB frame (H, W, 3), got {image.dtype} {image.shape}")
        if image.shape[:2] != (self.lens.height_px, self.lens.width_px):
            raise ValueError(
                f"frame of {image.shape[1]}x{image.shape[0]} px, the lens is calibrated for"
                f" {self.lens.width_px}x{self.lens.height_px}"
            )
        if not (math.isfinite(view.height_m) and view.height_m > 0):
            raise ValueError(f"camera height above ground must be positive, got {view.height_m}")
        size = self.size_px if size_px is None else int(size_px)
        centres = np.asarray(centres_en, np.float64).reshape(-1, 2)
        ups = np.broadcast_to(np.asarray(up_deg, np.float64), (len(centres),))
        images = np.empty((len(centres), size, size, 3), np.uint8)
        valid = np.empty((len(centres), size, size), bool)
        pyramid = [image]
        for k, (c, a) in enumerate(zip(centres, ups)):
            uv, ok = self.ground_to_pixels(view, patch_ground(c, float(a), size, self.gsd_m))
            level = pyramid_level(uv, ok, self.max_level)
            while len(pyramid) <= level:
                pyramid.append(cv2.pyrDown(pyramid[-1]))
            # cv2.pyrDown centres output pixel i on input pixel 2i (a symmetric 5-tap kernel): x_L = x / 2^L.
            maps = np.where(ok[..., None], uv / 2.0**level, -10.0).astype(np.float32)
            out = cv2.remap(
                pyramid[level],
                maps[..., 0],
                maps[..., 1],
                cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=self.fill,
            )
            out[~ok] = self.fill
            images[k], valid[k] = out, ok
        return Patches(images, valid, centres, np.asarray(ups, np.float64).copy())


def pyramid_level(uv: np.ndarray, ok: np.ndarray, max_level: int = 4) -> int:
    """The frame pyramid level whose pixels best match a patch pixel there (anti-aliasing).

    A drone frame is usually much finer than the map (0.3 m/px at 100 m against 1 m/px): sampling it
    point-wise at the map's GSD would alias (sharp, speckled patches, unlike the map's smooth tiles).
    The median frame-pixel distance between neighbouring patch pixels (where both are seen) is the
    local scale r; level round(log2 r) of a Gaussian pyramid brings it near one pixel per pixel.
    """
    both = ok[:, 1:] & ok[:, :-1]
    if not both.any():
        return 0
    step = np.hypot(*(uv[:, 1:] - uv[:, :-1])[both].T)
    r = float(np.median(step))
    return int(min(max_level, max(0, round(math.log2(r))))) if r > 0 else 0


def look_point(view: GroundView, max_distance_factor: float = 1.0) -> np.ndarray | None:
    """East/north (from the nadir) where the optical axis meets the ground, pulled back to at most
    ``max_distance_factor`` x height from the nadir (oblique views: nearer ground is sharper); None
    when the axis does not reach the ground."""
    d = np.asarray(view.R_world_from_cam, np.float64)[:, 2]
    if d[2] >= -1e-6:
        return None
    p = d[:2] * (view.height_m / -d[2])
    dist = float(np.hypot(*p))
    limit = max_distance_factor * view.height_m
    return p * (limit / dist) if dist > limit else p


def rotate_offsets(offsets_en: np.ndarray, convergence_deg: float) -> np.ndarray:
    """Offsets measured in a true-north tile -> grid east/north (as the tile corners are rotated in aerial.py)."""
    g = np.radians(convergence_deg)
    cg, sg = np.cos(g), np.sin(g)
    ox, oy = offsets_en[:, 0], offsets_en[:, 1]
    return np.stack([ox * cg - oy * sg, ox * sg + oy * cg], axis=1)
