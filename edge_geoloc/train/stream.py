"""Streaming training data: images decoded and augmented in DataLoader workers, never all held in RAM.

The in-memory path (:mod:`edge_geoloc.train.pairs`) decodes a split once and keeps it as uint8 arrays:
right for the synthetic sets, impossible for VIGOR at TransGeo's sizes (105,214 panoramas at 320x640
are 65 GB before the 90,618 aerial tiles). Here a :class:`PairSet` holds :class:`DecodedImages`
instead: the same reader call and the same resize (:func:`edge_geoloc.runtime.preprocess.resize_to`)
as the cache builder, run when a row is indexed. The batch builder is the trainer's own
(``make_batch``), so a streamed batch equals the in-memory batch of the same indices and seed, bit
for bit; only where it runs changes (a worker process, with pinned memory, persistent workers and
prefetch on a GPU machine).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from edge_geoloc.data.cvusa import SPLIT_FILES as CVUSA_SPLITS
from edge_geoloc.data.cvusa import CvusaDataset
from edge_geoloc.data.sample import DatasetError
from edge_geoloc.data.university1652 import University1652
from edge_geoloc.data.vigor import VigorDataset, open_protocol
from edge_geoloc.runtime.preprocess import resize_to
from edge_geoloc.train.pairs import PairSet, Reader, image_paths, load_pairs, pair_geometry

log = logging.getLogger(__name__)

Layout = Literal["vigor", "cvusa", "university1652"]


def detect_layout(root: str | Path) -> Layout:
    """Which reader a dataset folder needs: CVUSA's split CSVs, University-1652's train/drone, else VIGOR."""
    root = Path(root)
    if (root / "splits" / CVUSA_SPLITS["train"]).is_file():
        return "cvusa"
    if (root / "train" / "drone").is_dir() or (root / "test" / "query_drone").is_dir():
        return "university1652"
    return "vigor"


def open_split(
    root: str | Path, part: Literal["train", "test"], protocol: str = "same_area", cities: list[str] | None = None
) -> Reader:
    """The train or test side of a dataset in any of the three layouts (cities and protocol: VIGOR only)."""
    layout = detect_layout(root)
    if layout != "vigor" and cities:
        raise DatasetError(f"{root}: a {layout} dataset has no cities; remove train_cities / val_cities")
    if layout == "cvusa":
        return CvusaDataset(root, "train" if part == "train" else "val")
    if layout == "university1652":
        return University1652(root, part)
    if not cities:
        return open_protocol(root, protocol, part)  # type: ignore[arg-type]
    split = f"same_area_{part}" if protocol == "same_area" else "cross_area"
    return VigorDataset(root, cities, split)  # type: ignore[arg-type]


class DecodedImages:
    """A split's images at one size, decoded on access: ``images[i]`` (H, W, 3) uint8, ``images[idx]``
    (n, H, W, 3). Picklable (the reader's paths travel to DataLoader workers, never pixels)."""

    def __init__(self, reader: Callable[[int], np.ndarray], count: int, hw: tuple[int, int]) -> None:
        self.reader, self.count, self.hw = reader, count, (int(hw[0]), int(hw[1]))

    def __len__(self) -> int:
        return self.count

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.count, *self.hw, 3)

    @property
    def nbytes(self) -> int:
        """What the in-memory path would hold for these images."""
        return self.count * self.hw[0] * self.hw[1] * 3

    def __getitem__(self, key: int | np.integer | slice | np.ndarray) -> np.ndarray:
        if isinstance(key, int | np.integer):
            return resize_to(self.reader(int(key)), *self.hw)
        rows = range(self.count)[key] if isinstance(key, slice) else np.asarray(key).reshape(-1)
        out = np.empty((len(rows), *self.hw, 3), dtype=np.uint8)
        for n, i in enumerate(rows):
            out[n] = self[int(i)]
        return out


def projected_bytes(ds: Reader, street_hw: tuple[int, int], aerial_hw: tuple[int, int]) -> int:
    """RAM the in-memory path would need for a split (uint8 street and aerial images at model size)."""
    streets, aerials = image_paths(ds)
    return len(streets) * street_hw[0] * street_hw[1] * 3 + len(aerials) * aerial_hw[0] * aerial_hw[1] * 3


