"""One PySyncObj node in its own process, driven by JSON lines on stdin.

Used by the cluster tests (`pysyncobj_cluster`), the example and the
benchmark. Each request is one JSON object on a line; each reply is one JSON
object on a line of stdout, carrying the request's ``id``. Operations:

- ``status``: Raft state, counter, journal bounds, fsyncs.
- ``inc`` (``count``, ``wait``): ``count`` asynchronous increments; with
  ``wait`` the reply comes when every callback has fired.
- ``set`` (``key``, ``value``): one synchronous ``ReplDict.set``.
- ``dump``: the replicated counter and dict.
- ``tail`` (``count``): ``(index, term)`` of the journal's last entries.
- ``exit``: destroy the node, close the store, exit 0.

``--journal`` picks ``raftstore`` (an engine via ``--engine``), ``memory``
(PySyncObj's MemoryJournal) or ``file`` (its FileJournal). With
``RAFTSTORE_PROFILE_DIR`` set, SyncObj's tick thread is profiled (cProfile)
into that directory.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from typing import Any

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf
from pysyncobj.batteries import ReplCounter, ReplDict

import raftstore
from raftstore.integrations.pysyncobj import RaftStoreJournal, syncobj_conf

_out_lock = threading.Lock()


def _reply(message: dict[str, Any]) -> None:
    line = json.dumps(message, separators=(",", ":"))
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Node(SyncObj):  # type: ignore[misc]  # pysyncobj has no stubs
    """A SyncObj holding a replicated counter and a replicated dict."""

    def __init__(self, self_address: str, partners: list[str], conf: SyncObjConf) -> None:
        self.counter = ReplCounter()
        self.kv = ReplDict()
        super().__init__(self_address, partners, conf, consumers=[self.counter, self.kv])


def _conf_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "connectionRetryTime": 0.3,
        "connectionTimeout": 3.5,
        "raftMinTimeout": args.min_timeout,
        "raftMaxTimeout": args.min_timeout * 2.5,
        "appendEntriesPeriod": 0.05,
        "leaderFallbackTimeout": 30.0,
        "logCompactionMinEntries": args.compaction_entries,
        "logCompactionMinTime": 1e9,
        "commandsQueueSize": 200_000,
        "dynamicMembershipChange": False,
    }


def _profile_tick_thread(directory: str) -> None:
    """Profile SyncObj's tick thread into *directory* (benchmark diagnostics)."""
    import cProfile

    original = SyncObj._autoTickThread

    def profiled(self: SyncObj) -> None:
        profiler = cProfile.Profile()
        try:
            profiler.runcall(original, self)
        finally:
            profiler.dump_stats(os.path.join(directory, f"tick-{os.getpid()}.prof"))

    SyncObj._autoTickThread = profiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--partner", action="append", default=[])
    parser.add_argument("--journal", choices=["raftstore", "memory", "file"], default="raftstore")
    parser.add_argument("--engine", default="lmdb")
    parser.add_argument("--path", required=True, help="store directory (or journal file stem)")
    parser.add_argument("--compaction-entries", type=int, default=5000)
    parser.add_argument(
        "--min-timeout", type=float, default=0.4, help="raftMinTimeout (max is 2.5 times it)"
    )
    args = parser.parse_args()

    if os.environ.get("RAFTSTORE_PROFILE_DIR"):
        _profile_tick_thread(os.environ["RAFTSTORE_PROFILE_DIR"])
    store: raftstore.RaftStore | None = None
    kwargs = _conf_kwargs(args)
    if args.journal == "raftstore":
        target = "memory://" if args.engine == "memory" else args.path
        engine = None if args.engine == "memory" else args.engine
        store = raftstore.open(target, engine=engine, sync=False)
        conf = syncobj_conf(store, **kwargs)
    elif args.journal == "file":
        os.makedirs(args.path, exist_ok=True)
        conf = SyncObjConf(
            journalFile=os.path.join(args.path, "journal"),
            fullDumpFile=os.path.join(args.path, "dump"),
            **kwargs,
        )
    else:
        conf = SyncObjConf(**kwargs)
    started = time.monotonic()
    node = Node(args.self_address, args.partner, conf)
    journal = conf.journalFile if isinstance(conf.journalFile, RaftStoreJournal) else None
    _reply({"event": "started", "pid": os.getpid(), "open_seconds": time.monotonic() - started})

    def status() -> dict[str, Any]:
        raw = node.getStatus()
        leader = raw.get("leader")
        leader_id = getattr(leader, "id", leader)
        result: dict[str, Any] = {
            "state": raw.get("state"),
            "leader": None if leader is None else str(leader_id),
            "term": raw.get("raft_term"),
            "commit": raw.get("commit_idx"),
            "applied": raw.get("last_applied"),
            "log_len": raw.get("log_len"),
            "ready": node.isReady(),
            "counter": node.counter.get(),
            "kv_size": len(node.kv.rawData()),
            "uptime": time.monotonic() - started,
        }
        if journal is not None:
            result["first_index"] = journal._first
            result["last_index"] = journal._last
            result["fsyncs"] = journal.fsync_count
        return result

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "status":
            return status()
        if op == "inc":
            count = int(request["count"])
            done = threading.Event()
            outcome = {"ok": 0, "failed": 0}
            errors: dict[str, int] = {}
            lock = threading.Lock()

            def callback(result: object, error: int) -> None:
                with lock:
                    if error == FAIL_REASON.SUCCESS:
                        outcome["ok"] += 1
                    else:
                        outcome["failed"] += 1
                        errors[str(error)] = errors.get(str(error), 0) + 1
                    if outcome["ok"] + outcome["failed"] == count:
                        done.set()

            begun = time.monotonic()
            for _ in range(count):
                node.counter.inc(callback=callback if request.get("wait", True) else None)
            if request.get("wait", True):
                done.wait(float(request.get("wait_seconds", 60.0)))
            return {**outcome, "errors": errors, "seconds": time.monotonic() - begun}
        if op == "set":
            result = node.kv.set(request["key"], request["value"], sync=True, timeout=10.0)
            return {"result": result}
        if op == "dump":
            return {"counter": node.counter.get(), "kv": dict(node.kv.rawData())}
        if op == "tail":
            if journal is None:
                return {"tail": []}
            count = min(int(request.get("count", 10)), len(journal))
            entries = list(journal[len(journal) - count :])
            return {"tail": [[idx, term] for _, idx, term in entries]}
        raise ValueError(f"unknown op {op!r}")

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request["op"] == "exit":
            node.destroy_synchronous()
            fsyncs = journal.fsync_count if journal is not None else 0
            if store is not None:
                store.close()
            _reply({"id": request.get("id"), "fsyncs": fsyncs})
            return
        try:
            reply = handle(request)
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        reply["id"] = request.get("id")
        _reply(reply)
    # stdin closed: the parent went away; leave without ceremony.
    os._exit(0)


if __name__ == "__main__":
    main()
