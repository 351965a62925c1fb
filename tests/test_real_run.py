"""`edge-geoloc run` on real inputs end to end (issue 15, findings 1 to 4 and 10): receivers' logs never
raise and give one fix per epoch; every output parses with a strict JSON parser; a garbage log is said out
loud (and refused with --strict); a video of a scene the map cannot explain gives no vision fix, with or
without GPS, while frames the map can explain still do once the mixture is calibrated."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")  # making the small export needs torch; the loop itself does not

from exportkit import one_torch_thread, small_export  # noqa: F401 (autouse fixture)
from loopkit import CAMERA, panorama, street_map, tiling, world
from nmeakit import log_text, neo_m8n, sirf, zed_f9p

from edge_geoloc.cameras.street import CameraModel
from edge_geoloc.geo import Tiling
from edge_geoloc.localize.gnss import NmeaFilePrior
from edge_geoloc.localize.loop import Localizer, LoopConfig
from edge_geoloc.localize.run import open_models, run_loop
from edge_geoloc.localize.sources import Capture, ListSource, VideoSource
from edge_geoloc.mapbuild.build import build_from_descriptors
from edge_geoloc.maps.bundle import EncoderInfo, RegionInfo
from edge_geoloc.runtime import load_card

ROOT = Path(__file__).resolve().parents[1]


def strict(text: str):
    """json.loads that refuses NaN and Infinity, as JavaScript's JSON.parse, jq and Go do."""

    def refuse(name: str):
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def model():
    export = small_export()
    return export, street_map(export)


def centre_latlon(k: int = 12) -> tuple[float, float]:
    e, n = tiling().centre(k)
    lat, lon = world().crs.to_latlon(float(e), float(n))
    return float(lat), float(lon)


def write_frames(folder: Path, n: int, k: int = 12) -> Path:
    folder.mkdir()
    e, nn = tiling().centre(k)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(panorama(float(e), float(nn), 90.0), cv2.COLOR_RGB2BGR))
    return folder


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """``edge-geoloc run`` in this process (the CLI path, without an interpreter start per run)."""
    from edge_geoloc.cli import main

    code = main(["run", *args])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("receiver", ["zed-f9p", "sirf", "neo-m8n"])
def test_run_with_a_receivers_log_never_raises_and_every_output_is_strict_json(model, tmp_path, receiver, capsys):
    export, map_dir = model
    frames = write_frames(tmp_path / "frames", 6)
    lat, lon = centre_latlon()
    make = {"zed-f9p": zed_f9p, "sirf": sirf, "neo-m8n": neo_m8n}[receiver]
    (tmp_path / "gps.nmea").write_text(log_text([make(i, lat, lon) for i in range(6)]))
    out, summary, nmea = tmp_path / "fixes.jsonl", tmp_path / "summary.json", tmp_path / "out.nmea"
    code, err = run_cli(["--map", str(map_dir), "--model", str(export), "--source", str(frames), "--gps",
                         str(tmp_path / "gps.nmea"), "--rate-hz", "1", "--threads", "1", "--out", str(out),
                         "--summary-json", str(summary), "--nmea-out", str(nmea), "--strict", "--budget-ms", "0"],
                        capsys)  # fmt: skip
    assert code == 0, err
    rows = [strict(line) for line in out.read_text().splitlines()]
    s = strict(summary.read_text())
    assert len(rows) == 6 and s["gps"]["fixes"] == s["gps"]["epochs"] == 6  # one fix per epoch
    assert s["filter"]["gps_accepted"] + s["filter"].get("gps_gated", 0) == 6
    assert rows[0]["vision"]["evidence"] is None  # unknown is null, not NaN
    assert all(r["lat"] is not None and r["source"] in ("gps", "filter-only") for r in rows)  # no calibrated vision yet
    assert s["vision_uninformative"]["uncalibrated"] == 6, (s, rows)
    assert len(nmea.read_text().splitlines()) == 3 * 6


