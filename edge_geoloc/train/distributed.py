"""Data-parallel training on several processes: torchrun, DDP (NCCL on GPUs, gloo on CPUs).

Every rank draws the same global batch from the GPS-neighbour sampler (deterministic in the seed
and the epoch, so a resume at any saved step is exact) and builds its own contiguous share of it.
The descriptors of all shares are gathered with gradient (:class:`GatherWithGrad`), so every rank
computes the loss of the whole global batch with every other query's tile as a negative, exactly as
one process would; DDP averages the parameter gradients. One process and N processes with the same
global batch therefore follow the same loss curve up to float summation order.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from edge_geoloc.train.sampler import GeoBatchSampler


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, n: int) -> slice:
        """This rank's contiguous rows of a global batch of ``n`` (n must divide evenly)."""
        if n % self.world:
            raise ValueError(f"global batch of {n} does not split evenly over {self.world} processes")
        b = n // self.world
        return slice(self.rank * b, (self.rank + 1) * b)

    def part(self, rows: np.ndarray) -> np.ndarray:
        """This rank's part of a list of rows (uneven parts allowed; :meth:`gather_rows` restores the order)."""
        return np.array_split(np.asarray(rows), self.world)[self.rank]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather_rows(self, local: np.ndarray) -> np.ndarray:
        """Concatenate every rank's rows, in rank order (numpy, no gradient)."""
        if not self.active:
            return local
        parts: list[np.ndarray | None] = [None] * self.world
        dist.all_gather_object(parts, local)
        return np.concatenate([p for p in parts if p is not None])

    def broadcast(self, obj: object) -> object:
        """Rank 0's object on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


ONE_PROCESS = DistContext()


def init_distributed(device: str) -> tuple[DistContext, str]:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT);
    NCCL for CUDA, gloo otherwise. Returns the context and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistContext(rank, world, local), device


class GatherWithGrad(torch.autograd.Function):
    """All-gather whose backward hands each rank the summed gradient of its own rows (SimCLR/CLIP style):
    with every rank computing the same loss of the whole batch, DDP's average then equals one process's
    gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rows = x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        r = dist.get_rank()
        return grad[r * ctx.rows : (r + 1) * ctx.rows]


def gather(x: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Every rank's rows of ``x`` in rank order, differentiable (``x`` itself on one process)."""
    return GatherWithGrad.apply(x) if ctx.active else x


class TwoBranches(torch.nn.Module):
    """The model's forward as training calls it (street, aerial, optionally the offset head), so DDP
    sees every parameter that takes part in a step."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, street: torch.Tensor, aerial: torch.Tensor, bev: torch.Tensor | None, from_trunk: bool, offset: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        s = self.model.encode_street(street, from_trunk=from_trunk, bev_trunk=bev)
        a = self.model.aerial(aerial, from_trunk=from_trunk)
        pred = self.model.offset(torch.cat([s] * (a.shape[0] // s.shape[0])).float(), a.float()) if offset else None
        return s, a, pred


def wrap(model: torch.nn.Module, ctx: DistContext, device: str, uses_offset: bool) -> torch.nn.Module:
    """The step's forward, under DDP when distributed."""
    net = TwoBranches(model)
    if not ctx.active:
        return net
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids, find_unused_parameters=not uses_offset)


class DistributedGeoBatchSampler:
    """The GPS-neighbour sampler's global batches, each split into one contiguous share per rank.

    Every rank computes the same global batches (seeded by seed and epoch: nothing to synchronize and
    nothing to save for a resume), so the shares of a step are disjoint, a batch never holds two
    queries of one tile, and the epoch's samples are each used at most once across all ranks."""

    def __init__(self, sampler: GeoBatchSampler, ctx: DistContext) -> None:
        self.sampler, self.ctx = sampler, ctx
        self.rows = ctx.share(sampler.batch_size)  # fails early on a batch that does not split

    def global_batches(self, epoch: int, mined: np.ndarray | None = None, per_anchor: int = 0) -> list[np.ndarray]:
        return self.sampler.batches(epoch, mined, per_anchor)

    def batches(self, epoch: int, mined: np.ndarray | None = None, per_anchor: int = 0) -> list[np.ndarray]:
        """This rank's share of each of the epoch's global batches."""
        return [b[self.rows] for b in self.global_batches(epoch, mined, per_anchor)]


def launch(args: argparse.Namespace) -> int:
    """``edge-geoloc train --nproc N ...`` = ``torchrun --standalone --nproc-per-node N -m edge_geoloc.train ...``
    through torch's own launcher (each rank parses the same options, without --nproc)."""
    from torch.distributed.run import main as torchrun

    from edge_geoloc.train.config import TrainConfig

    batch = TrainConfig.load(args.config).batch_size
    if batch % args.nproc:
        print(f"{args.config}: batch_size {batch} does not split evenly over --nproc {args.nproc}", file=sys.stderr)
        return 2
    argv = ["--config", str(args.config), "--data", str(args.data), "--out", str(args.out)]
    for flag, value in (("--epochs", args.epochs), ("--device", args.device), ("--monitor", args.monitor)):
        argv += [flag, str(value)] if value else []
    argv += ["--resume"] if args.resume else []
    try:
        torchrun(["--standalone", f"--nproc-per-node={args.nproc}", "-m", "edge_geoloc.train", *argv])
    except Exception as err:  # torchrun raises ChildFailedError naming the failing rank
        print(f"edge-geoloc train --nproc {args.nproc}: {err}", file=sys.stderr)
        return 1
    return 0
