"""Map bundles (aerial tile descriptors of an area, sharded geographically) and region-scoped search.

    from edge_geoloc.maps import MapIndex
    index = MapIndex.open("maps/build/demo-suburb", card="export/build/demo")  # refuses another encoder
    best = index.search(street_descriptor, scope=(east, north, 200.0), k=10)  # ids, scores, centres

Build a bundle with ``edge-geoloc map build`` (:mod:`edge_geoloc.mapbuild.build`); the format is
described in :mod:`edge_geoloc.maps.bundle`, the search in :mod:`edge_geoloc.maps.index`.
"""

from edge_geoloc.maps.bundle import FORMAT, Bundle, BundleError, Manifest, read_manifest
from edge_geoloc.maps.index import CostModel, MapIndex, Scope, SearchResult
from edge_geoloc.maps.layout import ShardGrid, hilbert_key

__all__ = [
    "FORMAT",
    "Bundle",
    "BundleError",
    "CostModel",
    "Manifest",
    "MapIndex",
    "Scope",
    "SearchResult",
    "ShardGrid",
    "hilbert_key",
    "read_manifest",
]
