"""Encoder latency, throughput and memory: torch eager vs ONNX Runtime, side by side in one run.

Per model, branch and batch size: latency p50/p99, images per second, peak resident memory
added by the run, the counted FLOPs (full convention: every matmul and conv, attention
included, a multiply-add = 2 FLOPs), the achieved GFLOP/s and its fraction of this machine's
peak, measured in the same run as the best of a few large float32 matmuls on the same threads.
The ONNX Runtime rows go through the device-side encoder (``OrtEncoder``: the exported graph,
explicit thread settings), the torch rows through the very module that was exported.

Models: the demo model (``models/demo``) when it exists, else random ``tiny`` weights (said so
in the table); ``lite0-hybrid`` (the pretrained EfficientNet-Lite0 hybrid: ``models/lite0-towns`` when
trained, else random weights of the same graph) and its street branch with the panorama's ground view
(``lite0-hybrid-bev``, ``models/lite0-bev``, the car demo model) and its 96x384 version (``lite0-hybrid-bev-s96``,
``models/lite0-bev-s96``); ``transgeo-cvusa`` (street, aerial, aerial pruned at keep 0.64) and
``transgeo-vigor`` street, random weights. ``--quick`` (what ``make test`` runs) times only the
small model at small batches and finishes well under a minute.

    python benchmarks/encoders.py [--quick] [--json PATH] [--threads 2] [--models lite0-hybrid,lite0-hybrid-bev]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results" / "encoders.json"
DEMO_DIR = ROOT / "models" / "demo"
LITE0 = ROOT / "models" / "lite0-towns" / "lite0-towns.pt"  # the pretrained hybrid (issue 13), when trained
LITE0_BEV = ROOT / "models" / "lite0-bev" / "lite0-bev.pt"  # the same with the panorama's ground view (car demo model)
LITE0_BEV_S96 = ROOT / "models" / "lite0-bev-s96" / "lite0-bev-s96.pt"  # street 96x384, ground view 24 m


@dataclass(frozen=True)
class Case:
    label: str  # what the table calls the model
    config: str
    weights: str  # "demo", "random" or a checkpoint path
    branch: str
    keep_ratios: tuple[float | None, ...]  # None: the checkpoint's; several: timed interleaved, side by side
    batches: tuple[int, ...]
    iterations: dict[int, int]  # timed runs per batch size


def rss_peak_reset() -> int:
    """Reset the kernel's peak-RSS mark to the current RSS (Linux); returns the current RSS in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return _status_kb("VmRSS") * 1024


def rss_peak() -> int:
    return _status_kb("VmHWM") * 1024


