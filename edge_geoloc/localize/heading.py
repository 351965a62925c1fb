"""Heading of the street camera relative to north, from a north-aligned cross-view model.

Two estimators, both numpy (device side):

- **Rotation search** (default): a model trained on north-aligned panoramas gives the highest
  street-aerial similarity when the panorama's centre column faces north. Roll the panorama by
  candidate angles, encode each roll, score against the matched tile's descriptor and take the
  best angle, refined by a parabola through the peak and its neighbours. Coarse-to-fine keeps the
  number of encodes small, and a prior (the filter's heading) narrows it further.
- **Angular activation distributions** (WACV 2021's method, adapted to the ViT): the class
  tokens' attention over the panorama's patch columns is a distribution over azimuth; the aerial
  branch's attention sampled in polar coordinates around the query position is another. The shift
  that best aligns them (circular cross-correlation) is the heading. One encode per view, but it
  relies on both branches attending to the same landmarks.

Convention: a panorama's column c looks at azimuth heading + (c + 0.5 - W/2) * 360 / W; rolling it
right by s columns lowers the centre's heading by s * 360 / W.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_geoloc.cameras.street import roll_to_heading
from edge_geoloc.geo.crs import angle_diff_deg, wrap_deg

EncodeFn = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 panoramas -> (N, D) descriptors


@dataclass(frozen=True)
class HeadingEstimate:
    heading_deg: float  # of the panorama's centre column, clockwise from north, [0, 360)
    score: float  # peak similarity (rotation search) or correlation (profiles)
    margin: float  # peak minus the best score more than 45 degrees away: low means ambiguous
    encodes: int = 0


def _parabola_peak(y_prev: float, y0: float, y_next: float) -> float:
    """Offset in (-0.5, 0.5) of the vertex of the parabola through three equally spaced samples."""
    den = y_prev - 2 * y0 + y_next
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (y_prev - y_next) / den, -0.5, 0.5))


def rotation_search(
    panorama: np.ndarray,
    aerial_descriptor: np.ndarray,
    encode: EncodeFn,
    coarse_steps: int = 12,
    fine_steps: int = 4,
    prior_deg: float | None = None,
    prior_window_deg: float = 45.0,
) -> HeadingEstimate:
    """Heading of a panorama's centre column by searching rotations against an aerial descriptor.

    Without a prior: ``coarse_steps`` rotations over the circle, then ``fine_steps`` on each side
    of the best at a finer step, then a parabola. With ``prior_deg``: only ``+-prior_window_deg``.
    """
    a = np.asarray(aerial_descriptor, dtype=np.float32).ravel()

    def scores(angles: np.ndarray) -> np.ndarray:
        batch = np.stack([roll_to_heading(panorama, float(r)) for r in angles])
        d = np.asarray(encode(batch), dtype=np.float32)
        return d @ a

    if prior_deg is None:
        step = 360.0 / coarse_steps
        angles = np.arange(coarse_steps) * step
    else:
        step = 2 * prior_window_deg / max(coarse_steps - 1, 1)
        angles = wrap_deg(-prior_deg + np.linspace(-prior_window_deg, prior_window_deg, coarse_steps))
    s = scores(angles)
    best = float(angles[int(np.argmax(s))])
    fine = step / (fine_steps + 1)
    fine_angles = wrap_deg(best + fine * np.arange(-fine_steps, fine_steps + 1))
    fs = scores(fine_angles)
    i = int(np.argmax(fs))
    peak = float(fine_angles[i])
    if 0 < i < len(fs) - 1:
        peak += _parabola_peak(fs[i - 1], fs[i], fs[i + 1]) * fine
    # Rotating by r makes the centre column look at heading h + r; the model peaks when that is north.
    heading = float(wrap_deg(-peak))
    all_angles = np.concatenate([angles, fine_angles])
    all_scores = np.concatenate([s, fs])
    far = np.abs(angle_diff_deg(all_angles, peak)) > 45
    margin = float(fs[i] - all_scores[far].max()) if np.any(far) else float("nan")
    return HeadingEstimate(heading, float(fs[i]), margin, encodes=len(angles) + len(fine_angles))


def street_azimuth_profile(patch_attention: np.ndarray) -> np.ndarray:
    """(rows, cols) attention over a 360-degree panorama's patch grid -> distribution over columns."""
    p = np.asarray(patch_attention, dtype=np.float64).sum(axis=0)
    return p / max(p.sum(), 1e-12)


def aerial_polar_profile(
    patch_attention: np.ndarray, centre_rc: tuple[float, float], bins: int, radius: float | None = None
) -> np.ndarray:
    """Attention over an aerial patch grid integrated along rays from the query's position.

    ``centre_rc``: the query position in patch-grid units (row, col), north up. Bin b covers the
    azimuth of a panorama column b of ``bins`` with heading 0: (b + 0.5 - bins/2) * 360/bins.
    """
    grid = np.asarray(patch_attention, dtype=np.float64)
    h, w = grid.shape
    radius = radius if radius is not None else 0.75 * max(h, w)
    az = np.radians((np.arange(bins) + 0.5 - bins / 2) * 360.0 / bins)
    r = np.linspace(0.5, radius, 24)
    rows = centre_rc[0] - np.cos(az)[:, None] * r[None, :]
    cols = centre_rc[1] + np.sin(az)[:, None] * r[None, :]
    inside = (rows >= 0) & (rows <= h - 1) & (cols >= 0) & (cols <= w - 1)
    r0 = np.clip(np.floor(rows).astype(int), 0, h - 1)
    c0 = np.clip(np.floor(cols).astype(int), 0, w - 1)
    r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
    fr, fc = np.clip(rows - r0, 0, 1), np.clip(cols - c0, 0, 1)
    v = (
        grid[r0, c0] * (1 - fr) * (1 - fc)
        + grid[r0, c1] * (1 - fr) * fc
        + grid[r1, c0] * fr * (1 - fc)
        + grid[r1, c1] * fr * fc
    )
    p = np.where(inside, v, 0.0).sum(axis=1)
    return p / max(p.sum(), 1e-12)


def align_profiles(street: np.ndarray, aerial: np.ndarray) -> HeadingEstimate:
    """The heading phi maximizing the circular correlation of p_aerial(theta + phi) with p_street(theta)."""
    s = np.asarray(street, dtype=np.float64)
    a = np.asarray(aerial, dtype=np.float64)
    if s.shape != a.shape:
        raise ValueError(f"profiles must have the same number of bins, got {s.shape} and {a.shape}")
    n = len(s)
    s0, a0 = s - s.mean(), a - a.mean()
    # corr[k] = sum_t s(t) a(t + k): a street column t sees azimuth heading + az(t), the aerial bin t + k.
    corr = np.real(np.fft.ifft(np.conj(np.fft.fft(s0)) * np.fft.fft(a0)))
    corr /= max(np.linalg.norm(s0) * np.linalg.norm(a0), 1e-12)
    k = int(np.argmax(corr))
    frac = _parabola_peak(corr[(k - 1) % n], corr[k], corr[(k + 1) % n])
    heading = float(wrap_deg((k + frac) * 360.0 / n))
    far = np.abs(angle_diff_deg(np.arange(n) * 360.0 / n, heading)) > 45
    margin = float(corr[k] - corr[far].max()) if np.any(far) else float("nan")
    return HeadingEstimate(heading, float(corr[k]), margin, encodes=0)
