"""Registration of a north-up ground image against a window of the map's imagery: metres and degrees.

Retrieval says "somewhere in these tiles"; registration says where exactly. The ground image is the
frame projected to the ground plane at the map imagery's GSD, north-up for an assumed heading: a UAV's
rectified patch (:mod:`edge_geoloc.cameras.rectify`) or a panorama's bird's-eye view
(:mod:`edge_geoloc.cameras.bev`). One module, two projections: the same :func:`register` serves both.

The map window is centred where the ground image's centre is assumed to be; the ground image is slid
over it (translation) for a few assumed-heading corrections (rotations about its centre), and the place
and rotation where it fits best are the correction. Both images are first turned into a photometrically
robust representation (:func:`edge_field`): the gradient's *orientation* (doubled angle, so a dark road
on light grass and a light road on dark snow agree), weighted by the gradient's magnitude normalized by
its neighbourhood (a sunny and an overcast capture of the same kerb weigh the same). Masked pixels (a
BEV outside its radius, a patch outside the frame) and the artificial edge at the mask's border do not
take part.

Two methods:

- ``dense``: masked normalized cross-correlation of the edge fields by FFT (``cv2.matchTemplate``,
  ``TM_CCOEFF_NORMED`` with a mask), one per rotation; sub-pixel peak by parabolas; the rotation refined
  by a parabola through the best rotation's neighbours. The quality is the peak NCC. The covariance is
  the second moment of ``exp((s - s_peak) / tau)`` over the score map (``tau`` a fixed fraction of the
  peak's height above the map's median): a crossing gives a compact peak, a long straight road a ridge
  along the road, i.e. a covariance elongated along the road (only the cross-track axis is measured),
  and the filter is told exactly that.
- ``features``: SIFT keypoints (AKAZE is not in OpenCV 5's main module) on contrast-equalized grey images, ratio-tested matches, and a RANSAC
  similarity (``cv2.estimateAffinePartial2D``); a scale far from 1 (the GSD is known) is a failure.
  The quality is the inlier count; the covariance is the inliers' residual spread over their number.

What a registration cannot see: anything the ground projection gets wrong (a camera height that is
off scales a BEV; unmodelled pitch/roll tilts it; parked cars and walls smear outward as if painted),
and any axis along which the scene repeats (a straight road, a row of identical houses).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import cv2
import numpy as np

METHODS = ("dense", "features")


@dataclass(frozen=True)
class Registration:
    """Where the ground image fits the map window.

    ``east_m``/``north_m``: how far the camera (the pivot) really is from where it was assumed;
    ``rotation_deg``: the heading correction (true heading = assumed + this, clockwise). ``cov``: (2, 2)
    covariance of the offset, m^2. ``quality``: the method's score (peak NCC for dense, inlier count for
    features); compare it against a threshold calibrated for the method, never across methods."""

    east_m: float
    north_m: float
    rotation_deg: float
    quality: float
    cov: np.ndarray = field(repr=False)
    method: str
    note: str | None = None  # why it failed (featureless, no consistent matches, ...)

    @property
    def axes_m(self) -> tuple[float, float]:
        """1-sigma semi-axes (major, minor) of the offset's covariance ellipse."""
        ev = np.linalg.eigvalsh(self.cov)
        return math.sqrt(max(float(ev[1]), 0.0)), math.sqrt(max(float(ev[0]), 0.0))


def compose(first: Registration, second: Registration) -> Registration:
    """``second`` found after projecting the frame again with ``first``'s correction applied (heading) and the
    window moved by it (place): the corrections add up; the quality is the second's. The covariance is the
    wider of the two: the second pass searches a small window, which cannot show how far a ridge along a
    straight road runs; the first, wide search saw it.

    Why twice: a tilted camera's ground image for a heading 15 degrees off is not that image rotated by 15
    degrees (the look point and the footprint move with it), so one registration leaves about a degree
    and a metre that a second, from the corrected heading, removes."""
    cov = first.cov if np.trace(first.cov) >= np.trace(second.cov) else second.cov
    return Registration(
        first.east_m + second.east_m,
        first.north_m + second.north_m,
        first.rotation_deg + second.rotation_deg,
        second.quality,
        cov,
        second.method,
        second.note,
    )


