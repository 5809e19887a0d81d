"""Patroni's Raft DCS on raftstore journals, through path mode and the launcher.

- A 3-process ``KVStoreTTL`` cluster started with ``raftstore pysyncobj-run``
  on lmdb, rocksdb and leveldb: sets with TTLs, deletes, SIGKILL of a
  follower, of the leader and of all three; every acknowledged write is back
  and TTL keys expire. A counting wrapper in each node checks group commit
  where Patroni writes one entry at a time (issue 15 item 6).
- Patroni's own ``tests/test_raft.py`` (vendored, MIT: `patroni_upstream_test_raft`)
  run under the launcher.
- ``patroni_raft_controller`` (a console script) started through the launcher.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "patroni.dcs.raft", reason="Patroni is not installed: pip install 'raftstore[patroni]'"
)

from patroni_cluster import (
    REQUEST_TIMEOUT,
    PatroniCluster,
    running_patroni_cluster,
)
from pysyncobj_cluster import HOST, NodeProcess, free_ports

import raftstore

ENGINES = ("lmdb", "rocksdb", "leveldb")
UPSTREAM_TEST = Path(__file__).with_name("patroni_upstream_test_raft.py")
REPO = Path(__file__).resolve().parent.parent
#: Writes made one at a time to count fsyncs per write.
GROUP_COMMIT_WRITES = 20
SUBPROCESS_TIMEOUT = 300.0


def _engine_missing(engine: str) -> str | None:
    info = {item.name: item for item in raftstore.available_engines()}[engine]
    return None if info.available else f"engine {engine} is not usable here: {info.hint}"


class Model:
    """What the cluster acknowledged: the last value of each key, and the deleted keys."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.deleted: set[str] = set()
        self.expiring: set[str] = set()

    def put(self, node: NodeProcess, key: str, value: str, ttl: float | None = None) -> None:
        reply = node.request("set", timeout=REQUEST_TIMEOUT, key=key, value=value, ttl=ttl)
        assert reply["result"], f"set {key!r} was not acknowledged by {node.address}: {reply}"
        assert reply["result"]["value"] == value
        if ttl is not None and ttl < 60:
            self.expiring.add(key)
        else:
            self.values[key] = value
        self.deleted.discard(key)

    def delete(self, node: NodeProcess, key: str) -> None:
        reply = node.request("delete", timeout=REQUEST_TIMEOUT, key=key)
        assert reply["result"] is True, f"delete {key!r} was not acknowledged: {reply}"
        self.values.pop(key, None)
        self.deleted.add(key)

    def check(self, cluster: PatroniCluster, *, expired: bool = False) -> None:
        """Every live node holds every acknowledged value and none of the deleted keys."""
        absent = sorted(self.deleted | (self.expiring if expired else set()))
        cluster.wait_holding(self.values, absent)


def _stats(cluster: PatroniCluster) -> dict[str, dict[str, Any]]:
    return {node.address: node.request("stats", timeout=10, reset=True) for node in cluster.alive()}


def _term(node: NodeProcess) -> int:
    return int(node.request("status", timeout=10)["term"])


