"""One Patroni Raft DCS node (``patroni.dcs.raft.KVStoreTTL``), driven by JSON lines on stdin.

Run through the launcher, so its journal is whatever path mode gives
Patroni's ``journalFile=<data_dir>/<self_addr>.journal``::

    python -m raftstore pysyncobj-run --engine lmdb tests/patroni_node.py \\
        --self 127.0.0.1:PORT --partner ... --data-dir DIR

The protocol is `pysyncobj_cluster.NodeProcess`'s: a ``started`` event, then one
reply per request carrying its ``id``. Operations:

- ``status``: Raft state and leader, the journal's class and store, counters.
- ``set`` (``key``, ``value``, ``ttl``): ``KVStoreTTL.set``; ``result`` is what it
  returned (the stored value dict, or False when not acknowledged).
- ``delete`` (``key``): ``KVStoreTTL.delete``; ``result`` True when acknowledged.
- ``dump``: every key's value as this node has applied it.
- ``stats``: what the counting wrapper saw (below).
- ``exit``: destroy the node, exit 0.

The counting wrapper (issue 15 item 6) wraps ``RaftStore``'s writes and
``sync`` and the socket send of every message, and counts: syncs, syncs with
nothing written since the previous one (``empty_syncs``), the most syncs
between two consecutive acknowledgements a follower sent, and messages that
left with something they report on not yet synced (``early_sends``: a vote
request or vote before the term and vote were synced, an acknowledgement
before the entries were).

PySyncObj's reconnect interval and election timeouts are set for tests
(Patroni builds its ``SyncObjConf`` inline, so the name is patched).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import threading
import time
from typing import Any

import patroni.dcs.raft as patroni_raft
from pysyncobj import SyncObjConf
from pysyncobj.tcp_connection import TcpConnection

from raftstore import RaftStore
from raftstore.integrations.pysyncobj import TERM_VOTE_KEY, RaftStoreJournal, installed_settings

_out_lock = threading.Lock()
_VOTE_MESSAGES = frozenset({"request_vote", "response_vote"})
_ACK_MESSAGES = frozenset({"next_node_idx", "response_vote"})


def _reply(message: dict[str, Any]) -> None:
    line = json.dumps(message, separators=(",", ":"), default=str)
    with _out_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Counters:
    """What the counting wrapper saw; updated from the SyncObj thread only."""

    def __init__(self) -> None:
        self.syncs = 0
        self.empty_syncs = 0
        self.writes = 0
        self.acks = 0
        self.votes_sent = 0
        self.early_sends: list[str] = []
        self.max_syncs_per_ack = 0
        self._since_sync = 0
        self._syncs_since_ack = 0
        self.term_vote_unsynced = False
        self.logs_unsynced = False

    def wrote(self, *, term_vote: bool = False, logs: bool = False) -> None:
        self.writes += 1
        self._since_sync += 1
        self.term_vote_unsynced |= term_vote
        self.logs_unsynced |= logs

    def synced(self) -> None:
        self.syncs += 1
        self._syncs_since_ack += 1
        if self._since_sync == 0:
            self.empty_syncs += 1
        self._since_sync = 0
        self.term_vote_unsynced = self.logs_unsynced = False

    def sending(self, kind: str, journal: RaftStoreJournal | None) -> None:
        buffered = journal is not None and journal._unwritten > 0
        if kind in _VOTE_MESSAGES:
            self.votes_sent += 1
            if self.term_vote_unsynced:
                self.early_sends.append(f"{kind} before its term and vote were synced")
        if kind in _ACK_MESSAGES:
            if self.logs_unsynced or buffered:
                self.early_sends.append(f"{kind} before the entries it acknowledges were synced")
            if kind == "next_node_idx":
                self.acks += 1
                self.max_syncs_per_ack = max(self.max_syncs_per_ack, self._syncs_since_ack)
                self._syncs_since_ack = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "syncs": self.syncs,
            "empty_syncs": self.empty_syncs,
            "writes": self.writes,
            "acks": self.acks,
            "votes_sent": self.votes_sent,
            "early_sends": self.early_sends[:10],
            "max_syncs_per_ack": self.max_syncs_per_ack,
        }


def install_counting_wrapper(counters: Counters, journal_of: list[RaftStoreJournal]) -> None:
    """Wrap RaftStore's writes and sync, and TcpConnection.send, to feed *counters*."""

    def wrap_write(name: str, **flags: bool) -> None:
        original = getattr(RaftStore, name)

        @functools.wraps(original)
        def wrapper(self: RaftStore, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            term_vote = name == "set" and args[:1] == (TERM_VOTE_KEY,)
            counters.wrote(term_vote=term_vote, **flags)
            return result

        setattr(RaftStore, name, wrapper)

    wrap_write("store_logs", logs=True)
    wrap_write("delete_range", logs=True)
    wrap_write("set")
    wrap_write("set_uint64")
    original_sync = RaftStore.sync

    @functools.wraps(original_sync)
    def sync(self: RaftStore) -> None:
        original_sync(self)
        counters.synced()

    RaftStore.sync = sync  # type: ignore[method-assign]
    original_send = TcpConnection.send

    @functools.wraps(original_send)
    def send(self: Any, message: Any) -> Any:
        if isinstance(message, dict):
            counters.sending(str(message.get("type")), journal_of[0] if journal_of else None)
        return original_send(self, message)

    TcpConnection.send = send


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--self", dest="self_address", required=True)
    parser.add_argument("--partner", action="append", default=[])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--min-timeout", type=float, default=1.0)
    args = parser.parse_args()

    patroni_raft.SyncObjConf = functools.partial(
        SyncObjConf,
        connectionRetryTime=0.3,
        raftMinTimeout=args.min_timeout,
        raftMaxTimeout=args.min_timeout * 2.5,
    )
    counters = Counters()
    journal_of: list[RaftStoreJournal] = []
    install_counting_wrapper(counters, journal_of)
    started = time.monotonic()
    node = patroni_raft.KVStoreTTL(
        None,
        None,
        None,
        self_addr=args.self_address,
        partner_addrs=args.partner,
        data_dir=args.data_dir,
        retry_timeout=10,
    )
    journal = node._SyncObj__raftLog
    if isinstance(journal, RaftStoreJournal):
        journal_of.append(journal)
    node.startAutoTick()
    _reply({"event": "started", "pid": os.getpid(), "open_seconds": time.monotonic() - started})

    def status() -> dict[str, Any]:
        raw = node.getStatus()
        leader = raw.get("leader")
        return {
            "state": raw.get("state"),
            "leader": None if leader is None else str(getattr(leader, "id", leader)),
            "term": raw.get("raft_term"),
            "commit": raw.get("commit_idx"),
            "applied": raw.get("last_applied"),
            "journal": type(journal).__name__,
            "store": str(journal.store.path) if isinstance(journal, RaftStoreJournal) else None,
            "engine": journal.store.engine if isinstance(journal, RaftStoreJournal) else None,
            "path_mode": installed_settings(),
        }

    def handle(request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "status":
            return status()
        if op == "set":
            result = node.set(request["key"], request["value"], ttl=request.get("ttl"))
            return {"result": result}
        if op == "delete":
            return {"result": node.delete(request["key"])}
        if op == "dump":
            data = node.get("", recursive=True) or {}
            return {"data": {key: value["value"] for key, value in data.items()}}
        if op == "stats":
            reply = counters.as_dict()
            if request.get("reset"):
                counters.max_syncs_per_ack = 0
            return reply
        raise ValueError(f"unknown op {op!r}")

    for line in sys.stdin:
        if not line.strip():
            continue
        request = json.loads(line)
        if request["op"] == "exit":
            node.destroy()
            _reply({"id": request.get("id"), **counters.as_dict()})
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
