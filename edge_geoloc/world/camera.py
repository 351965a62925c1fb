"""A general perspective camera in the synthetic world: the UAV camera now, and the ground truth
that drone-frame rectification (issue 7) is tested against later.

Conventions (OpenCV): camera frame x right, y down, z forward; pixel ``(u, v)`` = (column, row)
with integer values at pixel centres, so a centred principal point is ``((W - 1) / 2, (H - 1) / 2)``.
World frame: east, north, up in metres of the map CRS. A pose is ``R_world_from_cam`` (its columns
are the camera's x, y, z axes in east/north/up) and the camera centre ``position``.

Rendering casts rays through every pixel against the height field (flat ground at 0 plus the
world's heights, tree crowns as ellipsoids); see :mod:`edge_geoloc.world.raycast`. It asks the
camera only for ``pixel_rays()`` (and its size), so a model with lens distortion renders by
returning the undistorted ray of each pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_geoloc.world.appearance import Appearance, camera_effects
from edge_geoloc.world.raycast import render_directions
from edge_geoloc.world.scene import World

UAV_MAX_RANGE_M = 3000.0  # horizontal reach of an oblique UAV view before the haze takes it
UAV_HAZE_SCALE_M = 1500.0  # the air between a drone and the ground is clearer than along a street


@dataclass(frozen=True)
class PinholeCamera:
    """Ideal pinhole intrinsics in pixels (no distortion)."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera image size must be positive, got {self.width}x{self.height}")
        if not (self.fx > 0 and self.fy > 0):
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float) -> PinholeCamera:
        """Square pixels, centred principal point, horizontal field of view ``hfov_deg``."""
        if not 0 < hfov_deg < 180:
            raise ValueError(f"a pinhole camera's horizontal FoV must be in (0, 180) degrees, got {hfov_deg}")
        f = (width / 2.0) / np.tan(np.radians(hfov_deg) / 2.0)
        return cls(fx=f, fy=f, cx=(width - 1) / 2.0, cy=(height - 1) / 2.0, width=int(width), height=int(height))

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) camera-frame ray directions (z = 1) through every pixel centre."""
        u, v = np.meshgrid(np.arange(self.width, dtype=np.float64), np.arange(self.height, dtype=np.float64))
        return np.stack([(u - self.cx) / self.fx, (v - self.cy) / self.fy, np.ones_like(u)], axis=-1)

    def project_cam(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates of camera-frame points (z must be > 0)."""
        p = np.asarray(points_cam, np.float64).reshape(-1, 3)
        return np.stack([self.fx * p[:, 0] / p[:, 2] + self.cx, self.fy * p[:, 1] / p[:, 2] + self.cy], axis=1)


def uav_pose(
    east: float, north: float, altitude_m: float, heading_deg: float, tilt_deg: float = 0.0, roll_deg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(R_world_from_cam, position) of a camera at ``altitude_m`` above the ground.

    ``tilt_deg`` 0 looks straight down (nadir) with the image's up direction along the heading;
    tilting raises the optical axis towards the heading (45: oblique forward, 90: horizontal,
    above 90: above the horizon). ``roll_deg`` turns the camera about its optical axis, positive
    from the image's x towards its y axis (the image content turns anticlockwise).
    """
    psi, th, ph = np.radians(heading_deg), np.radians(tilt_deg), np.radians(roll_deg)
    fwd = np.array([np.sin(th) * np.sin(psi), np.sin(th) * np.cos(psi), -np.cos(th)])
    down = np.array([-np.cos(th) * np.sin(psi), -np.cos(th) * np.cos(psi), -np.sin(th)])
    right = np.cross(down, fwd)
    x = np.cos(ph) * right + np.sin(ph) * down
    y = -np.sin(ph) * right + np.cos(ph) * down
    return np.stack([x, y, fwd], axis=1), np.array([east, north, altitude_m], np.float64)


def project(
    camera: PinholeCamera, R_world_from_cam: np.ndarray, position_enu: np.ndarray, points_enu: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (N, 2) of east/north/up points and whether each lies in front of the
    camera (behind it the coordinates are meaningless)."""
    p = np.asarray(points_enu, np.float64).reshape(-1, 3) - np.asarray(position_enu, np.float64)
    cam = p @ np.asarray(R_world_from_cam, np.float64)  # R^T p, row-wise
    front = cam[:, 2] > 1e-9
    safe = np.where(front[:, None], cam, np.array([0.0, 0.0, 1.0]))
    return camera.project_cam(safe), front


def ground_ray_intersection(
    camera: PinholeCamera,
    R_world_from_cam: np.ndarray,
    position_enu: np.ndarray,
    uv: np.ndarray,
    ground_height_m: float = 0.0,
) -> np.ndarray:
    """East/north/up (N, 3) where the rays through pixels ``uv`` (N, 2) meet the horizontal plane
    at ``ground_height_m``; NaN for rays that never reach it (at or above the horizon)."""
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    rays = np.stack([(uv[:, 0] - camera.cx) / camera.fx, (uv[:, 1] - camera.cy) / camera.fy, np.ones(len(uv))], 1)
    d = rays @ np.asarray(R_world_from_cam, np.float64).T
    pos = np.asarray(position_enu, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (ground_height_m - pos[2]) / d[:, 2]
    t = np.where(t > 0, t, np.nan)
    return pos + t[:, None] * d


def render_camera(
    world: World,
    camera: PinholeCamera,
    R_world_from_cam: np.ndarray,
    position_enu: np.ndarray,
    app: Appearance | None = None,
    rng: np.random.Generator | None = None,
    max_range_m: float = UAV_MAX_RANGE_M,
) -> np.ndarray:
    """uint8 RGB (H, W, 3) image of the world through a pinhole camera at a pose.

    Geometry is exact: a ground point projects where :func:`project` says; walls are visible in
    oblique views and the sky above the horizon. The haze scale suits an airborne camera.
    """
    pos = np.asarray(position_enu, np.float64).reshape(3)
    world.require_inside(pos[0], pos[1], "camera")
    if not np.isfinite(pos[2]) or pos[2] <= 0:
        raise ValueError(f"camera height above ground must be positive, got {pos[2]} m")
    R = np.asarray(R_world_from_cam, np.float64)
    if R.shape != (3, 3) or not np.allclose(R.T @ R, np.eye(3), atol=1e-6):
        raise ValueError("R_world_from_cam must be a 3x3 rotation matrix")
    app = app or Appearance()
    rays = camera.pixel_rays() @ R.T
    rgb = render_directions(world, app, pos[0], pos[1], pos[2], rays, max_range_m, None, UAV_HAZE_SCALE_M)
    return camera_effects(rgb, app, rng)


def render_uav(
    world: World,
    east: float,
    north: float,
    altitude_m: float,
    heading_deg: float,
    tilt_deg: float = 0.0,
    fov_deg: float = 60.0,
    width_px: int = 256,
    height_px: int = 256,
    app: Appearance | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """A UAV camera frame: nadir (tilt 0) or oblique, image up along the heading for nadir."""
    if not 0 <= tilt_deg < 90:
        raise ValueError(f"UAV camera tilt must be in [0, 90) degrees from nadir, got {tilt_deg}")
    if not np.isfinite(heading_deg):
        raise ValueError(f"UAV heading must be a finite number of degrees, got {heading_deg}")
    camera = PinholeCamera.from_fov(width_px, height_px, fov_deg)
    R, pos = uav_pose(east, north, altitude_m, heading_deg, tilt_deg)
    return render_camera(world, camera, R, pos, app, rng)
