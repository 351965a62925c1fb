"""The model card: ``model.yaml`` beside the exported graphs, the one place the device reads sizes from.

The exporter writes it from the training config; every consumer on the device (encoders, the
TensorRT compiler, the map builder, the localization loop) reads input sizes, normalization,
FoV, keep ratio and GSD from here, so no size is written down twice. ``verify()`` proves the
graphs on disk are the ones the card describes: same bytes (sha256) and same tensor shapes.

Tensor names are fixed by this module and used by the exporter, so both sides agree:
encoders take ``image`` (N, 3, H, W) float32 and give ``descriptor`` (N, D) and ``attention``
(N, rows, cols); the offset head takes ``street`` and ``aerial`` (N, D) and gives ``offset``
(N, 2) east/north metres from the tile centre.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from edge_geoloc.config import ConfigError, check, dump_config, load_config
from edge_geoloc.runtime.preprocess import InputSpec

CARD_FORMAT = "edge-geoloc-model-card/1"
CARD_FILE = "model.yaml"
BRANCHES = ("street", "aerial")
Branch = Literal["street", "aerial"]
DRONE = "drone"  # optional third encoder (issue 7): rectified drone patches, trained against the aerial branch

INPUT = "image"
DESCRIPTOR = "descriptor"
ATTENTION = "attention"
OFFSET_INPUTS = ("street", "aerial")
OFFSET_OUTPUT = "offset"


class CardError(ValueError):
    """A model card that is invalid, or graphs on disk that do not match their card."""


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _is_sha256(v: str) -> bool:
    return len(v) == 64 and all(c in "0123456789abcdef" for c in v)


@dataclass(frozen=True)
class BatchProfile:
    """Batch sizes a graph is built for: TensorRT's optimization profile, the runtime's chunk size."""

    min: int = field(metadata=check(lambda v: v >= 1, "a batch size >= 1"))
    opt: int = field(metadata=check(lambda v: v >= 1, "a batch size >= 1"))
    max: int = field(metadata=check(lambda v: v >= 1, "a batch size >= 1"))

    def __post_init__(self) -> None:
        if not self.min <= self.opt <= self.max:
            raise ValueError(f"batch profile needs min <= opt <= max, got {self.min}, {self.opt}, {self.max}")


@dataclass(frozen=True, kw_only=True)
class BranchCard:
    """One encoder graph: its file and exactly what it takes and gives."""

    file: str
    sha256: str = field(metadata=check(_is_sha256, "64 lowercase hex digits"))
    height: int = field(metadata=check(lambda v: v > 0, "a positive pixel count"))
    width: int = field(metadata=check(lambda v: v > 0, "a positive pixel count"))
    mean: tuple[float, float, float]
    std: tuple[float, float, float] = field(metadata=check(lambda v: all(s > 0 for s in v), "positive values"))
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NCHW"] = "NCHW"
    dtype: Literal["float32"] = "float32"
    patch: int = field(metadata=check(lambda v: v > 0, "a positive patch size"))
    attention_grid: tuple[int, int] = field(metadata=check(lambda v: min(v) > 0, "positive (rows, cols)"))
    batch: BatchProfile

    def __post_init__(self) -> None:
        if self.attention_grid != (self.height // self.patch, self.width // self.patch):
            raise ValueError(
                f"attention_grid {list(self.attention_grid)} does not match {self.height}x{self.width} px"
                f" in patches of {self.patch} ({self.height // self.patch}x{self.width // self.patch})"
            )


@dataclass(frozen=True, kw_only=True)
class StreetCard(BranchCard):
    fov_deg: float = field(metadata=check(lambda v: 0 < v <= 360, "a field of view in (0, 360]"))


@dataclass(frozen=True, kw_only=True)
class AerialCard(BranchCard):
    keep_ratio: float = field(metadata=check(lambda v: 0 < v <= 1, "a keep ratio in (0, 1]"))
    kept_patches: int = field(metadata=check(lambda v: v > 0, "a positive patch count"))
    gsd_m: float = field(metadata=check(lambda v: v > 0, "metres per pixel > 0"))
    tile_m: float = field(metadata=check(lambda v: v > 0, "a tile side in metres"))

    def __post_init__(self) -> None:
        super().__post_init__()
        if abs(self.gsd_m * self.width - self.tile_m) > 1e-6 * self.tile_m:
            raise ValueError(f"gsd_m {self.gsd_m} x width {self.width} px is not tile_m {self.tile_m}")
        n = self.attention_grid[0] * self.attention_grid[1]
        if self.kept_patches > n:
            raise ValueError(f"kept_patches {self.kept_patches} exceeds the {n} patches of the grid")


@dataclass(frozen=True, kw_only=True)
class DroneCard(BranchCard):
    """The drone branch: north-up ortho patches rectified from drone frames (``patch_m`` a side at ``gsd_m``,
    as the aerial tiles) -> descriptors searched in the same maps; trained against ``aerial_sha256``."""

    gsd_m: float = field(metadata=check(lambda v: v > 0, "metres per pixel > 0"))
    patch_m: float = field(metadata=check(lambda v: v > 0, "a patch side in metres"))
    aerial_sha256: str = field(metadata=check(_is_sha256, "64 lowercase hex digits (the aerial graph it pairs with)"))
    heading: Literal["rotation-search"] = "rotation-search"  # north-up encoder: unknown yaw by searching rotations
    trained_altitude_m: tuple[float, float] = (50.0, 300.0)
    trained_tilt_deg: tuple[float, float] = (0.0, 40.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if abs(self.gsd_m * self.width - self.patch_m) > 1e-6 * self.patch_m:
            raise ValueError(f"gsd_m {self.gsd_m} x width {self.width} px is not patch_m {self.patch_m}")


@dataclass(frozen=True, kw_only=True)
class OffsetCard:
    """VIGOR's offset head: (street, aerial) descriptors -> east/north metres from the tile centre."""

    file: str
    sha256: str = field(metadata=check(_is_sha256, "64 lowercase hex digits"))


