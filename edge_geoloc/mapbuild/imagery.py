"""Aerial imagery a map is built from: a region's synthetic world, a GeoTIFF, an image with a world
file, or a folder of XYZ slippy-map tiles. Each gives map tiles the way the model was trained on
them: square, ``size_px`` pixels at ``gsd_m`` metres per pixel, up = true north (rotated by the
meridian convergence at the tile's centre), centred at east/north of the map CRS.

Raster sources resample with one affine warp per tile (a tile spans tens of metres, where any map
projection is affine to far below a pixel) from a pyramid level no coarser than the tile's GSD
(area-averaged halvings, like :mod:`edge_geoloc.world.aerial`). The pyramid is built per window of
the source, with windows aligned to the level's block size, so a tile's pixels do not depend on
which batch or shard rendered it: an interrupted build resumes with identical bytes.

Missing pixels: a GeoTIFF's ``GDAL_NODATA`` tag, an alpha band or an internal (GDAL) mask mark pixels
as missing. They travel through the pyramid and the warp as a fourth channel; :meth:`TileSource.valid_fraction`
tells the build which tiles are mostly missing (not built, counted), and the rest have their missing
pixels filled with the normalization's mean colour (:data:`~edge_geoloc.cameras.rectify.MEAN_FILL`, which
enters the encoder as zero), as a UAV frame's unseen footprint is.

Every way a file can be wrong (a folder, a truncated header or pixel section, a JPEG renamed ``.tif``, a
compression without its codec) is a :class:`SourceError` of one line: the file, what is wrong, what was
expected.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pyproj import CRS, Transformer

from edge_geoloc.geo import MapCRS, Tiling
from edge_geoloc.world.region import Region

log = logging.getLogger(__name__)

WEB_MERCATOR_HALF = 20037508.342789244  # half the world's width in EPSG:3857 metres


class SourceError(ValueError):
    """Imagery that cannot be read or does not cover what a map needs."""


def inset_tiling(e0: float, n0: float, e1: float, n1: float, tile_m: float, what: str) -> Tiling:
    """The dense tiling whose centres start at the north-west corner of [e0, e1] x [n0, n1] and stay inside it."""
    stride = tile_m / 2
    n_cols = int(np.floor((e1 - e0) / stride + 1e-9)) + 1
    n_rows = int(np.floor((n1 - n0) / stride + 1e-9)) + 1
    if e1 < e0 or n1 < n0 or min(n_cols, n_rows) < 2:
        raise SourceError(f"{what}: the imagery leaves no room for two rows and columns of {tile_m:g} m tiles")
    eps = 1e-6  # as in data.synth.world_tiling: no extra column of centres past the last one
    return Tiling(e0, n1 - (n_rows - 1) * stride + eps, e0 + (n_cols - 1) * stride - eps, n1, tile_m)


class TileSource(ABC):
    """Where tiles come from. ``tiling`` is the map's tiling; ``render`` gives (N, size, size, 3) uint8 RGB."""

    kind: str = "?"

    def __init__(self, region: Region) -> None:
        self.region = region
        self.crs: MapCRS = region.map_crs()

    @abstractmethod
    def tiling(self, tile_m: float) -> Tiling: ...

    @abstractmethod
    def render(
        self, east: np.ndarray, north: np.ndarray, size_px: int, gsd_m: float, true_north: bool = True
    ) -> np.ndarray:
        """Tiles centred at east/north; up is true north, or grid north (the map CRS's axes) without ``true_north``."""

    def render_masked(
        self, east: np.ndarray, north: np.ndarray, size_px: int, gsd_m: float, true_north: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Tiles and, for a source with a mask, where they hold imagery ((N, size, size) bool; None: everywhere)."""
        return self.render(east, north, size_px, gsd_m, true_north), None

    def prepare(self, gsd_m: float) -> None:  # noqa: B027 - optional: heavy shared state before forking workers
        """Build what every worker shares (the synthetic world) once, before forking."""

    def native_gsd_m(self) -> float:
        """Ground size of one source pixel in metres (what the imagery can resolve)."""
        return float(self.region.resolution_m)

    def has_mask(self) -> bool:
        """Whether some pixels may be missing (nodata, alpha, a mask); synthetic worlds have none."""
        return False

    def valid_fraction(self, east: np.ndarray, north: np.ndarray, tile_m: float) -> np.ndarray:
        """Share of each tile's footprint that holds imagery (1.0 where the source has no mask)."""
        return np.ones(len(np.atleast_1d(east)))

    def label(self) -> str:
        """What the imagery is, for the manifest and `map info` (a file name, or the synthetic world)."""
        return self.kind


class SyntheticImagery(TileSource):
    """The region's synthetic world, tiled exactly like the training dataset (``data.synth.world_tiling``)."""

    kind = "synthetic"

    def __init__(self, region: Region) -> None:
        super().__init__(region)
        self._world = None

    @property
    def world(self):  # the World, generated lazily (the heavy part)
        if self._world is None:
            from edge_geoloc.world.layout import generate_world

            self._world = generate_world(self.region)
        return self._world

    def prepare(self, gsd_m: float) -> None:
        from edge_geoloc.world.aerial import prepare_aerial

        prepare_aerial(self.world, max_gsd_m=max(gsd_m, self.world.res_m))

    def tiling(self, tile_m: float) -> Tiling:
        from edge_geoloc.data.synth import world_tiling

        return world_tiling(self.world, tile_m)

    def label(self) -> str:
        return f"synthetic {self.region.style} seed {self.region.seed}"

    def render(
        self, east: np.ndarray, north: np.ndarray, size_px: int, gsd_m: float, true_north: bool = True
    ) -> np.ndarray:
        from edge_geoloc.world.aerial import render_aerial

        return np.stack(
            [
                render_aerial(self.world, float(e), float(n), size_px, gsd_m, true_north=true_north)
                for e, n in zip(east, north)
            ]
        )


class RasterSource(TileSource):
    """A georeferenced raster: ``window(r0, r1, c0, c1)`` reads pixels, ``transform`` maps pixel corners to
    source-CRS coordinates: ``x = a*col + b*row + c``, ``y = d*col + e*row + f`` with (0, 0) the top-left
    corner of the top-left pixel."""

    def __init__(
        self,
        region: Region,
        shape: tuple[int, int],
        transform: tuple[float, float, float, float, float, float],
        source_crs: CRS,
        window: Callable[[int, int, int, int], np.ndarray],
        what: str,
        kind: str = "raster",
        valid: Callable[[int, int, int, int], np.ndarray] | None = None,
    ) -> None:
        super().__init__(region)
        self.kind = kind
        self._valid = valid  # window -> bool (True where the pixel holds imagery), None: every pixel does
        self.shape = (int(shape[0]), int(shape[1]))
        a, b, c, d, e, f = (float(v) for v in transform)
        det = a * e - b * d
        if not np.isfinite(det) or abs(det) < 1e-30:
            raise SourceError(f"{what}: degenerate georeferencing {transform}")
        self.transform = (a, b, c, d, e, f)
        self._inv = np.array([[e, -b], [-d, a]]) / det
        self.source_crs = source_crs
        self._read = window
        self.what = what
        self._to_src = Transformer.from_crs(self.crs.crs, source_crs, always_xy=True)
        self._to_map = Transformer.from_crs(source_crs, self.crs.crs, always_xy=True)
        self._cache: OrderedDict[tuple[int, int, int, int, int], np.ndarray] = OrderedDict()
        self._pixel_m: float | None = None

    def _pixel(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, f = self.transform[2], self.transform[5]
        dx, dy = np.asarray(x) - c, np.asarray(y) - f
        return self._inv[0, 0] * dx + self._inv[0, 1] * dy, self._inv[1, 0] * dx + self._inv[1, 1] * dy

    def _en_of_pixels(self, col: np.ndarray, row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, c, d, e, f = self.transform
        col, row = np.asarray(col, dtype=np.float64), np.asarray(row, dtype=np.float64)
        x, y = a * col + b * row + c, d * col + e * row + f
        east, north = self._to_map.transform(x, y)
        return np.asarray(east), np.asarray(north)

    def native_gsd_m(self) -> float:
        return self.pixel_m()

    def has_mask(self) -> bool:
        return self._valid is not None

    def label(self) -> str:
        return Path(self.what).name if self.kind in ("geotiff", "worldfile") else self.what

    def valid_fraction(self, east: np.ndarray, north: np.ndarray, tile_m: float) -> np.ndarray:
        if self._valid is None:
            return super().valid_fraction(east, north, tile_m)
        east, north = np.atleast_1d(np.asarray(east, float)), np.atleast_1d(np.asarray(north, float))
        out = np.empty(len(east))
        size = 16  # a coarse look is enough to tell "mostly missing"
        for s in range(0, len(east), 256):
            _, valid = self.render_masked(east[s : s + 256], north[s : s + 256], size, tile_m / size)
            out[s : s + 256] = valid.reshape(len(valid), -1).mean(axis=1)
        return out

    def pixel_m(self) -> float:
        """Ground size of a source pixel in map metres, at the image centre (the smaller side)."""
        h, w = self.shape
        e, n = self._en_of_pixels([w / 2, w / 2 + 1, w / 2], [h / 2, h / 2, h / 2 + 1])
        return float(min(np.hypot(e[1] - e[0], n[1] - n[0]), np.hypot(e[2] - e[0], n[2] - n[0])))

    def tiling(self, tile_m: float) -> Tiling:
        """Tiles of the region's square area that lie wholly inside the imagery (rotation margin included)."""
        h, w = self.shape
        cols = np.concatenate([np.linspace(0, w, 33), np.full(33, w), np.linspace(w, 0, 33), np.zeros(33)])
        rows = np.concatenate([np.zeros(33), np.linspace(0, h, 33), np.full(33, h), np.linspace(h, 0, 33)])
        e, n = self._en_of_pixels(cols, rows)
        # The largest axis-aligned box inside the (slightly curved) footprint, conservatively.
        top, right, bottom, left = (slice(i * 33, (i + 1) * 33) for i in range(4))
        e0, e1 = float(np.max(e[left])), float(np.min(e[right]))
        n0, n1 = float(np.max(n[bottom])), float(np.min(n[top]))
        ce, cn = self.region.center_en()
        half = self.region.size_m / 2
        lat, lon = self.crs.to_latlon(ce, cn)
        gamma = np.radians(abs(float(self.crs.convergence_deg(lat, lon))) + 0.5)
        margin = tile_m / 2 * (np.cos(gamma) + np.sin(gamma)) + 2 * self.pixel_m()
        box = (
            max(e0, ce - half) + margin,
            max(n0, cn - half) + margin,
            min(e1, ce + half) - margin,
            min(n1, cn + half) - margin,
        )
        return inset_tiling(*box, tile_m, f"{self.what} within region '{self.region.name}'")

    def _level(self, gsd_m: float) -> int:
        if self._pixel_m is None:
            self._pixel_m = self.pixel_m()
        return max(0, int(np.floor(np.log2(gsd_m / self._pixel_m) + 1e-9)))

    def _window(self, level: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Pixels [r0, r1) x [c0, c1) of pyramid level ``level`` (level-0 window aligned to 2**level)."""
        key = (level, r0, r1, c0, c1)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        s = 1 << level
        rows, cols = (r0 * s, min(r1 * s, self.shape[0])), (c0 * s, min(c1 * s, self.shape[1]))
        img = self._read(*rows, *cols)
        if self._valid is not None:  # the mask rides along as a fourth channel (255: imagery, 0: missing)
            mask = self._valid(*rows, *cols).astype(np.uint8) * np.uint8(255)
            img = np.concatenate([img, mask[..., None]], axis=2)
        for _ in range(level):
            h, w = img.shape[:2]
            img = cv2.resize(img[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        self._cache[key] = img
        while len(self._cache) > 4:
            self._cache.popitem(last=False)
        return img

    def render(
        self, east: np.ndarray, north: np.ndarray, size_px: int, gsd_m: float, true_north: bool = True
    ) -> np.ndarray:
        """Tiles (N, size, size, 3) RGB; missing pixels are the normalization's mean colour."""
        from edge_geoloc.cameras.rectify import MEAN_FILL

        out, valid = self.render_masked(east, north, size_px, gsd_m, true_north)
        if valid is not None:
            out[~valid] = MEAN_FILL
        return out

    def render_masked(
        self, east: np.ndarray, north: np.ndarray, size_px: int, gsd_m: float, true_north: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        east, north = np.atleast_1d(np.asarray(east, float)), np.atleast_1d(np.asarray(north, float))
        lat, lon = self.crs.to_latlon(east, north)
        gamma = np.radians(self.crs.convergence_deg(lat, lon)) if true_north else np.zeros(len(east))
        cg, sg = np.cos(gamma), np.sin(gamma)
        c = (size_px - 1) / 2.0
        # Output pixels (0,0), (size-1,0), (0,size-1) of each tile in map metres, then source pixels.
        j = np.array([0.0, size_px - 1, 0.0])
        i = np.array([0.0, 0.0, size_px - 1])
        de, dn = gsd_m * (j - c), gsd_m * (i - c)
        pe = east[:, None] + de * cg[:, None] + dn * sg[:, None]
        pn = north[:, None] + de * sg[:, None] - dn * cg[:, None]
        x, y = self._to_src.transform(pe, pn)
        col, row = self._pixel(np.asarray(x), np.asarray(y))
        level = self._level(gsd_m)
        s = float(1 << level)
        col, row = col / s, row / s  # corner-based coordinates at this level
        # The tile footprints' bounding box (corners via the affine map), aligned window at this level.
        u = col[:, 1:] - col[:, :1]
        v = row[:, 1:] - row[:, :1]
        cc = np.concatenate([col, (col[:, 0] + u[:, 0] + u[:, 1])[:, None]], axis=1)
        rr = np.concatenate([row, (row[:, 0] + v[:, 0] + v[:, 1])[:, None]], axis=1)
        h_l, w_l = self.shape[0] >> level, self.shape[1] >> level
        tol = 1.0  # footprint points are output pixel centres: half an output pixel (< 1 source pixel) may overhang
        outside = (cc.min(1) < -tol) | (rr.min(1) < -tol) | (cc.max(1) > w_l + tol) | (rr.max(1) > h_l + tol)
        if np.any(outside):
            k = int(np.argmax(outside))
            raise SourceError(
                f"{self.what}: the tile centred at east {east[k]:.1f}, north {north[k]:.1f} reaches outside the imagery"
            )
        c0, c1 = max(int(np.floor(cc.min())) - 2, 0), min(int(np.ceil(cc.max())) + 2, w_l)
        r0, r1 = max(int(np.floor(rr.min())) - 2, 0), min(int(np.ceil(rr.max())) + 2, h_l)
        img = self._window(level, r0, r1, c0, c1)
        out = np.empty((len(east), size_px, size_px, img.shape[2]), dtype=np.uint8)
        step = max(size_px - 1, 1)
        for t in range(len(east)):
            # cv2 puts pixel centres at integers: corner-based minus one half.
            m = np.array(
                [
                    [(col[t, 1] - col[t, 0]) / step, (col[t, 2] - col[t, 0]) / step, col[t, 0] - 0.5 - c0],
                    [(row[t, 1] - row[t, 0]) / step, (row[t, 2] - row[t, 0]) / step, row[t, 0] - 0.5 - r0],
                ]
            )
            # Output pixel (0, 0)'s centre maps to the first footprint point (the points are pixel centres).
            out[t] = cv2.warpAffine(
                img,
                m,
                (size_px, size_px),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_REPLICATE,
            ).reshape(size_px, size_px, -1)
        if self._valid is None:
            return out, None
        return np.ascontiguousarray(out[..., :3]), out[..., 3] >= 128


def _rgb(img: np.ndarray, what: str) -> np.ndarray:
    """Any uint8 grey / RGB / RGBA raster as RGB."""
    if img.dtype != np.uint8:
        raise SourceError(f"{what}: expected 8-bit imagery, got {img.dtype} (convert it to 8-bit RGB first)")
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.ndim == 3 and img.shape[2] in (3, 4):
        return img[..., :3]
    raise SourceError(f"{what}: expected a grey, RGB or RGBA image, got shape {img.shape}")


# --- GeoTIFF --------------------------------------------------------------------------------------

_PIXEL_SCALE, _TIEPOINT, _TRANSFORMATION, _GEOKEYS = 33550, 33922, 34264, 34735
_RASTER_TYPE, _GEOGRAPHIC_TYPE, _PROJECTED_TYPE = 1025, 2048, 3072
_USER_DEFINED = 32767


_GDAL_NODATA = 42113
_MAGIC = {b"\xff\xd8\xff": "a JPEG", b"\x89PNG": "a PNG", b"GIF8": "a GIF", b"BM": "a BMP", b"%PDF": "a PDF"}
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _tiff_error(path: Path, err: BaseException) -> SourceError:
    """One line for a file tifffile cannot read: what it is instead, or what tifffile says went wrong."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        head = b""
    if head and not head.startswith(_TIFF_MAGIC):
        kind = next((name for magic, name in _MAGIC.items() if head.startswith(magic)), "not a TIFF")
        return SourceError(f"{path}: {kind} file, not a TIFF; expected a GeoTIFF (imagery.kind: geotiff)")
    if isinstance(err, ModuleNotFoundError) or "imagecodecs" in str(err):
        return SourceError(
            f"{path}: compressed with a codec tifffile cannot decode without imagecodecs"
            " (pip install imagecodecs, part of edge-geoloc[workstation])"
        )
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    size = path.stat().st_size if path.exists() else 0
    return SourceError(
        f"{path}: not a readable GeoTIFF ({reason}; {size} bytes, truncated or damaged?);"
        " expected a whole TIFF with GeoTIFF tags"
    )


def geotiff_georef(path: str | Path, crs_override: str | None = None) -> tuple[tuple[int, int], tuple, CRS]:
    """(shape, corner-based affine transform, CRS) from a GeoTIFF's tags."""
    shape, transform, crs, _ = _geotiff_header(Path(path), crs_override)
    return shape, transform, crs


def _geotiff_header(path: Path, crs_override: str | None) -> tuple[tuple[int, int], tuple, CRS, dict[int, Any]]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            tags = {t.code: t.value for t in page.tags.values()}
            shape = (int(page.shape[0]), int(page.shape[1]))
    except Exception as err:  # tifffile raises IndexError, ValueError, struct.error... on a damaged header
        raise _tiff_error(path, err) from None
    keys: dict[int, int] = {}
    if _GEOKEYS in tags:
        try:
            gk = [int(v) for v in tags[_GEOKEYS]]
            for k in range(gk[3]):
                key_id, location, _, value = gk[4 + 4 * k : 8 + 4 * k]
                if location == 0:  # short values stored inline; others (doubles, ASCII) are not needed here
                    keys[key_id] = value
        except (ValueError, TypeError, IndexError):
            raise SourceError(
                f"{path}: a damaged GeoKeyDirectory tag; expected a GeoTIFF written by GDAL or tifffile"
            ) from None
    point = keys.get(_RASTER_TYPE, 1) == 2  # PixelIsPoint: tie points name pixel centres
    try:
        if _TRANSFORMATION in tags:
            m = [float(v) for v in tags[_TRANSFORMATION]]
            a, b, c, d, e, f = m[0], m[1], m[3], m[4], m[5], m[7]
        elif _PIXEL_SCALE in tags and _TIEPOINT in tags:
            sx, sy = float(tags[_PIXEL_SCALE][0]), float(tags[_PIXEL_SCALE][1])
            i, j, _, x, y, _ = (float(v) for v in tags[_TIEPOINT][:6])
            a, b, c, d, e, f = sx, 0.0, x - i * sx, 0.0, -sy, y + j * sy
        else:
            raise SourceError(
                f"{path}: no GeoTIFF georeferencing (ModelPixelScale + ModelTiepoint or ModelTransformation);"
                " a plain image needs imagery.kind: worldfile and a world file"
            )
    except (ValueError, TypeError, IndexError):
        raise SourceError(
            f"{path}: damaged georeferencing tags (ModelPixelScale/ModelTiepoint/ModelTransformation)"
        ) from None
    if point:
        c, f = c - 0.5 * (a + b), f - 0.5 * (d + e)
    if crs_override:
        crs = CRS.from_user_input(crs_override)
    else:
        code = keys.get(_PROJECTED_TYPE, keys.get(_GEOGRAPHIC_TYPE))
        if code is None or code == _USER_DEFINED:
            raise SourceError(f"{path}: the GeoTIFF names no EPSG CRS; give one as imagery.crs in the region YAML")
        try:
            crs = CRS.from_epsg(code)
        except Exception:
            raise SourceError(f"{path}: EPSG:{code} is not a CRS pyproj knows; give one as imagery.crs") from None
    return shape, (a, b, c, d, e, f), crs, tags


def _nodata_value(path: Path, tags: dict[int, Any]) -> float | None:
    """The GDAL_NODATA tag's value (an ASCII number), None without one."""
    raw = tags.get(_GDAL_NODATA)
    if raw is None:
        return None
    text = (raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)).strip().strip("\x00")
    try:
        return float(text)
    except ValueError:
        raise SourceError(f"{path}: GDAL_NODATA tag {text!r} is not a number") from None


def open_geotiff(region: Region, path: Path) -> RasterSource:
    """A GeoTIFF (tiled or stripped, any compression tifffile + imagecodecs decode; 8-bit grey, RGB or RGBA)
    with its missing pixels from GDAL_NODATA, an alpha band or an internal mask."""
    import tifffile

    shape, transform, crs, tags = _geotiff_header(path, region.imagery.crs if region.imagery else None)
    mask = None
    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes
            extra = tags.get(338)  # ExtraSamples: 1 or 2 mark an alpha channel
            masks = [pg for pg in tif.pages[1:] if getattr(pg, "is_mask", False) and pg.shape[:2] == shape]
            if masks:
                mask = masks[0].asarray() != 0  # a GDAL internal mask (NewSubfileType mask, 255 = valid)
        try:
            data = tifffile.memmap(path, mode="r")  # uncompressed, contiguous: read only the windows used
        except (ValueError, OSError):
            data = tifffile.imread(path)
    except SourceError:
        raise
    except Exception as err:  # a truncated pixel section, a codec missing: tifffile's many exception types
        raise _tiff_error(path, err) from None
    if data.ndim == 3 and axes.startswith("S"):  # planar -> pixel interleaved
        data = np.moveaxis(data, 0, -1)
    if data.ndim not in (2, 3) or data.shape[:2] != shape:
        raise SourceError(f"{path}: pixel array {data.shape} does not match the page's {shape}; expected one image")
    bands = 1 if data.ndim == 2 else data.shape[2]
    alpha = bands in (2, 4) and (extra is not None or bands == 4)
    nodata = _nodata_value(path, tags)
    if nodata is not None and not (0 <= nodata <= 255 and nodata == int(nodata)):
        nodata = None  # outside 8-bit: no pixel can hold it
    what = str(path)

    def rgb(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        block = np.asarray(data[r0:r1, c0:c1])
        if bands == 2:  # grey + alpha
            block = block[..., 0]
        return _rgb(block, what)

    valid = None
    if nodata is not None or alpha or mask is not None:

        def valid(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
            block = np.asarray(data[r0:r1, c0:c1])
            ok = np.ones(block.shape[:2], dtype=bool)
            colour = block if block.ndim == 2 else block[..., : (1 if bands == 2 else min(bands, 3))]
            if nodata is not None:
                same = colour == nodata
                ok &= ~(same if same.ndim == 2 else same.all(axis=2))
            if alpha:
                ok &= block[..., -1] >= 128
            if mask is not None:
                ok &= mask[r0:r1, c0:c1]
            return ok

    if data.dtype != np.uint8:
        raise SourceError(f"{path}: expected 8-bit imagery, got {data.dtype} (convert it to 8-bit RGB first)")
    return RasterSource(region, shape, transform, crs, rgb, what, kind="geotiff", valid=valid)


# --- image + world file ---------------------------------------------------------------------------


def world_file_for(image: Path) -> Path:
    ext = image.suffix.lstrip(".")
    names = [f"{ext[0]}{ext[-1]}w", f"{ext}w", "wld"] if ext else ["wld"]
    for name in names:
        for cand in (image.with_suffix("." + name), image.with_suffix("." + name.upper())):
            if cand.exists():
                return cand
    raise SourceError(f"{image}: no world file beside it (looked for {', '.join('.' + n for n in names)})")


def read_world_file(path: Path) -> tuple[float, float, float, float, float, float]:
    """A world file's six lines (A, D, B, E, C, F) as a corner-based transform (a, b, c, d, e, f)."""
    try:
        values = [float(v) for v in path.read_text().split()]
    except ValueError:
        raise SourceError(f"{path}: a world file holds six numbers, one per line") from None
    if len(values) != 6:
        raise SourceError(f"{path}: a world file holds six numbers, got {len(values)}")
    A, D, B, E, C, F = values
    # (C, F) is the centre of the top-left pixel: shift half a pixel to its corner.
    return A, B, C - 0.5 * (A + B), D, E, F - 0.5 * (D + E)


def open_world_file_image(region: Region, path: Path) -> RasterSource:
    assert region.imagery is not None and region.imagery.crs
    transform = read_world_file(world_file_for(path))
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise SourceError(f"{path}: not a readable image")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGBA if img.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    img = _rgb(img, str(path))
    crs = CRS.from_user_input(region.imagery.crs)
    return RasterSource(
        region, img.shape[:2], transform, crs, lambda r0, r1, c0, c1: img[r0:r1, c0:c1], str(path), kind="worldfile"
    )


# --- XYZ slippy tiles -----------------------------------------------------------------------------


def open_xyz(region: Region, folder: Path) -> RasterSource:
    """A folder ``z/x/y.png`` (or .jpg) of Web Mercator tiles, mosaicked on demand."""
    if not folder.is_dir():
        raise SourceError(f"{folder}: no such folder of XYZ tiles")
    zooms = sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if not zooms:
        raise SourceError(f"{folder}: no zoom folders (expected z/x/y.png)")
    zoom = region.imagery.zoom if region.imagery and region.imagery.zoom is not None else zooms[-1]
    zdir = folder / str(zoom)
    if not zdir.is_dir():
        raise SourceError(f"{folder}: no tiles at zoom {zoom} (zooms present: {zooms})")
    files: dict[tuple[int, int], Path] = {}
    pat = re.compile(r"^(\d+)\.(png|jpg|jpeg)$", re.IGNORECASE)
    for xdir in zdir.iterdir():
        if xdir.is_dir() and xdir.name.isdigit():
            for f in xdir.iterdir():
                m = pat.match(f.name)
                if m:
                    files[(int(xdir.name), int(m.group(1)))] = f
    if not files:
        raise SourceError(f"{zdir}: no tiles (expected x/y.png)")
    xs = np.array([k[0] for k in files])
    ys = np.array([k[1] for k in files])
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    first = cv2.imread(str(next(iter(files.values()))), cv2.IMREAD_COLOR)
    if first is None:
        raise SourceError(f"{next(iter(files.values()))}: not a readable image")
    tpx = first.shape[0]
    res = 2 * WEB_MERCATOR_HALF / (tpx * 2**zoom)
    transform = (res, 0.0, -WEB_MERCATOR_HALF + x0 * tpx * res, 0.0, -res, WEB_MERCATOR_HALF - y0 * tpx * res)
    shape = ((y1 - y0) * tpx, (x1 - x0) * tpx)

    def window(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        out = np.empty((r1 - r0, c1 - c0, 3), dtype=np.uint8)
        for ty in range(r0 // tpx, (r1 - 1) // tpx + 1):
            for tx in range(c0 // tpx, (c1 - 1) // tpx + 1):
                f = files.get((x0 + tx, y0 + ty))
                if f is None:
                    raise SourceError(f"{zdir}/{x0 + tx}/{y0 + ty}.png: missing, and the map needs it")
                img = cv2.imread(str(f), cv2.IMREAD_COLOR)
                if img is None or img.shape[:2] != (tpx, tpx):
                    raise SourceError(f"{f}: not a readable {tpx} x {tpx} image")
                tr0, tc0 = ty * tpx, tx * tpx
                a, b = max(r0, tr0), min(r1, tr0 + tpx)
                c, d = max(c0, tc0), min(c1, tc0 + tpx)
                out[a - r0 : b - r0, c - c0 : d - c0] = img[a - tr0 : b - tr0, c - tc0 : d - tc0, ::-1]
        return out

    return RasterSource(region, shape, transform, CRS.from_epsg(3857), window, f"{zdir} (XYZ zoom {zoom})", kind="xyz")


def open_imagery(region: Region, region_file: str | Path | None = None) -> TileSource:
    """The imagery of a region; relative imagery paths are resolved against the region YAML's folder."""
    imagery = region.imagery
    if imagery is None or imagery.kind == "synthetic":
        return SyntheticImagery(region)
    path = Path(imagery.path or "")
    if not path.is_absolute() and region_file is not None:
        path = Path(region_file).parent / path
    if imagery.kind != "xyz" and not path.exists():
        raise SourceError(f"{path}: no such imagery file (region '{region.name}', imagery.path)")
    if imagery.kind != "xyz" and path.is_dir():
        raise SourceError(
            f"{path}: is a folder; imagery.kind {imagery.kind} expects a file (a folder of z/x/y tiles is imagery.kind: xyz)"
        )
    if imagery.kind == "geotiff":
        return open_geotiff(region, path)
    if imagery.kind == "worldfile":
        return open_world_file_image(region, path)
    return open_xyz(region, path)
