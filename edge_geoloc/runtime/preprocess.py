"""Image preprocessing: ONE implementation (numpy/OpenCV) for training, export checks and every
runtime backend, so that what the model saw in training is exactly what it sees on the device.

Steps: validate -> FoV crop (panoramas only) -> resize (INTER_AREA down, INTER_LINEAR up) ->
scale to [0, 1] -> normalize by mean/std -> HWC to CHW -> batch (float32, NCHW).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


class InputError(ValueError):
    """An image that cannot be fed to the encoder (wrong dtype, shape, channels, empty batch)."""


@dataclass(frozen=True)
class InputSpec:
    """What an encoder takes: read from the model card, never hard-coded."""

    height: int
    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fov_deg: float = 360.0  # horizontal field of view the branch was trained on
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"input size must be positive, got {self.height}x{self.width}")


def fov_crop(panorama: np.ndarray, fov_deg: float) -> np.ndarray:
    """The centre ``fov_deg`` of an equirectangular panorama (its centre column is the heading)."""
    if fov_deg >= 360:
        return panorama
    w = panorama.shape[1]
    keep = max(1, round(w * fov_deg / 360.0))
    start = (w - keep) // 2
    return panorama[:, start : start + keep]


def check_image(image: np.ndarray, index: int = 0) -> np.ndarray:
    """An HxWx3 uint8 image, or an InputError that says what is wrong with it."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image {index}: expected a numpy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InputError(f"image {index}: expected dtype uint8 (0..255), got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image {index}: expected HxWx3 (3 channels), got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"image {index}: too small ({image.shape[0]}x{image.shape[1]})")
    return image


def resize_to(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize with area averaging when shrinking (no aliasing), bilinear when enlarging."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    shrink = image.shape[0] > height or image.shape[1] > width
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def prepare(image: np.ndarray, spec: InputSpec, is_panorama: bool = True, index: int = 0) -> np.ndarray:
    """uint8 HxWx3 at the encoder's size (crop + resize), before normalization."""
    image = check_image(image, index)
    if is_panorama:
        image = fov_crop(image, spec.fov_deg)
    return resize_to(image, spec.height, spec.width)


def normalize(batch_hwc: np.ndarray, spec: InputSpec) -> np.ndarray:
    """uint8 (N, H, W, 3) in RGB -> float32 (N, 3, H, W) normalized, in the spec's channel order."""
    x = batch_hwc.astype(np.float32) * np.float32(1.0 / 255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    x = (x - mean) / std
    if spec.channel_order == "BGR":
        x = x[..., ::-1]
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def preprocess(images: Sequence[np.ndarray] | np.ndarray, spec: InputSpec, is_panorama: bool = True) -> np.ndarray:
    """RGB uint8 images (a list, or an (N, H, W, 3) array) -> the encoder's float32 NCHW batch."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        raise InputError(
            f"expected a batch of images (N, H, W, 3) or a list, got a single array of shape {images.shape}"
        )
    if len(images) == 0:
        raise InputError("empty batch: nothing to encode")
    batch = np.stack([prepare(img, spec, is_panorama, i) for i, img in enumerate(images)])
    return normalize(batch, spec)
