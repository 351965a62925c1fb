"""The TensorRT path without TensorRT: compile, sidecars and refusals, buffer sizing, the CUDA adapter.

Everything TensorRT- or CUDA-specific runs on FAKES (tests/fake_tensorrt.py, and the fake CUDA
runtime below); what is tested is our code around them.
"""

import ctypes
import json
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

pytest.importorskip("torch")  # the fixture export needs torch

from exportkit import copy_export, one_torch_thread, panoramas, small_export  # noqa: F401 (autouse fixture)
from fake_tensorrt import FakeCuda, FakeTensorRT

from edge_geoloc.runtime.card import CARD_FILE, load_card
from edge_geoloc.runtime.cuda import CudaPythonAdapter, CudaUnavailable, PyCudaAdapter, select_adapter
from edge_geoloc.runtime.encoder import OrtEncoder
from edge_geoloc.runtime.engine import EngineError, GpuInfo, engine_paths, read_sidecar
from edge_geoloc.runtime.tensorrt import TensorRTEncoder, buffer_plan, profile_shapes
from edge_geoloc.runtime.tensorrt_build import compile_model


@pytest.fixture
def compiled(tmp_path):
    out = copy_export(small_export(0.64), tmp_path / "m")
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda)
    sidecars = compile_model(out, fp16=True, workspace_mb=256, trt=trt, cuda=cuda)
    return out, trt, cuda, sidecars


def test_buffer_and_profile_sizes_come_from_the_card():
    card = load_card(small_export(0.64))
    assert profile_shapes(card, "aerial") == ((1, 3, 32, 32), (32, 3, 32, 32), (64, 3, 32, 32))
    plan = buffer_plan(card, "street", 16)
    assert plan == {
        "image": ((16, 3, 16, 64), np.dtype(np.float32)),
        "descriptor": ((16, 16), np.dtype(np.float32)),
        "attention": ((16, 2, 8), np.dtype(np.float32)),
    }


def test_compile_writes_engines_with_sidecars(compiled):
    out, trt, cuda, sidecars = compiled
    card = load_card(out)
    assert [s.branch for s in sidecars] == ["street", "aerial"]
    for s in sidecars:
        engine, side = engine_paths(out, s.branch)
        assert engine.exists() and read_sidecar(side) == s
        assert (s.precision, s.tensorrt_version, s.gpu_name, s.compute_capability) == (
            "fp16",
            "10.3.0-fake",
            "Fake Orin",
            "8.7",
        )
        assert s.onnx_sha256 == card.branch(s.branch).sha256 and s.profile == card.branch(s.branch).batch
    # What the builder was asked for: FP16, the workspace, one profile on the input from the card.
    assert trt.builds[1] == {
        "fp16": True,
        "workspace": 256 << 20,
        "profiles": [{"image": [[1, 3, 32, 32], [32, 3, 32, 32], [64, 3, 32, 32]]}],
    }
    # Precision follows the card when not given (the default recipe: fp32); no fast FP16 -> FP32.
    assert compile_model(out, trt=trt, cuda=cuda, branches=["street"])[0].precision == "fp32"
    assert (
        compile_model(out, fp16=True, trt=FakeTensorRT(cuda, fast_fp16=False), cuda=cuda, branches=["street"])[
            0
        ].precision
        == "fp32"
    )


def test_tensorrt_encoder_preallocates_once_and_copies_asynchronously(compiled):
    out, trt, cuda, _ = compiled
    enc = TensorRTEncoder(out, "street", trt=trt, cuda=cuda)
    allocs = [n for op, n in cuda.log if op == "alloc"]
    assert allocs == [16 * 3 * 16 * 64 * 4, 16 * 16 * 4, 16 * 2 * 8 * 4]  # max batch 16 from the profile
    assert enc.host["image"].shape == (16, 3, 16, 64)
    images = panoramas(20, seed=3)  # 20 > 16: two engine runs
    cuda.log.clear()
    desc, attn = enc.encode_with_attention(images)
    assert [op for op, _ in cuda.log] == ["htod", "dtoh", "dtoh", "sync"] * 2
    assert cuda.log[0][1] == 16 * 3 * 16 * 64 * 4 and cuda.log[4][1] == 4 * 3 * 16 * 64 * 4  # only what is used
    assert enc.context.executions == 2 and not any(op == "alloc" for op, _ in cuda.log)
    ref_desc, ref_attn = OrtEncoder(out, "street", intra_op_threads=1).encode_with_attention(images)
    np.testing.assert_allclose(desc, ref_desc, atol=1e-6)
    np.testing.assert_allclose(attn, ref_attn, atol=1e-6)
    enc.close()
    assert cuda.closed


def edit_sidecar(out, branch, **changes):
    _, side = engine_paths(out, branch)
    data = json.loads(side.read_text())
    data.update(changes)
    side.write_text(json.dumps(data))


