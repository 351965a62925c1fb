"""Surface texture of the world's albedo: per-material noise at three scales on top of the
patterns the generators painted (field stripes, shingle rows, roof seams, tiles).

A model needs structure to learn from, not flat colour: grass mottles, tree crowns are clumpy,
asphalt is fine-grained, soil is patchy. All of it is baked into ``World.albedo`` once, so every
view of a place shows the same texture.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_geoloc.world.canvas import TEX_ONE, smooth_noise
from edge_geoloc.world.scene import Material

# Texture amplitude (in 1/128 units of brightness) per material: (per pixel, ~1.5 m, ~12 m), and
# a colour-tint amplitude (red/green shift at ~40 m) that makes vegetation patchy.
_AMPLITUDE = {
    Material.GRASS: (10, 12, 10, 7),
    Material.ROAD: (9, 3, 6, 0),
    Material.SIDEWALK: (8, 3, 5, 0),
    Material.ROOF: (6, 3, 3, 0),
    Material.TREE: (14, 26, 6, 6),
    Material.WATER: (2, 4, 8, 0),
    Material.FIELD: (8, 7, 6, 4),
    Material.PARKING: (8, 4, 5, 0),
    Material.CAR: (3, 0, 0, 0),
    Material.MARKING: (10, 10, 4, 0),
    Material.SOIL: (12, 10, 10, 5),
    Material.PLAZA: (8, 4, 6, 0),
    Material.SHRUB: (16, 20, 6, 6),
}


def _lut(column: int) -> np.ndarray:
    lut = np.zeros(256, np.uint8)
    for mat, amps in _AMPLITUDE.items():
        lut[int(mat)] = amps[column]
    return lut


def finish_albedo(
    pal: np.ndarray, tex: np.ndarray, rgb_lut: np.ndarray, mat_lut: np.ndarray, rng: np.random.Generator, res_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """(albedo RGB uint8, material uint8) from palette ids and the painted texture multiplier."""
    shape = pal.shape
    material = np.take(mat_lut, pal)
    t = tex.astype(np.float32)
    fine = rng.integers(0, 256, shape, dtype=np.uint8)
    # Per-pixel grain: uniform noise scaled per material, centred on 0.
    t += cv2.multiply(cv2.LUT(material, _lut(0)), fine, dtype=cv2.CV_32F, scale=2.0 / 255.0)
    t -= cv2.LUT(material, _lut(0)).astype(np.float32)
    for col, cell_m in ((1, 1.5), (2, 12.0)):
        noise = smooth_noise(rng, shape, max(cell_m / res_m, 1.5))
        t += cv2.multiply(cv2.LUT(material, _lut(col)), noise, dtype=cv2.CV_32F)
    t8 = np.clip(t, 0, 255).astype(np.uint8)
    albedo = np.take(rgb_lut, pal, axis=0)
    albedo = cv2.multiply(albedo, cv2.merge([t8, t8, t8]), scale=1.0 / TEX_ONE)
    # Patchy vegetation: shift red against green slowly over the ground.
    tint = smooth_noise(rng, shape, max(40.0 / res_m, 2.0))
    shift = cv2.multiply(cv2.LUT(material, _lut(3)), tint, dtype=cv2.CV_32F)
    r = albedo[..., 0].astype(np.float32) * (1.0 + shift / TEX_ONE)
    g = albedo[..., 1].astype(np.float32) * (1.0 - 0.4 * shift / TEX_ONE)
    albedo[..., 0] = np.clip(r, 0, 255).astype(np.uint8)
    albedo[..., 1] = np.clip(g, 0, 255).astype(np.uint8)
    return albedo, material
