"""Subjects: the rows of a table, each measured in rounds interleaved with the others."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from raftstore.benchmark.config import Sizes
from raftstore.benchmark.handles import Handle
from raftstore.benchmark.results import Result
from raftstore.benchmark.workloads import Step

__all__ = [
    "SYNCED_ROUNDS",
    "Subject",
    "Table",
    "engine_label",
    "interleave",
    "planned_units",
]

#: Synced rounds: this many times as many, each this many times as long (fsync
#: latency on a shared disk swings by 10x within seconds; short, many, interleaved
#: rounds pair the store with its raw twin under the same conditions).
SYNCED_ROUNDS = 3
_SYNCED_ROUND_SHARE = 0.5


def engine_label(kind: str, engine: str, codec: str) -> str:
    """The row label of raftstore on *engine* (kind ``raftstore``) or of its raw binding."""
    return f"{engine}/{codec}" if kind == "raftstore" else f"raw {engine} ({codec} records)"


@dataclass(eq=False)
class Subject:
    """One row of a table: a handle (or a way to open one) plus the step one round repeats."""

    label: str
    kind: str
    engine: str | None
    codec: str | None
    step: Step
    opener: Callable[[], Handle] | None = None
    handle: Handle | None = None
    #: Open a handle for each round (two handles on one store cannot coexist).
    per_round: bool = False
    #: The timed work is the open itself (``reopen``).
    timed_open: bool = False
    note: str = ""
    samples: list[float] = field(default_factory=list)
    _warmed: Handle | None = field(default=None, init=False, repr=False)

    def _open(self) -> Handle:
        if self.handle is None:
            assert self.opener is not None
            self.handle = self.opener()
        return self.handle

    def round(self, budget: float) -> float:
        """Run for about *budget* seconds; return operations per timed second."""
        if self.timed_open:
            return self._reopen_round(budget)
        handle = self._open()
        count = 0
        elapsed = 0.0
        perf_counter = time.perf_counter
        deadline = perf_counter() + budget
        step = self.step
        try:
            if handle is not self._warmed:
                step(handle)  # warm caches, untimed, once per handle
                self._warmed = handle
            while True:
                done, seconds = step(handle)
                count += done
                elapsed += seconds
                if perf_counter() >= deadline:
                    break
        finally:
            if self.per_round:
                self.release()
        return count / elapsed if elapsed > 0 else 0.0

    def _reopen_round(self, budget: float) -> float:
        assert self.opener is not None
        opens = 0
        elapsed = 0.0
        perf_counter = time.perf_counter
        deadline = perf_counter() + budget
        while True:
            gc.collect()
            began = perf_counter()
            handle = self.opener()
            handle.startup()
            ended = perf_counter()
            handle.close()
            opens += 1
            elapsed += ended - began
            if perf_counter() >= deadline:
                break
        return opens / elapsed

    def release(self) -> None:
        """Close the handle, if one is open."""
        handle, self.handle = self.handle, None
        if handle is not None:
            handle.close()


def planned_units(subjects: int, sizes: Sizes, *, synced: bool = False) -> int:
    """Progress units `interleave` ticks for *subjects* rows.

    A unit is half a round's budget: a round ticks 2, a synced round (half as long) 1.
    """
    return subjects * sizes.repeats * (SYNCED_ROUNDS if synced else 2)


def interleave(
    subjects: list[Subject],
    sizes: Sizes,
    tick: Callable[[int], None],
    *,
    synced: bool = False,
) -> None:
    """Measure every subject in rounds, rotating their order each repeat.

    *tick(units)* is called after each round (see `planned_units`).
    """
    seconds = sizes.round_seconds
    repeats = sizes.repeats
    if synced:
        seconds *= _SYNCED_ROUND_SHARE
        repeats *= SYNCED_ROUNDS
    for repeat in range(repeats):
        shift = repeat % len(subjects)
        for subject in subjects[shift:] + subjects[:shift]:
            subject.samples.append(subject.round(seconds))
            tick(1 if synced else 2)


@dataclass(frozen=True, slots=True)
class Table:
    """Where measured subjects go: one workload case, its unit and its parameters."""

    workload: str
    case: str
    unit: str
    sync: bool | None = None
    #: Times (``s``) are measured as rates (opens per second) and reported as seconds.
    as_seconds: bool = False
    params: dict[str, Any] = field(default_factory=dict)

    def results(self, subjects: list[Subject]) -> list[Result]:
        """One `Result` per subject: the median of its rounds (ratios are set later)."""
        results = []
        for subject in subjects:
            samples = [1 / rate for rate in subject.samples] if self.as_seconds else subject.samples
            results.append(
                Result(
                    workload=self.workload,
                    case=self.case,
                    subject=subject.label,
                    kind=subject.kind,
                    engine=subject.engine,
                    codec=subject.codec,
                    sync=self.sync,
                    unit=self.unit,
                    higher_is_better=not self.as_seconds,
                    value=statistics.median(samples),
                    samples=[round(sample, 9) for sample in samples],
                    params=dict(self.params),
                    note=subject.note,
                )
            )
        return results
