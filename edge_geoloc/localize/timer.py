"""One frame's clock against the budget, and the running cost of each stage (written once for every
vision stage: the loop owns timing, the stages only say which stage they are in)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

BUDGET_SKIPS = ("encode", "offset", "heading", "register")  # work left out because it would not fit the budget


class StageCosts:
    """Running cost (ms) of each stage, an exponential average: what the budget looks ahead with."""

    def __init__(self) -> None:
        self._ms: dict[str, float] = {}
        self.per_image = 0.0  # one encoded image

    def note(self, stage: str, ms: float) -> None:
        old = self._ms.get(stage)
        self._ms[stage] = ms if old is None else 0.8 * old + 0.2 * ms

    def of(self, *stages: str) -> float:
        """The expected cost of ``stages`` (1 ms each before they first ran)."""
        return sum(self._ms.get(s, 1.0) for s in stages)

    def note_encode(self, ms: float, images: int) -> None:
        self.per_image = 0.8 * self.per_image + 0.2 * ms / images

    def forget(self, rate: float = 0.1) -> None:
        """Lower every estimate by ``rate``: called when work was left out for the budget, so that an estimate
        no longer measured (the work never runs) cannot freeze high after one slow spell (a busy CPU, a GC
        pause) and keep the work out for the rest of the run; the next run measures it again."""
        self.per_image *= 1.0 - rate
        self._ms = {k: v * (1.0 - rate) for k, v in self._ms.items()}


class StageTimer:
    """Milliseconds per stage of one frame, what was skipped, and whether more work fits the budget.

    The clock starts ``events_ms`` early: the GPS/odometry/attitude events since the last frame count
    against this frame's budget."""

    def __init__(self, budget_ms: float | None, costs: StageCosts, events_ms: float = 0.0) -> None:
        self.budget_ms = budget_ms
        self.costs = costs
        self.t_start = time.perf_counter() - events_ms / 1000.0
        self.stages: dict[str, float] = {}
        self.skipped: list[str] = []

    def elapsed(self) -> float:
        return (time.perf_counter() - self.t_start) * 1000.0

    def fits(self, ms: float) -> bool:
        """Whether ``ms`` more still fits in the budget."""
        return self.budget_ms is None or self.elapsed() + ms <= self.budget_ms

    def skip(self, what: str) -> None:
        self.skipped.append(what)
        if what in BUDGET_SKIPS:
            self.costs.forget()

    @contextmanager
    def stage(self, name: str, note: bool = True) -> Iterator[None]:
        """Time the block into ``name`` (a stage entered twice adds up); ``note``: feed the stage's total
        so far to the cost model when the block ends."""
        t0 = time.perf_counter()
        yield
        self.stages[name] = self.stages.get(name, 0.0) + (time.perf_counter() - t0) * 1000.0
        if note:
            self.costs.note(name, self.stages[name])
