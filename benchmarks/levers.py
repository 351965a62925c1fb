"""Which levers make a model localize in towns it has never seen: one table, same data, same schedule.

Each row trains the pretrained hybrid model (frozen, cached EfficientNet-Lite0 trunk; trained
transformer head) from the same base config, changing one thing: the number of training towns
(4, 8, 16, 32, all: the curve that says where to stop adding towns), look-alike mining,
rotation augmentation, the street input's resolution, the panorama's ground view (BEV
co-retrieval). Every row is scored on the held-out validation towns (what selects its best
epoch) and on the demo dataset's four test-* towns, which no row ever trains on (cross-area
R@1 / R@1% at the best validation epoch).

    .venv/bin/python benchmarks/levers.py --data data/synth-towns --monitor data/synth-demo   # hours on 2 vCPUs
    .venv/bin/python benchmarks/levers.py --quick                 # two rows on a tiny dataset, under a minute

Trunk features are cached per town (``<data>/.cache``), so after the first row each row costs only
its head's training (and a BEV row its ground views' trunk pass once).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "levers.json"


def lever_configs(
    base, towns: list[str], bev_model: str, quick: bool, s128_model: str | None = None
) -> list[tuple[str, object]]:
    """(row name, TrainConfig) for every lever, each one change from ``base``."""
    rows = [("baseline (all towns, mining, rotations)", base)]
    rows.append(("no look-alike mining", dataclasses.replace(base, mined_negatives=0)))
    no_turns = dataclasses.replace(base.augment, rotate90=False)
    rows.append(("no rotation augmentation", dataclasses.replace(base, augment=no_turns)))
    rows.append(("+ ground view (BEV co-retrieval)", dataclasses.replace(base, model=bev_model)))
    if s128_model:
        rows.append(("street input 128x512 (8x32 tokens)", dataclasses.replace(base, model=s128_model)))
    for n in (4, 8, 16, 32):
        if n < len(towns):
            # Every style in proportion: the towns list is ordered so that a prefix mixes the styles.
            rows.append((f"{n} training towns", dataclasses.replace(base, train_cities=towns[:n])))
    if quick:
        rows = rows[:1] + rows[3:4]
    return rows


def interleave_styles(towns: list[str]) -> list[str]:
    """Round-robin over the style in each town's name, so the first n towns mix the four styles."""
    by_style: dict[str, list[str]] = {}
    for t in towns:
        style = next((s for s in ("downtown", "suburb", "rural", "industrial") if s in t), "other")
        by_style.setdefault(style, []).append(t)
    out = []
    while any(by_style.values()):
        for style in list(by_style):
            if by_style[style]:
                out.append(by_style[style].pop(0))
    return out


def run_row(name: str, cfg, data: Path, monitor: Path | None, out: Path) -> dict:
    from edge_geoloc.train.loop import Trainer

    t = time.perf_counter()
    resume = (out / "checkpoint.pt").is_file()  # a row cut off mid-way continues where it stopped
    metrics = Trainer(cfg, data, out, monitor_data=monitor).run(resume=resume)
    best = max(metrics, key=lambda m: m["R@1"])
    row = {
        "lever": name,
        "towns": len(cfg.train_cities or []),
        "epochs": len(metrics),
        "best_epoch": best["epoch"],
        "val_R@1": best["R@1"],
        "val_R@1%": best["R@1%"],
        "unseen_R@1": best.get("monitor_R@1"),
        "unseen_R@1%": best.get("monitor_R@1%"),
        "seconds": round(time.perf_counter() - t, 1),
    }
    print(
        f"  {name}: val R@1 {row['val_R@1']:.1f}, unseen towns R@1 {row['unseen_R@1']} ({row['seconds']:.0f} s)",
        flush=True,
    )
    return row


