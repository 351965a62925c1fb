"""VIGOR's dataset layout: names, label conversion, split files, metadata, and the reader.

The layout (github.com/Jeff-Zilence/VIGOR, dataloader.py and evaluate_from_npy.py)::

    DIR/<city>/panorama/[prefix],[lat],[lng],.jpg
    DIR/<city>/satellite/satellite_[lat]_[lng].png
    DIR/splits/<city>/satellite_list.txt            one satellite file name a line
    DIR/splits/<city>/same_area_balanced_train.txt  label lines, same-area protocol
    DIR/splits/<city>/same_area_balanced_test.txt
    DIR/splits/<city>/pano_label_balanced.txt       label lines, every panorama (cross-area protocol)
    DIR/splits/edge_geoloc.yaml                     ours only: GSD, sizes, regions (absent in the real download)

A label line has 13 space-separated columns ``pano sat1 dy1 dx1 ... sat4 dy4 dx4``: sat1 is the positive
(nearest tile centre), sat2-4 the semi-positives. ``(dy, dx)`` are pixels of a 640-px satellite image:
the panorama's true pixel is ``(row 320 + dy, col 320 - dx)``, so ``dy > 0`` is south of the centre
and ``dx > 0`` west. The pixels are converted to degrees as VIGOR does (``Lat_Lng`` on a sphere of
radius 6,371,004 m, evaluated at the satellite centre's latitude)::

    pano_lat, pano_lng = sat_lat - unit_lat * dy / 320, sat_lng - unit_lng * dx / 320

We compute labels from the lat/lon *as written in the file names* with that same conversion, so a
reader that follows VIGOR's code recovers the file-name position exactly. The "label GSD" (metres per
pixel of the 640-px convention) is 0.114 m in the real data and ``tile side / 640`` in ours, whatever
the size of the stored satellite images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from edge_geoloc.config import ConfigError, check, from_mapping, read_yaml, to_mapping
from edge_geoloc.data.sample import DatasetError, Sample, check_index, read_rgb, require_files
from edge_geoloc.geo import vigor_iou
from edge_geoloc.world.region import Region

VIGOR_EARTH_RADIUS_M = 6371004.0  # evaluate_from_npy.py's R
VIGOR_GSD_M = 0.114  # metres per pixel of the real satellite images (640 px)
VIGOR_SAT_PX = 640
VIGOR_HALF_PX = 320
VIGOR_PANO_HW = (1024, 2048)
VIGOR_CITIES = ("NewYork", "Seattle", "SanFrancisco", "Chicago")
VIGOR_CROSS_AREA = {"train": ("NewYork", "Seattle"), "test": ("SanFrancisco", "Chicago")}

METADATA_NAME = "edge_geoloc.yaml"
SATELLITE_LIST = "satellite_list.txt"
LABEL_FILES = {
    "same_area_train": "same_area_balanced_train.txt",
    "same_area_test": "same_area_balanced_test.txt",
    "cross_area": "pano_label_balanced.txt",
}
NAME_DECIMALS = 8  # 1e-8 degree is about 1 mm: file-name positions exact to well under 1 cm
LABEL_DECIMALS = 6  # pixels
FORMAT_VERSION = 1


# --- conversion (VIGOR's own) ------------------------------------------------------------------


def delta_unit_deg(lat: np.ndarray | float, gsd_m: float = VIGOR_GSD_M) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude spans (degrees) of 320 pixels at ``gsd_m``, at latitude ``lat``.

    VIGOR's ``Lat_Lng`` term for term (the same arccos expressions, so our labels and VIGOR's
    evaluation code agree to the last bit): great-circle distance ``320 * gsd_m`` on a sphere of
    radius 6,371,004 m, north and east.
    """
    lat_a = np.asarray(lat, dtype=np.float64) * np.pi / 180.0
    distance = 320 * gsd_m
    c = np.cos(distance / VIGOR_EARTH_RADIUS_M)
    d_lat = np.arccos(c) + np.zeros_like(lat_a)
    d_lng = np.arccos((c - np.sin(lat_a) * np.sin(lat_a)) / np.cos(lat_a) / np.cos(lat_a))
    return d_lat * 180.0 / np.pi, d_lng * 180.0 / np.pi


