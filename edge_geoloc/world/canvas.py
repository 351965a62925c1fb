"""Drawing surfaces of the layout generator: the world rasters being painted and a coarse plan.

:class:`Canvas` paints three rasters at the region's resolution: a *palette id* per pixel, the
top-surface height, and a texture multiplier. Material, object id and base colour all derive
from the palette entry at the end, so the three world rasters can never disagree. :class:`Plan`
is a fixed 0.5 m occupancy grid the generators use to decide where things fit; it does not
depend on the output resolution, so the same region gives the same layout at any resolution.

Coordinates are local metres: x east of the raster's west edge, y north of its south edge.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_geoloc.world.scene import Material

SHIFT = 3  # sub-pixel bits for cv2 drawing
_ONE = 1 << SHIFT
TEX_ONE = 128  # texture multiplier 1.0


def vary(rng: np.random.Generator, rgb, sigma: float = 0.08, bright: float = 0.0) -> tuple[int, int, int]:
    """A colour jittered per channel (log-normal) and in brightness, as uint8 RGB.

    The per-channel (hue) jitter shrinks for unsaturated colours: a grey roof may come out
    lighter or darker, but not pink."""
    c = np.asarray(rgb, float)
    sat = (c.max() - c.min()) / max(c.max(), 1.0)
    c = c * np.exp(rng.normal(0, sigma * (0.3 + 0.7 * min(1.0, 2.5 * sat)), 3) + rng.normal(0, bright))
    return tuple(int(v) for v in np.clip(c, 0, 255))  # type: ignore[return-value]


class Canvas:
    """World rasters being painted; later paint covers earlier paint."""

    def __init__(self, size_m: float, res_m: float, texture_rng: np.random.Generator):
        self.trng = texture_rng  # for raster-sized noise only, so the layout does not depend on res
        self.res = float(res_m)
        self.n = max(1, round(size_m / res_m))
        self.size = self.n * self.res
        self.pal = np.zeros((self.n, self.n), np.int32)
        self.height = np.zeros((self.n, self.n), np.float32)
        self.tex = np.full((self.n, self.n), TEX_ONE, np.uint8)
        self._rgb: list[tuple[int, int, int]] = []
        self._mat: list[int] = []
        self._obj: list[int] = []  # > 0 building id, < 0: -(tree index + 1), 0 ground
        self.buildings: list[dict] = []
        self.trees: list[tuple[float, float, float, float]] = []  # x, y, radius, height

    # ------------------------------------------------------------------ palette and registries

    def entry(self, material: Material, rgb, obj: int = 0) -> int:
        """A palette id for a surface of ``material`` with base colour ``rgb`` (object ``obj``)."""
        self._rgb.append(tuple(int(v) for v in rgb))  # type: ignore[arg-type]
        self._mat.append(int(material))
        self._obj.append(int(obj))
        return len(self._rgb) - 1

    def add_building(
        self, footprint: np.ndarray, height_m: float, facade, window, floor_m: float, window_spacing_m: float
    ) -> int:
        """Register a building; returns its object id (1-based, as in ``World.obj``)."""
        self.buildings.append(
            dict(
                footprint=np.asarray(footprint, np.float64),
                height=float(height_m),
                facade=tuple(int(v) for v in facade),
                window=tuple(int(v) for v in window),
                floor=float(floor_m),
                spacing=float(window_spacing_m),
            )
        )
        return len(self.buildings)

    def luts(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(rgb (K,3) uint8, material (K,) uint8, obj (K,) int32) with tree ids resolved."""
        obj = np.array(self._obj, np.int64)
        tree = obj < 0
        obj[tree] = len(self.buildings) - obj[tree]  # -(k+1) -> 1 + n_buildings + k
        return np.array(self._rgb, np.uint8), np.array(self._mat, np.uint8), obj.astype(np.int32)

    # ------------------------------------------------------------------ geometry

    def to_cv(self, pts: np.ndarray) -> np.ndarray:
        """Local metres -> cv2 fixed-point pixel coordinates (pixel centres at integers)."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        col = pts[:, 0] / self.res - 0.5
        row = (self.size - pts[:, 1]) / self.res - 0.5
        return np.round(np.stack([col, row], axis=1) * _ONE).astype(np.int32)

    def window(self, pts: np.ndarray, pad_m: float = 0.0) -> tuple[int, int, int, int] | None:
        """Raster window (r0, r1, c0, c1) covering points (+ pad), clipped; None if outside."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        c0 = int(np.floor((pts[:, 0].min() - pad_m) / self.res))
        c1 = int(np.ceil((pts[:, 0].max() + pad_m) / self.res)) + 1
        r0 = int(np.floor((self.size - pts[:, 1].max() - pad_m) / self.res))
        r1 = int(np.ceil((self.size - pts[:, 1].min() + pad_m) / self.res)) + 1
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, self.n), min(c1, self.n)
        if r0 >= r1 or c0 >= c1:
            return None
        return r0, r1, c0, c1

    def centres(self, win: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
        """Local x (1, w) and y (h, 1) of the pixel centres of a window."""
        r0, r1, c0, c1 = win
        x = ((np.arange(c0, c1) + 0.5) * self.res)[None, :]
        y = (self.size - (np.arange(r0, r1) + 0.5) * self.res)[:, None]
        return x.astype(np.float32), y.astype(np.float32)

    def poly_mask(self, polys, win: tuple[int, int, int, int]) -> np.ndarray:
        """Boolean mask of polygons (local metres) over a window."""
        r0, r1, c0, c1 = win
        m = np.zeros((r1 - r0, c1 - c0), np.uint8)
        off = np.array([c0, r0]) * _ONE
        cv2.fillPoly(m, [self.to_cv(p) - off for p in _as_list(polys)], 1, cv2.LINE_8, SHIFT)
        return m.view(bool)

    # ------------------------------------------------------------------ painting

    def fill(self, polys, pid: int, height: float = 0.0, tex: int = TEX_ONE) -> None:
        pts = [self.to_cv(p) for p in _as_list(polys)]
        cv2.fillPoly(self.pal, pts, int(pid), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.height, pts, float(height), cv2.LINE_8, SHIFT)
        cv2.fillPoly(self.tex, pts, int(tex), cv2.LINE_8, SHIFT)

    def line(
        self, pts: np.ndarray, width_m: float, pid: int, height: float = 0.0, tex: int = TEX_ONE, round_caps=True
    ) -> None:
        """A polyline of the given width (round joins and caps, or a chain of flat quads)."""
        pts = np.asarray(pts, np.float64)
        if not round_caps:
            d = np.diff(pts, axis=0)
            ln = np.hypot(*d.T)
            quads = []
            for p, q, dd, ll in zip(pts[:-1], pts[1:], d, ln):
                if ll > 1e-6:
                    u = dd / ll
                    n = np.array([u[1], -u[0]]) * width_m / 2
                    quads.append(np.array([p - n, q - n, q + n, p + n]))
            if quads:
                self.fill(quads, pid, height, tex)
            return
        thick = max(1, round(width_m / self.res))
        cv = [self.to_cv(pts)]
        cv2.polylines(self.pal, cv, False, int(pid), thick, cv2.LINE_8, SHIFT)
        cv2.polylines(self.height, cv, False, float(height), thick, cv2.LINE_8, SHIFT)
        cv2.polylines(self.tex, cv, False, int(tex), thick, cv2.LINE_8, SHIFT)

    def circle(self, c, radius_m: float, pid: int, height: float = 0.0, tex: int = TEX_ONE) -> None:
        cc = tuple(int(v) for v in self.to_cv(np.asarray(c))[0])
        r = max(1, round(radius_m / self.res * _ONE))
        cv2.circle(self.pal, cc, r, int(pid), -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.height, cc, r, float(height), -1, cv2.LINE_8, SHIFT)
        cv2.circle(self.tex, cc, r, int(tex), -1, cv2.LINE_8, SHIFT)

    def put(self, win, mask: np.ndarray, pid: int, height, tex) -> None:
        """Masked write of a window: palette id, height (scalar or array), texture (scalar or array)."""
        r0, r1, c0, c1 = win
        for arr, val in ((self.pal, pid), (self.height, height), (self.tex, tex)):
            view = arr[r0:r1, c0:c1]
            if np.isscalar(val):
                view[mask] = val
            else:
                np.copyto(view, np.asarray(val).astype(view.dtype, copy=False), where=mask)

    def stamp_trees(self, xy: np.ndarray, radius: np.ndarray, height: np.ndarray, pids: list[int], cone=None) -> None:
        """Tree crowns as height profiles (paraboloid domes, or cones for conifers), taller wins.

        ``pids`` must be tree palette entries (see :meth:`tree_entry`)."""
        cone = np.zeros(len(xy), bool) if cone is None else cone
        for (x, y), r, h, pid, is_cone in zip(xy, radius, height, pids, cone):
            win = self.window(np.array([[x - r, y - r], [x + r, y + r]]))
            if win is None:
                continue
            px, py = self.centres(win)
            d2 = ((px - x) ** 2 + (py - y) ** 2) / np.float32(r * r)
            if is_cone:
                prof = h - min(1.6 * r, 0.8 * h) * np.sqrt(d2)
            else:
                prof = h - min(0.8 * r, 0.6 * h) * d2
            r0, r1, c0, c1 = win
            m = (d2 <= 1.0) & (prof > self.height[r0:r1, c0:c1])
            self.put(win, m, pid, prof, TEX_ONE)

    def tree_entry(self, rgb, x: float, y: float, radius: float, height: float, material=Material.TREE) -> int:
        """Register a tree (for ``World.trees``) and return its palette id."""
        self.trees.append((float(x), float(y), float(radius), float(height)))
        return self.entry(material, rgb, obj=-len(self.trees))


class Plan:
    """An occupancy grid: which layers already hold something where (bit flags).

    0.5 m cells up to 4 km regions, coarser beyond (so it stays within 64 M cells); the cell size
    depends on the region size only, never on the raster resolution."""

    STREET, BUILDING, WATER, PAVED, GREEN, RESERVED = 1, 2, 4, 8, 16, 32

    def __init__(self, size_m: float):
        self.res = max(0.5, float(size_m) / 8000.0)
        self.size = float(size_m)
        self.n = max(1, int(np.ceil(size_m / self.res)))
        self.occ = np.zeros((self.n, self.n), np.uint8)

    def to_cv(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        col = pts[:, 0] / self.res - 0.5
        row = (self.size - pts[:, 1]) / self.res - 0.5
        return np.round(np.stack([col, row], axis=1) * _ONE).astype(np.int32)

    def to_local(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Pixel centres (row, col) -> local metres (N, 2)."""
        return np.stack([(np.asarray(cols) + 0.5) * self.res, self.size - (np.asarray(rows) + 0.5) * self.res], axis=1)

    def mark_poly(self, polys, bit: int, grow_m: float = 0.0) -> None:
        pts = [self.to_cv(p) for p in _as_list(polys)]
        thick = max(1, round(2 * grow_m / self.res)) if grow_m > 0 else 0
        self._mark(pts, bit, thick, lambda m, q: cv2.fillPoly(m, q, 1, cv2.LINE_8, SHIFT))
        if thick:
            self._mark(pts, bit, thick, lambda m, q: cv2.polylines(m, q, True, 1, thick, cv2.LINE_8, SHIFT))

    def mark_line(self, pts: np.ndarray, width_m: float, bit: int = STREET) -> None:
        thick = max(1, round(width_m / self.res))
        self._mark([self.to_cv(pts)], bit, thick, lambda m, q: cv2.polylines(m, q, False, 1, thick, cv2.LINE_8, SHIFT))

    def mark_circle(self, c, radius_m: float, bit: int = STREET) -> None:
        cv = self.to_cv(np.asarray(c))
        r = max(1, round(radius_m / self.res * _ONE))
        self._mark(
            [cv], bit, 2 * r // _ONE + 2, lambda m, q: cv2.circle(m, tuple(int(v) for v in q[0][0]), r, 1, -1, 0, SHIFT)
        )

    def _mark(self, cvpts: list[np.ndarray], bit: int, pad_px: int, draw) -> None:
        """Draw value 1 into a scratch window around the points, then OR ``bit`` into the grid."""
        allp = np.vstack(cvpts) / _ONE
        c0 = max(int(np.floor(allp[:, 0].min())) - pad_px - 1, 0)
        r0 = max(int(np.floor(allp[:, 1].min())) - pad_px - 1, 0)
        c1 = min(int(np.ceil(allp[:, 0].max())) + pad_px + 2, self.n)
        r1 = min(int(np.ceil(allp[:, 1].max())) + pad_px + 2, self.n)
        if r0 >= r1 or c0 >= c1:
            return
        m = np.zeros((r1 - r0, c1 - c0), np.uint8)
        off = np.array([c0, r0], np.int32) * _ONE
        draw(m, [p - off for p in cvpts])
        view = self.occ[r0:r1, c0:c1]
        np.bitwise_or(view, m * np.uint8(bit), out=view)

    def is_free(self, polys, grow_m: float = 0.0, bits: int = 0xFF) -> bool:
        """True if the polygons (grown by ``grow_m``) lie inside the grid and touch none of ``bits``."""
        polys = _as_list(polys)
        allpts = np.vstack(polys)
        lo, hi = allpts.min(axis=0) - grow_m, allpts.max(axis=0) + grow_m
        if lo[0] < 0 or lo[1] < 0 or hi[0] > self.size or hi[1] > self.size:
            return False
        c0 = max(int(np.floor(lo[0] / self.res)) - 1, 0)
        c1 = min(int(np.ceil(hi[0] / self.res)) + 2, self.n)
        r0 = max(int(np.floor((self.size - hi[1]) / self.res)) - 1, 0)
        r1 = min(int(np.ceil((self.size - lo[1]) / self.res)) + 2, self.n)
        m = np.zeros((r1 - r0, c1 - c0), np.uint8)
        off = np.array([c0, r0]) * _ONE
        pts = [self.to_cv(p) - off for p in polys]
        cv2.fillPoly(m, pts, 1, cv2.LINE_8, SHIFT)
        if grow_m > 0:
            cv2.polylines(m, pts, True, 1, max(1, round(2 * grow_m / self.res)), cv2.LINE_8, SHIFT)
        return not np.any((self.occ[r0:r1, c0:c1] & bits)[m.view(bool)])

    def free_mask(self, bits: int = 0xFF) -> np.ndarray:
        return (self.occ & bits) == 0


def _as_list(polys) -> list[np.ndarray]:
    if isinstance(polys, np.ndarray) and polys.ndim == 2:
        return [polys]
    return list(polys)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float) -> np.ndarray:
    """Value noise in about [-1, 1] with features of ``cell_px`` pixels (float32)."""
    h, w = shape
    gh, gw = max(2, int(np.ceil(h / cell_px)) + 2), max(2, int(np.ceil(w / cell_px)) + 2)
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    out = cv2.resize(g, (round(gw * cell_px), round(gh * cell_px)), interpolation=cv2.INTER_CUBIC)
    return out[:h, :w] * np.float32(0.9)
