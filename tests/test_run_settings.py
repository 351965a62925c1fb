"""`edge-geoloc run --config loop.yaml`: LoopConfig, FilterConfig and UavConfig from one YAML file, with the
project's file:line errors (the same loader as every other config)."""

from __future__ import annotations

import pytest

from edge_geoloc.config import ConfigError
from edge_geoloc.localize.settings import RunConfig, load_run_config


def test_defaults_and_a_partial_file(tmp_path):
    assert load_run_config(None) == RunConfig()
    f = tmp_path / "loop.yaml"
    f.write_text("loop:\n  budget_ms: 250\n  k: 12\nfilter:\n  particles: 300\nuav:\n  crop_grid: 5\n")
    cfg = load_run_config(f)
    assert (cfg.loop.budget_ms, cfg.loop.k, cfg.loop.heading_every) == (250.0, 12, 1)  # the rest: defaults
    assert cfg.filter.particles == 300 and cfg.uav.crop_grid == 5


@pytest.mark.parametrize(
    "text, message",
    [
        ("loop:\n  budgett_ms: 100\n", r"loop.yaml:2: unknown key 'loop.budgett_ms'"),
        ("loop:\n  k: eight\n", r"loop.yaml:2: key 'loop.k': expected an integer, got 'eight'"),
        (
            "filter:\n  seed: 1\n  vision_outlier: 1.5\n",
            r"loop.yaml:3: key 'filter.vision_outlier': vision_outlier must be",
        ),
        (
            "loop:\n  budget_ms: 100\n  sweep_rolls: 2\n",
            r"loop.yaml:3: key 'loop.sweep_rolls': sweep_rolls must be >= 3",
        ),
        ("uav:\n  crop_grid: 4\n", r"loop.yaml:2: key 'uav.crop_grid': expected 1, 3 or 5"),
        ("gps: sim\n", r"loop.yaml:1: unknown key 'gps'"),
    ],
)
def test_bad_values_name_the_file_line_and_key(tmp_path, text, message):
    f = tmp_path / "loop.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_run_config(f)


def test_the_cli_overrides_the_file(tmp_path):
    import argparse

    from edge_geoloc.localize.cli import _loop_config

    base = load_run_config(None).loop
    args = argparse.Namespace(budget_ms=0.0, k=None, heading_every=3, trust_uncalibrated=False)
    cfg = _loop_config(args, base)
    assert cfg.budget_ms is None and cfg.k == base.k and cfg.heading_every == 3
