"""Fit VIGOR's offset head on frozen descriptors, after the encoders are trained.

Training the head jointly costs a second aerial encode per query (the semi-positive tile) on
every step. With the encoders frozen the head is a small MLP on (street, tile) descriptor pairs:
encode every training panorama and tile once, then fit on all four covering tiles of each
panorama (the positive and the three semi-positives, since at run time the retrieved tile may
be any of them) in seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch

from edge_geoloc.model.losses import offset_l2
from edge_geoloc.model.vit import CrossViewModel
from edge_geoloc.train.infer import encode_aerial, encode_street
from edge_geoloc.train.pairs import PairSet

log = logging.getLogger(__name__)


Encode = Callable[[PairSet], tuple[np.ndarray, np.ndarray]]


def offset_pairs(
    model: CrossViewModel, pairs: PairSet, encode: Encode | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(street descriptors (N*4, D), tile descriptors (N*4, D), offsets (N*4, 2) metres). ``encode``:
    (street, tile) descriptors of a pair set some faster way (a frozen trunk's cached features)."""
    s, a = encode(pairs) if encode else (encode_street(model, pairs.street), encode_aerial(model, pairs.aerial))
    n, k = pairs.label.shape
    return np.repeat(s, k, axis=0), a[pairs.label.ravel()], pairs.offset_m.reshape(n * k, 2)


def fit_offset_head(
    model: CrossViewModel,
    train: PairSet,
    val: PairSet | None = None,
    epochs: int = 30,
    lr: float = 2e-3,
    batch_size: int = 512,
    seed: int = 0,
    encode: Encode | None = None,
) -> dict[str, float]:
    """Fit ``model.offset`` in place; returns the median offset error (m) on train and val pairs."""
    pairs = offset_pairs(model, train, encode)
    s, a, y = (torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32)) for v in pairs)
    head = model.offset
    head.train()
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * max(1, len(y) // batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for b in range(0, len(y) - batch_size + 1, batch_size):
            idx = order[b : b + batch_size]
            loss = offset_l2(head(s[idx], a[idx]), y[idx], model.cfg.tile_m)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    out = {}
    for name, part in (("train", train), ("val", val)):
        if part is None:
            continue
        ps, pa, py = offset_pairs(model, part, encode) if part is not train else (s.numpy(), a.numpy(), y.numpy())
        with torch.no_grad():
            pred = head(torch.from_numpy(ps), torch.from_numpy(pa)).numpy()
        err = np.linalg.norm(pred - py, axis=1)
        out[f"offset_median_m_{name}"] = float(np.median(err))
        out[f"offset_median_m_{name}_centre"] = float(np.median(np.linalg.norm(py, axis=1)))
    log.info("offset head: %s", out)
    return out
