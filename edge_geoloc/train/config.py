"""Training configuration (YAML, validated): model, data protocol, loss, optimisation, augmentation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edge_geoloc.config import check, load_config

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs" / "train"


@dataclass(frozen=True)
class LossConfig:
    name: Literal["infonce", "triplet", "wacv"] = "infonce"
    alpha: float = 20.0  # triplet: TransGeo's soft-margin weight
    alpha_p: float = 5.0  # wacv: positives' weight and margin
    m_p: float = 1.0
    alpha_n: float = 20.0  # wacv: negatives' weight and margin
    m_n: float = 0.0
    temperature: float = field(default=1 / 14, metadata=check(lambda v: v > 0, "a positive temperature"))
    iou_weight: float = field(default=0.0, metadata=check(lambda v: v >= 0, "a non-negative weight"))
    # Joint offset loss (VIGOR) costs a second aerial encode per query; 0 leaves the head to offset_fit_epochs.
    offset_weight: float = field(default=0.0, metadata=check(lambda v: v >= 0, "a non-negative weight"))

    def retrieval_kwargs(self) -> dict[str, float]:
        if self.name == "triplet":
            return {"alpha": self.alpha}
        if self.name == "wacv":
            return {"alpha_p": self.alpha_p, "m_p": self.m_p, "alpha_n": self.alpha_n, "m_n": self.m_n}
        return {"init_temperature": self.temperature}


@dataclass(frozen=True)
class AugmentConfig:
    rotate90: bool = True  # rotate aerial + roll panorama together (keeps alignment)
    mirror: bool = True
    colour: float = field(default=0.2, metadata=check(lambda v: 0 <= v < 1, "a jitter strength in [0, 1)"))


@dataclass(frozen=True)
class TrainConfig:
    model: str = "tiny"  # a named model config or a YAML path
    fov_deg: float | None = None  # override the model's street FoV (TransGeo: 360, 180, 90)
    keep_ratio: float | None = None  # aerial patch keep ratio (second stage: < 1)
    init: str | None = None  # start from these weights (second-stage fine-tuning)
    # TransGeo's two stages: 2 fine-tunes ``init`` (a stage-1 checkpoint of the same model) with the aerial
    # branch attending and zooming in: its input enlarged by 1/sqrt(keep_ratio) (default 0.64: 320 -> 400 px
    # on VIGOR, 256 -> 320 on CVUSA, as TransGeo's --sat_res) and the least-attended patches pruned, so it
    # keeps stage 1's token count at a finer GSD.
    stage: int = field(default=1, metadata=check(lambda v: v in (1, 2), "stage 1 or 2"))
    protocol: Literal["same_area", "cross_area"] = "same_area"
    train_cities: list[str] | None = None  # None: every city in the dataset (same_area) / the dataset's train cities
    val_cities: list[str] | None = None
    val_queries: int = field(default=1000, metadata=check(lambda v: v > 0, "a positive number of queries"))
    orientation: Literal["aligned", "unknown"] = "aligned"
    epochs: int = field(default=10, metadata=check(lambda v: v > 0, "a positive number of epochs"))
    batch_size: int = field(default=64, metadata=check(lambda v: v >= 2, "a batch size of at least 2"))
    lr: float = field(default=1e-3, metadata=check(lambda v: v > 0, "a positive learning rate"))
    weight_decay: float = 0.03
    warmup_steps: int = 100
    neighbours: int = field(default=3, metadata=check(lambda v: v >= 0, "a non-negative count"))
    loss: LossConfig = field(default_factory=LossConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0: all cores
    save_every_steps: int = 0  # also checkpoint inside an epoch (0: only at its end)
    max_steps_per_epoch: int = 0  # 0: the whole epoch (tests and smoke runs set a limit)
    # Pretrained stems: freeze the stem and the first N trunk blocks (no gradients, fixed BatchNorm statistics).
    freeze_blocks: int = field(default=0, metadata=check(lambda v: v >= 0, "a non-negative number of blocks"))
    # Freeze the whole trunk and train on its cached features (train/trunk_cache.py): many epochs on a CPU.
    trunk_cache: bool = False
    # Sample4Geo's dynamic similarity sampling: per anchor, this many batch members are the queries of its
    # most similar wrong references (descriptors recomputed every epoch), before its GPS neighbours.
    mined_negatives: int = field(default=0, metadata=check(lambda v: v >= 0, "a non-negative count"))
    # After training, fit the offset head on the frozen best model's descriptors (see offset_fit.py).
    offset_fit_epochs: int = field(default=30, metadata=check(lambda v: v >= 0, "a non-negative number of epochs"))

    # Autocast: auto = bf16 on GPUs that support it, else fp16 with a gradient scaler; fp32 on CPUs.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # Images held in RAM (decoded once, cached) or decoded by DataLoader workers each step (stream.py);
    # auto streams a split whose images at model size would take more than stream_above_gb.
    data_loading: Literal["auto", "memory", "stream"] = "auto"
    stream_above_gb: float = field(default=8.0, metadata=check(lambda v: v > 0, "a positive size in GB"))
    loader_workers: int = field(default=4, metadata=check(lambda v: v >= 0, "a non-negative worker count"))

    def __post_init__(self) -> None:
        if self.stage == 2 and not self.init:
            raise ValueError("stage 2 fine-tunes a stage-1 checkpoint: set init: <stage-1 run>/best.pt")

    @classmethod
    def load(cls, path: str | Path) -> TrainConfig:
        path = Path(path)
        if not path.suffix and (CONFIG_DIR / f"{path}.yaml").exists():
            path = CONFIG_DIR / f"{path}.yaml"
        return load_config(cls, path)
