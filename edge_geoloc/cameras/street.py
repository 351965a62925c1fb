"""The vehicle's camera as the loop sees it: what kind of image, how wide, how it is mounted.

A camera model YAML (``--camera``)::

    kind: panorama          # 360-degree equirectangular (centre column = the camera's heading), or pinhole
    fov_deg: 360            # horizontal field of view; 360 for a panorama
    mount_heading_deg: 0    # where the camera's centre looks, clockwise from the vehicle's nose
    width_px: 256           # frame size (synthetic rendering; real frames keep their own size)
    height_px: 64
    height_m: 2.0           # above the ground (synthetic rendering)

The demo model is trained on north-aligned panoramas, so every frame is rolled until its centre
column faces true north before it is encoded: the roll uses the filter's heading, and the rotation
search (:mod:`edge_geoloc.localize.heading`) measures how far off that heading was. A pinhole frame
cannot be rolled: it is encoded as it is and the heading stage is skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from edge_geoloc.config import check, load_config
from edge_geoloc.geo.crs import wrap_deg
from edge_geoloc.runtime.preprocess import InputSpec, prepare


def roll_to_heading(panorama: np.ndarray, rotation_deg: float) -> np.ndarray:
    """Roll so the centre column looks ``rotation_deg`` further clockwise (sub-column by linear interpolation)."""
    w = panorama.shape[1]
    cols = rotation_deg / 360.0 * w  # rolling left by `cols` columns
    lo = int(np.floor(cols))
    frac = cols - lo
    a = np.roll(panorama, -lo, axis=1)
    if frac < 1e-6:
        return a
    b = np.roll(panorama, -lo - 1, axis=1)
    return ((1 - frac) * a.astype(np.float32) + frac * b.astype(np.float32) + 0.5).astype(np.uint8)


@dataclass(frozen=True)
class CameraModel:
    """A street camera on a vehicle (see the module docstring for the YAML keys)."""

    kind: Literal["panorama", "pinhole"] = "panorama"
    fov_deg: float = field(default=360.0, metadata=check(lambda v: 0 < v <= 360, "a field of view in (0, 360]"))
    mount_heading_deg: float = field(
        default=0.0, metadata=check(lambda v: -360 <= v <= 360, "degrees clockwise from the vehicle's nose")
    )
    width_px: int = field(default=256, metadata=check(lambda v: 8 <= v <= 8192, "a width in [8, 8192] px"))
    height_px: int = field(default=64, metadata=check(lambda v: 8 <= v <= 8192, "a height in [8, 8192] px"))
    height_m: float = field(default=2.0, metadata=check(lambda v: 0.2 <= v <= 10, "a mounting height in [0.2, 10] m"))
    pitch_deg: float = field(default=0.0, metadata=check(lambda v: -80 <= v <= 80, "a pitch in [-80, 80] degrees"))
    elevation_range_deg: tuple[float, float] = (-45.0, 45.0)  # panorama rows, bottom/top

    def __post_init__(self) -> None:
        if self.kind == "panorama" and self.fov_deg != 360:
            raise ValueError(f"a panorama camera covers 360 degrees, got fov_deg {self.fov_deg:g} (use kind: pinhole)")
        lo, hi = self.elevation_range_deg
        if not -90 <= lo < hi <= 90:
            raise ValueError(
                f"elevation_range_deg must be (low, high) within [-90, 90], got {self.elevation_range_deg}"
            )

    @classmethod
    def load(cls, path: str | Path) -> CameraModel:
        return load_config(cls, path)

    @property
    def rollable(self) -> bool:
        """Whether frames can be turned to any heading (a full panorama)."""
        return self.kind == "panorama"

    def camera_heading(self, vehicle_heading_deg: float) -> float:
        """Where the frame's centre looks, given the vehicle's heading (same north as the input)."""
        return float(wrap_deg(vehicle_heading_deg + self.mount_heading_deg))

    def vehicle_heading(self, camera_heading_deg: float) -> float:
        return float(wrap_deg(camera_heading_deg - self.mount_heading_deg))

    def check_frame(self, image: np.ndarray) -> None:
        """Refuse a "panorama" whose aspect cannot be 360 degrees over the elevation range (a wrong --camera)."""
        if self.kind != "panorama":
            return
        h, w = image.shape[:2]
        lo, hi = self.elevation_range_deg
        expected = 360.0 / (hi - lo)
        if not 0.5 * expected <= w / h <= 2.0 * expected:
            raise ValueError(
                f"a {w}x{h} frame is not a 360-degree panorama of {hi - lo:g} degrees elevation"
                f" (expected width/height near {expected:.1f}); check --camera"
            )


class NorthAligner:
    """Turns camera frames into the encoder's north-aligned input, cheaply.

    With a 360-degree model the frame is resized to the encoder's input first and the (sub-column)
    rolls are done on the small image; with a limited-FoV model the full frame is rolled and then
    cropped, as the runtime's preprocessing does for training images.
    """

    def __init__(self, camera: CameraModel, spec: InputSpec) -> None:
        self.camera = camera
        self.spec = spec
        self._small_first = camera.rollable and spec.fov_deg >= 360

    def base(self, image: np.ndarray) -> np.ndarray:
        """The frame prepared once per frame (resized when rolls can be done on the small image)."""
        if self._small_first:
            return prepare(image, self.spec, is_panorama=True)
        return image

    def views(self, base: np.ndarray, camera_headings_true: list[float]) -> list[np.ndarray]:
        """Encoder-sized images whose centre column faces true north, one per assumed camera heading."""
        if not self.camera.rollable:
            return [prepare(base, self.spec, is_panorama=False)]
        out = []
        for h in camera_headings_true:
            rolled = roll_to_heading(base, -float(h))  # centre now looks at h - h = 0: true north
            out.append(rolled if self._small_first else prepare(rolled, self.spec, is_panorama=True))
        return out
