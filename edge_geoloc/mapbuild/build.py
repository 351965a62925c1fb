"""Building a map bundle: a plan, one independent task per shard, then an assembly step.

    plan   (`map build` writes it into OUT.building/): region, imagery, encoder, tiling, shard table
    shard  (`build_shard(work, shard_id)`): render + encode its tiles in fixed batches, then its
           hnswlib index; any process or cluster node can run any shard, in any order
    assemble  tile table, descriptors, shard files and manifest into OUT.building/bundle, then one
           rename to OUT: a reader never sees a half-written bundle

Resuming: a shard's descriptors are written batch by batch into a preallocated file, and a
progress file, replaced atomically after each batch is flushed, says how many rows are final. The
batches are fixed slices of the shard (never resized), encoding is deterministic, hnswlib is built
on one thread with a fixed seed and no timestamp is written anywhere, so a build killed at any
point and started again redoes at most the batch in flight and ends with the same bytes.

Cluster engines run the shard tasks unchanged (see the README, "Maps"): the plan is plain files
on a shared folder and every task is ``build_shard(work, shard_id)``.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from edge_geoloc.config import ConfigError, check, from_mapping, read_yaml, to_mapping
from edge_geoloc.geo import MapCRS, Tiling
from edge_geoloc.mapbuild.ortho import Segments, chunk_paths, chunk_segments, chunks, encode_chunk, write_layer
from edge_geoloc.maps.bundle import (
    DESCRIPTORS,
    FORMAT,
    SHARD_DIR,
    SHARD_DTYPE,
    SHARDS,
    TILE_DTYPE,
    TILES,
    BundleError,
    EncoderInfo,
    FileInfo,
    HnswInfo,
    Manifest,
    OrthoInfo,
    RegionInfo,
    ShardInfo,
    TilingInfo,
    read_manifest,
    sha256_bytes,
    sha256_file,
    shard_file,
    write_manifest,
)
from edge_geoloc.maps.layout import ShardGrid
from edge_geoloc.maps.ortho import ORTHO, ORTHO_HASHES

log = logging.getLogger(__name__)

PLAN_FORMAT = "edge-geoloc-map-plan/1"
PLAN = "plan.yaml"
PLAN_SHARDS = "shards.npy"
INPUT = "input"
WORK = "work"
ASSEMBLED = "assembled"  # in a work folder kept after assembly (keep_work): the bundle is out
DEFAULT_SHARD_STRIDES = 256  # shard side in tiling strides: 8192 m for 64 m tiles, 65536 tiles a shard
WARN_UPSAMPLING = 2.0  # imagery this many times coarser than the map's GSD: a warning (tiles are blurred)
MAX_UPSAMPLING = 8.0  # ... and this many: refused unless allow_upsampling (flat tiles, useless descriptors)
MIN_VALID = 0.5  # a tile with less than this share of its footprint holding imagery (nodata) is not built
PLAN_SHARD_DTYPE = np.dtype([("id", "<i8"), ("start", "<i8"), ("count", "<i8")])


@dataclass(frozen=True)
class BuildPlan:
    """Everything a shard task needs, written once to ``OUT.building/plan.yaml``."""

    format: str = field(metadata=check(lambda v: v == PLAN_FORMAT, f"'{PLAN_FORMAT}'"))
    out: str  # the bundle's final folder
    region: RegionInfo
    crs: str
    tiling: TilingInfo
    encoder: EncoderInfo
    shard_tiles: int = field(metadata=check(lambda v: v >= 1, "a positive number of tiles"))
    hnsw: HnswInfo
    region_file: str = ""  # imagery builds: the region YAML (absolute) and its sha256
    region_sha256: str = ""
    model_dir: str = ""  # imagery builds: the export folder with model.yaml
    backend: str = "auto"
    threads: int = 1
    batch: int = field(default=64, metadata=check(lambda v: v >= 1, "a positive batch size"))
    inputs: bool = False  # tiles and descriptors given in input/ (extract, benchmarks), nothing to encode
    sparse: bool = False  # imagery builds: only the tiles listed in input/tiles.npy (the rest are nodata)
    ortho: OrthoInfo | None = None  # the imagery layer: rendered in chunk tasks, or given in input/ (extract)

    def grid(self) -> ShardGrid:
        return ShardGrid(self.tiling.tiling(), self.shard_tiles)


def work_dir_for(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".building")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_save(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


_PLANS: dict[tuple[str, int, int], BuildPlan] = {}  # parsed plans by (path, mtime, size): tasks read it often


def read_plan(work: str | Path) -> BuildPlan:
    path = Path(work) / PLAN
    if not path.exists():
        raise BundleError(f"{path}: no build plan here (start the build with `edge-geoloc map build`)")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _PLANS:
        try:
            plan = from_mapping(BuildPlan, read_yaml(path) or {}, str(path))
        except ConfigError as err:
            raise BundleError(str(err)) from None
        _PLANS.clear()
        _PLANS[key] = plan
    return _PLANS[key]


def plan_shards(work: str | Path) -> np.ndarray:
    return np.load(Path(work) / PLAN_SHARDS, allow_pickle=False)


def write_plan(work: Path, plan: BuildPlan, shards: np.ndarray) -> Path:
    """Write the plan, or check that an unfinished build in ``work`` was started with the same one."""
    text = yaml.safe_dump(to_mapping(plan), sort_keys=False)
    path = work / PLAN
    if path.exists():
        old = path.read_text()
        if old != text or not np.array_equal(plan_shards(work), shards):
            a, b = yaml.safe_load(old), yaml.safe_load(text)
            diff = [k for k in b if a.get(k) != b.get(k)] or ["shard table"]
            raise BundleError(
                f"{work}: an unfinished build with other settings is there (differs in: {', '.join(diff)});"
                " run it with the same settings to resume, or delete the folder to start over"
            )
        log.info("resuming the build in %s", work)
        return path
    work.mkdir(parents=True, exist_ok=True)
    _atomic_save(work / PLAN_SHARDS, shards)
    _atomic_write(path, text)
    return path


def shard_table(grid: ShardGrid, tile_ids: np.ndarray | None = None) -> np.ndarray:
    """Shards in storage order with their first row and tile count (``tile_ids`` already in storage order)."""
    if tile_ids is None:  # dense: every tiling cell
        ids, counts = [], []
        for sid in range(len(grid)):
            r0, r1, c0, c1 = grid.cell(sid)
            ids.append(sid)
            counts.append((r1 - r0) * (c1 - c0))
        ids_a, counts_a = np.asarray(ids, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    else:
        sid = grid.shard_of(tile_ids)
        if np.any(np.diff(sid) < 0):
            raise ValueError("tiles are not in storage order (shard by shard)")
        ids_a, counts_a = np.unique(sid, return_counts=True)
    out = np.zeros(len(ids_a), dtype=PLAN_SHARD_DTYPE)
    out["id"], out["count"] = ids_a, counts_a
    out["start"] = np.concatenate([[0], np.cumsum(counts_a)[:-1]])
    return out


def shard_tile_ids(plan: BuildPlan, work: Path, row: np.void) -> np.ndarray:
    """Tiling ids of one shard's tiles, in storage order."""
    a, b = int(row["start"]), int(row["start"] + row["count"])
    if plan.inputs or plan.sparse:
        return np.asarray(np.load(work / INPUT / TILES, mmap_mode="r")[a:b])
    grid = plan.grid()
    r0, r1, c0, c1 = grid.cell(int(row["id"]))
    rr, cc = np.meshgrid(np.arange(r0, r1), np.arange(c0, c1), indexing="ij")
    ids = grid.tiling.tile_id(rr.ravel(), cc.ravel())
    return ids[grid.storage_order(ids)]


