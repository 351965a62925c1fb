"""Writing the map's imagery layer (``ortho.tif``, read on the device by :mod:`edge_geoloc.maps.ortho`).

The layer covers the map's tile footprints (the tiling's first to last centre, plus half a tile),
grid-north-up in the map CRS at a GSD chosen for registration: by default the imagery's own GSD
clipped to :data:`GSD_RANGE` (finer imagery is averaged down, coarser is kept as it is, never blown
up past 0.5 m/px). It is a tiled GeoTIFF of :data:`TILE_PX`-pixel WebP tiles (lossy colour at
:data:`QUALITY`, a lossless alpha channel where the source has nodata) with ModelPixelScale,
ModelTiepoint and an EPSG GeoKey where the CRS has one, plus internal overviews (each halving down
to one tile, rendered from the source at that GSD, about a third more work), so GDAL and QGIS open it.

Work is cut into chunks of :data:`CHUNK_ROWS` rows of TIFF tiles per pyramid level: a chunk task
renders and compresses its tiles into ``work/ortho/`` (any process, any order, each resumable), and
the assembly only concatenates the compressed bytes into the TIFF. A chunk's bytes depend only on
the plan, so the file is the same whichever process or run made each chunk.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_geoloc.geo import MapCRS, Tiling
from edge_geoloc.maps.bundle import OrthoInfo
from edge_geoloc.maps.ortho import ORTHO, ORTHO_HASHES, MapOrtho

if TYPE_CHECKING:
    from edge_geoloc.mapbuild.imagery import TileSource

GSD_RANGE = (0.25, 0.5)  # metres per pixel: fine enough for metre-level registration, a city in a few GB
TILE_PX = 256
QUALITY = 90  # lossy WebP quality: about 1/10 of the raw bytes on aerial texture, errors of a few grey levels
WEBP_METHOD = 4  # libwebp's default effort: 6.5 ms a 256 px tile here (6: 17 ms for 1 % fewer bytes)
CHUNK_ROWS = 8  # TIFF tile rows per chunk task (2048 px: 512 m at 0.25 m/px)
ORTHO_DIR = "ortho"

Segments = Callable[[int], Iterator[bytes]]  # level -> compressed tiles of that level, row-major


def default_gsd(native_gsd_m: float) -> float:
    """The imagery's own GSD clipped to :data:`GSD_RANGE` (rounded to a millimetre for the manifest)."""
    return round(float(np.clip(native_gsd_m, *GSD_RANGE)), 3)


def plan_layer(tiling: Tiling, gsd_m: float, alpha: bool) -> OrthoInfo:
    """The layer's geometry: the tiles' footprints (axis-aligned squares of ``tile_m`` around the centres)."""
    if not (np.isfinite(gsd_m) and gsd_m > 0):
        raise ValueError(f"imagery layer GSD must be a positive number of metres per pixel, got {gsd_m}")
    half = tiling.tile_m / 2
    e0 = tiling.east_min - half
    n1 = tiling.north_max + half
    e1 = tiling.east_min + (tiling.n_cols - 1) * tiling.stride_m + half
    n0 = tiling.north_max - (tiling.n_rows - 1) * tiling.stride_m - half
    width, height = int(np.floor((e1 - e0) / gsd_m + 1e-9)), int(np.floor((n1 - n0) / gsd_m + 1e-9))
    overviews = 0
    while max(width, height) >> overviews > TILE_PX:
        overviews += 1
    return OrthoInfo(
        ORTHO, float(gsd_m), float(e0), float(n1), width, height, TILE_PX, "webp", QUALITY, alpha, overviews
    )


def level_shape(info: OrthoInfo, level: int) -> tuple[int, int]:
    """(height, width) of pyramid level ``level`` (pixels 2**level base pixels a side; whole pixels only)."""
    return info.height >> level, info.width >> level


