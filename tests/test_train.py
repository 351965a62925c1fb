import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainkit import micro_model, tiny_dataset  # noqa: E402

from edge_geoloc.cli import main  # noqa: E402
from edge_geoloc.evaluate import retrieval_metrics  # noqa: E402
from edge_geoloc.train.checkpoint import CheckpointError, load_checkpoint, load_model  # noqa: E402
from edge_geoloc.train.config import LossConfig, TrainConfig  # noqa: E402
from edge_geoloc.train.infer import encode_aerial, encode_street  # noqa: E402
from edge_geoloc.train.loop import Trainer  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return root, tiny_dataset(root), micro_model(root)


def config(model, **kw):
    base = dict(
        model=str(model), epochs=2, batch_size=8, lr=3e-3, warmup_steps=2, val_queries=20, threads=1,
        train_cities=["alpha"], val_cities=["alpha"], loss=LossConfig(name="infonce", offset_weight=0.1),
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def train_recall(trainer):
    train, _ = trainer.load_data()
    s = encode_street(trainer.model, train.street)
    a = encode_aerial(trainer.model, train.aerial)
    return retrieval_metrics(s @ a.T, train.label[:, 0])["R@5"], len(train.aerial)


def test_short_run_lowers_the_loss_and_beats_chance(workspace):
    root, data, model = workspace
    trainer = Trainer(config(model, epochs=6), data, root / "run")
    before, n_refs = train_recall(trainer)
    metrics = trainer.run()
    after, _ = train_recall(trainer)
    chance = 100 * 5 / n_refs
    assert metrics[-1]["retrieval"] < metrics[0]["retrieval"]
    assert after > 2 * chance and after > before, (before, after, chance)
    # Run folder: checkpoints and metrics in both formats.
    names = {p.name for p in (root / "run").iterdir()}
    assert {"checkpoint.pt", "best.pt", "metrics.json", "metrics.csv"} <= names
    assert len(json.loads((root / "run" / "metrics.json").read_text())) == 6


def test_resume_continues_exactly(workspace):
    root, data, model = workspace
    cfg = config(model, epochs=2, max_steps_per_epoch=3, save_every_steps=2)
    straight = Trainer(cfg, data, root / "straight")
    straight.run()
    # Interrupted after the first epoch (its checkpoint), then resumed in a new process-like trainer.
    first = Trainer(TrainConfig(**{**cfg.__dict__, "epochs": 1}), data, root / "resumed")
    first.run()
    state = load_checkpoint(root / "resumed" / "checkpoint.pt")
    assert state["epoch"] == 1 and state["step"] == 0
    resumed = Trainer(cfg, data, root / "resumed")
    resumed.run(resume=True)
    for (k, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), k


def test_checkpoint_of_another_config_is_refused(workspace, tmp_path):
    root, data, model = workspace
    ckpt = root / "run" / "checkpoint.pt"
    trainer = Trainer(config(model), data, root / "run")
    with pytest.raises(CheckpointError, match="another model config .*dim: checkpoint 32 vs expected 48"):
        load_checkpoint(ckpt, expect=trainer.mcfg.with_(dim=48))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_model(bad)


def test_eval_cli_writes_report(workspace, capsys):
    root, data, _ = workspace
    out = root / "eval.json"
    code = main(
        ["eval", "--checkpoint", str(root / "run" / "best.pt"), "--data", str(data), "--json", str(out),
         "--orientation", "aligned"]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    protocols = {r["protocol"] for r in report["results"]}
    assert protocols == {"same_area", "cross_area"}
    row = report["results"][0]
    assert {"R@1", "R@5", "R@10", "R@1%", "hit_rate"} <= set(row["retrieval"])
    loc = row["localization"]
    assert {"all", "box200m", "1000m", "500m", "200m"} == set(loc)
    assert np.isfinite(loc["box200m"]["fused"]["median_m"])
    assert "R@1" in capsys.readouterr().out
