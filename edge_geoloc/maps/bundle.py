"""The map bundle on disk: a folder a device opens read-only, memory-mapped, verified before use.

    manifest.yaml      format, region, CRS, tiling, the aerial encoder (card sha256, graph sha256),
                       descriptor dim and metric, shard grid, HNSW settings, every file's size and sha256
    tiles.npy          the tile table in storage order: tiling id, east/north, lat/lon, shard
    shards.npy         one row per shard: id, first row, tile count, sha256 of its index and descriptors
    descriptors.npy    float16 (tiles, dim), L2-normalized, in storage order (memory-mapped)
    shards/NNNNNN.hnsw one hnswlib index per shard; labels are rows of descriptors.npy
    shards/NNNNNN.proj.npy  (only with ``hnsw.dim < descriptor dim``) the shard's mean and PCA basis
    ortho.tif          (optional) the map imagery for registration: a tiled WebP GeoTIFF with overviews,
                       grid-north-up in the map CRS (:mod:`edge_geoloc.maps.ortho` reads it by window)
    ortho.sha256.npy   (with ortho.tif) the sha256 of each base-level TIFF tile's bytes, checked at its first read

Storage order is geographic (:mod:`edge_geoloc.maps.layout`): shard by shard, a Hilbert curve
inside each, so a shard is one contiguous block of rows and a scope a few runs inside it.

Checks: opening compares every file's size with the manifest and hashes the small files (tile,
shard and imagery-tile tables); a shard's descriptor rows and index file are hashed the first time the shard is
touched (a 1M-tile map opens in milliseconds, and a corrupt shard is refused before hnswlib parses
it: hnswlib trusts its input and a damaged graph can crash the process). ``verify="full"`` hashes
everything at open. No timestamps are written, so the same inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from edge_geoloc.config import ConfigError, check, from_mapping, read_yaml, to_mapping
from edge_geoloc.geo import MapCRS, Tiling
from edge_geoloc.maps.graph import graph_dim
from edge_geoloc.maps.layout import ShardGrid
from edge_geoloc.runtime.card import sha256_of as sha256_file  # one file hasher for graphs and maps

FORMAT = "edge-geoloc-map/1"
MANIFEST = "manifest.yaml"
TILES = "tiles.npy"
SHARDS = "shards.npy"
DESCRIPTORS = "descriptors.npy"
SHARD_DIR = "shards"
ORTHO = "ortho.tif"
ORTHO_HASHES = "ortho.sha256.npy"

TILE_DTYPE = np.dtype(
    [("id", "<i8"), ("east", "<f8"), ("north", "<f8"), ("lat", "<f8"), ("lon", "<f8"), ("shard", "<i8")]
)
SHARD_DTYPE = np.dtype(
    [
        ("id", "<i8"),
        ("start", "<i8"),
        ("count", "<i8"),
        ("index_bytes", "<i8"),
        ("index_sha256", "S64"),
        ("descriptors_sha256", "S64"),
        ("proj_sha256", "S64"),
    ]
)
VERIFY = ("lazy", "full", "none")


class BundleError(ValueError):
    """A map bundle that cannot be used: missing, corrupt, another format, another encoder."""


def _sha(v: str) -> bool:
    return len(v) == 64 and all(c in "0123456789abcdef" for c in v)


def sha256_bytes(data: Any) -> str:
    return hashlib.sha256(memoryview(np.ascontiguousarray(data)).cast("B")).hexdigest()


@dataclass(frozen=True)
class RegionInfo:
    """Where the map is and what its imagery came from (for humans and for `map info`)."""

    name: str
    center_lat: float
    center_lon: float
    source: str  # synthetic, geotiff, worldfile, xyz, descriptors, extract
    imagery: str = ""  # the imagery's file (or folder) name, or the synthetic world
    native_gsd_m: float = 0.0  # ground size of one pixel of that imagery (0: not known)
    nodata_tiles: int = 0  # tiles of the tiling left out: mostly nodata in the imagery


@dataclass(frozen=True)
class TilingInfo:
    """The dense VIGOR tiling (:class:`~edge_geoloc.geo.Tiling`) whose ids the tile table uses."""

    east_min: float
    north_min: float
    east_max: float
    north_max: float
    tile_m: float = field(metadata=check(lambda v: v > 0, "a tile side in metres"))
    stride_m: float = field(metadata=check(lambda v: v > 0, "a stride in metres"))
    n_rows: int = field(metadata=check(lambda v: v > 0, "a positive row count"))
    n_cols: int = field(metadata=check(lambda v: v > 0, "a positive column count"))
    tile_px: int = field(metadata=check(lambda v: v > 0, "a tile size in pixels"))
    gsd_m: float = field(metadata=check(lambda v: v > 0, "metres per pixel"))
    true_north: bool = True  # tiles rotated by the meridian convergence so up is true north

    def __post_init__(self) -> None:
        t = self.tiling()
        if (t.n_rows, t.n_cols) != (self.n_rows, self.n_cols) or abs(t.stride_m - self.stride_m) > 1e-9:
            raise ValueError(
                f"tiling bounds give {t.n_rows} x {t.n_cols} tiles at stride {t.stride_m} m,"
                f" the manifest says {self.n_rows} x {self.n_cols} at {self.stride_m} m"
            )

    def tiling(self) -> Tiling:
        return Tiling(self.east_min, self.north_min, self.east_max, self.north_max, self.tile_m)

    @classmethod
    def of(cls, tiling: Tiling, tile_px: int, gsd_m: float, true_north: bool = True) -> TilingInfo:
        return cls(
            float(tiling.east_min),
            float(tiling.north_min),
            float(tiling.east_max),
            float(tiling.north_max),
            float(tiling.tile_m),
            float(tiling.stride_m),
            tiling.n_rows,
            tiling.n_cols,
            int(tile_px),
            float(gsd_m),
            true_north,
        )


@dataclass(frozen=True)
class EncoderInfo:
    """The aerial encoder the descriptors came from; a street encoder must pair with this one."""

    model: str
    aerial_sha256: str = field(metadata=check(_sha, "64 lowercase hex digits (the aerial graph's sha256)"))
    card_sha256: str = field(metadata=check(lambda v: v == "" or _sha(v), "64 lowercase hex digits or ''"))
    descriptor_dim: int = field(metadata=check(lambda v: v > 0, "a positive dimension"))
    metric: Literal["cosine"] = "cosine"
    backend: str = ""  # onnxruntime, tensorrt, ...: FP16 engines give slightly different descriptors
    keep_ratio: float = 1.0
    gsd_m: float = 0.0  # the card's aerial GSD (the map may resample tiles of another side to its size)
    tile_m: float = 0.0


@dataclass(frozen=True)
class ShardInfo:
    tiles_per_side: int = field(metadata=check(lambda v: v >= 1, "a positive number of tiles"))
    side_m: float = field(metadata=check(lambda v: v > 0, "metres"))
    count: int = field(metadata=check(lambda v: v >= 1, "at least one shard"))
    curve: Literal["hilbert"] = "hilbert"


@dataclass(frozen=True)
class HnswInfo:
    """hnswlib settings; ``dim`` below the descriptor dim means the graph holds a per-shard PCA projection."""

    dim: int = field(metadata=check(lambda v: v > 0, "a positive dimension"))
    M: int = field(default=16, metadata=check(lambda v: 2 <= v <= 128, "an HNSW M in [2, 128]"))
    ef_construction: int = field(default=100, metadata=check(lambda v: v >= 1, "a positive ef"))
    ef_search: int = field(default=32, metadata=check(lambda v: v >= 1, "a positive ef"))
    seed: int = 100
    space: Literal["ip"] = "ip"
    lifted: bool = False  # a projected graph with one more coordinate: every vector on a sphere (maps/graph.py)


@dataclass(frozen=True)
class FileInfo:
    bytes: int = field(metadata=check(lambda v: v >= 0, "a byte count"))
    sha256: str = field(metadata=check(_sha, "64 lowercase hex digits"))


@dataclass(frozen=True)
class OrthoInfo:
    """The imagery layer (``ortho.tif``): a raster aligned with the map CRS axes (up = grid north).

    Pixel (row, col) covers east ``[east_min + col*gsd, east_min + (col+1)*gsd)`` and north
    ``(north_max - (row+1)*gsd, north_max - row*gsd]``: its centre is at ``+0.5`` pixel (PixelIsArea)."""

    file: str
    gsd_m: float = field(metadata=check(lambda v: v > 0, "metres per pixel"))
    east_min: float  # west edge of column 0
    north_max: float  # north edge of row 0
    width: int = field(metadata=check(lambda v: v > 0, "a positive pixel count"))
    height: int = field(metadata=check(lambda v: v > 0, "a positive pixel count"))
    tile_px: int = field(metadata=check(lambda v: v > 0 and v % 16 == 0, "a TIFF tile side (a multiple of 16)"))
    compression: Literal["webp", "jpeg"] = "webp"
    quality: int = field(default=90, metadata=check(lambda v: 1 <= v <= 100, "a quality in [1, 100]"))
    alpha: bool = False  # a fourth channel marks missing pixels (source nodata): 0 missing, 255 imagery
    overviews: int = field(default=0, metadata=check(lambda v: v >= 0, "a count of overview levels"))


@dataclass(frozen=True)
class Manifest:
    format: str
    region: RegionInfo
    crs: str
    tiling: TilingInfo
    encoder: EncoderInfo
    tiles: int = field(metadata=check(lambda v: v >= 1, "at least one tile"))
    shards: ShardInfo
    hnsw: HnswInfo
    files: dict[str, FileInfo]
    ortho: OrthoInfo | None = None  # the imagery layer; None: a map without imagery (no metric refinement)

    def map_crs(self) -> MapCRS:
        return MapCRS(self.crs)

    def shard_grid(self) -> ShardGrid:
        return ShardGrid(self.tiling.tiling(), self.shards.tiles_per_side)


def shard_file(shard_id: int, suffix: str = ".hnsw") -> str:
    return f"{SHARD_DIR}/{int(shard_id):06d}{suffix}"


def read_manifest(path: str | Path) -> Manifest:
    """Parse and validate ``manifest.yaml``; an unknown format is refused before anything else."""
    path = Path(path)
    file = path / MANIFEST if path.is_dir() else path
    if not file.exists():
        what = "no map bundle here" if path.exists() else "no such folder"
        raise BundleError(f"{file}: {what} (build one with `edge-geoloc map build`)")
    try:
        data = read_yaml(file)
    except ConfigError as err:
        raise BundleError(str(err)) from None
    if not isinstance(data, dict):
        raise BundleError(f"{file}: not a map manifest (expected a mapping)")
    fmt = data.get("format")
    if fmt != FORMAT:
        raise BundleError(
            f"{file}: map bundle format {fmt!r} is not one this edge-geoloc reads ({FORMAT!r});"
            " rebuild the map with this version or use the edge-geoloc that built it"
        )
    try:
        return from_mapping(Manifest, data, str(file))
    except ConfigError as err:
        raise BundleError(str(err)) from None


def write_manifest(manifest: Manifest, folder: str | Path) -> Path:
    path = Path(folder) / MANIFEST
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(
        "# edge-geoloc map bundle: see edge_geoloc/maps/bundle.py for the meaning of every file.\n"
        + yaml.safe_dump(to_mapping(manifest), sort_keys=False)
    )
    os.replace(tmp, path)
    return path


def check_encoder(manifest: Manifest, card: Any, source: str = "map") -> None:
    """Refuse a map whose aerial encoder is not the one the street encoder's model card pairs with."""
    enc = manifest.encoder
    aerial = getattr(getattr(card, "aerial", None), "sha256", None)
    if aerial is None:
        raise TypeError(f"expected a ModelCard, got {type(card).__name__}")
    if aerial != enc.aerial_sha256:
        raise BundleError(
            f"{source}: built with aerial encoder {enc.aerial_sha256[:12]}... (model '{enc.model}'), but the street"
            f" encoder's model card (model '{card.model}') pairs with aerial encoder {aerial[:12]}...:"
            " descriptors of different encoders are not comparable; rebuild the map with this model"
            " (edge-geoloc map build --model DIR)"
        )
    if card.descriptor_dim != enc.descriptor_dim or card.metric != enc.metric:
        raise BundleError(
            f"{source}: descriptors are {enc.descriptor_dim}-d {enc.metric}, the model card gives"
            f" {card.descriptor_dim}-d {card.metric}"
        )


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise BundleError(f"{path}: not a readable .npy file ({err})") from None