def _status_kb(key: str) -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def matmul_peak_gflops(threads: int, n: int, repeats: int = 3) -> float:
    """The machine's float32 matmul rate on ``threads`` threads: best of a few n x n products."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def find_demo() -> tuple[Path | None, str]:
    """An export folder or a checkpoint of the demo model, or None with the reason."""
    if (DEMO_DIR / "model.yaml").exists():
        return DEMO_DIR, "models/demo (export)"
    ckpts = sorted(DEMO_DIR.glob("*.pt")) if DEMO_DIR.exists() else []
    if ckpts:
        return ckpts[0], f"models/demo/{ckpts[0].name}"
    return None, "models/demo does not exist yet: random tiny weights stand in for the demo model"


def prepare(case: Case, keep_ratio: float | None, work: Path, demo: Path | None) -> tuple[Path, object]:
    """An export folder for the case and the torch module that was exported (the eager baseline)."""
    import torch

    from edge_geoloc.export.onnx_export import export_model
    from edge_geoloc.model.config import load_model_config
    from edge_geoloc.model.graphs import encoder_graph
    from edge_geoloc.model.vit import CrossViewModel
    from edge_geoloc.runtime.card import load_card
    from edge_geoloc.train.checkpoint import load_model, model_state, save_checkpoint

    if keep_ratio == load_model_config(case.config).keep_ratio:
        keep_ratio = None  # the config's own: share the export with the other cases of this config
    keep_tag = "" if keep_ratio is None else f"-keep{keep_ratio:g}"
    out = work / f"{case.label}{keep_tag}"
    if case.weights == "demo" and demo is not None and demo.is_dir():
        model, _ = load_model(load_card(demo).checkpoint)
        return demo, encoder_graph(model, case.branch, load_card(demo).aerial.keep_ratio)
    if case.weights == "demo" and demo is not None:
        ckpt = demo
    elif case.weights not in ("demo", "random"):
        ckpt = Path(case.weights)
    else:
        ckpt = work / f"{case.config}.pt"
        if not ckpt.exists():
            torch.manual_seed(0)
            cfg = load_model_config(case.config)
            save_checkpoint(ckpt, {**model_state(cfg), "model": CrossViewModel(cfg).state_dict()})
    if not (out / "model.yaml").exists():
        export_model(ckpt, out, keep_ratio=keep_ratio, parity_samples=1)
    model, _ = load_model(ckpt)
    return out, encoder_graph(model, case.branch, load_card(out).aerial.keep_ratio)


def parity_note(model_dir: Path) -> str | None:
    """One line from an export's report: the ORT-vs-torch parity its export checked."""
    path = model_dir / "report.json"
    if not path.exists():
        return None
    r = json.loads(path.read_text())
    checks = [v for b in ("street", "aerial") for v in r["parity"][b].values()]
    kept = [v["kept_equal"] for v in checks if "kept_equal" in v]
    return (
        f"export {r['config']} keep {r['keep_ratio']:g}: parity max |diff| {max(v['max_abs'] for v in checks):.1e},"
        f" min cosine {min(v['min_cosine'] for v in checks):.7f}"
        + (f", kept patches equal: {all(kept)}" if kept else "")
        + f", export {r['export_seconds']:.0f} s"
    )


def bench_case(case: Case, work: Path, demo: Path | None, threads: int, notes: list[str]) -> list[dict]:
    """Rows for one case. Every runner (torch and ONNX Runtime, at each keep ratio) takes its turn in
    each iteration, so all of them see the same machine load: the ratios hold on a shared machine."""
    import torch

    from edge_geoloc.export.flops import branch_flops, ground_view_flops
    from edge_geoloc.model.config import load_model_config
    from edge_geoloc.runtime.encoder import OrtEncoder

    torch.set_num_threads(threads)
    runners = {}  # (keep, backend) -> (fn, encoder)
    for keep in case.keep_ratios:
        model_dir, graph = prepare(case, keep, work, demo)
        note = parity_note(model_dir)
        if note and note not in notes:
            notes.append(note)
        encoder = OrtEncoder(model_dir, case.branch, intra_op_threads=threads, inter_op_threads=1)
        k = encoder.card.aerial.keep_ratio

        def run_torch(x: np.ndarray, graph=graph) -> None:
            with torch.no_grad():
                graph(torch.from_numpy(x))

        runners[(k, "torch-eager")] = (run_torch, encoder)
        runners[(k, "onnxruntime")] = (encoder.run, encoder)
    rows = []
    rng = np.random.default_rng(0)
    for n in case.batches:
        memory, times = {}, {key: [] for key in runners}
        for key, (fn, encoder) in runners.items():  # the warm-up call doubles as the memory measurement
            x = rng.standard_normal((n, *encoder.input_shape)).astype(np.float32)
            encoder.max_batch = max(encoder.max_batch, n)  # one graph call per batch, as a profile would allow
            base = rss_peak_reset()
            fn(x)
            memory[key] = (max(0, rss_peak() - base) / 2**20, rss_peak() / 2**20)
        for _ in range(case.iterations[n]):
            for key, (fn, _) in runners.items():
                t = time.perf_counter()
                fn(x)
                times[key].append(time.perf_counter() - t)
        for (keep, backend), (_, encoder) in runners.items():
            card = encoder.card
            mcfg = load_model_config(card.config)
            flops = branch_flops(mcfg, case.branch, keep)
            ground = ground_view_flops(mcfg) if case.branch == "street" else None
            gflops = flops.gflops_full + (ground.gflops_full if ground else 0.0)
            gmacs = flops.gmacs_paper + (ground.gmacs_paper if ground else 0.0)
            t = np.array(times[(keep, backend)])
            p50 = float(np.percentile(t, 50))
            row = {
                "model": case.label,
                "config": card.config,
                "weights": case.weights,
                "branch": case.branch,
                "input_hw": [card.branch(case.branch).height, card.branch(case.branch).width],
                "keep_ratio": keep if case.branch == "aerial" else None,
                "backend": backend,
                "batch": n,
                "threads": threads,
                "iterations": int(case.iterations[n]),
                "p50_ms": 1e3 * p50,
                "p99_ms": 1e3 * float(np.percentile(t, 99)),
                "images_per_s": n / p50,
                "peak_mem_mb": memory[(keep, backend)][0],
                "process_peak_rss_mb": memory[(keep, backend)][1],
                "gflops_full_per_image": gflops,
                "gmacs_paper_per_image": gmacs,
                "achieved_gflops": gflops * n / p50,
            }
            if backend == "onnxruntime":
                row["speedup_vs_torch"] = rows[-1]["p50_ms"] / row["p50_ms"]
            rows.append(row)
    return rows


