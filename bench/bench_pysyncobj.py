"""PySyncObj throughput per journal: a 3-process cluster applying async increments.

For each journal a fresh 3-node cluster (one process per node, loopback)
starts, elects a leader, and the leader's process issues ``--count``
asynchronous ``ReplCounter.inc`` calls; the clock stops when the last
callback fires (the entry is committed on a majority and applied on the
leader). Journals:

- ``memory``: PySyncObj's MemoryJournal (nothing on disk);
- ``file``: PySyncObj's FileJournal (written through mmap, never fsynced:
  not durable against a machine crash);
- ``raftstore-ENGINE``: `RaftStoreJournal` on each engine, store opened with
  ``sync=False`` and group commit (one fsync before any message leaves a
  node): durable.

The table gives ops/s (median and range of ``--repeat`` runs, taken
round-robin over the journals) and the fsyncs each node made during the
median run (leader first). Nothing is asserted. Run it with::

    python bench/bench_pysyncobj.py                    # 10k increments, every journal
    python bench/bench_pysyncobj.py --count 2000 --journals memory,raftstore-lmdb
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from pysyncobj_cluster import running_cluster

import raftstore

JOURNALS = ["memory", "file", "raftstore-lmdb", "raftstore-rocksdb", "raftstore-leveldb"]
# Not run by default: the journal on the in-memory engine (overhead of the journal itself).
EXTRA_JOURNALS = ["raftstore-memory"]


def run_once(journal: str, count: int, root: Path) -> dict[str, Any]:
    """One cluster, one batch of *count* increments; ops/s and per-node fsyncs."""
    kind, _, engine = journal.partition("-")
    with running_cluster(root, journal=kind, engine=engine or "lmdb") as cluster:
        leader = cluster.leader()
        others = [node for node in cluster.nodes if node is not leader]
        ordered = [leader, *others]
        before = [node.request("status").get("fsyncs", 0) for node in ordered]
        reply = leader.request("inc", count=count, timeout=600, wait_seconds=300)
        seconds = float(reply["seconds"])
        # A failed increment (the leader changed under load) is reported, not retried.
        cluster.wait_converged(reply["ok"], timeout=120)
        after = [node.request("status").get("fsyncs", 0) for node in ordered]
        for node in cluster.nodes:
            node.stop()
    return {
        "failed": reply["failed"],
        "errors": reply.get("errors", {}),
        "ops": reply["ok"] / seconds,
        "seconds": seconds,
        "fsyncs": [end - start for start, end in zip(before, after, strict=True)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="increments per run")
    parser.add_argument("--repeat", type=int, default=1, help="runs per journal (median)")
    parser.add_argument(
        "--journals", default=",".join(JOURNALS), help=f"comma-separated, from {JOURNALS}"
    )
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temp dir)")
    args = parser.parse_args()
    journals = [name.strip() for name in args.journals.split(",") if name.strip()]
    unknown = sorted(set(journals) - set(JOURNALS) - set(EXTRA_JOURNALS))
    if unknown:
        parser.error(f"unknown journals {unknown}; choose from {JOURNALS + EXTRA_JOURNALS}")

    versions = {
        name: importlib.metadata.version(name) for name in ("pysyncobj", "lmdb", "rocksdict")
    }
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-pysyncobj-") as scratch:
        print(
            f"# PySyncObj, 3 processes on loopback, {args.count} async increments,"
            f" median of {args.repeat}"
        )
        print(
            f"# {platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()},"
            f" raftstore {raftstore.__version__}, "
            + ", ".join(f"{name} {version}" for name, version in versions.items())
        )
        print(f"# stores in {scratch}")
        print()
        print(
            "| journal | durable | ops/s (median) | ops/s (range) | seconds"
            " | fsyncs per node (leader first) |"
        )
        print("|---|---|---:|---:|---:|---|")
        # Round-robin over the journals, so drifting load on a shared machine
        # hits them all alike.
        runs: dict[str, list[dict[str, Any]]] = {journal: [] for journal in journals}
        for attempt in range(args.repeat):
            for journal in journals:
                root = Path(scratch) / f"{journal}-{attempt}"
                runs[journal].append(run_once(journal, args.count, root))
                time.sleep(0.5)
        for journal in journals:
            done = runs[journal]
            middle = sorted(done, key=lambda run: run["ops"])[len(done) // 2]
            ops = statistics.median(run["ops"] for run in done)
            rates = [run["ops"] for run in done]
            spread = f"{min(rates):,.0f} - {max(rates):,.0f}"
            durable = "yes" if journal in JOURNALS[2:] else "no"
            fsyncs = " / ".join(str(value) for value in middle["fsyncs"])
            if not journal.startswith("raftstore"):
                fsyncs = "0 (never fsyncs)"
            failed = sum(run["failed"] for run in done)
            if failed:
                errors = [run["errors"] for run in done if run["errors"]]
                fsyncs += f" ({failed} increments failed: FAIL_REASON {errors})"
            print(
                f"| {journal} | {durable} | {ops:,.0f} | {spread} | {middle['seconds']:.2f}"
                f" | {fsyncs} |"
            )


if __name__ == "__main__":
    main()
