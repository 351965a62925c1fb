"""Geometry-consistent augmentations of (panorama, aerial tile, offset) triples, on uint8 numpy.

A north-aligned panorama's column c looks at azimuth (c + 0.5 - W/2) 360/W. Rotating the world
by 90 degrees clockwise turns the aerial tile with np.rot90(k=-1), rolls the panorama right by
W/4 and maps an offset (east, north) to (north, -east); mirroring east-west flips both images
left-right and negates east. Both keep the pair aligned (Sample4Geo uses the same trick), so
one rendered pair becomes eight. Unknown orientation is a random circular shift of the panorama
alone, which changes its heading (the label of the heading estimator).
"""

from __future__ import annotations

import numpy as np


def rotate90(
    street: np.ndarray, aerial: np.ndarray, offset_en: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rotate the scene k * 90 degrees clockwise (street (H, W, 3), aerial (h, w, 3), offsets (..., 2))."""
    k %= 4
    if k == 0:
        return street, aerial, offset_en
    w = street.shape[1]
    if w % 4:
        raise ValueError(f"panorama width {w} must be a multiple of 4 to rotate by 90 degrees exactly")
    street = np.roll(street, k * w // 4, axis=1)
    aerial = np.rot90(aerial, k=-k, axes=(0, 1))
    off = np.asarray(offset_en, dtype=np.float64)
    for _ in range(k):
        off = np.stack([off[..., 1], -off[..., 0]], axis=-1)
    return street, aerial, off


def mirror(street: np.ndarray, aerial: np.ndarray, offset_en: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror the scene east-west: azimuth theta -> -theta, east -> -east."""
    off = np.asarray(offset_en, dtype=np.float64).copy()
    off[..., 0] *= -1
    # Column c looks at a(c) = (c + 0.5 - W/2) 360/W, and a(W - 1 - c) = -a(c): reversing the columns is exact.
    return street[:, ::-1], aerial[:, ::-1], off


def circular_shift(street: np.ndarray, shift_cols: int) -> tuple[np.ndarray, float]:
    """Roll a panorama by shift_cols; returns it and the heading change in degrees (clockwise).

    Rolling right by s columns puts what was at the centre s columns to the right, so the
    centre column now looks s * 360/W degrees to the left: heading -= s * 360 / W.
    """
    w = street.shape[1]
    return np.roll(street, shift_cols, axis=1), -shift_cols * 360.0 / w


def jitter_factors(rng: np.random.Generator, strength: float = 0.2) -> tuple[float, float, float]:
    """Saturation, contrast and brightness factors, drawn in that order (a batch draws them all before
    any image is touched, so a data-parallel rank's share of a batch equals those rows of the whole)."""
    return tuple(float(rng.uniform(1 - strength, 1 + strength)) for _ in range(3))  # type: ignore[return-value]


def apply_jitter(image: np.ndarray, factors: tuple[float, float, float]) -> np.ndarray:
    """Scale saturation, contrast and brightness of a uint8 image by ``factors``."""
    saturation, contrast, brightness = factors
    x = image.astype(np.float32)
    grey = x.mean(axis=-1, keepdims=True)
    x = grey + (x - grey) * saturation
    mean = x.mean()
    x = (x - mean) * contrast + mean
    x = x * brightness
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Random brightness, contrast and saturation; different per view so colour is no giveaway."""
    return apply_jitter(image, jitter_factors(rng, strength))
