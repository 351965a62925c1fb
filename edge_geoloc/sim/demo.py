"""`edge-geoloc demo`: a car drives through a synthetic town and loses GPS for five minutes.

What it does, on the embedded defaults (the committed demo model in ``models/lite0-bev-s96`` and the
built-in region ``maps/demo-suburb.yaml``):

1. builds the town's map bundle with the model's aerial encoder, or reuses the cached one
   (``maps/build/<region>-<model card sha256[:12]>``);
2. drives a car along the town's roads with a roof-mounted 360-degree camera, a GNSS receiver
   (noise, bias, multipath) that loses its fix for several minutes, and wheel/gyro odometry;
3. renders the camera frames, then runs the real loop (:mod:`edge_geoloc.localize`) on them with
   the per-frame budget, showing live progress;
4. replays the same GPS and odometry without vision (the odometry-only baseline) and writes
   ``report.json``, ``report.md``, ``fixes.jsonl``, ``trajectory.png`` (truth, noisy GPS, vision
   fixes and the filtered track over the aerial map) and ``error.png`` (error over time with the
   outage shaded).
"""

from __future__ import annotations

import fcntl
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_geoloc.config import strict_json
from edge_geoloc.localize.loop import LoopConfig
from edge_geoloc.sim.scenario import Trip

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
# The car's demo model: the pretrained EfficientNet-Lite0 hybrid with the panorama's ground view (BEV
# co-retrieval) at 96x384 over 24 m, trained on 52 towns (models/lite0-bev-s96; configs/train/lite0-bev-s96-towns.yaml).
DEMO_MODEL = ROOT / "models" / "lite0-bev-s96"
# The UAV demo's: the tiny ViT with the drone branch trained against its aerial bank (models/demo); its fixes come
# from registration. The car demo model's drone branch (models/lite0-bev-s96/drone) retrieves better on single
# frames but has not been measured in the UAV demo's flights yet.
UAV_DEMO_MODEL = ROOT / "models" / "demo"
DEMO_REGION = ROOT / "maps" / "demo-suburb.yaml"
MAP_CACHE = ROOT / "maps" / "build"


def find_export(path: str | Path) -> Path:
    """The export folder (with model.yaml) at ``path`` or one level below it (models/demo/export).

    A folder holding only a checkpoint (``*.pt``) is exported once into ``export/build/<name>-<sha>``
    (needs torch, which ``make`` installs), so a checkpoint committed without its export still runs.
    """
    path = Path(path)
    if (path / "model.yaml").exists():
        return path
    found = sorted(p.parent for p in path.glob("*/model.yaml"))
    if found:
        return found[0]
    ckpts = sorted(path.glob("*.pt")) if path.is_dir() else ([path] if path.suffix == ".pt" and path.exists() else [])
    if ckpts:
        return export_checkpoint(ckpts[0])
    raise FileNotFoundError(
        f"{path}: no exported model (model.yaml) here or in a subfolder, and no checkpoint; export one with"
        " `edge-geoloc export --checkpoint CKPT --out DIR` and pass --model DIR"
    )


def export_checkpoint(ckpt: Path) -> Path:
    """The export of a checkpoint, made once and cached by the checkpoint's sha256."""
    from edge_geoloc.runtime.card import sha256_of

    out = ROOT / "export" / "build" / f"{ckpt.parent.name}-{sha256_of(ckpt)[:12]}"
    if (out / "model.yaml").exists():
        return out
    try:
        from edge_geoloc.export.onnx_export import export_model
    except ImportError as err:
        raise RuntimeError(f"{ckpt}: exporting the checkpoint needs torch (the train extra): {err}") from None
    print(f"exporting {ckpt} to {out} (once)")
    export_model(ckpt, out)
    return out


