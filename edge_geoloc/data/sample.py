"""The one sample type every dataset reader returns, and the image I/O they share.

A :class:`Sample` is cheap to make: it holds paths and geometry, and reads its images only when
``sample.street`` or ``sample.aerial`` is first touched. Training loaders that want speed index the
readers' arrays directly (``pano_paths``, ``label``, ``delta_m``...) and call ``street(i)`` /
``aerial(j)``; a Sample is the convenient, self-describing view of one query.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np


class DatasetError(ValueError):
    """A dataset on disk that does not match its layout: names the file (and line) at fault."""


def read_rgb(path: str | Path, expected_hw: tuple[int, int] | None = None, what: str = "image") -> np.ndarray:
    """Read an image file as uint8 RGB (H, W, 3); corrupt, truncated or wrongly sized files fail clearly."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DatasetError(f"{what} {path}: no such file") from None
    except OSError as err:
        raise DatasetError(f"{what} {path}: cannot read: {err.strerror or err}") from None
    if data.size == 0:
        raise DatasetError(f"{what} {path}: empty file (corrupt image)")
    if path.suffix.lower() in (".jpg", ".jpeg"):
        # libjpeg decodes a truncated JPEG into a grey-padded image with only a warning: catch it here.
        tail = data[-256:].tobytes().rstrip(b"\x00\r\n ")
        if not tail.endswith(b"\xff\xd9"):
            raise DatasetError(f"{what} {path}: truncated or corrupt JPEG (no end-of-image marker)")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"{what} {path}: not a readable image (corrupt file or unsupported format)")
    if expected_hw is not None and tuple(image.shape[:2]) != tuple(expected_hw):
        raise DatasetError(
            f"{what} {path}: size {image.shape[0]}x{image.shape[1]} px (HxW), expected "
            f"{expected_hw[0]}x{expected_hw[1]} px as the dataset declares"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_rgb(path: str | Path, image: np.ndarray, jpeg_quality: int = 95) -> None:
    """Write uint8 RGB atomically (a temporary name, then a rename): a file that exists is complete."""
    path = Path(path)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{path}: expected a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ValueError(f"{path}: could not encode the image as {ext}")
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(buf.tobytes())
    os.replace(tmp, path)


def require_files(paths: Iterable[Path], what: str, listed_in: str) -> None:
    """Raise one clear error listing missing files (one directory listing per folder, not a stat per file)."""
    by_dir: dict[Path, list[Path]] = defaultdict(list)
    for p in paths:
        by_dir[p.parent].append(p)
    missing: list[Path] = []
    for folder, files in by_dir.items():
        try:
            present = set(os.listdir(folder))
        except FileNotFoundError:
            present = set()
        missing.extend(p for p in files if p.name not in present)
    if missing:
        total = sum(len(v) for v in by_dir.values())
        shown = ", ".join(str(p) for p in missing[:3])
        raise DatasetError(
            f"{len(missing)} of {total} {what} files listed in {listed_in} are missing, e.g. {shown} "
            "(pass check_files=False to open the index anyway)"
        )


@dataclass(eq=False)
class Sample:
    """One street view with its aerial references, whatever the source layout.

    Aerial references are listed positive first, then the semi-positives (VIGOR), as indices into the
    dataset's aerial images (``dataset.aerial(j)``). Offsets are the street position minus each
    tile centre, metres east/north (true north); ``None`` where the layout does not say.
    """

    index: int
    street_path: Path
    aerial_paths: tuple[Path, ...]
    aerial_ids: np.ndarray  # (K,) int64, positive first
    offsets_m: np.ndarray | None  # (K, 2) east/north of the street position from each tile centre
    iou: np.ndarray | None  # (K,) VIGOR IoU of each tile with a tile-sized box at the street position
    lat: float | None
    lon: float | None
    heading_deg: float | None  # street image centre column, clockwise from true north
    fov_deg: float  # horizontal field of view of the street image (360 for a panorama)
    city: str | None = None
    aerial_gsd_m: float | None = None  # metres per pixel of the stored aerial image
    street_hw: tuple[int, int] | None = field(default=None, repr=False)  # expected sizes, checked at load
    aerial_hw: tuple[int, int] | None = field(default=None, repr=False)

    @cached_property
    def street(self) -> np.ndarray:
        """The street image, uint8 RGB, read on first access."""
        return read_rgb(self.street_path, self.street_hw, "street image")

    @cached_property
    def aerial(self) -> np.ndarray:
        """The positive aerial image, uint8 RGB, read on first access."""
        return read_rgb(self.aerial_paths[0], self.aerial_hw, "aerial image")

    def aerial_image(self, k: int) -> np.ndarray:
        """The k-th aerial reference (0 = positive, 1.. = semi-positives)."""
        return self.aerial if k == 0 else read_rgb(self.aerial_paths[k], self.aerial_hw, "aerial image")

    @property
    def positive(self) -> int:
        return int(self.aerial_ids[0])

    @property
    def offset_m(self) -> np.ndarray | None:
        """East/north of the street position from the positive tile centre, metres."""
        return None if self.offsets_m is None else self.offsets_m[0]

    @property
    def semi_positives(self) -> np.ndarray:
        return self.aerial_ids[1:]

    @property
    def semi_offsets_m(self) -> np.ndarray | None:
        return None if self.offsets_m is None else self.offsets_m[1:]

    @property
    def semi_iou(self) -> np.ndarray | None:
        return None if self.iou is None else self.iou[1:]


class CrossViewDataset(Protocol):
    """What both readers offer: samples by index, and images by index without building a Sample."""

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Sample: ...

    def street(self, i: int) -> np.ndarray: ...

    def aerial(self, j: int) -> np.ndarray: ...

    @property
    def num_aerial(self) -> int: ...


def check_index(i: int, n: int, what: str) -> int:
    """A Python int in [0, n) (negative indices count from the end), or an IndexError naming the range."""
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"{what} index out of range 0..{n - 1}")
    return i
