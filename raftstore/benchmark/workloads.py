"""The workloads: one registry entry each, so a new workload is one entry here.

A workload belongs to a *family*, which says how the runner drives it:

- ``write``: appends of ``batch`` entries per call (and a prefix delete every
  ``delete_every`` calls), run synced and unsynced on a fresh store;
- ``read``: a step over a filled log (the largest data set), made by ``read_step``;
- ``reopen``: open + what Raft reads at start, timed, at each data-set size;
- ``rss``: a fresh process's peak RSS growth after a reopen and random reads.

A new write or read workload needs only its entry in `REGISTRY`; a new family
also needs its runner method (`raftstore.benchmark.runner`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from raftstore.benchmark.entries import TAIL, batches
from raftstore.benchmark.handles import Handle

__all__ = ["REGISTRY", "WORKLOADS", "ReadSet", "Step", "Workload", "no_step"]

#: One timed step: does a chunk of work on a handle, returns (operations, seconds).
Step = Callable[[Handle], tuple[int, float]]
Clock = Callable[[], float]
Family = Literal["write", "read", "reopen", "rss"]

#: Random gets per ``rss`` probe.
RSS_GETS = 10_000


@dataclass(frozen=True, slots=True)
class ReadSet:
    """What a read step works on: a filled log ``1..last`` and random indexes into it."""

    indexes: list[int]
    last: int
    clock: Clock


@dataclass(frozen=True, slots=True)
class Workload:
    """One benchmark workload; see the module docstring for the families."""

    name: str
    description: str
    family: Family
    #: ``write``: entries per call.
    batch: int = 1
    #: ``write``: a prefix delete every this many calls (0: never), keeping ``keep`` entries.
    delete_every: int = 0
    keep: int = 0
    #: ``read``: the step, given the data set.
    read_step: Callable[[ReadSet], Step] | None = None

    @property
    def unit(self) -> str:
        """The unit of its figures: ``entries/s``, ``s`` (reopen) or ``MB`` (rss)."""
        return {"reopen": "s", "rss": "MB"}.get(self.family, "entries/s")

    @property
    def higher_is_better(self) -> bool:
        """True for rates, False for times and memory."""
        return self.family in ("write", "read")

    @property
    def has_floor(self) -> bool:
        """Its synced table shows the disk's floor (plain appends: one durable write per call)."""
        return self.family == "write" and not self.delete_every

    def params(self, data_bytes: int) -> dict[str, Any]:
        """The parameters recorded with each of its figures."""
        if self.family != "write":
            return {"data_bytes": data_bytes} if self.family == "read" else {}
        params: dict[str, Any] = {"batch": self.batch, "data_bytes": data_bytes}
        if self.delete_every:
            params.update(delete_every=self.delete_every, keep=self.keep)
        return params

    def write_step(self, *, sync: bool, data_bytes: int, clock: Clock) -> Step:
        """A fresh step of this write workload, appending from index 1 on."""
        batch, delete_every, keep = self.batch, self.delete_every, self.keep
        # About 256 entries per timed step unsynced, one commit synced: a step is the
        # least a round runs, so it must stay well under a round's budget on a slow disk.
        per_step = 1 if sync else max(1, 256 // batch)
        state = {"next": 1, "calls": 0}

        def step(handle: Handle) -> tuple[int, float]:
            # Entries are built untimed: making Log objects is the caller's work.
            work = batches(state["next"], batch, per_step, data_bytes)
            state["next"] += batch * per_step
            began = clock()
            handle.append(work)
            if delete_every:
                state["calls"] += per_step
                if state["calls"] >= delete_every:
                    state["calls"] = 0
                    handle.truncate_prefix(keep)
            return batch * per_step, clock() - began

        return step


def _random_gets(data: ReadSet) -> Step:
    clock, indexes, chunk = data.clock, data.indexes, 1024
    position = {"at": 0}

    def gets(handle: Handle) -> tuple[int, float]:
        at = position["at"]
        position["at"] = (at + chunk) % (len(indexes) - chunk)
        wanted = indexes[at : at + chunk]
        began = clock()
        handle.get_many(wanted)
        return chunk, clock() - began

    return gets


def _tail_reads(data: ReadSet) -> Step:
    clock, last, times = data.clock, data.last, 16

    def tail(handle: Handle) -> tuple[int, float]:
        began = clock()
        handle.tail(last, times)
        return times * TAIL, clock() - began

    return tail


def no_step(handle: Handle) -> tuple[int, float]:
    """The step of a subject whose timed work is its open (``reopen``)."""
    return 0, 0.0


REGISTRY: dict[str, Workload] = {
    workload.name: workload
    for workload in (
        Workload("append_1", "store_log of one new entry per call", "write", batch=1),
        Workload("append_64", "store_logs of 64 new entries per call", "write", batch=64),
        Workload("append_1024", "store_logs of 1024 new entries per call", "write", batch=1024),
        Workload(
            "churn",
            "appends of 64 with delete_range of the prefix every 16 batches, keeping 1024",
            "write",
            batch=64,
            delete_every=16,
            keep=1024,
        ),
        Workload(
            "get_random",
            "get_log at uniformly random indexes of a filled log",
            "read",
            read_step=_random_gets,
        ),
        Workload(
            "tail_read",
            f"get_log of the last {TAIL} entries (what a leader does to replicate)",
            "read",
            read_step=_tail_reads,
        ),
        Workload(
            "reopen",
            "open + first_index + last_index + get_log(last), after a clean close",
            "reopen",
        ),
        Workload(
            "rss",
            f"peak RSS growth of a fresh process: reopen + {RSS_GETS // 1000}k random get_log",
            "rss",
        ),
    )
}

#: Workload name -> what one operation is.
WORKLOADS: dict[str, str] = {name: workload.description for name, workload in REGISTRY.items()}
