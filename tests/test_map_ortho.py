"""The map's imagery layer (issue 14, point 1): `map build` keeps the orthophoto as ``ortho.tif``; the device
reads windows of it by tile. Windows line up with the metric frame (a landmark lands at its coordinates, to a
tenth of a pixel, on and off the pixel grid), equal the source to WebP tolerance, are masked off the coverage
and at nodata, decode only the tiles they overlap; corruption is refused naming the file; a corridor extract
carries a crop that still lines up; a bundle without the layer opens and says so once."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from mapkit import CENTER, CRS, descriptor_map, pattern, raster_of, write_region

from edge_geoloc.cli import main
from edge_geoloc.geo import MapCRS
from edge_geoloc.mapbuild.build import build_map, plan_build, read_plan
from edge_geoloc.mapbuild.ortho import GSD_RANGE, default_gsd
from edge_geoloc.maps.bundle import MANIFEST, ORTHO, ORTHO_HASHES, Bundle, BundleError
from edge_geoloc.maps.ortho import MapOrtho

SIZE_M, PX = 320.0, 0.25
LANDMARK = (700, 500)  # source pixel (row, col) at the centre of a 3 x 3 black square


def source_corner() -> tuple[float, float]:
    e, n = MapCRS(CRS).to_en(*CENTER)
    return float(e) - SIZE_M / 2, float(n) + SIZE_M / 2


def landmark_en() -> tuple[float, float]:
    """Metric centre of the landmark pixel (PixelIsArea: the source's pixel centres are at +0.5)."""
    x0, y0 = source_corner()
    return x0 + (LANDMARK[1] + 0.5) * PX, y0 - (LANDMARK[0] + 0.5) * PX


def write_source(path: Path, nodata_west_m: float | None = None) -> Path:
    """The mapkit pattern at 0.25 m/px in the map CRS with a black landmark; optionally a western strip of
    black pixels marked missing by GDAL_NODATA 0."""
    import tifffile

    x0, y0 = source_corner()
    shape = (round(SIZE_M / PX), round(SIZE_M / PX))
    img = raster_of(CRS, x0, y0, PX, shape)
    r, c = LANDMARK
    img[r - 1 : r + 2, c - 1 : c + 2] = 0
    extratags = [
        (33550, "d", 3, (PX, PX, 0.0), False),
        (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), False),
        (34735, "H", 16, [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633], False),
    ]
    if nodata_west_m is not None:
        img[:, (np.arange(shape[1]) + 0.5) * PX < nodata_west_m] = 0
        extratags.append((42113, "s", 0, "0", False))
    tifffile.imwrite(path, img, photometric="rgb", tile=(256, 256), extratags=extratags)
    return path


@pytest.fixture(scope="module")
def small_model():
    pytest.importorskip("torch")  # the export that makes the model needs torch; the layer does not
    from exportkit import small_export

    return small_export()


