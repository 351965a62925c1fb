"""`edge-geoloc train` and `edge-geoloc eval` (workstation side; torch is imported when they run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_geoloc.config import pick


def _dataset_option(p: argparse.ArgumentParser) -> None:
    """``--data``: what both commands read (the training pairs, or the queries and references scored)."""
    p.add_argument("--data", required=True, help="dataset root in VIGOR's layout")


def _train(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:  # start the ranks; each runs this command again
        from edge_geoloc.train.distributed import launch

        return launch(args)
    from edge_geoloc.train.config import TrainConfig
    from edge_geoloc.train.loop import Trainer

    cfg = TrainConfig.load(args.config)
    if args.epochs:
        cfg = type(cfg)(**{**cfg.__dict__, "epochs": args.epochs})
    trainer = Trainer(cfg, args.data, args.out, device=args.device, monitor_data=args.monitor)
    metrics = trainer.run(resume=args.resume)
    last = metrics[-1]
    print(f"done: {len(metrics)} epochs, R@1 {last['R@1']:.1f} R@5 {last['R@5']:.1f} -> {Path(args.out) / 'best.pt'}")
    return 0


def _eval(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from edge_geoloc.train.evaluation import evaluate_checkpoint, print_report

    report = evaluate_checkpoint(
        args.checkpoint, args.data, **pick(args, "protocols", "orientations", "max_queries", "seed", "verify")
    )
    print_report(report)
    if args.json:
        import json

        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.json}")
    return 0


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a cross-view model on a VIGOR-layout dataset")
    p.add_argument("--config", required=True, help="training config YAML (or a name in edge_geoloc/configs/train)")
    _dataset_option(p)
    p.add_argument("--out", required=True, help="run folder: checkpoints, metrics.csv/json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--epochs", type=int, default=0, help="override the config's number of epochs")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when present)")
    p.add_argument("--nproc", type=int, default=1, help="data-parallel processes (torchrun; one per GPU, gloo on CPUs)")
    p.add_argument(
        "--monitor",
        metavar="DIR",
        help="a second VIGOR-layout dataset whose cross-area test split is scored each epoch (curves only)",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("eval", help="retrieval, meter-level and heading metrics of a checkpoint")
    p.add_argument("--checkpoint", required=True)
    _dataset_option(p)
    p.add_argument(
        "--protocol",
        dest="protocols",
        nargs="+",
        default=["same_area", "cross_area"],
        choices=["same_area", "cross_area"],
    )
    p.add_argument(
        "--orientation", dest="orientations", nargs="+", default=["aligned", "unknown"], choices=["aligned", "unknown"]
    )
    p.add_argument("--max-queries", type=int, default=0, help="evaluate a seeded subset of queries (0: all)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noisy GPS priors and query subsets")
    p.add_argument(
        "--verify",
        type=_count,
        default=10,
        metavar="K",
        help="inside the +-100 m box, register the BEV against the top K candidates (the loop's refine stage; 0: off)",
    )
    p.add_argument("--json", help="write the report here")
    p.set_defaults(func=_eval)
