"""The loop's CSV inputs as real logs come (issue 15, finding 9): one reader (localize/tables.py) for the
attitude, odometry and frame-time tables; every bad shape refused at load with ``file:line``, the column
and what was expected, never a codec traceback or a log that loads and then skips every frame."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_geoloc.config import ConfigError, read_yaml
from edge_geoloc.localize.attitude import AttitudeLog
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.localize.sources import ImageFolderSource

HEADER = "t,roll_deg,pitch_deg,yaw_deg,height_m\n"


def write(tmp_path, text: str | bytes, name: str = "attitude.csv"):
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_attitude_csv_of_an_autopilot_loads_with_an_empty_yaw(tmp_path):
    path = write(tmp_path, HEADER + "# px4 vehicle_attitude\n0.0,1.5,-2.0,90.0,120.0\n0.2,1.4,-2.1,,119.5\n\n")
    log = AttitudeLog.from_csv(path)
    a, b = log.poll(1.0)
    assert (a.t, a.roll_deg, a.yaw_deg, a.height_m) == (0.0, 1.5, 90.0, 120.0) and b.yaw_deg is None


@pytest.mark.parametrize(
    "body, line, message",
    [
        ("0.0,0,0,90,120\nnan,0,0,90,120\n", 3, "column 't' is 'nan'; expected a finite number"),
        ("0.0,0,0,90,120\n,0,0,90,120\n", 3, "column 't' is ''; expected a finite number"),
        ("0.0,0,0,90,120\n0.2,0,0,90,\n", 3, "column 'height_m' is ''; expected a height above ground in metres > 0"),
        ("0.0,0,0,90,120\n0.2,0,0,90,nan\n", 3, "column 'height_m' is 'nan'"),
        ("0.0,0,0,90,120\n0.2,inf,0,90,100\n", 3, "column 'roll_deg' is 'inf'"),
        ("0.0,0,0,90,120\n0.2,0,0,90\n", 3, "4 values, expected 5 (t,roll_deg,pitch_deg,yaw_deg,height_m)"),
        ("0.0,0,0,90,120\n0.4,0,0,90,120\n0.3,0,0,90,120\n", 4, "t 0.3 is not after 0.4 (line 3); attitude times must increase"),
        ("0.0,0,0,90,120\n0.0,0,0,90,120\n", 3, "t 0 is not after 0 (line 2)"),
    ],
)
def test_attitude_csv_bad_rows_are_refused_at_load_with_file_line_and_expectation(tmp_path, body, line, message):
    path = write(tmp_path, HEADER + body)
    with pytest.raises(ValueError) as err:
        AttitudeLog.from_csv(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}: ") and message in text and "\n" not in text


def test_binary_csv_names_the_file_and_line_not_a_codec(tmp_path):
    path = write(tmp_path, HEADER.encode() + b"0.0,0,0,90,120\n\x89PNG\r\n\x1a\n\x00\x00\xbd\xff")
    with pytest.raises(ValueError, match=rf"^{path}:3: not text \(byte 0x89\); expected attitude CSV t,roll_deg"):
        AttitudeLog.from_csv(path)
    path = write(tmp_path, b"\xbd\xbf" * 50, "odo.csv")
    with pytest.raises(ValueError, match=rf"^{path}:1: not text \(byte 0xbd\); expected odometry CSV t,speed_mps"):
        Odometry.from_csv(path)
    with pytest.raises(ValueError, match=rf"^odometry {tmp_path}: is a folder \(expected a CSV file"):
        Odometry.from_csv(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        Odometry.from_csv(tmp_path / "none.csv")
    path = write(tmp_path, "t,speed_mps,yaw_rate_dps\n# nothing logged\n", "empty.csv")
    with pytest.raises(ValueError, match=rf"^{path}: no odometry rows \(expected CSV t,speed_mps,yaw_rate_dps\)$"):
        Odometry.from_csv(path)


def test_odometry_csv_refuses_nan_and_decreasing_times(tmp_path):
    good = Odometry.from_csv(write(tmp_path, "0,3.0,0.5\n0.1,3.1,0.4\n", "odo.csv"))
    assert np.allclose(good.speed, [3.0, 3.1])
    with pytest.raises(ValueError, match=r"odo2.csv:2: column 'speed_mps' is 'NaN'; expected a finite number"):
        Odometry.from_csv(write(tmp_path, "0,3.0,0.5\n0.1,NaN,0.4\n", "odo2.csv"))
    with pytest.raises(ValueError, match=r"odo3.csv:3: t 0.05 is not after 0.1 \(line 2\)"):
        Odometry.from_csv(write(tmp_path, "0,3,0\n0.1,3,0\n0.05,3,0\n", "odo3.csv"))


def test_frame_timestamps_csv_goes_through_the_same_reader(tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((8, 8, 3), 60 * i, np.uint8))
    (folder / "timestamps.csv").write_text("name,seconds\nf0.png,0.0\nf1.png,0.5\nf2.png,1.0\n")
    assert ImageFolderSource(folder).times == [0.0, 0.5, 1.0]
    (folder / "timestamps.csv").write_text("name,seconds\nf0.png,0.0\nf1.png,nan\nf2.png,1.0\n")
    with pytest.raises(ValueError, match=r"timestamps.csv:3: column 'seconds' is 'nan'; expected a finite number"):
        ImageFolderSource(folder)


def test_region_yaml_binary_or_a_folder_is_one_line_naming_the_file(tmp_path):
    path = write(tmp_path, b"name: x\n\xff\xfe\x00binary", "region.yaml")
    with pytest.raises(ConfigError, match=rf"^{path}:2: not a text file \(byte 0xff is not UTF-8; expected a YAML file\)$"):
        read_yaml(path)
    with pytest.raises(ConfigError, match=rf"^{tmp_path}: is a folder \(expected a YAML file\)$"):
        read_yaml(tmp_path)
    path = write(tmp_path, "? [a, b]\n: 1\n", "listkey.yaml")
    with pytest.raises(ConfigError, match=rf"^{path}: not a YAML file of settings"):
        read_yaml(path)


def test_attitude_poll_never_hands_out_nan_times(tmp_path):
    log = AttitudeLog.from_csv(write(tmp_path, HEADER + "0,0,0,,50\n1,0,0,,50\n"))
    assert all(math.isfinite(a.t) and a.height_m == 50 for a in log.poll(5.0))
