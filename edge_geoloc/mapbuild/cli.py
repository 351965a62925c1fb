"""`edge-geoloc map build | extract | evaluate | shard | assemble` (workstation wing; registration imports nothing heavy)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_geoloc.config import strict_json
from edge_geoloc.maps.cli import MAP_HELP, _imagery_line, _ortho_line, _summary, command_group


def _build(args: argparse.Namespace) -> int:
    from edge_geoloc.mapbuild.build import build_map, plan_build, work_dir_for

    options = {
        "shard_m": args.shard_m,
        "hnsw_dim": args.hnsw_dim,
        "M": args.hnsw_m,
        "ef_construction": args.ef_construction,
        "ef_search": args.ef_search,
        "batch": args.batch,
        "backend": args.backend,
        "threads": args.threads,
        "allow_upsampling": args.allow_upsampling,
        "ortho": not args.no_ortho,
        "ortho_gsd_m": args.ortho_gsd,
    }
    if args.plan_only:
        work = plan_build(args.region, args.model, args.out, **options)
        print(
            f"planned {args.out}: run `edge-geoloc map shard --work {work} --rank R --world N` on each of N"
            f" nodes (or without --rank: every pending shard and imagery chunk), then `map assemble --work {work}`"
        )
        return 0
    out = build_map(
        args.region,
        args.model,
        args.out,
        workers=args.nproc,
        progress=not args.quiet,
        overwrite=args.overwrite,
        **options,
    )
    print(_summary(out))
    print(_imagery_line(out))
    print(_ortho_line(out))
    if work_dir_for(out).exists():  # pragma: no cover - kept only on request
        print(f"work folder kept: {work_dir_for(out)}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    from edge_geoloc.mapbuild.extract import extract_corridor

    out = extract_corridor(
        args.source, args.corridor, args.buffer_m, args.out, workers=args.workers, overwrite=args.overwrite
    )
    print(_summary(out))
    print(_ortho_line(out))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from edge_geoloc.mapbuild.evaluate import evaluate_map

    report = evaluate_map(
        args.map,
        args.model,
        args.dataset,
        city=args.city,
        split=args.split,
        noise_m=args.noise_m,
        seed=args.seed,
        limit=args.limit,
        temperature=args.temperature,
        backend=args.backend,
    )
    if args.json:
        Path(args.json).write_text(strict_json(report, indent=1))
    print(f"{report['city']}: {report['panoramas']} panoramas, prior +-{report['noise_m']:g} m")
    for key, value in report.items():
        if isinstance(value, dict):
            pos = "  ".join(
                f"{m} median {v['median_m']:.1f} m, <=5 m {v['acc@5m']:.1f}%"
                for m, v in value.items()
                if isinstance(v, dict)
            )
            print(f"  scope {key:>6}: top-1 = exact {value['top1_equals_exact'] * 100:.1f}%  {pos}")
    return 0


def _shard(args: argparse.Namespace) -> int:
    from edge_geoloc.mapbuild.build import build_ortho_chunk, build_shard, pending_ortho_chunks, pending_shards
    from edge_geoloc.mapbuild.parallel import run_rank

    if args.rank is not None:
        if not 0 <= args.rank < args.world:
            raise ValueError(f"--rank {args.rank} is outside --world {args.world} (ranks 0..{args.world - 1})")
        run_rank(Path(args.work).resolve(), args.rank, args.world)
        print(f"rank {args.rank} of {args.world}: done")
        return 0
    shards = args.shard if args.shard else pending_shards(args.work)
    for sid in shards:
        info = build_shard(args.work, sid)
        print(f"shard {sid}: {info['count']} tiles")
    for number in [] if args.shard else pending_ortho_chunks(args.work):
        print(f"imagery chunk {number}: {build_ortho_chunk(args.work, number)} TIFF tiles")
    return 0


def _assemble(args: argparse.Namespace) -> int:
    from edge_geoloc.mapbuild.build import assemble

    print(_summary(assemble(args.work, overwrite=args.overwrite)))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    msub = command_group(sub, "map", MAP_HELP)

    b = msub.add_parser("build", help="build the map bundle of a region with a model's aerial encoder")
    b.add_argument("--region", required=True, help="region YAML (maps/NAME.yaml); its imagery section says the source")
    b.add_argument("--model", required=True, help="export folder with model.yaml (export/build/NAME)")
    b.add_argument("--out", required=True, help="bundle folder (maps/build/NAME); built in OUT.building, then renamed")
    b.add_argument(
        "--nproc",
        "--workers",
        type=int,
        default=1,
        help="processes building shards and imagery chunks in parallel (under torchrun: one rank each)",
    )
    b.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per worker")
    b.add_argument("--backend", default="auto", help="encoder backend: auto, tensorrt, onnxruntime-cuda, onnxruntime")
    b.add_argument("--batch", type=int, default=64, help="tiles encoded per batch (the unit a resumed build redoes)")
    b.add_argument(
        "--shard-m", type=float, default=None, help="shard side in metres (default: 256 tile strides, 65536 tiles)"
    )
    b.add_argument("--hnsw-dim", type=int, default=None, help="PCA dimension of the shard graphs (default: full)")
    b.add_argument("--hnsw-m", type=int, default=16, help="HNSW M (links per node)")
    b.add_argument("--ef-construction", type=int, default=100, help="HNSW ef at build time")
    b.add_argument("--ef-search", type=int, default=32, help="default HNSW ef at search time")
    b.add_argument("--plan-only", action="store_true", help="write the plan for a cluster engine and stop")
    b.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    b.add_argument(
        "--allow-upsampling",
        action="store_true",
        help="build from imagery more than 8x coarser than the model's GSD (flat tiles: refused otherwise)",
    )
    b.add_argument(
        "--ortho-gsd",
        type=float,
        default=None,
        help="GSD of the imagery layer kept for registration, m/px (default: the imagery's, clipped to 0.25-0.5)",
    )
    b.add_argument("--no-ortho", action="store_true", help="keep no imagery layer (no metric refinement on the device)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=_build)

    v = msub.add_parser("evaluate", help="localize a dataset's panoramas through a map (device path)")
    v.add_argument("--map", required=True, help="bundle folder of the dataset's city")
    v.add_argument("--model", required=True, help="export folder (street encoder, offset head, model card)")
    v.add_argument("--dataset", required=True, help="VIGOR-layout dataset root")
    v.add_argument("--city", default=None, help="city in the dataset (default: the map's region name)")
    v.add_argument("--split", default="cross_area", help="same_area_test, same_area_train or cross_area")
    v.add_argument("--noise-m", type=float, default=100.0, help="prior noise, uniform +- on each axis")
    v.add_argument("--temperature", type=float, default=0.05, help="fusion temperature")
    v.add_argument("--limit", type=int, default=None, help="at most this many panoramas")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--backend", default="auto", help="street encoder backend")
    v.add_argument("--json", default=None, help="also write the report here")
    v.set_defaults(func=_evaluate)

    s = msub.add_parser("shard", help="run shard tasks of a planned build (what a cluster node runs)")
    s.add_argument("--work", required=True, help="the build's work folder (OUT.building)")
    s.add_argument(
        "--shard", type=int, action="append", help="shard id (repeatable; default: every pending shard and chunk)"
    )
    s.add_argument("--rank", type=int, default=None, help="run this rank's share of the tasks (with --world)")
    s.add_argument("--world", type=int, default=1, help="number of ranks sharing the tasks")
    s.set_defaults(func=_shard)

    a = msub.add_parser("assemble", help="assemble a planned build whose shards are done into the bundle")
    a.add_argument("--work", required=True, help="the build's work folder (OUT.building)")
    a.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    a.set_defaults(func=_assemble)

    e = msub.add_parser("extract", help="cut the corridor of a route out of a bundle (a valid smaller bundle)")
    e.add_argument("--from", dest="source", required=True, help="source bundle folder")
    e.add_argument("--corridor", required=True, help="GeoJSON route (LineString, MultiLineString, Points; WGS84)")
    e.add_argument(
        "--buffer-m", type=float, default=2000.0, help="keep tiles whose centres lie this close to the route"
    )
    e.add_argument("--out", required=True, help="new bundle folder")
    e.add_argument("--workers", type=int, default=1, help="processes indexing shards")
    e.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    e.set_defaults(func=_extract)
