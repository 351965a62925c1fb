"""Running a planned map build on several processes: one code path by rank, whoever starts the ranks.

A plan's tasks are its shards (render + encode + index, :func:`~edge_geoloc.mapbuild.build.build_shard`)
and the imagery layer's chunks (:func:`~edge_geoloc.mapbuild.build.build_ortho_chunk`). Rank ``r`` of
``world`` runs the share :func:`shares` gives it: tasks dealt largest first to the least-loaded rank (by
pixels to render), a function of the plan alone, so every rank computes the same split without talking
to the others. Each task writes only its own files in the work folder and is resumable on its own;
rank 0 then waits for every task (a rank that failed leaves ``work/rank-R.failed`` and rank 0 stops
with its message) and assembles the bundle, whose bytes do not depend on who ran what.

Who starts the ranks:

- ``map build --nproc N``: this process forks N ranks (after building the shared imagery, e.g. the
  synthetic world, once) and watches their progress in the work folder, then assembles;
- ``torchrun --nproc-per-node N -m edge_geoloc.cli map build ...`` (or any launcher that sets ``RANK``
  and ``WORLD_SIZE``): every process plans (rank 0 writes the plan, the others check theirs against
  it), runs its share, and rank 0 assembles while the others wait for the bundle. No process group is
  needed: the ranks meet in the work folder, which several nodes must therefore share.

GPUs: a rank keeps one of the GPUs listed in ``CUDA_VISIBLE_DEVICES`` (its local rank modulo their
number); without that variable every rank uses the default device.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_geoloc.maps.bundle import BundleError

log = logging.getLogger(__name__)

Task = tuple[str, int]  # ("shard", shard id) or ("ortho", chunk number)
POLL_S = 0.5


def launcher_rank() -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when a launcher (torchrun) started this process as one of several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank = int(os.environ.get("RANK", "0"))
    if not 0 <= rank < world:
        raise ValueError(f"RANK {rank} is outside WORLD_SIZE {world} (set by the launcher)")
    return rank, world, int(os.environ.get("LOCAL_RANK", str(rank)))


def pin_gpu(local_rank: int) -> None:
    """Keep one of the listed GPUs for this rank (before any CUDA context is made)."""
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    if len(visible) > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[local_rank % len(visible)]


def tasks(work: Path) -> list[tuple[Task, int]]:
    """Every task of the plan with its cost in rendered pixels, shards (storage order) then imagery chunks."""
    from edge_geoloc.mapbuild.build import ortho_chunks, plan_shards, read_plan
    from edge_geoloc.mapbuild.ortho import CHUNK_ROWS, tile_grid

    plan = read_plan(work)
    table = plan_shards(work)
    out: list[tuple[Task, int]] = [
        (("shard", int(s)), int(c) * plan.tiling.tile_px**2) for s, c in zip(table["id"], table["count"])
    ]
    if plan.ortho is not None:
        for k, (level, chunk) in enumerate(ortho_chunks(plan)):
            rows, cols = tile_grid(plan.ortho, level)
            n = (min(rows, (chunk + 1) * CHUNK_ROWS) - chunk * CHUNK_ROWS) * cols
            out.append((("ortho", k), n * plan.ortho.tile_px**2))
    return out


def shares(work: Path, world: int) -> list[list[Task]]:
    """Each rank's tasks: largest first to the least-loaded rank (ties: the lower rank), in plan order."""
    listed = tasks(work)
    load = np.zeros(world, dtype=np.int64)
    owner = np.zeros(len(listed), dtype=np.int64)
    for i in sorted(range(len(listed)), key=lambda i: -listed[i][1]):  # stable: plan order among equals
        owner[i] = int(np.argmin(load))
        load[owner[i]] += listed[i][1]
    return [[listed[i][0] for i in range(len(listed)) if owner[i] == r] for r in range(world)]


def pending_tasks(work: str | Path) -> set[Task]:
    """The tasks not done yet (what a cluster engine maps :func:`run_task` over)."""
    from edge_geoloc.mapbuild.build import pending_ortho_chunks, pending_shards

    return {("shard", s) for s in pending_shards(work)} | {("ortho", k) for k in pending_ortho_chunks(work)}


def run_task(work: str | Path, task: Task, on_batch: Callable[[int, int], None] | None = None) -> None:
    """One task (idempotent): a shard, or a chunk of the imagery layer."""
    from edge_geoloc.mapbuild.build import build_ortho_chunk, build_shard

    kind, k = task
    if kind == "shard":
        build_shard(work, k, on_batch=on_batch)
    else:
        build_ortho_chunk(work, k)


def failure_file(work: Path, rank: int) -> Path:
    return work / f"rank-{rank}.failed"


