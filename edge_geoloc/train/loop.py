"""The training loop: deterministic, resumable, validated every epoch.

Determinism: weights are initialized from ``seed``; epoch e's batches come from
``GeoBatchSampler(seed).batches(e)`` and step s's augmentations from
``default_rng((seed, e, s))``; the learning rate is a pure function of the global step. So a run
stopped after any saved step and resumed with ``--resume`` continues exactly as if it had never
stopped (no RNG state to restore).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from edge_geoloc.config import to_mapping
from edge_geoloc.data.vigor import VigorDataset, open_protocol
from edge_geoloc.evaluate import retrieval_metrics
from edge_geoloc.model.config import ModelConfig, load_model_config
from edge_geoloc.model.losses import iou_semi_positive, make_retrieval_loss, offset_l2
from edge_geoloc.model.pretrained import apply_init
from edge_geoloc.model.vit import CrossViewModel, resize_pos_embed
from edge_geoloc.train.augment import apply_jitter, circular_shift, jitter_factors, mirror, rotate90
from edge_geoloc.train.checkpoint import load_checkpoint, load_model, model_state, save_checkpoint
from edge_geoloc.train.config import TrainConfig
from edge_geoloc.train.curves import plot_curves
from edge_geoloc.train.distributed import (
    ONE_PROCESS,
    DistContext,
    DistributedGeoBatchSampler,
    gather,
    init_distributed,
    wrap,
)
from edge_geoloc.train.infer import crop_fov, encode_aerial, encode_street, input_specs, to_tensor
from edge_geoloc.train.offset_fit import fit_offset_head
from edge_geoloc.train.pairs import PairSet, has_positions, load_pairs
from edge_geoloc.train.sampler import GeoBatchSampler, mine_lookalikes
from edge_geoloc.train.stream import (
    BatchKey,
    StepKeys,
    StreamedBatches,
    batch_loader,
    image_batches,
    is_streamed,
    open_pairs,
    open_split,
)
from edge_geoloc.train.trunk_cache import TrunkFeatures, cache_trunk, roll_quarters

log = logging.getLogger(__name__)


STAGE2_KEEP_RATIO = 0.64  # TransGeo's zoom: 256 -> 320 px (CVUSA), 320 -> 400 px (VIGOR) keeps 0.8^2 of the patches


def model_config_for(cfg: TrainConfig) -> ModelConfig:
    mcfg = load_model_config(cfg.model)
    if cfg.fov_deg is not None:
        mcfg = mcfg.with_(fov_deg=cfg.fov_deg)
    if cfg.stage == 2:
        return zoomed(mcfg, cfg.keep_ratio or STAGE2_KEEP_RATIO)
    if cfg.keep_ratio is not None:
        mcfg = mcfg.with_(keep_ratio=cfg.keep_ratio)
    return mcfg


def zoomed(mcfg: ModelConfig, keep_ratio: float) -> ModelConfig:
    """TransGeo's attend-and-zoom-in: the aerial input enlarged by 1/sqrt(keep_ratio) (whole patches), the
    least-attended patches pruned, so the branch keeps stage 1's token count at a finer GSD."""
    a = mcfg.aerial
    side = lambda px: max(a.patch, round(px / math.sqrt(keep_ratio) / a.patch) * a.patch)  # noqa: E731
    return mcfg.with_(aerial=replace(a, height=side(a.height), width=side(a.width)), keep_ratio=keep_ratio)


def load_init(model: CrossViewModel, path: str) -> None:
    """Start from a checkpoint of the same model (another FoV, keep ratio or aerial input size allowed: the
    aerial position embedding is resized to the new patch grid); another model's checkpoint is refused."""
    init_model, _ = load_model(path)
    mcfg = model.cfg
    if init_model.cfg.with_(keep_ratio=mcfg.keep_ratio, fov_deg=mcfg.fov_deg, aerial=mcfg.aerial) != mcfg:
        raise ValueError(f"{path}: initial weights are of model config '{init_model.cfg.name}', not '{mcfg.name}'")
    weights = init_model.state_dict()
    for branch, name in ((init_model.street, "street"), (init_model.aerial, "aerial")):
        new = getattr(model, name)
        key = f"{name}.pos_embed"
        weights[key] = resize_pos_embed(weights[key], branch.branch.grid, new.branch.grid, new.n_special)
    model.load_state_dict(weights, strict=False)


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


