"""ONNX export: parity with torch (kept patches included), the attention output, report and card."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from exportkit import make_checkpoint, one_torch_thread, small_config, small_export  # noqa: E402, F401 (autouse fixture)

from edge_geoloc.export import parity as parity_mod  # noqa: E402
from edge_geoloc.export.onnx_export import ExportError, export_model  # noqa: E402
from edge_geoloc.export.recipe import load_recipe  # noqa: E402
from edge_geoloc.export.torch_backend import TorchEncoder  # noqa: E402
from edge_geoloc.runtime.card import load_card, verify  # noqa: E402
from edge_geoloc.runtime.encoder import OrtEncoder  # noqa: E402


def test_pruned_export_has_parity_and_keeps_the_same_patches():
    out = small_export(0.64)
    report = json.loads((out / "report.json").read_text())
    assert report["parity_ok"] and report["keep_ratio"] == 0.64 and report["opset"] == 17
    for what in ("random", "images"):
        r = report["parity"]["aerial"][what]
        assert r["kept_equal"] and r["max_abs"] <= 1e-4 and r["min_cosine"] >= 0.9999
        assert report["parity"]["street"][what]["max_abs"] <= 1e-4
    # Both FLOP conventions, counted on the module too, and pruning shows up in the counts.
    flops = report["flops"]
    assert report["gmacs_paper"] > 0 and report["gflops_full"] > 2 * report["gmacs_paper"]
    assert flops["aerial"]["kept_patches"] == 10 and flops["aerial"]["patches"] == 16
    assert flops["counted_on_module"]["aerial"]["flop_counter_gflops_full"] == pytest.approx(
        flops["aerial"]["gflops_full"], rel=1e-9
    )
    assert report["parameters"]["total"] == flops["params"]
    card = verify(out)
    assert card.aerial.keep_ratio == 0.64 and card.aerial.kept_patches == 10
    assert card.street.attention_grid == (2, 8) and card.descriptor_dim == 16
    # Weights inside the graph: no external data files beside it.
    assert sorted(p.name for p in out.iterdir()) == [
        "aerial.onnx",
        "model.yaml",
        "offset.onnx",
        "report.json",
        "street.onnx",
    ]


def test_dynamic_batch_and_attention_is_scattered_to_the_full_grid():
    out = small_export(0.64)
    enc = OrtEncoder(out, "aerial", intra_op_threads=1)
    rng = np.random.default_rng(3)
    for n in (1, 5):
        x = rng.standard_normal((n, 3, 32, 32)).astype(np.float32)
        desc, attn = enc.run(x)
        assert desc.shape == (n, 16) and attn.shape == (n, 4, 4)
        assert np.allclose(np.linalg.norm(desc, axis=1), 1, atol=1e-5)
        # 10 of 16 patches kept: exactly 6 zeros per map, the kept ones carry positive attention.
        assert ((attn == 0).reshape(n, -1).sum(1) == 6).all()
        assert (attn.reshape(n, -1) >= 0).all()


def test_street_attention_and_descriptors_match_torch_on_synthetic_world_images():
    from worldkit import REGION, box_world

    from edge_geoloc.world.aerial import render_aerial
    from edge_geoloc.world.street import render_panorama

    world = box_world([(10, 5, 8, 8, 12), (-12, -6, 6, 10, 6)], size_m=120, res_m=0.5, trees=[(0, 15, 3, 6)])
    ce, cn = REGION.center_en()
    panos = [render_panorama(world, ce + dx, cn - 3, h, height_px=32, width_px=128) for dx, h in ((0, 0), (4, 90))]
    tiles = [render_aerial(world, ce + dx, cn, 64, 1.0) for dx in (0, 8)]
    out = small_export(0.64)
    for branch, images in (("street", panos), ("aerial", tiles)):
        ort_enc = OrtEncoder(out, branch, intra_op_threads=1)
        torch_enc = TorchEncoder(out, branch)
        d_ort, a_ort = ort_enc.encode_with_attention(images)
        d_torch, a_torch = torch_enc.encode_with_attention(images)
        agree = parity_mod.agreement(d_torch, d_ort)
        assert agree["max_abs"] <= 1e-4 and agree["min_cosine"] >= 0.9999
        assert np.abs(a_ort - a_torch).max() <= 1e-5


def test_recipe_opset_and_keep_ratio_override(tmp_path):
    from edge_geoloc.export.flops import model_flops

    cfg = small_config(keep_ratio=1.0)
    ckpt = make_checkpoint(tmp_path / "m.pt", cfg, seed=1)
    result = export_model(ckpt, tmp_path / "m", recipe="jetson-orin-fp16", opset=18, keep_ratio=0.5, parity_samples=2)
    card = load_card(tmp_path / "m")
    recipe = load_recipe("jetson-orin-fp16")
    assert card.precision == "fp16" and card.target == "jetson-orin-fp16" and card.opset == 18
    assert card.street.batch == recipe.street_batch and card.aerial.batch == recipe.aerial_batch
    # --keep-ratio overrides the checkpoint's 1.0: 8 of 16 patches, fewer FLOPs than the unpruned graph.
    assert card.aerial.keep_ratio == 0.5 and card.aerial.kept_patches == 8
    assert result.report["parity"]["aerial"]["random"]["kept_equal"]
    assert result.report["flops"]["aerial"]["gflops_full"] < model_flops(cfg)["aerial"]["gflops_full"]


def test_failed_parity_leaves_a_report_and_no_card(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "m.pt", small_config(), seed=2)
    monkeypatch.setattr(parity_mod, "MIN_COSINE", 1.5)  # an impossible threshold: every comparison fails
    with pytest.raises(ExportError, match=r"report\.json"):
        export_model(ckpt, tmp_path / "m", parity_samples=1)
    assert (tmp_path / "m" / "report.json").exists() and not (tmp_path / "m" / "model.yaml").exists()
    assert not json.loads((tmp_path / "m" / "report.json").read_text())["parity_ok"]


def test_export_cli_unpruned(tmp_path, capsys):
    from edge_geoloc.cli import main

    ckpt = make_checkpoint(tmp_path / "m.pt", small_config(keep_ratio=1.0), seed=3)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "o"), "--parity-samples", "1"]) == 0
    assert "parity max |diff|" in capsys.readouterr().out
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert report["parity_ok"] and "kept_equal" not in report["parity"]["aerial"]["random"]  # nothing pruned
    assert load_card(tmp_path / "o").aerial.kept_patches == 16
    assert main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "x")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
