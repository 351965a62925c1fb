"""Export recipes (``edge_geoloc/configs/export/<target>.yaml``, package data): what one deployment target gets from an export.

A recipe fixes the ONNX opset, the aerial keep ratio (or the checkpoint's), the batch profiles
the graphs are built and buffered for, and the precision the target compiles to. The batch
profiles and precision are copied into the model card, where ``edge-geoloc compile`` and the
runtime read them on the device.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edge_geoloc.config import check, load_config
from edge_geoloc.runtime.card import BatchProfile

RECIPE_DIR = Path(__file__).resolve().parents[1] / "configs" / "export"  # package data: ships with the wheel


@dataclass(frozen=True)
class ExportRecipe:
    target: str
    description: str = ""
    runtime: Literal["tensorrt", "onnxruntime"] = "onnxruntime"  # what the target runs the graphs with
    precision: Literal["fp32", "fp16"] = "fp32"
    opset: int = field(default=17, metadata=check(lambda v: 13 <= v <= 20, "an ONNX opset in 13..20"))
    keep_ratio: float | None = field(default=None, metadata=check(lambda v: 0 < v <= 1, "a keep ratio in (0, 1]"))
    street_batch: BatchProfile = field(default_factory=lambda: BatchProfile(1, 1, 16))  # a frame, or heading rolls
    aerial_batch: BatchProfile = field(default_factory=lambda: BatchProfile(1, 32, 64))  # map building: tile batches
    workspace_mb: int = field(default=1024, metadata=check(lambda v: v > 0, "a positive number of MiB"))

    def __post_init__(self) -> None:
        if self.precision == "fp16" and self.runtime != "tensorrt":
            raise ValueError("precision fp16 is compiled by TensorRT: set runtime: tensorrt")


DEFAULT_RECIPE = ExportRecipe(target="generic", description="FP32 ONNX graphs, ONNX Runtime defaults")


def load_recipe(name_or_path: str | Path | None) -> ExportRecipe:
    """A recipe by path or by name in ``configs/export/`` (``x86-cpu``, ``jetson-orin-fp16``); None: the defaults."""
    if name_or_path is None:
        return DEFAULT_RECIPE
    path = Path(name_or_path)
    if not path.suffix:
        path = RECIPE_DIR / f"{name_or_path}.yaml"
    return load_config(ExportRecipe, path)
