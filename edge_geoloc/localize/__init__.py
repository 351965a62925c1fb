"""The on-device localization loop (numpy, OpenCV, ONNX Runtime or TensorRT; never torch).

    from edge_geoloc.localize import Capture, Localizer, open_models, open_source, run_loop
    encoder, index, offset = open_models("export/build/demo", "maps/build/demo-suburb")
    loc = Localizer(encoder, index, CameraModel(), LoopConfig(budget_ms=100), offset=offset)
    summary = run_loop(loc, Capture(open_source("0")), open_prior("udp://0.0.0.0:10110", index.crs), writer=FixWriter("-"))

The data flow: frame sources and the capture thread (:mod:`.sources`) and the event sources (GNSS
receivers :mod:`.gnss`, :mod:`.odometry`, autopilot :mod:`.attitude`; their CSVs through one reader,
:mod:`.tables`) -> the loop (:mod:`.loop`: budget and stage timer :mod:`.timer`, the particle filter
:mod:`.filter`) with a vision stage per camera kind (:mod:`.vision`: street, uav) whose mixture is
calibrated online (:mod:`.calibrate`; heading search :mod:`.heading`) -> one :class:`Fix` per frame
(:mod:`.fix`) -> outputs (:mod:`.outputs`). :mod:`.run` ties it together; :mod:`.cli` is `edge-geoloc
run`, :mod:`.doctor` `edge-geoloc doctor`. Camera models live in :mod:`edge_geoloc.cameras`.
"""

from edge_geoloc.cameras.street import CameraModel
from edge_geoloc.localize.filter import FilterConfig, ParticleFilter
from edge_geoloc.localize.fix import Fix
from edge_geoloc.localize.gnss import GpsFix, open_prior
from edge_geoloc.localize.loop import Localizer, LoopConfig
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.localize.outputs import FixWriter, NmeaOutput
from edge_geoloc.localize.run import format_summary, open_models, run_loop
from edge_geoloc.localize.sources import Capture, Frame, SourceLost, open_source

__all__ = [
    "CameraModel",
    "Capture",
    "FilterConfig",
    "Fix",
    "FixWriter",
    "Frame",
    "GpsFix",
    "Localizer",
    "LoopConfig",
    "NmeaOutput",
    "Odometry",
    "ParticleFilter",
    "SourceLost",
    "format_summary",
    "open_models",
    "open_prior",
    "open_source",
    "run_loop",
]