@dataclass
class Batch:
    street: torch.Tensor
    aerial: torch.Tensor  # positives, then semi-positives when needed
    offset_m: torch.Tensor  # (2B or B, 2) of the aerial rows
    iou: torch.Tensor  # (2B or B,)
    bev: torch.Tensor | None = None  # cached trunk features of the panoramas' ground views (BEV models)

    def pin_memory(self) -> Batch:
        """Page-locked copies (a DataLoader with ``pin_memory`` calls this in its pinning thread)."""
        pin = lambda t: None if t is None else t.pin_memory()  # noqa: E731
        return Batch(pin(self.street), pin(self.aerial), pin(self.offset_m), pin(self.iou), pin(self.bev))


@dataclass(frozen=True)
class Draw:
    """One query's augmentation: semi-positive column, quarter turns, mirror, panorama shift, colour factors."""

    k: int
    turn: int = 0
    flip: bool = False
    shift: int = 0
    jitter: tuple[tuple[float, float, float], ...] = ()


def draw_augment(cfg: TrainConfig, rng: np.random.Generator, width: int) -> Draw:
    """The random draws of one query, in the order the batch has always made them (so seeds keep their batches)."""
    aug = cfg.augment
    k = int(rng.integers(1, 4))
    turn = int(rng.integers(4)) if aug.rotate90 else 0
    flip = bool(aug.mirror and rng.random() < 0.5)
    shift = int(rng.integers(width)) if cfg.orientation == "unknown" else 0
    jitter = tuple(jitter_factors(rng, aug.colour) for _ in range(3)) if aug.colour > 0 else ()
    return Draw(k, turn, flip, shift, jitter)


def make_batch(
    pairs: PairSet,
    idx: np.ndarray,
    mcfg: ModelConfig,
    cfg: TrainConfig,
    rng: np.random.Generator,
    with_semi: bool,
    rows: slice = slice(None),
) -> Batch:
    """Augmented, normalized tensors for a batch of query indices (see augment.py for the geometry).

    ``rows``: build only these positions of ``idx`` (a data-parallel rank's share). The draws are made
    for the whole batch first, so a share equals the same rows of the whole batch."""
    draws = [draw_augment(cfg, rng, pairs.street.shape[2]) for _ in idx]
    streets, pos, semi, off_p, off_s, iou_p, iou_s = [], [], [], [], [], [], []
    for i, d in zip(idx[rows], draws[rows]):
        street = pairs.street[i]
        a0 = pairs.aerial[pairs.label[i, 0]]
        a1 = pairs.aerial[pairs.label[i, d.k]] if with_semi else a0  # unused without semi-positives
        o = np.stack([pairs.offset_m[i, 0], pairs.offset_m[i, d.k]])
        if d.turn:
            street, a0, o = rotate90(street, a0, o, d.turn)
            a1 = np.rot90(a1, k=-d.turn, axes=(0, 1))
        if d.flip:
            street, a0, o = mirror(street, a0, o)
            a1 = a1[:, ::-1]
        if cfg.orientation == "unknown":
            street, _ = circular_shift(street, d.shift)
        if d.jitter:
            street, a0, a1 = (apply_jitter(x, f) for x, f in zip((street, a0, a1), d.jitter))
        streets.append(street)
        pos.append(a0)
        semi.append(a1)
        off_p.append(o[0])
        off_s.append(o[1])
        iou_p.append(pairs.iou[i, 0])
        iou_s.append(pairs.iou[i, d.k])
    s_spec, a_spec = input_specs(mcfg)
    aerial = np.stack(pos + semi) if with_semi else np.stack(pos)
    offsets = np.stack(off_p + off_s) if with_semi else np.stack(off_p)
    ious = np.asarray(iou_p + iou_s) if with_semi else np.asarray(iou_p)
    return Batch(
        street=to_tensor(crop_fov(np.stack(streets), mcfg), s_spec),
        aerial=to_tensor(np.ascontiguousarray(aerial), a_spec),
        offset_m=torch.tensor(offsets, dtype=torch.float32),
        iou=torch.tensor(ious, dtype=torch.float32),
    )


