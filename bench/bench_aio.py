"""`raftstore.aio` on a synced store: event-loop lag, and group commit with N writers.

Two measurements per engine, each on a fresh store in ``--dir`` opened with
``sync=True`` (every acknowledged write is fsynced):

(a) **Event-loop lag.** A ticker task sleeps 1 ms at a time and records how
    late it wakes (p50, p99, max), while one writer task stores a log entry
    and sets a stable key, over and over, for ``--seconds``:

    - ``aio``: the writes go through `raftstore.aio` (worker thread, group
      commit);
    - ``blocking``: the same writes call the synchronous store directly on the
      loop (what happens when an asyncio program uses `raftstore.open`).
    - ``idle``: the ticker alone (the floor of this machine's timer).

(b) **N concurrent writers.** N tasks (N = 1, 2, 4, 8, 16) share one async
    store. Each does, in a loop, ``store_logs`` of one entry in its own index
    range (writer ``w`` appends ``w * 10**12 + 1, + 2, ...``: disjoint,
    contiguous per writer) and a stable ``set`` of its own key, alternately.
    Reported: total ops/s, fsyncs per second, ops per fsync, and the speedup
    over N = 1, next to the target of N/2; each the median of ``--rounds``
    sweeps over every N (so a drifting fsync time skews every N alike).

Nothing is asserted; it prints Markdown tables. Run it with::

    python bench/bench_aio.py                       # lmdb and rocksdb, 3 s each, 3 rounds
    python bench/bench_aio.py --engines lmdb --seconds 5 --dir /var/tmp
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import raftstore
import raftstore.aio
from raftstore import Log, RaftStore

ENGINES = ("lmdb", "rocksdb")
WRITERS = (1, 2, 4, 8, 16)
TICK = 0.001
#: Stride between writers' index ranges.
RANGE = 10**12
PAYLOAD = b"x" * 128
PACKAGES = ("lmdb", "rocksdict", "msgpack")


@dataclass
class Lag:
    """Lateness of the 1 ms ticker, in milliseconds, and the writes done meanwhile."""

    mode: str
    p50: float
    p99: float
    worst: float
    ticks: int
    writes_per_second: float


@dataclass
class Throughput:
    """N writers through one async store."""

    writers: int
    ops_per_second: float
    syncs_per_second: float


class SyncCounter:
    """Counts `RaftStore.sync` calls (the group commits) by wrapping the method."""

    def __init__(self) -> None:
        self.count = 0
        self._original = RaftStore.sync

    def __enter__(self) -> SyncCounter:
        original = self._original

        def counted(store: RaftStore) -> None:
            original(store)
            self.count += 1

        setattr(RaftStore, "sync", counted)  # noqa: B010 - patching a method on purpose
        return self

    def __exit__(self, *exc_info: object) -> None:
        setattr(RaftStore, "sync", self._original)  # noqa: B010


async def _ticker(stop: asyncio.Event, lateness: list[float]) -> None:
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(TICK)
        lateness.append(time.perf_counter() - start - TICK)


def _lag(mode: str, lateness: list[float], writes: int, seconds: float) -> Lag:
    ordered = sorted(lateness)
    return Lag(
        mode,
        p50=statistics.median(ordered) * 1000,
        p99=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
        worst=ordered[-1] * 1000,
        ticks=len(ordered),
        writes_per_second=writes / seconds,
    )


async def _measure_lag(
    mode: str, seconds: float, write: Callable[[int], Awaitable[None]] | None
) -> Lag:
    stop = asyncio.Event()
    lateness: list[float] = []
    ticker = asyncio.ensure_future(_ticker(stop, lateness))
    writes = 0
    deadline = time.perf_counter() + seconds
    if write is None:
        await asyncio.sleep(seconds)
    else:
        while time.perf_counter() < deadline:
            await write(writes)
            writes += 1
    stop.set()
    await ticker
    return _lag(mode, lateness, writes, seconds)


async def lag_aio(engine: str, directory: Path, seconds: float) -> Lag:
    store = await raftstore.aio.open(directory / "aio", engine=engine, sync=True)

    async def write(n: int) -> None:
        if n % 2:
            await store.set(b"CurrentTerm", n.to_bytes(8, "big"))
        else:
            await store.store_log(Log(n + 1, 1, data=PAYLOAD))

    try:
        return await _measure_lag("aio", seconds, write)
    finally:
        await store.close()


async def lag_blocking(engine: str, directory: Path, seconds: float) -> Lag:
    store = raftstore.open(directory / "blocking", engine=engine, sync=True)

    async def write(n: int) -> None:
        if n % 2:
            store.set(b"CurrentTerm", n.to_bytes(8, "big"))
        else:
            store.store_log(Log(n + 1, 1, data=PAYLOAD))
        await asyncio.sleep(0)  # let the ticker run between writes

    try:
        return await _measure_lag("blocking", seconds, write)
    finally:
        store.close()


async def writers(engine: str, directory: Path, count: int, seconds: float) -> Throughput:
    store = await raftstore.aio.open(directory / f"writers-{count}", engine=engine, sync=True)
    done = [0] * count
    with SyncCounter() as syncs:
        start = time.perf_counter()
        deadline = start + seconds

        async def writer(number: int) -> None:
            index = number * RANGE
            key = b"writer-%d" % number
            while time.perf_counter() < deadline:
                index += 1
                await store.store_logs([Log(index, 1, data=PAYLOAD)])
                await store.set(key, index.to_bytes(8, "big"))
                done[number] += 2

        await asyncio.gather(*(writer(number) for number in range(count)))
        elapsed = time.perf_counter() - start
        synced = syncs.count
    await store.close()
    return Throughput(count, sum(done) / elapsed, synced / elapsed)


def _versions() -> str:
    found = []
    for name in PACKAGES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join(found)


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "log", "--oneline", "-1"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated names")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each measurement")
    parser.add_argument("--writers", default=",".join(map(str, WRITERS)), help="values of N")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the N-writer sweep")
    parser.add_argument("--dir", type=Path, default=None, help="where the stores go (a disk)")
    args = parser.parse_args(argv)
    engines = [name for name in args.engines.split(",") if name]
    counts = [int(n) for n in args.writers.split(",") if n]
    print(f"commit: {_commit()}")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.system()}"
        f" {platform.release()}; Python {platform.python_version()}; {_versions()}"
    )
    print(f"command: python bench/bench_aio.py {' '.join(argv or sys.argv[1:])}".rstrip())
    print("stores opened with sync=True (aio: group commit over sync=False + one fsync per group)")
    for engine in engines:
        base = Path(tempfile.mkdtemp(prefix=f"bench-aio-{engine}-", dir=args.dir))
        try:
            print(f"\n### {engine}\n")
            results = [
                asyncio.run(_measure_lag("idle", args.seconds, None)),
                asyncio.run(lag_blocking(engine, base, args.seconds)),
                asyncio.run(lag_aio(engine, base, args.seconds)),
            ]
            print("| writes | ticker lag p50 | p99 | max | writes/s |")
            print("|---|---:|---:|---:|---:|")
            for lag in results:
                print(
                    f"| {lag.mode} | {lag.p50:.2f} ms | {lag.p99:.2f} ms | {lag.worst:.2f} ms"
                    f" | {lag.writes_per_second:,.0f} |"
                )
            print()
            # Rounds over every N, medians per N: a disk whose fsync time drifts
            # (other work on the machine) then skews every N alike.
            runs: dict[int, list[Throughput]] = {count: [] for count in counts}
            for round_number in range(args.rounds):
                for count in counts:
                    where = base / f"round-{round_number}"
                    where.mkdir(exist_ok=True)
                    runs[count].append(asyncio.run(writers(engine, where, count, args.seconds)))
            table = [
                Throughput(
                    count,
                    statistics.median(t.ops_per_second for t in runs[count]),
                    statistics.median(t.syncs_per_second for t in runs[count]),
                )
                for count in counts
            ]
            single = next((t.ops_per_second for t in table if t.writers == 1), None)
            print("| writers N | ops/s | fsyncs/s | ops per fsync | x N=1 | target N/2 |")
            print("|---:|---:|---:|---:|---:|---:|")
            for row in table:
                ratio = f"{row.ops_per_second / single:.1f}" if single else "-"
                per_sync = row.ops_per_second / row.syncs_per_second if row.syncs_per_second else 0
                print(
                    f"| {row.writers} | {row.ops_per_second:,.0f} | {row.syncs_per_second:,.0f}"
                    f" | {per_sync:.1f} | {ratio} | {row.writers / 2:g} |"
                )
        finally:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