def cases(quick: bool, demo_label: str) -> list[Case]:
    small = "demo" if demo_label == "demo" else "tiny"
    weights = "demo" if demo_label == "demo" else "random"
    if quick:
        it = {1: 5, 8: 3}
        return [
            Case(small, "tiny", weights, "street", (None,), (1, 8), it),
            Case(small, "tiny", weights, "aerial", (None,), (1, 8), it),
        ]
    small_it = {1: 30, 32: 8}
    big_it = {1: 6, 32: 3}
    lite0, lite0_bev, lite0_bev_s96 = (str(p) if p.exists() else "random" for p in (LITE0, LITE0_BEV, LITE0_BEV_S96))
    return [
        Case(small, "tiny", weights, "street", (None,), (1, 32), small_it),
        Case(small, "tiny", weights, "aerial", (None,), (1, 32), small_it),
        Case("lite0-hybrid", "lite0-hybrid", lite0, "street", (None,), (1, 32), small_it),
        Case("lite0-hybrid", "lite0-hybrid", lite0, "aerial", (None,), (1, 32), small_it),
        Case("lite0-hybrid-bev", "lite0-hybrid-bev", lite0_bev, "street", (None,), (1, 32), small_it),
        Case("lite0-bev-s96", "lite0-hybrid-bev-s96", lite0_bev_s96, "street", (None,), (1, 32), small_it),
        Case("transgeo-cvusa", "transgeo-cvusa", "random", "street", (None,), (1, 32), big_it),
        # TransGeo's keep ratio against the unpruned graph, interleaved: what pruning saves in time.
        Case("transgeo-cvusa", "transgeo-cvusa", "random", "aerial", (1.0, 0.64), (1, 32), big_it),
        Case("transgeo-vigor", "transgeo-vigor", "random", "street", (None,), (1,), {1: 4}),
    ]


