"""Evaluation of a checkpoint on a VIGOR-layout test split: retrieval, meter-level, scopes.

Queries: the test panoramas (all, or a seeded subset). References: every satellite tile of the
test cities. Meter-level positions come three ways: the best tile's centre; centre plus the
offset head; and the similarity-weighted fusion of the top candidates (each with its offset).
Each is reported with no scope and inside scopes around VIGOR's simulated noisy GPS (uniform
+-100 m per axis): the +-200 m box and circles of 1000, 500 and 200 m.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.data.vigor import VigorDataset, open_protocol
from edge_geoloc.evaluate import (
    CIRCULAR_SCOPES,
    VIGOR_SCOPE,
    Scope,
    fuse,
    localization_metrics,
    noisy_prior,
    restrict,
    retrieval_metrics,
    top_candidates,
)
from edge_geoloc.train.augment import circular_shift
from edge_geoloc.train.checkpoint import load_model
from edge_geoloc.train.infer import encode_aerial, encode_street, predict_offsets
from edge_geoloc.train.pairs import load_pairs

SCOPES = (Scope("all"), VIGOR_SCOPE, *CIRCULAR_SCOPES)
FUSE_K = 4


def shifted_queries(panoramas: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unknown orientation: each panorama rolled by a seeded random number of columns; returns
    the panoramas and the heading change of each (degrees, clockwise)."""
    rng = np.random.default_rng((seed, 7))
    out = np.empty_like(panoramas)
    dh = np.zeros(len(panoramas))
    for i, p in enumerate(panoramas):
        out[i], dh[i] = circular_shift(p, int(rng.integers(p.shape[1])))
    return out, dh


def localize(
    model: Any,
    street_desc: np.ndarray,
    aerial_desc: np.ndarray,
    sim: np.ndarray,
    aerial_en: np.ndarray,
    temperature: float,
) -> dict[str, np.ndarray]:
    """Predicted positions (Q, 2) by the three methods; NaN where the scope held no tile."""
    top, sims = top_candidates(sim, FUSE_K)
    q, k = top.shape
    offsets = predict_offsets(model, np.repeat(street_desc, k, axis=0), aerial_desc[top.ravel()]).reshape(q, k, 2)
    centres = aerial_en[top]
    empty = ~np.isfinite(sims[:, 0])
    out = {
        "centre": centres[:, 0].copy(),
        "offset": centres[:, 0] + offsets[:, 0],
        "fused": fuse(centres + offsets, sims, temperature),
    }
    for v in out.values():
        v[empty] = np.nan
    return out


def evaluate_split(
    model: Any,
    pairs: Any,
    queries: np.ndarray,
    orientation: str,
    seed: int,
    temperature: float,
) -> dict[str, Any]:
    street = pairs.street[queries]
    if orientation == "unknown":
        street, _ = shifted_queries(street, seed)
    t0 = time.time()
    s = encode_street(model, street)
    a = encode_aerial(model, pairs.aerial)
    encode_s = time.time() - t0
    sim = s @ a.T
    label = pairs.label[queries]
    result: dict[str, Any] = {
        "queries": len(queries),
        "references": len(pairs.aerial),
        "retrieval": retrieval_metrics(sim, label[:, 0], label[:, 1:]),
        "encode_seconds": round(encode_s, 2),
    }
    truth = pairs.street_en[queries]
    prior = noisy_prior(truth, 100.0, seed)
    scoped: dict[str, Any] = {}
    for scope in SCOPES:
        mask = scope.mask(prior, pairs.aerial_en)
        sim_s = restrict(sim, mask)
        row: dict[str, Any] = {"references_in_scope_mean": float(mask.sum(axis=1).mean())}
        if scope.kind != "all":
            row["retrieval"] = retrieval_metrics(np.where(mask, sim, -1e9), label[:, 0], label[:, 1:])
        for name, pos in localize(model, s, a, sim_s, pairs.aerial_en, temperature).items():
            err = np.linalg.norm(pos - truth, axis=1)
            row[name] = localization_metrics(err)
        scoped[scope.name] = row
    result["localization"] = scoped
    return result


def evaluate_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    protocols: list[str] = ("same_area", "cross_area"),  # type: ignore[assignment]
    orientations: list[str] = ("aligned", "unknown"),  # type: ignore[assignment]
    max_queries: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    model, state = load_model(checkpoint)
    cfg = model.cfg
    temperature = 0.05
    for row in reversed(state.get("metrics", [])):
        if "temperature" in row:
            temperature = float(row["temperature"])
            break
    report: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "model": cfg.name,
        "dataset": str(data),
        "fov_deg": cfg.fov_deg,
        "keep_ratio": cfg.keep_ratio,
        "fusion": {"k": FUSE_K, "temperature": temperature},
        "noisy_gps": "uniform +-100 m per axis (VIGOR)",
        "results": [],
    }
    sizes = ((cfg.street.height, cfg.street.width), (cfg.aerial.height, cfg.aerial.width))
    trained_on = (state.get("train_config") or {}).get("train_cities")
    for protocol in protocols:
        if protocol == "same_area" and trained_on:
            # Same-area means the cities the model was trained in (their held-out panoramas).
            ds = VigorDataset(data, trained_on, "same_area_test")
        else:
            ds = open_protocol(data, protocol, "test")
        pairs = load_pairs(ds, *sizes)
        n = len(pairs)
        queries = np.arange(n)
        if max_queries and max_queries < n:
            queries = np.sort(np.random.default_rng((seed, 3)).choice(n, max_queries, replace=False))
        for orientation in orientations:
            res = evaluate_split(model, pairs, queries, orientation, seed, temperature)
            report["results"].append({"protocol": protocol, "orientation": orientation, "cities": ds.cities, **res})
    return report


def print_report(report: dict[str, Any]) -> None:
    print(f"model {report['model']} ({report['checkpoint']}) on {report['dataset']}")
    head = f"{'protocol':<11} {'orient.':<8} {'queries':>7} {'refs':>6} {'R@1':>6} {'R@5':>6} {'R@10':>6} {'R@1%':>6} {'hit':>6}"
    print(head)
    for r in report["results"]:
        m = r["retrieval"]
        print(
            f"{r['protocol']:<11} {r['orientation']:<8} {r['queries']:>7} {r['references']:>6} {m['R@1']:6.1f} "
            f"{m['R@5']:6.1f} {m['R@10']:6.1f} {m['R@1%']:6.1f} {m.get('hit_rate', float('nan')):6.1f}"
        )
    print()
    print(
        f"{'protocol':<11} {'orient.':<8} {'scope':<9} {'R@1':>6} {'method':<7} {'median m':>9} {'<=5m':>6} {'<=10m':>6} {'<=25m':>6}"
    )
    for r in report["results"]:
        for scope, row in r["localization"].items():
            r1 = row.get("retrieval", r["retrieval"])["R@1"]
            for method in ("centre", "offset", "fused"):
                m = row[method]
                print(
                    f"{r['protocol']:<11} {r['orientation']:<8} {scope:<9} {r1:6.1f} {method:<7} {m['median_m']:9.1f} "
                    f"{m['acc@5m']:6.1f} {m['acc@10m']:6.1f} {m['acc@25m']:6.1f}"
                )
