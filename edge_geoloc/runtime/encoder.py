"""One encoder interface over TensorRT, ONNX Runtime and torch (debug).

``encode(images) -> descriptors`` takes RGB uint8 images (a list or an (N, H, W, 3) array; street
panoramas are FoV-cropped per the model card), runs :func:`edge_geoloc.runtime.preprocess.preprocess`
(the one preprocessing, identical for every backend) and hands the float32 NCHW batch to the
backend in chunks of the card's maximum batch. ``encode_with_attention`` also returns the class
tokens' attention over the patch grid (N, rows, cols) for the heading estimator.

A bad call (wrong dtype or channels, an empty batch, a tensor of the wrong shape) raises
:class:`InputError` before anything runs, and the encoder keeps serving the next call.

:func:`open_encoder` with ``backend="auto"`` picks TensorRT (an engine compiled on this machine),
then ONNX Runtime's CUDA provider, then ONNX Runtime on the CPU, and records why it skipped each.
"""

from __future__ import annotations

import importlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.runtime.card import ATTENTION, DESCRIPTOR, INPUT, ModelCard, check_io, load_card, verify
from edge_geoloc.runtime.preprocess import InputError, InputSpec, preprocess

log = logging.getLogger(__name__)

BACKENDS = ("auto", "tensorrt", "onnxruntime-cuda", "onnxruntime", "torch")


def default_threads() -> int:
    """ONNX Runtime intra-op threads when not given: the cores, at most 4 (the loop has other stages)."""
    return max(1, min(4, os.cpu_count() or 1))


class Encoder(ABC):
    """A street or aerial encoder described by a model card; subclasses only implement ``_infer``."""

    backend: str = "?"

    def __init__(self, card: ModelCard, branch: str) -> None:
        self.card = card
        self.branch = branch
        self.spec: InputSpec = card.input_spec(branch)
        self.max_batch = card.branch(branch).batch.max
        self.fallback_reasons: list[str] = []  # why open_encoder skipped faster backends

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return 3, self.spec.height, self.spec.width

    @property
    def descriptor_dim(self) -> int:
        return self.card.descriptor_dim

    def preprocess(self, images: Sequence[np.ndarray] | np.ndarray, is_panorama: bool | None = None) -> np.ndarray:
        """The backend's input tensor for ``images`` (street images are panoramas unless told otherwise)."""
        panorama = self.branch == "street" if is_panorama is None else is_panorama
        return preprocess(images, self.spec, is_panorama=panorama)

    def encode(self, images: Sequence[np.ndarray] | np.ndarray, is_panorama: bool | None = None) -> np.ndarray:
        """L2-normalized descriptors (N, D) float32."""
        return self.run(self.preprocess(images, is_panorama))[0]

    def encode_with_attention(
        self, images: Sequence[np.ndarray] | np.ndarray, is_panorama: bool | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Descriptors (N, D) and the class tokens' attention over the patch grid (N, rows, cols)."""
        return self.run(self.preprocess(images, is_panorama))

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run an already preprocessed float32 (N, 3, H, W) batch, in chunks of ``max_batch``."""
        self.check_batch(batch)
        outs = [
            self._infer(np.ascontiguousarray(batch[s : s + self.max_batch]))
            for s in range(0, len(batch), self.max_batch)
        ]
        desc = np.concatenate([o[0] for o in outs]).astype(np.float32, copy=False)
        attn = np.concatenate([o[1] for o in outs]).astype(np.float32, copy=False)
        return desc, attn

    def check_batch(self, batch: np.ndarray) -> None:
        if not isinstance(batch, np.ndarray):
            raise InputError(f"expected a numpy float32 batch, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise InputError(f"expected a float32 batch (preprocessed), got dtype {batch.dtype}")
        if batch.ndim != 4 or batch.shape[1:] != self.input_shape:
            raise InputError(
                f"{self.branch} encoder takes (N, {', '.join(map(str, self.input_shape))}) batches, got {batch.shape}"
            )
        if batch.shape[0] == 0:
            raise InputError("empty batch: nothing to encode")

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(descriptor, attention) of one contiguous batch of at most ``max_batch``."""

    def close(self) -> None:  # noqa: B027 - backends without resources have nothing to release
        pass

    def __enter__(self) -> Encoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.card.model}/{self.branch}, {self.backend})"