def label_deltas(
    pano_lat: np.ndarray | float,
    pano_lon: np.ndarray | float,
    sat_lat: np.ndarray | float,
    sat_lon: np.ndarray | float,
    gsd_m: float = VIGOR_GSD_M,
) -> np.ndarray:
    """VIGOR's ``(dy, dx)`` (pixels of the 640-px image) of panoramas relative to satellite centres; (..., 2)."""
    unit_lat, unit_lng = delta_unit_deg(sat_lat, gsd_m)
    dy = (np.asarray(sat_lat, dtype=np.float64) - pano_lat) / unit_lat * VIGOR_HALF_PX
    dx = (np.asarray(sat_lon, dtype=np.float64) - pano_lon) / unit_lng * VIGOR_HALF_PX
    return np.stack([dy, dx], axis=-1)


def vigor_latlon(
    sat_lat: np.ndarray | float, sat_lon: np.ndarray | float, delta_px: np.ndarray, gsd_m: float = VIGOR_GSD_M
) -> tuple[np.ndarray, np.ndarray]:
    """Position of ``(dy, dx)`` relative to a satellite centre, exactly as VIGOR's evaluation computes it."""
    unit_lat, unit_lng = delta_unit_deg(sat_lat, gsd_m)
    delta_px = np.asarray(delta_px, dtype=np.float64)
    lat = np.asarray(sat_lat, dtype=np.float64) + (-unit_lat * delta_px[..., 0] / VIGOR_HALF_PX)
    lon = np.asarray(sat_lon, dtype=np.float64) + (-unit_lng * delta_px[..., 1] / VIGOR_HALF_PX)
    return lat, lon


def delta_to_en_m(delta_px: np.ndarray, gsd_m: float = VIGOR_GSD_M) -> np.ndarray:
    """``(dy, dx)`` pixels -> the panorama's (east, north) metres from the tile centre (dx > 0 west, dy > 0 south)."""
    delta_px = np.asarray(delta_px, dtype=np.float64)
    return np.stack([-delta_px[..., 1] * gsd_m, -delta_px[..., 0] * gsd_m], axis=-1)


def delta_to_pixel(delta_px: np.ndarray, size_px: int = VIGOR_SAT_PX) -> np.ndarray:
    """``(dy, dx)`` -> the panorama's (row, col) in a satellite image of ``size_px`` (continuous, centre at size/2)."""
    delta_px = np.asarray(delta_px, dtype=np.float64)
    scale = size_px / VIGOR_SAT_PX
    return np.stack([(VIGOR_HALF_PX + delta_px[..., 0]) * scale, (VIGOR_HALF_PX - delta_px[..., 1]) * scale], -1)


# --- file names ----------------------------------------------------------------------------------


def pano_filename(prefix: str, lat: float, lon: float) -> str:
    """``[prefix],[lat],[lng],.jpg`` with positions exact to about a millimetre."""
    if not prefix or any(c in prefix for c in ", /\t\n"):
        raise ValueError(f"panorama prefix {prefix!r} must be non-empty, without commas, spaces or '/'")
    return f"{prefix},{lat:.{NAME_DECIMALS}f},{lon:.{NAME_DECIMALS}f},.jpg"


def satellite_filename(lat: float, lon: float) -> str:
    """``satellite_[lat]_[lng].png``: the tile centre."""
    return f"satellite_{lat:.{NAME_DECIMALS}f}_{lon:.{NAME_DECIMALS}f}.png"


def parse_pano_filename(name: str) -> tuple[float, float]:
    """(lat, lon) from ``[prefix],[lat],[lng],.jpg`` (read from the end, as VIGOR does, so prefixes may vary)."""
    parts = name.split(",")
    try:
        if len(parts) < 4:
            raise ValueError
        return float(parts[-3]), float(parts[-2])
    except ValueError:
        raise ValueError(f"panorama name {name!r} is not '[prefix],[lat],[lng],.jpg'") from None


def parse_satellite_filename(name: str) -> tuple[float, float]:
    """(lat, lon) of the tile centre from ``satellite_[lat]_[lng].png``."""
    stem = name.rsplit(".", 1)[0] if name.lower().endswith((".png", ".jpg", ".jpeg")) else name
    parts = stem.split("_")
    try:
        if len(parts) < 3:
            raise ValueError
        return float(parts[-2]), float(parts[-1])
    except ValueError:
        raise ValueError(f"satellite name {name!r} is not 'satellite_[lat]_[lng].png'") from None


