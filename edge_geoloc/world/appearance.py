"""Appearance knobs shared by every renderer, so that a model cannot match views by exact colour.

One :class:`Appearance` describes a capture: the sun (which sets shading and shadows), the
season (vegetation colour), and the camera (exposure, white balance, saturation, haze, blur,
noise). Street views and the aerial imagery of a region are drawn with different appearances,
as real street images and orthophotos are taken at different times.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_geoloc.world.scene import Material

# Vegetation tints (RGB, 0..1) from summer (season 0) to late autumn (season 1).
_SUMMER_SHIFT = np.array([1.0, 1.0, 1.0], dtype=np.float32)
_AUTUMN_SHIFT = {
    Material.GRASS: np.array([1.35, 1.05, 0.70], dtype=np.float32),
    Material.TREE: np.array([1.55, 0.95, 0.55], dtype=np.float32),
    Material.SHRUB: np.array([1.40, 1.00, 0.60], dtype=np.float32),
    Material.FIELD: np.array([1.30, 1.10, 0.80], dtype=np.float32),
}


#: Sun positions (azimuth, elevation) street and UAV appearances are drawn from: shadow rasters are
#: cached per sun position, so a small bank lets every view of a dataset reuse a few of them.
STREET_SUN_BANK = tuple((float(az), float(el)) for az in range(0, 360, 45) for el in (25, 45, 65))


@dataclass(frozen=True)
class Appearance:
    sun_azimuth_deg: float = 150.0  # clockwise from grid north
    sun_elevation_deg: float = 45.0
    season: float = 0.0  # 0 summer .. 1 late autumn
    exposure: float = 1.0
    white_balance: tuple[float, float, float] = (1.0, 1.0, 1.0)
    saturation: float = 1.0
    haze: float = 0.3  # atmospheric extinction scale for distance fade (street views)
    blur_sigma_px: float = 0.0
    noise_sigma: float = 0.0  # in 0..255 units

    @classmethod
    def sample(cls, rng: np.random.Generator, kind: str = "street") -> Appearance:
        """A random capture: street views vary more in exposure and sun than orthophotos."""
        if kind not in ("street", "aerial", "uav"):
            raise ValueError(f"appearance kind must be street, aerial or uav, got {kind!r}")
        aerial = kind == "aerial"
        if aerial:
            sun_az, sun_el = float(rng.uniform(100, 260)), float(rng.uniform(35, 65))
        else:
            sun_az, sun_el = STREET_SUN_BANK[int(rng.integers(len(STREET_SUN_BANK)))]
        return cls(
            sun_azimuth_deg=sun_az,
            sun_elevation_deg=sun_el,
            season=float(rng.uniform(0, 1)),
            exposure=float(np.exp(rng.normal(0, 0.12 if aerial else 0.2))),
            white_balance=tuple(float(v) for v in np.exp(rng.normal(0, 0.05, 3))),  # type: ignore[arg-type]
            saturation=float(rng.uniform(0.7, 1.2)),
            haze=float(rng.uniform(0.1, 0.6)),
            blur_sigma_px=float(rng.uniform(0, 0.8)),
            noise_sigma=float(rng.uniform(0, 4.0)),
        )

    def sun_vector(self) -> np.ndarray:
        """Unit vector towards the sun in (east, north, up)."""
        az, el = np.radians(self.sun_azimuth_deg), np.radians(self.sun_elevation_deg)
        return np.array([np.sin(az) * np.cos(el), np.cos(az) * np.cos(el), np.sin(el)], dtype=np.float32)

    def sky_rgb(self) -> np.ndarray:
        """Sky colour (0..1) near the horizon and at the zenith, bluer when the sun is high."""
        t = np.clip(self.sun_elevation_deg / 60.0, 0.0, 1.0)
        horizon = np.array([0.85, 0.86, 0.88]) * (1 - t) + np.array([0.78, 0.85, 0.95]) * t
        zenith = np.array([0.55, 0.62, 0.78]) * (1 - t) + np.array([0.35, 0.55, 0.90]) * t
        return np.stack([horizon, zenith]).astype(np.float32)


AMBIENT = 0.45  # share of light that reaches surfaces in shadow (sky light)


def seasonal_albedo(albedo: np.ndarray, material: np.ndarray, season: float) -> np.ndarray:
    """Albedo as float32 in 0..1 with vegetation shifted towards autumn colours by ``season``."""
    out = albedo.astype(np.float32) * (1.0 / 255.0)
    if season <= 0:
        return out
    for mat, shift in _AUTUMN_SHIFT.items():
        mask = material == mat
        if np.any(mask):
            tint = _SUMMER_SHIFT * (1 - season) + shift * season
            out[mask] = np.clip(out[mask] * tint, 0.0, 1.0)
    return out


def direct_light(normal_dot_sun: np.ndarray | float, lit: np.ndarray | float = 1.0) -> np.ndarray:
    """Irradiance factor: ambient sky light plus direct sun where lit (0/1 or soft)."""
    return AMBIENT + (1.0 - AMBIENT) * np.clip(normal_dot_sun, 0.0, None) * lit


def camera_effects(image: np.ndarray, app: Appearance, rng: np.random.Generator | None = None) -> np.ndarray:
    """Float RGB (0..1, linear-ish) -> uint8 RGB through exposure, white balance, saturation,
    blur and sensor noise."""
    img = image.astype(np.float32, copy=False) * app.exposure
    img = img * np.asarray(app.white_balance, dtype=np.float32)
    if app.saturation != 1.0:
        grey = img.mean(axis=-1, keepdims=True)
        img = grey + (img - grey) * app.saturation
    if app.blur_sigma_px > 0.05:
        img = cv2.GaussianBlur(img, (0, 0), app.blur_sigma_px)
    img = np.clip(img, 0.0, 1.0) * 255.0
    if app.noise_sigma > 0 and rng is not None:
        img = img + rng.normal(0.0, app.noise_sigma, img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
