"""From a scoped search's top-k tiles to a position likelihood, and from a few rolls to a heading.

Position: each candidate tile gives a place (its centre, plus the offset head's east/north offset
when the export has one) and a weight ``softmax(similarity / T)`` among the top-k (the same
similarity weighting as :func:`edge_geoloc.evaluate.fuse`, kept as a mixture instead of averaged:
the filter weighs its particles by the mixture, so the prior decides between distant candidates).
The spread of each component is about the tile stride (the tile says "somewhere around here").

Heading: the panorama rolled to the filter's heading and by +-delta, each scored against the
matched tile's descriptor; a parabola through the three gives the heading correction (the same
parabola as :func:`edge_geoloc.localize.heading.rotation_search`, here on a three-point window that
reuses the retrieval's own encode, so a heading costs two extra encodes per frame, not twenty).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_geoloc.geo.crs import wrap_deg


@dataclass(frozen=True)
class Candidates:
    """Candidate places of one frame: a mixture for the filter."""

    east: np.ndarray
    north: np.ndarray
    weights: np.ndarray  # sum to 1
    scores: np.ndarray
    ids: np.ndarray
    sigma_m: float  # spread of each component

    @property
    def centres(self) -> np.ndarray:
        return np.stack([self.east, self.north], axis=1)

    def fused(self) -> tuple[float, float]:
        """The similarity-weighted mean (what a single-position consumer would use)."""
        return float(self.weights @ self.east), float(self.weights @ self.north)


def softmax_weights(scores: np.ndarray, temperature: float) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = (s - s.max()) / temperature
    w = np.exp(z)
    return w / w.sum()


def candidates(
    ids: np.ndarray,
    scores: np.ndarray,
    east: np.ndarray,
    north: np.ndarray,
    temperature: float,
    sigma_m: float,
    offsets_en: np.ndarray | None = None,
    max_offset_m: float | None = None,
) -> Candidates:
    """The mixture of a search result; ``offsets_en`` (k, 2) grid metres from each tile centre (offset head)."""
    e = np.asarray(east, dtype=np.float64).copy()
    n = np.asarray(north, dtype=np.float64).copy()
    if offsets_en is not None:
        off = np.asarray(offsets_en, dtype=np.float64).reshape(len(e), 2)
        if max_offset_m is not None:
            off = np.clip(off, -max_offset_m, max_offset_m)  # the camera stands inside its tile
        e += off[:, 0]
        n += off[:, 1]
    return Candidates(e, n, softmax_weights(scores, temperature), np.asarray(scores), np.asarray(ids), float(sigma_m))


@dataclass(frozen=True)
class HeadingFix:
    heading_deg: float  # camera heading, clockwise from true north
    curvature: float  # how sharply the score peaks (score units per delta^2): low means flat, untrustworthy
    offset: float  # vertex position in units of delta, in [-1, 1]


def heading_from_rolls(assumed_deg: float, delta_deg: float, scores: np.ndarray) -> HeadingFix | None:
    """Camera heading from the scores of views rolled for assumed headings ``assumed - delta, assumed, assumed + delta``.

    A view rolled for an assumed camera heading ``a`` is north-aligned when ``a`` is the true
    heading, which is when the tile's similarity peaks. None when the scores do not peak inside
    the window (monotone or flat): the true heading is further off, and a wider search is needed.
    """
    s_minus, s0, s_plus = (float(v) for v in scores)
    den = s_minus - 2 * s0 + s_plus
    if not den < 0:
        return None
    # Vertex of the parabola through (-1, s-), (0, s0), (1, s+); beyond the window it is only a direction.
    frac = float(np.clip(0.5 * (s_minus - s_plus) / den, -1.0, 1.0))
    return HeadingFix(float(wrap_deg(assumed_deg + frac * delta_deg)), -den, frac)


class HeadingCheck:
    """Whether the model's rotation scores measure the heading, or only echo the heading they were given.

    Each heading measurement is made around the filter's heading plus a random dither ``u``. A model
    that sees the heading returns the truth whatever ``u`` was; one that does not (rotation-invariant,
    or too weak) returns about the assumed heading, i.e. the filter's plus ``u``. While the filter's
    heading is known from elsewhere (GPS course: ``check_below_deg``), the innovation (measurement
    minus filter) is regressed on ``u``: slope near 0 means the measurements are real (their residual
    spread becomes their sigma); near 1, an echo: vision headings are not used (and sweeps, which
    rely on the same ability, are not done). Before ``min_samples`` it is unknown and trusted.
    """

    def __init__(self, min_samples: int = 20, keep: int = 200, max_slope: float = 0.5) -> None:
        self.min_samples, self.keep, self.max_slope = min_samples, keep, max_slope
        self.u: list[float] = []
        self.innovation: list[float] = []

    def add(self, dither_deg: float, innovation_deg: float) -> None:
        self.u.append(float(dither_deg))
        self.innovation.append(float(innovation_deg))
        if len(self.u) > self.keep:
            del self.u[0], self.innovation[0]

    def fit(self) -> tuple[float, float] | None:
        """(slope, residual sigma in degrees), or None with too few samples."""
        if len(self.u) < self.min_samples:
            return None
        u, y = np.asarray(self.u), np.asarray(self.innovation)
        var = float(np.var(u))
        slope = float(np.cov(u, y, bias=True)[0, 1] / var) if var > 0 else 1.0
        resid = float(np.std(y - slope * u))
        return slope, resid

    @property
    def usable(self) -> bool | None:
        f = self.fit()
        return None if f is None else f[0] <= self.max_slope

    def sigma(self, default: float) -> float:
        f = self.fit()
        return default if f is None else max(default, f[1])

    def summary(self) -> dict:
        f = self.fit()
        out: dict = {"samples": len(self.u), "usable": self.usable}
        if f is not None:
            out.update(slope=round(f[0], 3), residual_deg=round(f[1], 2))
        return out


class VisionCheck:
    """The candidate mixture's temperature, spread and outlier weight, fitted to the truth while GPS pins
    the filter.

    How sharply similarities separate the right tile from its neighbours (the softmax temperature
    ``T``), how far a candidate's place lies from the camera (the spread ``sigma``) and how often the
    top-k miss the place altogether (the outlier weight ``eps``) depend on the model and the place: a
    well-trained model's top tile sits a few metres from the camera, a weak one's tens. While the
    filter's sigma is small (GPS), each frame's candidates (scores, squared distances from the filter's
    position) and searched area are kept; (T, sigma, eps) is then the maximum-likelihood triple, on a
    grid, of the very likelihood the filter uses: ``eps / area + (1 - eps) * sum_k w_k(T) N(d_k; sigma)``.
    Before ``min_samples`` frames the configured values are used.
    """

    TEMPERATURES = (0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5)
    OUTLIERS = (0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 0.95)  # up to a model that is nearly blind here

    def __init__(self, lo: float, hi: float, min_samples: int = 20, keep: int = 400, refit_every: int = 20) -> None:
        self.sigmas = np.geomspace(lo, hi, 12)
        self.min_samples, self.keep, self.refit_every = min_samples, keep, refit_every
        self.scores: list[np.ndarray] = []
        self.d2: list[np.ndarray] = []
        self.area: list[float] = []
        self._fit: tuple[float, float, float] | None = None
        self._added = 0

    def add(
        self, scores: np.ndarray, east: np.ndarray, north: np.ndarray, truth_en: tuple[float, float], area_m2: float
    ) -> None:
        """One frame's candidates (their places, as given to the filter) and where the camera really was."""
        self.scores.append(np.asarray(scores, dtype=np.float64))
        self.d2.append((np.asarray(east) - truth_en[0]) ** 2 + (np.asarray(north) - truth_en[1]) ** 2)
        self.area.append(float(area_m2))
        if len(self.scores) > self.keep:
            del self.scores[0], self.d2[0], self.area[0]
        self._added += 1
        if len(self.scores) >= self.min_samples and (self._fit is None or self._added % self.refit_every == 0):
            self._fit = self._ml()

    def _ml(self) -> tuple[float, float, float]:
        k = min(len(s) for s in self.scores)
        scores = np.stack([s[:k] for s in self.scores])  # (F, k), best first
        d2 = np.stack([d[:k] for d in self.d2])
        area = np.asarray(self.area)[:, None]
        eps = np.asarray(self.OUTLIERS)[None, :]
        best, arg = -np.inf, (0.03, float(self.sigmas[0]), 0.3)
        for t in self.TEMPERATURES:
            z = (scores - scores[:, :1]) / t
            w = np.exp(z)
            w /= w.sum(axis=1, keepdims=True)
            for sig in self.sigmas:
                dens = np.sum(w * np.exp(-0.5 * d2 / sig**2), axis=1, keepdims=True) / (2 * np.pi * sig**2)
                ll = np.log(eps / area + (1 - eps) * dens).sum(axis=0)  # one per outlier weight
                j = int(np.argmax(ll))
                if ll[j] > best:
                    best, arg = float(ll[j]), (t, float(sig), float(self.OUTLIERS[j]))
        return arg

    @property
    def fitted(self) -> bool:
        return self._fit is not None

    def temperature(self, default: float) -> float:
        return default if self._fit is None else self._fit[0]

    def sigma(self, default: float) -> float:
        return default if self._fit is None else self._fit[1]

    def outlier(self, default: float) -> float:
        return default if self._fit is None else self._fit[2]

    def summary(self, temperature: float, sigma: float, outlier: float) -> dict:
        return {
            "samples": len(self.scores),
            "fitted": self._fit is not None,
            "temperature": self.temperature(temperature),
            "sigma_m": round(self.sigma(sigma), 2),
            "outlier": self.outlier(outlier),
        }


