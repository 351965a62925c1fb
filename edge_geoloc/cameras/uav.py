"""A drone's camera as the loop sees it: lens (pinhole + OpenCV distortion), mounting on the airframe,
and the airframe's attitude and height from the autopilot.

A UAV camera YAML (``edge-geoloc run --camera uav.yaml``)::

    kind: uav
    lens:                     # OpenCV's pinhole model and distortion order (k1, k2, p1, p2, k3)
      width_px: 640
      height_px: 480
      fx: 400.0
      fy: 400.0
      cx: 319.5               # pixel centres at integers: a centred principal point is (W - 1) / 2
      cy: 239.5
      k1: -0.12
      k2: 0.03
      p1: 0.0
      p2: 0.0
      k3: 0.0
    mount:
      tilt_deg: 0             # optical axis from nadir towards the nose (0: straight down)
      pan_deg: 0              # clockwise from the nose, about the airframe's vertical axis
      roll_deg: 0             # about the optical axis
      stabilized: false       # a gimbal that cancels the airframe's roll and pitch
    attitude:
      yaw: trusted            # trusted | untrusted (a bad magnetometer: heading from vision + gyro)
      max_age_s: 0.25         # an attitude sample older than this is stale ...
      hold_s: 2.0             # ... and used anyway (the last good one) for this long, then frames are skipped
    altitude_range_m: [20, 1000]   # heights above ground outside this are implausible: skip
    max_tilt_deg: 50          # optical axis further from nadir than this: skip (too oblique to rectify)
    max_sky_fraction: 0.5     # frames that see more sky than this: skip

Frames (conventions of :mod:`edge_geoloc.world.camera`, OpenCV): camera x right, y down, z along
the optical axis; pixel (u, v) = (column, row), integers at pixel centres. World: east, north, up
(map grid). Airframe (body): x forward, y right, z down; attitude is aerospace Z-Y-X: yaw (clockwise
from north), pitch (nose up positive), roll (right wing down positive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from edge_geoloc.config import check, load_config, read_yaml

ENU_FROM_NED = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
# A nadir camera with the image's up towards the nose: camera x = body right, y = body aft, z = body down.
BODY_FROM_NADIR_CAM = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def rot_x(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class Lens:
    """Pinhole intrinsics with OpenCV's radial-tangential distortion (k1, k2, p1, p2, k3).

    Duck-types :class:`edge_geoloc.world.camera.PinholeCamera` (``width``, ``height``,
    ``pixel_rays``, ``project_cam``), so the synthetic renderer draws a distorted frame exactly:
    it casts the undistorted ray of every pixel, no resampling.
    """

    width_px: int = field(metadata=check(lambda v: 8 <= v <= 16384, "a width in [8, 16384] px"))
    height_px: int = field(metadata=check(lambda v: 8 <= v <= 16384, "a height in [8, 16384] px"))
    fx: float = field(metadata=check(lambda v: v > 0, "a positive focal length in pixels"))
    fy: float = field(metadata=check(lambda v: v > 0, "a positive focal length in pixels"))
    cx: float = field(metadata=check(math.isfinite, "a principal point column"))
    cy: float = field(metadata=check(math.isfinite, "a principal point row"))
    k1: float = 0.0
    k2: float = 0.0
    p1: float = 0.0
    p2: float = 0.0
    k3: float = 0.0

    def __post_init__(self) -> None:
        for name in ("k1", "k2", "p1", "p2", "k3"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"distortion coefficient {name} must be finite, got {getattr(self, name)}")
        # The radial polynomial must rise monotonically until it reaches the farthest image corner:
        # otherwise pixels near the border have no unique ray (a bad calibration, or one for another size).
        w, h = self.width_px, self.height_px
        corners = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [w - 0.5, h - 0.5], [-0.5, h - 0.5]]) - [self.cx, self.cy]
        r_corner = float(np.max(np.linalg.norm(corners / [self.fx, self.fy], axis=1)))
        r = np.linspace(0.0, 4.0 * r_corner + 1.0, 4000)
        r2 = r * r
        rd = r * (1 + self.k1 * r2 + self.k2 * r2 * r2 + self.k3 * r2 * r2 * r2)
        reach = np.nonzero(rd >= r_corner)[0]
        if len(reach) == 0 or np.any(np.diff(rd[: reach[0] + 1]) <= 0):
            raise ValueError(
                f"distortion (k1 {self.k1}, k2 {self.k2}, k3 {self.k3}) folds the image over before its corners"
                " (the distorted radius must increase up to the corner): check the calibration and its image size"
            )

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float, **distortion: float) -> Lens:
        """Square pixels, centred principal point, horizontal FoV of the undistorted pinhole."""
        if not 0 < hfov_deg < 180:
            raise ValueError(f"a pinhole lens's horizontal FoV must be in (0, 180) degrees, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(int(width), int(height), f, f, (width - 1) / 2.0, (height - 1) / 2.0, **distortion)

    # --- the PinholeCamera interface the renderer uses ----------------------------------------------

    @property
    def width(self) -> int:
        return self.width_px

    @property
    def height(self) -> int:
        return self.height_px

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def dist(self) -> np.ndarray:
        return np.array([self.k1, self.k2, self.p1, self.p2, self.k3], np.float64)

    @property
    def distorted(self) -> bool:
        return bool(np.any(self.dist != 0))

    def undistort(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixels -> (N, 2) normalized undistorted coordinates (x/z, y/z), iteratively (OpenCV)."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        if not self.distorted:
            return (uv - [self.cx, self.cy]) / [self.fx, self.fy]
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        return cv2.undistortPoints(uv.reshape(-1, 1, 2), self.K, self.dist, criteria=crit).reshape(-1, 2)

    def distort(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) normalized undistorted coordinates -> (..., 2) pixels (OpenCV's model, vectorized)."""
        xy = np.asarray(xy, np.float64)
        x, y = xy[..., 0], xy[..., 1]
        r2 = x * x + y * y
        radial = 1 + self.k1 * r2 + self.k2 * r2 * r2 + self.k3 * r2 * r2 * r2
        xd = x * radial + 2 * self.p1 * x * y + self.p2 * (r2 + 2 * x * x)
        yd = y * radial + self.p1 * (r2 + 2 * y * y) + 2 * self.p2 * x * y
        return np.stack([self.fx * xd + self.cx, self.fy * yd + self.cy], axis=-1)

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) camera-frame rays (z = 1) through every pixel centre, distortion removed."""
        u, v = np.meshgrid(np.arange(self.width_px, dtype=np.float64), np.arange(self.height_px, dtype=np.float64))
        xy = self.undistort(np.stack([u.ravel(), v.ravel()], 1)).reshape(self.height_px, self.width_px, 2)
        return np.concatenate([xy, np.ones((self.height_px, self.width_px, 1))], axis=-1)

    def project_cam(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 2) pixels of camera-frame points (z must be > 0)."""
        p = np.asarray(points_cam, np.float64).reshape(-1, 3)
        return self.distort(p[:, :2] / p[:, 2:3])

    def validity_radius(self) -> float:
        """Normalized undistorted radius beyond which projections are outside the image (and the
        polynomial may fold back): the largest radius of the image border, with a small margin."""
        w, h = self.width_px, self.height_px
        t = np.linspace(0, 1, 33)
        border = np.concatenate(
            [
                np.stack([t * (w - 1), np.zeros_like(t)], 1),
                np.stack([t * (w - 1), np.full_like(t, h - 1)], 1),
                np.stack([np.zeros_like(t), t * (h - 1)], 1),
                np.stack([np.full_like(t, w - 1), t * (h - 1)], 1),
            ]
        )
        return 1.02 * float(np.max(np.linalg.norm(self.undistort(border), axis=1)))


