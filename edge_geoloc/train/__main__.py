"""``python -m edge_geoloc.train ARGS`` = ``edge-geoloc train ARGS``: the entry torchrun starts on every rank."""

import sys

from edge_geoloc.cli import main

sys.exit(main(["train", *sys.argv[1:]]))
