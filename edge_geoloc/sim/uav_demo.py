"""`edge-geoloc demo --vehicle uav`: a drone flies over a synthetic town, loses GPS, and its magnetometer lies.

On the embedded defaults (the committed demo model with its drone branch, ``models/demo``, and the
built-in region ``maps/demo-suburb.yaml``), it:

1. builds the town's map with the model's aerial encoder, or reuses the cached one (the very map the
   car demo uses: the drone branch was trained against that aerial encoder);
2. flies a drone at ``altitude_m`` over the town with a downward camera 15 degrees forward of nadir,
   an autopilot whose yaw is not trusted (a magnetometer biased by 12 degrees: the heading comes from
   vision and the gyro), a GNSS receiver that loses its fix for five minutes, and ground speed from
   airspeed (off by the wind) with a drifting gyro;
3. renders the frames, runs the real UAV loop on them (:mod:`edge_geoloc.localize.vision.uav`), replays the
   same GPS and odometry without vision (the odometry-only baseline), and writes ``report.json``,
   ``report.md``, ``fixes.jsonl``, ``trajectory.png`` and ``error.png`` as the car demo does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_geoloc.cameras.uav import AttitudeConfig
from edge_geoloc.localize.loop import LoopConfig
from edge_geoloc.sim.demo import (
    UAV_DEMO_MODEL,
    DemoOptions,
    _mixture,
    error_rows,
    loop_and_report,
    outage_line,
    prepare_demo,
    report_page,
)
from edge_geoloc.sim.flight import DEMO_UAV_CAMERA, UAV_TRIP, AttitudeModel


@dataclass(frozen=True)
class UavFlight:
    """The UAV demo's own options: height above ground, whether the autopilot's yaw is trusted, and where the
    autopilot's data come from: the simulated logs (CSV-like), MAVLink from the simulated autopilot (played
    ``mavlink_speed`` times real time), or the flight's own PX4/ArduPilot log read back (``log``)."""

    altitude_m: float = 120.0
    yaw: str = "untrusted"
    mavlink: bool = False
    mavlink_speed: float = 4.0
    log: str | None = None  # ulg / bin: attitude and GNSS replayed from the flight written as that log

    def inputs(self) -> str:
        if self.mavlink:
            return "mavlink"
        return f"flight log (.{self.log})" if self.log else "simulated logs"


# The UAV demo's defaults where they differ from the car's: its folder, one frame a second, no budget.
UAV_DEMO = DemoOptions(out="out/demo-uav", trip=UAV_TRIP, budget_ms=None)