# --- planning -------------------------------------------------------------------------------------


def plan_build(
    region_file: str | Path,
    model_dir: str | Path,
    out: str | Path,
    *,
    shard_m: float | None = None,
    hnsw_dim: int | None = None,
    M: int = 16,
    ef_construction: int = 100,
    ef_search: int = 32,
    batch: int = 64,
    backend: str = "auto",
    threads: int = 1,
    allow_upsampling: bool = False,
    ortho: bool = True,
    ortho_gsd_m: float | None = None,
) -> Path:
    """Plan the map of a region (its imagery, tiled at the model card's tile side and GSD); returns the work dir.

    With ``ortho`` the bundle keeps the imagery as a layer for registration (:mod:`edge_geoloc.mapbuild.ortho`),
    at ``ortho_gsd_m`` (default: the imagery's own GSD clipped to 0.25-0.5 m/px).

    Imagery coarser than the map's GSD by more than :data:`WARN_UPSAMPLING` is warned about, by more than
    :data:`MAX_UPSAMPLING` refused unless ``allow_upsampling`` (a 300 m/px Landsat scene upsampled to
    1 m/px gives flat tiles whose descriptors all look alike). Tiles whose footprint is mostly nodata
    (less than :data:`MIN_VALID` imagery) are left out of the map and counted."""
    from edge_geoloc.mapbuild.imagery import open_imagery
    from edge_geoloc.runtime.card import load_card, sha256_of
    from edge_geoloc.world.region import Region

    region_file, model_dir = Path(region_file).resolve(), Path(model_dir).resolve()
    region = Region.load(region_file)
    card = load_card(model_dir)
    a = card.aerial
    tile_m = region.tile_m or a.tile_m
    if abs(tile_m - a.tile_m) > 1e-9:
        log.warning(
            "region tile side %g m differs from the model's %g m: tiles are resampled to %d px, a GSD of %g m"
            " where the model was trained at %g m",
            tile_m,
            a.tile_m,
            a.width,
            tile_m / a.width,
            a.gsd_m,
        )
    source = open_imagery(region, region_file)
    map_gsd = tile_m / a.width
    native = float(source.native_gsd_m())
    ratio = native / map_gsd
    log.info("imagery %s: native GSD %.3g m/px, the map's %.3g m/px", source.label(), native, map_gsd)
    if ratio > MAX_UPSAMPLING and not allow_upsampling:
        raise BundleError(
            f"{source.label()}: imagery of {native:.3g} m/px is {ratio:.0f}x coarser than the map's {map_gsd:.3g} m/px"
            f" (the model's GSD); its tiles would be flat and their descriptors alike. Use imagery of at most"
            f" {MAX_UPSAMPLING * map_gsd:.3g} m/px, or pass --allow-upsampling to build it anyway"
        )
    if ratio > WARN_UPSAMPLING:
        log.warning(
            "%s: imagery of %.3g m/px is %.1fx coarser than the map's %.3g m/px: tiles are upsampled and blurred",
            source.label(),
            native,
            ratio,
            map_gsd,
        )
    tiling = source.tiling(tile_m)
    layer = None
    if ortho:
        from edge_geoloc.mapbuild.ortho import default_gsd, plan_layer

        layer = plan_layer(tiling, ortho_gsd_m or default_gsd(native), alpha=source.has_mask())
        log.info(
            "imagery layer: %d x %d px at %g m/px (%d overview levels)",
            layer.width,
            layer.height,
            layer.gsd_m,
            layer.overviews,
        )
    keep_ids = None
    nodata_tiles = 0
    if source.has_mask():
        ids_all, east_all, north_all = tiling.centres()
        valid = source.valid_fraction(east_all, north_all, tile_m)
        keep_ids = ids_all[valid >= MIN_VALID]
        nodata_tiles = int(len(ids_all) - len(keep_ids))
        if len(keep_ids) == 0:
            raise BundleError(
                f"{source.label()}: every tile of the region is mostly nodata (GDAL_NODATA, alpha or mask);"
                " expected imagery over the region"
            )
        if nodata_tiles:
            log.warning("%s: %d of %d tiles are mostly nodata: not built", source.label(), nodata_tiles, len(ids_all))
    _SOURCES.clear()  # keep one: a world holds hundreds of MB
    _SOURCES[(str(region_file), sha256_of(region_file))] = source  # the shard tasks of this process reuse it
    grid = ShardGrid.for_side_m(tiling, shard_m) if shard_m else ShardGrid(tiling, DEFAULT_SHARD_STRIDES)
    encoder = EncoderInfo(
        model=card.model,
        aerial_sha256=a.sha256,
        card_sha256=sha256_of(model_dir / "model.yaml"),
        descriptor_dim=card.descriptor_dim,
        metric=card.metric,
        backend=backend,
        keep_ratio=a.keep_ratio,
        gsd_m=a.gsd_m,
        tile_m=a.tile_m,
    )
    plan = BuildPlan(
        format=PLAN_FORMAT,
        out=str(Path(out).resolve()),
        region=RegionInfo(
            region.name,
            region.center_lat,
            region.center_lon,
            source.kind,
            imagery=source.label(),
            native_gsd_m=round(native, 4),
            nodata_tiles=nodata_tiles,
        ),
        crs=source.crs.to_string(),
        tiling=TilingInfo.of(tiling, a.width, tile_m / a.width),
        encoder=encoder,
        shard_tiles=grid.shard_tiles,
        hnsw=_hnsw_info(card.descriptor_dim, hnsw_dim, M, ef_construction, ef_search),
        region_file=str(region_file),
        region_sha256=sha256_of(region_file),
        model_dir=str(model_dir),
        backend=backend,
        threads=threads,
        batch=batch,
        sparse=keep_ids is not None,
        ortho=layer,
    )
    work = work_dir_for(out)
    if keep_ids is None:
        write_plan(work, plan, shard_table(grid))
        return work
    ids = keep_ids[grid.storage_order(keep_ids)]
    if not (work / PLAN).exists():
        (work / INPUT).mkdir(parents=True, exist_ok=True)
        _atomic_save(work / INPUT / TILES, ids)
    write_plan(work, plan, shard_table(grid, ids))
    return work