@dataclass(frozen=True)
class Mount:
    """The camera on the airframe: pan (about body z), then tilt (from nadir towards the nose), then roll
    about the optical axis. ``stabilized``: a gimbal holds the camera level whatever the airframe's roll and pitch."""

    tilt_deg: float = field(default=0.0, metadata=check(lambda v: -90 <= v <= 90, "degrees from nadir in [-90, 90]"))
    pan_deg: float = field(default=0.0, metadata=check(lambda v: -360 <= v <= 360, "degrees clockwise from the nose"))
    roll_deg: float = field(default=0.0, metadata=check(lambda v: -180 <= v <= 180, "degrees in [-180, 180]"))
    stabilized: bool = False

    def body_from_cam(self) -> np.ndarray:
        return rot_z(self.pan_deg) @ rot_y(self.tilt_deg) @ BODY_FROM_NADIR_CAM @ rot_z(self.roll_deg)


@dataclass(frozen=True)
class AttitudeConfig:
    yaw: Literal["trusted", "untrusted"] = "trusted"
    max_age_s: float = field(default=0.25, metadata=check(lambda v: v > 0, "a positive age in seconds"))
    hold_s: float = field(default=2.0, metadata=check(lambda v: v >= 0, "a non-negative time in seconds"))


@dataclass(frozen=True)
class Attitude:
    """One autopilot sample: the airframe's attitude and height above ground at time ``t``.

    ``yaw_deg`` is clockwise from TRUE north (None: no usable heading); ``height_m`` above the
    ground below (barometer or rangefinder, or altitude minus terrain); None when unknown.
    """

    t: float
    roll_deg: float
    pitch_deg: float
    yaw_deg: float | None
    height_m: float | None


