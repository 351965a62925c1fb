"""The map's imagery layer on the device: windows of ``ortho.tif`` around a position, for registration.

The layer is the orthophoto the map's tiles were cut from, resampled once at a GSD chosen for
registration (0.25-0.5 m/px by default) and stored as a tiled, WebP-compressed GeoTIFF with
overviews (:mod:`edge_geoloc.mapbuild.ortho` writes it). Cloud-optimized where it matters here: the
base level's IFD and tile index come first and every tile is one byte range; the overviews' IFDs
follow their data (tifffile's order), so GDAL's strict COG validator would flag it. A window reads
only the TIFF tiles it overlaps: their byte ranges from the page's tile offsets, decoded one by one
(tifffile + imagecodecs), with a small LRU cache for the frames that follow; the whole image is
never decoded.

Frame (the one contract registration codes against):

- coordinates are the bundle's metric frame, east/north metres of the map CRS (``manifest.crs``),
  the frame the tile table's ``east``/``north`` centres are in;
- windows are *grid*-north-up: rows run south along the CRS north axis, columns east along its east
  axis. Grid north differs from true north by the meridian convergence (``MapCRS.convergence_deg``,
  ``heading_true = heading_grid + convergence``; the loop holds it as ``loop.convergence``), so a
  true-north-up patch is rotated by ``-convergence`` (``rectify(..., up_deg=-convergence)`` gives
  true north; ``up_deg=0`` grid north, the window's own orientation);
- ``window(x, y, half_m)`` is ``2k+1`` pixels square with ``k = round(half_m / gsd_m)``; the
  *centre* of pixel (i, j) lies at ``east = x + (j - k) * gsd_m``, ``north = y - (i - k) * gsd_m``,
  so the middle pixel (k, k) is centred exactly on (x, y). Stored pixels follow PixelIsArea (pixel
  (r, c) of the file is centred at ``east_min + (c + 0.5) * gsd``, ``north_max - (r + 0.5) * gsd``);
  a window off that grid is resampled bilinearly by the fraction of a pixel.
- the mask is False where the window leaves the layer's coverage or the source had no imagery
  (nodata); those pixels are 0.

Integrity: the bundle checks the file's size at open (a truncated copy is refused) and its sha256
with ``verify="full"`` (`map info --verify`); each base tile's bytes are checked against
``ortho.sha256.npy`` (hashed at open, a few MB for a city) the first time the tile is read, as a
shard is before its first search: a flipped byte in a WebP tile would otherwise decode to plausible
garbage. Either failure is a :class:`BundleError` naming the file and the tile.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_geoloc.maps.bundle import MANIFEST, ORTHO, ORTHO_HASHES, Bundle, BundleError, OrthoInfo

__all__ = ["ORTHO", "ORTHO_HASHES", "MapOrtho"]

log = logging.getLogger(__name__)

MAX_WINDOW_PX = 4097  # a window side beyond this (1 km at 0.25 m/px) is a caller's bug, not a registration
CACHE_TILES = 48  # decoded tiles kept (48 x 256 x 256 x 4 B = 12 MiB): a few frames' windows
_SAID: set[str] = set()  # bundles already reported without imagery (said once per process)


class MapOrtho:
    """An opened imagery layer: ``window()`` reads north-up pixels around a position (see the module).

    One reader per thread: the file handle and the tile cache are not shared safely."""

    def __init__(self, folder: str | Path, info: OrthoInfo, hashes: np.ndarray | None = None) -> None:
        """``hashes``: (tiles, 32) uint8 sha256 digests of the base tiles' bytes (None: trust the file)."""
        import tifffile

        self.path = Path(folder) / info.file
        self.info = info
        try:
            self._tif = tifffile.TiffFile(self.path)
            page = self._tif.pages[0]
            channels = page.shape[2] if len(page.shape) == 3 else 1
            ok = page.is_tiled and page.tilewidth == page.tilelength == info.tile_px
            shape = (info.height, info.width, 4 if info.alpha else 3)
        except Exception as err:  # tifffile raises many types on a damaged header
            raise BundleError(
                f"{self.path}: not a readable imagery layer ({err}); copy or build the map again"
            ) from None
        if not ok or (page.shape[0], page.shape[1], channels) != shape or page.dtype != np.uint8:
            self._tif.close()
            raise BundleError(
                f"{self.path}: a {page.shape} {page.dtype} page tiled {page.tilelength} px, the manifest says"
                f" {shape} uint8 tiled {info.tile_px} px"
            )
        self._page = page
        self._cols = -(-info.width // info.tile_px)
        n_tiles = len(page.dataoffsets)
        if hashes is not None and hashes.shape != (n_tiles, 32):
            self._tif.close()
            raise BundleError(f"{self.path.with_name(ORTHO_HASHES)}: {hashes.shape} digests, expected ({n_tiles}, 32)")
        self._hashes = hashes
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.tiles_decoded = 0  # TIFF tiles decoded so far (a window reads only the tiles it overlaps)

    @classmethod
    def open(cls, bundle_or_dir: Bundle | str | Path) -> MapOrtho | None:
        """The bundle's imagery layer, or None (said once) when the bundle has none. A folder is opened as a
        :class:`Bundle` (sizes of every file, hashes of the small tables); a Bundle keeps its own ``verify``."""
        bundle = bundle_or_dir if isinstance(bundle_or_dir, Bundle) else Bundle(bundle_or_dir)
        info = bundle.manifest.ortho
        if info is None:
            if str(bundle.path) not in _SAID:
                _SAID.add(str(bundle.path))
                log.warning("%s: the map has no imagery layer (%s): metric refinement is off", bundle.path, ORTHO)
            return None
        for name in (info.file, ORTHO_HASHES):
            if name not in bundle.manifest.files:
                raise BundleError(f"{bundle.path / MANIFEST}: the imagery layer's '{name}' is not among its files")
        hashes = None
        if bundle.verify != "none":
            hashes = np.load(bundle.path / ORTHO_HASHES, allow_pickle=False)
            if hashes.dtype != np.uint8 or hashes.ndim != 2:
                raise BundleError(
                    f"{bundle.path / ORTHO_HASHES}: {hashes.dtype} {hashes.shape}, expected (tiles, 32) uint8"
                )
        return cls(bundle.path, info, hashes)

    @property
    def gsd_m(self) -> float:
        return self.info.gsd_m

    def bounds(self) -> tuple[float, float, float, float]:
        """(east_min, north_min, east_max, north_max) of the coverage's outer pixel edges."""
        i = self.info
        return i.east_min, i.north_max - i.height * i.gsd_m, i.east_min + i.width * i.gsd_m, i.north_max

    def window(self, x_m: float, y_m: float, half_m: float) -> tuple[np.ndarray, np.ndarray]:
        """(pixels (n, n, 3) uint8 RGB, valid (n, n) bool), n = 2*round(half_m/gsd)+1, centred on (x_m, y_m)."""
        if not (np.isfinite(x_m) and np.isfinite(y_m) and np.isfinite(half_m) and half_m >= 0):
            raise ValueError(f"window centre and half side must be finite (half >= 0), got {x_m}, {y_m}, {half_m}")
        g, k = self.info.gsd_m, round(float(half_m) / self.info.gsd_m)
        n = 2 * k + 1
        if n > MAX_WINDOW_PX:
            raise ValueError(f"window of +-{half_m:g} m is {n} px a side at {g:g} m/px; at most {MAX_WINDOW_PX}")
        # Layer pixel coordinates (pixel centres at integers) of the window's pixel (0, 0).
        fc = (x_m - self.info.east_min) / g - 0.5 - k
        fr = (self.info.north_max - y_m) / g - 0.5 - k
        c0, r0 = int(np.floor(fc)), int(np.floor(fr))
        block = self._read(r0, r0 + n + 1, c0, c0 + n + 1)  # one extra row/column for the sub-pixel shift
        shift = np.array([[1.0, 0.0, fc - c0], [0.0, 1.0, fr - r0]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        rgb = cv2.warpAffine(block[..., :3], shift, (n, n), flags=flags)
        weight = cv2.warpAffine((block[..., 3] >= 128).astype(np.float32), shift, (n, n), flags=flags)
        valid = weight >= 1.0 - 1e-4  # every pixel the bilinear sample leans on holds imagery
        rgb[~valid] = 0
        return rgb, valid

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Layer pixels [r0, r1) x [c0, c1) as RGBA (alpha 0 outside the coverage or at nodata)."""
        out = np.zeros((r1 - r0, c1 - c0, 4), dtype=np.uint8)
        i, t = self.info, self.info.tile_px
        ra, rb, ca, cb = max(r0, 0), min(r1, i.height), max(c0, 0), min(c1, i.width)
        for tr in range(ra // t, (rb - 1) // t + 1) if ra < rb and ca < cb else ():
            for tc in range(ca // t, (cb - 1) // t + 1):
                tile = self._tile(tr * self._cols + tc)
                y0, y1 = max(ra, tr * t), min(rb, (tr + 1) * t)
                x0, x1 = max(ca, tc * t), min(cb, (tc + 1) * t)
                out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0] = tile[y0 - tr * t : y1 - tr * t, x0 - tc * t : x1 - tc * t]
        return out

    def _bytes(self, index: int) -> bytes:
        page = self._page
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if not count:
            return b""
        fh = self._tif.filehandle
        fh.seek(offset)
        data = fh.read(count)
        if len(data) != count:
            raise BundleError(f"{self.path}: tile {index} holds {len(data)} of its {count} bytes (truncated)")
        return data

    def raw_tile(self, index: int) -> bytes:
        """The compressed bytes of base tile ``index`` (row-major; b"" for a sparse tile), checked against
        their sha256."""
        data = self._bytes(index)
        if self._hashes is not None and hashlib.sha256(data).digest() != self._hashes[index].tobytes():
            raise BundleError(
                f"{self.path}: tile {index} fails its sha256 in {ORTHO_HASHES} (the file is corrupt;"
                " copy or build the map again)"
            )
        return data

    def _tile(self, index: int) -> np.ndarray:
        """One TIFF tile as RGBA (t, t, 4), decoded from its byte range alone; a sparse tile (no bytes: a
        corridor extract leaves out what lies far from the route) is all missing."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        t = self.info.tile_px
        tile = np.zeros((t, t, 4), dtype=np.uint8)
        try:
            data = self.raw_tile(index)
            if data:
                segment: Any = self._page.decode(data, index, jpegtables=self._page.jpegtables)[0]
                decoded = np.asarray(segment, dtype=np.uint8).reshape(t, t, -1)
                tile[..., : decoded.shape[2]] = decoded
                if decoded.shape[2] == 3:
                    tile[..., 3] = 255
                self.tiles_decoded += 1
        except BundleError:
            raise
        except Exception as err:  # imagecodecs raises its own error types on corrupt data
            raise BundleError(
                f"{self.path}: tile {index} does not decode ({err}); the file is corrupt: copy or build the map again"
            ) from None
        self._cache[index] = tile
        while len(self._cache) > CACHE_TILES:
            self._cache.popitem(last=False)
        return tile

    def close(self) -> None:
        self._tif.close()

    def __enter__(self) -> MapOrtho:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