def cached_map(region: Path, model: Path, cache: Path, workers: int, progress: bool) -> Path:
    """The region's map bundle for this model: reused when present and matching, else built."""
    from edge_geoloc.mapbuild.build import build_map
    from edge_geoloc.maps import MapIndex
    from edge_geoloc.maps.bundle import BundleError, read_manifest
    from edge_geoloc.runtime.card import load_card
    from edge_geoloc.world.region import Region

    name = Region.load(region).name
    # Keyed by the aerial graph (what the descriptors come from), not the whole card: a drone branch added
    # to the card (issue 7) uses the same maps.
    out = cache / f"{name}-{load_card(model).aerial.sha256[:12]}"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f".{out.name}.lock", "w") as lock:
        # Two processes wanting the same map (a benchmark and a training run): the second waits for the
        # first's build and reuses it, instead of both writing one build folder.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if out.exists():
            try:
                MapIndex.open(out, card=load_card(model))
                if read_manifest(out).ortho is None:  # built before maps kept their imagery: no refinement
                    raise BundleError("no imagery layer")
                return out
            except BundleError as err:
                log.warning("cached map %s unusable (%s): rebuilding", out, err)
        print(f"building the map of {name} with {model.name}'s aerial encoder (cached in {out})")
        return build_map(region, model, out, workers=workers, progress=progress, overwrite=out.exists())


@dataclass(frozen=True)
class DemoOptions:
    """What the car and UAV demos share: the report folder, the export (default: the vehicle's demo model), the
    region (default: the built-in town) and where its map is cached, the trip, the per-frame budget (None: none)
    and the machine (rendering workers, progress bars)."""

    out: str | Path = "out/demo"
    model: str | Path | None = None
    region: str | Path | None = None
    trip: Trip = field(default_factory=Trip)
    budget_ms: float | None = 100.0
    workers: int = 2
    map_cache: str | Path | None = None
    progress: bool = True

    def describe(self) -> dict[str, Any]:
        """The report's lines on the trip and the budget."""
        t = self.trip
        outage = None if t.outage is None else list(t.outage)
        return {
            "duration_s": t.duration_s,
            "outage": outage,
            "rate_hz": t.rate_hz,
            "seed": t.seed,
            "budget_ms": self.budget_ms,
        }


def run_demo(options: DemoOptions = DemoOptions()) -> dict[str, Any]:
    """Run the demo (see the module docstring); returns the report."""
    from edge_geoloc.localize.run import open_models
    from edge_geoloc.sim.scenario import car_camera, load_world, make_scenario, render_frames, run_scenario

    run = prepare_demo(options, DEMO_MODEL, find_export, "drive")
    sc = make_scenario(load_world(run.region_file), options.trip, camera=car_camera(run.model_dir))
    frames = render_frames(sc, workers=options.workers, progress=options.progress)
    t_render = time.perf_counter()
    encoder, index, offset = open_models(run.model_dir, run.map_dir, threads=max(1, options.workers))
    config = LoopConfig(budget_ms=options.budget_ms)
    meta = run.meta(**options.describe(), encoder=repr(encoder), offset_head=offset is not None)
    return loop_and_report(
        sc,
        frames,
        run.out,
        lambda show, writer: run_scenario(
            sc, encoder, index, offset, config, progress=show, writer=writer, frames=frames
        ),
        meta=meta,
        loop_keys=("vision_heading",),
        markdown=report_markdown,
        headline=headline,
        started=(run.started, run.setup_done, t_render),
        progress=options.progress,
    )


@dataclass(frozen=True)
class DemoRun:
    """What a demo has once its model, region and map are ready (the car's and the UAV's alike)."""

    out: Path
    model_dir: Path
    region_file: Path
    map_dir: Path
    started: float  # perf_counter at the start
    setup_done: float  # ... once the map was built or opened

    def meta(self, **more: Any) -> dict[str, Any]:
        """The report's description of the run: model, region and map, then ``more``."""
        model = self.model_dir.relative_to(ROOT) if self.model_dir.is_relative_to(ROOT) else self.model_dir
        return {"model": str(model), "region": self.region_file.stem, "map": str(self.map_dir), **more}


def prepare_demo(options: DemoOptions, default_model: Path, find: Any, what: str) -> DemoRun:
    """The output folder, the export (``find``: :func:`find_export` or the UAV's; ``default_model`` unless the
    options name one), the region (the built-in one by default) and its cached map; refuses an outage outside
    the ``what`` (drive, flight)."""
    started = time.perf_counter()
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = find(options.model or default_model)
    region_file = Path(options.region or DEMO_REGION)
    trip = options.trip
    if trip.outage is None or not trip.outage[0] < trip.outage[1] <= trip.duration_s:
        raise ValueError(f"outage {trip.outage} must be a window inside the {what}'s {trip.duration_s:g} s")
    cache = Path(options.map_cache or MAP_CACHE)
    map_dir = cached_map(region_file, model_dir, cache, options.workers, options.progress)
    return DemoRun(out, model_dir, region_file, map_dir, started, time.perf_counter())


