"""Dense reference tiling of an area, as VIGOR does it.

Square tiles of side ``tile_m`` on a grid of stride ``tile_m / 2``: every point of the area lies
in exactly four tiles (one positive, the tile whose centre is nearest, and three
semi-positives). A tile is half-open in image order (north-up, rows growing southwards): it covers
east ``[c - T/2, c + T/2)`` and north ``(c - T/2, c + T/2]``, which makes "exactly four" hold on
tile borders too.

Tile ids are ``row * n_cols + col`` with row 0 the northernmost row, so ids read like an image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def vigor_iou(dx: np.ndarray | float, dy: np.ndarray | float, tile_m: float) -> np.ndarray:
    """IoU of a tile with an equal tile offset by (dx, dy) metres (VIGOR's semi-positive weight).

    ``IoU = 1 / (1 - (1 - |dy|/L)(1 - |dx|/L) / 2) - 1``, which equals ``a / (2 - a)`` with
    ``a`` the overlap area as a fraction of one tile.
    """
    a = np.clip(1 - np.abs(dy) / tile_m, 0, 1) * np.clip(1 - np.abs(dx) / tile_m, 0, 1)
    return 1.0 / (1.0 - a / 2.0) - 1.0


@dataclass(frozen=True)
class Tiling:
    """Tiles of side ``tile_m`` every ``tile_m / 2`` over ``[east_min, east_max] x [north_min, north_max]``."""

    east_min: float
    north_min: float
    east_max: float
    north_max: float
    tile_m: float

    def __post_init__(self) -> None:
        if not self.tile_m > 0:
            raise ValueError(f"tile side must be positive, got {self.tile_m}")
        if not (self.east_max > self.east_min and self.north_max > self.north_min):
            raise ValueError(
                f"empty area: east [{self.east_min}, {self.east_max}], north [{self.north_min}, {self.north_max}]"
            )

    @classmethod
    def around(cls, east: float, north: float, size_m: float, tile_m: float) -> Tiling:
        """The tiling of a square area of side ``size_m`` centred at (east, north)."""
        h = size_m / 2.0
        return cls(east - h, north - h, east + h, north + h, tile_m)

    @property
    def stride_m(self) -> float:
        return self.tile_m / 2.0

    @property
    def n_cols(self) -> int:
        return int(np.floor((self.east_max - self.east_min) / self.stride_m + 1e-9)) + 2

    @property
    def n_rows(self) -> int:
        return int(np.floor((self.north_max - self.north_min) / self.stride_m + 1e-9)) + 2

    def __len__(self) -> int:
        return self.n_rows * self.n_cols

    def row_col(self, tile_id: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        tile_id = np.asarray(tile_id, dtype=np.int64)
        if np.any((tile_id < 0) | (tile_id >= len(self))):
            bad = tile_id[(tile_id < 0) | (tile_id >= len(self))].ravel()[0]
            raise IndexError(f"tile id {bad} outside this tiling (0..{len(self) - 1})")
        return tile_id // self.n_cols, tile_id % self.n_cols

    def tile_id(self, row: np.ndarray | int, col: np.ndarray | int) -> np.ndarray:
        return np.asarray(row, dtype=np.int64) * self.n_cols + np.asarray(col, dtype=np.int64)

    def centre(self, tile_id: np.ndarray | int) -> tuple[np.ndarray, np.ndarray]:
        """East/north of tile centres."""
        row, col = self.row_col(tile_id)
        return self.east_min + col * self.stride_m, self.north_max - row * self.stride_m

    def centres(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All tile ids with their centres, in id order."""
        ids = np.arange(len(self), dtype=np.int64)
        east, north = self.centre(ids)
        return ids, east, north

    def contains(self, east: np.ndarray | float, north: np.ndarray | float) -> np.ndarray:
        east, north = np.asarray(east), np.asarray(north)
        return (east >= self.east_min) & (east <= self.east_max) & (north >= self.north_min) & (north <= self.north_max)

    def covering(
        self, east: np.ndarray | float, north: np.ndarray | float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The four tiles containing each point, positive first.

        Returns ``ids`` (N, 4), ``offsets`` (N, 4, 2) as the point's (east, north) offset in metres
        from each tile's centre, and ``iou`` (N, 4) of each tile with a tile-sized box centred at the point. The
        first tile is the positive (nearest centre); the others follow by decreasing IoU.
        """
        east = np.atleast_1d(np.asarray(east, dtype=np.float64))
        north = np.atleast_1d(np.asarray(north, dtype=np.float64))
        inside = self.contains(east, north)
        if not np.all(inside):
            i = int(np.flatnonzero(~inside)[0])
            raise ValueError(
                f"point ({east[i]:.2f}, {north[i]:.2f}) lies outside the tiled area "
                f"east [{self.east_min:.2f}, {self.east_max:.2f}], north [{self.north_min:.2f}, {self.north_max:.2f}]"
            )
        s = self.stride_m
        c0 = np.floor((east - self.east_min) / s).astype(np.int64)
        r0 = np.floor((self.north_max - north) / s).astype(np.int64)
        rows = np.stack([r0, r0, r0 + 1, r0 + 1], axis=1)
        cols = np.stack([c0, c0 + 1, c0, c0 + 1], axis=1)
        ids = self.tile_id(rows, cols)
        ce, cn = self.east_min + cols * s, self.north_max - rows * s
        offsets = np.stack([east[:, None] - ce, north[:, None] - cn], axis=-1)
        dist2 = np.sum(offsets**2, axis=-1)
        # IoU of each tile with a tile-sized box centred at the point (VIGOR's definition).
        iou = vigor_iou(offsets[..., 0], offsets[..., 1], self.tile_m)
        # The positive is the nearest centre; the semi-positives follow by decreasing IoU.
        rank = np.where(np.arange(4)[None, :] == np.argmin(dist2, axis=1)[:, None], np.inf, iou)
        order = np.argsort(-rank, axis=1, kind="stable")
        take = np.take_along_axis
        return take(ids, order, 1), take(offsets, order[..., None], 1), take(iou, order, 1)

    def in_box(self, east_min: float, north_min: float, east_max: float, north_max: float) -> np.ndarray:
        """Ids of tiles whose centres lie inside a box (inclusive)."""
        s = self.stride_m
        c_lo = max(0, int(np.ceil((east_min - self.east_min) / s - 1e-9)))
        c_hi = min(self.n_cols - 1, int(np.floor((east_max - self.east_min) / s + 1e-9)))
        r_lo = max(0, int(np.ceil((self.north_max - north_max) / s - 1e-9)))
        r_hi = min(self.n_rows - 1, int(np.floor((self.north_max - north_min) / s + 1e-9)))
        if c_lo > c_hi or r_lo > r_hi:
            return np.zeros(0, dtype=np.int64)
        rows, cols = np.meshgrid(np.arange(r_lo, r_hi + 1), np.arange(c_lo, c_hi + 1), indexing="ij")
        return self.tile_id(rows.ravel(), cols.ravel())
