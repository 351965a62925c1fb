"""Cheap checks that a camera frame can be a view of anything: a covered lens, a black or blown-out frame
carries no place, and its descriptor's best tile is chance. A few hundred sampled pixels, microseconds."""

from __future__ import annotations

import numpy as np

MIN_CONTRAST = 4.0  # grey-level standard deviation below which a frame is blank (lens cap, fog, a wall)
DARK, BRIGHT = 16.0, 240.0  # mean grey levels beyond which a frame is under- or overexposed
CLIPPED_SHARE = 0.6  # ... or this share of its pixels clipped black (<= 5) or white (>= 250)


def image_problem(image: np.ndarray) -> str | None:
    """Why ``image`` (H, W, 3 uint8) cannot show a place, or None when it may."""
    h, w = image.shape[:2]
    step = max(1, int(np.sqrt(h * w / 4096)))  # about 4096 pixels
    grey = np.asarray(image[::step, ::step], dtype=np.float32)
    grey = grey.mean(axis=2) if grey.ndim == 3 else grey
    mean, std = float(grey.mean()), float(grey.std())
    if mean < DARK or float(np.mean(grey <= 5)) > CLIPPED_SHARE:
        return f"too dark (mean grey {mean:.0f})"
    if mean > BRIGHT or float(np.mean(grey >= 250)) > CLIPPED_SHARE:
        return f"overexposed (mean grey {mean:.0f})"
    if std < MIN_CONTRAST:
        return f"blank frame (grey-level spread {std:.1f} < {MIN_CONTRAST:g})"
    return None