def make_feature_batch(
    pairs: PairSet, feats: TrunkFeatures, idx: np.ndarray, cfg: TrainConfig, rng: np.random.Generator, with_semi: bool
) -> Batch:
    """A batch of cached trunk features: the scene turned by a random quarter turn per sample
    (the tile's features of that rotation, the panorama's columns rolled; see trunk_cache.py)."""
    streets, aerials, offsets, ious = [], [], [], []
    rows = [(i, 0) for i in idx] + ([(i, int(rng.integers(1, 4))) for i in idx] if with_semi else [])
    turns = {int(i): int(rng.integers(4)) if cfg.augment.rotate90 else 0 for i in idx}
    for i, k in rows:
        r = turns[int(i)]
        aerials.append(feats.aerial[r, pairs.label[i, k]])
        o = pairs.offset_m[i, k]
        for _ in range(r):
            o = np.array([o[1], -o[0]])
        offsets.append(o)
        ious.append(pairs.iou[i, k])
    for i in idx:
        street = torch.from_numpy(feats.street[i].astype(np.float32))
        streets.append(roll_quarters(street, turns[int(i)]))
    bev = None
    if feats.bev is not None:  # the ground view turns with the scene, like the tile
        bev = torch.from_numpy(np.stack([feats.bev[turns[int(i)], i] for i in idx]).astype(np.float32))
    return Batch(
        street=torch.stack(streets),
        aerial=torch.from_numpy(np.stack(aerials).astype(np.float32)),
        offset_m=torch.tensor(np.stack(offsets), dtype=torch.float32),
        iou=torch.tensor(np.asarray(ious), dtype=torch.float32),
        bev=bev,
    )


@torch.no_grad()
def encode_features(branch: torch.nn.Module, feats: np.ndarray, batch: int = 512, device: str = "cpu") -> np.ndarray:
    """Descriptors (N, D) of cached trunk features."""
    branch.eval()
    out = [
        branch(torch.from_numpy(feats[s : s + batch].astype(np.float32)).to(device), from_trunk=True).float().cpu()
        for s in range(0, len(feats), batch)
    ]
    return torch.cat(out).numpy()


@torch.no_grad()
def encode_street_features(
    model: CrossViewModel, feats: TrunkFeatures, idx: np.ndarray | None = None, batch: int = 512, device: str = "cpu"
) -> np.ndarray:
    """Street descriptors (N, D) of cached trunk features (fused with the ground views' for a BEV model)."""
    model.eval()
    idx = np.arange(len(feats.street)) if idx is None else idx
    tensor = lambda a: torch.from_numpy(a.astype(np.float32)).to(device)  # noqa: E731
    out = []
    for s in range(0, len(idx), batch):
        rows = idx[s : s + batch]
        bev = tensor(feats.bev[0, rows]) if feats.bev is not None else None
        out.append(model.encode_street(tensor(feats.street[rows]), from_trunk=True, bev_trunk=bev).float().cpu())
    return torch.cat(out).numpy()


