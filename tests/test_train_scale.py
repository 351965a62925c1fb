"""Training at the scale of real data (issue 17): streaming, data-parallel processes, TransGeo's stage 2."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from test_cvusa import make_cvusa, open_small  # noqa: E402
from test_university1652 import tree  # noqa: E402
from trainkit import micro_model, tiny_dataset  # noqa: E402

from edge_geoloc.config import ConfigError, dump_config  # noqa: E402
from edge_geoloc.data.vigor import open_protocol  # noqa: E402
from edge_geoloc.model.config import load_model_config  # noqa: E402
from edge_geoloc.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from edge_geoloc.train.config import AugmentConfig, LossConfig, TrainConfig  # noqa: E402
from edge_geoloc.train.distributed import DistContext, DistributedGeoBatchSampler  # noqa: E402
from edge_geoloc.train.loop import Trainer, make_batch  # noqa: E402
from edge_geoloc.train.pairs import load_pairs, pair_geometry  # noqa: E402
from edge_geoloc.train.sampler import GeoBatchSampler, mine_lookalikes  # noqa: E402
from edge_geoloc.train.stream import (  # noqa: E402
    BatchKey,
    StepKeys,
    StreamedBatches,
    batch_loader,
    detect_layout,
    image_batches,
    is_streamed,
    open_pairs,
    stream_pairs,
)

MICRO = load_model_config("micro")
SIZES = ((MICRO.street.height, MICRO.street.width), (MICRO.aerial.height, MICRO.aerial.width))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_dataset(tmp_path_factory.mktemp("scale"))


def config(**kw):
    base = dict(
        model=str(micro_model(None)), epochs=2, batch_size=8, lr=1e-3, warmup_steps=2, val_queries=20, threads=1,
        train_cities=["alpha"], val_cities=["alpha"], loss=LossConfig(name="infonce", iou_weight=0.5),
        offset_fit_epochs=0, max_steps_per_epoch=3, loader_workers=0,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def assert_same_batch(a, b):
    for f in ("street", "aerial", "offset_m", "iou"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f


def test_streamed_batches_equal_in_memory_ones(data, tmp_path):
    ds = open_protocol(data, "same_area", "train")
    memory = load_pairs(ds, *SIZES, cache_dir=tmp_path / "cache")
    streamed = stream_pairs(ds, *SIZES, tile_m=float("nan"))
    assert is_streamed(streamed) and not is_streamed(memory)
    assert np.array_equal(streamed.street[[3, 0, 7]], memory.street[[3, 0, 7]])
    assert np.array_equal(streamed.aerial[5], memory.aerial[5])
    cfg = config(orientation="unknown", augment=AugmentConfig(colour=0.3))
    idx = np.array([4, 11, 2, 9, 0, 17])
    want = make_batch(memory, idx, MICRO, cfg, np.random.default_rng((0, 1, 2)), True)
    assert_same_batch(make_batch(streamed, idx, MICRO, cfg, np.random.default_rng((0, 1, 2)), True), want)
    # The same batch built in two DataLoader worker processes, and a rank's share of it.
    keys = StepKeys()
    made = StreamedBatches(make_batch, streamed, 0, mcfg=MICRO, cfg=cfg, with_semi=True)
    loader = batch_loader(made, keys, workers=2, pin=False)
    keys.keys = [BatchKey(1, 2, idx, slice(None)), BatchKey(1, 2, idx, slice(3, 6))]
    whole, share = list(loader)
    assert_same_batch(whole, want)
    assert torch.equal(share.street, want.street[3:6])
    assert torch.equal(share.aerial[:3], want.aerial[3:6]) and torch.equal(share.aerial[3:], want.aerial[9:])
    # Images for encoding: the same rows from memory and from workers.
    rows = np.array([8, 1, 5, 2, 9])
    from_workers = np.concatenate(list(image_batches(streamed.aerial, rows, 2, workers=2)))
    assert np.array_equal(from_workers, memory.aerial[rows])


def test_loading_is_chosen_by_projected_size(data):
    ds = open_protocol(data, "same_area", "train")
    need = len(ds) * 16 * 64 * 3 + ds.num_aerial * 32 * 32 * 3
    assert is_streamed(open_pairs(ds, *SIZES, "auto", need * 0.99 / 1e9, 64.0))
    assert not is_streamed(open_pairs(ds, *SIZES, "auto", need * 1.01 / 1e9, 64.0))
    assert is_streamed(open_pairs(ds, *SIZES, "stream", 1e6, 64.0))


def test_other_layouts_give_one_positive_per_query(tmp_path):
    make_cvusa(tmp_path / "cvusa", n_train=5)
    assert detect_layout(tmp_path / "cvusa") == "cvusa"
    (tmp_path / "u1652" / "train" / "drone").mkdir(parents=True)
    assert detect_layout(tmp_path / "u1652") == "university1652"
    g = pair_geometry(open_small(tmp_path / "cvusa"), tile_m=150.0)
    assert np.array_equal(g["label"], np.repeat(np.arange(5)[:, None], 4, axis=1))
    assert g["tile_m"] == 150.0 and np.all(g["iou"] == 1) and np.all(g["offset_m"] == 0)


def test_cvusa_and_university1652_layouts_train_streamed(tmp_path):
    from edge_geoloc.data.cvusa import CVUSA_AERIAL_HW, CVUSA_STREET_HW
    from edge_geoloc.data.sample import write_rgb

    rng = np.random.default_rng(0)
    root = tmp_path / "cvusa"
    ids = make_cvusa(root, n_train=8, n_val=4)
    for j in ids["train"] + ids["val"]:  # CVUSA's own sizes, which its reader checks
        write_rgb(root / f"bingmap/19/{j:07d}.jpg", rng.integers(0, 256, (*CVUSA_AERIAL_HW, 3), dtype=np.uint8))
        write_rgb(root / f"streetview/panos/{j:07d}.jpg", rng.integers(0, 256, (*CVUSA_STREET_HW, 3), dtype=np.uint8))
    common = dict(train_cities=None, val_cities=None, neighbours=0, batch_size=4, epochs=1, data_loading="stream")
    metrics = Trainer(config(**common), root, tmp_path / "run-cvusa", device="cpu").run()
    assert np.isfinite(metrics[0]["loss"]) and metrics[0]["R@1"] >= 0
    with pytest.raises(ValueError, match="has no query positions; set neighbours: 0"):
        Trainer(config(**{**common, "neighbours": 2}), root, tmp_path / "x", device="cpu").run()
    drones = tmp_path / "u1652"
    tree(drones, "train", buildings=tuple(f"{b:04d}" for b in range(6)), drones=(2,) * 6)
    tree(drones, "test", buildings=("0100", "0101"), drones=(2, 1))
    # Two epochs: the second's batches are mined from streamed descriptors (decoded by a worker).
    u1652 = config(**{**common, "epochs": 2, "loader_workers": 1}, mined_negatives=1)
    metrics = Trainer(u1652, drones, tmp_path / "run-u1652", device="cpu").run()
    assert len(metrics) == 2 and np.isfinite(metrics[1]["loss"])


def shares(ctx_world, sampler, epoch):
    return [DistributedGeoBatchSampler(sampler, DistContext(r, ctx_world)).batches(epoch) for r in range(ctx_world)]


def test_distributed_sampler_shares_are_disjoint_overlap_free_and_cover_the_epoch_once(data):
    ds = open_protocol(data, "same_area", "train")
    pairs = load_pairs(ds, *SIZES)
    sampler = GeoBatchSampler(pairs.street_en, pairs.label, 8, neighbours=3, seed=5)
    per_rank = shares(2, sampler, epoch=1)
    assert len(per_rank[0]) == len(per_rank[1]) == len(sampler.batches(1)) > 0
    used = []
    for share0, share1, whole in zip(*per_rank, sampler.batches(1)):
        assert len(share0) == len(share1) == 4
        assert np.array_equal(np.concatenate([share0, share1]), whole)  # one global batch, split
        tiles = pairs.label[whole]
        for i in range(len(whole)):  # never two queries of one tile (positive or semi-positive)
            for j in range(i + 1, len(whole)):
                assert not set(tiles[i]) & set(tiles[j])
        used += whole.tolist()
    assert len(used) == len(set(used))  # each sample at most once in the epoch
    # Deterministic in seed and epoch (a resume recomputes the same shares), different across epochs.
    again = shares(2, GeoBatchSampler(pairs.street_en, pairs.label, 8, neighbours=3, seed=5), epoch=1)
    assert all(np.array_equal(a, b) for r in range(2) for a, b in zip(per_rank[r], again[r]))
    assert not np.array_equal(per_rank[0][0], shares(2, sampler, epoch=2)[0][0])
    # With a tile of its own for every sample, the epoch is covered exactly once.
    n = 64
    lone = GeoBatchSampler(np.random.default_rng(0).normal(size=(n, 2)), np.arange(n)[:, None], 8, 2, seed=1)
    covered = np.concatenate([b for r in shares(4, lone, 0) for b in r])
    assert np.array_equal(np.sort(covered), np.arange(n))
    with pytest.raises(ValueError, match="global batch of 8 does not split evenly over 3 processes"):
        DistributedGeoBatchSampler(lone, DistContext(0, 3))


def test_mining_in_parts_equals_mining_whole():
    rng = np.random.default_rng(3)
    q, r = rng.normal(size=(50, 8)), rng.normal(size=(30, 8))
    tiles = np.stack([rng.integers(0, 30, 50), rng.integers(0, 30, 50)], axis=1)
    whole = mine_lookalikes(q, r, tiles, 4, seed=7, chunk=16)
    parts = [mine_lookalikes(q, r, tiles, 4, seed=7, chunk=16, rows=p) for p in np.array_split(np.arange(50), 3)]
    assert np.array_equal(np.concatenate(parts), whole)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_runs(rank: int, world: int, port: int, cfg: TrainConfig, data: str, out: str) -> None:
    """One rank of the 2-process job: a straight run, then the same stopped after one epoch and resumed."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    os.environ.update(LOCAL_RANK=str(rank), OMP_WAIT_POLICY="PASSIVE")
    Trainer(cfg, data, f"{out}/straight", device="cpu").run()
    Trainer(TrainConfig(**{**cfg.__dict__, "epochs": 1}), data, f"{out}/resumed", device="cpu").run()
    Trainer(cfg, data, f"{out}/resumed", device="cpu").run(resume=True)
    torch.distributed.destroy_process_group()