def tile_grid(info: OrthoInfo, level: int) -> tuple[int, int]:
    h, w = level_shape(info, level)
    return -(-h // info.tile_px), -(-w // info.tile_px)


def chunks(info: OrthoInfo) -> list[tuple[int, int]]:
    """(level, chunk) of every chunk task, base level first."""
    return [
        (level, c) for level in range(info.overviews + 1) for c in range(-(-tile_grid(info, level)[0] // CHUNK_ROWS))
    ]


def chunk_paths(work: Path, level: int, chunk: int) -> tuple[Path, Path]:
    """(compressed bytes, their lengths) of one chunk; the lengths file is written last: it marks it done."""
    stem = work / ORTHO_DIR / f"L{level}-{chunk:05d}"
    return stem.with_suffix(".bin"), stem.with_suffix(".len.npy")


def render_block(source: TileSource, east0: float, north0: float, rows: int, cols: int, gsd_m: float) -> np.ndarray:
    """RGBA (rows, cols, 4) of the grid-north-up block whose top-left pixel corner is (east0, north0).

    Covered by squares of the shorter side (the sources render squares), the last one shifted back
    inside; squares sample the same pixel centres, so their overlaps agree."""
    s = min(rows, cols)
    at_r = sorted({*range(0, rows - s, s), rows - s})
    at_c = sorted({*range(0, cols - s, s), cols - s})
    rr, cc = np.meshgrid(at_r, at_c, indexing="ij")
    rr, cc = rr.ravel(), cc.ravel()
    east = east0 + (cc + s / 2) * gsd_m
    north = north0 - (rr + s / 2) * gsd_m
    rgb, valid = source.render_masked(east, north, s, gsd_m, true_north=False)
    out = np.empty((rows, cols, 4), dtype=np.uint8)
    for k, (r, c) in enumerate(zip(rr, cc)):
        out[r : r + s, c : c + s, :3] = rgb[k]
        out[r : r + s, c : c + s, 3] = 255 if valid is None else valid[k] * np.uint8(255)
    return out


def encode_chunk(source: TileSource, info: OrthoInfo, work: Path, level: int, chunk: int) -> int:
    """Render and compress one chunk's tiles into ``work/ortho`` (idempotent); returns its tile count."""
    import imagecodecs

    data_path, len_path = chunk_paths(work, level, chunk)
    rows, cols = tile_grid(info, level)
    r_lo, r_hi = chunk * CHUNK_ROWS, min(rows, (chunk + 1) * CHUNK_ROWS)
    if len_path.exists():
        return (r_hi - r_lo) * cols
    t, (h, w) = info.tile_px, level_shape(info, level)
    g = info.gsd_m * (1 << level)
    lengths = []
    data_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = data_path.with_name(f".{data_path.name}.tmp")
    with open(tmp, "wb") as f:
        for tr in range(r_lo, r_hi):
            for tc in range(cols):
                bh, bw = min(t, h - tr * t), min(t, w - tc * t)
                block = render_block(source, info.east_min + tc * t * g, info.north_max - tr * t * g, bh, bw, g)
                tile = np.zeros((t, t, 4 if info.alpha else 3), dtype=np.uint8)
                tile[:bh, :bw] = block[..., : tile.shape[2]]
                encoded = imagecodecs.webp_encode(tile, level=info.quality, lossless=False, method=WEBP_METHOD)
                f.write(encoded)
                lengths.append(len(encoded))
    os.replace(tmp, data_path)
    tmp_len = len_path.with_name(f".{len_path.name}.tmp")
    with open(tmp_len, "wb") as f:
        np.save(f, np.asarray(lengths, dtype=np.int64), allow_pickle=False)
    os.replace(tmp_len, len_path)
    return len(lengths)


def chunk_segments(info: OrthoInfo, work: Path) -> Segments:
    """Compressed tiles of a level, read back from the finished chunk files."""

    def level_segments(level: int) -> Iterator[bytes]:
        for lv, chunk in chunks(info):
            if lv != level:
                continue
            data_path, len_path = chunk_paths(work, lv, chunk)
            lengths = np.load(len_path, allow_pickle=False)
            with open(data_path, "rb") as f:
                for n in lengths.tolist():
                    yield f.read(n)

    return level_segments


def _geo_tags(info: OrthoInfo, crs: str) -> list[tuple]:
    """ModelPixelScale, ModelTiepoint (PixelIsArea: pixel (0, 0)'s corner) and the GeoKey directory."""
    epsg = MapCRS(crs).crs.to_epsg()
    # GTModelType projected, GTRasterType PixelIsArea, ProjectedCSType (user-defined 32767 without EPSG).
    keys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, epsg or 32767]
    return [
        (33550, "d", 3, (info.gsd_m, info.gsd_m, 0.0), False),
        (33922, "d", 6, (0.0, 0.0, 0.0, info.east_min, info.north_max, 0.0), False),
        (34735, "H", len(keys), keys, False),
    ]


def write_layer(folder: Path, info: OrthoInfo, crs: str, segments: Segments) -> tuple[Path, Path]:
    """``ortho.tif`` from compressed tiles (the base level with the GeoTIFF tags, then each overview) and
    ``ortho.sha256.npy``, the digests of the base level's tiles."""
    import tifffile

    channels = 4 if info.alpha else 3
    digests: list[bytes] = []

    def hashed(level: int) -> Iterator[bytes]:
        for data in segments(level):
            if level == 0:
                digests.append(hashlib.sha256(data).digest())
            yield data

    path = folder / info.file
    tmp = path.with_name(f".{path.name}.tmp")
    with tifffile.TiffWriter(tmp, bigtiff=info.width * info.height * channels > 2**32) as tw:
        for level in range(info.overviews + 1):
            h, w = level_shape(info, level)
            tw.write(
                hashed(level),
                shape=(h, w, channels),
                dtype=np.uint8,
                tile=(info.tile_px, info.tile_px),
                photometric="rgb",
                extrasamples=["unassalpha"] if info.alpha else None,
                compression="webp",
                subfiletype=1 if level else 0,
                extratags=_geo_tags(info, crs) if level == 0 else [],
                metadata=None,
                software=False,
            )
    table = np.frombuffer(b"".join(digests), dtype=np.uint8).reshape(-1, 32)
    rows, cols = tile_grid(info, 0)
    if len(table) != rows * cols:
        raise ValueError(f"{len(table)} base tiles given for a {rows} x {cols} tile grid")
    tmp_hashes = folder / f".{ORTHO_HASHES}.tmp"
    with open(tmp_hashes, "wb") as f:
        np.save(f, table, allow_pickle=False)
    os.replace(tmp, path)
    os.replace(tmp_hashes, folder / ORTHO_HASHES)
    return path, folder / ORTHO_HASHES


def crop_layer(ortho: MapOrtho, east: np.ndarray, north: np.ndarray, tile_m: float) -> tuple[OrthoInfo, Segments]:
    """A layer of ``ortho``'s base TIFF tiles that meet the map tiles centred at east/north (squares of
    ``tile_m``), in the smallest whole-tile box; the box's other tiles are sparse (no bytes: missing).
    Bytes are copied, not re-encoded: the crop's pixels are the source's. Overviews are not carried."""
    info, t = ortho.info, ortho.info.tile_px
    span = t * info.gsd_m
    rows, cols = tile_grid(info, 0)
    half = tile_m / 2
    east, north = np.asarray(east, dtype=np.float64), np.asarray(north, dtype=np.float64)
    c_lo = np.clip(np.floor((east - half - info.east_min) / span), 0, cols - 1).astype(np.int64)
    c_hi = np.clip(np.floor((east + half - info.east_min) / span), 0, cols - 1).astype(np.int64)
    r_lo = np.clip(np.floor((info.north_max - north - half) / span), 0, rows - 1).astype(np.int64)
    r_hi = np.clip(np.floor((info.north_max - north + half) / span), 0, rows - 1).astype(np.int64)
    hit = np.zeros((rows, cols), dtype=bool)
    for dr in range(int((r_hi - r_lo).max(initial=0)) + 1):
        for dc in range(int((c_hi - c_lo).max(initial=0)) + 1):
            ok = (r_lo + dr <= r_hi) & (c_lo + dc <= c_hi)
            hit[r_lo[ok] + dr, c_lo[ok] + dc] = True
    if not hit.any():
        raise ValueError("no map tile given: the imagery layer's crop would be empty")
    r_idx, c_idx = np.flatnonzero(hit.any(axis=1)), np.flatnonzero(hit.any(axis=0))
    r0, r1, c0, c1 = int(r_idx[0]), int(r_idx[-1]) + 1, int(c_idx[0]), int(c_idx[-1]) + 1
    out = replace(
        info,
        east_min=info.east_min + c0 * span,
        north_max=info.north_max - r0 * span,
        width=min(info.width - c0 * t, (c1 - c0) * t),
        height=min(info.height - r0 * t, (r1 - r0) * t),
        overviews=0,
    )

    def segments(level: int) -> Iterator[bytes]:
        for r in range(r0, r1):
            for c in range(c0, c1):
                yield ortho.raw_tile(r * cols + c) if hit[r, c] else b""

    return out, segments