def loop_and_report(
    sc: Any,
    frames: list[Any],
    out: Path,
    run: Any,
    *,
    meta: dict[str, Any],
    loop_keys: tuple[str, ...],
    markdown: Any,
    headline: Any,
    started: tuple[float, float, float],
    progress: bool,
) -> dict[str, Any]:
    """What the car and UAV demos share once the frames are rendered: the loop with live progress
    (``run(show, writer)`` runs it), the odometry-only replay, ``report.json``/``report.md``, the
    plots and the printed summary. ``started`` = (start, map and setup done, rendering done)."""
    from tqdm import tqdm

    from edge_geoloc.localize.outputs import FixWriter
    from edge_geoloc.localize.run import format_summary
    from edge_geoloc.sim.scenario import evaluate, public, replay_without_vision

    bar = tqdm(total=len(frames), unit="frame", desc="localizing", disable=not progress)
    errs: list[float] = []

    def show(frame: Any, fix: Any) -> None:
        if fix.east is not None:
            errs.append(float(np.hypot(fix.east - frame.truth.east, fix.north - frame.truth.north)))
        gps = "DENIED" if sc.in_outage(np.array([frame.t]))[0] else "ok"
        bar.set_postfix_str(
            f"t {frame.t:5.0f}s gps {gps:6} {fix.source:11} err {errs[-1] if errs else float('nan'):5.1f} m"
            f" sigma {fix.sigma_m or float('nan'):5.1f} m",
            refresh=False,
        )
        bar.update()

    result = run(show, FixWriter(out / "fixes.jsonl"))
    bar.close()
    times = np.array([r.t for r in result.records])
    baseline = replay_without_vision(sc, times)
    report = evaluate(sc, result, baseline)
    t_all, t_setup, t_render = started
    t_end = time.perf_counter()
    keys = ("stages_ms", "total_ms", "sources", "modes", "skipped", "filter", "vision_position", *loop_keys)
    full = {
        **public(report),
        **meta,
        "seconds": {
            "map_and_setup": round(t_setup - t_all, 1),
            "world_and_rendering": round(t_render - t_setup, 1),
            "loop_and_report": round(t_end - t_render, 1),
            "total": round(t_end - t_all, 1),
        },
        "loop": {k: result.summary[k] for k in keys},
    }
    (out / "report.json").write_text(strict_json(full, indent=1) + "\n")
    plot_trajectory(sc, result, baseline, out / "trajectory.png")
    plot_errors(sc, result, report, out / "error.png")
    (out / "report.md").write_text(markdown(full))
    print(format_summary(result.summary))
    print(headline(full))
    print(f"wrote {out / 'report.json'}, {out / 'report.md'}, {out / 'trajectory.png'}, {out / 'error.png'}")
    return full


def report_page(title: str, intro: str, rows: list[tuple[str, Any]], r: dict[str, Any], reproduce: str) -> str:
    """The demo's report.md: a table of figures, the plots, per-stage latency, time, how to reproduce."""
    table = "\n".join(f"| {a} | {b} |" for a, b in rows)
    stages = "\n".join(f"| {k} | {v['p50']} | {v['p99']} |" for k, v in r["loop"]["stages_ms"].items())
    took = ", ".join(f"{k.replace('_', ' ')} {v:g} s" for k, v in r["seconds"].items())
    return f"""# {title}

{intro}

| | |
|---|---|
{table}

![trajectory](trajectory.png)

![error over time](error.png)

Per-stage latency (ms) of the loop:

| stage | p50 | p99 |
|---|---|---|
{stages}

Time: {took}.
Reproduce: `{reproduce}`.
"""


def outage_line(r: dict[str, Any]) -> str:
    """The headline's figures on the outage, the car's and the UAV's alike."""
    return (
        f"GPS denied for {r['outage_s']:g} s: filtered median {r['outage_median_error_m']} m,"
        f" p95 {r['outage_p95_error_m']} m; odometry only median {r['odometry_only_outage_median_error_m']} m,"
        f" p95 {r['odometry_only_outage_p95_error_m']} m"
    )


def headline(r: dict[str, Any]) -> str:
    return (
        f"{outage_line(r)}. Whole drive: median {r['median_error_m']} m, p95 {r['p95_error_m']} m, heading median"
        f" {r['median_heading_error_deg']} deg, vision fix rate {100 * r['fix_rate']:.0f} %, loop {r['fps']} fps,"
        f" {r['deadline_misses']} deadline misses"
    )


