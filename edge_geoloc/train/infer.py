"""Batched torch inference for training-time validation and evaluation (workstation side)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edge_geoloc.model.config import ModelConfig
from edge_geoloc.model.vit import CrossViewModel
from edge_geoloc.runtime.preprocess import InputSpec, normalize


def input_specs(cfg: ModelConfig) -> tuple[InputSpec, InputSpec]:
    """Street (at its FoV) and aerial input specs of a model config: the numbers the model card carries."""
    street = cfg.street_input
    return (
        InputSpec(street.height, street.width, cfg.mean, cfg.std, fov_deg=cfg.fov_deg),
        InputSpec(cfg.aerial.height, cfg.aerial.width, cfg.mean, cfg.std),
    )


def crop_fov(panoramas: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Centre FoV crop of 360-degree panoramas already at the model's 360 size (N, H, W, 3)."""
    width = cfg.street_input.width
    if width >= panoramas.shape[2]:
        return panoramas
    start = (panoramas.shape[2] - width) // 2
    return panoramas[:, :, start : start + width]


def to_tensor(batch_hwc: np.ndarray, spec: InputSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.from_numpy(normalize(batch_hwc, spec)).to(device)


@torch.no_grad()
def encode(
    branch: Callable[..., torch.Tensor],
    images: np.ndarray,
    spec: InputSpec,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
    keep_ratio: float | None = None,
) -> np.ndarray:
    """Descriptors (N, D) float32 of uint8 images already at the branch's input size (``branch``: a
    module, put in eval mode here, or a bound method of a model already in eval mode)."""
    if isinstance(branch, torch.nn.Module):
        branch.eval()
    out = []
    for s in range(0, len(images), batch_size):
        x = to_tensor(images[s : s + batch_size], spec, device)
        d = branch(x) if keep_ratio is None else branch(x, keep_ratio=keep_ratio)
        out.append(d.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def encode_street(
    model: CrossViewModel, panoramas: np.ndarray, batch_size: int = 128, device: str = "cpu"
) -> np.ndarray:
    spec, _ = input_specs(model.cfg)
    model.eval()
    return encode(model.encode_street, crop_fov(panoramas, model.cfg), spec, batch_size, device)


def encode_aerial(
    model: CrossViewModel,
    tiles: np.ndarray,
    batch_size: int = 128,
    device: str = "cpu",
    keep_ratio: float | None = None,
) -> np.ndarray:
    _, spec = input_specs(model.cfg)
    return encode(model.aerial, tiles, spec, batch_size, device, keep_ratio)


@torch.no_grad()
def predict_offsets(model: CrossViewModel, street_desc: np.ndarray, aerial_desc: np.ndarray) -> np.ndarray:
    """Offset head on (street, retrieved tile) descriptor pairs: (N, 2) east/north metres."""
    model.eval()
    s = torch.from_numpy(np.ascontiguousarray(street_desc, dtype=np.float32))
    a = torch.from_numpy(np.ascontiguousarray(aerial_desc, dtype=np.float32))
    return model.offset(s, a).numpy().astype(np.float64)