def world_from_body(roll_deg: float, pitch_deg: float, yaw_grid_deg: float) -> np.ndarray:
    """R_world(ENU)_from_body(FRD) for an aerospace Z-Y-X attitude, yaw clockwise from GRID north."""
    return ENU_FROM_NED @ rot_z(yaw_grid_deg) @ rot_y(pitch_deg) @ rot_x(roll_deg)


@dataclass(frozen=True)
class UavCamera:
    """A drone camera (see the module docstring for the YAML keys)."""

    lens: Lens
    kind: Literal["uav"] = "uav"
    mount: Mount = field(default_factory=Mount)
    attitude: AttitudeConfig = field(default_factory=AttitudeConfig)
    altitude_range_m: tuple[float, float] = (20.0, 1000.0)
    max_tilt_deg: float = field(default=50.0, metadata=check(lambda v: 0 < v < 85, "degrees from nadir in (0, 85)"))
    max_sky_fraction: float = field(default=0.5, metadata=check(lambda v: 0 <= v <= 1, "a fraction in [0, 1]"))

    def __post_init__(self) -> None:
        lo, hi = self.altitude_range_m
        if not 0 < lo < hi:
            raise ValueError(f"altitude_range_m must be (low, high) with 0 < low < high, got {self.altitude_range_m}")

    @classmethod
    def load(cls, path: str | Path) -> UavCamera:
        return load_config(cls, path)

    # --- the parts of the vehicle CameraModel interface the loop uses ------------------------------

    @property
    def mount_heading_deg(self) -> float:
        return self.mount.pan_deg

    @property
    def rollable(self) -> bool:
        return False

    @property
    def yaw_trusted(self) -> bool:
        return self.attitude.yaw == "trusted"

    def check_frame(self, image: np.ndarray) -> None:
        """Refuse frames of another size than the calibration (a wrong --camera, or a resized stream)."""
        h, w = image.shape[:2]
        if (w, h) != (self.lens.width_px, self.lens.height_px):
            raise ValueError(
                f"a {w}x{h} frame does not match the UAV camera's calibration of"
                f" {self.lens.width_px}x{self.lens.height_px} px; check --camera"
            )

    # --- geometry ------------------------------------------------------------------------------------

    def world_from_cam(self, roll_deg: float, pitch_deg: float, yaw_grid_deg: float) -> np.ndarray:
        """R_world_from_cam from the airframe's attitude (yaw clockwise from GRID north) and the mount."""
        if self.mount.stabilized:
            roll_deg = pitch_deg = 0.0
        return world_from_body(roll_deg, pitch_deg, yaw_grid_deg) @ self.mount.body_from_cam()

    def tilt_from_nadir_deg(self, R_world_from_cam: np.ndarray) -> float:
        """Angle between the optical axis and straight down."""
        z = np.asarray(R_world_from_cam)[:, 2]
        return float(np.degrees(np.arccos(np.clip(-z[2], -1.0, 1.0))))

    def sky_fraction(self, R_world_from_cam: np.ndarray, grid: int = 24, margin_deg: float = 1.0) -> float:
        """Share of the image whose rays do not reach the ground (at or above the horizon, or within
        ``margin_deg`` of it), from a coarse grid of pixels."""
        lens = self.lens
        u, v = np.meshgrid(np.linspace(0, lens.width_px - 1, grid), np.linspace(0, lens.height_px - 1, grid))
        xy = lens.undistort(np.stack([u.ravel(), v.ravel()], 1))
        rays = np.concatenate([xy, np.ones((len(xy), 1))], 1) @ np.asarray(R_world_from_cam).T
        down = -rays[:, 2] / np.linalg.norm(rays, axis=1)
        return float(np.mean(down <= math.sin(math.radians(margin_deg))))


def is_uav_camera(path: str | Path | None) -> bool:
    """Whether a ``--camera`` YAML describes a UAV camera (``kind: uav``) rather than a vehicle's."""
    if path is None:
        return False
    data = read_yaml(path)
    return isinstance(data, dict) and data.get("kind") == "uav"
