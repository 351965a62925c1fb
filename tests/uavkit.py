"""A small export with a drone branch (random weights) and a map that pairs with it, for UAV loop tests.

As in loopkit: the map holds the drone encoder's own descriptors of the north-up patch rectified from
a nadir frame over each tile centre, so a frame taken over a tile centre (any heading, another
height) rectifies to nearly the same patch and matches its tile whatever the weights: the loop's
geometry (attitude, rectification, heading hypotheses, patch offsets, the filter) is checked
against the truth without a trained model.
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
from exportkit import copy_export, small_export, torch_threads
from loopkit import BOXES, FACADES, ROOFS
from worldkit import box_world

from edge_geoloc.cameras.rectify import GroundView, Rectifier
from edge_geoloc.cameras.uav import Lens, UavCamera
from edge_geoloc.geo import Tiling
from edge_geoloc.mapbuild.build import build_from_descriptors
from edge_geoloc.maps.bundle import EncoderInfo, RegionInfo
from edge_geoloc.runtime import load_card, open_encoder
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import render_camera

LENS = Lens.from_fov(73, 73, 90.0, k1=-0.05)  # square, odd (its pyramid turns too), radial: 90-degree turns exact
CAMERA = UavCamera(lens=LENS, altitude_range_m=(10.0, 500.0))
APP = Appearance(haze=0.0, sun_elevation_deg=60.0)
HEIGHT = 40.0


# Painted squares on the grass (height-0 boxes) so that every tile's patch differs in colour layout: a
# random-weight encoder tells tiles apart by little more than that.
_rng = np.random.default_rng(5)
PAINT = [(float(e), float(n), 7.0, 7.0, 0.0) for e, n in _rng.uniform(-110, 110, (60, 2))]
PAINT_RGB = [tuple(int(v) for v in c) for c in _rng.integers(0, 256, (60, 3))]


@functools.cache
def world():
    boxes = BOXES + PAINT
    return box_world(boxes, roof_rgb=ROOFS + PAINT_RGB, facade_rgb=FACADES + PAINT_RGB, size_m=300.0)


def tiling() -> Tiling:
    w = world()
    ce, cn = (w.east_min + w.east_max) / 2, (w.north_min + w.north_max) / 2
    return Tiling(ce - 64.0, cn - 64.0, ce + 64.0 - 1e-6, cn + 64.0 - 1e-6, 64.0)  # 5 x 5 centres, 32 m apart


def frame(east: float, north: float, yaw_grid: float, height: float = HEIGHT, roll: float = 0.0, pitch: float = 0.0):
    R = CAMERA.world_from_cam(roll, pitch, yaw_grid)
    return render_camera(world(), LENS, R, np.array([east, north, height]), APP)


@functools.cache
def drone_export() -> Path:
    """The small export plus a drone branch (the aerial branch's random weights), exported and carded."""
    from edge_geoloc.export.drone import export_drone
    from edge_geoloc.model.config import load_model_config  # noqa: F401  (torch side, imported on demand)
    from edge_geoloc.train.checkpoint import save_checkpoint
    from edge_geoloc.train.drone import DRONE_FORMAT, drone_branch_from

    src = small_export()
    root = Path(tempfile.mkdtemp(prefix="edge-geoloc-uav-"))
    export = copy_export(src, root / "small")
    branch, cfg = drone_branch_from(src.parent / "small.pt")
    from edge_geoloc.config import to_mapping

    card = load_card(export)
    ckpt = root / "drone.pt"
    save_checkpoint(
        ckpt,
        {
            "model_config": to_mapping(cfg),
            "drone_format": DRONE_FORMAT,
            "drone": branch.state_dict(),
            "aerial_sha256": card.aerial.sha256,
            "rectified": {"size_px": cfg.aerial.width, "gsd_m": cfg.aerial_gsd_m, "max_off_nadir_deg": 70.0},
            "trained_altitude_m": [30.0, 60.0],
            "trained_tilt_deg": [0.0, 20.0],
        },
    )
    with torch_threads(1):
        export_drone(ckpt, export)
    return export


@functools.cache
def drone_map(export: Path) -> Path:
    """The map of :func:`tiling`: the drone encoder's descriptors of nadir patches over each tile centre."""
    card = load_card(export)
    enc = open_encoder(export, "drone", intra_op_threads=1)
    rect = Rectifier(LENS, card.drone.width, card.drone.gsd_m)
    t = tiling()
    ids, east, north = t.centres()
    w = world()
    conv = float(w.crs.convergence_deg(*w.crs.to_latlon(float(east.mean()), float(north.mean()))))
    patches = []
    for e, n in zip(east, north):
        view = GroundView(CAMERA.world_from_cam(0.0, 0.0, 0.0), HEIGHT)
        patches.append(rect.rectify(frame(float(e), float(n), 0.0), view, np.zeros((1, 2)), -conv).images[0])
    desc = enc.encode(patches, is_panorama=False)
    out = Path(tempfile.mkdtemp(prefix="edge-geoloc-uavmap-")) / "map"
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
