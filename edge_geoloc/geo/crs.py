"""The map's projected CRS: WGS84 lat/lon at the interfaces, metres east/north inside.

A map uses one projected CRS (by default the UTM zone of its centre). Grid north of that CRS
differs from true north by the meridian convergence, which reaches several degrees far from the
zone's central meridian at high latitude; headings are converted explicitly (clockwise from true
north at every interface, clockwise from grid north inside renderers and maps).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyproj import CRS, Geod, Proj, Transformer

ArrayLike = float | np.ndarray

WGS84 = CRS.from_epsg(4326)
_GEOD = Geod(ellps="WGS84")


def utm_epsg(lat: float, lon: float) -> int:
    """EPSG code of the WGS84 UTM zone containing (lat, lon) (no Norway/Svalbard exceptions)."""
    if not -80.0 <= lat <= 84.0:
        raise ValueError(f"latitude {lat} is outside UTM's range [-80, 84]; give the map a CRS string")
    zone = int(np.floor((lon + 180.0) / 6.0)) % 60 + 1
    return (32600 if lat >= 0 else 32700) + zone


@dataclass(frozen=True)
class MapCRS:
    """A projected CRS with vectorized conversions and heading corrections."""

    definition: str  # anything pyproj.CRS accepts: "EPSG:32633", a PROJ string, WKT

    def __post_init__(self) -> None:
        crs = CRS.from_user_input(self.definition)
        if not crs.is_projected:
            raise ValueError(f"map CRS must be projected (metres), got {self.definition!r}")
        object.__setattr__(self, "_crs", crs)
        object.__setattr__(self, "_fwd", Transformer.from_crs(WGS84, crs, always_xy=True))
        object.__setattr__(self, "_inv", Transformer.from_crs(crs, WGS84, always_xy=True))
        object.__setattr__(self, "_proj", Proj(crs))

    @classmethod
    def for_area(cls, lat: float, lon: float, definition: str | None = None) -> MapCRS:
        """The given CRS, or the UTM zone of the area's centre."""
        return cls(definition if definition else f"EPSG:{utm_epsg(lat, lon)}")

    @property
    def crs(self) -> CRS:
        return self._crs  # type: ignore[attr-defined]

    def to_string(self) -> str:
        """A PROJ string for manifests (round-trips through ``MapCRS``)."""
        return self.crs.to_proj4() if self.crs.to_epsg() is None else f"EPSG:{self.crs.to_epsg()}"

    def to_en(self, lat: ArrayLike, lon: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """WGS84 lat/lon (degrees) -> east/north (metres)."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if np.any(np.abs(lat) > 90) or np.any(~np.isfinite(lat)) or np.any(~np.isfinite(lon)):
            raise ValueError("latitude must be finite and within [-90, 90], longitude finite")
        east, north = self._fwd.transform(lon, lat)  # type: ignore[attr-defined]
        return np.asarray(east), np.asarray(north)

    def to_latlon(self, east: ArrayLike, north: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """east/north (metres) -> WGS84 lat/lon (degrees)."""
        lon, lat = self._inv.transform(  # type: ignore[attr-defined]
            np.asarray(east, dtype=np.float64), np.asarray(north, dtype=np.float64)
        )
        return np.asarray(lat), np.asarray(lon)

    def convergence_deg(self, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
        """Meridian convergence: the clockwise angle from true north to grid north, in degrees.

        ``heading_grid = heading_true - convergence``.
        """
        factors = self._proj.get_factors(  # type: ignore[attr-defined]
            np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        )
        # PROJ's meridian_convergence is the true azimuth of grid north (checked against a geodesic
        # between two points one grid-north step apart in tests/test_geo.py).
        return np.asarray(factors.meridian_convergence)

    def scale_factor(self, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
        """Point scale factor k: grid metres per true metre at (lat, lon)."""
        factors = self._proj.get_factors(  # type: ignore[attr-defined]
            np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
        )
        return np.asarray(factors.meridional_scale)

    def true_to_grid_heading(self, heading_true: ArrayLike, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
        """Heading clockwise from true north -> clockwise from grid north, in [0, 360)."""
        return wrap_deg(np.asarray(heading_true) - self.convergence_deg(lat, lon))

    def grid_to_true_heading(self, heading_grid: ArrayLike, lat: ArrayLike, lon: ArrayLike) -> np.ndarray:
        """Heading clockwise from grid north -> clockwise from true north, in [0, 360)."""
        return wrap_deg(np.asarray(heading_grid) + self.convergence_deg(lat, lon))


def wrap_deg(angle: ArrayLike) -> np.ndarray:
    """An angle in degrees wrapped to [0, 360)."""
    out = np.mod(np.asarray(angle, dtype=np.float64), 360.0)
    return np.where(out >= 360.0, 0.0, out)


def angle_diff_deg(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Signed smallest difference a - b in degrees, in [-180, 180)."""
    return np.mod(np.asarray(a, dtype=np.float64) - np.asarray(b) + 180.0, 360.0) - 180.0


def geodesic_distance_m(lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike) -> np.ndarray:
    """Distance in metres on the WGS84 ellipsoid (vectorized)."""
    lat1, lon1, lat2, lon2 = np.broadcast_arrays(*(np.asarray(v, dtype=np.float64) for v in (lat1, lon1, lat2, lon2)))
    _, _, dist = _GEOD.inv(lon1, lat1, lon2, lat2)
    return np.asarray(dist)


def haversine_m(
    lat1: ArrayLike, lon1: ArrayLike, lat2: ArrayLike, lon2: ArrayLike, radius_m: float = 6_371_008.8
) -> np.ndarray:
    """Great-circle distance on a sphere: cheap, within 0.5% of the ellipsoid."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return 2 * radius_m * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
