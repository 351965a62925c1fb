"""TransGeo-style ViT branches in plain torch (timm cannot load beside the CPU torch build here).

Each branch: patch embedding (a strided conv), a class token and an optional distillation token
(DeiT), learned position embeddings (resized to the input grid when it differs), pre-norm
transformer blocks, and one linear head per token; the descriptor is the L2-normalized mean of
the heads, as DeiT-distilled predicts.

Attention is written with explicit matmuls rather than ``F.scaled_dot_product_attention`` for
two reasons: the patch pruning needs the attention of the class tokens, and torch's FLOP counter
does not see the fused kernel on the CPU.

**Attention-guided patch pruning** (TransGeo's "attend and zoom-in"): after block ``prune_at``
the patch tokens are scored by the attention the class (and distillation) token pay them in that
block, summed over heads, and only the top ``keep_ratio`` continue (with the position embedding
already added). TransGeo scores with the last block of a separate first-stage pass; scoring
inside the same pass at an early block is what makes the pruned branch do fewer FLOPs in one
graph (set ``prune_at = depth - 1`` for the closest single-pass equivalent). At
``keep_ratio == 1`` nothing is pruned and the output equals the unpruned model exactly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edge_geoloc.cameras.bev import BevSpec, ground_maps
from edge_geoloc.model.config import BranchConfig, ModelConfig, conv_stem_widths, keep_count
from edge_geoloc.model.efficientnet import EfficientNetLite


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out), attn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y, attn = self.attn(self.norm1(x))
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class ConvStem(nn.Module):
    """Patch embedding by stride-2 3x3 convolutions (Xiao et al. 2021, "Early convolutions help
    transformers see better"): the same token grid as a patch-p conv, but optimization from scratch
    is far faster and steadier, which is what training without pretrained weights on a CPU needs.
    """

    def __init__(self, dim: int, patch: int) -> None:
        super().__init__()
        widths = conv_stem_widths(dim, patch)
        layers: list[nn.Module] = []
        for cin, cout in itertools.pairwise(widths):
            layers += [
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(widths[-1], dim, 1))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class BackboneStem(nn.Module):
    """Patch embedding by a pretrained CNN: EfficientNet-Lite truncated at stride ``patch`` (its
    later stages dilated), then a 1x1 projection to ``dim``: one token per feature-map cell."""

    def __init__(self, cfg: ModelConfig, patch: int) -> None:
        super().__init__()
        self.trunk = EfficientNetLite(cfg.stem, output_stride=patch).truncate(cfg.stem_stages)
        self.proj = nn.Conv2d(self.trunk.out_channels, cfg.dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.trunk(x))


def make_stem(cfg: ModelConfig, patch: int) -> nn.Module:
    if cfg.pretrained_stem:
        return BackboneStem(cfg, patch)
    if cfg.stem == "conv":
        return ConvStem(cfg.dim, patch)
    return nn.Conv2d(3, cfg.dim, kernel_size=patch, stride=patch)


def resize_pos_embed(
    pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int], n_special: int
) -> torch.Tensor:
    """Bilinearly resize the patch part of a (1, n_special + H*W, C) position embedding."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    special, grid = pos[:, :n_special], pos[:, n_special:]
    c = grid.shape[-1]
    grid = grid.reshape(1, old_grid[0], old_grid[1], c).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode="bilinear", align_corners=False)
    return torch.cat([special, grid.permute(0, 2, 3, 1).reshape(1, -1, c)], dim=1)


