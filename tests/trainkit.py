"""A tiny synthetic dataset in VIGOR's layout and a micro model config, for training tests."""

from __future__ import annotations

from pathlib import Path

from edge_geoloc.data.synth import SynthConfig, synthesize

MICRO_MODEL = """\
name: micro
dim: 32
depth: 2
heads: 2
mlp_ratio: 2.0
distilled: true
descriptor_dim: 32
street: {height: 16, width: 64, patch: 8}
aerial: {height: 32, width: 32, patch: 8}
tile_m: 64.0
prune_at: 0
offset_hidden: 32
"""


def tiny_dataset(root: Path, panoramas: int = 80) -> Path:
    """Two small cities (one per protocol side), small images: seconds to write."""
    regions = []
    for name, style, seed in (("alpha", "downtown", 5), ("beta", "suburb", 6)):
        path = root / f"{name}.yaml"
        path.write_text(
            f"name: {name}\ncenter_lat: 47.4\ncenter_lon: 8.5\nsize_m: 360\nstyle: {style}\nseed: {seed}\nresolution_m: 0.5\n"
        )
        regions.append(str(path))
    cfg = SynthConfig(
        regions=regions,
        panoramas_per_city=panoramas,
        satellite_px=64,
        panorama_px=(32, 128),
        max_panoramas_per_tile=4,
        fewer_ok=True,
        same_area_test_fraction=0.25,
        cross_area_train=["alpha"],
        cross_area_test=["beta"],
    )
    out = root / "data"
    synthesize(cfg, out, workers=1, progress=False)
    return out


def micro_model(root: Path) -> Path:
    path = root / "micro.yaml"
    path.write_text(MICRO_MODEL)
    return path