def test_garbage_as_gps_warns_and_strict_refuses(model, tmp_path, capsys):
    export, map_dir = model
    frames = write_frames(tmp_path / "frames", 2)
    junk = tmp_path / "junk.nmea"
    junk.write_bytes(np.random.default_rng(3).bytes(5000))
    base = ["--map", str(map_dir), "--model", str(export), "--source", str(frames), "--gps", str(junk),
            "--threads", "1", "--out", str(tmp_path / "f.jsonl")]  # fmt: skip
    problem = f"--gps {junk}: no valid NMEA 0183 sentence in 5000 bytes (skipped: not_nmea "
    code, err = run_cli(base, capsys)
    assert code == 0 and f"warning: {problem}" in err
    code, err = run_cli([*base, "--strict"], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith(problem) and "Traceback" not in err
    assert last.endswith("); expected lines like $GPGGA,...*hh with valid checksums (--strict: refused)")


# --- a scene the map cannot explain ---------------------------------------------------------------


def pedestrian_video(path: Path, n: int = 40, seed: int = 0) -> Path:
    """A fixed 1280x720 camera on a pavement: a textured grey ground, a wall, people (coloured ellipses)
    walking across; nothing of the map's world is in it."""
    rng = np.random.default_rng(seed)
    w, h = 1280, 720
    base = np.empty((h, w, 3), np.uint8)
    base[: h // 2] = (150, 150, 140)  # a wall
    base[h // 2 :] = (95, 95, 100)  # pavement
    base = np.clip(base.astype(int) + rng.integers(-12, 12, base.shape), 0, 255).astype(np.uint8)
    people = [(rng.uniform(0, w), rng.uniform(h * 0.45, h * 0.8), rng.uniform(-25, 25), tuple(int(c) for c in rng.integers(0, 255, 3)))
              for _ in range(6)]  # fmt: skip
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    for i in range(n):
        img = base.copy()
        for x, y, vx, colour in people:
            cx = int((x + vx * i) % w)
            cv2.ellipse(img, (cx, int(y)), (28, 90), 0, 0, 360, colour, -1)
            cv2.circle(img, (cx, int(y) - 110), 22, (60, 80, 120), -1)
        writer.write(img)
    writer.release()
    return path


PINHOLE = CameraModel(kind="pinhole", fov_deg=70.0, width_px=1280, height_px=720, pitch_deg=0.0)


@pytest.fixture(scope="module")
def town_map(model, tmp_path_factory):
    """A 3.1 x 3.1 km map (99 x 99 tile centres, 64 m tiles) that pairs with the small export, of random
    descriptors: a scope holds a hundred places, none of them the pavement in the video."""
    export, _ = model
    card = load_card(export)
    t0 = tiling()
    t = Tiling(t0.east_min - 1536.0, t0.north_max - 1568.0, t0.east_min + 1600.0 - 1e-6, t0.north_max + 1568.0 - 1e-6, 64.0)
    rng = np.random.default_rng(5)
    d = card.descriptor_dim
    desc = rng.standard_normal((len(t), d)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    out = tmp_path_factory.mktemp("town") / "map"
    encoder = EncoderInfo(model=card.model, aerial_sha256=card.aerial.sha256, card_sha256="", descriptor_dim=d)
    return build_from_descriptors(out, crs=world().crs, tiling=t, tile_ids=np.arange(len(t)), descriptors=desc,
                                  encoder=encoder, region=RegionInfo("town", 47.0, 9.0, "descriptors"),
                                  tile_px=card.aerial.width)  # fmt: skip


def localizer(export: Path, map_dir: Path, camera, **cfg) -> Localizer:
    encoder, index, _ = open_models(export, map_dir, threads=1)
    return Localizer(encoder, index, camera, LoopConfig(budget_ms=None, use_offset=False, **cfg))


def test_a_video_the_map_cannot_explain_gives_no_vision_fix_without_gps(model, town_map, tmp_path):
    export, _ = model
    video = pedestrian_video(tmp_path / "street.avi")
    s = run_loop(localizer(export, town_map, PINHOLE), Capture(VideoSource(str(video))))
    assert s["frames"] == 40 and s["sources"] == {"none": 40}
    assert s["vision_uninformative"] == {"total": 40, "uncalibrated": 40, "outlier": 0, "flat": 0, "image": 0}
    # What the old loop did (and an operator's --trust-uncalibrated still does): every frame a vision fix.
    s = run_loop(localizer(export, town_map, PINHOLE, trust_uncalibrated=True), Capture(VideoSource(str(video))))
    assert s["sources"].get("vision", 0) >= 30


def test_a_video_the_map_cannot_explain_gives_no_vision_fix_with_a_receiver(model, town_map, tmp_path):
    export, _ = model
    video = pedestrian_video(tmp_path / "street.avi", n=80)
    lat, lon = centre_latlon()
    (tmp_path / "gps.nmea").write_text(log_text([zed_f9p(i, lat, lon, speed_mps=0.0) for i in range(9)]))
    loc = localizer(export, town_map, PINHOLE)
    prior = NmeaFilePrior(tmp_path / "gps.nmea", loc.crs)
    s = run_loop(loc, Capture(VideoSource(str(video))), prior)  # 10 frames a second: 8 s of video, a fix a second
    assert s["frames"] == 80 and s["sources"].get("vision", 0) == 0
    u = s["vision_uninformative"]
    # Not fitted before 20 frames pinned by GPS (and the frames before the first fix); never a fix after it.
    assert u["uncalibrated"] >= 20 and u["total"] == 80 and u["flat"] + u["outlier"] == 80 - u["uncalibrated"] > 0
    assert s["vision_position"]["fitted"]
    assert s["vision_separation"]["right"] < 5 and s["vision_separation"]["never_right"]


def test_frames_the_map_explains_still_become_vision_fixes_once_calibrated(model, tmp_path):
    export, map_dir = model
    e, n = tiling().centre(12)
    frames = [(i * 0.2, panorama(float(e), float(n), 90.0)) for i in range(40)]
    lat, lon = centre_latlon()
    (tmp_path / "gps.nmea").write_text(log_text([zed_f9p(i, lat, lon, speed_mps=0.0) for i in range(9)]))
    loc = localizer(export, map_dir, CAMERA, temperature=1e-4)
    from edge_geoloc.localize.sources import Frame

    src = ListSource([Frame(i, t, img) for i, (t, img) in enumerate(frames)])
    s = run_loop(loc, Capture(src), NmeaFilePrior(tmp_path / "gps.nmea", loc.crs))
    assert s["vision_position"]["fitted"] and s["vision_uninformative"]["uncalibrated"] >= 20
    assert s["vision_uninformative"]["flat"] <= 1 and s["vision_uninformative"]["outlier"] == 0
    assert s["sources"]["vision"] >= 18 and s["vision_separation"]["right"] >= 20


def test_blank_and_overexposed_frames_are_not_encoded(model):
    export, map_dir = model
    from edge_geoloc.localize.sources import Frame

    images = [np.zeros((16, 64, 3), np.uint8), np.full((16, 64, 3), 255, np.uint8), np.full((16, 64, 3), 128, np.uint8)]
    loc = localizer(export, map_dir, CAMERA, trust_uncalibrated=True)
    fixes = []
    s = run_loop(loc, Capture(ListSource([Frame(i, float(i), im) for i, im in enumerate(images)])), None,
                 on_fix=lambda f, x: fixes.append(x))  # fmt: skip
    assert s["vision_uninformative"]["image"] == 3 and s["encodes"] == 0
    assert [f.note for f in fixes] == ["vision uninformative: too dark (mean grey 0)",
                                       "vision uninformative: overexposed (mean grey 255)",
                                       "vision uninformative: blank frame (grey-level spread 0.0 < 4)"]  # fmt: skip
