"""A replicated key-value store: three PySyncObj nodes on raftstore journals.

Run it with one command (it needs ``pip install 'raftstore[pysyncobj]'``)::

    python examples/replicated_kv.py                 # LMDB stores in a temp dir
    python examples/replicated_kv.py --engine rocksdb --dir ./kv-data

The three nodes run in this process, each with its own store and its own
port on 127.0.0.1. The script writes through one node, reads on another,
stops a node and writes without it, brings it back from its store, then
restarts the whole cluster and shows the data coming back from disk.
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pysyncobj import SyncObj, SyncObjConf, SyncObjException
from pysyncobj.batteries import ReplDict

import raftstore
from raftstore.integrations.pysyncobj import RaftStoreJournal, syncobj_conf


class KVNode:
    """One node: a raftstore store, a SyncObj and the replicated dict it serves."""

    def __init__(self, name: str, address: str, partners: list[str], path: Path, engine: str):
        self.name = name
        self.address = address
        self.partners = partners
        self.path = path
        self.engine = engine
        self.store: raftstore.RaftStore | None = None
        self.conf: SyncObjConf | None = None
        self.obj: SyncObj | None = None
        self.kv = ReplDict()

    def start(self) -> None:
        # sync=False: the journal syncs once per batch, before anything leaves the node.
        self.store = raftstore.open(self.path, engine=self.engine, sync=False)
        self.conf = syncobj_conf(self.store, connectionRetryTime=0.3)
        self.kv = ReplDict()
        self.obj = SyncObj(self.address, self.partners, self.conf, consumers=[self.kv])

    def stop(self) -> None:
        assert self.obj is not None
        assert self.store is not None
        self.obj.destroy_synchronous()
        self.store.close()
        self.obj = None

    @property
    def journal(self) -> RaftStoreJournal:
        assert self.conf is not None
        journal: RaftStoreJournal = self.conf.journalFile  # syncobj_conf put it there
        return journal

    def describe(self) -> str:
        assert self.obj is not None
        status = self.obj.getStatus()
        role = {0: "follower", 1: "candidate", 2: "leader"}[status["state"]]
        store, fsyncs = self.journal.store, self.journal.fsync_count
        return (
            f"{self.name} ({self.address}, {role}): {dict(self.kv.rawData())}"
            f" | store holds entries {store.first_index()}..{store.last_index()}, {fsyncs} fsyncs"
        )


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for sock in sockets:
        sock.bind(("127.0.0.1", 0))
    ports = [sock.getsockname()[1] for sock in sockets]
    for sock in sockets:
        sock.close()
    return ports


def wait_until(what: str, condition: Callable[[], bool], timeout: float = 20.0) -> float:
    begun = time.monotonic()
    while not condition():
        if time.monotonic() - begun > timeout:
            raise SystemExit(f"gave up waiting for {what} after {timeout}s")
        time.sleep(0.05)
    return time.monotonic() - begun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", default="lmdb", help="raftstore engine (default lmdb)")
    parser.add_argument("--dir", default=None, help="where the stores go (default: a temp dir)")
    args = parser.parse_args()
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="replicated-kv-"))
    addresses = [f"127.0.0.1:{port}" for port in free_ports(3)]
    nodes = [
        KVNode(
            f"node{number}",
            address,
            [other for other in addresses if other != address],
            root / f"node{number}",
            args.engine,
        )
        for number, address in enumerate(addresses)
    ]

    def show(title: str) -> None:
        print(f"\n== {title}")
        for node in nodes:
            print("  " + (node.describe() if node.obj is not None else f"{node.name}: stopped"))

    def everyone_has(expected: Mapping[str, object], among: list[KVNode]) -> Callable[[], bool]:
        return lambda: all(dict(node.kv.rawData()) == expected for node in among)

    def leader() -> KVNode | None:
        for node in nodes:
            if node.obj is not None and node.obj._isLeader():
                return node
        return None

    def write(node: KVNode, key: str, value: object) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                node.kv.set(key, value, sync=True, timeout=5)
                return
            except SyncObjException:  # no leader yet, or it just changed: ask again
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    print(f"stores: {root} (engine {args.engine})")
    for node in nodes:
        node.start()
    took = wait_until("a leader", lambda: leader() is not None)
    print(f"three nodes up, leader elected in {took:.2f}s")

    first = nodes[0]
    write(first, "apples", 3)
    write(first, "pears", 5)
    wait_until("replication", everyone_has({"apples": 3, "pears": 5}, nodes))
    show(f"wrote apples=3, pears=5 through {first.name}; every node has them")
    print(f"  {nodes[2].name} reads apples = {nodes[2].kv.get('apples')}")

    chief = leader()
    assert chief is not None
    stopped, other = [node for node in nodes if node is not chief]
    stopped.stop()
    write(chief, "plums", 7)
    write(other, "apples", 4)
    expected = {"apples": 4, "pears": 5, "plums": 7}
    wait_until("replication", everyone_has(expected, [chief, other]))
    show(
        f"stopped {stopped.name} (a follower), then wrote plums=7 through {chief.name}"
        f" and apples=4 through {other.name}: two of three are a majority"
    )

    stopped.start()
    took = wait_until(f"{stopped.name} to catch up", everyone_has(expected, nodes))
    show(f"{stopped.name} restarted from its store and caught up in {took:.2f}s")

    for node in nodes:
        node.stop()
    print("\n== stopped all three nodes")
    for node in nodes:
        node.start()
    took = wait_until("the data to come back", everyone_has(expected, nodes))
    show(f"restarted all three: the data came back from the stores in {took:.2f}s")

    for node in nodes:
        node.stop()
    print("\ndone")


if __name__ == "__main__":
    main()
