"""The drone branch: a query encoder for rectified drone patches, trained against the FROZEN aerial branch.

Why frozen: the maps on the devices hold descriptors of the aerial branch. A drone encoder trained
to land in that same descriptor space serves drones from the very maps the vehicles use, with no
rebuild. Only the drone branch learns; the aerial side is a fixed bank of map-tile descriptors,
computed once per training region by the map builder itself (the bundles the device would load).

Model: the aerial branch's architecture (same input size, patch grid and GSD: a rectified patch is
a small ortho image, like a tile), initialized from the aerial branch's weights, so it starts out
already matching nadir, well-lit patches and has to learn the rest: other times of day (shadows),
perspective and building lean, masked footprints, the drone lens's blur.

Samples: each drone frame of the University-1652-layout dataset (:mod:`edge_geoloc.data.uav_synth`)
is decoded once; a sample is a patch rectified from it (:class:`~edge_geoloc.cameras.rectify.Rectifier`,
the device's own code) around a tile the frame sees well, shifted by up to ``shift_m`` and turned by up
to ``rotation_jitter_deg`` (a yaw error). Its target is soft over the region's tiles: weight
``exp(-d^2 / 2 sigma^2)`` of the distance d between the patch centre and each tile centre (a patch
halfway between two tiles matches both), so the similarity falls off smoothly with misalignment and
the loop can read positions between tile centres from several shifted patches.

Loss: cross-entropy of that target against a softmax over every tile of every training region
(learned temperature), plus, for a share of the batch, a margin ranking term that asks the same
patch turned by 20 to 90 degrees to score lower on its tile than the upright one: the unknown-yaw
heading search (:mod:`edge_geoloc.localize.vision.uav`) relies on that peak.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edge_geoloc.cameras.rectify import GroundView, Rectifier, rotate_offsets
from edge_geoloc.cameras.uav import Mount, UavCamera
from edge_geoloc.config import check, load_config, to_mapping
from edge_geoloc.data.university1652 import University1652
from edge_geoloc.model.config import ModelConfig
from edge_geoloc.model.vit import ViTBranch
from edge_geoloc.train.augment import colour_jitter
from edge_geoloc.train.checkpoint import CheckpointError, load_checkpoint, model_config_of, save_checkpoint
from edge_geoloc.train.infer import to_tensor
from edge_geoloc.train.loop import machine

log = logging.getLogger(__name__)

DRONE_FORMAT = "edge-geoloc-drone/1"
CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"


@dataclass(frozen=True)
class DroneTrainConfig:
    epochs: int = field(default=6, metadata=check(lambda v: v > 0, "a positive number of epochs"))
    steps_per_epoch: int = field(default=250, metadata=check(lambda v: v > 0, "a positive number of steps"))
    batch_size: int = field(default=96, metadata=check(lambda v: v >= 2, "a batch size of at least 2"))
    lr: float = field(default=3e-4, metadata=check(lambda v: v > 0, "a positive learning rate"))
    weight_decay: float = 0.03
    warmup_steps: int = 100
    temperature: float = field(default=0.05, metadata=check(lambda v: v > 0, "a positive temperature"))
    sigma_m: float = field(default=8.0, metadata=check(lambda v: v > 0, "metres"))
    shift_m: float = field(default=16.0, metadata=check(lambda v: v >= 0, "metres"))
    rotation_jitter_deg: float = field(default=4.0, metadata=check(lambda v: 0 <= v <= 45, "degrees in [0, 45]"))
    rotation_negatives: float = field(default=0.25, metadata=check(lambda v: 0 <= v <= 1, "a share in [0, 1]"))
    rotation_margin: float = field(default=0.05, metadata=check(lambda v: v >= 0, "a similarity margin"))
    rotation_weight: float = field(default=1.0, metadata=check(lambda v: v >= 0, "a non-negative weight"))
    colour: float = field(default=0.2, metadata=check(lambda v: 0 <= v < 1, "a jitter strength in [0, 1)"))
    tiles_per_frame: int = field(default=8, metadata=check(lambda v: v >= 1, "a positive count"))
    min_visible: float = field(default=0.8, metadata=check(lambda v: 0 < v <= 1, "a share in (0, 1]"))
    val_samples: int = field(default=600, metadata=check(lambda v: v > 0, "a positive count"))
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0: all cores

    @classmethod
    def load(cls, path: str | Path) -> DroneTrainConfig:
        path = Path(path)
        if not path.suffix and (CONFIG_DIR / f"{path}.yaml").exists():
            path = CONFIG_DIR / f"{path}.yaml"
        return load_config(cls, path)


@dataclass
class Bank:
    """Frozen aerial descriptors of every tile of the training regions (from their map bundles)."""

    desc: np.ndarray  # (M, D) float32
    east: np.ndarray  # (M,)
    north: np.ndarray
    region_start: dict[str, tuple[int, int]]  # region -> [start, end) rows

    @classmethod
    def from_maps(cls, maps: dict[str, Path]) -> Bank:
        from edge_geoloc.maps import MapIndex

        desc, east, north, spans = [], [], [], {}
        n = 0
        for name, path in maps.items():
            index = MapIndex.open(path)
            d = np.asarray(index.desc, np.float32)
            desc.append(d / np.linalg.norm(d, axis=1, keepdims=True))
            tiles = np.asarray(index.bundle.tiles)
            east.append(np.asarray(tiles["east"], np.float64))
            north.append(np.asarray(tiles["north"], np.float64))
            spans[name] = (n, n + len(d))
            n += len(d)
        return cls(np.concatenate(desc), np.concatenate(east), np.concatenate(north), spans)


@dataclass
class FrameSet:
    """Decoded drone frames with their true poses and the tiles each sees well (candidate patch centres)."""

    images: np.ndarray  # (F, H, W, 3) uint8
    views: list[GroundView]
    nadir: np.ndarray  # (F, 2) grid east/north below the drone
    convergence: np.ndarray  # (F,) degrees
    region: list[str]
    pairs: np.ndarray  # (P, 2): frame index, bank row of a well-seen tile


def load_frames(
    ds: University1652, bank: Bank, rect: Rectifier, cfg: DroneTrainConfig, limit: int | None = None
) -> FrameSet:
    """Decode the frames of a split and list, per frame, up to ``tiles_per_frame`` well-seen tiles of its region."""
    if ds.poses is None or ds.camera is None:
        raise ValueError(f"{ds.root}: drone training needs the synthetic pose sidecar and camera.yaml")
    p = ds.poses
    n = len(ds) if limit is None else min(limit, len(ds))
    images, views, nadirs, convs, regions, pairs = [], [], [], [], [], []
    coarse = np.stack(np.meshgrid(np.linspace(-0.45, 0.45, 7), np.linspace(-0.45, 0.45, 7)), -1).reshape(-1, 2)
    side = rect.size_px * rect.gsd_m
    for i in tqdm(range(n), desc=f"decoding {ds.split} frames", unit="frame", leave=False):
        region = str(p["region"][i])
        if region not in bank.region_start:
            continue
        cam = UavCamera(lens=ds.camera.lens, mount=Mount(tilt_deg=float(p["mount_tilt_deg"][i])))
        yaw_grid = float(p["yaw_deg"][i] - p["convergence_deg"][i])
        R = cam.world_from_cam(float(p["roll_deg"][i]), float(p["pitch_deg"][i]), yaw_grid)
        view = GroundView(R, float(p["height_m"][i]))
        nadir = np.array([p["east"][i], p["north"][i]])
        a, b = bank.region_start[region]
        rel = np.stack([bank.east[a:b], bank.north[a:b]], 1) - nadir
        dist = np.hypot(rel[:, 0], rel[:, 1])
        near = np.nonzero(dist < 3.0 * view.height_m + side)[0]
        # Visible share of a patch at each nearby tile, from a coarse grid of its points.
        _, ok = rect.ground_to_pixels(view, rel[near][:, None, :] + coarse[None] * side)
        good = near[ok.mean(axis=1) >= cfg.min_visible]
        if len(good) == 0:
            continue
        good = good[np.argsort(dist[good])][: cfg.tiles_per_frame]
        pairs += [(len(images), a + j) for j in good]
        images.append(ds.street(i))
        views.append(view)
        nadirs.append(nadir)
        convs.append(float(p["convergence_deg"][i]))
        regions.append(region)
    if not images:
        raise ValueError(f"{ds.root} ({ds.split}): no frame sees a tile of the banked regions well enough")
    return FrameSet(np.stack(images), views, np.stack(nadirs), np.asarray(convs), regions, np.asarray(pairs))


class DroneSampler:
    """Patches for a batch: rectified from the frames (the device's code) with shifts and turns, and targets."""

    def __init__(self, frames: FrameSet, bank: Bank, rect: Rectifier, cfg: DroneTrainConfig) -> None:
        self.frames, self.bank, self.rect, self.cfg = frames, bank, rect, cfg

    def patch(self, f: int, centre_grid: np.ndarray, turn_deg: float) -> np.ndarray:
        fs = self.frames
        up = -float(fs.convergence[f]) + turn_deg  # true-north up, as the map's tiles, plus a yaw error
        return self.rect.rectify(fs.images[f], fs.views[f], (centre_grid - fs.nadir[f])[None], up).images[0]

    def batch(self, idx: np.ndarray, rng: np.random.Generator, augment: bool = True) -> dict[str, Any]:
        cfg, fs, bank = self.cfg, self.frames, self.bank
        patches, rotated, targets, rows, turn = [], [], [], [], []
        for k in idx:
            f, row = (int(v) for v in fs.pairs[k])
            shift_true = rng.uniform(-cfg.shift_m, cfg.shift_m, 2)
            shift = rotate_offsets(shift_true[None], float(fs.convergence[f]))[0]
            centre = np.array([bank.east[row], bank.north[row]]) + shift
            jitter = float(rng.uniform(-cfg.rotation_jitter_deg, cfg.rotation_jitter_deg)) if augment else 0.0
            img = self.patch(f, centre, jitter)
            if augment and cfg.colour > 0:
                img = colour_jitter(img, rng, cfg.colour)
            patches.append(img)
            a, b = bank.region_start[fs.region[f]]
            d2 = (bank.east[a:b] - centre[0]) ** 2 + (bank.north[a:b] - centre[1]) ** 2
            w = np.exp(-0.5 * d2 / cfg.sigma_m**2)
            w[w < 1e-4 * w.max()] = 0.0
            t = np.zeros(len(bank.desc), np.float32)
            t[a:b] = w / w.sum()
            targets.append(t)
            rows.append(row)
            if augment and rng.random() < cfg.rotation_negatives:
                r = float(rng.uniform(20.0, 90.0) * rng.choice([-1.0, 1.0]))
                rotated.append((len(patches) - 1, self.patch(f, centre, jitter + r)))
                turn.append(r)
        return {
            "patches": np.stack(patches),
            "targets": np.stack(targets),
            "rows": np.asarray(rows),
            "rotated_of": np.array([i for i, _ in rotated], np.int64),
            "rotated": np.stack([p for _, p in rotated]) if rotated else np.zeros((0, *patches[0].shape), np.uint8),
        }


def drone_branch_from(checkpoint: str | Path) -> tuple[ViTBranch, ModelConfig]:
    """A drone branch with the aerial branch's architecture and weights (the starting point)."""
    state = load_checkpoint(checkpoint)
    cfg = model_config_of(state, checkpoint)
    branch = ViTBranch(cfg, cfg.aerial)
    weights = {k[len("aerial.") :]: v.float() for k, v in state["model"].items() if k.startswith("aerial.")}
    branch.load_state_dict(weights)
    return branch, cfg


def load_drone(path: str | Path) -> tuple[ViTBranch, dict[str, Any]]:
    """The drone branch of a drone checkpoint (eval mode) and the checkpoint's state."""
    state = load_checkpoint(path)
    if state.get("drone_format") != DRONE_FORMAT:
        raise CheckpointError(f"{path}: not a drone-branch checkpoint (train one with edge-geoloc train-drone)")
    cfg = model_config_of(state, path)
    branch = ViTBranch(cfg, cfg.aerial)
    branch.load_state_dict({k: v.float() for k, v in state["drone"].items()})
    return branch.eval(), state


@torch.no_grad()
def evaluate_patches(
    branch: ViTBranch, sampler: DroneSampler, n: int, seed: int, spec: Any, batch: int = 128
) -> dict[str, float]:
    """Top-1 among the region's tiles (hit: the best tile is the nearest to the patch centre) and the
    metre error of the similarity-weighted top-4 tile centres, on shifted but unturned patches."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(sampler.frames.pairs), size=min(n, len(sampler.frames.pairs)), replace=False)
    branch.eval()
    hits, errs = [], []
    bank = sampler.bank
    for s in range(0, len(idx), batch):
        b = sampler.batch(idx[s : s + batch], rng, augment=False)
        q = branch(to_tensor(b["patches"], spec)).numpy()
        for k, f_row in enumerate(idx[s : s + batch]):
            f = int(sampler.frames.pairs[f_row][0])
            a, e = bank.region_start[sampler.frames.region[f]]
            sims = bank.desc[a:e] @ q[k]
            t = b["targets"][k, a:e]
            truth = np.array([t @ bank.east[a:e], t @ bank.north[a:e]])  # the patch centre (the target's mean)
            order = np.argsort(-sims)[:4]
            hits.append(order[0] == int(np.argmax(t)))
            w = np.exp((sims[order] - sims[order[0]]) / 0.02)
            w /= w.sum()
            est = np.array([w @ bank.east[a:e][order], w @ bank.north[a:e][order]])
            errs.append(float(np.hypot(*(est - truth))))
    errs_a = np.asarray(errs)
    return {"R@1": 100.0 * float(np.mean(hits)), "median_error_m": float(np.median(errs_a)), "n": len(idx)}


def train_drone(
    data: str | Path,
    model_dir: str | Path,
    checkpoint: str | Path,
    out: str | Path,
    cfg: DroneTrainConfig,
    maps: dict[str, Path],
    progress: bool = True,
) -> dict[str, Any]:
    """Train the drone branch (see the module docstring); writes ``out/drone.pt`` and ``out/metrics.json``."""
    from edge_geoloc.runtime.card import load_card, sha256_of

    t_start = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    card = load_card(model_dir)
    if card.checkpoint_sha256 and sha256_of(checkpoint) != card.checkpoint_sha256:
        raise ValueError(f"{checkpoint}: not the checkpoint {model_dir} was exported from (its aerial branch differs)")
    branch, mcfg = drone_branch_from(checkpoint)
    spec = card.input_spec("aerial")
    rect = Rectifier(University1652(data, "train").camera.lens, card.aerial.width, card.aerial.gsd_m)
    train_ds, test_ds = University1652(data, "train"), University1652(data, "test")
    bank = Bank.from_maps(maps)
    train_frames = load_frames(train_ds, bank, rect, cfg)
    val_frames = (
        load_frames(test_ds, bank, rect, cfg)
        if any(r in bank.region_start for r in set(test_ds.poses["region"]))
        else None
    )
    log.info(
        "training patches: %d (of %d frames); bank %d tiles",
        len(train_frames.pairs),
        len(train_frames.images),
        len(bank.desc),
    )
    sampler = DroneSampler(train_frames, bank, rect, cfg)
    val = DroneSampler(val_frames, bank, rect, cfg) if val_frames is not None else None
    log_t = torch.nn.Parameter(torch.tensor(math.log(cfg.temperature)))
    opt = torch.optim.AdamW([*branch.parameters(), log_t], lr=cfg.lr, weight_decay=cfg.weight_decay)
    bank_t = torch.from_numpy(bank.desc)
    total = cfg.epochs * cfg.steps_per_epoch
    metrics: list[dict[str, Any]] = []
    baseline = evaluate_patches(branch, val, cfg.val_samples, cfg.seed, spec) if val is not None else None
    if baseline is not None:
        log.info("before training (the aerial branch as the drone encoder): %s", baseline)
    step = 0
    for epoch in range(cfg.epochs):
        bar = tqdm(
            range(cfg.steps_per_epoch), desc=f"drone epoch {epoch + 1}/{cfg.epochs}", unit="step", disable=not progress
        )
        running: dict[str, float] = {}
        for s in bar:
            rng = np.random.default_rng((cfg.seed, epoch, s))
            idx = rng.integers(0, len(train_frames.pairs), cfg.batch_size)
            b = sampler.batch(idx, rng)
            lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup_steps) * 0.5 * (1 + math.cos(math.pi * step / total))
            for g in opt.param_groups:
                g["lr"] = lr
            branch.train()
            images = b["patches"] if not len(b["rotated"]) else np.concatenate([b["patches"], b["rotated"]])
            q = branch(to_tensor(images, spec))
            qa, qr = q[: cfg.batch_size], q[cfg.batch_size :]
            sims = qa @ bank_t.T
            target = torch.from_numpy(b["targets"])
            loss_ce = -(target * F.log_softmax(sims / log_t.exp(), dim=1)).sum(1).mean()
            loss = loss_ce
            parts = {"ce": float(loss_ce.detach())}
            if len(qr):
                of = torch.from_numpy(b["rotated_of"])
                s_up = (sims[of] * target[of]).sum(1)
                s_rot = ((qr @ bank_t.T) * target[of]).sum(1)
                loss_rot = F.softplus((s_rot - s_up + cfg.rotation_margin) / 0.02).mean() * 0.02
                loss = loss + cfg.rotation_weight * loss_rot
                parts["rot"] = float(loss_rot.detach())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            parts["loss"] = float(loss.detach())
            for k, v in parts.items():
                running[k] = 0.9 * running.get(k, v) + 0.1 * v
            bar.set_postfix(loss=f"{running['loss']:.3f}", T=f"{log_t.detach().exp().item():.3f}")
        row: dict[str, Any] = {"epoch": epoch + 1, "elapsed_s": round(time.time() - t_start, 1), **running}
        row["temperature"] = float(log_t.detach().exp())
        if val is not None:
            row.update(
                {f"val_{k}": v for k, v in evaluate_patches(branch, val, cfg.val_samples, cfg.seed, spec).items()}
            )
        metrics.append(row)
        log.info(
            "drone epoch %d: %s",
            epoch + 1,
            json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
        )
        state = {
            "model_config": to_mapping(mcfg),
            "drone_format": DRONE_FORMAT,
            "drone": {k: v.half() if v.is_floating_point() else v for k, v in branch.state_dict().items()},
            "aerial_sha256": card.aerial.sha256,
            "aerial_checkpoint_sha256": sha256_of(checkpoint),  # the weights it pairs with, whatever their export
            "init_checkpoint": str(checkpoint),
            "rectified": {"size_px": rect.size_px, "gsd_m": rect.gsd_m, "max_off_nadir_deg": rect.max_off_nadir_deg},
            "trained_altitude_m": [float(train_ds.poses["height_m"].min()), float(train_ds.poses["height_m"].max())],
            "trained_tilt_deg": [
                float(train_ds.poses["mount_tilt_deg"].min()),
                float(train_ds.poses["mount_tilt_deg"].max()),
            ],
            "train_config": to_mapping(cfg),
            "dataset": str(data),
            "maps": {k: str(v) for k, v in maps.items()},
            "metrics": metrics,
            "baseline_aerial_branch": baseline,
            "machine": machine(),
        }
        save_checkpoint(out / "drone.pt", state)
    (out / "metrics.json").write_text(json.dumps({"baseline_aerial_branch": baseline, "epochs": metrics}, indent=1))
    return {"baseline_aerial_branch": baseline, "final": metrics[-1]}