def format_label_line(pano: str, satellites: Sequence[str], deltas_px: np.ndarray) -> str:
    """One 13-column label line: ``pano sat1 dy1 dx1 ... sat4 dy4 dx4`` (positive first)."""
    deltas_px = np.asarray(deltas_px, dtype=np.float64)
    if len(satellites) != 4 or deltas_px.shape != (4, 2):
        raise ValueError(f"a label needs 4 satellites and (4, 2) deltas, got {len(satellites)} and {deltas_px.shape}")
    cols = [pano]
    for sat, (dy, dx) in zip(satellites, deltas_px):
        cols += [sat, f"{dy:.{LABEL_DECIMALS}f}", f"{dx:.{LABEL_DECIMALS}f}"]
    return " ".join(cols)


def labels_from_names(
    pano_names: Sequence[str], satellite_names: Sequence[str], cover: np.ndarray, label_gsd_m: float
) -> np.ndarray:
    """(N, 4, 2) VIGOR ``(dy, dx)`` of panoramas from the satellites ``cover`` (N, 4 indices into
    ``satellite_names``, positive first), from the positions *as written in the names*."""
    cover = np.asarray(cover, dtype=np.int64)
    if cover.shape != (len(pano_names), 4):
        raise ValueError(f"cover must be ({len(pano_names)}, 4) satellite indices, got {cover.shape}")
    pano_ll = np.array([parse_pano_filename(p) for p in pano_names], dtype=np.float64).reshape(-1, 2)
    sat_ll = np.array([parse_satellite_filename(s) for s in satellite_names], dtype=np.float64).reshape(-1, 2)
    return label_deltas(pano_ll[:, :1], pano_ll[:, 1:], sat_ll[cover, 0], sat_ll[cover, 1], label_gsd_m)


def label_lines(
    pano_names: Sequence[str], satellite_names: Sequence[str], cover: np.ndarray, deltas_px: np.ndarray
) -> list[str]:
    """The label lines of panoramas covered by satellites ``cover`` (N, 4) with offsets ``deltas_px`` (N, 4, 2)."""
    return [
        format_label_line(p, [satellite_names[j] for j in cov], d)
        for p, cov, d in zip(pano_names, np.asarray(cover), np.asarray(deltas_px))
    ]


# --- metadata (ours; the real download has none) -----------------------------------------------


@dataclass(frozen=True)
class PanoramaMeta:
    height_px: int = field(metadata=check(lambda v: v > 0, "a positive number of pixels"))
    width_px: int = field(metadata=check(lambda v: v > 0, "a positive number of pixels"))
    elevation_range_deg: tuple[float, float] = (-90.0, 90.0)  # bottom and top rows
    center_heading_deg: float | None = None  # centre column, clockwise from `north`; None: unknown
    north: Literal["true", "grid"] = "true"
    cam_height_m: float | None = None


@dataclass(frozen=True)
class CityMeta:
    region: Region
    crs: str  # the map CRS the world was built in (pyproj definition)
    panoramas: int
    satellites: int
    same_area_train: int
    same_area_test: int
    # Largest distance, in pixels of the 640-px convention, between a label's pixel and the panorama's
    # true pixel in its (true-north-up) tile: VIGOR's sphere against the ellipsoid and the grid scale.
    label_error_px: float | None = None


@dataclass(frozen=True)
class VigorMeta:
    """``splits/edge_geoloc.yaml``: what a reader cannot learn from VIGOR's own files."""

    generator: str
    label_gsd_m: float = field(metadata=check(lambda v: v > 0, "metres per pixel > 0"))  # tile_m / 640
    tile_m: float = field(metadata=check(lambda v: v > 0, "a positive tile side in metres"))
    stride_m: float = field(metadata=check(lambda v: v > 0, "a positive stride in metres"))
    satellite_px: int = field(metadata=check(lambda v: v > 0, "a positive number of pixels"))
    satellite_gsd_m: float = field(metadata=check(lambda v: v > 0, "metres per pixel > 0"))
    panorama: PanoramaMeta
    cities: dict[str, CityMeta]
    aerial_north: Literal["true", "grid"] = "true"
    cross_area_train: list[str] = field(default_factory=list)
    cross_area_test: list[str] = field(default_factory=list)
    seed: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    format_version: int = field(default=FORMAT_VERSION, metadata=check(lambda v: v == FORMAT_VERSION, "1"))

    def __post_init__(self) -> None:
        if abs(self.label_gsd_m * VIGOR_SAT_PX - self.tile_m) > 1e-6 * self.tile_m:
            raise ValueError(f"label_gsd_m {self.label_gsd_m} must be tile_m / 640 = {self.tile_m / VIGOR_SAT_PX}")
        for name in (*self.cross_area_train, *self.cross_area_test):
            if name not in self.cities:
                raise ValueError(f"cross-area city {name!r} is not one of the cities {sorted(self.cities)}")


