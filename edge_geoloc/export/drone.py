"""``edge-geoloc export-drone``: the drone branch into an existing export, beside the branches it pairs with.

Writes ``drone.onnx`` (the same graph interface as the other encoders: ``image`` -> ``descriptor``,
``attention``), checks ONNX Runtime against torch (the export thresholds), counts its FLOPs, writes
``drone_report.json`` and adds a ``drone`` entry to ``model.yaml`` (input size, normalization,
GSD and patch side, the aerial graph's sha256 it was trained against). The drone branch must have
been trained against THIS export's aerial graph: another one's descriptors would not match the maps,
so a mismatch is refused. Maps built with the export stay valid: the aerial graph is untouched.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_geoloc.config import strict_json
from edge_geoloc.export import flops as flop_count
from edge_geoloc.export.parity import compare_graph, session_of, smooth_images
from edge_geoloc.model.graphs import EncoderGraph, export_onnx
from edge_geoloc.runtime.card import CARD_FILE, DroneCard, ModelCard, load_card, sha256_of, verify, write_card
from edge_geoloc.runtime.preprocess import preprocess
from edge_geoloc.train.drone import load_drone


class DroneExportError(RuntimeError):
    """A drone export that does not reproduce torch, or a drone branch of another aerial encoder."""


def export_drone(
    checkpoint: str | Path, model_dir: str | Path, opset: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Add the drone branch of ``checkpoint`` to the export in ``model_dir``; returns the report."""
    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    card = verify(model_dir, check_graphs=False)
    branch, state = load_drone(checkpoint)
    # Paired by the aerial WEIGHTS (the checkpoint the export came from) where both say; an export of the same
    # checkpoint elsewhere (another torch) may differ in bytes, not in descriptors. Else by the aerial graph.
    ours, theirs = state.get("aerial_checkpoint_sha256"), card.checkpoint_sha256
    same = ours == theirs if ours and theirs else state["aerial_sha256"] == card.aerial.sha256
    if not same:
        raise DroneExportError(
            f"{checkpoint}: trained against aerial graph {state['aerial_sha256'][:12]}... (checkpoint"
            f" {(ours or '?')[:12]}...), but {model_dir} has {card.aerial.sha256[:12]}... (checkpoint"
            f" {(theirs or '?')[:12]}...): its descriptors would not match maps of this export; retrain it"
            f" (edge-geoloc train-drone --model {model_dir})"
        )
    cfg = branch.cfg
    b = branch.branch
    opset = opset or card.opset
    graph = EncoderGraph(branch).eval()
    path = model_dir / "drone.onnx"
    tmp = model_dir / ".drone.onnx.tmp"
    torch.manual_seed(seed)
    export_onnx(graph, (torch.randn(2, 3, b.height, b.width),), str(tmp), opset)
    rng = np.random.default_rng(seed)
    spec = card.input_spec("aerial")
    batches = {
        "random": rng.standard_normal((4, 3, b.height, b.width)).astype(np.float32),
        "images": preprocess(smooth_images(4, b.height, b.width, rng), spec, is_panorama=False),
    }
    session = session_of(tmp)
    parity = {k: compare_graph(graph, session, v) for k, v in batches.items()}
    ok = all(r["ok"] for r in parity.values())
    flops = flop_count.branch_flops(
        cfg, "aerial", 1.0
    ).as_dict()  # the drone branch is the aerial architecture, unpruned
    flops["branch"] = "drone"
    report = {
        "checkpoint": str(checkpoint),
        "opset": opset,
        "parity_ok": ok,
        "parity": parity,
        "flops": flops,
        "gmacs_paper": flops["gmacs_paper"],
        "gflops_full": flops["gflops_full"],
        "conventions": {"gmacs_paper": flop_count.PAPER, "gflops_full": flop_count.FULL},
        "parameters": int(sum(p.numel() for p in branch.parameters())),
        "training": {k: state.get(k) for k in ("metrics", "baseline_aerial_branch", "train_config", "dataset")},
        "seconds": 0.0,
    }
    if not ok:
        tmp.unlink(missing_ok=True)
        (model_dir / "drone_report.json").write_text(strict_json(report, indent=1))
        raise DroneExportError(f"{model_dir}: drone.onnx disagrees with torch; see {model_dir / 'drone_report.json'}")
    tmp.replace(path)
    rect = state.get("rectified", {})
    drone = DroneCard(
        file="drone.onnx",
        sha256=sha256_of(path),
        height=b.height,
        width=b.width,
        mean=tuple(cfg.mean),
        std=tuple(cfg.std),
        channel_order="RGB",
        patch=b.patch,
        attention_grid=b.grid,
        batch=card.aerial.batch,
        gsd_m=float(rect.get("gsd_m", cfg.aerial_gsd_m)),
        patch_m=float(rect.get("gsd_m", cfg.aerial_gsd_m)) * b.width,
        aerial_sha256=card.aerial.sha256,
        trained_altitude_m=tuple(round(v, 1) for v in state["trained_altitude_m"]),  # type: ignore[arg-type]
        trained_tilt_deg=tuple(round(v, 1) for v in state["trained_tilt_deg"]),  # type: ignore[arg-type]
    )
    new: ModelCard = dataclasses.replace(card, drone=drone)
    write_card(new, model_dir)
    verify(model_dir, new)  # every graph, the drone's included, matches the new card
    report["seconds"] = round(time.perf_counter() - t0, 2)
    report["card"] = str(model_dir / CARD_FILE)
    (model_dir / "drone_report.json").write_text(strict_json(report, indent=1))
    return report


def drone_card_of(model_dir: str | Path) -> DroneCard:
    """The drone entry of an export's card (a clear error when there is none)."""
    return load_card(model_dir).branch("drone")  # type: ignore[return-value]
