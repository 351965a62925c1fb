"""One small adapter over the two Python CUDA bindings the TensorRT path can use.

The target stack names pycuda; where it is missing (it needs the CUDA driver to build), NVIDIA's
cuda-python does the same job. The TensorRT encoder only needs: a stream, pinned host arrays,
device buffers, async copies both ways, a synchronize, and the GPU's name and compute
capability (for the engine sidecar). :func:`select_adapter` tries pycuda, then cuda-python, and
says what failed for each. Nothing here is imported before it is needed.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edge_geoloc.runtime.engine import GpuInfo


class CudaUnavailable(RuntimeError):
    """Neither pycuda nor cuda-python can be used here."""


class CudaAdapter(Protocol):
    name: str

    def device_info(self) -> GpuInfo: ...
    def create_stream(self) -> Any: ...
    def stream_handle(self, stream: Any) -> int: ...
    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...
    def device_alloc(self, nbytes: int) -> Any: ...
    def device_ptr(self, buffer: Any) -> int: ...
    def htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None: ...
    def dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None: ...
    def synchronize(self, stream: Any) -> None: ...
    def close(self) -> None: ...


class PyCudaAdapter:
    """pycuda: ``pycuda.autoinit`` makes the context on device 0 (and pops it at exit)."""

    name = "pycuda"

    def __init__(self, importer: Callable[[str], Any] = importlib.import_module) -> None:
        importer("pycuda.autoinit")
        self.cuda = importer("pycuda.driver")

    def device_info(self) -> GpuInfo:
        dev = self.cuda.Device(0)
        major, minor = dev.compute_capability()
        return GpuInfo(str(dev.name()), f"{major}.{minor}")

    def create_stream(self) -> Any:
        return self.cuda.Stream()

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def device_alloc(self, nbytes: int) -> Any:
        return self.cuda.mem_alloc(nbytes)

    def device_ptr(self, buffer: Any) -> int:
        return int(buffer)

    def htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None:
        self.cuda.memcpy_htod_async(dst, src, stream)

    def dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None:
        self.cuda.memcpy_dtoh_async(dst, src, stream)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()

    def close(self) -> None:  # pycuda frees its allocations when they are garbage collected
        pass


class CudaPythonAdapter:
    """NVIDIA cuda-python's runtime API (``cuda.bindings.runtime``, formerly ``cuda.cudart``)."""

    name = "cuda-python"

    def __init__(self, importer: Callable[[str], Any] = importlib.import_module) -> None:
        if TYPE_CHECKING:  # the checker sees NVIDIA's module (a stub made from it: .ci/cuda_stubs.py)
            from cuda.bindings import runtime as rt
        else:
            try:
                rt = importer("cuda.bindings.runtime")
            except ImportError:
                rt = importer("cuda.cudart")
        self.rt = rt
        self._host: list[int] = []
        self._device: list[int] = []

    def _call(self, result: Any) -> Any:
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:  # cudaSuccess
            raise RuntimeError(f"CUDA runtime error {err}")
        return values[0] if len(values) == 1 else values

    def device_info(self) -> GpuInfo:
        props = self._call(self.rt.cudaGetDeviceProperties(0))
        name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        return GpuInfo(name.rstrip("\x00"), f"{props.major}.{props.minor}")

    def create_stream(self) -> Any:
        return self._call(self.rt.cudaStreamCreate())

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def pinned_empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        ptr = int(self._call(self.rt.cudaMallocHost(nbytes)))
        self._host.append(ptr)
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return np.frombuffer(memoryview(raw), dtype=dtype).reshape(shape)  # the pinned bytes, writable

    def device_alloc(self, nbytes: int) -> Any:
        ptr = int(self._call(self.rt.cudaMalloc(nbytes)))
        self._device.append(ptr)
        return ptr

    def device_ptr(self, buffer: Any) -> int:
        return int(buffer)

    def htod_async(self, dst: Any, src: np.ndarray, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._call(self.rt.cudaMemcpyAsync(int(dst), src.ctypes.data, src.nbytes, kind, stream))

    def dtoh_async(self, dst: np.ndarray, src: Any, stream: Any) -> None:
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._call(self.rt.cudaMemcpyAsync(dst.ctypes.data, int(src), dst.nbytes, kind, stream))

    def synchronize(self, stream: Any) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream))

    def close(self) -> None:
        for ptr in self._device:
            self.rt.cudaFree(ptr)
        for ptr in self._host:
            self.rt.cudaFreeHost(ptr)
        self._device.clear()
        self._host.clear()


ADAPTERS: dict[str, type] = {"pycuda": PyCudaAdapter, "cuda-python": CudaPythonAdapter}


def select_adapter(prefer: str | None = None, importer: Callable[[str], Any] = importlib.import_module) -> CudaAdapter:
    """pycuda when it loads, else cuda-python; ``prefer`` forces one. Failures are listed, not hidden."""
    if prefer is not None and prefer not in ADAPTERS:
        raise ValueError(f"unknown CUDA adapter {prefer!r} (expected one of {', '.join(ADAPTERS)})")
    failures = []
    for name in [prefer] if prefer else list(ADAPTERS):
        try:
            return ADAPTERS[name](importer)
        except Exception as err:  # ImportError, or a driver error while making the context
            failures.append(f"{name}: {type(err).__name__}: {err}")
    raise CudaUnavailable("no CUDA binding for TensorRT (" + "; ".join(failures) + ")")
