"""Small maps for the map-bundle tests: descriptor fields laid on a tiling, and georeferenced rasters
(GeoTIFF, image + world file, XYZ tiles) of one analytic pattern defined in map coordinates, so a
rendered tile can be compared with the pattern at its own pixel positions."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from pyproj import Transformer

from edge_geoloc.geo import MapCRS, Tiling
from edge_geoloc.mapbuild.build import build_from_descriptors
from edge_geoloc.mapbuild.imagery import WEB_MERCATOR_HALF
from edge_geoloc.maps.bundle import EncoderInfo, RegionInfo

CRS = "EPSG:32633"
CENTER = (47.0, 16.3)  # 1.3 degrees east of UTM 33's central meridian: about 0.95 degrees of convergence
ENCODER_SHA = "ab" * 32


def files_of(path: Path) -> dict[str, bytes]:
    """Every file of a bundle by relative path: two builds are the same when these are equal."""
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*")) if f.is_file()}


def descriptor_field(tiling: Tiling, dim: int = 16, seed: int = 0, noise: float = 0.35) -> np.ndarray:
    """Unit descriptors that vary smoothly over the map plus per-tile noise: neighbours look alike, as real ones do."""
    rng = np.random.default_rng(seed)
    ids = np.arange(len(tiling))
    row, col = tiling.row_col(ids)
    freq = rng.uniform(0.05, 0.4, (dim, 2))
    phase = rng.uniform(0, 2 * np.pi, dim)
    x = np.sin(row[:, None] * freq[:, 0] + col[:, None] * freq[:, 1] + phase)
    x = x + noise * rng.standard_normal(x.shape)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def small_tiling(n_rows: int = 40, n_cols: int = 36, tile_m: float = 64.0) -> Tiling:
    e, n = MapCRS(CRS).to_en(*CENTER)
    s = tile_m / 2
    return Tiling(float(e), float(n) - (n_rows - 1) * s + 1e-6, float(e) + (n_cols - 1) * s - 1e-6, float(n), tile_m)


def descriptor_map(
    out: Path,
    tiling: Tiling | None = None,
    dim: int = 16,
    shard_tiles: int = 8,
    seed: int = 0,
    workers: int = 1,
    **options,
) -> tuple[Path, Tiling, np.ndarray]:
    """A bundle of a descriptor field on every tile of ``tiling``; returns (path, tiling, descriptors by tile id)."""
    tiling = tiling or small_tiling()
    desc = descriptor_field(tiling, dim, seed)
    encoder = EncoderInfo(model="field", aerial_sha256=ENCODER_SHA, card_sha256="", descriptor_dim=dim, backend="test")
    path = build_from_descriptors(
        out,
        workers=workers,
        crs=CRS,
        tiling=tiling,
        tile_ids=np.arange(len(tiling)),
        descriptors=desc,
        encoder=encoder,
        region=RegionInfo("field", *CENTER, "descriptors"),
        tile_px=32,
        shard_tiles=shard_tiles,
        **options,
    )
    return path, tiling, desc


def low_rank_map(
    out: Path, tiling: Tiling, dim: int = 32, rank: int = 6, hnsw_dim: int = 8, shard_tiles: int = 12, seed: int = 5
) -> tuple[Path, np.ndarray]:
    """A bundle of a rank-``rank`` descriptor field embedded in ``dim`` dims plus 1% noise, graphs on a
    ``hnsw_dim``-d projection (>= rank: it keeps nearly everything, so projected candidates can find exact
    search's tiles); returns (path, descriptors by tile id)."""
    rng = np.random.default_rng(seed)
    low = descriptor_field(tiling, dim=rank, seed=seed, noise=0.2)
    desc = low @ rng.standard_normal((rank, dim)) + 0.01 * rng.standard_normal((len(tiling), dim))
    desc = (desc / np.linalg.norm(desc, axis=1, keepdims=True)).astype(np.float32)
    path = build_from_descriptors(
        out,
        crs=CRS,
        tiling=tiling,
        tile_ids=np.arange(len(tiling)),
        descriptors=desc,
        encoder=EncoderInfo(model="low", aerial_sha256=ENCODER_SHA, card_sha256="", descriptor_dim=dim, backend="test"),
        region=RegionInfo("low", *CENTER, "descriptors"),
        tile_px=32,
        shard_tiles=shard_tiles,
        hnsw_dim=hnsw_dim,
    )
    return path, desc


# --- imagery --------------------------------------------------------------------------------------


def pattern(east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """RGB uint8 of a smooth pattern of map coordinates (periods of tens of metres)."""
    r = 128 + 90 * np.sin(2 * np.pi * east / 41.0)
    g = 128 + 90 * np.sin(2 * np.pi * north / 37.0)
    b = 128 + 90 * np.sin(2 * np.pi * (east + north) / 53.0)
    return np.clip(np.stack([r, g, b], axis=-1) + 0.5, 0, 255).astype(np.uint8)


def raster_of(crs_def: str, x0: float, y0: float, px: float, shape: tuple[int, int]) -> np.ndarray:
    """The pattern as a north-up raster in ``crs_def`` with top-left corner (x0, y0) and pixel size ``px``."""
    rows, cols = np.indices(shape, dtype=np.float64)
    x, y = x0 + (cols + 0.5) * px, y0 - (rows + 0.5) * px
    to_map = Transformer.from_crs(crs_def, CRS, always_xy=True)
    e, n = to_map.transform(x, y)
    return pattern(np.asarray(e), np.asarray(n))


def write_region(path: Path, imagery: str, size_m: float, tile_m: float | None = None) -> Path:
    lines = [
        "name: pattern",
        f"center_lat: {CENTER[0]}",
        f"center_lon: {CENTER[1]}",
        f"size_m: {size_m}",
        f"crs: '{CRS}'",
        "imagery:",
        *("  " + line for line in imagery.strip().splitlines()),
    ]
    if tile_m:
        lines.append(f"tile_m: {tile_m}")
    path.write_text("\n".join(lines) + "\n")
    return path


def write_geotiff(path: Path, size_m: float = 320.0, px: float = 0.5) -> Path:
    import tifffile

    e, n = MapCRS(CRS).to_en(*CENTER)
    x0, y0 = float(e) - size_m / 2, float(n) + size_m / 2
    shape = (round(size_m / px), round(size_m / px))
    img = raster_of(CRS, x0, y0, px, shape)
    # GTModelType projected, GTRasterType PixelIsArea, ProjectedCSType 32633.
    keys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633]
    tifffile.imwrite(
        path,
        img,
        photometric="rgb",
        extratags=[
            (33550, "d", 3, (px, px, 0.0), False),
            (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), False),
            (34735, "H", len(keys), keys, False),
        ],
    )
    return path


