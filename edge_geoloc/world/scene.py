"""The synthetic world: a 2.5D scene stored as co-registered rasters in the map CRS.

Every renderer (aerial, street panorama, pinhole, UAV) reads the same rasters, which is what
makes views of one place agree exactly. The rasters are north-up in the map's grid: pixel
(row, col) covers east ``[east_min + col*res, east_min + (col+1)*res)`` and north
``(north_max - (row+1)*res, north_max - row*res]``.

- ``height``: top surface above the (flat) ground, metres; 0 is ground.
- ``material``: a :class:`Material` per pixel (what the top surface is).
- ``albedo``: base RGB colour of the top surface with its texture, before light and season.
- ``obj``: 0 for ground; ``k > 0`` indexes ``buildings[k - 1]`` for building pixels and trees
  have ids past the buildings (``obj - 1 - len(buildings)`` indexes ``trees``) so that facades
  can be coloured per building.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from edge_geoloc.geo import MapCRS
from edge_geoloc.world.region import Region


class Material(IntEnum):
    GRASS = 0
    ROAD = 1
    SIDEWALK = 2
    ROOF = 3
    TREE = 4
    WATER = 5
    FIELD = 6
    PARKING = 7
    CAR = 8
    MARKING = 9
    SOIL = 10
    PLAZA = 11
    SHRUB = 12


VEGETATION = (Material.GRASS, Material.TREE, Material.FIELD, Material.SHRUB)


@dataclass
class Buildings:
    """Per-building attributes, indexed by ``obj - 1``."""

    footprint: list[np.ndarray]  # each (K, 2) east/north polygon vertices
    height_m: np.ndarray  # (N,) float32
    facade_rgb: np.ndarray  # (N, 3) uint8 wall colour
    window_rgb: np.ndarray  # (N, 3) uint8 glass colour
    floor_m: np.ndarray  # (N,) float32 storey height
    window_spacing_m: np.ndarray  # (N,) float32 horizontal window pitch (0: no windows)

    def __len__(self) -> int:
        return len(self.height_m)


@dataclass
class Trees:
    """Trees: crown centre, crown radius and top height, indexed by ``obj - 1 - len(buildings)``."""

    en: np.ndarray  # (N, 2)
    radius_m: np.ndarray  # (N,)
    height_m: np.ndarray  # (N,)

    def __len__(self) -> int:
        return len(self.radius_m)


@dataclass
class RoadNetwork:
    """The drivable graph: node positions and edges (centre lines) with widths and kinds.

    Trajectories drive along it; an edge is a straight segment between two nodes (curved roads
    are chains of short edges).
    """

    nodes: np.ndarray  # (N, 2) east/north float64
    edges: np.ndarray  # (E, 2) int64 node indices
    width_m: np.ndarray  # (E,) float32 carriageway width
    kind: np.ndarray  # (E,) uint8: 0 main, 1 street, 2 lane/track

    def __post_init__(self) -> None:
        if self.edges.size and (self.edges.min() < 0 or self.edges.max() >= len(self.nodes)):
            raise ValueError("road edges refer to nodes that do not exist")

    def neighbours(self) -> list[list[int]]:
        """Adjacency lists (node -> list of neighbouring nodes)."""
        adj: list[list[int]] = [[] for _ in range(len(self.nodes))]
        for a, b in self.edges:
            adj[int(a)].append(int(b))
            adj[int(b)].append(int(a))
        return adj


@dataclass
class World:
    """Co-registered rasters of one region plus the vector data they were drawn from."""

    region: Region
    crs: MapCRS
    res_m: float
    east_min: float
    north_max: float
    height: np.ndarray  # (H, W) float32
    material: np.ndarray  # (H, W) uint8
    albedo: np.ndarray  # (H, W, 3) uint8
    obj: np.ndarray  # (H, W) int32
    buildings: Buildings
    trees: Trees
    roads: RoadNetwork
    cache: dict = field(default_factory=dict, repr=False)  # renderers' per-world caches

    def __post_init__(self) -> None:
        h, w = self.height.shape
        for name, arr, shape in (
            ("material", self.material, (h, w)),
            ("albedo", self.albedo, (h, w, 3)),
            ("obj", self.obj, (h, w)),
        ):
            if arr.shape != shape:
                raise ValueError(f"world raster '{name}' has shape {arr.shape}, expected {shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.height.shape  # type: ignore[return-value]

    @property
    def east_max(self) -> float:
        return self.east_min + self.shape[1] * self.res_m

    @property
    def north_min(self) -> float:
        return self.north_max - self.shape[0] * self.res_m

    def bounds(self) -> tuple[float, float, float, float]:
        """(east_min, north_min, east_max, north_max) of the rasters."""
        return self.east_min, self.north_min, self.east_max, self.north_max

    def to_pixel(self, east: np.ndarray | float, north: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Continuous (row, col) of east/north; pixel centres sit at integer + 0.5."""
        return (self.north_max - np.asarray(north)) / self.res_m, (np.asarray(east) - self.east_min) / self.res_m

    def to_en(self, row: np.ndarray | float, col: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """East/north of continuous pixel coordinates (inverse of :meth:`to_pixel`)."""
        return self.east_min + np.asarray(col) * self.res_m, self.north_max - np.asarray(row) * self.res_m

    def contains(self, east: np.ndarray | float, north: np.ndarray | float, margin_m: float = 0.0) -> np.ndarray:
        east, north = np.asarray(east), np.asarray(north)
        return (
            (east >= self.east_min + margin_m)
            & (east <= self.east_max - margin_m)
            & (north >= self.north_min + margin_m)
            & (north <= self.north_max - margin_m)
        )

    def require_inside(self, east: float, north: float, what: str, margin_m: float = 0.0) -> None:
        """Raise a clear error when a view or tile is requested outside the world."""
        if not bool(np.all(self.contains(east, north, margin_m))):
            raise ValueError(
                f"{what} at east {float(np.min(east)):.1f}, north {float(np.min(north)):.1f} lies outside the world "
                f"'{self.region.name}' (east {self.east_min:.1f}..{self.east_max:.1f}, "
                f"north {self.north_min:.1f}..{self.north_max:.1f}"
                + (f", margin {margin_m:g} m" if margin_m else "")
                + ")"
            )

    def latlon_to_en(self, lat: float, lon: float) -> tuple[float, float]:
        east, north = self.crs.to_en(lat, lon)
        return float(east), float(north)