def metadata_path(root: str | Path) -> Path:
    return Path(root) / "splits" / METADATA_NAME


def read_metadata(root: str | Path) -> VigorMeta | None:
    """Our metadata, validated; None for a dataset without it (the real VIGOR download)."""
    path = metadata_path(root)
    if not path.exists():
        return None
    try:
        return from_mapping(VigorMeta, read_yaml(path) or {}, str(path))
    except ConfigError as err:
        raise DatasetError(str(err)) from None


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metadata(root: str | Path, meta: VigorMeta) -> Path:
    path = metadata_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_text_atomic(path, yaml.safe_dump(to_mapping(meta), sort_keys=False))
    return path


def write_city_splits(
    root: str | Path,
    city: str,
    satellite_names: Sequence[str],
    label_lines: Sequence[str],
    same_area_test: np.ndarray,
) -> None:
    """Write a city's satellite list and its three label files (same-area test: a boolean per label line)."""
    folder = Path(root) / "splits" / city
    folder.mkdir(parents=True, exist_ok=True)
    test = np.asarray(same_area_test, dtype=bool)
    if test.shape != (len(label_lines),):
        raise ValueError(f"same_area_test has shape {test.shape}, expected ({len(label_lines)},)")

    def lines(items: Sequence[str]) -> str:
        return "".join(f"{s}\n" for s in items)

    _write_text_atomic(folder / SATELLITE_LIST, lines(satellite_names))
    _write_text_atomic(folder / LABEL_FILES["cross_area"], lines(label_lines))
    _write_text_atomic(folder / LABEL_FILES["same_area_train"], lines([s for s, t in zip(label_lines, test) if not t]))
    _write_text_atomic(folder / LABEL_FILES["same_area_test"], lines([s for s, t in zip(label_lines, test) if t]))


# --- the reader -------------------------------------------------------------------------------------

Split = Literal["same_area_train", "same_area_test", "cross_area"]


def dataset_cities(root: str | Path) -> list[str]:
    """Cities of a dataset: from our metadata, else every ``splits/<city>/`` with a satellite list."""
    meta = read_metadata(root)
    if meta is not None:
        return list(meta.cities)
    splits = Path(root) / "splits"
    if not splits.is_dir():
        raise DatasetError(f"{root}: not a VIGOR-layout dataset (no folder {splits})")
    found = sorted(p.name for p in splits.iterdir() if (p / SATELLITE_LIST).is_file())
    # VIGOR's own order first, so global satellite indices match its dataloader.
    return [c for c in VIGOR_CITIES if c in found] + [c for c in found if c not in VIGOR_CITIES]


def protocol_cities(root: str | Path, protocol: Literal["same_area", "cross_area"], part: str) -> list[str]:
    """The cities a protocol trains (``part='train'``) or tests (``'test'``) on."""
    if part not in ("train", "test"):
        raise ValueError(f"part must be 'train' or 'test', got {part!r}")
    if protocol == "same_area":
        return dataset_cities(root)
    if protocol != "cross_area":
        raise ValueError(f"protocol must be 'same_area' or 'cross_area', got {protocol!r}")
    meta = read_metadata(root)
    if meta is not None:
        cities = meta.cross_area_train if part == "train" else meta.cross_area_test
    else:
        cities = list(VIGOR_CROSS_AREA[part])
    if not cities:
        raise DatasetError(f"{root}: no cross-area {part} cities declared")
    return list(cities)


