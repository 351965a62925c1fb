"""The modules that become the ONNX graphs (torch): one per encoder branch, one for the offset head.

An encoder graph maps a normalized image batch to the descriptor and to the class (and
distillation) tokens' last-block attention over the full patch grid, summed over heads and
tokens: (N, rows, cols), what the heading estimator's azimuth profiles read. With pruning the
last block only sees the kept patches, so their attention is scattered back onto the grid and
the dropped patches get zero. ``debug_kept`` adds the kept patch indices as a third output: the
parity check uses it to prove ONNX Runtime keeps the same patches as torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from edge_geoloc.model.vit import CrossViewModel, OffsetHead, ViTBranch
from edge_geoloc.runtime.card import ATTENTION, DESCRIPTOR, INPUT, OFFSET_INPUTS, OFFSET_OUTPUT

KEPT = "kept"


class EncoderGraph(nn.Module):
    """``ground``: (the BEV sampler, the aerial branch) of a model with a BEV: the street descriptor
    then also encodes the panorama's ground view (inside the same graph); the attention stays the
    panorama branch's."""

    def __init__(
        self,
        branch: ViTBranch,
        keep_ratio: float | None = None,
        debug_kept: bool = False,
        ground: tuple[nn.Module, ViTBranch] | None = None,
    ) -> None:
        super().__init__()
        self.branch = branch
        self.keep_ratio = keep_ratio
        self.debug_kept = debug_kept
        self.grid = branch.branch.grid
        self.ground = nn.ModuleList(ground) if ground is not None else None

    @property
    def pruned(self) -> bool:
        keep = self.branch.cfg.keep_ratio if self.keep_ratio is None else self.keep_ratio
        return self.branch.prunable and keep < 1.0

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.branch.forward_features(image, keep_ratio=self.keep_ratio)
        descriptor = self.branch.descriptor_from(out["tokens"])
        if self.ground is not None:
            sampler, aerial = self.ground
            descriptor = F.normalize(descriptor + aerial(sampler(image)), dim=-1)
        scores = self.branch.patch_scores(out["attn"])
        rows, cols = self.grid
        kept = out.get("kept")
        if kept is not None:
            scores = scores.new_zeros((scores.shape[0], rows * cols)).scatter(1, kept, scores)
        attention = scores.reshape(-1, rows, cols)
        if self.debug_kept:
            if kept is None:  # every patch kept, in order
                kept = torch.arange(rows * cols, device=image.device).expand(image.shape[0], -1)
            return descriptor, attention, kept
        return descriptor, attention

    @property
    def output_names(self) -> list[str]:
        return [DESCRIPTOR, ATTENTION, *([KEPT] if self.debug_kept else [])]


class OffsetGraph(nn.Module):
    def __init__(self, head: OffsetHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, street: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
        return self.head(street, aerial)


def encoder_graph(
    model: CrossViewModel, branch: str, keep_ratio: float | None = None, debug_kept: bool = False
) -> EncoderGraph:
    if branch not in ("street", "aerial"):
        raise ValueError(f"unknown branch {branch!r} (expected street or aerial)")
    ground = (model.bev, model.aerial) if branch == "street" and model.bev is not None else None
    return EncoderGraph(getattr(model, branch), keep_ratio, debug_kept, ground).eval()


def export_onnx(graph: nn.Module, inputs: tuple[torch.Tensor, ...], path_or_buffer: object, opset: int) -> None:
    """The legacy (TorchScript) exporter: it needs no onnxscript, writes one self-contained file
    (weights inside, no ``.onnx.data``) and handles the pruning's TopK/GatherElements/ScatterElements."""
    import warnings

    if isinstance(graph, OffsetGraph):
        input_names, output_names = list(OFFSET_INPUTS), [OFFSET_OUTPUT]
    else:
        input_names, output_names = [INPUT], graph.output_names
    dynamic = {name: {0: "batch"} for name in [*input_names, *output_names]}
    with warnings.catch_warnings():
        # The exporter's deprecation notice and the tracer's "converting a tensor to a Python
        # int" (the static patch count of the pruning, intended) are expected here.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            graph,
            inputs,
            path_or_buffer,
            input_names=input_names,
            output_names=output_names,
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
