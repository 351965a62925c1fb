"""`edge-geoloc doctor` on the CPU path: a healthy setup passes; each check fails, with a line saying why,
when its failure is provoked (and the command then exits non-zero)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # the small export needs torch; doctor does not

from exportkit import copy_export, one_torch_thread, small_export  # noqa: F401 (autouse fixture)
from loopkit import street_map

from edge_geoloc.cli import main
from edge_geoloc.geo.nmea import format_gga
from edge_geoloc.localize import doctor as doctor_mod
from edge_geoloc.localize.doctor import Doctor
from edge_geoloc.runtime.engine import engine_paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    export = small_export()
    map_dir = street_map(export)
    frames = tmp_path_factory.mktemp("frames")
    for i in range(2):
        cv2.imwrite(str(frames / f"{i:04d}.png"), np.full((16, 64, 3), 90 + i, np.uint8))
    gga = format_gga(3601.0, 47.0, 9.0, quality=1, num_sats=8, hdop=0.9)
    nmea = frames.parent / "gps.nmea"
    nmea.write_text(gga + "\r\n")
    return export, map_dir, frames, nmea


def statuses(doc: Doctor) -> dict[str, tuple[str, str]]:
    return {r.name: (r.status, r.detail) for r in doc.run()}


def test_a_healthy_cpu_setup_passes_every_check(setup, capsys):
    export, map_dir, frames, nmea = setup
    s = statuses(Doctor(export, map_dir, str(frames), gps=str(nmea)))
    assert s["tensorrt"][0] in ("warn", "ok") and s["engines"][0] == "skip"  # no TensorRT here: ORT runs
    assert all(s[k][0] == "ok" for k in ("python", "onnxruntime", "export", "map bundle", "camera", "gnss")), s
    code = main(["doctor", "--model", str(export), "--map", str(map_dir), "--source", str(frames), "--gps", str(nmea)])
    out = capsys.readouterr().out
    assert code == 0 and out.strip().endswith("all checks passed") and len(out.strip().splitlines()) == 10


def test_missing_inputs_are_skipped_not_failed():
    s = statuses(Doctor())
    skipped = {k for k, (st, _) in s.items() if st == "skip"}
    assert skipped == {"export", "engines", "map bundle", "camera", "gnss", "mavlink"}


def test_an_old_python_fails(monkeypatch):
    monkeypatch.setattr(doctor_mod, "MIN_PYTHON", (99, 0))
    assert statuses(Doctor())["python"][0] == "FAIL"


def test_onnxruntime_that_does_not_import_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    status, detail = statuses(Doctor())["onnxruntime"]
    assert status == "FAIL" and "pip install onnxruntime" in detail


class FakeTrt:
    __version__ = "10.3.0"


def test_tensorrt_without_a_cuda_device_fails():
    def no_gpu():
        raise RuntimeError("cuInit failed: no CUDA-capable device is detected")

    status, detail = statuses(Doctor(tensorrt=FakeTrt, cuda=no_gpu))["tensorrt"]
    assert status == "FAIL" and "no CUDA-capable device" in detail


def test_a_changed_graph_fails_the_export_check(setup, tmp_path):
    export = copy_export(setup[0], tmp_path / "m")
    graph = export / "street.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph.write_bytes(bytes(data))
    status, detail = statuses(Doctor(export))["export"]
    assert status == "FAIL" and "street.onnx" in detail


def test_an_engine_without_its_sidecar_fails(setup, tmp_path):
    export = copy_export(setup[0], tmp_path / "m")
    engine, _ = engine_paths(export, "street")
    engine.write_bytes(b"not an engine")

    class Gpu:
        def device_info(self):
            from edge_geoloc.runtime.engine import GpuInfo

            return GpuInfo("Orin", "8.7")

    status, detail = statuses(Doctor(export, tensorrt=FakeTrt, cuda=Gpu))["engines"]
    assert status == "FAIL" and "sidecar" in detail and "edge-geoloc compile" in detail


def test_a_damaged_shard_and_a_map_of_another_encoder_fail(setup, tmp_path):
    export, map_dir, _, _ = setup
    bad = tmp_path / "map"
    shutil.copytree(map_dir, bad)
    graph = sorted(bad.rglob("*.hnsw"))[0]
    data = bytearray(graph.read_bytes())
    data[-5] ^= 0xFF
    graph.write_bytes(bytes(data))
    status, detail = statuses(Doctor(export, bad))["map bundle"]
    assert status == "FAIL" and "sha256" in detail
    other = small_export(seed=1)  # another encoder
    status, detail = statuses(Doctor(other, map_dir))["map bundle"]
    assert status == "FAIL" and str(map_dir) in detail


def test_a_camera_source_that_is_not_there_or_does_not_fit_fails(setup, tmp_path):
    status, detail = statuses(Doctor(source=str(tmp_path / "nowhere.mp4")))["camera"]
    assert status == "FAIL" and "nowhere.mp4" in detail
    square = tmp_path / "square"
    square.mkdir()
    cv2.imwrite(str(square / "0.png"), np.zeros((64, 64, 3), np.uint8))  # not a panorama
    status, detail = statuses(Doctor(source=str(square)))["camera"]
    assert status == "FAIL" and "not a 360-degree panorama" in detail


def test_a_gnss_source_without_fixes_fails_and_the_command_exits_non_zero(setup, tmp_path, capsys):
    junk = tmp_path / "junk.nmea"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    status, detail = statuses(Doctor(gps=str(junk)))["gnss"]
    assert status == "FAIL" and "no position fix" in detail
    status, detail = statuses(Doctor(gps=str(tmp_path / "missing.nmea")))["gnss"]
    assert status == "FAIL" and "missing.nmea" in detail
    assert main(["doctor", "--gps", str(junk)]) == 1
    out = capsys.readouterr().out
    assert any(line.startswith("FAIL  gnss") for line in out.splitlines()) and "1 check(s) failed: gnss" in out


def test_map_bundle_path_that_is_not_a_bundle_fails(tmp_path):
    status, detail = statuses(Doctor(map=Path(tmp_path)))["map bundle"]
    assert status == "FAIL" and str(tmp_path) in detail
