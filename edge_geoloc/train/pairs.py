"""A dataset split resized to the model's inputs and held in memory as uint8 arrays.

CPU training reads every image many times; decoding JPEG/PNG and resizing each time would cost
more than the small model's step. Images are decoded and resized once with the project's one
preprocessing (:mod:`edge_geoloc.runtime.preprocess`), then cached beside the dataset
(``<root>/.cache/``), keyed by the files' list and sizes, so a second run starts at once.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_geoloc.data.cvusa import CvusaDataset
from edge_geoloc.data.university1652 import University1652
from edge_geoloc.data.vigor import VigorDataset
from edge_geoloc.runtime.preprocess import resize_to

Reader = VigorDataset | CvusaDataset | University1652

EARTH_RADIUS_M = 6_371_008.8


CITY_SEPARATION_M = 1e8  # cities are laid side by side this far apart on one plane: never in one scope


def local_en(lat: np.ndarray, lon: np.ndarray, lat0: float, lon0: float) -> np.ndarray:
    """East/north metres on a local tangent plane at (lat0, lon0): within 0.01% over a few km."""
    east = np.radians(np.asarray(lon) - lon0) * EARTH_RADIUS_M * np.cos(np.radians(lat0))
    north = np.radians(np.asarray(lat) - lat0) * EARTH_RADIUS_M
    return np.stack([east, north], axis=-1)


def city_plane(ds: VigorDataset) -> tuple[np.ndarray, np.ndarray]:
    """Panorama and satellite positions in metres, each city on its own tangent plane (at the mean
    of its satellite centres) and the cities set CITY_SEPARATION_M apart, so distances inside a city
    are exact to centimetres and no scope ever spans two cities."""
    street_en = np.zeros((len(ds), 2))
    aerial_en = np.zeros((ds.num_aerial, 2))
    for ci in range(len(ds.cities)):
        s, a = ds.pano_city == ci, ds.sat_city == ci
        lat0, lon0 = float(np.mean(ds.sat_lat[a])), float(np.mean(ds.sat_lon[a]))
        shift = np.array([ci * CITY_SEPARATION_M, 0.0])
        street_en[s] = local_en(ds.pano_lat[s], ds.pano_lon[s], lat0, lon0) + shift
        aerial_en[a] = local_en(ds.sat_lat[a], ds.sat_lon[a], lat0, lon0) + shift
    return street_en, aerial_en


@dataclass
class PairSet:
    """Street queries and aerial references of one split, at model input size."""

    street: np.ndarray  # (N, H, W, 3) uint8: full 360-degree panoramas at the model's 360 width
    aerial: np.ndarray  # (M, h, w, 3) uint8
    label: np.ndarray  # (N, 4) aerial indices, positive first
    offset_m: np.ndarray  # (N, 4, 2) street position (east, north) from each tile centre
    iou: np.ndarray  # (N, 4)
    street_en: np.ndarray  # (N, 2) metres, see city_plane
    aerial_en: np.ndarray  # (M, 2)
    heading_deg: float | None  # of the panoramas' centre column (true north), when known
    tile_m: float
    street_city: np.ndarray | None = None  # (N,) city name of each panorama (rows in city order)
    aerial_city: np.ndarray | None = None  # (M,)

    def __len__(self) -> int:
        return len(self.street)

    def subset(self, idx: np.ndarray) -> PairSet:
        """Some queries, all references."""
        return PairSet(
            self.street[idx], self.aerial, self.label[idx], self.offset_m[idx], self.iou[idx],
            self.street_en[idx], self.aerial_en, self.heading_deg, self.tile_m,
            None if self.street_city is None else self.street_city[idx], self.aerial_city,
        )  # fmt: skip


def _load_all(paths: list[Path], reader, size_hw: tuple[int, int], desc: str) -> np.ndarray:
    out = np.empty((len(paths), size_hw[0], size_hw[1], 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = resize_to(reader(i), *size_hw)

    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(tqdm(pool.map(one, range(len(paths))), total=len(paths), desc=desc, unit="img", leave=False))
    return out


def _cached(cache: Path, key: dict, build) -> np.ndarray:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{key['kind']}-{digest}.npy"
    if path.exists():
        try:
            return np.load(path)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a corrupt cache is rebuilt, never trusted
    arr = build()
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)
    return arr


def image_paths(ds: Reader) -> tuple[list[Path], list[Path]]:
    """The street (query) and aerial (reference) image files of a reader, in its index order."""
    if isinstance(ds, VigorDataset):
        return ds.pano_paths, ds.sat_paths
    if isinstance(ds, CvusaDataset):
        return ds.street_paths, ds.aerial_paths
    return ds.drone_paths, ds.satellite_paths


def has_positions(ds: Reader) -> bool:
    """Whether the reader knows where its queries are (CVUSA and the real University-1652 do not)."""
    return isinstance(ds, VigorDataset) or (isinstance(ds, University1652) and ds.poses is not None)


def pair_geometry(ds: Reader, tile_m: float) -> dict:
    """A PairSet's labels and positions. CVUSA and University-1652 have one positive and no semi-positive:
    its index fills the four label columns (the sampler's tile sets dedupe it) with IoU 1, offset 0.
    Readers without positions put every query at the origin (neighbour batches need positions).
    ``tile_m``: the tile side where the reader does not know it (VIGOR's layout does)."""
    if isinstance(ds, VigorDataset):
        street_en, aerial_en = city_plane(ds)
        cities = np.asarray(ds.cities)
        return dict(
            label=ds.label, offset_m=ds.delta_m, iou=ds.iou, street_en=street_en, aerial_en=aerial_en,
            heading_deg=ds.heading_deg, tile_m=ds.tile_m,
            street_city=cities[ds.pano_city], aerial_city=cities[ds.sat_city],
        )  # fmt: skip
    positive = np.arange(len(ds)) if isinstance(ds, CvusaDataset) else ds.positive
    street_en = np.zeros((len(ds), 2))
    aerial_en = np.zeros((ds.num_aerial, 2))
    offset = np.zeros((len(ds), 4, 2))
    if isinstance(ds, University1652) and ds.poses is not None:
        p = ds.poses
        street_en = np.stack([p["east"], p["north"]], axis=-1)
        aerial_en[positive] = np.stack([p["tile_east"], p["tile_north"]], axis=-1)
        offset[:] = (street_en - aerial_en[positive])[:, None, :]
    return dict(
        label=np.repeat(np.asarray(positive, dtype=np.int64)[:, None], 4, axis=1), offset_m=offset,
        iou=np.ones((len(ds), 4)), street_en=street_en, aerial_en=aerial_en,
        heading_deg=ds.heading_deg if isinstance(ds, CvusaDataset) else None, tile_m=tile_m,
    )  # fmt: skip


def load_pairs(
    ds: Reader,
    street_hw: tuple[int, int],
    aerial_hw: tuple[int, int],
    cache_dir: str | Path | None = None,
    tile_m: float = float("nan"),
) -> PairSet:
    """Decode, resize and cache a split (see module docstring)."""
    cache = Path(cache_dir) if cache_dir is not None else ds.root / ".cache"
    files = lambda paths: [str(Path(p).relative_to(ds.root)) for p in paths]  # noqa: E731
    street_paths, aerial_paths = image_paths(ds)
    street = _cached(
        cache,
        {"kind": "street", "files": files(street_paths), "hw": list(street_hw)},
        lambda: _load_all(street_paths, ds.street, street_hw, "panoramas"),
    )
    aerial = _cached(
        cache,
        {"kind": "aerial", "files": files(aerial_paths), "hw": list(aerial_hw)},
        lambda: _load_all(aerial_paths, ds.aerial, aerial_hw, "aerial tiles"),
    )
    return PairSet(street=street, aerial=aerial, **pair_geometry(ds, tile_m))