class SeparationCheck:
    """How far a frame's top score must stand above the map's score distribution to be worth a fix.

    A frame the map cannot explain (pedestrians, a wall, the inside of a car) still has a best tile: its
    top score merely sits where the highest of many chance scores sits. The separation of a frame is
    ``(top - mean) / std`` of the query's scores against a fixed random sample of the map's tiles (a few
    hundred dot products). While GPS pins the filter, each frame's separation is kept with whether its
    top tile lay within a tile side of the truth; the calibrated margin is the ``quantile`` of the
    separations of those right frames (default 0: the lowest separation at which the model was ever right):
    a frame below it looks only like the frames that were wrong, and its mixture is uninformative. Before ``min_samples`` pinned frames there is no margin (None); with fewer
    than ``min_right`` right frames among them the model never found this place and the margin is
    infinite (no frame passes)."""

    def __init__(self, quantile: float = 0.0, min_samples: int = 20, min_right: int = 5, keep: int = 400) -> None:
        self.quantile, self.min_samples, self.min_right, self.keep = quantile, min_samples, min_right, keep
        self.separation: list[float] = []
        self.right: list[bool] = []

    def add(self, separation: float, right: bool) -> None:
        if not np.isfinite(separation):
            return
        self.separation.append(float(separation))
        self.right.append(bool(right))
        if len(self.separation) > self.keep:
            del self.separation[0], self.right[0]

    def margin(self) -> float | None:
        if len(self.separation) < self.min_samples:
            return None
        right = np.asarray(self.separation)[np.asarray(self.right)]
        if len(right) < self.min_right:
            return float("inf")
        return float(np.quantile(right, self.quantile))

    def summary(self) -> dict:
        m = self.margin()
        return {
            "samples": len(self.separation),
            "right": int(sum(self.right)),
            "margin": None if m is None or not np.isfinite(m) else round(m, 2),
            "never_right": m is not None and not np.isfinite(m),
        }


