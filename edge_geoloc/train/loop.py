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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from edge_geoloc.config import to_mapping
from edge_geoloc.data.vigor import open_protocol
from edge_geoloc.evaluate import retrieval_metrics
from edge_geoloc.model.config import ModelConfig, load_model_config
from edge_geoloc.model.losses import iou_semi_positive, make_retrieval_loss, offset_l2
from edge_geoloc.model.vit import CrossViewModel
from edge_geoloc.train.augment import circular_shift, colour_jitter, mirror, rotate90
from edge_geoloc.train.checkpoint import load_checkpoint, load_model, model_state, save_checkpoint
from edge_geoloc.train.config import TrainConfig
from edge_geoloc.train.infer import crop_fov, encode_aerial, encode_street, input_specs, to_tensor
from edge_geoloc.train.offset_fit import fit_offset_head
from edge_geoloc.train.pairs import PairSet, load_pairs
from edge_geoloc.train.sampler import GeoBatchSampler

log = logging.getLogger(__name__)


def model_config_for(cfg: TrainConfig) -> ModelConfig:
    mcfg = load_model_config(cfg.model)
    if cfg.fov_deg is not None:
        mcfg = mcfg.with_(fov_deg=cfg.fov_deg)
    if cfg.keep_ratio is not None:
        mcfg = mcfg.with_(keep_ratio=cfg.keep_ratio)
    return mcfg


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


def make_batch(
    pairs: PairSet, idx: np.ndarray, mcfg: ModelConfig, cfg: TrainConfig, rng: np.random.Generator, with_semi: bool
) -> Batch:
    """Augmented, normalized tensors for a batch of query indices (see augment.py for the geometry)."""
    streets, pos, semi, off_p, off_s, iou_p, iou_s = [], [], [], [], [], [], []
    aug = cfg.augment
    for i in idx:
        k = int(rng.integers(1, 4))
        street = pairs.street[i]
        a0, a1 = pairs.aerial[pairs.label[i, 0]], pairs.aerial[pairs.label[i, k]]
        o = np.stack([pairs.offset_m[i, 0], pairs.offset_m[i, k]])
        if aug.rotate90:
            r = int(rng.integers(4))
            street, a0, o = rotate90(street, a0, o, r)
            a1 = np.rot90(a1, k=-r, axes=(0, 1))
        if aug.mirror and rng.random() < 0.5:
            street, a0, o = mirror(street, a0, o)
            a1 = a1[:, ::-1]
        if cfg.orientation == "unknown":
            street, _ = circular_shift(street, int(rng.integers(street.shape[1])))
        if aug.colour > 0:
            street = colour_jitter(street, rng, aug.colour)
            a0 = colour_jitter(a0, rng, aug.colour)
            a1 = colour_jitter(a1, rng, aug.colour)
        streets.append(street)
        pos.append(a0)
        semi.append(a1)
        off_p.append(o[0])
        off_s.append(o[1])
        iou_p.append(pairs.iou[i, 0])
        iou_s.append(pairs.iou[i, k])
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