def _failed(method: str, half_m: float, note: str) -> Registration:
    return Registration(0.0, 0.0, 0.0, 0.0, np.eye(2) * half_m**2, method, note)


def _grey(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.ndim == 3:
        a = a.astype(np.float32).mean(axis=2)
    return a.astype(np.float32)


def _valid(mask: np.ndarray | None, shape: tuple[int, int], erode_px: int) -> np.ndarray:
    """uint8 mask (255 valid), eroded so that the artificial edge at its border is left out."""
    m = np.full(shape, 255, np.uint8) if mask is None else np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
    if m.shape != shape:
        raise ValueError(f"mask of shape {m.shape} for an image of {shape}")
    if erode_px > 0:
        m = cv2.erode(m, np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8), borderType=cv2.BORDER_CONSTANT)
    return m


def edge_field(
    img: np.ndarray, mask: np.ndarray | None = None, smooth_px: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """The robust representation (see the module docstring): (H, W, 2) float32 doubled-angle gradient
    orientation weighted by locally normalized magnitude, and the valid mask (uint8) it may be used in."""
    g = _grey(img)
    valid = _valid(mask, g.shape, 0)
    if mask is not None:  # fill masked pixels with the valid mean: no step at the mask's border
        inside = valid > 0
        g = np.where(inside, g, float(g[inside].mean()) if inside.any() else 0.0).astype(np.float32)
    if smooth_px > 0:
        g = cv2.GaussianBlur(g, (0, 0), smooth_px)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    mag2 = gx * gx + gy * gy
    local = cv2.GaussianBlur(mag2, (0, 0), 4.0)
    norm = 1.0 / (local + 0.25 * float(mag2.mean()) + 1e-6)
    # (gx + i gy)^2 / |.| = |g| (cos 2a + i sin 2a): doubled angle, polarity-free.
    field_ = np.stack([(gx * gx - gy * gy) * norm, 2.0 * gx * gy * norm], axis=-1).astype(np.float32)
    return field_, _valid(mask, g.shape, 2)


def _rotate(img: np.ndarray, mask: np.ndarray, rotation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Turn a north-up image clockwise by ``rotation_deg`` about its centre (OpenCV's angle is counter-clockwise)."""
    if rotation_deg == 0.0:
        return img, mask
    h, w = mask.shape
    m = cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), -rotation_deg, 1.0)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    out_mask = cv2.warpAffine(mask, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT)
    return out, out_mask


def _parabola(a: float, b: float, c: float) -> float:
    """Vertex of the parabola through (-1, a), (0, b), (1, c), clipped to [-0.5, 0.5]."""
    den = a - 2.0 * b + c
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5)) if den < 0 else 0.0


def _clockwise(v: np.ndarray, rotation_deg: float) -> np.ndarray:
    r = math.radians(rotation_deg)
    c, s = math.cos(r), math.sin(r)
    return np.array([v[0] * c + v[1] * s, -v[0] * s + v[1] * c])


def _check(ground: np.ndarray, window: np.ndarray, gsd_m: float, window_gsd_m: float) -> None:
    if ground.size == 0 or window.size == 0:
        raise ValueError(f"registration needs non-empty images, got ground {ground.shape} and window {window.shape}")
    if not (gsd_m > 0 and window_gsd_m > 0):
        raise ValueError(f"GSDs must be positive, got ground {gsd_m} and window {window_gsd_m} m/px")
    if abs(gsd_m / window_gsd_m - 1.0) > 0.01:
        raise ValueError(
            f"ground image at {gsd_m:g} m/px against a map window at {window_gsd_m:g} m/px: project the frame"
            " at the map imagery's GSD"
        )
    if window.shape[0] < ground.shape[0] or window.shape[1] < ground.shape[1]:
        raise ValueError(
            f"map window {window.shape[1]}x{window.shape[0]} px is smaller than the ground image"
            f" {ground.shape[1]}x{ground.shape[0]} px"
        )