class RegistrationCheck:
    """Which registration qualities can be trusted, how wide their covariance really is and how good their
    heading is: learnt while GPS pins the filter, as :class:`VisionCheck` learns the mixture.

    Each pinned registration is kept with whether it was right: its place inside the 99 % ellipse of its
    own covariance plus the filter's (so a registration along a straight road, which claims only the
    cross-track axis, is right when it is right across). The threshold is the lowest quality above which at
    least ``precision`` of the kept registrations were right (None before ``min_samples``; infinite when
    fewer than ``min_right`` were ever right: registration does not work here). The covariance scale makes
    the right ones' median squared Mahalanobis distance that of a 2-D Gaussian (1.386); the heading sigma is
    the right ones' residual against the filter's (GPS course) heading."""

    CHI2_99 = 9.21
    CHI2_MEDIAN = 1.386

    def __init__(self, min_samples: int = 20, precision: float = 0.9, min_right: int = 5, keep: int = 400) -> None:
        self.min_samples, self.precision, self.min_right, self.keep = min_samples, precision, min_right, keep
        self.quality: list[float] = []
        self.d2: list[float] = []
        self.heading_err: list[float] = []

    def add(
        self,
        quality: float,
        place: tuple[float, float],
        cov: np.ndarray,
        truth: tuple[float, float],
        truth_cov: np.ndarray,
        heading_deg: float,
        truth_heading_deg: float,
    ) -> None:
        """One registration (place, covariance, heading) against the GPS-pinned filter's (the truth's stand-in)."""
        d = np.array([place[0] - truth[0], place[1] - truth[1]])
        s = np.asarray(cov, np.float64) + np.asarray(truth_cov, np.float64) + np.eye(2) * 0.25
        self.quality.append(float(quality))
        self.d2.append(float(d @ np.linalg.solve(s, d)))
        self.heading_err.append(float(wrap_deg(heading_deg - truth_heading_deg + 180.0) - 180.0))
        if len(self.quality) > self.keep:
            del self.quality[0], self.d2[0], self.heading_err[0]

    def _right(self) -> np.ndarray:
        return np.asarray(self.d2) <= self.CHI2_99

    def threshold(self) -> float | None:
        if len(self.quality) < self.min_samples:
            return None
        q, right = np.asarray(self.quality), self._right()
        if right.sum() < self.min_right:
            return float("inf")
        order = np.argsort(-q, kind="stable")
        share = np.cumsum(right[order]) / np.arange(1, len(q) + 1)  # share right among the best i+1
        ok = np.nonzero(share >= self.precision)[0]
        return float(q[order[ok[-1]]]) if len(ok) else float("inf")

    def cov_scale(self) -> float:
        right = np.asarray(self.d2)[self._right()] if self.d2 else np.zeros(0)
        if len(right) < self.min_right:
            return 1.0
        return float(np.clip(np.median(right) / self.CHI2_MEDIAN, 1.0, 25.0))

    def heading_sigma(self, default: float) -> float:
        err = np.asarray(self.heading_err)[self._right()] if self.heading_err else np.zeros(0)
        return default if len(err) < self.min_right else max(default, float(np.sqrt(np.mean(err**2))))

    def summary(self) -> dict:
        t = self.threshold()
        return {
            "samples": len(self.quality),
            "right": int(self._right().sum()) if self.d2 else 0,
            "threshold": None if t is None or not np.isfinite(t) else round(t, 3),
            "never_right": t is not None and not np.isfinite(t),
            "cov_scale": round(self.cov_scale(), 2),
            "heading_sigma_deg": round(self.heading_sigma(0.0), 2),
        }
