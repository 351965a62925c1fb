"""`edge-geoloc <command>`: one entry point, one subcommand per step.

Each step's module exposes ``register(subparsers)``, which adds its parser and sets ``func`` to
the function that runs it. Registration modules import nothing heavy (no torch) at module level,
so device-side commands start fast and work without the ``train`` extra.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge_geoloc import __version__

# Modules that register subcommands, in the order they appear in --help.
COMMAND_MODULES: list[str] = [
    "edge_geoloc.world.cli",
    "edge_geoloc.data.cli",
    "edge_geoloc.train.cli",
    "edge_geoloc.train.drone_cli",
    "edge_geoloc.export.cli",
    "edge_geoloc.maps.cli",
    "edge_geoloc.localize.cli",
]


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
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        # Errors that users cause (bad config, missing file, mismatched model) get one clear line.
        if args.verbose:
            raise
        print(f"edge-geoloc {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