class OrtEncoder(Encoder):
    """ONNX Runtime, CPU or CUDA provider, with explicit thread settings."""

    def __init__(
        self,
        model_dir: str | Path,
        branch: str,
        card: ModelCard | None = None,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        spin: bool = False,
    ) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        card = card or verify(model_dir, check_graphs=False)  # sha256 here; shapes from our own session below
        super().__init__(card, branch)
        if device not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu or cuda, got {device!r}")
        providers = ["CPUExecutionProvider"]
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("ONNX Runtime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
            providers.insert(0, "CUDAExecutionProvider")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads or default_threads()
        opts.inter_op_num_threads = inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Busy-waiting threads would steal the cores the rest of the loop (search, filter) runs on.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        path = model_dir / card.branch(branch).file
        self.session = ort.InferenceSession(str(path), opts, providers=providers)
        io = [(t.name, tuple(t.shape)) for t in [*self.session.get_inputs(), *self.session.get_outputs()]]
        check_io(card, branch, io, path)
        self.threads = (opts.intra_op_num_threads, opts.inter_op_num_threads)
        self.backend = "onnxruntime-cuda" if device == "cuda" else "onnxruntime"

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        desc, attn = self.session.run([DESCRIPTOR, ATTENTION], {INPUT: batch})
        return desc, attn


# Backends another wing registers (the workstation's torch encoder): name -> factory(model_dir, branch, card=...).
PLUGIN_BACKENDS: dict[str, Callable[..., Encoder]] = {}


def register_backend(name: str, factory: Callable[..., Encoder]) -> None:
    """Let ``open_encoder(..., backend=name)`` build ``factory(model_dir, branch, card=card, **options)``."""
    PLUGIN_BACKENDS[name] = factory


@dataclass
class BackendProbe:
    """What this machine offers; a test passes its own (fakes) to exercise the selection."""

    tensorrt: Callable[[], Any] = field(default=lambda: importlib.import_module("tensorrt"))
    cuda_adapter: Callable[[], Any] = field(default=None)  # type: ignore[assignment]
    ort_providers: Callable[[], list[str]] = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.cuda_adapter is None:
            from edge_geoloc.runtime.cuda import select_adapter

            self.cuda_adapter = select_adapter
        if self.ort_providers is None:

            def providers() -> list[str]:
                import onnxruntime as ort

                return list(ort.get_available_providers())

            self.ort_providers = providers


def open_encoder(
    model_dir: str | Path,
    branch: str,
    backend: str = "auto",
    probe: BackendProbe | None = None,
    **options: Any,
) -> Encoder:
    """An encoder for ``branch`` of the export in ``model_dir``.

    ``backend``: ``auto`` (TensorRT, then ONNX Runtime CUDA, then ONNX Runtime CPU), or one of
    ``tensorrt``, ``onnxruntime-cuda``, ``onnxruntime``, or a registered plug-in (``torch``, debug: the
    checkpoint through :mod:`edge_geoloc.export.torch_backend`, which registers it).
    An explicitly requested backend that cannot run raises; ``auto`` logs why it skipped one.
    ``options`` go to the ONNX Runtime encoder (``intra_op_threads``, ``inter_op_threads``, ``spin``).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (expected one of {', '.join(BACKENDS)})")
    model_dir = Path(model_dir)
    card = load_card(model_dir)
    card.branch(branch)  # validates the branch name
    if backend in PLUGIN_BACKENDS:
        return PLUGIN_BACKENDS[backend](model_dir, branch, card=card, **options)
    if backend == "torch":
        raise ValueError(
            "backend torch (debugging, needs the checkpoint) is the workstation's: import"
            " edge_geoloc.export.torch_backend, which registers it"
        )
    probe = probe or BackendProbe()
    reasons: list[str] = []
    if backend in ("auto", "tensorrt"):
        from edge_geoloc.runtime.engine import EngineError, engine_paths

        engine, _ = engine_paths(model_dir, branch)
        try:
            if backend == "auto" and not engine.exists():
                raise EngineError(f"{engine}: no engine (edge-geoloc compile --model {model_dir})")
            from edge_geoloc.runtime.tensorrt import TensorRTEncoder

            trt = probe.tensorrt()
            enc = TensorRTEncoder(model_dir, branch, card=card, trt=trt, cuda=probe.cuda_adapter())
            enc.fallback_reasons = reasons
            return enc
        except Exception as err:  # ImportError, CudaUnavailable, EngineError, a driver error
            if backend == "tensorrt":
                raise
            reasons.append(f"tensorrt: {type(err).__name__}: {err}")
            if engine.exists():  # an engine is there but cannot be used: say so loudly
                log.warning("%s: not using the TensorRT engine: %s", branch, err)
    if backend in ("auto", "onnxruntime-cuda"):
        if "CUDAExecutionProvider" in probe.ort_providers():
            enc = OrtEncoder(
                model_dir, branch, card=verify(model_dir, card, check_graphs=False), device="cuda", **options
            )
            enc.fallback_reasons = reasons
            return enc
        if backend == "onnxruntime-cuda":
            raise RuntimeError("ONNX Runtime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
        reasons.append("onnxruntime-cuda: no CUDAExecutionProvider")
    enc = OrtEncoder(model_dir, branch, card=verify(model_dir, card, check_graphs=False), device="cpu", **options)
    enc.fallback_reasons = reasons
    if backend == "auto" and reasons:
        log.info("%s encoder on ONNX Runtime CPU (%s)", branch, "; ".join(reasons))
    return enc
