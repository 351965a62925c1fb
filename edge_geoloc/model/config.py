"""Model configurations: named YAML files in ``edge_geoloc/configs/model`` or a path.

A config fixes both branches' input sizes, the ViT size and the descriptor. It is plain data
(no torch), so the model card, the FLOP counter and the runtime read the same sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from edge_geoloc.config import ConfigError, check, load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "model"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def keep_count(num_patches: int, keep_ratio: float) -> int:
    """Patches kept at a keep ratio (TransGeo: 0.64 keeps 400 of 625, 256 of 400); torch-free for FLOP counts."""
    return max(1, min(num_patches, round(keep_ratio * num_patches)))


def conv_stem_widths(dim: int, patch: int) -> list[int]:
    """Channel widths of the conv stem's stride-2 convs, input first (one conv per halving of
    ``patch``, doubling up to ``dim``); shared by the model and the FLOP count."""
    steps = round(math.log2(patch))
    if 2**steps != patch:
        raise ValueError(f"a conv stem needs a power-of-two patch size, got {patch}")
    return [3] + [max(16, dim >> (steps - i)) for i in range(1, steps + 1)]


@dataclass(frozen=True)
class BranchConfig:
    height: int = field(metadata=check(lambda v: v > 0, "a positive pixel count"))
    width: int = field(metadata=check(lambda v: v > 0, "a positive pixel count"))
    patch: int = field(metadata=check(lambda v: v > 0, "a positive patch size"))

    def __post_init__(self) -> None:
        if self.height < self.patch or self.width < self.patch:
            raise ValueError(f"input {self.height}x{self.width} is smaller than one patch of {self.patch}")

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid; a remainder is dropped as a strided conv does (TransGeo: 616 px -> 38 columns)."""
        return self.height // self.patch, self.width // self.patch

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]


@dataclass(frozen=True)
class ModelConfig:
    """Two unshared ViT branches (TransGeo): street (query) and aerial (reference)."""

    name: str
    dim: int = field(metadata=check(lambda v: v > 0, "a positive width"))
    depth: int = field(metadata=check(lambda v: v > 0, "a positive number of blocks"))
    heads: int = field(metadata=check(lambda v: v > 0, "a positive number of heads"))
    mlp_ratio: float = field(metadata=check(lambda v: v > 0, "a positive ratio"))
    descriptor_dim: int = field(metadata=check(lambda v: v > 0, "a positive dimension"))
    street: BranchConfig  # the 360-degree panorama input; limited FoV crops its width
    aerial: BranchConfig
    distilled: bool = True  # a distillation token beside the class token (DeiT); descriptor = mean of both heads
    # Patch embedding: one patch-size conv (ViT), stride-2 convs (ViTc), or a pretrained EfficientNet-Lite
    # truncated at stride ``patch`` and projected to ``dim`` (a hybrid: CNN tokens, transformer aggregation).
    stem: Literal["patch", "conv", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"] = "patch"
    stem_stages: int = field(
        default=7, metadata=check(lambda v: 1 <= v <= 7, "a number of EfficientNet stages in [1, 7]")
    )
    # Where the weights start: None (random), "imagenet:<stem>" (the stem's ImageNet weights from the
    # efficientnet-lite package), or "deit:<path>" (a user's DeiT checkpoint in timm's key layout).
    init: str | None = None
    fov_deg: float = field(default=360.0, metadata=check(lambda v: 0 < v <= 360, "a field of view in (0, 360]"))
    tile_m: float = field(default=64.0, metadata=check(lambda v: v > 0, "a tile side in metres"))
    keep_ratio: float = field(default=1.0, metadata=check(lambda v: 0 < v <= 1, "a keep ratio in (0, 1]"))
    prune_at: int = field(default=2, metadata=check(lambda v: v >= 0, "a block index"))
    offset_hidden: int = field(default=256, metadata=check(lambda v: v > 0, "a positive width"))
    # Co-retrieval with the panorama's ground (Panorama-BEV): a bird's-eye view of ``bev_px`` pixels at the
    # aerial GSD, projected from the street input (flat ground, ``cam_height_m``, the panorama's
    # ``elevation_range_deg``, masked beyond ``bev_radius_m``), is encoded by the aerial branch and added
    # to the panorama's descriptor. 0: off.
    bev_px: int = field(default=0, metadata=check(lambda v: v >= 0, "a BEV size in pixels (0: off)"))
    bev_radius_m: float = field(default=16.0, metadata=check(lambda v: v > 0, "a radius in metres"))
    cam_height_m: float = field(default=2.0, metadata=check(lambda v: v > 0, "a camera height in metres"))
    elevation_range_deg: tuple[float, float] = (-45.0, 45.0)  # the panorama's rows, bottom to top
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not divisible by heads {self.heads}")
        if self.prune_at >= self.depth:
            raise ValueError(f"prune_at {self.prune_at} must be a block index below depth {self.depth}")
        if self.bev_px and (self.bev_px > min(self.aerial.height, self.aerial.width) or self.fov_deg < 360):
            raise ValueError(f"bev_px {self.bev_px}: a BEV needs a 360-degree panorama and fits in the aerial input")
        if self.pretrained_stem and any(b.patch not in (8, 16, 32) for b in (self.street, self.aerial)):
            raise ValueError(f"stem {self.stem}: the patch size is the backbone's output stride, 8, 16 or 32")
        if self.init is not None:
            kind, _, what = self.init.partition(":")
            if kind == "imagenet" and what != self.stem:
                raise ValueError(
                    f"init {self.init!r}: ImageNet weights exist for the stem, expected 'imagenet:{self.stem}'"
                )
            if kind == "deit" and (not what or self.stem != "patch"):
                raise ValueError(f"init {self.init!r}: 'deit:<checkpoint path>' initializes a patch-stem ViT")
            if kind not in ("imagenet", "deit"):
                raise ValueError(f"init {self.init!r}: expected 'imagenet:<stem>' or 'deit:<path>'")

    @property
    def pretrained_stem(self) -> bool:
        """A stem with ImageNet weights of its own (EfficientNet-Lite)."""
        return self.stem.startswith("efficientnet-")

    @property
    def street_input(self) -> BranchConfig:
        """The street branch's actual input: the panorama cropped to the FoV (TransGeo's protocol)."""
        if self.fov_deg >= 360:
            return self.street
        width = max(self.street.patch, int(self.fov_deg / 360.0 * self.street.width))
        return replace(self.street, width=width)

    @property
    def aerial_gsd_m(self) -> float:
        """Ground sample distance of the aerial input: the tile side over its pixels."""
        return self.tile_m / self.aerial.width

    @property
    def special_tokens(self) -> int:
        return 2 if self.distilled else 1

    def with_(self, **changes: object) -> ModelConfig:
        return replace(self, **changes)


def named_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def load_model_config(name_or_path: str | Path) -> ModelConfig:
    """A named config (``tiny``, ``transgeo-cvusa``, ``transgeo-vigor``) or a YAML path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise ConfigError(f"unknown model config {name_or_path!r} (named configs: {', '.join(named_configs())})")
    return load_config(ModelConfig, path)
