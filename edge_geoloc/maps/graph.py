"""A shard's hnswlib graph: built here (by ``map build``) and queried here (by the search), so that the
two sides of the format cannot drift apart.

A graph on the full descriptors holds float32 copies beside its links (1,164 bytes a tile at D=256,
M=16). A graph on a per-shard PCA projection to ``h`` dims (``map build --hnsw-dim``) holds a
fraction, and its candidates are re-ranked exactly on the memory-mapped float16 descriptors. The
projected vectors ``y = (x - mean) @ basis`` have unequal norms, and hnswlib's inner-product graph
over unequal norms links tiles to the long vectors rather than to their neighbours: on a benchmark
shard it found a third of the projected top 40 at ef 64. So a *lifted* graph appends one coordinate,
``sqrt(R^2 - |y|^2)`` with R the shard's largest norm: every vector then lies on one sphere, where
inner product ranks as distance does, and a query padded with 0 scores ``q . y`` exactly (the same
graph found 99.9% of the projected top 40 at ef 64). Bundles whose manifest says ``lifted: false``
(built before) are searched as they were built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from edge_geoloc.maps.bundle import HnswInfo


def pca_basis(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, basis (D, dim)) of the principal axes of ``x``, signs fixed so that results are reproducible."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(axis=0)
    c = x - mean
    vals, vecs = np.linalg.eigh(c.T @ c)
    basis = vecs[:, np.argsort(-vals, kind="stable")[:dim]]
    sign = np.sign(basis[np.argmax(np.abs(basis), axis=0), np.arange(dim)])
    return mean.astype(np.float32), (basis * sign).astype(np.float32)


def graph_dim(hnsw: HnswInfo) -> int:
    """Dimension of the vectors the graph holds (the projection, plus the lifting coordinate)."""
    return hnsw.dim + int(hnsw.lifted)


def build_graph(desc16: np.ndarray, hnsw: HnswInfo, first_label: int) -> tuple[Any, np.ndarray | None]:
    """A shard's graph over its float16 descriptors (labels ``first_label + row``; one thread and a fixed
    seed: the same bytes every time) and, for a projected graph, its projection (D, 1 + dim): mean, basis."""
    import hnswlib

    x = desc16.astype(np.float32)
    proj = None
    if hnsw.dim < x.shape[1]:
        mean, basis = pca_basis(x, hnsw.dim)
        proj = np.concatenate([mean[:, None], basis], axis=1)
        x = project(x, mean, basis)
        if hnsw.lifted:
            norm2 = np.einsum("ij,ij->i", x, x)
            x = np.concatenate([x, np.sqrt(np.maximum(norm2.max() - norm2, 0.0))[:, None]], axis=1)
    elif hnsw.lifted:
        raise ValueError("a lifted graph needs a projection (hnsw dim below the descriptor dim)")
    index = hnswlib.Index(space=hnsw.space, dim=graph_dim(hnsw))
    index.init_index(max_elements=len(x), M=hnsw.M, ef_construction=hnsw.ef_construction, random_seed=hnsw.seed)
    index.add_items(np.ascontiguousarray(x), first_label + np.arange(len(x), dtype=np.int64), num_threads=1)
    return index, proj


def project(rows: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """float32 projections ``(x - mean) @ basis`` of descriptor rows (float16 as stored, or already float32):
    what a projected graph holds (before lifting), and what a search scans in its place (:func:`quantize`)."""
    return (np.asarray(rows, dtype=np.float32) - mean) @ basis


def quantize(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 codes of projected rows and the per-dimension scale (``code * scale`` ~ ``y``, symmetric): a
    quarter of the float32 vectors the graph holds, for a search to scan a cut shard's in-scope rows (the
    graph's own copy is 2.4 us a row to fetch through hnswlib's ``get_items``; the codes 0.02-0.03 us to score)."""
    scale = np.maximum(np.abs(y).max(axis=0), 1e-12).astype(np.float32) / 127.0
    return np.rint(y / scale).astype(np.int8), scale


def graph_queries(q: np.ndarray, basis: np.ndarray | None, lifted: bool) -> np.ndarray:
    """Unit descriptors (m, D) as the graph's queries: projected on the basis, padded with the lifting 0."""
    if basis is None:
        return q
    g = q @ basis
    return np.concatenate([g, np.zeros((len(g), 1), g.dtype)], axis=1) if lifted else g