def _hnsw_info(dim: int, hnsw_dim: int | None, M: int, ef_construction: int, ef_search: int) -> HnswInfo:
    h = dim if not hnsw_dim else int(hnsw_dim)
    if not 1 <= h <= dim:
        raise ValueError(f"hnsw dim must be in [1, {dim}] (the descriptor dim), got {hnsw_dim}")
    return HnswInfo(dim=h, M=M, ef_construction=ef_construction, ef_search=ef_search, lifted=h < dim)


def plan_from_descriptors(
    out: str | Path,
    *,
    crs: MapCRS | str,
    tiling: Tiling,
    tile_ids: np.ndarray,
    descriptors: np.ndarray,
    encoder: EncoderInfo,
    region: RegionInfo,
    tile_px: int,
    shard_tiles: int = DEFAULT_SHARD_STRIDES,
    hnsw_dim: int | None = None,
    M: int = 16,
    ef_construction: int = 100,
    ef_search: int = 32,
    ortho: tuple[OrthoInfo, Segments] | None = None,
) -> Path:
    """Plan a bundle from descriptors already computed (a corridor extract, benchmarks): no encoding.
    ``ortho``: an imagery layer's geometry and its compressed tiles (a corridor's crop), written to input/."""
    tile_ids = np.asarray(tile_ids, dtype=np.int64)
    if descriptors.ndim != 2 or len(descriptors) != len(tile_ids) or descriptors.shape[1] != encoder.descriptor_dim:
        raise ValueError(
            f"descriptors {descriptors.shape} do not match {len(tile_ids)} tiles of dim {encoder.descriptor_dim}"
        )
    if len(tile_ids) == 0:
        raise ValueError("no tiles: a map needs at least one")
    if len(np.unique(tile_ids)) != len(tile_ids):
        raise ValueError("tile ids repeat")
    tiling.row_col(tile_ids)  # range check
    grid = ShardGrid(tiling, shard_tiles)
    order = grid.storage_order(tile_ids)
    crs_s = crs.to_string() if isinstance(crs, MapCRS) else MapCRS(crs).to_string()
    plan = BuildPlan(
        format=PLAN_FORMAT,
        out=str(Path(out).resolve()),
        region=region,
        crs=crs_s,
        tiling=TilingInfo.of(tiling, tile_px, tiling.tile_m / tile_px),
        encoder=encoder,
        shard_tiles=shard_tiles,
        hnsw=_hnsw_info(encoder.descriptor_dim, hnsw_dim, M, ef_construction, ef_search),
        inputs=True,
        ortho=None if ortho is None else ortho[0],
    )
    work = work_dir_for(out)
    ids = tile_ids[order]
    shards = shard_table(grid, ids)
    if (work / PLAN).exists():
        write_plan(work, plan, shards)  # resuming: the inputs were written before the plan
        return work
    (work / INPUT).mkdir(parents=True, exist_ok=True)
    _atomic_save(work / INPUT / TILES, ids)
    mm = np.lib.format.open_memmap(
        work / INPUT / f".{DESCRIPTORS}.tmp", mode="w+", dtype=np.float16, shape=descriptors.shape
    )
    step = 65536
    for s in range(0, len(order), step):
        block = np.asarray(descriptors[order[s : s + step]])
        if not np.all(np.isfinite(block)):
            bad = s + int(np.argmax(~np.all(np.isfinite(block), axis=1)))
            raise ValueError(f"descriptor of tile {int(tile_ids[order[bad]])} is not finite")
        mm[s : s + step] = block
    mm.flush()
    del mm
    os.replace(work / INPUT / f".{DESCRIPTORS}.tmp", work / INPUT / DESCRIPTORS)
    if ortho is not None:
        write_layer(work / INPUT, ortho[0], crs_s, ortho[1])
    write_plan(work, plan, shards)
    return work


