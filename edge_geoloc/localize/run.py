"""The loop that ties it together: capture -> events up to the frame's time -> localize -> outputs.

:func:`run_loop` stops cleanly when the source ends, when a live source is lost (after its
retries), after ``max_frames``, or on Ctrl-C (SIGINT): in every case the outputs are flushed and the
summary is returned with ``ended_by`` saying why. :func:`open_loop` builds the pieces from paths.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edge_geoloc.localize.attitude import AttitudeLog
from edge_geoloc.localize.fix import Fix
from edge_geoloc.localize.gnss import Prior
from edge_geoloc.localize.loop import Localizer
from edge_geoloc.localize.odometry import Odometry
from edge_geoloc.localize.sources import Capture, Frame, SourceLost

log = logging.getLogger(__name__)

ODOMETRY, ATTITUDE, GNSS = 0, 1, 2  # event kinds, in their order at equal times


def events(
    t: float, prior: Prior, odometry: Odometry | None = None, attitude: AttitudeLog | None = None
) -> list[tuple[float, int, Any]]:
    """The GNSS fixes, odometry and attitude samples up to ``t`` not handed out yet, in time order as
    ``(t, kind, event)`` with kind :data:`ODOMETRY`, :data:`ATTITUDE` or :data:`GNSS` (at equal times in
    that order, then in arrival order: two fixes of one epoch never compare their payloads)."""
    items: list[tuple[float, int, Any]] = [(f.t, GNSS, f) for f in prior.poll(t)]
    if odometry is not None:
        items += [(s.t, ODOMETRY, s) for s in odometry.poll(t)]
    if attitude is not None:
        items += [(a.t, ATTITUDE, a) for a in attitude.poll(t)]
    return sorted(items, key=lambda e: (e[0], e[1]))


def run_loop(
    localizer: Localizer,
    capture: Capture,
    prior: Prior | None = None,
    odometry: Odometry | None = None,
    writer: Any = None,
    nmea: Any = None,
    max_frames: int | None = None,
    on_fix: Callable[[Frame, Fix], None] | None = None,
    frame_timeout_s: float | None = 30.0,
    attitude: AttitudeLog | None = None,
    outputs: Sequence[Any] = (),
) -> dict[str, Any]:
    """Run until the source ends (or is lost, or SIGINT, or ``max_frames``); returns the summary.

    Before each frame, the events up to its time go to the localizer: GNSS fixes from ``prior``,
    ``odometry`` samples and autopilot ``attitude`` samples (a drone camera's). Each fix then goes to
    ``writer``, ``nmea`` and each of ``outputs`` (``send``/``close``/``stats``: the MAVLink output)."""
    prior = prior or Prior()
    ended_by = "end of source"
    error: str | None = None
    t_wall = time.perf_counter()
    try:
        while max_frames is None or localizer.stats.frames < max_frames:
            try:
                frame = capture.get(timeout=frame_timeout_s)
            except SourceLost as err:
                ended_by, error = "source lost", str(err)
                log.error("%s", err)
                break
            except TimeoutError as err:
                ended_by, error = "source stalled", str(err)
                log.error("%s", err)
                break
            if frame is None:
                break
            feed = {ODOMETRY: localizer.feed_odometry, ATTITUDE: localizer.feed_attitude, GNSS: localizer.feed_gps}
            for _, kind, event in events(frame.t, prior, odometry, attitude):
                feed[kind](event)
            fix = localizer.process(frame)
            if writer is not None:
                writer.write(fix)
            if nmea is not None:
                nmea.send(fix)
            for out in outputs:
                out.send(fix)
            if on_fix is not None:
                on_fix(frame, fix)
        else:
            ended_by = "max frames"
    except KeyboardInterrupt:
        ended_by = "interrupted"
    finally:
        capture.stop()
        prior.close()
        if writer is not None:
            writer.close()
        if nmea is not None:
            nmea.close()
        for out in outputs:
            out.close()
    summary = localizer.summary()
    summary.update(
        {
            "ended_by": ended_by,
            "wall_s": round(time.perf_counter() - t_wall, 2),
            "frames_dropped_by_capture": capture.dropped,
            "gps": prior.stats(),
        }
    )
    if error:
        summary["error"] = error
    if nmea is not None:
        summary["nmea_out"] = {"sent": nmea.sent, "errors": nmea.errors}
    for out in outputs:
        summary.setdefault("outputs", []).append(out.stats())
    return summary


def format_summary(s: dict[str, Any]) -> str:
    """The end-of-run summary for people: frames, fix rate, misses, per-stage p50/p99."""
    lines = [
        f"frames {s['frames']} ({s['ended_by']}), vision fix rate {100 * s['fix_rate']:.1f} %,"
        f" deadline misses {s['deadline_misses']}, fps {s.get('fps')}",
        f"  sources {s['sources']}  modes {s['modes']}",
    ]
    extra = {
        k: s[k]
        for k in (
            "corrupt_frames",
            "stale_frames",
            "frames_dropped_by_capture",
            "scope_outside_map",
            "prior_outside_map",
        )
        if s.get(k)
    }
    if s.get("skipped"):
        extra["skipped"] = s["skipped"]
    unexplained = s.get("vision_uninformative", {})
    if unexplained.get("total"):
        extra["vision_uninformative"] = {k: v for k, v in unexplained.items() if v}
    if extra:
        lines.append(f"  {extra}")
    gps = {k: v for k, v in s.get("gps", {}).items() if k != "source"}
    lines.append(f"  gps {s.get('gps', {}).get('source', 'none')} {gps}  filter {s.get('filter', {})}")
    for name, st in s.get("stages_ms", {}).items():
        lines.append(f"  {name:<8} p50 {st['p50']:7.2f} ms  p99 {st['p99']:7.2f} ms  (n {st['n']})")
    tot = s.get("total_ms", {})
    if tot.get("n"):
        lines.append(f"  {'total':<8} p50 {tot['p50']:7.2f} ms  p99 {tot['p99']:7.2f} ms")
    for out in s.get("outputs", []):
        lines.append(f"  out {out}")
    if s.get("error"):
        lines.append(f"  error: {s['error']}")
    return "\n".join(lines)


def open_models(
    model_dir: str | Path,
    map_dir: str | Path,
    backend: str = "auto",
    threads: int | None = None,
    branch: str = "street",
) -> tuple:
    """(encoder of ``branch``, map index, offset regressor or None) from an export folder and a map bundle.

    ``branch``: ``street`` (a vehicle's camera; its offset head when the export has one) or ``drone``."""
    from edge_geoloc.maps import MapIndex
    from edge_geoloc.runtime import OffsetRegressor, open_encoder

    options = {} if threads is None else {"intra_op_threads": threads}
    encoder = open_encoder(model_dir, branch, backend=backend, **options)
    index = MapIndex.open(map_dir, card=encoder.card)
    offset = None
    if branch == "street":
        try:
            offset = OffsetRegressor(model_dir, card=encoder.card)
        except Exception as err:  # an export without a usable offset head: tile centres only
            log.warning("no offset head (%s): positions from tile centres", err)
    return encoder, index, offset
