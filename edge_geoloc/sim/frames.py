"""The synthetic frame source: the synthetic world seen by the vehicle's camera along a true trajectory.

Workstation wing (it renders :mod:`edge_geoloc.world`); the device loop sees it as any other
:class:`~edge_geoloc.localize.sources.FrameSource`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_geoloc.localize.sources import Frame, FrameSource
from edge_geoloc.world.street import render_panorama, render_pinhole


class SyntheticSource(FrameSource):
    """The synthetic world seen by the vehicle's camera along a true trajectory, at ``rate_hz``.

    The camera sits ``camera.height_m`` above the ground, looking along the vehicle's grid heading
    plus its mounting heading; ``app`` (one appearance for the drive: a time of day and season)
    and ``seed`` (sensor noise) make the frames reproducible.
    """

    def __init__(
        self,
        world: Any,
        trajectory: Any,
        camera: Any,
        rate_hz: float = 2.0,
        t_start: float | None = None,
        t_end: float | None = None,
        app: Any = None,
        seed: int = 0,
    ) -> None:
        if not rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {rate_hz}")
        self.world, self.trajectory, self.camera, self.app = world, trajectory, camera, app
        t0 = float(trajectory.t[0]) if t_start is None else float(t_start)
        t1 = float(trajectory.t[-1]) if t_end is None else float(t_end)
        self.times = t0 + np.arange(int(np.floor((t1 - t0) * rate_hz + 1e-9)) + 1) / rate_hz
        self.seed = seed
        self.name = f"synthetic {world.region.name}"
        self._i = 0

    def __len__(self) -> int:
        return len(self.times)

    def render(self, i: int) -> tuple[np.ndarray, Any]:
        """Frame ``i`` (its sensor noise seeded by (seed, i): the same in any process, in any order)."""
        rng = np.random.default_rng([self.seed, i])
        pose = self.trajectory.at(float(self.times[i]))
        cam = self.camera
        heading = cam.camera_heading(pose.heading_deg)
        common = {"width_px": cam.width_px, "height_px": cam.height_px, "cam_height_m": cam.height_m, "app": self.app}
        at = (self.world, pose.east, pose.north, heading)
        if cam.kind == "panorama":
            image = render_panorama(*at, elevation_range_deg=cam.elevation_range_deg, rng=rng, **common)
        else:
            image = render_pinhole(*at, fov_deg=cam.fov_deg, pitch_deg=cam.pitch_deg, rng=rng, **common)
        return image, pose

    def read(self) -> Frame | None:
        if self._i >= len(self.times):
            return None
        i = self._i
        self._i += 1
        image, pose = self.render(i)
        return Frame(i, float(self.times[i]), image, truth=pose)
