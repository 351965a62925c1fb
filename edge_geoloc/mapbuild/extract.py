"""A mission corridor cut out of a big map: the tiles within ``buffer_m`` of a route, as a valid bundle.

The extract keeps the source's tiling (tile ids stay the same), CRS, encoder and shard grid, and
copies the float16 descriptors bit for bit; only the shard graphs are rebuilt, over the kept tiles.
The imagery layer is carried cropped: the TIFF tiles that meet a kept map tile, copied byte for byte
(no re-encoding) into the smallest whole-tile box, the box's other tiles left sparse (missing).
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np

from edge_geoloc.mapbuild.ortho import crop_layer
from edge_geoloc.maps.bundle import Bundle, BundleError, RegionInfo
from edge_geoloc.maps.ortho import MapOrtho


def read_route(path: str | Path) -> list[np.ndarray]:
    """Lines of (lon, lat) vertices from GeoJSON: LineString, MultiLineString, Point, MultiPoint (Features too)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path}: no such corridor file") from None
    except json.JSONDecodeError as err:
        raise BundleError(f"{path}: not valid GeoJSON ({err})") from None

    lines: list[np.ndarray] = []

    def geometry(g: dict, where: str) -> None:
        kind = g.get("type") if isinstance(g, dict) else None
        coords = g.get("coordinates") if isinstance(g, dict) else None
        try:
            if kind == "LineString":
                lines.append(np.asarray(coords, dtype=np.float64)[:, :2])
            elif kind == "MultiLineString":
                lines.extend(np.asarray(c, dtype=np.float64)[:, :2] for c in coords)
            elif kind == "Point":
                lines.append(np.asarray([coords], dtype=np.float64)[:, :2])
            elif kind == "MultiPoint":
                lines.extend(np.asarray([c], dtype=np.float64)[:, :2] for c in coords)
            elif kind == "GeometryCollection":
                for i, sub in enumerate(g.get("geometries", [])):
                    geometry(sub, f"{where}.geometries[{i}]")
            else:
                raise BundleError(
                    f"{path}: {where} is a {kind!r}; a corridor is a route: LineString, MultiLineString or Point(s)"
                )
        except (TypeError, ValueError, IndexError):
            raise BundleError(f"{path}: {where} has malformed coordinates") from None

    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection":
        for i, f in enumerate(doc.get("features", [])):
            geometry(f.get("geometry"), f"features[{i}].geometry")
    elif kind == "Feature":
        geometry(doc.get("geometry"), "geometry")
    else:
        geometry(doc, "the document")
    if not lines or any(len(line) == 0 for line in lines):
        raise BundleError(f"{path}: no route coordinates")
    for line in lines:
        if not (np.all(np.isfinite(line)) and np.all(np.abs(line[:, 1]) <= 90) and np.all(np.abs(line[:, 0]) <= 180)):
            raise BundleError(f"{path}: coordinates must be [longitude, latitude] in degrees (GeoJSON order)")
    return lines


def corridor_tiles(bundle: Bundle, lines_en: list[np.ndarray], buffer_m: float) -> np.ndarray:
    """Rows of ``bundle`` whose tile centres lie within ``buffer_m`` of the polylines (east/north)."""
    tiling = bundle.manifest.tiling.tiling()
    ids = []
    for line in lines_en:
        pts = line if len(line) > 1 else np.concatenate([line, line])
        for p, q in itertools.pairwise(pts):
            # Pieces no longer than the buffer keep each candidate box compact on long diagonal legs.
            n = max(1, int(np.ceil(np.hypot(*(q - p)) / max(buffer_m, 1.0))))
            ts = np.linspace(0.0, 1.0, n + 1)
            for a, b in itertools.pairwise(ts):
                s0, s1 = p + a * (q - p), p + b * (q - p)
                cand = tiling.in_box(
                    min(s0[0], s1[0]) - buffer_m,
                    min(s0[1], s1[1]) - buffer_m,
                    max(s0[0], s1[0]) + buffer_m,
                    max(s0[1], s1[1]) + buffer_m,
                )
                if len(cand) == 0:
                    continue
                e, nn = tiling.centre(cand)
                d = s1 - s0
                L2 = float(d @ d)
                t = np.zeros(len(cand)) if L2 == 0 else np.clip(((e - s0[0]) * d[0] + (nn - s0[1]) * d[1]) / L2, 0, 1)
                dist2 = (e - s0[0] - t * d[0]) ** 2 + (nn - s0[1] - t * d[1]) ** 2
                ids.append(cand[dist2 <= buffer_m**2])
    want = np.unique(np.concatenate(ids)) if ids else np.zeros(0, np.int64)
    have = np.asarray(bundle.tiles["id"])
    order = np.argsort(have, kind="stable")
    at = np.searchsorted(have, want, sorter=order)
    ok = at < len(have)
    ok[ok] = have[order[at[ok]]] == want[ok]
    return np.sort(order[at[ok]])


def extract_corridor(
    source: str | Path,
    corridor: str | Path,
    buffer_m: float,
    out: str | Path,
    workers: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write the bundle of the source's tiles within ``buffer_m`` of the route in ``corridor`` (GeoJSON)."""
    from edge_geoloc.mapbuild.build import build_from_descriptors

    if not (np.isfinite(buffer_m) and buffer_m > 0):
        raise ValueError(f"buffer must be a positive number of metres, got {buffer_m}")
    bundle = Bundle(source)
    m = bundle.manifest
    lines_en = []
    for line in read_route(corridor):
        e, n = bundle.crs.to_en(line[:, 1], line[:, 0])
        lines_en.append(np.stack([e, n], axis=1))
    rows = corridor_tiles(bundle, lines_en, buffer_m)
    if len(rows) == 0:
        raise BundleError(f"{corridor}: no tile of {source} lies within {buffer_m:g} m of the route")
    for pos in np.unique(bundle.shard_pos[np.asarray(bundle.tiles["shard"][rows])]):
        bundle.verify_shard(int(pos))  # copy only descriptors that pass their checksums
    allv = np.concatenate(lines_en)
    lat, lon = bundle.crs.to_latlon(allv[:, 0].mean(), allv[:, 1].mean())
    region = RegionInfo(f"{m.region.name}-corridor", float(lat), float(lon), "extract")
    ortho = MapOrtho.open(bundle)
    layer = None
    if ortho is not None:
        east, north = np.asarray(bundle.tiles["east"][rows]), np.asarray(bundle.tiles["north"][rows])
        layer = crop_layer(ortho, east, north, m.tiling.tile_m)
    return build_from_descriptors(
        out,
        workers=workers,
        overwrite=overwrite,
        crs=m.crs,
        tiling=m.tiling.tiling(),
        tile_ids=np.asarray(bundle.tiles["id"][rows]),
        descriptors=np.asarray(bundle.descriptors[rows]),
        encoder=m.encoder,
        region=region,
        tile_px=m.tiling.tile_px,
        shard_tiles=m.shards.tiles_per_side,
        hnsw_dim=m.hnsw.dim if m.hnsw.dim < m.encoder.descriptor_dim else None,
        M=m.hnsw.M,
        ef_construction=m.hnsw.ef_construction,
        ef_search=m.hnsw.ef_search,
        ortho=layer,
    )
