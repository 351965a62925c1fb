"""Evaluation of a checkpoint on a VIGOR-layout test split: retrieval, meter-level, scopes.

Queries: the test panoramas (all, or a seeded subset). References: every satellite tile of the
test cities. Meter-level positions come three ways: the best tile's centre; centre plus the
offset head; and the similarity-weighted fusion of the top candidates (each with its offset).
Each is reported with no scope and inside scopes around VIGOR's simulated noisy GPS (uniform
+-100 m per axis): the +-200 m box and circles of 1000, 500 and 200 m. Inside the box, the loop's
registration can then re-rank the best candidates (:mod:`edge_geoloc.train.verify`, aligned panoramas with
a known camera height): the position the refine stage would give, on a seeded subset of queries.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.data.vigor import VigorDataset, dataset_cities, open_protocol
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
from edge_geoloc.train.verify import VerifyConfig, bev_spec, verify_candidates

log = logging.getLogger(__name__)

SCOPES = (Scope("all"), VIGOR_SCOPE, *CIRCULAR_SCOPES)
FUSE_K = 4
HEADING_QUERIES = 300  # heading is estimated on a seeded subset: the rotation search costs ~21 encodes a query
VERIFY_QUERIES = 500  # registration re-ranks a seeded subset: ~k registrations of ~15 ms a query


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


def heading_metrics(errors_deg: np.ndarray) -> dict[str, float]:
    err = np.abs(np.asarray(errors_deg, dtype=np.float64))
    return {
        "median_deg": float(np.median(err)),
        "within_10deg": float(np.mean(err <= 10) * 100),
        "within_20deg": float(np.mean(err <= 20) * 100),
        "queries": len(err),
    }


def evaluate_heading(
    model: Any,
    panoramas: np.ndarray,
    truth_deg: np.ndarray,
    tile_ids: np.ndarray,
    offsets_m: np.ndarray,
    tiles: np.ndarray,
    tile_desc: np.ndarray,
) -> dict[str, Any]:
    """Heading of each panorama's centre column against its retrieved tile, by both estimators:
    rotation search (descriptor similarity over rolls) and WACV's angular attention profiles
    (street attention over azimuth vs the tile's attention in polar coordinates around the
    predicted position)."""
    import torch

    from edge_geoloc.geo.crs import angle_diff_deg
    from edge_geoloc.localize.heading import (
        aerial_polar_profile,
        align_profiles,
        rotation_search,
        street_azimuth_profile,
    )
    from edge_geoloc.model.graphs import encoder_graph
    from edge_geoloc.train.infer import input_specs, to_tensor

    cfg = model.cfg
    s_spec, a_spec = input_specs(cfg)
    rot = np.array(
        [
            rotation_search(p, tile_desc[t], lambda b: encode_street(model, b)).heading_deg
            for p, t in zip(panoramas, tile_ids)
        ]
    )
    with torch.no_grad():
        s_att = encoder_graph(model, "street")(to_tensor(panoramas, s_spec))[1].numpy()
        a_att = encoder_graph(model, "aerial")(to_tensor(tiles[tile_ids], a_spec))[1].numpy()
    rows, cols = cfg.aerial.grid
    cell_m = cfg.tile_m / cols
    prof = []
    for i in range(len(panoramas)):
        centre = ((rows - 1) / 2 - offsets_m[i, 1] / cell_m, (cols - 1) / 2 + offsets_m[i, 0] / cell_m)
        street = street_azimuth_profile(s_att[i])
        prof.append(align_profiles(street, aerial_polar_profile(a_att[i], centre, bins=len(street))).heading_deg)
    return {
        "rotation_search": heading_metrics(angle_diff_deg(rot, truth_deg)),
        "attention_profile": heading_metrics(angle_diff_deg(np.asarray(prof), truth_deg)),
    }


def evaluate_verified(
    ds: Any,
    pairs: Any,
    queries: np.ndarray,
    sim_box: np.ndarray,
    located: np.ndarray,
    cfg: VerifyConfig,
    seed: int,
) -> dict[str, Any] | None:
    """Inside the VIGOR box: the registration's choice among the top-k against the retrieval's top-1 (its
    ``offset`` position, ``located``) on the same seeded subset of queries; None when the dataset does not
    say what the BEV needs."""
    spec = bev_spec(ds, cfg)
    if spec is None:
        log.info("verification skipped: %s does not state the camera height and the panoramas' heading", ds.root)
        return None
    n = min(VERIFY_QUERIES, len(queries))
    sub = np.sort(np.random.default_rng((seed, 13)).choice(len(queries), n, replace=False))
    v = verify_candidates(ds, queries[sub], sim_box[sub], pairs.aerial, pairs.aerial_en, cfg, spec)
    truth = pairs.street_en[queries[sub]]
    positive = pairs.label[queries[sub], 0]
    return {
        "queries": n,
        "k": cfg.k,
        "bev_radius_m": cfg.bev_radius_m,
        "gsd_m": cfg.gsd_m,
        "R@1": float(np.mean(v.tile == positive) * 100.0),
        "retrieval_R@1": float(np.mean(np.argmax(sim_box[sub], axis=1) == positive) * 100.0),
        "positive_in_top_k": float(np.mean((v.candidates == positive[:, None]).any(axis=1)) * 100.0),
        "verified": localization_metrics(np.linalg.norm(v.position - truth, axis=1)),
        "retrieval": localization_metrics(np.linalg.norm(located[sub] - truth, axis=1)),
    }


def evaluate_split(
    model: Any,
    pairs: Any,
    queries: np.ndarray,
    orientation: str,
    seed: int,
    temperature: float,
    ds: Any = None,
    verify: VerifyConfig | None = None,
) -> dict[str, Any]:
    street = pairs.street[queries]
    truth_heading = np.zeros(len(queries))
    if orientation == "unknown":
        street, truth_heading = shifted_queries(street, seed)
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
    if model.cfg.fov_deg >= 360:
        # Heading against the tile retrieved inside VIGOR's +-200 m box, with its predicted offset.
        h = np.sort(
            np.random.default_rng((seed, 11)).choice(len(queries), min(HEADING_QUERIES, len(queries)), replace=False)
        )
        sim_h = restrict(sim[h], VIGOR_SCOPE.mask(prior[h], pairs.aerial_en))
        best = np.argmax(sim_h, axis=1)
        off = predict_offsets(model, s[h], a[best])
        result["heading"] = evaluate_heading(model, street[h], truth_heading[h], best, off, pairs.aerial, a)
    scoped: dict[str, Any] = {}
    for scope in SCOPES:
        mask = scope.mask(prior, pairs.aerial_en)
        sim_s = restrict(sim, mask)
        row: dict[str, Any] = {"references_in_scope_mean": float(mask.sum(axis=1).mean())}
        if scope.kind != "all":
            row["retrieval"] = retrieval_metrics(np.where(mask, sim, -1e9), label[:, 0], label[:, 1:])
        located = localize(model, s, a, sim_s, pairs.aerial_en, temperature)
        for name, pos in located.items():
            err = np.linalg.norm(pos - truth, axis=1)
            row[name] = localization_metrics(err)
        if scope is VIGOR_SCOPE and verify is not None and orientation == "aligned" and ds is not None:
            checked = evaluate_verified(ds, pairs, queries, sim_s, located["offset"], verify, seed)
            if checked is not None:
                row["registration"] = checked
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
    verify: int = 10,
) -> dict[str, Any]:
    """``verify``: candidates the registration re-ranks inside the VIGOR box (0: none)."""
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
        present = [c for c in trained_on or [] if c in dataset_cities(data)]
        if protocol == "same_area" and present:
            # Same-area means the cities the model was trained in (their held-out panoramas); a model trained
            # on another dataset (more towns) is scored in the ones this dataset has.
            ds = VigorDataset(data, present, "same_area_test")
        else:
            ds = open_protocol(data, protocol, "test")
        pairs = load_pairs(ds, *sizes)
        n = len(pairs)
        queries = np.arange(n)
        if max_queries and max_queries < n:
            queries = np.sort(np.random.default_rng((seed, 3)).choice(n, max_queries, replace=False))
        for orientation in orientations:
            vcfg = VerifyConfig(k=verify) if verify else None
            res = evaluate_split(model, pairs, queries, orientation, seed, temperature, ds, vcfg)
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
    checked = [(r, r["localization"][VIGOR_SCOPE.name].get("registration")) for r in report["results"]]
    if any(c for _, c in checked):
        print()
        print(
            f"{'protocol':<11} {'orient.':<8} {'box +-100 m':<24} {'queries':>7} {'R@1':>6} {'median m':>9} "
            f"{'<=5m':>6} {'<=10m':>6} {'<=25m':>6}"
        )
        for r, c in checked:
            if not c:
                continue
            for name, r1, m in (
                ("retrieval top-1", c["retrieval_R@1"], c["retrieval"]),
                (f"registration of top-{c['k']}", c["R@1"], c["verified"]),
            ):
                print(
                    f"{r['protocol']:<11} {r['orientation']:<8} {name:<24} {c['queries']:>7} {r1:6.1f} "
                    f"{m['median_m']:9.1f} {m['acc@5m']:6.1f} {m['acc@10m']:6.1f} {m['acc@25m']:6.1f}"
                )
    print()
    print(f"{'protocol':<11} {'orient.':<8} {'heading method':<18} {'median deg':>10} {'<=10deg':>8} {'<=20deg':>8}")
    for r in report["results"]:
        for method, m in r.get("heading", {}).items():
            print(
                f"{r['protocol']:<11} {r['orientation']:<8} {method:<18} {m['median_deg']:10.1f} "
                f"{m['within_10deg']:8.1f} {m['within_20deg']:8.1f}"
            )
