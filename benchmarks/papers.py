"""The three papers' experiments, reproduced on the synthetic world (issue 3, item 6).

- alignment (WACV 2021, Table 1): a model trained on north-aligned panoramas vs one trained with
  random rotations, each tested on aligned and on rotated queries. On CVUSA the paper finds
  R@1 60.1 / 13.5 for the aligned model (aligned / rotated queries) and 43.7 / 44.2 for the
  rotation-trained one: the aligned model collapses on rotated queries, the other holds.
- losses: TransGeo's soft-margin triplet vs the WACV weighted loss vs symmetric InfoNCE, and
  VIGOR's IoU semi-positive loss on/off, on the same schedule.
- keep_ratio (TransGeo): recall of the aligned model (the committed demo model when present) with 1.0 / 0.79 / 0.64 / 0.53 of the aerial
  patches kept (attention-guided pruning), with the aerial branch's GFLOPs.
- scopes (VIGOR): R@1 and meter-level error searching everything vs inside 1000 / 500 / 200 m
  circles and the +-200 m box around a noisy GPS prior, for the committed demo model.

Full runs train short schedules (``--epochs``, default 6) of the tiny model on
``data/synth-demo`` into ``runs/papers/<variant>`` (an existing, finished run is reused), then
evaluate on a seeded query subset. ``--quick`` runs every code path on a tiny dataset with the
micro model in well under a minute: its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_geoloc.config import strict_json  # noqa: E402
from edge_geoloc.export.flops import branch_flops  # noqa: E402
from edge_geoloc.train.config import LossConfig, TrainConfig  # noqa: E402
from edge_geoloc.train.evaluation import evaluate_checkpoint  # noqa: E402

DEMO_CONFIG = ROOT / "edge_geoloc" / "configs" / "train" / "tiny-demo.yaml"
DEMO_CHECKPOINT = ROOT / "models" / "demo" / "tiny-demo.pt"
KEEP_RATIOS = (1.0, 0.79, 0.64, 0.53)

LOSS_VARIANTS = {
    "triplet": LossConfig(name="triplet"),
    "wacv": LossConfig(name="wacv"),
    "infonce": LossConfig(name="infonce"),
    "infonce+iou": LossConfig(name="infonce", iou_weight=1.0),
    "triplet+iou": LossConfig(name="triplet", iou_weight=1.0),
}


def train_variant(name: str, cfg: TrainConfig, data: Path, runs: Path) -> Path:
    """Train (or reuse a finished run of) one variant; returns its best checkpoint."""
    from edge_geoloc.train.checkpoint import load_checkpoint
    from edge_geoloc.train.loop import Trainer

    out = runs / name
    best = out / "best.pt"
    last = out / "checkpoint.pt"
    if best.exists() and last.exists() and load_checkpoint(last)["epoch"] >= cfg.epochs:
        return best
    print(f"== training {name} ({cfg.epochs} epochs) -> {out}", flush=True)
    Trainer(cfg, data, out).run(resume=last.exists())
    return best


def row(experiment: str, variant: str, result: dict, **extra: object) -> dict:
    loc = result["localization"]["box200m"]["fused"]
    return {
        "experiment": experiment,
        "variant": variant,
        "protocol": result["protocol"],
        "orientation": result["orientation"],
        "queries": result["queries"],
        "references": result["references"],
        **{k: round(v, 2) for k, v in result["retrieval"].items()},
        "median_m_box200": round(loc["median_m"], 2),
        **extra,
    }


def evaluate(ckpt: Path, data: Path, orientations: list[str], max_queries: int, cache: Path | None) -> dict:
    if cache is not None and cache.exists():
        return json.loads(cache.read_text())
    report = evaluate_checkpoint(ckpt, data, orientations=orientations, max_queries=max_queries)
    if cache is not None:
        cache.write_text(strict_json(report))
    return report


def with_keep(ckpt: Path, keep: float, out: Path) -> Path:
    """The checkpoint with a different aerial keep ratio (pruning at inference, no fine-tuning)."""
    from edge_geoloc.config import to_mapping
    from edge_geoloc.train.checkpoint import load_checkpoint, model_config_of, save_checkpoint

    state = load_checkpoint(ckpt)
    cfg = model_config_of(state, ckpt).with_(keep_ratio=keep)
    state["model_config"] = to_mapping(cfg)
    save_checkpoint(out, state)
    return out


def run(args: argparse.Namespace) -> list[dict]:
    rows: list[dict] = []
    base = TrainConfig.load(DEMO_CONFIG)
    if args.quick:
        from edge_geoloc.data.fixtures import tiny_synth_dataset

        tmp = Path(tempfile.mkdtemp(prefix="papers-quick-"))
        data = tiny_synth_dataset(tmp, panoramas=40)
        runs = tmp / "runs"
        base = replace(
            base, model="micro", train_cities=["alpha"], val_cities=["alpha"], epochs=1, batch_size=8,
            max_steps_per_epoch=2, warmup_steps=1, val_queries=10, offset_fit_epochs=1, threads=1,
        )  # fmt: skip
        max_queries = 20
    else:
        data, runs, max_queries = Path(args.data), Path(args.runs), args.max_queries
        base = replace(base, epochs=args.epochs)
    experiments = args.experiments
    cache = (lambda p: None) if args.quick else (lambda p: p)

    if "alignment" in experiments or ("keep_ratio" in experiments and (args.quick or not DEMO_CHECKPOINT.exists())):
        trained = {}
        for orientation in ("aligned", "unknown"):
            name = f"orient-{orientation}"
            trained[orientation] = train_variant(name, replace(base, orientation=orientation), data, runs)
        if "alignment" in experiments:
            for orientation, ckpt in trained.items():
                rep = evaluate(ckpt, data, ["aligned", "unknown"], max_queries, cache(ckpt.parent / "eval.json"))
                for res in rep["results"]:
                    rows.append(row("alignment", f"trained-{orientation}", res))

    if "losses" in experiments:
        variants = ["triplet", "infonce"] if args.quick else list(LOSS_VARIANTS)
        for name in variants:
            if name == "infonce":
                ckpt = train_variant("orient-aligned", replace(base, orientation="aligned"), data, runs)
            else:
                ckpt = train_variant(f"loss-{name}", replace(base, loss=LOSS_VARIANTS[name]), data, runs)
            rep = evaluate(ckpt, data, ["aligned"], max_queries, cache(ckpt.parent / "eval.json"))
            for res in rep["results"]:
                rows.append(row("losses", name, res))

    if "keep_ratio" in experiments:
        # The aligned model: the committed demo model (north-aligned, InfoNCE) when there is one.
        aligned = runs / "orient-aligned" / "best.pt"
        if not args.quick and DEMO_CHECKPOINT.exists():
            aligned = DEMO_CHECKPOINT
        runs.mkdir(parents=True, exist_ok=True)
        from edge_geoloc.train.checkpoint import load_model

        mcfg = load_model(aligned)[0].cfg
        for keep in KEEP_RATIOS[:2] if args.quick else KEEP_RATIOS:
            ckpt = with_keep(aligned, keep, runs / f"keep-{keep:g}.pt")
            flops = branch_flops(mcfg.with_(keep_ratio=keep), "aerial")
            rep = evaluate(ckpt, data, ["aligned"], max_queries, cache(runs / f"keep-{keep:g}.eval.json"))
            for res in rep["results"]:
                rows.append(
                    row(
                        "keep_ratio", f"keep {keep:g} (no fine-tune)", res, keep_ratio=keep,
                        aerial_gflops_full=round(flops.gflops_full, 4), aerial_gmacs_paper=round(flops.gmacs_paper, 4),
                    )
                )  # fmt: skip

    if "scopes" in experiments:
        ckpt = (runs / "orient-aligned" / "best.pt") if args.quick or not DEMO_CHECKPOINT.exists() else DEMO_CHECKPOINT
        rep = evaluate(ckpt, data, ["aligned"], max_queries, None if args.quick else runs / "demo-scopes.eval.json")
        for res in rep["results"]:
            for scope, loc in res["localization"].items():
                r = loc.get("retrieval", res["retrieval"])
                for method in ("centre", "offset", "fused"):
                    rows.append(
                        {
                            "experiment": "scopes", "variant": f"{scope} {method}", "protocol": res["protocol"],
                            "orientation": res["orientation"], "scope": scope, "method": method,
                            "refs_in_scope": round(loc["references_in_scope_mean"], 1), "R@1": round(r["R@1"], 2),
                            "median_m": round(loc[method]["median_m"], 2), "acc@10m": round(loc[method]["acc@10m"], 2),
                            "acc@25m": round(loc[method]["acc@25m"], 2),
                        }
                    )  # fmt: skip
    return rows


def print_table(rows: list[dict]) -> None:
    exp = None
    for r in rows:
        if r["experiment"] != exp:
            exp = r["experiment"]
            print(f"\n## {exp}")
            if exp == "scopes":
                print(
                    f"{'protocol':<11} {'scope':<9} {'method':<7} {'refs':>7} {'R@1':>6} {'median m':>9} {'<=10m':>6} {'<=25m':>6}"
                )
            else:
                print(
                    f"{'variant':<28} {'protocol':<11} {'queries':<8} {'R@1':>6} {'R@5':>6} {'R@1%':>6} {'hit':>6} {'med m':>7}"
                )
        if exp == "scopes":
            print(
                f"{r['protocol']:<11} {r['scope']:<9} {r['method']:<7} {r['refs_in_scope']:>7} {r['R@1']:6.1f} "
                f"{r['median_m']:9.1f} {r['acc@10m']:6.1f} {r['acc@25m']:6.1f}"
            )
        else:
            print(
                f"{r['variant'] + ' / ' + r['orientation']:<28} {r['protocol']:<11} {r['queries']:<8} {r['R@1']:6.1f} "
                f"{r['R@5']:6.1f} {r['R@1%']:6.1f} {r.get('hit_rate', float('nan')):6.1f} {r['median_m_box200']:7.1f}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run on a tiny dataset (numbers mean nothing)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "papers.json"))
    ap.add_argument("--data", default=str(ROOT / "data" / "synth-demo"))
    ap.add_argument("--runs", default=str(ROOT / "runs" / "papers"))
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-queries", type=int, default=1500)
    ap.add_argument(
        "--experiments", nargs="+", default=["alignment", "losses", "keep_ratio", "scopes"],
        choices=["alignment", "losses", "keep_ratio", "scopes"],
    )  # fmt: skip
    args = ap.parse_args()
    t0 = time.time()
    rows = run(args)
    print_table(rows)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(strict_json(rows, indent=1))
    print(f"\nwrote {args.json} ({len(rows)} rows, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
