"""Geographic layout of a map bundle: shards on the tiling's grid, a Hilbert curve inside each.

A scope (a disc around a GPS prior) should touch few shards and, inside a shard, read few
contiguous runs of descriptors: an exact scan of contiguous float16 rows costs a fraction of a
filtered graph search (hnswlib's filter is a Python callback per visited node). So tiles are
stored shard by shard (shards row-major, north first), and inside a shard along a Hilbert curve
over the shard's local (row, col) grid, which keeps any compact area in a handful of runs.

Shards are square blocks of ``shard_tiles`` x ``shard_tiles`` tiling cells, aligned with the
tiling's rows and columns, so every computation here is integer arithmetic on tile ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_geoloc.geo import Tiling


def hilbert_key(order: int, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Distance along the Hilbert curve of side ``2**order`` of the cells (x, y) (vectorized)."""
    x = np.asarray(x, dtype=np.int64).copy()
    y = np.asarray(y, dtype=np.int64).copy()
    n = 1 << order
    if np.any((x < 0) | (x >= n) | (y < 0) | (y >= n)):
        raise ValueError(f"cells outside the {n} x {n} Hilbert grid")
    d = np.zeros(np.broadcast(x, y).shape, dtype=np.int64)
    s = n >> 1
    while s > 0:
        rx = (x & s) > 0
        ry = (y & s) > 0
        d += s * s * ((3 * rx.astype(np.int64)) ^ ry.astype(np.int64))
        # Rotate the quadrant so the curve's sub-curves join up (Wikipedia's xy2d).
        flip = ~ry & rx
        x = np.where(flip, n - 1 - x, x)
        y = np.where(flip, n - 1 - y, y)
        swap = ~ry
        x, y = np.where(swap, y, x), np.where(swap, x, y)
        s >>= 1
    return d


@dataclass(frozen=True)
class ShardGrid:
    """Square shards of ``shard_tiles`` x ``shard_tiles`` cells of a tiling; shard ids are row-major."""

    tiling: Tiling
    shard_tiles: int

    def __post_init__(self) -> None:
        if not (isinstance(self.shard_tiles, (int, np.integer)) and self.shard_tiles >= 1):
            raise ValueError(f"shard side must be a positive number of tiles, got {self.shard_tiles!r}")

    @classmethod
    def for_side_m(cls, tiling: Tiling, shard_m: float) -> ShardGrid:
        """Shards of about ``shard_m`` metres a side (a whole number of tiling strides)."""
        if not shard_m > 0:
            raise ValueError(f"shard side must be positive metres, got {shard_m}")
        return cls(tiling, max(1, round(shard_m / tiling.stride_m)))

    @property
    def side_m(self) -> float:
        return self.shard_tiles * self.tiling.stride_m

    @property
    def n_rows(self) -> int:
        return -(-self.tiling.n_rows // self.shard_tiles)

    @property
    def n_cols(self) -> int:
        return -(-self.tiling.n_cols // self.shard_tiles)

    @property
    def curve_order(self) -> int:
        return max(0, int(np.ceil(np.log2(self.shard_tiles))))

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def shard_of(self, tile_id: np.ndarray | int) -> np.ndarray:
        row, col = self.tiling.row_col(tile_id)
        return (row // self.shard_tiles) * self.n_cols + col // self.shard_tiles

    def cell(self, shard_id: int) -> tuple[int, int, int, int]:
        """Tiling rows [r0, r1) and columns [c0, c1) of a shard."""
        if not 0 <= shard_id < len(self):
            raise IndexError(f"shard {shard_id} outside the shard grid (0..{len(self) - 1})")
        sr, sc = divmod(int(shard_id), self.n_cols)
        r0, c0 = sr * self.shard_tiles, sc * self.shard_tiles
        return r0, min(r0 + self.shard_tiles, self.tiling.n_rows), c0, min(c0 + self.shard_tiles, self.tiling.n_cols)

    def local_key(self, tile_id: np.ndarray | int) -> np.ndarray:
        """Position of each tile along its shard's Hilbert curve."""
        row, col = self.tiling.row_col(tile_id)
        return hilbert_key(self.curve_order, col % self.shard_tiles, row % self.shard_tiles)

    def storage_order(self, tile_ids: np.ndarray) -> np.ndarray:
        """The permutation that puts ``tile_ids`` in storage order: by shard, then along the curve."""
        tile_ids = np.asarray(tile_ids, dtype=np.int64)
        return np.lexsort((tile_ids, self.local_key(tile_ids), self.shard_of(tile_ids)))

    def shards_near(self, east: float, north: float, radius_m: float) -> np.ndarray:
        """Ids of shards whose tile-centre block meets the box around a disc (superset of the disc's shards)."""
        t = self.tiling
        s = t.stride_m
        c_lo = max(0, int(np.ceil((east - radius_m - t.east_min) / s - 1e-9)))
        c_hi = min(t.n_cols - 1, int(np.floor((east + radius_m - t.east_min) / s + 1e-9)))
        r_lo = max(0, int(np.ceil((t.north_max - north - radius_m) / s - 1e-9)))
        r_hi = min(t.n_rows - 1, int(np.floor((t.north_max - north + radius_m) / s + 1e-9)))
        if c_lo > c_hi or r_lo > r_hi:
            return np.zeros(0, dtype=np.int64)
        srs = np.arange(r_lo // self.shard_tiles, r_hi // self.shard_tiles + 1)
        scs = np.arange(c_lo // self.shard_tiles, c_hi // self.shard_tiles + 1)
        return (srs[:, None] * self.n_cols + scs[None, :]).ravel()
