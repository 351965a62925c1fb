"""FLOP accounting in two named conventions, counted analytically from the model config.

- **paper** (``gmacs_paper``): multiply-accumulates of the Linear and Conv layers at batch 1, the
  way ptflops counts modules and the way TransGeo reports 11.32 G for DeiT-S on CVUSA. The
  attention matmuls (q.k and attn.v) are not modules and are not counted; biases, norms,
  activations and softmax are not counted either.
- **full** (``gflops_full``): every matmul and conv, the attention's included, with one
  multiply-add = 2 FLOPs. This is what ``torch.utils.flop_counter.FlopCounterMode`` reports for
  our explicit-matmul attention. Elementwise work (norms, softmax, GELU, residual adds) is left
  out: it is under 2% of a ViT and no kernel is bound by it on the targets.

The analytic count needs no torch and no weights, so a DeiT-S config is counted instantly; the
tests cross-check it against ``FlopCounterMode`` and module hooks on the real modules
(:func:`counted_flops`, :func:`module_macs`). Aerial patch pruning is counted as the graph runs
it: blocks up to ``prune_at`` see every patch, the later ones only the kept patches.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any, Literal

from edge_geoloc.model.config import BranchConfig, ModelConfig, conv_stem_widths, keep_count
from edge_geoloc.model.lite_spec import stem_cost, trunk_channels

PAPER = "paper: MACs of Linear and Conv layers at batch 1 (ptflops), attention matmuls q.k and attn.v excluded"
FULL = "full: FLOPs of every matmul and conv, attention included, a multiply-add = 2 FLOPs, batch 1"


@dataclass(frozen=True)
class BranchFlops:
    branch: str
    input_hw: tuple[int, int]
    patches: int
    kept_patches: int
    tokens_per_block: tuple[int, ...]
    linear_conv_macs: int
    attention_macs: int
    params: int

    @property
    def gmacs_paper(self) -> float:
        return self.linear_conv_macs / 1e9

    @property
    def gflops_full(self) -> float:
        return 2 * (self.linear_conv_macs + self.attention_macs) / 1e9

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["tokens_per_block"] = list(self.tokens_per_block)
        d["input_hw"] = list(self.input_hw)
        d.update(gmacs_paper=self.gmacs_paper, gflops_full=self.gflops_full)
        return d


def branch_input(cfg: ModelConfig, branch: Literal["street", "aerial"]) -> BranchConfig:
    """The branch as built: the street branch takes the FoV-cropped panorama."""
    if branch not in ("street", "aerial"):
        raise ValueError(f"unknown branch {branch!r} (expected street or aerial)")
    return cfg.street_input if branch == "street" else cfg.aerial


def embedding_cost(cfg: ModelConfig, b: BranchConfig) -> tuple[int, int]:
    """(MACs, parameters) of the patch embedding: one patch-size conv, the conv stem (stride-2 3x3
    convs without bias, each followed by BatchNorm, then a 1x1 conv to ``dim``), or a pretrained
    trunk at stride ``patch`` and its 1x1 projection to ``dim``."""
    d = cfg.dim
    if cfg.pretrained_stem:
        macs, params = stem_cost(cfg.stem, b.height, b.width, b.patch, cfg.stem_stages)
        c = trunk_channels(cfg.stem, cfg.stem_stages)
        return macs + b.num_patches * d * c, params + (c + 1) * d
    if cfg.stem == "patch":
        n = b.num_patches
        return n * d * 3 * b.patch * b.patch, (3 * b.patch * b.patch + 1) * d
    widths = conv_stem_widths(d, b.patch)
    h, w = b.height, b.width
    macs = params = 0
    for cin, cout in itertools.pairwise(widths):
        h, w = (h + 1) // 2, (w + 1) // 2
        macs += h * w * cout * cin * 9
        params += cout * cin * 9 + 2 * cout  # conv weights + BatchNorm scale and shift
    macs += h * w * d * widths[-1]
    params += (widths[-1] + 1) * d
    return macs, params


def branch_flops(cfg: ModelConfig, branch: Literal["street", "aerial"], keep_ratio: float | None = None) -> BranchFlops:
    """Both conventions for one branch at batch 1; ``keep_ratio`` (aerial only) defaults to the config's."""
    b = branch_input(cfg, branch)
    n, s, d = b.num_patches, cfg.special_tokens, cfg.dim
    hidden = int(d * cfg.mlp_ratio)
    keep = cfg.keep_ratio if keep_ratio is None else keep_ratio
    kept = keep_count(n, keep) if branch == "aerial" and keep < 1.0 else n
    tokens = tuple(s + (n if i <= cfg.prune_at else kept) for i in range(cfg.depth))
    block_linear = d * 3 * d + d * d + 2 * d * hidden  # qkv, proj, fc1, fc2 per token
    embed_macs, embed_params = embedding_cost(cfg, b)
    linear = embed_macs + sum(t * block_linear for t in tokens)
    linear += s * d * cfg.descriptor_dim  # one head per special token
    attention = sum(2 * t * t * d for t in tokens)  # q.k and attn.v over all heads
    params = (
        embed_params
        + s * d  # class (+ distillation) token
        + (s + n) * d  # position embedding
        + cfg.depth * (4 * d + block_linear + 3 * d + d + hidden + d)  # norms, weights, biases
        + 2 * d  # final norm
        + s * (d * cfg.descriptor_dim + cfg.descriptor_dim)
    )
    return BranchFlops(branch, (b.height, b.width), n, kept, tokens, linear, attention, params)


