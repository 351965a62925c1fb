"""`edge-geoloc world preview`: render a region's world and its views for a look."""

from __future__ import annotations

import argparse


def _preview(args: argparse.Namespace) -> int:
    from edge_geoloc.world.preview import preview

    files = preview(args.region, args.out, points=args.points, seed=args.seed)
    print(f"wrote {len(files)} images to {args.out}: " + ", ".join(p.name for p in files))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    world = sub.add_parser("world", help="the synthetic world: preview a region")
    wsub = world.add_subparsers(dest="world_command", metavar="WORLD_COMMAND", required=True)
    p = wsub.add_parser("preview", help="aerial map with a trajectory, and street/UAV views at marked points")
    p.add_argument("--region", required=True, help="region YAML, e.g. maps/demo-suburb.yaml")
    p.add_argument("--out", required=True, help="folder for the PNGs")
    p.add_argument("--points", type=int, default=3, help="marked points along the trajectory")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_preview)
