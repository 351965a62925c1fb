"""`edge-geoloc doctor`: what a deployment engineer runs first on the device, before `edge-geoloc run`.

One line per check (``ok``, ``warn``, ``FAIL`` or ``skip``), and a non-zero exit when any check failed:
Python; the inference backends (ONNX Runtime and its providers, TensorRT, a CUDA binding); the
export's model card and graphs (sha256); the TensorRT engines against this GPU and TensorRT version;
the map bundle (every file hashed) and whether it pairs with the export; the camera source delivers a
frame the camera model accepts; the GNSS source delivers sentences; the flight controller's MAVLink
heartbeat arrives (from the expected system id) and which streams come at which rates. A check that needs an
input not given (``--map``, ``--source``, ``--gps``, ``--mavlink``) is skipped, not failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_PYTHON = (3, 10)


class CheckFailed(Exception):
    """A check that found a problem (the message is the line's detail)."""


class CheckWarning(Exception):
    """A check that passed with a caveat (runs, but not as well as it could)."""


class Skip(Exception):
    """A check that does not apply here."""


@dataclass
class Result:
    status: str  # ok | warn | FAIL | skip
    name: str
    detail: str

    def line(self) -> str:
        return f"{self.status:<4}  {self.name:<14} {self.detail}"


@dataclass
class Doctor:
    """The checks of one deployment; each ``check_*`` returns its detail or raises one of the above."""

    model: Path | None = None
    map: Path | None = None
    source: str | None = None
    camera: str | None = None
    gps: str | None = None
    branch: str = "street"
    gps_wait_s: float = 5.0
    tensorrt: Callable[[], Any] | None = None  # tests pass fakes; None: the real import
    cuda: Callable[[], Any] | None = None
    mavlink: str | None = None  # the flight controller's connection, as `run --mavlink` takes it
    mavlink_sysid: int | None = None
    mavlink_wait_s: float = 5.0  # for the autopilot's heartbeat
    mavlink_listen_s: float = 3.0  # then counting which streams arrive at which rates

    def check_python(self) -> str:
        if sys.version_info[:2] < MIN_PYTHON:
            raise CheckFailed(f"{sys.version.split()[0]}: edge-geoloc needs Python >= {'.'.join(map(str, MIN_PYTHON))}")
        return f"{sys.version.split()[0]} ({sys.executable})"

    def check_onnxruntime(self) -> str:
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise CheckFailed(
                f"onnxruntime does not import ({err}): pip install onnxruntime (or onnxruntime-gpu)"
            ) from None
        return f"{ort.__version__}, providers {', '.join(ort.get_available_providers())}"

    def _tensorrt(self) -> Any:
        if self.tensorrt is not None:
            return self.tensorrt()
        import importlib

        return importlib.import_module("tensorrt")

    def check_tensorrt(self) -> str:
        try:
            trt = self._tensorrt()
        except ImportError:
            raise CheckWarning("not installed: ONNX Runtime runs the graphs (JetPack ships TensorRT)") from None
        from edge_geoloc.runtime.cuda import select_adapter

        try:
            gpu = (self.cuda or select_adapter)().device_info()
        except Exception as err:
            raise CheckFailed(f"TensorRT {trt.__version__}, but no CUDA device: {err}") from None
        return f"TensorRT {trt.__version__}, {gpu.name} (compute {gpu.compute_capability})"

    def check_model(self) -> str:
        if self.model is None:
            raise Skip("no --model")
        from edge_geoloc.runtime.card import verify

        try:
            card = verify(self.model)
        except Exception as err:
            raise CheckFailed(str(err)) from None
        card.branch(self.branch)
        return f"{self.model}: {card.model}, graphs verified (sha256), {self.branch} branch present"

    def check_engines(self) -> str:
        if self.model is None:
            raise Skip("no --model")
        from edge_geoloc.runtime.card import load_card
        from edge_geoloc.runtime.cuda import select_adapter
        from edge_geoloc.runtime.engine import EngineError, check_engine, engine_paths

        card = load_card(self.model)
        branches = [
            b for b in ("street", "aerial", "drone") if card_has(card, b) and engine_paths(self.model, b)[0].exists()
        ]
        if not branches:
            raise Skip("no TensorRT engines in the export (edge-geoloc compile builds them on this machine)")
        try:
            trt = self._tensorrt()
            gpu = (self.cuda or select_adapter)().device_info()
        except Exception as err:
            raise CheckFailed(f"engines for {', '.join(branches)}, but TensorRT/CUDA is not usable: {err}") from None
        try:
            for b in branches:
                check_engine(self.model, card, b, trt.__version__, gpu)
        except EngineError as err:
            raise CheckFailed(str(err)) from None
        return f"{', '.join(branches)}: built for this GPU and TensorRT {trt.__version__}"

    def check_map(self) -> str:
        if self.map is None:
            raise Skip("no --map")
        from edge_geoloc.maps.bundle import Bundle, check_encoder
        from edge_geoloc.runtime.card import load_card

        try:
            bundle = Bundle(self.map, verify="lazy")
            for pos in range(len(bundle.shards)):
                bundle.verify_shard(pos)  # every shard's graph and descriptors hashed
            m = bundle.manifest
            if self.model is not None:
                check_encoder(m, load_card(self.model), str(self.map))
        except Exception as err:
            raise CheckFailed(str(err)) from None
        pairs = f", pairs with {self.model}" if self.model is not None else ""
        return f"{self.map}: {m.tiles} tiles in {len(bundle.shards)} shards, sha256 verified{pairs}"

    def check_camera(self) -> str:
        if self.source is None:
            raise Skip("no --source")
        from edge_geoloc.cameras.street import CameraModel
        from edge_geoloc.cameras.uav import UavCamera, is_uav_camera
        from edge_geoloc.localize.sources import open_source

        try:
            camera = (
                (UavCamera.load if is_uav_camera(self.camera) else CameraModel.load)(self.camera)
                if self.camera
                else CameraModel()
            )
            source = open_source(self.source, retries=0)
            try:
                frame = source.read()
            finally:
                source.close()
            if frame is None or frame.image is None:
                raise CheckFailed(f"{source.name}: opened, but no frame came ({frame.error if frame else 'it ended'})")
            camera.check_frame(frame.image)
        except CheckFailed:
            raise
        except Exception as err:
            raise CheckFailed(str(err)) from None
        h, w = frame.image.shape[:2]
        return f"{source.name}: a {w} x {h} frame, as the camera model expects"

    def check_gnss(self) -> str:
        if self.gps is None or self.gps.strip().lower() in ("none", "denied", ""):
            raise Skip("no --gps")
        from edge_geoloc.localize.gnss import open_prior

        crs = _crs_of(self.map)
        try:
            prior = open_prior(self.gps, crs, clock=time.monotonic)
        except Exception as err:
            raise CheckFailed(str(err)) from None
        try:
            deadline = time.monotonic() + self.gps_wait_s
            fixes = prior.poll(float("inf"))
            while not fixes and time.monotonic() < deadline and self.gps.startswith(("udp://", "serial:")):
                time.sleep(0.2)
                fixes = prior.poll(float("inf"))
            stats = prior.stats()
        finally:
            prior.close()
        bad = {k: v for k, v in stats.items() if k.startswith("bad_") and v}
        if not fixes:
            raise CheckFailed(f"{self.gps}: no position fix in {self.gps_wait_s:g} s ({bad or 'no sentences'})")
        return f"{self.gps}: {len(fixes)} fixes" + (f", skipped {bad}" if bad else "")

    def check_mavlink(self) -> str:
        """The autopilot's heartbeat within ``mavlink_wait_s`` (from ``mavlink_sysid`` when given), then the
        rates of the streams the loop uses, over ``mavlink_listen_s``."""
        if not self.mavlink:
            raise Skip("no --mavlink")
        if self.mavlink.strip().lower().endswith(".tlog"):
            raise Skip(f"{self.mavlink}: a telemetry log is a replay, not a connection")
        from edge_geoloc.localize.mavlink import MavlinkConfig, MavlinkError, MavlinkLink

        cfg = MavlinkConfig(sysid=self.mavlink_sysid, wait_heartbeat_s=self.mavlink_wait_s)
        try:
            link = MavlinkLink(self.mavlink, _crs_of(self.map), config=cfg)
        except MavlinkError as err:
            raise CheckFailed(str(err)) from None
        try:
            before = dict(link.counts)
            time.sleep(self.mavlink_listen_s)
            rates = {k: (n - before.get(k, 0)) / self.mavlink_listen_s for k, n in dict(link.counts).items()}
            who = f"{link.autopilot} (system {link.sysid}), MAVLink {link.version or '?'}"
        finally:
            link.close()
        return f"{self.mavlink}: {who}; " + _stream_verdict({k: r for k, r in rates.items() if k.isupper() and r > 0})

    def run(self) -> list[Result]:
        checks = [
            ("python", self.check_python),
            ("onnxruntime", self.check_onnxruntime),
            ("tensorrt", self.check_tensorrt),
            ("export", self.check_model),
            ("engines", self.check_engines),
            ("map bundle", self.check_map),
            ("camera", self.check_camera),
            ("gnss", self.check_gnss),
            ("mavlink", self.check_mavlink),
        ]
        results = []
        for name, check in checks:
            try:
                results.append(Result("ok", name, check()))
            except CheckWarning as w:
                results.append(Result("warn", name, str(w)))
            except Skip as s:
                results.append(Result("skip", name, str(s)))
            except CheckFailed as f:
                results.append(Result("FAIL", name, str(f)))
            except Exception as err:  # a check that crashed is a failed check, with what crashed
                results.append(Result("FAIL", name, f"{type(err).__name__}: {err}"))
        return results


# What the loop takes from the autopilot (see edge_geoloc/localize/mavlink.py), and where a missing stream is set.
ATTITUDE_STREAMS = ("ATTITUDE", "ATTITUDE_QUATERNION")
HEIGHT_STREAMS = ("DISTANCE_SENSOR", "ALTITUDE", "GLOBAL_POSITION_INT")
GNSS_STREAMS = ("GPS_RAW_INT", "GPS2_RAW")
STREAM_HELP = "ArduPilot: SRn_EXTRA1 / SRn_POSITION / SRn_EXT_STAT (Hz); PX4: `mavlink stream -d DEV -s NAME -r HZ`"


def _stream_verdict(rates: dict[str, float]) -> str:
    """The line on the streams heard: their rates; a failure without attitude (the UAV loop rectifies with it),
    a warning without a height or GNSS stream."""
    heard = ", ".join(f"{k} {r:.3g} Hz" for k, r in sorted(rates.items(), key=lambda kv: -kv[1]))
    if not any(k in rates for k in ATTITUDE_STREAMS):
        raise CheckFailed(f"no ATTITUDE stream (heard: {heard or 'nothing but heartbeats'}); {STREAM_HELP}")
    missing = [
        what
        for what, names in (("height above ground", HEIGHT_STREAMS), ("GNSS", GNSS_STREAMS))
        if not any(k in rates for k in names)
    ]
    if missing:
        raise CheckWarning(f"{heard}; no {' or '.join(missing)} stream ({STREAM_HELP})")
    return heard


def card_has(card: Any, branch: str) -> bool:
    try:
        card.branch(branch)
    except Exception:
        return False
    return True


def _crs_of(map_dir: Path | None) -> Any:
    """The map's CRS (GNSS fixes are projected into it); without a map, UTM of the fix is not needed: WGS84 UTM 32N."""
    from edge_geoloc.geo import MapCRS

    if map_dir is not None:
        try:
            from edge_geoloc.maps.bundle import read_manifest

            return MapCRS(read_manifest(Path(map_dir) / "manifest.yaml").crs)
        except Exception:
            pass
    return MapCRS("EPSG:32632")


def _doctor(args: argparse.Namespace) -> int:
    doc = Doctor(
        model=Path(args.model) if args.model else None,
        map=Path(args.map) if args.map else None,
        source=args.source,
        camera=args.camera,
        gps=args.gps,
        branch="drone" if args.camera and _is_uav(args.camera) else "street",
        gps_wait_s=args.gps_wait_s,
        mavlink=args.mavlink,
        mavlink_sysid=args.mavlink_sysid,
        mavlink_wait_s=args.mavlink_wait_s,
    )
    results = doc.run()
    for r in results:
        print(r.line())
    failed = [r.name for r in results if r.status == "FAIL"]
    print(f"{len(failed)} check(s) failed: {', '.join(failed)}" if failed else "all checks passed")
    return 1 if failed else 0


def _is_uav(camera: str) -> bool:
    from edge_geoloc.cameras.uav import is_uav_camera

    return is_uav_camera(camera)


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("doctor", help="check this device before a run: backends, engines, map, camera, GNSS, autopilot")
    d.add_argument("--model", help="export folder with model.yaml (its graphs and engines are checked)")
    d.add_argument("--map", help="map bundle folder (every file hashed; must pair with --model)")
    d.add_argument("--source", help="camera source as `run --source` takes it (one frame is read)")
    d.add_argument("--camera", help="camera model YAML the frame must fit")
    d.add_argument("--gps", help="GNSS source as `run --gps` takes it (an NMEA file, udp://, serial:)")
    d.add_argument("--gps-wait-s", type=float, default=5.0, help="how long a live GNSS source may take to fix")
    d.add_argument("--mavlink", help="the flight controller as `run --mavlink` takes it (heartbeat, streams, rates)")
    d.add_argument("--mavlink-sysid", type=int, help="the autopilot's system id (default: the first autopilot heard)")
    d.add_argument("--mavlink-wait-s", type=float, default=5.0, help="how long to wait for the autopilot's heartbeat")
    d.set_defaults(func=_doctor)
