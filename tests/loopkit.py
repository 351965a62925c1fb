"""A small world, an export and a map that pairs with it, for tests of the localization loop.

The map holds the street encoder's own descriptors of north-aligned panoramas rendered at each tile
centre (and the export's aerial sha256, so the loop accepts it): a frame rendered at a tile centre
then matches its tile exactly, whatever the (random) weights, and the loop's geometry (rolls to
north, scoped search, the filter) can be checked against the truth without a trained model.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
from worldkit import box_world

from edge_geoloc.cameras.street import CameraModel
from edge_geoloc.geo import Tiling
from edge_geoloc.localize.sources import Frame
from edge_geoloc.mapbuild.build import build_from_descriptors
from edge_geoloc.maps.bundle import EncoderInfo, RegionInfo
from edge_geoloc.runtime import load_card, open_encoder
from edge_geoloc.world.street import render_panorama

BOXES = [
    (-60.0, 55.0, 18.0, 12.0, 14.0),
    (40.0, 60.0, 10.0, 25.0, 6.0),
    (70.0, -20.0, 14.0, 14.0, 22.0),
    (-20.0, -65.0, 30.0, 10.0, 9.0),
    (-75.0, -30.0, 8.0, 8.0, 30.0),
    (10.0, 15.0, 6.0, 6.0, 4.0),
]
ROOFS = [(200, 60, 60), (60, 60, 200), (230, 230, 80), (90, 200, 90), (200, 120, 40), (150, 150, 150)]
FACADES = [(220, 80, 80), (80, 80, 220), (240, 240, 120), (100, 210, 100), (210, 140, 60), (180, 180, 180)]
PANO = (16, 64)  # the small export's street input: frames need no resizing
CAMERA = CameraModel(kind="panorama", width_px=PANO[1], height_px=PANO[0])


@functools.cache
def world():
    return box_world(BOXES, roof_rgb=ROOFS, facade_rgb=FACADES, trees=[(30.0, -40.0, 5.0, 9.0)])


def tiling() -> Tiling:
    w = world()
    ce, cn = (w.east_min + w.east_max) / 2, (w.north_min + w.north_max) / 2
    return Tiling(ce - 64.0, cn - 64.0, ce + 64.0 - 1e-6, cn + 64.0 - 1e-6, 64.0)  # 5 x 5 centres, 32 m apart


def panorama(east: float, north: float, heading_grid: float) -> np.ndarray:
    return render_panorama(world(), east, north, heading_grid, height_px=PANO[0], width_px=PANO[1])


@functools.cache
def street_map(export: Path) -> Path:
    """The map bundle of :func:`tiling` for ``export`` (built once per test process)."""
    card = load_card(export)
    enc = open_encoder(export, "street", intra_op_threads=1)
    t = tiling()
    ids, east, north = t.centres()
    w = world()
    north_grid = float(w.crs.true_to_grid_heading(0.0, *w.crs.to_latlon(east[0], north[0])))
    desc = enc.encode([panorama(e, n, north_grid) for e, n in zip(east, north)])
    out = Path(tempfile.mkdtemp(prefix="edge-geoloc-loopmap-")) / "map"
    encoder = EncoderInfo(
        model=card.model, aerial_sha256=card.aerial.sha256, card_sha256="", descriptor_dim=card.descriptor_dim
    )
    return build_from_descriptors(
        out,
        crs=w.crs,
        tiling=t,
        tile_ids=ids,
        descriptors=desc,
        encoder=encoder,
        region=RegionInfo("box-world", 47.0, 9.0, "descriptors"),
        tile_px=card.aerial.width,
    )


def frames_along_row(row: int = 2, heading_grid: float = 90.0, every_s: float = 1.0) -> list[Frame]:
    """Frames at the tile centres of one row, driving east (32 m a step)."""
    t = tiling()
    ids = t.tile_id(np.full(t.n_cols, row), np.arange(t.n_cols))
    east, north = t.centre(ids)
    return [
        Frame(i, i * every_s, panorama(float(e), float(n), heading_grid), truth=(float(e), float(n)))
        for i, (e, n) in enumerate(zip(east, north))
    ]
