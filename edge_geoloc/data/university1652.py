"""The University-1652 layout (Zheng, Wei and Yang, ACM MM 2020): drone and satellite views per building id.

::

    ROOT/train/drone/<id>/image-01.jpeg ...     drone frames of building <id> (54 a building in the release)
    ROOT/train/satellite/<id>/<id>.jpg          its satellite image (one; north-up, centred on the building)
    ROOT/test/query_drone/<id>/...              drone queries (task 1: drone -> satellite)
    ROOT/test/gallery_satellite/<id>/<id>.jpg   the gallery: every test building, and distractors without queries
    (train/street, train/google, test/query_satellite, test/gallery_drone, ... are not read here)

Queries are drone images, the gallery is the satellite images; a query's positive is the satellite
image of its building. The release gives no poses, so offsets, heading and position are None.

The synthetic UAV dataset (:mod:`edge_geoloc.data.uav_synth`) writes this same layout, where a
"building" is a map tile, and adds a sidecar ``ROOT/<split>/drone_poses.csv`` (one row per drone
image: where the drone was, its attitude and height, the tile centre) and ``ROOT/camera.yaml`` (the
lens); with them a Sample carries the offset of the drone from its tile centre and its heading.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

import numpy as np

from edge_geoloc.cameras.rectify import rotate_offsets
from edge_geoloc.data.sample import DatasetError, Sample, check_index, read_rgb

IMAGE_EXT = (".jpg", ".jpeg", ".png")
FOLDERS = {"train": ("drone", "satellite"), "test": ("query_drone", "gallery_satellite")}
POSES_FILE = "drone_poses.csv"
POSE_COLUMNS = (
    "image",
    "building",
    "region",
    "east",
    "north",
    "height_m",
    "roll_deg",
    "pitch_deg",
    "yaw_deg",
    "convergence_deg",
    "mount_tilt_deg",
    "tile_east",
    "tile_north",
    "sun_azimuth_deg",
    "sun_elevation_deg",
)
FLOAT_COLUMNS = POSE_COLUMNS[3:]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT)


def read_poses(path: Path) -> dict[str, dict[str, float | str]]:
    """The sidecar: image (relative to the split folder) -> its row; a malformed line names file and line."""
    rows: dict[str, dict[str, float | str]] = {}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != POSE_COLUMNS:
            raise DatasetError(f"{path}:1: expected the header {','.join(POSE_COLUMNS)}, got {header}")
        for lineno, cols in enumerate(reader, 2):
            if not cols:
                continue
            if len(cols) != len(POSE_COLUMNS):
                raise DatasetError(f"{path}:{lineno}: expected {len(POSE_COLUMNS)} columns, got {len(cols)}")
            row: dict[str, float | str] = dict(zip(POSE_COLUMNS[:3], cols[:3]))
            try:
                row.update({k: float(v) for k, v in zip(FLOAT_COLUMNS, cols[3:])})
            except ValueError:
                raise DatasetError(f"{path}:{lineno}: a pose column is not a number: {cols}") from None
            rows[str(row["image"])] = row
    return rows


class University1652:
    """Drone queries and satellite gallery of one split (see the module docstring).

    ``drone_paths`` (N), ``building`` (N) the building id of each, ``satellite_paths`` (M) the
    gallery in id order, ``satellite_ids`` (M), ``positive`` (N) the gallery index of each query's
    building. With the synthetic sidecar: ``poses`` (dict of (N,) arrays, :data:`POSE_COLUMNS`).
    """

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "test"] = "train",
        *,
        drone_hw: tuple[int, int] | None = None,
        satellite_hw: tuple[int, int] | None = None,
    ) -> None:
        if split not in FOLDERS:
            raise ValueError(f"University-1652 split must be train or test, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.drone_hw, self.satellite_hw = drone_hw, satellite_hw
        qname, gname = FOLDERS[split]
        self.split_dir = self.root / split
        qdir, gdir = self.split_dir / qname, self.split_dir / gname
        for d in (qdir, gdir):
            if not d.is_dir():
                raise DatasetError(f"{self.root}: not a University-1652-layout dataset (no folder {d})")
        self.satellite_ids: list[str] = []
        self.satellite_paths: list[Path] = []
        for b in sorted(p for p in gdir.iterdir() if p.is_dir()):
            imgs = _images(b)
            if len(imgs) != 1:
                raise DatasetError(f"{b}: expected one satellite image per building, found {len(imgs)}")
            self.satellite_ids.append(b.name)
            self.satellite_paths.append(imgs[0])
        if not self.satellite_paths:
            raise DatasetError(f"{gdir}: no building folders")
        index = {b: j for j, b in enumerate(self.satellite_ids)}
        drone, building, positive = [], [], []
        for b in sorted(p for p in qdir.iterdir() if p.is_dir()):
            if b.name not in index:
                raise DatasetError(f"{b}: building {b.name} has drone images but no satellite image in {gdir}")
            for img in _images(b):
                drone.append(img)
                building.append(b.name)
                positive.append(index[b.name])
        if not drone:
            raise DatasetError(f"{qdir}: no drone images")
        self.drone_paths: list[Path] = drone
        self.building: list[str] = building
        self.positive = np.asarray(positive, dtype=np.int64)
        self.poses: dict[str, np.ndarray] | None = None
        self.camera = None
        poses_file = self.split_dir / POSES_FILE
        if poses_file.exists():
            rows = read_poses(poses_file)
            rel = [str(p.relative_to(self.split_dir)) for p in drone]
            missing = [r for r in rel if r not in rows]
            if missing:
                raise DatasetError(f"{poses_file}: no pose for {len(missing)} drone images, e.g. {missing[0]}")
            self.poses = {k: np.array([rows[r][k] for r in rel]) for k in POSE_COLUMNS[1:]}
            for k in FLOAT_COLUMNS:
                self.poses[k] = self.poses[k].astype(np.float64)
            cam_file = self.root / "camera.yaml"
            if cam_file.exists():
                from edge_geoloc.cameras.uav import UavCamera

                self.camera = UavCamera.load(cam_file)

    def __len__(self) -> int:
        return len(self.drone_paths)

    @property
    def num_aerial(self) -> int:
        return len(self.satellite_paths)

    def __repr__(self) -> str:
        return (
            f"University1652({str(self.root)!r}, split={self.split!r}: {len(self)} drone images of"
            f" {len(set(self.building))} buildings, {self.num_aerial} satellite images"
            f"{', with poses' if self.poses is not None else ''})"
        )

    def street(self, i: int) -> np.ndarray:
        """The i-th drone image (the query; named as the street view is in the other readers)."""
        return read_rgb(self.drone_paths[check_index(i, len(self), "drone image")], self.drone_hw, "drone image")

    drone = street

    def aerial(self, j: int) -> np.ndarray:
        path = self.satellite_paths[check_index(j, self.num_aerial, "satellite")]
        return read_rgb(path, self.satellite_hw, "satellite image")

    def __getitem__(self, i: int) -> Sample:
        i = check_index(i, len(self), "drone image")
        j = int(self.positive[i])
        offsets = heading = None
        region = None
        fov = float("nan")
        if self.poses is not None:
            p = self.poses
            grid = np.array([[p["east"][i] - p["tile_east"][i], p["north"][i] - p["tile_north"][i]]])
            offsets = rotate_offsets(grid, -float(p["convergence_deg"][i]))  # grid -> true north, as Sample says
            heading = float(p["yaw_deg"][i])
            region = str(p["region"][i])
        if self.camera is not None:
            fov = float(np.degrees(2 * np.arctan(self.camera.lens.width_px / 2 / self.camera.lens.fx)))
        return Sample(
            index=i,
            street_path=self.drone_paths[i],
            aerial_paths=(self.satellite_paths[j],),
            aerial_ids=np.array([j], dtype=np.int64),
            offsets_m=offsets,
            iou=None,
            lat=None,
            lon=None,
            heading_deg=heading,
            fov_deg=fov,
            city=region,
            street_hw=self.drone_hw,
            aerial_hw=self.satellite_hw,
        )