# --- shard tasks ----------------------------------------------------------------------------------


@dataclass
class _Context:
    """Per-process state of shard tasks: the imagery source and the encoder, opened once."""

    work: Path
    plan: BuildPlan
    source: Any = None
    encoder: Any = None

    def open_imagery(self) -> Any:
        if self.source is None:
            from edge_geoloc.mapbuild.imagery import open_imagery
            from edge_geoloc.runtime.card import sha256_of
            from edge_geoloc.world.region import Region

            if sha256_of(self.plan.region_file) != self.plan.region_sha256:
                raise BundleError(
                    f"{self.plan.region_file}: changed since the build was planned; delete {self.work} to start over"
                )
            key = (self.plan.region_file, self.plan.region_sha256)
            self.source = _SOURCES.get(key) or open_imagery(Region.load(self.plan.region_file), self.plan.region_file)
        return self.source

    def open_encoder(self) -> Any:
        if self.encoder is None:
            from edge_geoloc.runtime import open_encoder

            opts = (
                {"intra_op_threads": self.plan.threads}
                if self.plan.backend in ("auto", "onnxruntime", "onnxruntime-cuda")
                else {}
            )
            self.encoder = open_encoder(self.plan.model_dir, "aerial", backend=self.plan.backend, **opts)
            if self.encoder.card.aerial.sha256 != self.plan.encoder.aerial_sha256:
                raise BundleError(
                    f"{self.plan.model_dir}: the aerial graph changed since the build was planned;"
                    f" delete {self.work} to start over"
                )
        return self.encoder


