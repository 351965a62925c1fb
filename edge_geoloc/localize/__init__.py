"""The on-device localization loop (numpy, OpenCV, ONNX Runtime or TensorRT; never torch).

    from edge_geoloc.localize import Capture, Localizer, open_source, run_loop
    encoder, index, offset = open_models("export/build/demo", "maps/build/demo-suburb")
    loc = Localizer(encoder, index, CameraModel(), LoopConfig(budget_ms=100), offset=offset)
    summary = run_loop(loc, Capture(open_source("0")), open_prior("udp://0.0.0.0:10110", index.crs), writer=FixWriter("-"))

Parts: frame sources and the capture thread (:mod:`.sources`), the camera model (:mod:`.camera`),
GPS priors and odometry (:mod:`.prior`), candidate refinement (:mod:`.refine`), heading estimation
(:mod:`.heading`), the particle filter (:mod:`.filter`), the per-frame pipeline with its budget
(:mod:`.pipeline`), outputs (:mod:`.outputs`) and the loop (:mod:`.run`).
"""

from edge_geoloc.localize.camera import CameraModel
from edge_geoloc.localize.filter import FilterConfig, ParticleFilter
from edge_geoloc.localize.outputs import FixWriter, NmeaOutput
from edge_geoloc.localize.pipeline import Fix, Localizer, LoopConfig
from edge_geoloc.localize.prior import GpsFix, Odometry, open_prior
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
