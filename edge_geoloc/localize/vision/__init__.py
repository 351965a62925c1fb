"""Vision stages: what turns one camera frame into a measurement for the filter, one per camera kind.

A stage is a small object with one method, :meth:`VisionStage.measure` (frame -> :class:`Measurement`:
a position mixture over candidate places, maybe a heading, and what the Fix should show). The loop
(:class:`~edge_geoloc.localize.loop.Localizer`) owns everything around it: events, the filter, the
budget and stage timer, the mixture's calibration and the Fix. Stages are registered by camera
``kind`` (:func:`register_stage`); a new camera kind is a new stage, not a subclass of the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from edge_geoloc.localize.calibrate import Candidates
from edge_geoloc.localize.filter import Estimate
from edge_geoloc.localize.refine import GroundImage, RefineConfig, Refinement
from edge_geoloc.localize.sources import Frame
from edge_geoloc.localize.timer import StageTimer

if TYPE_CHECKING:
    from edge_geoloc.localize.loop import Localizer


@dataclass
class Measurement:
    """What a vision stage makes of one frame. ``cands`` None: nothing for the filter (``note`` says why)."""

    mode: str  # track | sweep | global | none
    cands: Candidates | None = None
    sigma_c: float = 0.0  # spread of each mixture component
    area: float = 0.0  # of the searched scope (the outlier's uniform density)
    heading: tuple[float, float] | None = None  # vehicle heading (grid north) and sigma, degrees
    # When the heading goes into the filter: always, only with an accepted position, or never (a blind model).
    heading_update: Literal["always", "if_applied", "never"] = "if_applied"
    est: Estimate | None = None  # the filter's estimate the frame was planned from
    top_score: float = float("nan")
    extra: dict[str, float] = field(default_factory=dict)  # stage-specific fields of the Fix's "vision"
    note: str | None = None
    refined: Refinement | None = None  # the refine stage's registration (edge_geoloc.localize.refine)


class VisionStage(Protocol):
    warm_batch: int  # images encoded at warm-up to time one image (the stage's typical batch)
    spread_floor_div: float  # the fitted component spread may go down to tile / this

    def measure(self, frame: Frame, timer: StageTimer) -> Measurement: ...

    def ground(self, frame: Frame, heading_grid_deg: float, gsd_m: float, cfg: RefineConfig) -> GroundImage | None:
        """The frame projected to the ground, grid-north-up at ``gsd_m`` for a vehicle heading (None: this
        camera cannot)."""
        ...

    def summary(self) -> dict[str, Any]: ...


StageFactory = Callable[["Localizer", Any, Any], VisionStage]
_STAGES: dict[str, StageFactory] = {}


def register_stage(kind: str, factory: StageFactory) -> None:
    """Make ``factory(loop, camera, stage_config)`` the vision stage of cameras of ``kind``."""
    _STAGES[kind] = factory


def make_stage(loop: Localizer, camera: Any, stage_config: Any = None) -> VisionStage:
    """The vision stage for ``camera.kind`` (panorama, pinhole, uav)."""
    kind = getattr(camera, "kind", "panorama")
    if kind not in _STAGES:
        from edge_geoloc.localize.vision import street, uav  # noqa: F401 - the built-in stages register themselves

    if kind not in _STAGES:
        raise ValueError(f"no vision stage for camera kind {kind!r} (known: {', '.join(sorted(_STAGES))})")
    return _STAGES[kind](loop, camera, stage_config)
