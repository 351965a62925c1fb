"""Checkpoints: atomic writes, config checks on load, slim weight files for shipping."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from edge_geoloc.config import from_mapping, to_mapping
from edge_geoloc.model.config import ModelConfig
from edge_geoloc.model.vit import CrossViewModel

FORMAT = "edge-geoloc-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is not ours, is corrupt, or belongs to another model config."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"format": FORMAT, **state}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, expect: ModelConfig | None = None) -> dict[str, Any]:
    """Read a checkpoint; refuse other formats and, with ``expect``, other model configs."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an edge-geoloc checkpoint (expected format {FORMAT})")
    cfg = model_config_of(state, path)
    if expect is not None and cfg != expect:
        diff = [
            f"{f.name}: checkpoint {getattr(cfg, f.name)!r} vs expected {getattr(expect, f.name)!r}"
            for f in dataclasses.fields(ModelConfig)
            if getattr(cfg, f.name) != getattr(expect, f.name)
        ]
        raise CheckpointError(f"{path}: checkpoint of another model config ({'; '.join(diff)})")
    return state


def model_config_of(state: dict[str, Any], source: str | Path = "<checkpoint>") -> ModelConfig:
    return from_mapping(ModelConfig, state["model_config"], f"{source} (model_config)")


def model_state(cfg: ModelConfig) -> dict[str, Any]:
    return {"model_config": to_mapping(cfg)}


def load_model(path: str | Path, expect: ModelConfig | None = None) -> tuple[CrossViewModel, dict[str, Any]]:
    """The model of a checkpoint (eval mode, float32) and the checkpoint's state."""
    state = load_checkpoint(path, expect)
    cfg = model_config_of(state, path)
    model = CrossViewModel(cfg)
    weights = {k: v.float() for k, v in state["model"].items()}
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the model config '{cfg.name}' "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model.eval(), state


def slim(path_in: str | Path, path_out: str | Path, half: bool = True) -> None:
    """A shippable copy: weights (float16 by default), configs and metrics; no optimizer state."""
    state = load_checkpoint(path_in)
    keep = {
        k: state[k]
        for k in ("model_config", "train_config", "metrics", "epoch", "dataset", "init", "offset_fit")
        if k in state
    }
    keep["model"] = {k: (v.half() if half and v.is_floating_point() else v) for k, v in state["model"].items()}
    save_checkpoint(path_out, keep)
