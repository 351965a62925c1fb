"""The papers' losses on L2-normalized descriptors (cosine similarities).

- soft-margin triplet over all in-batch negatives, both directions (TransGeo, alpha = 20):
  ``log(1 + exp(alpha (s_neg - s_pos)))`` averaged over pairs;
- WACV 2021 weighted loss with separate weights for positives and negatives:
  ``sum sp(-alpha_p (s_p - m_p)) / (alpha_p N_p) + sum sp(alpha_n (s_n - m_n)) / (alpha_n N_n)``;
- VIGOR's IoU semi-positive loss ``(S_semi / S_pos - IoU_semi / IoU_pos)^2``;
- the offset L2 loss (VIGOR's delta regression);
- symmetric InfoNCE with a learnable temperature (Sample4Geo's choice).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _check_pair(street: torch.Tensor, aerial: torch.Tensor) -> None:
    if street.shape != aerial.shape or street.ndim != 2:
        raise ValueError(
            f"descriptors must be matching (B, D) batches, got {tuple(street.shape)} and {tuple(aerial.shape)}"
        )
    if street.shape[0] < 2:
        raise ValueError("in-batch losses need at least two pairs")


def soft_margin_triplet(street: torch.Tensor, aerial: torch.Tensor, alpha: float = 20.0) -> torch.Tensor:
    """TransGeo's SoftTripletBiLoss: every in-batch negative, both directions, mean over pairs."""
    _check_pair(street, aerial)
    sim = street @ aerial.t()
    pos = sim.diagonal()
    off = ~torch.eye(len(sim), dtype=torch.bool, device=sim.device)
    q2r = F.softplus((sim - pos[:, None]) * alpha)[off].mean()
    r2q = F.softplus((sim - pos[None, :]) * alpha)[off].mean()
    return (q2r + r2q) / 2


def wacv_weighted(
    street: torch.Tensor,
    aerial: torch.Tensor,
    alpha_p: float = 5.0,
    m_p: float = 1.0,
    alpha_n: float = 20.0,
    m_n: float = 0.0,
) -> torch.Tensor:
    """WACV 2021's binomial-deviance style loss with separate (alpha, m) for positives and negatives.

    One positive per query and B - 1 negatives: alpha_p much smaller than alpha_n, since the
    few positives would otherwise dominate. Both directions (street->aerial, aerial->street)
    share the similarity matrix, so its negatives are counted once.
    """
    _check_pair(street, aerial)
    sim = street @ aerial.t()
    pos = sim.diagonal()
    neg = sim[~torch.eye(len(sim), dtype=torch.bool, device=sim.device)]
    loss_p = F.softplus(-alpha_p * (pos - m_p)).sum() / (alpha_p * pos.numel())
    loss_n = F.softplus(alpha_n * (neg - m_n)).sum() / (alpha_n * neg.numel())
    return loss_p + loss_n


def iou_semi_positive(
    street: torch.Tensor,
    aerial_pos: torch.Tensor,
    aerial_semi: torch.Tensor,
    iou_pos: torch.Tensor,
    iou_semi: torch.Tensor,
) -> torch.Tensor:
    """VIGOR: the similarity to a semi-positive, relative to the positive, should follow the IoU ratio."""
    s_pos = (street * aerial_pos).sum(-1)
    s_semi = (street * aerial_semi).sum(-1)
    return ((s_semi / s_pos.clamp_min(1e-3) - iou_semi / iou_pos) ** 2).mean()


def offset_l2(pred_m: torch.Tensor, target_m: torch.Tensor, tile_m: float) -> torch.Tensor:
    """Squared offset error in half-tile units (so its scale does not depend on the tile size)."""
    half = tile_m / 2.0
    return (((pred_m - target_m) / half) ** 2).sum(-1).mean()


class InfoNCE(nn.Module):
    """Symmetric InfoNCE with a learnable temperature (CLIP/Sample4Geo), initialized at 1/14."""

    def __init__(self, init_temperature: float = 1 / 14, label_smoothing: float = 0.1) -> None:
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.label_smoothing = label_smoothing

    @property
    def temperature(self) -> float:
        return float(1.0 / self.log_scale.detach().exp())

    def forward(self, street: torch.Tensor, aerial: torch.Tensor) -> torch.Tensor:
        _check_pair(street, aerial)
        logits = street @ aerial.t() * self.log_scale.clamp(max=math.log(100.0)).exp()
        target = torch.arange(len(logits), device=logits.device)
        return (
            F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
            + F.cross_entropy(logits.t(), target, label_smoothing=self.label_smoothing)
        ) / 2


LOSSES = ("triplet", "wacv", "infonce")


def make_retrieval_loss(name: str, **kwargs: float) -> nn.Module:
    """A loss module ``f(street, aerial) -> scalar`` by name."""
    if name == "infonce":
        return InfoNCE(**kwargs)
    fns = {"triplet": soft_margin_triplet, "wacv": wacv_weighted}
    if name not in fns:
        raise ValueError(f"unknown retrieval loss {name!r} (choose from {', '.join(LOSSES)})")

    class _Fn(nn.Module):
        def forward(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            return fns[name](s, a, **kwargs)

    return _Fn()
