"""`edge-geoloc run --config loop.yaml`: the loop's, the filter's and the UAV stage's settings in one YAML
file, validated like every other config (an unknown key or a bad value names the file, line and key)::

    loop:   {budget_ms: 100, k: 8, heading_every: 1}
    filter: {particles: 600, vision_outlier: 0.3}
    uav:    {crop_grid: 3, sweep_steps: 24}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edge_geoloc.config import load_config
from edge_geoloc.localize.filter import FilterConfig
from edge_geoloc.localize.loop import LoopConfig
from edge_geoloc.localize.vision.uav import UavConfig


@dataclass(frozen=True)
class RunConfig:
    loop: LoopConfig = field(default_factory=LoopConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    uav: UavConfig = field(default_factory=UavConfig)  # used with a drone camera only


def load_run_config(path: str | Path | None) -> RunConfig:
    """The settings in ``path`` (keys left out keep their defaults); None: all defaults."""
    return RunConfig() if path is None else load_config(RunConfig, path)
