"""The CVUSA layout (the 19zl subset used by SAFA, TransGeo and the WACV 2021 paper).

::

    DIR/splits/train-19zl.csv   no header; lines 'bingmap/19/0000001.jpg,streetview/panos/0000001.jpg,streetview/annotations/0000001.png'
    DIR/splits/val-19zl.csv
    DIR/bingmap/19/*.jpg        aerial, north-up, centred on the panorama (750 x 750 px)
    DIR/streetview/panos/*.jpg  panoramas, north-aligned (224 x 1232 px)

Pairs are centre-aligned, so every street view's offset from its aerial centre is (0, 0) and there
are no semi-positives. The panoramas' centre column faces north: SAFA's polar transform for CVUSA
(row = S/2 + r cos(2 pi j / W), col = S/2 - r sin(2 pi j / W)) maps column W/2 to the top of the
aerial image, with east to the right of it. Positions are not in the split files: lat/lon are None.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from edge_geoloc.data.sample import DatasetError, Sample, check_index, read_rgb, require_files

CVUSA_STREET_HW = (224, 1232)
CVUSA_AERIAL_HW = (750, 750)
SPLIT_FILES = {"train": "train-19zl.csv", "val": "val-19zl.csv"}


class CvusaDataset:
    """One CVUSA split: ``aerial_paths``, ``street_paths``, ``annotation_paths`` (N each), aerial j pairs with street j."""

    def __init__(
        self,
        root: str | Path,
        split: Literal["train", "val"] = "train",
        *,
        check_files: bool = True,
        street_hw: tuple[int, int] | None = CVUSA_STREET_HW,
        aerial_hw: tuple[int, int] | None = CVUSA_AERIAL_HW,
        pano_heading_deg: float | None = 0.0,
    ) -> None:
        """``street_hw`` / ``aerial_hw``: sizes every image must have (None: any size)."""
        if split not in SPLIT_FILES:
            raise ValueError(f"CVUSA split must be one of {', '.join(SPLIT_FILES)}, got {split!r}")
        self.root = Path(root)
        self.split = split
        self.street_hw = street_hw
        self.aerial_hw = aerial_hw
        self.heading_deg = pano_heading_deg
        self.fov_deg = 360.0
        self.split_file = self.root / "splits" / SPLIT_FILES[split]
        if not self.split_file.is_file():
            raise DatasetError(f"{self.root}: not a CVUSA-layout dataset (no split file {self.split_file})")
        aerial, street, annotation = [], [], []
        for lineno, line in enumerate(self.split_file.read_text().splitlines(), 1):
            line = line.strip()
            if not line:
                continue
            cols = [c.strip() for c in line.split(",")]
            if len(cols) != 3 or not all(cols) or not cols[0].lower().endswith((".jpg", ".png")):
                raise DatasetError(
                    f"{self.split_file}:{lineno}: expected 3 comma-separated paths "
                    f"'bingmap/19/0000001.jpg,streetview/panos/0000001.jpg,streetview/annotations/0000001.png', "
                    f"got {line!r}"
                )
            if any(Path(c).is_absolute() or ".." in Path(c).parts for c in cols):
                raise DatasetError(f"{self.split_file}:{lineno}: paths must be relative to {self.root}, got {line!r}")
            aerial.append(self.root / cols[0])
            street.append(self.root / cols[1])
            annotation.append(self.root / cols[2])
        if not aerial:
            raise DatasetError(f"{self.split_file}: no pairs listed")
        if check_files:
            require_files(aerial, "aerial image", str(self.split_file))
            require_files(street, "panorama", str(self.split_file))
        self.aerial_paths: list[Path] = aerial
        self.street_paths: list[Path] = street
        self.annotation_paths: list[Path] = annotation

    def __len__(self) -> int:
        return len(self.street_paths)

    @property
    def num_aerial(self) -> int:
        return len(self.aerial_paths)

    def __repr__(self) -> str:
        return f"CvusaDataset({str(self.root)!r}, split={self.split!r}: {len(self)} pairs)"

    def street(self, i: int) -> np.ndarray:
        return read_rgb(self.street_paths[check_index(i, len(self), "panorama")], self.street_hw, "panorama")

    def aerial(self, j: int) -> np.ndarray:
        return read_rgb(self.aerial_paths[check_index(j, self.num_aerial, "aerial")], self.aerial_hw, "aerial image")

    def __getitem__(self, i: int) -> Sample:
        i = check_index(i, len(self), "panorama")
        return Sample(
            index=i,
            street_path=self.street_paths[i],
            aerial_paths=(self.aerial_paths[i],),
            aerial_ids=np.array([i], dtype=np.int64),
            offsets_m=np.zeros((1, 2)),  # centre-aligned pairs
            iou=np.ones(1),
            lat=None,
            lon=None,
            heading_deg=self.heading_deg,
            fov_deg=self.fov_deg,
            street_hw=self.street_hw,
            aerial_hw=self.aerial_hw,
        )