class Bundle:
    """An opened map bundle: manifest, tile and shard tables, memory-mapped descriptors, shard checks."""

    def __init__(self, path: str | Path, verify: str = "lazy") -> None:
        if verify not in VERIFY:
            raise ValueError(f"verify must be one of {', '.join(VERIFY)}, got {verify!r}")
        self.path = Path(path)
        self.verify = verify
        self.manifest = read_manifest(self.path)
        m = self.manifest
        for name in (TILES, SHARDS, DESCRIPTORS):
            if name not in m.files:
                raise BundleError(f"{self.path / MANIFEST}: the manifest lists no '{name}'")
        for name, info in m.files.items():
            f = self.path / name
            if not f.exists():
                raise BundleError(f"{f}: missing (the manifest lists it)")
            size = f.stat().st_size
            if size != info.bytes:
                raise BundleError(f"{f}: {size} bytes, the manifest says {info.bytes} (truncated or replaced)")
        small = [TILES, SHARDS, *([ORTHO_HASHES] if ORTHO_HASHES in m.files else [])]
        hashed = list(m.files) if verify == "full" else small if verify == "lazy" else []
        for name in hashed:
            self._check_file(name, m.files[name].sha256)
        self.tiles = _load_npy(self.path / TILES, mmap=True)
        self.shards = _load_npy(self.path / SHARDS, mmap=False)
        self.descriptors = _load_npy(self.path / DESCRIPTORS, mmap=True)
        d = m.encoder.descriptor_dim
        if self.tiles.dtype != TILE_DTYPE or self.tiles.shape != (m.tiles,):
            raise BundleError(
                f"{self.path / TILES}: {self.tiles.dtype} {self.tiles.shape}, expected ({m.tiles},) tiles"
            )
        if self.shards.dtype != SHARD_DTYPE or self.shards.shape != (m.shards.count,):
            raise BundleError(f"{self.path / SHARDS}: {self.shards.shape} rows, expected {m.shards.count}")
        if self.descriptors.dtype != np.float16 or self.descriptors.shape != (m.tiles, d):
            raise BundleError(
                f"{self.path / DESCRIPTORS}: {self.descriptors.dtype} {self.descriptors.shape}, expected float16 ({m.tiles}, {d})"
            )
        starts, counts = self.shards["start"], self.shards["count"]
        if (
            np.any(counts < 1)
            or starts[0] != 0
            or np.any(starts[1:] != starts[:-1] + counts[:-1])
            or (starts[-1] + counts[-1] != m.tiles)
        ):
            raise BundleError(f"{self.path / SHARDS}: shard row ranges do not tile the {m.tiles} rows")
        self.grid = m.shard_grid()
        self.crs = m.map_crs()
        # "none" trusts every shard; "lazy" hashes a shard at first use; "full" hashes every shard below.
        self._verified: set[int] = set(range(len(self.shards))) if verify == "none" else set()
        # Shard grid id -> position in the shard table (dense: the grid is small even for a country).
        self.shard_pos = np.full(len(self.grid), -1, dtype=np.int64)
        ids = self.shards["id"]
        if np.any((ids < 0) | (ids >= len(self.grid))):
            raise BundleError(f"{self.path / SHARDS}: shard ids outside the {len(self.grid)}-shard grid")
        self.shard_pos[ids] = np.arange(len(ids))
        # Shard files exist with their recorded sizes (a stat each: cheap; hashing waits for first use).
        for sid, nbytes in zip(ids.tolist(), self.shards["index_bytes"].tolist()):
            f = self.path / shard_file(sid)
            size = f.stat().st_size if f.exists() else None
            if size != nbytes:
                what = (
                    "missing" if size is None else f"{size} bytes, the manifest says {nbytes} (truncated or replaced)"
                )
                raise BundleError(f"{f}: {what}")
            if self.projected and not (self.path / shard_file(sid, ".proj.npy")).exists():
                raise BundleError(f"{self.path / shard_file(sid, '.proj.npy')}: missing")
        if verify == "full":  # every shard's descriptor rows, graph and projection, not only the listed files
            for pos in range(len(self.shards)):
                self.verify_shard(pos)

    def _check_file(self, name: str, expected: str) -> None:
        digest = sha256_file(self.path / name)
        if digest != expected:
            raise BundleError(
                f"{self.path / name}: sha256 {digest[:12]}... differs from the manifest's {expected[:12]}..."
                " (the file is corrupt; copy or build the map again)"
            )

    @property
    def n_tiles(self) -> int:
        return self.manifest.tiles

    @property
    def dim(self) -> int:
        return self.manifest.encoder.descriptor_dim

    @property
    def projected(self) -> bool:
        return self.manifest.hnsw.dim < self.dim

    def rows(self, pos: int) -> tuple[int, int]:
        """Descriptor rows [start, stop) of the shard at table position ``pos``."""
        s = self.shards[pos]
        return int(s["start"]), int(s["start"] + s["count"])

    def verify_shard(self, pos: int) -> None:
        """Hash a shard's descriptor rows, index file and projection once; raise on any mismatch."""
        if pos in self._verified:
            return
        s = self.shards[pos]
        a, b = self.rows(pos)
        digest = self._hash_rows(a, b)
        if digest != s["descriptors_sha256"].decode():
            raise BundleError(
                f"{self.path / DESCRIPTORS}: rows {a}..{b - 1} (shard {int(s['id'])}) fail their sha256"
                " (the descriptor file is corrupt; copy or build the map again)"
            )
        self._check_file(shard_file(s["id"]), s["index_sha256"].decode())
        if self.projected:
            self._check_file(shard_file(s["id"], ".proj.npy"), s["proj_sha256"].decode())
        self._verified.add(pos)

    def read_rows(self, a: int, b: int, block_bytes: int = 1 << 20) -> Iterator[bytes]:
        """Descriptor rows [a, b) in blocks of whole rows (about ``block_bytes``), read from the file, not
        through the memory map, and dropped from the page cache after: reading a shard for its hash or its
        projections leaves none of its pages resident, so a search holds only the pages it reads (see
        ``benchmarks/search.py --memory``). A truncated file ends the blocks early."""
        row = self.descriptors.strides[0]
        offset, left = int(self.descriptors.offset) + a * row, (b - a) * row
        step = max(1, block_bytes // row) * row
        with open(self.path / DESCRIPTORS, "rb", buffering=0) as f:
            try:
                f.seek(offset)
                while left > 0 and (block := f.read(min(left, step))):
                    yield block
                    left -= len(block)
            finally:
                if hasattr(os, "posix_fadvise"):
                    os.posix_fadvise(f.fileno(), offset, (b - a) * row, os.POSIX_FADV_DONTNEED)

    def _hash_rows(self, a: int, b: int) -> str:
        """sha256 of descriptor rows [a, b), as stored."""
        h = hashlib.sha256()
        for block in self.read_rows(a, b):
            h.update(block)
        return h.hexdigest()

    def load_index(self, pos: int) -> Any:
        """The shard's hnswlib index (verified first)."""
        import hnswlib

        self.verify_shard(pos)
        s = self.shards[pos]
        index = hnswlib.Index(space=self.manifest.hnsw.space, dim=graph_dim(self.manifest.hnsw))
        try:
            index.load_index(str(self.path / shard_file(s["id"])), max_elements=int(s["count"]))
        except RuntimeError as err:
            raise BundleError(f"{self.path / shard_file(s['id'])}: hnswlib cannot read it ({err})") from None
        if index.get_current_count() != s["count"]:
            raise BundleError(
                f"{self.path / shard_file(s['id'])}: {index.get_current_count()} items, the shard has {int(s['count'])}"
            )
        index.set_num_threads(1)
        return index

    def load_projection(self, pos: int) -> tuple[np.ndarray, np.ndarray]:
        """(mean (D,), basis (D, d)) float32 of a projected shard."""
        self.verify_shard(pos)
        data = _load_npy(self.path / shard_file(self.shards[pos]["id"], ".proj.npy"), mmap=False)
        d, h = self.dim, self.manifest.hnsw.dim
        if data.shape != (d, h + 1) or data.dtype != np.float32:
            raise BundleError(f"{self.path / shard_file(self.shards[pos]['id'], '.proj.npy')}: shape {data.shape}")
        return np.ascontiguousarray(data[:, 0]), np.ascontiguousarray(data[:, 1:])
