"""EfficientNet-Lite's layout without torch: the block list of each variant, and its cost.

Shared by the torch model (:mod:`edge_geoloc.model.efficientnet`) and the analytic FLOP count
(:mod:`edge_geoloc.export.flops`), which must run where torch is not installed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# B0's stages (kernel, stride, expand ratio, output channels, repeats); Lite removes SE.
_B0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)

# (width, depth multiplier, ImageNet input size) of each Lite variant.
VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
}
STEM_WIDTH = 32
HEAD_WIDTH = 1280
BN_EPS = 1e-3
# The Lite weights' input normalization: RGB 0..255 -> (x - 127) / 128, i.e. mean/std on 0..1 below.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3
NUM_STAGES = len(_B0_STAGES)


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TF's rounding of scaled channel counts to a multiple of 8, never more than 10% down."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


@dataclass(frozen=True)
class BlockSpec:
    cin: int
    cout: int
    kernel: int
    stride: int
    expand: int
    stage: int  # 0-based stage index: what output_stride and freezing count in


def block_specs(variant: str) -> list[BlockSpec]:
    """Every MBConv block of a Lite variant (the first and last stages are not repeated more, as in Lite)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r} (known: {', '.join(VARIANTS)})")
    width, depth, _ = VARIANTS[variant]
    specs: list[BlockSpec] = []
    cin = STEM_WIDTH
    last = len(_B0_STAGES) - 1
    for s, (k, stride, e, c, r) in enumerate(_B0_STAGES):
        cout = _round_filters(c, width)
        repeats = r if s in (0, last) else math.ceil(r * depth)
        for i in range(repeats):
            specs.append(BlockSpec(cin, cout, k, stride if i == 0 else 1, e, s))
            cin = cout
    return specs


def trunk_channels(variant: str, stages: int) -> int:
    """Output channels of the trunk truncated after ``stages`` stages."""
    return [s.cout for s in block_specs(variant) if s.stage < stages][-1]


def stem_cost(variant: str, height: int, width: int, output_stride: int, stages: int) -> tuple[int, int]:
    """(MACs, parameters) of the truncated backbone on an input of height x width (BatchNorm's
    scale and shift counted as parameters, not as MACs), with strides past ``output_stride`` dilated."""
    h, w = (height + 1) // 2, (width + 1) // 2
    macs = h * w * STEM_WIDTH * 3 * 9
    params = STEM_WIDTH * 3 * 9 + 2 * STEM_WIDTH
    stride = 2
    for spec in block_specs(variant):
        if spec.stage >= stages:
            break
        hidden = spec.cin * spec.expand
        if spec.expand != 1:
            macs += h * w * hidden * spec.cin
            params += hidden * spec.cin + 2 * hidden
        if spec.stride > 1 and stride < output_stride:
            stride *= spec.stride
            h, w = (h + 1) // 2, (w + 1) // 2
        k2 = spec.kernel * spec.kernel
        macs += h * w * hidden * k2 + h * w * spec.cout * hidden
        params += hidden * k2 + 2 * hidden + spec.cout * hidden + 2 * spec.cout
    return macs, params
