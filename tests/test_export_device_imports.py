"""The device-side half of export and runtime imports with torch blocked (Jetson images have no torch)."""

import subprocess
import sys

import pytest

TORCH_FREE = [
    "edge_geoloc.runtime.card",
    "edge_geoloc.runtime.encoder",
    "edge_geoloc.runtime.engine",
    "edge_geoloc.runtime.cuda",
    "edge_geoloc.runtime.tensorrt",
    "edge_geoloc.runtime.offset",
    "edge_geoloc.export.flops",
    "edge_geoloc.export.recipe",
    "edge_geoloc.runtime.tensorrt_build",
    "edge_geoloc.export.cli",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_imports_with_torch_blocked(module):
    code = f"import sys; sys.modules['torch'] = None; import {module}"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_recipes_load_and_reject_bad_values(tmp_path):
    from edge_geoloc.config import ConfigError
    from edge_geoloc.export.recipe import load_recipe

    jetson, x86 = load_recipe("jetson-orin-fp16"), load_recipe("x86-cpu")
    assert (jetson.runtime, jetson.precision) == ("tensorrt", "fp16") and x86.precision == "fp32"
    assert x86.aerial_batch.max == 64 and load_recipe(None).opset == 17
    bad = tmp_path / "bad.yaml"
    bad.write_text("target: x\nprecision: fp16\n")  # FP16 is TensorRT's job
    with pytest.raises(ConfigError, match="runtime: tensorrt"):
        load_recipe(bad)
    bad.write_text("target: x\nopset: 9\n")
    with pytest.raises(ConfigError, match="opset"):
        load_recipe(bad)
    bad.write_text("target: x\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match="unknown key 'batchsize'"):
        load_recipe(bad)
