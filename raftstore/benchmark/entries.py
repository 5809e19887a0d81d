"""The entries every workload writes and reads: same shape for every subject."""

from __future__ import annotations

from collections.abc import Iterator

from raftstore.log import Log, LogType

__all__ = ["FILL_BATCH", "TAIL", "batches", "build_logs", "fill_batches"]

#: Entries a tail read covers (what a leader reads to replicate).
TAIL = 64
#: Entries written per call while filling a data set.
FILL_BATCH = 1024


def build_logs(first: int, count: int, data_bytes: int = 128, term: int = 1) -> list[Log]:
    """*count* command entries from index *first*, with fixed-size data and a timestamp."""
    stamp = 1_700_000_000_000_000_000
    payload = bytes(range(256)) * (data_bytes // 256 + 1)
    return [
        Log(
            first + offset,
            term,
            LogType.COMMAND,
            payload[(first + offset) % 256 :][:data_bytes],
            b"",
            stamp + first + offset,
        )
        for offset in range(count)
    ]


def batches(first: int, batch: int, count: int, data_bytes: int) -> list[list[Log]]:
    """*count* batches of *batch* entries each, from index *first*."""
    logs = build_logs(first, batch * count, data_bytes)
    return [logs[at : at + batch] for at in range(0, len(logs), batch)]


def fill_batches(first: int, last: int, data_bytes: int) -> Iterator[list[Log]]:
    """The logs ``first..last`` (none when first > last) in batches of `FILL_BATCH`."""
    for start in range(first, last + 1, FILL_BATCH):
        yield build_logs(start, min(FILL_BATCH, last + 1 - start), data_bytes)
