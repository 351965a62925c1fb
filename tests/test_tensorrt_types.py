"""The TensorRT path is type-checked against NVIDIA's API surface (tensorrt-stubs), and that check bites.

TensorRT cannot be installed here, so `make typecheck` runs mypy on runtime/tensorrt.py and
runtime/tensorrt_build.py with the stubs (.ci/mypy-tensorrt.ini). These tests run the same check on
the real modules (it passes) and on temporary copies with a misspelt or a removed TensorRT call (it
fails, naming the call). Skipped only where `make install` has not put mypy and the stubs in place.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".ci" / "mypy-tensorrt.ini"
STUBS = Path(os.environ.get("EDGE_GEOLOC_TYPESTUBS", ROOT / ".venv" / "typestubs"))

pytest.importorskip("mypy", reason="mypy comes with the dev extra (make install)")
if not (STUBS / "tensorrt" / "__init__.pyi").exists():
    pytest.skip(f"no tensorrt-stubs in {STUBS} (make install puts them there)", allow_module_level=True)

pytestmark = pytest.mark.slow


def mypy(*files: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "MYPYPATH": str(STUBS)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(CONFIG), *map(str, files)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def broken_copy(tmp_path: Path, module: str, old: str, new: str, i: int) -> Path:
    src = ROOT / "edge_geoloc" / "runtime" / module
    text = src.read_text()
    assert old in text, f"{module} no longer calls {old}: update this test"
    out = tmp_path / f"broken{i}_{module}"  # not named tensorrt.py: that would shadow the stubs
    out.write_text(text.replace(old, new))
    return out


def assert_each_copy_fails(tmp_path: Path, cases: list[tuple[str, str, str, str]]) -> None:
    """Each case (module, text, broken text, name) as a broken copy: mypy fails on every copy, naming ``name``."""
    copies = [broken_copy(tmp_path, module, old, new, i) for i, (module, old, new, _) in enumerate(cases)]
    broken = mypy(*copies)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    for copy, (_, _, _, name) in zip(copies, cases):
        errors = [line for line in broken.stdout.splitlines() if line.startswith(str(copy)) and "error" in line]
        assert any(name in line for line in errors), f"{copy.name}: {name} not flagged:\n{broken.stdout}"


def test_the_tensorrt_path_passes_and_misspelt_or_removed_calls_fail(tmp_path):
    real = mypy()  # the config's files: the two real modules
    assert real.returncode == 0, real.stdout + real.stderr

    cases = [
        # a misspelt method on the execution context (encoder)
        ("tensorrt.py", ".execute_async_v3(", ".execute_async_v4(", "execute_async_v4"),
        # a misspelt enum member (encoder)
        ("tensorrt.py", "TensorIOMode.OUTPUT", "TensorIOMode.OUTPUTS", "OUTPUTS"),
        # TensorRT 10 removed IBuilder.build_engine (engine build)
        ("tensorrt_build.py", "builder.build_serialized_network(", "builder.build_engine(", "build_engine"),
        # a misspelt builder-config call (engine build)
        (
            "tensorrt_build.py",
            "config.set_memory_pool_limit(",
            "config.set_memory_pool_limits(",
            "set_memory_pool_limits",
        ),
    ]
    assert_each_copy_fails(tmp_path, cases)


def test_the_stubs_do_not_shadow_a_missing_tensorrt():
    # Installed into site-packages, the stubs' bare tensorrt/ folder would import as an empty namespace
    # package, and every "is TensorRT here?" probe (encoder auto, doctor, compile) would be fooled.
    probe = subprocess.run([sys.executable, "-c", "import tensorrt; print(tensorrt.__file__)"], capture_output=True)
    has_real = probe.returncode == 0 and probe.stdout.strip() not in (b"", b"None")
    assert probe.returncode != 0 or has_real, "an empty 'tensorrt' namespace package is importable"


def test_the_cuda_python_adapter_passes_and_misspelt_calls_or_members_fail(tmp_path):
    """runtime/cuda.py against the stub .ci/cuda_stubs.py writes from NVIDIA's cuda-bindings (its own names,
    enum members and embedded signatures): the real adapter passes; each broken copy fails, naming the call."""
    if not (STUBS / "cuda" / "bindings" / "runtime.pyi").exists():
        pytest.skip(f"no cuda-bindings stub in {STUBS} (make install writes it)")
    cases = [
        ("cuda.py", "rt.cudaMemcpyAsync(int(dst)", "rt.cudaMemcpyAsyn(int(dst)", "cudaMemcpyAsyn"),  # misspelt
        (
            "cuda.py",
            "cudaMemcpyKind.cudaMemcpyHostToDevice",
            "cudaMemcpyKind.cudaMemcpyHostToDev",
            "cudaMemcpyHostToDev",
        ),
        ("cuda.py", "rt.cudaStreamSynchronize(stream)", "rt.cudaStreamSynchronize(stream, 0)", "cudaStreamSynchronize"),
        ("cuda.py", "rt.cudaMallocHost(nbytes)", "rt.cudaHostAlloc(nbytes)", "cudaHostAlloc"),  # takes (size, flags)
    ]
    assert_each_copy_fails(tmp_path, cases)