@dataclass(frozen=True)
class RegistrationConfig:
    """How :func:`register` searches: the method, the rotations tried and the dense method's knobs."""

    method: str = "dense"
    rotation_range_deg: float = 6.0  # corrections tried: -range..+range ...
    rotation_step_deg: float = 2.0  # ... this far apart (0 range: translation only)
    min_texture: float = 0.02  # valid share of the ground image with a clear edge; below: featureless
    coarse_factor: int = 2  # dense: the wide search runs on images shrunk by this (1: full resolution only)
    min_inliers: int = 6  # features: fewer consistent matches is a failure
    max_scale_error: float = 0.1  # features: |scale - 1| beyond this is a failure (the GSD is known)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"registration method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.rotation_range_deg < 0 or (self.rotation_range_deg > 0 and not self.rotation_step_deg > 0):
            raise ValueError(
                f"rotation range {self.rotation_range_deg} / step {self.rotation_step_deg}: need range >= 0, step > 0"
            )

    def rotations(self) -> np.ndarray:
        if self.rotation_range_deg == 0:
            return np.zeros(1)
        n = math.floor(self.rotation_range_deg / self.rotation_step_deg + 1e-9)
        return np.arange(-n, n + 1) * self.rotation_step_deg


class _Pair(NamedTuple):
    """What one registration reads: the ground image, the map window, the GSD, their masks and the pivot."""

    ground: np.ndarray
    window: np.ndarray
    gsd: float
    ground_mask: np.ndarray | None
    window_mask: np.ndarray | None
    pivot: np.ndarray


def register(
    ground: np.ndarray,
    window: np.ndarray,
    gsd_m: float,
    window_gsd_m: float,
    ground_mask: np.ndarray | None = None,
    window_mask: np.ndarray | None = None,
    pivot_m: tuple[float, float] = (0.0, 0.0),
    config: RegistrationConfig | None = None,
) -> Registration:
    """Register ``ground`` (north-up at ``gsd_m``) inside ``window`` (north-up at ``window_gsd_m``, centred where
    the ground image's centre is assumed to be). ``pivot_m``: the camera's east/north offset from the ground
    image's centre (0 for a BEV; the nadir's offset from a UAV patch's look point): rotations turn about the
    image centre, and the camera's offset is corrected for it. See :class:`Registration` for the result."""
    cfg = config or RegistrationConfig()
    ground, window = np.asarray(ground), np.asarray(window)
    _check(ground, window, gsd_m, window_gsd_m)
    pair = _Pair(ground, window, gsd_m, ground_mask, window_mask, np.asarray(pivot_m, float))
    return (_register_features if cfg.method == "features" else _register_dense)(pair, cfg)


def _dense_maps(
    tf: np.ndarray, tm: np.ndarray, wf: np.ndarray, rotations: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray]:
    """Masked normalized cross-correlation maps of the (rotated) ground field over the window field, and
    their peaks: ``<T m, W> / (|T m| sqrt(<m, |W|^2>))`` (the fields are zero-mean by construction, so no
    mean is taken out), two plain correlations by FFT (``cv2.matchTemplate`` ``TM_CCORR``) per rotation."""
    energy = np.ascontiguousarray((wf * wf).sum(axis=-1))
    maps = []
    for rot in rotations:
        f, m = _rotate(tf, tm, float(rot))
        tmask = (m > 0).astype(np.float32)
        t = f * tmask[..., None]
        norm = float(np.sqrt((t * t).sum()))
        if norm < 1e-9:
            maps.append(np.full((1, 1), -1.0, np.float32))
            continue
        num = cv2.matchTemplate(wf, t, cv2.TM_CCORR)
        den = cv2.matchTemplate(energy, tmask, cv2.TM_CCORR)
        maps.append(num / (norm * np.sqrt(np.maximum(den, 0.0)) + 1e-6 * norm))
    return maps, np.array([float(s.max()) for s in maps])


