"""`edge-geoloc <command>`: one entry point, one subcommand per step.

Each step's module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to
the function that runs it. Registration modules import nothing heavy (no torch) at module level,
so device-side commands start fast and work without the ``workstation`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge_geoloc import __version__

WORKSTATION_PACKAGES = {"torch", "matplotlib", "onnx", "tqdm"}  # what the device install leaves out

# Every command, in one place: the modules that register them, in --help order. The device wing's come
# first (a Jetson install runs these without torch); the workstation's may add to them (the ``map``
# group's build commands, the ``synthetic:`` source of ``run``), never the reverse.
DEVICE_COMMANDS: list[str] = [
    "edge_geoloc.localize.cli",  # run
    "edge_geoloc.localize.doctor",  # doctor
    "edge_geoloc.maps.cli",  # map info | extract
    "edge_geoloc.runtime.cli",  # compile
]
WORKSTATION_COMMANDS: list[str] = [
    "edge_geoloc.world.cli",  # world preview
    "edge_geoloc.data.cli",  # dataset ...
    "edge_geoloc.train.cli",  # train, eval
    "edge_geoloc.train.drone_cli",  # train-drone
    "edge_geoloc.export.cli",  # export, flops
    "edge_geoloc.mapbuild.cli",  # map build | evaluate | shard | assemble
    "edge_geoloc.sim.cli",  # demo, run --source synthetic:
]
COMMAND_MODULES: list[str] = DEVICE_COMMANDS + WORKSTATION_COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-geoloc",
        description="Cross-view geo-localization for UAVs and ground vehicles.",
    )
    parser.add_argument("--version", action="version", version=f"edge-geoloc {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:
        if err.name not in WORKSTATION_PACKAGES:
            raise
        # A device install (no torch, no matplotlib) running a workstation command: say what to install.
        print(
            f"edge-geoloc {args.command}: needs {err.name}, a workstation dependency:"
            " pip install 'edge-geoloc[workstation]'",
            file=sys.stderr,
        )
        return 1
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Errors that users cause (bad config, missing file, mismatched model) get one clear line.
        if args.verbose:
            raise
        print(f"edge-geoloc {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