def run_uav_demo(options: DemoOptions = UAV_DEMO, flight: UavFlight = UavFlight()) -> dict[str, Any]:
    """Run the UAV demo (see the module docstring); returns the report.

    ``flight.mavlink``: attitude, height, GNSS and odometry come from a simulated autopilot over MAVLink on
    loopback UDP and the fixes go back to it as GPS_INPUT (:func:`edge_geoloc.sim.autopilot.run_through_mavlink`);
    the report adds what it received."""
    from edge_geoloc.localize.loop import Localizer
    from edge_geoloc.localize.run import open_models
    from edge_geoloc.sim.flight import make_uav_scenario
    from edge_geoloc.sim.scenario import evaluate, load_world, render_frames, run_scenario

    run = prepare_demo(options, UAV_DEMO_MODEL, find_uav_export, "flight")
    world = load_world(run.region_file)
    camera = replace(DEMO_UAV_CAMERA, attitude=AttitudeConfig(yaw=flight.yaw))  # type: ignore[arg-type]
    attitude = AttitudeModel(yaw_bias_deg=12.0, seed=options.trip.seed + 2)
    sc = make_uav_scenario(world, options.trip, camera=camera, altitude_m=flight.altitude_m, attitude=attitude)
    frames = render_frames(sc, workers=options.workers, progress=options.progress)
    t_render = time.perf_counter()
    encoder, index, _ = open_models(run.model_dir, run.map_dir, threads=max(1, options.workers), branch="drone")

    def localizer() -> Localizer:
        return Localizer(encoder, index, camera, LoopConfig(budget_ms=options.budget_ms), start_utc=sc.gps.start_utc)

    meta = {
        "vehicle": "uav",
        **run.meta(
            **options.describe(), encoder=repr(encoder), altitude_m=flight.altitude_m,
            camera_tilt_deg=camera.mount.tilt_deg, yaw=flight.yaw, magnetometer_bias_deg=attitude.yaw_bias_deg,
            inputs=flight.inputs(),
        ),
    }  # fmt: skip

    def loop(show: Any, writer: Any) -> Any:
        if flight.mavlink:
            from edge_geoloc.sim.autopilot import run_through_mavlink

            result = run_through_mavlink(sc, frames, localizer(), run.out, flight.mavlink_speed, meta, show, writer)
        else:
            events = None
            if flight.log:
                from edge_geoloc.sim.flightlogs import replay_log

                events = replay_log(sc, flight.log, run.out)
                meta["flight_log"] = events.summary
            result = run_scenario(
                sc, None, None, progress=show, writer=writer, frames=frames, localizer=localizer(), events=events
            )
        if flight.mavlink or flight.log:  # the same frames on the simulated logs, for the report's side by side
            reference = evaluate(sc, run_scenario(sc, None, None, frames=frames, localizer=localizer()))
            meta["csv_driven"] = {k: reference[k] for k in ("outage_median_error_m", "outage_p95_error_m", "fix_rate")}
        return result

    return loop_and_report(
        sc,
        frames,
        run.out,
        loop,
        meta=meta,
        loop_keys=("encodes", "vision_heading"),
        markdown=report_markdown,
        headline=headline,
        started=(run.started, run.setup_done, t_render),
        progress=options.progress,
    )


def headline(r: dict[str, Any]) -> str:
    return (
        f"UAV at {r['altitude_m']:g} m, yaw {r['yaw']}: {outage_line(r)}; heading median"
        f" {r['median_heading_error_deg']} deg; vision fix rate {100 * r['fix_rate']:.0f} %, loop {r['fps']} fps"
    )


def find_uav_export(path: str | Path) -> Path:
    """The export at ``path`` (:func:`edge_geoloc.sim.demo.find_export`: a folder with model.yaml, or one holding
    only a checkpoint, exported once) with a drone branch: when its card has none, the drone checkpoint in
    ``path/drone/*.pt`` is added to it once (needs torch, as exporting does)."""
    from edge_geoloc.runtime.card import load_card
    from edge_geoloc.sim.demo import find_export

    model_dir = find_export(path)
    if load_card(model_dir).drone is not None:
        return model_dir
    folder = Path(path) if Path(path).is_dir() else Path(path).parent
    drones = sorted((folder / "drone").glob("*.pt"))
    if not drones:
        raise FileNotFoundError(
            f"{model_dir}: the export has no drone branch and {folder / 'drone'} holds no drone checkpoint"
            " (edge-geoloc train-drone, then edge-geoloc export-drone)"
        )
    try:
        from edge_geoloc.export.drone import export_drone
    except ImportError as err:
        raise RuntimeError(f"{drones[0]}: adding the drone branch needs torch (the train extra): {err}") from None
    print(f"adding the drone branch {drones[0]} to {model_dir} (once)")
    export_drone(drones[0], model_dir)
    return model_dir