_CONTEXT: _Context | None = None
_SOURCES: dict[tuple[str, str], Any] = {}  # imagery opened by plan_build (a synthetic world takes seconds to make)


def _context(work: Path) -> _Context:
    """This process's context for ``work`` (a new one if the plan there changed)."""
    global _CONTEXT
    plan = read_plan(work)
    if _CONTEXT is None or _CONTEXT.work != work or _CONTEXT.plan != plan:
        _CONTEXT = _Context(work, plan)
    return _CONTEXT


def pending_shards(work: str | Path) -> list[int]:
    """Ids of the shards whose task has not finished yet."""
    work = Path(work)
    return [int(s) for s in plan_shards(work)["id"] if not (work / WORK / f"{int(s):06d}" / "done.yaml").exists()]


def ortho_chunks(plan: BuildPlan) -> list[tuple[int, int]]:
    """(level, chunk) of the imagery layer's chunk tasks (none when the layer is off or given in input/)."""
    return chunks(plan.ortho) if plan.ortho is not None and not plan.inputs else []


def pending_ortho_chunks(work: str | Path) -> list[int]:
    """Numbers (into :func:`ortho_chunks`) of the imagery layer's chunks not written yet."""
    work = Path(work)
    todo = ortho_chunks(read_plan(work))
    return [k for k, (level, c) in enumerate(todo) if not chunk_paths(work, level, c)[1].exists()]


