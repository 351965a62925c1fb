"""TensorRT engine files and their sidecars: what an engine was built from, for which GPU and TensorRT.

A serialized engine only runs on the GPU model and TensorRT version it was built with, and only
means something for the ONNX graph it was built from. ``edge-geoloc compile`` writes
``<branch>.engine`` and ``<branch>.engine.json`` beside the model card; :func:`check_engine` refuses
an engine whose sidecar is missing or unreadable, whose bytes changed (corrupt, truncated), that
was built from another ONNX file, another TensorRT, another GPU or another batch profile, each
time with a message that says to rebuild. No TensorRT import here: the checks are plain data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from edge_geoloc.config import ConfigError, from_mapping, strict_json, to_mapping
from edge_geoloc.runtime.card import BatchProfile, ModelCard, sha256_of

SIDECAR_FORMAT = "edge-geoloc-engine/1"


class EngineError(RuntimeError):
    """An engine that must not be used on this machine; the message says how to rebuild it."""


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "major.minor", e.g. "8.7" for Jetson Orin


@dataclass(frozen=True)
class EngineSidecar:
    format: str
    branch: Literal["street", "aerial"]
    engine_file: str
    engine_sha256: str
    onnx_file: str
    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: Literal["fp32", "fp16"]
    profile: BatchProfile
    workspace_mb: int
    built: str  # ISO 8601, UTC


def engine_paths(model_dir: str | Path, branch: str) -> tuple[Path, Path]:
    engine = Path(model_dir) / f"{branch}.engine"
    return engine, engine.with_name(engine.name + ".json")


def write_sidecar(sidecar: EngineSidecar, path: str | Path) -> None:
    Path(path).write_text(strict_json(to_mapping(sidecar), indent=1))


def read_sidecar(path: str | Path) -> EngineSidecar:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        sidecar = from_mapping(EngineSidecar, data, str(path))
    except (OSError, json.JSONDecodeError, ConfigError) as err:
        raise EngineError(f"{path}: unreadable engine sidecar ({err})") from None
    if sidecar.format != SIDECAR_FORMAT:
        raise EngineError(f"{path}: sidecar format {sidecar.format!r}, this runtime reads {SIDECAR_FORMAT!r}")
    return sidecar


def rebuild_hint(model_dir: str | Path, branch: str) -> str:
    return f"rebuild it on this machine: edge-geoloc compile --model {model_dir} --branch {branch}"


def check_engine(
    model_dir: str | Path, card: ModelCard, branch: str, tensorrt_version: str, gpu: GpuInfo
) -> EngineSidecar:
    """The sidecar of a usable engine, or an EngineError naming what differs and how to rebuild."""
    engine, side = engine_paths(model_dir, branch)
    hint = rebuild_hint(model_dir, branch)
    if not engine.exists():
        raise EngineError(f"{engine}: no TensorRT engine; {hint}")
    if not side.exists():
        raise EngineError(f"{engine}: no sidecar {side.name}, so nothing says what it was built for; {hint}")
    try:
        sidecar = read_sidecar(side)
    except EngineError as err:
        raise EngineError(f"{err}; {hint}") from None
    problems = []
    digest = sha256_of(engine)
    if digest != sidecar.engine_sha256:
        problems.append(
            f"its bytes changed since the build (sha256 {digest[:12]}... != {sidecar.engine_sha256[:12]}...)"
        )
    entry = card.branch(branch)
    if sidecar.branch != branch or sidecar.onnx_sha256 != entry.sha256:
        problems.append(
            f"it was built from another graph ({sidecar.branch} {sidecar.onnx_sha256[:12]}...,"
            f" the model card's {branch} graph is {entry.sha256[:12]}...)"
        )
    if sidecar.tensorrt_version != tensorrt_version:
        problems.append(f"it was built with TensorRT {sidecar.tensorrt_version}, this is TensorRT {tensorrt_version}")
    if (sidecar.gpu_name, sidecar.compute_capability) != (gpu.name, gpu.compute_capability):
        problems.append(
            f"it was built for {sidecar.gpu_name} (compute {sidecar.compute_capability}),"
            f" this GPU is {gpu.name} (compute {gpu.compute_capability})"
        )
    if sidecar.profile != entry.batch:
        problems.append(f"its batch profile {to_mapping(sidecar.profile)} is not the card's {to_mapping(entry.batch)}")
    if problems:
        raise EngineError(f"{engine}: refusing the engine: {'; '.join(problems)}; {hint}")
    return sidecar
