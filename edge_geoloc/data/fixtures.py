"""A tiny synthetic dataset in VIGOR's layout, written in seconds: for tests and ``--quick`` runs."""

from __future__ import annotations

from pathlib import Path

from edge_geoloc.data.synth import SynthConfig, synthesize

TINY_CITIES = (("alpha", "downtown", 5), ("beta", "suburb", 6))


def tiny_synth_dataset(root: str | Path, panoramas: int = 80, workers: int = 1) -> Path:
    """Two 360 m cities (alpha: cross-area train, beta: cross-area test), 32x128 panoramas and
    64 px tiles of 64 m, at most 4 panoramas per tile. Returns the dataset root (``root/data``)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    regions = []
    for name, style, seed in TINY_CITIES:
        path = root / f"{name}.yaml"
        path.write_text(
            f"name: {name}\ncenter_lat: 47.4\ncenter_lon: 8.5\nsize_m: 360\nstyle: {style}\nseed: {seed}\n"
            "resolution_m: 0.5\n"
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
        cross_area_train=[TINY_CITIES[0][0]],
        cross_area_test=[TINY_CITIES[1][0]],
    )
    out = root / "data"
    synthesize(cfg, out, workers=workers, progress=False)
    return out
