"""Retrieval and meter-level metrics (numpy only: runs on the device and in CI)."""

from edge_geoloc.evaluate.localization import (
    ACCURACY_THRESHOLDS_M,
    CIRCULAR_SCOPES,
    VIGOR_SCOPE,
    Scope,
    fuse,
    fuse_topk,
    localization_metrics,
    noisy_prior,
    predict_positions,
    restrict,
    top_candidates,
)
from edge_geoloc.evaluate.retrieval import ranks, retrieval_metrics, top_percent_k

__all__ = [
    "ACCURACY_THRESHOLDS_M",
    "CIRCULAR_SCOPES",
    "VIGOR_SCOPE",
    "Scope",
    "fuse",
    "fuse_topk",
    "localization_metrics",
    "noisy_prior",
    "predict_positions",
    "ranks",
    "restrict",
    "retrieval_metrics",
    "top_candidates",
    "top_percent_k",
]
