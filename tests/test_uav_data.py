"""The synthetic drone dataset: University-1652 layout, poses that look at their tile, resumable."""

import numpy as np
import pytest
from worldkit import box_world

from edge_geoloc.cameras.rectify import GroundView, look_point
from edge_geoloc.cameras.uav import Lens, Mount, UavCamera
from edge_geoloc.config import dump_config
from edge_geoloc.data.uav_synth import UavSynthConfig, render_region, write_poses
from edge_geoloc.data.university1652 import POSES_FILE, University1652
from edge_geoloc.world.aerial import render_aerial
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.camera import render_camera

LENS = Lens.from_fov(64, 48, 80.0, k1=-0.05)


@pytest.fixture(scope="module")
def world():
    return box_world([(10.0, 10.0, 20.0, 14.0, 8.0), (-30.0, -20.0, 12.0, 12.0, 0.0)], size_m=320.0)


def test_frames_look_at_their_tile_and_read_back(world, tmp_path):
    cfg = UavSynthConfig(
        train_regions=["box-world.yaml"], frames=4, lens=LENS, altitude_m=(40.0, 60.0), tilt_deg=(0.0, 30.0),
        look_jitter_m=6.0,
    )  # fmt: skip
    rows = render_region(world, "train", cfg, tmp_path, False, render_camera, render_aerial, Appearance)
    write_poses(tmp_path / "train" / POSES_FILE, rows)
    dump_config(UavCamera(lens=LENS), tmp_path / "camera.yaml")
    ds = University1652(tmp_path, "train", drone_hw=(48, 64), satellite_hw=(64, 64))
    assert len(ds) == 4 and ds.camera.lens == LENS
    p = ds.poses
    for i in range(len(ds)):
        yaw_grid = p["yaw_deg"][i] - p["convergence_deg"][i]
        R = UavCamera(lens=LENS, mount=Mount(tilt_deg=p["mount_tilt_deg"][i])).world_from_cam(
            p["roll_deg"][i], p["pitch_deg"][i], yaw_grid
        )
        look = np.add(look_point(GroundView(R, p["height_m"][i])), [p["east"][i], p["north"][i]])
        assert np.all(np.abs(look - [p["tile_east"][i], p["tile_north"][i]]) <= 6.0 + 1e-6)
        assert 40.0 <= p["height_m"][i] <= 60.0
        assert ds.street(i).shape == (48, 64, 3) and ds[i].aerial.shape == (64, 64, 3)
    # Resume: a rerun renders nothing new and gives the same rows.
    before = {f: f.stat().st_mtime_ns for f in (tmp_path / "train").rglob("*.jpeg")}
    again = render_region(world, "train", cfg, tmp_path, False, render_camera, render_aerial, Appearance)
    assert again == rows
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "train").rglob("*.jpeg")} == before


def test_config_refuses_nonsense():
    with pytest.raises(ValueError, match="at least one region"):
        UavSynthConfig()
    with pytest.raises(ValueError, match="repeat"):
        UavSynthConfig(train_regions=["a/x.yaml"], test_regions=["b/x.yaml"])
