"""raftstore.aio in a small asyncio program: concurrent appends, term and vote, read back.

Run it with one command::

    python examples/aio_store.py                     # an LMDB store in a temp dir
    python examples/aio_store.py --engine rocksdb --dir ./raft-data

Four "followers" append entries to their own index ranges at the same time
(group commit turns their synced writes into a few fsyncs), the "node" sets
its term and vote, and a ticker task shows the event loop never stalls on
an fsync. Then the store is closed and opened again to read it all back.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import raftstore.aio
from raftstore import Log, LogType

WRITERS = 4
ENTRIES = 200


async def ticker(stop: asyncio.Event, worst: list[float]) -> None:
    """Sleep 1 ms at a time and remember the worst lateness."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        worst[0] = max(worst[0], time.perf_counter() - start - 0.001)


async def append(store: raftstore.aio.AsyncStore, writer: int) -> None:
    """Append ENTRIES entries, one synced call each, to this writer's own index range."""
    first = writer * 1_000_000 + 1
    for index in range(first, first + ENTRIES):
        await store.store_log(Log(index, 1, LogType.COMMAND, data=b"entry %d" % index))


async def main(target: str) -> None:
    stop, worst = asyncio.Event(), [0.0]
    async with await raftstore.aio.open(target) as store:  # sync=True: group commit
        tick = asyncio.create_task(ticker(stop, worst))
        started = time.perf_counter()
        await asyncio.gather(
            *(append(store, writer) for writer in range(WRITERS)),
            store.set_uint64(b"CurrentTerm", 7),
            store.set(b"LastVoteCand", b"node-2"),
        )
        elapsed = time.perf_counter() - started
        stop.set()
        await tick
        print(
            f"{WRITERS * ENTRIES} synced appends by {WRITERS} writers in {elapsed:.2f} s;"
            f" worst event-loop lateness {worst[0] * 1000:.1f} ms"
        )
    async with await raftstore.aio.open(target) as store:
        count = 0
        async for _ in store.iter_logs():
            count += 1
        term = await store.get_uint64(b"CurrentTerm")
        vote = await store.get(b"LastVoteCand")
        last = await store.get_log(await store.last_index())
        print(f"after reopen: {count} entries, term {term}, vote {vote!r}, last {last.data!r}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="raftstore.aio example")
    parser.add_argument("--engine", default="lmdb", help="engine name (default lmdb)")
    parser.add_argument("--dir", type=Path, default=None, help="store directory's parent")
    return parser.parse_args()


if __name__ == "__main__":
    args = parse_args()
    parent = args.dir or Path(tempfile.mkdtemp(prefix="raftstore-aio-"))
    asyncio.run(main(f"{args.engine}://{parent.resolve()}/raft"))
