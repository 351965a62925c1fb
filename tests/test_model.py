import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_geoloc.config import ConfigError  # noqa: E402
from edge_geoloc.model import BranchConfig, load_model_config, named_configs  # noqa: E402
from edge_geoloc.model.losses import (  # noqa: E402
    InfoNCE,
    iou_semi_positive,
    make_retrieval_loss,
    offset_l2,
    soft_margin_triplet,
    wacv_weighted,
)
from edge_geoloc.model.vit import CrossViewModel, keep_count, resize_pos_embed  # noqa: E402


def small_cfg(**kw):
    cfg = load_model_config("tiny").with_(dim=32, depth=3, heads=2, descriptor_dim=16, prune_at=1, offset_hidden=16)
    return cfg.with_(street=BranchConfig(16, 64, 8), aerial=BranchConfig(32, 32, 8), **kw)


def test_named_configs_load():
    assert {"tiny", "transgeo-cvusa", "transgeo-vigor"} <= set(named_configs())
    cvusa = load_model_config("transgeo-cvusa")
    assert (cvusa.dim, cvusa.depth, cvusa.heads, cvusa.descriptor_dim) == (384, 12, 6, 1000)
    assert cvusa.street.grid == (7, 38) and cvusa.aerial.num_patches == 256
    with pytest.raises(ConfigError, match="unknown model config 'nope'"):
        load_model_config("nope")


def test_fov_crops_the_street_input_like_transgeo():
    cfg = load_model_config("transgeo-cvusa")
    # TransGeo: size_grd[1] = int(fov / 360 * 616); the conv drops the remainder.
    assert cfg.with_(fov_deg=180).street_input.width == 308
    assert cfg.with_(fov_deg=180).street_input.grid == (7, 19)
    assert cfg.with_(fov_deg=90).street_input.grid == (7, 9)
    with pytest.raises(ValueError, match="smaller than one patch"):
        BranchConfig(4, 64, 8)


def test_descriptors_are_normalized_and_shapes():
    torch.manual_seed(0)
    cfg = small_cfg()
    model = CrossViewModel(cfg).eval()
    s, a = model(torch.randn(3, 3, 16, 64), torch.randn(3, 3, 32, 32))
    assert s.shape == (3, 16) and a.shape == (3, 16)
    assert torch.allclose(s.norm(dim=1), torch.ones(3), atol=1e-5)
    off = model.offset(s, a)
    assert off.shape == (3, 2)


def test_keep_ratio_one_equals_unpruned_exactly():
    torch.manual_seed(1)
    cfg = small_cfg()
    model = CrossViewModel(cfg).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        full = model.aerial(x, keep_ratio=1.0)
        model.aerial.prunable = False
        plain = model.aerial(x)
    assert torch.equal(full, plain)


def test_pruning_keeps_the_most_attended_patches():
    torch.manual_seed(2)
    cfg = small_cfg(keep_ratio=0.64)
    model = CrossViewModel(cfg).eval()
    x = torch.randn(2, 3, 32, 32)  # 16 patches -> keep round(0.64 * 16) = 10
    assert keep_count(16, 0.64) == 10 and keep_count(625, 0.64) == 400 and keep_count(400, 0.64) == 256
    branch = model.aerial
    with torch.no_grad():
        out = branch.forward_features(x)
        assert out["tokens"].shape == (2, 2 + 10, 32)
        # Recompute the scores at the pruning block and check the kept set is the top 10.
        h = branch.embed(x)
        for blk in branch.blocks[: cfg.prune_at + 1]:
            h, attn = blk(h)
        scores = branch.patch_scores(attn)
        top = torch.topk(scores, 10, dim=1).indices.sort(dim=1).values
    assert torch.equal(out["kept"], top)
    # Pruned descriptors differ from the unpruned ones but stay unit vectors.
    with torch.no_grad():
        pruned, full = branch(x), branch(x, keep_ratio=1.0)
    assert not torch.allclose(pruned, full)
    assert torch.allclose(pruned.norm(dim=1), torch.ones(2), atol=1e-5)