def build_ortho_chunk(work: str | Path, number: int) -> int:
    """Run one chunk task of the imagery layer (idempotent); returns its TIFF tile count."""
    work = Path(work).resolve()
    ctx = _context(work)
    todo = ortho_chunks(ctx.plan)
    if not 0 <= number < len(todo):
        raise BundleError(f"{work}: imagery chunk {number} is not in the plan ({len(todo)} chunks)")
    assert ctx.plan.ortho is not None
    return encode_chunk(ctx.open_imagery(), ctx.plan.ortho, work, *todo[number])


def build_shard(work: str | Path, shard_id: int, on_batch: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Run one shard's task (idempotent): encode its tiles (resuming), build its index, mark it done.

    ``on_batch(shard_id, tiles_done)`` is called after each batch is on disk (progress bars, tests).
    """
    work = Path(work).resolve()
    ctx = _context(work)
    plan = ctx.plan
    table = plan_shards(work)
    pos = np.flatnonzero(table["id"] == shard_id)
    if len(pos) != 1:
        raise BundleError(f"{work}: shard {shard_id} is not in the plan")
    row = table[int(pos[0])]
    sdir = work / WORK / f"{int(shard_id):06d}"
    done_file = sdir / "done.yaml"
    if done_file.exists():
        return yaml.safe_load(done_file.read_text())
    sdir.mkdir(parents=True, exist_ok=True)
    count, start = int(row["count"]), int(row["start"])
    if plan.inputs:
        desc = np.load(work / INPUT / DESCRIPTORS, mmap_mode="r")[start : start + count]
        backend = plan.encoder.backend
    else:
        desc, backend = _encode_shard(ctx, row, sdir, on_batch)
    info = _index_shard(plan, np.asarray(desc), start, sdir)
    info.update(id=int(shard_id), count=count, backend=backend)
    _atomic_write(done_file, yaml.safe_dump(info, sort_keys=True))
    return info


def _encode_shard(
    ctx: _Context, row: np.void, sdir: Path, on_batch: Callable[[int, int], None] | None
) -> tuple[np.ndarray, str]:
    plan = ctx.plan
    count, d = int(row["count"]), plan.encoder.descriptor_dim
    path, progress = sdir / DESCRIPTORS, sdir / "progress"
    done = int(progress.read_text()) if progress.exists() and path.exists() else 0
    if done % plan.batch and done != count:
        raise BundleError(f"{progress}: {done} rows is not a whole number of batches of {plan.batch}")
    mm = np.lib.format.open_memmap(path, mode="r+" if done else "w+", dtype=np.float16, shape=(count, d))
    if mm.shape != (count, d):
        raise BundleError(f"{path}: shape {mm.shape}, the plan needs ({count}, {d}); delete it to redo the shard")
    ids = shard_tile_ids(plan, ctx.work, row)
    tiling = plan.tiling.tiling()
    backend = plan.backend
    if done < count:
        source, encoder = ctx.open_imagery(), ctx.open_encoder()
        backend = encoder.backend
        for b0 in range(done, count, plan.batch):
            b1 = min(count, b0 + plan.batch)
            east, north = tiling.centre(ids[b0:b1])
            images = source.render(east, north, plan.tiling.tile_px, plan.tiling.gsd_m)
            out = encoder.encode(images)
            bad = ~np.all(np.isfinite(out), axis=1)
            if np.any(bad):
                raise BundleError(
                    f"the aerial encoder gave a non-finite descriptor for tile {int(ids[b0 + np.argmax(bad)])}"
                )
            mm[b0:b1] = out.astype(np.float16)
            mm.flush()
            _atomic_write(progress, str(b1))
            if on_batch is not None:
                on_batch(int(row["id"]), b1)
        _atomic_write(sdir / "backend", backend)
    elif (sdir / "backend").exists():
        backend = (sdir / "backend").read_text()
    return mm, backend


def _index_shard(plan: BuildPlan, desc16: np.ndarray, start: int, sdir: Path) -> dict[str, Any]:
    """Build and save the shard's hnswlib index (:func:`edge_geoloc.maps.graph.build_graph`: reproducible bytes)."""
    from edge_geoloc.maps.graph import build_graph

    info: dict[str, Any] = {"descriptors_sha256": sha256_bytes(desc16), "proj_sha256": ""}
    index, proj = build_graph(desc16, plan.hnsw, start)
    if proj is not None:
        _atomic_save(sdir / "proj.npy", proj)
        info["proj_sha256"] = sha256_file(sdir / "proj.npy")
    tmp = sdir / ".index.hnsw.tmp"
    index.save_index(str(tmp))
    os.replace(tmp, sdir / "index.hnsw")
    info["index_sha256"] = sha256_file(sdir / "index.hnsw")
    info["index_bytes"] = (sdir / "index.hnsw").stat().st_size
    return info


# --- assembly -------------------------------------------------------------------------------------


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def assemble(work: str | Path, overwrite: bool = False, keep_work: bool = False) -> Path:
    """Write the bundle from finished shards into ``work/bundle``, then rename it to the plan's ``out``."""
    work = Path(work).resolve()
    plan = read_plan(work)
    table = plan_shards(work)
    left = pending_shards(work)
    if left:
        raise BundleError(f"{work}: {len(left)} shard(s) not built yet (first: {left[0]}); run them before assembling")
    chunks_left = pending_ortho_chunks(work)
    if chunks_left:
        raise BundleError(
            f"{work}: {len(chunks_left)} imagery chunk(s) not written yet (first: {chunks_left[0]});"
            " run them (`map shard`) before assembling"
        )
    out = Path(plan.out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: exists; pass --overwrite to replace it")
    tmp = work / "bundle"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / SHARD_DIR).mkdir(parents=True)
    n = int(table["count"].sum())
    d = plan.encoder.descriptor_dim
    grid = plan.grid()
    crs = MapCRS(plan.crs)

    shards = np.zeros(len(table), dtype=SHARD_DTYPE)
    tiles = np.zeros(n, dtype=TILE_DTYPE)
    desc = np.lib.format.open_memmap(tmp / DESCRIPTORS, mode="w+", dtype=np.float16, shape=(n, d))
    backends = set()
    for i, row in enumerate(table):
        sid, a, b = int(row["id"]), int(row["start"]), int(row["start"] + row["count"])
        sdir = work / WORK / f"{sid:06d}"
        info = yaml.safe_load((sdir / "done.yaml").read_text())
        backends.add(info["backend"])
        ids = shard_tile_ids(plan, work, row)
        tiles["id"][a:b], tiles["shard"][a:b] = ids, sid
        src = (
            np.load(work / INPUT / DESCRIPTORS, mmap_mode="r")
            if plan.inputs
            else np.load(sdir / DESCRIPTORS, mmap_mode="r")
        )
        block = src[a:b] if plan.inputs else src
        if sha256_bytes(block) != info["descriptors_sha256"]:
            raise BundleError(f"{sdir}: descriptors changed after the shard was indexed; delete the folder to redo it")
        desc[a:b] = block
        _link_or_copy(sdir / "index.hnsw", tmp / shard_file(sid))
        if info["proj_sha256"]:
            _link_or_copy(sdir / "proj.npy", tmp / shard_file(sid, ".proj.npy"))
        shards[i] = (
            sid,
            a,
            b - a,
            info["index_bytes"],
            info["index_sha256"],
            info["descriptors_sha256"],
            info["proj_sha256"],
        )
    desc.flush()
    del desc
    east, north = grid.tiling.centre(tiles["id"])
    tiles["east"], tiles["north"] = east, north
    tiles["lat"], tiles["lon"] = crs.to_latlon(east, north)
    np.save(tmp / TILES, tiles, allow_pickle=False)
    np.save(tmp / SHARDS, shards, allow_pickle=False)
    if len(backends) > 1:
        raise BundleError(f"{work}: shards were encoded with different backends {sorted(backends)}; descriptors differ")
    layer = [ORTHO, ORTHO_HASHES] if plan.ortho is not None else []
    if plan.ortho is not None and plan.inputs:
        for name in layer:
            _link_or_copy(work / INPUT / name, tmp / name)
    elif plan.ortho is not None:
        write_layer(tmp, plan.ortho, plan.crs, chunk_segments(plan.ortho, work))
    files = {
        name: FileInfo(bytes=(tmp / name).stat().st_size, sha256=sha256_file(tmp / name))
        for name in (TILES, SHARDS, DESCRIPTORS, *layer)
    }
    manifest = Manifest(
        format=FORMAT,
        region=plan.region,
        crs=plan.crs,
        tiling=plan.tiling,
        encoder=replace(plan.encoder, backend=backends.pop()),
        tiles=n,
        shards=ShardInfo(tiles_per_side=plan.shard_tiles, side_m=grid.side_m, count=len(table)),
        hnsw=plan.hnsw,
        files=files,
        ortho=plan.ortho,
    )
    write_manifest(manifest, tmp)
    read_manifest(tmp)  # what we wrote must read back
    if out.exists():
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    if keep_work:
        _atomic_write(work / ASSEMBLED, str(out))
    else:
        shutil.rmtree(work)
    return out


# --- running --------------------------------------------------------------------------------------


def run_build(
    work: str | Path,
    workers: int = 1,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
    keep_work: bool = False,
) -> Path:
    """Run the pending tasks (here, on ``workers`` forked ranks, or as one rank of a launcher such as torchrun:
    :mod:`edge_geoloc.mapbuild.parallel`), then assemble on rank 0; other ranks wait for the bundle."""
    from edge_geoloc.mapbuild.parallel import failure_file, launcher_rank, run_ranks

    work = Path(work).resolve()
    out = Path(read_plan(work).out)
    started = time.time()
    rank = run_ranks(work, workers, progress, on_batch)
    if rank != 0:
        return _wait_for_bundle(work, out, started)
    try:
        return assemble(work, overwrite=overwrite, keep_work=keep_work)
    except Exception as err:
        if launcher_rank() is not None:  # the other ranks wait for the bundle: tell them
            failure_file(work, 0).write_text(f"assembling: {type(err).__name__}: {err}")
        raise


def _wait_for_bundle(work: Path, out: Path, since: float) -> Path:
    """A launcher rank other than 0: until rank 0 has assembled the bundle (the plan leaves with the work folder)."""
    from edge_geoloc.mapbuild.parallel import POLL_S, raise_failures

    while (work / PLAN).exists() and not (work / ASSEMBLED).exists():
        raise_failures(work, since)
        time.sleep(POLL_S)
    return out


def build_map(
    region_file: str | Path,
    model_dir: str | Path,
    out: str | Path,
    workers: int = 1,
    progress: bool = True,
    overwrite: bool = False,
    on_batch: Callable[[int, int], None] | None = None,
    **options: Any,
) -> Path:
    """Plan (or resume) and build the map of a region; returns the bundle's folder. Under a launcher
    (torchrun) rank 0 plans and the other ranks wait for its plan, then check theirs against it."""
    from edge_geoloc.mapbuild.parallel import POLL_S, launcher_rank

    out = Path(out)
    launched = launcher_rank()
    if launched is not None and launched[0] != 0:
        while not (work_dir_for(out) / PLAN).exists():
            time.sleep(POLL_S)
    elif out.exists() and not overwrite and not work_dir_for(out).exists():
        raise BundleError(f"{out}: exists; pass --overwrite to rebuild it")
    work = plan_build(region_file, model_dir, out, **options)
    return run_build(work, workers=workers, progress=progress, on_batch=on_batch, overwrite=overwrite)


def build_from_descriptors(
    out: str | Path, workers: int = 1, progress: bool = False, overwrite: bool = False, **plan: Any
) -> Path:
    """A bundle from descriptors already computed (see :func:`plan_from_descriptors`)."""
    if Path(out).exists() and not overwrite:
        raise BundleError(f"{out}: exists; pass --overwrite to replace it")
    work = plan_from_descriptors(out, **plan)
    return run_build(work, workers=workers, progress=progress, overwrite=overwrite)