@dataclass(frozen=True, kw_only=True)
class ModelCard:
    format: str = field(metadata=check(lambda v: v == CARD_FORMAT, f"'{CARD_FORMAT}'"))
    model: str
    config: str
    created: str  # ISO 8601, UTC
    descriptor_dim: int = field(metadata=check(lambda v: v > 0, "a positive dimension"))
    metric: Literal["cosine"] = "cosine"  # descriptors are L2-normalized: inner product = cosine
    target: str = "generic"  # the export recipe's target
    precision: Literal["fp32", "fp16"] = "fp32"  # what the recipe asks the device to compile
    opset: int = 17
    checkpoint: str = ""  # the checkpoint exported (for the torch debug backend)
    checkpoint_sha256: str = ""
    street: StreetCard
    aerial: AerialCard
    offset: OffsetCard
    drone: DroneCard | None = None

    def __post_init__(self) -> None:
        if self.drone is not None and self.drone.aerial_sha256 != self.aerial.sha256:
            raise ValueError(
                "the drone branch was trained against another aerial graph"
                f" ({self.drone.aerial_sha256[:12]}... vs this card's {self.aerial.sha256[:12]}...): retrain it"
            )

    def branch(self, name: str) -> StreetCard | AerialCard | DroneCard:
        if name == DRONE:
            if self.drone is None:
                raise CardError(
                    f"model {self.model} has no drone branch (train one with edge-geoloc train-drone and add it"
                    " with edge-geoloc export-drone)"
                )
            return self.drone
        if name not in BRANCHES:
            raise ValueError(f"unknown branch {name!r} (expected one of {', '.join(BRANCHES)})")
        return self.street if name == "street" else self.aerial

    def input_spec(self, name: str) -> InputSpec:
        """The preprocessing spec of a branch, from the card alone."""
        b = self.branch(name)
        fov = b.fov_deg if isinstance(b, StreetCard) else 360.0
        return InputSpec(b.height, b.width, tuple(b.mean), tuple(b.std), fov_deg=fov, channel_order=b.channel_order)

    def io_shapes(self, name: str) -> dict[str, tuple[Any, ...]]:
        """Expected tensor shapes of a graph, batch axis as the string 'batch'."""
        if name == "offset":
            d = self.descriptor_dim
            return {OFFSET_INPUTS[0]: ("batch", d), OFFSET_INPUTS[1]: ("batch", d), OFFSET_OUTPUT: ("batch", 2)}
        b = self.branch(name)
        return {
            INPUT: ("batch", 3, b.height, b.width),
            DESCRIPTOR: ("batch", self.descriptor_dim),
            ATTENTION: ("batch", *b.attention_grid),
        }

    def graph_file(self, name: str) -> str:
        return self.offset.file if name == "offset" else self.branch(name).file