def error_rows(r: dict[str, Any], what: str) -> list[tuple[str, str]]:
    """The report's accuracy lines, the car's and the UAV's alike (``what``: drive, flight)."""
    return [
        ("vision fix rate (all / in the outage)", f"{100 * r['fix_rate']:.1f} % / {100 * (r['outage_fix_rate'] or 0):.1f} %"),
        (f"position error, whole {what}: median / p95", f"{r['median_error_m']} m / {r['p95_error_m']} m"),
        ("position error in the outage, vision + odometry: median / p95 / max",
         f"{r['outage_median_error_m']} m / {r['outage_p95_error_m']} m / {r['outage_max_error_m']} m"),
        ("position error in the outage, odometry only: median / p95 / max",
         f"{r['odometry_only_outage_median_error_m']} m / {r['odometry_only_outage_p95_error_m']} m"
         f" / {r['odometry_only_outage_max_error_m']} m"),
        ("heading error: median / p95", f"{r['median_heading_error_deg']} deg / {r['p95_heading_error_deg']} deg"),
        ("GPS error (when it had a fix): median", f"{r['gps_median_error_m']} m"),
        ("truth within 2 sigma", f"{100 * (r['sigma_coverage'] or 0):.1f} %"),
    ]  # fmt: skip


def report_markdown(r: dict[str, Any]) -> str:
    rows = [
        ("frames", r["frames"]),
        ("distance driven", f"{r['distance_km']} km"),
        ("GPS outage", f"{r['outage'][0]:g} s to {r['outage'][1]:g} s ({r['outage_s']:g} s)"),
        *error_rows(r, "drive"),
        ("vision heading (checked against GPS course)", _heading_check(r["loop"]["vision_heading"])),
        ("vision candidates (fitted while GPS was there)", _mixture(r["loop"]["vision_position"])),
        ("loop speed", f"{r['fps']} frames/s (budget {r['budget_ms']} ms, {r['deadline_misses']} deadline misses)"),
    ]  # fmt: skip
    intro = f"""A car drives {r["distance_km"]} km through the synthetic town `{r["region"]}` with a roof-mounted
360-degree camera, wheel/gyro odometry and a GNSS receiver that loses its fix from
{r["outage"][0]:g} s to {r["outage"][1]:g} s. Each camera frame ({r["rate_hz"]:g} per second) is
encoded by the demo model (`{r["model"]}`, {r["encoder"]}), searched in the map around the
filter's estimate, and fused with odometry (and GPS while there is one) in a particle filter.
The odometry-only line is the same filter without vision."""
    title = f"edge-geoloc demo: {r['region']}, GPS denied for {r['outage_s']:g} s"
    return report_page(title, intro, rows, r, f"edge-geoloc demo --out DIR --seed {r['seed']}")


def _mixture(v: dict[str, Any]) -> str:
    what = "fitted on" if v["fitted"] else "defaults (too few frames:"
    end = "" if v["fitted"] else ")"
    return (
        f"temperature {v['temperature']:g}, spread {v['sigma_m']:g} m, outlier weight {v['outlier']:g}"
        f" ({what} {v['samples']} frames{end})"
    )


def _heading_check(h: dict[str, Any]) -> str:
    if h.get("usable") is None:
        return f"not checked ({h.get('samples', 0)} samples): used"
    if h["usable"]:
        return f"used, residual {h['residual_deg']} deg ({h['samples']} samples)"
    return (
        f"not used: the model's rotation scores echo the assumed heading (slope {h['slope']}, {h['samples']} samples)"
    )


