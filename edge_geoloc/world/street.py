"""Street-level views of the synthetic world: the 360 degree equirectangular panorama (VIGOR and
CVUSA style) and the limited-FoV vehicle camera.

Both come from the column ray caster (:mod:`edge_geoloc.world.raycast`), so a wall at horizontal
distance ``d`` and height ``h`` appears at elevation ``atan((h - cam_h) / d)`` within a pixel, and
every view of a place agrees with its aerial tile. Note that headings here are grid headings: an
aerial tile rotated to true north differs by the meridian convergence. The camera height is above
the flat ground (height 0), not above whatever top the camera stands on.

Panorama convention: ``heading_deg`` is clockwise from the map's grid north; column ``c`` looks at
azimuth ``heading + (c + 0.5 - W / 2) * 360 / W`` (the centre column looks along the heading); rows
are linear in elevation from the top of ``elevation_range_deg`` to its bottom.
"""

from __future__ import annotations

import numpy as np

from edge_geoloc.world.appearance import Appearance, camera_effects
from edge_geoloc.world.camera import PinholeCamera, uav_pose
from edge_geoloc.world.raycast import render_directions, render_equirect
from edge_geoloc.world.scene import World

STREET_MAX_RANGE_M = 400.0
STREET_HAZE_SCALE_M = 250.0
WIDE_FOV_DEG = 150.0  # from here on a rectilinear image stretches too much: use an equirectangular crop


def _march_frac(col_step_rad: float) -> float:
    """March growth per step, about two columns wide: walls are refined to their exact distance
    anyway, only objects narrower than a step (a car far off) may be stepped over."""
    return float(np.clip(2.0 * col_step_rad, 0.005, 0.03))


def _check_view(
    world: World,
    east: float,
    north: float,
    heading_deg: float,
    width_px: int,
    height_px: int,
    cam_height_m: float,
    what: str,
) -> None:
    if int(width_px) != width_px or int(height_px) != height_px or width_px <= 0 or height_px <= 0:
        raise ValueError(f"{what} size must be positive integers, got {width_px}x{height_px}")
    if not np.isfinite(cam_height_m) or cam_height_m <= 0:
        raise ValueError(f"{what} camera height must be positive metres above the ground, got {cam_height_m}")
    if not np.isfinite(heading_deg):
        raise ValueError(f"{what} heading must be a finite number of degrees, got {heading_deg}")
    world.require_inside(east, north, what)


def _equirect(
    world: World,
    east: float,
    north: float,
    cam_height_m: float,
    az_first: float,
    az_step: float,
    width_px: int,
    el_top: float,
    el_step: float,
    height_px: int,
    app: Appearance,
    max_range_m: float,
) -> np.ndarray:
    return render_equirect(
        world,
        app,
        east,
        north,
        cam_height_m,
        az_first,
        az_step,
        int(width_px),
        el_top,
        el_step,
        int(height_px),
        max_range_m,
        _march_frac(az_step),
        STREET_HAZE_SCALE_M,
    )


def render_panorama(
    world: World,
    east: float,
    north: float,
    heading_deg: float,
    height_px: int = 128,
    width_px: int = 512,
    cam_height_m: float = 2.0,
    elevation_range_deg: tuple[float, float] = (-45.0, 45.0),
    app: Appearance | None = None,
    rng: np.random.Generator | None = None,
    max_range_m: float = STREET_MAX_RANGE_M,
) -> np.ndarray:
    """uint8 RGB (H, W, 3) 360 degree equirectangular street panorama at (east, north)."""
    _check_view(world, east, north, heading_deg, width_px, height_px, cam_height_m, "street panorama")
    lo, hi = (float(v) for v in elevation_range_deg)
    if not -90.0 <= lo < hi <= 90.0:
        raise ValueError(
            f"elevation_range_deg must be (low, high) with -90 <= low < high <= 90, got {elevation_range_deg}"
        )
    if max_range_m <= 0:
        raise ValueError(f"max_range_m must be positive, got {max_range_m}")
    app = app or Appearance()
    az_step = 2 * np.pi / width_px
    el_step = np.radians(hi - lo) / height_px
    rgb = _equirect(
        world,
        east,
        north,
        cam_height_m,
        np.radians(heading_deg) + (0.5 - width_px / 2) * az_step,
        az_step,
        width_px,
        np.radians(hi) - 0.5 * el_step,
        el_step,
        height_px,
        app,
        max_range_m,
    )
    return camera_effects(rgb, app, rng)


def render_pinhole(
    world: World,
    east: float,
    north: float,
    heading_deg: float,
    fov_deg: float = 90.0,
    pitch_deg: float = 0.0,
    width_px: int = 256,
    height_px: int = 128,
    cam_height_m: float = 2.0,
    app: Appearance | None = None,
    rng: np.random.Generator | None = None,
    max_range_m: float = STREET_MAX_RANGE_M,
) -> np.ndarray:
    """uint8 RGB (H, W, 3) vehicle camera looking along ``heading_deg``, raised by ``pitch_deg``.

    Below :data:`WIDE_FOV_DEG` it is an ideal rectilinear (pinhole) camera with square pixels,
    ``PinholeCamera.from_fov(width_px, height_px, fov_deg)`` posed by
    ``uav_pose(east, north, cam_height_m, heading_deg, tilt_deg=90 + pitch_deg)``. Every pixel's own
    ray goes through the column caster (pixels are grouped into azimuth bins that share a march),
    which is the panorama at the same centre reprojected exactly, without the blur of resampling
    it. From :data:`WIDE_FOV_DEG` to 360 degrees (TransGeo's limited-FoV
    panoramas) it is the equirectangular crop of the panorama instead: column ``c`` looks at
    ``heading + (c + 0.5 - W / 2) * fov / W`` and rows share that angular pitch, centred on
    ``pitch_deg``; at 360 degrees it equals :func:`render_panorama` with that vertical range.
    """
    _check_view(world, east, north, heading_deg, width_px, height_px, cam_height_m, "pinhole camera")
    if not 0 < fov_deg <= 360:
        raise ValueError(f"fov_deg must be in (0, 360], got {fov_deg}")
    if not -90 < pitch_deg < 90:
        raise ValueError(f"pitch_deg must be in (-90, 90), got {pitch_deg}")
    app = app or Appearance()
    if fov_deg >= WIDE_FOV_DEG:
        step = np.radians(fov_deg) / width_px
        half_v = np.degrees(step * height_px / 2)
        if abs(pitch_deg) + half_v > 90.0:
            raise ValueError(
                f"a {fov_deg:g} degree equirectangular crop of {width_px}x{height_px} px spans +-{half_v:.1f} degrees "
                f"vertically; with pitch {pitch_deg:g} it would look past the zenith or nadir"
            )
        rgb = _equirect(
            world,
            east,
            north,
            cam_height_m,
            np.radians(heading_deg) + (0.5 - width_px / 2) * step,
            step,
            width_px,
            np.radians(pitch_deg) + (height_px / 2 - 0.5) * step,
            step,
            height_px,
            app,
            max_range_m,
        )
        return camera_effects(rgb, app, rng)
    camera = PinholeCamera.from_fov(width_px, height_px, fov_deg)
    R, _ = uav_pose(east, north, cam_height_m, heading_deg, tilt_deg=90.0 + pitch_deg)
    rays = camera.pixel_rays() @ R.T
    frac = _march_frac(1.0 / camera.fx)
    rgb = render_directions(world, app, east, north, cam_height_m, rays, max_range_m, frac, STREET_HAZE_SCALE_M)
    return camera_effects(rgb, app, rng)
