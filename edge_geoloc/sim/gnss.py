"""The simulated GNSS receiver of a synthetic drive, as a prior the device loop polls like a real one."""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_geoloc.geo import MapCRS
from edge_geoloc.localize.gnss import GpsFix, _Queue


class SimulatedGps(_Queue):
    """The simulated receiver of a synthetic drive (:class:`~edge_geoloc.world.sensors.GpsLog`)."""

    def __init__(self, log_: Any, crs: MapCRS | None = None) -> None:
        super().__init__()
        self.name = "simulated gps"
        sig = log_.sigma_m()
        for i in np.flatnonzero(log_.valid):
            course = log_.course_deg[i]
            self._push(
                GpsFix(
                    float(log_.t[i]),
                    float(log_.lat[i]),
                    float(log_.lon[i]),
                    float(log_.east[i]),
                    float(log_.north[i]),
                    float(sig[i]),
                    int(log_.quality[i]),
                    float(log_.hdop[i]),
                    None if not np.isfinite(course) else float(course),
                    None if not np.isfinite(log_.speed_mps[i]) else float(log_.speed_mps[i]),
                )
            )

    def stats(self) -> dict[str, Any]:
        return {"source": self.name, "fixes": self.fixes}