def _fields(img: np.ndarray, mask: np.ndarray | None, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """The edge field of ``img`` shrunk by ``factor`` (the coarse level of the search)."""
    if factor == 1:
        return edge_field(img, mask)
    h, w = img.shape[:2]
    size = (max(1, w // factor), max(1, h // factor))
    small = cv2.resize(np.asarray(img, np.float32), size, interpolation=cv2.INTER_AREA)
    small_mask = None if mask is None else cv2.resize(np.asarray(mask, np.uint8), size, interpolation=cv2.INTER_NEAREST)
    return edge_field(small, small_mask, smooth_px=0.7)


def _register_dense(p: _Pair, cfg: RegistrationConfig) -> Registration:
    """Coarse to fine: every rotation over the whole window at ``coarse_factor`` (when the search is wide),
    then the best rotation and its neighbours at full resolution in a few pixels around the coarse peak."""
    ground, window, gsd, ground_mask, window_mask, pivot = p
    half_m = window.shape[0] * gsd / 2.0
    tf, tm = edge_field(ground, ground_mask)
    energy = np.hypot(tf[..., 0], tf[..., 1])[tm > 0]
    if energy.size == 0 or float(np.mean(energy > 0.5)) < cfg.min_texture:
        return _failed("dense", half_m, "featureless: the ground image shows no edges to register")
    wf, wm = edge_field(window, window_mask)
    wf[wm == 0] = 0.0
    rotations = cfg.rotations()
    reach = (np.array(window.shape[:2]) - np.array(ground.shape[:2])) // 2  # search radius, px (rows, cols)
    f = cfg.coarse_factor
    if f > 1 and reach.min() >= 4 * f:
        ctf, ctm = _fields(ground, ground_mask, f)
        cwf, cwm = _fields(window, window_mask, f)
        cwf[cwm == 0] = 0.0
        cmaps, cpeaks = _dense_maps(ctf, ctm, cwf, rotations)
        k = int(np.argmax(cpeaks))
        cs = cmaps[k]
        py, px = np.unravel_index(int(np.argmax(cs)), cs.shape)
        wide = (cs, (float(py), float(px)), gsd * f)  # the whole search area: the covariance is read here
        centre = np.array([(cs.shape[0] - 1) / 2.0, (cs.shape[1] - 1) / 2.0])
        at = np.round((np.array([py, px]) - centre) * f).astype(int)  # full-resolution offset from the centre
        r = 2 * f
        lo = np.clip(at - r, -reach, reach) + reach
        hi = np.clip(at + r, -reach, reach) + reach
        wf = wf[lo[0] : hi[0] + ground.shape[0], lo[1] : hi[1] + ground.shape[1]]
        step = cfg.rotation_step_deg / 2.0  # the fine pass halves the rotation step around the coarse best
        rotations = rotations[k] + np.array([-step, 0.0, step]) if len(rotations) > 1 else rotations
        origin = lo - reach  # offset of the cropped score map's (0, 0) from the window's centre
    else:
        origin, wide = -reach, None
    maps, peaks = _dense_maps(tf, tm, wf, rotations)
    k = int(np.argmax(peaks))
    for _ in range(2 if wide is not None and len(rotations) == 3 else 0):  # the best at an end: one step further
        if k not in (0, len(rotations) - 1):
            break
        more = rotations[k] + (rotations[1] - rotations[0]) * (1 if k else -1)
        m2, p2 = _dense_maps(tf, tm, wf, np.array([more]))
        rotations, maps, peaks = (
            (np.append(rotations, more), maps + m2, np.append(peaks, p2))
            if k
            else (np.insert(rotations, 0, more), m2 + maps, np.insert(peaks, 0, p2))
        )
        k = int(np.argmax(peaks))
    rot = float(rotations[k])
    if 0 < k < len(rotations) - 1:
        rot += _parabola(peaks[k - 1], peaks[k], peaks[k + 1]) * float(rotations[k + 1] - rotations[k])
    s = maps[k]
    py, px = np.unravel_index(int(np.argmax(s)), s.shape)
    dx = _parabola(s[py, px - 1], s[py, px], s[py, px + 1]) if 0 < px < s.shape[1] - 1 else 0.0
    dy = _parabola(s[py - 1, px], s[py, px], s[py + 1, px]) if 0 < py < s.shape[0] - 1 else 0.0
    # window sizes of odd parity against the ground image put the centre half a pixel off: exact here
    half_px = (np.array(window.shape[:2]) - np.array(ground.shape[:2])) / 2.0 - reach
    oy, ox = origin - half_px
    t = np.array([(px + dx + ox) * gsd, -(py + dy + oy) * gsd])
    cov = _peak_cov(*wide, gsd) if wide is not None else _peak_cov(s, (py + dy, px + dx), gsd, gsd)
    offset = t + _clockwise(pivot, rot) - pivot
    return Registration(float(offset[0]), float(offset[1]), rot, float(peaks[k]), cov, "dense")


def _peak_cov(s: np.ndarray, peak_yx: tuple[float, float], map_gsd: float, gsd: float) -> np.ndarray:
    """Covariance (m^2, east/north) of the score map's peak: the second moment, about the peak, of the
    score above half the peak's height over the map's median. A compact peak gives about a pixel; a ridge
    (a straight road) spreads along itself; a second peak as high as the first (a repeated pattern)
    spreads between them: the filter is told what the map window could not decide."""
    peak, med = float(s.max()), float(np.median(s))
    w = np.maximum(s.astype(np.float64) - (peak + med) / 2.0, 0.0)
    w /= max(float(w.sum()), 1e-12)
    yy, xx = np.mgrid[: s.shape[0], : s.shape[1]]
    de = (xx - peak_yx[1]) * map_gsd
    dn = -(yy - peak_yx[0]) * map_gsd
    ee, en, nn = float((w * de * de).sum()), float((w * de * dn).sum()), float((w * dn * dn).sum())
    return np.array([[ee, en], [en, nn]]) + np.eye(2) * (0.5 * gsd) ** 2  # a pixel's quantization at least


def _clahe(img: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    g = _grey(img)
    if mask is not None:
        inside = np.asarray(mask) > 0
        g = np.where(inside, g, float(g[inside].mean()) if inside.any() else 0.0)
    g8 = np.clip(g, 0, 255).astype(np.uint8)
    return cv2.createCLAHE(clipLimit=3.0, tileGridSize=(4, 4)).apply(g8)


def _register_features(p: _Pair, cfg: RegistrationConfig) -> Registration:
    """SIFT matches, ratio-tested, and a RANSAC similarity whose scale must be near 1 (the GSD is known)."""
    ground, window, gsd, ground_mask, window_mask, pivot = p
    half_m = window.shape[0] * gsd / 2.0
    sift = cv2.SIFT_create(contrastThreshold=0.02)
    tm = _valid(ground_mask, ground.shape[:2], 3)
    wm = _valid(window_mask, window.shape[:2], 3)
    kt, dt = sift.detectAndCompute(_clahe(ground, ground_mask), tm)
    kw, dw = sift.detectAndCompute(_clahe(window, window_mask), wm)
    if dt is None or dw is None or len(kt) < cfg.min_inliers or len(kw) < cfg.min_inliers:
        return _failed("features", half_m, "featureless: too few keypoints")
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(dt, dw, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.85 * p[1].distance]
    if len(good) < cfg.min_inliers:
        return _failed("features", half_m, f"{len(good)} distinctive matches")
    src = np.float32([kt[m.queryIdx].pt for m in good])
    dst = np.float32([kw[m.trainIdx].pt for m in good])
    a, inl = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=2.0, maxIters=2000)
    n_in = 0 if inl is None else int(inl.sum())
    if a is None or n_in < cfg.min_inliers:
        return _failed("features", half_m, f"{n_in} consistent matches")
    scale = math.hypot(a[0, 0], a[1, 0])
    rot = math.degrees(math.atan2(a[1, 0], a[0, 0]))  # image y is down: positive turns clockwise, as the compass
    if abs(scale - 1.0) > cfg.max_scale_error or abs(rot) > cfg.rotation_range_deg + cfg.rotation_step_deg:
        return _failed("features", half_m, f"implausible similarity (scale {scale:.2f}, rotation {rot:.1f} deg)")
    h, w = ground.shape[:2]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    lands = a[:, :2] @ centre + a[:, 2]
    wc = np.array([(window.shape[1] - 1) / 2.0, (window.shape[0] - 1) / 2.0])
    t = np.array([(lands[0] - wc[0]) * gsd, -(lands[1] - wc[1]) * gsd])
    ok = inl.ravel() > 0
    resid = (src[ok] @ a[:, :2].T + a[:, 2]) - dst[ok]
    var = max(float(np.mean(resid**2)), 0.25) * gsd**2  # per axis, at least half a pixel
    cov = np.eye(2) * max(var * 2.0 / n_in, (0.5 * gsd) ** 2)  # no sharper than the imagery's pixel
    offset = t + _clockwise(pivot, rot) - pivot
    return Registration(float(offset[0]), float(offset[1]), rot, float(n_in), cov, "features")
