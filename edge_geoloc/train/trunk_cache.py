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


def cache_trunk(
    model: CrossViewModel, street: np.ndarray, aerial: np.ndarray, cache_dir: Path, rotations: bool = True
) -> TrunkFeatures:
    """Trunk features of a split's panoramas (at the model's FoV) and tiles (four rotations, or one)."""
    cfg = model.cfg
    if not cfg.pretrained_stem:
        raise ValueError(f"model '{cfg.name}': a trunk cache needs a pretrained stem, not stem {cfg.stem!r}")
    s_spec, a_spec = input_specs(cfg)
    key = {"stem": cfg.stem, "stages": cfg.stem_stages, "mean": list(cfg.mean), "std": list(cfg.std)}
    pano = crop_fov(street, cfg)
    s_path = cache_dir / f"trunk-street-{_digest(pano, {**key, 'patch': cfg.street.patch})}.npy"
    s_feat = _cached(s_path, lambda: trunk_features(model.street.patch_embed.trunk, pano, s_spec, "street trunk"))
    turns = range(4) if rotations else range(1)
    a_feat = []
    for k in turns:
        tiles = np.ascontiguousarray(np.rot90(aerial, k=-k, axes=(1, 2)))
        a_path = cache_dir / f"trunk-aerial-{_digest(tiles, {**key, 'patch': cfg.aerial.patch})}.npy"
        a_feat.append(
            _cached(
                a_path,
                lambda t=tiles, k=k: trunk_features(
                    model.aerial.patch_embed.trunk, t, a_spec, f"aerial trunk {k * 90} deg"
                ),
            )
        )
    bev = None
    if model.bev is not None:
        bev_key = {**key, "bev": [cfg.bev_px, cfg.bev_radius_m, cfg.cam_height_m, *cfg.elevation_range_deg]}
        bev_feat = []
        for k in turns:  # a quarter turn of the scene turns the north-up ground view like the tile
            view = lambda x, k=k: torch.rot90(model.bev(x), k=-k, dims=(2, 3))  # noqa: E731
            b_path = cache_dir / f"trunk-bev-{_digest(pano, {**bev_key, 'turn': k})}.npy"
            bev_feat.append(
                _cached(
                    b_path,
                    lambda v=view, k=k: trunk_features(
                        model.aerial.patch_embed.trunk, pano, s_spec, f"ground view trunk {k * 90} deg", view=v
                    ),
                )
            )
        bev = np.stack(bev_feat)
    return TrunkFeatures(s_feat, np.stack(a_feat), bev)


def roll_quarters(street_features: torch.Tensor, k: int) -> torch.Tensor:
    """The panorama rolled by k quarter turns (augment.rotate90's direction), in feature columns."""
    w = street_features.shape[-1]
    if w % 4:
        raise ValueError(f"street feature width {w} must be a multiple of 4 to roll by quarter turns")
    return torch.roll(street_features, k * w // 4, dims=-1)
