"""`edge-geoloc train-drone` and `edge-geoloc export-drone` (registration imports nothing heavy)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _train(args: argparse.Namespace) -> int:
    from edge_geoloc.data.university1652 import University1652
    from edge_geoloc.sim.demo import cached_map
    from edge_geoloc.train.drone import DroneTrainConfig, train_drone

    cfg = DroneTrainConfig.load(args.config)
    regions = sorted(
        {str(r) for split in ("train", "test") for r in University1652(args.data, split).poses["region"]}  # type: ignore[index]
    )
    maps = {}
    for name in regions:
        region_file = Path(args.regions_dir) / f"{name}.yaml"
        if not region_file.exists():
            raise FileNotFoundError(f"{region_file}: no region file for region {name} of {args.data} (--regions-dir)")
        maps[name] = cached_map(region_file, Path(args.model), Path(args.map_cache), args.workers, progress=True)
    result = train_drone(args.data, args.model, args.checkpoint, args.out, cfg, maps)
    print(json.dumps(result, indent=1))
    return 0


def _export(args: argparse.Namespace) -> int:
    from edge_geoloc.export.drone import export_drone

    r = export_drone(args.checkpoint, args.model, opset=args.opset)
    worst = min(v["min_cosine"] for v in r["parity"].values())
    print(
        f"added the drone branch to {args.model}: parity min cosine {worst:.7f};"
        f" {r['gmacs_paper']:.4g} GMACs (paper), {r['gflops_full']:.4g} GFLOPs (full) per patch"
    )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train-drone",
        help="train the drone branch (rectified drone patches) against an export's frozen aerial branch",
    )
    p.add_argument("--data", required=True, help="a University-1652-layout drone dataset with poses (dataset uav)")
    p.add_argument("--model", required=True, help="the export whose aerial branch (and maps) the drone must match")
    p.add_argument("--checkpoint", required=True, help="the checkpoint that export was made from (initial weights)")
    p.add_argument("--out", required=True, help="run folder (drone.pt, metrics.json)")
    p.add_argument("--config", default="drone-demo", help="a named drone training config or a YAML path")
    p.add_argument("--regions-dir", default="maps/synth", help="where the dataset's region YAMLs are")
    p.add_argument("--map-cache", default="maps/build", help="map bundles of those regions (built when missing)")
    p.add_argument("--workers", type=int, default=2, help="processes building maps")
    p.set_defaults(func=_train)

    p = sub.add_parser("export-drone", help="add a trained drone branch to its export (ONNX, model card, FLOPs)")
    p.add_argument("--checkpoint", required=True, help="drone.pt from edge-geoloc train-drone")
    p.add_argument("--model", required=True, help="the export folder it was trained against")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the export's)")
    p.set_defaults(func=_export)
