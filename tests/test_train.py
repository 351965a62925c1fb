import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from trainkit import micro_model, tiny_dataset  # noqa: E402

from edge_geoloc.cli import main  # noqa: E402
from edge_geoloc.evaluate import ranks  # noqa: E402
from edge_geoloc.train.checkpoint import CheckpointError, load_checkpoint, load_model  # noqa: E402
from edge_geoloc.train.config import AugmentConfig, LossConfig, TrainConfig  # noqa: E402
from edge_geoloc.train.infer import encode_aerial, encode_street  # noqa: E402
from edge_geoloc.train.loop import Trainer  # noqa: E402


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    return root, tiny_dataset(root), micro_model(root)


def config(model, **kw):
    base = dict(
        model=str(model), epochs=2, batch_size=8, lr=1e-3, warmup_steps=2, val_queries=20, threads=1,
        train_cities=["alpha"], val_cities=["alpha"], loss=LossConfig(name="infonce"),
        offset_fit_epochs=3,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def mean_rank(trainer):
    """Mean rank of each training query's positive among all references (chance: (M - 1) / 2)."""
    train, _ = trainer.load_data()
    s = encode_street(trainer.model, train.street)
    a = encode_aerial(trainer.model, train.aerial)
    return float(ranks(s @ a.T, train.label[:, 0]).mean()), len(train.aerial)


def test_short_run_lowers_the_loss_and_beats_chance(workspace):
    root, data, model = workspace
    # No augmentation: in seconds (280 steps) a ViT from scratch can only start to memorize its pairs.
    cfg = config(model, epochs=40, lr=2e-3, augment=AugmentConfig(rotate90=False, mirror=False, colour=0.0))
    trainer = Trainer(cfg, data, root / "run")
    before, n_refs = mean_rank(trainer)
    metrics = trainer.run()
    after, _ = mean_rank(trainer)
    chance = (n_refs - 1) / 2
    assert metrics[-1]["retrieval"] < metrics[0]["retrieval"] - 0.1
    # The mean rank is the stable statistic on 60 queries (chance has a spread of about 4 ranks).
    assert after < 0.7 * chance and after < before - 10, (before, after, chance)
    # The offset head was fitted on the frozen best model.
    best = load_checkpoint(root / "run" / "best.pt")
    assert best["offset_fit"]["offset_median_m_train"] < best["offset_fit"]["offset_median_m_train_centre"]
    # Run folder: checkpoints and metrics in both formats.
    names = {p.name for p in (root / "run").iterdir()}
    assert {"checkpoint.pt", "best.pt", "metrics.json", "metrics.csv"} <= names
    assert len(json.loads((root / "run" / "metrics.json").read_text())) == 40


def test_resume_continues_exactly(workspace):
    root, data, model = workspace
    cfg = config(model, epochs=2, max_steps_per_epoch=3, save_every_steps=2, offset_fit_epochs=0)
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
    with pytest.raises(CheckpointError, match=r"another model config .*dim: checkpoint 32 vs expected 48"):
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
    # the loop's registration re-ranked the box's best candidates (the tiny dataset states its camera)
    reg = loc["box200m"]["registration"]
    assert reg["k"] == 10 and reg["queries"] == row["queries"] and 0 <= reg["R@1"] <= 100
    assert reg["positive_in_top_k"] >= reg["retrieval_R@1"]
    assert np.isfinite(reg["verified"]["acc@5m"]) and np.isfinite(reg["retrieval"]["acc@5m"])
    assert "registration of top-10" in capsys.readouterr().out
    code = main(["eval", "--checkpoint", str(root / "run" / "best.pt"), "--data", str(data), "--json", str(out),
                 "--orientation", "aligned", "--protocol", "cross_area", "--verify", "0"])  # fmt: skip
    assert code == 0 and "registration" not in json.loads(out.read_text())["results"][0]["localization"]["box200m"]
    with pytest.raises(SystemExit):
        main(["eval", "--checkpoint", "x.pt", "--data", str(data), "--verify", "-1"])
    assert "expected a whole number >= 0, got '-1'" in capsys.readouterr().err
