"""The torch encoder: debugging only (the device runs exported graphs). torch is imported when built.

Workstation wing: importing this module registers backend ``torch`` with :func:`~edge_geoloc.runtime.open_encoder`.

It runs the checkpoint the card was exported from, through the same graph module the exporter
traced and the same preprocessing as every backend, so a difference between it and an exported
backend is the export's or the backend's, not the input's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.runtime.card import CardError, ModelCard, load_card, sha256_of
from edge_geoloc.runtime.encoder import Encoder, register_backend


class TorchEncoder(Encoder):
    backend = "torch"

    def __init__(
        self,
        model_dir: str | Path,
        branch: str,
        card: ModelCard | None = None,
        checkpoint: str | Path | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> None:
        import torch

        from edge_geoloc.model.graphs import encoder_graph
        from edge_geoloc.train.checkpoint import load_model

        card = card or load_card(model_dir)
        super().__init__(card, branch)
        path = Path(checkpoint or card.checkpoint)
        if not path.exists():
            raise CardError(f"{path}: the checkpoint of model card {card.model} is not here (pass checkpoint=...)")
        if card.checkpoint_sha256 and sha256_of(path) != card.checkpoint_sha256:
            raise CardError(f"{path}: not the checkpoint model card {card.model} was exported from (sha256 differs)")
        if threads:
            torch.set_num_threads(threads)
        model, _ = load_model(path)
        keep = card.aerial.keep_ratio if branch == "aerial" else None
        self.torch = torch
        self.device = device
        self.graph: Any = encoder_graph(model, branch, keep).to(device)

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self.torch.no_grad():
            desc, attn = self.graph(self.torch.from_numpy(batch).to(self.device))
        return desc.float().cpu().numpy(), attn.float().cpu().numpy()


register_backend("torch", TorchEncoder)  # open_encoder(..., backend="torch") once this module is imported