def load_card(model_dir: str | Path) -> ModelCard:
    """Read ``model_dir/model.yaml`` (unknown keys, wrong types and bad values are errors)."""
    path = Path(model_dir) / CARD_FILE
    if not path.exists():
        raise CardError(f"{path}: no model card (export the model first: edge-geoloc export)")
    try:
        return load_config(ModelCard, path)
    except ConfigError as err:
        raise CardError(str(err)) from None


def write_card(card: ModelCard, model_dir: str | Path) -> Path:
    path = Path(model_dir) / CARD_FILE
    dump_config(card, path)
    return path


def check_io(card: ModelCard, name: str, tensors: Sequence[tuple[str, Sequence[Any]]], source: str | Path) -> None:
    """Compare a graph's (name, shape) inputs and outputs with the card; the batch axis may be symbolic."""
    expected = card.io_shapes(name)
    got = {t: tuple(shape) for t, shape in tensors}

    def static(dim: Any) -> bool:  # ORT gives a string or None for a symbolic axis, TensorRT -1
        return isinstance(dim, int) and dim >= 0

    problems = []
    for tensor, shape in expected.items():
        if tensor not in got:
            problems.append(f"no tensor '{tensor}' (has {', '.join(sorted(got)) or 'none'})")
            continue
        actual = got[tensor]
        if len(actual) != len(shape) or any(not static(a) or a != e for a, e in zip(actual[1:], shape[1:])):
            problems.append(f"'{tensor}' has shape {list(actual)}, the card says {list(shape)}")
        elif static(actual[0]):
            problems.append(f"'{tensor}' has a fixed batch axis of {actual[0]}, the card says a dynamic one")
    extra = sorted(set(got) - set(expected))
    if extra:
        problems.append(f"unexpected tensors {extra}")
    if problems:
        raise CardError(f"{source}: does not match its model card ({'; '.join(problems)})")


def onnx_io(path: str | Path) -> list[tuple[str, tuple[Any, ...]]]:
    """(name, shape) of a graph's inputs and outputs, read through ONNX Runtime (a device dependency)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types for unreadable graphs
        raise CardError(f"{path}: not a loadable ONNX graph ({type(err).__name__}: {err})") from None
    return [(t.name, tuple(t.shape)) for t in [*sess.get_inputs(), *sess.get_outputs()]]


def verify(model_dir: str | Path, card: ModelCard | None = None, check_graphs: bool = True) -> ModelCard:
    """Check that each graph exists, has the card's sha256 and (``check_graphs``) the card's tensor shapes."""
    model_dir = Path(model_dir)
    card = card or load_card(model_dir)
    for name in (*BRANCHES, "offset", *((DRONE,) if card.drone is not None else ())):
        entry = card.offset if name == "offset" else card.branch(name)
        path = model_dir / entry.file
        if not path.exists():
            raise CardError(f"{path}: missing (the model card lists it as the {name} graph)")
        digest = sha256_of(path)
        if digest != entry.sha256:
            raise CardError(
                f"{path}: sha256 {digest[:12]}... differs from the model card's {entry.sha256[:12]}..."
                " (the graph was replaced or corrupted after export; export again)"
            )
        if check_graphs:
            check_io(card, name, onnx_io(path), path)
    return card