def stream_pairs(ds: Reader, street_hw: tuple[int, int], aerial_hw: tuple[int, int], tile_m: float) -> PairSet:
    """A PairSet whose images are decoded on access (same geometry as :func:`load_pairs`)."""
    street = DecodedImages(ds.street, len(ds), street_hw)
    aerial = DecodedImages(ds.aerial, ds.num_aerial, aerial_hw)
    return PairSet(street=street, aerial=aerial, **pair_geometry(ds, tile_m))  # type: ignore[arg-type]


def open_pairs(
    ds: Reader,
    street_hw: tuple[int, int],
    aerial_hw: tuple[int, int],
    mode: Literal["auto", "memory", "stream"],
    limit_gb: float,
    tile_m: float,
) -> PairSet:
    """In memory (cached) for small splits, streamed above ``limit_gb`` of projected RAM or when asked."""
    need = projected_bytes(ds, street_hw, aerial_hw)
    stream = mode == "stream" or (mode == "auto" and need > limit_gb * 1e9)
    log.info("%s: %.2f GB at model size -> %s", ds, need / 1e9, "streamed" if stream else "in memory")
    if stream:
        return stream_pairs(ds, street_hw, aerial_hw, tile_m)
    return load_pairs(ds, street_hw, aerial_hw, tile_m=tile_m)


def is_streamed(pairs: PairSet) -> bool:
    return isinstance(pairs.street, DecodedImages)


# --- DataLoader plumbing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchKey:
    """What a worker needs to build one step's batch: the global batch, this rank's rows of it, the seed."""

    epoch: int
    step: int
    idx: np.ndarray
    rows: slice


class StepKeys(Sampler):
    """The keys of the steps to run, replaced before each epoch (persistent workers keep their copy of
    the dataset; only keys travel)."""

    def __init__(self) -> None:
        self.keys: list[BatchKey] = []

    def __iter__(self) -> Iterator[BatchKey]:
        return iter(self.keys)

    def __len__(self) -> int:
        return len(self.keys)


class StreamedBatches(Dataset):
    """``dataset[key]`` -> ``make(pairs, key.idx, rng=default_rng((seed, epoch, step)), rows=key.rows, **options)``:
    the trainer's batch builder, run in a worker."""

    def __init__(self, make: Callable[..., Any], pairs: PairSet, seed: int, **options: Any) -> None:
        self.make, self.pairs, self.seed, self.options = make, pairs, seed, options

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, key: BatchKey) -> Any:  # type: ignore[override]
        rng = np.random.default_rng((self.seed, key.epoch, key.step))
        return self.make(self.pairs, key.idx, rng=rng, rows=key.rows, **self.options)


def loader_kwargs(workers: int, pin: bool, prefetch: int = 4) -> dict[str, Any]:
    """DataLoader options: persistent workers and prefetch when there are workers, pinned memory for a GPU.

    Workers are forked (they start at once and share the parent's arrays); they leave OpenCV's thread
    count alone: ``cv2.setNumThreads`` in a child forked after the parent's OpenCV pool ran deadlocks
    (in ``pthread_cond_destroy``), while decoding and resizing there are safe."""
    kw: dict[str, Any] = {"num_workers": workers, "pin_memory": pin}
    if workers > 0:
        kw.update(persistent_workers=True, prefetch_factor=prefetch)
        if "fork" in torch.multiprocessing.get_all_start_methods():
            kw["multiprocessing_context"] = "fork"
    return kw


def batch_loader(dataset: StreamedBatches, keys: StepKeys, workers: int, pin: bool) -> DataLoader:
    """Batches in key order (``batch_size=None``: the dataset builds whole batches)."""
    return DataLoader(dataset, batch_size=None, sampler=keys, **loader_kwargs(workers, pin))


class _Rows(Dataset):
    def __init__(self, images: DecodedImages, rows: np.ndarray) -> None:
        self.images, self.rows = images, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, n: int) -> np.ndarray:
        return self.images[int(self.rows[n])]


def image_batches(images: Any, rows: np.ndarray, batch_size: int, workers: int) -> Iterator[np.ndarray]:
    """uint8 batches of ``images[rows]``: slices of an array in memory, or decoded by workers."""
    if isinstance(images, np.ndarray):
        for s in range(0, len(rows), batch_size):
            yield images[rows[s : s + batch_size]]
        return
    kw = loader_kwargs(workers, pin=False)
    kw.pop("persistent_workers", None)  # a one-pass loader
    loader = DataLoader(_Rows(images, rows), batch_size=batch_size, collate_fn=np.stack, **kw)
    yield from loader
