"""TensorRT encoder: one engine, loaded once; pinned host and device buffers preallocated; its own stream.

Written against TensorRT 10's name-based API (``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``). Buffers are sized once from the
model card and the engine's batch profile (:func:`buffer_plan`); each call copies the batch into
the pinned input buffer, enqueues host->device, the engine and device->host on the encoder's
stream, and synchronizes once. The engine is refused (:func:`check_engine`) unless its sidecar
says it was built from this card's graph, by this TensorRT, for this GPU.

TensorRT and the CUDA bindings are passed in or imported here, never at module import.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.runtime.card import ATTENTION, DESCRIPTOR, INPUT, ModelCard, check_io, verify
from edge_geoloc.runtime.cuda import CudaAdapter, select_adapter
from edge_geoloc.runtime.encoder import Encoder
from edge_geoloc.runtime.engine import EngineError, check_engine, engine_paths, rebuild_hint


def buffer_plan(card: ModelCard, branch: str, max_batch: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every I/O buffer at the largest batch the engine accepts."""
    b = card.branch(branch)
    f32 = np.dtype(np.float32)
    return {
        INPUT: ((max_batch, 3, b.height, b.width), f32),
        DESCRIPTOR: ((max_batch, card.descriptor_dim), f32),
        ATTENTION: ((max_batch, *b.attention_grid), f32),
    }


def profile_shapes(card: ModelCard, branch: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) input shapes of the branch's optimization profile, from the card."""
    b = card.branch(branch)
    return tuple((n, 3, b.height, b.width) for n in (b.batch.min, b.batch.opt, b.batch.max))  # type: ignore[return-value]


class TensorRTEncoder(Encoder):
    backend = "tensorrt"

    def __init__(
        self,
        model_dir: str | Path,
        branch: str,
        card: ModelCard | None = None,
        trt: Any = None,
        cuda: CudaAdapter | None = None,
    ) -> None:
        model_dir = Path(model_dir)
        card = verify(model_dir, card, check_graphs=False)
        super().__init__(card, branch)
        self.trt = trt or importlib.import_module("tensorrt")
        self.cuda = cuda or select_adapter()
        self.gpu = self.cuda.device_info()
        self.sidecar = check_engine(model_dir, card, branch, self.trt.__version__, self.gpu)
        self.precision = self.sidecar.precision
        engine_file, _ = engine_paths(model_dir, branch)
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)
        self._runtime = self.trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_file.read_bytes())
        if self.engine is None:
            raise EngineError(
                f"{engine_file}: TensorRT could not deserialize the engine; {rebuild_hint(model_dir, branch)}"
            )
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        check_io(card, branch, [(n, tuple(self.engine.get_tensor_shape(n))) for n in names], engine_file)
        # The engine's own profile bounds the batch, whatever the card says (they agree: check_engine).
        _, _, max_shape = self.engine.get_tensor_profile_shape(INPUT, 0)
        self.max_batch = int(max_shape[0])
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.create_stream()
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, Any] = {}
        for name, (shape, dtype) in buffer_plan(card, branch, self.max_batch).items():
            engine_dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            if engine_dtype != dtype:
                raise EngineError(f"{engine_file}: tensor '{name}' is {engine_dtype}, expected {dtype}")
            self.host[name] = self.cuda.pinned_empty(shape, dtype)
            self.device[name] = self.cuda.device_alloc(self.host[name].nbytes)
            self.context.set_tensor_address(name, self.cuda.device_ptr(self.device[name]))
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.OUTPUT]

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(batch)
        host_in = self.host[INPUT][:n]
        host_in[...] = batch
        if not self.context.set_input_shape(INPUT, batch.shape):
            raise RuntimeError(f"TensorRT rejected input shape {batch.shape} (profile max batch {self.max_batch})")
        self.cuda.htod_async(self.device[INPUT], host_in, self.stream)
        if not self.context.execute_async_v3(self.cuda.stream_handle(self.stream)):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        for name in self.outputs:
            self.cuda.dtoh_async(self.host[name][:n], self.device[name], self.stream)
        self.cuda.synchronize(self.stream)
        return self.host[DESCRIPTOR][:n].copy(), self.host[ATTENTION][:n].copy()

    def close(self) -> None:
        self.context = None
        self.engine = None
        self.cuda.close()
