"""`edge-geoloc dataset synth|uav|info`: write a synthetic VIGOR-layout (or, for drones, University-1652-layout)
dataset, or open and summarize one."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_geoloc.config import pick


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="write or inspect datasets (VIGOR and CVUSA layouts)")
    actions = parser.add_subparsers(dest="dataset_action", metavar="ACTION", required=True)

    synth = actions.add_parser(
        "synth",
        help="render a dataset in VIGOR's layout from synthetic regions (one region = one city)",
        description="Deterministic in config and seed; resumable: a rerun with the same arguments skips finished images.",
    )
    _render_options(
        synth,
        "SynthConfig YAML (see edge_geoloc/data/synth.py)",
        "rendering processes (default 2)",
        "dataset seed (positions, appearances, splits)",
    )
    synth.add_argument("--regions", nargs="+", metavar="YAML", help="region files, overriding the config's")
    synth.add_argument("--panoramas", type=int, metavar="N", help="panoramas per city (default 200)")
    synth.set_defaults(func=_synth)

    uav = actions.add_parser(
        "uav",
        help="render drone frames in the University-1652 layout from synthetic regions (one tile = one building)",
        description="Deterministic in config and seed; resumable. See edge_geoloc/data/uav_synth.py.",
    )
    _render_options(uav, "UavSynthConfig YAML", "rendering processes, one region each (default 2)", "dataset seed")
    uav.add_argument("--train-regions", nargs="+", metavar="YAML", help="regions of the train split")
    uav.add_argument("--test-regions", nargs="+", metavar="YAML", help="held-out regions (test split)")
    uav.add_argument("--frames", type=int, help="drone frames per training region (default 300)")
    uav.add_argument("--test-frames", type=int, help="drone frames per held-out region (default 100)")
    uav.set_defaults(func=_uav)

    info = actions.add_parser("info", help="open every split of a VIGOR- or CVUSA-layout dataset and summarize it")
    info.add_argument("dir", type=Path)
    info.add_argument("--no-file-check", action="store_true", help="do not check that every image file exists")
    info.set_defaults(func=_info)


def _render_options(parser: argparse.ArgumentParser, config_help: str, workers_help: str, seed_help: str) -> None:
    """What both renderers take: the dataset folder, a config, worker processes, a seed, progress bars."""
    parser.add_argument("--out", required=True, type=Path, help="dataset folder (created; resumed if it exists)")
    parser.add_argument("--config", type=Path, help=config_help)
    parser.add_argument("--workers", type=int, default=2, help=workers_help)
    parser.add_argument("--seed", type=int, help=seed_help)
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def _synth(args: argparse.Namespace) -> int:
    from edge_geoloc.data.synth import load_synth_config, synthesize

    cfg = load_synth_config(args.config, **pick(args, "regions", "panoramas", "seed"))
    report = synthesize(cfg, args.out, workers=args.workers, progress=not args.no_progress)
    print(report.summary())
    return 0


def _uav(args: argparse.Namespace) -> int:
    from edge_geoloc.data.uav_synth import load_uav_synth_config, synthesize_uav

    options = pick(args, "train_regions", "test_regions", "frames", "test_frames", "seed")
    cfg = load_uav_synth_config(args.config, **options)
    print(synthesize_uav(cfg, args.out, workers=args.workers, progress=not args.no_progress))
    return 0


def _info(args: argparse.Namespace) -> int:
    from edge_geoloc.data.cvusa import SPLIT_FILES, CvusaDataset
    from edge_geoloc.data.vigor import LABEL_FILES, VigorDataset, dataset_cities, read_metadata

    root: Path = args.dir
    check = not args.no_file_check
    if any((root / "splits" / f).is_file() for f in SPLIT_FILES.values()):
        for split, name in SPLIT_FILES.items():
            if (root / "splits" / name).is_file():
                print(CvusaDataset(root, split, check_files=check))  # type: ignore[arg-type]
        return 0
    meta = read_metadata(root)
    print(
        f"{root}: VIGOR layout, " + (meta.generator if meta else "no edge_geoloc.yaml (the real download's defaults)")
    )
    for city in dataset_cities(root):
        for split in LABEL_FILES:
            print(" ", VigorDataset(root, [city], split, check_files=check))  # type: ignore[arg-type]
    return 0
