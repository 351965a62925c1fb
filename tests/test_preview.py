import cv2

from edge_geoloc.cli import main


def test_world_preview_writes_agreeing_views(tmp_path):
    region = tmp_path / "r.yaml"
    region.write_text(
        "name: tiny\ncenter_lat: 47.4\ncenter_lon: 8.5\nsize_m: 300\nstyle: downtown\nseed: 3\nresolution_m: 0.5\n"
    )
    assert main(["world", "preview", "--region", str(region), "--out", str(tmp_path / "out"), "--points", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["overview.png", "point_1.png", "point_2.png"]
    sheet = cv2.imread(str(tmp_path / "out" / "point_1.png"))
    assert sheet.shape[1] >= 3 * 256 and sheet.shape[0] > 256


def test_world_preview_bad_region_names_the_key(tmp_path, capsys):
    region = tmp_path / "r.yaml"
    region.write_text("name: tiny\ncenter_lat: 47.4\ncenter_lon: 8.5\nsize_m: 300\nstyle: downtown\nseeed: 3\n")
    assert main(["world", "preview", "--region", str(region), "--out", str(tmp_path / "out")]) == 1
    assert "r.yaml:6: unknown key 'seeed'" in capsys.readouterr().err
