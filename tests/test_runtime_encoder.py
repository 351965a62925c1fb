"""Device-side encoders: one preprocessing for every backend, bad input, backend choice, no torch."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("torch")  # the fixture export needs torch; the encoders under test do not

from exportkit import copy_export, one_torch_thread, panoramas, small_export  # noqa: F401 (autouse fixture)
from fake_tensorrt import FakeCuda, FakeTensorRT

from edge_geoloc.export.torch_backend import TorchEncoder
from edge_geoloc.runtime import InputError, OffsetRegressor, open_encoder, preprocess
from edge_geoloc.runtime.encoder import BackendProbe, OrtEncoder
from edge_geoloc.runtime.engine import EngineError
from edge_geoloc.runtime.tensorrt import TensorRTEncoder
from edge_geoloc.runtime.tensorrt_build import compile_model


def no_tensorrt():
    raise ImportError("No module named 'tensorrt'")


CPU_ONLY = BackendProbe(tensorrt=no_tensorrt, cuda_adapter=FakeCuda, ort_providers=lambda: ["CPUExecutionProvider"])


def test_bad_input_is_refused_and_the_encoder_keeps_serving():
    enc = OrtEncoder(small_export(0.64), "street", intra_op_threads=1)
    good = panoramas(2)
    reference = enc.encode(good)
    bad_calls = {  # message expected -> images
        "expected dtype uint8": [good[0].astype(np.float32)],
        r"expected HxWx3 \(3 channels\), got shape \(32, 128, 2\)": [good[0][..., :2]],
        r"expected HxWx3 \(3 channels\), got shape \(32, 128\)": [good[0][..., 0]],
        "empty batch": [],
        "got a single array": good[0],
        "too small": [good[0][:1, :1]],
        "expected a numpy array, got list": [[1, 2, 3]],
    }
    for expected, images in bad_calls.items():
        with pytest.raises(InputError, match=expected):
            enc.encode(images)
        np.testing.assert_array_equal(enc.encode(good), reference)  # the next call is served as before
    with pytest.raises(InputError, match=r"takes \(N, 3, 16, 64\) batches"):
        enc.run(np.zeros((1, 3, 16, 65), np.float32))
    with pytest.raises(InputError, match="float32"):
        enc.run(np.zeros((1, 3, 16, 64), np.float64))
    with pytest.raises(InputError, match="empty"):
        enc.run(np.zeros((0, 3, 16, 64), np.float32))


def test_batches_beyond_the_profile_are_chunked():
    enc = OrtEncoder(small_export(0.64), "street", intra_op_threads=1)
    assert enc.max_batch == 16  # the default recipe's street profile, read from the card
    images = panoramas(20, seed=5)
    desc, attn = enc.encode_with_attention(images)
    assert desc.shape == (20, 16) and attn.shape == (20, 2, 8)
    one_by_one = np.concatenate([enc.encode(images[i : i + 1]) for i in range(20)])
    np.testing.assert_allclose(desc, one_by_one, atol=1e-6)


def test_every_backend_receives_identical_input_tensors(tmp_path):
    out = copy_export(small_export(0.64), tmp_path / "m")
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda)
    compile_model(out, trt=trt, cuda=cuda, branches=["street"])
    encoders = [
        OrtEncoder(out, "street", intra_op_threads=1),
        TorchEncoder(out, "street"),
        TensorRTEncoder(out, "street", trt=trt, cuda=cuda),
    ]
    seen = {}
    for enc in encoders:
        infer = enc._infer

        def spy(batch, enc=enc, infer=infer):
            seen[enc.backend] = batch.copy()
            return infer(batch)

        enc._infer = spy
    images = list(panoramas(3, height=40, width=160, seed=7))  # not the input size: resized for every backend
    results = {enc.backend: enc.encode(images) for enc in encoders}
    expected = preprocess(images, encoders[0].card.input_spec("street"), is_panorama=True)
    assert set(seen) == {"onnxruntime", "torch", "tensorrt"}
    for backend, batch in seen.items():
        assert batch.tobytes() == expected.tobytes(), backend
    np.testing.assert_allclose(results["torch"], results["onnxruntime"], atol=1e-5)
    np.testing.assert_allclose(results["tensorrt"], results["onnxruntime"], atol=1e-6)


def test_auto_picks_onnxruntime_cpu_without_tensorrt_or_cuda():
    out = small_export(0.64)
    enc = open_encoder(out, "aerial", probe=CPU_ONLY, intra_op_threads=1)
    assert enc.backend == "onnxruntime" and enc.threads == (1, 1)
    assert [r.split(":")[0] for r in enc.fallback_reasons] == ["tensorrt", "onnxruntime-cuda"]
    with pytest.raises(RuntimeError, match="no CUDAExecutionProvider"):
        open_encoder(out, "aerial", backend="onnxruntime-cuda", probe=CPU_ONLY)
    with pytest.raises(ValueError, match="unknown backend 'tflite'"):
        open_encoder(out, "aerial", backend="tflite")
    with pytest.raises(ValueError, match="unknown branch"):
        open_encoder(out, "satellite")
    with pytest.raises(ValueError, match="no drone branch"):  # an export without one (issue 7)
        open_encoder(out, "drone")


def test_auto_picks_tensorrt_with_an_engine_and_falls_back_from_a_foreign_one(tmp_path):
    out = copy_export(small_export(0.64), tmp_path / "m")
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda)
    probe = BackendProbe(
        tensorrt=lambda: trt, cuda_adapter=lambda: cuda, ort_providers=lambda: ["CPUExecutionProvider"]
    )
    # TensorRT importable but no engine compiled yet: ONNX Runtime, with the reason recorded.
    enc = open_encoder(out, "street", probe=probe)
    assert enc.backend == "onnxruntime" and "no engine" in enc.fallback_reasons[0]
    compile_model(out, trt=trt, cuda=cuda)
    assert open_encoder(out, "street", probe=probe).backend == "tensorrt"
    # The same engine on another GPU: auto refuses it and keeps working on ONNX Runtime ...
    other = FakeCuda(gpu=type(cuda.gpu)("Fake A100", "8.0"))
    probe_other = BackendProbe(
        tensorrt=lambda: FakeTensorRT(other), cuda_adapter=lambda: other, ort_providers=lambda: []
    )
    enc = open_encoder(out, "street", probe=probe_other)
    assert enc.backend == "onnxruntime" and "rebuild" in enc.fallback_reasons[0]
    # ... and an explicit request for TensorRT fails with the reason.
    with pytest.raises(EngineError, match="this GPU is Fake A100"):
        open_encoder(out, "street", backend="tensorrt", probe=probe_other)


def test_offset_regressor_matches_torch():
    import torch

    from edge_geoloc.train.checkpoint import load_model

    out = small_export(0.64)
    reg = OffsetRegressor(out)
    model, _ = load_model(reg.card.checkpoint)
    rng = np.random.default_rng(0)
    s, a = rng.standard_normal((1, 16)).astype(np.float32), rng.standard_normal((3, 16)).astype(np.float32)
    got = reg.predict(s[0], a)  # one street descriptor against three candidate tiles
    with torch.no_grad():
        ref = model.offset(torch.from_numpy(np.repeat(s, 3, 0)), torch.from_numpy(a)).numpy()
    assert got.shape == (3, 2) and got.dtype == np.float64
    np.testing.assert_allclose(got, ref, atol=1e-4)
    with pytest.raises(InputError, match="expected street"):
        reg.predict(s[:, :8], a)
    with pytest.raises(InputError, match="empty"):
        reg.predict(s, a[:0])


def test_onnxruntime_encoder_runs_with_torch_blocked():
    out = small_export(0.64)
    code = textwrap.dedent(
        f"""
        import sys
        sys.modules["torch"] = None
        import numpy as np
        from edge_geoloc.runtime import open_encoder, OffsetRegressor
        street = open_encoder({str(out)!r}, "street", intra_op_threads=1)
        aerial = open_encoder({str(out)!r}, "aerial", intra_op_threads=1)
        rng = np.random.default_rng(0)
        s = street.encode(rng.integers(0, 256, (2, 32, 128, 3), dtype=np.uint8))
        a, attn = aerial.encode_with_attention(rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8))
        off = OffsetRegressor({str(out)!r}).predict(s[0], a)
        assert sys.modules["torch"] is None
        print(street.backend, s.shape, a.shape, attn.shape, off.shape)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[0] == "onnxruntime" and "(2, 16) (3, 16) (3, 4, 4) (3, 2)" in proc.stdout
