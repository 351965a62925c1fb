"""The bird's-eye view of a panorama lines up with the orthophoto: painted marks land where the map has them."""

import numpy as np
import pytest
from worldkit import REGION, box_world

from edge_geoloc.cameras.bev import BevSpec, panorama_to_bev
from edge_geoloc.world.aerial import render_aerial
from edge_geoloc.world.appearance import Appearance
from edge_geoloc.world.street import render_panorama

# Flat grass with painted (height 0) patches: (east, north, width, depth, 0) around the camera.
MARKS = [(6, 3, 2, 2, 0), (-5, -7, 3, 1.5, 0), (0, 10, 1, 4, 0), (9, -9, 2, 2, 0)]
COLOURS = [(220, 30, 30), (30, 30, 220), (240, 240, 20), (250, 250, 250)]
CLEAN = Appearance(blur_sigma_px=0, noise_sigma=0, haze=0.0)
SPEC = BevSpec(size_px=64, gsd_m=0.5, cam_height_m=2.0, radius_m=16, elevation_range_deg=(-60.0, 30.0))


@pytest.fixture(scope="module")
def world():
    return box_world(MARKS, roof_rgb=COLOURS)


def centroid_m(img, rgb, gsd=0.5):
    """(east, north) metres of the pixels of colour rgb from the image centre, and their count."""
    ys, xs = np.nonzero(np.abs(img.astype(int) - np.array(rgb)).sum(-1) < 60)
    s = img.shape[0]
    return (xs.mean() + 0.5 - s / 2) * gsd, (s / 2 - ys.mean() - 0.5) * gsd, len(xs)


@pytest.mark.parametrize("heading", [0.0, 37.0, 250.0])
def test_painted_marks_land_where_the_orthophoto_has_them(world, heading):
    ce, cn = REGION.center_en()
    # The camera faces `heading` (the region sits on its UTM zone's central meridian: grid = true).
    pano = render_panorama(world, ce, cn, heading, 256, 1024, 2.0, (-60.0, 30.0), app=CLEAN)
    bev, mask = panorama_to_bev(pano, SPEC, centre_heading_deg=heading)
    ortho = render_aerial(world, ce, cn, 64, 0.5, app=CLEAN)
    for (e, n, *_), rgb in zip(MARKS, COLOURS):
        be, bn, count = centroid_m(bev, rgb)
        oe, on, _ = centroid_m(ortho, rgb)
        assert count >= 10, rgb
        assert abs(be - e) < 0.25 and abs(bn - n) < 0.25, (rgb, be, bn)  # within half a pixel of the truth
        assert abs(be - oe) < 0.25 and abs(bn - on) < 0.25
    # Beyond the radius and under the camera (below the lowest row) nothing is projected.
    yy, xx = np.mgrid[:64, :64]
    dist = np.hypot(xx + 0.5 - 32, yy + 0.5 - 32) * 0.5
    assert not mask[dist > 16.5].any() and mask[(dist > 4) & (dist < 15)].all()
    assert not bev[mask == 0].any()


def test_a_wrong_camera_height_scales_the_ground():
    """The documented failure: a camera assumed 0.5 m too high puts a mark 25% too far out."""
    tall = BevSpec(size_px=64, gsd_m=0.5, cam_height_m=2.5, radius_m=16, elevation_range_deg=(-60.0, 30.0))
    world = box_world(MARKS[:1], roof_rgb=COLOURS[:1])
    ce, cn = REGION.center_en()
    pano = render_panorama(world, ce, cn, 0.0, 256, 1024, 2.0, (-60.0, 30.0), app=CLEAN)
    be, bn, _ = centroid_m(panorama_to_bev(pano, tall)[0], COLOURS[0])
    assert be == pytest.approx(6 * 2.5 / 2.0, abs=0.4) and bn == pytest.approx(3 * 2.5 / 2.0, abs=0.4)


def test_bad_specs_and_images_are_refused():
    with pytest.raises(ValueError, match="below the horizon"):
        BevSpec(elevation_range_deg=(10.0, 45.0))
    with pytest.raises(ValueError, match="positive size"):
        BevSpec(gsd_m=0)
    with pytest.raises(ValueError, match=r"\(H, W\[, C\]\) image"):
        panorama_to_bev(np.zeros((4, 2, 3, 1), np.uint8), SPEC)


torch = pytest.importorskip("torch")


def bev_model_config():
    from edge_geoloc.model.config import load_model_config

    # micro's aerial input: 32 px for 64 m (2 m/px); a 16 px ground view reaches 16 m.
    return load_model_config("micro").with_(bev_px=16, bev_radius_m=16.0)


def test_the_models_ground_view_is_the_projection_and_turns_with_the_scene():
    from edge_geoloc.model.vit import BevSampler

    cfg = bev_model_config()
    sampler = BevSampler(cfg)
    h, w = cfg.street_input.height, cfg.street_input.width
    pano = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    x = torch.from_numpy(pano).permute(2, 0, 1)[None]
    bev = sampler(x)[0].permute(1, 2, 0).numpy()
    assert bev.shape == (cfg.aerial.height, cfg.aerial.width, 3)
    spec = BevSpec(16, cfg.aerial_gsd_m, cfg.cam_height_m, 16.0, cfg.elevation_range_deg)
    want, mask = panorama_to_bev(pano, spec)
    inner = bev[8:24, 8:24]  # the 16 px view in the middle of the 32 px canvas
    np.testing.assert_allclose(inner[mask > 0], want[mask > 0], atol=1e-5)
    assert not bev[:8].any() and not inner[mask == 0].any()
    # A quarter turn of the scene (panorama rolled by W/4) turns the north-up view (what the trunk cache relies on).
    rolled = sampler(torch.roll(x, w // 4, dims=-1))
    torch.testing.assert_close(rolled, torch.rot90(sampler(x), k=-1, dims=(2, 3)), atol=1e-5, rtol=0)


def test_a_bev_model_exports_with_its_ground_view_inside_the_street_graph(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from edge_geoloc.model.graphs import encoder_graph, export_onnx
    from edge_geoloc.model.vit import CrossViewModel

    cfg = bev_model_config()
    model = CrossViewModel(cfg).eval()
    x = torch.randn(2, 3, cfg.street_input.height, cfg.street_input.width)
    with torch.no_grad():
        fused = model.encode_street(x)
        alone = model.street(x)
        graph_out = encoder_graph(model, "street")(x)[0]
    torch.testing.assert_close(graph_out, fused)
    assert (fused - alone).abs().max() > 1e-3  # the ground view changes the descriptor
    path = tmp_path / "street.onnx"
    export_onnx(encoder_graph(model, "street"), (x,), str(path), opset=17)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]
    np.testing.assert_allclose(got, fused.numpy(), atol=1e-4)
