"""Device-side code never imports torch: the Jetson image runs without it."""

import subprocess
import sys

import pytest

DEVICE_SIDE = [
    "edge_geoloc.geo",
    "edge_geoloc.evaluate",
    "edge_geoloc.runtime",
    "edge_geoloc.maps",
    "edge_geoloc.localize",
    "edge_geoloc.world",
    "edge_geoloc.data",
    "edge_geoloc.cli",
]


@pytest.mark.parametrize("module", DEVICE_SIDE)
def test_imports_with_torch_blocked(module):
    code = f"import sys; sys.modules['torch'] = None; import {module}; assert 'torch' not in sys.modules or sys.modules['torch'] is None"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_blocking_really_blocks():
    # The check above is meaningful only if importing torch fails under the block.
    code = "import sys; sys.modules['torch'] = None; import torch"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr
