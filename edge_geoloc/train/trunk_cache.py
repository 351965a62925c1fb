"""A frozen pretrained trunk's features, computed once and cached: epochs of the head at a fraction of the cost.

With the whole EfficientNet trunk frozen (its ImageNet filters are what transfers across towns),
its output for a given image never changes, and it is most of a training step's arithmetic on
a CPU. So each image is put through the trunk once, the float16 feature maps are cached beside
the dataset (``<root>/.cache/trunk-*.npy``, keyed by the pixels, the stem and its truncation),
and training runs the projection and transformer blocks on them.

Augmentation must then keep the pair consistent *in feature space*:

- rotating the scene by k * 90 degrees rotates the aerial tile, which a CNN's features do not
  follow (its filters are oriented), so each tile's features are cached for all four rotations;
- the matching roll of the panorama by k quarter turns is a roll of its feature columns (the
  trunk is translation-equivariant along the panorama's width, up to the seam);
- mirroring and colour jitter are not available here (the dataset's own per-view appearance
  varies sun, season, exposure and camera); a run that needs them trains end to end.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_geoloc.model.vit import CrossViewModel
from edge_geoloc.runtime.preprocess import InputSpec
from edge_geoloc.train.infer import crop_fov, input_specs, to_tensor

log = logging.getLogger(__name__)
CACHE_VERSION = 1


@dataclass
class TrunkFeatures:
    """Trunk outputs of one split: street (N, C, h, w); aerial (4, M, C, h', w'), one per quarter turn
    clockwise (index 0 the tile as it is); float16."""

    street: np.ndarray
    aerial: np.ndarray
    bev: np.ndarray | None = None  # (4, N, C, h', w'): the panoramas' ground views through the aerial trunk


def _digest(images: np.ndarray, key: dict) -> str:
    h = hashlib.sha256(json.dumps({**key, "v": CACHE_VERSION, "shape": list(images.shape)}, sort_keys=True).encode())
    step = max(1, len(images) // 4096)  # the pixels of a sample of images, plus every image's sum
    h.update(np.ascontiguousarray(images[::step]).tobytes())
    h.update(images.reshape(len(images), -1).sum(axis=1, dtype=np.int64).tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def trunk_features(
    trunk: torch.nn.Module,
    images: np.ndarray,
    spec: InputSpec,
    desc: str,
    batch: int = 128,
    view: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> np.ndarray:
    """(N, C, h, w) float16 trunk outputs of uint8 images at the branch's input size, or of
    ``view(image)`` (e.g. a panorama's ground view) when given."""
    trunk.eval()
    out: np.ndarray | None = None
    for s in tqdm(range(0, len(images), batch), desc=desc, unit="batch", leave=False):
        x = to_tensor(images[s : s + batch], spec)
        if view is not None:
            x = view(x)
        f = trunk(x.contiguous(memory_format=torch.channels_last)).contiguous().numpy().astype(np.float16)  # 1.5x
        if out is None:
            out = np.empty((len(images), *f.shape[1:]), dtype=np.float16)
        out[s : s + len(f)] = f
    if out is None:
        raise ValueError(f"{desc}: no images to encode")
    return out


def _cached(path: Path, build) -> np.ndarray:
    if path.exists():
        try:
            return np.load(path, mmap_mode=None)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # a corrupt cache is rebuilt, never trusted
    arr = build()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, path)
    return arr


def _runs(groups: np.ndarray | None, n: int) -> list[tuple[str, slice]]:
    """Contiguous runs of equal group ids (the cities of a split, in city order), or one run of all."""
    if groups is None:
        return [("all", slice(0, n))]
    groups = np.asarray(groups)
    starts = [0, *(np.nonzero(groups[1:] != groups[:-1])[0] + 1).tolist(), n]
    return [(str(groups[a]), slice(a, b)) for a, b in itertools.pairwise(starts) if b > a]


def cache_trunk(
    model: CrossViewModel,
    street: np.ndarray,
    aerial: np.ndarray,
    cache_dir: Path,
    rotations: bool = True,
    street_groups: np.ndarray | None = None,
    aerial_groups: np.ndarray | None = None,
) -> TrunkFeatures:
    """Trunk features of a split's panoramas (at the model's FoV) and tiles (four rotations, or one).

    ``street_groups`` / ``aerial_groups``: a city per row (rows in city order): each city is cached
    on its own, so a run over other towns, a subset or a superset of them reuses what was computed."""
    cfg = model.cfg
    if not cfg.pretrained_stem:
        raise ValueError(f"model '{cfg.name}': a trunk cache needs a pretrained stem, not stem {cfg.stem!r}")
    s_spec, a_spec = input_specs(cfg)
    key = {"stem": cfg.stem, "stages": cfg.stem_stages, "mean": list(cfg.mean), "std": list(cfg.std)}
    pano = crop_fov(street, cfg)
    s_trunk, a_trunk = model.street.patch_embed.trunk, model.aerial.patch_embed.trunk

    def grouped(images: np.ndarray, groups, kind: str, part_key: dict, build) -> np.ndarray:
        parts = []
        for name, rows in _runs(groups, len(images)):
            part = np.ascontiguousarray(images[rows])
            path = cache_dir / f"trunk-{kind}-{_digest(part, {**key, **part_key, 'group': name})}.npy"
            parts.append(_cached(path, lambda p=part, name=name: build(p, f"{kind} trunk {name}")))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    s_feat = grouped(
        pano, street_groups, "street", {"patch": cfg.street.patch}, lambda p, d: trunk_features(s_trunk, p, s_spec, d)
    )
    turns = range(4) if rotations else range(1)
    a_feat = [
        grouped(
            aerial,
            aerial_groups,
            f"aerial{k * 90}",
            {"patch": cfg.aerial.patch},
            lambda p, d, k=k: trunk_features(a_trunk, np.ascontiguousarray(np.rot90(p, k=-k, axes=(1, 2))), a_spec, d),
        )
        for k in turns
    ]
    bev = None
    if model.bev is not None:
        bev_key = {"bev": [cfg.bev_px, cfg.bev_radius_m, cfg.cam_height_m, *cfg.elevation_range_deg]}
        # A quarter turn of the scene turns the north-up ground view like the tile.
        bev = np.stack(
            [
                grouped(
                    pano,
                    street_groups,
                    f"bev{k * 90}",
                    bev_key,
                    lambda p, d, k=k: trunk_features(
                        a_trunk, p, s_spec, d, view=lambda x: torch.rot90(model.bev(x), k=-k, dims=(2, 3))
                    ),
                )
                for k in turns
            ]
        )
    return TrunkFeatures(s_feat, np.stack(a_feat), bev)


def roll_quarters(street_features: torch.Tensor, k: int) -> torch.Tensor:
    """The panorama rolled by k quarter turns (augment.rotate90's direction), in feature columns."""
    w = street_features.shape[-1]
    if w % 4:
        raise ValueError(f"street feature width {w} must be a multiple of 4 to roll by quarter turns")
    return torch.roll(street_features, k * w // 4, dims=-1)
