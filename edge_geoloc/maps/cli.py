"""`edge-geoloc map info` (device wing): what a bundle holds, every checksum verified on request. `map build |
extract | evaluate | shard | assemble` are the workstation's (:mod:`edge_geoloc.mapbuild.cli`): both wings add
to the one ``map`` group."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_geoloc.config import strict_json


def command_group(sub: argparse._SubParsersAction, name: str, help: str) -> argparse._SubParsersAction:
    """The sub-commands of ``name`` (created by the first wing that registers one): the two wings each
    add their own commands to one group, so neither imports the other's handlers."""
    parser = sub.choices.get(name)
    if parser is None:
        parser = sub.add_parser(name, help=help)
        return parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND", required=True)
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


MAP_HELP = "build, inspect and cut map bundles (aerial tile descriptors of an area)"


def _summary(path: Path) -> str:
    from edge_geoloc.maps.bundle import Bundle

    b = Bundle(path, verify="none")
    m = b.manifest
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return (
        f"{path}: {m.tiles} tiles of {m.tiling.tile_m:g} m ({m.tiling.tile_px} px at {m.tiling.gsd_m:g} m/px)"
        f" in {m.shards.count} shards of {m.shards.side_m:g} m, {m.encoder.descriptor_dim}-d descriptors of"
        f" '{m.encoder.model}' ({m.encoder.backend}), {size / 2**20:.1f} MiB"
    )


def _imagery_line(path: Path) -> str:
    """Where the tiles came from: the imagery, its native GSD against the map's, nodata tiles left out."""
    from edge_geoloc.maps.bundle import read_manifest

    m = read_manifest(path)
    r = m.region
    native = f"native GSD {r.native_gsd_m:g} m/px" if r.native_gsd_m > 0 else "native GSD not recorded"
    nodata = f", {r.nodata_tiles} tiles mostly nodata not built" if r.nodata_tiles else ""
    return f"  imagery   {r.imagery or r.source}: {native} (map {m.tiling.gsd_m:g} m/px){nodata}"


def _ortho_line(path: Path) -> str:
    """The imagery layer: its raster, GSD, coverage and size on disk (or that registration has none)."""
    from edge_geoloc.maps.bundle import read_manifest

    o = read_manifest(path).ortho
    if o is None:
        return "  ortho     none: no imagery layer, metric refinement off (rebuild without --no-ortho to add one)"
    size = (Path(path) / o.file).stat().st_size
    return (
        f"  ortho     {o.file}: {o.width} x {o.height} px at {o.gsd_m:g} m/px ({o.width * o.gsd_m:.0f} x"
        f" {o.height * o.gsd_m:.0f} m), {o.compression} q{o.quality}, {o.overviews} overviews, {size / 2**20:.1f} MiB"
    )


def _info(args: argparse.Namespace) -> int:
    from edge_geoloc.config import to_mapping
    from edge_geoloc.maps.bundle import Bundle

    b = Bundle(args.bundle, verify="full" if args.verify else "none")  # full: every listed file and shard
    if args.json:
        print(strict_json(to_mapping(b.manifest), indent=1))
        return 0
    m = b.manifest
    t = m.tiling
    print(_summary(b.path))
    print(
        f"  region    {m.region.name} ({m.region.source}) centre {m.region.center_lat:.6f}, {m.region.center_lon:.6f}"
    )
    print(_imagery_line(b.path))
    print(_ortho_line(b.path))
    print(f"  crs       {m.crs}")
    print(
        f"  tiling    {t.n_rows} x {t.n_cols} cells, stride {t.stride_m:g} m, centres east {t.east_min:.1f}..,"
        f" north ..{t.north_max:.1f}"
    )
    print(f"  encoder   aerial sha256 {m.encoder.aerial_sha256[:16]}..., card sha256 {m.encoder.card_sha256[:16]}...")
    print(
        f"  hnsw      dim {m.hnsw.dim}, M {m.hnsw.M}, ef_construction {m.hnsw.ef_construction}, ef {m.hnsw.ef_search}"
    )
    print(f"  checks    {'all sha256 verified' if args.verify else 'sizes only (--verify hashes every file)'}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    msub = command_group(sub, "map", MAP_HELP)

    i = msub.add_parser("info", help="what a bundle holds (and --verify every checksum)")
    i.add_argument("bundle", help="bundle folder")
    i.add_argument("--verify", action="store_true", help="hash every file and shard")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.set_defaults(func=_info)
