"""Autopilot attitude (roll, pitch, yaw, height above ground) as time-stamped events for the loop, like
GNSS fixes and odometry: the UAV vision stage uses the latest one at or before each frame."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edge_geoloc.cameras.uav import Attitude
from edge_geoloc.localize.tables import Column, finite_or_nan, number_column, positive, read_table


class AttitudeLog:
    """Autopilot attitude samples handed out by time (a synthetic log or a CSV ``t,roll_deg,pitch_deg,yaw_deg,height_m``;
    an empty or NaN yaw means none)."""

    def __init__(
        self,
        t: np.ndarray,
        roll_deg: np.ndarray,
        pitch_deg: np.ndarray,
        yaw_deg: np.ndarray,
        height_m: np.ndarray,
        name: str = "attitude",
    ) -> None:
        self.t = np.asarray(t, np.float64)
        self.roll, self.pitch = np.asarray(roll_deg, np.float64), np.asarray(pitch_deg, np.float64)
        self.yaw, self.height = np.asarray(yaw_deg, np.float64), np.asarray(height_m, np.float64)
        if not len(self.t) == len(self.roll) == len(self.pitch) == len(self.yaw) == len(self.height):
            raise ValueError(f"{name}: attitude columns differ in length")
        if len(self.t) > 1 and np.any(np.diff(self.t) <= 0):
            raise ValueError(f"{name}: attitude times must increase")
        self.name = name
        self._i = 0

    @classmethod
    def from_csv(cls, path: str | Path) -> AttitudeLog:
        """Times, roll and pitch finite and times increasing, height above ground positive; yaw may be empty
        (no magnetometer): anything else is refused at load with ``file:line``."""
        columns = (
            number_column("t"),
            number_column("roll_deg"),
            number_column("pitch_deg"),
            Column("yaw_deg", finite_or_nan, "a finite number, or empty without a yaw"),
            Column("height_m", positive, "a height above ground in metres > 0"),
        )
        a = np.asarray(read_table(path, columns, "attitude", increasing="t"), dtype=np.float64)
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], str(path))

    def poll(self, t: float) -> list[Attitude]:
        j = int(np.searchsorted(self.t, t, side="right"))
        out = []
        for k in range(self._i, j):
            yaw = float(self.yaw[k])
            h = float(self.height[k])
            out.append(
                Attitude(
                    float(self.t[k]),
                    float(self.roll[k]),
                    float(self.pitch[k]),
                    yaw if math.isfinite(yaw) else None,
                    h if math.isfinite(h) else None,
                )
            )
        self._i = max(self._i, j)
        return out
