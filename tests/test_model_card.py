"""The model card: validation, sizes from one place, and graphs that do not match their card."""

import shutil

import pytest
import yaml

pytest.importorskip("torch")  # the fixture export needs torch; the card itself does not

from exportkit import copy_export, one_torch_thread, small_export  # noqa: F401 (autouse fixture)

from edge_geoloc.config import dump_config, load_config
from edge_geoloc.runtime.card import CARD_FILE, CardError, ModelCard, load_card, sha256_of, verify


def edit_card(model_dir, change):
    path = model_dir / CARD_FILE
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_card_round_trip_and_input_specs():
    out = small_export(0.64)
    card = load_card(out)
    street, aerial = card.input_spec("street"), card.input_spec("aerial")
    assert (street.height, street.width, street.fov_deg) == (16, 64, 360.0)
    assert (aerial.height, aerial.width) == (32, 32) and aerial.channel_order == "RGB"
    assert card.aerial.gsd_m * card.aerial.width == pytest.approx(card.aerial.tile_m)
    assert card.io_shapes("street") == {
        "image": ("batch", 3, 16, 64),
        "descriptor": ("batch", 16),
        "attention": ("batch", 2, 8),
    }
    with pytest.raises(ValueError, match="unknown branch 'satellite'"):
        card.branch("satellite")
    with pytest.raises(ValueError, match="no drone branch"):  # optional; see tests/test_uav_drone.py
        card.branch("drone")


def test_card_validation_names_the_key(tmp_path):
    out = copy_export(small_export(0.64), tmp_path / "m")
    edit_card(out, lambda d: d["street"].update(colour="yes"))
    with pytest.raises(CardError, match=r"unknown key 'street\.colour'"):
        load_card(out)
    edit_card(out, lambda d: (d["street"].pop("colour"), d["aerial"].update(keep_ratio=1.5)))
    with pytest.raises(CardError, match=r"keep_ratio.*in \(0, 1\]"):
        load_card(out)
    edit_card(out, lambda d: (d["aerial"].update(keep_ratio=0.64), d["street"].update(attention_grid=[3, 8])))
    with pytest.raises(CardError, match="attention_grid"):
        load_card(out)
    edit_card(out, lambda d: (d["street"].update(attention_grid=[2, 8]), d.update(format="other/9")))
    with pytest.raises(CardError, match="format"):
        load_card(out)
    edit_card(
        out,
        lambda d: d.update(
            format="edge-geoloc-model-card/1", street={**d["street"], "batch": {"min": 4, "opt": 2, "max": 8}}
        ),
    )
    with pytest.raises(CardError, match="min <= opt <= max"):
        load_card(out)
    with pytest.raises(CardError, match="no model card"):
        load_card(tmp_path)


def test_card_dump_and_load_are_inverse(tmp_path):
    card = load_card(small_export(0.64))
    dump_config(card, tmp_path / "card.yaml")
    assert load_config(ModelCard, tmp_path / "card.yaml") == card


def test_changed_or_missing_graph_is_refused(tmp_path):
    out = copy_export(small_export(0.64), tmp_path / "m")
    verify(out)
    data = bytearray((out / "aerial.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (out / "aerial.onnx").write_bytes(bytes(data))
    with pytest.raises(CardError, match=r"aerial\.onnx: sha256 .* differs from the model card"):
        verify(out)
    (out / "aerial.onnx").unlink()
    with pytest.raises(CardError, match=r"aerial\.onnx: missing"):
        verify(out)


def test_graph_of_another_size_is_refused_with_the_shapes(tmp_path):
    out = copy_export(small_export(0.64), tmp_path / "m")
    shutil.copy(out / "aerial.onnx", out / "street.onnx")  # the aerial graph under the street graph's name
    # Even with the card's sha256 updated, the shapes tell the graph apart from the card.
    edit_card(out, lambda d: d["street"].update(sha256=sha256_of(out / "street.onnx")))
    with pytest.raises(
        CardError,
        match=r"street\.onnx: does not match its model card .*'image' has shape \['batch', 3, 32, 32\], the card says \['batch', 3, 16, 64\]",
    ):
        verify(out)
    with pytest.raises(CardError, match="does not match its model card"):
        from edge_geoloc.runtime.encoder import OrtEncoder

        OrtEncoder(out, "street")


def test_card_and_graph_sizes_come_from_the_config(tmp_path):
    # A card edited to another size (and any graph) disagrees with the graph: the size lives in one place.
    out = copy_export(small_export(0.64), tmp_path / "m")
    edit_card(out, lambda d: d["aerial"].update(height=40, width=40, attention_grid=[5, 5], gsd_m=64.0 / 40))
    with pytest.raises(
        CardError, match=r"'image' has shape \['batch', 3, 32, 32\], the card says \['batch', 3, 40, 40\]"
    ):
        verify(out)