def test_two_gloo_processes_follow_one_process_and_resume_exactly(data, tmp_path):
    # Every step in the warm-up: the LR of a step does not depend on the run's length (the resumed run's
    # first part is a 1-epoch run).
    cfg = config(mined_negatives=1, neighbours=2, epochs=2, max_steps_per_epoch=4, warmup_steps=8)
    one = Trainer(cfg, data, tmp_path / "one", device="cpu")
    one_metrics = one.run()
    torch.multiprocessing.start_processes(
        ddp_runs, args=(2, free_port(), cfg, str(data), str(tmp_path)), nprocs=2, start_method="spawn"
    )
    two = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    dim = one.mcfg.dim
    for k, a in one.model.state_dict().items():
        diff = (a - two["model"][k]).abs()
        if k.endswith("attn.qkv.bias"):
            # The key bias's true gradient is zero (softmax ignores a constant): AdamW turns the float noise
            # of the two summation orders into steps of up to lr, so only there the runs part by ~lr.
            assert float(diff[dim : 2 * dim].max()) <= 8 * cfg.lr, k
            diff = torch.cat([diff[:dim], diff[2 * dim :]])
        assert float(diff.max()) < 1e-6, k  # float summation order only
    for m1, m2 in zip(one_metrics, two["metrics"]):
        assert m1["loss"] == pytest.approx(m2["loss"], abs=1e-4)
        assert m1["iou"] == pytest.approx(m2["iou"], abs=1e-4)
        assert m1["R@1"] == pytest.approx(m2["R@1"], abs=5.01)  # one query of 20 may flip on a tie
    resumed = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert resumed["epoch"] == 2
    for k, a in two["model"].items():
        assert torch.equal(a, resumed["model"][k]), k
    assert not (tmp_path / "straight" / ".checkpoint.pt.tmp").exists()


