"""TensorRT encoder: one engine, loaded once; pinned host and device buffers preallocated; its own stream.

Written against TensorRT 10's name-based API (``num_io_tensors``, ``get_tensor_name``,
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``). Buffers are sized once from the
model card and the engine's batch profile (:func:`buffer_plan`); each call copies the batch into
the pinned input buffer, enqueues host->device, the engine and device->host on the encoder's
stream, and synchronizes once. The engine is refused (:func:`check_engine`) unless its sidecar
says it was built from this card's graph, by this TensorRT, for this GPU.

TensorRT and the CUDA bindings are passed in or imported here, never at module import.

Type-checked against NVIDIA's API surface although TensorRT cannot run here: under ``TYPE_CHECKING``
the module the encoder drives is ``tensorrt`` itself (the ``tensorrt-stubs`` package), while at run
time it is whatever was passed in (the real module, or the tests' fakes). ``make typecheck`` runs
mypy on this file and :mod:`edge_geoloc.runtime.tensorrt_build` (tests/test_tensorrt_types.py proves
that a misspelt call fails it).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_geoloc.runtime.card import ATTENTION, DESCRIPTOR, INPUT, ModelCard, check_io, verify
from edge_geoloc.runtime.cuda import CudaAdapter, select_adapter
from edge_geoloc.runtime.encoder import Encoder
from edge_geoloc.runtime.engine import EngineError, check_engine, engine_paths, rebuild_hint

if TYPE_CHECKING:  # the checker sees NVIDIA's API (tensorrt-stubs); nothing is imported at run time
    import tensorrt as trt_api


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
        if TYPE_CHECKING:
            import tensorrt as api
        else:  # the tensorrt module, or a stand-in with its surface (tests)
            api = trt or importlib.import_module("tensorrt")
        self.trt = api
        self.cuda = cuda or select_adapter()
        self.gpu = self.cuda.device_info()
        self.sidecar = check_engine(model_dir, card, branch, self.trt.__version__, self.gpu)
        self.precision = self.sidecar.precision
        engine_file, _ = engine_paths(model_dir, branch)
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)
        self._runtime = self.trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(engine_file.read_bytes())
        if engine is None:
            raise EngineError(
                f"{engine_file}: TensorRT could not deserialize the engine; {rebuild_hint(model_dir, branch)}"
            )
        self.engine: trt_api.ICudaEngine | None = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        dims = [(n, engine.get_tensor_shape(n)) for n in names]
        # Dims iterates (pybind11's sequence protocol); the stubs declare __getitem__/__len__ but no __iter__.
        check_io(card, branch, [(n, tuple(d)) for n, d in dims], engine_file)  # type: ignore[arg-type]
        # The engine's own profile bounds the batch, whatever the card says (they agree: check_engine).
        _, _, max_shape = engine.get_tensor_profile_shape(INPUT, 0)
        self.max_batch = int(max_shape[0])
        self.context: trt_api.IExecutionContext | None = engine.create_execution_context()
        context = self.context
        self.stream = self.cuda.create_stream()
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, Any] = {}
        for name, (shape, dtype) in buffer_plan(card, branch, self.max_batch).items():
            engine_dtype = np.dtype(self.trt.nptype(engine.get_tensor_dtype(name)))
            if engine_dtype != dtype:
                raise EngineError(f"{engine_file}: tensor '{name}' is {engine_dtype}, expected {dtype}")
            self.host[name] = self.cuda.pinned_empty(shape, dtype)
            self.device[name] = self.cuda.device_alloc(self.host[name].nbytes)
            context.set_tensor_address(name, self.cuda.device_ptr(self.device[name]))
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == self.trt.TensorIOMode.OUTPUT]

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.context is None:
            raise RuntimeError("TensorRT encoder is closed")
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
