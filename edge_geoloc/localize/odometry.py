"""Odometry (wheel speed and gyro yaw rate) as time-stamped events for the filter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.localize.tables import number_column, read_table


@dataclass(frozen=True)
class OdometrySample:
    """Wheel speed and gyro yaw rate (positive turning right) at time ``t``."""

    t: float
    speed_mps: float
    yaw_rate_dps: float


class Odometry:
    """Odometry samples handed out by time (from a synthetic log or a CSV ``t,speed_mps,yaw_rate_dps``)."""

    def __init__(self, t: np.ndarray, speed_mps: np.ndarray, yaw_rate_dps: np.ndarray, name: str = "odometry") -> None:
        self.t = np.asarray(t, dtype=np.float64)
        self.speed = np.asarray(speed_mps, dtype=np.float64)
        self.yaw = np.asarray(yaw_rate_dps, dtype=np.float64)
        if not (len(self.t) == len(self.speed) == len(self.yaw)):
            raise ValueError("odometry columns differ in length")
        if len(self.t) > 1 and np.any(np.diff(self.t) <= 0):
            raise ValueError(f"{name}: odometry times must increase")
        if not (np.all(np.isfinite(self.speed)) and np.all(np.isfinite(self.yaw))):
            raise ValueError(f"{name}: odometry holds NaN or infinite values")
        self.name = name
        self._i = 0

    @classmethod
    def from_log(cls, log_: Any) -> Odometry:
        return cls(log_.t, log_.speed_mps, log_.yaw_rate_dps, "simulated odometry")

    @classmethod
    def from_csv(cls, path: str | Path) -> Odometry:
        columns = [number_column(name) for name in ("t", "speed_mps", "yaw_rate_dps")]
        a = np.asarray(read_table(path, columns, "odometry", increasing="t"), dtype=np.float64)
        return cls(a[:, 0], a[:, 1], a[:, 2], str(path))

    def poll(self, t: float) -> list[OdometrySample]:
        j = int(np.searchsorted(self.t, t, side="right"))
        out = [OdometrySample(float(self.t[k]), float(self.speed[k]), float(self.yaw[k])) for k in range(self._i, j)]
        self._i = max(self._i, j)
        return out
