"""A whole store's state, read through the public API, for before/after comparisons."""

from __future__ import annotations

from dataclasses import dataclass

from raftstore import Log, RaftStore


@dataclass(frozen=True)
class State:
    """Everything a store holds, read through its public API."""

    first: int
    last: int
    logs: tuple[Log, ...]
    stable: tuple[tuple[bytes, bytes], ...]


def state_of(store: RaftStore) -> State:
    """Read the whole store: cached bounds, every entry (decoded), every stable value."""
    logs = tuple(store.iter_logs())
    for log in logs[:1] + logs[-1:]:
        assert store.get_log(log.index) == log
    return State(store.first_index(), store.last_index(), logs, tuple(store.iter_stable()))
