"""The device install end to end: the wheel, installed into a fresh venv without the workstation extra,
runs `edge-geoloc run` on a prepared map and export, and `edge-geoloc doctor`; no torch, no matplotlib.

The map and export are prepared here, on the workstation side (the small export needs torch); the
fresh venv gets only the wheel and its base dependencies (from the machine's package index or wheel
cache, as pip is configured). It takes a minute or so: most of it pip installing OpenCV and ONNX Runtime.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")  # preparing the small export needs torch; the device install does not

from exportkit import one_torch_thread, small_export  # noqa: F401 (autouse fixture)
from loopkit import street_map
from test_localize_loop import write_folder

ROOT = Path(__file__).resolve().parents[1]
WORKSTATION_ONLY = {"torch", "matplotlib", "tqdm", "onnx"}

pytestmark = pytest.mark.slow


def _pip(venv: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory) -> Path:
    """A fresh venv with the wheel of this tree installed (base dependencies only)."""
    work = tmp_path_factory.mktemp("device")
    wheels = work / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("edge_geoloc-*.whl")
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    p = _pip(venv, "install", "--quiet", f"{wheel}[device]")
    assert p.returncode == 0, p.stderr[-3000:]
    return venv


def test_the_device_install_holds_no_workstation_dependency(device_venv):
    listed = _pip(device_venv, "list", "--format=json")
    names = {d["name"].lower() for d in json.loads(listed.stdout)}
    assert not names & WORKSTATION_ONLY, names & WORKSTATION_ONLY
    assert {"numpy", "onnxruntime", "hnswlib", "pyproj", "opencv-python-headless"} <= names
    assert {"pymavlink", "pyulog", "pyserial"} <= names  # the drone's autopilot link (the mavlink extra)
    # The recipes and camera models ship as package data (not found through the source tree).
    code = (
        "import edge_geoloc, pathlib; root = pathlib.Path(edge_geoloc.__file__).parent;"
        "print(sorted(p.name for p in (root / 'configs' / 'export').glob('*.yaml')));"
        "print((root / 'configs' / 'camera' / 'uav-demo.yaml').is_file())"
    )
    out = subprocess.run([str(device_venv / "bin" / "python"), "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["['jetson-orin-fp16.yaml', 'x86-cpu.yaml']", "True"]


def test_edge_geoloc_run_and_doctor_in_the_device_install(device_venv, tmp_path):
    export = small_export()
    map_dir = street_map(export)
    frames = tmp_path / "frames"
    write_folder(frames, 6)
    out, summary = tmp_path / "fixes.jsonl", tmp_path / "summary.json"
    exe = str(device_venv / "bin" / "edge-geoloc")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    run = [exe, "run", "--map", str(map_dir), "--model", str(export), "--source", str(frames), "--out", str(out),
           "--trust-uncalibrated"]  # fmt: skip
    run += ["--threads", "1", "--rate-hz", "2", "--summary-json", str(summary)]
    p = subprocess.run(run, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    s = json.loads(summary.read_text())
    assert len(rows) == s["frames"] == 6 and s["ended_by"] == "end of source"
    assert rows[0]["source"] == "vision" and rows[-1]["lat"] is not None
    doctor = [exe, "doctor", "--model", str(export), "--map", str(map_dir), "--source", str(frames)]
    p = subprocess.run(doctor, capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "FAIL" not in p.stdout and "map bundle" in p.stdout
    # A workstation command says what to install instead of a traceback.
    p = subprocess.run([exe, "flops", "--config", "tiny"], capture_output=True, text=True, timeout=120, env=env)
    if p.returncode != 0:  # flops is analytic but reads model configs through the model package (torch)
        assert "pip install 'edge-geoloc[workstation]'" in p.stderr and "Traceback" not in p.stderr
