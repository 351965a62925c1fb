"""Small random-weight checkpoints and their exports, made once per test process (about a second each).

Tests that change files must work on a copy (:func:`copy_export`), never on the cached export.
Torch runs these tiny models on one thread: on the shared 2-core machine, waking a second
thread for each 32-wide matmul made an export 4x slower under load. Import ``one_torch_thread``
into a test module to apply it to each of its tests (an autouse fixture; the setting is restored).
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest


@contextlib.contextmanager
def torch_threads(n: int = 1) -> Iterator[None]:
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    with torch_threads(1):
        yield


SMALL = {"dim": 32, "depth": 3, "heads": 2, "descriptor_dim": 16, "prune_at": 1, "offset_hidden": 16}


def small_config(
    keep_ratio: float = 0.64,
    street: tuple[int, int] = (16, 64),
    aerial: tuple[int, int] = (32, 32),
    stem: str = "patch",
):
    from edge_geoloc.model import BranchConfig, load_model_config

    cfg = load_model_config("tiny").with_(**SMALL, keep_ratio=keep_ratio, stem=stem)
    return cfg.with_(street=BranchConfig(*street, 8), aerial=BranchConfig(*aerial, 8))


def make_checkpoint(path: Path, cfg, seed: int = 0) -> Path:
    import torch

    from edge_geoloc.model.vit import CrossViewModel
    from edge_geoloc.train.checkpoint import model_state, save_checkpoint

    torch.manual_seed(seed)
    save_checkpoint(path, {**model_state(cfg), "model": CrossViewModel(cfg).state_dict()})
    return path


@functools.cache
def small_export(keep_ratio: float = 0.64, street: tuple[int, int] = (16, 64), seed: int = 0) -> Path:
    """A checked export (street.onnx, aerial.onnx, offset.onnx, model.yaml, report.json) of a small model."""
    from edge_geoloc.export.onnx_export import export_model

    root = Path(tempfile.mkdtemp(prefix="edge-geoloc-export-"))
    ckpt = make_checkpoint(root / "small.pt", small_config(keep_ratio, street), seed)
    with torch_threads(1):
        export_model(ckpt, root / "small", parity_samples=2)
    return root / "small"


def copy_export(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def panoramas(n: int, height: int = 32, width: int = 128, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, height, width, 3), dtype=np.uint8)