def plot_trajectory(sc: Any, result: Any, baseline: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge_geoloc.world.aerial import render_aerial

    a = result.arrays()
    w = sc.world
    tr = sc.trajectory
    pad = 60.0
    e0 = max(w.east_min + 1, float(tr.east.min()) - pad)
    e1 = min(w.east_max - 1, float(tr.east.max()) + pad)
    n0 = max(w.north_min + 1, float(tr.north.min()) - pad)
    n1 = min(w.north_max - 1, float(tr.north.max()) + pad)
    side = max(e1 - e0, n1 - n0)
    ce, cn = (e0 + e1) / 2, (n0 + n1) / 2
    half = side / 2
    ce = (
        float(np.clip(ce, w.east_min + half + 1, w.east_max - half - 1))
        if side < w.east_max - w.east_min - 2
        else (w.east_min + w.east_max) / 2
    )
    cn = (
        float(np.clip(cn, w.north_min + half + 1, w.north_max - half - 1))
        if side < w.north_max - w.north_min - 2
        else (w.north_min + w.north_max) / 2
    )
    half = min(half, (w.east_max - w.east_min) / 2 - 1, (w.north_max - w.north_min) / 2 - 1)
    px = 900
    img = render_aerial(w, ce, cn, px, 2 * half / px, true_north=False)
    fig, ax = plt.subplots(figsize=(9, 9))
    ext = (-half, half, -half, half)
    ax.imshow(img, extent=ext)

    def rel(e: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.asarray(e) - ce, np.asarray(n) - cn

    ax.plot(*rel(tr.east, tr.north), color="white", lw=2.5, label="truth")
    g = sc.gps
    ax.scatter(*rel(g.east, g.north), s=5, color="orange", label="GPS (noisy; none in the outage)", zorder=3)
    ok = a["source"] == "vision"
    ax.scatter(
        *rel(a["vision_east"][ok], a["vision_north"][ok]),
        s=4,
        color="cyan",
        alpha=0.6,
        label="vision fixes (accepted)",
        zorder=3,
    )
    ax.plot(*rel(baseline[:, 0], baseline[:, 1]), color="yellow", lw=1.2, ls="--", label="odometry only")
    ax.plot(*rel(a["east"], a["north"]), color="red", lw=1.5, label="filtered (vision + odometry + GPS)")
    out_mask = sc.in_outage(a["t"])
    if out_mask.any():
        i0, i1 = int(np.argmax(out_mask)), len(out_mask) - 1 - int(np.argmax(out_mask[::-1]))
        for i, label in ((i0, "GPS lost"), (i1, "GPS back")):
            x, y = rel(a["truth_east"][i], a["truth_north"][i])
            ax.scatter([x], [y], s=60, marker="o", facecolor="none", edgecolor="magenta", lw=2, zorder=4)
            ax.annotate(label, (x, y), xytext=(6, 6), textcoords="offset points", color="magenta", fontsize=9)
    ax.set_xlim(-half, half)
    ax.set_ylim(-half, half)
    ax.set_xlabel("east (m, from the view centre)")
    ax.set_ylabel("north (m)")
    from edge_geoloc.sim.flight import UavScenario

    ax.set_title(
        f"{w.region.name}: {'flight' if isinstance(sc, UavScenario) else 'drive'} of {sc.trajectory.length_m / 1000:.1f} km,"
        f" GPS denied {sc.outage[1] - sc.outage[0]:g} s"
    )
    ax.legend(loc="upper right", fontsize=8, framealpha=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_errors(sc: Any, result: Any, report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = result.arrays()
    t = a["t"]
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(10, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1.3]})
    for x in (ax, axh):
        if sc.outage is not None:
            x.axvspan(*sc.outage, color="grey", alpha=0.2, label="GPS outage" if x is ax else None)
    g = sc.gps
    tr = sc.trajectory.resample(np.clip(g.t, sc.trajectory.t[0], sc.trajectory.t[-1]))
    ax.plot(g.t, np.hypot(g.east - tr.east, g.north - tr.north), ".", ms=2, color="orange", label="GPS")
    ax.plot(t, report["_baseline_error"], color="goldenrod", lw=1.2, ls="--", label="odometry only")
    ax.plot(t, report["_error"], color="red", lw=1.3, label="vision + odometry (+ GPS)")
    ax.plot(t, 2 * a["sigma_m"], color="red", lw=0.6, ls=":", label="2 sigma (filter)")
    ax.set_ylabel("position error (m)")
    top = np.nanpercentile(np.concatenate([report["_error"], report["_baseline_error"]]), 99.5)
    ax.set_ylim(0, max(30.0, 1.1 * top))
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(
        f"outage: filtered median {report['outage_median_error_m']} m (p95 {report['outage_p95_error_m']} m),"
        f" odometry only median {report['odometry_only_outage_median_error_m']} m"
    )
    axh.plot(t, report["_heading_error"], color="purple", lw=1.0)
    axh.set_ylabel("heading error (deg)")
    axh.set_xlabel("time (s)")
    axh.set_ylim(0, max(5.0, float(np.nanpercentile(report["_heading_error"], 99)) * 1.2))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
