"""The map's imagery layer on the device: windows of ``ortho.tif`` around a position, for registration.

The layer is the orthophoto the map's tiles were cut from, resampled once at a GSD chosen for
registration (0.25-0.5 m/px by default) and stored as a tiled, WebP-compressed GeoTIFF with
overviews (Cloud-Optimized layout: :mod:`edge_geoloc.mapbuild.ortho` writes it). A window reads
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
with ``verify="full"`` (`map info --verify`); a tile that fails to decode is a :class:`BundleError`
naming the file and the tile.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_geoloc.maps.bundle import MANIFEST, Bundle, BundleError, OrthoInfo, read_manifest

log = logging.getLogger(__name__)

ORTHO = "ortho.tif"
CACHE_TILES = 48  # decoded tiles kept (48 x 256 x 256 x 4 B = 12 MiB): a few frames' windows
_SAID: set[str] = set()  # bundles already reported without imagery (said once per process)


class MapOrtho:
    """An opened imagery layer: ``window()`` reads north-up pixels around a position (see the module)."""

    def __init__(self, folder: str | Path, info: OrthoInfo) -> None:
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
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self.tiles_decoded = 0  # TIFF tiles decoded so far (a window reads only the tiles it overlaps)

    @classmethod
    def open(cls, bundle_or_dir: Bundle | str | Path) -> MapOrtho | None:
        """The bundle's imagery layer, or None (said once) when the bundle has none."""
        if isinstance(bundle_or_dir, Bundle):
            folder, manifest = bundle_or_dir.path, bundle_or_dir.manifest  # sizes (and hashes) checked at open
        else:
            folder = Path(bundle_or_dir)
            manifest = read_manifest(folder)
        if manifest.ortho is None:
            if str(folder) not in _SAID:
                _SAID.add(str(folder))
                log.warning("%s: the map has no imagery layer (ortho.tif): metric refinement is off", folder)
            return None
        name = manifest.ortho.file
        listed = manifest.files.get(name)
        if listed is None:
            raise BundleError(f"{folder / MANIFEST}: the imagery layer '{name}' is not among the manifest's files")
        if not isinstance(bundle_or_dir, Bundle):  # a bare folder: the size check the bundle makes at open
            f = folder / name
            size = f.stat().st_size if f.exists() else None
            if size != listed.bytes:
                what = "missing" if size is None else f"{size} bytes, the manifest says {listed.bytes} (truncated?)"
                raise BundleError(f"{f}: {what}")
        return cls(folder, manifest.ortho)

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
        # Layer pixel coordinates (pixel centres at integers) of the window's pixel (0, 0).
        fc = (x_m - self.info.east_min) / g - 0.5 - k
        fr = (self.info.north_max - y_m) / g - 0.5 - k
        c0, r0 = int(np.floor(fc)), int(np.floor(fr))
        block = self._read(r0, r0 + n + 1, c0, c0 + n + 1)  # one extra row/column for the sub-pixel shift
        shift = np.array([[1.0, 0.0, fc - c0], [0.0, 1.0, fr - r0]])
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        rgb = cv2.warpAffine(block[..., :3], shift, (n, n), flags=flags)
        weight = cv2.warpAffine((block[..., 3] == 255).astype(np.float32), shift, (n, n), flags=flags)
        valid = weight >= 1.0 - 1e-4  # every pixel the bilinear sample leans on holds imagery
        rgb[~valid] = 0
        return rgb, valid

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        """Layer pixels [r0, r1) x [c0, c1) as RGBA (alpha 0 outside the coverage or at nodata)."""
        out = np.zeros((r1 - r0, c1 - c0, 4), dtype=np.uint8)
        i, t = self.info, self.info.tile_px
        ra, rb, ca, cb = max(r0, 0), min(r1, i.height), max(c0, 0), min(c1, i.width)
        if ra >= rb or ca >= cb:
            return out
        for tr in range(ra // t, (rb - 1) // t + 1):
            for tc in range(ca // t, (cb - 1) // t + 1):
                tile = self._tile(tr * self._cols + tc)
                y0, y1 = max(ra, tr * t), min(rb, (tr + 1) * t)
                x0, x1 = max(ca, tc * t), min(cb, (tc + 1) * t)
                part = tile[y0 - tr * t : y1 - tr * t, x0 - tc * t : x1 - tc * t]
                out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0, : part.shape[2]] = part
                if part.shape[2] == 3:
                    out[y0 - r0 : y1 - r0, x0 - c0 : x1 - c0, 3] = 255
        return out

    def _tile(self, index: int) -> np.ndarray:
        """One decoded TIFF tile (t, t, 3 or 4), read from its byte range alone."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        page = self._page
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        try:
            fh = self._tif.filehandle
            fh.seek(offset)
            data = fh.read(count)
            if len(data) != count:
                raise ValueError(f"{len(data)} of {count} bytes")
            segment: Any = page.decode(data, index, jpegtables=page.jpegtables)[0]
            tile = np.asarray(segment, dtype=np.uint8).reshape(self.info.tile_px, self.info.tile_px, -1)
        except Exception as err:  # imagecodecs raises its own error types on corrupt data
            raise BundleError(
                f"{self.path}: tile {index} (bytes {offset}..{offset + count}) does not decode ({err});"
                " the file is corrupt: copy or build the map again"
            ) from None
        self.tiles_decoded += 1
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