def test_train_cli_starts_ranks_with_torchrun(data, tmp_path):
    path = tmp_path / "micro.yaml"
    dump_config(config(epochs=1, max_steps_per_epoch=2), path)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "edge_geoloc.train", "--config", str(path), "--data", str(data)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run(
        [*cmd, "--out", str(out), "--nproc", "2", "--device", "cpu"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("done: 1 epochs") == 2  # both ranks report; rank 0 alone wrote the run folder
    assert len(json.loads((out / "metrics.json").read_text())) == 1
    bad = subprocess.run([*cmd, "--out", str(out / "x"), "--nproc", "3"], env=env, capture_output=True, text=True)
    assert bad.returncode == 2 and "micro.yaml: batch_size 8 does not split evenly over --nproc 3" in bad.stderr


def test_stage_two_zooms_the_aerial_branch_from_stage_one(data, tmp_path):
    stage1 = Trainer(config(), data, tmp_path / "s1", device="cpu")
    save_checkpoint(tmp_path / "s1.pt", stage1.state(1, 0, []))
    stage2 = Trainer(config(stage=2, init=str(tmp_path / "s1.pt")), data, tmp_path / "s2", device="cpu")
    assert stage2.mcfg.keep_ratio == 0.64 and stage2.mcfg.aerial.height == 40  # 32 px / 0.8
    assert torch.equal(stage2.model.street.blocks[0].attn.qkv.weight, stage1.model.street.blocks[0].attn.qkv.weight)
    assert stage2.model.aerial.pos_embed.shape[1] == stage2.model.aerial.n_special + 100  # 10 x 10 patches
    stage2.run()  # fine-tunes at the zoomed size (the config's 2 epochs of 3 steps)
    tiny = Trainer(config(model="tiny"), data, tmp_path / "t", device="cpu")
    save_checkpoint(tmp_path / "tiny.pt", tiny.state(1, 0, []))
    with pytest.raises(ValueError, match=r"tiny.pt: initial weights are of model config 'tiny', not 'micro'"):
        Trainer(config(stage=2, init=str(tmp_path / "tiny.pt")), data, tmp_path / "s2b", device="cpu")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        Trainer(config(stage=2, init=str(tmp_path / "none.pt")), data, tmp_path / "s2c", device="cpu")
    yaml = tmp_path / "stage2.yaml"
    yaml.write_text("model: micro\nstage: 2\n")
    with pytest.raises(ConfigError, match=r"stage2.yaml.*stage 2 fine-tunes a stage-1 checkpoint: set init"):
        TrainConfig.load(yaml)


def test_bf16_autocast_on_cpu_and_fp16_refused(data, tmp_path):
    metrics = Trainer(config(precision="bf16", epochs=1), data, tmp_path / "bf16", device="cpu").run()
    assert np.isfinite(metrics[0]["loss"])
    with pytest.raises(ValueError, match="precision fp16 needs a CUDA device"):
        Trainer(config(precision="fp16"), data, tmp_path / "fp16", device="cpu")


RECIPES = ["transgeo-vigor", "transgeo-vigor-cross", "transgeo-cvusa", "university1652"]


@pytest.mark.parametrize("name", RECIPES)
def test_recipes_and_their_second_stages_resolve(name):
    from edge_geoloc.train.loop import model_config_for

    cfg = TrainConfig.load(name)
    mcfg = model_config_for(cfg)
    assert cfg.stage == 1 and mcfg.keep_ratio == 1.0 and cfg.batch_size in (16, 32)
    if name == "university1652":
        assert cfg.neighbours == 0 and mcfg.street.height == mcfg.aerial.height == 384
        return
    second = TrainConfig.load(f"{name}-stage2")
    zoomed = model_config_for(second)
    assert second.stage == 2 and second.init == f"runs/{name}/best.pt" and second.lr == cfg.lr / 10
    assert zoomed.aerial.height == {320: 400, 256: 320}[mcfg.aerial.height] and zoomed.keep_ratio == 0.64
    assert zoomed.with_(aerial=mcfg.aerial, keep_ratio=1.0) == mcfg  # the same model, zoomed
