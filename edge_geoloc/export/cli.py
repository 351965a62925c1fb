"""`edge-geoloc export` and `edge-geoloc flops` (workstation wing; `compile` runs on the target:
:mod:`edge_geoloc.runtime.cli`). Registration imports nothing heavy: ``export`` imports torch when it runs."""

from __future__ import annotations

import argparse

from edge_geoloc.config import pick, strict_json


def _export(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from edge_geoloc.export.onnx_export import export_model

    options = pick(args, "recipe", "keep_ratio", "opset", "parity_data", "parity_samples", "seed")
    result = export_model(args.checkpoint, args.out, **options)
    r = result.report
    worst = min(v["min_cosine"] for b in ("street", "aerial") for v in r["parity"][b].values())
    worst_abs = max(v["max_abs"] for b in ("street", "aerial") for v in r["parity"][b].values())
    print(
        f"exported {r['config']} (keep ratio {r['keep_ratio']:g}, opset {r['opset']}) to {result.out}:"
        f" parity max |diff| {worst_abs:.2e}, min cosine {worst:.7f};"
        f" {r['gmacs_paper']:.4g} GMACs (paper), {r['gflops_full']:.4g} GFLOPs (full)"
    )
    return 0


def _flops(args: argparse.Namespace) -> int:
    from edge_geoloc.export.flops import format_table, model_flops
    from edge_geoloc.model.config import load_model_config

    report = model_flops(load_model_config(args.config), args.keep_ratio)
    print(strict_json(report, indent=1) if args.json else format_table(report))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export a checkpoint to ONNX with its model card (checks parity)")
    p.add_argument("--checkpoint", required=True, help="a training checkpoint (.pt)")
    p.add_argument("--out", required=True, help="output folder, e.g. export/build/NAME")
    p.add_argument(
        "--recipe", default=None, help="export recipe: a name in edge_geoloc/configs/export/ (x86-cpu) or a YAML path"
    )
    p.add_argument(
        "--keep-ratio", type=float, default=None, help="aerial patch keep ratio (default: recipe, else checkpoint)"
    )
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the recipe's, 17)")
    p.add_argument("--parity-data", default=None, help="also check parity on images of this VIGOR-layout dataset")
    p.add_argument("--parity-samples", type=int, default=4, help="images per parity batch")
    p.add_argument("--seed", type=int, default=0, help="seed of the parity inputs")
    p.set_defaults(func=_export)

    p = sub.add_parser("flops", help="GMACs (TransGeo's convention) and full GFLOPs of a model config")
    p.add_argument("--config", required=True, help="a named model config (tiny, transgeo-cvusa, ...) or a YAML path")
    p.add_argument("--keep-ratio", type=float, default=None, help="aerial keep ratio (default: the config's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_flops)