@pytest.mark.slow
@pytest.mark.parametrize("engine", ENGINES)
def test_kvstorettl_cluster_keeps_every_acknowledged_write(tmp_path: Path, engine: str) -> None:
    missing = _engine_missing(engine)
    if missing:
        pytest.skip(missing)
    model = Model()
    with running_patroni_cluster(tmp_path, engine) as cluster:
        leader = cluster.leader()
        for node in cluster.nodes:
            status = node.request("status", timeout=10)
            assert status["journal"] == "RaftStoreJournal"
            assert status["engine"] == engine
            assert status["path_mode"]["engine"] == engine
            assert status["store"].endswith(f"{node.address}.journal.raftstore")
            # Patroni's journalFile names a file; path mode never creates it.
            assert not Path(status["store"][: -len(".raftstore")]).exists()

        # Group commit: Patroni writes one entry at a time. A first write, and
        # every node holding it, leaves start-up (no-op entries, catch-up) behind.
        model.put(leader, "/service/warm-up", "w")
        model.check(cluster)
        term_before = _term(leader)
        before = _stats(cluster)
        for number in range(GROUP_COMMIT_WRITES):
            model.put(leader, f"/service/gc/{number}", f"v{number}")
        model.check(cluster)
        after = _stats(cluster)
        elections = _term(leader) - term_before
        report = []
        for node in cluster.nodes:
            first, last = before[node.address], after[node.address]
            syncs = last["syncs"] - first["syncs"]
            acks = last["acks"] - first["acks"]
            role = "leader" if node is leader else f"follower, {acks} acknowledgements"
            report.append(f"{node.address} ({role}): {syncs}")
            assert last["empty_syncs"] == 0, f"{node.address} synced with nothing to sync: {last}"
            assert last["early_sends"] == [], f"{node.address}: {last['early_sends']}"
            if node is leader:
                assert syncs <= GROUP_COMMIT_WRITES + 3 * elections, (node.address, syncs)
            else:
                # PySyncObj truncates and re-adds the entries of an append_entries it
                # receives again (a retransmission): that rewrite is synced before its
                # acknowledgement too, but never twice for one acknowledgement.
                assert syncs <= acks, (node.address, syncs, acks)
                if not elections:
                    assert last["max_syncs_per_ack"] <= 1, f"{node.address} synced twice: {last}"
        print(
            f"\n[{engine}] fsyncs for {GROUP_COMMIT_WRITES} writes, per node: " + ", ".join(report)
        )

        # TTLs and deletes.
        model.put(leader, "/service/ttl/short-1", "gone soon", ttl=2)
        model.put(leader, "/service/ttl/short-2", "gone soon", ttl=2)
        model.put(leader, "/service/ttl/long", "stays", ttl=3600)
        model.put(leader, "/service/del/a", "to delete")
        model.delete(leader, "/service/del/a")

        # SIGKILL a follower; write on; it comes back with everything.
        follower = cluster.followers(leader)[0]
        follower.kill()
        for number in range(5):
            model.put(leader, f"/service/f/{number}", f"f{number}")
        model.delete(leader, "/service/gc/0")
        follower.start()
        model.check(cluster, expired=True)

        # SIGKILL the leader; a new one takes over; the old one rejoins.
        old_leader = leader
        old_leader.kill()
        leader = cluster.leader()
        assert leader is not old_leader
        for number in range(5):
            model.put(leader, f"/service/l/{number}", f"l{number}")
        model.put(cluster.followers(leader)[0], "/service/via-follower", "forwarded")
        model.delete(leader, "/service/gc/1")
        old_leader.start()
        model.check(cluster, expired=True)

        # SIGKILL all three: everything comes back from the stores alone.
        for node in cluster.nodes:
            node.kill()
        cluster.start()
        leader = cluster.leader()
        model.check(cluster, expired=True)
        model.put(leader, "/service/after-restart", "yes")
        model.check(cluster, expired=True)
        for node in cluster.nodes:
            stats = node.request("stats", timeout=10)
            assert stats["early_sends"] == [], stats
            assert stats["empty_syncs"] == 0, stats


def _isolated_env(tmp_path: Path) -> dict[str, str]:
    tmp = tmp_path / "tmp"
    tmp.mkdir(exist_ok=True)
    python_path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": python_path}


def test_patroni_own_raft_tests_pass_in_path_mode(tmp_path: Path) -> None:
    """Patroni's tests/test_raft.py (11 tests), run by pytest started through the launcher."""
    work = tmp_path / "upstream"
    work.mkdir()
    shutil.copy(UPSTREAM_TEST, work / "test_raft.py")
    (work / "pytest.ini").write_text("[pytest]\n", "utf-8")
    env = _isolated_env(tmp_path)
    command = [
        sys.executable,
        "-m",
        "raftstore",
        "pysyncobj-run",
        "--engine",
        "lmdb",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-c",
        str(work / "pytest.ini"),
        "--rootdir",
        str(work),
        str(work / "test_raft.py"),
    ]
    done = subprocess.run(
        command,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "11 passed" in done.stdout
    # TestRaft journals to $TMPDIR/127.0.0.1:1234.journal: in path mode, to a store.
    # Its cleanup (remove_files) unlinks files only, so the store stays behind.
    tmp = Path(env["TMPDIR"])
    store = tmp / "127.0.0.1:1234.journal.raftstore"
    assert (store / "raftstore.json").is_file()
    assert not (tmp / "127.0.0.1:1234.journal").exists()


def _store_ready(store: Path) -> bool:
    try:
        marker = json.loads((store / "raftstore.json").read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return bool(marker.get("state") == "ready")


def test_patroni_raft_controller_runs_through_the_launcher(tmp_path: Path) -> None:
    """The console script ``patroni_raft_controller``, unchanged, journals to a store."""
    (port,) = free_ports(1)
    address = f"{HOST}:{port}"
    data_dir = tmp_path / "raft"
    config = tmp_path / "controller.yml"
    config.write_text(
        json.dumps({"raft": {"self_addr": address, "data_dir": str(data_dir)}}), "utf-8"
    )
    command = [
        sys.executable,
        "-m",
        "raftstore",
        "pysyncobj-run",
        "--engine",
        "rocksdb",
        "patroni_raft_controller",
        str(config),
    ]
    store = data_dir / f"{address}.journal.raftstore"
    process = subprocess.Popen(
        command,
        env=_isolated_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        # Ready, not just present: the marker says "creating" until the store's
        # creation is durable, and a SIGTERM then leaves it unfinished.
        while not _store_ready(store):
            assert process.poll() is None, process.communicate(timeout=10)[0]
            assert time.monotonic() < deadline, "no store appeared within 60 s"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.returncode == 0, output
    assert not (data_dir / f"{address}.journal").exists()
    with raftstore.open(store, read_only=True) as opened:
        assert opened.engine == "rocksdb"
        assert opened.last_index() >= 1
