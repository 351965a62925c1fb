"""Batches built from nearby places and look-alikes: GPS-neighbour and mined hard negatives (VIGOR, Sample4Geo).

In-batch negatives from far away are easy; neighbours share style, street layout and lighting,
so putting them in the same batch makes the loss work on what the scoped search must tell
apart. Look-alikes anywhere are what a global search confuses: :func:`mine_lookalikes` finds,
for each query, the references the current model finds most similar without being its own,
and the queries of those references join its batch (Sample4Geo's dynamic similarity sampling). Two samples that share any reference tile (positive or semi-positive) never share a
batch: each would be the other's false negative (VIGOR's ``check_overlap``).
"""

from __future__ import annotations

import numpy as np


def neighbour_lists(positions: np.ndarray, k: int, chunk: int = 512) -> np.ndarray:
    """Indices of each sample's k nearest others by position (N, k), nearest first."""
    pos = np.asarray(positions, dtype=np.float64)
    n = len(pos)
    k = min(k, n - 1)
    chunk = max(1, min(chunk, 2**22 // max(n, 1)))  # rows are independent: at most ~100 MB of distances at once
    out = np.empty((n, k), dtype=np.int64)
    for s in range(0, n, chunk):
        d = np.sum((pos[s : s + chunk, None, :] - pos[None, :, :]) ** 2, axis=-1)
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf
        part = np.argpartition(d, k, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1)
        out[s : s + chunk] = np.take_along_axis(part, order, axis=1)
    return out


class GeoBatchSampler:
    """Epoch-seeded batches: a random anchor, then its free GPS neighbours, repeated until full.

    ``tiles`` (N, T): the reference tiles each sample touches (positive first, then
    semi-positives; -1 pads). ``neighbours`` per anchor join its batch, drawn from its ``pool``
    nearest samples: the nearest all share the anchor's tiles (dense tiles overlap for ~2 strides),
    so the pool must reach the next ring of places. 0 gives plain random (still overlap-free) batches.
    """

    def __init__(
        self,
        positions: np.ndarray,
        tiles: np.ndarray,
        batch_size: int,
        neighbours: int = 3,
        seed: int = 0,
        pool: int = 256,
    ) -> None:
        if batch_size < 2:
            raise ValueError(f"batch size must be at least 2, got {batch_size}")
        self.tiles = np.asarray(tiles, dtype=np.int64)
        if len(self.tiles) != len(positions):
            raise ValueError(f"{len(positions)} positions but {len(self.tiles)} tile rows")
        self.batch_size = batch_size
        self.neighbours = neighbours
        self.seed = seed
        self.near = neighbour_lists(positions, pool) if neighbours > 0 and len(positions) > 1 else None

    def __len__(self) -> int:
        return len(self.tiles) // self.batch_size

    def batches(self, epoch: int, mined: np.ndarray | None = None, per_anchor: int = 0) -> list[np.ndarray]:
        """Full, overlap-free batches for an epoch (deterministic in seed, epoch and ``mined``).

        ``mined`` (N, k): each sample's look-alike queries (:func:`mine_lookalikes`); up to
        ``per_anchor`` of them join an anchor's batch before its GPS neighbours."""
        rng = np.random.default_rng((self.seed, epoch))
        order = rng.permutation(len(self.tiles))
        used = np.zeros(len(self.tiles), dtype=bool)
        batches: list[np.ndarray] = []
        cursor = 0
        while len(batches) < len(self):
            batch: list[int] = []
            taken: set[int] = set()
            deferred: list[int] = []

            while len(batch) < self.batch_size and cursor < len(order):
                anchor = int(order[cursor])
                cursor += 1
                if not self._try_add(anchor, batch, taken, used):
                    if not used[anchor]:
                        deferred.append(anchor)
                    continue
                if mined is not None and per_anchor > 0:
                    added = 0
                    for j in mined[anchor]:
                        if len(batch) >= self.batch_size or added >= per_anchor:
                            break
                        added += self._try_add(int(j), batch, taken, used)
                if self.near is None:
                    continue
                added = 0
                for j in self.near[anchor]:  # nearest first: the hardest negatives
                    if len(batch) >= self.batch_size or added >= self.neighbours:
                        break
                    added += self._try_add(int(j), batch, taken, used)
            if len(batch) < self.batch_size:
                break  # the rest of the epoch cannot fill a batch without overlaps
            batches.append(np.asarray(batch, dtype=np.int64))
            # Anchors skipped for overlap go back to the front of the queue for the next batch.
            # (`used` keeps an anchor from being taken twice.)
            if deferred:
                order = np.concatenate([order[:cursor], np.asarray(deferred, dtype=order.dtype), order[cursor:]])
        return batches

    def _try_add(self, i: int, batch: list[int], taken: set[int], used: np.ndarray) -> bool:
        """Add sample i unless it is used or shares a tile with the batch."""
        t = self.tiles[i]
        tiles = set(t[t >= 0].tolist())
        if used[i] or taken & tiles:
            return False
        batch.append(i)
        taken.update(tiles)
        used[i] = True
        return True


def mine_lookalikes(
    query_desc: np.ndarray,
    ref_desc: np.ndarray,
    tiles: np.ndarray,
    k: int,
    seed: int,
    chunk: int = 1024,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """(N, k) query indices: for each query, the queries whose positive tile is among the k references
    most similar to it that are none of its own tiles (positive or semi-positive), most similar first.

    ``tiles`` (N, T): each query's tiles, positive first (-1 pads). A mined reference with no query of
    its own (no panorama has it as positive) is skipped; rows are padded with the query itself,
    which the batch sampler never adds twice. ``rows``: mine only these queries (a rank's part; the
    lists equal the same rows of a whole run), (len(rows), k)."""
    tiles = np.asarray(tiles, dtype=np.int64)
    n = len(query_desc)
    rng = np.random.default_rng(seed)
    by_tile: dict[int, list[int]] = {}
    for q in rng.permutation(n):  # a random one of a tile's queries represents it
        by_tile.setdefault(int(tiles[q, 0]), []).append(int(q))
    owner = np.full(len(ref_desc), -1, dtype=np.int64)
    for t, qs in by_tile.items():
        owner[t] = qs[0]
    every = rows is None
    rows = np.arange(n, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.repeat(rows[:, None], k, axis=1)
    extra = tiles.shape[1]
    for s in range(0, len(rows), chunk):
        part = rows[s : s + chunk]
        sim = (query_desc[s : s + chunk] if every else query_desc[part]) @ ref_desc.T  # a view where it can
        own = tiles[part]
        sim[np.arange(len(sim))[:, None], np.where(own >= 0, own, own[:, :1])] = -np.inf
        m = min(k + extra, sim.shape[1] - 1)
        top = np.argpartition(-sim, m, axis=1)[:, :m]
        top = np.take_along_axis(top, np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1), axis=1)
        for r, refs in enumerate(top):
            qs = owner[refs]
            qs = qs[qs >= 0][:k]
            out[s + r, : len(qs)] = qs
    return out
