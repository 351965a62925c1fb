"""Training throughput at the scale of real data: the streaming loader, a training step, the loader's RAM.

Three parts, side by side in one run:

1. Streaming decode: images/s of VIGOR-sized files (1024x2048 JPEG panoramas -> 320x640, 640x640 PNG
   satellite tiles -> 320x320; ``train/stream.py``'s DecodedImages: OpenCV decode + the one resize) in
   the main process and in 1 and 2 DataLoader workers.
2. Training step: pairs/s and images/s (street + aerial) of ``Trainer.step`` (forward, backward, AdamW)
   for ``tiny``, ``transgeo-cvusa`` and ``transgeo-vigor`` on random batches, this CPU, float32.
3. RAM at scale: a VIGOR-layout split of 100,000 panoramas and 90,000 satellite tiles (synthesized label
   and satellite lists whose files are links to a few real-size images), opened, streamed at
   transgeo-vigor's sizes and batched (overlap-free batches of 16, 2 workers, with augmentation): peak
   resident memory of the main process and of each worker, against what the in-memory path
   (``train/pairs.py``) would hold for the same split.

``--quick`` (what ``make test`` runs): a few images, ``tiny`` only, a 2,000-entry split; under a minute.

    python benchmarks/train_throughput.py [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from _results import load_line, write_json, write_markdown  # benchmarks/_results.py (the script's folder)

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "train_throughput.json"
PANO_HW, SAT_PX = (1024, 2048), 640  # VIGOR's stored sizes
STREET_HW, AERIAL_HW = (320, 640), (320, 320)  # transgeo-vigor's inputs


def photo_like(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth structure plus fine noise: compresses (and decodes) about as a photograph does."""
    coarse = rng.integers(0, 256, (h // 32, w // 32, 3), dtype=np.uint8)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    return np.clip(img + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)


def write_images(folder: Path, n: int, seed: int = 0) -> tuple[list[Path], list[Path]]:
    """``n`` VIGOR-sized panoramas (JPEG) and satellite tiles (PNG)."""
    from edge_geoloc.data.sample import write_rgb

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    panos, sats = [], []
    for i in range(n):
        panos.append(folder / f"pano{i}.jpg")
        write_rgb(panos[-1], photo_like(rng, *PANO_HW))
        sats.append(folder / f"sat{i}.png")
        write_rgb(sats[-1], photo_like(rng, SAT_PX, SAT_PX))
    return panos, sats


class Files:
    """A picklable reader: image i of a list of files (what DataLoader workers call)."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __call__(self, i: int) -> np.ndarray:
        from edge_geoloc.data.sample import read_rgb

        return read_rgb(self.paths[i])


def decode_rates(panos: list[Path], sats: list[Path], workers: list[int], repeat: int) -> list[dict]:
    from edge_geoloc.train.stream import DecodedImages, image_batches

    rows = []
    for kind, paths, hw in (("panorama", panos, STREET_HW), ("satellite", sats, AERIAL_HW)):
        images = DecodedImages(Files(paths), len(paths), hw)
        order = np.tile(np.arange(len(paths)), repeat)
        for w in workers:
            t = time.perf_counter()
            n = sum(len(b) for b in image_batches(images, order, 8, w))
            dt = time.perf_counter() - t
            rows.append({"part": "decode", "what": f"{kind} -> {hw[0]}x{hw[1]}", "workers": w, "images_per_s": n / dt})
    return rows


def step_rates(models: list[tuple[str, int, int]], tmp: Path) -> list[dict]:
    """(recipe, batch, timed steps): the recipe's model, float32 on this CPU (gpu_train.py's timing)."""
    from gpu_train import throughput  # benchmarks/gpu_train.py (the script's folder)

    rows = []
    for recipe, batch, steps in models:
        r = throughput(recipe, None, batch, steps, "fp32", "cpu", tmp)
        rows.append({**r, "part": "step", "what": r["model"], "s_per_step": batch * 2 / r["images_per_s"],
                     "pairs_per_s": r["images_per_s"] / 2})  # fmt: skip
    return rows


def vigor_split(root: Path, n_pano: int, n_sat: int, panos: list[Path], sats: list[Path], seed: int = 0) -> None:
    """A one-city VIGOR-layout split: satellites on a grid, each panorama near one, its 4 nearest tiles as labels;
    the image files are links to a few real-size images."""
    from edge_geoloc.data.vigor import format_label_line, label_deltas, pano_filename, satellite_filename

    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n_sat)))
    step = 0.0003  # about VIGOR's tile spacing (degrees)
    cell = np.arange(n_sat)
    sat_lat, sat_lon = 40.7 + (cell // side) * step, -74.0 + (cell % side) * step
    city = "NewYork"
    (root / "splits" / city).mkdir(parents=True)
    (root / city / "satellite").mkdir(parents=True)
    (root / city / "panorama").mkdir(parents=True)
    sat_names = [satellite_filename(a, o) for a, o in zip(sat_lat, sat_lon)]
    (root / "splits" / city / "satellite_list.txt").write_text("\n".join(sat_names) + "\n")
    for j, name in enumerate(sat_names):
        os.symlink(sats[j % len(sats)], root / city / "satellite" / name)
    home = rng.integers(0, n_sat, n_pano)
    lines = []
    for i, j in enumerate(home):
        lat, lon = sat_lat[j] + rng.uniform(-step / 2, step / 2), sat_lon[j] + rng.uniform(-step / 2, step / 2)
        ring = [j, min(j + 1, n_sat - 1), min(j + side, n_sat - 1), max(j - 1, 0)]
        name = pano_filename(f"p{i}", lat, lon)
        os.symlink(panos[i % len(panos)], root / city / "panorama" / name)
        deltas = label_deltas(lat, lon, sat_lat[ring], sat_lon[ring])
        lines.append(format_label_line(name, [sat_names[k] for k in ring], deltas))
    (root / "splits" / city / "same_area_balanced_train.txt").write_text("\n".join(lines) + "\n")


def status_kb(pid: int | str = "self", key: str = "VmHWM", table: str = "status") -> int:
    """A /proc/PID/<table> figure in kB: status VmHWM is the peak resident set; smaps_rollup Private_Dirty the
    pages only this process holds (a forked worker's own, not those it still shares with its parent)."""
    for line in Path(f"/proc/{pid}/{table}").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    return 0


def ram_at_scale(root: Path, n_pano: int, n_sat: int, batches: int) -> dict:
    """Peak RSS of streaming a VIGOR-sized split (main process and workers) vs the in-memory projection."""
    from edge_geoloc.data.vigor import VigorDataset
    from edge_geoloc.model.config import load_model_config
    from edge_geoloc.train.config import AugmentConfig, TrainConfig
    from edge_geoloc.train.loop import make_batch
    from edge_geoloc.train.sampler import GeoBatchSampler
    from edge_geoloc.train.stream import (
        BatchKey,
        StepKeys,
        StreamedBatches,
        batch_loader,
        projected_bytes,
        stream_pairs,
    )

    Path("/proc/self/clear_refs").write_text("5")  # peak RSS mark := current RSS
    base = status_kb()
    t = time.perf_counter()
    ds = VigorDataset(root, ["NewYork"], "same_area_train", check_files=False)
    pairs = stream_pairs(ds, STREET_HW, AERIAL_HW, tile_m=ds.tile_m)
    t_open = time.perf_counter() - t
    # No GPS neighbours here: their lists cost O(N^2) time to build (reported apart), not memory.
    sampler = GeoBatchSampler(pairs.street_en, pairs.label, 16, neighbours=0, seed=0)
    t = time.perf_counter()
    epoch = sampler.batches(0)
    t_epoch = time.perf_counter() - t
    mcfg = load_model_config("transgeo-vigor")
    cfg = TrainConfig(model="transgeo-vigor", batch_size=16, augment=AugmentConfig(colour=0.2))
    keys = StepKeys()
    loader = batch_loader(StreamedBatches(make_batch, pairs, 0, mcfg=mcfg, cfg=cfg, with_semi=False), keys, 2, False)
    keys.keys = [BatchKey(0, s, epoch[s], slice(None)) for s in range(batches)]
    it = iter(loader)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    t_batches = time.perf_counter() - t
    procs = it._workers  # private, but the one handle on the worker processes
    workers, private = (
        [status_kb(w.pid) for w in procs],
        [status_kb(w.pid, "Private_Dirty", "smaps_rollup") for w in procs],
    )
    main = status_kb() - base
    projected = projected_bytes(ds, STREET_HW, AERIAL_HW)
    return {
        "part": "ram", "what": f"VIGOR-sized split: {len(ds)} panoramas, {ds.num_aerial} tiles",
        "open_s": t_open, "epoch_batches_s": t_epoch, "batches_per_epoch": len(epoch),
        "batch_images_per_s": batches * 16 * 2 / t_batches,
        "main_peak_added_mb": main / 1024, "worker_peak_mb": [w / 1024 for w in workers],
        "worker_private_mb": [w / 1024 for w in private],
        "in_memory_projected_gb": projected / 1e9,
    }  # fmt: skip


def neighbour_time(n: int) -> dict:
    """The GPS-neighbour lists (pool 256) of n random positions: O(n^2) distance rows."""
    from edge_geoloc.train.sampler import neighbour_lists

    pos = np.random.default_rng(0).uniform(0, 5000, (n, 2))
    t = time.perf_counter()
    neighbour_lists(pos, 256)
    return {"part": "neighbours", "what": f"neighbour lists of {n} panoramas", "s": time.perf_counter() - t}


def table(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if r["part"] == "decode":
            out.append(f"decode   {r['what']:<28} workers {r['workers']}: {r['images_per_s']:8.1f} images/s")
        elif r["part"] == "step":
            out.append(
                f"step     {r['what']:<16} batch {r['batch']:>3}: {r['s_per_step']:7.2f} s/step  "
                f"{r['pairs_per_s']:7.2f} pairs/s  {r['images_per_s']:7.2f} images/s"
            )
        elif r["part"] == "neighbours":
            out.append(f"sampler  {r['what']}: {r['s']:.1f} s")
        else:
            out.append(
                f"ram      {r['what']}: opened in {r['open_s']:.1f} s, one epoch's batches in "
                f"{r['epoch_batches_s']:.1f} s ({r['batches_per_epoch']} of 16), batches built at "
                f"{r['batch_images_per_s']:.1f} images/s (2 workers);\n         peak RSS added: main "
                f"{r['main_peak_added_mb']:.0f} MB, workers {', '.join(f'{w:.0f}' for w in r['worker_peak_mb'])} MB "
                f"(with what they share with the parent; their own {', '.join(f'{w:.0f}' for w in r['worker_private_mb'])} MB);\n"
                f"         the in-memory path would hold {r['in_memory_projected_gb']:.1f} GB"
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, tiny model only (under a minute)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    before, started = os.getloadavg()[0], time.perf_counter()
    q = args.quick
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        panos, sats = write_images(tmp / "images", 4 if q else 24)
        rows = decode_rates(panos, sats, [0, 1, 2], repeat=1 if q else 4)
        models = (
            [("tiny-demo", 8, 2)] if q else [("tiny-demo", 32, 5), ("transgeo-cvusa", 4, 3), ("transgeo-vigor", 4, 3)]
        )
        rows += step_rates(models, tmp)
        n_pano, n_sat = (2_000, 1_800) if q else (100_000, 90_000)
        vigor_split(tmp / "vigor", n_pano, n_sat, panos, sats)
        rows.append(ram_at_scale(tmp / "vigor", n_pano, n_sat, batches=2 if q else 12))
        rows.append(neighbour_time(2_000 if q else 20_000))
    text = table(rows)
    notes = [
        load_line(before),
        "shared machine: a long training job ran on the same 2 vCPUs throughout" if not q else "quick run",
        "decode: OpenCV imdecode + INTER_AREA resize per image; images/s over all workers",
        "step: float32 on this CPU, random inputs, each model's recipe (loss, AdamW); images/s counts street + aerial",
        "ram: VmHWM (peak RSS) of each process, the workers' including pages shared with the parent (fork); private = Private_Dirty after the batches",
    ]
    print(text)
    print("\n".join(notes))
    write_json(args.json, rows, notes, started, quick=q)
    if not q:
        write_markdown(args.json.with_suffix(".md"), "Training throughput (benchmarks/train_throughput.py)", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
