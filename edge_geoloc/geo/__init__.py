"""Coordinates (WGS84 at interfaces, a projected map CRS inside), headings, distances and tiling."""

from edge_geoloc.geo.crs import (
    MapCRS,
    angle_diff_deg,
    geodesic_distance_m,
    haversine_m,
    utm_epsg,
    wrap_deg,
)
from edge_geoloc.geo.tiling import Tiling, vigor_iou

__all__ = [
    "MapCRS",
    "Tiling",
    "angle_diff_deg",
    "geodesic_distance_m",
    "haversine_m",
    "utm_epsg",
    "vigor_iou",
    "wrap_deg",
]
