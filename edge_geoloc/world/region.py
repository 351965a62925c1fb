"""Region definitions (``maps/<name>.yaml``): where an area is, how large, and how to make it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_geoloc.config import check, load_config
from edge_geoloc.geo import MapCRS

STYLES = ("downtown", "suburb", "rural", "industrial")


@dataclass(frozen=True)
class Region:
    """An area of interest. The synthetic world of a region is a function of (style, seed)."""

    name: str = field(metadata=check(lambda v: bool(v.strip()) and "/" not in v, "a non-empty name without '/'"))
    center_lat: float = field(metadata=check(lambda v: -80 <= v <= 84, "a latitude in [-80, 84]"))
    center_lon: float = field(metadata=check(lambda v: -180 <= v <= 180, "a longitude in [-180, 180]"))
    size_m: float = field(metadata=check(lambda v: 100 <= v <= 20000, "a size in metres in [100, 20000]"))
    style: str = field(metadata=check(lambda v: v in STYLES, "one of " + ", ".join(STYLES)))
    seed: int = field(default=0, metadata=check(lambda v: v >= 0, "a non-negative integer"))
    crs: str | None = None  # pyproj definition; None: the UTM zone of the centre
    resolution_m: float = field(
        default=0.25, metadata=check(lambda v: 0.05 <= v <= 2.0, "a raster resolution in [0.05, 2.0] m/px")
    )

    @classmethod
    def load(cls, path: str | Path) -> Region:
        return load_config(cls, path)

    def map_crs(self) -> MapCRS:
        return MapCRS.for_area(self.center_lat, self.center_lon, self.crs)

    def center_en(self) -> tuple[float, float]:
        east, north = self.map_crs().to_en(self.center_lat, self.center_lon)
        return float(east), float(north)