def run_rank(work: Path, rank: int, world: int, on_batch: Callable[[int, int], None] | None = None) -> None:
    """Run rank ``rank``'s share of the pending tasks; on an error leave its message for rank 0, then raise."""
    failure_file(work, rank).unlink(missing_ok=True)
    try:
        pending = pending_tasks(work)
        for task in shares(work, world)[rank]:
            if task in pending:
                run_task(work, task, on_batch)
    except BaseException as err:
        failure_file(work, rank).write_text(f"{type(err).__name__}: {err}")
        raise


def _forked_rank(work: str, rank: int, world: int) -> None:
    pin_gpu(rank)
    try:
        run_rank(Path(work), rank, world)
    except Exception as err:  # the parent reports it from the failure file: one line, no traceback
        log.error("map build rank %d: %s", rank, err)
        sys.exit(1)


class Progress:
    """Map tiles and imagery chunks done, read from the work folder (any rank's work counts)."""

    def __init__(self, work: Path, enabled: bool) -> None:
        from edge_geoloc.mapbuild.build import ortho_chunks, plan_shards, read_plan

        self.work = work
        self.table = plan_shards(work)
        self.n_chunks = len(ortho_chunks(read_plan(work)))
        total = int(self.table["count"].sum())
        self.tiles = tqdm(total=total, unit="tile", desc=f"map {work.name}", disable=not enabled)
        self.chunks = tqdm(total=self.n_chunks, unit="chunk", desc="imagery", disable=not enabled or not self.n_chunks)
        self.refresh()

    def refresh(self) -> None:
        from edge_geoloc.mapbuild.build import WORK, pending_ortho_chunks

        done = 0
        for sid, count in zip(self.table["id"].tolist(), self.table["count"].tolist()):
            sdir = self.work / WORK / f"{sid:06d}"
            if (sdir / "done.yaml").exists():
                done += count
            elif (sdir / "progress").exists():
                try:
                    done += int((sdir / "progress").read_text() or 0)
                except (OSError, ValueError):  # replaced while read
                    pass
        self.tiles.update(done - self.tiles.n)
        if self.n_chunks:
            self.chunks.update(self.n_chunks - len(pending_ortho_chunks(self.work)) - self.chunks.n)

    def close(self) -> None:
        self.tiles.close()
        self.chunks.close()


def raise_failures(work: Path, since: float) -> None:
    """A rank's failure written since ``since`` (this run), as one line naming its file and message."""
    for f in sorted(work.glob("rank-*.failed")):
        if f.stat().st_mtime >= since - 1.0:
            raise BundleError(f"{f}: {f.read_text().strip()} (fix it and run the same command to resume)")


def wait_for_tasks(work: Path, since: float, progress: Progress | None = None) -> None:
    """Until every task of the plan is done, or a rank fails."""
    while True:
        raise_failures(work, since)
        if progress is not None:
            progress.refresh()
        if not pending_tasks(work):
            return
        time.sleep(POLL_S)


def run_ranks(work: Path, nproc: int, progress: bool, on_batch: Callable[[int, int], None] | None) -> int:
    """Run every pending task with ``nproc`` forked ranks, or as this launcher rank; returns this process's rank
    (0: the caller assembles)."""
    from edge_geoloc.mapbuild.build import _context, read_plan

    started = time.time()
    launched = launcher_rank()
    if launched is not None:
        rank, world, local = launched
        pin_gpu(local)
        run_rank(work, rank, world, on_batch)
        if rank == 0:
            wait_for_tasks(work, started)
        return rank
    plan = read_plan(work)
    bar = Progress(work, progress)
    if not plan.inputs and pending_tasks(work):
        _context(work).open_imagery().prepare(plan.tiling.gsd_m)  # the synthetic world, once, shared by fork
    if nproc <= 1:

        def step(shard: int, done: int) -> None:
            bar.refresh()
            if on_batch is not None:
                on_batch(shard, done)

        try:
            run_rank(work, 0, 1, step)
        finally:
            bar.close()
        return 0
    for stale in work.glob("rank-*.failed"):  # an earlier run's failures are not this run's
        stale.unlink(missing_ok=True)
    ctx = mp.get_context("fork")
    ranks = [ctx.Process(target=_forked_rank, args=(str(work), r, nproc), daemon=True) for r in range(nproc)]
    for p in ranks:
        p.start()
    try:
        while any(p.is_alive() for p in ranks):
            bar.refresh()
            raise_failures(work, started)
            for p in ranks:
                p.join(POLL_S / len(ranks))
        raise_failures(work, started)
        bar.refresh()
        left = pending_tasks(work)
        if left:  # a rank killed from outside (out of memory) leaves no message
            codes = {r: p.exitcode for r, p in enumerate(ranks) if p.exitcode}
            raise BundleError(f"{work}: {len(left)} task(s) left after the ranks exited (exit codes {codes})")
    finally:
        for p in ranks:
            if p.is_alive():
                p.terminate()
        bar.close()
    return 0
