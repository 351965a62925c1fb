"""One command for a GPU machine (16 cores + one H100, under 8 minutes): render, measure, train, bring back.

1. Renders a synthetic dataset (the demo's twelve cities, fewer panoramas) with every CPU core but one,
   in a child process started before CUDA is touched.
2. Meanwhile on the GPU: training steps (forward, backward, AdamW) of the demo recipe (``tiny-demo``) and of
   ``transgeo-vigor`` (DeiT-S, 320x640 / 320x320, its recipe's batch of 16) on random batches, bf16
   autocast against fp32: steps/s, images/s (street + aerial), peak GPU memory.
3. When the dataset is written: trains the demo recipe on it for a fixed number of steps (streamed by
   DataLoader workers) and writes the checkpoint under ``$OUT`` (or ``--out``), with this table.

``--quick`` (what ``make test`` runs, and the only form this CPU machine can run): the same steps on the
CPU at tiny sizes (two small cities, the micro model for both recipes, a few steps).

    python benchmarks/gpu_train.py [--quick] [--out DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "gpu_train.json"
DEMO_DATA = ROOT / "edge_geoloc" / "configs" / "data" / "demo.yaml"


def render(out: Path, quick: bool, workers: int) -> None:
    """The synthetic dataset (runs in a child process)."""
    from edge_geoloc.data.fixtures import tiny_synth_dataset
    from edge_geoloc.data.synth import load_synth_config, synthesize

    if quick:
        tiny_synth_dataset(out, panoramas=40, workers=workers)
        return
    synthesize(load_synth_config(DEMO_DATA, panoramas=600), out / "data", workers=workers, progress=False)


def throughput(recipe: str, model: str | None, batch: int, steps: int, precision: str, device: str, tmp: Path) -> dict:
    """Steps of ``Trainer.step`` on random batches of the recipe (its model unless ``model`` is given; one
    untimed warm-up step)."""
    import torch

    from edge_geoloc.train.config import TrainConfig
    from edge_geoloc.train.loop import Batch, Trainer

    cfg = TrainConfig.load(recipe)
    cfg = replace(cfg, model=model or cfg.model, batch_size=batch, precision=precision, init=None, stage=1)
    trainer = Trainer(cfg, tmp, tmp / f"{recipe}-{precision}", device=device)
    m = trainer.mcfg
    g = torch.Generator().manual_seed(0)
    b = Batch(
        street=torch.randn(batch, 3, m.street_input.height, m.street_input.width, generator=g),
        aerial=torch.randn(batch, 3, m.aerial.height, m.aerial.width, generator=g),
        offset_m=torch.zeros(batch, 2),
        iou=torch.ones(batch),
    )
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.step(b, 1e-4)
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        parts = trainer.step(b, 1e-4)
    if cuda:
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    return {
        "part": "steps", "recipe": recipe, "model": cfg.model, "precision": precision, "batch": batch,
        "steps_per_s": steps / dt, "images_per_s": 2 * batch * steps / dt, "loss": parts["loss"],
        "gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9 if cuda else None,
    }  # fmt: skip


def train_demo(data: Path, out: Path, model: str, steps: int, device: str, quick: bool) -> dict:
    """The demo recipe on the rendered dataset for a fixed number of steps; its checkpoint in ``out``."""
    from edge_geoloc.train.config import TrainConfig
    from edge_geoloc.train.loop import Trainer

    cfg = replace(
        TrainConfig.load("tiny-demo"), model=model, epochs=1, max_steps_per_epoch=steps, offset_fit_epochs=3,
        data_loading="stream", loader_workers=2 if quick else 8, val_queries=200 if quick else 800,
    )  # fmt: skip
    if quick:  # the tiny set's two cities
        cfg = replace(cfg, train_cities=["alpha"], val_cities=["alpha"], batch_size=8, warmup_steps=2)
    t = time.perf_counter()
    metrics = Trainer(cfg, data, out, device=device).run()
    dt = time.perf_counter() - t
    return {
        "part": "train", "recipe": "tiny-demo", "model": model, "max_steps": steps, "seconds": dt, "R@1": metrics[-1]["R@1"], "R@5": metrics[-1]["R@5"],
        "checkpoint": str(out / "best.pt"),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    lines = []
    for r in rows:
        if r["part"] == "render":
            lines.append(
                f"render   {r['panoramas']} panoramas, {r['tiles']} tiles with {r['workers']} processes: {r['seconds']:.0f} s"
            )
        elif r["part"] == "steps":
            mem = f"  GPU peak {r['gpu_peak_gb']:.2f} GB" if r["gpu_peak_gb"] is not None else ""
            lines.append(
                f"steps    {r['recipe']:<15} ({r['model']}, batch {r['batch']}, {r['precision']}): "
                f"{r['steps_per_s']:7.2f} steps/s  {r['images_per_s']:8.1f} images/s{mem}"
            )
        else:
            lines.append(
                f"train    {r['recipe']} ({r['model']}) up to {r['max_steps']} steps in {r['seconds']:.0f} s "
                f"(with the data loading and one validation): R@1 {r['R@1']:.1f}  R@5 {r['R@5']:.1f}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="on the CPU at tiny sizes (under a minute)")
    ap.add_argument("--out", type=Path, default=Path(os.environ["OUT"]) if os.environ.get("OUT") else None,
                    help="where the trained checkpoint goes (default: $OUT)")  # fmt: skip
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    before, started = os.getloadavg()[0], time.perf_counter()
    q = args.quick
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # The renderer first, forked before CUDA exists in this process.
        workers = 1 if q else max(1, cores - 1)
        t_render = time.perf_counter()
        child = mp.get_context("fork").Process(target=render, args=(tmp / "synth", q, workers))
        child.start()

        import torch

        device = "cuda" if torch.cuda.is_available() and not q else "cpu"
        if not q and device == "cpu":
            print("no CUDA device: run with --quick on a CPU machine", file=sys.stderr)
            child.terminate()
            return 2
        bf16 = device == "cpu" or torch.cuda.is_bf16_supported()
        cases = [
            ("tiny-demo", "micro" if q else "tiny", 8 if q else 64),
            ("transgeo-vigor", "micro" if q else "transgeo-vigor", 4 if q else 16),
        ]
        rows = []
        for recipe, model, batch in cases:
            for precision in ("fp32", "bf16" if bf16 else "fp16"):
                rows.append(throughput(recipe, model, batch, 2 if q else 30, precision, device, tmp))
        child.join()
        if child.exitcode != 0:
            print(f"rendering the dataset failed (exit code {child.exitcode})", file=sys.stderr)
            return 1
        data = tmp / "synth" / "data"
        from edge_geoloc.data.vigor import VigorDataset

        ds = VigorDataset(data, check_files=False, split="cross_area")
        rows.insert(0, {"part": "render", "panoramas": len(ds), "tiles": ds.num_aerial, "workers": workers,
                        "seconds": time.perf_counter() - t_render})  # fmt: skip
        run_dir = (args.out or tmp) / "gpu_train_demo"
        rows.append(train_demo(data, run_dir, "micro" if q else "tiny", 4 if q else 400, device, q))
        if args.out is None:
            rows[-1]["checkpoint"] = None  # the temporary folder is gone with this run
    text = table(rows)
    notes = [
        load_line(before),
        f"device: {torch.cuda.get_device_name(0) if device == 'cuda' else 'CPU (--quick: tiny sizes, not a GPU figure)'}",
        "steps: random batches, Trainer.step (forward, backward, AdamW); images/s counts street + aerial",
        "train: the demo recipe on the rendered dataset, streamed by DataLoader workers, one validation at the end",
    ]
    print(text)
    print("\n".join(notes))
    write_json(args.json, rows, notes, started, quick=q)
    if not q:
        write_markdown(args.json.with_suffix(".md"), "GPU training (benchmarks/gpu_train.py)", text)
        if args.out is not None:
            shutil.copy(args.json, args.out / args.json.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
