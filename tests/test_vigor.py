"""VIGOR layout: VIGOR's own conversion, the writer pieces, and the reader (ours and the real download's defaults)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_geoloc.data.sample import DatasetError, read_rgb, write_rgb
from edge_geoloc.data.vigor import (
    LABEL_FILES,
    CityMeta,
    PanoramaMeta,
    VigorDataset,
    VigorMeta,
    delta_to_pixel,
    delta_unit_deg,
    label_deltas,
    label_lines,
    labels_from_names,
    metadata_path,
    open_protocol,
    pano_filename,
    parse_pano_filename,
    parse_satellite_filename,
    satellite_filename,
    vigor_latlon,
    write_city_splits,
    write_metadata,
)
from edge_geoloc.geo import MapCRS, Tiling, vigor_iou
from edge_geoloc.world.region import Region


def test_delta_unit_is_vigors_constant():
    # dataloader.py's delta_unit: [0.0003280724526376747, 0.00043301140280175833] for 320 px of 0.114 m
    # (the longitude span at New York's 40.7423 N).
    unit_lat, unit_lng = delta_unit_deg(40.7423, 0.114)
    assert float(unit_lat) == 0.0003280724526376747
    assert float(unit_lng) == pytest.approx(0.00043301140280175833, rel=1e-7)
    # Longitude span grows as 1 / cos(lat) (to first order).
    _, u0 = delta_unit_deg(0.0, 0.114)
    _, u60 = delta_unit_deg(60.0, 0.114)
    assert float(u60 / u0) == pytest.approx(2.0, rel=1e-6)


def test_label_signs_and_pixel_by_hand():
    # A panorama 10 m south and 5 m west of a satellite centre, label GSD 0.1 m/px:
    # dy = +100 px (south), dx = +50 px (west), pixel (row 420, col 270) of the 640-px image.
    crs = MapCRS.for_area(47.0, 9.0)
    e, n = crs.to_en(47.0, 9.0)
    sat_lat, sat_lon = crs.to_latlon(e, n)
    pano_lat, pano_lon = crs.to_latlon(e - 5.0, n - 10.0)
    dy, dx = label_deltas(pano_lat, pano_lon, sat_lat, sat_lon, 0.1)
    # VIGOR's sphere differs from the ellipsoid and the UTM grid by a few 0.1 %.
    assert dy == pytest.approx(100.0, rel=5e-3) and dx == pytest.approx(50.0, rel=5e-3)
    row, col = delta_to_pixel(np.array([dy, dx]), 640)
    assert row == pytest.approx(420.0, abs=0.5) and col == pytest.approx(270.0, abs=0.5)
    assert np.allclose(delta_to_pixel(np.array([dy, dx]), 256), np.array([row, col]) * 256 / 640)
    assert np.allclose(delta_to_pixel(np.zeros(2), 256), [128.0, 128.0])


def test_names_round_trip():
    name = pano_filename("000042", 47.123456789, -9.87654321)
    assert name == "000042,47.12345679,-9.87654321,.jpg"
    assert parse_pano_filename(name) == (47.12345679, -9.87654321)
    # Real VIGOR panorama ids contain '-' and '_'; positions are read from the end.
    assert parse_pano_filename("-0FVaIl6Xdz8_OiD,41.8798,-87.625,.jpg") == (41.8798, -87.625)
    sat = satellite_filename(-33.5, 151.25)
    assert sat == "satellite_-33.50000000_151.25000000.png"
    assert parse_satellite_filename(sat) == (-33.5, 151.25)
    with pytest.raises(ValueError, match="prefix"):
        pano_filename("a,b", 1.0, 2.0)
    with pytest.raises(ValueError, match=r"\[prefix\],\[lat\],\[lng\]"):
        parse_pano_filename("pano.jpg")


# --- a small dataset written with the writer pieces ---------------------------------------------------------


REGION = Region(name="Town", center_lat=60.0, center_lon=18.0, size_m=200.0, style="suburb", seed=3)
TILE_M, SAT_PX, PANO_HW = 64.0, 32, (16, 64)


def write_town(root: Path, n_pano: int = 12, with_meta: bool = True) -> dict:
    """A city at 60 N, 3 degrees off its UTM meridian (grid convergence about 2.6 degrees)."""
    crs = REGION.map_crs()
    ce, cn = REGION.center_en()
    tiling = Tiling.around(ce, cn, 128.0, TILE_M)
    _, te, tn = tiling.centres()
    tlat, tlon = crs.to_latlon(te, tn)
    sat_names = [satellite_filename(a, b) for a, b in zip(tlat, tlon)]
    rng = np.random.default_rng(1)
    pe, pn = ce + rng.uniform(-64, 64, n_pano), cn + rng.uniform(-64, 64, n_pano)
    plat, plon = crs.to_latlon(pe, pn)
    pano_names = [pano_filename(f"p{i:03d}", a, b) for i, (a, b) in enumerate(zip(plat, plon))]
    cover, offsets, iou = tiling.covering(pe, pn)
    lines = label_lines(pano_names, sat_names, cover, labels_from_names(pano_names, sat_names, cover, TILE_M / 640))
    test = np.arange(n_pano) % 3 == 0
    (root / "Town" / "satellite").mkdir(parents=True)
    (root / "Town" / "panorama").mkdir(parents=True)
    sats = rng.integers(0, 256, (len(sat_names), SAT_PX, SAT_PX, 3), dtype=np.uint8)
    for name, img in zip(sat_names, sats):
        write_rgb(root / "Town" / "satellite" / name, img)
    # Smooth panoramas (a colour per panorama plus a ramp), so JPEG keeps them within a few levels.
    ramp = np.linspace(0, 60, PANO_HW[1])[None, :, None]
    panos = (rng.integers(40, 180, (n_pano, 1, 1, 3)) + ramp[None]).repeat(PANO_HW[0], 1).astype(np.uint8)
    for name, img in zip(pano_names, panos):
        write_rgb(root / "Town" / "panorama" / name, img)
    write_city_splits(root, "Town", sat_names, lines, test)
    if with_meta:
        write_metadata(
            root,
            VigorMeta(
                generator="test",
                label_gsd_m=TILE_M / 640,
                tile_m=TILE_M,
                stride_m=TILE_M / 2,
                satellite_px=SAT_PX,
                satellite_gsd_m=TILE_M / SAT_PX,
                panorama=PanoramaMeta(height_px=PANO_HW[0], width_px=PANO_HW[1], center_heading_deg=0.0),
                cities={
                    "Town": CityMeta(
                        region=REGION,
                        crs=crs.to_string(),
                        panoramas=n_pano,
                        satellites=len(sat_names),
                        same_area_train=int((~test).sum()),
                        same_area_test=int(test.sum()),
                    )
                },
                cross_area_train=["Town"],
            ),
        )
    return dict(crs=crs, pe=pe, pn=pn, cover=cover, offsets=offsets, iou=iou, test=test, sats=sats, panos=panos)


def test_labels_put_the_panorama_within_one_pixel(tmp_path):
    truth = write_town(tmp_path, n_pano=40)
    ds = VigorDataset(tmp_path, split="cross_area")
    gsd = ds.label_gsd_m
    for k in range(4):  # positive and every semi-positive
        sat = ds.label[:, k]
        lat, lon = vigor_latlon(ds.sat_lat[sat], ds.sat_lon[sat], ds.delta_px[:, k], gsd)
        e, n = truth["crs"].to_en(lat, lon)
        err_px = np.hypot(e - truth["pe"], n - truth["pn"]) / gsd
        assert err_px.max() < 0.1, err_px.max()  # names are exact to ~1 mm, labels to 1e-6 px


def test_reader_round_trip(tmp_path):
    truth = write_town(tmp_path)
    ds = VigorDataset(tmp_path, ["Town"], "cross_area")
    assert len(ds) == 12 and ds.num_aerial == 36
    assert np.array_equal(ds.label, truth["cover"])
    # Metres east/north from each tile are along TRUE north; rotated into the grid (convergence 2.6 degrees
    # here, which moves a 45 m offset by 2 m) they are the map-CRS offsets up to VIGOR's sphere (~0.3 %).
    gamma = np.radians(truth["crs"].convergence_deg(ds.pano_lat, ds.pano_lon))[:, None]
    assert float(np.degrees(np.abs(gamma).min())) > 2.4
    e_t, n_t = ds.delta_m[..., 0], ds.delta_m[..., 1]
    grid = np.stack([e_t * np.cos(gamma) - n_t * np.sin(gamma), n_t * np.cos(gamma) + e_t * np.sin(gamma)], -1)
    assert np.abs(grid - truth["offsets"]).max() < 0.2
    assert np.abs(ds.delta_m - truth["offsets"]).max() > 0.5  # the rotation is really there
    assert np.allclose(ds.iou, truth["iou"], atol=0.05)
    assert np.allclose(ds.iou, vigor_iou(ds.delta_m[..., 0], ds.delta_m[..., 1], TILE_M))
    assert np.all(ds.iou[:, 0] >= ds.iou[:, 1])
    assert ds.aerial_gsd_m == TILE_M / SAT_PX and ds.heading_deg == 0.0
    s = ds[3]
    assert s.positive == truth["cover"][3, 0] and list(s.semi_positives) == list(truth["cover"][3, 1:])
    assert s.offset_m is not None and np.allclose(s.offset_m, ds.delta_m[3, 0])
    assert s.semi_iou is not None and s.semi_iou.shape == (3,)
    assert s.fov_deg == 360.0 and s.city == "Town" and s.heading_deg == 0.0
    assert (s.lat, s.lon) == parse_pano_filename(s.street_path.name)
    assert np.array_equal(s.aerial, truth["sats"][s.positive])  # PNG: lossless
    assert np.array_equal(ds.aerial(5), truth["sats"][5])
    assert s.street.shape == (*PANO_HW, 3) and np.abs(s.street.astype(int) - truth["panos"][3]).max() < 6
    assert np.array_equal(s.aerial_image(2), truth["sats"][s.aerial_ids[2]])
    # Same-area train and test partition the city's panoramas.
    train = VigorDataset(tmp_path, split="same_area_train")
    test = VigorDataset(tmp_path, split="same_area_test")
    assert len(train) + len(test) == len(ds) and len(test) == int(truth["test"].sum())
    assert {p.name for p in train.pano_paths}.isdisjoint(p.name for p in test.pano_paths)
    assert len(open_protocol(tmp_path, "cross_area", "train")) == len(ds)
    with pytest.raises(DatasetError, match="no cross-area test cities"):
        open_protocol(tmp_path, "cross_area", "test")


def _rewrite_line(path: Path, lineno: int, fn) -> None:
    lines = path.read_text().splitlines()
    lines[lineno - 1] = fn(lines[lineno - 1])
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "breaker, message",
    [
        (lambda s: s.rsplit(" ", 1)[0], "expected 13 space-separated columns"),
        (lambda s: s.replace(s.split()[2], "north", 1), "dy/dx columns must be numbers"),
        (lambda s: s.replace(s.split()[4], "satellite_1.0_2.0.png", 1), "is not in"),
        (lambda s: "nolatlon.jpg " + s.split(" ", 1)[1], r"\[prefix\],\[lat\],\[lng\]"),
    ],
)
def test_malformed_label_line_names_file_and_line(tmp_path, breaker, message):
    write_town(tmp_path)
    label_file = tmp_path / "splits" / "Town" / LABEL_FILES["cross_area"]
    _rewrite_line(label_file, 5, breaker)
    with pytest.raises(DatasetError, match=rf"{label_file}:5: .*{message}"):
        VigorDataset(tmp_path, split="cross_area")


def test_malformed_satellite_list_and_metadata(tmp_path):
    write_town(tmp_path)
    sat_list = tmp_path / "splits" / "Town" / "satellite_list.txt"
    _rewrite_line(sat_list, 3, lambda s: "satellite_x_y.png")
    with pytest.raises(DatasetError, match=rf"{sat_list}:3: .*satellite_\[lat\]_\[lng\]"):
        VigorDataset(tmp_path)
    meta = metadata_path(tmp_path)
    meta.write_text(meta.read_text().replace("tile_m:", "tile_metres:"))
    with pytest.raises(DatasetError, match=rf"{meta}:\d+: unknown key 'tile_metres'"):
        VigorDataset(tmp_path)


def test_missing_image_is_reported(tmp_path):
    write_town(tmp_path)
    ds = VigorDataset(tmp_path, split="cross_area")
    gone = ds.pano_paths[4]
    gone.unlink()
    with pytest.raises(DatasetError, match=rf"1 of 12 panorama files .* missing, e.g. {gone}"):
        VigorDataset(tmp_path, split="cross_area")
    lazy = VigorDataset(tmp_path, split="cross_area", check_files=False)
    with pytest.raises(DatasetError, match=rf"panorama {gone}: no such file"):
        lazy.street(4)
    (tmp_path / "Town" / "satellite" / ds.sat_paths[0].name).unlink()
    with pytest.raises(DatasetError, match=r"satellite image files .* missing"):
        VigorDataset(tmp_path, split="same_area_test")


def test_wrong_size_and_corrupt_images(tmp_path):
    write_town(tmp_path)
    ds = VigorDataset(tmp_path, split="cross_area")
    write_rgb(ds.sat_paths[2], np.zeros((SAT_PX + 1, SAT_PX, 3), np.uint8))
    with pytest.raises(DatasetError, match=rf"{ds.sat_paths[2]}: size 33x32 px .* expected 32x32"):
        ds.aerial(2)
    assert VigorDataset(tmp_path, split="cross_area", check_size=False).aerial(2).shape == (33, 32, 3)
    # A JPEG cut short and a PNG overwritten with junk: errors that name the file.
    data = ds.pano_paths[1].read_bytes()
    ds.pano_paths[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=rf"{ds.pano_paths[1]}: truncated or corrupt JPEG"):
        ds.street(1)
    ds.sat_paths[3].write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=rf"{ds.sat_paths[3]}: not a readable image"):
        ds.aerial(3)
    ds.sat_paths[4].write_bytes(b"")
    with pytest.raises(DatasetError, match="empty file"):
        read_rgb(ds.sat_paths[4])
    with pytest.raises(IndexError, match="panorama index out of range"):
        ds.street(12)


def test_reads_the_real_download_layout(tmp_path):
    # Real VIGOR: no edge_geoloc.yaml; 640-px satellites at 0.114 m/px, 1024 x 2048 panoramas; names with
    # few decimals and panorama ids for prefixes. Cities in VIGOR's order, satellite indices global across cities.
    cities = [("Chicago", 41.88, -87.62), ("NewYork", 40.74, -73.99), ("SanFrancisco", 37.77, -122.42)]
    cities.append(("Seattle", 47.6, -122.33))
    for ci, (city, lat, lon) in enumerate(cities):
        sats = [f"satellite_{lat + 0.0003 * k:.7f}_{lon:.7f}.png" for k in range(4)]
        pano = f"-x_Y{ci}AbC,{lat + 0.0001:.6f},{lon + 0.0001:.6f},.jpg"
        for d in ("satellite", "panorama"):
            (tmp_path / city / d).mkdir(parents=True)
        for s in sats:
            cv2.imwrite(str(tmp_path / city / "satellite" / s), np.full((640, 640, 3), 90 + ci, np.uint8))
        cv2.imwrite(str(tmp_path / city / "panorama" / pano), np.full((1024, 2048, 3), 30 * ci, np.uint8))
        cover = np.array([[0, 1, 2, 3]])
        lines = label_lines([pano], sats, cover, labels_from_names([pano], sats, cover, 0.114))
        write_city_splits(tmp_path, city, sats, lines, np.array([False]))
    ds = VigorDataset(tmp_path, split="cross_area")
    assert ds.cities == ["NewYork", "Seattle", "SanFrancisco", "Chicago"] and ds.meta is None
    assert ds.label_gsd_m == 0.114 and ds.tile_m == pytest.approx(72.96) and ds.aerial_gsd_m == pytest.approx(0.114)
    assert ds.heading_deg is None  # the real files do not say where north sits in the panorama
    assert np.array_equal(ds.label, np.arange(16).reshape(4, 4))
    # 0.0001 degree north of the first satellite centre is about 11.1 m: dy = -11.1 / 0.114 = -97.5 px.
    assert ds.delta_px[0, 0, 0] == pytest.approx(-11.12 / 0.114, rel=2e-3)
    assert ds.street(1).shape == (1024, 2048, 3) and ds.aerial(7).shape == (640, 640, 3)
    assert VigorDataset(tmp_path, split="cross_area", pano_heading_deg=0.0)[0].heading_deg == 0.0
    train, test = (open_protocol(tmp_path, "cross_area", p) for p in ("train", "test"))
    assert train.cities == ["NewYork", "Seattle"] and test.cities == ["SanFrancisco", "Chicago"]
    assert open_protocol(tmp_path, "same_area", "test").cities == ds.cities
    with pytest.raises(DatasetError, match="no satellite list"):
        VigorDataset(tmp_path, ["Boston"])
