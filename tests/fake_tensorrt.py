"""FAKES of TensorRT and of a CUDA binding, clearly not the real libraries.

Neither TensorRT nor pycuda / cuda-python can be installed on these machines. These fakes follow
the documented TensorRT 10 Python API surface our code calls (Builder, OnnxParser, builder config,
optimization profile, Runtime, engine and execution context by tensor name) closely enough to
exercise OUR plumbing: engine + sidecar writing, refusal, buffer sizing, address binding, async
copies and chunking. The fake "engine" is the ONNX graph itself, executed by ONNX Runtime; the fake
"device memory" is numpy byte arrays keyed by integer addresses. Nothing here says anything about
TensorRT's numerics or speed.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_geoloc.runtime.engine import GpuInfo

FAKE_PLAN_MAGIC = b"FAKE-TRT-PLAN\n"


class FakeCuda:
    """A fake CUDA adapter (same methods as runtime.cuda.CudaAdapter); memory is numpy, copies are logged."""

    name = "fake-cuda"

    def __init__(self, gpu: GpuInfo | None = None) -> None:
        self.gpu = gpu or GpuInfo("Fake Orin", "8.7")
        self.memory: dict[int, np.ndarray] = {}
        self._next = 1 << 20
        self.log: list[tuple[str, int]] = []
        self.closed = False

    def device_info(self) -> GpuInfo:
        return self.gpu

    def create_stream(self) -> Any:
        return {"stream": len(self.log)}

    def stream_handle(self, stream: Any) -> int:
        return id(stream)

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def device_alloc(self, nbytes: int) -> int:
        ptr = self._next
        self._next += nbytes + 256
        self.memory[ptr] = np.zeros(nbytes, np.uint8)
        self.log.append(("alloc", nbytes))
        return ptr

    def device_ptr(self, buffer: Any) -> int:
        return int(buffer)

    def htod_async(self, dst: int, src: np.ndarray, stream: Any) -> None:
        assert src.flags.c_contiguous
        self.memory[dst][: src.nbytes] = src.reshape(-1).view(np.uint8)
        self.log.append(("htod", src.nbytes))

    def dtoh_async(self, dst: np.ndarray, src: int, stream: Any) -> None:
        assert dst.flags.c_contiguous
        dst.reshape(-1).view(np.uint8)[:] = self.memory[src][: dst.nbytes]
        self.log.append(("dtoh", dst.nbytes))

    def synchronize(self, stream: Any) -> None:
        self.log.append(("sync", 0))

    def close(self) -> None:
        self.closed = True


class _IOMode(Enum):
    INPUT = 0
    OUTPUT = 1


class _Flag(Enum):
    FP16 = 0


class _Pool(Enum):
    WORKSPACE = 0


class FakeTensorRT:
    """Module-like fake of ``tensorrt`` bound to one FakeCuda (its 'device')."""

    __version__ = "10.3.0-fake"
    TensorIOMode = _IOMode
    BuilderFlag = _Flag
    MemoryPoolType = _Pool

    class NetworkDefinitionCreationFlag:  # TensorRT 10: no EXPLICIT_BATCH member any more
        pass

    class Logger:
        WARNING = 2

        def __init__(self, level: int) -> None:
            self.level = level

    def __init__(self, cuda: FakeCuda, fast_fp16: bool = True) -> None:
        self.cuda = cuda
        self.fast_fp16 = fast_fp16
        self.builds: list[dict[str, Any]] = []
        fake = self

        class Builder:
            def __init__(self, logger: Any) -> None:
                self.platform_has_fast_fp16 = fake.fast_fp16

            def create_network(self, flags: int = 0) -> dict[str, Any]:
                return {"flags": flags, "onnx": None}

            def create_builder_config(self) -> _Config:
                return _Config()

            def create_optimization_profile(self) -> _Profile:
                return _Profile()

            def build_serialized_network(self, network: dict[str, Any], config: _Config) -> bytes:
                header = {"fp16": config.fp16, "workspace": config.workspace, "profiles": config.profiles}
                fake.builds.append(header)
                head = json.dumps(header).encode()
                return FAKE_PLAN_MAGIC + len(head).to_bytes(4, "little") + head + network["onnx"]

        class OnnxParser:
            def __init__(self, network: dict[str, Any], logger: Any) -> None:
                self.network = network
                self.num_errors = 0

            def parse(self, data: bytes) -> bool:
                try:
                    ort.InferenceSession(data, providers=["CPUExecutionProvider"])
                except Exception:
                    self.num_errors = 1
                    return False
                self.network["onnx"] = data
                return True

            def get_error(self, i: int) -> str:
                return "fake parser: not an ONNX graph"

        class Runtime:
            def __init__(self, logger: Any) -> None:
                pass

            def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
                if not data.startswith(FAKE_PLAN_MAGIC):
                    return None  # TensorRT logs an error and returns None for a foreign plan
                n = len(FAKE_PLAN_MAGIC)
                size = int.from_bytes(data[n : n + 4], "little")
                header = json.loads(data[n + 4 : n + 4 + size])
                return _Engine(fake, header, data[n + 4 + size :])

        self.Builder = Builder
        self.OnnxParser = OnnxParser
        self.Runtime = Runtime

    @staticmethod
    def nptype(dtype: str) -> type:
        return {"float32": np.float32, "int64": np.int64}[dtype]


class _Config:
    def __init__(self) -> None:
        self.fp16 = False
        self.workspace = 0
        self.profiles: list[dict[str, list[list[int]]]] = []

    def set_memory_pool_limit(self, pool: _Pool, nbytes: int) -> None:
        self.workspace = nbytes

    def set_flag(self, flag: _Flag) -> None:
        self.fp16 |= flag is _Flag.FP16

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1


class _Profile:
    def __init__(self) -> None:
        self.shapes: dict[str, list[list[int]]] = {}

    def set_shape(self, name: str, lo: tuple[int, ...], opt: tuple[int, ...], hi: tuple[int, ...]) -> None:
        self.shapes[name] = [list(lo), list(opt), list(hi)]


_ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64"}


class _Engine:
    def __init__(self, fake: FakeTensorRT, header: dict[str, Any], onnx: bytes) -> None:
        self.fake = fake
        self.header = header
        self.session = ort.InferenceSession(onnx, providers=["CPUExecutionProvider"])
        self.inputs = {t.name: t for t in self.session.get_inputs()}
        self.outputs = {t.name: t for t in self.session.get_outputs()}
        self.names = [*self.inputs, *self.outputs]

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> _IOMode:
        return _IOMode.INPUT if name in self.inputs else _IOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        t = self.inputs.get(name) or self.outputs[name]
        return tuple(d if isinstance(d, int) else -1 for d in t.shape)

    def get_tensor_dtype(self, name: str) -> str:
        t = self.inputs.get(name) or self.outputs[name]
        return _ORT_TYPES[t.type]

    def get_tensor_profile_shape(self, name: str, index: int) -> list[list[int]]:
        return self.header["profiles"][index][name]

    def create_execution_context(self) -> _Context:
        return _Context(self)


class _Context:
    def __init__(self, engine: _Engine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.executions = 0

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        self.addresses[name] = ptr
        return True

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        if not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        memory = self.engine.fake.cuda.memory
        feeds = {}
        for name in self.engine.inputs:
            shape = self.shapes[name]
            n = int(np.prod(shape)) * 4
            feeds[name] = memory[self.addresses[name]][:n].view(np.float32).reshape(shape)
        outs = self.engine.session.run(list(self.engine.outputs), feeds)
        for name, value in zip(self.engine.outputs, outs):
            raw = np.ascontiguousarray(value, np.float32).reshape(-1).view(np.uint8)
            memory[self.addresses[name]][: raw.size] = raw
        self.executions += 1
        return True