def validate(model: CrossViewModel, val: PairSet, n_queries: int, seed: int, device: str = "cpu") -> dict[str, float]:
    """Recall of a fixed query subset against every reference of the validation cities."""
    rng = np.random.default_rng(seed)
    q = np.sort(rng.choice(len(val), size=min(n_queries, len(val)), replace=False))
    s = encode_street(model, val.street[q], device=device)
    a = encode_aerial(model, val.aerial, device=device)
    return retrieval_metrics(s @ a.T, val.label[q, 0], val.label[q, 1:])


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
    def __init__(self, cfg: TrainConfig, data_root: str | Path, out_dir: str | Path, device: str | None = None) -> None:
        self.cfg = cfg
        self.root = Path(data_root)
        self.out = Path(out_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.mcfg = model_config_for(cfg)
        torch.manual_seed(cfg.seed)
        self.model = CrossViewModel(self.mcfg).to(self.device)
        if cfg.init:
            init_model, _ = load_model(cfg.init)
            if init_model.cfg.with_(keep_ratio=self.mcfg.keep_ratio, fov_deg=self.mcfg.fov_deg) != self.mcfg:
                raise ValueError(
                    f"{cfg.init}: initial weights are of model config '{init_model.cfg.name}', not '{self.mcfg.name}'"
                )
            self.model.load_state_dict(init_model.state_dict(), strict=False)
        self.loss_fn = make_retrieval_loss(cfg.loss.name, **cfg.loss.retrieval_kwargs()).to(self.device)
        params = list(self.model.parameters()) + list(self.loss_fn.parameters())
        self.opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.with_semi = cfg.loss.iou_weight > 0 or cfg.loss.offset_weight > 0
        self.amp = self.device == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def load_data(self) -> tuple[PairSet, PairSet]:
        sizes = ((self.mcfg.street.height, self.mcfg.street.width), (self.mcfg.aerial.height, self.mcfg.aerial.width))
        train_ds = open_protocol(self.root, self.cfg.protocol, "train")
        val_ds = open_protocol(self.root, self.cfg.protocol, "test")
        if self.cfg.train_cities:
            train_ds = type(train_ds)(self.root, self.cfg.train_cities, train_ds.split)
        if self.cfg.val_cities:
            val_ds = type(val_ds)(self.root, self.cfg.val_cities, val_ds.split)
        if abs(train_ds.tile_m - self.mcfg.tile_m) > 1e-6:
            raise ValueError(
                f"{self.root}: dataset tiles are {train_ds.tile_m:g} m but model '{self.mcfg.name}' expects "
                f"{self.mcfg.tile_m:g} m (its aerial GSD would be wrong)"
            )
        log.info("train %s", train_ds)
        log.info("val %s", val_ds)
        return load_pairs(train_ds, *sizes), load_pairs(val_ds, *sizes)

    def state(self, epoch: int, step: int, metrics: list[dict]) -> dict[str, Any]:
        return {
            **model_state(self.mcfg),
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
        b = batch.street.shape[0]
        with torch.autocast(self.device, enabled=self.amp):
            s = self.model.street(batch.street.to(self.device))
            a = self.model.aerial(batch.aerial.to(self.device))
            a_pos = a[:b]
            loss_r = self.loss_fn(s.float(), a_pos.float())
            loss = loss_r
            parts = {"retrieval": float(loss_r.detach())}
            if self.with_semi:
                a_semi = a[b:]
                iou = batch.iou.to(self.device)
                off = batch.offset_m.to(self.device)
                if self.cfg.loss.iou_weight > 0:
                    loss_i = iou_semi_positive(s.float(), a_pos.float(), a_semi.float(), iou[:b], iou[b:])
                    loss = loss + self.cfg.loss.iou_weight * loss_i
                    parts["iou"] = float(loss_i.detach())
                if self.cfg.loss.offset_weight > 0:
                    pred = self.model.offset(torch.cat([s, s]).float(), a.float())
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
        if resume:
            if not ckpt_path.exists():
                raise FileNotFoundError(f"--resume: no checkpoint at {ckpt_path}")
            state = load_checkpoint(ckpt_path, expect=self.mcfg)
            self.model.load_state_dict(state["model"])
            self.loss_fn.load_state_dict(state["loss_fn"])
            self.opt.load_state_dict(state["optimizer"])
            start_epoch, start_step, metrics = state["epoch"], state["step"], state["metrics"]
            log.info("resuming at epoch %d step %d", start_epoch + 1, start_step)
        train, val = self.load_data()
        tiles = train.label
        sampler = GeoBatchSampler(train.street_en, tiles, self.cfg.batch_size, self.cfg.neighbours, self.cfg.seed)
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
            batches = sampler.batches(epoch)
            batches = (batches * (steps_per_epoch // max(len(batches), 1) + 1))[:steps_per_epoch]
            first = start_step if epoch == start_epoch else 0
            bar = tqdm(range(first, steps_per_epoch), desc=f"epoch {epoch + 1}/{self.cfg.epochs}", unit="step")
            running: dict[str, float] = {}
            for s in bar:
                rng = np.random.default_rng((self.cfg.seed, epoch, s))
                batch = make_batch(train, batches[s], self.mcfg, self.cfg, rng, self.with_semi)
                parts = self.step(batch, lr_at(epoch * steps_per_epoch + s, total, self.cfg))
                for k, v in parts.items():
                    running[k] = 0.9 * running.get(k, v) + 0.1 * v
                bar.set_postfix(loss=f"{running['loss']:.3f}")
                if self.cfg.save_every_steps and (s + 1) % self.cfg.save_every_steps == 0 and s + 1 < steps_per_epoch:
                    save_checkpoint(ckpt_path, self.state(epoch, s + 1, metrics))
            val_metrics = validate(self.model, val, self.cfg.val_queries, self.cfg.seed, self.device)
            row = {"epoch": epoch + 1, "elapsed_s": round(time.time() - t_start, 1), **running, **val_metrics}
            if isinstance(self.loss_fn, torch.nn.Module) and hasattr(self.loss_fn, "temperature"):
                row["temperature"] = self.loss_fn.temperature
            metrics.append(row)
            log.info(
                "epoch %d: %s",
                epoch + 1,
                json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}),
            )
            save_checkpoint(ckpt_path, self.state(epoch + 1, 0, metrics))
            if row["R@1"] > best:
                best = row["R@1"]
                save_checkpoint(self.out / "best.pt", self.state(epoch + 1, 0, metrics))
            write_metrics(self.out, metrics)
        best_path = self.out / "best.pt"
        if self.cfg.offset_fit_epochs and best_path.exists() and not load_checkpoint(best_path).get("offset_fit"):
            best_state = load_checkpoint(best_path, expect=self.mcfg)
            self.model.load_state_dict(best_state["model"])
            fit = fit_offset_head(self.model, train, val, epochs=self.cfg.offset_fit_epochs, seed=self.cfg.seed)
            best_state["model"] = self.model.state_dict()
            best_state["offset_fit"] = fit
            best_state["metrics"][-1].update(fit)
            save_checkpoint(best_path, best_state)
        return metrics


def write_metrics(out: Path, metrics: list[dict]) -> None:
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    keys = sorted({k for m in metrics for k in m}, key=lambda k: (k != "epoch", k))
    with open(out / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(metrics)
