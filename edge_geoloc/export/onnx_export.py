"""``edge-geoloc export``: a checkpoint -> street.onnx, aerial.onnx, offset.onnx, model.yaml, report.json.

The graphs have a dynamic batch axis and their weights inside (one file each, no external data).
The aerial graph prunes patches inside the graph, so at keep ratio < 1 it really does fewer FLOPs.
Every export is checked before its model card is written: ONNX Runtime against torch on random
normalized tensors, on image-like inputs and (``parity_data``) on dataset images, through the
runtime's preprocessing; with pruning, the kept patches must be identical. A failed check leaves
``report.json`` to read and no ``model.yaml``, so a failed export cannot be deployed by mistake.
"""

from __future__ import annotations

import io
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edge_geoloc.config import strict_json
from edge_geoloc.export import flops as flop_count
from edge_geoloc.export.parity import (
    MAX_ABS,
    MIN_COSINE,
    compare_graph,
    dataset_images,
    session_of,
    smooth_images,
)
from edge_geoloc.export.recipe import ExportRecipe, load_recipe
from edge_geoloc.model.config import keep_count
from edge_geoloc.model.graphs import OffsetGraph, encoder_graph, export_onnx
from edge_geoloc.runtime.card import (
    BRANCHES,
    CARD_FILE,
    CARD_FORMAT,
    AerialCard,
    ModelCard,
    OffsetCard,
    StreetCard,
    sha256_of,
    verify,
    write_card,
)
from edge_geoloc.runtime.preprocess import preprocess
from edge_geoloc.train.checkpoint import load_model

log = logging.getLogger(__name__)


class ExportError(RuntimeError):
    """An export whose graphs do not reproduce torch within the parity thresholds."""


@dataclass(frozen=True)
class ExportResult:
    out: Path
    card: ModelCard
    report: dict[str, Any]


def build_card(
    cfg: Any, out: Path, recipe: ExportRecipe, keep: float, name: str, checkpoint: Path, opset: int
) -> ModelCard:
    """The card of the graphs just written in ``out`` (sizes from the training config, nowhere else)."""
    street, aerial = cfg.street_input, cfg.aerial
    common = {"mean": tuple(cfg.mean), "std": tuple(cfg.std), "channel_order": "RGB"}

    def branch(name: str, graph: Any, batch: Any) -> dict[str, Any]:  # what both branches' cards say alike
        file = f"{name}.onnx"
        sizes = {"height": graph.height, "width": graph.width, "patch": graph.patch, "attention_grid": graph.grid}
        return {"file": file, "sha256": sha256_of(out / file), **sizes, "batch": batch, **common}

    return ModelCard(
        format=CARD_FORMAT,
        model=name,
        config=cfg.name,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        descriptor_dim=cfg.descriptor_dim,
        target=recipe.target,
        precision=recipe.precision,
        opset=opset,
        checkpoint=str(checkpoint),
        checkpoint_sha256=sha256_of(checkpoint),
        street=StreetCard(**branch("street", street, recipe.street_batch), fov_deg=cfg.fov_deg),
        aerial=AerialCard(
            **branch("aerial", aerial, recipe.aerial_batch),
            keep_ratio=keep,
            kept_patches=keep_count(aerial.num_patches, keep) if keep < 1 else aerial.num_patches,
            gsd_m=cfg.aerial_gsd_m,
            tile_m=cfg.tile_m,
        ),
        offset=OffsetCard(file="offset.onnx", sha256=sha256_of(out / "offset.onnx")),
    )


