"""The offset head on the device: (street, tile) descriptor pairs -> east/north metres from the tile centre.

A tiny MLP, run by ONNX Runtime on the CPU on one thread (a few candidates per frame).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_geoloc.runtime.card import OFFSET_INPUTS, OFFSET_OUTPUT, ModelCard, check_io, verify
from edge_geoloc.runtime.preprocess import InputError


class OffsetRegressor:
    def __init__(self, model_dir: str | Path, card: ModelCard | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        self.card = verify(model_dir, card, check_graphs=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        path = model_dir / self.card.offset.file
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        io = [(t.name, tuple(t.shape)) for t in [*self.session.get_inputs(), *self.session.get_outputs()]]
        check_io(self.card, "offset", io, path)

    def predict(self, street: np.ndarray, aerial: np.ndarray) -> np.ndarray:
        """(N, 2) float64 east/north metres of the camera from each tile's centre."""
        d = self.card.descriptor_dim
        s = np.asarray(street, dtype=np.float32)
        a = np.asarray(aerial, dtype=np.float32)
        if s.ndim == 1:
            s = s[None]
        if s.shape[1:] != (d,) or a.ndim != 2 or a.shape[1:] != (d,):
            raise InputError(
                f"expected street (N, {d}) or ({d},) and aerial (N, {d}) descriptors, got {s.shape}, {a.shape}"
            )
        if len(a) == 0:
            raise InputError("empty batch: no candidate tiles")
        if len(s) == 1 and len(a) > 1:
            s = np.repeat(s, len(a), axis=0)
        if len(s) != len(a):
            raise InputError(f"street and aerial batches differ: {len(s)} vs {len(a)}")
        out = self.session.run([OFFSET_OUTPUT], dict(zip(OFFSET_INPUTS, (s, a))))[0]
        return out.astype(np.float64)
