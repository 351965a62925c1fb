"""Region definitions (``maps/<name>.yaml``): where an area is, how large, and how to make it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edge_geoloc.config import check, load_config
from edge_geoloc.geo import MapCRS

STYLES = ("downtown", "suburb", "rural", "industrial")
MAX_SYNTHETIC_M = 20000.0


@dataclass(frozen=True)
class Imagery:
    """Where a map's aerial imagery comes from (``edge-geoloc map build``); paths are relative to the region YAML.

    ``geotiff``: a GeoTIFF (its georeferencing tags; ``crs`` overrides a missing or user-defined CRS);
    ``worldfile``: an ordinary image with a world file beside it (.tfw/.jgw/.pgw/.wld) and ``crs``;
    ``xyz``: a folder of slippy-map tiles ``z/x/y.png`` in Web Mercator (``zoom``: default the deepest).
    """

    kind: Literal["synthetic", "geotiff", "worldfile", "xyz"]
    path: str | None = None
    crs: str | None = None
    zoom: int | None = field(default=None, metadata=check(lambda v: 0 <= v <= 24, "a zoom level in [0, 24]"))

    def __post_init__(self) -> None:
        if self.kind != "synthetic" and not self.path:
            raise ValueError(f"key 'imagery.path': {self.kind} imagery needs a path")
        if self.kind == "worldfile" and not self.crs:
            raise ValueError("key 'imagery.crs': an image with a world file needs the CRS its coordinates are in")


@dataclass(frozen=True)
class Region:
    """An area of interest. The synthetic world of a region is a function of (style, seed)."""

    name: str = field(metadata=check(lambda v: bool(v.strip()) and "/" not in v, "a non-empty name without '/'"))
    center_lat: float = field(metadata=check(lambda v: -80 <= v <= 84, "a latitude in [-80, 84]"))
    center_lon: float = field(metadata=check(lambda v: -180 <= v <= 180, "a longitude in [-180, 180]"))
    size_m: float = field(metadata=check(lambda v: v >= 100, "a size in metres >= 100 (at most 20000 synthetic)"))
    style: str | None = field(default=None, metadata=check(lambda v: v in STYLES, "one of " + ", ".join(STYLES)))
    seed: int = field(default=0, metadata=check(lambda v: v >= 0, "a non-negative integer"))
    crs: str | None = None  # pyproj definition; None: the UTM zone of the centre
    resolution_m: float = field(
        default=0.25, metadata=check(lambda v: 0.05 <= v <= 2.0, "a raster resolution in [0.05, 2.0] m/px")
    )
    imagery: Imagery | None = None  # None: the synthetic world of (style, seed)
    # Side of the map's tiles (`edge-geoloc map build`); None: the model card's. Datasets use their own config's.
    tile_m: float | None = field(default=None, metadata=check(lambda v: v > 0, "a map tile side in metres"))

    def __post_init__(self) -> None:
        if self.imagery is None or self.imagery.kind == "synthetic":
            if self.style is None:
                raise ValueError("key 'style': a synthetic world needs a style (one of " + ", ".join(STYLES) + ")")
            if self.size_m > MAX_SYNTHETIC_M:
                raise ValueError(f"key 'size_m': a synthetic world is at most {MAX_SYNTHETIC_M:g} m a side")

    @classmethod
    def load(cls, path: str | Path) -> Region:
        return load_config(cls, path)

    def map_crs(self) -> MapCRS:
        return MapCRS.for_area(self.center_lat, self.center_lon, self.crs)

    def center_en(self) -> tuple[float, float]:
        east, north = self.map_crs().to_en(self.center_lat, self.center_lon)
        return float(east), float(north)