def ground_view_flops(cfg: ModelConfig, keep_ratio: float | None = None) -> BranchFlops | None:
    """A BEV model's street graph also runs the (shared) aerial branch on the panorama's ground view; None
    for a model without one."""
    return branch_flops(cfg, "aerial", keep_ratio) if cfg.bev_px else None


def offset_flops(cfg: ModelConfig) -> dict[str, float]:
    """The offset head's MLP (runs once per candidate tile; not part of the encoder totals)."""
    h, d2 = cfg.offset_hidden, 2 * cfg.descriptor_dim
    macs = d2 * h + h * h + h * 2
    params = macs + h + h + 2
    return {"gmacs_paper": macs / 1e9, "gflops_full": 2 * macs / 1e9, "params": params}


def model_flops(cfg: ModelConfig, keep_ratio: float | None = None) -> dict[str, Any]:
    """The JSON of ``edge-geoloc flops``: per branch, totals of both conventions, pruning savings."""
    keep = cfg.keep_ratio if keep_ratio is None else keep_ratio
    street = branch_flops(cfg, "street")
    aerial = branch_flops(cfg, "aerial", keep)
    unpruned = branch_flops(cfg, "aerial", 1.0)
    saved_macs = unpruned.linear_conv_macs - aerial.linear_conv_macs
    saved_full = unpruned.gflops_full - aerial.gflops_full
    ground = ground_view_flops(cfg, keep)
    return {
        "config": cfg.name,
        "keep_ratio": keep,
        "conventions": {"gmacs_paper": PAPER, "gflops_full": FULL},
        "street": street.as_dict(),
        "aerial": aerial.as_dict(),
        "offset_head": offset_flops(cfg),
        "ground_view": ground.as_dict() if ground else None,
        "gmacs_paper": street.gmacs_paper + aerial.gmacs_paper + (ground.gmacs_paper if ground else 0.0),
        "gflops_full": street.gflops_full + aerial.gflops_full + (ground.gflops_full if ground else 0.0),
        "params": street.params + aerial.params + offset_flops(cfg)["params"],
        "pruning": {
            "keep_ratio": keep,
            "prune_at": cfg.prune_at,
            "aerial_kept_patches": aerial.kept_patches,
            "aerial_patches": aerial.patches,
            "aerial_gmacs_paper_unpruned": unpruned.gmacs_paper,
            "aerial_gflops_full_unpruned": unpruned.gflops_full,
            "saved_gmacs_paper": saved_macs / 1e9,
            "saved_gflops_full": saved_full,
            "saved_fraction_aerial_full": saved_full / unpruned.gflops_full,
        },
    }


def format_table(report: dict[str, Any]) -> str:
    """A human-readable table of :func:`model_flops` (conventions spelled out under it)."""
    lines = [
        f"model config {report['config']}, aerial keep ratio {report['keep_ratio']:g}",
        f"{'branch':<8} {'input':>9} {'patches':>12} {'GMACs paper':>12} {'GFLOPs full':>12} {'params M':>9}",
    ]
    for name in ("street", "aerial"):
        b = report[name]
        patches = f"{b['kept_patches']}/{b['patches']}" if b["kept_patches"] != b["patches"] else str(b["patches"])
        lines.append(
            f"{name:<8} {b['input_hw'][0]:>4}x{b['input_hw'][1]:<4} {patches:>12} {b['gmacs_paper']:>12.3f}"
            f" {b['gflops_full']:>12.3f} {b['params'] / 1e6:>9.2f}"
        )
    lines.append(
        f"{'total':<8} {'':>9} {'':>12} {report['gmacs_paper']:>12.3f} {report['gflops_full']:>12.3f}"
        f" {report['params'] / 1e6:>9.2f}"
    )
    off = report["offset_head"]
    lines.append(f"offset head (per candidate, not in the totals): {off['gflops_full'] * 1e3:.3f} MFLOPs full")
    p = report["pruning"]
    if p["keep_ratio"] < 1.0:
        lines.append(
            f"pruning after block {p['prune_at']} keeps {p['aerial_kept_patches']} of {p['aerial_patches']} aerial"
            f" patches: saves {p['saved_gmacs_paper']:.3f} GMACs paper, {p['saved_gflops_full']:.3f} GFLOPs full"
            f" ({100 * p['saved_fraction_aerial_full']:.1f}% of the aerial branch)"
        )
    lines += [f"  {PAPER}", f"  {FULL}"]
    return "\n".join(lines)


# --- cross-checks on the real modules (torch, imported when called) ----------------------------


def counted_flops(module: Any, *inputs: Any) -> int:
    """Total FLOPs ``torch.utils.flop_counter.FlopCounterMode`` counts for one forward pass."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*inputs)
    return int(counter.get_total_flops())


def module_macs(module: Any, *inputs: Any) -> int:
    """ptflops-style MACs: weights x positions of every nn.Linear and nn.Conv2d run in one forward pass."""
    import torch
    from torch import nn

    total = 0

    def linear_hook(m: nn.Linear, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        total += inp[0].numel() // m.in_features * m.in_features * m.out_features

    def conv_hook(m: nn.Conv2d, inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        per_position = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
        total += out.numel() * per_position

    handles = []
    for m in module.modules():
        if isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for h in handles:
            h.remove()
    return total
