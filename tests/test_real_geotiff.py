"""GeoTIFFs as they come from GDAL and data portals (issue 15, findings 6, 7 and 8): tiled and stripped,
LZW and DEFLATE (imagecodecs), missing pixels from GDAL_NODATA / an alpha band / an internal mask, imagery
far coarser than the model's GSD, and every broken file (truncated header or pixels, a JPEG renamed .tif, a
folder) refused in one line that names the file and says what was expected."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from mapkit import CENTER, CRS, raster_of, write_region

from edge_geoloc.cameras.rectify import MEAN_FILL
from edge_geoloc.cli import main
from edge_geoloc.geo import MapCRS
from edge_geoloc.mapbuild.imagery import SourceError, open_imagery
from edge_geoloc.maps.bundle import MANIFEST, BundleError
from edge_geoloc.world.region import Region

pytest.importorskip("imagecodecs")  # LZW and DEFLATE decoding: part of the workstation extra

SIZE_M = 320.0
KEYS = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633]  # projected, PixelIsArea, EPSG:32633


def write_tiff(path: Path, px: float = 0.5, compression=None, tile=None, nodata: str | None = None,
               alpha_west_m: float | None = None, mask_west_m: float | None = None,
               black_west_m: float | None = None) -> Path:  # fmt: skip
    """The mapkit pattern as a GeoTIFF; ``*_west_m``: the western strip this many metres wide is missing
    (black pixels with GDAL_NODATA 0, alpha 0, or a GDAL internal mask)."""
    import tifffile

    e, n = MapCRS(CRS).to_en(*CENTER)
    x0, y0 = float(e) - SIZE_M / 2, float(n) + SIZE_M / 2
    shape = (round(SIZE_M / px), round(SIZE_M / px))
    img = raster_of(CRS, x0, y0, px, shape)
    cols = np.arange(shape[1]) * px + px / 2  # metres from the west edge
    if black_west_m is not None:
        img[:, cols < black_west_m] = 0
    if alpha_west_m is not None:
        img = np.concatenate([img, np.where(cols < alpha_west_m, 0, 255).astype(np.uint8)[None, :, None]
                              .repeat(shape[0], 0)], axis=2)  # fmt: skip
    extratags = [
        (33550, "d", 3, (px, px, 0.0), False),
        (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), False),
        (34735, "H", len(KEYS), KEYS, False),
    ]
    if nodata is not None:
        extratags.append((42113, "s", 0, nodata, False))
    with tifffile.TiffWriter(path) as w:
        w.write(img, photometric="rgb", compression=compression, tile=tile, extratags=extratags,
                extrasamples=[2] if alpha_west_m is not None else None)  # fmt: skip
        if mask_west_m is not None:
            w.write(np.broadcast_to(cols >= mask_west_m, shape).copy(), photometric=4, subfiletype=4)
    return path


def source_of(tmp_path: Path, tif: Path, name: str = "r.yaml"):
    region = write_region(tmp_path / name, f"kind: geotiff\npath: {tif.name}", 400)
    return open_imagery(Region.load(region), region), region


def centres(source, tile_m: float = 64.0):
    tiling = source.tiling(tile_m)
    ids, east, north = tiling.centres()
    return tiling, ids, east, north


def test_lzw_deflate_tiled_and_stripped_give_the_same_tiles(tmp_path):
    plain, _ = source_of(tmp_path, write_tiff(tmp_path / "plain.tif"), "p.yaml")
    _, _, east, north = centres(plain)
    want = plain.render(east[:4], north[:4], 32, 2.0)
    for name, options in {
        "lzw.tif": {"compression": "lzw"},
        "deflate.tif": {"compression": "zlib"},
        "tiled-lzw.tif": {"compression": "lzw", "tile": (256, 256)},
        "tiled.tif": {"tile": (128, 128)},
    }.items():
        src, _ = source_of(tmp_path, write_tiff(tmp_path / name, **options), name + ".yaml")
        assert src.kind == "geotiff" and src.label() == name and not src.has_mask()
        assert np.array_equal(src.render(east[:4], north[:4], 32, 2.0), want), name


@pytest.mark.parametrize("how", ["nodata", "alpha", "mask"])
def test_missing_pixels_leave_tiles_out_and_are_filled_with_the_mean(tmp_path, how):
    west = 80.0  # a boundary 16 m from the nearest tile centres on either side (centres every 32 m)
    options = {"nodata": {"black_west_m": west, "nodata": "0"}, "alpha": {"alpha_west_m": west},
               "mask": {"mask_west_m": west, "compression": "lzw"}}[how]  # fmt: skip
    src, _ = source_of(tmp_path, write_tiff(tmp_path / f"{how}.tif", **options))
    assert src.has_mask()
    _, _, east, north = centres(src)
    e_edge = float(MapCRS(CRS).to_en(*CENTER)[0]) - SIZE_M / 2 + west
    assert np.min(np.abs(east - e_edge)) > 10.0  # no tile centre near the boundary: the test is exact
    frac = src.valid_fraction(east, north, 64.0)
    np.testing.assert_array_equal(frac >= 0.5, east > e_edge)  # a tile with its centre west of the edge is out
    assert np.all(frac[east > e_edge + 32.0] == 1.0) and np.all(frac[east < e_edge - 32.0] == 0.0)
    k = int(np.argmin(np.where(east > e_edge, east, np.inf)))  # the straddling tile that is kept (75 % imagery)
    tile = src.render(east[k : k + 1], north[k : k + 1], 32, 2.0)[0]
    cols_m = east[k] + (np.arange(32) - 15.5) * 2.0  # pixel columns' eastings (the rotation is under a degree)
    assert np.all(tile[:, cols_m < e_edge - 2.0] == MEAN_FILL) and not np.any(np.all(tile[:, cols_m > e_edge + 2.0] == MEAN_FILL, axis=-1))


def test_map_build_counts_nodata_tiles_and_records_the_imagery(small_model, tmp_path, capsys):
    from edge_geoloc.mapbuild.build import build_map

    _, region = source_of(tmp_path, write_tiff(tmp_path / "ortho.tif", black_west_m=80.0, nodata="0"))
    src = open_imagery(Region.load(region), region)
    _, _, east, _ = centres(src)
    e_edge = float(MapCRS(CRS).to_en(*CENTER)[0]) - SIZE_M / 2 + 80.0
    out = build_map(region, small_model, tmp_path / "map", progress=False)
    m = yaml.safe_load((out / MANIFEST).read_text())
    assert m["tiles"] == int(np.sum(east > e_edge)) and m["region"]["nodata_tiles"] == int(np.sum(east < e_edge))
    assert m["region"]["imagery"] == "ortho.tif" and m["region"]["native_gsd_m"] == pytest.approx(0.5, abs=1e-3)
    assert main(["map", "info", str(out)]) == 0
    info = capsys.readouterr().out
    assert f"imagery   ortho.tif: native GSD 0.5 m/px (map {m['tiling']['gsd_m']:g} m/px), {int(np.sum(east < e_edge))} tiles mostly nodata not built" in info


def test_imagery_far_coarser_than_the_model_is_refused_or_warned(small_model, tmp_path, caplog):
    from edge_geoloc.mapbuild.build import plan_build
    from edge_geoloc.runtime.card import load_card

    gsd = load_card(small_model).aerial.gsd_m
    _, coarse = source_of(tmp_path, write_tiff(tmp_path / "landsat.tif", px=10 * gsd), "c.yaml")
    with pytest.raises(BundleError, match=rf"^landsat.tif: imagery of {10 * gsd:.3g} m/px is 10x coarser than the map's"):
        plan_build(coarse, small_model, tmp_path / "c")
    plan_build(coarse, small_model, tmp_path / "c", allow_upsampling=True)
    assert "10.0x coarser" in caplog.text
    _, blurry = source_of(tmp_path, write_tiff(tmp_path / "blurry.tif", px=3 * gsd), "b.yaml")
    caplog.clear()
    plan_build(blurry, small_model, tmp_path / "b")
    assert "blurry.tif: imagery of" in caplog.text and "3.0x coarser" in caplog.text


def broken_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    good = write_tiff(tmp_path / "good.tif", compression="lzw", tile=(128, 128))
    data = good.read_bytes()
    (tmp_path / "head.tif").write_bytes(data[:60])
    (tmp_path / "pixels.tif").write_bytes(data[: len(data) * 2 // 3])
    plain = write_tiff(tmp_path / "plain.tif")
    (tmp_path / "plain-cut.tif").write_bytes(plain.read_bytes()[: plain.stat().st_size // 2])
    cv2.imwrite(str(tmp_path / "photo.jpg"), np.full((64, 64, 3), 90, np.uint8))
    (tmp_path / "photo.jpg").rename(tmp_path / "photo.tif")
    (tmp_path / "folder.tif").mkdir()
    return {
        "head": (tmp_path / "head.tif", r"not a readable GeoTIFF \(.*; 60 bytes, truncated or damaged\?\); expected a whole TIFF"),
        "pixels": (tmp_path / "pixels.tif", r"not a readable GeoTIFF \(.*truncated or damaged\?\); expected a whole TIFF"),
        "plain-cut": (tmp_path / "plain-cut.tif", r"not a readable GeoTIFF \(.*truncated or damaged\?\)"),
        "jpeg": (tmp_path / "photo.tif", r"a JPEG file, not a TIFF; expected a GeoTIFF \(imagery.kind: geotiff\)"),
        "folder": (tmp_path / "folder.tif", r"is a folder; imagery.kind geotiff expects a file"),
    }


def test_broken_geotiffs_are_one_line_naming_the_file(tmp_path):
    for name, (path, message) in broken_files(tmp_path).items():
        region = write_region(tmp_path / f"{name}.yaml", f"kind: geotiff\npath: {path.name}", 400)
        with pytest.raises(SourceError) as err:
            src = open_imagery(Region.load(region), region)
            src.render(*[np.array([v]) for v in MapCRS(CRS).to_en(*CENTER)], 32, 2.0)  # reading pixels: the cut shows
        text = str(err.value)
        assert text.startswith(f"{path}: ") and "\n" not in text, (name, text)
        assert __import__("re").search(message, text), (name, text)


def test_map_build_cli_says_one_line_for_a_broken_geotiff(small_model, tmp_path, capsys):
    files = broken_files(tmp_path)
    for name in ("head", "jpeg"):
        region = write_region(tmp_path / f"{name}.yaml", f"kind: geotiff\npath: {files[name][0].name}", 400)
        code = main(["map", "build", "--region", str(region), "--model", str(small_model), "--out",
                     str(tmp_path / f"m-{name}"), "--quiet"])  # fmt: skip
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1 and str(files[name][0]) in err, err
    (tmp_path / "bin.yaml").write_bytes(b"name: x\n\x89\xff\x00")
    assert main(["map", "build", "--region", str(tmp_path / "bin.yaml"), "--model", str(small_model), "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{tmp_path / 'bin.yaml'}:2: not a text file (byte 0x89 is not UTF-8; expected a YAML file)"), err


@pytest.fixture(scope="module")
def small_model():
    pytest.importorskip("torch")  # the export that makes the model needs torch; reading GeoTIFFs does not
    from exportkit import small_export

    return small_export()