def _parity_batches(
    card: ModelCard, branch: str, rng: np.random.Generator, n: int, dataset: list[np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Normalized batches to compare on: random tensors, image-like fields, dataset images."""
    b = card.branch(branch)
    spec = card.input_spec(branch)
    batches = {
        "random": rng.standard_normal((n, 3, b.height, b.width)).astype(np.float32),
        # Panorama-sized fields for the street branch, so the FoV crop + resize path is exercised too.
        "images": preprocess(
            smooth_images(n, b.height, round(b.width * 360 / spec.fov_deg) if branch == "street" else b.width, rng),
            spec,
            is_panorama=branch == "street",
        ),
    }
    if dataset:
        batches["dataset"] = preprocess(dataset, spec, is_panorama=branch == "street")
    return batches


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    recipe: ExportRecipe | str | Path | None = None,
    keep_ratio: float | None = None,
    opset: int | None = None,
    parity_data: str | Path | None = None,
    parity_samples: int = 4,
    seed: int = 0,
) -> ExportResult:
    """Export a checkpoint's three graphs, check parity, write the report and (on success) the card."""
    t0 = time.perf_counter()
    recipe = recipe if isinstance(recipe, ExportRecipe) else load_recipe(recipe)
    checkpoint = Path(checkpoint)
    model, _ = load_model(checkpoint)
    cfg = model.cfg
    keep = next(k for k in (keep_ratio, recipe.keep_ratio, cfg.keep_ratio) if k is not None)
    if not 0 < keep <= 1:
        raise ValueError(f"keep ratio must be in (0, 1], got {keep}")
    opset = opset or recipe.opset
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / CARD_FILE).unlink(missing_ok=True)  # no card until this export has passed its checks
    torch.manual_seed(seed)

    graphs = {b: encoder_graph(model, b, keep) for b in BRANCHES}
    for branch, graph in graphs.items():
        b = graph.branch.branch
        export_onnx(graph, (torch.randn(2, 3, b.height, b.width),), str(out / f"{branch}.onnx"), opset)
    d = cfg.descriptor_dim
    offset = OffsetGraph(model.offset).eval()
    export_onnx(offset, (torch.randn(2, d), torch.randn(2, d)), str(out / "offset.onnx"), opset)
    t_export = time.perf_counter() - t0

    card = build_card(cfg, out, recipe, keep, out.name, checkpoint, opset)
    verify(out, card)  # the graphs' tensors have the card's shapes and a dynamic batch axis

    rng = np.random.default_rng(seed)
    dataset = dataset_images(parity_data, parity_samples) if parity_data else (None, None)
    parity: dict[str, Any] = {"thresholds": {"max_abs": MAX_ABS, "min_cosine": MIN_COSINE}}
    ok = True
    for i, branch in enumerate(BRANCHES):
        graph = graphs[branch]
        shipped = session_of(out / f"{branch}.onnx")
        check_graph, check_session = graph, shipped
        if graph.pruned:  # the shipped graph has no kept output: compare the kept set on a debug twin
            check_graph = encoder_graph(model, branch, keep, debug_kept=True)
            buf = io.BytesIO()
            b = graph.branch.branch
            export_onnx(check_graph, (torch.randn(2, 3, b.height, b.width),), buf, opset)
            check_session = session_of(buf.getvalue())
        parity[branch] = {}
        for what, batch in _parity_batches(card, branch, rng, parity_samples, dataset[i]).items():
            result = compare_graph(check_graph, check_session, batch)
            if check_session is not shipped:  # the shipped graph must give the debug twin's descriptors
                same = compare_graph(graph, shipped, batch)
                result["shipped_graph_max_abs"] = same["max_abs"]
                result["ok"] = result["ok"] and same["ok"]
            parity[branch][what] = result
            ok &= result["ok"]
    with torch.no_grad():
        s, a = torch.randn(8, d), torch.randn(8, d)
        s, a = torch.nn.functional.normalize(s, dim=1), torch.nn.functional.normalize(a, dim=1)
        ref = offset(s, a).numpy()
    got = session_of(out / "offset.onnx").run(None, {"street": s.numpy(), "aerial": a.numpy()})[0]
    parity["offset"] = {"max_abs_m": float(np.abs(ref - got).max()), "ok": bool(np.abs(ref - got).max() <= 1e-3)}
    ok &= parity["offset"]["ok"]

    analytic = flop_count.model_flops(cfg, keep)
    counted = {}
    for branch, graph in graphs.items():
        b = graph.branch.branch
        x = torch.randn(1, 3, b.height, b.width)
        counted[branch] = {
            "flop_counter_gflops_full": flop_count.counted_flops(graph, x) / 1e9,
            "module_hooks_gmacs_paper": flop_count.module_macs(graph, x) / 1e9,
        }
    report = {
        "model": card.model,
        "config": cfg.name,
        "checkpoint": str(checkpoint),
        "recipe": recipe.target,
        "keep_ratio": keep,
        "opset": opset,
        "exporter": "torch.onnx legacy (TorchScript), dynamo=False",
        "versions": {"torch": torch.__version__, "onnxruntime": _ort_version()},
        "parity_ok": bool(ok),
        "parity": parity,
        "flops": {**analytic, "counted_on_module": counted},
        "gmacs_paper": analytic["gmacs_paper"],
        "gflops_full": analytic["gflops_full"],
        "parameters": {
            "street": _params(model.street),
            "aerial": _params(model.aerial),
            "offset": _params(model.offset),
            "total": _params(model),
        },
        "files": {
            f: {"bytes": (out / f).stat().st_size, "sha256": sha256_of(out / f)}
            for f in ("street.onnx", "aerial.onnx", "offset.onnx")
        },
        "seconds": round(time.perf_counter() - t0, 2),
        "export_seconds": round(t_export, 2),
    }
    (out / "report.json").write_text(strict_json(report, indent=1))
    if not ok:
        raise ExportError(f"{out}: ONNX Runtime disagrees with torch beyond the thresholds; see {out / 'report.json'}")
    write_card(card, out)
    log.info("exported %s to %s in %.1f s", checkpoint, out, report["seconds"])
    return ExportResult(out, card, report)


def _params(module: torch.nn.Module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def _ort_version() -> str:
    import onnxruntime as ort

    return ort.__version__
