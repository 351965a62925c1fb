"""The loop's output record (one :class:`Fix` per frame, DESIGN.md "Fix") and its running statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# predict: the filter brought to the frame's time, with the GPS and odometry updates since the last frame.
STAGES = ("predict", "encode", "search", "refine", "heading", "filter")


@dataclass
class Fix:
    """One output record per frame (DESIGN.md, "Fix"). Positions are None before the first fix."""

    frame: int
    t: float
    time: str | None
    lat: float | None
    lon: float | None
    east: float | None
    north: float | None
    sigma_m: float | None
    heading_deg: float | None  # clockwise from TRUE north
    heading_sigma_deg: float | None
    source: str  # vision | gps | filter-only | none
    mode: str  # track | sweep | global | none
    topk_ids: list[int] = field(default_factory=list)
    topk_scores: list[float] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)
    total_ms: float = 0.0
    deadline_missed: bool = False
    skipped: list[str] = field(default_factory=list)
    vision: dict[str, float] | None = None  # the candidates' fused position and evidence (also when refused)
    speed_mps: float | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        def r(v: float | None, nd: int) -> float | None:  # strict JSON: an unknown value is null, never NaN
            return None if v is None or not math.isfinite(v) else round(float(v), nd)

        out = {
            "frame": self.frame,
            "t": r(self.t, 3),
            "time": self.time,
            "lat": r(self.lat, 8),
            "lon": r(self.lon, 8),
            "east": r(self.east, 2),
            "north": r(self.north, 2),
            "sigma_m": r(self.sigma_m, 2),
            "heading_deg": r(self.heading_deg, 2),
            "heading_sigma_deg": r(self.heading_sigma_deg, 2),
            "source": self.source,
            "mode": self.mode,
            "topk": {"ids": self.topk_ids, "scores": [r(s, 4) for s in self.topk_scores]},
            "stages_ms": {k: r(v, 2) for k, v in self.stages_ms.items()},
            "total_ms": r(self.total_ms, 2),
            "deadline_missed": self.deadline_missed,
        }
        if self.skipped:
            out["skipped"] = self.skipped
        if self.vision is not None:
            out["vision"] = {k: r(v, 3) for k, v in self.vision.items()}
        if self.speed_mps is not None:
            out["speed_mps"] = round(self.speed_mps, 2)
        if self.note:
            out["note"] = self.note
        return out


class LoopStats:
    """Counters and per-stage timings for the summary."""

    def __init__(self) -> None:
        self.frames = 0
        self.sources: dict[str, int] = {}
        self.modes: dict[str, int] = {}
        self.corrupt = 0
        self.stale = 0
        self.deadline_misses = 0
        self.skipped: dict[str, int] = {}
        self.outside_map = 0
        self.prior_outside_map = 0
        self.stages: dict[str, list[float]] = {s: [] for s in STAGES}
        self.total: list[float] = []
        self.encodes = 0

    def add(self, fix: Fix) -> None:
        self.frames += 1
        self.sources[fix.source] = self.sources.get(fix.source, 0) + 1
        self.modes[fix.mode] = self.modes.get(fix.mode, 0) + 1
        self.deadline_misses += int(fix.deadline_missed)
        for s in fix.skipped:
            self.skipped[s] = self.skipped.get(s, 0) + 1
        for k, v in fix.stages_ms.items():
            self.stages.setdefault(k, []).append(v)
        self.total.append(fix.total_ms)

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float]) -> dict[str, float]:
            if not values:
                return {"n": 0}
            a = np.asarray(values)
            return {
                "n": len(a),
                "p50": round(float(np.percentile(a, 50)), 2),
                "p99": round(float(np.percentile(a, 99)), 2),
                "mean": round(float(a.mean()), 2),
            }

        busy_s = sum(self.total) / 1000.0
        return {
            "frames": self.frames,
            "fix_rate": round(self.sources.get("vision", 0) / self.frames, 4) if self.frames else 0.0,
            "sources": dict(sorted(self.sources.items())),
            "modes": dict(sorted(self.modes.items())),
            "deadline_misses": self.deadline_misses,
            "skipped": dict(sorted(self.skipped.items())),
            "corrupt_frames": self.corrupt,
            "stale_frames": self.stale,
            "scope_outside_map": self.outside_map,
            "prior_outside_map": self.prior_outside_map,
            "encodes": self.encodes,
            "fps": round(self.frames / busy_s, 2) if busy_s > 0 else None,
            "stages_ms": {k: pct(v) for k, v in self.stages.items() if v},
            "total_ms": pct(self.total),
        }