class ViTBranch(nn.Module):
    """One branch: image -> (descriptor, token features, class-token attention over patches)."""

    def __init__(self, cfg: ModelConfig, branch: BranchConfig, prunable: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.branch = branch
        self.n_special = cfg.special_tokens
        self.prunable = prunable
        self.patch_embed = make_stem(cfg, branch.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, cfg.dim)) if cfg.distilled else None
        self.pos_embed = nn.Parameter(torch.zeros(1, self.n_special + branch.num_patches, cfg.dim))
        self.blocks = nn.ModuleList(Block(cfg.dim, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=1e-6)
        self.head = nn.Linear(cfg.dim, cfg.descriptor_dim)
        self.head_dist = nn.Linear(cfg.dim, cfg.descriptor_dim) if cfg.distilled else None
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if self.dist_token is not None:
            nn.init.trunc_normal_(self.dist_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if isinstance(self.patch_embed, nn.Conv2d):
            w = self.patch_embed.weight
            nn.init.trunc_normal_(w.view(w.shape[0], -1), std=math.sqrt(1.0 / w[0].numel()))
            nn.init.zeros_(self.patch_embed.bias)

    def grid_of(self, x: torch.Tensor) -> tuple[int, int]:
        p = self.branch.patch
        return x.shape[-2] // p, x.shape[-1] // p

    def embed(self, x: torch.Tensor, from_trunk: bool = False) -> torch.Tensor:
        """Patch tokens with special tokens prepended and position embeddings added.

        ``from_trunk``: ``x`` is already the pretrained stem's trunk output (B, C, rows, cols), as a
        training run with a frozen, cached trunk feeds it; only the projection to ``dim`` runs."""
        b = x.shape[0]
        if from_trunk:
            grid = (x.shape[-2], x.shape[-1])
            tokens = self.patch_embed.proj(x)
        else:
            grid = self.grid_of(x)
            tokens = self.patch_embed(x)
        tokens = tokens.flatten(2).transpose(1, 2)
        specials = [self.cls_token.expand(b, -1, -1)]
        if self.dist_token is not None:
            specials.append(self.dist_token.expand(b, -1, -1))
        pos = resize_pos_embed(self.pos_embed, self.branch.grid, grid, self.n_special)
        return torch.cat([*specials, tokens], dim=1) + pos

    def patch_scores(self, attn: torch.Tensor) -> torch.Tensor:
        """Attention of the special tokens to each patch, summed over heads and tokens: (B, N)."""
        return attn[:, :, : self.n_special, self.n_special :].sum(dim=(1, 2))

    def prune(self, x: torch.Tensor, attn: torch.Tensor, keep_ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the special tokens and the top-scoring patches; also return the kept patch indices."""
        n = int(x.shape[1]) - self.n_special  # static: an exported graph keeps a fixed number of patches
        k = keep_count(n, keep_ratio)
        scores = self.patch_scores(attn)
        idx = torch.topk(scores, k, dim=1).indices
        idx = torch.sort(idx, dim=1).values  # spatial order: deterministic, export-friendly
        patches = torch.gather(x[:, self.n_special :], 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        return torch.cat([x[:, : self.n_special], patches], dim=1), idx

    def forward_features(
        self, x: torch.Tensor, keep_ratio: float | None = None, from_trunk: bool = False
    ) -> dict[str, torch.Tensor]:
        keep = self.cfg.keep_ratio if keep_ratio is None else keep_ratio
        prune = self.prunable and keep < 1.0
        h = self.embed(x, from_trunk)
        kept = None
        last_attn = None
        for i, blk in enumerate(self.blocks):
            h, attn = blk(h)
            last_attn = attn
            if prune and i == self.cfg.prune_at:
                h, kept = self.prune(h, attn, keep)
        h = self.norm(h)
        out = {"tokens": h, "attn": last_attn}
        if kept is not None:
            out["kept"] = kept
        return out

    def descriptor_from(self, tokens: torch.Tensor) -> torch.Tensor:
        d = self.head(tokens[:, 0])
        if self.head_dist is not None:
            d = (d + self.head_dist(tokens[:, 1])) / 2
        return F.normalize(d, dim=-1)

    def forward(self, x: torch.Tensor, keep_ratio: float | None = None, from_trunk: bool = False) -> torch.Tensor:
        return self.descriptor_from(self.forward_features(x, keep_ratio, from_trunk)["tokens"])


class OffsetHead(nn.Module):
    """VIGOR's offset regression: concat(street, aerial) descriptors -> (east, north) metres from the tile centre."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.scale = cfg.tile_m / 2.0  # predict in half-tiles, report metres
        d = cfg.descriptor_dim
        self.mlp = nn.Sequential(
            nn.Linear(2 * d, cfg.offset_hidden),
            nn.GELU(),
            nn.Linear(cfg.offset_hidden, cfg.offset_hidden),
            nn.GELU(),
            nn.Linear(cfg.offset_hidden, 2),
        )

    def forward(self, street: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([street, aerial], dim=-1)) * self.scale


class BevSampler(nn.Module):
    """The bird's-eye view of a normalized panorama batch, on an aerial-sized canvas (the mean colour
    outside the ground mask): one ``grid_sample`` with a constant grid, so it lives inside the exported
    street graph. Geometry and its limits: :mod:`edge_geoloc.cameras.bev`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        h, w = cfg.street_input.height, cfg.street_input.width
        spec = BevSpec(cfg.bev_px, cfg.aerial_gsd_m, cfg.cam_height_m, cfg.bev_radius_m, cfg.elevation_range_deg)
        map_x, map_y, mask = ground_maps(spec, h, w)
        # The panorama is padded by one column on each side (the seam wraps), hence w + 2 and x + 1.
        grid = np.stack([(map_x + 1.5) / (w + 2) * 2 - 1, (map_y + 0.5) / h * 2 - 1], axis=-1)
        canvas = (cfg.aerial.height, cfg.aerial.width)
        top, left = (canvas[0] - cfg.bev_px) // 2, (canvas[1] - cfg.bev_px) // 2
        self.pad = (left, canvas[1] - cfg.bev_px - left, top, canvas[0] - cfg.bev_px - top)
        self.register_buffer("grid", torch.from_numpy(grid.astype(np.float32))[None], persistent=False)
        self.register_buffer("mask", torch.from_numpy((mask > 0).astype(np.float32))[None, None], persistent=False)

    def forward(self, panorama: torch.Tensor) -> torch.Tensor:
        padded = torch.cat([panorama[..., -1:], panorama, panorama[..., :1]], dim=-1)
        grid = self.grid.expand(panorama.shape[0], -1, -1, -1)
        bev = F.grid_sample(padded, grid, mode="bilinear", padding_mode="border", align_corners=False) * self.mask
        return F.pad(bev, self.pad)


class CrossViewModel(nn.Module):
    """Street and aerial branches (unshared weights, as TransGeo) plus the offset head; with ``bev_px``
    the street descriptor also encodes the panorama's ground view with the aerial branch."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.street = ViTBranch(cfg, cfg.street_input)
        self.aerial = ViTBranch(cfg, cfg.aerial, prunable=True)
        self.offset = OffsetHead(cfg)
        self.bev = BevSampler(cfg) if cfg.bev_px else None

    def encode_street(
        self, x: torch.Tensor, from_trunk: bool = False, bev_trunk: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The street descriptor: the panorama branch's, fused with its ground view's when the model has one.
        ``from_trunk``: cached trunk features of the panorama (and ``bev_trunk`` of its ground view)."""
        d = self.street(x, from_trunk=from_trunk)
        if self.bev is None:
            return d
        if from_trunk:
            if bev_trunk is None:
                raise ValueError("a BEV model trained from cached trunk features needs the ground views' features too")
            g = self.aerial(bev_trunk, from_trunk=True)
        else:
            g = self.aerial(self.bev(x))
        return F.normalize(d + g, dim=-1)

    def forward(self, street: torch.Tensor, aerial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode_street(street), self.aerial(aerial)
