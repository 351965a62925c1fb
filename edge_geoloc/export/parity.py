"""Parity of exported graphs with torch: the same descriptors, attention and kept patches.

Thresholds (issue 4): max |descriptor difference| <= 1e-4 and cosine >= 0.9999 per row; with
pruning, ONNX Runtime must keep exactly the patches torch keeps. Inputs go through the runtime's
preprocessing, as on the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_ABS = 1e-4
MIN_COSINE = 0.9999


def agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Max absolute difference and the worst row cosine between two (N, D) descriptor batches."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(other, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"descriptor shapes differ: {a.shape} vs {b.shape}")
    cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return {"max_abs": float(np.abs(a - b).max()), "min_cosine": float(cos.min())}


def smooth_images(n: int, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 (n, H, W, 3) low-frequency colour fields: image-like statistics without a dataset."""
    import cv2

    out = np.empty((n, height, width, 3), np.uint8)
    for i in range(n):
        coarse = rng.uniform(0, 255, size=(max(2, height // 8), max(2, width // 8), 3)).astype(np.float32)
        img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, 8, size=img.shape).astype(np.float32)
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def dataset_images(root: str | Path, n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``n`` panoramas and satellite tiles of a VIGOR-layout dataset (e.g. the synthetic world's)."""
    from edge_geoloc.data.sample import read_rgb

    root = Path(root)
    panos = sorted(root.glob("*/panorama/*.jpg"))[:n]
    tiles = sorted(root.glob("*/satellite/*.png"))[:n]
    if not panos or not tiles:
        raise FileNotFoundError(f"{root}: no VIGOR-layout panoramas/satellite tiles (<city>/panorama/*.jpg)")
    return [read_rgb(p) for p in panos], [read_rgb(p) for p in tiles]


def compare_graph(graph: Any, session: Any, batch: np.ndarray) -> dict[str, Any]:
    """Run an encoder graph in torch and its ONNX session on one normalized batch; compare every output."""
    import torch

    with torch.no_grad():
        ref = [t.numpy() for t in graph(torch.from_numpy(batch))]
    got = session.run(None, {session.get_inputs()[0].name: batch})
    result: dict[str, Any] = {"batch": int(batch.shape[0]), **agreement(ref[0], got[0])}
    result["attention_max_abs"] = float(np.abs(ref[1] - got[1]).max())
    if len(ref) > 2:
        same = ref[2] == got[2]
        result["kept_equal"] = bool(same.all())
        result["kept_rows_differing"] = int((~same.all(axis=1)).sum())
    result["ok"] = bool(
        result["max_abs"] <= MAX_ABS
        and result["min_cosine"] >= MIN_COSINE
        and result["attention_max_abs"] <= MAX_ABS
        and result.get("kept_equal", True)
    )
    return result


def session_of(onnx: str | Path | bytes, threads: int = 2) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    src = onnx if isinstance(onnx, bytes) else str(onnx)
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def all_ok(results: Sequence[dict[str, Any]]) -> bool:
    return all(r["ok"] for r in results)