def encode_split(
    model: CrossViewModel,
    pairs: PairSet,
    queries: np.ndarray,
    device: str = "cpu",
    ctx: DistContext = ONE_PROCESS,
    workers: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Descriptors of some queries and of every reference, each rank encoding its part (streamed splits
    decoded by ``workers``); every rank gets all of them, in order."""
    if not ctx.active and not is_streamed(pairs):
        return encode_street(model, pairs.street[queries], device=device), encode_aerial(
            model, pairs.aerial, device=device
        )

    def part(images: Any, rows: np.ndarray, street: bool) -> np.ndarray:
        enc = encode_street if street else encode_aerial
        out = [enc(model, b, device=device) for b in image_batches(images, ctx.part(rows), 128, workers)]
        return ctx.gather_rows(np.concatenate(out) if out else np.zeros((0, model.cfg.descriptor_dim), np.float32))

    return part(pairs.street, queries, True), part(pairs.aerial, np.arange(len(pairs.aerial)), False)


def validate(
    model: CrossViewModel,
    val: PairSet,
    n_queries: int,
    seed: int,
    device: str = "cpu",
    feats: TrunkFeatures | None = None,
    ctx: DistContext = ONE_PROCESS,
    workers: int = 0,
) -> dict[str, float]:
    """Recall of a fixed query subset against every reference of the validation cities (from cached
    trunk features when given: the same numbers as from the images, faster); on several ranks each
    encodes its part."""
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(len(val), size=min(n_queries, len(val)), replace=False))
    if feats is not None:
        s = encode_street_features(model, feats, q, device=device)
        a = encode_features(model.aerial, feats.aerial[0], device=device)
    else:
        s, a = encode_split(model, val, q, device, ctx, workers)
    return retrieval_metrics(s @ a.T, val.label[q, 0], val.label[q, 1:])


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """The autocast dtype for a precision setting on a device (None: float32 throughout). ``auto`` keeps
    CPUs in float32 and takes bf16 on GPUs that have it (Ampere, Hopper), fp16 with a scaler otherwise."""
    if precision == "fp32" or (precision == "auto" and not device.startswith("cuda")):
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if precision == "fp16" and not device.startswith("cuda"):
        raise ValueError("precision fp16 needs a CUDA device (its gradient scaler); use bf16 or fp32 on a CPU")
    return torch.bfloat16 if precision == "bf16" else torch.float16


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


class Trainer:
    def __init__(
        self,
        cfg: TrainConfig,
        data_root: str | Path,
        out_dir: str | Path,
        device: str | None = None,
        monitor_data: str | Path | None = None,
    ) -> None:
        """``monitor_data``: a second dataset whose cross-area test split is scored every epoch for the
        curves (``monitor_R@1`` ...), never for choosing the best checkpoint."""
        self.cfg = cfg
        self.root = Path(data_root)
        self.out = Path(out_dir)
        self.monitor_root = Path(monitor_data) if monitor_data else None
        self.dist, self.device = init_distributed(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.mcfg = model_config_for(cfg)
        torch.manual_seed(cfg.seed)
        self.model = CrossViewModel(self.mcfg)
        self.init_report = apply_init(self.model)
        self._freeze()
        if cfg.init:
            load_init(self.model, cfg.init)
        self.model.to(self.device)
        self.loss_fn = make_retrieval_loss(cfg.loss.name, **cfg.loss.retrieval_kwargs()).to(self.device)
        params = list(self.model.parameters()) + list(self.loss_fn.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.with_semi = cfg.loss.iou_weight > 0 or cfg.loss.offset_weight > 0
        self.net = wrap(self.model, self.dist, self.device, cfg.loss.offset_weight > 0 and self.with_semi)
        self.autocast_dtype = autocast_dtype(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.autocast_dtype == torch.float16)

    def _freeze(self) -> None:
        if not self.mcfg.pretrained_stem:
            if self.cfg.freeze_blocks or self.cfg.trunk_cache:
                raise ValueError(
                    f"freeze_blocks / trunk_cache need a pretrained stem; model '{self.mcfg.name}' has stem {self.mcfg.stem!r}"
                )
            return
        for branch in (self.model.street, self.model.aerial):
            trunk = branch.patch_embed.trunk
            trunk.freeze(len(trunk._blocks) if self.cfg.trunk_cache else self.cfg.freeze_blocks)

    def load_data(self) -> tuple[PairSet, PairSet]:
        """Train and validation splits: VIGOR's layout (the protocol's cities), CVUSA's or University-1652's;
        held in memory or streamed (``data_loading``)."""
        sizes = ((self.mcfg.street.height, self.mcfg.street.width), (self.mcfg.aerial.height, self.mcfg.aerial.width))
        train_ds = open_split(self.root, "train", self.cfg.protocol, self.cfg.train_cities)
        val_ds = open_split(self.root, "test", self.cfg.protocol, self.cfg.val_cities)
        if isinstance(train_ds, VigorDataset) and abs(train_ds.tile_m - self.mcfg.tile_m) > 1e-6:
            raise ValueError(
                f"{self.root}: dataset tiles are {train_ds.tile_m:g} m but model '{self.mcfg.name}' expects "
                f"{self.mcfg.tile_m:g} m (its aerial GSD would be wrong)"
            )
        if self.cfg.neighbours > 0 and not has_positions(train_ds):
            raise ValueError(f"{self.root}: {train_ds} has no query positions; set neighbours: 0 in the config")
        log.info("train %s", train_ds)
        log.info("val %s", val_ds)
        how = (self.cfg.data_loading, self.cfg.stream_above_gb, self.mcfg.tile_m)
        train, val = open_pairs(train_ds, *sizes, *how), open_pairs(val_ds, *sizes, *how)
        if self.cfg.trunk_cache and is_streamed(train):
            raise ValueError(
                "trunk_cache caches the trunk features of a split held in memory: set data_loading: memory"
            )
        return train, val

    def load_monitor(self) -> PairSet | None:
        if self.monitor_root is None:
            return None
        sizes = ((self.mcfg.street.height, self.mcfg.street.width), (self.mcfg.aerial.height, self.mcfg.aerial.width))
        ds = open_protocol(self.monitor_root, "cross_area", "test")
        log.info("monitor %s", ds)
        return load_pairs(ds, *sizes)

    def trunk(self, pairs: PairSet | None, rotations: bool, root: Path) -> TrunkFeatures | None:
        if pairs is None or not self.cfg.trunk_cache:
            return None
        return cache_trunk(
            self.model, pairs.street, pairs.aerial, root / ".cache", rotations, pairs.street_city, pairs.aerial_city
        )

    def mine(self, train: PairSet, feats: TrunkFeatures | None, epoch: int) -> np.ndarray | None:
        """Look-alike lists for an epoch from the current model (none before the first epoch's training)."""
        if not self.cfg.mined_negatives or epoch == 0:
            return None
        if feats is not None:
            q = encode_street_features(self.model, feats, device=self.device)
            r = encode_features(self.model.aerial, feats.aerial[0], device=self.device)
        else:
            every = np.arange(len(train))
            q, r = encode_split(self.model, train, every, self.device, self.dist, self.cfg.loader_workers)
        # Each rank ranks the references for its part of the queries; every rank gets every list.
        rows = self.dist.part(np.arange(len(q)))
        k = 2 * self.cfg.mined_negatives
        return self.dist.gather_rows(mine_lookalikes(q, r, train.label, k, seed=self.cfg.seed + epoch, rows=rows))

    def state(self, epoch: int, step: int, metrics: list[dict], mined: np.ndarray | None = None) -> dict[str, Any]:
        return {
            **model_state(self.mcfg),
            "init": self.init_report,
            "mined": mined,
            "train_config": to_mapping(self.cfg),
            "model": self.model.state_dict(),
            "loss_fn": self.loss_fn.state_dict(),
            "optimizer": self.opt.state_dict(),
            "epoch": epoch,
            "step": step,
            "metrics": metrics,
            "dataset": str(self.root),
            "machine": machine(),
        }

    def step(self, batch: Batch, lr: float) -> dict[str, float]:
        for group in self.opt.param_groups:
            group["lr"] = lr
        self.model.train()
        b = batch.street.shape[0]  # this rank's rows; gathered below into the global batch
        cached = self.cfg.trunk_cache
        dtype = self.autocast_dtype
        with torch.autocast(torch.device(self.device).type, **({"dtype": dtype} if dtype else {"enabled": False})):
            bev = batch.bev.to(self.device, non_blocking=True) if batch.bev is not None else None
            street = batch.street.to(self.device, non_blocking=True)
            aerial = batch.aerial.to(self.device, non_blocking=True)
            with_offset = self.with_semi and self.cfg.loss.offset_weight > 0
            s_local, a, pred = self.net(street, aerial, bev, cached, with_offset)
            rows = lambda t, part: gather(t[:b] if part == 0 else t[b:], self.dist)  # noqa: E731
            s, a_pos = gather(s_local, self.dist), rows(a, 0)
            loss_r = self.loss_fn(s.float(), a_pos.float())
            loss = loss_r
            parts = {"retrieval": float(loss_r.detach())}
            if self.with_semi:
                a_semi = rows(a, 1)
                iou = batch.iou.to(self.device)
                iou_p, iou_s = rows(iou, 0), rows(iou, 1)
                off = batch.offset_m.to(self.device)
                if self.cfg.loss.iou_weight > 0:
                    loss_i = iou_semi_positive(s.float(), a_pos.float(), a_semi.float(), iou_p, iou_s)
                    loss = loss + self.cfg.loss.iou_weight * loss_i
                    parts["iou"] = float(loss_i.detach())
                if with_offset:
                    pred = torch.cat([rows(pred, 0), rows(pred, 1)])
                    off = torch.cat([rows(off, 0), rows(off, 1)])
                    loss_o = offset_l2(pred, off, self.mcfg.tile_m)
                    loss = loss + self.cfg.loss.offset_weight * loss_o
                    parts["offset"] = float(loss_o.detach())
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        parts["loss"] = float(loss.detach())
        return parts

    def run(self, resume: bool = False) -> list[dict]:
        self.out.mkdir(parents=True, exist_ok=True)
        ckpt_path = self.out / "checkpoint.pt"
        metrics: list[dict] = []
        start_epoch, start_step = 0, 0
        resumed_mined = None
        if resume:
            if not ckpt_path.exists():
                raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
            state = load_checkpoint(ckpt_path, expect=self.mcfg)
            self.model.load_state_dict(state["model"])
            self.loss_fn.load_state_dict(state["loss_fn"])
            self.opt.load_state_dict(state["optimizer"])
            start_epoch, start_step, metrics = state["epoch"], state["step"], state["metrics"]
            resumed_mined = state.get("mined") if start_step else None
            log.info("resuming at epoch %d step %d", start_epoch + 1, start_step)
        ctx, main = self.dist, self.dist.main
        if not main:
            ctx.barrier()  # rank 0 builds the image and trunk caches; the others then read them
        train, val = self.load_data()
        monitor = self.load_monitor()
        feats = self.trunk(train, True, self.root)
        val_feats = self.trunk(val, False, self.root)
        monitor_feats = self.trunk(monitor, False, self.monitor_root or self.root)
        if main:
            ctx.barrier()
        tiles = train.label
        sampler = GeoBatchSampler(train.street_en, tiles, self.cfg.batch_size, self.cfg.neighbours, self.cfg.seed)
        rows = DistributedGeoBatchSampler(sampler, ctx).rows  # this rank's share of every global batch
        workers = self.cfg.loader_workers
        streamed = is_streamed(train)
        if streamed:  # decode and augment in DataLoader workers, in the order of `keys`
            keys = StepKeys()
            made = StreamedBatches(
                make_batch, train, self.cfg.seed, mcfg=self.mcfg, cfg=self.cfg, with_semi=self.with_semi
            )
            loader = batch_loader(made, keys, workers, pin=self.device.startswith("cuda"))
        # Overlap-free batching may fill fewer batches in some epochs: a fixed count per epoch (the first
        # epoch's), topped up by repeating early batches, keeps the step count and the LR schedule fixed.
        steps_per_epoch = len(sampler.batches(0))
        if self.cfg.max_steps_per_epoch:
            steps_per_epoch = min(steps_per_epoch, self.cfg.max_steps_per_epoch)
        if steps_per_epoch == 0:
            raise ValueError(f"{len(train)} training pairs cannot fill one batch of {self.cfg.batch_size}")
        total = steps_per_epoch * self.cfg.epochs
        t_start = time.time() - (metrics[-1]["elapsed_s"] if metrics else 0.0)
        best = max((m.get("R@1", -1) for m in metrics), default=-1)
        for epoch in range(start_epoch, self.cfg.epochs):
            mid_epoch = resume and epoch == start_epoch and start_step > 0
            mined = resumed_mined if mid_epoch else self.mine(train, feats, epoch)
            batches = sampler.batches(epoch, mined, self.cfg.mined_negatives)
            batches = (batches * (steps_per_epoch // max(len(batches), 1) + 1))[:steps_per_epoch]
            first = start_step if epoch == start_epoch else 0
            steps = range(first, steps_per_epoch)
            bar = tqdm(steps, desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="step", disable=not main)
            if streamed:
                keys.keys = [BatchKey(epoch, s, batches[s], rows) for s in steps]
                made_batches = iter(loader)
            running: dict[str, float] = {}
            for s in bar:
                rng = np.random.default_rng((self.cfg.seed, epoch, s))
                if streamed:
                    batch = next(made_batches)
                elif feats is not None:
                    batch = make_feature_batch(train, feats, batches[s][rows], self.cfg, rng, self.with_semi)
                else:
                    batch = make_batch(train, batches[s], self.mcfg, self.cfg, rng, self.with_semi, rows)
                parts = self.step(batch, lr_at(epoch * steps_per_epoch + s, total, self.cfg))
                for k, v in parts.items():
                    running[k] = 0.9 * running.get(k, v) + 0.1 * v
                bar.set_postfix(loss=f"{running['loss']:.3f}")
                saving = self.cfg.save_every_steps and (s + 1) % self.cfg.save_every_steps == 0
                if main and saving and s + 1 < steps_per_epoch:
                    save_checkpoint(ckpt_path, self.state(epoch, s + 1, metrics, mined))
            scoring = (self.cfg.val_queries, self.cfg.seed, self.device)
            val_metrics = validate(self.model, val, *scoring, val_feats, ctx, workers)
            row = {"epoch": epoch + 1, "elapsed_s": round(time.time() - t_start, 1), **running, **val_metrics}
            if monitor is not None:
                mon = validate(self.model, monitor, *scoring, monitor_feats, ctx, workers)
                row.update({f"monitor_{k}": v for k, v in mon.items()})
            if isinstance(self.loss_fn, torch.nn.Module) and hasattr(self.loss_fn, "temperature"):
                row["temperature"] = self.loss_fn.temperature
            metrics.append(row)
            log.info(
                "epoch %d: %s",
                epoch + 1,
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
            )
            if main:  # one writer; every rank holds the same weights
                save_checkpoint(ckpt_path, self.state(epoch + 1, 0, metrics))
                if row["R@1"] > best:
                    save_checkpoint(self.out / "best.pt", self.state(epoch + 1, 0, metrics))
                write_metrics(self.out, metrics)
            best = max(best, row["R@1"])
        best_path = self.out / "best.pt"
        if (
            main
            and self.cfg.offset_fit_epochs
            and best_path.exists()
            and not load_checkpoint(best_path).get("offset_fit")
        ):
            best_state = load_checkpoint(best_path, expect=self.mcfg)
            self.model.load_state_dict(best_state["model"])
            cached = {id(train): feats, id(val): val_feats}
            encode = None
            if streamed:  # decoded by the loader's workers

                def encode(p: PairSet) -> tuple[np.ndarray, np.ndarray]:
                    return encode_split(self.model, p, np.arange(len(p)), self.device, workers=workers)

            if feats is not None:  # the frozen trunk's cached features: minutes of image encoding saved

                def encode(p: PairSet) -> tuple[np.ndarray, np.ndarray]:
                    f = cached[id(p)]
                    return encode_street_features(self.model, f), encode_features(self.model.aerial, f.aerial[0])

            fit = fit_offset_head(
                self.model, train, val, epochs=self.cfg.offset_fit_epochs, seed=self.cfg.seed, encode=encode
            )
            best_state["model"] = self.model.state_dict()
            best_state["offset_fit"] = fit
            best_state["metrics"][-1].update(fit)
            save_checkpoint(best_path, best_state)
        ctx.barrier()  # no rank leaves before rank 0 has written everything
        return metrics


def write_metrics(out: Path, metrics: list[dict]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    keys = sorted({k for m in metrics for k in m}, key=lambda k: (k != "epoch", k))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(metrics)
    plot_curves(metrics, out / "curves.png")