def test_pos_embed_resize_keeps_special_tokens():
    pos = torch.randn(1, 2 + 4 * 8, 5)
    out = resize_pos_embed(pos, (4, 8), (2, 4), 2)
    assert out.shape == (1, 2 + 8, 5)
    assert torch.equal(out[:, :2], pos[:, :2])
    # Downsizing by 2 with bilinear (align_corners=False) averages 2x2 blocks.
    grid = pos[:, 2:].reshape(4, 8, 5)
    assert torch.allclose(out[0, 2], grid[:2, :2].mean(dim=(0, 1)), atol=1e-6)
    assert resize_pos_embed(pos, (4, 8), (4, 8), 2) is pos


def test_soft_margin_triplet_hand_computed():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    # sim = [[1, .6], [0, .8]]; query->ref negatives: (0.6 - 1), (0 - 0.8); ref->query: (0 - 1), (0.6 - 0.8)
    sp = lambda d: math.log1p(math.exp(20 * d))  # noqa: E731
    expected = ((sp(-0.4) + sp(-0.8)) / 2 + (sp(-1.0) + sp(-0.2)) / 2) / 2
    assert soft_margin_triplet(s, a).item() == pytest.approx(expected, rel=1e-5)


def test_wacv_weighted_hand_computed():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    ap, mp, an, mn = 5.0, 1.0, 20.0, 0.0
    sp = lambda d: math.log1p(math.exp(d))  # noqa: E731
    pos = [1.0, 0.8]
    neg = [0.6, 0.0]
    expected = sum(sp(-ap * (p - mp)) for p in pos) / (ap * 2) + sum(sp(an * (n - mn)) for n in neg) / (an * 2)
    assert wacv_weighted(s, a, ap, mp, an, mn).item() == pytest.approx(expected, rel=1e-5)


def test_iou_semi_positive_zero_when_ratio_matches():
    s = torch.tensor([[1.0, 0.0]])
    pos = torch.tensor([[0.8, 0.6]])  # s_pos = 0.8
    semi = torch.tensor([[0.4, 0.9]])  # s_semi = 0.4 -> ratio 0.5
    assert iou_semi_positive(s, pos, semi, torch.tensor([1.0]), torch.tensor([0.5])).item() == pytest.approx(
        0.0, abs=1e-7
    )
    assert iou_semi_positive(s, pos, semi, torch.tensor([1.0]), torch.tensor([1 / 3])).item() == pytest.approx(
        (0.5 - 1 / 3) ** 2
    )


def test_offset_loss_and_infonce():
    assert offset_l2(torch.tensor([[32.0, 0.0]]), torch.zeros(1, 2), tile_m=64.0).item() == pytest.approx(1.0)
    loss = InfoNCE(label_smoothing=0.0)
    eye = torch.eye(4)
    good, bad = loss(eye, eye).item(), loss(eye, eye.roll(1, 0)).item()
    assert good < 0.01 < math.log(4) < bad
    with pytest.raises(ValueError, match="unknown retrieval loss"):
        make_retrieval_loss("nope")
    with pytest.raises(ValueError, match="at least two"):
        soft_margin_triplet(torch.ones(1, 2), torch.ones(1, 2))


def test_one_step_lowers_each_loss():
    torch.manual_seed(3)
    rng = np.random.default_rng(0)
    for name in ("triplet", "wacv", "infonce"):
        model = CrossViewModel(small_cfg())
        loss_fn = make_retrieval_loss(name)
        opt = torch.optim.AdamW(list(model.parameters()) + list(loss_fn.parameters()), lr=3e-3)
        s = torch.tensor(rng.normal(size=(8, 3, 16, 64)), dtype=torch.float32)
        a = torch.tensor(rng.normal(size=(8, 3, 32, 32)), dtype=torch.float32)
        losses = []
        for _ in range(6):
            loss = loss_fn(*model(s, a))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0], (name, losses)
