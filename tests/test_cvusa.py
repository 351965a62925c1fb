"""CVUSA layout reader on a small fixture tree in that layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_geoloc.data.cvusa import CvusaDataset
from edge_geoloc.data.sample import DatasetError, write_rgb

STREET_HW, AERIAL_HW = (14, 77), (24, 24)  # CVUSA's 224 x 1232 and 750 x 750, scaled down


def make_cvusa(root: Path, n_train: int = 3, n_val: int = 2) -> dict[str, list[int]]:
    """Files numbered 1..n; image j is a flat colour derived from j, so pairs are recognizable."""
    (root / "splits").mkdir(parents=True)
    for d in ("bingmap/19", "streetview/panos", "streetview/annotations"):
        (root / d).mkdir(parents=True)
    ids = {"train": list(range(1, n_train + 1)), "val": list(range(n_train + 1, n_train + n_val + 1))}
    for split, numbers in ids.items():
        lines = []
        for j in numbers:
            name = f"{j:07d}"
            write_rgb(root / f"bingmap/19/{name}.jpg", np.full((*AERIAL_HW, 3), 10 * j, np.uint8))
            write_rgb(root / f"streetview/panos/{name}.jpg", np.full((*STREET_HW, 3), 200 - 10 * j, np.uint8))
            lines.append(f"bingmap/19/{name}.jpg,streetview/panos/{name}.jpg,streetview/annotations/{name}.png")
        (root / "splits" / f"{split}-19zl.csv").write_text("\n".join(lines) + "\n")
    return ids


def open_small(root: Path, split: str = "train", **kw) -> CvusaDataset:
    return CvusaDataset(root, split, street_hw=STREET_HW, aerial_hw=AERIAL_HW, **kw)


def test_pairs_and_sample(tmp_path):
    ids = make_cvusa(tmp_path)
    ds = open_small(tmp_path)
    assert len(ds) == 3 and ds.num_aerial == 3
    assert len(open_small(tmp_path, "val")) == 2
    s = ds[1]
    j = ids["train"][1]
    assert s.street_path == tmp_path / f"streetview/panos/{j:07d}.jpg"
    assert s.aerial_paths == (tmp_path / f"bingmap/19/{j:07d}.jpg",)
    assert ds.annotation_paths[1] == tmp_path / f"streetview/annotations/{j:07d}.png"
    assert s.positive == 1 and len(s.semi_positives) == 0
    assert s.offset_m is not None and np.array_equal(s.offset_m, [0.0, 0.0])  # centre-aligned
    assert s.lat is None and s.lon is None
    assert s.heading_deg == 0.0 and s.fov_deg == 360.0  # north-aligned, north at the centre column
    assert s.aerial.shape == (*AERIAL_HW, 3) and abs(int(s.aerial.mean()) - 10 * j) <= 2
    assert abs(int(ds.street(1).mean()) - (200 - 10 * j)) <= 2
    assert ds[-1].index == 2


def test_default_sizes_are_cvusas(tmp_path):
    make_cvusa(tmp_path)
    ds = CvusaDataset(tmp_path)
    with pytest.raises(DatasetError, match=r"size 14x77 px \(HxW\), expected 224x1232"):
        ds.street(0)
    with pytest.raises(DatasetError, match="expected 750x750"):
        _ = ds[0].aerial


def test_malformed_line_names_file_and_line(tmp_path):
    make_cvusa(tmp_path)
    split = tmp_path / "splits" / "train-19zl.csv"
    lines = split.read_text().splitlines()
    lines[1] = "bingmap/19/0000002.jpg;streetview/panos/0000002.jpg"
    split.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{split}:2: expected 3 comma-separated paths"):
        open_small(tmp_path)
    lines[1] = "/etc/passwd.jpg,streetview/panos/0000002.jpg,streetview/annotations/0000002.png"
    split.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=rf"{split}:2: paths must be relative"):
        open_small(tmp_path)


def test_missing_and_corrupt_files(tmp_path):
    make_cvusa(tmp_path)
    gone = tmp_path / "streetview/panos/0000003.jpg"
    gone.unlink()
    with pytest.raises(
        DatasetError, match=rf"1 of 3 panorama files listed in .*train-19zl.csv are missing, e.g. {gone}"
    ):
        open_small(tmp_path)
    assert len(open_small(tmp_path, "val")) == 2
    ds = open_small(tmp_path, check_files=False)
    with pytest.raises(DatasetError, match="no such file"):
        ds.street(2)
    bad = tmp_path / "bingmap/19/0000001.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    with pytest.raises(DatasetError, match=rf"{bad}: truncated or corrupt JPEG"):
        ds.aerial(0)
    with pytest.raises(DatasetError, match="not a CVUSA-layout dataset"):
        CvusaDataset(tmp_path / "nowhere")