def format_table(rows: list[dict], peak: float, threads: int, notes: list[str]) -> str:
    lines = [f"encoders on {threads} threads; machine peak (float32 matmul, same run): {peak:.1f} GFLOP/s"]
    lines += [f"  note: {note}" for note in notes]
    head = (
        f"{'model':<15} {'branch':<7} {'keep':>5} {'backend':<12} {'batch':>5} {'p50 ms':>9} {'p99 ms':>9}"
        f" {'img/s':>8} {'mem MB':>7} {'GFLOP/img':>9} {'GFLOP/s':>8} {'of peak':>7} {'ORT x':>6}"
    )
    lines += [head, "-" * len(head)]
    for r in rows:
        keep = f"{r['keep_ratio']:g}" if r["keep_ratio"] is not None else "-"
        speed = f"{r['speedup_vs_torch']:.2f}" if "speedup_vs_torch" in r else ""
        lines.append(
            f"{r['model']:<15} {r['branch']:<7} {keep:>5} {r['backend']:<12} {r['batch']:>5} {r['p50_ms']:>9.2f}"
            f" {r['p99_ms']:>9.2f} {r['images_per_s']:>8.1f} {r['peak_mem_mb']:>7.0f} {r['gflops_full_per_image']:>9.3f}"
            f" {r['achieved_gflops']:>8.1f} {100 * r['fraction_of_peak']:>6.1f}% {speed:>6}"
        )
    lines.append(
        "GFLOP/img: full convention (matmuls + convs incl. attention, multiply-add = 2); mem MB: peak RSS the first"
        " call added (0: it fit in memory the process held); ORT x: torch p50 / ONNX Runtime p50 (>1: ORT faster)."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small model and batches only (< 1 minute)")
    parser.add_argument(
        "--json", type=Path, default=None, help=f"write rows here (default {RESULTS.relative_to(ROOT)})"
    )
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for both torch and ONNX Runtime")
    parser.add_argument(
        "--models", default=None, help="comma-separated model labels to time (default: all; with --json elsewhere)"
    )
    args = parser.parse_args(argv)
    labels = set(args.models.split(",")) if args.models else None
    if labels is not None and args.json is None:
        parser.error("--models writes a partial table: give it its own --json")
    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: the torch-eager baseline needs the train extra; nothing to compare")
        return 0
    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    demo, demo_note = find_demo()
    demo_label = "demo" if demo is not None else "tiny"
    notes = [demo_note]
    chosen = [c for c in cases(args.quick, demo_label) if labels is None or c.label in labels]
    if not chosen:
        parser.error(f"--models {args.models}: none of {sorted({c.label for c in cases(args.quick, demo_label)})}")
    n_peak = 1024 if args.quick else 2048
    peaks = [matmul_peak_gflops(args.threads, n_peak)]
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="edge-geoloc-bench-") as tmp:
        for case in chosen:
            rows.extend(bench_case(case, Path(tmp), demo, args.threads, notes))
            peaks.append(matmul_peak_gflops(args.threads, n_peak))  # between cases: the load changes
            print(
                f"  done {case.label} {case.branch} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )
    # The machine's capability is the best it showed in this run; a loaded moment measures low.
    peak = max(peaks)
    for r in rows:
        r["machine_peak_gflops"] = peak
        r["fraction_of_peak"] = r["achieved_gflops"] / peak
    notes.append(
        load_line(load_before) + " (other jobs share this machine: absolute times vary, interleaved ratios hold)"
    )
    notes.append(
        f"matmul peak ({n_peak}^3 float32, {args.threads} threads) measured {len(peaks)} times in this run:"
        f" {min(peaks):.0f}..{peak:.0f} GFLOP/s; the max is the reference (shared machine: load varies)"
    )
    small_fps = [r for r in rows if r["model"] == demo_label and r["branch"] == "street" and r["batch"] == 1]
    for r in small_fps:
        notes.append(
            f"{demo_label} street branch, batch 1, {args.threads} threads, {r['backend']}: {r['images_per_s']:.0f} frames/s"
        )
    table = format_table(rows, peak, args.threads, notes)
    print("\n" + table)
    out = args.json or RESULTS
    if not args.quick and (args.json is None or labels is not None):
        md = (args.json or RESULTS).with_suffix(".md")
        write_markdown(md, "Encoder benchmark (benchmarks/encoders.py)", table)
    write_json(out, rows, notes, t0, threads=args.threads)
    print(f"wrote {out} ({len(rows)} rows, {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