@pytest.fixture(scope="module")
def ortho_map(small_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ortho")
    write_source(folder / "source.tif")
    region = write_region(folder / "r.yaml", "kind: geotiff\npath: source.tif", 400)
    return build_map(region, small_model, folder / "map", progress=False)


def grey(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float64).mean(axis=-1)


def expected(x: float, y: float, k: int, gsd: float) -> np.ndarray:
    """The pattern at the window's pixel centres (the window contract: centre pixel (k, k) at (x, y))."""
    j, i = np.meshgrid(np.arange(2 * k + 1), np.arange(2 * k + 1))
    return pattern(x + (j - k) * gsd, y - (i - k) * gsd)


def dark_centroid(rgb: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """(row, col) of the darkness the landmark adds over the pattern, in the window's pixels."""
    dark = np.clip(grey(want) - grey(rgb) - 10.0, 0, None)  # 10 grey levels: above WebP's noise
    rows, cols = np.indices(dark.shape)
    return float((dark * rows).sum() / dark.sum()), float((dark * cols).sum() / dark.sum())


def test_a_window_is_the_source_at_its_metric_coordinates(ortho_map):
    ortho = MapOrtho.open(ortho_map)
    assert ortho is not None and ortho.gsd_m == PX == default_gsd(PX)
    x, y = landmark_en()
    k = 20
    for dx, dy in [(0.0, 0.0), (0.125, -0.0625), (-0.3, 0.2)]:  # on the layer's grid or not, the landmark lands
        rgb, valid = ortho.window(x + dx, y + dy, k * PX)
        assert rgb.shape == (2 * k + 1, 2 * k + 1, 3) and rgb.dtype == np.uint8 and valid.all()
        want = expected(x + dx, y + dy, k, PX)
        row, col = dark_centroid(rgb, want)
        # East +dx moves the window east: the landmark appears dx/gsd pixels further west; north likewise up.
        # Within 0.15 px (4 cm): WebP's 4:2:0 chroma smears the square a little; a half-pixel slip would be 0.5.
        assert (row, col) == pytest.approx((k + dy / PX, k - dx / PX), abs=0.15), (dx, dy)
        away = np.hypot(*np.indices(valid.shape) - np.array([row, col])[:, None, None]) > 4
        err = np.abs(rgb.astype(int) - want.astype(int))[away]
        assert err.mean() < 2.0 and np.percentile(err, 99) <= 8, (dx, dy, err.mean(), np.percentile(err, 99))


def test_windows_off_the_coverage_are_masked(ortho_map):
    ortho = MapOrtho.open(ortho_map)
    assert ortho is not None
    e0, n0, e1, n1 = ortho.bounds()
    ys = (n0 + n1) / 2
    rgb, valid = ortho.window(e0, ys, 10.0)  # centred on the west edge: the western half is outside
    k = 40
    assert valid.shape == (2 * k + 1, 2 * k + 1)
    assert not valid[:, : k - 1].any() and valid[:, k + 1 :].all() and not rgb[~valid].any()
    rgb, valid = ortho.window(e1 - 5.0, n1 + 5.0, 10.0)  # over the north-east corner: the south-west quarter
    # inside, from 20 px (5 m) south and west of the centre pixel
    assert valid[k + 22 :, : k + 18].all() and not valid[: k + 19].any() and not valid[:, k + 21 :].any()
    rgb, valid = ortho.window(e1 + 500.0, ys, 10.0)
    assert not valid.any() and not rgb.any()
    with pytest.raises(ValueError, match="finite"):
        ortho.window(float("nan"), ys, 10.0)
    with pytest.raises(ValueError, match="at most 4097"):
        ortho.window(e0, ys, 5000.0)


def test_a_window_decodes_only_the_tiles_it_overlaps(ortho_map):
    ortho = MapOrtho.open(ortho_map)
    assert ortho is not None
    t, g = ortho.info.tile_px, ortho.gsd_m
    rows, cols = -(-ortho.info.height // t), -(-ortho.info.width // t)
    assert rows * cols >= 16
    e0, _, _, n1 = ortho.bounds()
    inside = (e0 + (1.5 * t) * g, n1 - (1.5 * t) * g)  # the middle of tile (1, 1)
    ortho.window(*inside, 10.0)
    assert ortho.tiles_decoded == 1
    corner = (e0 + 2 * t * g, n1 - 2 * t * g)  # where tiles (1, 1), (1, 2), (2, 1), (2, 2) meet
    ortho.window(*corner, 10.0)
    assert ortho.tiles_decoded == 4  # (1, 1) came from the cache
    ortho.window(*corner, 10.0)
    assert ortho.tiles_decoded == 4


def test_the_layer_is_a_georeferenced_tiled_webp_geotiff_with_overviews(ortho_map):
    import tifffile

    m = Bundle(ortho_map, verify="full").manifest
    o = m.ortho
    assert o is not None and {ORTHO, ORTHO_HASHES} <= set(m.files)
    assert GSD_RANGE[0] <= o.gsd_m <= GSD_RANGE[1] and o.compression == "webp" and not o.alpha
    with tifffile.TiffFile(ortho_map / ORTHO) as tif:
        pages = list(tif.pages)
        geo = pages[0].geotiff_tags
        assert [p.shape for p in pages] == [(o.height >> i, o.width >> i, 3) for i in range(o.overviews + 1)]
        assert o.overviews >= 1 and all(p.is_tiled and p.compression == 50001 for p in pages)
        assert geo["ProjectedCSTypeGeoKey"] == 32633 and geo["ModelPixelScale"][:2] == [o.gsd_m, o.gsd_m]
        assert geo["ModelTiepoint"][3:5] == [o.east_min, o.north_max]
        # An overview pixel is 2 x 2 base pixels: the same place, coarser.
        base = pages[0].asarray().astype(np.float64)
        half = base[: 2 * (o.height // 2), : 2 * (o.width // 2)].reshape(o.height // 2, 2, o.width // 2, 2, 3)
        assert np.abs(pages[1].asarray() - half.mean(axis=(1, 3))).mean() < 3.0
    # The layer covers the map's tile footprints.
    t = m.tiling
    e0, _, _, n1 = MapOrtho(ortho_map, o).bounds()
    assert e0 == pytest.approx(t.east_min - t.tile_m / 2) and n1 == pytest.approx(t.north_max + t.tile_m / 2)


def test_nodata_in_the_source_is_masked_in_the_layer(small_model, tmp_path):
    write_source(tmp_path / "source.tif", nodata_west_m=100.0)
    region = write_region(tmp_path / "r.yaml", "kind: geotiff\npath: source.tif", 400)
    ortho = MapOrtho.open(build_map(region, small_model, tmp_path / "map", progress=False))
    assert ortho is not None and ortho.info.alpha
    edge = source_corner()[0] + 100.0
    y = (ortho.bounds()[1] + ortho.bounds()[3]) / 2
    rgb, valid = ortho.window(edge, y, 5.0)
    k = 20
    assert not valid[:, : k - 1].any() and valid[:, k + 1 :].all()
    assert np.abs(rgb[:, k + 1 :].astype(int) - expected(edge, y, k, PX)[:, k + 1 :]).mean() < 2.0


def test_a_corrupt_or_truncated_layer_is_refused_naming_the_file(ortho_map, tmp_path):
    import shutil

    copy = Path(shutil.copytree(ortho_map, tmp_path / "copy"))
    ortho = MapOrtho.open(copy)
    assert ortho is not None
    page_offsets = ortho._page.dataoffsets
    ortho.close()
    data = bytearray((copy / ORTHO).read_bytes())
    at = int(page_offsets[3]) + 40  # inside tile 3's WebP bytes: same size, plausible garbage when decoded
    data[at] ^= 0xFF
    (copy / ORTHO).write_bytes(bytes(data))
    with pytest.raises(BundleError, match=rf"{ORTHO}: sha256 .* differs from the manifest"):
        Bundle(copy, verify="full")
    ortho = MapOrtho.open(copy)  # lazy: opens, then refuses the damaged tile at its first read
    assert ortho is not None
    t, g = ortho.info.tile_px, ortho.gsd_m
    e0, _, _, n1 = ortho.bounds()
    ortho.window(e0 + 0.5 * t * g, n1 - 0.5 * t * g, 5.0)  # tile 0 is fine
    with pytest.raises(BundleError, match=rf"{ORTHO}: tile 3 fails its sha256"):
        ortho.window(e0 + 3.5 * t * g, n1 - 0.5 * t * g, 5.0)
    (copy / ORTHO).write_bytes(bytes(data[:-1000]))  # truncated
    with pytest.raises(BundleError, match=rf"{ORTHO}: \d+ bytes, the manifest says \d+ \(truncated"):
        MapOrtho.open(copy)
    assert main(["map", "info", str(copy)]) == 1
    # A damaged digest table is refused at open (it is hashed with the small tables).
    shutil.copy(ortho_map / ORTHO, copy / ORTHO)
    table = bytearray((copy / ORTHO_HASHES).read_bytes())
    table[-1] ^= 0x01
    (copy / ORTHO_HASHES).write_bytes(bytes(table))
    with pytest.raises(BundleError, match=rf"{ORTHO_HASHES}: sha256 .* differs"):
        MapOrtho.open(copy)


def test_a_corridor_extract_carries_a_cropped_layer_that_lines_up(ortho_map, tmp_path):
    big = Bundle(ortho_map)
    crs = MapCRS(CRS)
    x, y = landmark_en()
    lat, lon = crs.to_latlon(np.array([x - 40.0, x + 40.0]), np.array([y, y]))
    route = {"type": "LineString", "coordinates": [[lon[0], lat[0]], [lon[1], lat[1]]]}
    (tmp_path / "route.geojson").write_text(json.dumps(route))
    args = ["map", "extract", "--from", str(ortho_map), "--corridor", str(tmp_path / "route.geojson")]
    assert main([*args, "--buffer-m", "30", "--out", str(tmp_path / "corridor")]) == 0
    small = Bundle(tmp_path / "corridor", verify="full")
    assert small.manifest.ortho is not None and small.manifest.ortho.overviews == 0
    assert (tmp_path / "corridor" / ORTHO).stat().st_size < (ortho_map / ORTHO).stat().st_size
    a, b = MapOrtho.open(big), MapOrtho.open(small)
    assert a is not None and b is not None and b.gsd_m == a.gsd_m
    # Around the route the crop holds the source's own bytes: the same pixels, bit for bit.
    for e, n in zip(small.tiles["east"], small.tiles["north"]):
        ra, va = a.window(float(e), float(n), 16.0)
        assert va.all()
        rb, vb = b.window(float(e), float(n), 16.0)
        assert vb.all() and np.array_equal(ra, rb)
    # Far from the route (a map tile left out of the extract): missing.
    far = np.argmax(np.hypot(big.tiles["east"] - x, big.tiles["north"] - y))
    _, vf = b.window(float(big.tiles["east"][far]), float(big.tiles["north"][far]), 16.0)
    assert not vf.any()


def test_a_bundle_without_the_layer_opens_and_says_so_once(tmp_path, caplog):
    path, _, _ = descriptor_map(tmp_path / "plain")
    with caplog.at_level(logging.WARNING, logger="edge_geoloc.maps.ortho"):
        assert MapOrtho.open(path) is None
        assert MapOrtho.open(Bundle(path)) is None
    said = [r for r in caplog.records if "no imagery layer" in r.getMessage()]
    assert len(said) == 1 and "metric refinement is off" in said[0].getMessage()
    assert yaml.safe_load((path / MANIFEST).read_text())["ortho"] is None


def test_map_info_shows_the_layer_and_build_options_choose_it(ortho_map, small_model, tmp_path, capsys):
    assert main(["map", "info", str(ortho_map)]) == 0
    o = Bundle(ortho_map).manifest.ortho
    size = (ortho_map / ORTHO).stat().st_size / 2**20
    out = capsys.readouterr().out
    assert f"ortho     {ORTHO}: {o.width} x {o.height} px at 0.25 m/px" in out and f"{size:.1f} MiB" in out
    write_source(tmp_path / "source.tif")
    region = write_region(tmp_path / "r.yaml", "kind: geotiff\npath: source.tif", 400)
    assert read_plan(plan_build(region, small_model, tmp_path / "a", ortho_gsd_m=0.4)).ortho.gsd_m == 0.4
    assert read_plan(plan_build(region, small_model, tmp_path / "b", ortho=False)).ortho is None
    assert default_gsd(0.1) == 0.25 and default_gsd(0.3) == 0.3 and default_gsd(2.0) == 0.5
    assert main(["map", "build", "--region", str(region), "--model", str(small_model), "--out",
                 str(tmp_path / "c"), "--ortho-gsd", "-1", "--quiet"]) == 1  # fmt: skip
    assert "imagery layer GSD must be a positive number" in capsys.readouterr().err
