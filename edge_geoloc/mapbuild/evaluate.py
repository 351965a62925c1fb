"""Localization through a map bundle: a dataset's street panoramas against the map of their city.

The model's own evaluation (``edge_geoloc.train.evaluation``) scores every panorama against every
satellite image of the test split; here the same panoramas go through what the device runs: the
street encoder (ONNX Runtime or TensorRT), the bundle's scoped search around a noisy prior, the
offset head. Reported per circular scope: how often the search's top-1 equals the exact scoped
search's (the strategy choice and the graphs must not change the answer), and the meter-level
metrics of the three position estimates (best tile centre, centre + offset, top-k fusion), which
should reproduce the model evaluation's circular-scope figures when the map's tiles are the
dataset's (same world, same tile side).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.evaluate import fuse, localization_metrics, noisy_prior
from edge_geoloc.maps.index import MapIndex

FUSE_K = 4  # as the model evaluation fuses


def evaluate_map(
    map_dir: str | Path,
    model_dir: str | Path,
    dataset: str | Path,
    city: str | None = None,
    split: str = "cross_area",
    scopes_m: tuple[float, ...] = (1000.0, 500.0, 200.0),
    noise_m: float = 100.0,
    seed: int = 0,
    limit: int | None = None,
    temperature: float = 0.05,
    backend: str = "auto",
) -> dict[str, Any]:
    """Top-1 agreement with exact scoped search and localization metrics of ``city``'s panoramas."""
    from edge_geoloc.data.vigor import VigorDataset
    from edge_geoloc.runtime import OffsetRegressor, load_card, open_encoder

    card = load_card(model_dir)
    index = MapIndex.open(map_dir, card=card)
    city = city or index.manifest.region.name
    ds = VigorDataset(dataset, [city], split)  # type: ignore[arg-type]
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise ValueError(f"{dataset}: no panoramas of city {city!r} in split {split}")
    street = open_encoder(model_dir, "street", backend=backend)
    offset = OffsetRegressor(model_dir, card)
    q = np.concatenate([street.encode([ds.street(i) for i in range(s, min(n, s + 32))]) for s in range(0, n, 32)])
    east, north = index.crs.to_en(ds.pano_lat[:n], ds.pano_lon[:n])
    truth = np.stack([east, north], axis=1)
    prior = noisy_prior(truth, noise_m, seed)
    out: dict[str, Any] = {"map": str(map_dir), "city": city, "split": split, "panoramas": n, "noise_m": noise_m}
    for r in scopes_m:
        scopes = [(float(e), float(nn), r) for e, nn in prior]
        got = index.search_batch(q, scopes, k=FUSE_K)
        ref = index.search_batch(q, scopes, k=FUSE_K, method="exact")
        agree = np.mean([(a.ids[:1].tolist() == b.ids[:1].tolist()) for a, b in zip(got, ref)])  # both empty: agree
        centres = np.full((n, FUSE_K, 2), np.nan)
        offsets = np.zeros((n, FUSE_K, 2))
        sims = np.full((n, FUSE_K), -np.inf)
        for i, res in enumerate(got):
            m = len(res)
            if m == 0:
                continue
            centres[i, :m, 0], centres[i, :m, 1] = res.east, res.north
            sims[i, :m] = res.scores
            offsets[i, :m] = offset.predict(q[i], np.asarray(index.desc[res.rows], dtype=np.float32))
        positions = {
            "centre": centres[:, 0],
            "offset": centres[:, 0] + offsets[:, 0],
            "fused": fuse(np.nan_to_num(centres) + offsets, sims, temperature),
        }
        out[f"{r:g}m"] = {
            "top1_equals_exact": float(agree),
            **{name: localization_metrics(np.linalg.norm(p - truth, axis=1)) for name, p in positions.items()},
        }
    return out
