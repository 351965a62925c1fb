"""The tiny synthetic dataset and the micro model config, for training tests."""

from __future__ import annotations

from pathlib import Path

from edge_geoloc.data.fixtures import tiny_synth_dataset
from edge_geoloc.model.config import CONFIG_DIR


def tiny_dataset(root: Path, panoramas: int = 80) -> Path:
    return tiny_synth_dataset(root, panoramas)


def micro_model(root: Path) -> Path:
    return CONFIG_DIR / "micro.yaml"