def write_world_file_image(path: Path, size_m: float = 320.0, px: float = 0.6) -> Path:
    """A PNG in Web Mercator (not the map CRS) with its .pgw: the source is reprojected."""
    lat, lon = CENTER
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    k = 1 / np.cos(np.radians(lat))  # Web Mercator metres per ground metre here
    side = size_m * k
    x0, y0 = x - side / 2, y + side / 2
    pxm = px * k
    shape = (round(side / pxm), round(side / pxm))
    img = raster_of("EPSG:3857", x0, y0, pxm, shape)
    cv2.imwrite(str(path), img[..., ::-1])
    # A, D, B, E, C, F: C/F name the centre of the top-left pixel.
    path.with_suffix(".pgw").write_text(f"{pxm}\n0\n0\n{-pxm}\n{x0 + pxm / 2}\n{y0 - pxm / 2}\n")
    return path


def write_xyz(folder: Path, zoom: int = 18, size_m: float = 320.0, tile_px: int = 256) -> Path:
    lat, lon = CENTER
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(lon, lat)
    res = 2 * WEB_MERCATOR_HALF / (tile_px * 2**zoom)
    half = size_m / 2 / np.cos(np.radians(lat)) * 1.1
    tx0, tx1 = (
        int((x - half + WEB_MERCATOR_HALF) / (res * tile_px)),
        int((x + half + WEB_MERCATOR_HALF) / (res * tile_px)),
    )
    ty0, ty1 = (
        int((WEB_MERCATOR_HALF - y - half) / (res * tile_px)),
        int((WEB_MERCATOR_HALF - y + half) / (res * tile_px)),
    )
    for tx in range(tx0, tx1 + 1):
        for ty in range(ty0, ty1 + 1):
            x0 = -WEB_MERCATOR_HALF + tx * tile_px * res
            y0 = WEB_MERCATOR_HALF - ty * tile_px * res
            img = raster_of("EPSG:3857", x0, y0, res, (tile_px, tile_px))
            (folder / str(zoom) / str(tx)).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(folder / str(zoom) / str(tx) / f"{ty}.png"), img[..., ::-1])
    return folder
