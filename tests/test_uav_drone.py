"""The drone branch: trained against a frozen aerial bank (the loss falls), exported beside its branches
(ONNX, model card entry, FLOPs), refused when paired with another aerial graph, run with torch blocked."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

from exportkit import copy_export, one_torch_thread, small_export  # noqa: F401 (autouse fixture)
from uavkit import drone_export, tiling, world

from edge_geoloc.cameras.uav import Lens, UavCamera
from edge_geoloc.config import dump_config
from edge_geoloc.data.uav_synth import UavSynthConfig, render_region, write_poses
from edge_geoloc.data.university1652 import POSES_FILE
from edge_geoloc.mapbuild.build import build_from_descriptors
from edge_geoloc.maps.bundle import EncoderInfo, RegionInfo
from edge_geoloc.runtime import load_card, open_encoder
from edge_geoloc.runtime.card import CardError, verify
from edge_geoloc.world.aerial import render_aerial
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import render_camera

ROOT = Path(__file__).resolve().parents[1]
LENS = Lens.from_fov(96, 72, 80.0, k1=-0.05)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("uav-data")
    cfg = UavSynthConfig(
        train_regions=["box-world.yaml"], frames=10, test_frames=4, lens=LENS, altitude_m=(40.0, 60.0),
        tilt_deg=(0.0, 20.0), look_jitter_m=8.0,
    )  # fmt: skip
    for split in ("train", "test"):
        rows = render_region(world(), split, cfg, root, False, render_camera, render_aerial, Appearance)
        write_poses(root / split / POSES_FILE, rows)
    dump_config(UavCamera(lens=LENS), root / "camera.yaml")
    return root


@pytest.fixture(scope="module")
def aerial_map(tmp_path_factory):
    export = small_export()
    card = load_card(export)
    enc = open_encoder(export, "aerial", intra_op_threads=1)
    t = tiling()
    ids, east, north = t.centres()
    tiles = [
        render_aerial(world(), float(e), float(n), card.aerial.width, card.aerial.gsd_m) for e, n in zip(east, north)
    ]
    encoder = EncoderInfo(
        model=card.model, aerial_sha256=card.aerial.sha256, card_sha256="", descriptor_dim=card.descriptor_dim
    )
    out = tmp_path_factory.mktemp("uav-bank") / "map"
    return build_from_descriptors(
        out, crs=world().crs, tiling=t, tile_ids=ids, descriptors=enc.encode(tiles), encoder=encoder,
        region=RegionInfo("box-world", 47.0, 9.0, "descriptors"), tile_px=card.aerial.width,
    )  # fmt: skip


def test_training_against_the_frozen_bank_lowers_the_loss_and_exports(dataset, aerial_map, tmp_path):
    from edge_geoloc.export.drone import DroneExportError, export_drone
    from edge_geoloc.train.drone import DroneTrainConfig, load_drone, train_drone

    export = copy_export(small_export(), tmp_path / "export")
    cfg = DroneTrainConfig(
        epochs=3, steps_per_epoch=8, batch_size=12, lr=3e-3, warmup_steps=2, val_samples=16, threads=1,
        rotation_negatives=0.5, tiles_per_frame=4, min_visible=0.6,
    )  # fmt: skip
    result = train_drone(
        dataset, export, small_export().parent / "small.pt", tmp_path / "run", cfg, {"box-world": aerial_map}
    )
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())["epochs"]
    assert len(metrics) == 3 and metrics[-1]["ce"] < metrics[0]["ce"]
    assert "val_R@1" in result["final"] and result["baseline_aerial_branch"]["n"] > 0
    _branch, state = load_drone(tmp_path / "run" / "drone.pt")
    assert state["aerial_sha256"] == load_card(export).aerial.sha256
    report = export_drone(tmp_path / "run" / "drone.pt", export)
    assert report["parity_ok"] and report["gflops_full"] > report["gmacs_paper"] > 0
    card = verify(export)  # every graph, drone.onnx included, matches the rewritten card
    assert card.drone is not None and card.drone.width == card.aerial.width and card.drone.patch_m == 64.0
    assert (
        card.drone.trained_altitude_m[0] >= 40.0 and json.loads((export / "drone_report.json").read_text())["parity_ok"]
    )
    # A drone branch trained against another export's aerial graph is refused.
    other = copy_export(small_export(seed=1), tmp_path / "other")
    with pytest.raises(DroneExportError, match="trained against aerial graph"):
        export_drone(tmp_path / "run" / "drone.pt", other)


def test_model_card_drone_entry_is_checked(tmp_path):
    export = copy_export(drone_export(), tmp_path / "e")
    card = load_card(export)
    assert card.branch("drone") is card.drone and card.input_spec("drone").height == card.drone.height
    with pytest.raises(ValueError, match="trained against another aerial graph"):
        dataclasses.replace(card, drone=dataclasses.replace(card.drone, aerial_sha256="0" * 64))
    with pytest.raises(CardError, match="no drone branch"):
        dataclasses.replace(card, drone=None).branch("drone")
    (export / "drone.onnx").write_bytes((export / "drone.onnx").read_bytes()[:-10])
    with pytest.raises(CardError, match=r"drone\.onnx: sha256"):
        verify(export)


def test_drone_encoder_runs_with_torch_blocked(tmp_path):
    export = drone_export()
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from edge_geoloc.runtime import open_encoder\n"
        f"enc = open_encoder({str(export)!r}, 'drone', intra_op_threads=1)\n"
        "d = enc.encode([np.full((32, 32, 3), 90, np.uint8)] * 2, is_panorama=False)\n"
        "print(d.shape, round(float(np.linalg.norm(d[0])), 5))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "(2, 16) 1.0"
