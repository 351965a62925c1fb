"""The University-1652 reader on a fixture tree in the release's layout, and its synthetic pose sidecar."""

import numpy as np
import pytest

from edge_geoloc.data.sample import DatasetError, write_rgb
from edge_geoloc.data.university1652 import POSE_COLUMNS, POSES_FILE, University1652


def tree(root, split="train", buildings=("0001", "0002"), drones=(3, 2), distractors=(), ext=".jpeg"):
    q, g = ("drone", "satellite") if split == "train" else ("query_drone", "gallery_satellite")
    for k, (b, n) in enumerate(zip(buildings, drones)):
        for i in range(n):
            (root / split / q / b).mkdir(parents=True, exist_ok=True)
            write_rgb(root / split / q / b / f"image-{i + 1:02d}{ext}", np.full((24, 32, 3), 10 * k + i, np.uint8))
    for k, b in enumerate([*buildings, *distractors]):
        (root / split / g / b).mkdir(parents=True, exist_ok=True)
        write_rgb(root / split / g / b / f"{b}.jpg", np.full((16, 16, 3), 100 + 20 * k, np.uint8))
    (root / split / "street" / "0001").mkdir(parents=True, exist_ok=True)  # other views are ignored


def test_train_split_pairs_drone_images_with_their_building(tmp_path):
    tree(tmp_path)
    ds = University1652(tmp_path, "train", drone_hw=(24, 32), satellite_hw=(16, 16))
    assert len(ds) == 5 and ds.num_aerial == 2
    assert ds.building == ["0001"] * 3 + ["0002"] * 2
    np.testing.assert_array_equal(ds.positive, [0, 0, 0, 1, 1])
    s = ds[4]
    assert s.street_path.name == "image-02.jpeg" and s.aerial_paths[0].name == "0002.jpg"
    assert s.positive == 1 and s.offsets_m is None and s.heading_deg is None
    assert s.street[0, 0, 0] == 11 and s.aerial[0, 0, 0] == 120  # pixel values survive JPEG on flat images
    np.testing.assert_array_equal(ds.aerial(0), ds[0].aerial)
    assert "5 drone images of 2 buildings" in repr(ds)


def test_test_split_gallery_holds_distractors(tmp_path):
    tree(tmp_path, "test", buildings=("0100", "0300"), drones=(1, 2), distractors=("0200", "0999"))
    ds = University1652(tmp_path, "test")
    assert ds.satellite_ids == ["0100", "0200", "0300", "0999"]
    np.testing.assert_array_equal(ds.positive, [0, 2, 2])


def test_bad_trees_fail_clearly(tmp_path):
    with pytest.raises(DatasetError, match="not a University-1652"):
        University1652(tmp_path, "train")
    tree(tmp_path)
    (tmp_path / "train" / "drone" / "0005").mkdir()
    write_rgb(tmp_path / "train" / "drone" / "0005" / "image-01.jpeg", np.zeros((24, 32, 3), np.uint8))
    with pytest.raises(DatasetError, match="0005 has drone images but no satellite"):
        University1652(tmp_path, "train")
    write_rgb(tmp_path / "train" / "satellite" / "0001" / "extra.jpg", np.zeros((16, 16, 3), np.uint8))
    with pytest.raises(DatasetError, match="one satellite image per building, found 2"):
        University1652(tmp_path, "train")
    with pytest.raises(ValueError, match="train or test"):
        University1652(tmp_path, "val")


def test_wrong_image_size_is_refused(tmp_path):
    tree(tmp_path)
    ds = University1652(tmp_path, "train", drone_hw=(48, 64))
    with pytest.raises(DatasetError, match="expected 48x64"):
        ds.street(0)


def pose_row(image, building, east, north, yaw=30.0, conv=0.0):
    vals = dict(
        image=image, building=building, region="r", east=east, north=north, height_m=120, roll_deg=1, pitch_deg=-2,
        yaw_deg=yaw, convergence_deg=conv, mount_tilt_deg=20, tile_east=100.0, tile_north=200.0,
        sun_azimuth_deg=90, sun_elevation_deg=45,
    )  # fmt: skip
    return ",".join(str(vals[c]) for c in POSE_COLUMNS)


def test_synthetic_pose_sidecar_gives_offsets_and_heading(tmp_path):
    tree(tmp_path, drones=(1, 1))
    lines = [",".join(POSE_COLUMNS), pose_row("drone/0001/image-01.jpeg", "0001", 110.0, 195.0, conv=90.0)]
    lines.append(pose_row("drone/0002/image-01.jpeg", "0002", 100.0, 200.0))
    (tmp_path / "train" / POSES_FILE).write_text("\n".join(lines) + "\n")
    ds = University1652(tmp_path, "train")
    s = ds[0]
    # 10 m grid east, 5 m grid south; grid north lies 90 degrees clockwise of true north here, so
    # grid east is true south and grid south true west.
    np.testing.assert_allclose(s.offsets_m, [[-5.0, -10.0]], atol=1e-9)
    assert s.heading_deg == 30.0 and s.city == "r"
    np.testing.assert_allclose(ds.poses["height_m"], [120, 120])
    (tmp_path / "train" / POSES_FILE).write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(DatasetError, match="no pose for 1 drone images"):
        University1652(tmp_path, "train")
    (tmp_path / "train" / POSES_FILE).write_text("\n".join([*lines, "drone/x.jpeg,0001,r,1,2"]) + "\n")
    with pytest.raises(DatasetError, match=f"{POSES_FILE}:4: expected 15 columns"):
        University1652(tmp_path, "train")