class VigorDataset:
    """A VIGOR-layout dataset (ours or the real download), indexed: arrays for loaders, samples on demand.

    Arrays (N panoramas, M satellite images over the chosen cities, in city order):

    - ``pano_paths`` (N), ``pano_lat``/``pano_lon`` (N,), ``pano_city`` (N,) index into ``cities``
    - ``label`` (N, 4): satellite indices, positive first
    - ``delta_px`` (N, 4, 2): VIGOR's (dy, dx) in pixels of the 640-px image
    - ``delta_m`` (N, 4, 2): the panorama's (east, north) metres from each tile centre
    - ``iou`` (N, 4): VIGOR's IoU of each tile with a tile-sized box at the panorama
    - ``sat_paths`` (M), ``sat_lat``/``sat_lon`` (M,), ``sat_city`` (M,)
    """

    def __init__(
        self,
        root: str | Path,
        cities: Sequence[str] | None = None,
        split: Split = "same_area_train",
        *,
        check_files: bool = True,
        check_size: bool = True,
        pano_heading_deg: float | None = None,
    ) -> None:
        """``pano_heading_deg``: heading of the panoramas' centre column (clockwise from true north)
        when the dataset does not declare it (the real download is north-aligned, but where north
        sits in the image is not stated in its files); None keeps what the metadata says."""
        if split not in LABEL_FILES:
            raise ValueError(f"split must be one of {', '.join(LABEL_FILES)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.meta = read_metadata(self.root)
        self.cities = list(cities) if cities is not None else dataset_cities(self.root)
        if not self.cities:
            raise DatasetError(f"{self.root}: no cities to read")
        if self.meta is not None:
            unknown = [c for c in self.cities if c not in self.meta.cities]
            if unknown:
                raise DatasetError(
                    f"{metadata_path(self.root)}: city {unknown[0]!r} is not in this dataset "
                    f"(cities: {', '.join(self.meta.cities)})"
                )
            m = self.meta
            self.label_gsd_m = m.label_gsd_m
            self.tile_m = m.tile_m
            sat_hw: tuple[int, int] = (m.satellite_px, m.satellite_px)
            pano_hw: tuple[int, int] = (m.panorama.height_px, m.panorama.width_px)
            heading = m.panorama.center_heading_deg if m.panorama.north == "true" else None
        else:
            self.label_gsd_m = VIGOR_GSD_M
            self.tile_m = VIGOR_GSD_M * VIGOR_SAT_PX
            sat_hw, pano_hw, heading = (VIGOR_SAT_PX, VIGOR_SAT_PX), VIGOR_PANO_HW, None
        self.aerial_hw: tuple[int, int] | None = sat_hw if check_size else None
        self.street_hw: tuple[int, int] | None = pano_hw if check_size else None
        self.sat_px = sat_hw[0]
        self.aerial_gsd_m = self.tile_m / self.sat_px
        self.heading_deg = pano_heading_deg if pano_heading_deg is not None else heading
        self.fov_deg = 360.0
        self._index(check_files)

    def _index(self, check_files: bool) -> None:
        sat_paths: list[Path] = []
        sat_latlon: list[tuple[float, float]] = []
        sat_city: list[int] = []
        pano_paths: list[Path] = []
        pano_latlon: list[tuple[float, float]] = []
        pano_city: list[int] = []
        labels: list[list[int]] = []
        deltas: list[list[float]] = []
        for ci, city in enumerate(self.cities):
            folder = self.root / "splits" / city
            list_file = folder / SATELLITE_LIST
            if not list_file.is_file():
                raise DatasetError(f"city {city!r}: no satellite list {list_file}")
            sat_dir = self.root / city / "satellite"
            city_sats: dict[str, int] = {}
            for lineno, line in enumerate(list_file.read_text().splitlines(), 1):
                name = line.strip()
                if not name:
                    continue
                if name in city_sats:
                    raise DatasetError(f"{list_file}:{lineno}: satellite {name!r} is listed twice")
                try:
                    sat_latlon.append(parse_satellite_filename(name))
                except ValueError as err:
                    raise DatasetError(f"{list_file}:{lineno}: {err}") from None
                city_sats[name] = len(sat_paths)
                sat_paths.append(sat_dir / name)
                sat_city.append(ci)
            label_file = folder / LABEL_FILES[self.split]
            if not label_file.is_file():
                raise DatasetError(f"city {city!r}: no label file {label_file} for split {self.split!r}")
            pano_dir = self.root / city / "panorama"
            for lineno, line in enumerate(label_file.read_text().splitlines(), 1):
                cols = line.split()
                if not cols:
                    continue
                where = f"{label_file}:{lineno}"
                if len(cols) != 13:
                    raise DatasetError(
                        f"{where}: expected 13 space-separated columns 'pano sat1 dy1 dx1 ... sat4 dy4 dx4', "
                        f"got {len(cols)}"
                    )
                try:
                    latlon = parse_pano_filename(cols[0])
                except ValueError as err:
                    raise DatasetError(f"{where}: {err}") from None
                try:
                    row_deltas = [float(v) for k in range(4) for v in cols[2 + 3 * k : 4 + 3 * k]]
                except ValueError as err:
                    raise DatasetError(f"{where}: the dy/dx columns must be numbers ({err})") from None
                row: list[int] = []
                for k in range(4):
                    sat = cols[1 + 3 * k]
                    if sat not in city_sats:
                        raise DatasetError(f"{where}: satellite {sat!r} (column {2 + 3 * k}) is not in {list_file}")
                    row.append(city_sats[sat])
                if not np.all(np.isfinite(row_deltas)):
                    raise DatasetError(f"{where}: offsets must be finite numbers")
                pano_latlon.append(latlon)
                pano_paths.append(pano_dir / cols[0])
                pano_city.append(ci)
                labels.append(row)
                deltas.append(row_deltas)
        if check_files:
            require_files(sat_paths, "satellite image", f"{self.root / 'splits'}/*/{SATELLITE_LIST}")
            require_files(pano_paths, "panorama", f"{self.root / 'splits'}/*/{LABEL_FILES[self.split]}")

        self.sat_paths = sat_paths
        sat_ll = np.asarray(sat_latlon, dtype=np.float64).reshape(-1, 2)
        self.sat_lat, self.sat_lon = sat_ll[:, 0], sat_ll[:, 1]
        self.sat_city = np.asarray(sat_city, dtype=np.int64)
        self.pano_paths = pano_paths
        pano_ll = np.asarray(pano_latlon, dtype=np.float64).reshape(-1, 2)
        self.pano_lat, self.pano_lon = pano_ll[:, 0], pano_ll[:, 1]
        self.pano_city = np.asarray(pano_city, dtype=np.int64)
        self.label = np.asarray(labels, dtype=np.int64).reshape(-1, 4)
        self.delta_px = np.asarray(deltas, dtype=np.float64).reshape(-1, 4, 2)
        self.delta_m = delta_to_en_m(self.delta_px, self.label_gsd_m)
        self.iou = vigor_iou(self.delta_m[..., 0], self.delta_m[..., 1], self.tile_m)

    def __len__(self) -> int:
        return len(self.pano_paths)

    @property
    def num_aerial(self) -> int:
        return len(self.sat_paths)

    def __repr__(self) -> str:
        return (
            f"VigorDataset({str(self.root)!r}, cities={self.cities}, split={self.split!r}: "
            f"{len(self)} panoramas, {self.num_aerial} satellite images, label GSD {self.label_gsd_m:g} m/px)"
        )

    def street(self, i: int) -> np.ndarray:
        """Panorama ``i``, uint8 RGB."""
        return read_rgb(self.pano_paths[check_index(i, len(self), "panorama")], self.street_hw, "panorama")

    def aerial(self, j: int) -> np.ndarray:
        """Satellite image ``j``, uint8 RGB."""
        return read_rgb(self.sat_paths[check_index(j, self.num_aerial, "satellite")], self.aerial_hw, "satellite image")

    def __getitem__(self, i: int) -> Sample:
        i = check_index(i, len(self), "panorama")
        ids = self.label[i].copy()
        return Sample(
            index=i,
            street_path=self.pano_paths[i],
            aerial_paths=tuple(self.sat_paths[j] for j in ids),
            aerial_ids=ids,
            offsets_m=self.delta_m[i].copy(),
            iou=self.iou[i].copy(),
            lat=float(self.pano_lat[i]),
            lon=float(self.pano_lon[i]),
            heading_deg=self.heading_deg,
            fov_deg=self.fov_deg,
            city=self.cities[int(self.pano_city[i])],
            aerial_gsd_m=self.aerial_gsd_m,
            street_hw=self.street_hw,
            aerial_hw=self.aerial_hw,
        )

    def positive_pixel(self, i: int) -> np.ndarray:
        """(row, col) of panorama ``i`` in its positive satellite image as stored (continuous pixels)."""
        return delta_to_pixel(self.delta_px[check_index(i, len(self), "panorama"), 0], self.sat_px)


def open_protocol(
    root: str | Path, protocol: Literal["same_area", "cross_area"], part: Literal["train", "test"], **kwargs: Any
) -> VigorDataset:
    """The train or test side of VIGOR's same-area or cross-area protocol."""
    cities = protocol_cities(root, protocol, part)
    split: Split = f"same_area_{part}" if protocol == "same_area" else "cross_area"  # type: ignore[assignment]
    return VigorDataset(root, cities, split, **kwargs)