def test_mismatched_corrupt_or_foreign_engines_are_refused(compiled):
    out, trt, cuda, _ = compiled
    engine, side = engine_paths(out, "street")

    def refused(match, trt=trt, cuda=cuda):
        with pytest.raises(EngineError, match=match) as err:
            TensorRTEncoder(out, "street", trt=trt, cuda=cuda)
        assert "rebuild it on this machine: edge-geoloc compile" in str(err.value)

    other_gpu = FakeCuda(GpuInfo("Fake A100", "8.0"))
    refused(
        r"built for Fake Orin \(compute 8\.7\), this GPU is Fake A100 \(compute 8\.0\)",
        FakeTensorRT(other_gpu),
        other_gpu,
    )
    newer = FakeTensorRT(cuda)
    newer.__version__ = "10.7.0"
    refused("built with TensorRT 10.3.0-fake, this is TensorRT 10.7.0", newer)

    good = engine.read_bytes()
    engine.write_bytes(good[: len(good) // 2])  # truncated copy
    refused("its bytes changed since the build")
    engine.write_bytes(good)

    edit_sidecar(out, "street", onnx_sha256="0" * 64)  # an engine left over from another export
    refused("built from another graph")
    compile_model(out, trt=trt, cuda=cuda, branches=["street"])

    card = yaml.safe_load((out / CARD_FILE).read_text())
    card["street"]["batch"] = {"min": 1, "opt": 4, "max": 8}
    (out / CARD_FILE).write_text(yaml.safe_dump(card, sort_keys=False))
    refused("batch profile")
    card["street"]["batch"] = {"min": 1, "opt": 1, "max": 16}
    (out / CARD_FILE).write_text(yaml.safe_dump(card, sort_keys=False))

    side.write_text("{not json")
    refused("unreadable engine sidecar")
    side.unlink()
    refused("no sidecar")
    engine.unlink()
    refused("no TensorRT engine")


def test_an_engine_tensorrt_cannot_deserialize_is_refused(compiled):
    out, trt, cuda, _ = compiled
    engine, _ = engine_paths(out, "aerial")
    engine.write_bytes(b"a plan from some other tool")
    from edge_geoloc.runtime.card import sha256_of

    edit_sidecar(out, "aerial", engine_sha256=sha256_of(engine))  # sidecar consistent, plan foreign
    with pytest.raises(EngineError, match="could not deserialize the engine; rebuild"):
        TensorRTEncoder(out, "aerial", trt=trt, cuda=cuda)


def test_compile_without_tensorrt_says_so(tmp_path, capsys):
    from edge_geoloc.cli import main

    out = copy_export(small_export(0.64), tmp_path / "m")
    if __import__("importlib").util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    assert main(["compile", "--model", str(out)]) == 1
    assert "TensorRT is not installed here" in capsys.readouterr().err


# --- the CUDA adapter ----------------------------------------------------------------------


class FakeCudaRuntime:
    """A FAKE of cuda-python's runtime module: 'device' memory is host memory, copies are memmove."""

    def __init__(self):
        self.keep = []  # buffers whose addresses were handed out
        self.freed = []
        self.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def _alloc(self, nbytes):
        buf = np.zeros(nbytes, np.uint8)
        self.keep.append(buf)
        return 0, buf.ctypes.data

    cudaMallocHost = _alloc
    cudaMalloc = _alloc

    def cudaGetDeviceProperties(self, i):
        return 0, SimpleNamespace(name=b"Fake Orin\x00\x00", major=8, minor=7)

    def cudaStreamCreate(self):
        return (0, 42)

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream):
        assert stream == 42
        ctypes.memmove(dst, src, nbytes)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)

    def cudaFree(self, ptr):
        self.freed.append(ptr)

    cudaFreeHost = cudaFree


def importer_of(modules):
    def importer(name):
        if name not in modules:
            raise ModuleNotFoundError(f"No module named '{name}'")
        return modules[name]

    return importer


def test_adapter_selection_prefers_pycuda_then_cuda_python():
    fake_pycuda = SimpleNamespace(
        Device=lambda i: SimpleNamespace(name=lambda: "Fake Orin", compute_capability=lambda: (8, 7))
    )
    both = {"pycuda.autoinit": object(), "pycuda.driver": fake_pycuda, "cuda.bindings.runtime": FakeCudaRuntime()}
    assert isinstance(select_adapter(importer=importer_of(both)), PyCudaAdapter)
    assert select_adapter(importer=importer_of(both)).device_info() == GpuInfo("Fake Orin", "8.7")
    assert isinstance(select_adapter("cuda-python", importer=importer_of(both)), CudaPythonAdapter)
    old_name = {"cuda.cudart": FakeCudaRuntime()}  # cuda-python before 12.x's cuda.bindings
    assert isinstance(select_adapter(importer=importer_of(old_name)), CudaPythonAdapter)
    with pytest.raises(CudaUnavailable, match=r"pycuda: ModuleNotFoundError.*; cuda-python: ModuleNotFoundError"):
        select_adapter(importer=importer_of({}))
    with pytest.raises(ValueError, match="unknown CUDA adapter"):
        select_adapter("opencl")


def test_cuda_python_adapter_round_trip_through_pinned_and_device_buffers():
    rt = FakeCudaRuntime()
    cuda = CudaPythonAdapter(importer_of({"cuda.bindings.runtime": rt}))
    assert cuda.device_info() == GpuInfo("Fake Orin", "8.7")
    stream = cuda.create_stream()
    host = cuda.pinned_empty((4, 3), np.float32)
    host[...] = np.arange(12, dtype=np.float32).reshape(4, 3)
    dev = cuda.device_alloc(host.nbytes)
    cuda.htod_async(dev, host[:2], stream)  # a partial batch: only its bytes move
    back = cuda.pinned_empty((4, 3), np.float32)
    back[...] = -1
    cuda.dtoh_async(back[:2], dev, stream)
    cuda.synchronize(stream)
    np.testing.assert_array_equal(back[:2], host[:2])
    assert (back[2:] == -1).all()
    cuda.close()
    assert len(rt.freed) == 3