def slug(name: str) -> str:
    """A row's run folder: its name in lower-case words (the same row always resumes the same folder)."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def earlier_rows(path: Path) -> list[dict]:
    """The rows of an earlier levers JSON (``[meta, *rows]``); none when the file does not exist."""
    if not path.is_file():
        return []
    return [r for r in json.loads(path.read_text()) if not r.get("_meta")]


def format_table(rows: list[dict], notes: list[str]) -> str:
    head = f"{'lever':<42}{'towns':>6}{'best ep':>8}{'val R@1':>9}{'val R@1%':>9}{'unseen R@1':>11}{'unseen R@1%':>12}{'s':>7}"
    lines = [head, "-" * len(head)]
    fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    for r in rows:
        lines.append(
            f"{r['lever']:<42}{r['towns']:>6}{r['best_epoch']:>8}{fmt(r['val_R@1']):>9}{fmt(r['val_R@1%']):>9}"
            f"{fmt(r['unseen_R@1']):>11}{fmt(r['unseen_R@1%']):>12}{r['seconds']:>7.0f}"
        )
    return "\n".join([*lines, "", *notes])


def quick_setup(tmp: Path):
    sys.path.insert(0, str(ROOT / "tests"))
    from trainkit import tiny_dataset

    from edge_geoloc.train.config import AugmentConfig, TrainConfig

    data = tiny_dataset(tmp, panoramas=32)
    text = (
        "stem: efficientnet-lite0\ninit: imagenet:efficientnet-lite0\nstem_stages: 3\n"
        "dim: 32\ndepth: 1\nheads: 2\nmlp_ratio: 2.0\ndescriptor_dim: 32\noffset_hidden: 32\n"
        "street: {height: 32, width: 128, patch: 8}\naerial: {height: 32, width: 32, patch: 8}\n"
        "tile_m: 64.0\nprune_at: 0\nmean: [0.498039, 0.498039, 0.498039]\nstd: [0.501961, 0.501961, 0.501961]\n"
    )
    model, bev = tmp / "quick-hybrid.yaml", tmp / "quick-hybrid-bev.yaml"
    model.write_text("name: quick-hybrid\n" + text)
    bev.write_text("name: quick-hybrid-bev\nbev_px: 16\n" + text)
    base = TrainConfig(
        model=str(model), epochs=1, batch_size=8, max_steps_per_epoch=2, val_queries=16, threads=1,
        train_cities=["alpha"], val_cities=["alpha"], trunk_cache=True, mined_negatives=1, neighbours=1,
        augment=AugmentConfig(rotate90=True, mirror=False, colour=0.0), offset_fit_epochs=0, warmup_steps=1,
    )  # fmt: skip
    return data, None, base, str(bev)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two rows on a tiny dataset (< 1 minute)")
    parser.add_argument("--json", type=Path, default=None, help=f"default {RESULTS.relative_to(ROOT)}")
    parser.add_argument("--data", type=Path, default=ROOT / "data/synth-towns", help="the many-town dataset")
    parser.add_argument(
        "--monitor", type=Path, default=ROOT / "data/synth-demo", help="dataset of the unseen test towns"
    )
    parser.add_argument("--config", default="lite0-towns", help="base training config")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per row (the same schedule for every row)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "levers", help="run folders")
    parser.add_argument("--only", default="", help="comma-separated words: run only the rows whose name has one")
    parser.add_argument(
        "--reuse", type=Path, action="append", default=[],
        help="an earlier levers JSON: its rows with the same name and epochs are taken, not retrained",
    )  # fmt: skip
    args = parser.parse_args(argv)

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from edge_geoloc.train.config import TrainConfig

    t0 = time.perf_counter()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            data, monitor, base, bev_model = quick_setup(Path(tmp))
            out = Path(tmp) / "runs"
        else:
            if not (args.data / "splits").is_dir():
                print(f"levers: no dataset at {args.data} (edge-geoloc dataset synth --config "
                      "edge_geoloc/configs/data/towns.yaml --out data/synth-towns); nothing to measure")  # fmt: skip
                return 0
            data, monitor, out = args.data, args.monitor, args.out
            base = TrainConfig.load(args.config)
            bev_model = str(ROOT / "edge_geoloc/configs/model/lite0-hybrid-bev.yaml")
            base = dataclasses.replace(
                base, epochs=args.epochs, train_cities=interleave_styles(list(base.train_cities or []))
            )
        s128_model = None if args.quick else str(ROOT / "edge_geoloc/configs/model/lite0-hybrid-s128.yaml")
        levers = lever_configs(base, list(base.train_cities or []), bev_model, args.quick, s128_model)
        if args.only:
            words = [w.strip() for w in args.only.split(",") if w.strip()]
            levers = [(n, c) for n, c in levers if any(w in n for w in words)]
        # Rows already measured (this run's own ledger, or --reuse files) are taken as they are: resumable.
        ledger = out / "rows.json"
        done = {(r["lever"], r["epochs"]): r for f in [*args.reuse, ledger] for r in earlier_rows(f)}
        rows = []
        for name, cfg in levers:
            row = done.get((name, cfg.epochs)) or run_row(name, cfg, data, monitor, out / slug(name))
            rows.append(row)
            done[(name, cfg.epochs)] = row
            if not args.quick:  # every row measured so far, this run's selection or not
                write_json(ledger, list(done.values()), ["rows measured so far"], t0)
    notes = [
        f"base config {args.config if not args.quick else 'quick-hybrid (tiny dataset)'}; {args.epochs if not args.quick else 1}"
        " epoch(s) per row with the base config's LR schedule; best epoch by the validation towns' R@1",
        "unseen = the demo dataset's cross-area test towns (test-downtown/suburb/rural/industrial), never trained on",
        load_line(load_before),
    ]
    table = format_table(rows, notes)
    print("\n" + table)
    out_json = args.json or RESULTS
    write_json(out_json, rows, notes, t0, quick=args.quick)
    if args.json is None and not args.quick:
        write_markdown(RESULTS.with_suffix(".md"), "Generalization levers (benchmarks/levers.py)", table)
    print(f"wrote {out_json} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
