"""`edge-geoloc compile` (device wing): TensorRT engines built on the target GPU, not on the workstation
(an engine is specific to the GPU and the TensorRT version). Registration imports nothing heavy."""

from __future__ import annotations

import argparse
from pathlib import Path


def _compile(args: argparse.Namespace) -> int:
    from edge_geoloc.runtime.tensorrt_build import compile_model

    built = compile_model(args.model, fp16=args.fp16, workspace_mb=args.workspace, branches=args.branch)
    for sidecar in built:
        print(
            f"built {sidecar.engine_file} ({sidecar.precision}, TensorRT {sidecar.tensorrt_version},"
            f" {sidecar.gpu_name} sm_{sidecar.compute_capability.replace('.', '')},"
            f" batch {sidecar.profile.min}/{sidecar.profile.opt}/{sidecar.profile.max})"
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="build TensorRT engines from an export on this GPU (needs tensorrt)")
    p.add_argument("--model", required=True, type=Path, help="an export folder with model.yaml")
    p.add_argument(
        "--fp16", action=argparse.BooleanOptionalAction, default=None, help="FP16 (default: the card's precision)"
    )
    p.add_argument("--workspace", type=int, default=1024, help="builder workspace in MiB")
    p.add_argument("--branch", nargs="+", default=["street", "aerial"], choices=["street", "aerial"])
    p.set_defaults(func=_compile)