def report_markdown(r: dict[str, Any]) -> str:
    rows = [
        ("frames", r["frames"]),
        ("distance flown", f"{r['distance_km']} km at {r['altitude_m']:g} m above ground"),
        ("GPS outage", f"{r['outage'][0]:g} s to {r['outage'][1]:g} s ({r['outage_s']:g} s)"),
        ("autopilot yaw", f"{r['yaw']} (magnetometer bias {r['magnetometer_bias_deg']:g} deg)"),
        *error_rows(r, "flight"),
        ("vision candidates (fitted while GPS was there)", _mixture(r["loop"]["vision_position"])),
        ("skipped frames", r["loop"]["skipped"] or "none"),
        ("loop speed", f"{r['fps']} frames/s ({r['loop']['encodes']} patch encodes; budget {r['budget_ms']} ms,"
         f" {r['deadline_misses']} deadline misses)"),
    ]  # fmt: skip
    if r.get("csv_driven"):
        c = r["csv_driven"]
        rows.append((f"position error in the outage, inputs {r['inputs']} / the same frames on the simulated logs"
                     " (CSV-driven): median / p95",
                     f"{r['outage_median_error_m']} / {c['outage_median_error_m']} m;"
                     f" {r['outage_p95_error_m']} / {c['outage_p95_error_m']} m"))  # fmt: skip
    rows += _mavlink_rows(r.get("mavlink"))
    if r.get("flight_log"):
        f = r["flight_log"]
        rows.append(("inputs", f"attitude, height and GNSS from the flight's {f['kind']} log, read back by `run --log`"
                               f" ({f['attitude_samples']} attitude samples, {f['gnss_fixes']} fixes; height from"
                               f" {', '.join(f['height_from'])})"))  # fmt: skip
    intro = f"""A drone flies {r["distance_km"]} km over the synthetic town `{r["region"]}` at {r["altitude_m"]:g} m,
its camera {r["camera_tilt_deg"]:g} degrees forward of nadir. Its GNSS receiver loses the fix from
{r["outage"][0]:g} s to {r["outage"][1]:g} s; the autopilot's yaw is {r["yaw"]}. Each frame
({r["rate_hz"]:g} per second) is rectified to the ground plane from the autopilot's roll, pitch and
height, cut into north-up patches at the map's GSD (for several heading hypotheses when the yaw is
not trusted), encoded by the drone branch of `{r["model"]}` ({r["encoder"]}) and searched in the same
map the car uses; the particle filter fuses the matches with ground speed and the gyro's yaw rate.
The odometry-only line is the same filter without vision."""
    title = f"edge-geoloc UAV demo: {r['region']}, GPS denied for {r['outage_s']:g} s"
    how = f"edge-geoloc demo --vehicle uav --out DIR --seed {r['seed']}" + (" --mavlink" if r.get("mavlink") else "")
    how += f" --log {Path(r['flight_log']['log']).suffix[1:]}" if r.get("flight_log") else ""
    return report_page(title, intro, rows, r, how)


def _mavlink_rows(m: dict[str, Any] | None) -> list[tuple[str, Any]]:
    """The report's lines on the MAVLink run: what the simulated autopilot received."""
    if not m:
        return []
    sync = m["link"]["time_sync"]
    err, out_err = m.get("gps_input_error_m", {}), m.get("gps_input_outage_error_m", {})
    lat, comp = m.get("gps_input_latency_ms", {}), m["companion_out"].get("latency_ms", {})
    return [
        ("inputs", f"MAVLink from a simulated autopilot on loopback UDP, played {m['speed']:g}x real time"
                   + ("" if m.get("loop_kept_up", True) else ": the loop fell behind (a busy CPU?): rerun with a lower --mavlink-speed")),
        ("GPS_INPUT received: messages / rate / sent as no fix",
         f"{m['gps_input_messages']} / {m.get('gps_input_rate_hz')} Hz / {m.get('gps_input_no_fix', 0)}"),
        ("GPS_INPUT position error: whole flight median / p95",
         f"{err.get('median')} m / {err.get('p95')} m"),
        ("GPS_INPUT position error in the outage: median / p95 (no-fix messages there)",
         f"{out_err.get('median')} m / {out_err.get('p95')} m ({m.get('gps_input_outage_no_fix', 0)})"),
        ("frame to message latency, companion: p50 / p99 (real time)", f"{comp.get('p50')} ms / {comp.get('p99')} ms"),
        ("frame to receipt latency, autopilot: p50 / p99 (real time)", f"{lat.get('p50')} ms / {lat.get('p99')} ms"),
        ("time sync (autopilot boot clock to the loop's)",
         f"{sync.get('method')}, offset {sync.get('offset_s')} s +- {sync.get('error_s')} s"
         f" (true offset known to the simulation: error {m.get('time_sync_error_ms')} ms)"),
    ]  # fmt: skip
